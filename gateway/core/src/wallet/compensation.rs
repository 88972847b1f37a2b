//! Undoing a saga's steps when a later one failed, durably and repeatably
//! (each write is guarded by the step's status), and the recovery pass
//! that finishes or compensates the sagas a crash left open.

use std::time::Duration;

use super::operators::{Wallets, wallet_lines};
use super::outcome::reversal_of;
use super::service::{WalletService, key_of_record};
use super::steps::{advance, crash_point};
use crate::cards::{Payments, card_lines};
use crate::instance::Instance;
use crate::model::transaction::Event;
use crate::model::transaction::TransactionStatus;
use crate::model::wallet::WalletAnswer;
use crate::model::wallet::{WalletRecord, WalletType};
use crate::ports::db::{
    CardChange, CardUpdate, CardWrite, KeyOp, Saga, SagaKind, SagaStep, StoreError, WalletChange,
    WalletUpdate, WalletWrite, WriteOutcome,
};
use crate::worker::RECOVERY_GRACE;

/// Most sagas recovered per pass.
const SAGA_BATCH: i64 = 32;

/// Undoes a saga's card SALE: captured → voided with its reversal queued
/// and reversing lines; cut off (`in_progress`) → `pending_reversal` with
/// its reversal queued. Anything else needs nothing. Guarded, so repeatable.
pub(crate) async fn compensate_card(
    service: &WalletService,
    card_id: &str,
) -> Result<(), StoreError> {
    let Some(card) = service.db.card_transaction(card_id).await? else {
        return Ok(());
    };
    let now = service.clock.now();
    let (to, lines, advice, kind) = match card.status {
        TransactionStatus::Captured => {
            let lines = card_lines(&card, -card.captured_minor, "card_void");
            (TransactionStatus::Voided, lines, true, "compensated")
        }
        TransactionStatus::InProgress => (
            TransactionStatus::PendingReversal,
            Vec::new(),
            true,
            "outcome_unknown",
        ),
        _ => return Ok(()),
    };
    let calendar = service.calendar(&card.store_id);
    let write = CardWrite {
        transaction_id: card.id.clone(),
        at: now,
        key: None,
        change: CardChange::Update(CardUpdate {
            transaction_id: card.id.clone(),
            from: Some(card.status),
            to: Some(to),
            advice_pending: Some(advice),
            ..CardUpdate::default()
        }),
        refund: None,
        lines,
        business_date: calendar.business_date(now),
        event: Event::new(
            kind,
            Some(card.status),
            to,
            "saga",
            "a later step of its wallet saga failed: the sale is reversed".to_owned(),
        ),
        enqueue: vec![crate::cards::saf::reversal_of(&card, now)],
        acked: Vec::new(),
    };
    let outcome = service.db.write_card(write).await?;
    tracing::info!(transaction_id = %card.id, ?outcome, "card step compensated: reversal queued");
    Ok(())
}

/// Undoes a saga's auto-reload `TOP_UP`: completed or cut off →
/// `pending_reversal` with its wallet reversal queued (a completed one also
/// gets reversing lines). Guarded, so repeatable.
pub(crate) async fn compensate_top_up(
    service: &WalletService,
    top_up_id: &str,
) -> Result<(), StoreError> {
    let Some(top_up) = service.db.wallet_transaction(top_up_id).await? else {
        return Ok(());
    };
    compensate_wallet(service, &top_up, "a later step of its wallet saga failed").await
}

/// Moves a completed or `in_progress` wallet transaction to
/// `pending_reversal` with its reversal queued.
async fn compensate_wallet(
    service: &WalletService,
    record: &WalletRecord,
    why: &str,
) -> Result<(), StoreError> {
    let lines = match record.status {
        TransactionStatus::Completed => wallet_lines(record)
            .into_iter()
            .map(|mut line| {
                line.amount_minor = -line.amount_minor;
                line.kind = format!("{}_reversal", line.kind);
                line
            })
            .collect(),
        TransactionStatus::InProgress => Vec::new(),
        _ => return Ok(()),
    };
    let now = service.clock.now();
    let calendar = service.calendar(&record.store_id);
    let write = WalletWrite {
        transaction_id: record.id.clone(),
        at: now,
        key: None,
        change: WalletChange::Update(Box::new(WalletUpdate {
            transaction_id: record.id.clone(),
            from: Some(record.status),
            to: Some(TransactionStatus::PendingReversal),
            outcome: None,
        })),
        refund: None,
        lines,
        business_date: calendar.business_date(now),
        event: Event::new(
            "compensating",
            Some(record.status),
            TransactionStatus::PendingReversal,
            "saga",
            why.to_owned(),
        ),
        enqueue: vec![reversal_of(record, now)],
        acked: Vec::new(),
    };
    let outcome = service.db.write_wallet(write).await?;
    tracing::info!(transaction_id = %record.id, ?outcome, "wallet step compensated: reversal queued");
    Ok(())
}

/// Gives the parent its final answer when a step failed: DECLINED with
/// `reason` (`outcome_unknown` false), or `pending_reversal` with its
/// reversal queued (true). Only from `in_progress`; returns the DECLINED
/// answer when it wrote one.
pub(crate) async fn fail_parent(
    service: &WalletService,
    parent: &WalletRecord,
    reason: &str,
    text: &str,
    outcome_unknown: bool,
) -> Result<Option<WalletAnswer>, StoreError> {
    let now = service.clock.now();
    let mut failed = parent.clone();
    failed.updated_at = now;
    let key = key_of_record(parent);
    let mut answer = None;
    let (to, key_op, enqueue, outcome) = if outcome_unknown {
        failed.status = TransactionStatus::PendingReversal;
        (
            TransactionStatus::PendingReversal,
            None,
            vec![reversal_of(parent, now)],
            None,
        )
    } else {
        failed.status = TransactionStatus::Declined;
        reason.clone_into(&mut failed.outcome.decline_reason);
        text.clone_into(&mut failed.outcome.response_text);
        let declined = service.answer_of(&failed, None).await?;
        let response = service.encode(&declined);
        answer = Some(declined);
        (
            TransactionStatus::Declined,
            Some(KeyOp::Answer { key, response }),
            Vec::new(),
            Some(failed.outcome.clone()),
        )
    };
    let written = service
        .db
        .write_wallet(WalletWrite {
            transaction_id: parent.id.clone(),
            at: now,
            key: key_op,
            change: WalletChange::Update(Box::new(WalletUpdate {
                transaction_id: parent.id.clone(),
                from: Some(TransactionStatus::InProgress),
                to: Some(to),
                outcome,
            })),
            refund: None,
            lines: Vec::new(),
            business_date: parent.business_date,
            event: Event::new(
                if outcome_unknown {
                    "outcome_unknown"
                } else {
                    "declined"
                },
                Some(TransactionStatus::InProgress),
                to,
                "saga",
                format!("a step of its saga failed: {reason}"),
            ),
            enqueue,
            acked: Vec::new(),
        })
        .await?;
    Ok(answer.filter(|_| written == WriteOutcome::Written))
}

/// The wallet credit a saga's card SALE paid for: the auto-reload `TOP_UP`,
/// or the card-funded `TOP_UP` that is the saga's parent.
fn credit_id(saga: &Saga) -> Option<&str> {
    match saga.kind {
        SagaKind::AutoReload => saga.top_up_transaction_id.as_deref(),
        SagaKind::CardTopUp => Some(saga.saga_id.as_str()),
    }
}

/// The saga whose wallet credit `record` is, if any.
pub(crate) async fn saga_of_credit(
    service: &WalletService,
    record: &WalletRecord,
) -> Result<Option<Saga>, StoreError> {
    if record.wallet_type != WalletType::TopUp {
        return Ok(None);
    }
    match record.funding.as_str() {
        "auto_reload" => service.db.saga_of_step(&record.id).await,
        "card" => service.db.saga(&record.id).await,
        _ => Ok(None),
    }
}

/// Reverses a failed saga's card SALE once its wallet credit is known to be
/// undone or never applied (declined, reversed, never created). While the
/// credit's reversal is pending the SALE waits: the wallet store-and-forward
/// worker reverses it when the operator acknowledges the credit's reversal,
/// and leaves it when the operator refuses (the credit was spent by another
/// payment, so it stands, and the card paid for it). A compensation never
/// takes back money another payment has spent, and never voids a card
/// whose money the wallet keeps.
pub(crate) async fn release_card(service: &WalletService, saga: &Saga) -> Result<(), StoreError> {
    let credit = match credit_id(saga) {
        Some(id) => service.db.wallet_transaction(id).await?,
        None => None,
    };
    match credit.map(|credit| credit.status) {
        None | Some(TransactionStatus::Declined | TransactionStatus::Reversed) => {
            compensate_card(service, &saga.card_transaction_id).await
        }
        Some(_) => Ok(()),
    }
}

/// Undoes every step of `saga` before `failed_at` and marks it compensated.
/// A saga that failed before its wallet credit was sent reverses its card
/// SALE at once; otherwise the SALE waits for the credit (`release_card`).
pub(crate) async fn compensate(
    service: &WalletService,
    saga: &mut Saga,
    reason: &str,
) -> Result<(), StoreError> {
    let credit_sent = matches!(saga.step, SagaStep::TopUp | SagaStep::Pay);
    if let Some(top_up) = saga.top_up_transaction_id.clone()
        && saga.kind == SagaKind::AutoReload
    {
        compensate_top_up(service, &top_up).await?;
    }
    crash_point("reload.compensating");
    if credit_sent {
        release_card(service, saga).await?;
    } else {
        compensate_card(service, &saga.card_transaction_id).await?;
    }
    saga.step = SagaStep::Compensated;
    reason.clone_into(&mut saga.failure);
    saga.updated_at = service.clock.now();
    service.db.put_saga(saga).await
}

/// How long a saga may sit in one step while its caller is still working.
pub fn longest_step(payments: Option<&Payments>, wallets: &Wallets) -> Duration {
    let bank = payments
        .map(|payments| {
            payments
                .config
                .links
                .iter()
                .map(|link| link.request_timeout)
                .max()
                .unwrap_or_default()
        })
        .unwrap_or_default();
    bank.max(wallets.longest_call())
}

/// One recovery pass: every saga left open longer than its longest step
/// (its caller is gone: a crash, or a lost task) is finished or compensated.
pub async fn recover(service: &WalletService, instance: &Instance) -> Result<(), StoreError> {
    let now = service.clock.now();
    let grace = longest_step(service.payments.as_deref(), &service.wallets) + RECOVERY_GRACE;
    let before = now - chrono::Duration::from_std(grace).unwrap_or_default();
    let lease = instance.lease_at(now);
    for mut saga in service.db.claim_sagas(before, &lease, SAGA_BATCH).await? {
        resolve(service, &mut saga).await?;
    }
    Ok(())
}

/// Finishes one open saga from what its transactions say.
pub(crate) async fn resolve(service: &WalletService, saga: &mut Saga) -> Result<(), StoreError> {
    let Some(parent) = service.db.wallet_transaction(&saga.saga_id).await? else {
        // The parent is claimed before the saga is written: a saga without
        // one is corrupt, but nothing external was done for it.
        tracing::error!(saga_id = %saga.saga_id, "saga without its parent transaction");
        return advance(service, saga, SagaStep::Compensated).await;
    };
    if parent.status == TransactionStatus::Completed {
        tracing::info!(saga_id = %saga.saga_id, "recovered saga had completed");
        return advance(service, saga, SagaStep::Done).await;
    }
    if parent.status == TransactionStatus::InProgress {
        // The parent's own call may have been sent (step pay, or the
        // card top-up's top_up): reverse it; a reversal of a request never
        // sent is refused by the operator and blocks a late original.
        fail_parent(service, &parent, "OTHER", "", true).await?;
    }
    tracing::warn!(saga_id = %saga.saga_id, step = saga.step.as_str(), "compensating a saga cut off by a crash");
    compensate(service, saga, "RECOVERED").await
}
