//! Acknowledgements and reconciliation: partners' acknowledgement (and
//! return) files are parsed strictly, reconciled against posgate's clearing
//! items of the same partner and business date, and stored with the
//! exceptions found, all in one transaction.
//!
//! # Layout
//! - [`ack`]: the acknowledgement file format and its strict parser.
//! - [`matching`]: the reconciliation of posgate's items against a file.
//! - this file: [`ingest`], parse + reconcile + store.

pub mod ack;
pub mod matching;

use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};

use self::ack::AckError;
use crate::model::recon::{AckFile, ReconReport};

use crate::clearing::model::ClearingItem;
use crate::ports::db::{AckOutcome, Database, NewAck, StoreError};

/// Why an acknowledgement was not applied.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file is malformed: nothing of it was applied.
    #[error("acknowledgement refused, nothing applied: {0}")]
    Malformed(#[from] AckError),
    /// A different file for the same partner and date was ingested before.
    #[error(
        "acknowledgement refused: {partner} {business_date} was already acknowledged by file {file_id} (sha256 {sha256})"
    )]
    Conflict {
        partner: String,
        business_date: chrono::NaiveDate,
        file_id: String,
        sha256: String,
    },
    /// posgate's items of the day could not be read.
    #[error("reading posgate's clearing items: {0}")]
    Items(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an ingest did.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub file: AckFile,
    pub report: ReconReport,
    /// False when the same bytes had been ingested before (nothing changed).
    pub new: bool,
}

/// Parses `bytes`, reconciles them against `ours` (posgate's clearing
/// items of the file's partner and business date, fetched by the caller
/// once the header is known) and stores file, items and exceptions in one
/// transaction. A malformed file is refused before anything is written.
pub async fn ingest<F, Fut>(
    store: &dyn Database,
    bytes: &[u8],
    now: DateTime<Utc>,
    ours: F,
) -> Result<Ingested, IngestError>
where
    F: FnOnce(String, chrono::NaiveDate) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<ClearingItem>, String>>,
{
    let file = ack::parse(bytes)?;
    let items = ours(file.partner.clone(), file.business_date)
        .await
        .map_err(IngestError::Items)?;
    let report = matching::reconcile(items, &file);
    let outcome = store
        .store_ack(NewAck {
            file: &file,
            sha256: hex::encode(Sha256::digest(bytes)),
            report: &report,
            ingested_at: now,
        })
        .await?;
    match outcome {
        AckOutcome::Stored(_) => Ok(Ingested {
            file,
            report,
            new: true,
        }),
        AckOutcome::AlreadyIngested(_) => Ok(Ingested {
            file,
            report,
            new: false,
        }),
        AckOutcome::Conflict { file_id, sha256 } => Err(IngestError::Conflict {
            partner: file.partner,
            business_date: file.business_date,
            file_id,
            sha256,
        }),
    }
}

/// posgate's clearing items of one partner and closed business date, from
/// the store's day cursor (fees are not reconciled: partners acknowledge amounts).
pub async fn day_items(
    store: &dyn Database,
    partner: &str,
    business_date: chrono::NaiveDate,
) -> Result<Vec<ClearingItem>, String> {
    use futures::StreamExt as _;
    if store
        .closed_day(business_date)
        .await
        .map_err(|error| error.to_string())?
        .is_none()
    {
        return Err(format!(
            "business date {business_date} is not closed: run `posgate clearing run --date {business_date}` first"
        ));
    }
    let mut items = Vec::new();
    let mut lines = store.day_lines(business_date);
    while let Some(line) = lines.next().await {
        let line = line.map_err(|error| error.to_string())?;
        if line.party == partner {
            items.push(ClearingItem {
                partner: line.party,
                business_date,
                transaction_id: line.transaction_id,
                reference: line.reference,
                kind: line.kind,
                currency: line.currency,
                amount_minor: line.amount_minor,
                fee_minor: 0,
                store_id: line.store_id,
            });
        }
    }
    Ok(items)
}
