//! The SQL side of [`posgate_core::ports::db::audit`].

pub(crate) use posgate_core::audit::chain::*;
pub(crate) use posgate_core::model::chain::*;
pub(crate) use posgate_core::ports::db::audit::*;

use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Type};

use crate::SqlxResultExt as _;
use crate::backend::{Backend, RowsAffected as _, Statements};

/// An entry's place in the chain: its sequence, the previous entry's hash, its hash.
pub(crate) type Link = (i64, Vec<u8>, Vec<u8>);

/// The links of `contents` chained after `prev_hash`, the first at
/// sequence `first`, and the new head hash.
pub(crate) fn chain_links(
    mut prev_hash: Vec<u8>,
    first: i64,
    contents: &[EntryContent],
) -> (Vec<Link>, Vec<u8>) {
    let links = (first..)
        .zip(contents)
        .map(|(sequence, content)| {
            let hash = entry_hash(&prev_hash, sequence, content).to_vec();
            (
                sequence,
                std::mem::replace(&mut prev_hash, hash.clone()),
                hash,
            )
        })
        .collect();
    (links, prev_hash)
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

    use crate::SqlxResultExt as _;

    use super::{ChainEntry, Checkpoint, EntryContent, EntryType, TransactionRow};
    use crate::StoreError;

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

/// A row of [`sql::SELECT_EVENTS_AFTER`]: event id, transaction id, event
/// type, from status, to status, actor, detail, time.
type EventRow = (
    i64,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    DateTime<Utc>,
);

impl<DB> Statements<DB>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q, 'r> String: Encode<'q, DB> + Decode<'r, DB> + Type<DB>,
    for<'q, 'r> Vec<u8>: Encode<'q, DB> + Decode<'r, DB> + Type<DB>,
    for<'q, 'r> i64: Encode<'q, DB> + Decode<'r, DB> + Type<DB>,
    for<'q, 'r> i32: Encode<'q, DB> + Decode<'r, DB> + Type<DB>,
    for<'q, 'r> bool: Encode<'q, DB> + Decode<'r, DB> + Type<DB>,
    for<'q, 'r> chrono::NaiveDate: Encode<'q, DB> + Decode<'r, DB> + Type<DB>,
    for<'q, 'r> chrono::DateTime<chrono::Utc>: Encode<'q, DB> + Decode<'r, DB> + Type<DB>,
    for<'q, 'r> Option<String>: Encode<'q, DB> + Decode<'r, DB> + Type<DB>,
    for<'q, 'r> Option<Vec<u8>>: Encode<'q, DB> + Decode<'r, DB> + Type<DB>,
    for<'q, 'r> Option<i64>: Encode<'q, DB> + Decode<'r, DB> + Type<DB>,
    for<'q, 'r> Option<bool>: Encode<'q, DB> + Decode<'r, DB> + Type<DB>,
    for<'q, 'r> Option<chrono::NaiveDate>: Encode<'q, DB> + Decode<'r, DB> + Type<DB>,
    for<'q, 'r> Option<chrono::DateTime<chrono::Utc>>: Encode<'q, DB> + Decode<'r, DB> + Type<DB>,
{
    /// Appends entries to the audit chain and returns the last sequence
    /// (`append_chain_entry` appends one): advance the head by the
    /// number of entries (taking its row lock on PostgreSQL), hash them in
    /// order, insert them in one multi-row statement. It must be the last
    /// statement group of a transaction, so the head's lock is held only until
    /// the COMMIT that follows. Where the backend can, the entries and the
    /// head hash are written in one statement
    /// ([`COMBINED_CHAIN_APPEND`](Backend::COMBINED_CHAIN_APPEND)).
    pub(crate) async fn append_chain_entries(
        conn: &mut DB::Connection,
        contents: &[crate::audit::EntryContent],
    ) -> Result<i64, crate::StoreError> {
        use crate::audit::sql;
        let count = i64::try_from(contents.len()).unwrap_or(i64::MAX);
        let (last, prev_hash): (i64, Vec<u8>) = sqlx::query_as(sql::ADVANCE_HEAD)
            .bind(count)
            .fetch_one(&mut *conn)
            .await
            .db()?;
        if contents.is_empty() {
            return Ok(last);
        }
        let (links, head_hash) = chain_links(prev_hash, last - count + 1, contents);
        let rows: Vec<_> = links
            .into_iter()
            .zip(contents)
            .map(|((sequence, prev, hash), content)| (sequence, content, prev, hash))
            .collect();
        let combined: bool = DB::COMBINED_CHAIN_APPEND;
        let mut builder = sqlx::QueryBuilder::new(if combined { "WITH appended AS (" } else { "" });
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
            builder.push_bind(&head_hash);
            builder.push(" WHERE id = 1");
        }
        DB::execute_built(&mut *conn, builder).await.db()?;
        if !combined {
            sqlx::query(sql::SET_HEAD_HASH)
                .bind(&head_hash)
                .execute(&mut *conn)
                .await
                .db()?;
        }
        Ok(last)
    }

    pub(crate) async fn append_chain_entry(
        conn: &mut DB::Connection,
        content: &crate::audit::EntryContent,
    ) -> Result<i64, crate::StoreError> {
        Self::append_chain_entries(conn, std::slice::from_ref(content)).await
    }

    /// Chains every event not chained yet, in id order, while the chain
    /// is empty (see [`AuditStore::backfill_chain`]).
    pub(crate) async fn backfill_events(
        conn: &mut DB::Connection,
    ) -> Result<i64, crate::StoreError> {
        use crate::audit::{EntryContent, EntryType, canonical_time, sql};
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
            let rows: Vec<EventRow> = sqlx::query_as(sql::SELECT_EVENTS_AFTER)
                .bind(after)
                .bind(BATCH)
                .fetch_all(&mut *conn)
                .await
                .db()?;
            let Some(last) = rows.last() else { break };
            after = last.0;
            for (_, transaction_id, event_type, from_status, to_status, actor, detail, at) in rows {
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
                Self::append_chain_entry(conn, &content).await?;
                chained += 1;
            }
        }
        Ok(chained)
    }

    /// [`AuditStore`]'s read `chain_head` on a pool.
    pub(crate) async fn audit_chain_head(
        pool: &sqlx::Pool<DB>,
    ) -> Result<(i64, Vec<u8>), crate::StoreError> {
        sqlx::query_as(crate::audit::sql::SELECT_HEAD)
            .fetch_one(pool)
            .await
            .db()
    }

    /// [`AuditStore`]'s read `chain_entries` on a pool.
    pub(crate) async fn audit_chain_entries(
        pool: &sqlx::Pool<DB>,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<crate::audit::ChainEntry>, crate::StoreError> {
        let rows = sqlx::query(crate::audit::sql::SELECT_ENTRIES)
            .bind(from)
            .bind(to)
            .bind(limit)
            .fetch_all(pool)
            .await
            .db()?;
        rows.iter().map(crate::audit::rows::entry).collect()
    }

    /// [`AuditStore`]'s read `sequence_of_hash` on a pool.
    pub(crate) async fn audit_sequence_of_hash(
        pool: &sqlx::Pool<DB>,
        hash: &[u8],
    ) -> Result<Option<i64>, crate::StoreError> {
        sqlx::query_scalar(crate::audit::sql::SELECT_SEQUENCE_OF_HASH)
            .bind(hash)
            .fetch_optional(pool)
            .await
            .db()
    }

    /// [`AuditStore`]'s read `transaction_entries` on a pool.
    pub(crate) async fn audit_transaction_entries(
        pool: &sqlx::Pool<DB>,
        transaction_id: &str,
    ) -> Result<Vec<crate::audit::ChainEntry>, crate::StoreError> {
        let rows = sqlx::query(crate::audit::sql::SELECT_TRANSACTION_ENTRIES)
            .bind(transaction_id)
            .fetch_all(pool)
            .await
            .db()?;
        rows.iter().map(crate::audit::rows::entry).collect()
    }

    /// [`AuditStore`]'s read `insert_checkpoint` on a pool.
    pub(crate) async fn audit_insert_checkpoint(
        pool: &sqlx::Pool<DB>,
        checkpoint: &crate::audit::Checkpoint,
    ) -> Result<bool, crate::StoreError> {
        Ok(sqlx::query(crate::audit::sql::INSERT_CHECKPOINT)
            .bind(checkpoint.sequence)
            .bind(&checkpoint.head_hash)
            .bind(&checkpoint.signature)
            .bind(&checkpoint.key_label)
            .bind(checkpoint.key_version)
            .bind(checkpoint.signed_at)
            .execute(pool)
            .await
            .db()?
            .rows_affected()
            == 1)
    }

    /// [`AuditStore`]'s read `checkpoints` on a pool.
    pub(crate) async fn audit_checkpoints(
        pool: &sqlx::Pool<DB>,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<crate::audit::Checkpoint>, crate::StoreError> {
        let rows = sqlx::query(crate::audit::sql::SELECT_CHECKPOINTS)
            .bind(from)
            .bind(to)
            .bind(limit)
            .fetch_all(pool)
            .await
            .db()?;
        rows.iter().map(crate::audit::rows::checkpoint).collect()
    }

    /// [`AuditStore`]'s read `latest_checkpoint` on a pool.
    pub(crate) async fn audit_latest_checkpoint(
        pool: &sqlx::Pool<DB>,
        sequence: i64,
    ) -> Result<Option<crate::audit::Checkpoint>, crate::StoreError> {
        let row = sqlx::query(crate::audit::sql::SELECT_LATEST_CHECKPOINT)
            .bind(sequence)
            .fetch_optional(pool)
            .await
            .db()?;
        row.as_ref().map(crate::audit::rows::checkpoint).transpose()
    }

    /// [`AuditStore`]'s read `search` on a pool.
    pub(crate) async fn audit_search(
        pool: &sqlx::Pool<DB>,
        filter: &crate::audit::SearchFilter,
        as_of: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<crate::audit::TransactionRow>, crate::StoreError> {
        use crate::audit::Bind;
        if filter.match_nothing {
            return Ok(Vec::new());
        }
        let (text, binds) = crate::audit::search_sql(filter);
        let mut query = sqlx::query(&text).bind(as_of).bind(after).bind(limit);
        for bind in binds {
            query = match bind {
                Bind::Text(value) => query.bind(value),
                Bind::Int(value) => query.bind(value),
                Bind::Time(value) => query.bind(value),
                Bind::Date(value) => query.bind(value),
            };
        }
        let mut tx = pool.begin().await.db()?;
        let prelude: Option<&str> = DB::SEARCH_PRELUDE;
        if let Some(prelude) = prelude {
            sqlx::Executor::execute(&mut *tx, prelude).await.db()?;
        }
        let rows = query.fetch_all(&mut *tx).await.db()?;
        tx.commit().await.db()?;
        rows.iter().map(crate::audit::rows::transaction).collect()
    }

    /// [`AuditStore`]'s read `transaction_row` on a pool.
    pub(crate) async fn audit_transaction_row(
        pool: &sqlx::Pool<DB>,
        id: &str,
        as_of: i64,
    ) -> Result<Option<crate::audit::TransactionRow>, crate::StoreError> {
        let text = format!("{} AND t.id = $2", crate::audit::sql::ROW_SELECT);
        let row = sqlx::query(&text)
            .bind(as_of)
            .bind(id)
            .fetch_optional(pool)
            .await
            .db()?;
        row.as_ref()
            .map(crate::audit::rows::transaction)
            .transpose()
    }
}
