//! Time as a dependency, so tests can stand a store just before its cutoff.
//!
//! Every clock reads in whole microseconds: PostgreSQL keeps timestamps to
//! the microsecond, so a time the gateway stamps, puts in an answer and
//! stores must already be at that precision, or a read-back (`GetBillPayment`,
//! `GetTransaction`, `GetWalletTransaction`) would differ from the answer on
//! one backend and not the other.

use std::fmt::Debug;
use std::sync::Mutex;

use chrono::{DateTime, SubsecRound as _, Utc};

/// Digits of a second every stamped time keeps: microseconds, PostgreSQL's
/// `timestamptz` precision (SQLite keeps the text as written).
pub const SUBSEC_DIGITS: u16 = 6;

/// Where the gateway reads the current time.
pub trait Clock: Send + Sync + Debug {
    /// The current time, truncated to whole microseconds.
    fn now(&self) -> DateTime<Utc>;
}

/// `at` truncated to the precision every backend stores.
pub fn stored_precision(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(SUBSEC_DIGITS)
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        stored_precision(Utc::now())
    }
}

/// A clock tests set by hand.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            now: Mutex::new(now),
        }
    }

    pub fn set(&self, now: DateTime<Utc>) {
        *self.now.lock().expect("clock lock is never poisoned") = now;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        stored_precision(*self.now.lock().expect("clock lock is never poisoned"))
    }
}
