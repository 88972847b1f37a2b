//! The card payments application service: one function per RPC of
//! `PaymentService` (Authorize, Capture, Void, Refund, `GetTransaction`).
//!
//! Authorize and Refund talk to the bank while the POS waits: the request is
//! recorded (`in_progress`, key claimed) before it is sent and its answer is
//! recorded with the key's answer before the POS hears it. Capture and Void
//! never wait for the bank: their advice or reversal is committed with them
//! and delivered by the store-and-forward queue ([`super::saf`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::CardError;
use super::card::{PresentedCard, brand_name};
use super::checks::{
    check_amount, check_capturable, check_card, check_refundable, refund_exceeds, void_lines,
};
use super::iso::{BankOutcome, Outgoing, original_data, send_financial};
use super::outcome::{Draft, draft, plan_outcome};
use super::payments::{Payments, card_lines, up_link};
use super::saf::reversal_of;
use crate::model::business_day::BusinessCalendar;
use crate::model::business_day::StoreConfig;
use crate::model::card::{CardRecord, CardType};
use crate::model::card::{CardTransaction, RefundResult};
use crate::model::clock::Clock;
use crate::model::idempotency::{Answered, FingerprintBuilder, differing_fields};
use crate::model::money::Currency;
use crate::model::transaction::Event;
use crate::model::transaction::TransactionStatus;
use crate::model::{IdempotencyKey, RequestContext, RequestFingerprint, StoredAnswer};
use crate::ports::answers::CardAnswers;
use crate::ports::db::{
    CardChange, CardUpdate, CardWrite, Database, KeyOp, NewSafItem, RefundAdjust, SafKind,
    WriteOutcome,
};

/// An Authorize request, read and checked for shape.
#[derive(Debug)]
pub struct AuthorizeInput {
    pub context: RequestContext,
    pub card: PresentedCard,
    pub amount_minor: u64,
    pub currency: Currency,
    /// `Authorization` (`AUTH_ONLY`) or `Sale`.
    pub card_type: CardType,
    pub pos_reference: String,
}

/// A Capture request.
#[derive(Debug)]
pub struct CaptureInput {
    pub context: RequestContext,
    pub transaction_id: String,
    pub amount_minor: u64,
    pub currency: Currency,
}

/// A Void request.
#[derive(Debug)]
pub struct VoidInput {
    pub context: RequestContext,
    pub transaction_id: String,
    pub reason: String,
}

/// A Refund request; the card, when presented, must be the payment's card.
#[derive(Debug)]
pub struct RefundInput {
    pub context: RequestContext,
    pub original_transaction_id: String,
    pub card: Option<PresentedCard>,
    pub amount_minor: u64,
    pub currency: Currency,
    pub reason: String,
}

/// How `GetTransaction` names the transaction.
#[derive(Debug)]
pub enum TransactionLookup {
    Id(String),
    /// The `client_request_id` of the call that created it, at the caller's terminal.
    CreatedBy(String),
}

/// The card payments service, over the database, the bank links and the
/// answers' encoding.
#[derive(Debug)]
pub struct CardService {
    db: Arc<dyn Database>,
    payments: Arc<Payments>,
    answers: Arc<dyn CardAnswers>,
    stores: BTreeMap<String, StoreConfig>,
    retention: chrono::Duration,
    clock: Arc<dyn Clock>,
}

/// The number of a capture mode in the POS API (`AUTH_ONLY` = 1, `SALE` =
/// 2): the request fingerprint keeps the API's value so that fingerprints
/// stay comparable with those already stored.
fn capture_mode_number(card_type: CardType) -> i32 {
    match card_type {
        CardType::Authorization => 1,
        CardType::Sale => 2,
        CardType::Refund => 0,
    }
}

/// A new refund of `original`: the payment's card details, the entry mode
/// of the card presented (if any).
fn refund_record(
    new: &Draft<'_>,
    original: &CardRecord,
    card: Option<&PresentedCard>,
) -> CardRecord {
    CardRecord {
        route: original.route,
        masked_pan: original.masked_pan.clone(),
        pan_fingerprint: original.pan_fingerprint.clone(),
        card_brand: original.card_brand.clone(),
        entry_mode: card.map_or_else(
            || original.entry_mode.clone(),
            |card| card.entry_mode.as_str().to_owned(),
        ),
        merchant_id: original.merchant_id.clone(),
        original_transaction_id: Some(original.id.clone()),
        ..draft(new)
    }
}

impl CardService {
    pub fn new(
        db: Arc<dyn Database>,
        payments: Arc<Payments>,
        answers: Arc<dyn CardAnswers>,
        stores: BTreeMap<String, StoreConfig>,
        retention: chrono::Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            db,
            payments,
            answers,
            stores,
            retention,
            clock,
        }
    }

    pub fn payments(&self) -> &Arc<Payments> {
        &self.payments
    }

    pub(crate) fn db(&self) -> &dyn Database {
        self.db.as_ref()
    }

    pub(crate) fn answers(&self) -> &dyn CardAnswers {
        self.answers.as_ref()
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The configuration of a store validation found configured.
    pub(crate) fn store_config(&self, store_id: &str) -> &StoreConfig {
        self.stores
            .get(store_id)
            .expect("validation checked the store is configured")
    }

    fn calendar(&self, store_id: &str) -> BusinessCalendar {
        BusinessCalendar::from(self.store_config(store_id))
    }

    /// Authorize: an authorization (hold) or a sale at the bank, waiting for
    /// its answer.
    pub async fn authorize(
        &self,
        input: AuthorizeInput,
    ) -> Result<Answered<CardTransaction>, CardError> {
        let payments = &self.payments;
        let now = self.clock.now();
        let AuthorizeInput {
            context,
            card,
            amount_minor,
            currency,
            card_type,
            pos_reference,
        } = input;
        let amount = check_amount(payments, &context, amount_minor, currency)?;
        let card_digest = payments.keyed_digest(&card.digest_parts()).await?;
        let fingerprint = FingerprintBuilder::new("Authorize")
            .value("context.operator_id", &context.operator_id)
            .value("card", &card_digest)
            .value("amount.amount_minor", amount.to_be_bytes())
            .value("amount.currency", currency.code)
            .value("capture_mode", capture_mode_number(card_type).to_be_bytes())
            .value("pos_reference", &pos_reference)
            .finish();
        let key = context.idempotency_key();
        if let Some(answer) = self.prior(&key, &fingerprint).await? {
            return Ok(Answered::Replayed(answer));
        }
        let calendar = self.calendar(&context.store_id);
        let checked = check_card(payments, &context, &card, calendar.local_date(now)).await?;
        let (link, link_config) = up_link(payments, &checked.route.link)?;
        let stan = payments
            .next_stan(self.db.as_ref(), &checked.route.link, now)
            .await?;
        let id = uuid::Uuid::now_v7();
        let record = CardRecord {
            route: checked.route.kind,
            masked_pan: card.pan.masked(),
            pan_fingerprint: payments.fingerprint(&card.pan).await?,
            card_brand: brand_name(checked.brand).to_owned(),
            entry_mode: card.entry_mode.as_str().to_owned(),
            cardholder_verification: if card.pin.is_some() {
                "online_pin"
            } else {
                "signature"
            }
            .to_owned(),
            merchant_id: payments.config.merchant_id(&context.store_id),
            pos_reference,
            ..draft(&Draft {
                context: &context,
                id: &id,
                card_type,
                stan,
                link_id: &checked.route.link,
                amount,
                currency: currency.code,
                business_date: calendar.business_date(now),
                now,
            })
        };
        if let Some(answer) = self
            .claim(&context.actor, &record, &key, &fingerprint, None, now)
            .await?
        {
            return Ok(Answered::Replayed(answer));
        }
        let outgoing = Outgoing {
            link,
            acquirer_id: &link_config.acquirer_id,
            pin_block: checked.pin_block,
            original: None,
        };
        let store = self.store_config(&record.store_id);
        let outcome = send_financial(store, &record, Some(&card), &outgoing, now).await;
        let answers = self.answers.as_ref();
        let done = self
            .finish(&record, outcome, &key, self.clock.now(), &|settled| {
                answers.authorized(&CardTransaction::alone(settled.clone()))
            })
            .await?;
        Ok(Answered::New(CardTransaction::alone(done)))
    }

    /// Capture: completes an authorization for up to its amount; the bank
    /// hears of it by a queued advice.
    pub async fn capture(
        &self,
        input: CaptureInput,
    ) -> Result<Answered<CardTransaction>, CardError> {
        let now = self.clock.now();
        let CaptureInput {
            context,
            transaction_id,
            amount_minor,
            currency,
        } = input;
        let fingerprint = FingerprintBuilder::new("Capture")
            .value("context.operator_id", &context.operator_id)
            .value("transaction_id", &transaction_id)
            .value("amount.amount_minor", amount_minor.to_be_bytes())
            .value("amount.currency", currency.code)
            .finish();
        let key = context.idempotency_key();
        if let Some(answer) = self.prior(&key, &fingerprint).await? {
            return Ok(Answered::Replayed(answer));
        }
        let record = self.own_transaction(&context, &transaction_id).await?;
        let amount = check_capturable(&record, amount_minor, currency, now)?;
        let business_date = self.calendar(&context.store_id).business_date(now);
        let mut captured = record.clone();
        captured.status = TransactionStatus::Captured;
        captured.captured_minor = amount;
        captured.advice_pending = true;
        captured.updated_at = now;
        let result = self.with_refunds(captured).await?;
        let write = CardWrite {
            transaction_id: record.id.clone(),
            at: now,
            key: Some(self.answered_key(
                &key,
                &fingerprint,
                &record.id,
                self.answers.captured(&result),
                now,
            )),
            change: CardChange::Update(CardUpdate {
                transaction_id: record.id.clone(),
                from: Some(TransactionStatus::Authorized),
                to: Some(TransactionStatus::Captured),
                captured_minor: Some(amount),
                advice_pending: Some(true),
                ..CardUpdate::default()
            }),
            refund: None,
            lines: card_lines(&record, amount, "card_capture"),
            business_date,
            event: Event::new(
                "captured",
                Some(TransactionStatus::Authorized),
                TransactionStatus::Captured,
                &context.actor,
                format!("captured {amount} of {}", record.amount_minor),
            ),
            enqueue: vec![NewSafItem {
                link_id: record.link_id.clone(),
                kind: SafKind::Advice,
                amount_minor: amount,
                currency: record.currency.clone(),
                next_attempt_at: now,
            }],
            acked: Vec::new(),
        };
        self.commit_answered(write, result, &fingerprint, &key, "Capture")
            .await
    }

    /// Void: cancels an authorization, or a capture of the current business
    /// day; the bank hears of it by a queued reversal.
    pub async fn void(&self, input: VoidInput) -> Result<Answered<CardTransaction>, CardError> {
        let now = self.clock.now();
        let VoidInput {
            context,
            transaction_id,
            reason,
        } = input;
        let fingerprint = FingerprintBuilder::new("Void")
            .value("context.operator_id", &context.operator_id)
            .value("transaction_id", &transaction_id)
            .value("reason", &reason)
            .finish();
        let key = context.idempotency_key();
        if let Some(answer) = self.prior(&key, &fingerprint).await? {
            return Ok(Answered::Replayed(answer));
        }
        let record = self.own_transaction(&context, &transaction_id).await?;
        let calendar = self.calendar(&context.store_id);
        let today = calendar.business_date(now);
        let lines = void_lines(&record, &calendar, today)?;
        let mut voided = record.clone();
        voided.status = TransactionStatus::Voided;
        voided.advice_pending = true;
        voided.updated_at = now;
        let result = self.with_refunds(voided).await?;
        let write = CardWrite {
            transaction_id: record.id.clone(),
            at: now,
            key: Some(self.answered_key(
                &key,
                &fingerprint,
                &record.id,
                self.answers.voided(&result),
                now,
            )),
            change: CardChange::Update(CardUpdate {
                transaction_id: record.id.clone(),
                from: Some(record.status),
                to: Some(TransactionStatus::Voided),
                advice_pending: Some(true),
                ..CardUpdate::default()
            }),
            refund: None,
            lines,
            business_date: today,
            event: Event::new(
                "voided",
                Some(record.status),
                TransactionStatus::Voided,
                &context.actor,
                reason,
            ),
            enqueue: vec![reversal_of(&record, now)],
            acked: Vec::new(),
        };
        self.commit_answered(write, result, &fingerprint, &key, "Void")
            .await
    }

    /// Refund: gives back up to what remains refundable of a captured
    /// payment, at the bank, waiting for its answer.
    pub async fn refund(&self, input: RefundInput) -> Result<Answered<RefundResult>, CardError> {
        let payments = &self.payments;
        let now = self.clock.now();
        let fingerprint = self.refund_fingerprint(&input).await?;
        let RefundInput {
            context,
            original_transaction_id,
            card,
            amount_minor,
            currency,
            ..
        } = input;
        let key = context.idempotency_key();
        if let Some(answer) = self.prior(&key, &fingerprint).await? {
            return Ok(Answered::Replayed(answer));
        }
        let original = self
            .own_transaction(&context, &original_transaction_id)
            .await?;
        let today = self.calendar(&context.store_id).business_date(now);
        let amount = check_refundable(
            payments,
            &original,
            card.as_ref(),
            amount_minor,
            currency,
            today,
        )
        .await?;
        let (link, link_config) = up_link(payments, &original.link_id)?;
        let stan = payments
            .next_stan(self.db.as_ref(), &original.link_id, now)
            .await?;
        let record = refund_record(
            &Draft {
                context: &context,
                id: &uuid::Uuid::now_v7(),
                card_type: CardType::Refund,
                stan,
                link_id: &original.link_id,
                amount,
                currency: &original.currency,
                business_date: today,
                now,
            },
            &original,
            card.as_ref(),
        );
        let reserve = RefundAdjust {
            original_id: original.id.clone(),
            reserve_delta: amount,
            refunded_delta: 0,
        };
        if let Some(answer) = self
            .claim(
                &context.actor,
                &record,
                &key,
                &fingerprint,
                Some(reserve),
                now,
            )
            .await?
        {
            return Ok(Answered::Replayed(answer));
        }
        let outgoing = Outgoing {
            link,
            acquirer_id: &link_config.acquirer_id,
            pin_block: None,
            original: original_data(&original, &link_config.acquirer_id),
        };
        let store = self.store_config(&record.store_id);
        let outcome = send_financial(store, &record, card.as_ref(), &outgoing, now).await;
        let original_after = self
            .refunded_original(original, &record, outcome.approved())
            .await?;
        let result = |settled: &CardRecord| RefundResult {
            refund: CardTransaction::alone(settled.clone()),
            original: Some(original_after.clone()),
        };
        let answers = self.answers.as_ref();
        let done = self
            .finish(&record, outcome, &key, self.clock.now(), &|settled| {
                answers.refunded(&result(settled))
            })
            .await?;
        Ok(Answered::New(result(&done)))
    }

    /// The request fingerprint of a Refund: the card, when presented, as a
    /// keyed digest.
    async fn refund_fingerprint(
        &self,
        input: &RefundInput,
    ) -> Result<RequestFingerprint, CardError> {
        let card_digest = match &input.card {
            Some(card) => hex::encode(self.payments.keyed_digest(&card.digest_parts()).await?),
            None => String::new(),
        };
        Ok(FingerprintBuilder::new("Refund")
            .value("context.operator_id", &input.context.operator_id)
            .value("original_transaction_id", &input.original_transaction_id)
            .value("amount.amount_minor", input.amount_minor.to_be_bytes())
            .value("amount.currency", input.currency.code)
            .value("reason", &input.reason)
            .value("card", &card_digest)
            .finish())
    }

    /// The refunded payment as the refund's answer shows it: with the new
    /// refund among its refunds, and its amount refunded if approved.
    async fn refunded_original(
        &self,
        original: CardRecord,
        refund: &CardRecord,
        approved: bool,
    ) -> Result<CardTransaction, CardError> {
        let mut refund_ids = self.db.refund_ids(&original.id).await?;
        if !refund_ids.contains(&refund.id) {
            refund_ids.push(refund.id.clone());
        }
        let mut record = original;
        if approved {
            record.refunded_minor += refund.amount_minor;
        }
        Ok(CardTransaction { record, refund_ids })
    }

    /// `GetTransaction`: a transaction of the caller's store, by id or by
    /// the request that created it at the caller's terminal.
    pub async fn get_transaction(
        &self,
        context: &RequestContext,
        lookup: &TransactionLookup,
    ) -> Result<CardTransaction, CardError> {
        let record = match lookup {
            TransactionLookup::Id(id) => self.own_transaction(context, id).await?,
            TransactionLookup::CreatedBy(client_request_id) => {
                let key = IdempotencyKey {
                    client_request_id: client_request_id.clone(),
                    ..context.idempotency_key()
                };
                self.db.card_by_request(&key).await?.ok_or_else(|| {
                    CardError::NotFound(
                        "this terminal made no card transaction with that client_request_id"
                            .to_owned(),
                    )
                })?
            }
        };
        self.with_refunds(record).await
    }

    /// What the first request under a key left behind, for a retry.
    async fn prior(
        &self,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
    ) -> Result<Option<StoredAnswer>, CardError> {
        let Some(answer) = self.db.answer(key).await? else {
            return Ok(None);
        };
        self.answer_for_retry(answer, fingerprint, &key.client_request_id)
            .await
            .map(Some)
    }

    /// A retry's answer: the stored response, or while the first request is
    /// unresolved, "in progress" or "outcome unknown".
    async fn answer_for_retry(
        &self,
        answer: StoredAnswer,
        fingerprint: &RequestFingerprint,
        client_request_id: &str,
    ) -> Result<StoredAnswer, CardError> {
        let differing = differing_fields(&answer.fingerprint, fingerprint);
        if !differing.is_empty() {
            return Err(CardError::KeyReused {
                client_request_id: client_request_id.to_owned(),
                differing,
            });
        }
        if !answer.pending {
            return Ok(answer);
        }
        let record = self.db.card_transaction(&answer.transaction_id).await?;
        match record.map(|record| record.status) {
            Some(TransactionStatus::PendingReversal) => Err(CardError::OutcomeUnknown {
                transaction_id: answer.transaction_id,
            }),
            _ => Err(CardError::InProgress {
                client_request_id: client_request_id.to_owned(),
            }),
        }
    }

    /// Records a new transaction as sent, claiming its key. When a
    /// concurrent duplicate took the key first, this request is answered as
    /// its retry: `Some` stored answer, or the retry's error.
    async fn claim(
        &self,
        actor: &str,
        record: &CardRecord,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        refund: Option<RefundAdjust>,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredAnswer>, CardError> {
        let write = CardWrite {
            transaction_id: record.id.clone(),
            at: now,
            key: Some(KeyOp::Claim {
                key: key.clone(),
                fingerprint: fingerprint.clone(),
                expires_at: now + self.retention,
            }),
            change: CardChange::Create(Box::new(record.clone())),
            refund,
            lines: Vec::new(),
            business_date: record.business_date,
            event: Event::new(
                "sent",
                None,
                TransactionStatus::InProgress,
                actor,
                format!(
                    "{} {} {} to {}",
                    record.card_type.as_str(),
                    record.amount_minor,
                    record.currency,
                    record.link_id
                ),
            ),
            enqueue: Vec::new(),
            acked: Vec::new(),
        };
        match self.db.write_card(write).await? {
            WriteOutcome::Written => Ok(None),
            WriteOutcome::KeyTaken(answer) => self
                .answer_for_retry(answer, fingerprint, &key.client_request_id)
                .await
                .map(Some),
            WriteOutcome::RefundExceeds { remaining } => Err(refund_exceeds(remaining)),
            WriteOutcome::StatusMismatch { .. } => {
                Err(CardError::Internal("unexpected state conflict"))
            }
        }
    }

    /// Records the bank's outcome; returns the updated record when the bank
    /// answered, else why the POS gets no answer.
    async fn finish(
        &self,
        record: &CardRecord,
        outcome: BankOutcome,
        key: &IdempotencyKey,
        now: DateTime<Utc>,
        answer: &(dyn Fn(&CardRecord) -> Vec<u8> + Sync),
    ) -> Result<CardRecord, CardError> {
        let planned = plan_outcome(
            record,
            &outcome,
            key,
            now,
            self.payments.config.authorization_hold,
            answer,
        );
        let written = self.db.write_card(planned.write).await?;
        match (written, outcome) {
            (WriteOutcome::Written, BankOutcome::Answered(_)) => Ok(planned.record),
            (WriteOutcome::Written, BankOutcome::Unknown(reason)) => {
                tracing::warn!(transaction_id = %record.id, link = %record.link_id, %reason, "bank outcome unknown; reversal queued");
                Err(CardError::OutcomeUnknown {
                    transaction_id: record.id.clone(),
                })
            }
            (WriteOutcome::Written, BankOutcome::NotSent(reason)) => {
                tracing::warn!(transaction_id = %record.id, link = %record.link_id, %reason, "request not sent");
                Err(CardError::PartnerUnavailable {
                    link_id: record.link_id.clone(),
                })
            }
            (WriteOutcome::Written, BankOutcome::NotBuilt(reason)) => {
                tracing::error!(transaction_id = %record.id, link = %record.link_id, %reason, "bank request could not be built");
                Err(CardError::Internal(
                    "the bank request could not be built; nothing was sent",
                ))
            }
            // The recovery sweep got there first (it found the request cut
            // off): whatever the bank said, the transaction is being reversed.
            (WriteOutcome::StatusMismatch { .. }, _) => Err(CardError::OutcomeUnknown {
                transaction_id: record.id.clone(),
            }),
            (other, _) => {
                tracing::error!(transaction_id = %record.id, ?other, "outcome write refused");
                Err(CardError::Internal(
                    "the outcome could not be recorded; retry with the same client_request_id",
                ))
            }
        }
    }

    /// Claims a key with its answer at once (calls that never wait for the bank).
    fn answered_key(
        &self,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        transaction_id: &str,
        response: Vec<u8>,
        now: DateTime<Utc>,
    ) -> KeyOp {
        KeyOp::ClaimAnswered {
            key: key.clone(),
            answer: StoredAnswer {
                fingerprint: fingerprint.clone(),
                transaction_id: transaction_id.to_owned(),
                response,
                pending: false,
            },
            expires_at: now + self.retention,
        }
    }

    /// Commits a write that answers at once; a lost race is answered as a retry.
    async fn commit_answered(
        &self,
        write: CardWrite,
        result: CardTransaction,
        fingerprint: &RequestFingerprint,
        key: &IdempotencyKey,
        rpc: &str,
    ) -> Result<Answered<CardTransaction>, CardError> {
        let id = write.transaction_id.clone();
        match self.db.write_card(write).await? {
            WriteOutcome::Written => Ok(Answered::New(result)),
            WriteOutcome::KeyTaken(answer) => self
                .answer_for_retry(answer, fingerprint, &key.client_request_id)
                .await
                .map(Answered::Replayed),
            WriteOutcome::StatusMismatch { current } => Err(CardError::Refused {
                kind: "CONCURRENT_CHANGE",
                subject: format!("transaction/{id}"),
                description: format!(
                    "{rpc} lost a race: the transaction is now {}; read it again",
                    current.map_or("missing", TransactionStatus::as_str)
                ),
            }),
            WriteOutcome::RefundExceeds { .. } => {
                Err(CardError::Internal("unexpected refund guard"))
            }
        }
    }

    /// The record of a transaction of the caller's store, or `NotFound`.
    async fn own_transaction(
        &self,
        context: &RequestContext,
        id: &str,
    ) -> Result<CardRecord, CardError> {
        self.db
            .card_transaction(id)
            .await?
            .filter(|record| record.store_id == context.store_id)
            .ok_or_else(|| {
                CardError::NotFound(format!(
                    "no card transaction {id} at store {}",
                    context.store_id
                ))
            })
    }

    /// A record with its refunds (a refund has none).
    async fn with_refunds(&self, record: CardRecord) -> Result<CardTransaction, CardError> {
        let refund_ids = match record.card_type {
            CardType::Refund => Vec::new(),
            _ => self.db.refund_ids(&record.id).await?,
        };
        Ok(CardTransaction { record, refund_ids })
    }
}
