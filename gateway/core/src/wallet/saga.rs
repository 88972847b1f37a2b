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
use posgate_partners::wallet::api::{self as wire, WalletResult};
use zeroize::Zeroizing;

use super::checks::CheckedWallet;
use super::error::WalletError;
use super::operators::{Operator, Wallets, wallet_lines};
use super::outcome::{StepResult, decline_of, operator_outcome, reversal_of, step_result};
use super::service::{WalletService, channel, key_of_record};
use crate::cards::card::{EntryMode, PresentedCard, brand_name};
use crate::cards::{
    BankOutcome, Draft, Outgoing, Payments, card_lines, draft, plan_outcome, send_financial,
    up_link,
};
use crate::model::IdempotencyKey;
use crate::model::RequestContext;
use crate::model::idempotency::Answered;
use crate::model::transaction::Event;
use crate::model::wallet::WalletAnswer;
use crate::ports::db::{
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
    pub service: &'a WalletService,
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
        let service = self.service;
        let now = service.clock.now();
        let calendar = service.calendar(&self.context.store_id);
        let id = uuid::Uuid::parse_str(&saga.card_transaction_id)
            .map_err(|_| StoreError::Invariant("saga card id is not a UUID".to_owned()))?;
        let card_route_link = on_file.route_link.as_str();
        let Ok((link, link_config)) = up_link(self.payments, card_route_link) else {
            return Ok(CardStep::NotSent);
        };
        let pin_block = on_file.pin_block;
        let stan = self
            .payments
            .next_stan(service.db.as_ref(), card_route_link, now)
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
            event: Event::new(
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
        service.db.write_card(create).await?;
        crash_point("reload.card_recorded");
        let outgoing = Outgoing {
            link,
            acquirer_id: &link_config.acquirer_id,
            pin_block,
            original: None,
        };
        let outcome = send_financial(
            service.store_config(&record.store_id),
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
        let mut planned = plan_outcome(
            &record,
            &outcome,
            &key,
            service.clock.now(),
            self.payments.config.authorization_hold,
            &|_| Vec::new(),
        );
        // A step has no key of its own: the parent's key answers the POS.
        planned.write.key = None;
        match service.db.write_card(planned.write).await? {
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
/// answer. Returns the recorded record and what it ended in.
pub(crate) async fn top_up_step(
    service: &WalletService,
    operator: &Operator,
    wallet: &wire::WalletRef,
    record: WalletRecord,
    actor: &str,
) -> Result<(WalletRecord, StepResult), StoreError> {
    service
        .db
        .write_wallet(service.create_write(
            &record,
            None,
            None,
            actor,
            "auto-reload top-up sent to the wallet operator",
        ))
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
    let recorded = operator_outcome(operator, &result);
    let mut done = record.clone();
    done.status = recorded.status;
    done.outcome = recorded.outcome.clone();
    done.updated_at = service.clock.now();
    let written = service
        .db
        .write_wallet(WalletWrite {
            transaction_id: record.id.clone(),
            at: done.updated_at,
            key: None,
            change: WalletChange::Update(Box::new(WalletUpdate {
                transaction_id: record.id.clone(),
                from: Some(TransactionStatus::InProgress),
                to: Some(recorded.status),
                outcome: Some(recorded.outcome),
            })),
            refund: None,
            lines: if recorded.status == TransactionStatus::Completed {
                wallet_lines(&done)
            } else {
                Vec::new()
            },
            business_date: record.business_date,
            event: Event::new(
                recorded.event_type,
                Some(TransactionStatus::InProgress),
                recorded.status,
                "wallet",
                recorded.detail,
            ),
            enqueue: if recorded.status == TransactionStatus::PendingReversal {
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

/// Moves a saga to `step`, durably, before that step's external call.
pub(crate) async fn advance(
    service: &WalletService,
    saga: &mut Saga,
    step: SagaStep,
) -> Result<(), StoreError> {
    saga.step = step;
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
pub async fn recover(service: &WalletService) -> Result<(), StoreError> {
    let now = service.clock.now();
    let grace = longest_step(service.payments.as_deref(), &service.wallets) + RECOVERY_GRACE;
    let before = now - chrono::Duration::from_std(grace).unwrap_or_default();
    for mut saga in service.db.open_sagas(before, BATCH).await? {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_covers_the_shortfall_in_whole_steps() {
        assert_eq!(reload_amount(1, 500), 500);
        assert_eq!(reload_amount(500, 500), 500);
        assert_eq!(reload_amount(501, 500), 1000);
        assert_eq!(reload_amount(0, 500), 500);
        assert_eq!(reload_amount(100, 0), 0);
    }
}
