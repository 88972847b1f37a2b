//! Wire models of the bill endpoints of Partner API v1, exactly as the
//! OpenAPI document describes them, with the checks a receiver applies.
//! The primitives shared with the wallet endpoints (`Money`, `Channel`,
//! `Problem`, field checks) are [`crate::api`]'s.

use serde::{Deserialize, Serialize};

use crate::api::{
    Channel, FieldError, Money, check_channel, check_positive_money, check_transaction_id, is_code,
};
use crate::metrics::Refusal;

pub const INQUIRIES_PATH: &str = "/v1/bills/inquiries";
pub const PAYMENTS_PATH: &str = "/v1/bills/payments";
pub const CANCELLATIONS_PATH: &str = "/v1/bills/cancellations";

/// Longest cancel reason, characters.
pub const MAX_REASON_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillInquiryRequest {
    pub biller_id: String,
    pub bill_reference: String,
    pub channel: Channel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BillStatus {
    Open,
    Paid,
    Cancelled,
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bill {
    pub biller_id: String,
    pub bill_reference: String,
    pub amount: Money,
    /// `YYYY-MM-DD`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub due_date: Option<String>,
    pub status: BillStatus,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub payer_display_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillInquiryResponse {
    pub bill: Bill,
}

impl Refusal for BillInquiryResponse {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillPaymentNotice {
    pub transaction_id: String,
    pub biller_id: String,
    pub bill_reference: String,
    pub amount: Money,
    /// RFC 3339 date-time.
    pub paid_at: String,
    /// `YYYY-MM-DD`, the store's business day.
    pub business_date: String,
    pub channel: Channel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NoticeStatus {
    Accepted,
    Rejected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NoticeRejectCode {
    BillNotFound,
    AlreadyPaid,
    AmountMismatch,
    Expired,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillPaymentResult {
    pub transaction_id: String,
    pub status: NoticeStatus,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reject_code: Option<NoticeRejectCode>,
    pub partner_response_code: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub partner_reference: Option<String>,
}

impl Refusal for BillPaymentResult {
    fn refused(&self) -> bool {
        self.status == NoticeStatus::Rejected
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillCancelRequest {
    pub transaction_id: String,
    pub original_transaction_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CancelStatus {
    Cancelled,
    Rejected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CancelRejectCode {
    CutoffPassed,
    NotPaid,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillCancelResult {
    pub transaction_id: String,
    pub original_transaction_id: String,
    pub status: CancelStatus,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reject_code: Option<CancelRejectCode>,
    pub partner_response_code: String,
}

impl Refusal for BillCancelResult {
    fn refused(&self) -> bool {
        self.status == CancelStatus::Rejected
    }
}

/// `^[0-9A-Z]{1,32}$`.
pub fn is_bill_reference(text: &str) -> bool {
    (1..=32).contains(&text.len())
        && text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || byte.is_ascii_uppercase())
}

/// `YYYY-MM-DD`, a real calendar day.
pub fn is_date(text: &str) -> bool {
    text.len() == 10 && chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok()
}

fn check_biller(biller_id: &str, bill_reference: &str) -> Result<(), FieldError> {
    if !is_code(biller_id) {
        return Err(FieldError::new(
            "biller_id",
            "must be 1-32 of [A-Za-z0-9_-]",
        ));
    }
    if !is_bill_reference(bill_reference) {
        return Err(FieldError::new(
            "bill_reference",
            "must be 1-32 of [0-9A-Z]",
        ));
    }
    Ok(())
}

impl BillInquiryRequest {
    pub fn check(&self) -> Result<(), FieldError> {
        check_biller(&self.biller_id, &self.bill_reference)?;
        check_channel(&self.channel)
    }
}

impl BillPaymentNotice {
    pub fn check(&self) -> Result<(), FieldError> {
        check_transaction_id("transaction_id", &self.transaction_id)?;
        check_biller(&self.biller_id, &self.bill_reference)?;
        check_positive_money("amount", &self.amount)?;
        if chrono::DateTime::parse_from_rfc3339(&self.paid_at).is_err() {
            return Err(FieldError::new("paid_at", "must be an RFC 3339 date-time"));
        }
        if !is_date(&self.business_date) {
            return Err(FieldError::new("business_date", "must be YYYY-MM-DD"));
        }
        check_channel(&self.channel)
    }
}

impl BillCancelRequest {
    pub fn check(&self) -> Result<(), FieldError> {
        check_transaction_id("transaction_id", &self.transaction_id)?;
        check_transaction_id("original_transaction_id", &self.original_transaction_id)?;
        let chars = self.reason.chars().count();
        if chars == 0 || chars > MAX_REASON_CHARS {
            return Err(FieldError::new("reason", "must be 1-200 characters"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice() -> BillPaymentNotice {
        BillPaymentNotice {
            transaction_id: "0190b1a2-7c3d-7e4f-8a9b-0c1d2e3f4a5b".into(),
            biller_id: "TPC".into(),
            bill_reference: "A123".into(),
            amount: Money::new(1_234, "TWD"),
            paid_at: "2026-12-04T10:00:00Z".into(),
            business_date: "2026-12-04".into(),
            channel: Channel {
                store_id: "S001".into(),
                terminal_id: "T01".into(),
            },
        }
    }

    type Spoil = fn(&mut BillPaymentNotice);

    /// Each bad field is named; a good notice passes.
    #[test]
    fn checks_name_fields() {
        assert_eq!(notice().check(), Ok(()));
        let cases: [(&str, Spoil); 5] = [
            ("bill_reference", |n| n.bill_reference = "a-1".into()),
            ("biller_id", |n| n.biller_id = String::new()),
            ("amount.amount_minor", |n| n.amount.amount_minor = 0),
            ("paid_at", |n| n.paid_at = "yesterday".into()),
            ("business_date", |n| n.business_date = "2026-02-30".into()),
        ];
        for (field, spoil) in cases {
            let mut bad = notice();
            spoil(&mut bad);
            assert_eq!(bad.check().unwrap_err().field, field);
        }
    }
}
