//! A circuit breaker per partner: after [`BreakerConfig::failure_threshold`]
//! consecutive failures the circuit opens and calls fail at once without
//! touching the network; after [`BreakerConfig::open_for`] one probe is let
//! through (half-open); its success closes the circuit, its failure opens it
//! again. Declines and 4xx answers are successes: the partner is healthy.

use std::time::Duration;

use tokio::time::Instant;

/// Consecutive failures that open the circuit: a single timeout is noise,
/// five in a row is an outage worth shedding load for.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 5;
/// How long the circuit stays open before a probe: short enough that a
/// partner back from a blip is used again within seconds.
pub const DEFAULT_OPEN_FOR: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: DEFAULT_FAILURE_THRESHOLD,
            open_for: DEFAULT_OPEN_FOR,
        }
    }
}

/// The breaker's state, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed { consecutive_failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_in_flight: bool },
}

#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: BreakerState::Closed {
                consecutive_failures: 0,
            },
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// May a call go out now? In half-open, only one probe at a time.
    pub fn try_acquire(&mut self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed { .. } => true,
            BreakerState::Open { until } if now >= until => {
                self.state = BreakerState::HalfOpen {
                    probe_in_flight: true,
                };
                true
            }
            BreakerState::Open { .. }
            | BreakerState::HalfOpen {
                probe_in_flight: true,
            } => false,
            BreakerState::HalfOpen {
                probe_in_flight: false,
            } => {
                self.state = BreakerState::HalfOpen {
                    probe_in_flight: true,
                };
                true
            }
        }
    }

    pub fn record_success(&mut self) {
        self.state = BreakerState::Closed {
            consecutive_failures: 0,
        };
    }

    pub fn record_failure(&mut self, now: Instant) {
        self.state = match self.state {
            BreakerState::Closed {
                consecutive_failures,
            } if consecutive_failures + 1 < self.config.failure_threshold => BreakerState::Closed {
                consecutive_failures: consecutive_failures + 1,
            },
            _ => BreakerState::Open {
                until: now + self.config.open_for,
            },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Closed → open after the threshold → one half-open probe → closed or open again.
    #[test]
    fn opens_probes_and_closes() {
        let config = BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_secs(5),
        };
        let mut breaker = CircuitBreaker::new(config);
        let start = Instant::now();
        for _ in 0..2 {
            assert!(breaker.try_acquire(start));
            breaker.record_failure(start);
        }
        assert!(breaker.try_acquire(start), "still closed after 2 of 3");
        breaker.record_failure(start);
        assert!(!breaker.try_acquire(start), "open after 3");
        assert!(!breaker.try_acquire(start + Duration::from_secs(4)));
        let later = start + Duration::from_secs(5);
        assert!(breaker.try_acquire(later), "probe allowed");
        assert!(!breaker.try_acquire(later), "only one probe");
        breaker.record_failure(later);
        assert!(
            !breaker.try_acquire(later + Duration::from_secs(1)),
            "open again"
        );
        let again = later + Duration::from_secs(5);
        assert!(breaker.try_acquire(again));
        breaker.record_success();
        assert_eq!(
            breaker.state(),
            BreakerState::Closed {
                consecutive_failures: 0
            }
        );
        // A success resets the count: failures must be consecutive.
        breaker.record_failure(again);
        breaker.record_failure(again);
        breaker.record_success();
        breaker.record_failure(again);
        assert!(breaker.try_acquire(again));
    }
}
