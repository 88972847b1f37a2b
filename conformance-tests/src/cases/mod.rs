//! The cases, one file per group. A case is a name (`group.case`), a
//! one-line description of what it proves, and an async function over the
//! shared [`Ctx`] that fails with a reason.
//!
//! Layout:
//! - `bill`: inquire, pay, get, cancel, past due, store scoping.
//! - `idempotency`: retries replay, reused keys are refused, concurrent duplicates agree.
//! - `bad_input`: a table of requests with one bad field each.

mod bad_input;
mod bill;
mod idempotency;

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
    run: Arc<CaseFn>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .field("description", &self.description)
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
            run: Arc::new(run),
        }
    }

    /// Runs the case once.
    pub fn run<'a>(&self, ctx: &'a Ctx) -> CaseFuture<'a> {
        (self.run)(ctx)
    }
}

/// Every case of this release, in run order.
#[must_use]
pub fn all_cases() -> Vec<Case> {
    let mut cases = bill::cases();
    cases.extend(idempotency::cases());
    cases.extend(bad_input::cases());
    cases
}
