//! Why a bill call gave no result: each variant names what the API turns
//! into a status (with its google.rpc details), in words an integrator
//! understands.

use chrono::NaiveDate;

use crate::model::FieldViolation;
use crate::ports::db::StoreError;

/// Why a bill operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum BillError {
    #[error("invalid request: {}", .0.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldViolation>),
    #[error("the bill was due on {due_date} and biller {biller_id} does not accept late payment")]
    PastDue {
        biller_id: String,
        due_date: NaiveDate,
    },
    /// The biller's contract fee would take the whole amount (or more): the
    /// biller would receive nothing, or owe the chain, for a bill it is paid.
    #[error(
        "biller {biller_id}'s fee of {fee_minor} minor units is not less than the bill's {amount_minor}: \
         the biller would receive nothing; this bill cannot be paid here"
    )]
    FeeExceedsAmount {
        biller_id: String,
        amount_minor: u64,
        fee_minor: u64,
    },
    #[error("no bill payment {0} at this store")]
    NotFound(String),
    #[error("bill payment {0} is already cancelled")]
    AlreadyCancelled(String),
    #[error(
        "bill payment {transaction_id} belongs to business day {paid_on}, which closed; today is {today}"
    )]
    BusinessDayClosed {
        transaction_id: String,
        paid_on: NaiveDate,
        today: NaiveDate,
    },
    /// The terminal made no bill payment under the `client_request_id` asked for.
    #[error("this terminal made no bill payment with that client_request_id")]
    NoPaymentForRequest,
    /// A rule or the biller refused the request (`kind` is the
    /// machine-readable reason, `subject` what it is about: a field, a
    /// biller, a transaction).
    #[error("{description}")]
    Refused {
        kind: &'static str,
        subject: String,
        description: String,
    },
    /// The idempotency key was used by a different request.
    #[error("client_request_id {client_request_id:?} was already used for a different request")]
    KeyReused {
        client_request_id: String,
        differing: Vec<String>,
    },
    /// The payment notice was sent and no usable answer came: the bill
    /// worker asks the biller for its status and notifies it again.
    #[error("no answer from the biller for transaction {transaction_id}")]
    OutcomeUnknown { transaction_id: String },
    /// The biller cannot be reached: nothing was sent or stored.
    #[error("the partner {partner} cannot be reached")]
    PartnerUnavailable { partner: String },
    /// A failure of posgate itself (the log says more).
    #[error("{0}")]
    Internal(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BillError {
    /// One field the caller got wrong, and why.
    pub(crate) fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, description)])
    }

    /// A refusal naming its machine-readable reason and its subject.
    pub(crate) fn refused(kind: &'static str, subject: &str, description: String) -> Self {
        Self::Refused {
            kind,
            subject: subject.to_owned(),
            description,
        }
    }
}
