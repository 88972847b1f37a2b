//! Store reads and writes of the clearing run: closing a business day, the
//! day's totals per party, a streaming cursor over the partners' lines, and
//! the registry of a closed day's files. Also the rule of the write path that
//! a line dated on a closed business day moves to the next open date as an
//! adjustment (`open_business_date`, expanded into both backends' writes).

use chrono::{DateTime, NaiveDate, Utc};
use futures::stream::BoxStream;

use super::StoreError;

/// A closed business day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClosedDay {
    pub business_date: NaiveDate,
    /// The creation time printed in the day's files (fixed at the first close).
    pub files_created_at: DateTime<Utc>,
}

/// One party's lines of a day in one currency, summed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartyTotal {
    pub party: String,
    pub currency: String,
    pub amount_minor: i64,
    pub lines: i64,
}

/// One settlement line of a partner, with what its clearing record needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayLine {
    pub party: String,
    pub transaction_id: String,
    pub kind: String,
    pub currency: String,
    pub amount_minor: i64,
    pub store_id: String,
    /// Bill reference or card RRN (empty if neither).
    pub reference: String,
}

/// A file of a closed day, as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub name: String,
    pub size_bytes: i64,
    /// Lower-case hex.
    pub sha256: String,
}

/// A lock one instance holds while it runs scheduled clearing, seals the
/// audit chain or leads (see [`super::instance::InstanceStore::try_lead`]).
/// [`HeldLock::release`] frees it at once; dropping it frees it too, but
/// only when the database notices the closed connection.
#[async_trait::async_trait]
pub trait HeldLock: Send {
    async fn release(self: Box<Self>);

    /// Whether the lock is still held: false once the connection holding
    /// it is lost (the database then freed it). Locks that cannot be lost
    /// are always held.
    async fn held(&mut self) -> bool {
        true
    }
}

/// A held instance lock (see [`HeldLock`]).
pub type ClearingLock = Box<dyn HeldLock>;

/// The lock of a backend that needs none (SQLite: one process owns the file).
#[derive(Debug)]
pub struct NoLock;

#[async_trait::async_trait]
impl HeldLock for NoLock {
    async fn release(self: Box<Self>) {}
}

/// What the clearing run needs from the store.
#[async_trait::async_trait]
pub trait ClearingStore: Send + Sync {
    /// Closes `date` if still open, recording `files_created_at`. Returns the
    /// closed day as recorded (an earlier close's creation time wins). From the
    /// commit on, writes dated `date` land on the next open date.
    async fn close_day(
        &self,
        date: NaiveDate,
        files_created_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<ClosedDay, StoreError>;

    /// Reopens a day closed by a run that found it unbalanced. Refused (an
    /// error) once the day has registered files: a published day never reopens.
    async fn reopen_day(&self, date: NaiveDate) -> Result<(), StoreError>;

    /// The closed day, if `date` is closed.
    async fn closed_day(&self, date: NaiveDate) -> Result<Option<ClosedDay>, StoreError>;

    /// Every party's lines of `date`, summed per currency, sorted by party then currency.
    async fn day_totals(&self, date: NaiveDate) -> Result<Vec<PartyTotal>, StoreError>;

    /// The partners' lines of `date` (every party but `store:*` and `chain`),
    /// ordered by party, transaction id, line id. A cursor: rows arrive as read.
    fn day_lines(&self, date: NaiveDate) -> BoxStream<'_, Result<DayLine, StoreError>>;

    /// The registered files of a closed day, sorted by name.
    async fn day_files(&self, date: NaiveDate) -> Result<Vec<FileRecord>, StoreError>;

    /// Registers the files of a closed day (names already registered are kept as they were).
    async fn register_files(&self, date: NaiveDate, files: &[FileRecord])
    -> Result<(), StoreError>;

    /// Tries to become the one instance running scheduled clearing. `None`
    /// when another instance holds it (PostgreSQL advisory lock; SQLite has
    /// one process per database file and always succeeds).
    async fn try_clearing_lock(&self) -> Result<Option<ClearingLock>, StoreError>;
}

/// The first date on or after `date` that is not closed, given the closed
/// dates on or after `date` in ascending order.
pub fn next_open_date(date: NaiveDate, closed_ascending: &[NaiveDate]) -> NaiveDate {
    let mut open = date;
    for closed in closed_ascending {
        if *closed == open {
            open = open
                .succ_opt()
                .expect("date far from the end of the calendar");
        } else if *closed > open {
            break;
        }
    }
    open
}

/// The kind of a line moved from a closed day.
pub fn adjustment_kind(kind: &str) -> String {
    if kind.starts_with("adjustment:") {
        kind.to_owned()
    } else {
        format!("adjustment:{kind}")
    }
}

/// Arbitrary but fixed key of the advisory lock between PostgreSQL writes
/// (shared) and a day's close (exclusive): a close waits for writes in
/// flight, and a write after it sees the day closed ("clos"). PostgreSQL
/// scopes it to the schema.
pub const CLOSE_LOCK_KEY: i32 = 0x636c_6f73;
/// Key of the session advisory lock held by the instance running scheduled
/// clearing ("clrg"); PostgreSQL scopes it to the schema.
pub const SCHEDULE_LOCK_KEY: i32 = 0x636c_7267;

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    /// A line of a closed day moves past every consecutive closed day, and no further.
    #[test]
    fn next_open_date_skips_consecutive_closed_days() {
        let closed = [date("2026-11-23"), date("2026-11-24"), date("2026-11-26")];
        assert_eq!(
            next_open_date(date("2026-11-23"), &closed),
            date("2026-11-25")
        );
        assert_eq!(
            next_open_date(date("2026-11-25"), &closed[2..]),
            date("2026-11-25")
        );
        assert_eq!(
            next_open_date(date("2026-11-22"), &closed),
            date("2026-11-22")
        );
        assert_eq!(adjustment_kind("card_void"), "adjustment:card_void");
        assert_eq!(adjustment_kind("adjustment:fee"), "adjustment:fee");
    }
}
