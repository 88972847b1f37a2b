//! The store-and-forward backlog: how many queue entries wait for a
//! partner's acknowledgement, and since when, per queue. Read every few
//! seconds for the `posgate_saf_*` metrics ([`crate::metrics`]).

use chrono::{DateTime, Utc};

/// A store-and-forward queue, named by the kind of transaction its entries
/// belong to (all of them share the `saf_queue` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SafQueue {
    /// Card reversals and advices to the banks.
    Card,
    /// Wallet reversals to the operators.
    Wallet,
    /// Online bill payment notices and their status inquiries.
    Bill,
}

impl SafQueue {
    /// Every queue, in the order the backlog read lists them.
    pub const ALL: [SafQueue; 3] = [SafQueue::Card, SafQueue::Wallet, SafQueue::Bill];

    /// The `queue` label and the name the backlog read answers with.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Card => "card",
            Self::Wallet => "wallet",
            Self::Bill => "bill",
        }
    }

    /// The queue named by [`SafQueue::as_str`].
    pub fn parse(name: &str) -> Option<SafQueue> {
        Self::ALL.into_iter().find(|queue| queue.as_str() == name)
    }
}

/// One queue's unacknowledged entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafBacklog {
    pub queue: SafQueue,
    /// Entries not acknowledged yet.
    pub depth: i64,
    /// When the oldest of them was queued; `None` when the queue is empty.
    pub oldest_created_at: Option<DateTime<Utc>>,
}

impl SafBacklog {
    /// How long the oldest entry has waited at `now`, in seconds (0 when
    /// the queue is empty or the entry is from the future).
    pub fn oldest_age_seconds(&self, now: DateTime<Utc>) -> f64 {
        self.oldest_created_at.map_or(0.0, |created_at| {
            (now - created_at)
                .to_std()
                .map_or(0.0, |age| age.as_secs_f64())
        })
    }
}
