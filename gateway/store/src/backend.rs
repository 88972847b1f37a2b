//! [`Backend`]: the two sqlx databases the store runs on. Statements are
//! written once, as functions generic over the backend; their `where`
//! clauses name the sqlx bounds they need (the Rust types they bind and
//! decode), which both [`sqlx::Sqlite`] and [`sqlx::Postgres`] meet. What
//! the two do differently is a constant or method here.

/// The store's statements on backend `DB`, as associated functions (each
/// module adds its own `impl` block). Every block has the same `where`
/// clause: what sqlx must offer for each Rust type the statements bind or
/// decode, which SQLite and PostgreSQL both do. (Rust does not carry such
/// bounds from a trait to its users, so the clause cannot live on
/// [`Backend`] alone.)
#[derive(Debug)]
pub(crate) struct Statements<DB>(std::marker::PhantomData<DB>);

/// A sqlx database the store runs on: [`sqlx::Sqlite`] or [`sqlx::Postgres`].
pub(crate) trait Backend: sqlx::Database<QueryResult: RowsAffected> {
    /// How a business day's close begins its transaction (SQLite: take the
    /// write lock first, so the close and the writer thread run one after the
    /// other).
    const CLOSE_BEGIN: &'static str;
    /// The statement a close runs (binding the close lock's key) inside its
    /// transaction before it records the day, or `None`: PostgreSQL takes
    /// the close lock exclusive, while every write batch takes it shared
    /// before it reads which days are closed (`pg_batch`): a close waits for
    /// the batches in flight, and every batch after it sees the day closed.
    /// SQLite has one writer at a time: a close (`BEGIN IMMEDIATE`) and the
    /// writer thread's batches are serialized by the database itself.
    const CLOSE_GUARD: Option<&'static str>;
    /// Whether the audit chain's entries and its head hash are written in
    /// one statement (PostgreSQL: a data-modifying `WITH`) rather than two.
    const COMBINED_CHAIN_APPEND: bool;
    /// Statements run first in the transaction of an audit search, or
    /// `None`. PostgreSQL turns off JIT compilation and parallel workers
    /// there: a page of 100 rows takes about 2 ms to run, and compiling or
    /// starting workers for it took 0.3 to 0.8 s at 1,000,000 transactions.
    const SEARCH_PRELUDE: Option<&'static str>;
    /// The row lock of a lease claim's `SELECT` (`lease`): PostgreSQL skips
    /// rows another instance is claiming at the same moment; SQLite has one
    /// writer at a time and no row locks.
    const SKIP_LOCKED: &'static str;

    /// Runs the statement a [`sqlx::QueryBuilder`] built. Written per
    /// backend: generic code cannot borrow a builder for its own lifetime
    /// (the drop check knows nothing of `Arguments<'args>` of an unknown
    /// database), while each concrete backend's arguments shorten freely.
    fn execute_built<'a>(
        conn: &'a mut Self::Connection,
        builder: sqlx::QueryBuilder<'a, Self>,
    ) -> impl Future<Output = Result<Self::QueryResult, sqlx::Error>> + Send + 'a;
}

impl Backend for sqlx::Sqlite {
    const CLOSE_BEGIN: &'static str = "BEGIN IMMEDIATE";
    const CLOSE_GUARD: Option<&'static str> = None;
    const COMBINED_CHAIN_APPEND: bool = false;
    const SEARCH_PRELUDE: Option<&'static str> = None;
    const SKIP_LOCKED: &'static str = "";

    async fn execute_built<'a>(
        conn: &'a mut Self::Connection,
        mut builder: sqlx::QueryBuilder<'a, Self>,
    ) -> Result<Self::QueryResult, sqlx::Error> {
        builder.build().execute(conn).await
    }
}

impl Backend for sqlx::Postgres {
    const CLOSE_BEGIN: &'static str = "BEGIN";
    const CLOSE_GUARD: Option<&'static str> = Some(XACT_LOCK);
    const COMBINED_CHAIN_APPEND: bool = true;
    const SEARCH_PRELUDE: Option<&'static str> =
        Some("SET LOCAL jit = off; SET LOCAL max_parallel_workers_per_gather = 0");
    const SKIP_LOCKED: &'static str = " FOR UPDATE OF q SKIP LOCKED";

    async fn execute_built<'a>(
        conn: &'a mut Self::Connection,
        mut builder: sqlx::QueryBuilder<'a, Self>,
    ) -> Result<Self::QueryResult, sqlx::Error> {
        builder.build().execute(conn).await
    }
}

/// The number of rows a statement inserted, updated or deleted: each
/// backend's query result has it, sqlx's `Database` trait does not.
pub(crate) trait RowsAffected {
    fn rows_affected(&self) -> u64;
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

// PostgreSQL's transaction-scoped advisory locks (see `postgres.rs` for the
// session locks): the second half of the key is the connection's schema.

/// Takes a transaction-scoped advisory lock exclusive (migrations, a day's close).
pub(crate) const XACT_LOCK: &str =
    "SELECT pg_advisory_xact_lock($1, hashtext(COALESCE(current_schema(), '')))";
/// Takes a transaction-scoped advisory lock shared (writes beside a close).
pub(crate) const XACT_LOCK_SHARED: &str =
    "SELECT pg_advisory_xact_lock_shared($1, hashtext(COALESCE(current_schema(), '')))";
