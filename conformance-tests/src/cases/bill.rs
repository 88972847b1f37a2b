//! Bill collection: inquire, pay, read back, cancel, past due, store scoping.

use anyhow::{Context as _, ensure};
use chrono::NaiveDate;
use posgate_proto::v1 as pb;
use tonic::Code;

use super::Case;
use crate::check;
use crate::client::{Ctx, DUE_IN_DAYS, PAST_DUE_DAYS, today};

/// Most days a store's business date may lie from today's UTC date: time
/// zones move it by one, a cutoff by one more.
const MAX_BUSINESS_DATE_SKEW_DAYS: i64 = 2;

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "bill.inquire-tw",
            "InquireBill reads a Taiwanese 3-segment slip: agency, bill number, due date, period and amount echoed",
            |ctx| Box::pin(inquire_tw(ctx)),
        ),
        Case::new(
            "bill.inquire-jp",
            "InquireBill reads a Japanese GS1-128 slip: company code, reference, due date and yen amount echoed",
            |ctx| Box::pin(inquire_jp(ctx)),
        ),
        Case::new(
            "bill.pay-tw",
            "PayBill records a Taiwanese bill as PAID with a v7 UUID, the amount, a fee and the caller's identity",
            |ctx| Box::pin(pay_tw(ctx)),
        ),
        Case::new(
            "bill.pay-jp",
            "PayBill records a Japanese bill in JPY (exponent 0) as PAID",
            |ctx| Box::pin(pay_jp(ctx)),
        ),
        Case::new(
            "bill.get-by-transaction-id",
            "GetBillPayment by transaction_id returns the payment PayBill returned",
            |ctx| Box::pin(get_by_transaction_id(ctx)),
        ),
        Case::new(
            "bill.get-by-paid-client-request-id",
            "GetBillPayment by paid_client_request_id finds the payment made with that key",
            |ctx| Box::pin(get_by_paid_key(ctx)),
        ),
        Case::new(
            "bill.get-unknown",
            "GetBillPayment of an unknown transaction_id or paid_client_request_id is NOT_FOUND",
            |ctx| Box::pin(get_unknown(ctx)),
        ),
        Case::new(
            "bill.cancel-then-get",
            "CancelBill the same day makes the payment CANCELLED with cancelled_at, and GetBillPayment shows it",
            |ctx| Box::pin(cancel_then_get(ctx)),
        ),
        Case::new(
            "bill.cancel-twice",
            "Cancelling a cancelled payment with a new key is FAILED_PRECONDITION (ALREADY_CANCELLED)",
            |ctx| Box::pin(cancel_twice(ctx)),
        ),
        Case::new(
            "bill.cancel-unknown",
            "CancelBill of an unknown transaction is NOT_FOUND and stores nothing",
            |ctx| Box::pin(cancel_unknown(ctx)),
        ),
        Case::new(
            "bill.past-due-tw",
            "A past-due Taiwanese slip of a biller refusing late payment is FAILED_PRECONDITION (BILL_PAST_DUE) and stores nothing",
            |ctx| Box::pin(past_due_tw(ctx)),
        ),
        Case::new(
            "bill.past-due-jp",
            "A past-due Japanese slip of a biller refusing late payment is FAILED_PRECONDITION (BILL_PAST_DUE) and stores nothing",
            |ctx| Box::pin(past_due_jp(ctx)),
        ),
        Case::new(
            "bill.other-store-cannot-see",
            "Another store can neither read nor cancel a payment (NOT_FOUND); it stays PAID",
            |ctx| Box::pin(other_store_cannot_see(ctx)),
        ),
        Case::new(
            "bill.paid-key-scoped-to-terminal",
            "GetBillPayment by paid_client_request_id from another terminal of the store is NOT_FOUND",
            |ctx| Box::pin(paid_key_scoped_to_terminal(ctx)),
        ),
    ]
}

/// Pays a fresh Taiwanese bill, checking the answer; returns request and payment.
pub(super) async fn paid_tw(ctx: &Ctx) -> anyhow::Result<(pb::PayBillRequest, pb::BillPayment)> {
    let request = ctx.tw_pay_request();
    let answer = check::ok("PayBill", ctx.pay(&request).await)?;
    check::not_replayed("PayBill", &answer)?;
    let payment = answer
        .into_inner()
        .payment
        .context("PayBill answered without a payment")?;
    check_new_payment(&request, &payment)?;
    Ok((request, payment))
}

/// The checks every fresh payment must pass.
fn check_new_payment(
    request: &pb::PayBillRequest,
    payment: &pb::BillPayment,
) -> anyhow::Result<()> {
    let context = request
        .context
        .as_ref()
        .context("request without context")?;
    check_transaction_id(&payment.transaction_id)?;
    ensure!(
        payment.status == i32::from(pb::BillPaymentStatus::Paid),
        "status is {:?}, expected PAID",
        payment.status()
    );
    let bill = payment.bill.as_ref().context("payment without bill")?;
    ensure!(
        !bill.biller_id.is_empty(),
        "payment's bill has no biller_id"
    );
    ensure!(
        bill.amount == request.amount,
        "bill amount {:?} is not the cash collected {:?}",
        bill.amount,
        request.amount
    );
    let fee = payment.fee.as_ref().context("payment without fee")?;
    let currency = request.amount.as_ref().map(|m| m.currency.as_str());
    ensure!(
        fee.amount_minor >= 0 && Some(fee.currency.as_str()) == currency,
        "fee {fee:?} must be zero or positive in the bill's currency"
    );
    ensure!(
        (
            payment.store_id.as_str(),
            payment.terminal_id.as_str(),
            payment.operator_id.as_str()
        ) == (
            context.store_id.as_str(),
            context.terminal_id.as_str(),
            context.operator_id.as_str()
        ),
        "payment names store/terminal/operator {}/{}/{}, the request {}/{}/{}",
        payment.store_id,
        payment.terminal_id,
        payment.operator_id,
        context.store_id,
        context.terminal_id,
        context.operator_id
    );
    ensure!(
        payment.client_request_id == context.client_request_id,
        "payment's client_request_id {:?} is not the request's {:?}",
        payment.client_request_id,
        context.client_request_id
    );
    ensure!(payment.paid_at.is_some(), "payment without paid_at");
    ensure!(
        payment.cancelled_at.is_none(),
        "a new payment has cancelled_at"
    );
    check_business_date(&payment.business_date)
}

/// A lower-case hyphenated v7 UUID, as the contract promises.
fn check_transaction_id(id: &str) -> anyhow::Result<()> {
    let parsed = uuid::Uuid::try_parse(id)
        .with_context(|| format!("transaction_id {id:?} is not a UUID"))?;
    ensure!(
        id.len() == 36 && id == parsed.hyphenated().to_string(),
        "transaction_id {id:?} is not lower-case hyphenated"
    );
    ensure!(
        parsed.get_version_num() == 7,
        "transaction_id {id:?} is UUID version {}, expected 7",
        parsed.get_version_num()
    );
    Ok(())
}

/// A "YYYY-MM-DD" date near today.
fn check_business_date(text: &str) -> anyhow::Result<()> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .with_context(|| format!("business_date {text:?} is not YYYY-MM-DD"))?;
    ensure!(
        (date - today()).num_days().abs() <= MAX_BUSINESS_DATE_SKEW_DAYS,
        "business_date {text} is far from today ({})",
        today()
    );
    Ok(())
}

fn slip_message(barcodes: Vec<String>) -> pb::BillSlip {
    pb::BillSlip {
        barcodes,
        biller_id: String::new(),
    }
}

async fn inquire_tw(ctx: &Ctx) -> anyhow::Result<()> {
    let slip = ctx.tw_slip(DUE_IN_DAYS);
    let mut request = pb::InquireBillRequest {
        context: Some(ctx.tw_context()),
        slip: Some(slip_message(slip.barcodes().to_vec())),
    };
    let answer = check::ok("InquireBill", ctx.inquire(&request).await)?.into_inner();
    let bill = answer.bill.context("InquireBill answered without a bill")?;
    ensure!(!bill.biller_id.is_empty(), "bill has no biller_id");
    ensure!(
        bill.agency_code == slip.agency_code,
        "agency_code {:?}, slip {:?}",
        bill.agency_code,
        slip.agency_code
    );
    ensure!(
        bill.bill_reference == slip.bill_number,
        "bill_reference {:?}, slip {:?}",
        bill.bill_reference,
        slip.bill_number
    );
    let due_date = slip.due_date.format("%Y-%m-%d").to_string();
    ensure!(
        bill.due_date == due_date,
        "due_date {:?}, slip {due_date:?}",
        bill.due_date
    );
    ensure!(
        bill.period == slip.period,
        "period {:?}, slip {:?}",
        bill.period,
        slip.period
    );
    let amount = Some(ctx.tw_amount(&slip));
    ensure!(
        bill.amount == amount,
        "amount {:?}, slip {amount:?}",
        bill.amount
    );
    ensure!(
        !bill.late,
        "a bill due in {DUE_IN_DAYS} days is marked late"
    );
    check_business_date(&answer.business_date)?;
    // Naming the slip's own biller is accepted and changes nothing.
    request.context = Some(ctx.tw_context());
    request
        .slip
        .as_mut()
        .context("slip")?
        .biller_id
        .clone_from(&bill.biller_id);
    let again = check::ok(
        "InquireBill with slip.biller_id",
        ctx.inquire(&request).await,
    )?
    .into_inner();
    ensure!(
        again.bill == Some(bill),
        "naming the biller changed the bill: {:?}",
        again.bill
    );
    Ok(())
}

async fn inquire_jp(ctx: &Ctx) -> anyhow::Result<()> {
    let slip = ctx.jp_slip(DUE_IN_DAYS);
    let request = pb::InquireBillRequest {
        context: Some(ctx.jp_context()),
        slip: Some(slip_message(vec![slip.barcode()])),
    };
    let answer = check::ok("InquireBill", ctx.inquire(&request).await)?.into_inner();
    let bill = answer.bill.context("InquireBill answered without a bill")?;
    ensure!(!bill.biller_id.is_empty(), "bill has no biller_id");
    ensure!(
        bill.agency_code == slip.company_code,
        "agency_code {:?}, slip {:?}",
        bill.agency_code,
        slip.company_code
    );
    ensure!(
        bill.bill_reference == slip.free_field,
        "bill_reference {:?}, slip {:?}",
        bill.bill_reference,
        slip.free_field
    );
    let due_date = slip.due_date.format("%Y-%m-%d").to_string();
    ensure!(
        bill.due_date == due_date,
        "due_date {:?}, slip {due_date:?}",
        bill.due_date
    );
    ensure!(
        bill.period.is_empty(),
        "a Japanese slip has no period, got {:?}",
        bill.period
    );
    let amount = Some(Ctx::jp_amount(&slip));
    ensure!(
        bill.amount == amount,
        "amount {:?}, slip {amount:?} (JPY has exponent 0)",
        bill.amount
    );
    ensure!(
        !bill.late,
        "a bill due in {DUE_IN_DAYS} days is marked late"
    );
    check_business_date(&answer.business_date)
}

async fn pay_tw(ctx: &Ctx) -> anyhow::Result<()> {
    paid_tw(ctx).await.map(|_| ())
}

async fn pay_jp(ctx: &Ctx) -> anyhow::Result<()> {
    let request = ctx.jp_pay_request();
    let answer = check::ok("PayBill", ctx.pay(&request).await)?;
    check::not_replayed("PayBill", &answer)?;
    let payment = answer
        .into_inner()
        .payment
        .context("PayBill answered without a payment")?;
    check_new_payment(&request, &payment)?;
    let currency = payment
        .bill
        .as_ref()
        .and_then(|b| b.amount.as_ref())
        .map(|m| m.currency.clone());
    ensure!(
        currency.as_deref() == Some("JPY"),
        "a Japanese bill was paid in {currency:?}"
    );
    Ok(())
}

async fn get_by_transaction_id(ctx: &Ctx) -> anyhow::Result<()> {
    let (_, payment) = paid_tw(ctx).await?;
    let read = check::ok(
        "GetBillPayment",
        ctx.get(&ctx.tw_get_by_id(&payment.transaction_id)).await,
    )?;
    ensure!(
        read.get_ref().payment.as_ref() == Some(&payment),
        "GetBillPayment returned {:?}\nPayBill returned {payment:?}",
        read.get_ref().payment
    );
    Ok(())
}

async fn get_by_paid_key(ctx: &Ctx) -> anyhow::Result<()> {
    let (request, payment) = paid_tw(ctx).await?;
    let context = request.context.context("context")?;
    let read = check::ok(
        "GetBillPayment",
        ctx.get(&Ctx::get_by_paid_key(&context)).await,
    )?;
    ensure!(
        read.get_ref().payment.as_ref() == Some(&payment),
        "GetBillPayment returned {:?}\nPayBill returned {payment:?}",
        read.get_ref().payment
    );
    Ok(())
}

async fn get_unknown(ctx: &Ctx) -> anyhow::Result<()> {
    let unknown_id = uuid::Uuid::now_v7().to_string();
    check::code(
        "GetBillPayment of an unknown id",
        Code::NotFound,
        ctx.get(&ctx.tw_get_by_id(&unknown_id)).await,
    )?;
    let never_used = ctx.tw_context();
    check::code(
        "GetBillPayment of an unused key",
        Code::NotFound,
        ctx.get(&Ctx::get_by_paid_key(&never_used)).await,
    )?;
    Ok(())
}

/// Cancels `payment` and checks the answer; returns the request and the cancelled payment.
pub(super) async fn cancelled(
    ctx: &Ctx,
    payment: &pb::BillPayment,
) -> anyhow::Result<(pb::CancelBillRequest, pb::BillPayment)> {
    let request = ctx.tw_cancel_request(&payment.transaction_id);
    let answer = check::ok("CancelBill", ctx.cancel(&request).await)?;
    check::not_replayed("CancelBill", &answer)?;
    let after = answer
        .into_inner()
        .payment
        .context("CancelBill answered without a payment")?;
    ensure!(
        after.transaction_id == payment.transaction_id,
        "CancelBill answered about {:?}",
        after.transaction_id
    );
    ensure!(
        after.status == i32::from(pb::BillPaymentStatus::Cancelled),
        "status after CancelBill is {:?}",
        after.status()
    );
    ensure!(
        after.cancelled_at.is_some(),
        "a cancelled payment has no cancelled_at"
    );
    ensure!(
        after.bill == payment.bill
            && after.paid_at == payment.paid_at
            && after.client_request_id == payment.client_request_id,
        "cancelling changed the payment's bill, paid_at or key:\nbefore {payment:?}\nafter  {after:?}"
    );
    Ok((request, after))
}

async fn cancel_then_get(ctx: &Ctx) -> anyhow::Result<()> {
    let (_, payment) = paid_tw(ctx).await?;
    let (_, after) = cancelled(ctx, &payment).await?;
    let read = check::ok(
        "GetBillPayment",
        ctx.get(&ctx.tw_get_by_id(&payment.transaction_id)).await,
    )?;
    ensure!(
        read.get_ref().payment.as_ref() == Some(&after),
        "GetBillPayment returned {:?}\nCancelBill returned {after:?}",
        read.get_ref().payment
    );
    Ok(())
}

async fn cancel_twice(ctx: &Ctx) -> anyhow::Result<()> {
    let (_, payment) = paid_tw(ctx).await?;
    let (_, after) = cancelled(ctx, &payment).await?;
    let second = ctx.tw_cancel_request(&payment.transaction_id);
    check::precondition(
        "second CancelBill",
        "ALREADY_CANCELLED",
        ctx.cancel(&second).await,
    )?;
    let read = check::ok(
        "GetBillPayment",
        ctx.get(&ctx.tw_get_by_id(&payment.transaction_id)).await,
    )?;
    ensure!(
        read.get_ref().payment.as_ref() == Some(&after),
        "the refused cancel changed the payment: {:?}",
        read.get_ref().payment
    );
    Ok(())
}

async fn cancel_unknown(ctx: &Ctx) -> anyhow::Result<()> {
    let request = ctx.tw_cancel_request(&uuid::Uuid::now_v7().to_string());
    check::code(
        "CancelBill of an unknown id",
        Code::NotFound,
        ctx.cancel(&request).await,
    )?;
    // Nothing was stored under the key: it can be used for a payment.
    let mut pay = ctx.tw_pay_request();
    pay.context.clone_from(&request.context);
    let answer = check::ok("PayBill with the refused cancel's key", ctx.pay(&pay).await)?;
    check::not_replayed("PayBill with the refused cancel's key", &answer)
}

/// Inquiry and payment of `request`'s slip are refused as past due, and the
/// payment's key finds nothing afterwards.
async fn refused_past_due(ctx: &Ctx, request: &pb::PayBillRequest) -> anyhow::Result<()> {
    let inquire = pb::InquireBillRequest {
        context: Some(pb::RequestContext {
            client_request_id: Ctx::new_key(),
            ..request.context.clone().context("context")?
        }),
        slip: request.slip.clone(),
    };
    check::precondition("InquireBill", "BILL_PAST_DUE", ctx.inquire(&inquire).await)?;
    check::precondition("PayBill", "BILL_PAST_DUE", ctx.pay(request).await)?;
    let context = request.context.as_ref().context("context")?;
    check::code(
        "GetBillPayment by the refused payment's key",
        Code::NotFound,
        ctx.get(&Ctx::get_by_paid_key(context)).await,
    )?;
    Ok(())
}

async fn past_due_tw(ctx: &Ctx) -> anyhow::Result<()> {
    let slip = ctx.tw_slip(-PAST_DUE_DAYS);
    let request = pb::PayBillRequest {
        context: Some(ctx.tw_context()),
        slip: Some(slip_message(slip.barcodes().to_vec())),
        amount: Some(ctx.tw_amount(&slip)),
    };
    refused_past_due(ctx, &request).await
}

async fn past_due_jp(ctx: &Ctx) -> anyhow::Result<()> {
    let slip = ctx.jp_slip(-PAST_DUE_DAYS);
    let request = pb::PayBillRequest {
        context: Some(ctx.jp_context()),
        slip: Some(slip_message(vec![slip.barcode()])),
        amount: Some(Ctx::jp_amount(&slip)),
    };
    refused_past_due(ctx, &request).await
}

async fn other_store_cannot_see(ctx: &Ctx) -> anyhow::Result<()> {
    let (_, payment) = paid_tw(ctx).await?;
    let other_store = ctx.context_at(&ctx.target.jp_store_id, &ctx.target.terminal_id);
    let get = pb::GetBillPaymentRequest {
        context: Some(other_store.clone()),
        lookup: Some(pb::get_bill_payment_request::Lookup::TransactionId(
            payment.transaction_id.clone(),
        )),
    };
    check::code(
        "GetBillPayment from another store",
        Code::NotFound,
        ctx.get(&get).await,
    )?;
    let cancel = pb::CancelBillRequest {
        context: Some(other_store),
        ..ctx.tw_cancel_request(&payment.transaction_id)
    };
    check::code(
        "CancelBill from another store",
        Code::NotFound,
        ctx.cancel(&cancel).await,
    )?;
    let read = check::ok(
        "GetBillPayment",
        ctx.get(&ctx.tw_get_by_id(&payment.transaction_id)).await,
    )?;
    ensure!(
        read.get_ref().payment.as_ref() == Some(&payment),
        "after another store's refused cancel the payment is {:?}",
        read.get_ref().payment
    );
    Ok(())
}

async fn paid_key_scoped_to_terminal(ctx: &Ctx) -> anyhow::Result<()> {
    let (request, _) = paid_tw(ctx).await?;
    let context = request.context.context("context")?;
    let from_other_terminal = pb::RequestContext {
        terminal_id: ctx.target.other_terminal_id(),
        ..context
    };
    check::code(
        "GetBillPayment by paid key from another terminal",
        Code::NotFound,
        ctx.get(&Ctx::get_by_paid_key(&from_other_terminal)).await,
    )?;
    Ok(())
}
