//! The leader election: one instance at a time runs the jobs that must run
//! once (scheduled clearing, audit sealing, key purges). The leader holds a
//! lock in the database (PostgreSQL: a session advisory lock, held by one
//! connection); the others try to take it every poll. When the leader dies
//! its connection closes, the database frees the lock, and the next poll of
//! another instance takes it: the takeover is bounded by the poll plus the
//! time the database needs to notice the closed connection (at once for a
//! killed process, whose kernel closes the socket; TCP keepalive for a
//! vanished host). The jobs keep their own per-run locks as well, so a
//! leader that lost its lock but has not noticed yet cannot run one twice.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::ports::db::Database;
use crate::ports::db::clearing::ClearingLock;

/// Whether this instance leads, as the election last saw it.
pub type Leadership = watch::Receiver<bool>;

/// Runs the election until `shutdown` turns true, publishing on `status`;
/// then resigns (frees the lock at once, so another instance takes over on
/// its next poll).
pub async fn run(
    db: Arc<dyn Database>,
    instance_id: String,
    poll: Duration,
    status: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut lock: Option<ClearingLock> = None;
    while !*shutdown.borrow() {
        lock = step(db.as_ref(), lock, &instance_id).await;
        status.send_if_modified(|leads| std::mem::replace(leads, lock.is_some()) != lock.is_some());
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            _ = shutdown.changed() => {}
        }
    }
    status.send_replace(false);
    if let Some(lock) = lock {
        lock.release().await;
        tracing::info!(instance = %instance_id, "resigned the leadership");
    }
}

/// One poll: keeps a held lock while it is held, else tries to take it.
async fn step(
    db: &dyn Database,
    lock: Option<ClearingLock>,
    instance_id: &str,
) -> Option<ClearingLock> {
    match lock {
        Some(mut held) => {
            if held.held().await {
                Some(held)
            } else {
                tracing::warn!(instance = %instance_id, "lost the leadership (its database connection is gone)");
                None
            }
        }
        None => match db.try_lead().await {
            Ok(Some(taken)) => {
                tracing::info!(instance = %instance_id, "became the leader");
                Some(taken)
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(instance = %instance_id, %error, "leader election failed; trying again");
                None
            }
        },
    }
}

/// A leadership that never changes: a single instance (tests, tools) leads.
pub fn always(leads: bool) -> Leadership {
    let (status, watch) = watch::channel(leads);
    // Dropping the sender leaves the receiver with its last value.
    drop(status);
    watch
}
