//! What several gateway instances on one database need from it: leases on
//! shared work, and one leader for the jobs that must run once.

use chrono::{DateTime, Utc};

use super::StoreError;
use super::clearing::ClearingLock;

/// A lease on shared work (a store-and-forward entry, an open saga): taken
/// by `holder` at `now`, valid until `until` unless renewed. Rows are
/// claimed when free, when their lease ran out, or when `holder` already
/// holds them; a holder clears its lease when it records the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub now: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

#[async_trait::async_trait]
pub trait InstanceStore: Send + Sync {
    /// Extends every lease `lease.holder` holds to `lease.until`; returns
    /// how many rows it holds.
    async fn renew_leases(&self, lease: &Lease) -> Result<u64, StoreError>;

    /// Frees every lease `holder` holds (a draining instance), so other
    /// instances take the rows at once; returns how many were freed.
    async fn release_leases(&self, holder: &str) -> Result<u64, StoreError>;

    /// Tries to become the leader, the one instance that runs the jobs that
    /// must run once (scheduled clearing, audit sealing, key purges). `None`
    /// while another instance leads. The lock stays held until released,
    /// or until its connection is lost ([`super::clearing::HeldLock::held`]
    /// turns false). SQLite has one process per database file: always the leader.
    async fn try_lead(&self) -> Result<Option<ClearingLock>, StoreError>;

    /// Tries to become the one instance recovering cut-off requests for the
    /// length of one pass, `None` while another instance does. A recovery
    /// whose write cannot be guarded by a status move (an online bill
    /// notice stays `in_progress` with its resolution queued) checks
    /// "nothing queued yet" and queues under this lock, so two instances
    /// never queue one notice twice.
    async fn try_recovery_lock(&self) -> Result<Option<ClearingLock>, StoreError>;
}
