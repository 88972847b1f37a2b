//! The wallet store-and-forward worker. It delivers the reversals posgate
//! owes wallet operators (after an unknown outcome) until each is
//! acknowledged, retrying with backoff, and it recovers wallet requests a
//! crash cut off (still `in_progress` long after their longest call) by
//! queueing their reversal. Everything it needs is in the database, so it
//! picks up where a restarted gateway left off. The operator applies a
//! reversal at most once, and one that arrives before its original blocks
//! that original, so "reverse" is always safe to send.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{Operator, Wallets, wallet_lines};
use crate::grpc::Gateway;
use crate::grpc::wallet::{answer_bytes, reversal_of};
use posgate_core::model::IdempotencyKey;
use posgate_core::ports::db::{
    Event, KeyOp, RefundAdjust, StoreError, TransactionStatus, WalletChange, WalletSafItem,
    WalletType, WalletUpdate, WalletWrite,
};
use posgate_core::worker::{retry_at, run_passes};
use posgate_partners::wallet::api::ReversalStatus;

/// Most queue entries taken per poll.
const BATCH: i64 = 64;
/// How long past its longest call a request must sit `in_progress` before
/// the worker decides its caller is gone.
const RECOVERY_GRACE: Duration = Duration::from_secs(5);

/// Runs until `shutdown` turns true.
pub async fn run(gateway: Arc<Gateway>, wallets: Arc<Wallets>, shutdown: watch::Receiver<bool>) {
    run_passes("wallet store-and-forward", shutdown, || {
        poll(&gateway, &wallets)
    })
    .await;
}

/// One pass: finish or compensate sagas a crash left open, recover cut-off
/// requests, then deliver what is due.
pub async fn poll(gateway: &Gateway, wallets: &Wallets) -> Result<(), StoreError> {
    super::reload::recover(gateway, wallets).await?;
    recover(gateway, wallets).await?;
    let now = gateway.clock.now();
    let due = gateway.db.wallet_saf_due(now, BATCH).await?;
    let deliveries = due.into_iter().map(|item| deliver(gateway, wallets, item));
    for result in futures::future::join_all(deliveries).await {
        result?;
    }
    Ok(())
}

fn event(kind: &str, from: TransactionStatus, to: TransactionStatus, detail: String) -> Event {
    Event {
        event_type: kind.to_owned(),
        from_status: Some(from),
        to_status: to,
        actor: "saf".to_owned(),
        detail,
    }
}

/// Turns wallet requests stuck `in_progress` into `pending_reversal` with a
/// queued reversal.
async fn recover(gateway: &Gateway, wallets: &Wallets) -> Result<(), StoreError> {
    let now = gateway.clock.now();
    let before = now
        - chrono::Duration::from_std(wallets.longest_call() + RECOVERY_GRACE).unwrap_or_default();
    for record in gateway.db.stale_wallet_in_progress(before, BATCH).await? {
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
            event: event(
                "outcome_unknown",
                TransactionStatus::InProgress,
                TransactionStatus::PendingReversal,
                "the request was cut off before its answer was recorded".to_owned(),
            ),
            enqueue: vec![reversal_of(&record, now)],
            acked: Vec::new(),
        };
        let outcome = gateway.db.write_wallet(write).await?;
        tracing::warn!(transaction_id = %record.id, ?outcome, "recovered a cut-off wallet request: reversal queued");
    }
    Ok(())
}

/// Sends one reversal; records the acknowledgement or the retry.
async fn deliver(
    gateway: &Gateway,
    wallets: &Wallets,
    item: WalletSafItem,
) -> Result<(), StoreError> {
    let now = gateway.clock.now();
    let Some(operator) = wallets.operator(&item.wallet_operator_id) else {
        let next = now + chrono::Duration::seconds(60);
        return gateway
            .db
            .saf_retry(
                item.id,
                next,
                &format!("no wallet operator {}", item.wallet_operator_id),
            )
            .await;
    };
    let record = &item.transaction;
    if let Some(parent_id) = awaits_parent(gateway, record).await? {
        // The payment may have spent this reload: its reversal gives the
        // money back first, or the operator would rightly refuse this one.
        let next = now + chrono::Duration::from_std(operator.config.retry_min).unwrap_or_default();
        return gateway
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
            stands(gateway, &item, operator).await
        }
        Ok(answer) => {
            // The wallet credit of a card saga is undone (or was never
            // applied): only now may its card SALE be reversed, before the
            // acknowledgement is recorded, so a crash in between redelivers
            // and repeats both (each is guarded).
            if record.status == TransactionStatus::PendingReversal
                && let Some(saga) = super::reload::saga_of_credit(gateway, record).await?
            {
                super::reload::compensate_card(gateway, &saga.card_transaction_id).await?;
            }
            let detail = format!("operator answered {:?}", answer.status);
            acknowledge(gateway, &item, detail).await
        }
        Err(error) => {
            let next = retry_at(
                now,
                item.attempts,
                operator.config.retry_min,
                operator.config.retry_max,
            );
            tracing::info!(queue_id = item.id, transaction_id = %record.id, attempts = item.attempts + 1, %error, "wallet reversal failed; will retry");
            gateway
                .db
                .saf_retry(item.id, next, &error.to_string())
                .await
        }
    }
}

/// The payment an auto-reload `TOP_UP` waits for: its reversal is sent only
/// once the payment of its saga is no longer being reversed (or cut off).
async fn awaits_parent(
    gateway: &Gateway,
    record: &posgate_core::ports::db::WalletRecord,
) -> Result<Option<String>, StoreError> {
    if record.funding != "auto_reload" || record.status != TransactionStatus::PendingReversal {
        return Ok(None);
    }
    let Some(saga) = gateway.db.saga_of_step(&record.id).await? else {
        return Ok(None);
    };
    let parent = gateway.db.wallet_transaction(&saga.saga_id).await?;
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
    gateway: &Gateway,
    item: &WalletSafItem,
    detail: String,
) -> Result<(), StoreError> {
    let now = gateway.clock.now();
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
                key: IdempotencyKey {
                    store_id: record.store_id.clone(),
                    terminal_id: record.terminal_id.clone(),
                    client_request_id: record.client_request_id.clone(),
                },
                response: answer_bytes(gateway, &reversed, None).await?,
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
        event: event(
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
    let outcome = gateway.db.write_wallet(write).await?;
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
    gateway: &Gateway,
    item: &WalletSafItem,
    operator: &Operator,
) -> Result<(), StoreError> {
    let now = gateway.clock.now();
    let record = &item.transaction;
    if record.status != TransactionStatus::PendingReversal {
        return acknowledge(gateway, item, "operator refused the reversal".to_owned()).await;
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
            key: IdempotencyKey {
                store_id: record.store_id.clone(),
                terminal_id: record.terminal_id.clone(),
                client_request_id: record.client_request_id.clone(),
            },
            response: answer_bytes(gateway, &stood, None).await?,
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
        business_date: posgate_core::model::business_day::BusinessCalendar::from(
            gateway.store_config(&record.store_id),
        )
        .business_date(now),
        event: event(
            "reversal_refused",
            TransactionStatus::PendingReversal,
            TransactionStatus::Completed,
            "operator refused the reversal: the credit was spent, the transaction stands"
                .to_owned(),
        ),
        enqueue: Vec::new(),
        acked: vec![item.id],
    };
    let outcome = gateway.db.write_wallet(write).await?;
    tracing::warn!(queue_id = item.id, transaction_id = %record.id, ?outcome, "wallet operator refused the reversal: the transaction stands");
    Ok(())
}
