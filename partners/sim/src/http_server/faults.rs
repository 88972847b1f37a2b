//! The partner simulators' fault plan, drawn from a seeded generator like the
//! bank simulator's (same seed and traffic, same faults), and its config.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bank::faults::SplitMix64;
use posgate_partners::wallet::api::is_code;

/// What the server does with one faultable request's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Apply, never answer.
    NoResponse,
    /// Apply, close the connection without answering.
    DropConnection,
    /// Apply, answer with a corrupted signature.
    BadSignature,
    /// Apply nothing, answer a signed `503` (a partner's overloaded front end).
    ServerError,
}

impl Fault {
    /// Whether the request is applied to the ledger before the fault is delivered.
    pub fn applies(self) -> bool {
        self != Self::ServerError
    }
}

/// Faults injected into the partner's faultable requests (money-moving
/// POSTs); reads are never faulted. "Process" faults apply the request
/// first, so the client must resolve an unknown outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    /// Delay before every faultable answer.
    #[serde(rename = "latency_ms", with = "crate::bank::config::millis")]
    pub latency: Duration,
    /// Probability of applying the request and never answering.
    pub no_response: f64,
    /// Probability of applying the request, then closing the connection.
    pub drop_connection: f64,
    /// Probability of applying the request and answering with a corrupted signature.
    pub bad_signature: f64,
    /// Probability of applying nothing and answering `503`.
    pub server_error: f64,
    /// Decline (wallet) or reject (biller) every money-moving request with
    /// this partner response code, touching nothing.
    pub decline_all: Option<String>,
    /// Inject at most this many faults, then none (unset: no limit). Lets a
    /// test fault exactly the first attempt and see the retry succeed.
    pub max_faults: Option<u64>,
    /// Fault only these operations (e.g. `top_up`, `payment`); empty: every
    /// faultable one. Lets a test fault one step of a multi-step flow, such
    /// as the payment after an auto-reload top-up.
    pub only: Vec<String>,
    /// Seed of the fault generator.
    pub seed: u64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            no_response: 0.0,
            drop_connection: 0.0,
            bad_signature: 0.0,
            server_error: 0.0,
            decline_all: None,
            max_faults: None,
            only: Vec::new(),
            seed: 1,
        }
    }
}

impl FaultConfig {
    fn probabilities(&self) -> [(&'static str, f64, Fault); 4] {
        [
            ("no_response", self.no_response, Fault::NoResponse),
            (
                "drop_connection",
                self.drop_connection,
                Fault::DropConnection,
            ),
            ("bad_signature", self.bad_signature, Fault::BadSignature),
            ("server_error", self.server_error, Fault::ServerError),
        ]
    }

    /// Whether faults (and `decline_all`) apply to the operation named `operation`.
    pub fn applies_to(&self, operation: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|only| only == operation)
    }

    /// Checks the config; `only` may name the `operations` given.
    pub fn validate(&self, operations: &[&str]) -> Result<(), String> {
        if let Some(bad) = self
            .only
            .iter()
            .find(|only| !operations.contains(&only.as_str()))
        {
            return Err(format!(
                "faults.only names {bad:?}; expected some of {operations:?}"
            ));
        }
        let probabilities = self.probabilities();
        for (name, value, _) in probabilities {
            if !(0.0..=1.0).contains(&value) {
                return Err(format!(
                    "faults.{name} is a probability 0.0..=1.0, got {value}"
                ));
            }
        }
        let total: f64 = probabilities.iter().map(|(_, value, _)| value).sum();
        if total > 1.0 {
            return Err(format!(
                "the fault probabilities add up to {total}; at most 1.0"
            ));
        }
        if let Some(code) = &self.decline_all
            && !is_code(code)
        {
            return Err(format!(
                "faults.decline_all is 1-16 of [A-Za-z0-9_-], got {code:?}"
            ));
        }
        Ok(())
    }
}

#[derive(Debug)]
pub struct FaultPlan {
    config: FaultConfig,
    rng: SplitMix64,
    injected: u64,
}

impl FaultPlan {
    pub fn new(config: FaultConfig) -> Self {
        let rng = SplitMix64(config.seed);
        Self {
            config,
            rng,
            injected: 0,
        }
    }

    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    pub fn latency(&self) -> Duration {
        self.config.latency
    }

    /// One draw per faultable request (replays from the idempotency store
    /// included: a flaky network does not spare retries); probabilities
    /// partition [0, 1) in a fixed order.
    pub fn draw(&mut self) -> Fault {
        let roll = self.rng.next_unit();
        if self
            .config
            .max_faults
            .is_some_and(|limit| self.injected >= limit)
        {
            return Fault::None;
        }
        let mut threshold = 0.0;
        for (_, probability, fault) in self.config.probabilities() {
            threshold += probability;
            if roll < threshold {
                self.injected += 1;
                return fault;
            }
        }
        Fault::None
    }
}
