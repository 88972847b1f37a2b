//! Keeping this instance's leases alive while it runs, and giving them up
//! when it drains.

use std::sync::Arc;

use tokio::sync::watch;

use super::Instance;
use crate::model::clock::Clock;
use crate::ports::db::{Database, StoreError};

/// Renews every lease this instance holds, every third of the lease
/// length, until `shutdown` turns true. Two renewals may fail in a row (a
/// database hiccup) before any lease runs out.
pub async fn renew(
    db: Arc<dyn Database>,
    instance: Instance,
    clock: Arc<dyn Clock>,
    shutdown: watch::Receiver<bool>,
) {
    let every = instance.lease / 3;
    crate::worker::run_every("lease renewal", every, shutdown, || async {
        db.renew_leases(&instance.lease_at(clock.now()))
            .await
            .map(drop)
    })
    .await;
}

/// Frees every lease this instance holds, so the other instances take its
/// queue entries and sagas over at once. Call it only once this instance's
/// workers have stopped: a lease freed under a running delivery would let
/// another instance send the same message at the same time.
pub async fn release(db: &dyn Database, instance: &Instance) -> Result<u64, StoreError> {
    let freed = db.release_leases(&instance.holder).await?;
    tracing::info!(instance = %instance.id, freed, "released this instance's leases");
    Ok(freed)
}
