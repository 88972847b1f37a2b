//! The connector ports to partners reached over the signed partner API: what
//! the core's services need from a wallet operator and an online biller,
//! in the partners' wire types. The composition root implements them over
//! the HTTP clients of `posgate-partners` (its `http-client` feature); the
//! core never links those clients.

use std::time::Duration;

use async_trait::async_trait;
use posgate_partners::bill::BillCallError;
use posgate_partners::bill::api::{
    Bill, BillCancelRequest, BillCancelResult, BillInquiryRequest, BillPaymentNotice,
    BillPaymentResult,
};
use posgate_partners::http::BreakerState;
use posgate_partners::wallet::WalletCallError;
use posgate_partners::wallet::api::{
    PaymentRequest, RefundRequest, ReversalResult, TopUpRequest, TransactionStatus, WalletBalance,
    WalletRef, WalletResult,
};

/// One e-wallet operator: money-moving calls applied once per transaction id,
/// balance and status reads, and the health of the link to it.
#[async_trait]
pub trait WalletOperator: std::fmt::Debug + Send + Sync {
    /// Credits a wallet (cash or card top-up); applied once per transaction id.
    async fn top_up(&self, request: &TopUpRequest) -> Result<WalletResult, WalletCallError>;

    /// Debits a wallet for a purchase; applied once per transaction id.
    async fn pay(&self, request: &PaymentRequest) -> Result<WalletResult, WalletCallError>;

    /// Refunds a payment to the wallet; applied once per transaction id.
    async fn refund(&self, request: &RefundRequest) -> Result<WalletResult, WalletCallError>;

    /// Reverses `original_transaction_id`; applied at most once by the operator.
    async fn reverse(
        &self,
        original_transaction_id: &str,
    ) -> Result<ReversalResult, WalletCallError>;

    /// Reads a wallet's balance.
    async fn balance(&self, wallet: &WalletRef) -> Result<WalletBalance, WalletCallError>;

    /// The operator's view of a transaction; `None` when it never received it.
    async fn status(
        &self,
        transaction_id: &str,
    ) -> Result<Option<TransactionStatus>, WalletCallError>;

    /// The longest one call may take, every attempt and its backoff included:
    /// past it, a request recorded `in_progress` has lost its caller.
    fn longest_call(&self) -> Duration;

    /// The state of the operator's circuit breaker.
    fn breaker_state(&self) -> BreakerState;
}

/// One online biller: bill look-up, payment notice and cancel (applied once
/// per transaction id), status reads, and the health of the link to it.
#[async_trait]
pub trait Biller: std::fmt::Debug + Send + Sync {
    /// Looks a bill up; `None` when the biller does not know it.
    async fn inquire(&self, request: &BillInquiryRequest) -> Result<Option<Bill>, BillCallError>;

    /// Tells the biller a bill was paid; applied once per transaction id.
    async fn notify(&self, notice: &BillPaymentNotice) -> Result<BillPaymentResult, BillCallError>;

    /// Cancels a notice the same business day; applied once per transaction id.
    async fn cancel(&self, request: &BillCancelRequest) -> Result<BillCancelResult, BillCallError>;

    /// The biller's view of a notice or cancel; `None` when it never received it.
    async fn status(
        &self,
        transaction_id: &str,
    ) -> Result<Option<TransactionStatus>, BillCallError>;

    /// The longest one call may take, every attempt and its backoff included:
    /// past it, a notice recorded `in_progress` has lost its caller.
    fn longest_call(&self) -> Duration;

    /// The state of the biller's circuit breaker (open: report it unhealthy).
    fn breaker_state(&self) -> BreakerState;
}
