//! The cases, one file per group. A case is a name (`group.case`), a
//! one-line description of what it proves, and an async function over the
//! shared [`Ctx`] that fails with a reason.
//!
//! Layout:
//! - `access`: the role × RPC table; terminals act only for their own store and terminal.
//! - `bill`: inquire, pay, get, cancel, past due, store scoping.
//! - `idempotency`: retries replay, reused keys are refused, concurrent duplicates agree.
//! - `bad_input`: a table of requests with one bad field each.
//! - `card`: card payments (PaymentService): sale, authorization, capture,
//!   void, refund, declines, co-brand points, lookups, idempotency.
//! - `card_bad_input`: card requests with one bad field each, and an expired card.
//! - `card_unknown_outcome`: the bank never answers; runs only against a
//!   gateway whose bank drops answers (see [`Case::needs_bank_no_response`]).
//! - `wallet`: `WalletService` against the example wallet simulator (see
//!   [`Case::needs_wallet`]).
//! - `online_bill`: an online biller asked and notified in real time; runs
//!   only when the target names one (see [`Case::needs_online_biller`]).

mod access;
mod bad_input;
mod bill;
mod card;
mod card_bad_input;
mod card_unknown_outcome;
mod idempotency;
mod online_bill;
mod wallet;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::client::Ctx;

/// What running a case returns.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>>;

type CaseFn = dyn for<'a> Fn(&'a Ctx) -> CaseFuture<'a> + Send + Sync;

/// One named case.
#[derive(Clone)]
pub struct Case {
    pub name: String,
    pub description: String,
    /// True for a case that needs the gateway's acquirer bank to drop
    /// answers (`faults.no_response`): it runs only when the target says so
    /// (`Target::bank_no_response`), and every other case runs only when it
    /// does not, since dropped answers would fail them.
    pub needs_bank_no_response: bool,
    /// True for a case that needs a wallet operator behind the gateway
    /// (`Target::wallet_operator_id`); skipped without one.
    pub needs_wallet: bool,
    /// True for a case that needs an online biller (`Target::online_agency_code`).
    pub needs_online_biller: bool,
    run: Arc<CaseFn>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("needs_bank_no_response", &self.needs_bank_no_response)
            .field("needs_wallet", &self.needs_wallet)
            .field("needs_online_biller", &self.needs_online_biller)
            .finish_non_exhaustive()
    }
}

impl Case {
    pub fn new(
        name: impl Into<String>,
        description: impl Into<String>,
        run: impl for<'a> Fn(&'a Ctx) -> CaseFuture<'a> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            needs_bank_no_response: false,
            needs_wallet: false,
            needs_online_biller: false,
            run: Arc::new(run),
        }
    }

    /// Marks the case as needing an online biller.
    #[must_use]
    pub fn with_online_biller(mut self) -> Self {
        self.needs_online_biller = true;
        self
    }

    /// Marks the case as needing a bank that drops answers.
    #[must_use]
    pub fn with_bank_no_response(mut self) -> Self {
        self.needs_bank_no_response = true;
        self
    }

    /// Marks the case as needing a wallet operator.
    #[must_use]
    pub fn with_wallet(mut self) -> Self {
        self.needs_wallet = true;
        self
    }

    /// Runs the case once.
    pub fn run<'a>(&self, ctx: &'a Ctx) -> CaseFuture<'a> {
        (self.run)(ctx)
    }
}

/// Every case of this release, in run order, including those that need a
/// bank that drops answers.
#[must_use]
pub fn all_cases() -> Vec<Case> {
    let mut cases = bill::cases();
    cases.extend(idempotency::cases());
    cases.extend(bad_input::cases());
    cases.extend(card::cases());
    cases.extend(card_bad_input::cases());
    cases.extend(card_unknown_outcome::cases());
    cases.extend(wallet::cases());
    cases.extend(online_bill::cases());
    cases.extend(access::cases());
    cases
}
