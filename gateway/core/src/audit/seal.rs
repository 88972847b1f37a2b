//! Checkpoints: the HSM signs (sequence, head hash) of the chain with
//! Ed25519. The background sealer of `posgate serve` seals every N new
//! entries or every T seconds; on PostgreSQL an advisory lock lets one
//! instance seal at a time (the others find it taken and skip the round).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use posgate_hsm::KeyRef;

use super::Audit;
use crate::audit::chain::checkpoint_statement;
use crate::model::chain::Checkpoint;

/// How often the sealer looks at the chain head: the entry-count trigger
/// fires within this long of being reached.
const SEALER_POLL: Duration = Duration::from_millis(500);

/// Why a seal failed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(transparent)]
    Store(#[from] crate::ports::db::StoreError),
    #[error("signing the checkpoint failed: {0}")]
    Hsm(#[from] posgate_hsm::HsmError),
}

/// The key id a checkpoint reports: `{label}:{version}`, as `posgate keys
/// list` shows the label and version.
pub fn key_id(checkpoint: &Checkpoint) -> String {
    format!("{}:{}", checkpoint.key_label, checkpoint.key_version)
}

/// Signs the current chain head unless it is sealed already (or empty, or
/// another instance holds the sealer's lock). Returns the new checkpoint.
pub async fn seal_once(audit: &Audit, now: DateTime<Utc>) -> Result<Option<Checkpoint>, SealError> {
    let Some(lock) = audit.db.seal_lock().await? else {
        return Ok(None);
    };
    let sealed = seal_head(audit, now).await;
    lock.release().await;
    sealed
}

/// Signs the chain head unless it is sealed already; the caller holds the lock.
async fn seal_head(audit: &Audit, now: DateTime<Utc>) -> Result<Option<Checkpoint>, SealError> {
    let (sequence, head_hash) = audit.db.chain_head().await?;
    if sequence == 0 {
        return Ok(None);
    }
    if let Some(latest) = audit.db.latest_checkpoint(sequence).await?
        && latest.sequence == sequence
    {
        return Ok(None);
    }
    let tag = audit
        .hsm
        .sign(
            &KeyRef::latest(&audit.config.signing_key),
            &checkpoint_statement(sequence, &head_hash),
        )
        .await?;
    let checkpoint = Checkpoint {
        sequence,
        head_hash,
        signature: tag.bytes,
        key_label: audit.config.signing_key.clone(),
        key_version: i32::try_from(tag.key_version).unwrap_or(i32::MAX),
        signed_at: now,
    };
    let inserted = audit.db.insert_checkpoint(&checkpoint).await?;
    Ok(inserted.then_some(checkpoint))
}

/// The background sealer: seals when `checkpoint_every_entries` new entries
/// arrived or `checkpoint_interval` passed with any, while this instance
/// leads, until told to stop (the workers' shared run loop, one look every
/// [`SEALER_POLL`]).
pub async fn run(
    audit: Audit,
    clock: std::sync::Arc<dyn crate::model::clock::Clock>,
    leadership: crate::instance::leader::Leadership,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let sealed_at = std::sync::Mutex::new(Instant::now());
    crate::worker::run_leading("audit sealing", SEALER_POLL, leadership, stop, || {
        seal_if_due(&audit, clock.now(), &sealed_at)
    })
    .await;
}

/// One look of the sealer: seals if [`due`], and remembers when it last did.
async fn seal_if_due(
    audit: &Audit,
    now: chrono::DateTime<chrono::Utc>,
    sealed_at: &std::sync::Mutex<Instant>,
) -> Result<(), SealError> {
    let last = *sealed_at.lock().expect("sealer clock lock");
    if !due(audit, last).await? {
        return Ok(());
    }
    if let Some(checkpoint) = seal_once(audit, now).await? {
        tracing::info!(sequence = checkpoint.sequence, "sealed audit checkpoint");
    }
    *sealed_at.lock().expect("sealer clock lock") = Instant::now();
    Ok(())
}

/// Whether enough entries arrived, or enough time passed with any, since
/// the latest checkpoint.
async fn due(audit: &Audit, sealed_at: Instant) -> Result<bool, crate::ports::db::StoreError> {
    let (head, _) = audit.db.chain_head().await?;
    let sealed = audit
        .db
        .latest_checkpoint(head)
        .await?
        .map_or(0, |checkpoint| checkpoint.sequence);
    let unsealed = head - sealed;
    crate::metrics::set_seal_lag(unsealed);
    Ok(unsealed >= audit.config.checkpoint_every_entries
        || (unsealed > 0 && sealed_at.elapsed() >= audit.config.checkpoint_interval))
}
