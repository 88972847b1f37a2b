//! A black-box conformance suite for the posgate POS API (`posgate.v1`).
//!
//! The suite talks to a running gateway only through its published gRPC
//! contract, so an integrator can point it at their own deployment (the
//! `posgate-conformance` binary) and posgate's own tests can point it at a
//! gateway they start. It generates its own bill slips from the published
//! layouts: an independent implementation of the check rules cross-checks the
//! gateway's.
//!
//! This release covers `BillPaymentService` (bill collection, idempotency and
//! bad input) and `PaymentService` (card payments through the bank links:
//! sale, authorization, capture, void, refund, declines, co-brand points,
//! lookups, idempotency, bad card input and, against a bank simulator that
//! drops answers, unknown outcomes), and access control over mutual TLS
//! (the role × RPC table, terminals held to their own store), and
//! `WalletService` against a wallet simulator (cash top-up, pay, balance,
//! declines, bad input, card links and auto-reload from a co-brand card). Each case is named `group.case`, says in one line what it
//! proves, and passes or fails on its own.
//!
//! # Layout
//! - [`target`]: where the gateway is and who the suite acts as (stores, terminal, billers).
//! - [`slip`]: Taiwan three-segment Code 39 and Japan GS1-128 slip encoders with their check rules.
//! - [`card`]: the simulator's published test cards, Luhn, ISO 9564 format 0 PIN blocks.
//! - [`money`]: ISO 4217 exponents, whole units to minor units.
//! - [`client`]: the mutual-TLS channels per identity, request contexts, and calls with bounded retry on rate limits.
//! - [`check`]: assertions on gRPC statuses and their google.rpc details.
//! - [`cases`]: the cases, one file per group (`access`, `bill`, `idempotency`, `bad_input`, `card`, `card_bad_input`, `card_unknown_outcome`, `wallet`).
//! - [`report`]: per-case results, the PASS/FAIL text report and the JSON report.
//! - [`run`]: connects and runs the selected cases, each under a time bound.

pub mod card;
pub mod cases;
pub mod check;
pub mod client;
pub mod money;
pub mod report;
pub mod slip;
pub mod target;

use std::time::{Duration, Instant};

pub use cases::{Case, all_cases};
pub use client::Ctx;
pub use report::{CaseOutcome, CaseResult, Report};
pub use target::Target;

/// Longest a single case may take. The slowest case makes about 40 calls;
/// each takes milliseconds, so 30 s only trips on a hung gateway or a
/// sustained rate limit, and a hung case must not hang the whole suite.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a case that needs a bank dropping answers may take: its own
/// 30 s wait for the reversal, plus the unanswered attempts (each as long as
/// the gateway's bank timeout) before it.
pub const BANK_FAULT_CASE_TIMEOUT: Duration = Duration::from_secs(90);

/// Connects to the target and runs every case whose name contains `filter`
/// (all cases when `None`) and that fits the target's bank (see
/// [`Case::needs_bank_no_response`]), one after another, in their listed order.
///
/// # Errors
///
/// Only when the suite cannot start: the CA file is unreadable or the
/// gateway cannot be reached. Failing cases are reported in the [`Report`].
pub async fn run(target: &Target, filter: Option<&str>) -> anyhow::Result<Report> {
    let ctx = Ctx::connect(target).await?;
    let cases: Vec<Case> = all_cases()
        .into_iter()
        .filter(|case| case.needs_bank_no_response == target.bank_no_response)
        .filter(|case| !case.needs_wallet || target.wallet_operator_id.is_some())
        .filter(|case| !case.needs_online_biller || target.online_agency_code.is_some())
        .filter(|case| filter.is_none_or(|filter| case.name.contains(filter)))
        .collect();
    let started = Instant::now();
    let mut results = Vec::with_capacity(cases.len());
    for case in &cases {
        results.push(run_case(&ctx, case).await);
    }
    Ok(Report {
        target: target.addr.clone(),
        terminal_id: target.terminal_id.clone(),
        duration: started.elapsed(),
        results,
    })
}

/// Runs one case under [`CASE_TIMEOUT`] (or [`BANK_FAULT_CASE_TIMEOUT`]),
/// turning an error or a timeout into a failure.
pub async fn run_case(ctx: &Ctx, case: &Case) -> CaseResult {
    let started = Instant::now();
    let limit = if case.needs_bank_no_response {
        BANK_FAULT_CASE_TIMEOUT
    } else {
        CASE_TIMEOUT
    };
    let outcome = match tokio::time::timeout(limit, case.run(ctx)).await {
        Ok(Ok(())) => CaseOutcome::Pass,
        Ok(Err(error)) => CaseOutcome::Fail(format!("{error:#}")),
        Err(_) => CaseOutcome::Fail(format!("did not finish within {} s", limit.as_secs())),
    };
    CaseResult {
        name: case.name.clone(),
        description: case.description.clone(),
        outcome,
        duration: started.elapsed(),
    }
}
