//! `PaymentService`: Authorize, Capture, Void, Refund, `GetTransaction`.
//!
//! Authorize and Refund talk to the bank while the POS waits: the request is
//! recorded (`in_progress`, key claimed) before it is sent and its answer is
//! recorded with the key's answer before the POS hears it. Capture and Void
//! never wait for the bank: their advice or reversal is committed with them
//! and delivered by the store-and-forward queue (`payments::saf`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use pb::payment_service_server::PaymentService;
use posgate_hsm::Secret;
use posgate_partners::bank::link::{BankLink, LinkError};
use posgate_partners::bank::protocol::{
    FinancialKind, FinancialRequest, FinancialResponse, OriginalData,
};
use posgate_proto::v1 as pb;
use tokio::sync::OwnedSemaphorePermit;
use tonic::{Request, Response, Status};

use super::idempotent::replay;
use super::status::{
    from_hsm_error, from_store_error, in_progress, invalid_field, key_reused, outcome_unknown,
    partner_unavailable, precondition,
};
use super::validate::{MAX_REASON_LEN, Violations};
use super::{Gateway, key_of, logged};
use crate::access::{Identity, identity_of};
use crate::payments::card::{PresentedCard, brand_name, brand_of, read_card};
use crate::payments::saf::reversal_of;
use crate::payments::{Payments, Route, bank_terminal_id, card_lines, rrn_for, view};
use posgate_core::cards::config::BankLinkConfig;
use posgate_core::model::RequestContext;
use posgate_core::model::business_day::BusinessCalendar;
use posgate_core::model::idempotency::{FingerprintBuilder, differing_fields};
use posgate_core::model::money::Currency;
use posgate_core::model::{IdempotencyKey, RequestFingerprint, StoredAnswer};
use posgate_core::ports::db::{
    CardChange, CardRecord, CardType, CardUpdate, CardWrite, Event, KeyOp, NewSafItem,
    RefundAdjust, SafKind, SettlementLine, TransactionStatus, WriteOutcome,
};

/// Longest `pos_reference`.
const MAX_POS_REFERENCE_LEN: usize = 40;

/// The service, over the shared gateway state.
#[derive(Debug, Clone)]
pub struct PaymentApi {
    gateway: Arc<Gateway>,
}

impl PaymentApi {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self { gateway }
    }

    pub fn into_server(self) -> pb::payment_service_server::PaymentServiceServer<Self> {
        pb::payment_service_server::PaymentServiceServer::new(self)
    }

    fn payments(&self) -> Result<&Arc<Payments>, Status> {
        self.gateway.payments.as_ref().ok_or_else(|| {
            precondition(
                "CARDS_NOT_CONFIGURED",
                "gateway",
                "this gateway takes no card payments (no [card] configuration)".to_owned(),
            )
        })
    }
}

fn store_failure(error: &posgate_core::ports::db::StoreError) -> Status {
    from_store_error(error)
}

/// What the first request under a key left behind, for a retry.
async fn prior<M: prost::Message + Default>(
    gateway: &Gateway,
    key: &IdempotencyKey,
    fingerprint: &RequestFingerprint,
) -> Result<Option<Response<M>>, Status> {
    let Some(answer) = gateway
        .db
        .answer(key)
        .await
        .map_err(|error| store_failure(&error))?
    else {
        return Ok(None);
    };
    answer_for_retry(gateway, &answer, fingerprint, &key.client_request_id)
        .await
        .map(Some)
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
        .card_transaction(&answer.transaction_id)
        .await
        .map_err(|error| store_failure(&error))?;
    match record.map(|record| record.status) {
        Some(TransactionStatus::PendingReversal) => Err(outcome_unknown(&answer.transaction_id)),
        _ => Err(in_progress(client_request_id)),
    }
}

/// The bank's answer, or why there is none.
pub(crate) enum BankOutcome {
    Answered(FinancialResponse),
    /// Sent, and no usable answer: the charge may exist.
    Unknown(String),
    /// Never sent: the link was down or busy.
    NotSent(String),
    /// Never sent: posgate could not build the message (a bug or bad data).
    NotBuilt(String),
}

impl BankOutcome {
    fn from_result(result: Result<posgate_partners::iso8583::Message, LinkError>) -> Self {
        match result {
            Ok(message) => match FinancialResponse::parse(&message) {
                Ok(response) => Self::Answered(response),
                Err(error) => Self::Unknown(format!("unreadable answer: {error}")),
            },
            Err(error) if error.outcome_unknown() => Self::Unknown(error.to_string()),
            Err(error) => Self::NotSent(error.to_string()),
        }
    }
}

/// The event of a state change.
fn event(
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

fn local_now(gateway: &Gateway, store_id: &str, now: DateTime<Utc>) -> chrono::NaiveDateTime {
    let store = gateway.store_config(store_id);
    now.with_timezone(&store.time_zone).naive_local()
}

/// What a financial request needs besides the card.
pub(crate) struct Outgoing<'a> {
    pub link: &'a BankLink,
    pub acquirer_id: &'a str,
    pub pin_block: Option<Secret<Vec<u8>>>,
    pub original: Option<OriginalData>,
}

/// Sends the financial request of `record` and waits for the bank.
pub(crate) async fn send_financial(
    gateway: &Gateway,
    record: &CardRecord,
    card: Option<&PresentedCard>,
    out: &Outgoing<'_>,
    now: DateTime<Utc>,
) -> BankOutcome {
    let kind = match record.card_type {
        CardType::Authorization => FinancialKind::Authorization,
        CardType::Sale => FinancialKind::Sale,
        CardType::Refund => FinancialKind::Refund,
    };
    let currency =
        posgate_core::model::money::Currency::from_code(&record.currency).map_or("", |c| c.numeric);
    let request = FinancialRequest {
        kind,
        pan: card.map(|card| &card.pan),
        expiry: card
            .filter(|card| card.track2.is_none())
            .map(|card| card.expiry),
        track2: card.and_then(|card| card.track2.as_ref()),
        amount_minor: record.amount_minor,
        currency_numeric: currency,
        stan: &record.stan,
        rrn: &record.rrn,
        transmitted_at: record.transmitted_at,
        local: local_now(gateway, &record.store_id, now),
        entry_mode: card.map_or("010", |card| card.entry_mode.iso8583_code()),
        pin_block: out.pin_block.as_ref(),
        icc_data: card.and_then(|card| card.icc_data.as_ref()),
        security_code: card.and_then(|card| card.security_code.as_ref()),
        terminal_id: &record.bank_terminal_id,
        merchant_id: &record.merchant_id,
        acquirer_id: out.acquirer_id,
        original: out.original.clone(),
    };
    match request.to_message() {
        Ok(message) => BankOutcome::from_result(out.link.send(message).await),
        Err(error) => BankOutcome::NotBuilt(error.to_string()),
    }
}

/// The record after the bank's outcome, and the write that records it.
pub(crate) struct Settled {
    pub record: CardRecord,
    pub write: CardWrite,
}

/// Plans the write of a financial request's outcome. `answer` encodes the
/// POS answer from the settled record (for the key).
pub(crate) fn settle(
    record: &CardRecord,
    outcome: &BankOutcome,
    key: &IdempotencyKey,
    now: DateTime<Utc>,
    hold: std::time::Duration,
    answer: &(dyn Fn(&CardRecord) -> Vec<u8> + Sync),
) -> Settled {
    let mut settled = record.clone();
    settled.updated_at = now;
    let mut update = CardUpdate {
        transaction_id: record.id.clone(),
        from: Some(TransactionStatus::InProgress),
        ..CardUpdate::default()
    };
    let mut lines = Vec::new();
    let mut enqueue = Vec::new();
    let mut refund = None;
    let refund_of = |reserve: i64, refunded: i64| {
        record
            .original_transaction_id
            .clone()
            .map(|original_id| RefundAdjust {
                original_id,
                reserve_delta: reserve,
                refunded_delta: refunded,
            })
    };
    let (event_type, detail) = match outcome {
        BankOutcome::Answered(response) => {
            let code = response.response_code.as_str().to_owned();
            settled.response_code.clone_from(&code);
            update.response_code = Some(code.clone());
            if response.response_code.is_approved() {
                (lines, refund) = approve(record, response, &mut settled, &mut update, hold, now);
                ("approved", format!("response code {code}"))
            } else {
                settled.status = TransactionStatus::Declined;
                if record.card_type == CardType::Refund {
                    refund = refund_of(-record.amount_minor, 0);
                }
                ("declined", format!("response code {code}"))
            }
        }
        BankOutcome::Unknown(reason) => {
            settled.status = TransactionStatus::PendingReversal;
            settled.advice_pending = true;
            update.advice_pending = Some(true);
            enqueue.push(reversal_of(record, now));
            ("outcome_unknown", reason.clone())
        }
        BankOutcome::NotSent(reason) | BankOutcome::NotBuilt(reason) => {
            settled.status = TransactionStatus::Declined;
            if record.card_type == CardType::Refund {
                refund = refund_of(-record.amount_minor, 0);
            }
            ("not_sent", reason.clone())
        }
    };
    update.to = Some(settled.status);
    let key_op = match outcome {
        BankOutcome::Answered(_) => Some(KeyOp::Answer {
            key: key.clone(),
            response: answer(&settled),
        }),
        BankOutcome::Unknown(_) => None,
        BankOutcome::NotSent(_) | BankOutcome::NotBuilt(_) => {
            Some(KeyOp::Release { key: key.clone() })
        }
    };
    let write = CardWrite {
        transaction_id: record.id.clone(),
        at: now,
        key: key_op,
        change: CardChange::Update(update),
        refund,
        lines,
        business_date: record.business_date,
        event: event(
            event_type,
            Some(TransactionStatus::InProgress),
            settled.status,
            "bank",
            detail,
        ),
        enqueue,
        acked: Vec::new(),
    };
    Settled {
        record: settled,
        write,
    }
}

/// Applies an approval to the settled record and its update; returns the
/// settlement lines and the refund adjustment it brings.
fn approve(
    record: &CardRecord,
    response: &FinancialResponse,
    settled: &mut CardRecord,
    update: &mut CardUpdate,
    hold: std::time::Duration,
    now: DateTime<Utc>,
) -> (Vec<SettlementLine>, Option<RefundAdjust>) {
    settled.approval_code = response.approval_code.clone().unwrap_or_default();
    update.approval_code = Some(settled.approval_code.clone());
    if let Some(loyalty) = &response.loyalty {
        settled.loyalty_points = Some(loyalty.points_earned);
        settled.loyalty_balance = Some(loyalty.balance_points);
        update.loyalty = Some((loyalty.points_earned, Some(loyalty.balance_points)));
    }
    if record.card_type == CardType::Authorization {
        settled.status = TransactionStatus::Authorized;
        let expires = now + chrono::Duration::from_std(hold).unwrap_or_default();
        settled.authorization_expires_at = Some(expires);
        update.authorization_expires_at = Some(Some(expires));
        return (Vec::new(), None);
    }
    settled.status = TransactionStatus::Captured;
    settled.captured_minor = record.amount_minor;
    update.captured_minor = Some(record.amount_minor);
    match &record.original_transaction_id {
        Some(original_id) if record.card_type == CardType::Refund => (
            card_lines(record, -record.amount_minor, "card_refund"),
            Some(RefundAdjust {
                original_id: original_id.clone(),
                reserve_delta: -record.amount_minor,
                refunded_delta: record.amount_minor,
            }),
        ),
        _ => (card_lines(record, record.amount_minor, "card_sale"), None),
    }
}

/// Records the outcome and turns it into the POS answer.
async fn finish<M: prost::Message + Default>(
    gateway: &Gateway,
    record: &CardRecord,
    outcome: BankOutcome,
    key: &IdempotencyKey,
    now: DateTime<Utc>,
    answer: &(dyn Fn(&CardRecord) -> M + Sync),
) -> Result<Response<M>, Status> {
    let payments = gateway
        .payments
        .as_ref()
        .expect("card calls run with payments");
    let encode = |record: &CardRecord| answer(record).encode_to_vec();
    let settled = settle(
        record,
        &outcome,
        key,
        now,
        payments.config.authorization_hold,
        &encode,
    );
    let written = gateway
        .db
        .write_card(settled.write)
        .await
        .map_err(|error| store_failure(&error))?;
    match (written, outcome) {
        (WriteOutcome::Written, BankOutcome::Answered(_)) => {
            Ok(Response::new(answer(&settled.record)))
        }
        (WriteOutcome::Written, BankOutcome::Unknown(reason)) => {
            tracing::warn!(transaction_id = %record.id, link = %record.link_id, %reason, "bank outcome unknown; reversal queued");
            Err(outcome_unknown(&record.id))
        }
        (WriteOutcome::Written, BankOutcome::NotSent(reason)) => {
            tracing::warn!(transaction_id = %record.id, link = %record.link_id, %reason, "request not sent");
            Err(partner_unavailable(&record.link_id))
        }
        (WriteOutcome::Written, BankOutcome::NotBuilt(reason)) => {
            tracing::error!(transaction_id = %record.id, link = %record.link_id, %reason, "bank request could not be built");
            Err(Status::internal(
                "the bank request could not be built; nothing was sent",
            ))
        }
        // The recovery sweep got there first (it found the request cut
        // off): whatever the bank said, the transaction is being reversed.
        (WriteOutcome::StatusMismatch { .. }, _) => Err(outcome_unknown(&record.id)),
        (other, _) => {
            tracing::error!(transaction_id = %record.id, ?other, "outcome write refused");
            Err(Status::internal(
                "the outcome could not be recorded; retry with the same client_request_id",
            ))
        }
    }
}

/// The record of a transaction of the caller's store, or `NOT_FOUND`.
async fn own_transaction(
    gateway: &Gateway,
    context: &RequestContext,
    id: &str,
) -> Result<CardRecord, Status> {
    gateway
        .db
        .card_transaction(id)
        .await
        .map_err(|error| store_failure(&error))?
        .filter(|record| record.store_id == context.store_id)
        .ok_or_else(|| {
            Status::not_found(format!(
                "no card transaction {id} at store {}",
                context.store_id
            ))
        })
}

async fn view_of(gateway: &Gateway, record: &CardRecord) -> Result<pb::CardTransaction, Status> {
    let payments = gateway
        .payments
        .as_ref()
        .expect("card calls run with payments");
    let refunds = match record.card_type {
        CardType::Refund => Vec::new(),
        _ => gateway
            .db
            .refund_ids(&record.id)
            .await
            .map_err(|error| store_failure(&error))?,
    };
    Ok(view::card_transaction(record, refunds, &payments.config))
}

fn check_pos_reference(v: &mut Violations, value: &str) {
    if value.len() > MAX_POS_REFERENCE_LEN || !value.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        v.add("pos_reference", "must be 0-40 printable ASCII characters");
    }
}

fn state_error(kind: &str, record: &CardRecord, description: String) -> Status {
    precondition(kind, &format!("transaction/{}", record.id), description)
}

#[tonic::async_trait]
impl PaymentService for PaymentApi {
    async fn authorize(
        &self,
        request: Request<pb::AuthorizeRequest>,
    ) -> Result<Response<pb::AuthorizeResponse>, Status> {
        let caller = identity_of(&request)?;
        let request = request.into_inner();
        logged(
            "Authorize",
            request.context.as_ref(),
            self.authorize_request(&caller, &request),
        )
        .await
    }

    async fn capture(
        &self,
        request: Request<pb::CaptureRequest>,
    ) -> Result<Response<pb::CaptureResponse>, Status> {
        let caller = identity_of(&request)?;
        let request = request.into_inner();
        logged(
            "Capture",
            request.context.as_ref(),
            self.capture_request(&caller, &request),
        )
        .await
    }

    async fn void(
        &self,
        request: Request<pb::VoidRequest>,
    ) -> Result<Response<pb::VoidResponse>, Status> {
        let caller = identity_of(&request)?;
        let request = request.into_inner();
        logged(
            "Void",
            request.context.as_ref(),
            self.void_request(&caller, &request),
        )
        .await
    }

    async fn refund(
        &self,
        request: Request<pb::CardRefundRequest>,
    ) -> Result<Response<pb::CardRefundResponse>, Status> {
        let caller = identity_of(&request)?;
        let request = request.into_inner();
        logged(
            "Refund",
            request.context.as_ref(),
            self.refund_request(&caller, &request),
        )
        .await
    }

    async fn get_transaction(
        &self,
        request: Request<pb::GetTransactionRequest>,
    ) -> Result<Response<pb::GetTransactionResponse>, Status> {
        let caller = identity_of(&request)?;
        let request = request.into_inner();
        logged(
            "GetTransaction",
            request.context.as_ref(),
            self.get_request(&caller, &request),
        )
        .await
    }
}

impl PaymentApi {
    /// The card currency and limit checks of an amount at a store.
    fn check_amount(
        payments: &Payments,
        context: &RequestContext,
        amount_minor: u64,
        currency: posgate_core::model::money::Currency,
    ) -> Result<i64, Status> {
        let Some(store_currency) = payments.config.store_currency.get(&context.store_id) else {
            return Err(precondition(
                "CARDS_NOT_ACCEPTED",
                &format!("store/{}", context.store_id),
                format!("store {} takes no card payments", context.store_id),
            ));
        };
        if *store_currency != currency {
            return Err(invalid_field(
                "amount.currency",
                format!("must be the store's card currency {}", store_currency.code),
            ));
        }
        let max = payments
            .config
            .max_amount_minor
            .get(currency.code)
            .copied()
            .unwrap_or(i64::MAX);
        let amount = i64::try_from(amount_minor).unwrap_or(i64::MAX);
        if amount > max {
            return Err(invalid_field(
                "amount.amount_minor",
                format!("exceeds the per-transaction maximum of {max} minor units"),
            ));
        }
        Ok(amount)
    }

    /// Admits and validates an Authorize request.
    fn read_authorize(
        &self,
        caller: &Identity,
        payments: &Payments,
        request: &pb::AuthorizeRequest,
        now: DateTime<Utc>,
    ) -> Result<
        (
            OwnedSemaphorePermit,
            RequestContext,
            PresentedCard,
            i64,
            Currency,
            CardType,
        ),
        Status,
    > {
        let (mut card, mut money, mut card_type) = (None, None, None);
        let (permit, context) = self
            .gateway
            .admit(caller, request.context.as_ref(), now, |v| {
                card = read_card(v, "card", request.card.as_ref());
                money = v.positive_money("amount", request.amount.as_ref());
                card_type = match pb::CaptureMode::try_from(request.capture_mode) {
                    Ok(pb::CaptureMode::AuthOnly) => Some(CardType::Authorization),
                    Ok(pb::CaptureMode::Sale) => Some(CardType::Sale),
                    _ => {
                        v.add("capture_mode", "is required: AUTH_ONLY or SALE");
                        None
                    }
                };
                check_pos_reference(v, &request.pos_reference);
            })?;
        let (amount, currency) = money.expect("validated");
        let amount = Self::check_amount(payments, &context, amount, currency)?;
        Ok((
            permit,
            context,
            card.expect("validated"),
            amount,
            currency,
            card_type.expect("validated"),
        ))
    }

    async fn authorize_request(
        &self,
        caller: &Identity,
        request: &pb::AuthorizeRequest,
    ) -> Result<Response<pb::AuthorizeResponse>, Status> {
        let payments = Arc::clone(self.payments()?);
        let gateway = &self.gateway;
        let now = gateway.clock.now();
        let (_permit, context, card, amount, currency, card_type) =
            self.read_authorize(caller, &payments, request, now)?;
        let card_digest = payments
            .keyed_digest(&card.digest_parts())
            .await
            .map_err(|error| from_hsm_error(&error))?;
        let fingerprint = FingerprintBuilder::new("Authorize")
            .value("context.operator_id", &context.operator_id)
            .value("card", &card_digest)
            .value("amount.amount_minor", amount.to_be_bytes())
            .value("amount.currency", currency.code)
            .value("capture_mode", request.capture_mode.to_be_bytes())
            .value("pos_reference", &request.pos_reference)
            .finish();
        let key = key_of(&context);
        if let Some(answer) = prior(gateway, &key, &fingerprint).await? {
            return Ok(answer);
        }
        let calendar = BusinessCalendar::from(gateway.store_config(&context.store_id));
        let checked = check_card(&payments, &context, &card, calendar.local_date(now)).await?;
        let (link, link_config) = up_link(&payments, &checked.route.link)?;
        let stan = next_stan(gateway, &payments, &checked.route.link, now).await?;
        let id = uuid::Uuid::now_v7();
        let record = CardRecord {
            route: checked.route.kind,
            masked_pan: card.pan.masked(),
            pan_fingerprint: payments
                .fingerprint(&card.pan)
                .await
                .map_err(|error| from_hsm_error(&error))?,
            card_brand: brand_name(checked.brand).to_owned(),
            entry_mode: card.entry_mode.as_str().to_owned(),
            cardholder_verification: if card.pin.is_some() {
                "online_pin"
            } else {
                "signature"
            }
            .to_owned(),
            merchant_id: payments.config.merchant_id(&context.store_id),
            pos_reference: request.pos_reference.clone(),
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
            return Ok(answer);
        }
        let outgoing = Outgoing {
            link,
            acquirer_id: &link_config.acquirer_id,
            pin_block: checked.pin_block,
            original: None,
        };
        let outcome = send_financial(gateway, &record, Some(&card), &outgoing, now).await;
        let config = payments.config.clone();
        finish(
            gateway,
            &record,
            outcome,
            &key,
            gateway.clock.now(),
            &|settled| pb::AuthorizeResponse {
                transaction: Some(view::card_transaction(settled, Vec::new(), &config)),
            },
        )
        .await
    }

    /// Records a new transaction as sent, claiming its key. When a
    /// concurrent duplicate took the key first, this request is answered as
    /// its retry: `Some` replayed answer, or the retry's error.
    async fn claim<M: prost::Message + Default>(
        &self,
        actor: &str,
        record: &CardRecord,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        refund: Option<RefundAdjust>,
        now: DateTime<Utc>,
    ) -> Result<Option<Response<M>>, Status> {
        let gateway = &self.gateway;
        let write = CardWrite {
            transaction_id: record.id.clone(),
            at: now,
            key: Some(KeyOp::Claim {
                key: key.clone(),
                fingerprint: fingerprint.clone(),
                expires_at: now + gateway.retention,
            }),
            change: CardChange::Create(Box::new(record.clone())),
            refund,
            lines: Vec::new(),
            business_date: record.business_date,
            event: event(
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
        match gateway
            .db
            .write_card(write)
            .await
            .map_err(|error| store_failure(&error))?
        {
            WriteOutcome::Written => Ok(None),
            WriteOutcome::KeyTaken(answer) => {
                answer_for_retry(gateway, &answer, fingerprint, &key.client_request_id)
                    .await
                    .map(Some)
            }
            WriteOutcome::RefundExceeds { remaining } => Err(precondition(
                "REFUND_EXCEEDS_REMAINING",
                "amount",
                format!("the refund exceeds what remains refundable: {remaining} minor units"),
            )),
            WriteOutcome::StatusMismatch { .. } => {
                Err(Status::internal("unexpected state conflict"))
            }
        }
    }

    async fn capture_request(
        &self,
        caller: &Identity,
        request: &pb::CaptureRequest,
    ) -> Result<Response<pb::CaptureResponse>, Status> {
        let payments = Arc::clone(self.payments()?);
        let gateway = &self.gateway;
        let now = gateway.clock.now();
        let mut money = None;
        let (_permit, context) = gateway.admit(caller, request.context.as_ref(), now, |v| {
            v.transaction_id("transaction_id", &request.transaction_id);
            money = v.positive_money("amount", request.amount.as_ref());
        })?;
        let (amount, currency) = money.expect("validated");
        let fingerprint = FingerprintBuilder::new("Capture")
            .value("context.operator_id", &context.operator_id)
            .value("transaction_id", &request.transaction_id)
            .value("amount.amount_minor", amount.to_be_bytes())
            .value("amount.currency", currency.code)
            .finish();
        let key = key_of(&context);
        if let Some(answer) = prior(gateway, &key, &fingerprint).await? {
            return Ok(answer);
        }
        let record = own_transaction(gateway, &context, &request.transaction_id).await?;
        let amount = check_capturable(&record, amount, currency, now)?;
        let business_date =
            BusinessCalendar::from(gateway.store_config(&context.store_id)).business_date(now);
        let mut captured = record.clone();
        captured.status = TransactionStatus::Captured;
        captured.captured_minor = amount;
        captured.advice_pending = true;
        captured.updated_at = now;
        let response = pb::CaptureResponse {
            transaction: Some(view_of(gateway, &captured).await?),
        };
        let write = CardWrite {
            transaction_id: record.id.clone(),
            at: now,
            key: Some(answered_key(
                &key,
                &fingerprint,
                &record.id,
                &response,
                now + gateway.retention,
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
            event: event(
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
        let _ = payments;
        self.commit_answered(write, response, &fingerprint, &key, "Capture")
            .await
    }

    /// Commits a write that answers at once; a lost race is answered as a retry.
    async fn commit_answered<M: prost::Message + Default>(
        &self,
        write: CardWrite,
        response: M,
        fingerprint: &RequestFingerprint,
        key: &IdempotencyKey,
        rpc: &str,
    ) -> Result<Response<M>, Status> {
        let id = write.transaction_id.clone();
        match self
            .gateway
            .db
            .write_card(write)
            .await
            .map_err(|error| store_failure(&error))?
        {
            WriteOutcome::Written => Ok(Response::new(response)),
            WriteOutcome::KeyTaken(answer) => {
                answer_for_retry(&self.gateway, &answer, fingerprint, &key.client_request_id).await
            }
            WriteOutcome::StatusMismatch { current } => Err(precondition(
                "CONCURRENT_CHANGE",
                &format!("transaction/{id}"),
                format!(
                    "{rpc} lost a race: the transaction is now {}; read it again",
                    current.map_or("missing", TransactionStatus::as_str)
                ),
            )),
            WriteOutcome::RefundExceeds { .. } => Err(Status::internal("unexpected refund guard")),
        }
    }

    async fn void_request(
        &self,
        caller: &Identity,
        request: &pb::VoidRequest,
    ) -> Result<Response<pb::VoidResponse>, Status> {
        self.payments()?;
        let gateway = &self.gateway;
        let now = gateway.clock.now();
        let (_permit, context) = gateway.admit(caller, request.context.as_ref(), now, |v| {
            v.transaction_id("transaction_id", &request.transaction_id);
            v.text("reason", &request.reason, MAX_REASON_LEN);
        })?;
        let fingerprint = FingerprintBuilder::new("Void")
            .value("context.operator_id", &context.operator_id)
            .value("transaction_id", &request.transaction_id)
            .value("reason", &request.reason)
            .finish();
        let key = key_of(&context);
        if let Some(answer) = prior(gateway, &key, &fingerprint).await? {
            return Ok(answer);
        }
        let record = own_transaction(gateway, &context, &request.transaction_id).await?;
        let calendar = BusinessCalendar::from(gateway.store_config(&context.store_id));
        let today = calendar.business_date(now);
        let lines = void_lines(&record, &calendar, today)?;
        let mut voided = record.clone();
        voided.status = TransactionStatus::Voided;
        voided.advice_pending = true;
        voided.updated_at = now;
        let response = pb::VoidResponse {
            transaction: Some(view_of(gateway, &voided).await?),
        };
        let write = CardWrite {
            transaction_id: record.id.clone(),
            at: now,
            key: Some(answered_key(
                &key,
                &fingerprint,
                &record.id,
                &response,
                now + gateway.retention,
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
            event: event(
                "voided",
                Some(record.status),
                TransactionStatus::Voided,
                &context.actor,
                request.reason.clone(),
            ),
            enqueue: vec![reversal_of(&record, now)],
            acked: Vec::new(),
        };
        self.commit_answered(write, response, &fingerprint, &key, "Void")
            .await
    }

    /// Admits and validates a Refund request; returns it with its fingerprint.
    async fn read_refund(
        &self,
        caller: &Identity,
        payments: &Payments,
        request: &pb::CardRefundRequest,
        now: DateTime<Utc>,
    ) -> Result<
        (
            OwnedSemaphorePermit,
            RequestContext,
            Option<PresentedCard>,
            u64,
            Currency,
            RequestFingerprint,
        ),
        Status,
    > {
        let (mut money, mut card) = (None, None);
        let (permit, context) = self
            .gateway
            .admit(caller, request.context.as_ref(), now, |v| {
                v.transaction_id("original_transaction_id", &request.original_transaction_id);
                money = v.positive_money("amount", request.amount.as_ref());
                v.text("reason", &request.reason, MAX_REASON_LEN);
                if request.card.is_some() {
                    card = read_card(v, "card", request.card.as_ref());
                }
            })?;
        let (amount, currency) = money.expect("validated");
        let card_digest = match &card {
            Some(card) => hex::encode(
                payments
                    .keyed_digest(&card.digest_parts())
                    .await
                    .map_err(|error| from_hsm_error(&error))?,
            ),
            None => String::new(),
        };
        let fingerprint = FingerprintBuilder::new("Refund")
            .value("context.operator_id", &context.operator_id)
            .value("original_transaction_id", &request.original_transaction_id)
            .value("amount.amount_minor", amount.to_be_bytes())
            .value("amount.currency", currency.code)
            .value("reason", &request.reason)
            .value("card", &card_digest)
            .finish();
        Ok((permit, context, card, amount, currency, fingerprint))
    }

    async fn refund_request(
        &self,
        caller: &Identity,
        request: &pb::CardRefundRequest,
    ) -> Result<Response<pb::CardRefundResponse>, Status> {
        let payments = Arc::clone(self.payments()?);
        let gateway = &self.gateway;
        let now = gateway.clock.now();
        let (_permit, context, card, amount, currency, fingerprint) =
            self.read_refund(caller, &payments, request, now).await?;
        let key = key_of(&context);
        if let Some(answer) = prior(gateway, &key, &fingerprint).await? {
            return Ok(answer);
        }
        let original = own_transaction(gateway, &context, &request.original_transaction_id).await?;
        let calendar = BusinessCalendar::from(gateway.store_config(&context.store_id));
        let today = calendar.business_date(now);
        let amount =
            check_refundable(&payments, &original, card.as_ref(), amount, currency, today).await?;
        let (link, link_config) = up_link(&payments, &original.link_id)?;
        let stan = next_stan(gateway, &payments, &original.link_id, now).await?;
        let id = uuid::Uuid::now_v7();
        let record = CardRecord {
            route: original.route,
            masked_pan: original.masked_pan.clone(),
            pan_fingerprint: original.pan_fingerprint.clone(),
            card_brand: original.card_brand.clone(),
            entry_mode: card.as_ref().map_or_else(
                || original.entry_mode.clone(),
                |card| card.entry_mode.as_str().to_owned(),
            ),
            merchant_id: original.merchant_id.clone(),
            original_transaction_id: Some(original.id.clone()),
            ..draft(&Draft {
                context: &context,
                id: &id,
                card_type: CardType::Refund,
                stan,
                link_id: &original.link_id,
                amount,
                currency: &original.currency,
                business_date: today,
                now,
            })
        };
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
            return Ok(answer);
        }
        let outgoing = Outgoing {
            link,
            acquirer_id: &link_config.acquirer_id,
            pin_block: None,
            original: original_data(&original, &link_config.acquirer_id),
        };
        let outcome = send_financial(gateway, &record, card.as_ref(), &outgoing, now).await;
        let mut original_after = original.clone();
        let refund_ids = {
            let mut ids = gateway
                .db
                .refund_ids(&original.id)
                .await
                .map_err(|error| store_failure(&error))?;
            if !ids.contains(&record.id) {
                ids.push(record.id.clone());
            }
            ids
        };
        let approved = matches!(&outcome, BankOutcome::Answered(response) if response.response_code.is_approved());
        if approved {
            original_after.refunded_minor += amount;
        }
        let config = payments.config.clone();
        finish(
            gateway,
            &record,
            outcome,
            &key,
            gateway.clock.now(),
            &|settled| pb::CardRefundResponse {
                refund: Some(view::card_transaction(settled, Vec::new(), &config)),
                original: Some(view::card_transaction(
                    &original_after,
                    refund_ids.clone(),
                    &config,
                )),
            },
        )
        .await
    }

    async fn get_request(
        &self,
        caller: &Identity,
        request: &pb::GetTransactionRequest,
    ) -> Result<Response<pb::GetTransactionResponse>, Status> {
        self.payments()?;
        let gateway = &self.gateway;
        let now = gateway.clock.now();
        let (_permit, context) = gateway.admit(caller, request.context.as_ref(), now, |v| {
            match &request.lookup {
                None => v.add(
                    "transaction_id",
                    "is required: give transaction_id or created_client_request_id",
                ),
                Some(pb::get_transaction_request::Lookup::TransactionId(id)) => {
                    v.transaction_id("transaction_id", id);
                }
                Some(pb::get_transaction_request::Lookup::CreatedClientRequestId(id)) => {
                    v.request_id("created_client_request_id", id);
                }
            }
        })?;
        let record = match request.lookup.as_ref().expect("validated") {
            pb::get_transaction_request::Lookup::TransactionId(id) => {
                own_transaction(gateway, &context, id).await?
            }
            pb::get_transaction_request::Lookup::CreatedClientRequestId(client_request_id) => {
                let key = IdempotencyKey {
                    client_request_id: client_request_id.clone(),
                    ..key_of(&context)
                };
                gateway
                    .db
                    .card_by_request(&key)
                    .await
                    .map_err(|error| store_failure(&error))?
                    .ok_or_else(|| {
                        Status::not_found(
                            "this terminal made no card transaction with that client_request_id",
                        )
                    })?
            }
        };
        Ok(Response::new(pb::GetTransactionResponse {
            transaction: Some(view_of(gateway, &record).await?),
        }))
    }
}

/// The checks of a refund against the payment it refunds. Returns the
/// amount in minor units.
async fn check_refundable(
    payments: &Payments,
    original: &CardRecord,
    card: Option<&PresentedCard>,
    amount: u64,
    currency: Currency,
    today: chrono::NaiveDate,
) -> Result<i64, Status> {
    if original.card_type == CardType::Refund || original.status != TransactionStatus::Captured {
        return Err(state_error(
            "NOT_REFUNDABLE",
            original,
            "only a captured payment can be refunded".to_owned(),
        ));
    }
    if original.currency != currency.code {
        return Err(invalid_field(
            "amount.currency",
            format!("must be the original's currency {}", original.currency),
        ));
    }
    if (today - original.business_date).num_days() > i64::from(payments.config.refund_window_days) {
        return Err(state_error(
            "REFUND_WINDOW_CLOSED",
            original,
            format!(
                "the payment is older than the {}-day refund window",
                payments.config.refund_window_days
            ),
        ));
    }
    if let Some(card) = card {
        let presented = payments
            .fingerprint(&card.pan)
            .await
            .map_err(|error| from_hsm_error(&error))?;
        if presented != original.pan_fingerprint {
            return Err(state_error(
                "CARD_MISMATCH",
                original,
                "the card presented is not the card the payment was made with".to_owned(),
            ));
        }
    }
    let amount = i64::try_from(amount).unwrap_or(i64::MAX);
    let remaining =
        original.captured_minor - original.refunded_minor - original.refund_reserved_minor;
    if amount > remaining {
        return Err(precondition(
            "REFUND_EXCEEDS_REMAINING",
            "amount",
            format!("the refund exceeds what remains refundable: {remaining} minor units"),
        ));
    }
    Ok(amount)
}

/// Claims a key with its answer at once (calls that never wait for the bank).
fn answered_key<M: prost::Message>(
    key: &IdempotencyKey,
    fingerprint: &RequestFingerprint,
    transaction_id: &str,
    response: &M,
    expires_at: DateTime<Utc>,
) -> KeyOp {
    KeyOp::ClaimAnswered {
        key: key.clone(),
        answer: StoredAnswer {
            fingerprint: fingerprint.clone(),
            transaction_id: transaction_id.to_owned(),
            response: response.encode_to_vec(),
            pending: false,
        },
        expires_at,
    }
}

/// The checks of a capture against its authorization. Returns the amount.
fn check_capturable(
    record: &CardRecord,
    amount: u64,
    currency: Currency,
    now: DateTime<Utc>,
) -> Result<i64, Status> {
    if record.card_type != CardType::Authorization {
        return Err(state_error(
            "NOT_AN_AUTHORIZATION",
            record,
            "only an authorization (AUTH_ONLY) can be captured".to_owned(),
        ));
    }
    match record.status {
        TransactionStatus::Authorized => {}
        TransactionStatus::Captured => {
            return Err(state_error(
                "ALREADY_CAPTURED",
                record,
                "the authorization was already captured".to_owned(),
            ));
        }
        TransactionStatus::Expired => {
            return Err(state_error(
                "AUTHORIZATION_EXPIRED",
                record,
                "the authorization has expired".to_owned(),
            ));
        }
        other => {
            return Err(state_error(
                "NOT_CAPTURABLE",
                record,
                format!("the transaction is {}", other.as_str()),
            ));
        }
    }
    if record.authorization_expires_at.is_some_and(|at| at <= now) {
        return Err(state_error(
            "AUTHORIZATION_EXPIRED",
            record,
            "the authorization has expired".to_owned(),
        ));
    }
    if record.currency != currency.code {
        return Err(invalid_field(
            "amount.currency",
            format!("must be the authorization's currency {}", record.currency),
        ));
    }
    let amount = i64::try_from(amount).unwrap_or(i64::MAX);
    if amount > record.amount_minor {
        return Err(invalid_field(
            "amount.amount_minor",
            format!(
                "exceeds the authorized amount of {} minor units",
                record.amount_minor
            ),
        ));
    }
    Ok(amount)
}

/// The settlement lines a void appends, if the transaction may be voided.
fn void_lines(
    record: &CardRecord,
    calendar: &BusinessCalendar,
    today: chrono::NaiveDate,
) -> Result<Vec<SettlementLine>, Status> {
    match (record.card_type, record.status) {
        (CardType::Refund, _) => Err(state_error(
            "NOT_VOIDABLE",
            record,
            "a refund cannot be voided".to_owned(),
        )),
        (_, TransactionStatus::Voided) => Err(state_error(
            "ALREADY_VOIDED",
            record,
            "the transaction was already voided".to_owned(),
        )),
        (_, TransactionStatus::Authorized) => Ok(Vec::new()),
        (_, TransactionStatus::Captured) => {
            if calendar.business_date(record.updated_at) != today {
                return Err(state_error(
                    "BUSINESS_DAY_CLOSED",
                    record,
                    "the capture's business day is over: use Refund".to_owned(),
                ));
            }
            if record.refunded_minor + record.refund_reserved_minor > 0 {
                return Err(state_error(
                    "HAS_REFUNDS",
                    record,
                    "the payment has refunds: it cannot be voided".to_owned(),
                ));
            }
            Ok(card_lines(record, -record.captured_minor, "card_void"))
        }
        (_, other) => Err(state_error(
            "NOT_VOIDABLE",
            record,
            format!("the transaction is {}", other.as_str()),
        )),
    }
}

/// What the card rules decided about a presented card.
pub(crate) struct CheckedCard {
    pub route: Route,
    pub brand: pb::CardBrand,
    /// The PIN block translated to the route's zone PIN key.
    pub pin_block: Option<Secret<Vec<u8>>>,
}

/// The checks posgate makes before calling the bank: expiry (by the
/// store's local date), accepted brand, chip card swiped, the route's PIN
/// rule; and the PIN block's translation from the terminal's key.
pub(crate) async fn check_card(
    payments: &Payments,
    context: &RequestContext,
    card: &PresentedCard,
    local_date: chrono::NaiveDate,
) -> Result<CheckedCard, Status> {
    if card.expired_at(local_date) {
        return Err(precondition(
            "CARD_EXPIRED",
            "card",
            "the card has expired".to_owned(),
        ));
    }
    let brand = brand_of(&card.pan);
    if !payments
        .config
        .accepted_brands
        .iter()
        .any(|b| b == brand_name(brand))
    {
        return Err(precondition(
            "CARD_BRAND_NOT_ACCEPTED",
            "card",
            format!("the chain does not accept {} cards", brand_name(brand)),
        ));
    }
    if card.chip_card_swiped() {
        return Err(precondition(
            "CHIP_CARD_SWIPED",
            "card",
            "this is a chip card: insert the chip, or send MAGSTRIPE_FALLBACK after a failed chip read".to_owned(),
        ));
    }
    let route = payments.route(&card.pan);
    if route.pin_required && card.pin.is_none() {
        return Err(precondition(
            "PIN_REQUIRED",
            "card.pin",
            "the card's issuer requires an online PIN".to_owned(),
        ));
    }
    let pin_block = match &card.pin {
        None => None,
        Some(pin) => {
            let label = payments
                .pin_key_label(&pin.key_id, &context.store_id, &context.terminal_id)
                .ok_or_else(|| {
                    invalid_field("card.pin.key_id", "is not a PIN key of this terminal")
                })?
                .to_owned();
            Some(
                payments
                    .translate_pin(&card.pan, pin, &label, &route.link)
                    .await
                    .map_err(|error| match error {
                        posgate_hsm::HsmError::WrongKeyType { .. } => invalid_field(
                            "card.pin.format",
                            "does not match the algorithm of the terminal's PIN key",
                        ),
                        other => from_hsm_error(&other),
                    })
                    .map(Secret::new)?,
            )
        }
    };
    Ok(CheckedCard {
        route,
        brand,
        pin_block,
    })
}

/// The next STAN of `link_id` (see [`Payments::next_stan`]).
pub(crate) async fn next_stan(
    gateway: &Gateway,
    payments: &Payments,
    link_id: &str,
    now: DateTime<Utc>,
) -> Result<String, Status> {
    payments
        .next_stan(gateway.db.as_ref(), link_id, now)
        .await
        .map_err(|error| store_failure(&error))
}

/// The link of a route, if it is up (else nothing is sent or stored).
pub(crate) fn up_link<'a>(
    payments: &'a Payments,
    link_id: &str,
) -> Result<(&'a BankLink, &'a BankLinkConfig), Status> {
    match (payments.link(link_id), payments.config.link(link_id)) {
        (Some(link), Some(config)) if link.is_up() => Ok((link, config)),
        _ => Err(partner_unavailable(link_id)),
    }
}

/// What every new card transaction starts from.
pub(crate) struct Draft<'a> {
    pub context: &'a RequestContext,
    pub id: &'a uuid::Uuid,
    pub card_type: CardType,
    /// From [`Payments::next_stan`].
    pub stan: String,
    pub link_id: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub business_date: chrono::NaiveDate,
    pub now: DateTime<Utc>,
}

/// A new card transaction, in progress, with its trace numbers; the caller
/// fills in the card's details.
pub(crate) fn draft(draft: &Draft<'_>) -> CardRecord {
    let context = draft.context;
    CardRecord {
        id: draft.id.to_string(),
        card_type: draft.card_type,
        status: TransactionStatus::InProgress,
        store_id: context.store_id.clone(),
        terminal_id: context.terminal_id.clone(),
        operator_id: context.operator_id.clone(),
        client_request_id: context.client_request_id.clone(),
        link_id: draft.link_id.to_owned(),
        amount_minor: draft.amount,
        currency: draft.currency.to_owned(),
        business_date: draft.business_date,
        created_at: draft.now,
        updated_at: draft.now,
        route: posgate_core::ports::db::CardRouteKind::Acquirer,
        masked_pan: String::new(),
        pan_fingerprint: String::new(),
        card_brand: String::new(),
        entry_mode: String::new(),
        cardholder_verification: "none".to_owned(),
        merchant_id: String::new(),
        bank_terminal_id: bank_terminal_id(&context.store_id, &context.terminal_id),
        stan: draft.stan.clone(),
        rrn: rrn_for(draft.id),
        transmitted_at: draft.now,
        request_mti: card_type_mti(draft.card_type).to_owned(),
        response_code: String::new(),
        approval_code: String::new(),
        captured_minor: 0,
        refunded_minor: 0,
        refund_reserved_minor: 0,
        loyalty_points: None,
        loyalty_balance: None,
        original_transaction_id: None,
        pos_reference: String::new(),
        authorization_expires_at: None,
        advice_pending: false,
    }
}

/// The request MTI of a card type.
pub fn card_type_mti(card_type: CardType) -> &'static str {
    match card_type {
        CardType::Authorization => "0100",
        CardType::Sale | CardType::Refund => "0200",
    }
}

/// Field 90 naming a recorded request.
pub fn original_data(record: &CardRecord, acquirer_id: &str) -> Option<OriginalData> {
    OriginalData::new(
        posgate_partners::iso8583::Mti::new(
            record.request_mti.as_bytes().try_into().unwrap_or(*b"0200"),
        ),
        &record.stan,
        record.transmitted_at,
        acquirer_id,
    )
    .ok()
}
