//! `WalletService`: `TopUp` (cash), `Pay`, `Refund`, `GetBalance`,
//! `GetWalletTransaction`, `LinkCard`, `UnlinkCard`, through the wallet
//! operators over the signed partner API; card top-ups and the auto-reload
//! of `Pay` run as sagas (`wallet_saga`, `wallet::reload`).
//!
//! Money-moving calls follow the card path: the transaction is recorded
//! `in_progress` with its key claimed before the operator is called, and its
//! answer is committed with the key's answer before the POS hears it. No
//! answer from the operator: `pending_reversal` with a reversal queued in
//! the same commit, and the POS gets `UNAVAILABLE` `OUTCOME_UNKNOWN`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use pb::wallet_service_server::WalletService;
use posgate_partners::wallet::WalletCallError;
use posgate_partners::wallet::api::{self as wire, ResultStatus, WalletResult};
use posgate_proto::v1 as pb;
use prost::Message as _;
use tonic::{Request, Response, Status};

use super::idempotent::replay;
use super::status::{
    from_card_error, from_store_error, in_progress, invalid_field, key_reused, outcome_unknown,
    partner_unavailable, precondition,
};
use super::validate::{MAX_REASON_LEN, Violations};
use super::{Gateway, key_of, logged};
use crate::access::identity_of;
use crate::payments::card::read_card;
use crate::wallet::{Operator, Wallets, view, wallet_lines};
use posgate_core::cards::check_card;
use posgate_core::model::RequestContext;
use posgate_core::model::business_day::BusinessCalendar;
use posgate_core::model::idempotency::{FingerprintBuilder, differing_fields};
use posgate_core::model::{IdempotencyKey, RequestFingerprint, StoredAnswer};
use posgate_core::ports::db::{
    Event, KeyOp, NewSafItem, RefundAdjust, SafKind, TransactionStatus, WalletChange,
    WalletOutcome, WalletRecord, WalletType, WalletUpdate, WalletWrite, WriteOutcome,
};

/// Longest `pos_reference`.
const MAX_POS_REFERENCE_LEN: usize = 40;
/// Member barcodes: 6-64 printable ASCII characters.
const MIN_BARCODE_LEN: usize = 6;
const MAX_BARCODE_LEN: usize = 64;

#[derive(Debug, Clone)]
pub struct WalletApi {
    gateway: Arc<Gateway>,
}

impl WalletApi {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self { gateway }
    }

    pub fn into_server(self) -> pb::wallet_service_server::WalletServiceServer<Self> {
        pb::wallet_service_server::WalletServiceServer::new(self)
    }

    fn wallets(&self) -> Result<&Arc<Wallets>, Status> {
        self.gateway.wallets.as_ref().ok_or_else(|| {
            precondition(
                "WALLETS_NOT_CONFIGURED",
                "gateway",
                "this gateway has no wallet operators ([[wallet_operator]])".to_owned(),
            )
        })
    }
}

/// A wallet reference as checked: the operator and the id to send.
struct WalletInput {
    operator: Arc<Operator>,
    wire: wire::WalletRef,
    /// What is stored: the card number, or `****1234` for a barcode.
    stored_ref: String,
}

/// Checks `wallet` (field `wallet.*`) for `store_id`.
fn check_wallet(
    violations: &mut Violations,
    wallets: &Wallets,
    wallet: Option<&pb::WalletRef>,
    store_id: &str,
) -> Option<WalletInput> {
    let Some(wallet) = wallet else {
        violations.add("wallet", "is required");
        return None;
    };
    let operator = match wallets.operator(&wallet.wallet_operator_id) {
        Some(operator) if operator.config.enabled_for(store_id) => Some(Arc::clone(operator)),
        Some(_) => {
            violations.add(
                "wallet.wallet_operator_id",
                format!(
                    "{:?} is not enabled for store {store_id:?}",
                    wallet.wallet_operator_id
                ),
            );
            None
        }
        None if wallet.wallet_operator_id.is_empty() => {
            violations.add("wallet.wallet_operator_id", "is required");
            None
        }
        None => {
            violations.add(
                "wallet.wallet_operator_id",
                format!(
                    "{:?} is not a configured wallet operator",
                    wallet.wallet_operator_id
                ),
            );
            None
        }
    };
    let length = operator
        .as_ref()
        .map_or(16, |op| op.config.card_number_length);
    let reference = match &wallet.id {
        Some(pb::wallet_ref::Id::CardNumber(number)) => {
            if number.len() == length && number.bytes().all(|b| b.is_ascii_digit()) {
                Some((wire::WalletRef::account(number), number.clone()))
            } else {
                violations.add("wallet.card_number", format!("must be {length} digits"));
                None
            }
        }
        Some(pb::wallet_ref::Id::MemberBarcode(code)) => {
            if (MIN_BARCODE_LEN..=MAX_BARCODE_LEN).contains(&code.len())
                && code.bytes().all(|b| (0x21..=0x7E).contains(&b))
            {
                Some((wire::WalletRef::barcode(code), wire::last4(code)))
            } else {
                violations.add(
                    "wallet.member_barcode",
                    "must be 6-64 printable ASCII characters",
                );
                None
            }
        }
        None => {
            violations.add(
                "wallet.card_number",
                "a card number or a member barcode is required",
            );
            None
        }
    };
    let (operator, (wire, stored_ref)) = operator.zip(reference)?;
    Some(WalletInput {
        operator,
        wire,
        stored_ref,
    })
}

/// Checks an amount in the operator's currency, at most `max` and a
/// multiple of `unit`.
fn check_amount(
    violations: &mut Violations,
    money: Option<&pb::Money>,
    operator: Option<&Operator>,
    max_minor: impl Fn(&Operator) -> i64,
    unit_minor: impl Fn(&Operator) -> i64,
) -> Option<i64> {
    let (amount, currency) = violations.positive_money("amount", money)?;
    let amount = i64::try_from(amount).ok()?;
    let operator = operator?;
    if currency.code != operator.config.currency.code {
        violations.add(
            "amount.currency",
            format!(
                "must be {} (the operator's currency)",
                operator.config.currency.code
            ),
        );
        return None;
    }
    if amount > max_minor(operator) {
        violations.add(
            "amount.amount_minor",
            format!("exceeds the operator's maximum of {}", max_minor(operator)),
        );
        return None;
    }
    if amount % unit_minor(operator) != 0 {
        violations.add(
            "amount.amount_minor",
            format!("must be a multiple of {}", unit_minor(operator)),
        );
        return None;
    }
    Some(amount)
}

/// A retry's answer: the stored response, or while the first request is
/// unresolved, "in progress" or "outcome unknown".
async fn answer_for_retry<M: prost::Message + Default>(
    gateway: &Gateway,
    answer: &StoredAnswer,
    fingerprint: &RequestFingerprint,
    client_request_id: &str,
) -> Result<Response<M>, Status> {
    if !answer.pending {
        return replay(answer, fingerprint, client_request_id);
    }
    let differing = differing_fields(&answer.fingerprint, fingerprint);
    if !differing.is_empty() {
        return Err(key_reused(client_request_id, &differing));
    }
    let record = gateway
        .db
        .wallet_transaction(&answer.transaction_id)
        .await
        .map_err(|error| from_store_error(&error))?;
    match record.map(|record| record.status) {
        Some(TransactionStatus::PendingReversal) => Err(outcome_unknown(&answer.transaction_id)),
        _ => Err(in_progress(client_request_id)),
    }
}

async fn prior<M: prost::Message + Default>(
    gateway: &Gateway,
    key: &IdempotencyKey,
    fingerprint: &RequestFingerprint,
) -> Result<Option<Response<M>>, Status> {
    let Some(answer) = gateway
        .db
        .answer(key)
        .await
        .map_err(|error| from_store_error(&error))?
    else {
        return Ok(None);
    };
    answer_for_retry(gateway, &answer, fingerprint, &key.client_request_id)
        .await
        .map(Some)
}

pub(crate) fn event(
    kind: &str,
    from: Option<TransactionStatus>,
    to: TransactionStatus,
    actor: &str,
    detail: String,
) -> Event {
    Event {
        event_type: kind.to_owned(),
        from_status: from,
        to_status: to,
        actor: actor.to_owned(),
        detail,
    }
}

/// The encoded answer a call (or its retry) gets for `record`: `TopUpResponse`,
/// `PayResponse` or `WalletRefundResponse` (with the payment as `original`,
/// whose refunded amount `original_refunded_minor` overrides when set).
pub(crate) async fn answer_bytes(
    gateway: &Gateway,
    record: &WalletRecord,
    original_refunded_minor: Option<i64>,
) -> Result<Vec<u8>, posgate_core::ports::db::StoreError> {
    let mut view = view::transaction(record, Vec::new());
    super::wallet_saga::enrich(gateway, record, &mut view).await?;
    Ok(match record.wallet_type {
        WalletType::TopUp => pb::TopUpResponse {
            transaction: Some(view),
        }
        .encode_to_vec(),
        WalletType::Payment => pb::PayResponse {
            transaction: Some(view),
        }
        .encode_to_vec(),
        WalletType::Refund => {
            let original_id = record.original_transaction_id.clone().unwrap_or_default();
            let original = gateway.db.wallet_transaction(&original_id).await?;
            let mut refunds = gateway.db.wallet_refund_ids(&original_id).await?;
            if !refunds.contains(&record.id) {
                refunds.push(record.id.clone());
                refunds.sort();
            }
            pb::WalletRefundResponse {
                refund: Some(view),
                original: original.map(|mut original| {
                    if let Some(refunded) = original_refunded_minor {
                        original.refunded_minor = refunded;
                    }
                    view::transaction(&original, refunds)
                }),
            }
            .encode_to_vec()
        }
    })
}

/// What the operator's answer (or its absence) does to an `in_progress` record.
pub(crate) struct Settled {
    pub status: TransactionStatus,
    pub outcome: WalletOutcome,
    pub event_type: &'static str,
    pub detail: String,
}

pub(crate) fn settle(
    operator: &Operator,
    result: &Result<WalletResult, WalletCallError>,
) -> Settled {
    match result {
        Ok(answer) => {
            let mut outcome = WalletOutcome {
                operator_response_code: answer.operator_response_code.chars().take(16).collect(),
                operator_reference: answer.operator_reference.clone().unwrap_or_default(),
                balance_after_minor: answer
                    .balance_after
                    .as_ref()
                    .map(|money| money.amount_minor),
                ..WalletOutcome::default()
            };
            if let Some(wallet) = &answer.wallet {
                outcome.account_id.clone_from(&wallet.account_id);
                outcome.display_id.clone_from(&wallet.display_id);
                outcome.operator_name.clone_from(&wallet.operator_name);
            }
            if outcome.operator_name.is_empty() {
                outcome.operator_name.clone_from(&operator.config.name);
            }
            if answer.status == ResultStatus::Completed {
                Settled {
                    status: TransactionStatus::Completed,
                    outcome,
                    event_type: "completed",
                    detail: format!("operator answered {}", answer.operator_response_code),
                }
            } else {
                let (reason, text) = view::decline_of(answer.decline_code);
                reason.clone_into(&mut outcome.decline_reason);
                text.clone_into(&mut outcome.response_text);
                Settled {
                    status: TransactionStatus::Declined,
                    outcome,
                    event_type: "declined",
                    detail: format!(
                        "operator declined {reason} ({})",
                        answer.operator_response_code
                    ),
                }
            }
        }
        Err(WalletCallError::Rejected { status, .. }) => Settled {
            status: TransactionStatus::Declined,
            outcome: WalletOutcome {
                decline_reason: "OTHER".to_owned(),
                operator_response_code: format!("HTTP{status}"),
                response_text: "Refused by the wallet operator".to_owned(),
                operator_name: operator.config.name.clone(),
                ..WalletOutcome::default()
            },
            event_type: "declined",
            detail: format!("operator refused the request ({status})"),
        },
        Err(WalletCallError::OutcomeUnknown(reason)) => Settled {
            status: TransactionStatus::PendingReversal,
            outcome: WalletOutcome::default(),
            event_type: "outcome_unknown",
            detail: reason.clone(),
        },
        Err(WalletCallError::Unavailable(reason)) => Settled {
            status: TransactionStatus::Declined,
            outcome: WalletOutcome {
                decline_reason: "OTHER".to_owned(),
                response_text: "Wallet operator unavailable".to_owned(),
                ..WalletOutcome::default()
            },
            event_type: "not_sent",
            detail: reason.clone(),
        },
    }
}

/// The reversal queue entry of a wallet transaction.
pub(crate) fn reversal_of(record: &WalletRecord, now: DateTime<Utc>) -> NewSafItem {
    NewSafItem {
        link_id: record.wallet_operator_id.clone(),
        kind: SafKind::Reversal,
        amount_minor: record.amount_minor,
        currency: record.currency.clone(),
        next_attempt_at: now,
    }
}

/// What settling a refund does to its payment: the reservation released,
/// and on completion the refunded total raised (returned for the answer).
async fn refund_effect(
    gateway: &Gateway,
    record: &WalletRecord,
    is_refund: bool,
) -> Result<(Option<RefundAdjust>, Option<i64>), Status> {
    let original = record.original_transaction_id.clone().unwrap_or_default();
    Ok(match record.status {
        TransactionStatus::Completed if is_refund => {
            let current = gateway
                .db
                .wallet_transaction(&original)
                .await
                .map_err(|error| from_store_error(&error))?
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
        TransactionStatus::Declined if is_refund => (
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
pub(crate) async fn finish<M: prost::Message + Default>(
    gateway: &Gateway,
    operator: &Operator,
    mut record: WalletRecord,
    key: IdempotencyKey,
    result: Result<WalletResult, WalletCallError>,
    actor: &str,
) -> Result<Response<M>, Status> {
    let now = gateway.clock.now();
    let settled = settle(operator, &result);
    let is_refund = record.wallet_type == WalletType::Refund;
    record.status = settled.status;
    record.outcome = settled.outcome.clone();
    record.updated_at = now;
    let (refund, original_refunded) = refund_effect(gateway, &record, is_refund).await?;
    let lines = if settled.status == TransactionStatus::Completed {
        wallet_lines(&record)
    } else {
        Vec::new()
    };
    // The answer is encoded once, before the commit, and the POS gets those
    // very bytes: an embedded transaction (the saga's card SALE, a refund's
    // payment) read again after the commit could have moved on (a reversal
    // acknowledged meanwhile), and a replay must equal the first answer.
    let mut answer = None;
    let (key_op, enqueue) = match &result {
        Ok(_) | Err(WalletCallError::Rejected { .. }) => {
            let bytes = answer_bytes(gateway, &record, original_refunded)
                .await
                .map_err(|error| from_store_error(&error))?;
            answer = Some(bytes.clone());
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
            to: Some(settled.status),
            outcome: Some(settled.outcome),
        })),
        refund,
        lines,
        business_date: record.business_date,
        event: event(
            settled.event_type,
            Some(TransactionStatus::InProgress),
            settled.status,
            actor,
            settled.detail,
        ),
        enqueue,
        acked: Vec::new(),
    };
    match gateway
        .db
        .write_wallet(write)
        .await
        .map_err(|error| from_store_error(&error))?
    {
        WriteOutcome::Written => {}
        other => {
            tracing::error!(transaction_id = %record.id, ?other, "wallet answer not recorded");
            return Err(Status::internal("the wallet answer could not be recorded"));
        }
    }
    match (result, answer) {
        (Ok(_) | Err(WalletCallError::Rejected { .. }), Some(bytes)) => {
            let message =
                M::decode(bytes.as_slice()).map_err(|_| Status::internal("answer encoding"))?;
            Ok(Response::new(message))
        }
        (Ok(_) | Err(WalletCallError::Rejected { .. }), None) => {
            Err(Status::internal("an answered call without its answer"))
        }
        (Err(WalletCallError::OutcomeUnknown(_)), _) => Err(outcome_unknown(&record.id)),
        (Err(WalletCallError::Unavailable(_)), _) => {
            Err(partner_unavailable(&operator.config.party()))
        }
    }
}

/// Records `record` `in_progress` under `key`. `Ok(None)`: go ahead and call
/// the operator; `Ok(Some(..))`: the key was taken, here is its answer.
async fn claim<M: prost::Message + Default>(
    gateway: &Gateway,
    record: &WalletRecord,
    key: &IdempotencyKey,
    fingerprint: &RequestFingerprint,
    refund: Option<RefundAdjust>,
    actor: &str,
) -> Result<Option<Response<M>>, Status> {
    let now = gateway.clock.now();
    let write = WalletWrite {
        transaction_id: record.id.clone(),
        at: now,
        key: Some(KeyOp::Claim {
            key: key.clone(),
            fingerprint: fingerprint.clone(),
            expires_at: now + gateway.retention,
        }),
        change: WalletChange::Create(Box::new(record.clone())),
        refund,
        lines: Vec::new(),
        business_date: record.business_date,
        event: event(
            "received",
            None,
            TransactionStatus::InProgress,
            actor,
            "sent to the wallet operator".to_owned(),
        ),
        enqueue: Vec::new(),
        acked: Vec::new(),
    };
    match gateway
        .db
        .write_wallet(write)
        .await
        .map_err(|error| from_store_error(&error))?
    {
        WriteOutcome::Written => Ok(None),
        WriteOutcome::KeyTaken(answer) => {
            answer_for_retry(gateway, &answer, fingerprint, &key.client_request_id)
                .await
                .map(Some)
        }
        WriteOutcome::RefundExceeds { remaining } => Err(precondition(
            "REFUND_EXCEEDS_REMAINING",
            "original_transaction_id",
            format!("at most {remaining} minor units of this payment can still be refunded"),
        )),
        WriteOutcome::StatusMismatch { .. } => Err(Status::internal("unexpected state on create")),
    }
}

/// Checks an auto-reload step (field `auto_reload.step.*`): positive, in
/// the operator's currency, one of its allowed steps (when it has any: an
/// operator without is refused later as `AUTO_RELOAD_NOT_OFFERED`).
fn check_step(
    violations: &mut Violations,
    money: Option<&pb::Money>,
    operator: Option<&Operator>,
) -> i64 {
    let Some((amount, currency)) = violations.positive_money("auto_reload.step", money) else {
        return 0;
    };
    let amount = i64::try_from(amount).unwrap_or(i64::MAX);
    let Some(operator) = operator else {
        return amount;
    };
    if currency.code != operator.config.currency.code {
        violations.add(
            "auto_reload.step.currency",
            format!(
                "must be {} (the operator's currency)",
                operator.config.currency.code
            ),
        );
    } else if !operator.config.reload_steps_minor.is_empty()
        && !operator.config.reload_steps_minor.contains(&amount)
    {
        violations.add(
            "auto_reload.step.amount_minor",
            format!(
                "must be one of the operator's steps {:?}",
                operator.config.reload_steps_minor
            ),
        );
    }
    amount
}

/// The wallet's auto-reload link and its shortfall, when Pay must reload
/// first: linked, auto-reload on, and the operator's balance short. A
/// balance that cannot be read is left to the payment itself to decline.
async fn auto_reload_need(
    gateway: &Gateway,
    input: &WalletInput,
    amount_minor: i64,
) -> Result<Option<(posgate_core::ports::db::CardLink, i64)>, Status> {
    if gateway.payments.is_none() {
        return Ok(None);
    }
    let Some(link) = gateway
        .db
        .active_link(&input.operator.config.id, &input.stored_ref)
        .await
        .map_err(|error| from_store_error(&error))?
    else {
        return Ok(None);
    };
    if !link.auto_reload {
        return Ok(None);
    }
    let Ok(balance) = input.operator.client.balance(&input.wire).await else {
        return Ok(None);
    };
    let short_minor = amount_minor - balance.balance.amount_minor;
    Ok((short_minor > 0).then_some((link, short_minor)))
}

/// Whether a card may pay for a top-up at this operator and store; the
/// card payments and the card's keyed digest (for the fingerprint).
async fn card_funding_allowed(
    gateway: &Gateway,
    operator: &Operator,
    context: &RequestContext,
    card: &posgate_core::cards::card::PresentedCard,
) -> Result<(Arc<posgate_core::cards::Payments>, Vec<u8>), Status> {
    let refuse = |why: &str| precondition("CARD_FUNDING_NOT_ALLOWED", "funding", why.to_owned());
    let Some(payments) = gateway.payments.as_ref() else {
        return Err(refuse("this gateway takes no card payments"));
    };
    if !operator.config.card_top_up {
        return Err(refuse("the wallet operator does not accept card top-ups"));
    }
    let store_currency = payments.config.store_currency.get(&context.store_id);
    if store_currency.map(|currency| currency.code) != Some(operator.config.currency.code) {
        return Err(refuse("this store takes no cards in the wallet's currency"));
    }
    let digest = payments
        .keyed_digest(&card.digest_parts())
        .await
        .map_err(|error| super::status::from_hsm_error(&error))?;
    Ok((Arc::clone(payments), digest))
}

fn new_record(
    gateway: &Gateway,
    context: &RequestContext,
    wallet_type: WalletType,
    operator: &Operator,
    amount_minor: i64,
    now: DateTime<Utc>,
) -> WalletRecord {
    let calendar = BusinessCalendar::from(gateway.store_config(&context.store_id));
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

fn channel(context: &RequestContext) -> wire::Channel {
    wire::Channel {
        store_id: context.store_id.clone(),
        terminal_id: context.terminal_id.clone(),
    }
}

fn money(record: &WalletRecord) -> wire::Money {
    wire::Money::new(record.amount_minor, &record.currency)
}

#[tonic::async_trait]
impl WalletService for WalletApi {
    // One request read top to bottom: validate, fingerprint, replay, claim,
    // then the operator (or the card saga); splitting it would scatter the order.
    #[allow(clippy::too_many_lines)]
    async fn top_up(
        &self,
        request: Request<pb::TopUpRequest>,
    ) -> Result<Response<pb::TopUpResponse>, Status> {
        let caller = identity_of(&request)?;
        let message = request.into_inner();
        Box::pin(logged(
            "WalletService/TopUp",
            message.context.as_ref(),
            async {
                let wallets = self.wallets()?;
                let gateway = &self.gateway;
                let now = gateway.clock.now();
                let store_id = message
                    .context
                    .as_ref()
                    .map(|c| c.store_id.clone())
                    .unwrap_or_default();
                let mut input = None;
                let mut amount = None;
                let mut presented = None;
                let (_permit, context) =
                    gateway.admit(&caller, message.context.as_ref(), now, |v| {
                        input = check_wallet(v, wallets, message.wallet.as_ref(), &store_id);
                        let operator = input.as_ref().map(|input| input.operator.as_ref());
                        amount = check_amount(
                            v,
                            message.amount.as_ref(),
                            operator,
                            |op| op.config.max_top_up_minor,
                            |op| op.config.top_up_unit_minor,
                        );
                        match &message.funding {
                            None => v.add("funding", "cash or card is required"),
                            Some(pb::top_up_request::Funding::Card(card)) => {
                                presented = read_card(v, "card", Some(card));
                            }
                            Some(pb::top_up_request::Funding::Cash(_)) => {}
                        }
                    })?;
                let (Some(input), Some(amount)) = (input, amount) else {
                    return Err(Status::internal(
                        "validation passed without a wallet or amount",
                    ));
                };
                let card_funding = match &presented {
                    Some(card) => {
                        Some(card_funding_allowed(gateway, &input.operator, &context, card).await?)
                    }
                    None => None,
                };
                let key = key_of(&context);
                let fingerprint = FingerprintBuilder::new("WalletService/TopUp")
                    .value("wallet.wallet_operator_id", &input.operator.config.id)
                    .value(
                        "wallet.id",
                        wallet_fingerprint(wallets, &input.operator, message.wallet.as_ref())
                            .await?,
                    )
                    .value(
                        "amount",
                        format!("{amount} {}", input.operator.config.currency.code),
                    )
                    .value(
                        "funding",
                        card_funding.as_ref().map_or_else(
                            || "cash".to_owned(),
                            |(_, digest)| format!("card:{}", hex::encode(digest)),
                        ),
                    )
                    .finish();
                if let Some(answer) = prior(gateway, &key, &fingerprint).await? {
                    return Ok(answer);
                }
                let mut record = new_record(
                    gateway,
                    &context,
                    WalletType::TopUp,
                    &input.operator,
                    amount,
                    now,
                );
                record.wallet_ref = input.stored_ref.clone();
                "cash".clone_into(&mut record.funding);
                let checked = match (&presented, &card_funding) {
                    (Some(card), Some((payments, _))) => {
                        "card".clone_into(&mut record.funding);
                        let calendar =
                            BusinessCalendar::from(gateway.store_config(&context.store_id));
                        Some(
                            check_card(payments, &context, card, calendar.local_date(now))
                                .await
                                .map_err(|error| from_card_error(&error))?,
                        )
                    }
                    _ => None,
                };
                if let Some(answer) =
                    claim(gateway, &record, &key, &fingerprint, None, &context.actor).await?
                {
                    return Ok(answer);
                }
                if let (Some(card), Some((payments, _)), Some(checked)) =
                    (&presented, &card_funding, checked)
                {
                    return super::wallet_saga::card_top_up(
                        gateway,
                        payments,
                        &input.operator,
                        &input.wire,
                        record,
                        key,
                        card,
                        &checked.route.link,
                        checked.pin_block,
                        &context,
                    )
                    .await;
                }
                let result = input
                    .operator
                    .client
                    .top_up(&wire::TopUpRequest {
                        transaction_id: record.id.clone(),
                        wallet: input.wire.clone(),
                        amount: money(&record),
                        funding: wire::Funding::Cash,
                        channel: channel(&context),
                    })
                    .await;
                finish(
                    gateway,
                    &input.operator,
                    record,
                    key,
                    result,
                    &context.actor,
                )
                .await
            },
        ))
        .await
    }

    // One request read top to bottom: validate, fingerprint, replay, claim,
    // then the operator (or the card saga); splitting it would scatter the order.
    #[allow(clippy::too_many_lines)]
    async fn pay(
        &self,
        request: Request<pb::PayRequest>,
    ) -> Result<Response<pb::PayResponse>, Status> {
        let caller = identity_of(&request)?;
        let message = request.into_inner();
        Box::pin(logged(
            "WalletService/Pay",
            message.context.as_ref(),
            async {
                let wallets = self.wallets()?;
                let gateway = &self.gateway;
                let now = gateway.clock.now();
                let store_id = message
                    .context
                    .as_ref()
                    .map(|c| c.store_id.clone())
                    .unwrap_or_default();
                let mut input = None;
                let mut amount = None;
                let (_permit, context) =
                    gateway.admit(&caller, message.context.as_ref(), now, |v| {
                        input = check_wallet(v, wallets, message.wallet.as_ref(), &store_id);
                        let operator = input.as_ref().map(|input| input.operator.as_ref());
                        amount = check_amount(
                            v,
                            message.amount.as_ref(),
                            operator,
                            |op| op.config.max_payment_minor,
                            |_| 1,
                        );
                        let reference = &message.pos_reference;
                        if reference.len() > MAX_POS_REFERENCE_LEN
                            || !reference.bytes().all(|b| (0x20..=0x7E).contains(&b))
                        {
                            v.add("pos_reference", "must be 0-40 printable ASCII characters");
                        }
                    })?;
                let (Some(input), Some(amount)) = (input, amount) else {
                    return Err(Status::internal(
                        "validation passed without a wallet or amount",
                    ));
                };
                let key = key_of(&context);
                let fingerprint = FingerprintBuilder::new("WalletService/Pay")
                    .value("wallet.wallet_operator_id", &input.operator.config.id)
                    .value(
                        "wallet.id",
                        wallet_fingerprint(wallets, &input.operator, message.wallet.as_ref())
                            .await?,
                    )
                    .value(
                        "amount",
                        format!("{amount} {}", input.operator.config.currency.code),
                    )
                    .value("pos_reference", &message.pos_reference)
                    .finish();
                if let Some(answer) = prior(gateway, &key, &fingerprint).await? {
                    return Ok(answer);
                }
                let mut record = new_record(
                    gateway,
                    &context,
                    WalletType::Payment,
                    &input.operator,
                    amount,
                    now,
                );
                record.wallet_ref = input.stored_ref.clone();
                record.pos_reference.clone_from(&message.pos_reference);
                let reload = auto_reload_need(gateway, &input, amount).await?;
                if let Some(answer) =
                    claim(gateway, &record, &key, &fingerprint, None, &context.actor).await?
                {
                    return Ok(answer);
                }
                if let (Some((link, short_minor)), Some(payments)) =
                    (reload, gateway.payments.as_ref())
                {
                    return super::wallet_saga::auto_reload_pay(
                        gateway,
                        payments,
                        &input.operator,
                        &input.wire,
                        record,
                        key,
                        &link,
                        short_minor,
                        &context,
                    )
                    .await;
                }
                let result = input
                    .operator
                    .client
                    .pay(&wire::PaymentRequest {
                        transaction_id: record.id.clone(),
                        wallet: input.wire.clone(),
                        amount: money(&record),
                        pos_reference: (!message.pos_reference.is_empty())
                            .then(|| message.pos_reference.clone()),
                        channel: channel(&context),
                    })
                    .await;
                finish(
                    gateway,
                    &input.operator,
                    record,
                    key,
                    result,
                    &context.actor,
                )
                .await
            },
        ))
        .await
    }

    // Validate, find the original, replay or claim, then the operator; moves
    // into the wallet service of posgate-core in the next step of issue 14.
    #[allow(clippy::too_many_lines)]
    async fn refund(
        &self,
        request: Request<pb::WalletRefundRequest>,
    ) -> Result<Response<pb::WalletRefundResponse>, Status> {
        let caller = identity_of(&request)?;
        let message = request.into_inner();
        logged("WalletService/Refund", message.context.as_ref(), async {
            let wallets = self.wallets()?;
            let gateway = &self.gateway;
            let now = gateway.clock.now();
            let mut amount = None;
            let (_permit, context) =
                gateway.admit(&caller, message.context.as_ref(), now, |v| {
                    v.transaction_id("original_transaction_id", &message.original_transaction_id);
                    amount = v.positive_money("amount", message.amount.as_ref());
                    v.text("reason", &message.reason, MAX_REASON_LEN);
                })?;
            let Some((amount, currency)) = amount else {
                return Err(Status::internal("validation passed without an amount"));
            };
            let amount = i64::try_from(amount)
                .map_err(|_| invalid_field("amount.amount_minor", "too large"))?;
            let key = key_of(&context);
            let fingerprint = FingerprintBuilder::new("WalletService/Refund")
                .value("original_transaction_id", &message.original_transaction_id)
                .value("amount", format!("{amount} {}", currency.code))
                .value("reason", &message.reason)
                .finish();
            if let Some(answer) = prior(gateway, &key, &fingerprint).await? {
                return Ok(answer);
            }
            let original = gateway
                .db
                .wallet_transaction(&message.original_transaction_id)
                .await
                .map_err(|error| from_store_error(&error))?
                .filter(|original| original.store_id == context.store_id)
                .ok_or_else(|| Status::not_found("no such wallet transaction at this store"))?;
            if original.wallet_type != WalletType::Payment
                || original.status != TransactionStatus::Completed
            {
                return Err(precondition(
                    "NOT_REFUNDABLE",
                    "original_transaction_id",
                    "only a COMPLETED wallet PAYMENT can be refunded".to_owned(),
                ));
            }
            if currency.code != original.currency {
                return Err(invalid_field(
                    "amount.currency",
                    format!("must be {} (the payment's currency)", original.currency),
                ));
            }
            let operator = wallets
                .operator(&original.wallet_operator_id)
                .cloned()
                .ok_or_else(|| {
                    partner_unavailable(&format!("wallet:{}", original.wallet_operator_id))
                })?;
            let calendar = BusinessCalendar::from(gateway.store_config(&context.store_id));
            let age_days = (calendar.business_date(now) - original.business_date).num_days();
            if age_days > operator.config.refund_window_days {
                return Err(precondition(
                    "REFUND_WINDOW_CLOSED",
                    "original_transaction_id",
                    format!(
                        "the payment is {age_days} days old; refunds close after {} days",
                        operator.config.refund_window_days
                    ),
                ));
            }
            let mut record = new_record(
                gateway,
                &context,
                WalletType::Refund,
                &operator,
                amount,
                now,
            );
            record.wallet_ref.clone_from(&original.wallet_ref);
            record.original_transaction_id = Some(original.id.clone());
            let reserve = RefundAdjust {
                original_id: original.id.clone(),
                reserve_delta: amount,
                refunded_delta: 0,
            };
            if let Some(answer) = claim(
                gateway,
                &record,
                &key,
                &fingerprint,
                Some(reserve),
                &context.actor,
            )
            .await?
            {
                return Ok(answer);
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
            finish(gateway, &operator, record, key, result, &context.actor).await
        })
        .await
    }

    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        let caller = identity_of(&request)?;
        let message = request.into_inner();
        logged(
            "WalletService/GetBalance",
            message.context.as_ref(),
            async {
                let wallets = self.wallets()?;
                let gateway = &self.gateway;
                let now = gateway.clock.now();
                let store_id = message
                    .context
                    .as_ref()
                    .map(|c| c.store_id.clone())
                    .unwrap_or_default();
                let mut input = None;
                let (_permit, _context) =
                    gateway.admit(&caller, message.context.as_ref(), now, |v| {
                        input = check_wallet(v, wallets, message.wallet.as_ref(), &store_id);
                    })?;
                let input =
                    input.ok_or_else(|| Status::internal("validation passed without a wallet"))?;
                let operator = &input.operator;
                let balance = read_balance(operator, &input.wire, true).await?;
                let money = |m: &wire::Money| pb::Money {
                    amount_minor: m.amount_minor,
                    currency: m.currency.clone(),
                };
                let as_of = DateTime::parse_from_rfc3339(&balance.as_of)
                    .map_or(now, |at| at.with_timezone(&Utc));
                Ok(Response::new(pb::GetBalanceResponse {
                    wallet: Some(pb::WalletIdentity {
                        wallet_operator_id: operator.config.id.clone(),
                        wallet_account_id: balance.wallet.account_id.clone(),
                        display_id: balance.wallet.display_id.clone(),
                        wallet_operator_name: balance.wallet.operator_name.clone(),
                    }),
                    balance: Some(money(&balance.balance)),
                    limits: Some(pb::WalletLimits {
                        max_balance: balance.limits.max_balance.as_ref().map(money),
                        max_top_up: balance.limits.max_top_up.as_ref().map(money),
                        max_payment: balance.limits.max_payment.as_ref().map(money),
                        remaining_daily_spend: None,
                    }),
                    card_link: gateway
                        .db
                        .active_link(&operator.config.id, &balance.wallet.account_id)
                        .await
                        .map_err(|error| from_store_error(&error))?
                        .map(|link| super::wallet_saga::link_view(&link, &operator.config.name)),
                    as_of: Some(crate::payments::view::timestamp(as_of)),
                }))
            },
        )
        .await
    }

    async fn link_card(
        &self,
        request: Request<pb::LinkCardRequest>,
    ) -> Result<Response<pb::LinkCardResponse>, Status> {
        let caller = identity_of(&request)?;
        let message = request.into_inner();
        logged("WalletService/LinkCard", message.context.as_ref(), async {
            let wallets = self.wallets()?;
            let gateway = &self.gateway;
            let payments = Arc::clone(gateway.payments.as_ref().ok_or_else(|| {
                precondition(
                    "CARDS_NOT_CONFIGURED",
                    "gateway",
                    "this gateway takes no card payments (no [card] configuration)".to_owned(),
                )
            })?);
            let now = gateway.clock.now();
            let store_id = message
                .context
                .as_ref()
                .map(|c| c.store_id.clone())
                .unwrap_or_default();
            let (mut input, mut card, mut step) = (None, None, 0);
            let (_permit, context) =
                gateway.admit(&caller, message.context.as_ref(), now, |v| {
                    input = check_wallet(v, wallets, message.wallet.as_ref(), &store_id);
                    card = read_card(v, "card", message.card.as_ref());
                    match &message.auto_reload {
                        None => v.add("auto_reload", "is required"),
                        Some(settings) if settings.enabled => {
                            let operator = input.as_ref().map(|input| input.operator.as_ref());
                            step = check_step(v, settings.step.as_ref(), operator);
                        }
                        Some(_) => {}
                    }
                })?;
            let (Some(input), Some(card)) = (input, card) else {
                return Err(Status::internal(
                    "validation passed without a wallet or card",
                ));
            };
            let enabled = message
                .auto_reload
                .as_ref()
                .is_some_and(|settings| settings.enabled);
            let digest = payments
                .keyed_digest(&card.digest_parts())
                .await
                .map_err(|error| super::status::from_hsm_error(&error))?;
            let fingerprint = FingerprintBuilder::new("WalletService/LinkCard")
                .value("wallet.wallet_operator_id", &input.operator.config.id)
                .value(
                    "wallet.id",
                    wallet_fingerprint(wallets, &input.operator, message.wallet.as_ref()).await?,
                )
                .value("card", hex::encode(digest))
                .value("auto_reload", format!("{enabled} {step}"))
                .finish();
            let key = key_of(&context);
            if let Some(answer) = prior(gateway, &key, &fingerprint).await? {
                return Ok(answer);
            }
            super::wallet_saga::link_card(
                gateway,
                &payments,
                &context,
                super::wallet_saga::LinkInput {
                    operator: &input.operator,
                    wallet: &input.wire,
                    card: &card,
                    auto_reload: enabled,
                    step_minor: step,
                    fingerprint,
                },
                now,
            )
            .await
        })
        .await
    }

    async fn unlink_card(
        &self,
        request: Request<pb::UnlinkCardRequest>,
    ) -> Result<Response<pb::UnlinkCardResponse>, Status> {
        let caller = identity_of(&request)?;
        let message = request.into_inner();
        logged(
            "WalletService/UnlinkCard",
            message.context.as_ref(),
            async {
                let wallets = self.wallets()?;
                let gateway = &self.gateway;
                let now = gateway.clock.now();
                let store_id = message
                    .context
                    .as_ref()
                    .map(|c| c.store_id.clone())
                    .unwrap_or_default();
                let mut input = None;
                let (_permit, context) =
                    gateway.admit(&caller, message.context.as_ref(), now, |v| {
                        input = check_wallet(v, wallets, message.wallet.as_ref(), &store_id);
                        v.text("reason", &message.reason, MAX_REASON_LEN);
                    })?;
                let input =
                    input.ok_or_else(|| Status::internal("validation passed without a wallet"))?;
                let fingerprint = FingerprintBuilder::new("WalletService/UnlinkCard")
                    .value("wallet.wallet_operator_id", &input.operator.config.id)
                    .value(
                        "wallet.id",
                        wallet_fingerprint(wallets, &input.operator, message.wallet.as_ref())
                            .await?,
                    )
                    .value("reason", &message.reason)
                    .finish();
                let key = key_of(&context);
                if let Some(answer) = prior(gateway, &key, &fingerprint).await? {
                    return Ok(answer);
                }
                super::wallet_saga::unlink_card(
                    gateway,
                    &input.operator,
                    &context,
                    &input.wire,
                    &message.reason,
                    fingerprint,
                    now,
                )
                .await
            },
        )
        .await
    }

    async fn get_wallet_transaction(
        &self,
        request: Request<pb::GetWalletTransactionRequest>,
    ) -> Result<Response<pb::GetWalletTransactionResponse>, Status> {
        let caller = identity_of(&request)?;
        let message = request.into_inner();
        logged(
            "WalletService/GetWalletTransaction",
            message.context.as_ref(),
            async {
                let gateway = &self.gateway;
                let now = gateway.clock.now();
                let (_permit, context) =
                    gateway.admit(&caller, message.context.as_ref(), now, |v| {
                        match &message.lookup {
                            Some(pb::get_wallet_transaction_request::Lookup::TransactionId(id)) => {
                                v.transaction_id("transaction_id", id);
                            }
                            Some(
                                pb::get_wallet_transaction_request::Lookup::CreatedClientRequestId(
                                    id,
                                ),
                            ) => {
                                v.request_id("created_client_request_id", id);
                            }
                            None => v.add(
                                "transaction_id",
                                "a transaction_id or created_client_request_id is required",
                            ),
                        }
                    })?;
                let record = match &message.lookup {
                    Some(pb::get_wallet_transaction_request::Lookup::TransactionId(id)) => {
                        gateway.db.wallet_transaction(id).await
                    }
                    Some(pb::get_wallet_transaction_request::Lookup::CreatedClientRequestId(
                        id,
                    )) => {
                        let key = IdempotencyKey {
                            store_id: context.store_id.clone(),
                            terminal_id: context.terminal_id.clone(),
                            client_request_id: id.clone(),
                        };
                        gateway.db.wallet_by_request(&key).await
                    }
                    None => Ok(None),
                }
                .map_err(|error| from_store_error(&error))?
                .filter(|record| record.store_id == context.store_id)
                .ok_or_else(|| Status::not_found("no such wallet transaction at this store"))?;
                let refunds = if record.wallet_type == WalletType::Payment {
                    gateway
                        .db
                        .wallet_refund_ids(&record.id)
                        .await
                        .map_err(|error| from_store_error(&error))?
                } else {
                    Vec::new()
                };
                let mut view = view::transaction(&record, refunds);
                super::wallet_saga::enrich(gateway, &record, &mut view)
                    .await
                    .map_err(|error| from_store_error(&error))?;
                Ok(Response::new(pb::GetWalletTransactionResponse {
                    transaction: Some(view),
                }))
            },
        )
        .await
    }
}

/// The operator's balance of a wallet: `NOT_FOUND` when it does not know it,
/// `FAILED_PRECONDITION` `WALLET_BLOCKED` when blocked (if `refuse_blocked`),
/// `UNAVAILABLE` when it cannot be asked.
pub(crate) async fn read_balance(
    operator: &Operator,
    wallet: &wire::WalletRef,
    refuse_blocked: bool,
) -> Result<wire::WalletBalance, Status> {
    let balance = match operator.client.balance(wallet).await {
        Ok(balance) => balance,
        Err(WalletCallError::Rejected { status: 404, .. }) => {
            return Err(Status::not_found(
                "the wallet operator does not know this wallet",
            ));
        }
        Err(_) => return Err(partner_unavailable(&operator.config.party())),
    };
    if refuse_blocked && balance.blocked {
        return Err(precondition(
            "WALLET_BLOCKED",
            "wallet",
            "the wallet is blocked by its operator".to_owned(),
        ));
    }
    Ok(balance)
}

/// The wallet id as compared between retries: the card number, or a keyed
/// digest (HSM HMAC) of a member barcode, which is a credential.
async fn wallet_fingerprint(
    wallets: &Wallets,
    operator: &Operator,
    wallet: Option<&pb::WalletRef>,
) -> Result<String, Status> {
    Ok(match wallet.and_then(|wallet| wallet.id.as_ref()) {
        Some(pb::wallet_ref::Id::CardNumber(number)) => format!("card:{number}"),
        Some(pb::wallet_ref::Id::MemberBarcode(code)) => {
            let digest = wallets
                .keyed_digest(operator, code)
                .await
                .map_err(|error| super::status::from_hsm_error(&error))?;
            format!("barcode:{digest}")
        }
        None => String::new(),
    })
}
