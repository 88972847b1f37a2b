//! What the SQLite backend's rusqlite connections (the writer thread's and
//! the hot reads') share: opening a connection on the file sqlx opened,
//! binding the store's `$N` statements, and storing and reading chrono
//! values in exactly the text forms sqlx-sqlite uses, so rows written here
//! read back through sqlx (and the reverse) unchanged.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone as _, Utc};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{OpenFlags, Statement, ToSql};

use crate::StoreError;

/// Prepared statements each connection keeps. A write runs about a dozen
/// distinct statements (the settlement-line insert has one per line count),
/// the hot reads six: rusqlite's default of 16 would evict them.
const STATEMENT_CACHE: usize = 128;

/// Which database a rusqlite connection opens: the file, or the
/// shared-cache in-memory database sqlx named for `sqlite::memory:`.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    filename: PathBuf,
    in_memory: bool,
}

impl Target {
    /// The database sqlx's options open.
    pub(crate) fn of(options: &sqlx::sqlite::SqliteConnectOptions) -> Self {
        let filename = options.get_filename().to_path_buf();
        // sqlx names an in-memory database `file:sqlx-in-memory-<n>` and
        // opens it with shared cache (see sqlx-sqlite's options parser).
        let in_memory = filename
            .to_str()
            .is_some_and(|name| name.starts_with("file:sqlx-in-memory-"));
        Self {
            filename,
            in_memory,
        }
    }

    /// Opens a read-write connection: WAL, full fsync on commit, foreign
    /// keys on, waiting up to `busy_timeout` for another connection's lock.
    pub(crate) fn open(&self, busy_timeout: Duration) -> Result<rusqlite::Connection, StoreError> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        if self.in_memory {
            flags |= OpenFlags::SQLITE_OPEN_MEMORY | OpenFlags::SQLITE_OPEN_SHARED_CACHE;
        }
        let conn = rusqlite::Connection::open_with_flags(&self.filename, flags).map_err(db)?;
        conn.busy_timeout(busy_timeout).map_err(db)?;
        // journal_mode answers with the mode (a row); "memory" in memory.
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .map_err(db)?;
        // FULL: a commit is on disk before the POS hears "paid". temp_store
        // MEMORY keeps the savepoints' statement journals in memory: a write
        // touches more pages than the default spill size (64 KiB), and
        // spilled journals are written to a temporary file.
        conn.execute_batch(
            "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY",
        )
        .map_err(db)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }
}

/// A rusqlite failure as a [`StoreError`]: busy or locked is `Unavailable`
/// (a retry may succeed), anything else `Database` (as [`crate::db_error`]).
pub(crate) fn db(error: rusqlite::Error) -> StoreError {
    let unavailable = matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    );
    if unavailable {
        StoreError::Unavailable(Box::new(error))
    } else {
        StoreError::Database(Box::new(error))
    }
}

/// An instant as sqlx-sqlite stores it: RFC 3339, as many fraction digits
/// as needed, `+00:00`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ts(pub DateTime<Utc>);

impl ToSql for Ts {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(
            self.0.to_rfc3339_opts(SecondsFormat::AutoSi, false),
        ))
    }
}

/// A date as sqlx-sqlite stores it: `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Date(pub NaiveDate);

impl ToSql for Date {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0.format("%F").to_string()))
    }
}

/// An optional instant (NULL when `None`).
pub(crate) fn ts_opt(at: Option<DateTime<Utc>>) -> Option<Ts> {
    at.map(Ts)
}

/// An optional date (NULL when `None`).
pub(crate) fn date_opt(date: Option<NaiveDate>) -> Option<Date> {
    date.map(Date)
}

/// Binds `args` to a statement written with `$N` placeholders: SQLite
/// names such a parameter `$N`, and a name used twice is one parameter, so
/// each parameter takes `args[N - 1]`.
pub(crate) fn bind(statement: &mut Statement<'_>, args: &[&dyn ToSql]) -> rusqlite::Result<()> {
    for index in 1..=statement.parameter_count() {
        let number = statement
            .parameter_name(index)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|number| number.parse::<usize>().ok())
            .and_then(|number| number.checked_sub(1))
            .ok_or(rusqlite::Error::InvalidParameterCount(index, args.len()))?;
        let value = args
            .get(number)
            .ok_or(rusqlite::Error::InvalidParameterCount(
                number + 1,
                args.len(),
            ))?;
        statement.raw_bind_parameter(index, value)?;
    }
    Ok(())
}

/// Runs a cached statement with `args`; the number of rows it changed.
pub(crate) fn execute(
    conn: &rusqlite::Connection,
    sql: &str,
    args: &[&dyn ToSql],
) -> Result<usize, StoreError> {
    let mut statement = conn.prepare_cached(sql).map_err(db)?;
    bind(&mut statement, args).map_err(db)?;
    statement.raw_execute().map_err(db)
}

/// Runs a cached query with `args` and decodes its first row, if any.
pub(crate) fn query_optional<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    args: &[&dyn ToSql],
    decode: impl FnOnce(&rusqlite::Row<'_>) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let mut statement = conn.prepare_cached(sql).map_err(db)?;
    bind(&mut statement, args).map_err(db)?;
    let mut rows = statement.raw_query();
    match rows.next().map_err(db)? {
        Some(row) => decode(row).map(Some),
        None => Ok(None),
    }
}

/// Runs a cached query with `args` and decodes every row.
pub(crate) fn query_all<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    args: &[&dyn ToSql],
    mut decode: impl FnMut(&rusqlite::Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut statement = conn.prepare_cached(sql).map_err(db)?;
    bind(&mut statement, args).map_err(db)?;
    let mut rows = statement.raw_query();
    let mut all = Vec::new();
    while let Some(row) = rows.next().map_err(db)? {
        all.push(decode(row)?);
    }
    Ok(all)
}

/// Column `index` as a `T` (rusqlite's own conversions: text, blob,
/// integer, bool from an integer as sqlx reads it).
pub(crate) fn get<T: rusqlite::types::FromSql>(
    row: &rusqlite::Row<'_>,
    index: usize,
) -> Result<T, StoreError> {
    row.get(index).map_err(db)
}

/// Column `index` as an instant, read as sqlx-sqlite reads one.
pub(crate) fn get_ts(row: &rusqlite::Row<'_>, index: usize) -> Result<DateTime<Utc>, StoreError> {
    get_ts_opt(row, index)?.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "column {index}: NULL where an instant was expected"
        ))
    })
}

/// Column `index` as an optional instant (NULL is `None`).
pub(crate) fn get_ts_opt(
    row: &rusqlite::Row<'_>,
    index: usize,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let value = row.get_ref(index).map_err(db)?;
    let decoded = match value {
        ValueRef::Null => return Ok(None),
        ValueRef::Text(text) => std::str::from_utf8(text).ok().and_then(datetime_from_text),
        ValueRef::Integer(seconds) => Utc.timestamp_opt(seconds, 0).single(),
        ValueRef::Real(_) | ValueRef::Blob(_) => None,
    };
    decoded
        .map(Some)
        .ok_or_else(|| StoreError::Corrupt(format!("column {index}: not an instant: {value:?}")))
}

/// sqlx-sqlite's text forms of an instant: RFC 3339 first, then the
/// forms SQLite's own date functions write.
fn datetime_from_text(text: &str) -> Option<DateTime<Utc>> {
    const FORMATS: [&str; 12] = [
        "%F %T%.f",
        "%F %R",
        "%F %RZ",
        "%F %R%:z",
        "%F %T%.fZ",
        "%F %T%.f%:z",
        "%FT%R",
        "%FT%RZ",
        "%FT%R%:z",
        "%FT%T%.f",
        "%FT%T%.fZ",
        "%FT%T%.f%:z",
    ];
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    FORMATS.iter().find_map(|format| {
        DateTime::parse_from_str(text, format)
            .map(|at| at.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                chrono::NaiveDateTime::parse_from_str(text, format)
                    .ok()
                    .map(|at| Utc.from_utc_datetime(&at))
            })
    })
}

/// Column `index` as a date (`YYYY-MM-DD`).
pub(crate) fn get_date(row: &rusqlite::Row<'_>, index: usize) -> Result<NaiveDate, StoreError> {
    get_date_opt(row, index)?.ok_or_else(|| {
        StoreError::Corrupt(format!("column {index}: NULL where a date was expected"))
    })
}

/// Column `index` as an optional date.
pub(crate) fn get_date_opt(
    row: &rusqlite::Row<'_>,
    index: usize,
) -> Result<Option<NaiveDate>, StoreError> {
    let text: Option<String> = get(row, index)?;
    text.map(|text| {
        NaiveDate::parse_from_str(&text, "%F")
            .map_err(|error| StoreError::Corrupt(format!("column {index}: {text:?}: {error}")))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text forms are sqlx-sqlite's: a row written by one reads back
    /// through the other.
    #[tokio::test]
    async fn values_round_trip_between_sqlx_and_rusqlite() {
        use sqlx::{Connection as _, Row as _};
        let dir = std::env::temp_dir().join(format!("posgate-conn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.db");
        let _ = std::fs::remove_file(&path);
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let options: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
        let mut sqlx_conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (at TEXT, day TEXT, flag INTEGER, blob BLOB, src TEXT)")
            .execute(&mut sqlx_conn)
            .await
            .unwrap();
        let at = Utc.with_ymd_and_hms(2026, 12, 5, 1, 2, 3).unwrap()
            + chrono::Duration::nanoseconds(123_456_700);
        let day = NaiveDate::from_ymd_opt(2026, 12, 5).unwrap();
        sqlx::query("INSERT INTO t VALUES ($1, $2, $3, $4, 'sqlx')")
            .bind(at)
            .bind(day)
            .bind(true)
            .bind(&b""[..])
            .execute(&mut sqlx_conn)
            .await
            .unwrap();
        let conn = Target::of(&options).open(Duration::from_secs(1)).unwrap();
        let empty: &[u8] = &[];
        execute(
            &conn,
            "INSERT INTO t VALUES ($1, $2, $3, $4, 'rusqlite')",
            &[&Ts(at), &Date(day), &true, &empty],
        )
        .unwrap();
        let rows: Vec<(String, String, i64, String, String)> =
            sqlx::query_as("SELECT at, day, flag, typeof(blob), src FROM t ORDER BY src")
                .fetch_all(&mut sqlx_conn)
                .await
                .unwrap();
        assert_eq!(rows[0].0, rows[1].0);
        assert_eq!(rows[0].1, rows[1].1);
        assert_eq!(rows[0].2, rows[1].2);
        assert_eq!(rows[0].3, rows[1].3);
        for row in sqlx::query("SELECT at, day FROM t")
            .fetch_all(&mut sqlx_conn)
            .await
            .unwrap()
        {
            assert_eq!(row.get::<DateTime<Utc>, _>(0), at);
            assert_eq!(row.get::<NaiveDate, _>(1), day);
        }
        let read = query_all(&conn, "SELECT at, day, flag FROM t", &[], |row| {
            Ok((get_ts(row, 0)?, get_date(row, 1)?, get::<bool>(row, 2)?))
        })
        .unwrap();
        assert_eq!(read, vec![(at, day, true), (at, day, true)]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
