//! `WalletService`: `TopUp`, `Pay`, `Refund`, `GetBalance`,
//! `GetWalletTransaction`, `LinkCard`, `UnlinkCard`.
//!
//! Each handler reads the protobuf request into the wallet service's input
//! (wire-shape validation and admission here; the operator's field rules
//! are the core's `wallet::checks`, collected with the other violations),
//! makes one call to [`WalletService`], and turns its result into the
//! answer message, or its error into a status with google.rpc details. A
//! replayed answer is the stored bytes, decoded.

use std::sync::Arc;

use pb::wallet_service_server::WalletService as WalletRpc;
use posgate_proto::v1 as pb;
use tokio::sync::OwnedSemaphorePermit;
use tonic::{Request, Response, Status};

use super::idempotent::respond;
use super::status::{from_wallet_error, invalid_field, precondition};
use super::{Gateway, logged};
use crate::access::{Identity, identity_of};
use crate::payments::card::read_card;
use crate::validate::{MAX_REASON_LEN, Violations};
use crate::wallet::view::{self, ProtoWalletAnswers};
use posgate_core::cards::service::TransactionLookup;
use posgate_core::model::RequestContext;
use posgate_core::wallet::WalletService;
use posgate_core::wallet::checks::{
    AmountUse, CheckedWallet, WalletId, WalletRefInput, check_amount, check_step, check_wallet,
};
use posgate_core::wallet::links::{LinkInput, UnlinkInput};
use posgate_core::wallet::service::{PayInput, RefundInput, TopUpInput};

/// Longest `pos_reference`.
const MAX_POS_REFERENCE_LEN: usize = 40;

#[derive(Debug, Clone)]
pub struct WalletApi {
    gateway: Arc<Gateway>,
    answers: Arc<ProtoWalletAnswers>,
}

impl WalletApi {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        let answers = ProtoWalletAnswers {
            card_config: gateway
                .payments
                .as_ref()
                .map(|payments| payments.config.clone()),
        };
        Self {
            gateway,
            answers: Arc::new(answers),
        }
    }

    pub fn into_server(self) -> pb::wallet_service_server::WalletServiceServer<Self> {
        pb::wallet_service_server::WalletServiceServer::new(self)
    }

    fn wallets(&self) -> Result<&Arc<WalletService>, Status> {
        self.gateway.wallets.as_ref().ok_or_else(|| {
            precondition(
                "WALLETS_NOT_CONFIGURED",
                "gateway",
                "this gateway has no wallet operators ([[wallet_operator]])".to_owned(),
            )
        })
    }

    /// Admits a request that names a wallet (`wallet.*`, checked against
    /// its operator) with its other fields (`check_rest`, given the wallet's
    /// operator when it checked out).
    fn admit_wallet(
        &self,
        service: &WalletService,
        caller: &Identity,
        context: Option<&pb::RequestContext>,
        wallet: Option<&pb::WalletRef>,
        check_rest: impl FnOnce(&mut Violations, Option<&CheckedWallet>),
    ) -> Result<(OwnedSemaphorePermit, RequestContext, CheckedWallet), Status> {
        let gateway = &self.gateway;
        let store_id = context.map(|c| c.store_id.clone()).unwrap_or_default();
        let mut checked = None;
        let (permit, context) = gateway.admit(caller, context, gateway.clock.now(), |v| {
            checked = check_wallet(
                v.entries_mut(),
                service.wallets(),
                wallet_ref(wallet).as_ref(),
                &store_id,
            );
            check_rest(v, checked.as_ref());
        })?;
        let checked =
            checked.ok_or_else(|| Status::internal("validation passed without a wallet"))?;
        Ok((permit, context, checked))
    }

    /// The preamble `TopUp` and `Pay` share: the wallet and a positive amount
    /// within the operator's limits for `usage`, with the other fields.
    fn admit_amount(
        &self,
        service: &WalletService,
        caller: &Identity,
        (context, wallet, amount): (
            Option<&pb::RequestContext>,
            Option<&pb::WalletRef>,
            Option<&pb::Money>,
        ),
        usage: AmountUse,
        check_rest: impl FnOnce(&mut Violations),
    ) -> Result<(OwnedSemaphorePermit, RequestContext, CheckedWallet, i64), Status> {
        let mut checked_amount = None;
        let (permit, context, wallet) =
            self.admit_wallet(service, caller, context, wallet, |v, wallet| {
                let operator = wallet.map(|wallet| wallet.operator.as_ref());
                checked_amount =
                    v.positive_money("amount", amount)
                        .and_then(|(amount, currency)| {
                            check_amount(v.entries_mut(), amount, currency, operator, usage)
                        });
                check_rest(v);
            })?;
        let amount = checked_amount
            .ok_or_else(|| Status::internal("validation passed without a wallet or amount"))?;
        Ok((permit, context, wallet, amount))
    }
}

/// A wallet reference as the core reads it.
fn wallet_ref(wallet: Option<&pb::WalletRef>) -> Option<WalletRefInput> {
    wallet.map(|wallet| WalletRefInput {
        operator_id: wallet.wallet_operator_id.clone(),
        id: match &wallet.id {
            Some(pb::wallet_ref::Id::CardNumber(number)) => {
                Some(WalletId::CardNumber(number.clone()))
            }
            Some(pb::wallet_ref::Id::MemberBarcode(code)) => {
                Some(WalletId::MemberBarcode(code.clone()))
            }
            None => None,
        },
    })
}

fn check_pos_reference(v: &mut Violations, value: &str) {
    if value.len() > MAX_POS_REFERENCE_LEN || !value.bytes().all(|b| (0x20..=0x7E).contains(&b)) {
        v.add("pos_reference", "must be 0-40 printable ASCII characters");
    }
}

#[tonic::async_trait]
impl WalletRpc for WalletApi {
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
                let service = self.wallets()?;
                let mut card = None;
                let fields = (
                    message.context.as_ref(),
                    message.wallet.as_ref(),
                    message.amount.as_ref(),
                );
                let (_permit, context, wallet, amount_minor) = self.admit_amount(
                    service,
                    &caller,
                    fields,
                    AmountUse::TopUp,
                    |v| match &message.funding {
                        None => v.add("funding", "cash or card is required"),
                        Some(pb::top_up_request::Funding::Card(presented)) => {
                            card = read_card(v, "card", Some(presented));
                        }
                        Some(pb::top_up_request::Funding::Cash(_)) => {}
                    },
                )?;
                let answered = service
                    .top_up(TopUpInput {
                        context,
                        wallet,
                        amount_minor,
                        card,
                    })
                    .await
                    .map_err(|error| from_wallet_error(&error))?;
                respond(answered, |transaction| {
                    self.answers.top_up_response(transaction)
                })
            },
        ))
        .await
    }

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
                let service = self.wallets()?;
                let fields = (
                    message.context.as_ref(),
                    message.wallet.as_ref(),
                    message.amount.as_ref(),
                );
                let (_permit, context, wallet, amount_minor) =
                    self.admit_amount(service, &caller, fields, AmountUse::Payment, |v| {
                        check_pos_reference(v, &message.pos_reference);
                    })?;
                let answered = service
                    .pay(PayInput {
                        context,
                        wallet,
                        amount_minor,
                        pos_reference: message.pos_reference.clone(),
                    })
                    .await
                    .map_err(|error| from_wallet_error(&error))?;
                respond(answered, |transaction| {
                    self.answers.pay_response(transaction)
                })
            },
        ))
        .await
    }

    async fn refund(
        &self,
        request: Request<pb::WalletRefundRequest>,
    ) -> Result<Response<pb::WalletRefundResponse>, Status> {
        let caller = identity_of(&request)?;
        let message = request.into_inner();
        logged("WalletService/Refund", message.context.as_ref(), async {
            let service = self.wallets()?;
            let gateway = &self.gateway;
            let mut amount = None;
            let (_permit, context) = gateway.admit(
                &caller,
                message.context.as_ref(),
                gateway.clock.now(),
                |v| {
                    v.transaction_id("original_transaction_id", &message.original_transaction_id);
                    amount = v.positive_money("amount", message.amount.as_ref());
                    v.text("reason", &message.reason, MAX_REASON_LEN);
                },
            )?;
            let Some((amount, currency)) = amount else {
                return Err(Status::internal("validation passed without an amount"));
            };
            let amount_minor = i64::try_from(amount)
                .map_err(|_| invalid_field("amount.amount_minor", "too large"))?;
            let answered = service
                .refund(RefundInput {
                    context,
                    original_transaction_id: message.original_transaction_id.clone(),
                    amount_minor,
                    currency,
                    reason: message.reason.clone(),
                })
                .await
                .map_err(|error| from_wallet_error(&error))?;
            respond(answered, |refund| self.answers.refund_response(refund))
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
                let service = self.wallets()?;
                let (_permit, _context, wallet) = self.admit_wallet(
                    service,
                    &caller,
                    message.context.as_ref(),
                    message.wallet.as_ref(),
                    |_, _| {},
                )?;
                let balance = service
                    .get_balance(&wallet)
                    .await
                    .map_err(|error| from_wallet_error(&error))?;
                Ok(Response::new(view::balance(&balance)))
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
            let service = self.wallets()?;
            if !service.takes_cards() {
                return Err(precondition(
                    "CARDS_NOT_CONFIGURED",
                    "gateway",
                    "this gateway takes no card payments (no [card] configuration)".to_owned(),
                ));
            }
            let (mut card, mut step_minor) = (None, 0);
            let (_permit, context, wallet) = self.admit_wallet(
                service,
                &caller,
                message.context.as_ref(),
                message.wallet.as_ref(),
                |v, wallet| {
                    card = read_card(v, "card", message.card.as_ref());
                    match &message.auto_reload {
                        None => v.add("auto_reload", "is required"),
                        Some(settings) if settings.enabled => {
                            let operator = wallet.map(|wallet| wallet.operator.as_ref());
                            if let Some((amount, currency)) =
                                v.positive_money("auto_reload.step", settings.step.as_ref())
                            {
                                step_minor =
                                    check_step(v.entries_mut(), amount, currency, operator);
                            }
                        }
                        Some(_) => {}
                    }
                },
            )?;
            let card =
                card.ok_or_else(|| Status::internal("validation passed without a wallet or card"))?;
            let auto_reload = message
                .auto_reload
                .as_ref()
                .is_some_and(|settings| settings.enabled);
            let answered = service
                .link_card(LinkInput {
                    context,
                    wallet,
                    card,
                    auto_reload,
                    step_minor,
                })
                .await
                .map_err(|error| from_wallet_error(&error))?;
            respond(answered, |linked| self.answers.link_response(linked))
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
                let service = self.wallets()?;
                let (_permit, context, wallet) = self.admit_wallet(
                    service,
                    &caller,
                    message.context.as_ref(),
                    message.wallet.as_ref(),
                    |v, _| v.text("reason", &message.reason, MAX_REASON_LEN),
                )?;
                let answered = service
                    .unlink_card(UnlinkInput {
                        context,
                        wallet,
                        reason: message.reason.clone(),
                    })
                    .await
                    .map_err(|error| from_wallet_error(&error))?;
                respond(answered, ProtoWalletAnswers::unlink_response)
            },
        )
        .await
    }

    async fn get_wallet_transaction(
        &self,
        request: Request<pb::GetWalletTransactionRequest>,
    ) -> Result<Response<pb::GetWalletTransactionResponse>, Status> {
        use pb::get_wallet_transaction_request::Lookup;
        let caller = identity_of(&request)?;
        let message = request.into_inner();
        logged(
            "WalletService/GetWalletTransaction",
            message.context.as_ref(),
            async {
                let gateway = &self.gateway;
                let (_permit, context) = gateway.admit(
                    &caller,
                    message.context.as_ref(),
                    gateway.clock.now(),
                    |v| match &message.lookup {
                        Some(Lookup::TransactionId(id)) => {
                            v.transaction_id("transaction_id", id);
                        }
                        Some(Lookup::CreatedClientRequestId(id)) => {
                            v.request_id("created_client_request_id", id);
                        }
                        None => v.add(
                            "transaction_id",
                            "a transaction_id or created_client_request_id is required",
                        ),
                    },
                )?;
                let lookup = match &message.lookup {
                    Some(Lookup::TransactionId(id)) => TransactionLookup::Id(id.clone()),
                    Some(Lookup::CreatedClientRequestId(id)) => {
                        TransactionLookup::CreatedBy(id.clone())
                    }
                    None => return Err(Status::internal("validation passed without a lookup")),
                };
                let service =
                    self.gateway.wallets.as_ref().ok_or_else(|| {
                        Status::not_found("no such wallet transaction at this store")
                    })?;
                let transaction = service
                    .get_wallet_transaction(&context, &lookup)
                    .await
                    .map_err(|error| from_wallet_error(&error))?;
                Ok(Response::new(pb::GetWalletTransactionResponse {
                    transaction: Some(view::transaction(
                        &transaction,
                        self.answers.card_config.as_ref(),
                    )),
                }))
            },
        )
        .await
    }
}
