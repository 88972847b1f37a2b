//! Typed calls to one wallet operator over the signed partner API. Every
//! money-moving POST uses posgate's transaction id as its Idempotency-Key,
//! so a retry after a lost answer is applied once by the operator.

use http::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::api::{
    self, BalanceRequest, PaymentRequest, Problem, RefundRequest, ReversalRequest, ReversalResult,
    TopUpRequest, TransactionStatus, WalletBalance, WalletRef, WalletResult,
};
use crate::http::signature::new_nonce;
use crate::http::{CallError, PartnerClient, PartnerRequest, Retry};

/// Why a wallet call has no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletCallError {
    /// Nothing reached the operator: nothing to undo.
    #[error("wallet operator unavailable: {0}")]
    Unavailable(String),
    /// The operator may have applied it: resolve by reversal or status inquiry.
    #[error("wallet operator outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The operator refused the request itself (4xx): nothing was applied.
    #[error("wallet operator refused the request ({status}): {}", .problem.as_ref().and_then(|p| p.detail.as_deref()).unwrap_or("no detail"))]
    Rejected {
        status: u16,
        problem: Option<Problem>,
    },
}

impl From<CallError> for WalletCallError {
    fn from(error: CallError) -> Self {
        match error {
            CallError::Unavailable { reason, .. } | CallError::Local { reason, .. } => {
                Self::Unavailable(reason)
            }
            CallError::OutcomeUnknown { reason, .. } => Self::OutcomeUnknown(reason),
        }
    }
}

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

    /// POSTs `body`; a 200 answer that does not parse is an unknown outcome.
    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
        body: &B,
    ) -> Result<T, WalletCallError> {
        let body = serde_json::to_vec(body)
            .map_err(|error| WalletCallError::Unavailable(error.to_string()))?;
        let response = self
            .client
            .call(PartnerRequest {
                method: Method::POST,
                path,
                body,
                idempotency_key: Some(key),
                retry: Retry::Idempotent,
            })
            .await?;
        decode(response.status, &response.body)
    }

    pub async fn top_up(&self, request: &TopUpRequest) -> Result<WalletResult, WalletCallError> {
        self.post(api::TOP_UPS_PATH, &request.transaction_id, request)
            .await
    }

    pub async fn pay(&self, request: &PaymentRequest) -> Result<WalletResult, WalletCallError> {
        self.post(api::PAYMENTS_PATH, &request.transaction_id, request)
            .await
    }

    pub async fn refund(&self, request: &RefundRequest) -> Result<WalletResult, WalletCallError> {
        self.post(api::REFUNDS_PATH, &request.transaction_id, request)
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
        self.post(api::REVERSALS_PATH, &key, &request).await
    }

    /// Reads a balance (a read: its Idempotency-Key is fresh per call).
    pub async fn balance(&self, wallet: &WalletRef) -> Result<WalletBalance, WalletCallError> {
        let request = BalanceRequest {
            wallet: wallet.clone(),
        };
        self.post(
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
        let path = format!("{}{transaction_id}", api::TRANSACTIONS_PATH);
        let response = self
            .client
            .call(PartnerRequest {
                method: Method::GET,
                path: &path,
                body: Vec::new(),
                idempotency_key: None,
                retry: Retry::Idempotent,
            })
            .await?;
        if response.status == 404 {
            return Ok(None);
        }
        decode(response.status, &response.body).map(Some)
    }
}

fn decode<T: DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, WalletCallError> {
    if status == 200 {
        return serde_json::from_slice(body).map_err(|error| {
            WalletCallError::OutcomeUnknown(format!("answer does not parse: {error}"))
        });
    }
    if (400..500).contains(&status) {
        return Err(WalletCallError::Rejected {
            status,
            problem: serde_json::from_slice(body).ok(),
        });
    }
    Err(WalletCallError::OutcomeUnknown(format!(
        "unexpected status {status}"
    )))
}
