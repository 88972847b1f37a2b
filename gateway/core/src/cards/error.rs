//! Why a card call did not give a result: each variant names what the API
//! turns into a status (with its google.rpc details), in words an
//! integrator understands.

use posgate_hsm::HsmError;

use crate::ports::db::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum CardError {
    /// A card rule refused the request (`kind` is the machine-readable
    /// reason, `subject` what it is about: a field, a store, a transaction).
    #[error("{description}")]
    Refused {
        kind: &'static str,
        subject: String,
        description: String,
    },
    /// A field is well formed but not acceptable here.
    #[error("{field}: {description}")]
    InvalidField {
        field: &'static str,
        description: String,
    },
    /// The transaction asked for is not the caller's or does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The idempotency key was used by a different request.
    #[error("client_request_id {client_request_id:?} was already used for a different request")]
    KeyReused {
        client_request_id: String,
        differing: Vec<String>,
    },
    /// The first request under the key is still running.
    #[error("the request with client_request_id {client_request_id:?} is still in progress")]
    InProgress { client_request_id: String },
    /// The request was sent and no usable answer came: it is being reversed.
    #[error("no answer from the bank for transaction {transaction_id}")]
    OutcomeUnknown { transaction_id: String },
    /// The bank link was down or busy: nothing was sent or stored.
    #[error("the bank link {link_id} cannot be reached")]
    PartnerUnavailable { link_id: String },
    /// A failure of posgate itself (the log says more).
    #[error("{0}")]
    Internal(&'static str),
    #[error(transparent)]
    Hsm(#[from] HsmError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CardError {
    /// A refusal about a recorded transaction.
    pub(crate) fn state(kind: &'static str, transaction_id: &str, description: String) -> Self {
        Self::Refused {
            kind,
            subject: format!("transaction/{transaction_id}"),
            description,
        }
    }

    pub(crate) fn invalid(field: &'static str, description: impl Into<String>) -> Self {
        Self::InvalidField {
            field,
            description: description.into(),
        }
    }
}
