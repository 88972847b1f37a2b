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
//! lets [`recover`] (run by the wallet store-and-forward worker on each of
//! its passes) redo whatever a crash cut short.

use std::time::Duration;

use chrono::{DateTime, Utc};
use posgate_hsm::{CardExpiry, Hsm, HsmError, KeyRef, Pan, Secret};
use posgate_partners::wallet::WalletCallError;
use posgate_partners::wallet::api::{self as wire, ResultStatus, WalletResult};
use zeroize::Zeroizing;

use super::{Operator, Wallets, wallet_lines};
use crate::grpc::Gateway;
use crate::grpc::wallet::{answer_bytes, event, reversal_of};
use posgate_core::cards::card::{EntryMode, PresentedCard};
use posgate_core::cards::{
    BankOutcome, Draft, Outgoing, Payments, card_lines, draft, plan_outcome, send_financial,
    up_link,
};
use posgate_core::model::IdempotencyKey;
use posgate_core::model::RequestContext;
use posgate_core::model::business_day::BusinessCalendar;
use posgate_core::ports::db::{
    CardChange, CardLink, CardRecord, CardType, CardUpdate, CardWrite, KeyOp, Saga, SagaKind,
    SagaStep, StoreError, TransactionStatus, WalletChange, WalletOutcome, WalletRecord, WalletType,
    WalletUpdate, WalletWrite, WriteOutcome,
};

/// Most sagas recovered per pass.
const BATCH: i64 = 32;
/// Margin past the longest step before a saga's caller is taken as gone.
const RECOVERY_GRACE: Duration = Duration::from_secs(5);

/// Env variable of the crash tests: `posgate serve` aborts (like kill -9:
/// no unwinding, no flush) when a saga reaches the named point, e.g.
/// `reload.card_sent`. Read once; unset in production.
pub const ABORT_AT_ENV: &str = "POSGATE_TEST_ABORT_AT";

/// Aborts the process if the crash tests asked for a crash at `point`.
pub fn crash_point(point: &str) {
    static WANTED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let wanted = WANTED.get_or_init(|| std::env::var(ABORT_AT_ENV).ok());
    if wanted.as_deref() == Some(point) {
        tracing::error!(point, "test crash point reached: aborting");
        std::process::abort();
    }
}

/// The additional data a card token is bound to: its link.
fn token_aad(link_id: &str) -> String {
    format!("posgate card link v1 {link_id}")
}

/// Enciphers the card's PAN and expiry in the HSM under `key_label`: the
/// card-on-file token of link `link_id`. Returns the token and key version.
pub async fn seal_card(
    hsm: &dyn Hsm,
    key_label: &str,
    link_id: &str,
    card: &PresentedCard,
) -> Result<(Vec<u8>, i64), HsmError> {
    let clear = Zeroizing::new(format!("{}={}", card.pan.digits(), card.expiry.to_yymm()));
    let tag = hsm
        .encrypt_data(
            &KeyRef::latest(key_label),
            clear.as_bytes(),
            token_aad(link_id).as_bytes(),
        )
        .await?;
    Ok((tag.bytes, i64::from(tag.key_version)))
}

/// The card of a link, deciphered in the HSM, for one authorization.
pub async fn open_card(hsm: &dyn Hsm, link: &CardLink) -> Result<PresentedCard, HsmError> {
    let version = u32::try_from(link.token_key_version)
        .map_err(|_| HsmError::InvalidInput("bad token key version".to_owned()))?;
    let clear = hsm
        .decrypt_data(
            &KeyRef::version(&link.token_key, version),
            link.token.expose(),
            token_aad(&link.link_id).as_bytes(),
        )
        .await?;
    let text = std::str::from_utf8(&clear)
        .map_err(|_| HsmError::InvalidInput("card token is not text".to_owned()))?;
    let (pan, expiry) = text
        .split_once('=')
        .ok_or_else(|| HsmError::InvalidInput("card token layout".to_owned()))?;
    Ok(PresentedCard {
        pan: Pan::parse(pan).map_err(|_| HsmError::InvalidInput("card token PAN".to_owned()))?,
        expiry: CardExpiry::parse(expiry)
            .map_err(|_| HsmError::InvalidInput("card token expiry".to_owned()))?,
        entry_mode: EntryMode::Keyed,
        track2: None,
        pin: None,
        icc_data: None,
        security_code: None,
        service_code: None,
    })
}

/// The smallest positive multiple of `step_minor` that covers `short_minor`.
pub fn reload_amount(short_minor: i64, step_minor: i64) -> i64 {
    if short_minor <= 0 || step_minor <= 0 {
        return step_minor.max(0);
    }
    (short_minor + step_minor - 1) / step_minor * step_minor
}

/// What the card step ended in.
pub(crate) enum CardStep {
    Approved,
    /// Declined by the issuer, or never sent: nothing to undo.
    Refused,
    /// The card's bank link is down: nothing sent, nothing recorded.
    NotSent,
    /// Sent without an answer: the card record is `pending_reversal` with its
    /// reversal queued.
    Unknown,
}

/// What the card step sends besides the card: its bank link and what the
/// record keeps of the card.
pub(crate) struct CardOnFile {
    pub route_link: String,
    pub masked_pan: String,
    pub pan_fingerprint: String,
    pub card_brand: String,
    /// The PIN block translated to the link's zone PIN key (card top-ups).
    pub pin_block: Option<Secret<Vec<u8>>>,
}

/// Everything a step needs.
pub(crate) struct SagaRun<'a> {
    pub gateway: &'a Gateway,
    pub payments: &'a Payments,
    pub context: &'a RequestContext,
}

impl SagaRun<'_> {
    /// Records the card SALE `saga.card_transaction_id` `in_progress`, sends
    /// it through the card's bank link and records the answer.
    // Record, send, record the answer: one step, kept in one place.
    #[allow(clippy::too_many_lines)]
    pub(crate) async fn card_step(
        &self,
        saga: &Saga,
        card: &PresentedCard,
        on_file: CardOnFile,
    ) -> Result<CardStep, StoreError> {
        let gateway = self.gateway;
        let now = gateway.clock.now();
        let calendar = BusinessCalendar::from(gateway.store_config(&self.context.store_id));
        let id = uuid::Uuid::parse_str(&saga.card_transaction_id)
            .map_err(|_| StoreError::Invariant("saga card id is not a UUID".to_owned()))?;
        let card_route_link = on_file.route_link.as_str();
        let Ok((link, link_config)) = up_link(self.payments, card_route_link) else {
            return Ok(CardStep::NotSent);
        };
        let pin_block = on_file.pin_block;
        let stan = self
            .payments
            .next_stan(gateway.db.as_ref(), card_route_link, now)
            .await?;
        let record = CardRecord {
            masked_pan: on_file.masked_pan,
            pan_fingerprint: on_file.pan_fingerprint,
            card_brand: on_file.card_brand,
            entry_mode: card.entry_mode.as_str().to_owned(),
            cardholder_verification: if pin_block.is_some() {
                "online_pin"
            } else {
                "none"
            }
            .to_owned(),
            route: self.payments.route(&card.pan).kind,
            merchant_id: self.payments.config.merchant_id(&self.context.store_id),
            ..draft(&Draft {
                context: self.context,
                id: &id,
                card_type: CardType::Sale,
                stan,
                link_id: card_route_link,
                amount: saga.reload_minor,
                currency: &saga.currency,
                business_date: calendar.business_date(now),
                now,
            })
        };
        let create = CardWrite {
            transaction_id: record.id.clone(),
            at: now,
            key: None,
            change: CardChange::Create(Box::new(record.clone())),
            refund: None,
            lines: Vec::new(),
            business_date: record.business_date,
            event: event(
                "sent",
                None,
                TransactionStatus::InProgress,
                &self.context.actor,
                format!(
                    "{} sale {} {} for wallet transaction {}",
                    saga.kind.as_str(),
                    record.amount_minor,
                    record.currency,
                    saga.saga_id
                ),
            ),
            enqueue: Vec::new(),
            acked: Vec::new(),
        };
        gateway.db.write_card(create).await?;
        crash_point("reload.card_recorded");
        let outgoing = Outgoing {
            link,
            acquirer_id: &link_config.acquirer_id,
            pin_block,
            original: None,
        };
        let outcome = send_financial(
            gateway.store_config(&record.store_id),
            &record,
            Some(card),
            &outgoing,
            now,
        )
        .await;
        crash_point("reload.card_answered");
        let key = IdempotencyKey {
            store_id: record.store_id.clone(),
            terminal_id: record.terminal_id.clone(),
            client_request_id: record.client_request_id.clone(),
        };
        let mut settled = plan_outcome(
            &record,
            &outcome,
            &key,
            gateway.clock.now(),
            self.payments.config.authorization_hold,
            &|_| Vec::new(),
        );
        // A step has no key of its own: the parent's key answers the POS.
        settled.write.key = None;
        match gateway.db.write_card(settled.write).await? {
            WriteOutcome::Written => {}
            other => {
                tracing::warn!(transaction_id = %record.id, ?other, "card step outcome not recorded; the recovery sweep owns it");
                return Ok(CardStep::Unknown);
            }
        }
        Ok(match outcome {
            BankOutcome::Answered(response) if response.response_code.is_approved() => {
                CardStep::Approved
            }
            BankOutcome::Unknown(_) => CardStep::Unknown,
            _ => CardStep::Refused,
        })
    }
}

/// The wallet operator's answer to a step, as the parent's or step's
/// outcome: completed, refused (with the decline reason), or unknown.
pub(crate) fn step_result(result: &Result<WalletResult, WalletCallError>) -> StepResult {
    match result {
        Ok(answer) if answer.status == ResultStatus::Completed => StepResult::Completed,
        Ok(answer) => {
            StepResult::Refused(super::view::decline_of(answer.decline_code).0.to_owned())
        }
        Err(WalletCallError::Rejected { .. } | WalletCallError::Unavailable(_)) => {
            StepResult::Refused("OTHER".to_owned())
        }
        Err(WalletCallError::OutcomeUnknown(_)) => StepResult::Unknown,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StepResult {
    Completed,
    Refused(String),
    Unknown,
}

/// A new auto-reload `TOP_UP` of `parent`.
pub(crate) fn reload_top_up(
    parent: &WalletRecord,
    saga: &Saga,
    now: DateTime<Utc>,
) -> WalletRecord {
    WalletRecord {
        id: saga.top_up_transaction_id.clone().unwrap_or_default(),
        wallet_type: WalletType::TopUp,
        status: TransactionStatus::InProgress,
        amount_minor: saga.reload_minor,
        funding: "auto_reload".to_owned(),
        created_at: now,
        updated_at: now,
        outcome: WalletOutcome::default(),
        refunded_minor: 0,
        refund_reserved_minor: 0,
        original_transaction_id: None,
        pos_reference: String::new(),
        ..parent.clone()
    }
}

/// Records the auto-reload `TOP_UP` `in_progress`, sends it and records the
/// answer. Returns the settled record and what it ended in.
pub(crate) async fn top_up_step(
    gateway: &Gateway,
    operator: &Operator,
    wallet: &wire::WalletRef,
    record: WalletRecord,
    actor: &str,
) -> Result<(WalletRecord, StepResult), StoreError> {
    let now = gateway.clock.now();
    gateway
        .db
        .write_wallet(WalletWrite {
            transaction_id: record.id.clone(),
            at: now,
            key: None,
            change: WalletChange::Create(Box::new(record.clone())),
            refund: None,
            lines: Vec::new(),
            business_date: record.business_date,
            event: event(
                "received",
                None,
                TransactionStatus::InProgress,
                actor,
                "auto-reload top-up sent to the wallet operator".to_owned(),
            ),
            enqueue: Vec::new(),
            acked: Vec::new(),
        })
        .await?;
    crash_point("reload.top_up_recorded");
    let result = operator
        .client
        .top_up(&wire::TopUpRequest {
            transaction_id: record.id.clone(),
            wallet: wallet.clone(),
            amount: wire::Money::new(record.amount_minor, &record.currency),
            funding: wire::Funding::AutoReload,
            channel: wire::Channel {
                store_id: record.store_id.clone(),
                terminal_id: record.terminal_id.clone(),
            },
        })
        .await;
    crash_point("reload.top_up_answered");
    let outcome = step_result(&result);
    let settled = crate::grpc::wallet::settle(operator, &result);
    let mut done = record.clone();
    done.status = settled.status;
    done.outcome = settled.outcome.clone();
    done.updated_at = gateway.clock.now();
    let written = gateway
        .db
        .write_wallet(WalletWrite {
            transaction_id: record.id.clone(),
            at: done.updated_at,
            key: None,
            change: WalletChange::Update(Box::new(WalletUpdate {
                transaction_id: record.id.clone(),
                from: Some(TransactionStatus::InProgress),
                to: Some(settled.status),
                outcome: Some(settled.outcome),
            })),
            refund: None,
            lines: if settled.status == TransactionStatus::Completed {
                wallet_lines(&done)
            } else {
                Vec::new()
            },
            business_date: record.business_date,
            event: event(
                settled.event_type,
                Some(TransactionStatus::InProgress),
                settled.status,
                "wallet",
                settled.detail,
            ),
            enqueue: if settled.status == TransactionStatus::PendingReversal {
                vec![reversal_of(&record, done.updated_at)]
            } else {
                Vec::new()
            },
            acked: Vec::new(),
        })
        .await?;
    if written != WriteOutcome::Written {
        tracing::warn!(transaction_id = %record.id, ?written, "top-up step outcome not recorded; treated as unknown");
        return Ok((done, StepResult::Unknown));
    }
    Ok((done, outcome))
}

/// Undoes a saga's card SALE: captured → voided with its reversal queued
/// and reversing lines; cut off (`in_progress`) → `pending_reversal` with
/// its reversal queued. Anything else needs nothing. Guarded, so repeatable.
pub(crate) async fn compensate_card(gateway: &Gateway, card_id: &str) -> Result<(), StoreError> {
    let Some(card) = gateway.db.card_transaction(card_id).await? else {
        return Ok(());
    };
    let now = gateway.clock.now();
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
    let calendar = BusinessCalendar::from(gateway.store_config(&card.store_id));
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
        event: event(
            kind,
            Some(card.status),
            to,
            "saga",
            "a later step of its wallet saga failed: the sale is reversed".to_owned(),
        ),
        enqueue: vec![posgate_core::cards::saf::reversal_of(&card, now)],
        acked: Vec::new(),
    };
    let outcome = gateway.db.write_card(write).await?;
    tracing::info!(transaction_id = %card.id, ?outcome, "card step compensated: reversal queued");
    Ok(())
}

/// Undoes a saga's auto-reload `TOP_UP`: completed or cut off →
/// `pending_reversal` with its wallet reversal queued (a completed one also
/// gets reversing lines). Guarded, so repeatable.
pub(crate) async fn compensate_top_up(
    gateway: &Gateway,
    top_up_id: &str,
) -> Result<(), StoreError> {
    let Some(top_up) = gateway.db.wallet_transaction(top_up_id).await? else {
        return Ok(());
    };
    compensate_wallet(gateway, &top_up, "a later step of its wallet saga failed").await
}

/// Moves a completed or `in_progress` wallet transaction to
/// `pending_reversal` with its reversal queued.
async fn compensate_wallet(
    gateway: &Gateway,
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
    let now = gateway.clock.now();
    let calendar = BusinessCalendar::from(gateway.store_config(&record.store_id));
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
        event: event(
            "compensating",
            Some(record.status),
            TransactionStatus::PendingReversal,
            "saga",
            why.to_owned(),
        ),
        enqueue: vec![reversal_of(record, now)],
        acked: Vec::new(),
    };
    let outcome = gateway.db.write_wallet(write).await?;
    tracing::info!(transaction_id = %record.id, ?outcome, "wallet step compensated: reversal queued");
    Ok(())
}

/// Gives the parent its final answer when a step failed: DECLINED with
/// `reason` (`outcome_unknown` false), or `pending_reversal` with its
/// reversal queued (true). Only from `in_progress`; returns whether it wrote.
pub(crate) async fn fail_parent(
    gateway: &Gateway,
    parent: &WalletRecord,
    reason: &str,
    text: &str,
    outcome_unknown: bool,
) -> Result<bool, StoreError> {
    let now = gateway.clock.now();
    let mut failed = parent.clone();
    failed.updated_at = now;
    let key = IdempotencyKey {
        store_id: parent.store_id.clone(),
        terminal_id: parent.terminal_id.clone(),
        client_request_id: parent.client_request_id.clone(),
    };
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
        (
            TransactionStatus::Declined,
            Some(KeyOp::Answer {
                key,
                response: answer_bytes(gateway, &failed, None).await?,
            }),
            Vec::new(),
            Some(failed.outcome.clone()),
        )
    };
    let written = gateway
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
            event: event(
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
    Ok(written == WriteOutcome::Written)
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
    gateway: &Gateway,
    record: &WalletRecord,
) -> Result<Option<Saga>, StoreError> {
    if record.wallet_type != WalletType::TopUp {
        return Ok(None);
    }
    match record.funding.as_str() {
        "auto_reload" => gateway.db.saga_of_step(&record.id).await,
        "card" => gateway.db.saga(&record.id).await,
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
pub(crate) async fn release_card(gateway: &Gateway, saga: &Saga) -> Result<(), StoreError> {
    let credit = match credit_id(saga) {
        Some(id) => gateway.db.wallet_transaction(id).await?,
        None => None,
    };
    match credit.map(|credit| credit.status) {
        None | Some(TransactionStatus::Declined | TransactionStatus::Reversed) => {
            compensate_card(gateway, &saga.card_transaction_id).await
        }
        Some(_) => Ok(()),
    }
}

/// Undoes every step of `saga` before `failed_at` and marks it compensated.
/// A saga that failed before its wallet credit was sent reverses its card
/// SALE at once; otherwise the SALE waits for the credit (`release_card`).
pub(crate) async fn compensate(
    gateway: &Gateway,
    saga: &mut Saga,
    reason: &str,
) -> Result<(), StoreError> {
    let credit_sent = matches!(saga.step, SagaStep::TopUp | SagaStep::Pay);
    if let Some(top_up) = saga.top_up_transaction_id.clone()
        && saga.kind == SagaKind::AutoReload
    {
        compensate_top_up(gateway, &top_up).await?;
    }
    crash_point("reload.compensating");
    if credit_sent {
        release_card(gateway, saga).await?;
    } else {
        compensate_card(gateway, &saga.card_transaction_id).await?;
    }
    saga.step = SagaStep::Compensated;
    reason.clone_into(&mut saga.failure);
    saga.updated_at = gateway.clock.now();
    gateway.db.put_saga(saga).await
}

/// Moves a saga to `step`, durably, before that step's external call.
pub(crate) async fn advance(
    gateway: &Gateway,
    saga: &mut Saga,
    step: SagaStep,
) -> Result<(), StoreError> {
    saga.step = step;
    saga.updated_at = gateway.clock.now();
    gateway.db.put_saga(saga).await
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
pub async fn recover(gateway: &Gateway, wallets: &Wallets) -> Result<(), StoreError> {
    let now = gateway.clock.now();
    let grace = longest_step(gateway.payments.as_deref(), wallets) + RECOVERY_GRACE;
    let before = now - chrono::Duration::from_std(grace).unwrap_or_default();
    for mut saga in gateway.db.open_sagas(before, BATCH).await? {
        resolve(gateway, &mut saga).await?;
    }
    Ok(())
}

/// Finishes one open saga from what its transactions say.
pub(crate) async fn resolve(gateway: &Gateway, saga: &mut Saga) -> Result<(), StoreError> {
    let Some(parent) = gateway.db.wallet_transaction(&saga.saga_id).await? else {
        // The parent is claimed before the saga is written: a saga without
        // one is corrupt, but nothing external was done for it.
        tracing::error!(saga_id = %saga.saga_id, "saga without its parent transaction");
        return advance(gateway, saga, SagaStep::Compensated).await;
    };
    if parent.status == TransactionStatus::Completed {
        tracing::info!(saga_id = %saga.saga_id, "recovered saga had completed");
        return advance(gateway, saga, SagaStep::Done).await;
    }
    if parent.status == TransactionStatus::InProgress {
        // The parent's own call may have been sent (step pay, or the
        // card top-up's top_up): reverse it; a reversal of a request never
        // sent is refused by the operator and blocks a late original.
        fail_parent(gateway, &parent, "OTHER", "", true).await?;
    }
    tracing::warn!(saga_id = %saga.saga_id, step = saga.step.as_str(), "compensating a saga cut off by a crash");
    compensate(gateway, saga, "RECOVERED").await
}
