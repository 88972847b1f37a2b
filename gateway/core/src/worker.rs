//! The run loop every background worker shares (card, wallet and online
//! bill store-and-forward, saga recovery, audit sealing, scheduled
//! clearing): one pass at a time, a fixed pause between passes, and one
//! shutdown signal (a `tokio::sync::watch` channel whose value turns `true`)
//! that ends the loop between passes.

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::model::transaction::{Event, TransactionStatus};
use crate::model::{Actor, Worker};
use crate::ports::db::StoreError;

/// Queue entries (or stuck transactions) a store-and-forward pass takes at most.
pub const SAF_BATCH: i64 = 64;

/// How long a transaction may stay `in_progress` before a worker treats its
/// request as cut off (crash, lost task) and recovers it.
pub const RECOVERY_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The actor of the events the store-and-forward workers record.
pub const SAF_ACTOR: Actor = Actor::Worker(Worker::StoreAndForward);

/// The event of a change a store-and-forward worker makes.
pub fn saf_event(
    kind: &str,
    from: TransactionStatus,
    to: TransactionStatus,
    detail: String,
) -> Event {
    Event::new(kind, Some(from), to, &SAF_ACTOR.to_string(), detail)
}

/// How often a store-and-forward worker looks for due work.
pub const SAF_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// Runs a store-and-forward worker: [`run_every`] with
/// [`SAF_POLL_INTERVAL`].
pub async fn run_passes<F, Fut>(what: &'static str, shutdown: watch::Receiver<bool>, pass: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), StoreError>>,
{
    run_every(what, SAF_POLL_INTERVAL, shutdown, pass).await;
}

/// Runs a worker: one `pass`, then a pause of `every`, until `shutdown`
/// changes. A failed pass is logged (as `what`) and the next one tries
/// again; each pass bounds its own work (a batch per poll). A pass in
/// progress when the signal comes finishes first.
pub async fn run_every<F, Fut, E>(
    what: &'static str,
    every: std::time::Duration,
    mut shutdown: watch::Receiver<bool>,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    loop {
        if *shutdown.borrow() {
            return;
        }
        if let Err(error) = pass().await {
            tracing::error!(%error, "{what} pass failed; the next pass tries again");
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Runs a job that must run once among the instances: [`run_every`], with
/// each pass skipped while this instance does not lead.
pub async fn run_leading<F, Fut, E>(
    what: &'static str,
    every: std::time::Duration,
    leadership: crate::instance::leader::Leadership,
    shutdown: watch::Receiver<bool>,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    run_every(what, every, shutdown, || {
        let leads = *leadership.borrow();
        let pass = leads.then(&mut pass);
        async move {
            match pass {
                Some(pass) => pass.await,
                None => Ok(()),
            }
        }
    })
    .await;
}

/// When a failed delivery is tried again: doubling from `min`, capped at `max`.
pub fn retry_at(
    now: DateTime<Utc>,
    attempts: i32,
    min: std::time::Duration,
    max: std::time::Duration,
) -> DateTime<Utc> {
    let factor = 1u32 << attempts.clamp(0, 16);
    let delay = min.saturating_mul(factor).min(max);
    now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::seconds(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_backs_off_to_the_cap() {
        let now = Utc::now();
        let min = std::time::Duration::from_secs(1);
        let max = std::time::Duration::from_secs(60);
        assert_eq!(
            retry_at(now, 0, min, max) - now,
            chrono::Duration::seconds(1)
        );
        assert_eq!(
            retry_at(now, 3, min, max) - now,
            chrono::Duration::seconds(8)
        );
        assert_eq!(
            retry_at(now, 30, min, max) - now,
            chrono::Duration::seconds(60)
        );
    }
}
