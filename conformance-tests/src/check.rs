//! Assertions on answers: status codes and their google.rpc details, in
//! failure messages that say what was expected and what came back.

use anyhow::{anyhow, bail, ensure};
use tonic::metadata::MetadataMap;
use tonic::{Code, Response, Status};
use tonic_types::StatusExt as _;

use crate::client::REPLAY_HEADER;

/// One line about a status for failure messages.
#[must_use]
pub fn describe(status: &Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// The answer, or a failure naming the call and the status it got.
pub fn ok<T>(what: &str, answer: Result<Response<T>, Status>) -> anyhow::Result<Response<T>> {
    answer.map_err(|status| anyhow!("{what}: expected OK, got {}", describe(&status)))
}

/// The status, if the call failed with `code`; otherwise a failure.
pub fn code<T>(
    what: &str,
    expected: Code,
    answer: Result<Response<T>, Status>,
) -> anyhow::Result<Status> {
    match answer {
        Ok(_) => bail!("{what}: expected {expected:?}, got OK"),
        Err(status) if status.code() == expected => Ok(status),
        Err(status) => bail!("{what}: expected {expected:?}, got {}", describe(&status)),
    }
}

/// The field paths of the google.rpc.BadRequest in `status`.
#[must_use]
pub fn bad_request_fields(status: &Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|bad| {
            bad.field_violations
                .iter()
                .map(|v| v.field.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// `INVALID_ARGUMENT` whose BadRequest names exactly `field` (each request the
/// suite sends this way has exactly one thing wrong with it).
pub fn invalid_field<T>(
    what: &str,
    field: &str,
    answer: Result<Response<T>, Status>,
) -> anyhow::Result<()> {
    let status = code(what, Code::InvalidArgument, answer)?;
    let fields = bad_request_fields(&status);
    ensure!(
        fields == [field],
        "{what}: expected google.rpc.BadRequest naming exactly [{field:?}], got {fields:?} ({})",
        describe(&status)
    );
    Ok(())
}

/// `FAILED_PRECONDITION` whose PreconditionFailure carries a violation of `kind`.
pub fn precondition<T>(
    what: &str,
    kind: &str,
    answer: Result<Response<T>, Status>,
) -> anyhow::Result<()> {
    let status = code(what, Code::FailedPrecondition, answer)?;
    let kinds: Vec<String> = status
        .get_error_details()
        .precondition_failure()
        .map(|failure| {
            failure
                .violations
                .iter()
                .map(|v| v.r#type.clone())
                .collect()
        })
        .unwrap_or_default();
    ensure!(
        kinds.iter().any(|k| k == kind),
        "{what}: expected google.rpc.PreconditionFailure of type {kind:?}, got {kinds:?} ({})",
        describe(&status)
    );
    Ok(())
}

/// `ALREADY_EXISTS` with ErrorInfo reason `IDEMPOTENCY_KEY_REUSED` whose
/// `differing_fields` lists exactly `fields`.
pub fn key_reused<T>(
    what: &str,
    fields: &[&str],
    answer: Result<Response<T>, Status>,
) -> anyhow::Result<()> {
    let status = code(what, Code::AlreadyExists, answer)?;
    let details = status.get_error_details();
    let Some(info) = details.error_info() else {
        bail!(
            "{what}: ALREADY_EXISTS without google.rpc.ErrorInfo ({})",
            describe(&status)
        );
    };
    ensure!(
        info.reason == "IDEMPOTENCY_KEY_REUSED",
        "{what}: expected ErrorInfo reason IDEMPOTENCY_KEY_REUSED, got {:?}",
        info.reason
    );
    let differing = info
        .metadata
        .get("differing_fields")
        .map_or("", String::as_str);
    let mut listed: Vec<&str> = differing.split(',').filter(|f| !f.is_empty()).collect();
    listed.sort_unstable();
    let mut expected = fields.to_vec();
    expected.sort_unstable();
    ensure!(
        listed == expected,
        "{what}: expected differing_fields {expected:?}, got {differing:?}"
    );
    Ok(())
}

/// Whether the answer carries `posgate-idempotent-replay: true`.
#[must_use]
pub fn is_replay(metadata: &MetadataMap) -> bool {
    metadata
        .get(REPLAY_HEADER)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value == "true")
}

/// Checks a replayed answer: the replay header, and the same message as the
/// first answer, byte for byte.
pub fn replayed<T: prost::Message + std::fmt::Debug>(
    what: &str,
    first: &T,
    retry: &Response<T>,
) -> anyhow::Result<()> {
    ensure!(
        is_replay(retry.metadata()),
        "{what}: replayed answer lacks the header {REPLAY_HEADER}: true"
    );
    ensure!(
        first.encode_to_vec() == retry.get_ref().encode_to_vec(),
        "{what}: replayed answer differs from the first\nfirst: {first:?}\nretry: {:?}",
        retry.get_ref()
    );
    Ok(())
}

/// Checks an answer is a first answer, not a replay.
pub fn not_replayed<T>(what: &str, answer: &Response<T>) -> anyhow::Result<()> {
    ensure!(
        !is_replay(answer.metadata()),
        "{what}: a first answer carries {REPLAY_HEADER}: true"
    );
    Ok(())
}

/// `PERMISSION_DENIED` with ErrorInfo `reason` and, when `fields` is not
/// empty, a google.rpc.BadRequest naming exactly those fields.
pub fn denied<T>(
    what: &str,
    reason: &str,
    fields: &[&str],
    answer: Result<Response<T>, Status>,
) -> anyhow::Result<()> {
    let status = code(what, Code::PermissionDenied, answer)?;
    let got = status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default();
    ensure!(
        got == reason,
        "{what}: expected ErrorInfo reason {reason}, got {got:?} ({})",
        describe(&status)
    );
    let named = bad_request_fields(&status);
    ensure!(
        fields.is_empty() || named == fields,
        "{what}: expected google.rpc.BadRequest naming {fields:?}, got {named:?}"
    );
    Ok(())
}
