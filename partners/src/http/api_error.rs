//! What a typed partner API call ends in when it has no usable answer,
//! apart from the client that makes the call: services that call partners
//! through a port match on it without linking the HTTP client.

use crate::api::Problem;

/// Why a partner call has no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiCallError {
    /// Nothing reached the partner: nothing to undo.
    #[error("partner unavailable: {0}")]
    Unavailable(String),
    /// The partner may have applied it: resolve by reversal or status inquiry.
    #[error("partner outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The partner refused the request itself (4xx): nothing was applied.
    #[error("partner refused the request ({status}): {}", .problem.as_ref().and_then(|p| p.detail.as_deref()).unwrap_or("no detail"))]
    Rejected {
        status: u16,
        problem: Option<Problem>,
    },
}
