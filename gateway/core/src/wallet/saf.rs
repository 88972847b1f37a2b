//! The wallet store-and-forward worker. It delivers the reversals posgate
//! owes wallet operators (after an unknown outcome) until each is
//! acknowledged, retrying with backoff, and it recovers wallet requests a
//! crash cut off (still `in_progress` long after their longest call) by
//! queueing their reversal. Everything it needs is in the database, so it
//! picks up where a restarted gateway left off. The operator applies a
//! reversal at most once, and one that arrives before its original blocks
//! that original, so "reverse" is always safe to send.

use std::sync::Arc;

use posgate_partners::wallet::api::ReversalStatus;
use tokio::sync::watch;

use super::compensation;
use super::operators::{Operator, wallet_lines};
use super::outcome::reversal_of;
use super::service::{WalletService, key_of_record};
use crate::instance::Instance;
use crate::model::transaction::TransactionStatus;
use crate::model::wallet::{WalletRecord, WalletType};
use crate::ports::db::{
    KeyOp, RefundAdjust, StoreError, WalletChange, WalletSafItem, WalletUpdate, WalletWrite,
};
use crate::worker::{RECOVERY_GRACE, SAF_BATCH, saf_event};
use crate::worker::{retry_at, run_passes};

/// Runs until `shutdown` turns true, as `instance`.
pub async fn run(service: Arc<WalletService>, instance: Instance, shutdown: watch::Receiver<bool>) {
    run_passes("wallet store-and-forward", shutdown, || {
        poll(&service, &instance)
    })
    .await;
}

/// One pass: finish or compensate sagas a crash left open, recover cut-off
/// requests, then deliver what is due and not held by another instance.
pub async fn poll(service: &WalletService, instance: &Instance) -> Result<(), StoreError> {
    compensation::recover(service, instance).await?;
    recover(service).await?;
    let lease = instance.lease_at(service.clock.now());
    let due = service.db.wallet_saf_claim(&lease, SAF_BATCH).await?;
    let deliveries = due.into_iter().map(|item| deliver(service, item));
    for result in futures::future::join_all(deliveries).await {
        result?;
    }
    Ok(())
}

/// Turns wallet requests stuck `in_progress` into `pending_reversal` with a
/// queued reversal.
async fn recover(service: &WalletService) -> Result<(), StoreError> {
    let now = service.clock.now();
    let before = now
        - chrono::Duration::from_std(service.wallets.longest_call() + RECOVERY_GRACE)
            .unwrap_or_default();
    for record in service
        .db
        .stale_wallet_in_progress(before, SAF_BATCH)
        .await?
    {
        let write = WalletWrite {
            transaction_id: record.id.clone(),
            at: now,
            key: None,
            change: WalletChange::Update(Box::new(WalletUpdate {
                transaction_id: record.id.clone(),
                from: Some(TransactionStatus::InProgress),
                to: Some(TransactionStatus::PendingReversal),
                outcome: None,
            })),
            refund: None,
            lines: Vec::new(),
            business_date: record.business_date,
            event: saf_event(
                "outcome_unknown",
                TransactionStatus::InProgress,
                TransactionStatus::PendingReversal,
                "the request was cut off before its answer was recorded".to_owned(),
            ),
            enqueue: vec![reversal_of(&record, now)],
            acked: Vec::new(),
        };
        let outcome = service.db.write_wallet(write).await?;
        tracing::warn!(transaction_id = %record.id, ?outcome, "recovered a cut-off wallet request: reversal queued");
    }
    Ok(())
}

/// Sends one reversal; records the acknowledgement or the retry.
async fn deliver(service: &WalletService, item: WalletSafItem) -> Result<(), StoreError> {
    let now = service.clock.now();
    let Some(operator) = service.wallets.operator(&item.wallet_operator_id) else {
        let next = now + chrono::Duration::seconds(60);
        return service
            .db
            .saf_retry(
                item.id,
                next,
                &format!("no wallet operator {}", item.wallet_operator_id),
            )
            .await;
    };
    let record = &item.transaction;
    if let Some(parent_id) = awaits_parent(service, record).await? {
        // The payment may have spent this reload: its reversal gives the
        // money back first, or the operator would rightly refuse this one.
        let next = now + chrono::Duration::from_std(operator.config.retry_min).unwrap_or_default();
        return service
            .db
            .saf_retry(
                item.id,
                next,
                &format!("waits for the reversal of its payment {parent_id}"),
            )
            .await;
    }
    match operator.client.reverse(&record.id).await {
        Ok(answer) if answer.status == ReversalStatus::Refused => {
            stands(service, &item, operator).await
        }
        Ok(answer) => {
            // The wallet credit of a card saga is undone (or was never
            // applied): only now may its card SALE be reversed, before the
            // acknowledgement is recorded, so a crash in between redelivers
            // and repeats both (each is guarded).
            if record.status == TransactionStatus::PendingReversal
                && let Some(saga) = compensation::saga_of_credit(service, record).await?
            {
                compensation::compensate_card(service, &saga.card_transaction_id).await?;
            }
            let detail = format!("operator answered {:?}", answer.status);
            acknowledge(service, &item, detail).await
        }
        Err(error) => {
            let next = retry_at(
                now,
                item.attempts,
                operator.config.retry_min,
                operator.config.retry_max,
            );
            tracing::info!(queue_id = item.id, transaction_id = %record.id, attempts = item.attempts + 1, %error, "wallet reversal failed; will retry");
            service
                .db
                .saf_retry(item.id, next, &error.to_string())
                .await
        }
    }
}

/// The payment an auto-reload `TOP_UP` waits for: its reversal is sent only
/// once the payment of its saga is no longer being reversed (or cut off).
async fn awaits_parent(
    service: &WalletService,
    record: &WalletRecord,
) -> Result<Option<String>, StoreError> {
    if record.funding != "auto_reload" || record.status != TransactionStatus::PendingReversal {
        return Ok(None);
    }
    let Some(saga) = service.db.saga_of_step(&record.id).await? else {
        return Ok(None);
    };
    let parent = service.db.wallet_transaction(&saga.saga_id).await?;
    Ok(parent
        .filter(|parent| {
            matches!(
                parent.status,
                TransactionStatus::PendingReversal | TransactionStatus::InProgress
            )
        })
        .map(|parent| parent.id))
}

/// Records an operator's acknowledgement of a reversal: the transaction is
/// `reversed`, its key answers with that, and a refund's reservation is released.
async fn acknowledge(
    service: &WalletService,
    item: &WalletSafItem,
    detail: String,
) -> Result<(), StoreError> {
    let now = service.clock.now();
    let record = &item.transaction;
    let pending = record.status == TransactionStatus::PendingReversal;
    let mut key = None;
    let mut refund = None;
    let mut update = WalletUpdate {
        transaction_id: record.id.clone(),
        ..WalletUpdate::default()
    };
    if pending {
        update.from = Some(TransactionStatus::PendingReversal);
        update.to = Some(TransactionStatus::Reversed);
        let mut reversed = record.clone();
        reversed.status = TransactionStatus::Reversed;
        reversed.updated_at = now;
        // An auto-reload top-up is a step of its payment's saga: the
        // payment's key answers the POS, not the step's.
        if record.funding != "auto_reload" {
            key = Some(KeyOp::Answer {
                key: key_of_record(record),
                response: service.answer_bytes(&reversed, None).await?,
            });
        }
        if record.wallet_type == WalletType::Refund {
            refund = record
                .original_transaction_id
                .clone()
                .map(|original_id| RefundAdjust {
                    original_id,
                    reserve_delta: -record.amount_minor,
                    refunded_delta: 0,
                });
        }
    }
    let to = if pending {
        TransactionStatus::Reversed
    } else {
        record.status
    };
    let write = WalletWrite {
        transaction_id: record.id.clone(),
        at: now,
        key,
        change: WalletChange::Update(Box::new(update)),
        refund,
        lines: Vec::new(),
        business_date: record.business_date,
        event: saf_event(
            if pending {
                "reversed"
            } else {
                "reversal_acknowledged"
            },
            record.status,
            to,
            detail,
        ),
        enqueue: Vec::new(),
        acked: vec![item.id],
    };
    let outcome = service.db.write_wallet(write).await?;
    tracing::info!(queue_id = item.id, transaction_id = %record.id, ?outcome, "wallet operator acknowledged the reversal");
    Ok(())
}

/// The operator refused a reversal because the credit it would undo (a
/// top-up or refund) was already spent: the transaction stands. It is
/// recorded `completed` with its settlement lines (a compensated one gets
/// back the lines its compensation reversed), a refund's reservation becomes
/// refunded, the key's answer says COMPLETED, and the queue entry is
/// acknowledged. The card SALE of a saga whose credit stands is not
/// reversed: the card paid for money the wallet keeps.
async fn stands(
    service: &WalletService,
    item: &WalletSafItem,
    operator: &Operator,
) -> Result<(), StoreError> {
    let now = service.clock.now();
    let record = &item.transaction;
    if record.status != TransactionStatus::PendingReversal {
        return acknowledge(service, item, "operator refused the reversal".to_owned()).await;
    }
    let mut stood = record.clone();
    stood.status = TransactionStatus::Completed;
    stood.updated_at = now;
    if stood.outcome.operator_name.is_empty() {
        stood
            .outcome
            .operator_name
            .clone_from(&operator.config.name);
    }
    let refund = (record.wallet_type == WalletType::Refund)
        .then(|| record.original_transaction_id.clone())
        .flatten()
        .map(|original_id| RefundAdjust {
            original_id,
            reserve_delta: -record.amount_minor,
            refunded_delta: record.amount_minor,
        });
    let key = if record.funding == "auto_reload" {
        None
    } else {
        Some(KeyOp::Answer {
            key: key_of_record(record),
            response: service.answer_bytes(&stood, None).await?,
        })
    };
    let write = WalletWrite {
        transaction_id: record.id.clone(),
        at: now,
        key,
        change: WalletChange::Update(Box::new(WalletUpdate {
            transaction_id: record.id.clone(),
            from: Some(TransactionStatus::PendingReversal),
            to: Some(TransactionStatus::Completed),
            outcome: Some(stood.outcome.clone()),
        })),
        refund,
        lines: wallet_lines(&stood),
        // Lines land on today's business day: a closed day never changes.
        business_date: service.calendar(&record.store_id).business_date(now),
        event: saf_event(
            "reversal_refused",
            TransactionStatus::PendingReversal,
            TransactionStatus::Completed,
            "operator refused the reversal: the credit was spent, the transaction stands"
                .to_owned(),
        ),
        enqueue: Vec::new(),
        acked: vec![item.id],
    };
    let outcome = service.db.write_wallet(write).await?;
    tracing::warn!(queue_id = item.id, transaction_id = %record.id, ?outcome, "wallet operator refused the reversal: the transaction stands");
    Ok(())
}
