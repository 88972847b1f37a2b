//! Idempotency: the key is (store, terminal, `client_request_id`); the same
//! request replays the first answer, a different one is refused, and
//! concurrent duplicates make exactly one payment.

use anyhow::{Context as _, ensure};
use posgate_proto::v1 as pb;

use super::Case;
use super::bill::{cancelled, paid_tw};
use crate::check;
use crate::client::{Ctx, DUE_IN_DAYS, timestamp_at};

/// Identical PayBill calls sent at once in the concurrency case: more than a
/// POS would ever retry, few enough to stay inside a terminal's rate burst.
const CONCURRENT_DUPLICATES: usize = 20;

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "idem.pay-exact-retry",
            "A PayBill retried unchanged returns the first answer byte for byte with posgate-idempotent-replay: true",
            |ctx| Box::pin(pay_exact_retry(ctx)),
        ),
        Case::new(
            "idem.pay-retry-new-pos-timestamp",
            "A PayBill retried with a later pos_timestamp still replays (pos_timestamp is not compared)",
            |ctx| Box::pin(pay_retry_new_pos_timestamp(ctx)),
        ),
        Case::new(
            "idem.pay-different-amount",
            "The same key with a different amount is ALREADY_EXISTS, IDEMPOTENCY_KEY_REUSED naming amount.amount_minor",
            |ctx| Box::pin(pay_different_amount(ctx)),
        ),
        Case::new(
            "idem.pay-different-slip",
            "The same key with a different slip is ALREADY_EXISTS, IDEMPOTENCY_KEY_REUSED naming slip.barcodes",
            |ctx| Box::pin(pay_different_slip(ctx)),
        ),
        Case::new(
            "idem.pay-different-operator",
            "The same key from a different operator is ALREADY_EXISTS naming context.operator_id",
            |ctx| Box::pin(pay_different_operator(ctx)),
        ),
        Case::new(
            "idem.pay-concurrent-duplicates",
            "20 identical PayBill calls at once all succeed with one transaction_id; only one is not a replay",
            |ctx| Box::pin(pay_concurrent_duplicates(ctx)),
        ),
        Case::new(
            "idem.key-scoped-to-terminal",
            "The same client_request_id from another terminal is a new payment, not a replay",
            |ctx| Box::pin(key_scoped_to_terminal(ctx)),
        ),
        Case::new(
            "idem.cancel-exact-retry",
            "A CancelBill retried unchanged replays the first answer with the replay header",
            |ctx| Box::pin(cancel_exact_retry(ctx)),
        ),
        Case::new(
            "idem.cancel-different-reason",
            "A CancelBill key reused with a different reason is ALREADY_EXISTS naming reason",
            |ctx| Box::pin(cancel_different_reason(ctx)),
        ),
    ]
}

fn payment_of(answer: &tonic::Response<pb::PayBillResponse>) -> anyhow::Result<&pb::BillPayment> {
    answer
        .get_ref()
        .payment
        .as_ref()
        .context("PayBill answered without a payment")
}

async fn pay_exact_retry(ctx: &Ctx) -> anyhow::Result<()> {
    let (request, payment) = paid_tw(ctx).await?;
    let first = pb::PayBillResponse {
        payment: Some(payment),
    };
    let retry = check::ok("retried PayBill", ctx.pay(&request).await)?;
    check::replayed("retried PayBill", &first, &retry)
}

async fn pay_retry_new_pos_timestamp(ctx: &Ctx) -> anyhow::Result<()> {
    let (mut request, payment) = paid_tw(ctx).await?;
    let first = pb::PayBillResponse {
        payment: Some(payment),
    };
    let later = chrono::Utc::now() + chrono::Duration::seconds(5);
    request.context.as_mut().context("context")?.pos_timestamp = Some(timestamp_at(later));
    let retry = check::ok(
        "PayBill retried with a new pos_timestamp",
        ctx.pay(&request).await,
    )?;
    check::replayed("PayBill retried with a new pos_timestamp", &first, &retry)
}

/// After a refused reuse, the original request still replays its first answer.
async fn still_replays(
    ctx: &Ctx,
    request: &pb::PayBillRequest,
    payment: pb::BillPayment,
) -> anyhow::Result<()> {
    let first = pb::PayBillResponse {
        payment: Some(payment),
    };
    let retry = check::ok(
        "original PayBill after a refused reuse",
        ctx.pay(request).await,
    )?;
    check::replayed("original PayBill after a refused reuse", &first, &retry)
}

async fn pay_different_amount(ctx: &Ctx) -> anyhow::Result<()> {
    let (request, payment) = paid_tw(ctx).await?;
    let mut reused = request.clone();
    let amount = reused.amount.as_mut().context("amount")?;
    amount.amount_minor += 100;
    check::key_reused(
        "PayBill with a different amount",
        &["amount.amount_minor"],
        ctx.pay(&reused).await,
    )?;
    still_replays(ctx, &request, payment).await
}

async fn pay_different_slip(ctx: &Ctx) -> anyhow::Result<()> {
    let (request, payment) = paid_tw(ctx).await?;
    // Another bill of the same biller and amount: only the barcodes differ.
    let amount_whole = payment
        .bill
        .as_ref()
        .and_then(|bill| bill.amount.as_ref())
        .map(|money| money.amount_minor)
        .context("payment without amount")?;
    let mut other = ctx.tw_slip(DUE_IN_DAYS);
    let factor = ctx.tw_amount(&other).amount_minor / i64::try_from(other.amount_whole)?;
    other.amount_whole = u64::try_from(amount_whole / factor)?;
    let mut reused = request.clone();
    reused.slip.as_mut().context("slip")?.barcodes = other.barcodes().to_vec();
    ensure!(
        reused.amount == Some(ctx.tw_amount(&other)),
        "the suite built a slip of another amount"
    );
    check::key_reused(
        "PayBill with a different slip",
        &["slip.barcodes"],
        ctx.pay(&reused).await,
    )?;
    still_replays(ctx, &request, payment).await
}

async fn pay_different_operator(ctx: &Ctx) -> anyhow::Result<()> {
    let (request, payment) = paid_tw(ctx).await?;
    let mut reused = request.clone();
    reused.context.as_mut().context("context")?.operator_id =
        format!("{}-X", ctx.target.operator_id)
            .chars()
            .take(crate::target::MAX_ID_LEN)
            .collect();
    check::key_reused(
        "PayBill from another operator",
        &["context.operator_id"],
        ctx.pay(&reused).await,
    )?;
    still_replays(ctx, &request, payment).await
}

async fn pay_concurrent_duplicates(ctx: &Ctx) -> anyhow::Result<()> {
    let request = ctx.tw_pay_request();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENT_DUPLICATES {
        let (ctx, request) = (ctx.clone(), request.clone());
        calls.spawn(async move { ctx.pay(&request).await });
    }
    let mut answers = Vec::with_capacity(CONCURRENT_DUPLICATES);
    while let Some(joined) = calls.join_next().await {
        answers.push(check::ok(
            "concurrent PayBill",
            joined.context("PayBill task panicked")?,
        )?);
    }
    let first = payment_of(&answers[0])?;
    for answer in &answers {
        let payment = payment_of(answer)?;
        ensure!(
            payment == first,
            "concurrent duplicates got different answers:\n{first:?}\n{payment:?}"
        );
    }
    let fresh = answers
        .iter()
        .filter(|a| !check::is_replay(a.metadata()))
        .count();
    ensure!(
        fresh == 1,
        "{fresh} of {CONCURRENT_DUPLICATES} answers lack the replay header; exactly one request makes the payment"
    );
    let context = request.context.as_ref().context("context")?;
    let read = check::ok(
        "GetBillPayment by the key",
        ctx.get(&Ctx::get_by_paid_key(context)).await,
    )?;
    ensure!(
        read.get_ref().payment.as_ref() == Some(first),
        "the stored payment {:?} is not the one answered {first:?}",
        read.get_ref().payment
    );
    Ok(())
}

async fn key_scoped_to_terminal(ctx: &Ctx) -> anyhow::Result<()> {
    let (request, payment) = paid_tw(ctx).await?;
    let context = request.context.clone().context("context")?;
    let mut other = ctx.tw_pay_request();
    other.context = Some(pb::RequestContext {
        terminal_id: ctx.target.other_terminal_id(),
        ..context
    });
    let answer = check::ok(
        "PayBill with the key from another terminal",
        ctx.pay(&other).await,
    )?;
    check::not_replayed("PayBill with the key from another terminal", &answer)?;
    let other_payment = payment_of(&answer)?;
    ensure!(
        other_payment.transaction_id != payment.transaction_id,
        "another terminal's payment with the same client_request_id got transaction {}",
        payment.transaction_id
    );
    ensure!(
        other_payment.terminal_id == ctx.target.other_terminal_id(),
        "the payment names terminal {:?}",
        other_payment.terminal_id
    );
    Ok(())
}

async fn cancel_exact_retry(ctx: &Ctx) -> anyhow::Result<()> {
    let (_, payment) = paid_tw(ctx).await?;
    let (request, after) = cancelled(ctx, &payment).await?;
    let first = pb::CancelBillResponse {
        payment: Some(after),
    };
    let retry = check::ok("retried CancelBill", ctx.cancel(&request).await)?;
    check::replayed("retried CancelBill", &first, &retry)
}

async fn cancel_different_reason(ctx: &Ctx) -> anyhow::Result<()> {
    let (_, payment) = paid_tw(ctx).await?;
    let (request, _) = cancelled(ctx, &payment).await?;
    let reused = pb::CancelBillRequest {
        reason: "conformance test: wrong slip".to_owned(),
        ..request
    };
    check::key_reused(
        "CancelBill with a different reason",
        &["reason"],
        ctx.cancel(&reused).await,
    )?;
    Ok(())
}
