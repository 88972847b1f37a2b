//! posgate's transaction database: the two sqlx backends (SQLite, the
//! embedded default, and PostgreSQL) behind the core's port,
//! [`posgate_core::ports::db::Database`]. [`open`] picks the backend from a
//! database URL; the migrations are embedded from the top-level
//! `migrations/` folder.
//!
//! # Layout
//!
//! - [`sqlite`](SqliteDatabase): the SQLite backend, one group-committing writer thread (rusqlite) and read pools.
//! - `sqlite_writer`, `sqlite_reads`, `sqlite_conn`: its writer thread, its hot reads, their shared rusqlite helpers.
//! - [`postgres`](PostgresDatabase): the PostgreSQL backend, a few group-committing writer tasks;
//!   `pg_batch`: a batch's writes as a few set-based statements (`UNNEST` arrays).
//! - `backend`: the `Backend` trait (what differs between SQLite and PostgreSQL) and
//!   `Statements<DB>`, the type every module's generic statements hang on.
//! - `write`: the shared reads, and the row shapes of a write.
//! - `lease`: leases on the store-and-forward queue and on open sagas (several instances).
//! - `migrate`: the embedded schema migrations and their bookkeeping table.
//! - [`metrics`]: the group commit's batch size and commit time, per backend.
//! - [`audit`]: the audit chain's append and reads (SQL side of the core's audit port).
//! - [`bill_online`]: online bill payments' writes, stale and store-and-forward reads.
//! - [`card`]: card payment statements and row decoding.
//! - [`clearing`]: business-day close and reopen, day totals, the day's lines, clearing files.
//! - [`recon`]: partner acknowledgements and reconciliation exceptions.
//! - [`reload`]: wallet card links and the auto-reload saga.
//! - [`stan`]: the per-terminal STAN counter.
//! - [`wallet`]: wallet payment writes, reads and row decoding.
//! - [`bench`](mod@bench): statements the gateway's audit bench seeder reuses.

pub mod audit;
mod backend;
pub mod bill_online;
pub mod card;
pub mod clearing;
mod lease;
pub mod metrics;
mod migrate;
mod pg_batch;
mod postgres;
pub mod recon;
pub mod reload;
mod sqlite;
mod sqlite_conn;
mod sqlite_reads;
mod sqlite_writer;
pub mod stan;
pub mod wallet;
mod write;

use std::sync::Arc;

pub use migrate::MigrationError;
pub(crate) use posgate_core::model::card::CardRecord;
pub(crate) use posgate_core::model::link::{CardLink, LinkStatus};
pub(crate) use posgate_core::model::transaction::{
    BillDetail, Event, SettlementLine, TransactionKind, TransactionRecord, TransactionStatus,
    parse_kind,
};
pub(crate) use posgate_core::model::wallet::WalletRecord;
/// The port's types the backends name, imported once for every module.
pub(crate) use posgate_core::ports::db::{
    AckOutcome, AnsweredKey, BillReads, BillSafItem, BillWrite, CardChange, CardWrite, Change,
    Database, KeyOp, LinkWrite, NewAck, NewSafItem, Reads, ReconStore, RefundAdjust, ReloadStore,
    RowCounts, SafItem, Saga, SagaKind, SagaStep, StatusChange, StoreError, StoredException,
    WalletChange, WalletReads, WalletSafItem, WalletWrite, WriteOutcome, WriteRequest,
};
pub use postgres::PostgresDatabase;
pub use sqlite::SqliteDatabase;

/// A sqlx failure as a [`StoreError`], classified here (the only place that
/// knows sqlx) so callers match on [`StoreError::Unavailable`] rather than on
/// driver errors.
pub(crate) fn db_error(error: sqlx::Error) -> StoreError {
    let unavailable = match &error {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => db.message().contains("locked"),
        _ => false,
    };
    if unavailable {
        StoreError::Unavailable(Box::new(error))
    } else {
        StoreError::Database(Box::new(error))
    }
}

/// `.db()` on a sqlx result: its error as a [`StoreError`] (see [`db_error`]).
pub(crate) trait SqlxResultExt<T> {
    fn db(self) -> Result<T, StoreError>;
}

impl<T> SqlxResultExt<T> for Result<T, sqlx::Error> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(db_error)
    }
}

/// Opens the store a database URL names: `sqlite:` (file created if
/// missing) or `postgres:`/`postgresql:`.
pub async fn open(url: &str, max_connections: u32) -> Result<Arc<dyn Database>, StoreError> {
    open_as(url, max_connections, postgres::DEFAULT_WRITERS, "posgate").await
}

/// [`open`] with `writers` group-commit writer tasks on PostgreSQL (SQLite
/// has its one writer thread), naming the connections `application_name`
/// (unless the URL names them): `pg_stat_activity` and `pg_locks` then show
/// which gateway instance holds what (the leader's lock, say).
pub async fn open_as(
    url: &str,
    max_connections: u32,
    writers: usize,
    application_name: &str,
) -> Result<Arc<dyn Database>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteDatabase::open(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let mut options: sqlx::postgres::PgConnectOptions = url.parse().db()?;
        if options.get_application_name().is_none() {
            options = options.application_name(application_name);
        }
        Ok(Arc::new(
            PostgresDatabase::connect_with(options, max_connections, writers).await?,
        ))
    } else {
        Err(StoreError::UnknownUrl(url.to_owned()))
    }
}

/// SQL shared by both backends: both accept `$N` placeholders, `ON CONFLICT`
/// and `RETURNING`, and sqlx maps the chrono types to each one's columns.
mod sql {
    pub const INSERT_KEY: &str = "INSERT INTO idempotency_keys (store_id, terminal_id, client_request_id, \
         operation, request_digest, field_digests, response, transaction_id, created_at, expires_at, pending) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING";
    pub const SELECT_KEY: &str = "SELECT operation, request_digest, field_digests, transaction_id, response, pending \
         FROM idempotency_keys WHERE store_id = $1 AND terminal_id = $2 AND client_request_id = $3";
    pub const INSERT_TRANSACTION: &str = "INSERT INTO transactions (id, kind, status, store_id, terminal_id, \
         operator_id, client_request_id, partner_id, amount_minor, currency, fee_minor, business_date, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)";
    pub const INSERT_BILL: &str = "INSERT INTO bill_payments (transaction_id, biller_id, agency_code, \
         bill_reference, due_date, period, late) VALUES ($1, $2, $3, $4, $5, $6, $7)";
    pub const TRANSITION: &str = "UPDATE transactions SET status = $1, updated_at = $2, \
         cancelled_at = CASE WHEN $1 = 'cancelled' THEN $2 ELSE cancelled_at END, \
         cancel_reason = CASE WHEN $1 = 'cancelled' THEN $3 ELSE cancel_reason END \
         WHERE id = $4 AND store_id = $5 AND status = $6";
    /// A payment's claim on its slip; no row inserted when another payment holds it.
    pub const CLAIM_SLIP: &str = "INSERT INTO bill_slip_claims (biller_id, bill_reference, period, \
         amount_minor, transaction_id) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";
    pub const FREE_SLIP: &str = "DELETE FROM bill_slip_claims WHERE transaction_id = $1";
    pub const SELECT_STATUS: &str =
        "SELECT status FROM transactions WHERE id = $1 AND store_id = $2";
    /// Inserts `count` settlement lines of one transaction in one statement.
    /// Parameters: `$1` transaction id, `$2` business date, `$3` created at,
    /// then per line (order, party, kind, currency, `amount_minor`). Each line
    /// takes its store and partner reference (bill reference or card RRN)
    /// from the transaction, so clearing never joins back to them.
    pub fn insert_lines(count: usize) -> std::borrow::Cow<'static, str> {
        /// Writes make at most a handful of lines; their statements are built once.
        const PREBUILT: usize = 8;
        static BUILT: std::sync::LazyLock<Vec<String>> =
            std::sync::LazyLock::new(|| (0..=PREBUILT).map(build_insert_lines).collect());
        match BUILT.get(count) {
            Some(sql) => std::borrow::Cow::Borrowed(sql.as_str()),
            None => std::borrow::Cow::Owned(build_insert_lines(count)),
        }
    }

    fn build_insert_lines(count: usize) -> String {
        let rows: Vec<String> = (0..count)
            .map(|line| {
                let first = 4 + line * 5;
                format!(
                    "(${}, ${}, ${}, ${}, ${})",
                    first,
                    first + 1,
                    first + 2,
                    first + 3,
                    first + 4
                )
            })
            .collect();
        format!(
            "WITH l (ord, party, kind, currency, amount_minor) AS (VALUES {}) \
             INSERT INTO settlement_lines (transaction_id, business_date, party, kind, currency, \
             amount_minor, created_at, store_id, reference) \
             SELECT t.id, $2, l.party, l.kind, l.currency, l.amount_minor, $3, t.store_id, \
             COALESCE(b.bill_reference, c.rrn, w.operator_reference, '') \
             FROM l JOIN transactions t ON t.id = $1 \
             LEFT JOIN bill_payments b ON b.transaction_id = t.id \
             LEFT JOIN card_payments c ON c.transaction_id = t.id \
             LEFT JOIN wallet_payments w ON w.transaction_id = t.id \
             ORDER BY l.ord",
            rows.join(", ")
        )
    }
    pub const INSERT_EVENT: &str = "INSERT INTO transaction_events (transaction_id, event_type, from_status, \
         to_status, actor, detail, at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
    /// A transaction's creation: its RECEIVED event and its first state's
    /// event, in that order, in one statement.
    pub const INSERT_RECEIVED_AND_EVENT: &str = "INSERT INTO transaction_events (transaction_id, \
         event_type, from_status, to_status, actor, detail, at) VALUES \
         ($1, 'received', NULL, $8, $5, 'request accepted', $7), ($1, $2, $3, $4, $5, $6, $7)";
    pub const SELECT_TRANSACTION: &str = "SELECT t.id, t.kind, t.status, t.store_id, t.terminal_id, \
         t.operator_id, t.client_request_id, t.partner_id, t.amount_minor, t.currency, t.fee_minor, \
         t.business_date, t.created_at, t.updated_at, t.cancelled_at, t.cancel_reason, b.biller_id, \
         b.agency_code, b.bill_reference, b.due_date, b.period, b.late \
         FROM transactions t JOIN bill_payments b ON b.transaction_id = t.id \
         WHERE t.id = $1 AND t.store_id = $2";
    pub const SELECT_LINES: &str = "SELECT party, kind, currency, amount_minor FROM settlement_lines \
         WHERE transaction_id = $1 ORDER BY id";
    pub const SELECT_EVENTS: &str = "SELECT event_type, from_status, to_status, actor, detail \
         FROM transaction_events WHERE transaction_id = $1 ORDER BY id";
    pub const PURGE_KEYS: &str = "DELETE FROM idempotency_keys WHERE expires_at < $1";
    pub const ROW_COUNTS: &str = "SELECT (SELECT count(*) FROM idempotency_keys), \
         (SELECT count(*) FROM transactions), (SELECT count(*) FROM bill_payments), \
         (SELECT count(*) FROM settlement_lines), (SELECT count(*) FROM transaction_events)";
}

/// Row decoding shared by both backends, generic over the row type.
mod rows {
    use sqlx::{ColumnIndex, Decode, Row, Type};

    use crate::SqlxResultExt as _;

    use super::{
        BillDetail, Event, SettlementLine, StoreError, TransactionRecord, TransactionStatus,
        parse_kind,
    };

    use posgate_core::model::{RequestFingerprint, StoredAnswer};

    pub fn answer<'r, R>(row: &'r R) -> Result<StoredAnswer, StoreError>
    where
        R: Row,
        usize: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
        bool: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(StoredAnswer {
            fingerprint: RequestFingerprint {
                operation: row.try_get(0).db()?,
                digest: row.try_get(1).db()?,
                field_digests: row.try_get(2).db()?,
            },
            transaction_id: row.try_get(3).db()?,
            response: row.try_get(4).db()?,
            pending: row.try_get(5).db()?,
        })
    }

    pub fn line<'r, R>(row: &'r R) -> Result<SettlementLine, StoreError>
    where
        R: Row,
        usize: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(SettlementLine {
            party: row.try_get(0).db()?,
            kind: row.try_get(1).db()?,
            currency: row.try_get(2).db()?,
            amount_minor: row.try_get(3).db()?,
        })
    }

    pub fn event<'r, R>(row: &'r R) -> Result<Event, StoreError>
    where
        R: Row,
        usize: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    {
        let from_status: Option<String> = row.try_get(1).db()?;
        Ok(Event {
            event_type: row.try_get(0).db()?,
            from_status: from_status
                .as_deref()
                .map(TransactionStatus::parse)
                .transpose()?,
            to_status: TransactionStatus::parse(&row.try_get::<String, _>(2).db()?)?,
            actor: row.try_get(3).db()?,
            detail: row.try_get(4).db()?,
        })
    }

    pub fn transaction<'r, R>(row: &'r R) -> Result<TransactionRecord, StoreError>
    where
        R: Row,
        usize: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        Option<String>: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
        bool: Decode<'r, R::Database> + Type<R::Database>,
        chrono::NaiveDate: Decode<'r, R::Database> + Type<R::Database>,
        Option<chrono::NaiveDate>: Decode<'r, R::Database> + Type<R::Database>,
        chrono::DateTime<chrono::Utc>: Decode<'r, R::Database> + Type<R::Database>,
        Option<chrono::DateTime<chrono::Utc>>: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(TransactionRecord {
            id: row.try_get(0).db()?,
            kind: parse_kind(&row.try_get::<String, _>(1).db()?)?,
            status: TransactionStatus::parse(&row.try_get::<String, _>(2).db()?)?,
            store_id: row.try_get(3).db()?,
            terminal_id: row.try_get(4).db()?,
            operator_id: row.try_get(5).db()?,
            client_request_id: row.try_get(6).db()?,
            partner_id: row.try_get(7).db()?,
            amount_minor: row.try_get(8).db()?,
            currency: row.try_get(9).db()?,
            fee_minor: row.try_get(10).db()?,
            business_date: row.try_get(11).db()?,
            created_at: row.try_get(12).db()?,
            updated_at: row.try_get(13).db()?,
            cancelled_at: row.try_get(14).db()?,
            cancel_reason: row.try_get(15).db()?,
            bill: BillDetail {
                biller_id: row.try_get(16).db()?,
                agency_code: row.try_get(17).db()?,
                bill_reference: row.try_get(18).db()?,
                due_date: row.try_get(19).db()?,
                period: row.try_get(20).db()?,
                late: row.try_get(21).db()?,
            },
        })
    }
}

/// The statements the gateway's audit bench (`posgate audit bench`) runs on
/// its own connection while it seeds a chain: it reads the events after a
/// sequence and signs checkpoints over them. Exported so the bench reuses the
/// store's SQL text rather than a copy of it.
pub mod bench {
    pub use crate::audit::sql::{INSERT_CHECKPOINT, SELECT_EVENTS_AFTER};
}
