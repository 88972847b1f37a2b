//! Online billers: InquireBill asks the biller, PayBill notifies it,
//! CancelBill cancels at it; declines name their field and store nothing.
//! Run when the target names an online biller (`--online-agency-code`)
//! backed by `posgate sim biller` with `config/biller-sim.example.toml`'s
//! bills; every case leaves the biller's books as it found them (a paid
//! bill is cancelled again), so the suite can run repeatedly.

use anyhow::{Context as _, ensure};
use posgate_proto::v1 as pb;

use super::Case;
use crate::check;
use crate::client::{Ctx, DUE_IN_DAYS, today};
use crate::slip::{TwSlip, roc_yymm};

/// An open bill of the example biller simulator: NT$500.00.
const OPEN_BILL: &str = "4000123412340001";
const OPEN_BILL_WHOLE: u64 = 500;
/// Its due date at the biller.
const OPEN_BILL_DUE: &str = "2026-12-20";
/// A bill the example simulator holds as already paid: NT$700.00.
const PAID_BILL: &str = "4000123412340002";
const PAID_BILL_WHOLE: u64 = 700;
/// A bill number the example simulator does not hold.
const UNKNOWN_BILL: &str = "4000999999999999";

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "online-bill.inquire",
            "InquireBill of an online biller answers with the biller's amount and due date",
            |ctx| Box::pin(inquire(ctx)),
        )
        .with_online_biller(),
        Case::new(
            "online-bill.pay-replay-cancel",
            "PayBill notifies the online biller (PAID), a retry replays it, CancelBill cancels it at the biller",
            |ctx| Box::pin(pay_replay_cancel(ctx)),
        )
        .with_online_biller(),
        Case::new(
            "online-bill.declines",
            "Bills the biller holds as paid or does not know are FAILED_PRECONDITION; cash off the biller's amount names amount.amount_minor",
            |ctx| Box::pin(declines(ctx)),
        )
        .with_online_biller(),
    ]
}

/// A slip of the online biller for `bill_number` at `amount_whole` TWD.
fn slip(ctx: &Ctx, bill_number: &str, amount_whole: u64) -> anyhow::Result<pb::BillSlip> {
    let agency_code = ctx
        .target
        .online_agency_code
        .clone()
        .context("no --online-agency-code")?;
    let due_date = today() + chrono::Duration::days(DUE_IN_DAYS);
    let slip = TwSlip {
        agency_code,
        bill_number: bill_number.to_owned(),
        due_date,
        period: roc_yymm(due_date),
        amount_whole,
    };
    Ok(pb::BillSlip {
        barcodes: slip.barcodes().to_vec(),
        biller_id: String::new(),
    })
}

fn pay_request(
    ctx: &Ctx,
    bill_number: &str,
    amount_whole: u64,
) -> anyhow::Result<pb::PayBillRequest> {
    Ok(pb::PayBillRequest {
        context: Some(ctx.tw_context()),
        slip: Some(slip(ctx, bill_number, amount_whole)?),
        amount: Some(pb::Money {
            amount_minor: i64::try_from(amount_whole * 100)?,
            currency: "TWD".to_owned(),
        }),
    })
}

async fn inquire(ctx: &Ctx) -> anyhow::Result<()> {
    let request = pb::InquireBillRequest {
        context: Some(ctx.tw_context()),
        slip: Some(slip(ctx, OPEN_BILL, OPEN_BILL_WHOLE)?),
    };
    let answer = check::ok("InquireBill", ctx.inquire(&request).await)?.into_inner();
    let bill = answer.bill.context("InquireBill: no bill")?;
    ensure!(
        bill.bill_reference == OPEN_BILL && bill.due_date == OPEN_BILL_DUE,
        "InquireBill: expected bill {OPEN_BILL} due {OPEN_BILL_DUE} (the biller's), got {} due {}",
        bill.bill_reference,
        bill.due_date
    );
    let amount = bill.amount.context("InquireBill: no amount")?;
    ensure!(
        amount.amount_minor == 50_000 && amount.currency == "TWD",
        "InquireBill: expected 50000 TWD, got {amount:?}"
    );
    Ok(())
}

async fn pay_replay_cancel(ctx: &Ctx) -> anyhow::Result<()> {
    let request = pay_request(ctx, OPEN_BILL, OPEN_BILL_WHOLE)?;
    let first = check::ok("PayBill", ctx.pay(&request).await)?.into_inner();
    let payment = first.payment.context("PayBill: no payment")?;
    ensure!(
        payment.status() == pb::BillPaymentStatus::Paid,
        "PayBill: expected PAID, got {:?}",
        payment.status()
    );
    let replay = check::ok("PayBill retry", ctx.pay(&request).await)?.into_inner();
    ensure!(
        replay.payment.as_ref() == Some(&payment),
        "PayBill retry: expected the first answer again"
    );
    let again = pay_request(ctx, OPEN_BILL, OPEN_BILL_WHOLE)?;
    check::precondition(
        "PayBill of the bill just paid (new key)",
        "BILL_ALREADY_PAID",
        ctx.pay(&again).await,
    )?;
    let cancel = check::ok(
        "CancelBill",
        ctx.cancel(&ctx.tw_cancel_request(&payment.transaction_id))
            .await,
    )?
    .into_inner();
    ensure!(
        cancel.payment.map(|p| p.status()) == Some(pb::BillPaymentStatus::Cancelled),
        "CancelBill: expected CANCELLED"
    );
    Ok(())
}

async fn declines(ctx: &Ctx) -> anyhow::Result<()> {
    check::precondition(
        "PayBill of a bill the biller holds as paid",
        "BILL_ALREADY_PAID",
        ctx.pay(&pay_request(ctx, PAID_BILL, PAID_BILL_WHOLE)?)
            .await,
    )?;
    check::precondition(
        "PayBill of a bill the biller does not know",
        "BILL_NOT_FOUND",
        ctx.pay(&pay_request(ctx, UNKNOWN_BILL, OPEN_BILL_WHOLE)?)
            .await,
    )?;
    check::invalid_field(
        "PayBill of NT$501 for a bill the biller holds at NT$500",
        "amount.amount_minor",
        ctx.pay(&pay_request(ctx, OPEN_BILL, OPEN_BILL_WHOLE + 1)?)
            .await,
    )?;
    Ok(())
}
