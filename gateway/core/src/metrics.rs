//! The core's metrics (README "Metrics"): the store-and-forward backlog,
//! read from the database every few seconds by a small worker the binary
//! starts with its metrics endpoint, and the audit chain's seal lag, which
//! the sealer sets as it looks at the chain. Labels are closed sets (the
//! queue's kind); without a recorder installed, recording costs next to
//! nothing.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::model::clock::Clock;
use crate::ports::db::{Database, StoreError};

/// `posgate_saf_queue_depth{queue}`: entries waiting for a partner's acknowledgement.
pub const SAF_QUEUE_DEPTH: &str = "posgate_saf_queue_depth";
/// `posgate_saf_oldest_age_seconds{queue}`: how long the oldest of them has waited.
pub const SAF_OLDEST_AGE_SECONDS: &str = "posgate_saf_oldest_age_seconds";
/// `posgate_audit_seal_lag_entries`: audit chain entries no signed checkpoint covers yet.
pub const AUDIT_SEAL_LAG_ENTRIES: &str = "posgate_audit_seal_lag_entries";

/// How often the backlog is read: often enough for an alert to fire within
/// a scrape or two, rare enough that its three counts cost the database
/// nothing (they scan only the unacknowledged entries, by a partial index).
pub const SAF_BACKLOG_INTERVAL: Duration = Duration::from_secs(5);

/// Keeps the backlog gauges fresh, one read every [`SAF_BACKLOG_INTERVAL`],
/// until `stop` changes. Ages are taken on `clock`, the clock the entries
/// were queued by.
pub async fn run_saf_backlog(
    db: Arc<dyn Database>,
    clock: Arc<dyn Clock>,
    stop: watch::Receiver<bool>,
) {
    crate::worker::run_every(
        "store-and-forward backlog metrics",
        SAF_BACKLOG_INTERVAL,
        stop,
        || refresh_saf_backlog(db.as_ref(), clock.now()),
    )
    .await;
}

/// Reads every queue's backlog once and sets its gauges.
pub async fn refresh_saf_backlog(db: &dyn Database, now: DateTime<Utc>) -> Result<(), StoreError> {
    for backlog in db.saf_backlog().await? {
        let queue = backlog.queue.as_str();
        metrics::gauge!(SAF_QUEUE_DEPTH, "queue" => queue).set(as_gauge(backlog.depth));
        metrics::gauge!(SAF_OLDEST_AGE_SECONDS, "queue" => queue)
            .set(backlog.oldest_age_seconds(now));
    }
    Ok(())
}

/// Sets the audit seal lag: `entries` appended since the latest checkpoint.
pub fn set_seal_lag(entries: i64) {
    metrics::gauge!(AUDIT_SEAL_LAG_ENTRIES).set(as_gauge(entries));
}

/// A count as a gauge value (exact below 2^53, far beyond any queue or lag).
#[allow(clippy::cast_precision_loss)]
fn as_gauge(count: i64) -> f64 {
    count as f64
}
