//! Errors to gRPC statuses with google.rpc details, in words an integrator
//! understands. Nothing here ever includes card data or keys.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::admission::Refusal;
use crate::ERROR_DOMAIN;
use posgate_core::bill::BillError;
use posgate_core::cards::CardError;
use posgate_core::model::FieldViolation;
use posgate_core::ports::db::StoreError;
use posgate_core::wallet::WalletError;

/// Retry advice when the database is unreachable or overloaded.
const DATABASE_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// `INVALID_ARGUMENT` with a `google.rpc.BadRequest` naming every field.
pub fn invalid_argument(violations: &[FieldViolation]) -> Status {
    let fields: Vec<&str> = violations
        .iter()
        .map(|violation| violation.field.as_str())
        .collect();
    let details = ErrorDetails::with_bad_request(
        violations
            .iter()
            .map(|violation| {
                tonic_types::FieldViolation::new(
                    violation.field.clone(),
                    violation.description.clone(),
                )
            })
            .collect::<Vec<_>>(),
    );
    let message = match violations {
        [only] => format!("invalid {}: {}", only.field, only.description),
        _ => format!("invalid fields: {}", fields.join(", ")),
    };
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// `INVALID_ARGUMENT` naming one field and why.
pub fn invalid_field(field: &str, description: impl Into<String>) -> Status {
    invalid_argument(&[FieldViolation::new(field, description)])
}

pub fn precondition(kind: &str, subject: &str, description: String) -> Status {
    let details =
        ErrorDetails::with_precondition_failure(vec![tonic_types::PreconditionViolation::new(
            kind,
            subject,
            description.clone(),
        )]);
    Status::with_error_details(Code::FailedPrecondition, description, details)
}

/// A card service error as a status.
pub fn from_card_error(error: &CardError) -> Status {
    match error {
        CardError::Refused {
            kind,
            subject,
            description,
        } => precondition(kind, subject, description.clone()),
        CardError::InvalidField { field, description } => invalid_field(field, description.clone()),
        CardError::NotFound(message) => Status::not_found(message.clone()),
        CardError::KeyReused {
            client_request_id,
            differing,
        } => key_reused(client_request_id, differing),
        CardError::InProgress { client_request_id } => in_progress(client_request_id),
        CardError::OutcomeUnknown { transaction_id } => outcome_unknown(transaction_id),
        CardError::PartnerUnavailable { link_id } => partner_unavailable(link_id),
        CardError::Internal(message) => Status::internal(*message),
        CardError::Hsm(error) => from_hsm_error(error),
        CardError::Store(error) => from_store_error(error),
    }
}

/// A wallet service error as a status.
pub fn from_wallet_error(error: &WalletError) -> Status {
    match error {
        WalletError::Refused {
            kind,
            subject,
            description,
        } => precondition(kind, subject, description.clone()),
        WalletError::InvalidField { field, description } => {
            invalid_field(field, description.clone())
        }
        WalletError::NotFound(message) => Status::not_found(*message),
        WalletError::KeyReused {
            client_request_id,
            differing,
        } => key_reused(client_request_id, differing),
        WalletError::InProgress { client_request_id } => in_progress(client_request_id),
        WalletError::KeyReleased => Status::aborted("the key was taken and released; retry"),
        WalletError::OutcomeUnknown { transaction_id } => outcome_unknown(transaction_id),
        WalletError::PartnerUnavailable { partner } => partner_unavailable(partner),
        WalletError::Internal(message) => Status::internal(*message),
        WalletError::Card(error) => from_card_error(error),
        WalletError::Hsm(error) => from_hsm_error(error),
        WalletError::Store(error) => from_store_error(error),
    }
}

/// A bill service error as a status.
pub fn from_bill_error(error: &BillError) -> Status {
    match error {
        BillError::Invalid(violations) => invalid_argument(violations),
        BillError::PastDue { biller_id, .. } => precondition(
            "BILL_PAST_DUE",
            &format!("biller/{biller_id}"),
            error.to_string(),
        ),
        BillError::FeeExceedsAmount { .. } => precondition(
            "FEE_EXCEEDS_AMOUNT",
            "amount.amount_minor",
            error.to_string(),
        ),
        BillError::NotFound(_) | BillError::NoPaymentForRequest => {
            Status::not_found(error.to_string())
        }
        BillError::AlreadyCancelled(id) => precondition(
            "ALREADY_CANCELLED",
            &format!("transaction/{id}"),
            error.to_string(),
        ),
        BillError::BusinessDayClosed { transaction_id, .. } => precondition(
            "BUSINESS_DAY_CLOSED",
            &format!("transaction/{transaction_id}"),
            error.to_string(),
        ),
        BillError::Refused {
            kind,
            subject,
            description,
        } => precondition(kind, subject, description.clone()),
        BillError::KeyReused {
            client_request_id,
            differing,
        } => key_reused(client_request_id, differing),
        BillError::OutcomeUnknown { transaction_id } => unknown_outcome(
            transaction_id,
            "posgate is asking the biller for its status and will notify it again",
        ),
        BillError::PartnerUnavailable { partner } => partner_unavailable(partner),
        BillError::Internal(message) => Status::internal(*message),
        BillError::Store(error) => from_store_error(error),
    }
}

/// `FAILED_PRECONDITION` `BILL_ALREADY_PAID` on `slip.barcodes`: another live
/// payment (at any store or terminal) holds the slip; nothing was stored.
fn slip_already_paid(error: &StoreError) -> Status {
    precondition(
        "BILL_ALREADY_PAID",
        "slip.barcodes",
        format!(
            "{error}; a slip is paid once: collect no cash (cancel the earlier payment first if it was a mistake)"
        ),
    )
}

/// `ALREADY_EXISTS` for a key reused with a different request, naming the fields.
pub fn key_reused(client_request_id: &str, fields: &[String]) -> Status {
    let mut metadata = HashMap::new();
    metadata.insert("differing_fields".to_owned(), fields.join(","));
    let details = ErrorDetails::with_error_info("IDEMPOTENCY_KEY_REUSED", ERROR_DOMAIN, metadata);
    Status::with_error_details(
        Code::AlreadyExists,
        format!(
            "client_request_id {client_request_id:?} was already used by this terminal for a different request \
             (differs in: {}); use a new client_request_id for a new request",
            fields.join(", ")
        ),
        details,
    )
}

/// `RESOURCE_EXHAUSTED` with `google.rpc.RetryInfo`.
pub fn refused(refusal: Refusal) -> Status {
    let details = ErrorDetails::with_retry_info(Some(refusal.retry_after()));
    Status::with_error_details(
        Code::ResourceExhausted,
        format!(
            "{}; retry after {} ms",
            refusal.describe(),
            refusal.retry_after().as_millis()
        ),
        details,
    )
}

/// A store failure: UNAVAILABLE with retry advice when the database cannot be
/// reached (a retry with the same key is safe), INTERNAL otherwise. The
/// detail goes to the log, not to the caller.
pub fn from_store_error(error: &StoreError) -> Status {
    if let StoreError::SlipAlreadyPaid { .. } = error {
        return slip_already_paid(error);
    }
    tracing::error!(%error, "store failure");
    let transient = matches!(error, StoreError::Unavailable(_) | StoreError::WriterGone);
    if transient {
        let details = ErrorDetails::with_retry_info(Some(DATABASE_RETRY));
        Status::with_error_details(
            Code::Unavailable,
            "the transaction store is unavailable; retry with the same client_request_id",
            details,
        )
    } else {
        Status::internal(
            "internal error recording the transaction; retry with the same client_request_id",
        )
    }
}

/// How long a POS should wait before retrying after a bank problem.
pub const PARTNER_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

fn unavailable(reason: &str, metadata: HashMap<String, String>, message: String) -> Status {
    let mut details = ErrorDetails::new();
    details.set_retry_info(Some(PARTNER_RETRY));
    details.set_error_info(reason, ERROR_DOMAIN, metadata);
    Status::with_error_details(Code::Unavailable, message, details)
}

/// `UNAVAILABLE` `PARTNER_UNAVAILABLE`: the bank was not reached; nothing was sent or stored.
pub fn partner_unavailable(partner: &str) -> Status {
    let mut metadata = HashMap::new();
    metadata.insert("partner".to_owned(), partner.to_owned());
    unavailable(
        "PARTNER_UNAVAILABLE",
        metadata,
        format!(
            "the partner ({partner}) cannot be reached; nothing was sent; retry with the same client_request_id"
        ),
    )
}

/// `UNAVAILABLE` `OUTCOME_UNKNOWN`: the request was sent and no answer came;
/// posgate is reversing it at the partner (bank or wallet operator).
pub fn outcome_unknown(transaction_id: &str) -> Status {
    unknown_outcome(transaction_id, "posgate is reversing it")
}

/// `UNAVAILABLE` `OUTCOME_UNKNOWN` for `transaction_id`, saying what posgate
/// does to resolve it (`resolution`).
pub fn unknown_outcome(transaction_id: &str, resolution: &str) -> Status {
    let mut metadata = HashMap::new();
    metadata.insert("transaction_id".to_owned(), transaction_id.to_owned());
    unavailable(
        "OUTCOME_UNKNOWN",
        metadata,
        format!(
            "no answer from the partner for transaction {transaction_id}; {resolution}; \
             retry with the same client_request_id to learn the final state"
        ),
    )
}

/// `ABORTED`: the first request with this key is still running.
pub fn in_progress(client_request_id: &str) -> Status {
    Status::aborted(format!(
        "the request with client_request_id {client_request_id:?} is still in progress; retry shortly"
    ))
}

/// An HSM failure: the detail goes to the log (it never holds key material).
pub fn from_hsm_error(error: &posgate_hsm::HsmError) -> Status {
    tracing::error!(%error, "hsm failure");
    Status::internal("the security module failed; retry with the same client_request_id")
}
