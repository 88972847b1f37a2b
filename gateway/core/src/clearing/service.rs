//! The clearing application service: what `posgate clearing` and `posgate
//! serve` ask of clearing, one function each. The entry points call these
//! and never reach into `close`, `recon` or `verify` themselves.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};

use super::close::run_day;
use super::model::DayRun;
use super::recon::{self, IngestError, Ingested};
use super::verify::{self, Report};
use crate::model::clock::Clock;
use crate::ports::db::{Database, StoreError, StoredException};

pub use super::close::{ClearingContext, ClearingError, ContextError, Progress};
pub use super::sign::Verifier;

/// Closes business date `date` (if it is still open) and writes, signs and
/// publishes its files into `out_dir/YYYY-MM-DD/`; see [`run_day`].
pub async fn close_day(
    context: &ClearingContext,
    date: NaiveDate,
    out_dir: &Path,
    now: DateTime<Utc>,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<DayRun, ClearingError> {
    run_day(context, date, out_dir, now, progress).await
}

/// Checks one published file (clearing file, manifest or settlement
/// instruction): signature, manifest entry, layout and totals.
pub async fn verify_file(path: &Path, verifier: &Verifier) -> Report {
    verify::verify_file(path, verifier).await
}

/// Ingests a partner's acknowledgement file: parses it, reconciles it
/// against posgate's items of its partner and closed business date, and
/// stores it with its exceptions in one transaction.
pub async fn reconcile(
    db: &Arc<dyn Database>,
    bytes: &[u8],
    now: DateTime<Utc>,
) -> Result<Ingested, IngestError> {
    let items_db = Arc::clone(db);
    recon::ingest(db.as_ref(), bytes, now, |partner, date| async move {
        recon::day_items(items_db.as_ref(), &partner, date).await
    })
    .await
}

/// The reconciliation exceptions, optionally of one business date and/or
/// partner.
pub async fn exceptions(
    db: &dyn Database,
    business_date: Option<NaiveDate>,
    partner: Option<&str>,
) -> Result<Vec<StoredException>, StoreError> {
    db.exceptions(business_date, partner).await
}

/// The scheduled close of `posgate serve`: closes every ended business day
/// once, every minute while this instance leads, until `stop` turns true.
pub async fn run_scheduled(
    context: Arc<ClearingContext>,
    out_dir: PathBuf,
    clock: Arc<dyn Clock>,
    leadership: crate::instance::leader::Leadership,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    super::schedule::run(context, out_dir, clock, leadership, stop).await;
}
