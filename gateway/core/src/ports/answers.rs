//! The encoding of stored answers. An idempotency key keeps the exact bytes
//! of the answer the POS got, so that a retry gets the same bytes back; the
//! answers are protobuf messages, which the core does not know. The API
//! implements this port with its views and the binary hands it to the
//! services, so a worker that records an answer (the store-and-forward
//! queue, after a reversal) never imports the API. [`CardAnswers`] for
//! `PaymentService`, [`BillAnswers`] for `BillPaymentService`, [`WalletAnswers`]
//! for `WalletService`.

use crate::model::bill::BillPayment;
use crate::model::card::{CardTransaction, RefundResult};
use crate::model::wallet::{LinkedCard, UnlinkedCard, WalletRefund, WalletTransaction};

/// The answers of `PaymentService`, one method per answer kind, each
/// returning the encoded response message.
pub trait CardAnswers: Send + Sync + std::fmt::Debug {
    /// `AuthorizeResponse` (also the answer of a reversed Authorize).
    fn authorized(&self, transaction: &CardTransaction) -> Vec<u8>;
    /// `CaptureResponse`.
    fn captured(&self, transaction: &CardTransaction) -> Vec<u8>;
    /// `VoidResponse`.
    fn voided(&self, transaction: &CardTransaction) -> Vec<u8>;
    /// `CardRefundResponse` (also the answer of a reversed Refund).
    fn refunded(&self, refund: &RefundResult) -> Vec<u8>;
}

/// The answers of `BillPaymentService` that are stored under a key, each
/// returning the encoded response message.
pub trait BillAnswers: Send + Sync + std::fmt::Debug {
    /// `PayBillResponse` (also the answer an online biller's notice worker records).
    fn paid(&self, payment: &BillPayment) -> Vec<u8>;
    /// `CancelBillResponse`.
    fn cancelled(&self, payment: &BillPayment) -> Vec<u8>;
}

/// The answers of `WalletService`, one method per answer kind, each
/// returning the encoded response message.
pub trait WalletAnswers: Send + Sync + std::fmt::Debug {
    /// `TopUpResponse`.
    fn topped_up(&self, transaction: &WalletTransaction) -> Vec<u8>;
    /// `PayResponse`.
    fn paid(&self, transaction: &WalletTransaction) -> Vec<u8>;
    /// `WalletRefundResponse`.
    fn refunded(&self, refund: &WalletRefund) -> Vec<u8>;
    /// `LinkCardResponse`.
    fn linked(&self, linked: &LinkedCard) -> Vec<u8>;
    /// `UnlinkCardResponse`.
    fn unlinked(&self, unlinked: &UnlinkedCard) -> Vec<u8>;
}
