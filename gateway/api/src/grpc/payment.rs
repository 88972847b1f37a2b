//! `PaymentService`: Authorize, Capture, Void, Refund, `GetTransaction`.
//!
//! Each handler reads the protobuf request into the card service's input
//! (wire-shape validation and admission here), makes one call to
//! [`CardService`], and turns its result into the answer message, or its
//! error into a status with google.rpc details. A replayed answer is the
//! stored bytes, decoded.

use std::sync::Arc;

use pb::payment_service_server::PaymentService;
use posgate_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::idempotent::respond;
use super::status::{from_card_error, precondition};
use super::{Gateway, logged};
use crate::access::{Identity, identity_of};
use crate::payments::card::read_card;
use crate::payments::view;
use crate::validate::{MAX_REASON_LEN, Violations};
use posgate_core::cards::CardService;
use posgate_core::cards::service::{
    AuthorizeInput, CaptureInput, RefundInput, TransactionLookup, VoidInput,
};
use posgate_core::model::card::CardType;
use posgate_core::model::idempotency::Answered;

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

    fn cards(&self) -> Result<&Arc<CardService>, Status> {
        self.gateway.cards.as_ref().ok_or_else(|| {
            precondition(
                "CARDS_NOT_CONFIGURED",
                "gateway",
                "this gateway takes no card payments (no [card] configuration)".to_owned(),
            )
        })
    }
}

/// The answer of a call: the new result as its message, or the stored
/// answer of the first request under the key.
fn answer<T, M: prost::Message + Default>(
    answered: Result<Answered<T>, posgate_core::cards::CardError>,
    message: impl FnOnce(&T) -> M,
) -> Result<Response<M>, Status> {
    respond(answered.map_err(|error| from_card_error(&error))?, message)
}

fn check_pos_reference(v: &mut Violations, value: &str) {
    if value.len() > MAX_POS_REFERENCE_LEN || !value.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        v.add("pos_reference", "must be 0-40 printable ASCII characters");
    }
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
    async fn authorize_request(
        &self,
        caller: &Identity,
        request: &pb::AuthorizeRequest,
    ) -> Result<Response<pb::AuthorizeResponse>, Status> {
        let cards = self.cards()?;
        let now = self.gateway.clock.now();
        let (mut card, mut money, mut card_type) = (None, None, None);
        let (_permit, context) =
            self.gateway
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
        let (amount_minor, currency) = money.expect("validated");
        let input = AuthorizeInput {
            context,
            card: card.expect("validated"),
            amount_minor,
            currency,
            card_type: card_type.expect("validated"),
            pos_reference: request.pos_reference.clone(),
        };
        let config = &cards.payments().config;
        answer(cards.authorize(input).await, |result| {
            view::authorize_response(result, config)
        })
    }

    async fn capture_request(
        &self,
        caller: &Identity,
        request: &pb::CaptureRequest,
    ) -> Result<Response<pb::CaptureResponse>, Status> {
        let cards = self.cards()?;
        let now = self.gateway.clock.now();
        let mut money = None;
        let (_permit, context) =
            self.gateway
                .admit(caller, request.context.as_ref(), now, |v| {
                    v.transaction_id("transaction_id", &request.transaction_id);
                    money = v.positive_money("amount", request.amount.as_ref());
                })?;
        let (amount_minor, currency) = money.expect("validated");
        let input = CaptureInput {
            context,
            transaction_id: request.transaction_id.clone(),
            amount_minor,
            currency,
        };
        let config = &cards.payments().config;
        answer(cards.capture(input).await, |result| {
            view::capture_response(result, config)
        })
    }

    async fn void_request(
        &self,
        caller: &Identity,
        request: &pb::VoidRequest,
    ) -> Result<Response<pb::VoidResponse>, Status> {
        let cards = self.cards()?;
        let now = self.gateway.clock.now();
        let (_permit, context) =
            self.gateway
                .admit(caller, request.context.as_ref(), now, |v| {
                    v.transaction_id("transaction_id", &request.transaction_id);
                    v.text("reason", &request.reason, MAX_REASON_LEN);
                })?;
        let input = VoidInput {
            context,
            transaction_id: request.transaction_id.clone(),
            reason: request.reason.clone(),
        };
        let config = &cards.payments().config;
        answer(cards.void(input).await, |result| {
            view::void_response(result, config)
        })
    }

    async fn refund_request(
        &self,
        caller: &Identity,
        request: &pb::CardRefundRequest,
    ) -> Result<Response<pb::CardRefundResponse>, Status> {
        let cards = self.cards()?;
        let now = self.gateway.clock.now();
        let (mut money, mut card) = (None, None);
        let (_permit, context) =
            self.gateway
                .admit(caller, request.context.as_ref(), now, |v| {
                    v.transaction_id("original_transaction_id", &request.original_transaction_id);
                    money = v.positive_money("amount", request.amount.as_ref());
                    v.text("reason", &request.reason, MAX_REASON_LEN);
                    if request.card.is_some() {
                        card = read_card(v, "card", request.card.as_ref());
                    }
                })?;
        let (amount_minor, currency) = money.expect("validated");
        let input = RefundInput {
            context,
            original_transaction_id: request.original_transaction_id.clone(),
            card,
            amount_minor,
            currency,
            reason: request.reason.clone(),
        };
        let config = &cards.payments().config;
        answer(cards.refund(input).await, |result| {
            view::refund_response(result, config)
        })
    }

    async fn get_request(
        &self,
        caller: &Identity,
        request: &pb::GetTransactionRequest,
    ) -> Result<Response<pb::GetTransactionResponse>, Status> {
        let cards = self.cards()?;
        let now = self.gateway.clock.now();
        let (_permit, context) =
            self.gateway
                .admit(caller, request.context.as_ref(), now, |v| {
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
        let lookup = match request.lookup.as_ref().expect("validated") {
            pb::get_transaction_request::Lookup::TransactionId(id) => {
                TransactionLookup::Id(id.clone())
            }
            pb::get_transaction_request::Lookup::CreatedClientRequestId(id) => {
                TransactionLookup::CreatedBy(id.clone())
            }
        };
        let result = cards
            .get_transaction(&context, &lookup)
            .await
            .map_err(|error| from_card_error(&error))?;
        Ok(Response::new(pb::GetTransactionResponse {
            transaction: Some(view::transaction(&result, &cards.payments().config)),
        }))
    }
}
