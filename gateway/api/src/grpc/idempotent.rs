//! Idempotent execution: a request whose key was already used gets the
//! stored answer back (the same bytes) if it is the same request, and
//! `ALREADY_EXISTS` naming the differing fields if it is not. The services
//! store new answers in the same database transaction as the state change
//! they report.

use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Response, Status};

use super::status::key_reused;
use posgate_core::model::idempotency::{Answered, differing_fields};
use posgate_core::model::{RequestFingerprint, StoredAnswer};

/// Response header set on a replayed answer.
pub const REPLAY_HEADER: &str = "posgate-idempotent-replay";

/// The stored answer as a response, if `fingerprint` is the same request.
pub fn replay<M: Message + Default>(
    answer: &StoredAnswer,
    fingerprint: &RequestFingerprint,
    client_request_id: &str,
) -> Result<Response<M>, Status> {
    let differing = differing_fields(&answer.fingerprint, fingerprint);
    if !differing.is_empty() {
        return Err(key_reused(client_request_id, &differing));
    }
    replay_stored(answer)
}

/// The stored answer as a response, once the request was found the same:
/// the stored bytes decoded, marked as a replay.
pub fn replay_stored<M: Message + Default>(answer: &StoredAnswer) -> Result<Response<M>, Status> {
    let message = M::decode(answer.response.as_slice()).map_err(|error| {
        tracing::error!(%error, transaction_id = %answer.transaction_id, "stored answer does not decode");
        Status::internal("stored answer is unreadable")
    })?;
    let mut response = Response::new(message);
    response
        .metadata_mut()
        .insert(REPLAY_HEADER, MetadataValue::from_static("true"));
    Ok(response)
}

/// A service's answer as a response: a new result as its message, or the
/// stored answer of the first request under the key, replayed.
pub fn respond<T, M: Message + Default>(
    answered: Answered<T>,
    message: impl FnOnce(&T) -> M,
) -> Result<Response<M>, Status> {
    match answered {
        Answered::New(result) => Ok(Response::new(message(&result))),
        Answered::Replayed(stored) => replay_stored(&stored),
    }
}
