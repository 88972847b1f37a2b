//! Online billers: a `[[biller]]` with `mode = "online"` and a `[biller.online]`
//! table is consulted in real time over the signed partner API (the
//! [`Biller`] port): InquireBill asks it for the bill, PayBill notifies it,
//! CancelBill cancels the notice. Batch-only billers never reach this
//! module. Every refusal of the biller is a [`BillError`] naming the field.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::SecondsFormat;
use posgate_partners::bill::BillCallError;
use posgate_partners::bill::api::{
    Bill as RemoteBill, BillCancelRequest, BillInquiryRequest, BillPaymentNotice, BillStatus,
    CancelStatus, NoticeRejectCode, NoticeStatus,
};
use posgate_partners::wallet::api::{Channel, Money};

use super::checks::ReadBill;
use super::config::OnlineBillerConfig;
use super::error::BillError;
use crate::model::Party;
use crate::model::transaction::TransactionRecord;
use crate::ports::partners::Biller;

/// One online biller: its settings and its connector.
#[derive(Debug)]
pub struct OnlineBiller {
    pub id: String,
    pub config: OnlineBillerConfig,
    pub client: Arc<dyn Biller>,
}

impl OnlineBiller {
    /// The settlement and log name of the biller, as for batch billers.
    pub fn party(&self) -> String {
        Party::Biller(self.id.clone()).to_string()
    }
}

/// The online billers the services share, by biller id.
#[derive(Debug, Default)]
pub struct OnlineBillers {
    billers: BTreeMap<String, Arc<OnlineBiller>>,
}

impl OnlineBillers {
    /// The online billers, keyed by their id.
    pub fn new(billers: impl IntoIterator<Item = OnlineBiller>) -> Self {
        Self {
            billers: billers
                .into_iter()
                .map(|biller| (biller.id.clone(), Arc::new(biller)))
                .collect(),
        }
    }

    pub fn get(&self, biller_id: &str) -> Option<&Arc<OnlineBiller>> {
        self.billers.get(biller_id)
    }

    /// Every online biller, by id.
    pub fn all(&self) -> impl Iterator<Item = &Arc<OnlineBiller>> {
        self.billers.values()
    }

    pub fn is_empty(&self) -> bool {
        self.billers.is_empty()
    }

    /// The longest time one call may take, all attempts and backoff
    /// included: past it, an `in_progress` notice has lost its caller.
    pub fn longest_call(&self) -> Duration {
        self.billers
            .values()
            .map(|biller| biller.client.longest_call())
            .max()
            .unwrap_or(Duration::from_secs(30))
    }
}

/// A `BILLER_*` precondition naming the slip (the bill the biller refuses).
fn refused(kind: &'static str, description: String) -> BillError {
    BillError::refused(kind, "slip.barcodes", description)
}

/// The bill as the biller holds it; every refusal is an error naming the
/// field, and a biller that cannot answer is `PartnerUnavailable` (nothing stored).
pub async fn inquire(
    online: &OnlineBiller,
    bill: &ReadBill<'_>,
    store_id: &str,
    terminal_id: &str,
) -> Result<RemoteBill, BillError> {
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
            Err(BillError::PartnerUnavailable {
                partner: online.party(),
            })
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

/// How a notice ended, for [`super::service::BillService::record_notice_end`].
#[derive(Debug)]
pub enum NoticeEnd {
    /// The biller accepted: the payment is `paid`, its key answered.
    Paid,
    /// The biller rejected it or never got it: `declined`, key released, no lines.
    Declined(String),
    /// Still unknown: queue (or keep) an advice to resolve it.
    Unknown(String),
}

/// The error a rejection code means to the POS, naming the field.
fn rejection(biller_id: &str, code: Option<NoticeRejectCode>, reference: &str) -> BillError {
    match code {
        Some(NoticeRejectCode::BillNotFound) => refused(
            "BILL_NOT_FOUND",
            format!("biller {biller_id} does not know bill {reference}"),
        ),
        Some(NoticeRejectCode::AlreadyPaid) => refused(
            "BILL_ALREADY_PAID",
            format!("biller {biller_id} says bill {reference} is already paid"),
        ),
        Some(NoticeRejectCode::AmountMismatch) => BillError::invalid(
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
/// says how it ended, with the error the POS hears for a rejection.
pub async fn notify(
    online: &OnlineBiller,
    record: &TransactionRecord,
) -> (NoticeEnd, Option<BillError>) {
    let reference = &record.bill.bill_reference;
    match online.client.notify(&notice_of(record)).await {
        Ok(result) if result.status == NoticeStatus::Accepted => (NoticeEnd::Paid, None),
        Ok(result) => (
            NoticeEnd::Declined(format!(
                "biller rejected the notice: {:?} ({})",
                result.reject_code, result.partner_response_code
            )),
            Some(rejection(&online.id, result.reject_code, reference)),
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
            Some(BillError::PartnerUnavailable {
                partner: online.party(),
            }),
        ),
        Err(BillCallError::OutcomeUnknown(reason)) => (NoticeEnd::Unknown(reason), None),
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
pub async fn cancel(online: &OnlineBiller, payment: &TransactionRecord) -> Result<(), BillError> {
    let request = BillCancelRequest {
        transaction_id: cancel_id(&payment.id),
        original_transaction_id: payment.id.clone(),
        reason: format!("cancelled at store {}", payment.store_id),
    };
    let subject = "transaction_id";
    match online.client.cancel(&request).await {
        Ok(result) if result.status == CancelStatus::Cancelled => Ok(()),
        Ok(result) => Err(BillError::refused(
            "BILLER_REFUSED_CANCEL",
            subject,
            format!(
                "biller {} refused to cancel payment {}: {:?}",
                online.id, payment.id, result.reject_code
            ),
        )),
        Err(BillCallError::Rejected { status, .. }) => Err(BillError::refused(
            "BILLER_REFUSED_CANCEL",
            subject,
            format!(
                "biller {} refused to cancel payment {} (HTTP {status})",
                online.id, payment.id
            ),
        )),
        Err(error) => {
            tracing::warn!(biller = %online.id, %error, "bill cancel failed");
            Err(BillError::PartnerUnavailable {
                partner: online.party(),
            })
        }
    }
}
