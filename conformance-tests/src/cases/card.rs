//! Card payments (`PaymentService`) through the gateway's bank links, on the
//! bank simulator's published test cards: approvals, declines as answers,
//! co-brand points, capture, void, refund, lookups and idempotency.
//!
//! Amounts are a few dollars and every authorization the suite does not
//! capture is voided, so a simulator with the example's NT$10,000 limits
//! takes hundreds of runs before the test cards run out of credit.

use anyhow::{Context as _, ensure};
use posgate_proto::v1 as pb;
use tonic::Code;

use super::Case;
use crate::card::{CO_BRAND_PAN, DECLINED_AMOUNT_MINOR, MASTERCARD_PAN, PIN, VISA_PAN, WRONG_PIN};
use crate::check;
use crate::client::Ctx;

/// A sale, NT$5.00: small, so the test cards' limits last.
const SALE_AMOUNT_MINOR: i64 = 500;
/// An authorization, NT$10.00.
const AUTH_AMOUNT_MINOR: i64 = 1_000;
/// The part of `AUTH_AMOUNT_MINOR` the partial capture takes.
const PARTIAL_CAPTURE_MINOR: i64 = 600;
/// A sale to refund in parts, NT$10.00; the first refund takes `FIRST_REFUND_MINOR`.
const REFUNDABLE_SALE_MINOR: i64 = 1_000;
const FIRST_REFUND_MINOR: i64 = 400;
/// Approved answers carry ISO 8583 field 39 "00" and a 6-character approval code.
const APPROVED: &str = "00";
const APPROVAL_CODE_LEN: usize = 6;
/// Field 39 codes of the decline cases.
const INSUFFICIENT_FUNDS: &str = "51";
const WRONG_PIN_CODE: &str = "55";
/// PCI DSS 3.4 masking: first 6 and last 4 digits kept.
const MASK_KEEP_FIRST: usize = 6;
const MASK_KEEP_LAST: usize = 4;

#[allow(clippy::too_many_lines, reason = "one list, one entry per case")]
pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "card.sale-approved",
            "A Visa chip SALE is CAPTURED with code 00, an approval code, the masked PAN, route ACQUIRER, and no card data in the answer",
            |ctx| Box::pin(sale_approved(ctx)),
        ),
        Case::new(
            "card.auth-only-approved",
            "An AUTH_ONLY is AUTHORIZED with nothing captured and a hold expiry (then voided to release the hold)",
            |ctx| Box::pin(auth_only_approved(ctx)),
        ),
        Case::new(
            "card.sale-with-pin-approved",
            "A SALE with the right online PIN (ISO 9564 format 0 under the terminal's PIN key) is approved",
            |ctx| Box::pin(sale_with_pin_approved(ctx)),
        ),
        Case::new(
            "card.authorize-exact-retry",
            "An Authorize retried unchanged returns the first answer byte for byte with posgate-idempotent-replay: true",
            |ctx| Box::pin(authorize_exact_retry(ctx)),
        ),
        Case::new(
            "card.authorize-different-amount",
            "The same key with a different amount is ALREADY_EXISTS, IDEMPOTENCY_KEY_REUSED naming amount.amount_minor",
            |ctx| Box::pin(authorize_different_amount(ctx)),
        ),
        Case::new(
            "card.decline-insufficient-funds",
            "NT$9,000 on the Mastercard with NT$8,000 open is an answer (not an error): DECLINED, code 51, replayed like any answer",
            |ctx| Box::pin(decline_insufficient_funds(ctx)),
        ),
        Case::new(
            "card.decline-wrong-pin",
            "A SALE with a wrong online PIN is DECLINED with code 55",
            |ctx| Box::pin(decline_wrong_pin(ctx)),
        ),
        Case::new(
            "card.co-brand-points",
            "A co-brand card (BIN 520082) goes to route CO_BRAND_ISSUER and earns loyalty points",
            |ctx| Box::pin(co_brand_points(ctx)),
        ),
        Case::new(
            "card.capture-partial",
            "Capturing NT$6 of a NT$10 authorization makes it CAPTURED with captured_amount NT$6",
            |ctx| Box::pin(capture_partial(ctx)),
        ),
        Case::new(
            "card.capture-twice",
            "A second Capture of a captured authorization (new key) is FAILED_PRECONDITION ALREADY_CAPTURED",
            |ctx| Box::pin(capture_twice(ctx)),
        ),
        Case::new(
            "card.void-authorization",
            "Voiding an authorization makes it VOIDED, and GetTransaction shows it",
            |ctx| Box::pin(void_authorization(ctx)),
        ),
        Case::new(
            "card.void-twice",
            "A second Void (new key) is FAILED_PRECONDITION ALREADY_VOIDED",
            |ctx| Box::pin(void_twice(ctx)),
        ),
        Case::new(
            "card.refund-partial-then-too-much",
            "A partial refund is CAPTURED and counted on the original; refunding more than the rest is FAILED_PRECONDITION REFUND_EXCEEDS_REMAINING",
            |ctx| Box::pin(refund_partial_then_too_much(ctx)),
        ),
        Case::new(
            "card.refund-declined-not-refundable",
            "Refunding a DECLINED transaction is FAILED_PRECONDITION NOT_REFUNDABLE",
            |ctx| Box::pin(refund_declined(ctx)),
        ),
        Case::new(
            "card.get-by-transaction-id",
            "GetTransaction by transaction_id returns the transaction Authorize returned",
            |ctx| Box::pin(get_by_transaction_id(ctx)),
        ),
        Case::new(
            "card.get-by-created-client-request-id",
            "GetTransaction by created_client_request_id finds the transaction made with that key; an unused key is NOT_FOUND",
            |ctx| Box::pin(get_by_created_key(ctx)),
        ),
        Case::new(
            "card.other-store-not-found",
            "Another store can neither read, capture, void nor refund a transaction (NOT_FOUND); it stays AUTHORIZED",
            |ctx| Box::pin(other_store_not_found(ctx)),
        ),
    ]
}

/// The transaction of an Authorize answer.
fn transaction_of(
    what: &str,
    answer: &tonic::Response<pb::AuthorizeResponse>,
) -> anyhow::Result<pb::CardTransaction> {
    answer
        .get_ref()
        .transaction
        .clone()
        .with_context(|| format!("{what} answered without a transaction"))
}

/// Sends a fresh Authorize and checks it is a first answer about this request.
async fn authorized(
    ctx: &Ctx,
    what: &str,
    request: &pb::AuthorizeRequest,
) -> anyhow::Result<pb::CardTransaction> {
    let answer = check::ok(what, ctx.authorize(request).await)?;
    check::not_replayed(what, &answer)?;
    let transaction = transaction_of(what, &answer)?;
    check_echo(what, request, &transaction)?;
    check_no_card_data(what, request, answer.get_ref())?;
    Ok(transaction)
}

/// What every Authorize answer echoes: caller, key, amount, reference, masked PAN.
fn check_echo(
    what: &str,
    request: &pb::AuthorizeRequest,
    transaction: &pb::CardTransaction,
) -> anyhow::Result<()> {
    let context = request
        .context
        .as_ref()
        .context("request without context")?;
    ensure!(
        uuid::Uuid::parse_str(&transaction.transaction_id).is_ok()
            && transaction.transaction_id.len() == 36,
        "{what}: transaction_id {:?} is not a hyphenated UUID",
        transaction.transaction_id
    );
    ensure!(
        (
            transaction.store_id.as_str(),
            transaction.terminal_id.as_str(),
            transaction.operator_id.as_str(),
            transaction.client_request_id.as_str(),
        ) == (
            context.store_id.as_str(),
            context.terminal_id.as_str(),
            context.operator_id.as_str(),
            context.client_request_id.as_str(),
        ),
        "{what}: the transaction names store/terminal/operator/key {}/{}/{}/{}, not the request's",
        transaction.store_id,
        transaction.terminal_id,
        transaction.operator_id,
        transaction.client_request_id
    );
    ensure!(
        transaction.amount == request.amount,
        "{what}: amount {:?}, requested {:?}",
        transaction.amount,
        request.amount
    );
    ensure!(
        transaction.pos_reference == request.pos_reference,
        "{what}: pos_reference {:?} is not the request's {:?}",
        transaction.pos_reference,
        request.pos_reference
    );
    if let Some(pb::card_input::Account::PanAndExpiry(card)) =
        request.card.as_ref().and_then(|card| card.account.as_ref())
    {
        let expected = masked(&card.pan);
        ensure!(
            transaction.masked_pan == expected,
            "{what}: masked_pan {:?}, expected {expected:?}",
            transaction.masked_pan
        );
    }
    ensure!(
        !transaction.business_date.is_empty() && transaction.created_at.is_some(),
        "{what}: business_date or created_at missing"
    );
    Ok(())
}

/// The PAN as PCI DSS 3.4 allows it shown: first 6, last 4, `*` between.
fn masked(pan: &str) -> String {
    let hidden = pan.len().saturating_sub(MASK_KEEP_FIRST + MASK_KEEP_LAST);
    format!(
        "{}{}{}",
        &pan[..MASK_KEEP_FIRST],
        "*".repeat(hidden),
        &pan[pan.len() - MASK_KEEP_LAST..]
    )
}

/// No sensitive card field of the request appears anywhere in the answer's bytes.
fn check_no_card_data(
    what: &str,
    request: &pb::AuthorizeRequest,
    answer: &impl prost::Message,
) -> anyhow::Result<()> {
    let bytes = answer.encode_to_vec();
    let text = String::from_utf8_lossy(&bytes);
    let Some(card) = request.card.as_ref() else {
        return Ok(());
    };
    let mut secrets = Vec::new();
    if let Some(pb::card_input::Account::PanAndExpiry(account)) = card.account.as_ref() {
        secrets.push(("card.pan_and_expiry.pan", account.pan.clone()));
    }
    if let Some(pin) = card.pin.as_ref() {
        secrets.push(("card.pin.block_hex", pin.block_hex.clone()));
    }
    for (field, secret) in secrets {
        ensure!(
            !text.contains(&secret),
            "{what}: the answer carries the value of {field}"
        );
    }
    Ok(())
}

/// An approval: `status`, code 00, approval code, RRN and STAN set, receipt set.
fn check_approved(
    what: &str,
    transaction: &pb::CardTransaction,
    status: pb::CardTransactionStatus,
) -> anyhow::Result<()> {
    ensure!(
        transaction.status() == status && transaction.response_code == APPROVED,
        "{what}: expected {status:?} with code {APPROVED}, got {:?} code {:?} ({})",
        transaction.status(),
        transaction.response_code,
        transaction.response_text
    );
    ensure!(
        transaction.approval_code.len() == APPROVAL_CODE_LEN
            && transaction
                .approval_code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric()),
        "{what}: approval_code {:?} is not 6 alphanumeric characters",
        transaction.approval_code
    );
    ensure!(
        !transaction.rrn.is_empty() && transaction.stan.len() == 6,
        "{what}: rrn {:?} / stan {:?} not set",
        transaction.rrn,
        transaction.stan
    );
    ensure!(
        transaction.receipt.is_some(),
        "{what}: an answered transaction has no receipt"
    );
    Ok(())
}

/// A decline: DECLINED with `code`, no approval code, nothing captured.
fn check_declined(what: &str, transaction: &pb::CardTransaction, code: &str) -> anyhow::Result<()> {
    ensure!(
        transaction.status() == pb::CardTransactionStatus::Declined
            && transaction.response_code == code,
        "{what}: expected DECLINED with code {code}, got {:?} code {:?} ({})",
        transaction.status(),
        transaction.response_code,
        transaction.response_text
    );
    ensure!(
        transaction.approval_code.is_empty(),
        "{what}: a decline carries approval code {:?}",
        transaction.approval_code
    );
    ensure!(
        amount_minor(transaction.captured_amount.as_ref()) == 0,
        "{what}: a decline captured {:?}",
        transaction.captured_amount
    );
    Ok(())
}

fn amount_minor(money: Option<&pb::Money>) -> i64 {
    money.map_or(0, |money| money.amount_minor)
}

/// A fresh Visa SALE, approved.
async fn visa_sale(
    ctx: &Ctx,
    amount: i64,
) -> anyhow::Result<(pb::AuthorizeRequest, pb::CardTransaction)> {
    let request = ctx.authorize_request(VISA_PAN, amount, pb::CaptureMode::Sale);
    let sale = authorized(ctx, "Authorize SALE", &request).await?;
    check_approved("Authorize SALE", &sale, pb::CardTransactionStatus::Captured)?;
    Ok((request, sale))
}

/// A fresh Visa `AUTH_ONLY` for `AUTH_AMOUNT_MINOR`, approved.
async fn visa_authorization(
    ctx: &Ctx,
) -> anyhow::Result<(pb::AuthorizeRequest, pb::CardTransaction)> {
    let request = ctx.authorize_request(VISA_PAN, AUTH_AMOUNT_MINOR, pb::CaptureMode::AuthOnly);
    let authorization = authorized(ctx, "Authorize AUTH_ONLY", &request).await?;
    check_approved(
        "Authorize AUTH_ONLY",
        &authorization,
        pb::CardTransactionStatus::Authorized,
    )?;
    Ok((request, authorization))
}

/// Voids `transaction_id` with a fresh key; returns the voided transaction.
async fn voided(ctx: &Ctx, transaction_id: &str) -> anyhow::Result<pb::CardTransaction> {
    let answer = check::ok("Void", ctx.void(&ctx.void_request(transaction_id)).await)?;
    check::not_replayed("Void", &answer)?;
    let transaction = answer
        .into_inner()
        .transaction
        .context("Void answered without a transaction")?;
    ensure!(
        transaction.transaction_id == transaction_id,
        "Void answered about {:?}",
        transaction.transaction_id
    );
    ensure!(
        transaction.status() == pb::CardTransactionStatus::Voided,
        "status after Void is {:?}, expected VOIDED",
        transaction.status()
    );
    Ok(transaction)
}

/// The transaction as `GetTransaction` by id shows it from the suite's store.
async fn read(ctx: &Ctx, transaction_id: &str) -> anyhow::Result<pb::CardTransaction> {
    let request = ctx.get_transaction_request(&ctx.target.store_id, transaction_id);
    check::ok("GetTransaction", ctx.get_transaction(&request).await)?
        .into_inner()
        .transaction
        .context("GetTransaction answered without a transaction")
}

async fn sale_approved(ctx: &Ctx) -> anyhow::Result<()> {
    let (request, sale) = visa_sale(ctx, SALE_AMOUNT_MINOR).await?;
    ensure!(
        sale.r#type() == pb::CardTransactionType::Sale,
        "type {:?}, expected SALE",
        sale.r#type()
    );
    ensure!(
        sale.captured_amount == request.amount,
        "a sale captures its amount: captured {:?} of {:?}",
        sale.captured_amount,
        request.amount
    );
    ensure!(
        sale.card_brand() == pb::CardBrand::Visa && sale.route() == pb::CardRoute::Acquirer,
        "brand {:?} route {:?}, expected VISA via ACQUIRER",
        sale.card_brand(),
        sale.route()
    );
    ensure!(
        sale.loyalty.is_none(),
        "an acquirer sale carries loyalty points {:?}",
        sale.loyalty
    );
    ensure!(
        amount_minor(sale.refunded_amount.as_ref()) == 0 && sale.authorization_expires_at.is_none(),
        "a new sale has refunds or a hold expiry"
    );
    Ok(())
}

async fn auth_only_approved(ctx: &Ctx) -> anyhow::Result<()> {
    let (_, authorization) = visa_authorization(ctx).await?;
    ensure!(
        authorization.r#type() == pb::CardTransactionType::Authorization,
        "type {:?}, expected AUTHORIZATION",
        authorization.r#type()
    );
    ensure!(
        amount_minor(authorization.captured_amount.as_ref()) == 0,
        "an authorization captured {:?}",
        authorization.captured_amount
    );
    ensure!(
        authorization.authorization_expires_at.is_some(),
        "an AUTHORIZED transaction has no authorization_expires_at"
    );
    voided(ctx, &authorization.transaction_id).await?;
    Ok(())
}

async fn sale_with_pin_approved(ctx: &Ctx) -> anyhow::Result<()> {
    let request = ctx.pin_sale_request(VISA_PAN, PIN, SALE_AMOUNT_MINOR)?;
    let sale = authorized(ctx, "Authorize SALE with PIN", &request).await?;
    check_approved(
        "Authorize SALE with PIN",
        &sale,
        pb::CardTransactionStatus::Captured,
    )
}

async fn authorize_exact_retry(ctx: &Ctx) -> anyhow::Result<()> {
    let (request, sale) = visa_sale(ctx, SALE_AMOUNT_MINOR).await?;
    let first = pb::AuthorizeResponse {
        transaction: Some(sale),
    };
    let retry = check::ok("retried Authorize", ctx.authorize(&request).await)?;
    check::replayed("retried Authorize", &first, &retry)
}

async fn authorize_different_amount(ctx: &Ctx) -> anyhow::Result<()> {
    let (request, sale) = visa_sale(ctx, SALE_AMOUNT_MINOR).await?;
    let mut reused = request.clone();
    reused.amount.as_mut().context("amount")?.amount_minor += 100;
    check::key_reused(
        "Authorize with a different amount",
        &["amount.amount_minor"],
        ctx.authorize(&reused).await,
    )?;
    let first = pb::AuthorizeResponse {
        transaction: Some(sale),
    };
    let retry = check::ok(
        "the original Authorize after a refused reuse",
        ctx.authorize(&request).await,
    )?;
    check::replayed(
        "the original Authorize after a refused reuse",
        &first,
        &retry,
    )
}

async fn decline_insufficient_funds(ctx: &Ctx) -> anyhow::Result<()> {
    let request =
        ctx.authorize_request(MASTERCARD_PAN, DECLINED_AMOUNT_MINOR, pb::CaptureMode::Sale);
    let declined = authorized(ctx, "Authorize over the open-to-buy", &request).await?;
    check_declined(
        "Authorize over the open-to-buy",
        &declined,
        INSUFFICIENT_FUNDS,
    )?;
    ensure!(
        declined.card_brand() == pb::CardBrand::Mastercard,
        "brand {:?}, expected MASTERCARD",
        declined.card_brand()
    );
    let first = pb::AuthorizeResponse {
        transaction: Some(declined),
    };
    let retry = check::ok("retried declined Authorize", ctx.authorize(&request).await)?;
    check::replayed("retried declined Authorize", &first, &retry)
}

async fn decline_wrong_pin(ctx: &Ctx) -> anyhow::Result<()> {
    let request = ctx.pin_sale_request(VISA_PAN, WRONG_PIN, SALE_AMOUNT_MINOR)?;
    let declined = authorized(ctx, "Authorize with a wrong PIN", &request).await?;
    check_declined("Authorize with a wrong PIN", &declined, WRONG_PIN_CODE)
}

async fn co_brand_points(ctx: &Ctx) -> anyhow::Result<()> {
    let request = ctx.authorize_request(CO_BRAND_PAN, SALE_AMOUNT_MINOR, pb::CaptureMode::Sale);
    let sale = authorized(ctx, "co-brand Authorize SALE", &request).await?;
    check_approved(
        "co-brand Authorize SALE",
        &sale,
        pb::CardTransactionStatus::Captured,
    )?;
    ensure!(
        sale.route() == pb::CardRoute::CoBrandIssuer,
        "route {:?}, expected CO_BRAND_ISSUER",
        sale.route()
    );
    let points = sale
        .loyalty
        .as_ref()
        .context("a co-brand sale carries no loyalty points")?;
    ensure!(
        points.points_earned > 0,
        "a NT$5 co-brand sale earned {} points",
        points.points_earned
    );
    Ok(())
}

/// Captures `PARTIAL_CAPTURE_MINOR` of a fresh authorization; returns it captured.
async fn partially_captured(ctx: &Ctx) -> anyhow::Result<pb::CardTransaction> {
    let (_, authorization) = visa_authorization(ctx).await?;
    let request = ctx.capture_request(&authorization.transaction_id, PARTIAL_CAPTURE_MINOR);
    let answer = check::ok("Capture", ctx.capture(&request).await)?;
    check::not_replayed("Capture", &answer)?;
    let captured = answer
        .into_inner()
        .transaction
        .context("Capture answered without a transaction")?;
    ensure!(
        captured.transaction_id == authorization.transaction_id,
        "Capture answered about {:?}",
        captured.transaction_id
    );
    ensure!(
        captured.status() == pb::CardTransactionStatus::Captured
            && captured.captured_amount == request.amount
            && captured.amount == authorization.amount,
        "after a partial Capture: status {:?}, captured {:?} (expected CAPTURED, {:?}), amount {:?}",
        captured.status(),
        captured.captured_amount,
        request.amount,
        captured.amount
    );
    Ok(captured)
}

async fn capture_partial(ctx: &Ctx) -> anyhow::Result<()> {
    let captured = partially_captured(ctx).await?;
    let stored = read(ctx, &captured.transaction_id).await?;
    ensure!(
        stored.status() == pb::CardTransactionStatus::Captured
            && stored.captured_amount == captured.captured_amount,
        "GetTransaction shows {:?} captured {:?}",
        stored.status(),
        stored.captured_amount
    );
    Ok(())
}

async fn capture_twice(ctx: &Ctx) -> anyhow::Result<()> {
    let captured = partially_captured(ctx).await?;
    let again = ctx.capture_request(&captured.transaction_id, PARTIAL_CAPTURE_MINOR);
    check::precondition(
        "a second Capture",
        "ALREADY_CAPTURED",
        ctx.capture(&again).await,
    )
}

async fn void_authorization(ctx: &Ctx) -> anyhow::Result<()> {
    let (_, authorization) = visa_authorization(ctx).await?;
    let after = voided(ctx, &authorization.transaction_id).await?;
    ensure!(
        amount_minor(after.captured_amount.as_ref()) == 0,
        "a voided authorization shows captured {:?}",
        after.captured_amount
    );
    let stored = read(ctx, &authorization.transaction_id).await?;
    ensure!(
        stored.status() == pb::CardTransactionStatus::Voided,
        "GetTransaction shows {:?} after Void",
        stored.status()
    );
    Ok(())
}

async fn void_twice(ctx: &Ctx) -> anyhow::Result<()> {
    let (_, authorization) = visa_authorization(ctx).await?;
    voided(ctx, &authorization.transaction_id).await?;
    check::precondition(
        "a second Void",
        "ALREADY_VOIDED",
        ctx.void(&ctx.void_request(&authorization.transaction_id))
            .await,
    )
}

async fn refund_partial_then_too_much(ctx: &Ctx) -> anyhow::Result<()> {
    let (_, sale) = visa_sale(ctx, REFUNDABLE_SALE_MINOR).await?;
    let request = ctx.refund_request(&sale.transaction_id, FIRST_REFUND_MINOR);
    let answer = check::ok("partial Refund", ctx.refund(&request).await)?;
    check::not_replayed("partial Refund", &answer)?;
    let answer = answer.into_inner();
    let refund = answer.refund.context("Refund answered without refund")?;
    let original = answer
        .original
        .context("Refund answered without original")?;
    check_approved(
        "partial Refund",
        &refund,
        pb::CardTransactionStatus::Captured,
    )?;
    ensure!(
        refund.r#type() == pb::CardTransactionType::Refund
            && refund.original_transaction_id == sale.transaction_id
            && refund.amount == request.amount,
        "the refund is {:?} of {:?} for {:?}",
        refund.r#type(),
        refund.original_transaction_id,
        refund.amount
    );
    ensure!(
        original.refunded_amount == request.amount
            && original.refund_transaction_ids == [refund.transaction_id.clone()],
        "the original shows refunded {:?} and refunds {:?}",
        original.refunded_amount,
        original.refund_transaction_ids
    );
    let remaining = REFUNDABLE_SALE_MINOR - FIRST_REFUND_MINOR;
    let too_much = ctx.refund_request(&sale.transaction_id, remaining + 100);
    check::precondition(
        "a Refund above the remaining amount",
        "REFUND_EXCEEDS_REMAINING",
        ctx.refund(&too_much).await,
    )?;
    let stored = read(ctx, &sale.transaction_id).await?;
    ensure!(
        stored.refunded_amount == request.amount,
        "after the refused refund the original shows refunded {:?}",
        stored.refunded_amount
    );
    Ok(())
}

async fn refund_declined(ctx: &Ctx) -> anyhow::Result<()> {
    let request =
        ctx.authorize_request(MASTERCARD_PAN, DECLINED_AMOUNT_MINOR, pb::CaptureMode::Sale);
    let declined = authorized(ctx, "Authorize over the open-to-buy", &request).await?;
    check_declined(
        "Authorize over the open-to-buy",
        &declined,
        INSUFFICIENT_FUNDS,
    )?;
    let refund = ctx.refund_request(&declined.transaction_id, SALE_AMOUNT_MINOR);
    check::precondition(
        "Refund of a declined sale",
        "NOT_REFUNDABLE",
        ctx.refund(&refund).await,
    )
}

async fn get_by_transaction_id(ctx: &Ctx) -> anyhow::Result<()> {
    let (_, sale) = visa_sale(ctx, SALE_AMOUNT_MINOR).await?;
    let stored = read(ctx, &sale.transaction_id).await?;
    ensure!(
        stored == sale,
        "GetTransaction shows\n{stored:?}\nAuthorize answered\n{sale:?}"
    );
    Ok(())
}

async fn get_by_created_key(ctx: &Ctx) -> anyhow::Result<()> {
    let (request, sale) = visa_sale(ctx, SALE_AMOUNT_MINOR).await?;
    let context = request.context.as_ref().context("context")?;
    let found = check::ok(
        "GetTransaction by created_client_request_id",
        ctx.get_transaction(&Ctx::get_by_created_key(context)).await,
    )?
    .into_inner()
    .transaction
    .context("GetTransaction answered without a transaction")?;
    ensure!(
        found == sale,
        "GetTransaction by the key shows\n{found:?}\nAuthorize answered\n{sale:?}"
    );
    let unused = ctx.tw_context();
    check::code(
        "GetTransaction by an unused key",
        Code::NotFound,
        ctx.get_transaction(&Ctx::get_by_created_key(&unused)).await,
    )?;
    Ok(())
}

async fn other_store_not_found(ctx: &Ctx) -> anyhow::Result<()> {
    let (_, authorization) = visa_authorization(ctx).await?;
    let id = authorization.transaction_id.as_str();
    let other = ctx.target.jp_store_id.as_str();
    let elsewhere = |mut context: pb::RequestContext| {
        other.clone_into(&mut context.store_id);
        Some(context)
    };
    check::code(
        "GetTransaction from another store",
        Code::NotFound,
        ctx.get_transaction(&ctx.get_transaction_request(other, id))
            .await,
    )?;
    let mut capture = ctx.capture_request(id, PARTIAL_CAPTURE_MINOR);
    capture.context = elsewhere(capture.context.context("context")?);
    check::code(
        "Capture from another store",
        Code::NotFound,
        ctx.capture(&capture).await,
    )?;
    let mut void = ctx.void_request(id);
    void.context = elsewhere(void.context.context("context")?);
    check::code(
        "Void from another store",
        Code::NotFound,
        ctx.void(&void).await,
    )?;
    let mut refund = ctx.refund_request(id, PARTIAL_CAPTURE_MINOR);
    refund.context = elsewhere(refund.context.context("context")?);
    check::code(
        "Refund from another store",
        Code::NotFound,
        ctx.refund(&refund).await,
    )?;
    let stored = read(ctx, id).await?;
    ensure!(
        stored.status() == pb::CardTransactionStatus::Authorized,
        "after another store's attempts the authorization is {:?}",
        stored.status()
    );
    voided(ctx, id).await?;
    Ok(())
}
