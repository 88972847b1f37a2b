//! Reconnect delays: exponential from `min` to `max`, each drawn uniformly
//! from the upper half of the current step so many gateways do not reconnect
//! in lockstep after a bank restart.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

pub(super) struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
    random: RandomState,
    draws: u64,
}

impl Backoff {
    pub(super) fn new(min: Duration, max: Duration) -> Self {
        let min = min.max(Duration::from_millis(1));
        Self {
            min,
            max: max.max(min),
            step: min,
            random: RandomState::new(),
            draws: 0,
        }
    }

    /// The next delay; the step doubles up to `max`.
    pub(super) fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        let half_ns = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter_ns = if half_ns == 0 {
            0
        } else {
            self.random_u64() % (half_ns + 1)
        };
        half + Duration::from_nanos(jitter_ns)
    }

    /// After a successful sign-on, start again from `min`.
    pub(super) fn reset(&mut self) {
        self.step = self.min;
    }

    /// A random number from the std hasher's random keys: jitter needs no
    /// cryptographic quality, only different values per process and draw.
    fn random_u64(&mut self) -> u64 {
        self.draws += 1;
        let mut hasher = self.random.build_hasher();
        hasher.write_u64(self.draws);
        hasher.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_maximum_and_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let mut upper = Duration::from_millis(100);
        for _ in 0..10 {
            let delay = backoff.next_delay();
            assert!(
                delay >= upper / 2 && delay <= upper,
                "{delay:?} vs {upper:?}"
            );
            upper = (upper * 2).min(Duration::from_millis(800));
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }
}
