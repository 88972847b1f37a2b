//! The wallet application service: one function per RPC of `WalletService`
//! (`TopUp`, `Pay`, `Refund`, `GetBalance`, `GetWalletTransaction` here;
//! `LinkCard` and `UnlinkCard` in [`super::links`]).
//!
//! Money-moving calls follow the card path: the transaction is recorded
//! `in_progress` with its key claimed before the operator is called, and its
//! answer is committed with the key's answer before the POS hears it. No
//! answer from the operator: `pending_reversal` with a reversal queued in
//! the same commit, and the POS gets `OUTCOME_UNKNOWN`. A card top-up and
//! the auto-reload of a Pay run as sagas ([`super::saga`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use posgate_partners::wallet::WalletCallError;
use posgate_partners::wallet::api::{self as wire, WalletResult};

use super::checks::{CheckedWallet, WalletId};
use super::error::WalletError;
use super::operators::{Operator, Wallets, wallet_lines};
use super::outcome::{operator_outcome, reversal_of};
use crate::cards::card::PresentedCard;
use crate::cards::service::TransactionLookup;
use crate::cards::{Payments, check_card};
use crate::model::business_day::{BusinessCalendar, StoreConfig};
use crate::model::clock::Clock;
use crate::model::idempotency::{Answered, FingerprintBuilder, differing_fields};
use crate::model::link::CardLink;
use crate::model::money::Currency;
use crate::model::transaction::{Event, TransactionStatus};
use crate::model::wallet::{
    WalletAnswer, WalletOutcome, WalletRecord, WalletRefund, WalletTransaction, WalletType,
};
use crate::model::{IdempotencyKey, RequestContext, RequestFingerprint, StoredAnswer};
use crate::ports::answers::WalletAnswers;
use crate::ports::db::{
    Database, KeyOp, RefundAdjust, WalletChange, WalletUpdate, WalletWrite, WriteOutcome,
};

/// A `TopUp` request, read and checked for shape and against the operator.
#[derive(Debug)]
pub struct TopUpInput {
    pub context: RequestContext,
    pub wallet: CheckedWallet,
    pub amount_minor: i64,
    /// The card paying for it; `None`: cash.
    pub card: Option<PresentedCard>,
}

/// A `Pay` request.
#[derive(Debug)]
pub struct PayInput {
    pub context: RequestContext,
    pub wallet: CheckedWallet,
    pub amount_minor: i64,
    pub pos_reference: String,
}

/// A wallet `Refund` request.
#[derive(Debug)]
pub struct RefundInput {
    pub context: RequestContext,
    pub original_transaction_id: String,
    pub amount_minor: i64,
    pub currency: Currency,
    pub reason: String,
}

/// A wallet's balance as `GetBalance` answers it.
#[derive(Debug)]
pub struct Balance {
    pub operator_id: String,
    pub operator_name: String,
    pub balance: wire::WalletBalance,
    pub as_of: DateTime<Utc>,
    /// The wallet's active card link.
    pub link: Option<CardLink>,
}

/// The wallet service, over the database, the wallet operators, the card
/// payments (card top-ups, links, auto-reload) and the answers' encoding.
#[derive(Debug)]
pub struct WalletService {
    pub(crate) db: Arc<dyn Database>,
    pub(crate) wallets: Arc<Wallets>,
    pub(crate) payments: Option<Arc<Payments>>,
    pub(crate) answers: Arc<dyn WalletAnswers>,
    stores: BTreeMap<String, StoreConfig>,
    pub(crate) retention: chrono::Duration,
    pub(crate) clock: Arc<dyn Clock>,
}

/// The idempotency key of a request, from its context.
pub(crate) fn key_of(context: &RequestContext) -> IdempotencyKey {
    IdempotencyKey {
        store_id: context.store_id.clone(),
        terminal_id: context.terminal_id.clone(),
        client_request_id: context.client_request_id.clone(),
    }
}

/// The key a record was created under.
pub(crate) fn key_of_record(record: &WalletRecord) -> IdempotencyKey {
    IdempotencyKey {
        store_id: record.store_id.clone(),
        terminal_id: record.terminal_id.clone(),
        client_request_id: record.client_request_id.clone(),
    }
}

pub(crate) fn channel(context: &RequestContext) -> wire::Channel {
    wire::Channel {
        store_id: context.store_id.clone(),
        terminal_id: context.terminal_id.clone(),
    }
}

pub(crate) fn money(record: &WalletRecord) -> wire::Money {
    wire::Money::new(record.amount_minor, &record.currency)
}

/// A new call's record, key and fingerprint (its answer not given yet).
pub(crate) struct NewCall {
    record: WalletRecord,
    key: IdempotencyKey,
    fingerprint: RequestFingerprint,
}

impl WalletService {
    pub fn new(
        db: Arc<dyn Database>,
        wallets: Arc<Wallets>,
        payments: Option<Arc<Payments>>,
        answers: Arc<dyn WalletAnswers>,
        stores: BTreeMap<String, StoreConfig>,
        retention: chrono::Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            db,
            wallets,
            payments,
            answers,
            stores,
            retention,
            clock,
        }
    }

    /// The wallet operators (for the API's field checks).
    pub fn wallets(&self) -> &Arc<Wallets> {
        &self.wallets
    }

    /// Whether card payments are configured (card links need them).
    pub fn takes_cards(&self) -> bool {
        self.payments.is_some()
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

    pub(crate) fn calendar(&self, store_id: &str) -> BusinessCalendar {
        BusinessCalendar::from(self.store_config(store_id))
    }

    /// `TopUp`: credits a wallet, paid in cash or by a card (a saga: the
    /// card SALE, then the credit).
    pub async fn top_up(
        &self,
        input: TopUpInput,
    ) -> Result<Answered<WalletTransaction>, WalletError> {
        let TopUpInput {
            context,
            wallet,
            amount_minor,
            card,
        } = input;
        let now = self.now();
        let card_funding = match &card {
            Some(card) => Some(
                self.card_funding_allowed(&wallet.operator, &context, card)
                    .await?,
            ),
            None => None,
        };
        let funding = card_funding.as_ref().map_or_else(
            || "cash".to_owned(),
            |(_, digest)| format!("card:{}", hex::encode(digest)),
        );
        let begun = self
            .begin(
                "WalletService/TopUp",
                &context,
                &wallet,
                WalletType::TopUp,
                amount_minor,
                ("funding", funding),
                now,
            )
            .await?;
        let NewCall {
            mut record,
            key,
            fingerprint,
        } = match begun {
            Ok(call) => call,
            Err(answer) => return Ok(Answered::Replayed(answer)),
        };
        "cash".clone_into(&mut record.funding);
        let checked = match (&card, &card_funding) {
            (Some(card), Some((payments, _))) => {
                "card".clone_into(&mut record.funding);
                let calendar = self.calendar(&context.store_id);
                Some(check_card(payments, &context, card, calendar.local_date(now)).await?)
            }
            _ => None,
        };
        if let Some(answer) = self
            .claim(&record, &key, &fingerprint, None, &context.actor)
            .await?
        {
            return Ok(Answered::Replayed(answer));
        }
        if let (Some(card), Some((payments, _)), Some(checked)) = (&card, &card_funding, checked) {
            let answered = super::saga::card_top_up(
                self,
                payments,
                &wallet,
                record,
                key,
                card,
                &checked.route.link,
                checked.pin_block,
                &context,
            )
            .await?;
            return transaction_of(answered);
        }
        let result = wallet
            .operator
            .client
            .top_up(&wire::TopUpRequest {
                transaction_id: record.id.clone(),
                wallet: wallet.wire.clone(),
                amount: money(&record),
                funding: wire::Funding::Cash,
                channel: channel(&context),
            })
            .await;
        let answer = self
            .finish(&wallet.operator, record, key, result, &context.actor)
            .await?;
        transaction_of(Answered::New(answer))
    }

    /// `Pay`: debits a wallet; a linked wallet with auto-reload whose
    /// balance is short is reloaded from its card first (a saga).
    pub async fn pay(&self, input: PayInput) -> Result<Answered<WalletTransaction>, WalletError> {
        let PayInput {
            context,
            wallet,
            amount_minor,
            pos_reference,
        } = input;
        let now = self.now();
        let begun = self
            .begin(
                "WalletService/Pay",
                &context,
                &wallet,
                WalletType::Payment,
                amount_minor,
                ("pos_reference", pos_reference.clone()),
                now,
            )
            .await?;
        let NewCall {
            mut record,
            key,
            fingerprint,
        } = match begun {
            Ok(call) => call,
            Err(answer) => return Ok(Answered::Replayed(answer)),
        };
        record.pos_reference.clone_from(&pos_reference);
        let reload = self.auto_reload_need(&wallet, amount_minor).await?;
        if let Some(answer) = self
            .claim(&record, &key, &fingerprint, None, &context.actor)
            .await?
        {
            return Ok(Answered::Replayed(answer));
        }
        if let (Some((link, short_minor)), Some(payments)) = (reload, self.payments.as_ref()) {
            let answered = super::saga::auto_reload_pay(
                self,
                payments,
                &wallet,
                record,
                key,
                &link,
                short_minor,
                &context,
            )
            .await?;
            return transaction_of(answered);
        }
        let result = wallet
            .operator
            .client
            .pay(&wire::PaymentRequest {
                transaction_id: record.id.clone(),
                wallet: wallet.wire.clone(),
                amount: money(&record),
                pos_reference: (!pos_reference.is_empty()).then(|| pos_reference.clone()),
                channel: channel(&context),
            })
            .await;
        let answer = self
            .finish(&wallet.operator, record, key, result, &context.actor)
            .await?;
        transaction_of(Answered::New(answer))
    }

    /// The preamble `TopUp` and `Pay` share: the request's fingerprint (the
    /// wallet, the amount and `extra`), a retry's stored answer, or the new
    /// transaction's record (`Err`: the retry's stored answer).
    #[allow(clippy::too_many_arguments)]
    async fn begin(
        &self,
        rpc: &'static str,
        context: &RequestContext,
        wallet: &CheckedWallet,
        wallet_type: WalletType,
        amount_minor: i64,
        extra: (&str, String),
        now: DateTime<Utc>,
    ) -> Result<Result<NewCall, StoredAnswer>, WalletError> {
        let operator = &wallet.operator;
        let key = key_of(context);
        let fingerprint = FingerprintBuilder::new(rpc)
            .value("wallet.wallet_operator_id", &operator.config.id)
            .value(
                "wallet.id",
                self.wallet_fingerprint(operator, &wallet.id).await?,
            )
            .value(
                "amount",
                format!("{amount_minor} {}", operator.config.currency.code),
            )
            .value(extra.0, extra.1)
            .finish();
        if let Some(answer) = self.prior(&key, &fingerprint).await? {
            return Ok(Err(answer));
        }
        let mut record = self.new_record(context, wallet_type, operator, amount_minor, now);
        record.wallet_ref.clone_from(&wallet.stored_ref);
        Ok(Ok(NewCall {
            record,
            key,
            fingerprint,
        }))
    }

    /// `Refund`: gives back up to what remains refundable of a completed
    /// wallet payment, within the operator's refund window.
    pub async fn refund(&self, input: RefundInput) -> Result<Answered<WalletRefund>, WalletError> {
        let RefundInput {
            context,
            original_transaction_id,
            amount_minor: amount,
            currency,
            reason,
        } = input;
        let now = self.now();
        let key = key_of(&context);
        let fingerprint = FingerprintBuilder::new("WalletService/Refund")
            .value("original_transaction_id", &original_transaction_id)
            .value("amount", format!("{amount} {}", currency.code))
            .value("reason", &reason)
            .finish();
        if let Some(answer) = self.prior(&key, &fingerprint).await? {
            return Ok(Answered::Replayed(answer));
        }
        let original = self
            .db
            .wallet_transaction(&original_transaction_id)
            .await?
            .filter(|original| original.store_id == context.store_id)
            .ok_or(WalletError::NotFound(
                "no such wallet transaction at this store",
            ))?;
        if original.wallet_type != WalletType::Payment
            || original.status != TransactionStatus::Completed
        {
            return Err(WalletError::refused(
                "NOT_REFUNDABLE",
                "original_transaction_id",
                "only a COMPLETED wallet PAYMENT can be refunded",
            ));
        }
        if currency.code != original.currency {
            return Err(WalletError::InvalidField {
                field: "amount.currency",
                description: format!("must be {} (the payment's currency)", original.currency),
            });
        }
        let operator = self
            .wallets
            .operator(&original.wallet_operator_id)
            .cloned()
            .ok_or_else(|| {
                WalletError::partner_unavailable(
                    crate::model::Party::Wallet(original.wallet_operator_id.clone()).to_string(),
                )
            })?;
        let calendar = self.calendar(&context.store_id);
        let age_days = (calendar.business_date(now) - original.business_date).num_days();
        if age_days > operator.config.refund_window_days {
            return Err(WalletError::refused(
                "REFUND_WINDOW_CLOSED",
                "original_transaction_id",
                format!(
                    "the payment is {age_days} days old; refunds close after {} days",
                    operator.config.refund_window_days
                ),
            ));
        }
        let mut record = self.new_record(&context, WalletType::Refund, &operator, amount, now);
        record.wallet_ref.clone_from(&original.wallet_ref);
        record.original_transaction_id = Some(original.id.clone());
        let reserve = RefundAdjust {
            original_id: original.id.clone(),
            reserve_delta: amount,
            refunded_delta: 0,
        };
        if let Some(answer) = self
            .claim(&record, &key, &fingerprint, Some(reserve), &context.actor)
            .await?
        {
            return Ok(Answered::Replayed(answer));
        }
        let result = operator
            .client
            .refund(&wire::RefundRequest {
                transaction_id: record.id.clone(),
                original_transaction_id: original.id.clone(),
                amount: money(&record),
                channel: channel(&context),
            })
            .await;
        match self
            .finish(&operator, record, key, result, &context.actor)
            .await?
        {
            WalletAnswer::Refund(refund) => Ok(Answered::New(*refund)),
            _ => Err(WalletError::Internal("a refund answered as another call")),
        }
    }

    /// `GetBalance`: the operator's balance of a wallet, with its card link.
    pub async fn get_balance(&self, wallet: &CheckedWallet) -> Result<Balance, WalletError> {
        let now = self.now();
        let operator = &wallet.operator;
        let balance = read_balance(operator, &wallet.wire, true).await?;
        let as_of =
            DateTime::parse_from_rfc3339(&balance.as_of).map_or(now, |at| at.with_timezone(&Utc));
        let link = self
            .db
            .active_link(&operator.config.id, &balance.wallet.account_id)
            .await?;
        Ok(Balance {
            operator_id: operator.config.id.clone(),
            operator_name: operator.config.name.clone(),
            balance,
            as_of,
            link,
        })
    }

    /// `GetWalletTransaction`: a wallet transaction of the caller's store, by
    /// id or by the request that created it at the caller's terminal.
    pub async fn get_wallet_transaction(
        &self,
        context: &RequestContext,
        lookup: &TransactionLookup,
    ) -> Result<WalletTransaction, WalletError> {
        let record = match lookup {
            TransactionLookup::Id(id) => self.db.wallet_transaction(id).await?,
            TransactionLookup::CreatedBy(id) => {
                let key = IdempotencyKey {
                    client_request_id: id.clone(),
                    ..key_of(context)
                };
                self.db.wallet_by_request(&key).await?
            }
        }
        .filter(|record| record.store_id == context.store_id)
        .ok_or(WalletError::NotFound(
            "no such wallet transaction at this store",
        ))?;
        let refund_ids = if record.wallet_type == WalletType::Payment {
            self.db.wallet_refund_ids(&record.id).await?
        } else {
            Vec::new()
        };
        let saga = self.saga_part(&record).await?;
        Ok(WalletTransaction {
            record,
            refund_ids,
            saga,
        })
    }

    /// What the first request under a key left behind, for a retry.
    pub(crate) async fn prior(
        &self,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
    ) -> Result<Option<StoredAnswer>, WalletError> {
        let Some(answer) = self.db.answer(key).await? else {
            return Ok(None);
        };
        self.answer_for_retry(answer, fingerprint, &key.client_request_id)
            .await
            .map(Some)
    }

    /// A retry's answer: the stored response, or while the first request is
    /// unresolved, "in progress" or "outcome unknown".
    pub(crate) async fn answer_for_retry(
        &self,
        answer: StoredAnswer,
        fingerprint: &RequestFingerprint,
        client_request_id: &str,
    ) -> Result<StoredAnswer, WalletError> {
        let differing = differing_fields(&answer.fingerprint, fingerprint);
        if !differing.is_empty() {
            return Err(WalletError::KeyReused {
                client_request_id: client_request_id.to_owned(),
                differing,
            });
        }
        if !answer.pending {
            return Ok(answer);
        }
        let record = self.db.wallet_transaction(&answer.transaction_id).await?;
        match record.map(|record| record.status) {
            Some(TransactionStatus::PendingReversal) => {
                Err(WalletError::outcome_unknown(&answer.transaction_id))
            }
            _ => Err(WalletError::InProgress {
                client_request_id: client_request_id.to_owned(),
            }),
        }
    }

    /// What recording a refund's outcome does to its payment: the
    /// reservation released, and on completion the refunded total raised
    /// (returned for the answer).
    async fn refund_effect(
        &self,
        record: &WalletRecord,
    ) -> Result<(Option<RefundAdjust>, Option<i64>), WalletError> {
        if record.wallet_type != WalletType::Refund {
            return Ok((None, None));
        }
        let original = record.original_transaction_id.clone().unwrap_or_default();
        Ok(match record.status {
            TransactionStatus::Completed => {
                let current = self
                    .db
                    .wallet_transaction(&original)
                    .await?
                    .map_or(0, |payment| payment.refunded_minor);
                (
                    Some(RefundAdjust {
                        original_id: original,
                        reserve_delta: -record.amount_minor,
                        refunded_delta: record.amount_minor,
                    }),
                    Some(current + record.amount_minor),
                )
            }
            TransactionStatus::Declined => (
                Some(RefundAdjust {
                    original_id: original,
                    reserve_delta: -record.amount_minor,
                    refunded_delta: 0,
                }),
                None,
            ),
            _ => (None, None),
        })
    }

    /// Records the operator's answer for `record` and returns the POS's answer.
    pub(crate) async fn finish(
        &self,
        operator: &Operator,
        mut record: WalletRecord,
        key: IdempotencyKey,
        result: Result<WalletResult, WalletCallError>,
        actor: &str,
    ) -> Result<WalletAnswer, WalletError> {
        let now = self.now();
        let outcome = operator_outcome(operator, &result);
        record.status = outcome.status;
        record.outcome = outcome.outcome.clone();
        record.updated_at = now;
        let (refund, original_refunded) = self.refund_effect(&record).await?;
        let lines = if outcome.status == TransactionStatus::Completed {
            wallet_lines(&record)
        } else {
            Vec::new()
        };
        // The answer is read once, before the commit, and the POS gets it:
        // an embedded transaction (the saga's card SALE, a refund's
        // payment) read again after the commit could have moved on (a
        // reversal acknowledged meanwhile), and a replay must equal the
        // first answer.
        let mut answer = None;
        let (key_op, enqueue) = match &result {
            Ok(_) | Err(WalletCallError::Rejected { .. }) => {
                let answered = self.answer_of(&record, original_refunded).await?;
                let bytes = self.encode(&answered);
                answer = Some(answered);
                (
                    Some(KeyOp::Answer {
                        key: key.clone(),
                        response: bytes,
                    }),
                    Vec::new(),
                )
            }
            Err(WalletCallError::OutcomeUnknown(_)) => (None, vec![reversal_of(&record, now)]),
            Err(WalletCallError::Unavailable(_)) => {
                (Some(KeyOp::Release { key: key.clone() }), Vec::new())
            }
        };
        let write = WalletWrite {
            transaction_id: record.id.clone(),
            at: now,
            key: key_op,
            change: WalletChange::Update(Box::new(WalletUpdate {
                transaction_id: record.id.clone(),
                from: Some(TransactionStatus::InProgress),
                to: Some(outcome.status),
                outcome: Some(outcome.outcome),
            })),
            refund,
            lines,
            business_date: record.business_date,
            event: Event::new(
                outcome.event_type,
                Some(TransactionStatus::InProgress),
                outcome.status,
                actor,
                outcome.detail,
            ),
            enqueue,
            acked: Vec::new(),
        };
        match self.db.write_wallet(write).await? {
            WriteOutcome::Written => {}
            other => {
                tracing::error!(transaction_id = %record.id, ?other, "wallet answer not recorded");
                return Err(WalletError::Internal(
                    "the wallet answer could not be recorded",
                ));
            }
        }
        match (result, answer) {
            (Ok(_) | Err(WalletCallError::Rejected { .. }), Some(answer)) => Ok(answer),
            (Ok(_) | Err(WalletCallError::Rejected { .. }), None) => {
                Err(WalletError::Internal("an answered call without its answer"))
            }
            (Err(WalletCallError::OutcomeUnknown(_)), _) => {
                Err(WalletError::outcome_unknown(&record.id))
            }
            (Err(WalletCallError::Unavailable(_)), _) => {
                Err(WalletError::partner_unavailable(operator.config.party()))
            }
        }
    }

    /// Records a new wallet transaction `in_progress`: the write every new
    /// transaction starts with (`key`: the claim of a call's key; `None` for
    /// a saga's step, whose parent's key answers the POS).
    pub(crate) fn create_write(
        &self,
        record: &WalletRecord,
        key: Option<KeyOp>,
        refund: Option<RefundAdjust>,
        actor: &str,
        detail: &str,
    ) -> WalletWrite {
        WalletWrite {
            transaction_id: record.id.clone(),
            at: self.now(),
            key,
            change: WalletChange::Create(Box::new(record.clone())),
            refund,
            lines: Vec::new(),
            business_date: record.business_date,
            event: Event::new(
                "received",
                None,
                TransactionStatus::InProgress,
                actor,
                detail.to_owned(),
            ),
            enqueue: Vec::new(),
            acked: Vec::new(),
        }
    }

    /// Records `record` `in_progress` under `key`. `Ok(None)`: go ahead and
    /// call the operator; `Ok(Some(..))`: the key was taken, here is its answer.
    async fn claim(
        &self,
        record: &WalletRecord,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        refund: Option<RefundAdjust>,
        actor: &str,
    ) -> Result<Option<StoredAnswer>, WalletError> {
        let claim = KeyOp::Claim {
            key: key.clone(),
            fingerprint: fingerprint.clone(),
            expires_at: self.now() + self.retention,
        };
        let write = self.create_write(
            record,
            Some(claim),
            refund,
            actor,
            "sent to the wallet operator",
        );
        match self.db.write_wallet(write).await? {
            WriteOutcome::Written => Ok(None),
            WriteOutcome::KeyTaken(answer) => self
                .answer_for_retry(answer, fingerprint, &key.client_request_id)
                .await
                .map(Some),
            WriteOutcome::RefundExceeds { remaining } => Err(WalletError::refused(
                "REFUND_EXCEEDS_REMAINING",
                "original_transaction_id",
                format!("at most {remaining} minor units of this payment can still be refunded"),
            )),
            WriteOutcome::StatusMismatch { .. } => {
                Err(WalletError::Internal("unexpected state on create"))
            }
        }
    }

    /// The wallet's auto-reload link and its shortfall, when Pay must reload
    /// first: linked, auto-reload on, and the operator's balance short. A
    /// balance that cannot be read is left to the payment itself to decline.
    async fn auto_reload_need(
        &self,
        wallet: &CheckedWallet,
        amount_minor: i64,
    ) -> Result<Option<(CardLink, i64)>, WalletError> {
        if self.payments.is_none() {
            return Ok(None);
        }
        let Some(link) = self
            .db
            .active_link(&wallet.operator.config.id, &wallet.stored_ref)
            .await?
        else {
            return Ok(None);
        };
        if !link.auto_reload {
            return Ok(None);
        }
        let Ok(balance) = wallet.operator.client.balance(&wallet.wire).await else {
            return Ok(None);
        };
        let short_minor = amount_minor - balance.balance.amount_minor;
        Ok((short_minor > 0).then_some((link, short_minor)))
    }

    /// Whether a card may pay for a top-up at this operator and store; the
    /// card payments and the card's keyed digest (for the fingerprint).
    async fn card_funding_allowed(
        &self,
        operator: &Operator,
        context: &RequestContext,
        card: &PresentedCard,
    ) -> Result<(Arc<Payments>, Vec<u8>), WalletError> {
        let refuse = |why: &str| WalletError::refused("CARD_FUNDING_NOT_ALLOWED", "funding", why);
        let Some(payments) = self.payments.as_ref() else {
            return Err(refuse("this gateway takes no card payments"));
        };
        if !operator.config.card_top_up {
            return Err(refuse("the wallet operator does not accept card top-ups"));
        }
        let store_currency = payments.config.store_currency.get(&context.store_id);
        if store_currency.map(|currency| currency.code) != Some(operator.config.currency.code) {
            return Err(refuse("this store takes no cards in the wallet's currency"));
        }
        let digest = payments.keyed_digest(&card.digest_parts()).await?;
        Ok((Arc::clone(payments), digest))
    }

    pub(crate) fn new_record(
        &self,
        context: &RequestContext,
        wallet_type: WalletType,
        operator: &Operator,
        amount_minor: i64,
        now: DateTime<Utc>,
    ) -> WalletRecord {
        let calendar = self.calendar(&context.store_id);
        WalletRecord {
            id: uuid::Uuid::now_v7().to_string(),
            wallet_type,
            status: TransactionStatus::InProgress,
            store_id: context.store_id.clone(),
            terminal_id: context.terminal_id.clone(),
            operator_id: context.operator_id.clone(),
            client_request_id: context.client_request_id.clone(),
            wallet_operator_id: operator.config.id.clone(),
            amount_minor,
            currency: operator.config.currency.code.to_owned(),
            business_date: calendar.business_date(now),
            created_at: now,
            updated_at: now,
            wallet_ref: String::new(),
            outcome: WalletOutcome::default(),
            funding: String::new(),
            refunded_minor: 0,
            refund_reserved_minor: 0,
            original_transaction_id: None,
            pos_reference: String::new(),
        }
    }

    /// The wallet id as compared between retries: the card number, or a
    /// keyed digest (HSM HMAC) of a member barcode, which is a credential.
    pub(crate) async fn wallet_fingerprint(
        &self,
        operator: &Operator,
        id: &WalletId,
    ) -> Result<String, WalletError> {
        Ok(match id {
            WalletId::CardNumber(number) => format!("card:{number}"),
            WalletId::MemberBarcode(code) => {
                let digest = self.wallets.keyed_digest(operator, code).await?;
                format!("barcode:{digest}")
            }
        })
    }
}

/// The transaction of a top-up's or payment's answer.
fn transaction_of(
    answered: Answered<WalletAnswer>,
) -> Result<Answered<WalletTransaction>, WalletError> {
    match answered {
        Answered::New(WalletAnswer::TopUp(transaction) | WalletAnswer::Payment(transaction)) => {
            Ok(Answered::New(transaction))
        }
        Answered::New(WalletAnswer::Refund(_)) => Err(WalletError::Internal(
            "a credit or debit answered as a refund",
        )),
        Answered::Replayed(stored) => Ok(Answered::Replayed(stored)),
    }
}

/// The operator's balance of a wallet: `NotFound` when it does not know it,
/// refused `WALLET_BLOCKED` when blocked (if `refuse_blocked`),
/// `PartnerUnavailable` when it cannot be asked.
pub(crate) async fn read_balance(
    operator: &Operator,
    wallet: &wire::WalletRef,
    refuse_blocked: bool,
) -> Result<wire::WalletBalance, WalletError> {
    let balance = match operator.client.balance(wallet).await {
        Ok(balance) => balance,
        Err(WalletCallError::Rejected { status: 404, .. }) => {
            return Err(WalletError::NotFound(
                "the wallet operator does not know this wallet",
            ));
        }
        Err(_) => return Err(WalletError::partner_unavailable(operator.config.party())),
    };
    if refuse_blocked && balance.blocked {
        return Err(WalletError::refused(
            "WALLET_BLOCKED",
            "wallet",
            "the wallet is blocked by its operator",
        ));
    }
    Ok(balance)
}
