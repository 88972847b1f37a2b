//! The online-bill store-and-forward worker. It resolves payment notices
//! whose outcome is unknown: it asks the biller for the notice's status
//! first, records the biller's answer if it has one, and otherwise sends the
//! same notice again (same body, same Idempotency-Key: the biller applies it
//! once), retrying with backoff until the biller answers. It also queues
//! notices a crash cut off (still `in_progress` long after their longest
//! call, with nothing queued). Everything it needs is in the database, so it
//! picks up where a restarted gateway left off. A resolved notice's answer is
//! stored under the POS's key, so the POS's retry gets the final answer.

use std::sync::Arc;

use posgate_partners::wallet::api::TransactionState;
use tokio::sync::watch;

use super::online::{NoticeEnd, notify};
use super::service::BillService;
use crate::instance::Instance;
use crate::model::transaction::TransactionStatus;
use crate::ports::db::{BillSafItem, StoreError, WriteOutcome};
use crate::worker::{RECOVERY_GRACE, SAF_ACTOR, SAF_BATCH};
use crate::worker::{retry_at, run_passes};

/// When an item names a biller no longer configured online, look again after this long.
const UNKNOWN_BILLER_RETRY_S: i64 = 60;

/// Runs until `shutdown` turns true, as `instance`.
pub async fn run(bills: Arc<BillService>, instance: Instance, shutdown: watch::Receiver<bool>) {
    run_passes("bill store-and-forward", shutdown, || {
        poll(&bills, &instance)
    })
    .await;
}

/// One pass: queue cut-off notices, then resolve what is due and not held
/// by another instance.
pub async fn poll(bills: &BillService, instance: &Instance) -> Result<(), StoreError> {
    recover(bills).await?;
    let lease = instance.lease_at(bills.now());
    let due = bills.db().bill_saf_claim(&lease, SAF_BATCH).await?;
    let deliveries = due.into_iter().map(|item| resolve(bills, item));
    for result in futures::future::join_all(deliveries).await {
        result?;
    }
    Ok(())
}

/// Queues a resolution for notices stuck `in_progress` with nothing queued.
/// The write cannot be guarded by a status move (the notice stays
/// `in_progress`), so it runs under the recovery lock: one instance at a
/// time checks "nothing queued" and queues. The lock is taken only when a
/// first look finds something, so a quiet pass costs one read as before.
async fn recover(bills: &BillService) -> Result<(), StoreError> {
    let now = bills.now();
    let longest = bills.online().longest_call() + RECOVERY_GRACE;
    let before = now - chrono::Duration::from_std(longest).unwrap_or_default();
    if bills
        .db()
        .stale_bill_in_progress(before, 1)
        .await?
        .is_empty()
    {
        return Ok(());
    }
    let Some(lock) = bills.db().try_recovery_lock().await? else {
        return Ok(());
    };
    // Read again under the lock: another instance may have queued them.
    let recovered = recover_stale(bills, before).await;
    lock.release().await;
    recovered
}

/// Queues the resolutions of the notices stale since `before`, under the lock.
async fn recover_stale(
    bills: &BillService,
    before: chrono::DateTime<chrono::Utc>,
) -> Result<(), StoreError> {
    for record in bills.db().stale_bill_in_progress(before, SAF_BATCH).await? {
        let end =
            NoticeEnd::Unknown("the notice was cut off before its answer was recorded".to_owned());
        let outcome = bills
            .record_notice_end(&record, &end, &SAF_ACTOR.to_string(), Vec::new())
            .await?;
        tracing::warn!(transaction_id = %record.id, ?outcome, "recovered a cut-off bill notice: resolution queued");
    }
    Ok(())
}

/// Asks the biller about one notice, sends it again if it never arrived,
/// and records the answer; a biller that cannot answer is tried again later.
async fn resolve(bills: &BillService, item: BillSafItem) -> Result<(), StoreError> {
    let now = bills.now();
    let record = &item.transaction;
    if record.status != TransactionStatus::InProgress {
        // Settled another way while the entry waited (another entry, a
        // cancellation): nothing to ask the biller.
        tracing::info!(queue_id = item.id, transaction_id = %record.id, status = record.status.as_str(), "bill notice already settled; entry acknowledged");
        return bills.db().saf_ack_moot(item.id, now).await;
    }
    let Some(online) = bills.online().get(&record.partner_id) else {
        let next = now + chrono::Duration::seconds(UNKNOWN_BILLER_RETRY_S);
        return bills
            .db()
            .saf_retry(
                item.id,
                next,
                &format!("no online biller {}", record.partner_id),
            )
            .await;
    };
    let end = match online.client.status(&record.id).await {
        Ok(Some(status)) if status.status == TransactionState::Accepted => NoticeEnd::Paid,
        Ok(Some(status)) => NoticeEnd::Declined(format!(
            "status inquiry: the biller holds the notice as {:?}",
            status.status
        )),
        Ok(None) => notify(online, record).await.0,
        Err(error) => NoticeEnd::Unknown(format!("status inquiry failed: {error}")),
    };
    if let NoticeEnd::Unknown(reason) = &end {
        let next = retry_at(
            now,
            item.attempts,
            online.config.retry_min,
            online.config.retry_max,
        );
        tracing::info!(queue_id = item.id, transaction_id = %record.id, attempts = item.attempts + 1, %reason, "bill notice unresolved; will retry");
        return bills.db().saf_retry(item.id, next, reason).await;
    }
    let outcome = bills
        .record_notice_end(record, &end, &SAF_ACTOR.to_string(), vec![item.id])
        .await?;
    tracing::info!(queue_id = item.id, transaction_id = %record.id, ?end, ?outcome, "bill notice resolved");
    if outcome != WriteOutcome::Written {
        // The write found the notice settled by someone else since the
        // claim: the entry is moot, and would otherwise be asked about forever.
        bills.db().saf_ack_moot(item.id, now).await?;
    }
    Ok(())
}
