//! Typed JSON calls over [`PartnerClient`], shared by the wallet and biller
//! clients: POST with an Idempotency-Key, the status inquiry GET, and the
//! mapping of answers to what the caller must do with money.

use std::time::Instant;

use http::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ApiCallError, CallError, PartnerClient, PartnerRequest, PartnerResponse, Retry};
use crate::api::{TRANSACTIONS_PATH, TransactionStatus};
use crate::metrics::{CallOutcome, Refusal, record_call};

impl From<CallError> for ApiCallError {
    fn from(error: CallError) -> Self {
        match error {
            CallError::Unavailable { reason, .. } | CallError::Local { reason, .. } => {
                Self::Unavailable(reason)
            }
            CallError::OutcomeUnknown { reason, .. } => Self::OutcomeUnknown(reason),
        }
    }
}

/// POSTs `body` under `key` (retried: the key makes the partner apply it
/// once); a 200 answer that does not parse is an unknown outcome.
pub async fn post<B: Serialize, T: DeserializeOwned + Refusal>(
    client: &PartnerClient,
    path: &str,
    key: &str,
    body: &B,
) -> Result<T, ApiCallError> {
    let body =
        serde_json::to_vec(body).map_err(|error| ApiCallError::Unavailable(error.to_string()))?;
    let started = Instant::now();
    let sent = client
        .call(PartnerRequest {
            method: Method::POST,
            path,
            body,
            idempotency_key: Some(key),
            retry: Retry::Idempotent,
        })
        .await;
    metered(
        client,
        started,
        sent,
        |response| decode(response.status, &response.body),
        T::refused,
    )
}

/// The partner's view of a transaction; `None` when it never received it.
pub async fn transaction_status(
    client: &PartnerClient,
    transaction_id: &str,
) -> Result<Option<TransactionStatus>, ApiCallError> {
    let path = format!("{TRANSACTIONS_PATH}{transaction_id}");
    let started = Instant::now();
    let sent = client
        .call(PartnerRequest {
            method: Method::GET,
            path: &path,
            body: Vec::new(),
            idempotency_key: None,
            retry: Retry::Idempotent,
        })
        .await;
    let read = |response: &PartnerResponse| {
        if response.status == 404 {
            return Ok(None);
        }
        decode(response.status, &response.body).map(Some)
    };
    metered(client, started, sent, read, |_| false)
}

/// Reads a call's answer and records the call (outcome and time, see
/// [`crate::metrics`]): a 4xx or an answer `refused` finds is a decline.
fn metered<T>(
    client: &PartnerClient,
    started: Instant,
    sent: Result<PartnerResponse, CallError>,
    read: impl FnOnce(&PartnerResponse) -> Result<T, ApiCallError>,
    refused: impl FnOnce(&T) -> bool,
) -> Result<T, ApiCallError> {
    let (answer, outcome) = match sent {
        Err(error) => {
            let outcome = error.outcome();
            (Err(ApiCallError::from(error)), outcome)
        }
        Ok(response) => {
            let answer = read(&response);
            let outcome = match &answer {
                Ok(answer) if refused(answer) => CallOutcome::Declined,
                Ok(_) => CallOutcome::Ok,
                Err(ApiCallError::Rejected { .. }) => CallOutcome::Declined,
                Err(_) => CallOutcome::Error,
            };
            (answer, outcome)
        }
    };
    record_call(client.partner_label(), outcome, started.elapsed());
    answer
}

fn decode<T: DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, ApiCallError> {
    if status == 200 {
        return serde_json::from_slice(body).map_err(|error| {
            ApiCallError::OutcomeUnknown(format!("answer does not parse: {error}"))
        });
    }
    if (400..500).contains(&status) {
        return Err(ApiCallError::Rejected {
            status,
            problem: serde_json::from_slice(body).ok(),
        });
    }
    Err(ApiCallError::OutcomeUnknown(format!(
        "unexpected status {status}"
    )))
}
