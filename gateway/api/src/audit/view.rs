//! Store rows as auditors see them: `TransactionSummary` and
//! `TransactionEvent`, and the mapping of the proto's types and statuses
//! back to store terms for filters.

use chrono::{DateTime, Utc};
use posgate_core::model::Actor;
use posgate_proto::v1 as pb;

use crate::payments::card::brand_from_name;
use crate::payments::view::timestamp;
use posgate_core::model::chain::ChainEntry;
use posgate_core::ports::db::audit::{KindMatch, TransactionRow};

/// The proto type of a stored transaction.
pub fn transaction_type(kind: &str, card_type: Option<&str>) -> pb::TransactionType {
    match (kind, card_type) {
        ("bill_payment", _) => pb::TransactionType::BillPayment,
        ("card_payment", Some("authorization")) => pb::TransactionType::CardAuthorization,
        ("card_payment", Some("sale")) => pb::TransactionType::CardSale,
        ("card_payment", Some("refund")) => pb::TransactionType::CardRefund,
        _ => pb::TransactionType::Unspecified,
    }
}

/// The store kinds a proto type matches; `None` for types posgate does not
/// record yet (wallets, card verifications), which match nothing.
pub fn kind_match(kind: pb::TransactionType) -> Option<KindMatch> {
    let card = |card_type| {
        Some(KindMatch {
            kind: "card_payment",
            card_type: Some(card_type),
        })
    };
    match kind {
        pb::TransactionType::BillPayment => Some(KindMatch {
            kind: "bill_payment",
            card_type: None,
        }),
        pb::TransactionType::CardAuthorization => card("authorization"),
        pb::TransactionType::CardSale => card("sale"),
        pb::TransactionType::CardRefund => card("refund"),
        _ => None,
    }
}

/// Store statuses and their proto names (one to one today).
const STATUSES: [(&str, pb::TransactionStatus); 11] = [
    ("in_progress", pb::TransactionStatus::InProgress),
    ("authorized", pb::TransactionStatus::Authorized),
    ("captured", pb::TransactionStatus::Captured),
    ("paid", pb::TransactionStatus::Paid),
    ("declined", pb::TransactionStatus::Declined),
    ("pending_reversal", pb::TransactionStatus::PendingReversal),
    ("reversed", pb::TransactionStatus::Reversed),
    ("voided", pb::TransactionStatus::Voided),
    ("expired", pb::TransactionStatus::Expired),
    ("cancelled", pb::TransactionStatus::Cancelled),
    ("capture_refused", pb::TransactionStatus::CaptureRefused),
];

pub fn status(store_status: &str) -> pb::TransactionStatus {
    STATUSES
        .iter()
        .find(|(name, _)| *name == store_status)
        .map_or(pb::TransactionStatus::Unspecified, |(_, status)| *status)
}

/// The store status a proto status matches; `None` for statuses posgate
/// does not record yet (VERIFIED, COMPLETED).
pub fn store_status(status: pb::TransactionStatus) -> Option<&'static str> {
    STATUSES
        .iter()
        .find(|(_, candidate)| *candidate == status)
        .map(|(name, _)| *name)
}

/// Parses an entry's canonical time (always valid when written by posgate).
pub fn parse_time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).map_or(DateTime::UNIX_EPOCH, |at| at.with_timezone(&Utc))
}

pub fn summary(row: &TransactionRow) -> pb::TransactionSummary {
    let money = |amount_minor| {
        Some(pb::Money {
            amount_minor,
            currency: row.currency.clone(),
        })
    };
    pb::TransactionSummary {
        transaction_id: row.id.clone(),
        r#type: transaction_type(&row.kind, row.card_type.as_deref()).into(),
        status: status(&row.status).into(),
        store_id: row.store_id.clone(),
        terminal_id: row.terminal_id.clone(),
        operator_id: row.operator_id.clone(),
        partner_id: row.partner_id.clone(),
        amount: money(row.amount_minor),
        fee: money(row.fee_minor),
        business_date: posgate_core::model::business_day::format_date(row.business_date),
        created_at: Some(timestamp(row.created_at)),
        updated_at: Some(timestamp(parse_time(&row.updated_at))),
        masked_pan: row.masked_pan.clone().unwrap_or_default(),
        client_request_id: row.client_request_id.clone(),
        card_brand: row
            .card_brand
            .as_deref()
            .map_or(pb::CardBrand::Unspecified, brand_from_name)
            .into(),
        original_transaction_id: row.original_transaction_id.clone().unwrap_or_default(),
        parent_transaction_id: String::new(),
        first_sequence: row.first_sequence,
        last_sequence: row.last_sequence,
    }
}

/// The `posgate.v1` type an auditor sees for a stored event type (one of
/// [`STORED_EVENT_TYPES`](posgate_core::model::event::STORED_EVENT_TYPES),
/// which the store enforces); `UNSPECIFIED` for any other text.
pub fn event_type(stored: &str) -> pb::TransactionEventType {
    use pb::TransactionEventType as E;
    match stored {
        "received" => E::Received,
        "sent" | "bill_notice_sent" => E::Sent,
        // "completed": a wallet operator completed the request;
        // "reversal_refused": the operator refused to reverse a credit
        // already spent, so it stands.
        "approved" | "completed" | "reversal_refused" => E::Approved,
        "declined" | "not_sent" | "bill_rejected" => E::Declined,
        "outcome_unknown" => E::OutcomeUnknown,
        "reversal_sent" => E::ReversalSent,
        "reversed" | "reversal_acknowledged" => E::Reversed,
        "captured" => E::Captured,
        "voided" => E::Voided,
        "expired" => E::Expired,
        "refunded" => E::Refunded,
        "bill_paid" => E::Paid,
        "bill_cancelled" => E::Cancelled,
        // A saga step being undone (wallet credit) or undone (card SALE).
        "compensating" | "compensated" => E::Compensated,
        // A refused capture advice is the bank's answer to it; its to_status
        // (CAPTURE_REFUSED) and details (the response code) say it refused.
        "advice_acknowledged" | "capture_refused" => E::AdviceAcknowledged,
        _ => E::Unspecified,
    }
}

/// Who caused an event, from the stored actor text.
pub fn actor(stored: &str, to_status_of: &str) -> pb::Actor {
    let parts: Vec<&str> = stored.split('/').collect();
    if let ["store", store, "terminal", terminal, "operator", cashier] = parts.as_slice() {
        return pb::Actor {
            kind: pb::ActorKind::Terminal.into(),
            id: format!("spiffe://posgate/store/{store}/terminal/{terminal}"),
            cashier_operator_id: (*cashier).to_owned(),
        };
    }
    if let ["store", store, "terminal", terminal] = parts.as_slice() {
        return pb::Actor {
            kind: pb::ActorKind::Terminal.into(),
            id: format!("spiffe://posgate/store/{store}/terminal/{terminal}"),
            cashier_operator_id: String::new(),
        };
    }
    let (kind, id) = match Actor::parse(stored) {
        Actor::Terminal {
            store_id,
            terminal_id,
        } => (
            pb::ActorKind::Terminal,
            format!("spiffe://posgate/store/{store_id}/terminal/{terminal_id}"),
        ),
        Actor::Bank => (pb::ActorKind::Partner, to_status_of.to_owned()),
        Actor::Worker(worker) => (
            pb::ActorKind::Gateway,
            format!("{}@posgate", worker.as_str()),
        ),
        Actor::Caller(id) if id.starts_with("spiffe://") => (pb::ActorKind::Terminal, id),
        Actor::Caller(id) => (pb::ActorKind::Gateway, id),
    };
    pb::Actor {
        kind: kind.into(),
        id,
        cashier_operator_id: String::new(),
    }
}

/// One chain entry of a transaction as a `TransactionEvent`; `partner_id`
/// names the partner when the bank answered.
pub fn event(entry: &ChainEntry, partner_id: &str) -> pb::TransactionEvent {
    let content = &entry.content;
    let to = content
        .to_status
        .as_deref()
        .map_or(pb::TransactionStatus::Unspecified, status);
    let from = content
        .from_status
        .as_deref()
        .map_or(pb::TransactionStatus::Unspecified, status);
    let mut details = std::collections::HashMap::new();
    details.insert("event".to_owned(), content.event_type.clone());
    if !content.detail.is_empty() {
        let mut detail = content.detail.clone();
        truncate_chars(&mut detail, 1000);
        details.insert("detail".to_owned(), detail);
    }
    pb::TransactionEvent {
        sequence: entry.sequence,
        event_type: event_type(&content.event_type).into(),
        from_status: from.into(),
        to_status: to.into(),
        occurred_at: Some(timestamp(parse_time(&content.occurred_at))),
        actor: Some(actor(&content.actor, partner_id)),
        details,
        entry_hash_hex: hex::encode(&entry.entry_hash),
    }
}

/// Cuts `text` to at most `max` characters.
pub fn truncate_chars(text: &mut String, max: usize) {
    if let Some((index, _)) = text.char_indices().nth(max) {
        text.truncate(index);
    }
}

#[cfg(test)]
mod tests {
    use posgate_core::model::event::{STORED_EVENT_TYPES, is_stored_event_type};

    use super::*;

    /// Every stored event type maps to a proto type other than UNSPECIFIED;
    /// an unknown one maps to UNSPECIFIED (and the store refuses it).
    #[test]
    fn every_stored_event_type_is_mapped() {
        for name in STORED_EVENT_TYPES {
            assert_ne!(
                event_type(name),
                pb::TransactionEventType::Unspecified,
                "{name}"
            );
        }
        assert_eq!(event_type("made_up"), pb::TransactionEventType::Unspecified);
        assert!(!is_stored_event_type("made_up"));
    }
}
