//! Why a wallet call did not give a result: each variant names what the API
//! turns into a status (with its google.rpc details), in words an
//! integrator understands.

use posgate_hsm::HsmError;

use crate::cards::CardError;
use crate::ports::db::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// A wallet rule refused the request (`kind` is the machine-readable
    /// reason, `subject` what it is about: a field, the wallet, a transaction).
    #[error("{description}")]
    Refused {
        kind: &'static str,
        subject: &'static str,
        description: String,
    },
    /// A field is well formed but not acceptable here.
    #[error("{field}: {description}")]
    InvalidField {
        field: &'static str,
        description: String,
    },
    /// The wallet or transaction asked for is unknown (or not the caller's).
    #[error("{0}")]
    NotFound(&'static str),
    /// The idempotency key was used by a different request.
    #[error("client_request_id {client_request_id:?} was already used for a different request")]
    KeyReused {
        client_request_id: String,
        differing: Vec<String>,
    },
    /// The first request under the key is still running.
    #[error("the request with client_request_id {client_request_id:?} is still in progress")]
    InProgress { client_request_id: String },
    /// A concurrent request took the key and then released it: retry.
    #[error("the key was taken and released; retry")]
    KeyReleased,
    /// The request was sent and no usable answer came: it is being reversed.
    #[error("no answer from the wallet operator for transaction {transaction_id}")]
    OutcomeUnknown { transaction_id: String },
    /// The partner (`wallet:ID` or a bank link) cannot be reached: nothing was sent.
    #[error("the partner {partner} cannot be reached")]
    PartnerUnavailable { partner: String },
    /// A failure of posgate itself (the log says more).
    #[error("{0}")]
    Internal(&'static str),
    /// A card rule refused the card (card top-ups and links).
    #[error(transparent)]
    Card(#[from] CardError),
    #[error(transparent)]
    Hsm(#[from] HsmError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl WalletError {
    pub(crate) fn refused(
        kind: &'static str,
        subject: &'static str,
        description: impl Into<String>,
    ) -> Self {
        Self::Refused {
            kind,
            subject,
            description: description.into(),
        }
    }

    pub(crate) fn outcome_unknown(transaction_id: &str) -> Self {
        Self::OutcomeUnknown {
            transaction_id: transaction_id.to_owned(),
        }
    }

    pub(crate) fn partner_unavailable(partner: impl Into<String>) -> Self {
        Self::PartnerUnavailable {
            partner: partner.into(),
        }
    }
}
