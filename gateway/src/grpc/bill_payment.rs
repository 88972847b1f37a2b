//! `BillPaymentService`: InquireBill, PayBill, CancelBill, GetBillPayment.
//! Each RPC: admission, validation of every field, the idempotency check,
//! the domain plan, one atomic commit, the answer. Online billers are also
//! asked and notified in real time ([`super::bill_online`]).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use pb::bill_payment_service_server::BillPaymentService;
use posgate_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::bill_online;
use super::idempotent::{Commit, Committed, commit, prior_answer};
use super::status::{from_bill_error, from_store_error, invalid_argument, invalid_field};
use super::validate::{MAX_REASON_LEN, Violations};
use super::{Gateway, key_of, logged};
use crate::access::{Identity, identity_of};
use crate::bill::{self, BillError, ReadBill, SlipInput};
use posgate_core::model::IdempotencyKey;
use posgate_core::model::RequestContext;
use posgate_core::model::business_day::StoreConfig;
use posgate_core::model::business_day::{BusinessCalendar, format_date};
use posgate_core::model::idempotency::FingerprintBuilder;
use posgate_core::ports::db::{Change, TransactionRecord, TransactionStatus};

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

    fn store_config(&self, request_context: &RequestContext) -> &StoreConfig {
        self.gateway.store_config(&request_context.store_id)
    }

    fn read<'a>(
        &'a self,
        request_context: &RequestContext,
        slip: &SlipInput,
        now: DateTime<Utc>,
    ) -> Result<ReadBill<'a>, Status> {
        bill::read_bill(
            &self.gateway.billers,
            self.store_config(request_context),
            slip,
            now,
        )
        .map_err(|error| from_bill_error(&error))
    }
}

fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).expect("nanoseconds are below 1e9"),
    }
}

fn bill_message(bill: &ReadBill<'_>) -> pb::Bill {
    pb::Bill {
        biller_id: bill.biller.id.clone(),
        biller_name: bill.biller.name.clone(),
        agency_code: bill.slip.agency_code.clone(),
        bill_reference: bill.slip.bill_reference.clone(),
        due_date: if bill.slip.has_due_date() {
            format_date(bill.slip.due_date)
        } else {
            String::new()
        },
        amount: Some(pb::Money {
            amount_minor: i64::try_from(bill.amount_minor).expect("amounts are bounded"),
            currency: bill.biller.currency.code.to_owned(),
        }),
        period: bill.slip.period.clone().unwrap_or_default(),
        late: bill.late,
    }
}

/// The API's view of a stored payment.
pub(crate) fn payment_message(record: &TransactionRecord, biller_name: &str) -> pb::BillPayment {
    let money = |amount_minor: i64| {
        Some(pb::Money {
            amount_minor,
            currency: record.currency.clone(),
        })
    };
    pb::BillPayment {
        transaction_id: record.id.clone(),
        status: match record.status {
            TransactionStatus::Paid => pb::BillPaymentStatus::Paid,
            TransactionStatus::Cancelled => pb::BillPaymentStatus::Cancelled,
            // The bill join only finds bill payments, which have no card states.
            _ => pb::BillPaymentStatus::Unspecified,
        }
        .into(),
        bill: Some(pb::Bill {
            biller_id: record.bill.biller_id.clone(),
            biller_name: biller_name.to_owned(),
            agency_code: record.bill.agency_code.clone(),
            bill_reference: record.bill.bill_reference.clone(),
            due_date: record.bill.due_date.map(format_date).unwrap_or_default(),
            amount: money(record.amount_minor),
            period: record.bill.period.clone(),
            late: record.bill.late,
        }),
        fee: money(record.fee_minor),
        business_date: format_date(record.business_date),
        store_id: record.store_id.clone(),
        terminal_id: record.terminal_id.clone(),
        operator_id: record.operator_id.clone(),
        client_request_id: record.client_request_id.clone(),
        paid_at: Some(timestamp(record.created_at)),
        cancelled_at: record.cancelled_at.map(timestamp),
    }
}

/// The fields a `PayBill` retry must repeat exactly (the key fields and
/// `pos_timestamp` are not compared).
fn pay_fingerprint(request: &pb::PayBillRequest) -> posgate_core::model::RequestFingerprint {
    let context = request.context.clone().unwrap_or_default();
    let slip = request.slip.clone().unwrap_or_default();
    let amount = request.amount.clone().unwrap_or_default();
    let barcodes: Vec<&[u8]> = slip.barcodes.iter().map(String::as_bytes).collect();
    FingerprintBuilder::new("PayBill")
        .value("context.operator_id", &context.operator_id)
        .field("slip.barcodes", &barcodes)
        .value("slip.biller_id", &slip.biller_id)
        .value("amount.amount_minor", amount.amount_minor.to_be_bytes())
        .value("amount.currency", &amount.currency)
        .finish()
}

fn cancel_fingerprint(request: &pb::CancelBillRequest) -> posgate_core::model::RequestFingerprint {
    let context = request.context.clone().unwrap_or_default();
    FingerprintBuilder::new("CancelBill")
        .value("context.operator_id", &context.operator_id)
        .value("transaction_id", &request.transaction_id)
        .value("reason", &request.reason)
        .finish()
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
            self.inquire(&caller, &request),
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
            self.get(&caller, request.clone()),
        )
        .await
    }
}

impl BillPaymentApi {
    async fn inquire(
        &self,
        caller: &Identity,
        request: &pb::InquireBillRequest,
    ) -> Result<Response<pb::InquireBillResponse>, Status> {
        let now = self.gateway.clock.now();
        let mut slip = None;
        let (_permit, request_context) =
            self.gateway
                .admit(caller, request.context.as_ref(), now, |v| {
                    slip = Some(v.slip(request.slip.as_ref()));
                })?;
        let slip = slip.expect("admit ran the slip check");
        let bill = self.read(&request_context, &slip, now)?;
        let mut message = bill_message(&bill);
        if let Some(online) = self.gateway.online_billers.get(&bill.biller.id) {
            // The biller is the authority on amount and due date.
            let remote = bill_online::inquire(
                online,
                &bill,
                &request_context.store_id,
                &request_context.terminal_id,
            )
            .await?;
            message.amount = Some(pb::Money {
                amount_minor: remote.amount.amount_minor,
                currency: remote.amount.currency,
            });
            if let Some(due_date) = remote.due_date {
                message.due_date = due_date;
            }
        }
        let business_date =
            BusinessCalendar::from(self.store_config(&request_context)).business_date(now);
        Ok(Response::new(pb::InquireBillResponse {
            bill: Some(message),
            business_date: format_date(business_date),
        }))
    }

    async fn pay_request(
        &self,
        caller: &Identity,
        request: &pb::PayBillRequest,
    ) -> Result<Response<pb::PayBillResponse>, Status> {
        let now = self.gateway.clock.now();
        let (mut slip, mut money) = (None, None);
        let (_permit, request_context) =
            self.gateway
                .admit(caller, request.context.as_ref(), now, |v| {
                    slip = Some(v.slip(request.slip.as_ref()));
                    money = v.positive_money("amount", request.amount.as_ref());
                })?;
        let slip = slip.expect("admit ran the slip check");
        let money = money.expect("admit checked the amount");
        self.pay(&request_context, request, &slip, money, now).await
    }

    async fn cancel_request(
        &self,
        caller: &Identity,
        request: &pb::CancelBillRequest,
    ) -> Result<Response<pb::CancelBillResponse>, Status> {
        let now = self.gateway.clock.now();
        let (_permit, request_context) =
            self.gateway
                .admit(caller, request.context.as_ref(), now, |v| {
                    v.transaction_id("transaction_id", &request.transaction_id);
                    v.text("reason", &request.reason, MAX_REASON_LEN);
                })?;
        self.cancel(&request_context, request, now).await
    }

    async fn get(
        &self,
        caller: &Identity,
        request: pb::GetBillPaymentRequest,
    ) -> Result<Response<pb::GetBillPaymentResponse>, Status> {
        let now = self.gateway.clock.now();
        let (_permit, request_context) =
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
        let transaction_id = match request.lookup.expect("validated above") {
            pb::get_bill_payment_request::Lookup::TransactionId(id) => id,
            pb::get_bill_payment_request::Lookup::PaidClientRequestId(client_request_id) => {
                let key = IdempotencyKey {
                    client_request_id,
                    ..key_of(&request_context)
                };
                let answer = self
                    .gateway
                    .db
                    .answer(&key)
                    .await
                    .map_err(|error| from_store_error(&error))?;
                match answer {
                    Some(answer) if answer.fingerprint.operation == "PayBill" => {
                        answer.transaction_id
                    }
                    _ => {
                        return Err(Status::not_found(
                            "this terminal made no bill payment with that client_request_id",
                        ));
                    }
                }
            }
        };
        let record = self.find_payment(&request_context, &transaction_id).await?;
        Ok(Response::new(pb::GetBillPaymentResponse {
            payment: Some(self.payment_view(&record)),
        }))
    }

    async fn pay(
        &self,
        request_context: &RequestContext,
        request: &pb::PayBillRequest,
        slip: &SlipInput,
        (amount_minor, currency): (u64, posgate_core::model::money::Currency),
        now: DateTime<Utc>,
    ) -> Result<Response<pb::PayBillResponse>, Status> {
        let key = key_of(request_context);
        let fingerprint = pay_fingerprint(request);
        if let Some(answer) = self
            .gateway
            .db
            .answer(&key)
            .await
            .map_err(|error| from_store_error(&error))?
        {
            return bill_online::replay_or_pending(&answer, &fingerprint, &key.client_request_id);
        }
        let mut bill = self.read(request_context, slip, now)?;
        if let Some(online) = self.gateway.online_billers.get(&bill.biller.id).cloned() {
            if currency != bill.biller.currency {
                return Err(invalid_field(
                    "amount.currency",
                    format!(
                        "biller {} is paid in {}, not {}",
                        bill.biller.id, bill.biller.currency.code, currency.code
                    ),
                ));
            }
            // The biller's amount rules (checked by bill_online::pay); the slip's is advisory.
            bill.amount_minor = amount_minor;
            bill::check_fee(bill.biller, amount_minor).map_err(|error| from_bill_error(&error))?;
            let plan = bill::plan_payment(
                &bill,
                self.store_config(request_context),
                request_context,
                uuid::Uuid::now_v7().to_string(),
                now,
            );
            return bill_online::pay(
                &self.gateway,
                &online,
                &bill,
                plan.record,
                key,
                fingerprint,
                amount_minor,
            )
            .await;
        }
        let mut violations = Violations::default();
        if currency != bill.biller.currency {
            violations.add(
                "amount.currency",
                format!(
                    "biller {} is paid in {}, not {}",
                    bill.biller.id, bill.biller.currency.code, currency.code
                ),
            );
        } else if amount_minor != bill.amount_minor {
            violations.add(
                "amount.amount_minor",
                format!(
                    "cash collected ({amount_minor}) must equal the slip's amount ({})",
                    bill.amount_minor
                ),
            );
        }
        violations
            .finish()
            .map_err(|violations| invalid_argument(&violations))?;
        let transaction_id = uuid::Uuid::now_v7().to_string();
        let plan = bill::plan_payment(
            &bill,
            self.store_config(request_context),
            request_context,
            transaction_id.clone(),
            now,
        );
        let response = pb::PayBillResponse {
            payment: Some(payment_message(&plan.record, &bill.biller.name)),
        };
        let committed = commit(
            &self.gateway,
            Commit {
                key,
                fingerprint,
                transaction_id,
                change: Change::Create(Box::new(plan.record)),
                lines: plan.lines,
                event: plan.event,
                response,
                claims_slip: !bill.biller.allow_repeat_payment,
            },
        )
        .await?;
        match committed {
            Committed::Answer(response) => Ok(response),
            Committed::StatusMismatch(_) => Err(Status::internal(
                "a new payment cannot meet a status mismatch",
            )),
        }
    }

    async fn cancel(
        &self,
        request_context: &RequestContext,
        request: &pb::CancelBillRequest,
        now: DateTime<Utc>,
    ) -> Result<Response<pb::CancelBillResponse>, Status> {
        let key = key_of(request_context);
        let fingerprint = cancel_fingerprint(request);
        if let Some(replayed) = prior_answer(&self.gateway, &key, &fingerprint).await? {
            return Ok(replayed);
        }
        let payment = self
            .find_payment(request_context, &request.transaction_id)
            .await?;
        let plan = bill::plan_cancel(
            &payment,
            self.store_config(request_context),
            request_context,
            request.reason.trim(),
            now,
        )
        .map_err(|error| from_bill_error(&error))?;
        if let Some(online) = self.gateway.online_billers.get(&payment.partner_id) {
            if payment.status != TransactionStatus::Paid {
                return Err(super::status::precondition(
                    "NOT_PAID",
                    "transaction_id",
                    format!(
                        "bill payment {} is {}, not paid: nothing to cancel",
                        payment.id,
                        payment.status.as_str()
                    ),
                ));
            }
            bill_online::cancel(online, &payment).await?;
        }
        let response = pb::CancelBillResponse {
            payment: Some(self.payment_view(&plan.record)),
        };
        let committed = commit(
            &self.gateway,
            Commit {
                key,
                fingerprint,
                transaction_id: payment.id.clone(),
                change: Change::Transition(plan.change),
                lines: plan.lines,
                event: plan.event,
                response,
                claims_slip: false,
            },
        )
        .await?;
        match committed {
            Committed::Answer(response) => Ok(response),
            // Another cancel of the same payment won the race.
            Committed::StatusMismatch(_) => {
                Err(from_bill_error(&BillError::AlreadyCancelled(payment.id)))
            }
        }
    }

    async fn find_payment(
        &self,
        request_context: &RequestContext,
        transaction_id: &str,
    ) -> Result<TransactionRecord, Status> {
        self.gateway
            .db
            .transaction(&request_context.store_id, transaction_id)
            .await
            .map_err(|error| from_store_error(&error))?
            .ok_or_else(|| from_bill_error(&BillError::NotFound(transaction_id.to_owned())))
    }

    fn payment_view(&self, record: &TransactionRecord) -> pb::BillPayment {
        let name = self
            .gateway
            .billers
            .by_id(&record.partner_id)
            .map_or("", |biller| biller.name.as_str());
        payment_message(record, name)
    }
}
