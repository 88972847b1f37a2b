//! Typed calls to one wallet operator over the signed partner API. Every
//! money-moving POST uses posgate's transaction id as its Idempotency-Key,
//! so a retry after a lost answer is applied once by the operator.

use super::WalletCallError;
use super::api::{
    self, BalanceRequest, PaymentRequest, RefundRequest, ReversalRequest, ReversalResult,
    TopUpRequest, TransactionStatus, WalletBalance, WalletRef, WalletResult,
};
use crate::http::PartnerClient;
use crate::http::json;
use crate::http::signature::new_nonce;

/// One wallet operator.
#[derive(Debug)]
pub struct WalletOperatorClient {
    client: PartnerClient,
}

impl WalletOperatorClient {
    pub fn new(client: PartnerClient) -> Self {
        Self { client }
    }

    pub fn partner(&self) -> &PartnerClient {
        &self.client
    }

    pub async fn top_up(&self, request: &TopUpRequest) -> Result<WalletResult, WalletCallError> {
        json::post(
            &self.client,
            api::TOP_UPS_PATH,
            &request.transaction_id,
            request,
        )
        .await
    }

    pub async fn pay(&self, request: &PaymentRequest) -> Result<WalletResult, WalletCallError> {
        json::post(
            &self.client,
            api::PAYMENTS_PATH,
            &request.transaction_id,
            request,
        )
        .await
    }

    pub async fn refund(&self, request: &RefundRequest) -> Result<WalletResult, WalletCallError> {
        json::post(
            &self.client,
            api::REFUNDS_PATH,
            &request.transaction_id,
            request,
        )
        .await
    }

    /// Reverses `original_transaction_id`; applied at most once by the operator.
    pub async fn reverse(
        &self,
        original_transaction_id: &str,
    ) -> Result<ReversalResult, WalletCallError> {
        let key = format!("reversal:{original_transaction_id}");
        let request = ReversalRequest {
            original_transaction_id: original_transaction_id.to_owned(),
        };
        json::post(&self.client, api::REVERSALS_PATH, &key, &request).await
    }

    /// Reads a balance (a read: its Idempotency-Key is fresh per call).
    pub async fn balance(&self, wallet: &WalletRef) -> Result<WalletBalance, WalletCallError> {
        let request = BalanceRequest {
            wallet: wallet.clone(),
        };
        json::post(
            &self.client,
            api::BALANCE_PATH,
            &format!("balance:{}", new_nonce()),
            &request,
        )
        .await
    }

    /// The operator's view of a transaction; `None` when it never received it.
    pub async fn status(
        &self,
        transaction_id: &str,
    ) -> Result<Option<TransactionStatus>, WalletCallError> {
        json::transaction_status(&self.client, transaction_id).await
    }
}
