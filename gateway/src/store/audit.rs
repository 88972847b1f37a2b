//! The audit chain in the store: every transaction event and every audit
//! read is one entry of a SHA-256 hash chain with a gapless sequence number,
//! appended in the same database transaction as the change it records.
//!
//! # Canonical entry (version 1)
//! `entry_hash(n) = SHA-256(entry_hash(n-1) || canonical(n))`, where
//! `entry_hash(0)` is 32 zero bytes and `canonical(n)` is the ASCII tag
//! `posgate-audit-entry v1` followed by nine fields, each written as its
//! byte length (4 bytes, big-endian) and its UTF-8 bytes, in this order:
//! sequence (decimal, no leading zeros), entry type (`event` or
//! `audit_read`), transaction id, event type, from status, to status, actor,
//! detail, occurred at (RFC 3339 UTC with exactly 6 fractional digits and
//! `Z`). An absent value (no transaction, no from status) is the empty
//! string. Length prefixes make the encoding injective: no two different
//! entries share canonical bytes.
//!
//! Each row also stores the hash it chains from (`prev_hash`), so a
//! verifier can tell a changed entry from a missing, added or moved one.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use std::fmt::Write as _;

use sha2::{Digest as _, Sha256};

use super::StoreError;
use super::clearing::ClearingLock;

/// The hash entry 1 chains from.
pub const GENESIS_HASH: [u8; 32] = [0; 32];
/// The tag that starts every canonical entry; a new version changes it.
pub const CANONICAL_TAG: &[u8] = b"posgate-audit-entry v1";

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    /// A state change (or other event) of a transaction.
    Event,
    /// A read made through `AuditService`.
    AuditRead,
}

impl EntryType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Event => "event",
            Self::AuditRead => "audit_read",
        }
    }

    pub fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "event" => Ok(Self::Event),
            "audit_read" => Ok(Self::AuditRead),
            other => Err(StoreError::Corrupt(format!(
                "unknown audit entry type {other:?}"
            ))),
        }
    }
}

/// The content of one entry: exactly what is hashed, besides the sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryContent {
    pub entry_type: EntryType,
    pub transaction_id: Option<String>,
    pub event_type: String,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    pub actor: String,
    pub detail: String,
    /// Canonical text, see [`canonical_time`].
    pub occurred_at: String,
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainEntry {
    pub sequence: i64,
    pub content: EntryContent,
    pub prev_hash: Vec<u8>,
    pub entry_hash: Vec<u8>,
}

/// A signed chain position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub sequence: i64,
    pub head_hash: Vec<u8>,
    pub signature: Vec<u8>,
    pub key_label: String,
    pub key_version: i32,
    pub signed_at: DateTime<Utc>,
}

/// The time format entries hash: RFC 3339 in UTC, microseconds, `Z`.
pub fn canonical_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The canonical bytes of an entry at `sequence` (see the module docs).
pub fn canonical_bytes(sequence: i64, content: &EntryContent) -> Vec<u8> {
    let sequence = sequence.to_string();
    let fields: [&str; 9] = [
        &sequence,
        content.entry_type.as_str(),
        content.transaction_id.as_deref().unwrap_or(""),
        &content.event_type,
        content.from_status.as_deref().unwrap_or(""),
        content.to_status.as_deref().unwrap_or(""),
        &content.actor,
        &content.detail,
        &content.occurred_at,
    ];
    let mut out = Vec::with_capacity(
        CANONICAL_TAG.len() + fields.iter().map(|field| field.len() + 4).sum::<usize>(),
    );
    out.extend_from_slice(CANONICAL_TAG);
    for field in fields {
        let len = u32::try_from(field.len()).expect("audit fields are far below 4 GiB");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out
}

/// `SHA-256(prev_hash || canonical(sequence, content))`.
pub fn entry_hash(prev_hash: &[u8], sequence: i64, content: &EntryContent) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(canonical_bytes(sequence, content));
    hasher.finalize().into()
}

/// The statement a checkpoint's Ed25519 signature covers (audit.proto).
pub fn checkpoint_statement(sequence: i64, head_hash: &[u8]) -> Vec<u8> {
    format!(
        "posgate/v1 checkpoint {sequence} {}",
        hex::encode(head_hash)
    )
    .into_bytes()
}

/// A transaction kind (and card type) a search may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindMatch {
    pub kind: &'static str,
    pub card_type: Option<&'static str>,
}

/// A search over transactions, in store terms (validated by the caller).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchFilter {
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    pub business_date_from: Option<NaiveDate>,
    pub business_date_to: Option<NaiveDate>,
    pub store_ids: Vec<String>,
    pub terminal_ids: Vec<String>,
    pub partner_ids: Vec<String>,
    /// Empty: any kind. See `match_nothing` for kinds posgate never records.
    pub kinds: Vec<KindMatch>,
    /// Store statuses (as of the search's chain position). Empty: any.
    pub statuses: Vec<&'static str>,
    /// Inclusive bounds; the currency is the same for both.
    pub amount_min: Option<(i64, String)>,
    pub amount_max: Option<(i64, String)>,
    pub client_request_id: Option<String>,
    /// Card transactions whose PAN fingerprint is one of these.
    pub pan_fingerprints: Option<Vec<String>>,
    /// The filter asks only for types or statuses posgate never records.
    pub match_nothing: bool,
}

/// One transaction as of a chain position, for search and export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionRow {
    pub id: String,
    pub kind: String,
    pub store_id: String,
    pub terminal_id: String,
    pub operator_id: String,
    pub client_request_id: String,
    pub partner_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub fee_minor: i64,
    pub business_date: NaiveDate,
    pub created_at: DateTime<Utc>,
    pub card_type: Option<String>,
    pub masked_pan: Option<String>,
    pub card_brand: Option<String>,
    pub original_transaction_id: Option<String>,
    pub first_sequence: i64,
    pub last_sequence: i64,
    /// Store status as of the position.
    pub status: String,
    /// `occurred_at` of the latest entry as of the position (canonical text).
    pub updated_at: String,
}

/// The audit side of the store.
#[async_trait::async_trait]
pub trait AuditStore: Send + Sync {
    /// The chain head: its sequence (0 when empty) and hash.
    async fn chain_head(&self) -> Result<(i64, Vec<u8>), StoreError>;

    /// Entries `from..=to`, at most `limit`, by ascending sequence.
    async fn chain_entries(
        &self,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<ChainEntry>, StoreError>;

    /// The sequence of the entry whose stored hash is `hash`, if any (a
    /// scan: only used to explain a broken chain).
    async fn sequence_of_hash(&self, hash: &[u8]) -> Result<Option<i64>, StoreError>;

    /// Every entry of one transaction, by ascending sequence.
    async fn transaction_entries(
        &self,
        transaction_id: &str,
    ) -> Result<Vec<ChainEntry>, StoreError>;

    /// Appends an audit-read entry in its own transaction; returns its sequence.
    async fn append_audit_read(&self, content: EntryContent) -> Result<i64, StoreError>;

    /// Stores a checkpoint; false when one exists at that sequence already.
    async fn insert_checkpoint(&self, checkpoint: &Checkpoint) -> Result<bool, StoreError>;

    /// Checkpoints with `from <= sequence <= to`, ascending, at most `limit`.
    async fn checkpoints(
        &self,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<Checkpoint>, StoreError>;

    /// The latest checkpoint at or before `sequence`.
    async fn latest_checkpoint(&self, sequence: i64) -> Result<Option<Checkpoint>, StoreError>;

    /// Transactions matching `filter` whose first entry is in
    /// `(after, as_of]`, by ascending first entry, at most `limit`.
    async fn search_transactions(
        &self,
        filter: &SearchFilter,
        as_of: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<TransactionRow>, StoreError>;

    /// One transaction as of `as_of` (any store).
    async fn transaction_row(
        &self,
        id: &str,
        as_of: i64,
    ) -> Result<Option<TransactionRow>, StoreError>;

    /// The sealer's lock: on PostgreSQL a schema-scoped advisory lock, so
    /// one instance seals at a time; `None` when another instance holds it.
    async fn seal_lock(&self) -> Result<Option<ClearingLock>, StoreError>;

    /// Chains every stored event that has no entry yet, in event id order
    /// (events written before the chain existed, or by a bulk seed); only
    /// while the chain is empty. Returns how many were chained.
    async fn backfill_chain(&self) -> Result<i64, StoreError>;
}

/// SQL shared by both backends.
pub(crate) mod sql {
    /// Reserves `$1` sequence numbers; returns the last one and the hash
    /// the first chains from (the head hash is set after the insert).
    pub const ADVANCE_HEAD: &str = "UPDATE audit_head SET sequence = sequence + $1 WHERE id = 1 \
         RETURNING sequence, head_hash";
    /// Followed by the rows' VALUES (multi-row).
    pub const INSERT_ENTRIES: &str = "INSERT INTO audit_chain (sequence, entry_type, transaction_id, \
         event_type, from_status, to_status, actor, detail, occurred_at, prev_hash, entry_hash) ";
    pub const SET_HEAD_HASH: &str = "UPDATE audit_head SET head_hash = $1 WHERE id = 1";
    pub const SELECT_HEAD: &str = "SELECT sequence, head_hash FROM audit_head WHERE id = 1";
    pub const SELECT_ENTRIES: &str = "SELECT sequence, entry_type, transaction_id, event_type, from_status, \
         to_status, actor, detail, occurred_at, prev_hash, entry_hash FROM audit_chain \
         WHERE sequence >= $1 AND sequence <= $2 ORDER BY sequence LIMIT $3";
    pub const SELECT_TRANSACTION_ENTRIES: &str = "SELECT sequence, entry_type, transaction_id, event_type, \
         from_status, to_status, actor, detail, occurred_at, prev_hash, entry_hash FROM audit_chain \
         WHERE transaction_id = $1 ORDER BY sequence";
    pub const SELECT_SEQUENCE_OF_HASH: &str =
        "SELECT sequence FROM audit_chain WHERE entry_hash = $1 ORDER BY sequence LIMIT 1";
    pub const INSERT_CHECKPOINT: &str = "INSERT INTO audit_checkpoints (sequence, head_hash, signature, \
         key_label, key_version, signed_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING";
    pub const SELECT_CHECKPOINTS: &str = "SELECT sequence, head_hash, signature, key_label, key_version, \
         signed_at FROM audit_checkpoints WHERE sequence >= $1 AND sequence <= $2 ORDER BY sequence LIMIT $3";
    pub const SELECT_LATEST_CHECKPOINT: &str = "SELECT sequence, head_hash, signature, key_label, \
         key_version, signed_at FROM audit_checkpoints WHERE sequence <= $1 ORDER BY sequence DESC LIMIT 1";
    pub const SELECT_EVENTS_AFTER: &str = "SELECT id, transaction_id, event_type, from_status, to_status, \
         actor, detail, at FROM transaction_events WHERE id > $1 ORDER BY id LIMIT $2";

    /// The columns of a [`super::TransactionRow`] as of `$1`; `o` is the
    /// transaction's first entry.
    pub const ROW_SELECT: &str = "SELECT t.id, t.kind, t.store_id, t.terminal_id, t.operator_id, \
         t.client_request_id, t.partner_id, t.amount_minor, t.currency, t.fee_minor, t.business_date, \
         t.created_at, cp.card_type, cp.masked_pan, cp.card_brand, cp.original_transaction_id, o.sequence, \
         (SELECT c.sequence FROM audit_chain c WHERE c.transaction_id = t.id AND c.sequence <= $1 \
          ORDER BY c.sequence DESC LIMIT 1), \
         (SELECT c.to_status FROM audit_chain c WHERE c.transaction_id = t.id AND c.sequence <= $1 \
          ORDER BY c.sequence DESC LIMIT 1), \
         (SELECT c.occurred_at FROM audit_chain c WHERE c.transaction_id = t.id AND c.sequence <= $1 \
          ORDER BY c.sequence DESC LIMIT 1) \
         FROM audit_chain o JOIN transactions t ON t.id = o.transaction_id \
         LEFT JOIN card_payments cp ON cp.transaction_id = t.id \
         WHERE o.entry_type = 'event' AND o.from_status IS NULL AND o.sequence <= $1";
    /// The as-of status of `t` (for status filters).
    pub const STATUS_AS_OF: &str = "(SELECT c.to_status FROM audit_chain c WHERE c.transaction_id = t.id \
         AND c.sequence <= $1 ORDER BY c.sequence DESC LIMIT 1)";
}

/// A value bound to a dynamically built query.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
    Time(DateTime<Utc>),
    Date(NaiveDate),
}

/// Builds the search statement for `filter`: `$1` is `as_of`, `$2` the
/// cursor, `$3` the limit; the filter's values follow.
pub(crate) fn search_sql(filter: &SearchFilter) -> (String, Vec<Bind>) {
    let mut text = String::from(sql::ROW_SELECT);
    text.push_str(" AND o.sequence > $2");
    let mut binds: Vec<Bind> = Vec::new();
    let next = |binds: &mut Vec<Bind>, value: Bind| {
        binds.push(value);
        format!("${}", binds.len() + 3)
    };
    if let Some(from) = filter.created_from {
        let p = next(&mut binds, Bind::Time(from));
        let _ = write!(text, " AND t.created_at >= {p}");
    }
    if let Some(to) = filter.created_to {
        let p = next(&mut binds, Bind::Time(to));
        let _ = write!(text, " AND t.created_at < {p}");
    }
    if let Some(from) = filter.business_date_from {
        let p = next(&mut binds, Bind::Date(from));
        let _ = write!(text, " AND t.business_date >= {p}");
    }
    if let Some(to) = filter.business_date_to {
        let p = next(&mut binds, Bind::Date(to));
        let _ = write!(text, " AND t.business_date <= {p}");
    }
    for (column, values) in [
        ("t.store_id", &filter.store_ids),
        ("t.terminal_id", &filter.terminal_ids),
        ("t.partner_id", &filter.partner_ids),
    ] {
        if !values.is_empty() {
            let params: Vec<String> = values
                .iter()
                .map(|value| next(&mut binds, Bind::Text(value.clone())))
                .collect();
            let _ = write!(text, " AND {column} IN ({})", params.join(", "));
        }
    }
    if !filter.kinds.is_empty() {
        let alternatives: Vec<String> = filter
            .kinds
            .iter()
            .map(|kind| {
                let k = next(&mut binds, Bind::Text(kind.kind.to_owned()));
                match kind.card_type {
                    Some(card_type) => {
                        let c = next(&mut binds, Bind::Text(card_type.to_owned()));
                        format!("(t.kind = {k} AND cp.card_type = {c})")
                    }
                    None => format!("t.kind = {k}"),
                }
            })
            .collect();
        let _ = write!(text, " AND ({})", alternatives.join(" OR "));
    }
    if !filter.statuses.is_empty() {
        let params: Vec<String> = filter
            .statuses
            .iter()
            .map(|status| next(&mut binds, Bind::Text((*status).to_owned())))
            .collect();
        let _ = write!(
            text,
            " AND {} IN ({})",
            sql::STATUS_AS_OF,
            params.join(", ")
        );
    }
    for (bound, operator) in [(&filter.amount_min, ">="), (&filter.amount_max, "<=")] {
        if let Some((amount_minor, currency)) = bound {
            let a = next(&mut binds, Bind::Int(*amount_minor));
            let c = next(&mut binds, Bind::Text(currency.clone()));
            let _ = write!(
                text,
                " AND t.amount_minor {operator} {a} AND t.currency = {c}"
            );
        }
    }
    if let Some(key) = &filter.client_request_id {
        let p = next(&mut binds, Bind::Text(key.clone()));
        let _ = write!(text, " AND t.client_request_id = {p}");
    }
    if let Some(fingerprints) = &filter.pan_fingerprints {
        if fingerprints.is_empty() {
            text.push_str(" AND 1 = 0");
        } else {
            let params: Vec<String> = fingerprints
                .iter()
                .map(|value| next(&mut binds, Bind::Text(value.clone())))
                .collect();
            let _ = write!(text, " AND cp.pan_fingerprint IN ({})", params.join(", "));
        }
    }
    text.push_str(" ORDER BY o.sequence LIMIT $3");
    (text, binds)
}

/// Row decoding shared by both backends.
pub(crate) mod rows {
    use sqlx::{ColumnIndex, Decode, Row, Type};

    use crate::store::SqlxResultExt as _;

    use super::{ChainEntry, Checkpoint, EntryContent, EntryType, TransactionRow};
    use crate::store::StoreError;

    pub fn entry<'r, R>(row: &'r R) -> Result<ChainEntry, StoreError>
    where
        R: Row,
        usize: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        Option<String>: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
        Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(ChainEntry {
            sequence: row.try_get(0).db()?,
            content: EntryContent {
                entry_type: EntryType::parse(&row.try_get::<String, _>(1).db()?)?,
                transaction_id: row.try_get(2).db()?,
                event_type: row.try_get(3).db()?,
                from_status: row.try_get(4).db()?,
                to_status: row.try_get(5).db()?,
                actor: row.try_get(6).db()?,
                detail: row.try_get(7).db()?,
                occurred_at: row.try_get(8).db()?,
            },
            prev_hash: row.try_get(9).db()?,
            entry_hash: row.try_get(10).db()?,
        })
    }

    pub fn checkpoint<'r, R>(row: &'r R) -> Result<Checkpoint, StoreError>
    where
        R: Row,
        usize: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
        i32: Decode<'r, R::Database> + Type<R::Database>,
        Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
        chrono::DateTime<chrono::Utc>: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(Checkpoint {
            sequence: row.try_get(0).db()?,
            head_hash: row.try_get(1).db()?,
            signature: row.try_get(2).db()?,
            key_label: row.try_get(3).db()?,
            key_version: row.try_get(4).db()?,
            signed_at: row.try_get(5).db()?,
        })
    }

    pub fn transaction<'r, R>(row: &'r R) -> Result<TransactionRow, StoreError>
    where
        R: Row,
        usize: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        Option<String>: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
        chrono::NaiveDate: Decode<'r, R::Database> + Type<R::Database>,
        chrono::DateTime<chrono::Utc>: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(TransactionRow {
            id: row.try_get(0).db()?,
            kind: row.try_get(1).db()?,
            store_id: row.try_get(2).db()?,
            terminal_id: row.try_get(3).db()?,
            operator_id: row.try_get(4).db()?,
            client_request_id: row.try_get(5).db()?,
            partner_id: row.try_get(6).db()?,
            amount_minor: row.try_get(7).db()?,
            currency: row.try_get(8).db()?,
            fee_minor: row.try_get(9).db()?,
            business_date: row.try_get(10).db()?,
            created_at: row.try_get(11).db()?,
            card_type: row.try_get(12).db()?,
            masked_pan: row.try_get(13).db()?,
            card_brand: row.try_get(14).db()?,
            original_transaction_id: row.try_get(15).db()?,
            first_sequence: row.try_get(16).db()?,
            last_sequence: row.try_get(17).db()?,
            status: row.try_get(18).db()?,
            updated_at: row.try_get(19).db()?,
        })
    }
}

/// Defines `append_chain_entries(conn, contents) -> last sequence` (and
/// `append_chain_entry` for one) for a backend: advance the head by the
/// number of entries (taking its row lock on PostgreSQL), hash them in
/// order, insert them in one multi-row statement. It must be the last
/// statement group of a transaction, so the head's lock is held only until
/// the COMMIT that follows. `$combined` is true where the backend can insert
/// the entries and set the head hash in one statement (PostgreSQL).
macro_rules! define_chain_append {
    ($connection:ty, $combined:expr) => {
        async fn append_chain_entries(
            conn: &mut $connection,
            contents: &[$crate::store::audit::EntryContent],
        ) -> Result<i64, $crate::store::StoreError> {
            use $crate::store::audit::{entry_hash, sql};
            let count = i64::try_from(contents.len()).unwrap_or(i64::MAX);
            let (last, mut prev_hash): (i64, Vec<u8>) = sqlx::query_as(sql::ADVANCE_HEAD)
                .bind(count)
                .fetch_one(&mut *conn)
                .await
                .db()?;
            if contents.is_empty() {
                return Ok(last);
            }
            let first = last - count + 1;
            let mut rows = Vec::with_capacity(contents.len());
            for (sequence, content) in (first..=last).zip(contents) {
                let hash = entry_hash(&prev_hash, sequence, content).to_vec();
                rows.push((
                    sequence,
                    content,
                    std::mem::replace(&mut prev_hash, hash.clone()),
                    hash,
                ));
            }
            let combined: bool = $combined;
            let mut builder =
                sqlx::QueryBuilder::new(if combined { "WITH appended AS (" } else { "" });
            builder.push(sql::INSERT_ENTRIES);
            builder.push_values(&rows, |mut row, (sequence, content, prev, hash)| {
                row.push_bind(*sequence)
                    .push_bind(content.entry_type.as_str())
                    .push_bind(content.transaction_id.as_deref())
                    .push_bind(&content.event_type)
                    .push_bind(content.from_status.as_deref())
                    .push_bind(content.to_status.as_deref())
                    .push_bind(&content.actor)
                    .push_bind(&content.detail)
                    .push_bind(&content.occurred_at)
                    .push_bind(prev)
                    .push_bind(hash);
            });
            if combined {
                builder.push(") UPDATE audit_head SET head_hash = ");
                builder.push_bind(&prev_hash);
                builder.push(" WHERE id = 1");
            }
            builder.build().execute(&mut *conn).await.db()?;
            if !combined {
                sqlx::query(sql::SET_HEAD_HASH)
                    .bind(&prev_hash)
                    .execute(&mut *conn)
                    .await
                    .db()?;
            }
            Ok(last)
        }

        async fn append_chain_entry(
            conn: &mut $connection,
            content: &$crate::store::audit::EntryContent,
        ) -> Result<i64, $crate::store::StoreError> {
            append_chain_entries(conn, std::slice::from_ref(content)).await
        }

        /// Chains every event not chained yet, in id order, while the chain
        /// is empty (see [`AuditStore::backfill_chain`]).
        async fn backfill_events(conn: &mut $connection) -> Result<i64, $crate::store::StoreError> {
            use $crate::store::audit::{EntryContent, EntryType, canonical_time, sql};
            /// Events read per round: bounds memory on a large database.
            const BATCH: i64 = 10_000;
            let (head, _): (i64, Vec<u8>) = sqlx::query_as(sql::SELECT_HEAD)
                .fetch_one(&mut *conn)
                .await
                .db()?;
            if head != 0 {
                return Ok(0);
            }
            let mut after = 0_i64;
            let mut chained = 0_i64;
            loop {
                let rows: Vec<(
                    i64,
                    String,
                    String,
                    Option<String>,
                    String,
                    String,
                    String,
                    chrono::DateTime<chrono::Utc>,
                )> = sqlx::query_as(sql::SELECT_EVENTS_AFTER)
                    .bind(after)
                    .bind(BATCH)
                    .fetch_all(&mut *conn)
                    .await
                    .db()?;
                let Some(last) = rows.last() else { break };
                after = last.0;
                for (_, transaction_id, event_type, from_status, to_status, actor, detail, at) in
                    rows
                {
                    let content = EntryContent {
                        entry_type: EntryType::Event,
                        transaction_id: Some(transaction_id),
                        event_type,
                        from_status,
                        to_status: Some(to_status),
                        actor,
                        detail,
                        occurred_at: canonical_time(at),
                    };
                    append_chain_entry(conn, &content).await?;
                    chained += 1;
                }
            }
            Ok(chained)
        }
    };
}

pub(crate) use define_chain_append;

/// Implements the read side of [`AuditStore`] (everything but the append,
/// the lock and the backfill) for a backend whose pool is `$pool`.
/// `$prelude` runs first in the transaction of a search (PostgreSQL turns
/// off JIT compilation and parallel workers there: a page of 100 rows takes
/// about 2 ms to run, and compiling or starting workers for it took 0.3 to
/// 0.8 s at 1,000,000 transactions).
macro_rules! define_audit_reads {
    ($store:ty, $pool:ident, $prelude:expr) => {
        impl $store {
            async fn audit_chain_head(&self) -> Result<(i64, Vec<u8>), $crate::store::StoreError> {
                sqlx::query_as($crate::store::audit::sql::SELECT_HEAD)
                    .fetch_one(&self.$pool)
                    .await
                    .db()
            }

            async fn audit_chain_entries(
                &self,
                from: i64,
                to: i64,
                limit: i64,
            ) -> Result<Vec<$crate::store::audit::ChainEntry>, $crate::store::StoreError> {
                let rows = sqlx::query($crate::store::audit::sql::SELECT_ENTRIES)
                    .bind(from)
                    .bind(to)
                    .bind(limit)
                    .fetch_all(&self.$pool)
                    .await
                    .db()?;
                rows.iter().map($crate::store::audit::rows::entry).collect()
            }

            async fn audit_sequence_of_hash(
                &self,
                hash: &[u8],
            ) -> Result<Option<i64>, $crate::store::StoreError> {
                sqlx::query_scalar($crate::store::audit::sql::SELECT_SEQUENCE_OF_HASH)
                    .bind(hash)
                    .fetch_optional(&self.$pool)
                    .await
                    .db()
            }

            async fn audit_transaction_entries(
                &self,
                transaction_id: &str,
            ) -> Result<Vec<$crate::store::audit::ChainEntry>, $crate::store::StoreError> {
                let rows = sqlx::query($crate::store::audit::sql::SELECT_TRANSACTION_ENTRIES)
                    .bind(transaction_id)
                    .fetch_all(&self.$pool)
                    .await
                    .db()?;
                rows.iter().map($crate::store::audit::rows::entry).collect()
            }

            async fn audit_insert_checkpoint(
                &self,
                checkpoint: &$crate::store::audit::Checkpoint,
            ) -> Result<bool, $crate::store::StoreError> {
                Ok(sqlx::query($crate::store::audit::sql::INSERT_CHECKPOINT)
                    .bind(checkpoint.sequence)
                    .bind(&checkpoint.head_hash)
                    .bind(&checkpoint.signature)
                    .bind(&checkpoint.key_label)
                    .bind(checkpoint.key_version)
                    .bind(checkpoint.signed_at)
                    .execute(&self.$pool)
                    .await
                    .db()?
                    .rows_affected()
                    == 1)
            }

            async fn audit_checkpoints(
                &self,
                from: i64,
                to: i64,
                limit: i64,
            ) -> Result<Vec<$crate::store::audit::Checkpoint>, $crate::store::StoreError> {
                let rows = sqlx::query($crate::store::audit::sql::SELECT_CHECKPOINTS)
                    .bind(from)
                    .bind(to)
                    .bind(limit)
                    .fetch_all(&self.$pool)
                    .await
                    .db()?;
                rows.iter()
                    .map($crate::store::audit::rows::checkpoint)
                    .collect()
            }

            async fn audit_latest_checkpoint(
                &self,
                sequence: i64,
            ) -> Result<Option<$crate::store::audit::Checkpoint>, $crate::store::StoreError> {
                let row = sqlx::query($crate::store::audit::sql::SELECT_LATEST_CHECKPOINT)
                    .bind(sequence)
                    .fetch_optional(&self.$pool)
                    .await
                    .db()?;
                row.as_ref()
                    .map($crate::store::audit::rows::checkpoint)
                    .transpose()
            }

            async fn audit_search(
                &self,
                filter: &$crate::store::audit::SearchFilter,
                as_of: i64,
                after: i64,
                limit: i64,
            ) -> Result<Vec<$crate::store::audit::TransactionRow>, $crate::store::StoreError> {
                use $crate::store::audit::Bind;
                if filter.match_nothing {
                    return Ok(Vec::new());
                }
                let (text, binds) = $crate::store::audit::search_sql(filter);
                let mut query = sqlx::query(&text).bind(as_of).bind(after).bind(limit);
                for bind in binds {
                    query = match bind {
                        Bind::Text(value) => query.bind(value),
                        Bind::Int(value) => query.bind(value),
                        Bind::Time(value) => query.bind(value),
                        Bind::Date(value) => query.bind(value),
                    };
                }
                let mut tx = self.$pool.begin().await.db()?;
                let prelude: Option<&str> = $prelude;
                if let Some(prelude) = prelude {
                    sqlx::Executor::execute(&mut *tx, prelude).await.db()?;
                }
                let rows = query.fetch_all(&mut *tx).await.db()?;
                tx.commit().await.db()?;
                rows.iter()
                    .map($crate::store::audit::rows::transaction)
                    .collect()
            }

            async fn audit_transaction_row(
                &self,
                id: &str,
                as_of: i64,
            ) -> Result<Option<$crate::store::audit::TransactionRow>, $crate::store::StoreError>
            {
                let text = format!("{} AND t.id = $2", $crate::store::audit::sql::ROW_SELECT);
                let row = sqlx::query(&text)
                    .bind(as_of)
                    .bind(id)
                    .fetch_optional(&self.$pool)
                    .await
                    .db()?;
                row.as_ref()
                    .map($crate::store::audit::rows::transaction)
                    .transpose()
            }
        }
    };
}

pub(crate) use define_audit_reads;

#[cfg(test)]
mod tests {
    use super::*;

    fn content() -> EntryContent {
        EntryContent {
            entry_type: EntryType::Event,
            transaction_id: Some("t1".to_owned()),
            event_type: "bill_paid".to_owned(),
            from_status: None,
            to_status: Some("paid".to_owned()),
            actor: "a".to_owned(),
            detail: String::new(),
            occurred_at: "2026-11-23T03:00:00.000000Z".to_owned(),
        }
    }

    /// The canonical bytes are length-prefixed, so moving a character from
    /// one field to the next changes the hash.
    #[test]
    fn canonical_form_is_injective_across_field_boundaries() {
        let a = content();
        let mut b = content();
        b.actor = "ab".to_owned();
        let mut c = content();
        c.actor = "a".to_owned();
        c.detail = "b".to_owned();
        assert_ne!(canonical_bytes(1, &b), canonical_bytes(1, &c));
        assert_ne!(
            entry_hash(&GENESIS_HASH, 1, &a),
            entry_hash(&GENESIS_HASH, 2, &a)
        );
    }

    /// The first bytes of an entry are the tag, then the sequence's length and digits.
    #[test]
    fn canonical_form_starts_with_tag_and_sequence() {
        let bytes = canonical_bytes(42, &content());
        assert!(bytes.starts_with(b"posgate-audit-entry v1\0\0\0\x0242"));
    }
}
