//! The wallet simulator's fault plan, drawn from a seeded generator like the
//! bank simulator's (same seed and traffic, same faults).

use std::time::Duration;

use super::config::FaultConfig;
use crate::bank::sim::faults::SplitMix64;

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
        for (probability, fault) in [
            (self.config.no_response, Fault::NoResponse),
            (self.config.drop_connection, Fault::DropConnection),
            (self.config.bad_signature, Fault::BadSignature),
        ] {
            threshold += probability;
            if roll < threshold {
                self.injected += 1;
                return fault;
            }
        }
        Fault::None
    }
}
