//! The group commit's metrics (README "Metrics"): how many writes each batch
//! carried and how long its transaction took, per backend. Both writers (the
//! SQLite writer thread, the PostgreSQL writer tasks) record one sample per
//! batch; without a recorder installed this costs next to nothing.

use std::time::Duration;

/// `posgate_db_batch_size{backend}`: writes committed in one transaction.
pub const DB_BATCH_SIZE: &str = "posgate_db_batch_size";
/// `posgate_db_commit_duration_seconds{backend}`: one batch's transaction,
/// begin to commit (its per-write fallback included when the batch failed).
pub const DB_COMMIT_DURATION_SECONDS: &str = "posgate_db_commit_duration_seconds";

/// The `backend` label: which database committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// Records one batch of `writes` that took `took` to commit.
pub(crate) fn record_batch(backend: Backend, writes: usize, took: Duration) {
    let backend = backend.as_str();
    // Batches hold at most a few hundred writes: exact in an f64.
    #[allow(clippy::cast_precision_loss)]
    metrics::histogram!(DB_BATCH_SIZE, "backend" => backend).record(writes as f64);
    metrics::histogram!(DB_COMMIT_DURATION_SECONDS, "backend" => backend)
        .record(took.as_secs_f64());
}
