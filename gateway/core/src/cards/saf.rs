//! The store-and-forward worker. It delivers what posgate owes the banks
//! (reversals 0400, repeated as 0401, and capture advices 0220) until each
//! is acknowledged, retrying with backoff; and it recovers card requests a
//! crash cut off (still `in_progress` long after their bank timeout) by
//! queueing their reversal. Everything it needs is in the database, so it
//! picks up where a restarted gateway left off.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use posgate_partners::bank::protocol::{Advice, FinancialResponse, Reversal, response_mti};
use tokio::sync::watch;

use super::iso::financial_kind;
use super::service::CardService;
use crate::instance::Instance;
use crate::model::IdempotencyKey;
use crate::model::card::CardRecord;
use crate::model::card::{CardTransaction, RefundResult};
use crate::model::money::Currency;
use crate::model::transaction::TransactionStatus;
use crate::ports::db::{
    CardChange, CardUpdate, CardWrite, KeyOp, NewSafItem, RefundAdjust, SafItem, SafKind,
    StoreError,
};
use crate::worker::{RECOVERY_GRACE, SAF_BATCH, saf_event};
use crate::worker::{retry_at, run_passes};

/// Field 39 codes that say "not now" rather than "no": the entry is retried.
const TRANSIENT_CODES: [&str; 2] = ["91", "96"];

/// Field 39 of an approval.
const APPROVED: &str = "00";

/// Runs until `shutdown` turns true, as `instance`.
pub async fn run(cards: Arc<CardService>, instance: Instance, shutdown: watch::Receiver<bool>) {
    run_passes("store-and-forward", shutdown, || poll(&cards, &instance)).await;
}

/// One pass: recover cut-off requests, release expired holds, then deliver
/// what is due and not held by another instance.
pub async fn poll(cards: &CardService, instance: &Instance) -> Result<(), StoreError> {
    recover(cards).await?;
    expire(cards).await?;
    let lease = instance.lease_at(cards.now());
    let due = cards.db().saf_claim(&lease, SAF_BATCH).await?;
    let deliveries = due.into_iter().map(|item| deliver(cards, item));
    for result in futures::future::join_all(deliveries).await {
        result?;
    }
    Ok(())
}

/// Turns requests stuck `in_progress` (their caller crashed or vanished)
/// into `pending_reversal` with a queued reversal.
async fn recover(cards: &CardService) -> Result<(), StoreError> {
    let now = cards.now();
    let timeout = cards
        .payments()
        .config
        .links
        .iter()
        .map(|link| link.request_timeout)
        .max()
        .unwrap_or(Duration::from_secs(30));
    let before = now - chrono::Duration::from_std(timeout + RECOVERY_GRACE).unwrap_or_default();
    for record in cards.db().stale_in_progress(before, SAF_BATCH).await? {
        let write = CardWrite {
            transaction_id: record.id.clone(),
            at: now,
            key: None,
            change: CardChange::Update(CardUpdate {
                transaction_id: record.id.clone(),
                from: Some(TransactionStatus::InProgress),
                to: Some(TransactionStatus::PendingReversal),
                advice_pending: Some(true),
                ..CardUpdate::default()
            }),
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
        let outcome = cards.db().write_card(write).await?;
        tracing::warn!(transaction_id = %record.id, ?outcome, "recovered a cut-off card request: reversal queued");
    }
    Ok(())
}

/// Authorizations not captured in time: `expired`, with a reversal queued
/// to release the hold at the bank.
async fn expire(cards: &CardService) -> Result<(), StoreError> {
    let now = cards.now();
    for record in cards.db().expired_authorizations(now, SAF_BATCH).await? {
        let write = CardWrite {
            transaction_id: record.id.clone(),
            at: now,
            key: None,
            change: CardChange::Update(CardUpdate {
                transaction_id: record.id.clone(),
                from: Some(TransactionStatus::Authorized),
                to: Some(TransactionStatus::Expired),
                advice_pending: Some(true),
                ..CardUpdate::default()
            }),
            refund: None,
            lines: Vec::new(),
            business_date: record.business_date,
            event: saf_event(
                "expired",
                TransactionStatus::Authorized,
                TransactionStatus::Expired,
                "the authorization was not captured in time; hold released".to_owned(),
            ),
            enqueue: vec![reversal_of(&record, now)],
            acked: Vec::new(),
        };
        cards.db().write_card(write).await?;
    }
    Ok(())
}

/// The queue entry that reverses `record` at its bank.
pub fn reversal_of(record: &CardRecord, now: DateTime<Utc>) -> NewSafItem {
    NewSafItem {
        link_id: record.link_id.clone(),
        kind: SafKind::Reversal,
        amount_minor: record.amount_minor,
        currency: record.currency.clone(),
        next_attempt_at: now,
    }
}

/// Sends one queue entry; records the acknowledgement or the retry.
async fn deliver(cards: &CardService, item: SafItem) -> Result<(), StoreError> {
    let payments = cards.payments();
    let now = cards.now();
    let (id, attempts) = (item.id, item.attempts);
    let transaction_id = item.transaction.id.clone();
    let retry = |error: String| async move {
        let next = retry_at(
            now,
            attempts,
            payments.config.retry_min,
            payments.config.retry_max,
        );
        tracing::info!(queue_id = id, %transaction_id, attempts = attempts + 1, %error, "bank delivery failed; will retry");
        cards.db().saf_retry(id, next, &error).await
    };
    let (Some(link), Some(link_config)) = (
        payments.link(&item.link_id),
        payments.config.link(&item.link_id),
    ) else {
        return retry(format!("no bank link {}", item.link_id)).await;
    };
    if !link.is_up() {
        return retry("bank link down".to_owned()).await;
    }
    let record = &item.transaction;
    let currency = Currency::from_code(&item.currency).map_or("", |c| c.numeric);
    let original_kind = financial_kind(record.card_type);
    // The first transmission takes a STAN and records it; every repeat
    // (0401) carries that same STAN so the bank can match it.
    let stan = match &item.stan {
        Some(stan) => stan.clone(),
        None => match payments.next_stan(cards.db(), &item.link_id, now).await {
            Ok(fresh) => cards.db().saf_set_stan(item.id, &fresh).await?,
            Err(error) => return retry(format!("no STAN: {error}")).await,
        },
    };
    let built = match item.kind {
        SafKind::Reversal => Reversal {
            original_kind,
            original_stan: &record.stan,
            original_transmitted_at: record.transmitted_at,
            rrn: &record.rrn,
            amount_minor: item.amount_minor,
            currency_numeric: currency,
            stan: &stan,
            transmitted_at: now,
            repeat: item.attempts > 0,
            terminal_id: &record.bank_terminal_id,
            merchant_id: &record.merchant_id,
            acquirer_id: &link_config.acquirer_id,
        }
        .to_message(),
        SafKind::Advice => Advice {
            original_stan: &record.stan,
            original_transmitted_at: record.transmitted_at,
            rrn: &record.rrn,
            amount_minor: item.amount_minor,
            currency_numeric: currency,
            stan: &stan,
            transmitted_at: now,
            local: now
                .with_timezone(&cards.store_config(&record.store_id).time_zone)
                .naive_local(),
            approval_code: (!record.approval_code.is_empty())
                .then_some(record.approval_code.as_str()),
            terminal_id: &record.bank_terminal_id,
            merchant_id: &record.merchant_id,
            acquirer_id: &link_config.acquirer_id,
        }
        .to_message(),
    };
    let message = match built {
        Ok(message) => message,
        Err(error) => return retry(format!("message not built: {error}")).await,
    };
    let expected = response_mti(message.mti());
    let answer = match link.send(message).await {
        Ok(answer) if answer.mti() == expected => answer,
        Ok(answer) => return retry(format!("unexpected answer {}", answer.mti().as_str())).await,
        Err(error) => return retry(error.to_string()).await,
    };
    let code = FinancialResponse::parse(&answer)
        .map(|response| response.response_code.as_str().to_owned())
        .unwrap_or_default();
    // The bank could not act just now: ask again later, as for no answer.
    if TRANSIENT_CODES.contains(&code.as_str()) {
        return retry(format!("bank answered {code}")).await;
    }
    // Any other answer is final. A reversal the bank cannot match (nothing
    // to undo) is as final as one it applied; an advice the bank refused is
    // final too, and surfaces as CAPTURE_REFUSED (see `acknowledge`).
    acknowledge(cards, &item, &code, now).await
}

/// Records a bank's acknowledgement of a queue entry.
async fn acknowledge(
    cards: &CardService,
    item: &SafItem,
    code: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let record = &item.transaction;
    let mut update = CardUpdate {
        transaction_id: record.id.clone(),
        advice_pending: Some(false),
        ..CardUpdate::default()
    };
    let mut key = None;
    let mut refund = None;
    let (event_type, to) = match (item.kind, record.status) {
        (SafKind::Reversal, TransactionStatus::PendingReversal) => {
            update.from = Some(TransactionStatus::PendingReversal);
            update.to = Some(TransactionStatus::Reversed);
            let mut reversed = record.clone();
            reversed.status = TransactionStatus::Reversed;
            reversed.advice_pending = false;
            reversed.updated_at = now;
            // A card step of a wallet saga has no key of its own: the
            // wallet transaction's key answers the POS.
            if cards.db().saga_of_step(&record.id).await?.is_none() {
                key = Some(KeyOp::Answer {
                    key: IdempotencyKey {
                        store_id: record.store_id.clone(),
                        terminal_id: record.terminal_id.clone(),
                        client_request_id: record.client_request_id.clone(),
                    },
                    response: reversed_answer(cards, &reversed).await?,
                });
            }
            if let Some(original_id) = &record.original_transaction_id {
                refund = Some(RefundAdjust {
                    original_id: original_id.clone(),
                    reserve_delta: -record.amount_minor,
                    refunded_delta: 0,
                });
            }
            ("reversed", TransactionStatus::Reversed)
        }
        (SafKind::Reversal, _) => ("reversal_acknowledged", record.status),
        (SafKind::Advice, TransactionStatus::Captured) if code != APPROVED => {
            // The bank will not pay for this capture. posgate's settlement
            // lines stay (the clearing file claims the amount, so the bank's
            // acknowledgement reports it as a reconciliation exception);
            // the payment gets a state of its own and the operator an error.
            update.from = Some(TransactionStatus::Captured);
            update.to = Some(TransactionStatus::CaptureRefused);
            update.response_code = Some(code.to_owned());
            tracing::error!(
                transaction_id = %record.id,
                link = %record.link_id,
                rrn = %record.rrn,
                captured_minor = record.captured_minor,
                currency = %record.currency,
                response_code = code,
                "the bank refused a capture advice: payment is CAPTURE_REFUSED; resolve it with the bank"
            );
            ("capture_refused", TransactionStatus::CaptureRefused)
        }
        (SafKind::Advice, _) => ("advice_acknowledged", record.status),
    };
    let from = record.status;
    let write = CardWrite {
        transaction_id: record.id.clone(),
        at: now,
        key,
        change: CardChange::Update(update),
        refund,
        lines: Vec::new(),
        business_date: record.business_date,
        event: saf_event(event_type, from, to, format!("bank answered {code}")),
        enqueue: Vec::new(),
        acked: vec![item.id],
    };
    let outcome = cards.db().write_card(write).await?;
    tracing::info!(queue_id = item.id, transaction_id = %record.id, kind = item.kind.as_str(), code, ?outcome, "bank acknowledged");
    Ok(())
}

/// The answer a retry of the creating call gets once its transaction is reversed.
async fn reversed_answer(
    cards: &CardService,
    reversed: &CardRecord,
) -> Result<Vec<u8>, StoreError> {
    let transaction = CardTransaction::alone(reversed.clone());
    Ok(match &reversed.original_transaction_id {
        None => cards.answers().authorized(&transaction),
        Some(original_id) => {
            let original = cards.db().card_transaction(original_id).await?;
            let refunds = cards.db().refund_ids(original_id).await?;
            cards.answers().refunded(&RefundResult {
                refund: transaction,
                original: original.map(|mut original| {
                    // The reservation this write releases.
                    original.refund_reserved_minor -= reversed.amount_minor;
                    CardTransaction {
                        record: original,
                        refund_ids: refunds,
                    }
                }),
            })
        }
    })
}
