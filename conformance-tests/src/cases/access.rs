//! Access control: the role × RPC table (terminals take payments, auditors
//! read the audit log, operators only check health) and terminals held to
//! their own store and terminal, refused before anything is stored. Each
//! identity is a client certificate of the target (`--client-certs`).

use anyhow::{Context as _, ensure};
use pb::audit_service_client::AuditServiceClient;
use pb::bill_payment_service_client::BillPaymentServiceClient;
use pb::payment_service_client::PaymentServiceClient;
use posgate_proto::v1 as pb;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::Case;
use crate::card::VISA_PAN;
use crate::check::{code, denied, describe, not_replayed, ok};
use crate::client::Ctx;
use crate::target::terminal_spiffe_id;

/// ErrorInfo reason: the caller's role may not call the service.
const ROLE_NOT_ALLOWED: &str = "ROLE_NOT_ALLOWED";
/// ErrorInfo reason: a terminal claimed another store or terminal.
const IDENTITY_MISMATCH: &str = "IDENTITY_MISMATCH";
/// A small card amount in minor units; these sales are refused anyway.
const CARD_AMOUNT_MINOR: i64 = 100;

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "access.role-table",
            "Auditors and operators are refused every bill and card RPC (PERMISSION_DENIED, ROLE_NOT_ALLOWED); terminals and operators are refused AuditService; every identity may check health",
            |ctx| Box::pin(role_table(ctx)),
        ),
        Case::new(
            "access.cross-store-pay",
            "A terminal paying a bill for another store is refused (PERMISSION_DENIED, IDENTITY_MISMATCH on context.store_id) and nothing is stored: the rightful terminal then pays with the same key afresh",
            |ctx| Box::pin(cross_store_pay(ctx)),
        ),
        Case::new(
            "access.cross-terminal-pay",
            "A terminal paying a bill as another terminal of its store is refused (IDENTITY_MISMATCH on context.terminal_id) and nothing is stored",
            |ctx| Box::pin(cross_terminal_pay(ctx)),
        ),
        Case::new(
            "access.cross-store-card",
            "A terminal authorizing a card for another store is refused (IDENTITY_MISMATCH on context.store_id) and no transaction exists under that key",
            |ctx| Box::pin(cross_store_card(ctx)),
        ),
    ]
}

/// The channel of the first certificate whose SPIFFE id starts with `prefix`.
fn channel_with_prefix(ctx: &Ctx, prefix: &str) -> anyhow::Result<(String, Channel)> {
    let cert = ctx
        .target
        .client_cert_with_prefix(prefix)
        .with_context(|| {
            format!("the target has no client certificate for {prefix}* (see --client-certs)")
        })?;
    let channel = ctx
        .channel_as(&cert.spiffe_id)
        .context("a channel per client certificate")?;
    Ok((cert.spiffe_id.clone(), channel))
}

/// The channel of terminal `store_id`/`terminal_id`.
fn terminal_channel(ctx: &Ctx, store_id: &str, terminal_id: &str) -> anyhow::Result<Channel> {
    let id = terminal_spiffe_id(store_id, terminal_id);
    ctx.channel_as(&id)
        .with_context(|| format!("the target has no client certificate for {id}"))
}

/// Every bill and card RPC with a well-formed request from the suite's terminal.
async fn pos_rpcs(ctx: &Ctx, channel: &Channel) -> Vec<(&'static str, Result<(), Status>)> {
    let mut bills = BillPaymentServiceClient::new(channel.clone());
    let mut cards = PaymentServiceClient::new(channel.clone());
    let unknown = uuid::Uuid::now_v7().to_string();
    let pay = ctx.tw_pay_request();
    let inquire = pb::InquireBillRequest {
        context: Some(ctx.tw_context()),
        slip: pay.slip.clone(),
    };
    let sale = ctx.authorize_request(VISA_PAN, CARD_AMOUNT_MINOR, pb::CaptureMode::Sale);
    vec![
        ("InquireBill", bills.inquire_bill(inquire).await.map(drop)),
        ("PayBill", bills.pay_bill(pay).await.map(drop)),
        (
            "CancelBill",
            bills
                .cancel_bill(ctx.tw_cancel_request(&unknown))
                .await
                .map(drop),
        ),
        (
            "GetBillPayment",
            bills
                .get_bill_payment(ctx.tw_get_by_id(&unknown))
                .await
                .map(drop),
        ),
        ("Authorize", cards.authorize(sale).await.map(drop)),
        (
            "Capture",
            cards
                .capture(ctx.capture_request(&unknown, CARD_AMOUNT_MINOR))
                .await
                .map(drop),
        ),
        (
            "Void",
            cards.void(ctx.void_request(&unknown)).await.map(drop),
        ),
        (
            "Refund",
            cards
                .refund(ctx.refund_request(&unknown, CARD_AMOUNT_MINOR))
                .await
                .map(drop),
        ),
        (
            "GetTransaction",
            cards
                .get_transaction(pb::GetTransactionRequest {
                    context: Some(ctx.tw_context()),
                    lookup: Some(pb::get_transaction_request::Lookup::TransactionId(unknown)),
                })
                .await
                .map(drop),
        ),
    ]
}

async fn health(channel: &Channel) -> Result<(), Status> {
    HealthClient::new(channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .map(drop)
}

async fn verify_chain(channel: &Channel, auditor_id: &str) -> Result<(), Status> {
    AuditServiceClient::new(channel.clone())
        .verify_chain(pb::VerifyChainRequest {
            context: Some(pb::AuditContext {
                auditor_id: auditor_id.to_owned(),
                client_request_id: Ctx::new_key(),
                client_timestamp: Some(crate::client::now_timestamp()),
                purpose: "posgate conformance: role table".to_owned(),
            }),
            ..pb::VerifyChainRequest::default()
        })
        .await
        .map(drop)
}

fn expect_role_denied(what: &str, answer: Result<(), Status>) -> anyhow::Result<()> {
    denied(
        what,
        ROLE_NOT_ALLOWED,
        &[],
        answer.map(tonic::Response::new),
    )
}

async fn role_table(ctx: &Ctx) -> anyhow::Result<()> {
    let (auditor, auditor_channel) = channel_with_prefix(ctx, "spiffe://posgate/auditor/")?;
    let (operator, operator_channel) = channel_with_prefix(ctx, "spiffe://posgate/operator/")?;
    for (who, channel) in [(&auditor, &auditor_channel), (&operator, &operator_channel)] {
        for (rpc, answer) in pos_rpcs(ctx, channel).await {
            expect_role_denied(&format!("{rpc} as {who}"), answer)?;
        }
        health(channel)
            .await
            .map_err(|status| anyhow::anyhow!("health as {who}: {}", describe(&status)))?;
    }
    let own = ctx.main_channel();
    health(&own)
        .await
        .map_err(|status| anyhow::anyhow!("health as the terminal: {}", describe(&status)))?;
    let auditor_id = auditor.rsplit('/').next().unwrap_or_default();
    expect_role_denied(
        "VerifyChain as the terminal",
        verify_chain(&own, auditor_id).await,
    )?;
    expect_role_denied(
        &format!("VerifyChain as {operator}"),
        verify_chain(&operator_channel, auditor_id).await,
    )?;
    // The auditor reaches AuditService: verified, or no checkpoint signed yet.
    match verify_chain(&auditor_channel, auditor_id).await {
        Ok(()) => {}
        Err(status) if status.code() == Code::FailedPrecondition => {}
        Err(status) => anyhow::bail!("VerifyChain as {auditor}: {}", describe(&status)),
    }
    // An auditor may read only under its own certificate's id.
    code(
        &format!("VerifyChain as {auditor} claiming another auditor id"),
        Code::PermissionDenied,
        verify_chain(&auditor_channel, "someone-else")
            .await
            .map(tonic::Response::new),
    )?;
    // The terminal itself reaches the bill service.
    let inquire = pb::InquireBillRequest {
        context: Some(ctx.tw_context()),
        slip: ctx.tw_pay_request().slip,
    };
    let answer = BillPaymentServiceClient::new(own)
        .inquire_bill(inquire)
        .await;
    ok("InquireBill as the terminal", answer)?;
    Ok(())
}

/// `request` is refused over the suite's own channel with `fields`
/// mismatched; then the rightful terminal finds no payment under its key,
/// and paying it afresh is not a replay.
async fn refused_then_paid_afresh(
    ctx: &Ctx,
    request: pb::PayBillRequest,
    fields: &[&str],
) -> anyhow::Result<()> {
    let context = request
        .context
        .clone()
        .context("the request has a context")?;
    let answer = BillPaymentServiceClient::new(ctx.main_channel())
        .pay_bill(request.clone())
        .await;
    denied(
        "PayBill for another till",
        IDENTITY_MISMATCH,
        fields,
        answer,
    )?;
    let rightful = terminal_channel(ctx, &context.store_id, &context.terminal_id)?;
    let lookup = pb::GetBillPaymentRequest {
        context: Some(pb::RequestContext {
            client_request_id: Ctx::new_key(),
            ..context.clone()
        }),
        lookup: Some(pb::get_bill_payment_request::Lookup::PaidClientRequestId(
            context.client_request_id.clone(),
        )),
    };
    let mut bills = BillPaymentServiceClient::new(rightful);
    code(
        "GetBillPayment by the refused key, from the rightful terminal",
        Code::NotFound,
        bills.get_bill_payment(lookup).await,
    )?;
    let paid = ok(
        "PayBill by the rightful terminal",
        bills.pay_bill(request).await,
    )?;
    not_replayed("PayBill by the rightful terminal", &paid)?;
    let payment = paid
        .into_inner()
        .payment
        .context("the answer has a payment")?;
    ensure!(
        payment.store_id == context.store_id && payment.terminal_id == context.terminal_id,
        "the payment belongs to {}/{}",
        payment.store_id,
        payment.terminal_id
    );
    Ok(())
}

async fn cross_store_pay(ctx: &Ctx) -> anyhow::Result<()> {
    let request = ctx.jp_pay_request();
    refused_then_paid_afresh(ctx, request, &["context.store_id"]).await
}

async fn cross_terminal_pay(ctx: &Ctx) -> anyhow::Result<()> {
    let mut request = ctx.tw_pay_request();
    if let Some(context) = request.context.as_mut() {
        context.terminal_id = ctx.target.other_terminal_id();
    }
    refused_then_paid_afresh(ctx, request, &["context.terminal_id"]).await
}

async fn cross_store_card(ctx: &Ctx) -> anyhow::Result<()> {
    let mut sale = ctx.authorize_request(VISA_PAN, CARD_AMOUNT_MINOR, pb::CaptureMode::Sale);
    let context = pb::RequestContext {
        store_id: ctx.target.jp_store_id.clone(),
        ..sale.context.clone().context("the request has a context")?
    };
    sale.context = Some(context.clone());
    let answer = PaymentServiceClient::new(ctx.main_channel())
        .authorize(sale)
        .await;
    denied(
        "Authorize for another store",
        IDENTITY_MISMATCH,
        &["context.store_id"],
        answer,
    )?;
    let rightful = terminal_channel(ctx, &context.store_id, &context.terminal_id)?;
    let lookup = pb::GetTransactionRequest {
        context: Some(pb::RequestContext {
            client_request_id: Ctx::new_key(),
            ..context.clone()
        }),
        lookup: Some(pb::get_transaction_request::Lookup::CreatedClientRequestId(
            context.client_request_id,
        )),
    };
    let answer = PaymentServiceClient::new(rightful)
        .get_transaction(lookup)
        .await;
    // The Japanese store may take no cards (FAILED_PRECONDITION) or find
    // nothing (NOT_FOUND); either way no transaction was created.
    match answer {
        Ok(found) => anyhow::bail!(
            "a transaction exists under the refused key: {:?}",
            found.into_inner()
        ),
        Err(status) if matches!(status.code(), Code::NotFound | Code::FailedPrecondition) => Ok(()),
        Err(status) => anyhow::bail!(
            "GetTransaction by the refused key: expected NOT_FOUND, got {}",
            describe(&status)
        ),
    }
}
