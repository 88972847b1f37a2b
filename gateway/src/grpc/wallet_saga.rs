//! `WalletService` calls that involve a card: `LinkCard`, `UnlinkCard`, a
//! card-funded `TopUp` and the auto-reload of `Pay`. The saga machinery
//! (steps, compensation, recovery) is in `wallet::reload`; this file turns
//! it into POS answers.

use chrono::{DateTime, Utc};
use posgate_partners::wallet::WalletCallError;
use posgate_partners::wallet::api::{self as wire};
use posgate_proto::v1 as pb;
use prost::Message as _;
use tonic::{Response, Status};

use super::status::{
    from_card_error, from_hsm_error, from_store_error, outcome_unknown, partner_unavailable,
    precondition,
};
use super::wallet::finish;
use super::{Gateway, key_of};
use crate::payments::view as card_view;
use crate::wallet::reload::{
    self, CardOnFile, CardStep, SagaRun, StepResult, advance, compensate, crash_point, fail_parent,
    release_card, reload_top_up, step_result, top_up_step,
};
use crate::wallet::{Operator, view};
use posgate_core::cards::card::{PresentedCard, brand_name};
use posgate_core::cards::{
    BankOutcome, CheckedCard, Draft, Outgoing, Payments, check_card, draft, send_financial, up_link,
};
use posgate_core::model::RequestContext;
use posgate_core::model::business_day::BusinessCalendar;
use posgate_core::model::{IdempotencyKey, RequestFingerprint};
use posgate_core::ports::db::{
    AnsweredKey, CardLink, CardRouteKind, CardType, LinkStatus, LinkWrite, Saga, SagaKind,
    SagaStep, StoreError, WalletRecord, WalletType,
};

/// The HSM of the wallet operators (card-on-file tokens).
fn wallet_hsm(gateway: &Gateway) -> Result<std::sync::Arc<dyn posgate_hsm::Hsm>, Status> {
    gateway
        .wallets
        .as_ref()
        .map(|wallets| std::sync::Arc::clone(&wallets.hsm))
        .ok_or_else(|| Status::internal("wallets without an HSM"))
}

/// Decodes an answer written for the POS.
fn decode<M: prost::Message + Default>(bytes: &[u8]) -> Result<Response<M>, Status> {
    M::decode(bytes)
        .map(Response::new)
        .map_err(|_| Status::internal("answer encoding"))
}

/// The answer stored under `key` (written by a step that just finished).
async fn stored<M: prost::Message + Default>(
    gateway: &Gateway,
    key: &IdempotencyKey,
) -> Result<Response<M>, Status> {
    let answer = gateway
        .db
        .answer(key)
        .await
        .map_err(|error| from_store_error(&error))?
        .ok_or_else(|| Status::internal("the answer was not recorded"))?;
    if answer.pending {
        return Err(outcome_unknown(&answer.transaction_id));
    }
    decode(&answer.response)
}

/// Adds to a wallet transaction's view what its saga knows: the card SALE
/// of a card top-up or auto-reload, the auto-reload of a payment, the parent
/// of an auto-reload top-up.
pub(crate) async fn enrich(
    gateway: &Gateway,
    record: &WalletRecord,
    view: &mut pb::WalletTransaction,
) -> Result<(), StoreError> {
    let Some(payments) = gateway.payments.as_ref() else {
        return Ok(());
    };
    let saga = match (record.wallet_type, record.funding.as_str()) {
        (WalletType::Payment, _) | (WalletType::TopUp, "card") => {
            gateway.db.saga(&record.id).await?
        }
        (WalletType::TopUp, "auto_reload") => gateway.db.saga_of_step(&record.id).await?,
        _ => None,
    };
    let Some(saga) = saga else {
        return Ok(());
    };
    let card = gateway
        .db
        .card_transaction(&saga.card_transaction_id)
        .await?
        .map(|card| card_view::card_transaction(&card, Vec::new(), &payments.config));
    if record.wallet_type == WalletType::Payment {
        let top_up_id = match &saga.top_up_transaction_id {
            Some(id) if gateway.db.wallet_transaction(id).await?.is_some() => id.clone(),
            _ => String::new(),
        };
        view.auto_reload = Some(pb::AutoReload {
            amount: Some(pb::Money {
                amount_minor: saga.reload_minor,
                currency: saga.currency.clone(),
            }),
            card_transaction: card,
            top_up_transaction_id: top_up_id,
        });
    } else {
        view.card_transaction = card;
        if saga.kind == SagaKind::AutoReload {
            view.parent_transaction_id.clone_from(&saga.saga_id);
        }
    }
    Ok(())
}

/// Pay with an auto-reload: `payment` is claimed `in_progress` under `key`;
/// the wallet is `short_minor` short.
// The saga's steps in their order, each durable before its call: one
// sequence is easier to check than pieces.
#[allow(clippy::too_many_arguments, clippy::too_many_lines)]
pub(crate) async fn auto_reload_pay(
    gateway: &Gateway,
    payments: &Payments,
    operator: &Operator,
    wallet: &wire::WalletRef,
    payment: WalletRecord,
    key: IdempotencyKey,
    link: &CardLink,
    short_minor: i64,
    context: &RequestContext,
) -> Result<Response<pb::PayResponse>, Status> {
    let hsm = wallet_hsm(gateway)?;
    let card = reload::open_card(hsm.as_ref(), link)
        .await
        .map_err(|error| from_hsm_error(&error))?;
    let now = gateway.clock.now();
    let mut saga = Saga {
        saga_id: payment.id.clone(),
        kind: SagaKind::AutoReload,
        step: SagaStep::Card,
        link_id: Some(link.link_id.clone()),
        card_transaction_id: uuid::Uuid::now_v7().to_string(),
        top_up_transaction_id: Some(uuid::Uuid::now_v7().to_string()),
        reload_minor: reload::reload_amount(short_minor, link.step_minor),
        currency: payment.currency.clone(),
        failure: String::new(),
        created_at: now,
        updated_at: now,
    };
    let store_err = |error: StoreError| from_store_error(&error);
    gateway.db.put_saga(&saga).await.map_err(store_err)?;
    crash_point("reload.saga_written");
    let run = SagaRun {
        gateway,
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
        .await
        .map_err(store_err)?;
    drop(card);
    match step {
        CardStep::Approved => {}
        CardStep::Refused | CardStep::NotSent => {
            return fail_with::<pb::PayResponse>(
                gateway,
                &mut saga,
                &payment,
                &key,
                "AUTO_RELOAD_DECLINED",
                "Auto-reload card declined",
            )
            .await;
        }
        CardStep::Unknown => {
            return fail_unknown(gateway, &mut saga, &payment).await;
        }
    }
    advance(gateway, &mut saga, SagaStep::TopUp)
        .await
        .map_err(store_err)?;
    crash_point("reload.top_up_step");
    let top_up = reload_top_up(&payment, &saga, gateway.clock.now());
    let (_, result) = top_up_step(gateway, operator, wallet, top_up, &context.actor)
        .await
        .map_err(store_err)?;
    match result {
        StepResult::Completed => {}
        StepResult::Refused(reason) => {
            let text = view::decline_of(None).1;
            return fail_with::<pb::PayResponse>(gateway, &mut saga, &payment, &key, &reason, text)
                .await;
        }
        StepResult::Unknown => return fail_unknown(gateway, &mut saga, &payment).await,
    }
    advance(gateway, &mut saga, SagaStep::Pay)
        .await
        .map_err(store_err)?;
    crash_point("reload.pay_step");
    let result = operator
        .client
        .pay(&wire::PaymentRequest {
            transaction_id: payment.id.clone(),
            wallet: wallet.clone(),
            amount: wire::Money::new(payment.amount_minor, &payment.currency),
            pos_reference: (!payment.pos_reference.is_empty())
                .then(|| payment.pos_reference.clone()),
            channel: wire::Channel {
                store_id: context.store_id.clone(),
                terminal_id: context.terminal_id.clone(),
            },
        })
        .await;
    crash_point("reload.pay_answered");
    settle_parent(
        gateway,
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
async fn settle_parent<M: prost::Message + Default>(
    gateway: &Gateway,
    operator: &Operator,
    saga: &mut Saga,
    parent: WalletRecord,
    key: IdempotencyKey,
    result: Result<wire::WalletResult, WalletCallError>,
    actor: &str,
) -> Result<Response<M>, Status> {
    let store_err = |error: StoreError| from_store_error(&error);
    match step_result(&result) {
        StepResult::Completed => {
            let answer = finish(gateway, operator, parent, key, result, actor).await;
            advance(gateway, saga, SagaStep::Done)
                .await
                .map_err(store_err)?;
            answer
        }
        other => {
            let reason = match &other {
                StepResult::Refused(reason) => reason.clone(),
                _ => "OUTCOME_UNKNOWN".to_owned(),
            };
            compensate(gateway, saga, &reason)
                .await
                .map_err(store_err)?;
            let answer = finish(gateway, operator, parent, key, result, actor).await;
            // A card top-up's parent is its credit: now that it is recorded
            // (declined, or pending its reversal), the SALE can follow it.
            release_card(gateway, saga).await.map_err(store_err)?;
            answer
        }
    }
}

/// A step was refused: undo the earlier ones, answer DECLINED.
async fn fail_with<M: prost::Message + Default>(
    gateway: &Gateway,
    saga: &mut Saga,
    parent: &WalletRecord,
    key: &IdempotencyKey,
    reason: &str,
    text: &str,
) -> Result<Response<M>, Status> {
    let store_err = |error: StoreError| from_store_error(&error);
    compensate(gateway, saga, reason).await.map_err(store_err)?;
    fail_parent(gateway, parent, reason, text, false)
        .await
        .map_err(store_err)?;
    release_card(gateway, saga).await.map_err(store_err)?;
    stored(gateway, key).await
}

/// A step's outcome is unknown: undo the earlier ones, reverse the parent,
/// answer `OUTCOME_UNKNOWN` (a retry gets REVERSED once the queue is done).
async fn fail_unknown<M: prost::Message + Default>(
    gateway: &Gateway,
    saga: &mut Saga,
    parent: &WalletRecord,
) -> Result<Response<M>, Status> {
    let store_err = |error: StoreError| from_store_error(&error);
    compensate(gateway, saga, "OUTCOME_UNKNOWN")
        .await
        .map_err(store_err)?;
    fail_parent(gateway, parent, "OTHER", "", true)
        .await
        .map_err(store_err)?;
    release_card(gateway, saga).await.map_err(store_err)?;
    Err(outcome_unknown(&parent.id))
}

/// A top-up paid by card: `top_up` (funding card) is claimed `in_progress`
/// under `key`; `card` passed the card checks (`pin_block` translated).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn card_top_up(
    gateway: &Gateway,
    payments: &Payments,
    operator: &Operator,
    wallet: &wire::WalletRef,
    top_up: WalletRecord,
    key: IdempotencyKey,
    card: &PresentedCard,
    route_link: &str,
    pin_block: Option<posgate_hsm::Secret<Vec<u8>>>,
    context: &RequestContext,
) -> Result<Response<pb::TopUpResponse>, Status> {
    let store_err = |error: StoreError| from_store_error(&error);
    let now = gateway.clock.now();
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
    gateway.db.put_saga(&saga).await.map_err(store_err)?;
    crash_point("reload.saga_written");
    let fingerprint = payments
        .fingerprint(&card.pan)
        .await
        .map_err(|error| from_hsm_error(&error))?;
    let run = SagaRun {
        gateway,
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
                card_brand: brand_name(posgate_core::cards::card::brand_of(&card.pan)).to_owned(),
                pin_block,
            },
        )
        .await
        .map_err(store_err)?;
    match step {
        CardStep::Approved => {}
        CardStep::Refused | CardStep::NotSent => {
            return fail_with(
                gateway,
                &mut saga,
                &top_up,
                &key,
                "FUNDING_CARD_DECLINED",
                "Card declined",
            )
            .await;
        }
        CardStep::Unknown => return fail_unknown(gateway, &mut saga, &top_up).await,
    }
    advance(gateway, &mut saga, SagaStep::TopUp)
        .await
        .map_err(store_err)?;
    crash_point("reload.top_up_step");
    let result = operator
        .client
        .top_up(&wire::TopUpRequest {
            transaction_id: top_up.id.clone(),
            wallet: wallet.clone(),
            amount: wire::Money::new(top_up.amount_minor, &top_up.currency),
            funding: wire::Funding::Card,
            channel: wire::Channel {
                store_id: context.store_id.clone(),
                terminal_id: context.terminal_id.clone(),
            },
        })
        .await;
    crash_point("reload.top_up_answered");
    settle_parent(
        gateway,
        operator,
        &mut saga,
        top_up,
        key,
        result,
        &context.actor,
    )
    .await
}

/// The proto view of a link.
pub(crate) fn link_view(link: &CardLink, operator_name: &str) -> pb::WalletCardLink {
    pb::WalletCardLink {
        link_id: link.link_id.clone(),
        status: match link.status {
            LinkStatus::Active => pb::WalletCardLinkStatus::Active,
            LinkStatus::Declined => pb::WalletCardLinkStatus::Declined,
            LinkStatus::Unlinked => pb::WalletCardLinkStatus::Unlinked,
        } as i32,
        wallet: Some(pb::WalletIdentity {
            wallet_operator_id: link.wallet_operator_id.clone(),
            wallet_account_id: link.account_id.clone(),
            display_id: link.display_id.clone(),
            wallet_operator_name: operator_name.to_owned(),
        }),
        masked_pan: link.masked_pan.clone(),
        card_brand: crate::payments::card::brand_from_name(&link.card_brand) as i32,
        auto_reload: Some(pb::AutoReloadSettings {
            enabled: link.auto_reload,
            step: link.auto_reload.then(|| pb::Money {
                amount_minor: link.step_minor,
                currency: link.currency.clone(),
            }),
        }),
        store_id: link.store_id.clone(),
        terminal_id: link.terminal_id.clone(),
        operator_id: link.operator_id.clone(),
        linked_at: Some(card_view::timestamp(link.linked_at)),
        unlinked_at: link.unlinked_at.map(card_view::timestamp),
    }
}

/// What `LinkCard` checked before talking to anyone.
pub(crate) struct LinkInput<'a> {
    pub operator: &'a Operator,
    pub wallet: &'a wire::WalletRef,
    pub card: &'a PresentedCard,
    pub auto_reload: bool,
    pub step_minor: i64,
    pub fingerprint: RequestFingerprint,
}

/// `LinkCard` after validation and the idempotency check: the card must be a
/// co-brand card the issuer verifies; the link keeps a token, never the PAN.
// Checks, then the issuer, then the token and the row, in that order.
#[allow(clippy::too_many_lines)]
pub(crate) async fn link_card(
    gateway: &Gateway,
    payments: &Payments,
    context: &RequestContext,
    input: LinkInput<'_>,
    now: DateTime<Utc>,
) -> Result<Response<pb::LinkCardResponse>, Status> {
    let operator = input.operator;
    let already_linked = || {
        precondition(
            "ALREADY_LINKED",
            "wallet",
            "the wallet already has a card link: UnlinkCard first".to_owned(),
        )
    };
    if input.auto_reload && operator.config.reload_steps_minor.is_empty() {
        return Err(precondition(
            "AUTO_RELOAD_NOT_OFFERED",
            "auto_reload.enabled",
            format!("{} does not offer auto-reload", operator.config.name),
        ));
    }
    let calendar = BusinessCalendar::from(gateway.store_config(&context.store_id));
    let checked = check_card(payments, context, input.card, calendar.local_date(now))
        .await
        .map_err(|error| from_card_error(&error))?;
    if checked.route.kind != CardRouteKind::CoBrandIssuer {
        return Err(precondition(
            "NOT_CO_BRAND_CARD",
            "card",
            "only the chain's co-brand cards can be linked to a wallet".to_owned(),
        ));
    }
    let balance = super::wallet::read_balance(operator, input.wallet, true).await?;
    let account_id = balance.wallet.account_id.clone();
    if gateway
        .db
        .active_link(&operator.config.id, &account_id)
        .await
        .map_err(|error| from_store_error(&error))?
        .is_some()
    {
        return Err(already_linked());
    }
    let (brand, route_link) = (checked.brand, checked.route.link.clone());
    let (verification, approved) =
        verify_card(gateway, payments, context, &input, checked, now).await?;
    let hsm = wallet_hsm(gateway)?;
    let link_id = uuid::Uuid::now_v7().to_string();
    let (token, version) = if approved {
        reload::seal_card(
            hsm.as_ref(),
            &operator.config.card_token_key,
            &link_id,
            input.card,
        )
        .await
        .map_err(|error| from_hsm_error(&error))?
    } else {
        (Vec::new(), 0)
    };
    let record = CardLink {
        link_id: link_id.clone(),
        status: if approved {
            LinkStatus::Active
        } else {
            LinkStatus::Declined
        },
        wallet_operator_id: operator.config.id.clone(),
        wallet_ref: account_id.clone(),
        account_id,
        display_id: balance.wallet.display_id.clone(),
        masked_pan: input.card.pan.masked(),
        pan_fingerprint: payments
            .fingerprint(&input.card.pan)
            .await
            .map_err(|error| from_hsm_error(&error))?,
        card_brand: brand_name(brand).to_owned(),
        card_link: route_link,
        token: posgate_hsm::Secret::new(token),
        token_key: operator.config.card_token_key.clone(),
        token_key_version: version,
        auto_reload: input.auto_reload,
        step_minor: if input.auto_reload {
            input.step_minor
        } else {
            0
        },
        currency: operator.config.currency.code.to_owned(),
        store_id: context.store_id.clone(),
        terminal_id: context.terminal_id.clone(),
        operator_id: context.operator_id.clone(),
        client_request_id: context.client_request_id.clone(),
        linked_at: now,
        unlinked_at: None,
        unlink_reason: None,
    };
    let mut verification_view =
        card_view::card_transaction(&verification, Vec::new(), &payments.config);
    verification_view.r#type = pb::CardTransactionType::Verification as i32;
    verification_view.status = if approved {
        pb::CardTransactionStatus::Verified
    } else {
        pb::CardTransactionStatus::Declined
    } as i32;
    let response = pb::LinkCardResponse {
        link: Some(link_view(&record, &operator.config.name)),
        verification: Some(verification_view),
    };
    let key = key_of(context);
    let answer = AnsweredKey {
        key: key.clone(),
        fingerprint: input.fingerprint.clone(),
        response: response.encode_to_vec(),
        at: now,
        expires_at: now + gateway.retention,
    };
    match gateway
        .db
        .insert_link(&record, &answer)
        .await
        .map_err(|error| from_store_error(&error))?
    {
        LinkWrite::Written => {
            tracing::info!(link_id = %record.link_id, status = record.status.as_str(), "wallet card link stored");
            Ok(Response::new(response))
        }
        LinkWrite::KeyTaken => replay_link(gateway, &key, &input.fingerprint).await,
        LinkWrite::Conflict => Err(already_linked()),
    }
}

async fn replay_link<M: prost::Message + Default>(
    gateway: &Gateway,
    key: &IdempotencyKey,
    fingerprint: &RequestFingerprint,
) -> Result<Response<M>, Status> {
    let answer = gateway
        .db
        .answer(key)
        .await
        .map_err(|error| from_store_error(&error))?
        .ok_or_else(|| Status::aborted("the key was taken and released; retry"))?;
    super::idempotent::replay(&answer, fingerprint, &key.client_request_id)
}

/// `UnlinkCard` after validation and the idempotency check.
pub(crate) async fn unlink_card(
    gateway: &Gateway,
    operator: &Operator,
    context: &RequestContext,
    wallet: &wire::WalletRef,
    reason: &str,
    fingerprint: RequestFingerprint,
    now: DateTime<Utc>,
) -> Result<Response<pb::UnlinkCardResponse>, Status> {
    let balance = super::wallet::read_balance(operator, wallet, false).await?;
    let not_linked = || {
        precondition(
            "NOT_LINKED",
            "wallet",
            "the wallet has no active card link".to_owned(),
        )
    };
    let mut link = gateway
        .db
        .active_link(&operator.config.id, &balance.wallet.account_id)
        .await
        .map_err(|error| from_store_error(&error))?
        .ok_or_else(not_linked)?;
    link.status = LinkStatus::Unlinked;
    link.unlinked_at = Some(now);
    link.unlink_reason = Some(reason.to_owned());
    let response = pb::UnlinkCardResponse {
        link: Some(link_view(&link, &operator.config.name)),
    };
    let key = key_of(context);
    let answer = AnsweredKey {
        key: key.clone(),
        fingerprint: fingerprint.clone(),
        response: response.encode_to_vec(),
        at: now,
        expires_at: now + gateway.retention,
    };
    match gateway
        .db
        .unlink(&link.link_id, reason, &answer)
        .await
        .map_err(|error| from_store_error(&error))?
    {
        LinkWrite::Written => Ok(Response::new(response)),
        LinkWrite::KeyTaken => replay_link(gateway, &key, &fingerprint).await,
        LinkWrite::Conflict => Err(not_linked()),
    }
}

/// The zero-amount account verification of a co-brand card at its issuer:
/// no hold and no money, so nothing to record or reverse. Returns the
/// verification (for the answer) and whether the issuer approved.
async fn verify_card(
    gateway: &Gateway,
    payments: &Payments,
    context: &RequestContext,
    input: &LinkInput<'_>,
    checked: CheckedCard,
    now: DateTime<Utc>,
) -> Result<(posgate_core::ports::db::CardRecord, bool), Status> {
    let calendar = BusinessCalendar::from(gateway.store_config(&context.store_id));
    let (link, link_config) =
        up_link(payments, &checked.route.link).map_err(|error| from_card_error(&error))?;
    let stan = payments
        .next_stan(gateway.db.as_ref(), &checked.route.link, now)
        .await
        .map_err(|error| from_store_error(&error))?;
    let id = uuid::Uuid::now_v7();
    let mut verification = verification_record(
        context,
        &id,
        stan,
        &checked.route.link,
        input.operator.config.currency.code,
        calendar.business_date(now),
        now,
    );
    verification.masked_pan = input.card.pan.masked();
    brand_name(checked.brand).clone_into(&mut verification.card_brand);
    verification.route = checked.route.kind;
    input
        .card
        .entry_mode
        .as_str()
        .clone_into(&mut verification.entry_mode);
    verification.merchant_id = payments.config.merchant_id(&context.store_id);
    let outgoing = Outgoing {
        link,
        acquirer_id: &link_config.acquirer_id,
        pin_block: checked.pin_block,
        original: None,
    };
    let outcome = send_financial(
        gateway.store_config(&context.store_id),
        &verification,
        Some(input.card),
        &outgoing,
        now,
    )
    .await;
    let approved = match &outcome {
        BankOutcome::Answered(response) => {
            response
                .response_code
                .as_str()
                .clone_into(&mut verification.response_code);
            verification.approval_code = response.approval_code.clone().unwrap_or_default();
            response.response_code.is_approved()
        }
        BankOutcome::Unknown(reason)
        | BankOutcome::NotSent(reason)
        | BankOutcome::NotBuilt(reason) => {
            tracing::warn!(link = %checked.route.link, %reason, "card verification got no answer; nothing linked");
            return Err(partner_unavailable(&checked.route.link));
        }
    };
    Ok((verification, approved))
}

/// A card record used only for the verification message and its view.
fn verification_record(
    context: &RequestContext,
    id: &uuid::Uuid,
    stan: String,
    link_id: &str,
    currency: &str,
    business_date: chrono::NaiveDate,
    now: DateTime<Utc>,
) -> posgate_core::ports::db::CardRecord {
    let mut record = draft(&Draft {
        context,
        id,
        card_type: CardType::Authorization,
        stan,
        link_id,
        amount: 0,
        currency,
        business_date,
        now,
    });
    record.status = posgate_core::ports::db::TransactionStatus::InProgress;
    record
}
