//! Card records as the POS sees them (`posgate.v1.CardTransaction`), the
//! card service's results as `PaymentService` answers, and
//! [`ProtoCardAnswers`], the core's port for encoding the stored answers.

use chrono::{DateTime, Utc};
use posgate_partners::bank::protocol::ResponseCode;
use posgate_proto::v1 as pb;
use prost::Message as _;

use super::card::{brand_from_name, entry_mode_to_proto};
use posgate_core::cards::card::EntryMode;
use posgate_core::cards::config::CardConfig;
use posgate_core::model::business_day::format_date;
use posgate_core::model::card::{CardRecord, CardRouteKind, CardType};
use posgate_core::model::card::{CardTransaction, RefundResult};
use posgate_core::model::transaction::TransactionStatus;
use posgate_core::ports::answers::CardAnswers;

pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn money(amount_minor: i64, currency: &str) -> pb::Money {
    pb::Money {
        amount_minor,
        currency: currency.to_owned(),
    }
}

pub fn status(status: TransactionStatus) -> pb::CardTransactionStatus {
    match status {
        TransactionStatus::InProgress => pb::CardTransactionStatus::InProgress,
        TransactionStatus::Authorized => pb::CardTransactionStatus::Authorized,
        TransactionStatus::Captured => pb::CardTransactionStatus::Captured,
        TransactionStatus::Declined => pb::CardTransactionStatus::Declined,
        TransactionStatus::PendingReversal => pb::CardTransactionStatus::PendingReversal,
        TransactionStatus::Reversed => pb::CardTransactionStatus::Reversed,
        TransactionStatus::Voided => pb::CardTransactionStatus::Voided,
        TransactionStatus::Expired => pb::CardTransactionStatus::Expired,
        TransactionStatus::CaptureRefused => pb::CardTransactionStatus::CaptureRefused,
        TransactionStatus::Paid | TransactionStatus::Cancelled | TransactionStatus::Completed => {
            pb::CardTransactionStatus::Unspecified
        }
    }
}

fn card_type(card_type: CardType) -> pb::CardTransactionType {
    match card_type {
        CardType::Authorization => pb::CardTransactionType::Authorization,
        CardType::Sale => pb::CardTransactionType::Sale,
        CardType::Refund => pb::CardTransactionType::Refund,
    }
}

/// The cashier's text for a response code; "not sent" answers have no code.
pub fn response_text(code: &str) -> String {
    if code.is_empty() {
        return String::new();
    }
    ResponseCode::parse(code).map_or_else(
        || "Declined by the bank".to_owned(),
        |code| code.cashier_text().to_owned(),
    )
}

/// The record as the POS sees it; `refund_ids` are its refunds, oldest first.
pub fn card_transaction(
    record: &CardRecord,
    refund_ids: Vec<String>,
    config: &CardConfig,
) -> pb::CardTransaction {
    let answered = matches!(
        record.status,
        TransactionStatus::Authorized
            | TransactionStatus::Captured
            | TransactionStatus::Declined
            | TransactionStatus::Voided
            | TransactionStatus::Expired
            | TransactionStatus::CaptureRefused
    ) && !record.response_code.is_empty();
    let verification = match record.cardholder_verification.as_str() {
        "online_pin" => pb::CardholderVerification::OnlinePin,
        "signature" => pb::CardholderVerification::Signature,
        _ => pb::CardholderVerification::None,
    };
    let entry_mode = EntryMode::parse(&record.entry_mode)
        .map_or(pb::CardEntryMode::Unspecified, entry_mode_to_proto);
    let merchant_name = config
        .link(&record.link_id)
        .map(|link| link.merchant_name.clone())
        .unwrap_or_default();
    let mut lines = Vec::new();
    if let Some(points) = record.loyalty_points {
        lines.push(format!("Points earned: {points}"));
        if let Some(balance) = record.loyalty_balance {
            lines.push(format!("Points balance: {balance}"));
        }
    }
    pb::CardTransaction {
        transaction_id: record.id.clone(),
        r#type: card_type(record.card_type).into(),
        status: status(record.status).into(),
        amount: Some(money(record.amount_minor, &record.currency)),
        captured_amount: Some(money(record.captured_minor, &record.currency)),
        refunded_amount: Some(money(record.refunded_minor, &record.currency)),
        response_code: record.response_code.clone(),
        response_text: response_text(&record.response_code),
        approval_code: record.approval_code.clone(),
        rrn: record.rrn.clone(),
        stan: record.stan.clone(),
        masked_pan: record.masked_pan.clone(),
        card_brand: brand_from_name(&record.card_brand).into(),
        route: match record.route {
            CardRouteKind::Acquirer => pb::CardRoute::Acquirer,
            CardRouteKind::CoBrandIssuer => pb::CardRoute::CoBrandIssuer,
        }
        .into(),
        loyalty: (record.route == CardRouteKind::CoBrandIssuer)
            .then_some(record.loyalty_points)
            .flatten()
            .map(|points| pb::LoyaltyPoints {
                points_earned: points,
                points_balance: record.loyalty_balance,
                program_name: String::new(),
            }),
        business_date: format_date(record.business_date),
        receipt: answered.then(|| pb::CardReceipt {
            merchant_name,
            merchant_id: record.merchant_id.clone(),
            bank_terminal_id: record.bank_terminal_id.clone(),
            entry_mode: entry_mode.into(),
            cardholder_verification: verification.into(),
            signature_required: verification == pb::CardholderVerification::Signature,
            lines,
        }),
        original_transaction_id: record.original_transaction_id.clone().unwrap_or_default(),
        refund_transaction_ids: refund_ids,
        parent_transaction_id: String::new(),
        store_id: record.store_id.clone(),
        terminal_id: record.terminal_id.clone(),
        operator_id: record.operator_id.clone(),
        client_request_id: record.client_request_id.clone(),
        pos_reference: record.pos_reference.clone(),
        created_at: Some(timestamp(record.created_at)),
        updated_at: Some(timestamp(record.updated_at)),
        authorization_expires_at: (record.status == TransactionStatus::Authorized)
            .then_some(record.authorization_expires_at)
            .flatten()
            .map(timestamp),
        advice_pending: record.advice_pending,
    }
}

/// A card service result as the POS sees it.
pub fn transaction(result: &CardTransaction, config: &CardConfig) -> pb::CardTransaction {
    card_transaction(&result.record, result.refund_ids.clone(), config)
}

pub fn authorize_response(result: &CardTransaction, config: &CardConfig) -> pb::AuthorizeResponse {
    pb::AuthorizeResponse {
        transaction: Some(transaction(result, config)),
    }
}

pub fn capture_response(result: &CardTransaction, config: &CardConfig) -> pb::CaptureResponse {
    pb::CaptureResponse {
        transaction: Some(transaction(result, config)),
    }
}

pub fn void_response(result: &CardTransaction, config: &CardConfig) -> pb::VoidResponse {
    pb::VoidResponse {
        transaction: Some(transaction(result, config)),
    }
}

pub fn refund_response(result: &RefundResult, config: &CardConfig) -> pb::CardRefundResponse {
    pb::CardRefundResponse {
        refund: Some(transaction(&result.refund, config)),
        original: result
            .original
            .as_ref()
            .map(|original| transaction(original, config)),
    }
}

/// The stored answers of `PaymentService`: the protobuf answer messages,
/// encoded. The same functions build the answer a call returns, so a
/// replay gets the bytes the first call got.
#[derive(Debug)]
pub struct ProtoCardAnswers {
    pub config: CardConfig,
}

impl CardAnswers for ProtoCardAnswers {
    fn authorized(&self, transaction: &CardTransaction) -> Vec<u8> {
        authorize_response(transaction, &self.config).encode_to_vec()
    }

    fn captured(&self, transaction: &CardTransaction) -> Vec<u8> {
        capture_response(transaction, &self.config).encode_to_vec()
    }

    fn voided(&self, transaction: &CardTransaction) -> Vec<u8> {
        void_response(transaction, &self.config).encode_to_vec()
    }

    fn refunded(&self, refund: &RefundResult) -> Vec<u8> {
        refund_response(refund, &self.config).encode_to_vec()
    }
}
