//! Idempotent execution: a request whose key was already used gets the
//! stored answer back (the same bytes) if it is the same request, and
//! `ALREADY_EXISTS` naming the differing fields if it is not. New answers are
//! stored in the same database transaction as the state change they report.

use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Response, Status};

use super::Gateway;
use super::status::{from_store_error, key_reused};
use posgate_core::model::idempotency::{Answered, differing_fields};
use posgate_core::model::{IdempotencyKey, RequestFingerprint, StoredAnswer};
use posgate_core::ports::db::{
    Change, Event, SettlementLine, TransactionStatus, WriteOutcome, WriteRequest,
};

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

/// Looks the key up before any work: a retry is answered from the store.
pub async fn prior_answer<M: Message + Default>(
    gateway: &Gateway,
    key: &IdempotencyKey,
    fingerprint: &RequestFingerprint,
) -> Result<Option<Response<M>>, Status> {
    match gateway
        .db
        .answer(key)
        .await
        .map_err(|error| from_store_error(&error))?
    {
        Some(answer) => replay(&answer, fingerprint, &key.client_request_id).map(Some),
        None => Ok(None),
    }
}

/// What to commit: the change and its consequences, and the answer to give.
#[derive(Debug)]
pub struct Commit<M> {
    pub key: IdempotencyKey,
    pub fingerprint: RequestFingerprint,
    pub transaction_id: String,
    pub change: Change,
    pub lines: Vec<SettlementLine>,
    pub event: Event,
    pub response: M,
    /// A new batch-biller payment claims its slip ([`WriteRequest::claims_slip`]).
    pub claims_slip: bool,
}

/// How a commit ended, short of a store failure.
#[derive(Debug)]
pub enum Committed<M> {
    /// This request's answer (new, or the first answer if a duplicate won the race).
    Answer(Response<M>),
    /// A guarded transition found the transaction in another state.
    StatusMismatch(Option<TransactionStatus>),
}

/// Commits the change with its answer under the key, atomically.
pub async fn commit<M: Message + Default>(
    gateway: &Gateway,
    commit: Commit<M>,
) -> Result<Committed<M>, Status> {
    let now = gateway.clock.now();
    let request = WriteRequest {
        answer: StoredAnswer {
            fingerprint: commit.fingerprint.clone(),
            transaction_id: commit.transaction_id,
            response: commit.response.encode_to_vec(),
            pending: false,
        },
        key: commit.key,
        created_at: now,
        expires_at: now + gateway.retention,
        change: commit.change,
        lines: commit.lines,
        event: commit.event,
        claims_slip: commit.claims_slip,
    };
    let client_request_id = request.key.client_request_id.clone();
    match gateway
        .db
        .write(request)
        .await
        .map_err(|error| from_store_error(&error))?
    {
        WriteOutcome::Written => Ok(Committed::Answer(Response::new(commit.response))),
        WriteOutcome::KeyTaken(answer) => {
            replay(&answer, &commit.fingerprint, &client_request_id).map(Committed::Answer)
        }
        WriteOutcome::StatusMismatch { current } => Ok(Committed::StatusMismatch(current)),
        WriteOutcome::RefundExceeds { .. } => Err(tonic::Status::internal(
            "a bill write reported a card refund guard",
        )),
    }
}
