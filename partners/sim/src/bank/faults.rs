//! The fault plan: which fault, if any, hits the next financial request.
//! Drawn from a seeded generator so a run with the same seed and the same
//! order of requests injects the same faults.

use std::time::Duration;

use super::config::FaultConfig;

/// What the server does with one financial request's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally (after the configured latency).
    None,
    /// Apply the request, never answer.
    NoResponse,
    /// Apply the request, then close the connection without answering.
    DropConnection,
    /// Apply the request, answer after this delay.
    Late(Duration),
    /// Answer twice.
    Duplicate,
    /// Answer with a corrupted MAC.
    BadMac,
}

/// The active fault config and its generator.
#[derive(Debug)]
pub struct FaultPlan {
    config: FaultConfig,
    rng: SplitMix64,
}

impl FaultPlan {
    pub fn new(config: FaultConfig) -> Self {
        let rng = SplitMix64(config.seed);
        Self { config, rng }
    }

    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// Draws the fault for the next financial request. One draw per request;
    /// the probabilities partition [0, 1) in a fixed order.
    pub fn draw(&mut self) -> Fault {
        let roll = self.rng.next_unit();
        let config = &self.config;
        let mut threshold = 0.0;
        let choices = [
            (config.no_response, Fault::NoResponse),
            (config.drop_connection, Fault::DropConnection),
            (config.late_response, Fault::Late(config.late_by)),
            (config.duplicate_response, Fault::Duplicate),
            (config.bad_mac, Fault::BadMac),
        ];
        for (probability, fault) in choices {
            threshold += probability;
            if roll < threshold {
                return fault;
            }
        }
        Fault::None
    }
}

/// `SplitMix64` (Steele, Lea, Flood 2014): tiny, seedable, good enough to
/// pick faults (and a test run's random choices: the same seed, the same choices).
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) from the top 53 bits.
    #[allow(clippy::cast_precision_loss)] // 53 bits fit an f64 mantissa exactly.
    pub(crate) fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same seed draws the same faults; probability 1 always faults.
    #[test]
    fn seeded_and_bounded() {
        let config = FaultConfig {
            no_response: 0.3,
            bad_mac: 0.3,
            seed: 42,
            ..FaultConfig::default()
        };
        let first: Vec<Fault> = {
            let mut plan = FaultPlan::new(config.clone());
            (0..100).map(|_| plan.draw()).collect()
        };
        let mut plan = FaultPlan::new(config);
        let second: Vec<Fault> = (0..100).map(|_| plan.draw()).collect();
        assert_eq!(first, second);
        assert!(first.contains(&Fault::None) && first.contains(&Fault::BadMac));
        let mut always = FaultPlan::new(FaultConfig {
            duplicate_response: 1.0,
            ..FaultConfig::default()
        });
        assert!((0..50).all(|_| always.draw() == Fault::Duplicate));
    }
}
