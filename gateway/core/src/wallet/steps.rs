//! The steps of a saga, each recorded before its external call: the card
//! SALE on the card's bank link, the auto-reload `TOP_UP` at the operator;
//! moving a saga to its next step; the crash points of the crash tests.

use chrono::{DateTime, Utc};
use posgate_hsm::Secret;
use posgate_partners::wallet::api::{self as wire};

use super::operators::{Operator, wallet_lines};
use super::outcome::{StepResult, operator_outcome, reversal_of, step_result};
use super::service::WalletService;
use crate::cards::card::PresentedCard;
use crate::cards::{
    BankOutcome, Draft, Outgoing, Payments, draft, plan_outcome, send_financial, up_link,
};
use crate::model::IdempotencyKey;
use crate::model::RequestContext;
use crate::model::card::{CardRecord, CardType};
use crate::model::transaction::Event;
use crate::model::transaction::TransactionStatus;
use crate::model::wallet::{WalletOutcome, WalletRecord, WalletType};
use crate::ports::db::{
    CardChange, CardWrite, Saga, SagaStep, StoreError, WalletChange, WalletUpdate, WalletWrite,
    WriteOutcome,
};

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
