//! `BillPaymentService`: InquireBill, PayBill, CancelBill, GetBillPayment,
//! for batch and online billers.
//!
//! Each handler reads the protobuf request into the bill service's input
//! (wire-shape validation and admission here), makes one call to
//! [`BillService`], and turns its result into the answer message, or its
//! error into a status with google.rpc details. A replayed answer is the
//! stored bytes, decoded.

use std::sync::Arc;

use pb::bill_payment_service_server::BillPaymentService;
use posgate_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::idempotent::replay_stored;
use super::status::from_bill_error;
use super::{Gateway, logged};
use crate::access::{Identity, identity_of};
use crate::bill::view;
use crate::validate::MAX_REASON_LEN;
use posgate_core::bill::service::{CancelInput, InquireInput, PayInput, PaymentLookup};
use posgate_core::bill::{BillError, BillService};
use posgate_core::model::bill::BillPayment;
use posgate_core::model::idempotency::Answered;

/// The service, over the shared gateway state.
#[derive(Debug, Clone)]
pub struct BillPaymentApi {
    gateway: Arc<Gateway>,
}

impl BillPaymentApi {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self { gateway }
    }

    pub fn into_server(self) -> pb::bill_payment_service_server::BillPaymentServiceServer<Self> {
        pb::bill_payment_service_server::BillPaymentServiceServer::new(self)
    }

    fn bills(&self) -> &BillService {
        &self.gateway.bills
    }
}

/// The answer of a call: the new payment as its message, or the stored
/// answer of the first request under the key.
fn answer<M: prost::Message + Default>(
    answered: Result<Answered<BillPayment>, BillError>,
    message: impl FnOnce(&BillPayment) -> M,
) -> Result<Response<M>, Status> {
    match answered.map_err(|error| from_bill_error(&error))? {
        Answered::New(payment) => Ok(Response::new(message(&payment))),
        Answered::Replayed(stored) => replay_stored(&stored),
    }
}

#[tonic::async_trait]
impl BillPaymentService for BillPaymentApi {
    async fn inquire_bill(
        &self,
        request: Request<pb::InquireBillRequest>,
    ) -> Result<Response<pb::InquireBillResponse>, Status> {
        let caller = identity_of(&request)?;
        let request = request.into_inner();
        logged(
            "InquireBill",
            request.context.as_ref(),
            self.inquire_request(&caller, &request),
        )
        .await
    }

    async fn pay_bill(
        &self,
        request: Request<pb::PayBillRequest>,
    ) -> Result<Response<pb::PayBillResponse>, Status> {
        let caller = identity_of(&request)?;
        let request = request.into_inner();
        logged(
            "PayBill",
            request.context.as_ref(),
            self.pay_request(&caller, &request),
        )
        .await
    }

    async fn cancel_bill(
        &self,
        request: Request<pb::CancelBillRequest>,
    ) -> Result<Response<pb::CancelBillResponse>, Status> {
        let caller = identity_of(&request)?;
        let request = request.into_inner();
        logged(
            "CancelBill",
            request.context.as_ref(),
            self.cancel_request(&caller, &request),
        )
        .await
    }

    async fn get_bill_payment(
        &self,
        request: Request<pb::GetBillPaymentRequest>,
    ) -> Result<Response<pb::GetBillPaymentResponse>, Status> {
        let caller = identity_of(&request)?;
        let request = request.into_inner();
        logged(
            "GetBillPayment",
            request.context.as_ref(),
            self.get_request(&caller, &request),
        )
        .await
    }
}

impl BillPaymentApi {
    async fn inquire_request(
        &self,
        caller: &Identity,
        request: &pb::InquireBillRequest,
    ) -> Result<Response<pb::InquireBillResponse>, Status> {
        let now = self.gateway.clock.now();
        let mut slip = None;
        let (_permit, context) =
            self.gateway
                .admit(caller, request.context.as_ref(), now, |v| {
                    slip = Some(v.slip(request.slip.as_ref()));
                })?;
        let input = InquireInput {
            context,
            slip: slip.expect("admit ran the slip check"),
        };
        let bill = self
            .bills()
            .inquire_bill(input)
            .await
            .map_err(|error| from_bill_error(&error))?;
        Ok(Response::new(view::inquire_response(&bill)))
    }

    async fn pay_request(
        &self,
        caller: &Identity,
        request: &pb::PayBillRequest,
    ) -> Result<Response<pb::PayBillResponse>, Status> {
        let now = self.gateway.clock.now();
        let (mut slip, mut money) = (None, None);
        let (_permit, context) =
            self.gateway
                .admit(caller, request.context.as_ref(), now, |v| {
                    slip = Some(v.slip(request.slip.as_ref()));
                    money = v.positive_money("amount", request.amount.as_ref());
                })?;
        let (amount_minor, currency) = money.expect("admit checked the amount");
        let input = PayInput {
            context,
            slip: slip.expect("admit ran the slip check"),
            amount_minor,
            currency,
        };
        answer(self.bills().pay_bill(input).await, view::pay_response)
    }

    async fn cancel_request(
        &self,
        caller: &Identity,
        request: &pb::CancelBillRequest,
    ) -> Result<Response<pb::CancelBillResponse>, Status> {
        let now = self.gateway.clock.now();
        let (_permit, context) =
            self.gateway
                .admit(caller, request.context.as_ref(), now, |v| {
                    v.transaction_id("transaction_id", &request.transaction_id);
                    v.text("reason", &request.reason, MAX_REASON_LEN);
                })?;
        let input = CancelInput {
            context,
            transaction_id: request.transaction_id.clone(),
            reason: request.reason.clone(),
        };
        answer(self.bills().cancel_bill(input).await, view::cancel_response)
    }

    async fn get_request(
        &self,
        caller: &Identity,
        request: &pb::GetBillPaymentRequest,
    ) -> Result<Response<pb::GetBillPaymentResponse>, Status> {
        let now = self.gateway.clock.now();
        let (_permit, context) =
            self.gateway
                .admit(caller, request.context.as_ref(), now, |v| {
                    match &request.lookup {
                        None => v.add(
                            "lookup",
                            "is required: give transaction_id or paid_client_request_id",
                        ),
                        Some(pb::get_bill_payment_request::Lookup::TransactionId(id)) => {
                            v.transaction_id("transaction_id", id);
                        }
                        Some(pb::get_bill_payment_request::Lookup::PaidClientRequestId(id)) => {
                            v.request_id("paid_client_request_id", id);
                        }
                    }
                })?;
        let lookup = match request.lookup.as_ref().expect("validated above") {
            pb::get_bill_payment_request::Lookup::TransactionId(id) => {
                PaymentLookup::Id(id.clone())
            }
            pb::get_bill_payment_request::Lookup::PaidClientRequestId(id) => {
                PaymentLookup::PaidBy(id.clone())
            }
        };
        let payment = self
            .bills()
            .get_bill_payment(&context, lookup)
            .await
            .map_err(|error| from_bill_error(&error))?;
        Ok(Response::new(view::get_response(&payment)))
    }
}
