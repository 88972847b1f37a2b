//! The ISO 8583 financial request of a card record (0100/0200 and their
//! field 90), sent over the bank link, and the bank's outcome.

use chrono::{DateTime, Utc};
use posgate_hsm::Secret;
use posgate_partners::bank::link::{BankLink, LinkError};
use posgate_partners::bank::protocol::{
    FinancialKind, FinancialRequest, FinancialResponse, OriginalData,
};

use super::card::PresentedCard;
use crate::model::business_day::StoreConfig;
use crate::model::card::{CardRecord, CardType};
use crate::model::money::Currency;

/// The bank's answer, or why there is none.
#[derive(Debug)]
pub enum BankOutcome {
    Answered(FinancialResponse),
    /// Sent, and no usable answer: the charge may exist.
    Unknown(String),
    /// Never sent: the link was down or busy.
    NotSent(String),
    /// Never sent: posgate could not build the message (a bug or bad data).
    NotBuilt(String),
}

impl BankOutcome {
    fn from_result(result: Result<posgate_partners::iso8583::Message, LinkError>) -> Self {
        match result {
            Ok(message) => match FinancialResponse::parse(&message) {
                Ok(response) => Self::Answered(response),
                Err(error) => Self::Unknown(format!("unreadable answer: {error}")),
            },
            Err(error) if error.outcome_unknown() => Self::Unknown(error.to_string()),
            Err(error) => Self::NotSent(error.to_string()),
        }
    }

    /// Whether the bank approved.
    pub fn approved(&self) -> bool {
        matches!(self, Self::Answered(response) if response.response_code.is_approved())
    }
}

/// What a financial request needs besides the card.
#[derive(Debug)]
pub struct Outgoing<'a> {
    pub link: &'a BankLink,
    pub acquirer_id: &'a str,
    pub pin_block: Option<Secret<Vec<u8>>>,
    pub original: Option<OriginalData>,
}

/// Sends the financial request of `record` (made at `store`, whose local
/// time field 12 carries) and waits for the bank.
pub async fn send_financial(
    store: &StoreConfig,
    record: &CardRecord,
    card: Option<&PresentedCard>,
    out: &Outgoing<'_>,
    now: DateTime<Utc>,
) -> BankOutcome {
    let currency = Currency::from_code(&record.currency).map_or("", |c| c.numeric);
    let request = FinancialRequest {
        kind: financial_kind(record.card_type),
        pan: card.map(|card| &card.pan),
        expiry: card
            .filter(|card| card.track2.is_none())
            .map(|card| card.expiry),
        track2: card.and_then(|card| card.track2.as_ref()),
        amount_minor: record.amount_minor,
        currency_numeric: currency,
        stan: &record.stan,
        rrn: &record.rrn,
        transmitted_at: record.transmitted_at,
        local: now.with_timezone(&store.time_zone).naive_local(),
        entry_mode: card.map_or("010", |card| card.entry_mode.iso8583_code()),
        pin_block: out.pin_block.as_ref(),
        icc_data: card.and_then(|card| card.icc_data.as_ref()),
        security_code: card.and_then(|card| card.security_code.as_ref()),
        terminal_id: &record.bank_terminal_id,
        merchant_id: &record.merchant_id,
        acquirer_id: out.acquirer_id,
        original: out.original.clone(),
    };
    match request.to_message() {
        Ok(message) => BankOutcome::from_result(out.link.send(message).await),
        Err(error) => BankOutcome::NotBuilt(error.to_string()),
    }
}

/// The financial message family of a card type.
pub fn financial_kind(card_type: CardType) -> FinancialKind {
    match card_type {
        CardType::Authorization => FinancialKind::Authorization,
        CardType::Sale => FinancialKind::Sale,
        CardType::Refund => FinancialKind::Refund,
    }
}

/// The request MTI of a card type.
pub fn card_type_mti(card_type: CardType) -> &'static str {
    match card_type {
        CardType::Authorization => "0100",
        CardType::Sale | CardType::Refund => "0200",
    }
}

/// Field 90 naming a recorded request.
pub fn original_data(record: &CardRecord, acquirer_id: &str) -> Option<OriginalData> {
    OriginalData::new(
        posgate_partners::iso8583::Mti::new(
            record.request_mti.as_bytes().try_into().unwrap_or(*b"0200"),
        ),
        &record.stan,
        record.transmitted_at,
        acquirer_id,
    )
    .ok()
}
