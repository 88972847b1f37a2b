//! The scheduled close inside `posgate serve`: after every store's cutoff
//! (plus a grace for requests in flight), the business day is closed and
//! its files written. With several gateway instances on one PostgreSQL
//! database, a session advisory lock makes exactly one of them run it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, Utc};

use super::close::{ClearingContext, ClearingError, files_created_at, run_day};
use crate::model::clock::Clock;

/// How often the scheduler looks for a day to close.
const TICK: Duration = Duration::from_secs(60);
/// How long after the last store's cutoff a day is closed: requests that
/// began before the cutoff finish well within it (they take milliseconds;
/// a card authorization waits at most its bank timeout).
pub const GRACE: chrono::Duration = chrono::Duration::minutes(5);
/// How many past days are examined: a gateway down over a long weekend
/// still closes those days when it comes back.
const LOOKBACK_DAYS: u64 = 7;

/// Business dates that have ended (every store's day plus the grace) by
/// `now`, oldest first, within the lookback.
pub fn ended_dates(context: &ClearingContext, now: DateTime<Utc>) -> Vec<NaiveDate> {
    let newest = now
        .date_naive()
        .checked_add_days(Days::new(1))
        .expect("date far from the end of the calendar");
    (0..=LOOKBACK_DAYS)
        .rev()
        .filter_map(|back| newest.checked_sub_days(Days::new(back)))
        .filter(|date| files_created_at(context.calendars.values(), *date) + GRACE <= now)
        .collect()
}

/// Closes every ended, still open business date once. Returns the dates run.
pub async fn tick(
    context: &ClearingContext,
    out_dir: &std::path::Path,
    now: DateTime<Utc>,
) -> Result<Vec<NaiveDate>, ClearingError> {
    let Some(lock) = context.store.try_clearing_lock().await? else {
        tracing::debug!("another instance runs scheduled clearing");
        return Ok(Vec::new());
    };
    let ran = close_ended_days(context, out_dir, now).await;
    lock.release().await;
    ran
}

/// The dates `tick` closes, while it holds the lock.
async fn close_ended_days(
    context: &ClearingContext,
    out_dir: &std::path::Path,
    now: DateTime<Utc>,
) -> Result<Vec<NaiveDate>, ClearingError> {
    let mut ran = Vec::new();
    for date in ended_dates(context, now) {
        if context.store.closed_day(date).await?.is_some() {
            continue;
        }
        let run = run_day(context, date, out_dir, now, &mut |progress| {
            tracing::info!(%date, items = progress.items, partners_done = progress.partners_done, "clearing run progress");
        })
        .await?;
        tracing::info!(%date, files = run.files.len(), positions = run.positions.len(), "business day closed and cleared");
        ran.push(date);
    }
    Ok(ran)
}

/// Runs [`tick`] every minute while this instance leads, until `stop`
/// turns true (the workers' shared run loop).
pub async fn run(
    context: Arc<ClearingContext>,
    out_dir: PathBuf,
    clock: Arc<dyn Clock>,
    leadership: crate::instance::leader::Leadership,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    crate::worker::run_leading("scheduled clearing", TICK, leadership, stop, || async {
        tick(&context, &out_dir, clock.now()).await.map(drop)
    })
    .await;
}
