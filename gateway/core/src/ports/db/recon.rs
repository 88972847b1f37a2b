//! Storage of partners' acknowledgement files and the reconciliation
//! exceptions found against them (schema 4). One acknowledgement per partner
//! and business date, stored whole (file, items, exceptions) in one
//! transaction or not at all. The statements are shared by both backends
//! through the macros below.

use chrono::{DateTime, NaiveDate, Utc};

use super::StoreError;
use crate::model::recon::{AckFile, ExceptionKind, ReconReport};

/// An acknowledgement file and its report, to store together.
#[derive(Debug, Clone)]
pub struct NewAck<'a> {
    pub file: &'a AckFile,
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
    pub report: &'a ReconReport,
    pub ingested_at: DateTime<Utc>,
}

/// What storing an acknowledgement did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    /// Stored with this id.
    Stored(i64),
    /// The same bytes were ingested before (under this id): nothing changed.
    AlreadyIngested(i64),
    /// A different file for the same partner and date was ingested before: refused.
    Conflict { file_id: String, sha256: String },
}

/// One stored exception, as `posgate clearing exceptions` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredException {
    pub partner: String,
    pub business_date: NaiveDate,
    pub kind: ExceptionKind,
    pub transaction_id: String,
    pub reference: String,
    pub currency: String,
    pub ours_minor: Option<i64>,
    pub theirs_minor: Option<i64>,
    pub reason: String,
}

/// Reads and writes of reconciliation data.
#[async_trait::async_trait]
pub trait ReconStore: Send + Sync {
    /// Stores the file, its items and its report's exceptions atomically.
    async fn store_ack(&self, ack: NewAck<'_>) -> Result<AckOutcome, StoreError>;

    /// Exceptions, optionally of one business date and/or partner, ordered by
    /// date, partner, kind, currency, transaction id.
    async fn exceptions(
        &self,
        business_date: Option<NaiveDate>,
        partner: Option<&str>,
    ) -> Result<Vec<StoredException>, StoreError>;
}
