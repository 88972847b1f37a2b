//! The clearing benchmark's pieces: seeding one business day of N
//! transactions with bulk SQL (PostgreSQL `generate_series`, SQLite a
//! recursive CTE), and reading the process's peak memory.
//!
//! The mix per 10 transactions: 3 Taiwan Power bills and 2 Taipei Water
//! bills (TWD, store S001), 2 Tokyo Gas bills (JPY, store S101), 2 acquirer
//! card sales (TWD) and 1 co-brand card sale (JPY). Bills write 4 lines
//! (store, biller collection, biller fee, chain fee), cards 2, so a day of
//! 1,000,000 transactions has 3,400,000 settlement lines, 1,700,000 of them
//! partners' clearing items.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Connection as _;

/// Which SQL dialect to seed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Some(Self::Postgres)
        } else {
            None
        }
    }
}

/// The seed rows, computed once into a temporary table.
fn seed_table(dialect: Dialect, rows: u64) -> String {
    let (sequence, id, rrn, reference) = match dialect {
        Dialect::Sqlite => (
            format!(
                "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {rows}) SELECT n FROM seq"
            ),
            "printf('01900000-0000-7000-8000-%012d', n)",
            "printf('%012d', n)",
            "printf('R%015d', n)",
        ),
        Dialect::Postgres => (
            format!("SELECT n::bigint AS n FROM generate_series(1, {rows}) AS g(n)"),
            "'01900000-0000-7000-8000-' || lpad(n::text, 12, '0')",
            "lpad(n::text, 12, '0')",
            "'R' || lpad(n::text, 15, '0')",
        ),
    };
    format!(
        "CREATE TEMP TABLE bench_seed AS SELECT n, {id} AS id, {rrn} AS rrn, {reference} AS reference, \
         CASE WHEN n % 10 < 7 THEN 'bill_payment' ELSE 'card_payment' END AS kind, \
         CASE WHEN n % 10 IN (5, 6, 9) THEN 'S101' ELSE 'S001' END AS store_id, \
         CASE WHEN n % 10 < 3 THEN 'TPC' WHEN n % 10 < 5 THEN 'TWATER' WHEN n % 10 < 7 THEN 'TKGAS' \
              WHEN n % 10 < 9 THEN 'acquirer' ELSE 'cobrand' END AS partner_id, \
         CASE WHEN n % 10 IN (5, 6, 9) THEN 'JPY' ELSE 'TWD' END AS currency, \
         CASE WHEN n % 10 IN (5, 6, 9) THEN 100 + (n * 7919) % 30000 ELSE 10000 + (n * 7919) % 500000 END AS amount_minor, \
         CASE WHEN n % 10 IN (5, 6) THEN 50 WHEN n % 10 < 5 THEN 1000 ELSE 0 END AS fee_minor \
         FROM ({sequence}) AS numbers"
    )
}

/// Statements that turn the seed table into transactions, bills, cards and lines.
fn seed_inserts(dialect: Dialect) -> Vec<&'static str> {
    let mut statements = vec![
        "INSERT INTO transactions (id, kind, status, store_id, terminal_id, operator_id, client_request_id, \
         partner_id, amount_minor, currency, fee_minor, business_date, created_at, updated_at) \
         SELECT id, kind, CASE WHEN kind = 'bill_payment' THEN 'paid' ELSE 'captured' END, store_id, 'T01', 'OP1', \
         'bench-' || n, partner_id, amount_minor, currency, fee_minor, $1, $2, $2 FROM bench_seed",
        "INSERT INTO card_payments (transaction_id, card_type, route, masked_pan, pan_fingerprint, card_brand, \
         entry_mode, cardholder_verification, merchant_id, bank_terminal_id, stan, rrn, transmitted_at, request_mti, \
         pos_reference, captured_minor) SELECT id, 'sale', 'acquirer', '411111******1111', 'bench', 'visa', 'chip', \
         'none', 'M000000000001', 'T0000001', '000001', rrn, $2, '0200', 'bench', amount_minor \
         FROM bench_seed WHERE kind = 'card_payment'",
        "INSERT INTO settlement_lines (transaction_id, business_date, party, kind, currency, amount_minor, created_at, \
         store_id, reference) SELECT id, $1, 'store:' || store_id, CASE WHEN kind = 'bill_payment' THEN 'collection' ELSE 'card_sale' END, \
         currency, CASE WHEN kind = 'bill_payment' THEN -amount_minor ELSE amount_minor END, $2, store_id, \
         CASE WHEN kind = 'bill_payment' THEN reference ELSE rrn END FROM bench_seed",
        "INSERT INTO settlement_lines (transaction_id, business_date, party, kind, currency, amount_minor, created_at, \
         store_id, reference) SELECT id, $1, CASE WHEN kind = 'bill_payment' THEN 'biller:' ELSE 'bank:' END || partner_id, \
         CASE WHEN kind = 'bill_payment' THEN 'collection' ELSE 'card_sale' END, \
         currency, CASE WHEN kind = 'bill_payment' THEN amount_minor ELSE -amount_minor END, $2, store_id, \
         CASE WHEN kind = 'bill_payment' THEN reference ELSE rrn END FROM bench_seed",
        "INSERT INTO settlement_lines (transaction_id, business_date, party, kind, currency, amount_minor, created_at, \
         store_id, reference) SELECT id, $1, 'biller:' || partner_id, 'fee', currency, -fee_minor, $2, store_id, reference FROM bench_seed \
         WHERE kind = 'bill_payment'",
        "INSERT INTO settlement_lines (transaction_id, business_date, party, kind, currency, amount_minor, created_at, \
         store_id, reference) SELECT id, $1, 'chain', 'fee', currency, fee_minor, $2, store_id, reference FROM bench_seed \
         WHERE kind = 'bill_payment'",
    ];
    statements.insert(
        1,
        match dialect {
            Dialect::Sqlite => "INSERT INTO bill_payments (transaction_id, biller_id, agency_code, bill_reference, due_date, period, late) \
                    SELECT id, partner_id, partner_id, reference, NULL, '202601', 0 FROM bench_seed WHERE kind = 'bill_payment'",
            Dialect::Postgres => "INSERT INTO bill_payments (transaction_id, biller_id, agency_code, bill_reference, due_date, period, late) \
                  SELECT id, partner_id, partner_id, reference, NULL, '202601', FALSE FROM bench_seed WHERE kind = 'bill_payment'",
        },
    );
    statements
}

/// Seeds `rows` transactions on `date` into a migrated, empty database.
pub async fn seed(
    url: &str,
    rows: u64,
    date: NaiveDate,
    created_at: DateTime<Utc>,
) -> anyhow::Result<()> {
    let dialect = Dialect::of_url(url).ok_or_else(|| anyhow::anyhow!("unknown database url"))?;
    match dialect {
        Dialect::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await?;
            // Seeding is scratch work: no fsync per statement.
            sqlx::query("PRAGMA synchronous = OFF")
                .execute(&mut conn)
                .await?;
            let mut tx = conn.begin().await?;
            sqlx::query(&seed_table(dialect, rows))
                .execute(&mut *tx)
                .await?;
            for statement in seed_inserts(dialect) {
                sqlx::query(statement)
                    .bind(date)
                    .bind(created_at)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            sqlx::query("ANALYZE").execute(&mut conn).await?;
        }
        Dialect::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            let mut tx = conn.begin().await?;
            sqlx::query("SET LOCAL synchronous_commit = OFF")
                .execute(&mut *tx)
                .await?;
            sqlx::query(&seed_table(dialect, rows))
                .execute(&mut *tx)
                .await?;
            for statement in seed_inserts(dialect) {
                sqlx::query(statement)
                    .bind(date)
                    .bind(created_at)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            // A day of live traffic is vacuumed by autovacuum as it arrives
            // (schema 6 sets the insert scale factor to 1%); the bulk seed
            // does it at once so the visibility map is as it would be.
            sqlx::query("VACUUM ANALYZE settlement_lines")
                .execute(&mut conn)
                .await?;
            sqlx::query("ANALYZE").execute(&mut conn).await?;
        }
    }
    Ok(())
}

/// Peak resident memory of this process (`VmHWM`), in KiB; `None` off Linux.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}
