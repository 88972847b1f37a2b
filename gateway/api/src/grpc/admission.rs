//! Admission control: a bound on requests in flight and token-bucket rate
//! limits per terminal and per store (`governor`). A request over a limit is
//! refused at once with `RESOURCE_EXHAUSTED` and a retry delay, instead of
//! waiting in a queue that grows without bound. Every refusal counts in
//! `posgate_rate_limited_total{scope}` (README "Metrics").

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use posgate_core::config::LimitsConfig;

type KeyedLimiter = RateLimiter<String, DashMapStateStore<String>, DefaultClock>;

/// `posgate_rate_limited_total{scope}`: requests refused by admission, by
/// the limit that refused them ([`Refusal::scope`]).
pub const RATE_LIMITED_TOTAL: &str = "posgate_rate_limited_total";

/// Retry advice when the in-flight bound is hit: long enough for a burst to
/// drain, short enough that a till does not notice.
const IN_FLIGHT_RETRY: Duration = Duration::from_millis(100);

/// Why a request was not admitted, with how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    InFlight { retry_after: Duration },
    Terminal { retry_after: Duration },
    Store { retry_after: Duration },
}

impl Refusal {
    pub fn retry_after(self) -> Duration {
        match self {
            Self::InFlight { retry_after }
            | Self::Terminal { retry_after }
            | Self::Store { retry_after } => retry_after,
        }
    }

    /// The `scope` label of the limit that refused: `in_flight`, `terminal` or `store`.
    pub const fn scope(self) -> &'static str {
        match self {
            Self::InFlight { .. } => "in_flight",
            Self::Terminal { .. } => "terminal",
            Self::Store { .. } => "store",
        }
    }

    /// Every scope, for the metrics endpoint to show each at zero before any refusal.
    pub const SCOPES: [&'static str; 3] = [
        Self::InFlight {
            retry_after: Duration::ZERO,
        }
        .scope(),
        Self::Terminal {
            retry_after: Duration::ZERO,
        }
        .scope(),
        Self::Store {
            retry_after: Duration::ZERO,
        }
        .scope(),
    ];

    /// Counts the refusal in [`RATE_LIMITED_TOTAL`] and hands it on.
    fn counted(self) -> Self {
        metrics::counter!(RATE_LIMITED_TOTAL, "scope" => self.scope()).increment(1);
        self
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::InFlight { .. } => "the gateway is at its limit of requests in flight",
            Self::Terminal { .. } => "this terminal is over its request rate limit",
            Self::Store { .. } => "this store is over its request rate limit",
        }
    }
}

/// The limits, shared by every service.
#[derive(Debug)]
pub struct Admission {
    in_flight: Arc<Semaphore>,
    terminals: KeyedLimiter,
    stores: KeyedLimiter,
    clock: DefaultClock,
}

fn quota(per_second: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_second).expect("config checked rates are positive");
    let burst = NonZeroU32::new(burst).expect("config checked bursts are positive");
    Quota::per_second(rate).allow_burst(burst)
}

impl Admission {
    pub fn new(limits: &LimitsConfig) -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            terminals: RateLimiter::dashmap(quota(
                limits.terminal_per_second,
                limits.terminal_burst,
            )),
            stores: RateLimiter::dashmap(quota(limits.store_per_second, limits.store_burst)),
            clock: DefaultClock::default(),
        }
    }

    /// Takes an in-flight slot, held until the returned permit drops.
    pub fn enter(&self) -> Result<OwnedSemaphorePermit, Refusal> {
        Arc::clone(&self.in_flight)
            .try_acquire_owned()
            .map_err(|_| {
                Refusal::InFlight {
                    retry_after: IN_FLIGHT_RETRY,
                }
                .counted()
            })
    }

    /// Charges one request to a terminal and its store.
    pub fn charge(&self, store_id: &str, terminal_id: &str) -> Result<(), Refusal> {
        let terminal_key = format!("{store_id}/{terminal_id}");
        self.terminals
            .check_key(&terminal_key)
            .map_err(|not_until| {
                Refusal::Terminal {
                    retry_after: not_until.wait_time_from(self.clock.now()),
                }
                .counted()
            })?;
        self.stores
            .check_key(&store_id.to_owned())
            .map_err(|not_until| {
                Refusal::Store {
                    retry_after: not_until.wait_time_from(self.clock.now()),
                }
                .counted()
            })
    }

    /// Forgets limiter state of terminals idle long enough to be full again,
    /// so the maps stay as small as the set of active terminals.
    pub fn forget_idle(&self) {
        self.terminals.retain_recent();
        self.stores.retain_recent();
    }
}
