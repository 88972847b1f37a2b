//! The bill application service: one function per RPC of
//! `BillPaymentService` (InquireBill, PayBill, CancelBill, GetBillPayment),
//! for batch and online billers alike.
//!
//! A batch biller's payment or cancellation is one atomic commit with its
//! answer under the key. An online biller's payment follows the wallet
//! path: the bill is asked for first (a decline there stores nothing), then
//! the payment is recorded `in_progress` with its key claimed, then the
//! biller is notified, then its answer is committed with the key's answer
//! before the POS hears it. No answer: an `advice` entry is queued in the
//! same commit and the POS hears `OutcomeUnknown`; the bill worker
//! ([`super::saf`]) resolves the notice and records the final answer, which
//! a retry replays.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};

use super::BillerRegistry;
use super::checks::{ReadBill, SlipInput, check_fee, read_bill};
use super::error::BillError;
use super::online::{self, NoticeEnd, OnlineBiller, OnlineBillers, remote_amount_minor};
use super::plan::{payment_lines, plan_cancel, plan_payment};
use crate::model::Actor;
use crate::model::bill::BillPayment;
use crate::model::business_day::{BusinessCalendar, StoreConfig, format_date};
use crate::model::clock::Clock;
use crate::model::idempotency::{Answered, FingerprintBuilder, differing_fields};
use crate::model::money::Currency;
use crate::model::transaction::{Event, SettlementLine, TransactionRecord, TransactionStatus};
use crate::model::{IdempotencyKey, RequestContext, RequestFingerprint, StoredAnswer};
use crate::ports::answers::BillAnswers;
use crate::ports::db::{
    BillWrite, Change, Database, KeyOp, NewSafItem, SafKind, StatusChange, StoreError,
    WriteOutcome, WriteRequest,
};

/// An InquireBill request, read and checked for shape.
#[derive(Debug)]
pub struct InquireInput {
    pub context: RequestContext,
    pub slip: SlipInput,
}

/// A PayBill request: the slip and the cash collected.
#[derive(Debug)]
pub struct PayInput {
    pub context: RequestContext,
    pub slip: SlipInput,
    pub amount_minor: u64,
    pub currency: Currency,
}

/// A CancelBill request.
#[derive(Debug)]
pub struct CancelInput {
    pub context: RequestContext,
    pub transaction_id: String,
    /// The reason as sent (compared by retries); recorded trimmed.
    pub reason: String,
}

/// How `GetBillPayment` names the payment.
#[derive(Debug)]
pub enum PaymentLookup {
    Id(String),
    /// The `client_request_id` of the PayBill that made it, at the caller's terminal.
    PaidBy(String),
}

/// A bill as InquireBill reports it: read from the slip, with the amount
/// and due date an online biller holds.
#[derive(Debug, Clone)]
pub struct InquiredBill {
    pub biller_id: String,
    pub biller_name: String,
    pub agency_code: String,
    pub bill_reference: String,
    /// `YYYY-MM-DD`, empty when the slip has none.
    pub due_date: String,
    pub amount_minor: i64,
    pub currency: String,
    pub period: String,
    pub late: bool,
    /// The store's business date now.
    pub business_date: NaiveDate,
}

/// Everything a batch commit writes, with the answer it stores.
struct Commit {
    key: IdempotencyKey,
    fingerprint: RequestFingerprint,
    transaction_id: String,
    change: Change,
    lines: Vec<SettlementLine>,
    event: Event,
    response: Vec<u8>,
    /// A new batch-biller payment claims its slip ([`WriteRequest::claims_slip`]).
    claims_slip: bool,
}

/// How a commit ended, short of an error.
enum Committed {
    Written,
    /// A duplicate took the key first: its answer, for this retry.
    Replayed(StoredAnswer),
    /// A guarded transition found the transaction in another state.
    StatusMismatch,
}

/// The bill service, over the database, the biller registry, the online
/// billers' connectors and the answers' encoding.
#[derive(Debug)]
pub struct BillService {
    db: Arc<dyn Database>,
    billers: BillerRegistry,
    online: Arc<OnlineBillers>,
    answers: Arc<dyn BillAnswers>,
    stores: BTreeMap<String, StoreConfig>,
    retention: chrono::Duration,
    clock: Arc<dyn Clock>,
}

/// The fields a `PayBill` retry must repeat exactly (the key fields and
/// `pos_timestamp` are not compared).
fn pay_fingerprint(input: &PayInput) -> RequestFingerprint {
    let barcodes: Vec<&[u8]> = input.slip.barcodes.iter().map(String::as_bytes).collect();
    // The API's amount is an int64; a positive amount has the same eight
    // big-endian bytes as u64, so fingerprints stay comparable with those stored.
    FingerprintBuilder::new("PayBill")
        .value("context.operator_id", &input.context.operator_id)
        .field("slip.barcodes", &barcodes)
        .value(
            "slip.biller_id",
            input.slip.biller_id.as_deref().unwrap_or_default(),
        )
        .value("amount.amount_minor", input.amount_minor.to_be_bytes())
        .value("amount.currency", input.currency.code)
        .finish()
}

/// A retry's answer: the stored response if it is the same request;
/// `OutcomeUnknown` while the first request's notice is unresolved.
fn answer_for_retry(
    answer: StoredAnswer,
    fingerprint: &RequestFingerprint,
    client_request_id: &str,
) -> Result<StoredAnswer, BillError> {
    let differing = differing_fields(&answer.fingerprint, fingerprint);
    if !differing.is_empty() {
        return Err(BillError::KeyReused {
            client_request_id: client_request_id.to_owned(),
            differing,
        });
    }
    if answer.pending {
        return Err(BillError::OutcomeUnknown {
            transaction_id: answer.transaction_id,
        });
    }
    Ok(answer)
}

/// A change of an online payment out of `in_progress`.
fn from_in_progress(
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

impl BillService {
    pub fn new(
        db: Arc<dyn Database>,
        billers: BillerRegistry,
        online: Arc<OnlineBillers>,
        answers: Arc<dyn BillAnswers>,
        stores: BTreeMap<String, StoreConfig>,
        retention: chrono::Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            db,
            billers,
            online,
            answers,
            stores,
            retention,
            clock,
        }
    }

    /// The online billers' connectors.
    pub fn online(&self) -> &Arc<OnlineBillers> {
        &self.online
    }

    pub(crate) fn db(&self) -> &dyn Database {
        self.db.as_ref()
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The configuration of a store validation found configured.
    fn store_config(&self, store_id: &str) -> &StoreConfig {
        self.stores
            .get(store_id)
            .expect("validation checked the store is configured")
    }

    /// A biller's display name; empty when it is no longer configured.
    fn biller_name(&self, biller_id: &str) -> String {
        self.billers
            .by_id(biller_id)
            .map_or_else(String::new, |biller| biller.name.clone())
    }

    /// A payment as the POS sees it.
    fn payment(&self, record: TransactionRecord) -> BillPayment {
        BillPayment {
            biller_name: self.biller_name(&record.partner_id),
            record,
        }
    }

    /// InquireBill: the bill a slip stands for, as an online biller holds it.
    pub async fn inquire_bill(&self, input: InquireInput) -> Result<InquiredBill, BillError> {
        let now = self.clock.now();
        let InquireInput { context, slip } = input;
        let store = self.store_config(&context.store_id);
        let bill = read_bill(&self.billers, store, &slip, now)?;
        let mut inquired = InquiredBill {
            biller_id: bill.biller.id.clone(),
            biller_name: bill.biller.name.clone(),
            agency_code: bill.slip.agency_code.clone(),
            bill_reference: bill.slip.bill_reference.clone(),
            due_date: if bill.slip.has_due_date() {
                format_date(bill.slip.due_date)
            } else {
                String::new()
            },
            amount_minor: i64::try_from(bill.amount_minor).expect("amounts are bounded"),
            currency: bill.biller.currency.code.to_owned(),
            period: bill.slip.period.clone().unwrap_or_default(),
            late: bill.late,
            business_date: BusinessCalendar::from(store).business_date(now),
        };
        if let Some(online) = self.online.get(&bill.biller.id) {
            // The biller is the authority on amount and due date.
            let remote =
                online::inquire(online, &bill, &context.store_id, &context.terminal_id).await?;
            inquired.amount_minor = remote.amount.amount_minor;
            inquired.currency = remote.amount.currency;
            if let Some(due_date) = remote.due_date {
                inquired.due_date = due_date;
            }
        }
        Ok(inquired)
    }

    /// PayBill: cash collected for a slip, recorded (and for an online
    /// biller, notified) once per key.
    ///
    /// A new request costs one trip to the writer: the write claims the key,
    /// and a retry finds it taken and gets the first answer back. The key is
    /// read first only where that saves more than it costs: before an online
    /// biller's notice, and when the request is refused (a retry of a
    /// payment made before the slip fell due, say, still gets its answer).
    pub async fn pay_bill(&self, input: PayInput) -> Result<Answered<BillPayment>, BillError> {
        let fingerprint = pay_fingerprint(&input);
        let key = input.context.idempotency_key();
        match self.pay_new(input, &key, &fingerprint).await {
            Err(error @ (BillError::Invalid(_) | BillError::Refused { .. })) => {
                match self.prior(&key, &fingerprint).await? {
                    Some(answer) => Ok(Answered::Replayed(answer)),
                    None => Err(error),
                }
            }
            other => other,
        }
    }

    /// PayBill's checks and write, for a request not known to be a retry.
    async fn pay_new(
        &self,
        input: PayInput,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
    ) -> Result<Answered<BillPayment>, BillError> {
        let now = self.clock.now();
        let PayInput {
            context,
            slip,
            amount_minor,
            currency,
        } = input;
        let store = self.store_config(&context.store_id);
        let mut bill = read_bill(&self.billers, store, &slip, now)?;
        if currency != bill.biller.currency {
            return Err(BillError::invalid(
                "amount.currency",
                format!(
                    "biller {} is paid in {}, not {}",
                    bill.biller.id, bill.biller.currency.code, currency.code
                ),
            ));
        }
        if let Some(online) = self.online.get(&bill.biller.id).cloned() {
            // The biller's amount rules (checked by pay_online); the slip's is advisory.
            bill.amount_minor = amount_minor;
            check_fee(bill.biller, amount_minor)?;
            let plan = plan_payment(
                &bill,
                store,
                &context,
                uuid::Uuid::now_v7().to_string(),
                now,
            );
            if let Some(answer) = self.prior(key, fingerprint).await? {
                return Ok(Answered::Replayed(answer));
            }
            return self
                .pay_online(
                    &online,
                    &bill,
                    plan.record,
                    key.clone(),
                    fingerprint.clone(),
                )
                .await;
        }
        if amount_minor != bill.amount_minor {
            return Err(BillError::invalid(
                "amount.amount_minor",
                format!(
                    "cash collected ({amount_minor}) must equal the slip's amount ({})",
                    bill.amount_minor
                ),
            ));
        }
        let plan = plan_payment(
            &bill,
            store,
            &context,
            uuid::Uuid::now_v7().to_string(),
            now,
        );
        let paid = BillPayment {
            record: plan.record,
            biller_name: bill.biller.name.clone(),
        };
        let committed = self
            .commit(Commit {
                key: key.clone(),
                fingerprint: fingerprint.clone(),
                transaction_id: paid.record.id.clone(),
                change: Change::Create(Box::new(paid.record.clone())),
                lines: plan.lines,
                event: plan.event,
                response: self.answers.paid(&paid),
                claims_slip: !bill.biller.allow_repeat_payment,
            })
            .await?;
        match committed {
            Committed::Written => Ok(Answered::New(paid)),
            Committed::Replayed(answer) => Ok(Answered::Replayed(answer)),
            Committed::StatusMismatch => Err(BillError::Internal(
                "a new payment cannot meet a status mismatch",
            )),
        }
    }

    /// CancelBill: undoes a payment of the current business day (at the
    /// biller first, for an online biller).
    pub async fn cancel_bill(
        &self,
        input: CancelInput,
    ) -> Result<Answered<BillPayment>, BillError> {
        let now = self.clock.now();
        let CancelInput {
            context,
            transaction_id,
            reason,
        } = input;
        let fingerprint = FingerprintBuilder::new("CancelBill")
            .value("context.operator_id", &context.operator_id)
            .value("transaction_id", &transaction_id)
            .value("reason", &reason)
            .finish();
        let key = context.idempotency_key();
        if let Some(answer) = self.prior(&key, &fingerprint).await? {
            return Ok(Answered::Replayed(answer));
        }
        let payment = self.own_payment(&context, &transaction_id).await?;
        let plan = plan_cancel(
            &payment,
            self.store_config(&context.store_id),
            &context,
            reason.trim(),
            now,
        )?;
        if let Some(online) = self.online.get(&payment.partner_id) {
            if payment.status != TransactionStatus::Paid {
                return Err(BillError::refused(
                    "NOT_PAID",
                    "transaction_id",
                    format!(
                        "bill payment {} is {}, not paid: nothing to cancel",
                        payment.id,
                        payment.status.as_str()
                    ),
                ));
            }
            online::cancel(online, &payment).await?;
        }
        let cancelled = self.payment(plan.record);
        let committed = self
            .commit(Commit {
                key,
                fingerprint,
                transaction_id: payment.id.clone(),
                change: Change::Transition(plan.change),
                lines: plan.lines,
                event: plan.event,
                response: self.answers.cancelled(&cancelled),
                claims_slip: false,
            })
            .await?;
        match committed {
            Committed::Written => Ok(Answered::New(cancelled)),
            Committed::Replayed(answer) => Ok(Answered::Replayed(answer)),
            // Another cancel of the same payment won the race.
            Committed::StatusMismatch => Err(BillError::AlreadyCancelled(payment.id)),
        }
    }

    /// GetBillPayment: a payment of the caller's store, by id or by the
    /// PayBill that made it at the caller's terminal.
    pub async fn get_bill_payment(
        &self,
        context: &RequestContext,
        lookup: PaymentLookup,
    ) -> Result<BillPayment, BillError> {
        let transaction_id = match lookup {
            PaymentLookup::Id(id) => id,
            PaymentLookup::PaidBy(client_request_id) => {
                let key = IdempotencyKey {
                    client_request_id,
                    ..context.idempotency_key()
                };
                match self.db.answer(&key).await? {
                    Some(answer) if answer.fingerprint.operation == "PayBill" => {
                        answer.transaction_id
                    }
                    _ => return Err(BillError::NoPaymentForRequest),
                }
            }
        };
        let record = self.own_payment(context, &transaction_id).await?;
        Ok(self.payment(record))
    }

    /// What the first request under a key left behind, for a retry.
    async fn prior(
        &self,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
    ) -> Result<Option<StoredAnswer>, BillError> {
        match self.db.answer(key).await? {
            Some(answer) => answer_for_retry(answer, fingerprint, &key.client_request_id).map(Some),
            None => Ok(None),
        }
    }

    /// Commits a change with its answer under the key, atomically.
    async fn commit(&self, commit: Commit) -> Result<Committed, BillError> {
        let now = self.clock.now();
        let client_request_id = commit.key.client_request_id.clone();
        let request = WriteRequest {
            answer: StoredAnswer {
                fingerprint: commit.fingerprint.clone(),
                transaction_id: commit.transaction_id,
                response: commit.response,
                pending: false,
            },
            key: commit.key,
            created_at: now,
            expires_at: now + self.retention,
            change: commit.change,
            lines: commit.lines,
            event: commit.event,
            claims_slip: commit.claims_slip,
        };
        match self.db.write(request).await? {
            WriteOutcome::Written => Ok(Committed::Written),
            WriteOutcome::KeyTaken(answer) => {
                answer_for_retry(answer, &commit.fingerprint, &client_request_id)
                    .map(Committed::Replayed)
            }
            WriteOutcome::StatusMismatch { .. } => Ok(Committed::StatusMismatch),
            WriteOutcome::RefundExceeds { .. } => Err(BillError::Internal(
                "a bill write reported a card refund guard",
            )),
        }
    }

    /// The payment `transaction_id` of the caller's store, or `NotFound`.
    async fn own_payment(
        &self,
        context: &RequestContext,
        transaction_id: &str,
    ) -> Result<TransactionRecord, BillError> {
        self.db
            .transaction(&context.store_id, transaction_id)
            .await?
            .ok_or_else(|| BillError::NotFound(transaction_id.to_owned()))
    }

    /// PayBill for an online biller, after the local checks: ask the
    /// biller, record `in_progress`, notify, record the answer.
    async fn pay_online(
        &self,
        online: &OnlineBiller,
        bill: &ReadBill<'_>,
        mut record: TransactionRecord,
        key: IdempotencyKey,
        fingerprint: RequestFingerprint,
    ) -> Result<Answered<BillPayment>, BillError> {
        let remote = online::inquire(online, bill, &record.store_id, &record.terminal_id).await?;
        let remote_minor = remote_amount_minor(&remote);
        if bill.amount_minor != remote_minor {
            return Err(BillError::invalid(
                "amount.amount_minor",
                format!(
                    "cash collected ({}) must equal the amount biller {} holds for the bill ({remote_minor})",
                    bill.amount_minor, online.id
                ),
            ));
        }
        record.status = TransactionStatus::InProgress;
        if let Some(answer) = self
            .claim_notice(&record, &key, &fingerprint, online)
            .await?
        {
            return Ok(Answered::Replayed(answer));
        }
        let (end, refusal) = online::notify(online, &record).await;
        match self
            .record_notice_end(&record, &end, "gateway", Vec::new())
            .await?
        {
            WriteOutcome::Written => self.notice_answer(&record, &end, refusal),
            other => {
                // Someone else (the worker) recorded it first: answer what is stored.
                tracing::warn!(transaction_id = %record.id, ?other, "notice recorded elsewhere");
                match self.db.answer(&key).await? {
                    Some(answer) => answer_for_retry(answer, &fingerprint, &key.client_request_id)
                        .map(Answered::Replayed),
                    None => Err(self
                        .notice_answer(&record, &end, refusal)
                        .err()
                        .unwrap_or_else(|| BillError::OutcomeUnknown {
                            transaction_id: record.id.clone(),
                        })),
                }
            }
        }
    }

    /// Records a new online payment as notified, claiming its key. When a
    /// concurrent duplicate took the key first, this request is answered as
    /// its retry: `Some` stored answer, or the retry's error.
    async fn claim_notice(
        &self,
        record: &TransactionRecord,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        online: &OnlineBiller,
    ) -> Result<Option<StoredAnswer>, BillError> {
        let now = record.created_at;
        let write = BillWrite {
            transaction_id: record.id.clone(),
            at: now,
            key: Some(KeyOp::Claim {
                key: key.clone(),
                fingerprint: fingerprint.clone(),
                expires_at: now + self.retention,
            }),
            change: Change::Create(Box::new(record.clone())),
            lines: Vec::new(),
            business_date: record.business_date,
            event: Event::new(
                "bill_notice_sent",
                None,
                TransactionStatus::InProgress,
                &Actor::Terminal {
                    store_id: record.store_id.clone(),
                    terminal_id: record.terminal_id.clone(),
                }
                .to_string(),
                format!("payment notice to biller {}", online.id),
            ),
            enqueue: Vec::new(),
            acked: Vec::new(),
        };
        match self.db.write_bill(write).await? {
            WriteOutcome::Written => Ok(None),
            WriteOutcome::KeyTaken(answer) => {
                answer_for_retry(answer, fingerprint, &key.client_request_id).map(Some)
            }
            other => {
                tracing::error!(?other, "a new online bill payment met a guard");
                Err(BillError::Internal("could not record the payment"))
            }
        }
    }

    /// What the POS hears for a notice's end.
    fn notice_answer(
        &self,
        record: &TransactionRecord,
        end: &NoticeEnd,
        refusal: Option<BillError>,
    ) -> Result<Answered<BillPayment>, BillError> {
        match end {
            NoticeEnd::Paid => {
                let mut paid = record.clone();
                paid.status = TransactionStatus::Paid;
                Ok(Answered::New(self.payment(paid)))
            }
            NoticeEnd::Declined(reason) => Err(refusal.unwrap_or_else(|| {
                BillError::refused("BILLER_REJECTED", "slip.barcodes", reason.clone())
            })),
            NoticeEnd::Unknown(_) => Err(BillError::OutcomeUnknown {
                transaction_id: record.id.clone(),
            }),
        }
    }

    /// Records how a notice ended: `paid` with its lines and answer,
    /// `declined` with the key released, or an advice queued. `acked` are
    /// the queue entries this resolves (the worker's).
    pub(crate) async fn record_notice_end(
        &self,
        record: &TransactionRecord,
        end: &NoticeEnd,
        actor: &str,
        acked: Vec<i64>,
    ) -> Result<WriteOutcome, StoreError> {
        let now = self.clock.now();
        let mut paid = record.clone();
        paid.status = TransactionStatus::Paid;
        paid.updated_at = now;
        let (to, key, lines, enqueue, kind, detail) = match end {
            NoticeEnd::Paid => (
                TransactionStatus::Paid,
                Some(KeyOp::Answer {
                    key: record.idempotency_key(),
                    response: self.answers.paid(&self.payment(paid.clone())),
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
                    key: record.idempotency_key(),
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
            change: from_in_progress(record, to, now),
            lines,
            business_date: record.business_date,
            event: Event::new(kind, Some(TransactionStatus::InProgress), to, actor, detail),
            enqueue,
            acked,
        };
        self.db.write_bill(write).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(amount_minor: u64) -> RequestFingerprint {
        FingerprintBuilder::new("PayBill")
            .value("amount.amount_minor", amount_minor.to_be_bytes())
            .finish()
    }

    fn stored(pending: bool) -> StoredAnswer {
        StoredAnswer {
            fingerprint: fingerprint(100),
            transaction_id: "t1".to_owned(),
            response: if pending { Vec::new() } else { vec![1, 2, 3] },
            pending,
        }
    }

    /// The same request gets the stored answer; another request under the
    /// key is refused naming the field; an unresolved notice is `OutcomeUnknown`.
    #[test]
    fn a_retry_gets_the_stored_answer_or_why_not() {
        let answer = answer_for_retry(stored(false), &fingerprint(100), "r1").expect("replayed");
        assert_eq!(answer.response, vec![1, 2, 3]);
        match answer_for_retry(stored(false), &fingerprint(101), "r1") {
            Err(BillError::KeyReused { differing, .. }) => {
                assert_eq!(differing, vec!["amount.amount_minor".to_owned()]);
            }
            other => panic!("expected KeyReused, got {other:?}"),
        }
        match answer_for_retry(stored(true), &fingerprint(100), "r1") {
            Err(BillError::OutcomeUnknown { transaction_id }) => assert_eq!(transaction_id, "t1"),
            other => panic!("expected OutcomeUnknown, got {other:?}"),
        }
        assert!(matches!(
            answer_for_retry(stored(true), &fingerprint(101), "r1"),
            Err(BillError::KeyReused { .. })
        ));
    }
}
