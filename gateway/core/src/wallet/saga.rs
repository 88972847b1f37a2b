//! Card-funded top-ups and auto-reload: a saga over the bank link and the
//! wallet operator, with durable compensation.
//!
//! Steps of an auto-reload Pay (saga kind `auto_reload`, parent = the
//! PAYMENT): `card` (a SALE on the linked co-brand card through its bank
//! link), `top_up` (a `TOP_UP` funded `auto_reload` at the operator), `pay`
//! (the PAYMENT itself). A card top-up (kind `card_top_up`, parent = the
//! `TOP_UP`) has `card` then `top_up`. Before each step's external call the
//! saga row names that step (durable), and the step's own transaction is
//! recorded `in_progress` like any card or wallet call.
//!
//! Compensation: when a step is refused or its outcome is unknown, the
//! parent gets its final answer (DECLINED with the failing step's reason, or
//! `pending_reversal` with a wallet reversal queued: `OUTCOME_UNKNOWN`, later
//! REVERSED) and every earlier step is undone through the store-and-forward
//! queues: a captured card SALE is voided (reversal 0400 queued, reversing
//! settlement lines), a completed `TOP_UP` goes `pending_reversal` with its
//! wallet reversal queued (and reversing lines). Each of these writes is
//! guarded by the step's status, so doing it twice is harmless; that is what
//! lets [`super::compensation::recover`] (run by the wallet store-and-forward worker on each of
//! its passes) redo whatever a crash cut short.

use posgate_hsm::Secret;
use posgate_partners::wallet::WalletCallError;
use posgate_partners::wallet::api::{self as wire, WalletResult};

use super::checks::CheckedWallet;
use super::compensation::{compensate, fail_parent, release_card};
use super::error::WalletError;
use super::operators::Operator;
use super::outcome::{StepResult, decline_of, step_result};
use super::service::{WalletService, channel};
use super::steps::{
    CardOnFile, CardStep, SagaRun, advance, crash_point, reload_amount, reload_top_up, top_up_step,
};
use super::tokens::open_card;
use crate::cards::Payments;
use crate::cards::card::{PresentedCard, brand_name};
use crate::model::IdempotencyKey;
use crate::model::RequestContext;
use crate::model::idempotency::Answered;
use crate::model::link::CardLink;
use crate::model::wallet::WalletAnswer;
use crate::model::wallet::WalletRecord;
use crate::ports::db::{Saga, SagaKind, SagaStep};

pub use super::steps::ABORT_AT_ENV;

/// Pay with an auto-reload: `payment` is claimed `in_progress` under `key`;
/// the wallet is `short_minor` short.
// The saga's steps in their order, each durable before its call: one
// sequence is easier to check than pieces.
#[allow(clippy::too_many_arguments, clippy::too_many_lines)]
pub(crate) async fn auto_reload_pay(
    service: &WalletService,
    payments: &Payments,
    wallet: &CheckedWallet,
    payment: WalletRecord,
    key: IdempotencyKey,
    link: &CardLink,
    short_minor: i64,
    context: &RequestContext,
) -> Result<Answered<WalletAnswer>, WalletError> {
    let operator = wallet.operator.as_ref();
    let card = open_card(service.wallets.hsm.as_ref(), link).await?;
    let now = service.now();
    let mut saga = Saga {
        saga_id: payment.id.clone(),
        kind: SagaKind::AutoReload,
        step: SagaStep::Card,
        link_id: Some(link.link_id.clone()),
        card_transaction_id: uuid::Uuid::now_v7().to_string(),
        top_up_transaction_id: Some(uuid::Uuid::now_v7().to_string()),
        reload_minor: reload_amount(short_minor, link.step_minor),
        currency: payment.currency.clone(),
        failure: String::new(),
        created_at: now,
        updated_at: now,
    };
    service.db.put_saga(&saga).await?;
    crash_point("reload.saga_written");
    let run = SagaRun {
        service,
        payments,
        context,
    };
    let step = run
        .card_step(
            &saga,
            &card,
            CardOnFile {
                route_link: link.card_link.clone(),
                masked_pan: link.masked_pan.clone(),
                pan_fingerprint: link.pan_fingerprint.clone(),
                card_brand: link.card_brand.clone(),
                pin_block: None,
            },
        )
        .await?;
    drop(card);
    match step {
        CardStep::Approved => {}
        CardStep::Refused | CardStep::NotSent => {
            return fail_with(
                service,
                &mut saga,
                &payment,
                &key,
                "AUTO_RELOAD_DECLINED",
                "Auto-reload card declined",
            )
            .await;
        }
        CardStep::Unknown => {
            return fail_unknown(service, &mut saga, &payment).await;
        }
    }
    advance(service, &mut saga, SagaStep::TopUp).await?;
    crash_point("reload.top_up_step");
    let top_up = reload_top_up(&payment, &saga, service.now());
    let (_, result) = top_up_step(service, operator, &wallet.wire, top_up, &context.actor).await?;
    match result {
        StepResult::Completed => {}
        StepResult::Refused(reason) => {
            let text = decline_of(None).1;
            return fail_with(service, &mut saga, &payment, &key, &reason, text).await;
        }
        StepResult::Unknown => return fail_unknown(service, &mut saga, &payment).await,
    }
    advance(service, &mut saga, SagaStep::Pay).await?;
    crash_point("reload.pay_step");
    let result = operator
        .client
        .pay(&wire::PaymentRequest {
            transaction_id: payment.id.clone(),
            wallet: wallet.wire.clone(),
            amount: wire::Money::new(payment.amount_minor, &payment.currency),
            pos_reference: (!payment.pos_reference.is_empty())
                .then(|| payment.pos_reference.clone()),
            channel: channel(context),
        })
        .await;
    crash_point("reload.pay_answered");
    close_parent(
        service,
        operator,
        &mut saga,
        payment,
        key,
        result,
        &context.actor,
    )
    .await
}

/// Records the parent's own call (the payment, or the card top-up's top-up)
/// and closes the saga: done, or compensated after undoing earlier steps.
async fn close_parent(
    service: &WalletService,
    operator: &Operator,
    saga: &mut Saga,
    parent: WalletRecord,
    key: IdempotencyKey,
    result: Result<WalletResult, WalletCallError>,
    actor: &str,
) -> Result<Answered<WalletAnswer>, WalletError> {
    match step_result(&result) {
        StepResult::Completed => {
            let answer = service.finish(operator, parent, key, result, actor).await;
            advance(service, saga, SagaStep::Done).await?;
            answer.map(Answered::New)
        }
        other => {
            let reason = match &other {
                StepResult::Refused(reason) => reason.clone(),
                _ => "OUTCOME_UNKNOWN".to_owned(),
            };
            compensate(service, saga, &reason).await?;
            let answer = service.finish(operator, parent, key, result, actor).await;
            // A card top-up's parent is its credit: now that it is recorded
            // (declined, or pending its reversal), the SALE can follow it.
            release_card(service, saga).await?;
            answer.map(Answered::New)
        }
    }
}

/// A step was refused: undo the earlier ones, answer DECLINED.
async fn fail_with(
    service: &WalletService,
    saga: &mut Saga,
    parent: &WalletRecord,
    key: &IdempotencyKey,
    reason: &str,
    text: &str,
) -> Result<Answered<WalletAnswer>, WalletError> {
    compensate(service, saga, reason).await?;
    let declined = fail_parent(service, parent, reason, text, false).await?;
    release_card(service, saga).await?;
    if let Some(answer) = declined {
        return Ok(Answered::New(answer));
    }
    // The recovery sweep answered the parent first: its answer stands.
    let answer = service
        .db
        .answer(key)
        .await?
        .ok_or(WalletError::Internal("the answer was not recorded"))?;
    if answer.pending {
        return Err(WalletError::outcome_unknown(&answer.transaction_id));
    }
    Ok(Answered::Replayed(answer))
}

/// A step's outcome is unknown: undo the earlier ones, reverse the parent,
/// answer `OUTCOME_UNKNOWN` (a retry gets REVERSED once the queue is done).
async fn fail_unknown(
    service: &WalletService,
    saga: &mut Saga,
    parent: &WalletRecord,
) -> Result<Answered<WalletAnswer>, WalletError> {
    compensate(service, saga, "OUTCOME_UNKNOWN").await?;
    fail_parent(service, parent, "OTHER", "", true).await?;
    release_card(service, saga).await?;
    Err(WalletError::outcome_unknown(&parent.id))
}

/// A top-up paid by card: `top_up` (funding card) is claimed `in_progress`
/// under `key`; `card` passed the card checks (`pin_block` translated).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn card_top_up(
    service: &WalletService,
    payments: &Payments,
    wallet: &CheckedWallet,
    top_up: WalletRecord,
    key: IdempotencyKey,
    card: &PresentedCard,
    route_link: &str,
    pin_block: Option<Secret<Vec<u8>>>,
    context: &RequestContext,
) -> Result<Answered<WalletAnswer>, WalletError> {
    let operator = wallet.operator.as_ref();
    let now = service.now();
    let mut saga = Saga {
        saga_id: top_up.id.clone(),
        kind: SagaKind::CardTopUp,
        step: SagaStep::Card,
        link_id: None,
        card_transaction_id: uuid::Uuid::now_v7().to_string(),
        top_up_transaction_id: None,
        reload_minor: top_up.amount_minor,
        currency: top_up.currency.clone(),
        failure: String::new(),
        created_at: now,
        updated_at: now,
    };
    service.db.put_saga(&saga).await?;
    crash_point("reload.saga_written");
    let fingerprint = payments.fingerprint(&card.pan).await?;
    let run = SagaRun {
        service,
        payments,
        context,
    };
    let step = run
        .card_step(
            &saga,
            card,
            CardOnFile {
                route_link: route_link.to_owned(),
                masked_pan: card.pan.masked(),
                pan_fingerprint: fingerprint,
                card_brand: brand_name(crate::cards::card::brand_of(&card.pan)).to_owned(),
                pin_block,
            },
        )
        .await?;
    match step {
        CardStep::Approved => {}
        CardStep::Refused | CardStep::NotSent => {
            return fail_with(
                service,
                &mut saga,
                &top_up,
                &key,
                "FUNDING_CARD_DECLINED",
                "Card declined",
            )
            .await;
        }
        CardStep::Unknown => return fail_unknown(service, &mut saga, &top_up).await,
    }
    advance(service, &mut saga, SagaStep::TopUp).await?;
    crash_point("reload.top_up_step");
    let result = operator
        .client
        .top_up(&wire::TopUpRequest {
            transaction_id: top_up.id.clone(),
            wallet: wallet.wire.clone(),
            amount: wire::Money::new(top_up.amount_minor, &top_up.currency),
            funding: wire::Funding::Card,
            channel: channel(context),
        })
        .await;
    crash_point("reload.top_up_answered");
    close_parent(
        service,
        operator,
        &mut saga,
        top_up,
        key,
        result,
        &context.actor,
    )
    .await
}
