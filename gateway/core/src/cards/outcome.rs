//! A card transaction's records: the draft every new one starts from, and
//! the outcome state machine that turns the bank's answer into the write
//! that records it (approved, declined, outcome unknown, not sent).

use chrono::{DateTime, Utc};
use posgate_partners::bank::protocol::FinancialResponse;

use super::iso::{BankOutcome, card_type_mti};
use super::payments::{bank_terminal_id, card_lines, rrn_for};
use super::saf::reversal_of;
use crate::model::Actor;
use crate::model::card::{CardRecord, CardRouteKind, CardType};
use crate::model::transaction::{Event, SettlementLine, TransactionStatus};
use crate::model::{IdempotencyKey, RequestContext};
use crate::ports::db::{CardChange, CardUpdate, CardWrite, KeyOp, RefundAdjust};

/// What every new card transaction starts from.
#[derive(Debug)]
pub struct Draft<'a> {
    pub context: &'a RequestContext,
    pub id: &'a uuid::Uuid,
    pub card_type: CardType,
    /// From [`super::Payments::next_stan`].
    pub stan: String,
    pub link_id: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub business_date: chrono::NaiveDate,
    pub now: DateTime<Utc>,
}

/// A new card transaction, in progress, with its trace numbers; the caller
/// fills in the card's details.
pub fn draft(draft: &Draft<'_>) -> CardRecord {
    let context = draft.context;
    CardRecord {
        id: draft.id.to_string(),
        card_type: draft.card_type,
        status: TransactionStatus::InProgress,
        store_id: context.store_id.clone(),
        terminal_id: context.terminal_id.clone(),
        operator_id: context.operator_id.clone(),
        client_request_id: context.client_request_id.clone(),
        link_id: draft.link_id.to_owned(),
        amount_minor: draft.amount,
        currency: draft.currency.to_owned(),
        business_date: draft.business_date,
        created_at: draft.now,
        updated_at: draft.now,
        route: CardRouteKind::Acquirer,
        masked_pan: String::new(),
        pan_fingerprint: String::new(),
        card_brand: String::new(),
        entry_mode: String::new(),
        cardholder_verification: "none".to_owned(),
        merchant_id: String::new(),
        bank_terminal_id: bank_terminal_id(&context.store_id, &context.terminal_id),
        stan: draft.stan.clone(),
        rrn: rrn_for(draft.id),
        transmitted_at: draft.now,
        request_mti: card_type_mti(draft.card_type).to_owned(),
        response_code: String::new(),
        approval_code: String::new(),
        captured_minor: 0,
        refunded_minor: 0,
        refund_reserved_minor: 0,
        loyalty_points: None,
        loyalty_balance: None,
        original_transaction_id: None,
        pos_reference: String::new(),
        authorization_expires_at: None,
        advice_pending: false,
    }
}

/// The record after the bank's outcome, and the write that records it.
#[derive(Debug)]
pub struct PlannedOutcome {
    pub record: CardRecord,
    pub write: CardWrite,
}

/// Plans the write of a financial request's outcome: the state it moves
/// to, its settlement lines, refund adjustment and queued reversal, and the
/// key's answer or release. `answer` encodes the POS answer from the
/// updated record (for the key).
pub fn plan_outcome(
    record: &CardRecord,
    outcome: &BankOutcome,
    key: &IdempotencyKey,
    now: DateTime<Utc>,
    hold: std::time::Duration,
    answer: &(dyn Fn(&CardRecord) -> Vec<u8> + Sync),
) -> PlannedOutcome {
    let mut settled = record.clone();
    settled.updated_at = now;
    let mut update = CardUpdate {
        transaction_id: record.id.clone(),
        from: Some(TransactionStatus::InProgress),
        ..CardUpdate::default()
    };
    let mut lines = Vec::new();
    let mut enqueue = Vec::new();
    let mut refund = None;
    let refund_of = |reserve: i64, refunded: i64| {
        record
            .original_transaction_id
            .clone()
            .map(|original_id| RefundAdjust {
                original_id,
                reserve_delta: reserve,
                refunded_delta: refunded,
            })
    };
    let (event_type, detail) = match outcome {
        BankOutcome::Answered(response) => {
            let code = response.response_code.as_str().to_owned();
            settled.response_code.clone_from(&code);
            update.response_code = Some(code.clone());
            if response.response_code.is_approved() {
                (lines, refund) = approve(record, response, &mut settled, &mut update, hold, now);
                ("approved", format!("response code {code}"))
            } else {
                settled.status = TransactionStatus::Declined;
                if record.card_type == CardType::Refund {
                    refund = refund_of(-record.amount_minor, 0);
                }
                ("declined", format!("response code {code}"))
            }
        }
        BankOutcome::Unknown(reason) => {
            settled.status = TransactionStatus::PendingReversal;
            settled.advice_pending = true;
            update.advice_pending = Some(true);
            enqueue.push(reversal_of(record, now));
            ("outcome_unknown", reason.clone())
        }
        BankOutcome::NotSent(reason) | BankOutcome::NotBuilt(reason) => {
            settled.status = TransactionStatus::Declined;
            if record.card_type == CardType::Refund {
                refund = refund_of(-record.amount_minor, 0);
            }
            ("not_sent", reason.clone())
        }
    };
    update.to = Some(settled.status);
    let key_op = match outcome {
        BankOutcome::Answered(_) => Some(KeyOp::Answer {
            key: key.clone(),
            response: answer(&settled),
        }),
        BankOutcome::Unknown(_) => None,
        BankOutcome::NotSent(_) | BankOutcome::NotBuilt(_) => {
            Some(KeyOp::Release { key: key.clone() })
        }
    };
    let write = CardWrite {
        transaction_id: record.id.clone(),
        at: now,
        key: key_op,
        change: CardChange::Update(update),
        refund,
        lines,
        business_date: record.business_date,
        event: Event::new(
            event_type,
            Some(TransactionStatus::InProgress),
            settled.status,
            &Actor::Bank.to_string(),
            detail,
        ),
        enqueue,
        acked: Vec::new(),
    };
    PlannedOutcome {
        record: settled,
        write,
    }
}

/// Applies an approval to the settled record and its update; returns the
/// settlement lines and the refund adjustment it brings.
fn approve(
    record: &CardRecord,
    response: &FinancialResponse,
    settled: &mut CardRecord,
    update: &mut CardUpdate,
    hold: std::time::Duration,
    now: DateTime<Utc>,
) -> (Vec<SettlementLine>, Option<RefundAdjust>) {
    settled.approval_code = response.approval_code.clone().unwrap_or_default();
    update.approval_code = Some(settled.approval_code.clone());
    if let Some(loyalty) = &response.loyalty {
        settled.loyalty_points = Some(loyalty.points_earned);
        settled.loyalty_balance = Some(loyalty.balance_points);
        update.loyalty = Some((loyalty.points_earned, Some(loyalty.balance_points)));
    }
    if record.card_type == CardType::Authorization {
        settled.status = TransactionStatus::Authorized;
        let expires = now + chrono::Duration::from_std(hold).unwrap_or_default();
        settled.authorization_expires_at = Some(expires);
        update.authorization_expires_at = Some(Some(expires));
        return (Vec::new(), None);
    }
    settled.status = TransactionStatus::Captured;
    settled.captured_minor = record.amount_minor;
    update.captured_minor = Some(record.amount_minor);
    match &record.original_transaction_id {
        Some(original_id) if record.card_type == CardType::Refund => (
            card_lines(record, -record.amount_minor, "card_refund"),
            Some(RefundAdjust {
                original_id: original_id.clone(),
                reserve_delta: -record.amount_minor,
                refunded_delta: record.amount_minor,
            }),
        ),
        _ => (card_lines(record, record.amount_minor, "card_sale"), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::db::SafKind;

    fn context() -> RequestContext {
        RequestContext {
            store_id: "S001".to_owned(),
            terminal_id: "T01".to_owned(),
            operator_id: "op".to_owned(),
            client_request_id: "req-1".to_owned(),
            actor: "spiffe://test/pos".to_owned(),
        }
    }

    fn record(card_type: CardType) -> CardRecord {
        let now = Utc::now();
        let mut record = draft(&Draft {
            context: &context(),
            id: &uuid::Uuid::now_v7(),
            card_type,
            stan: "000001".to_owned(),
            link_id: "acq",
            amount: 1_500,
            currency: "USD",
            business_date: now.date_naive(),
            now,
        });
        if card_type == CardType::Refund {
            record.original_transaction_id = Some("original".to_owned());
        }
        record
    }

    fn key() -> IdempotencyKey {
        IdempotencyKey {
            store_id: "S001".to_owned(),
            terminal_id: "T01".to_owned(),
            client_request_id: "req-1".to_owned(),
        }
    }

    fn plan(record: &CardRecord, outcome: &BankOutcome) -> PlannedOutcome {
        let hold = std::time::Duration::from_secs(3600);
        plan_outcome(record, outcome, &key(), Utc::now(), hold, &|_| {
            b"answer".to_vec()
        })
    }

    /// A draft starts in progress with the trace numbers of its type.
    #[test]
    fn draft_is_in_progress_with_its_trace_numbers() {
        let record = record(CardType::Authorization);
        assert_eq!(record.status, TransactionStatus::InProgress);
        assert_eq!(record.request_mti, "0100");
        assert_eq!(record.rrn.len(), 12);
        assert_eq!(record.bank_terminal_id, "S001T01 ");
    }

    /// No usable answer: the sale is pending reversal, a reversal is queued,
    /// and the key stays claimed (a retry hears "outcome unknown").
    #[test]
    fn unknown_outcome_queues_a_reversal_and_keeps_the_key() {
        let record = record(CardType::Sale);
        let planned = plan(&record, &BankOutcome::Unknown("timeout".to_owned()));
        assert_eq!(planned.record.status, TransactionStatus::PendingReversal);
        assert!(planned.record.advice_pending);
        assert!(planned.write.key.is_none());
        assert!(planned.write.lines.is_empty());
        assert_eq!(planned.write.enqueue.len(), 1);
        assert_eq!(planned.write.enqueue[0].kind, SafKind::Reversal);
        assert_eq!(planned.write.enqueue[0].amount_minor, 1_500);
        assert_eq!(planned.write.event.event_type, "outcome_unknown");
    }

    /// Never sent: a refund is declined, its reservation released, and the
    /// key released so that a retry may try again.
    #[test]
    fn refund_not_sent_releases_its_reservation_and_key() {
        let record = record(CardType::Refund);
        let planned = plan(&record, &BankOutcome::NotSent("link down".to_owned()));
        assert_eq!(planned.record.status, TransactionStatus::Declined);
        assert!(matches!(planned.write.key, Some(KeyOp::Release { .. })));
        let refund = planned.write.refund.expect("reservation released");
        assert_eq!(refund.original_id, "original");
        assert_eq!((refund.reserve_delta, refund.refunded_delta), (-1_500, 0));
        assert!(planned.write.enqueue.is_empty());
        assert!(planned.write.lines.is_empty());
    }
}
