//! `VerifyChain`: recomputes the hash chain over a range, in batches of
//! [`BATCH`] entries (never the whole chain in memory), checks every signed
//! checkpoint in the range, and names the first bad entry and what is wrong
//! with it.
//!
//! Each stored entry carries the hash it chains from (`prev_hash`) and its
//! own hash. An entry at the expected sequence `s`, with `running` the
//! recomputed hash of `s - 1`, is good when its `prev_hash` is `running` and
//! its content hashes to its stored hash. The first entry that is not good
//! is classified as follows (the sequence is part of the hashed content, so
//! a renumbered entry no longer hashes to its stored hash):
//!
//! | found at `s` | problem, first bad sequence |
//! |---|---|
//! | sequence `s` absent (gap, or the rows end before the range does) | DELETED, `s` |
//! | linked, content does not hash to its hash, and the next entry chains from `running` | INSERTED, `s` |
//! | linked, content does not hash to its hash | MODIFIED, `s` |
//! | not linked, but its content hashes correctly from `running` (its `prev_hash` was changed) | MODIFIED, `s` |
//! | chains from the stored hash of a later entry | REORDERED, `s` |
//! | chains from the stored hash of entry `j < s - 1` (entries `j+1..s-1` are not linked to) | INSERTED, `j + 1` |
//! | chains from a hash no entry has, and is itself consistent (its predecessor's hash was rewritten) | MODIFIED, `s - 1` |
//! | chains from a hash no entry has, and is not consistent (a renumbered successor of a missing entry) | DELETED, `s` |
//!
//! At each checkpoint's sequence, its signature must verify under its key
//! (else `CHECKPOINT_SIGNATURE_INVALID`) and its signed hash must equal the
//! recomputed hash (else `CHECKPOINT_MISMATCH`): that catches an attacker who
//! rewrote entries and recomputed every hash after them.

use std::collections::HashMap;

use posgate_hsm::{KeyRef, PublicKey};

use super::Audit;
use crate::audit::chain::{GENESIS_HASH, checkpoint_statement, entry_hash};
use crate::model::chain::{ChainEntry, Checkpoint};
use crate::ports::db::StoreError;

/// Entries read per round trip: bounds memory (about 5 MB per batch) while
/// keeping round trips few.
pub const BATCH: i64 = 10_000;

/// What is wrong at the first bad entry (audit.proto `ChainProblem`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    Modified,
    Deleted,
    Inserted,
    Reordered,
    CheckpointMismatch,
    CheckpointSignatureInvalid,
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `None` when every entry and checkpoint checked is intact.
    pub failure: Option<Failure>,
    pub checked_from: i64,
    pub checked_to: i64,
    pub checked_count: i64,
    /// The recomputed hash at `checked_to` (when ok).
    pub head_hash: Option<Vec<u8>>,
    /// The latest checkpoint checked whose signature and hash held.
    pub checkpoint: Option<Checkpoint>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub sequence: i64,
    pub problem: Problem,
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading a checkpoint key from the HSM failed: {0}")]
    Hsm(posgate_hsm::HsmError),
}

/// Checks checkpoint signatures with the keys' public halves, fetched once each.
struct Signatures<'a> {
    audit: &'a Audit,
    keys: HashMap<(String, i32), Option<PublicKey>>,
}

impl Signatures<'_> {
    /// `Ok(None)` when the signature verifies, else why not.
    async fn check(&mut self, checkpoint: &Checkpoint) -> Result<Option<String>, VerifyError> {
        let id = (checkpoint.key_label.clone(), checkpoint.key_version);
        if !self.keys.contains_key(&id) {
            let key = match u32::try_from(checkpoint.key_version) {
                Ok(version) => match self
                    .audit
                    .hsm
                    .public_key(&KeyRef::version(&checkpoint.key_label, version))
                    .await
                {
                    Ok(key) => Some(key),
                    Err(
                        posgate_hsm::HsmError::UnknownKey { .. }
                        | posgate_hsm::HsmError::UnknownVersion { .. }
                        | posgate_hsm::HsmError::WrongKeyType { .. },
                    ) => None,
                    Err(error) => return Err(VerifyError::Hsm(error)),
                },
                Err(_) => None,
            };
            self.keys.insert(id.clone(), key);
        }
        let Some(PublicKey::Ed25519(public)) = self.keys.get(&id).cloned().flatten() else {
            return Ok(Some(format!(
                "checkpoint {} names key {}:{}, which is not an Ed25519 key of this HSM",
                checkpoint.sequence, checkpoint.key_label, checkpoint.key_version
            )));
        };
        let statement = checkpoint_statement(checkpoint.sequence, &checkpoint.head_hash);
        let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public);
        Ok(match key.verify(&statement, &checkpoint.signature) {
            Ok(()) => None,
            Err(_) => Some(format!(
                "checkpoint {} signature does not verify under key {}:{}",
                checkpoint.sequence, checkpoint.key_label, checkpoint.key_version
            )),
        })
    }
}

/// Verifies entries `from..=to` (both >= 1, validated by the caller),
/// anchored on the latest checkpoint before `from` when there is one.
pub async fn verify(audit: &Audit, from: i64, to: i64) -> Result<Report, VerifyError> {
    let store = &audit.db;
    let mut signatures = Signatures {
        audit,
        keys: HashMap::new(),
    };
    let (mut expected, mut running) = (1_i64, GENESIS_HASH.to_vec());
    if from > 1
        && let Some(anchor) = store.latest_checkpoint(from - 1).await?
    {
        if let Some(detail) = signatures.check(&anchor).await? {
            return Ok(failed(
                anchor.sequence,
                anchor.sequence,
                0,
                Problem::CheckpointSignatureInvalid,
                detail,
                None,
            ));
        }
        expected = anchor.sequence + 1;
        running.clone_from(&anchor.head_hash);
    }
    let checked_from = expected;
    let mut count = 0_i64;
    let mut covering: Option<Checkpoint> = None;
    while expected <= to {
        let batch = store.chain_entries(expected, to, BATCH).await?;
        let Some(last) = batch.last() else {
            return Ok(failed(
                checked_from,
                expected,
                count,
                Problem::Deleted,
                format!("entries {expected}..{to} are missing (the chain ends before them)"),
                covering,
            ));
        };
        let checkpoints = store
            .checkpoints(expected, last.sequence, BATCH + 1)
            .await?;
        let mut checkpoints = checkpoints.into_iter().peekable();
        for entry in &batch {
            if let Some(failure) = check_entry(audit, entry, expected, &running).await? {
                return Ok(failed(
                    checked_from,
                    failure.sequence.max(checked_from),
                    count,
                    failure.problem,
                    failure.detail,
                    covering,
                ));
            }
            running.clone_from(&entry.entry_hash);
            count += 1;
            while let Some(checkpoint) = checkpoints.next_if(|c| c.sequence <= expected) {
                if checkpoint.sequence < expected {
                    continue;
                }
                if let Some(detail) = signatures.check(&checkpoint).await? {
                    return Ok(failed(
                        checked_from,
                        expected,
                        count,
                        Problem::CheckpointSignatureInvalid,
                        detail,
                        covering,
                    ));
                }
                if checkpoint.head_hash != running {
                    return Ok(failed(
                        checked_from,
                        expected,
                        count,
                        Problem::CheckpointMismatch,
                        format!(
                            "checkpoint {expected} signed hash {} but the chain recomputes to {}",
                            hex::encode(&checkpoint.head_hash),
                            hex::encode(&running)
                        ),
                        covering,
                    ));
                }
                covering = Some(checkpoint);
            }
            expected += 1;
        }
    }
    Ok(Report {
        failure: None,
        checked_from,
        checked_to: to,
        checked_count: count,
        head_hash: Some(running),
        checkpoint: covering,
    })
}

fn failed(
    checked_from: i64,
    sequence: i64,
    count: i64,
    problem: Problem,
    detail: String,
    checkpoint: Option<Checkpoint>,
) -> Report {
    let mut detail = detail;
    detail.truncate(1000);
    Report {
        failure: Some(Failure {
            sequence,
            problem,
            detail,
        }),
        checked_from,
        checked_to: sequence,
        checked_count: count,
        head_hash: None,
        checkpoint,
    }
}

/// Checks one entry found where `expected` should be; `None` when good.
async fn check_entry(
    audit: &Audit,
    entry: &ChainEntry,
    expected: i64,
    running: &[u8],
) -> Result<Option<Failure>, StoreError> {
    let failure = |sequence: i64, problem: Problem, detail: String| {
        Ok(Some(Failure {
            sequence,
            problem,
            detail,
        }))
    };
    if entry.sequence != expected {
        return failure(
            expected,
            Problem::Deleted,
            format!(
                "entries {expected}..{} are missing (sequence gap)",
                entry.sequence - 1
            ),
        );
    }
    let linked = entry.prev_hash == running;
    let recomputed = entry_hash(&entry.prev_hash, expected, &entry.content);
    let consistent = recomputed[..] == entry.entry_hash[..];
    if linked && consistent {
        return Ok(None);
    }
    let found = hex::encode(&entry.entry_hash);
    if linked {
        let next = audit
            .db
            .chain_entries(expected + 1, expected + 1, 1)
            .await?;
        if next.first().is_some_and(|next| next.prev_hash == running) {
            return failure(
                expected,
                Problem::Inserted,
                format!(
                    "entry {expected} is not linked into the chain: entry {} chains from entry {}",
                    expected + 1,
                    expected - 1
                ),
            );
        }
        return failure(
            expected,
            Problem::Modified,
            format!(
                "entry {expected} content hashes to {}, its recorded hash is {found}",
                hex::encode(recomputed)
            ),
        );
    }
    if entry_hash(running, expected, &entry.content)[..] == entry.entry_hash[..] {
        return failure(
            expected,
            Problem::Modified,
            format!(
                "entry {expected} records it chains from {}, not from entry {}",
                hex::encode(&entry.prev_hash),
                expected - 1
            ),
        );
    }
    match audit.db.sequence_of_hash(&entry.prev_hash).await? {
        Some(source) if source >= expected => failure(
            expected,
            Problem::Reordered,
            format!("entry {expected} chains from the hash of later entry {source}"),
        ),
        Some(source) if source < expected - 1 => failure(
            source + 1,
            Problem::Inserted,
            format!(
                "entries {}..{} are not linked into the chain: entry {expected} chains from entry {source}",
                source + 1,
                expected - 1
            ),
        ),
        _ if consistent && expected > 1 => failure(
            expected - 1,
            Problem::Modified,
            format!(
                "entry {} has hash {}, but entry {expected} chains from {}",
                expected - 1,
                hex::encode(running),
                hex::encode(&entry.prev_hash)
            ),
        ),
        _ => failure(
            expected,
            Problem::Deleted,
            format!(
                "entry {expected} chains from {}, which no entry has: the entry before it is missing",
                hex::encode(&entry.prev_hash)
            ),
        ),
    }
}
