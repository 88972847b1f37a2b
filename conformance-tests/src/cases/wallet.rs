//! `WalletService` through the gateway's wallet operator, configured like
//! `config/wallet-sim.example.toml` (a `posgate sim wallet` behind it) and
//! the co-brand issuer of `config/bank-sim.example.toml`: cash top-ups,
//! payments, balances, operator declines as answers, bad input, card links,
//! card-funded top-ups and the auto-reload of Pay.
//!
//! Every run leaves the wallets as it found them (a top-up is spent again)
//! and charges the co-brand test card NT$200 (one NT$100 card top-up, one
//! NT$100 auto-reload), so runs can repeat against the same gateway.

use anyhow::{Context as _, ensure};
use posgate_proto::v1 as pb;
use tonic::Code;

use super::Case;
use crate::card::{CO_BRAND_PAN, EXPIRY, VISA_PAN};
use crate::check;
use crate::client::{Ctx, chip_card};

/// The example simulator's wallets: NT$1,000 with room to NT$10,000; empty
/// with room to NT$1,000; blocked.
const RICH: &str = "1000000000000001";
const EMPTY: &str = "1000000000000002";
const BLOCKED: &str = "1000000000000003";
/// The operator's top-up unit (NT$100) and one auto-reload step.
const UNIT_MINOR: i64 = 10_000;
/// What a run spends from `RICH` to undo its two top-ups.
const SPEND_MINOR: i64 = 2 * UNIT_MINOR;

#[allow(clippy::too_many_lines, reason = "one list, one entry per case")]
pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "wallet.top-up-cash",
            "A cash TopUp of NT$100 is COMPLETED with the operator's balance, funding CASH, and a retry replays it byte for byte",
            |ctx| Box::pin(top_up_cash(ctx)),
        )
        .with_wallet(),
        Case::new(
            "wallet.card-top-up",
            "A TopUp paid by the co-brand card is COMPLETED, funding CARD, with its card SALE CAPTURED on route CO_BRAND_ISSUER",
            |ctx| Box::pin(card_top_up(ctx)),
        )
        .with_wallet(),
        Case::new(
            "wallet.pay-and-balance",
            "A Pay is COMPLETED with balance_after, and GetBalance then reads the same balance from the operator",
            |ctx| Box::pin(pay_and_balance(ctx)),
        )
        .with_wallet(),
        Case::new(
            "wallet.pay-blocked-declined",
            "Pay from a blocked wallet is an answer, not an error: DECLINED, reason WALLET_BLOCKED",
            |ctx| Box::pin(pay_blocked(ctx)),
        )
        .with_wallet(),
        Case::new(
            "wallet.top-up-bad-amount",
            "A TopUp that is not a multiple of the operator's unit is INVALID_ARGUMENT naming amount.amount_minor",
            |ctx| Box::pin(top_up_bad_amount(ctx)),
        )
        .with_wallet(),
        Case::new(
            "wallet.link-not-co-brand",
            "LinkCard with a card outside the co-brand ranges is FAILED_PRECONDITION NOT_CO_BRAND_CARD",
            |ctx| Box::pin(link_not_co_brand(ctx)),
        )
        .with_wallet(),
        Case::new(
            "wallet.auto-reload",
            "With the co-brand card linked (step NT$100), Pay NT$1 above the balance reloads NT$100 from the card and is COMPLETED; UnlinkCard then UNLINKED",
            |ctx| Box::pin(auto_reload(ctx)),
        )
        .with_wallet(),
    ]
}

fn operator(ctx: &Ctx) -> String {
    ctx.target.wallet_operator_id.clone().unwrap_or_default()
}

fn wallet_ref(ctx: &Ctx, number: &str) -> pb::WalletRef {
    pb::WalletRef {
        wallet_operator_id: operator(ctx),
        id: Some(pb::wallet_ref::Id::CardNumber(number.to_owned())),
    }
}

fn twd_money(amount_minor: i64) -> pb::Money {
    pb::Money {
        amount_minor,
        currency: "TWD".to_owned(),
    }
}

fn status(transaction: &pb::WalletTransaction) -> pb::WalletTransactionStatus {
    transaction.status()
}

fn pay_request(ctx: &Ctx, number: &str, amount_minor: i64) -> pb::PayRequest {
    pb::PayRequest {
        context: Some(ctx.tw_context()),
        wallet: Some(wallet_ref(ctx, number)),
        amount: Some(twd_money(amount_minor)),
        pos_reference: "CONF-1".to_owned(),
    }
}

async fn pay(ctx: &Ctx, request: pb::PayRequest) -> anyhow::Result<pb::WalletTransaction> {
    let answer = ctx.wallets_for(request.context.as_ref()).pay(request).await;
    check::ok("Pay", answer)?
        .into_inner()
        .transaction
        .context("Pay answered without a transaction")
}

async fn top_up_cash(ctx: &Ctx) -> anyhow::Result<()> {
    let request = pb::TopUpRequest {
        context: Some(ctx.tw_context()),
        wallet: Some(wallet_ref(ctx, RICH)),
        amount: Some(twd_money(UNIT_MINOR)),
        funding: Some(pb::top_up_request::Funding::Cash(pb::CashFunding {})),
    };
    let mut client = ctx.wallets_for(request.context.as_ref());
    let first = check::ok("TopUp", client.top_up(request.clone()).await)?;
    check::not_replayed("TopUp", &first)?;
    let first = first.into_inner();
    let transaction = first.transaction.clone().context("no transaction")?;
    ensure!(
        status(&transaction) == pb::WalletTransactionStatus::Completed,
        "TopUp: expected COMPLETED, got {transaction:?}"
    );
    ensure!(
        transaction.balance_after.is_some(),
        "TopUp: no balance_after"
    );
    ensure!(
        transaction.funding() == pb::WalletFunding::Cash,
        "TopUp: funding {:?}",
        transaction.funding()
    );
    let retry = check::ok("TopUp retry", client.top_up(request).await)?;
    check::replayed("TopUp retry", &first, &retry)?;
    Ok(())
}

async fn card_top_up(ctx: &Ctx) -> anyhow::Result<()> {
    let request = pb::TopUpRequest {
        context: Some(ctx.tw_context()),
        wallet: Some(wallet_ref(ctx, RICH)),
        amount: Some(twd_money(UNIT_MINOR)),
        funding: Some(pb::top_up_request::Funding::Card(chip_card(
            CO_BRAND_PAN,
            EXPIRY,
        ))),
    };
    let answer = ctx
        .wallets_for(request.context.as_ref())
        .top_up(request)
        .await;
    let transaction = check::ok("TopUp by card", answer)?
        .into_inner()
        .transaction
        .context("no transaction")?;
    ensure!(
        status(&transaction) == pb::WalletTransactionStatus::Completed,
        "TopUp by card: expected COMPLETED, got {transaction:?}"
    );
    ensure!(transaction.funding() == pb::WalletFunding::Card, "funding");
    let sale = transaction
        .card_transaction
        .context("TopUp by card: no card_transaction")?;
    ensure!(
        sale.status() == pb::CardTransactionStatus::Captured
            && sale.route() == pb::CardRoute::CoBrandIssuer,
        "TopUp by card: the sale is {:?} on {:?}",
        sale.status(),
        sale.route()
    );
    Ok(())
}

async fn pay_and_balance(ctx: &Ctx) -> anyhow::Result<()> {
    let paid = pay(ctx, pay_request(ctx, RICH, SPEND_MINOR)).await?;
    ensure!(
        status(&paid) == pb::WalletTransactionStatus::Completed,
        "Pay: expected COMPLETED, got {paid:?}"
    );
    let after = paid.balance_after.context("Pay: no balance_after")?;
    let request = pb::GetBalanceRequest {
        context: Some(ctx.tw_context()),
        wallet: Some(wallet_ref(ctx, RICH)),
    };
    let balance = check::ok(
        "GetBalance",
        ctx.wallets_for(request.context.as_ref())
            .get_balance(request)
            .await,
    )?
    .into_inner();
    ensure!(
        balance.balance.as_ref() == Some(&after),
        "GetBalance {:?} differs from the payment's balance_after {after:?}",
        balance.balance
    );
    ensure!(
        balance.wallet.is_some_and(|w| w.wallet_account_id == RICH),
        "GetBalance: wrong wallet"
    );
    Ok(())
}

async fn pay_blocked(ctx: &Ctx) -> anyhow::Result<()> {
    let paid = pay(ctx, pay_request(ctx, BLOCKED, 100)).await?;
    ensure!(
        status(&paid) == pb::WalletTransactionStatus::Declined
            && paid.decline_reason() == pb::WalletDeclineReason::WalletBlocked,
        "Pay from a blocked wallet: expected DECLINED WALLET_BLOCKED, got {paid:?}"
    );
    Ok(())
}

async fn top_up_bad_amount(ctx: &Ctx) -> anyhow::Result<()> {
    let request = pb::TopUpRequest {
        context: Some(ctx.tw_context()),
        wallet: Some(wallet_ref(ctx, RICH)),
        amount: Some(twd_money(UNIT_MINOR + 1)),
        funding: Some(pb::top_up_request::Funding::Cash(pb::CashFunding {})),
    };
    let answer = ctx
        .wallets_for(request.context.as_ref())
        .top_up(request)
        .await;
    check::invalid_field("TopUp of NT$100.01", "amount.amount_minor", answer)
}

fn link_request(ctx: &Ctx, number: &str, pan: &str) -> pb::LinkCardRequest {
    pb::LinkCardRequest {
        context: Some(ctx.tw_context()),
        wallet: Some(wallet_ref(ctx, number)),
        card: Some(chip_card(pan, EXPIRY)),
        auto_reload: Some(pb::AutoReloadSettings {
            enabled: true,
            step: Some(twd_money(UNIT_MINOR)),
        }),
    }
}

async fn link_not_co_brand(ctx: &Ctx) -> anyhow::Result<()> {
    let request = link_request(ctx, EMPTY, VISA_PAN);
    let answer = ctx
        .wallets_for(request.context.as_ref())
        .link_card(request)
        .await;
    check::precondition("LinkCard with a Visa", "NOT_CO_BRAND_CARD", answer)
}

async fn unlink(ctx: &Ctx, number: &str) -> Result<pb::UnlinkCardResponse, tonic::Status> {
    let request = pb::UnlinkCardRequest {
        context: Some(ctx.tw_context()),
        wallet: Some(wallet_ref(ctx, number)),
        reason: "conformance run".to_owned(),
    };
    ctx.wallets_for(request.context.as_ref())
        .unlink_card(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn auto_reload(ctx: &Ctx) -> anyhow::Result<()> {
    // A link left by an interrupted run goes first.
    match unlink(ctx, EMPTY).await {
        Ok(_) => {}
        Err(status) if status.code() == Code::FailedPrecondition => {}
        Err(status) => anyhow::bail!("UnlinkCard: {}", check::describe(&status)),
    }
    let request = link_request(ctx, EMPTY, CO_BRAND_PAN);
    let linked = check::ok(
        "LinkCard",
        ctx.wallets_for(request.context.as_ref())
            .link_card(request)
            .await,
    )?
    .into_inner();
    let link = linked.link.context("LinkCard: no link")?;
    ensure!(
        link.status() == pb::WalletCardLinkStatus::Active,
        "LinkCard: {link:?}"
    );
    ensure!(
        !link.masked_pan.contains(&CO_BRAND_PAN[6..12]),
        "LinkCard: the masked PAN shows the middle digits"
    );
    let request = pb::GetBalanceRequest {
        context: Some(ctx.tw_context()),
        wallet: Some(wallet_ref(ctx, EMPTY)),
    };
    let balance = check::ok(
        "GetBalance",
        ctx.wallets_for(request.context.as_ref())
            .get_balance(request)
            .await,
    )?
    .into_inner();
    ensure!(balance.card_link.is_some(), "GetBalance: no card_link");
    let before = balance.balance.map_or(0, |money| money.amount_minor);
    let paid = pay(ctx, pay_request(ctx, EMPTY, before + 100)).await?;
    ensure!(
        status(&paid) == pb::WalletTransactionStatus::Completed,
        "Pay with auto-reload: expected COMPLETED, got {paid:?}"
    );
    let reload = paid.auto_reload.context("Pay: no auto_reload")?;
    ensure!(
        reload.amount == Some(twd_money(UNIT_MINOR)),
        "auto-reload of {:?}, expected NT$100",
        reload.amount
    );
    ensure!(
        reload
            .card_transaction
            .is_some_and(|sale| sale.status() == pb::CardTransactionStatus::Captured),
        "auto-reload: the card sale is not CAPTURED"
    );
    let unlinked = unlink(ctx, EMPTY)
        .await
        .map_err(|status| anyhow::anyhow!("UnlinkCard: {}", check::describe(&status)))?;
    ensure!(
        unlinked
            .link
            .is_some_and(|link| link.status() == pb::WalletCardLinkStatus::Unlinked),
        "UnlinkCard: not UNLINKED"
    );
    Ok(())
}
