//! The online half of `BillPaymentService`: billers with `mode = "online"`
//! are asked for the bill in real time and notified of its payment.
//!
//! A payment follows the wallet path: the bill is asked for first (a
//! decline there stores nothing), then the payment is recorded `in_progress`
//! with its key claimed, then the biller is notified, then its answer is
//! committed with the key's answer before the POS hears it. No answer: an
//! `advice` entry is queued in the same commit and the POS gets
//! `UNAVAILABLE` `OUTCOME_UNKNOWN`; the bill worker ([`crate::bill::saf`])
//! asks the biller for the notice's status, sends the same notice again if
//! it never arrived, and records the final answer, which a retry replays.

use chrono::{DateTime, SecondsFormat, Utc};
use posgate_partners::bill::BillCallError;
use posgate_partners::bill::api::{
    Bill as RemoteBill, BillCancelRequest, BillInquiryRequest, BillPaymentNotice, BillStatus,
    CancelStatus, NoticeRejectCode, NoticeStatus,
};
use posgate_partners::wallet::api::{Channel, Money};
use posgate_proto::v1 as pb;
use prost::Message as _;
use tonic::{Response, Status};

use super::Gateway;
use super::bill_payment::payment_message;
use super::idempotent::replay;
use super::status::{
    from_store_error, invalid_field, key_reused, partner_unavailable, precondition, unknown_outcome,
};
use crate::bill::online::OnlineBiller;
use crate::bill::{ReadBill, payment_lines};
use posgate_core::model::idempotency::differing_fields;
use posgate_core::model::{IdempotencyKey, RequestFingerprint, StoredAnswer};
use posgate_core::ports::db::{
    BillWrite, Change, Event, KeyOp, NewSafItem, SafKind, StatusChange, TransactionRecord,
    TransactionStatus, WriteOutcome,
};

/// What an online bill payment's POS hears while the notice is unresolved.
pub fn notice_outcome_unknown(transaction_id: &str) -> Status {
    unknown_outcome(
        transaction_id,
        "posgate is asking the biller for its status and will notify it again",
    )
}

/// The answer under a key: replayed if final, `OUTCOME_UNKNOWN` while the
/// first request's notice is unresolved, `ALREADY_EXISTS` if another request.
pub fn replay_or_pending<M: prost::Message + Default>(
    answer: &StoredAnswer,
    fingerprint: &RequestFingerprint,
    client_request_id: &str,
) -> Result<Response<M>, Status> {
    if answer.pending {
        let differing = differing_fields(&answer.fingerprint, fingerprint);
        if !differing.is_empty() {
            return Err(key_reused(client_request_id, &differing));
        }
        return Err(notice_outcome_unknown(&answer.transaction_id));
    }
    replay(answer, fingerprint, client_request_id)
}

/// A `BILLER_*` precondition naming the slip (the bill the biller refuses).
fn refused(kind: &str, description: String) -> Status {
    precondition(kind, "slip.barcodes", description)
}

/// The bill as the biller holds it; every refusal is an error naming the
/// field, and a biller that cannot answer is `UNAVAILABLE` (nothing stored).
pub async fn inquire(
    online: &OnlineBiller,
    bill: &ReadBill<'_>,
    store_id: &str,
    terminal_id: &str,
) -> Result<RemoteBill, Status> {
    let request = BillInquiryRequest {
        biller_id: online.id.clone(),
        bill_reference: bill.slip.bill_reference.clone(),
        channel: Channel {
            store_id: store_id.to_owned(),
            terminal_id: terminal_id.to_owned(),
        },
    };
    let reference = &request.bill_reference;
    match online.client.inquire(&request).await {
        Ok(Some(remote)) if remote.amount.currency != bill.biller.currency.code => Err(refused(
            "BILLER_CURRENCY_MISMATCH",
            format!(
                "biller {} holds bill {reference} in {}, not {}",
                online.id, remote.amount.currency, bill.biller.currency.code
            ),
        )),
        Ok(Some(remote)) => match remote.status {
            BillStatus::Open => Ok(remote),
            BillStatus::Paid => Err(refused(
                "BILL_ALREADY_PAID",
                format!("biller {} says bill {reference} is already paid", online.id),
            )),
            BillStatus::Expired => Err(refused(
                "BILL_EXPIRED",
                format!("biller {} says bill {reference} has expired", online.id),
            )),
            BillStatus::Cancelled => Err(refused(
                "BILL_CANCELLED",
                format!("biller {} says bill {reference} was cancelled", online.id),
            )),
        },
        Ok(None) => Err(refused(
            "BILL_NOT_FOUND",
            format!("biller {} does not know bill {reference}", online.id),
        )),
        Err(BillCallError::Rejected { status, .. }) => Err(refused(
            "BILLER_REFUSED",
            format!(
                "biller {} refused the inquiry for bill {reference} (HTTP {status})",
                online.id
            ),
        )),
        Err(error) => {
            tracing::warn!(biller = %online.id, %error, "bill inquiry failed");
            Err(partner_unavailable(&online.party()))
        }
    }
}

/// The remote bill's amount in minor units (checked non-negative by the wire model's bounds).
pub fn remote_amount_minor(remote: &RemoteBill) -> u64 {
    u64::try_from(remote.amount.amount_minor).unwrap_or(0)
}

/// The payment notice of a recorded payment: the same body on every
/// attempt (first send, restart, store-and-forward), so the biller applies
/// it once under its Idempotency-Key (the transaction id).
pub fn notice_of(record: &TransactionRecord) -> BillPaymentNotice {
    BillPaymentNotice {
        transaction_id: record.id.clone(),
        biller_id: record.partner_id.clone(),
        bill_reference: record.bill.bill_reference.clone(),
        amount: Money::new(record.amount_minor, &record.currency),
        paid_at: record.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        business_date: record.business_date.format("%Y-%m-%d").to_string(),
        channel: Channel {
            store_id: record.store_id.clone(),
            terminal_id: record.terminal_id.clone(),
        },
    }
}

fn key_of_record(record: &TransactionRecord) -> IdempotencyKey {
    IdempotencyKey {
        store_id: record.store_id.clone(),
        terminal_id: record.terminal_id.clone(),
        client_request_id: record.client_request_id.clone(),
    }
}

fn stay_in_progress(
    record: &TransactionRecord,
    to: TransactionStatus,
    at: DateTime<Utc>,
) -> Change {
    Change::Transition(StatusChange {
        transaction_id: record.id.clone(),
        store_id: record.store_id.clone(),
        from: TransactionStatus::InProgress,
        to,
        at,
        reason: String::new(),
        business_date: record.business_date,
    })
}

fn event(kind: &str, to: TransactionStatus, actor: &str, detail: String) -> Event {
    Event {
        event_type: kind.to_owned(),
        from_status: Some(TransactionStatus::InProgress),
        to_status: to,
        actor: actor.to_owned(),
        detail,
    }
}

/// The answer of a paid online bill, as stored under its key and replayed.
pub fn paid_response(gateway: &Gateway, record: &TransactionRecord) -> pb::PayBillResponse {
    let name = gateway
        .billers
        .by_id(&record.partner_id)
        .map_or("", |biller| biller.name.as_str());
    pb::PayBillResponse {
        payment: Some(payment_message(record, name)),
    }
}

/// How a notice ended, for [`settle`].
#[derive(Debug)]
pub enum NoticeEnd {
    /// The biller accepted: the payment is `paid`, its key answered.
    Paid,
    /// The biller rejected it or never got it: `declined`, key released, no lines.
    Declined(String),
    /// Still unknown: queue (or keep) an advice to resolve it.
    Unknown(String),
}

/// Records how a notice ended: `paid` with its lines and answer, `declined`
/// with the key released, or an advice queued. `acked` are the queue
/// entries this settles (the worker's).
pub async fn settle(
    gateway: &Gateway,
    record: &TransactionRecord,
    end: &NoticeEnd,
    actor: &str,
    acked: Vec<i64>,
) -> Result<WriteOutcome, Status> {
    let now = gateway.clock.now();
    let mut paid = record.clone();
    paid.status = TransactionStatus::Paid;
    paid.updated_at = now;
    let (to, key, lines, enqueue, kind, detail) = match end {
        NoticeEnd::Paid => (
            TransactionStatus::Paid,
            Some(KeyOp::Answer {
                key: key_of_record(record),
                response: paid_response(gateway, &paid).encode_to_vec(),
            }),
            payment_lines(&paid),
            Vec::new(),
            "bill_paid",
            format!(
                "biller {} accepted the notice of {} {}",
                record.partner_id, record.amount_minor, record.currency
            ),
        ),
        NoticeEnd::Declined(reason) => (
            TransactionStatus::Declined,
            Some(KeyOp::Release {
                key: key_of_record(record),
            }),
            Vec::new(),
            Vec::new(),
            "bill_rejected",
            reason.clone(),
        ),
        NoticeEnd::Unknown(reason) => (
            TransactionStatus::InProgress,
            None,
            Vec::new(),
            if acked.is_empty() {
                vec![NewSafItem {
                    link_id: record.partner_id.clone(),
                    kind: SafKind::Advice,
                    amount_minor: record.amount_minor,
                    currency: record.currency.clone(),
                    next_attempt_at: now,
                }]
            } else {
                Vec::new()
            },
            "outcome_unknown",
            reason.clone(),
        ),
    };
    let write = BillWrite {
        transaction_id: record.id.clone(),
        at: now,
        key,
        change: stay_in_progress(record, to, now),
        lines,
        business_date: record.business_date,
        event: event(kind, to, actor, detail),
        enqueue,
        acked,
    };
    gateway
        .db
        .write_bill(write)
        .await
        .map_err(|error| from_store_error(&error))
}

/// What the POS hears for a notice's end.
fn answer_of(
    gateway: &Gateway,
    record: &TransactionRecord,
    end: &NoticeEnd,
    status: Option<Status>,
) -> Result<Response<pb::PayBillResponse>, Status> {
    match end {
        NoticeEnd::Paid => {
            let mut paid = record.clone();
            paid.status = TransactionStatus::Paid;
            Ok(Response::new(paid_response(gateway, &paid)))
        }
        NoticeEnd::Declined(reason) => Err(status
            .unwrap_or_else(|| precondition("BILLER_REJECTED", "slip.barcodes", reason.clone()))),
        NoticeEnd::Unknown(_) => Err(notice_outcome_unknown(&record.id)),
    }
}

/// The status a rejection code means to the POS, naming the field.
fn rejection_status(biller_id: &str, code: Option<NoticeRejectCode>, reference: &str) -> Status {
    match code {
        Some(NoticeRejectCode::BillNotFound) => refused(
            "BILL_NOT_FOUND",
            format!("biller {biller_id} does not know bill {reference}"),
        ),
        Some(NoticeRejectCode::AlreadyPaid) => refused(
            "BILL_ALREADY_PAID",
            format!("biller {biller_id} says bill {reference} is already paid"),
        ),
        Some(NoticeRejectCode::AmountMismatch) => invalid_field(
            "amount.amount_minor",
            format!("biller {biller_id} says the amount does not match bill {reference}"),
        ),
        Some(NoticeRejectCode::Expired) => refused(
            "BILL_EXPIRED",
            format!("biller {biller_id} says bill {reference} has expired"),
        ),
        Some(NoticeRejectCode::Other) | None => refused(
            "BILLER_REJECTED",
            format!("biller {biller_id} rejected the payment of bill {reference}"),
        ),
    }
}

/// Sends the notice of `record` once (with the client's own retries) and
/// says how it ended, with the status the POS hears for a rejection.
pub async fn notify(
    online: &OnlineBiller,
    record: &TransactionRecord,
) -> (NoticeEnd, Option<Status>) {
    let reference = &record.bill.bill_reference;
    match online.client.notify(&notice_of(record)).await {
        Ok(result) if result.status == NoticeStatus::Accepted => (NoticeEnd::Paid, None),
        Ok(result) => (
            NoticeEnd::Declined(format!(
                "biller rejected the notice: {:?} ({})",
                result.reject_code, result.partner_response_code
            )),
            Some(rejection_status(&online.id, result.reject_code, reference)),
        ),
        Err(BillCallError::Rejected { status, .. }) => (
            NoticeEnd::Declined(format!("biller refused the notice (HTTP {status})")),
            Some(refused(
                "BILLER_REFUSED",
                format!(
                    "biller {} refused the notice of bill {reference} (HTTP {status})",
                    online.id
                ),
            )),
        ),
        Err(BillCallError::Unavailable(reason)) => (
            NoticeEnd::Declined(format!("biller unreachable, nothing sent: {reason}")),
            Some(partner_unavailable(&online.party())),
        ),
        Err(BillCallError::OutcomeUnknown(reason)) => (NoticeEnd::Unknown(reason), None),
    }
}

/// PayBill for an online biller, after the local checks: ask the biller,
/// record `in_progress`, notify, record the answer.
#[allow(clippy::too_many_arguments)]
pub async fn pay(
    gateway: &Gateway,
    online: &OnlineBiller,
    bill: &ReadBill<'_>,
    mut record: TransactionRecord,
    key: IdempotencyKey,
    fingerprint: RequestFingerprint,
    amount_minor: u64,
) -> Result<Response<pb::PayBillResponse>, Status> {
    let remote = inquire(online, bill, &record.store_id, &record.terminal_id).await?;
    let remote_minor = remote_amount_minor(&remote);
    if amount_minor != remote_minor {
        return Err(invalid_field(
            "amount.amount_minor",
            format!(
                "cash collected ({amount_minor}) must equal the amount biller {} holds for the bill ({remote_minor})",
                online.id
            ),
        ));
    }
    let now = record.created_at;
    record.status = TransactionStatus::InProgress;
    let write = BillWrite {
        transaction_id: record.id.clone(),
        at: now,
        key: Some(KeyOp::Claim {
            key: key.clone(),
            fingerprint: fingerprint.clone(),
            expires_at: now + gateway.retention,
        }),
        change: Change::Create(Box::new(record.clone())),
        lines: Vec::new(),
        business_date: record.business_date,
        event: Event {
            event_type: "bill_notice_sent".to_owned(),
            from_status: None,
            to_status: TransactionStatus::InProgress,
            actor: format!("terminal:{}/{}", record.store_id, record.terminal_id),
            detail: format!("payment notice to biller {}", online.id),
        },
        enqueue: Vec::new(),
        acked: Vec::new(),
    };
    match gateway
        .db
        .write_bill(write)
        .await
        .map_err(|error| from_store_error(&error))?
    {
        WriteOutcome::Written => {}
        WriteOutcome::KeyTaken(answer) => {
            return replay_or_pending(&answer, &fingerprint, &key.client_request_id);
        }
        other => {
            tracing::error!(?other, "a new online bill payment met a guard");
            return Err(Status::internal("could not record the payment"));
        }
    }
    let (end, status) = notify(online, &record).await;
    match settle(gateway, &record, &end, "gateway", Vec::new()).await? {
        WriteOutcome::Written => answer_of(gateway, &record, &end, status),
        other => {
            // Someone else (the worker) settled it first: answer what is stored.
            tracing::warn!(transaction_id = %record.id, ?other, "notice settled elsewhere");
            let stored = gateway
                .db
                .answer(&key)
                .await
                .map_err(|error| from_store_error(&error))?;
            match stored {
                Some(answer) => replay_or_pending(&answer, &fingerprint, &key.client_request_id),
                None => Err(answer_of(gateway, &record, &end, status)
                    .err()
                    .unwrap_or_else(|| notice_outcome_unknown(&record.id))),
            }
        }
    }
}

/// A deterministic cancel id for a payment (a UUID from its digest), so a
/// retried CancelBill sends the same cancel and the biller applies it once.
fn cancel_id(transaction_id: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("cancel:{transaction_id}").as_bytes());
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// Cancels a paid online bill at the biller before posgate records the
/// cancellation; a refusal or no answer leaves the payment as it was.
pub async fn cancel(online: &OnlineBiller, payment: &TransactionRecord) -> Result<(), Status> {
    let request = BillCancelRequest {
        transaction_id: cancel_id(&payment.id),
        original_transaction_id: payment.id.clone(),
        reason: format!("cancelled at store {}", payment.store_id),
    };
    let subject = "transaction_id";
    match online.client.cancel(&request).await {
        Ok(result) if result.status == CancelStatus::Cancelled => Ok(()),
        Ok(result) => Err(precondition(
            "BILLER_REFUSED_CANCEL",
            subject,
            format!(
                "biller {} refused to cancel payment {}: {:?}",
                online.id, payment.id, result.reject_code
            ),
        )),
        Err(BillCallError::Rejected { status, .. }) => Err(precondition(
            "BILLER_REFUSED_CANCEL",
            subject,
            format!(
                "biller {} refused to cancel payment {} (HTTP {status})",
                online.id, payment.id
            ),
        )),
        Err(error) => {
            tracing::warn!(biller = %online.id, %error, "bill cancel failed");
            Err(partner_unavailable(&online.party()))
        }
    }
}
