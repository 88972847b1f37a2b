//! The SQL side of [`posgate_core::ports::db::recon`].

pub(crate) use posgate_core::ports::db::recon::*;

use posgate_core::model::recon::AckStatus;
use posgate_core::model::recon::ExceptionKind;

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Type};

use super::StoreError;
use crate::SqlxResultExt as _;
use crate::backend::{Backend, Statements};

pub(crate) mod sql {
    pub const SELECT_ACK: &str =
        "SELECT id, file_id, sha256 FROM ack_files WHERE partner = $1 AND business_date = $2";
    pub const INSERT_ACK: &str = "INSERT INTO ack_files (partner, business_date, file_id, sha256, \
         items, matched, exceptions, ingested_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id";
    pub const INSERT_ITEM: &str = "INSERT INTO ack_items (ack_file_id, line, transaction_id, reference, \
         currency, amount_minor, status, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    pub const INSERT_EXCEPTION: &str = "INSERT INTO recon_exceptions (ack_file_id, partner, \
         business_date, kind, transaction_id, reference, currency, ours_minor, theirs_minor, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
    pub const SELECT_EXCEPTIONS: &str = "SELECT partner, business_date, kind, transaction_id, \
         reference, currency, ours_minor, theirs_minor, reason FROM recon_exceptions";
    pub const ORDER_EXCEPTIONS: &str =
        " ORDER BY business_date, partner, kind, currency, transaction_id, reference, id";
}

/// The `WHERE` clause for the filters given, with `$1`, `$2` in order.
pub(crate) fn exception_filter(by_date: bool, by_partner: bool) -> String {
    let mut query = sql::SELECT_EXCEPTIONS.to_owned();
    match (by_date, by_partner) {
        (true, true) => query.push_str(" WHERE business_date = $1 AND partner = $2"),
        (true, false) => query.push_str(" WHERE business_date = $1"),
        (false, true) => query.push_str(" WHERE partner = $1"),
        (false, false) => {}
    }
    query.push_str(sql::ORDER_EXCEPTIONS);
    query
}

pub(crate) fn status_text(status: &AckStatus) -> (&'static str, &str) {
    match status {
        AckStatus::Accepted => ("accepted", ""),
        AckStatus::Rejected(reason) => ("rejected", reason.as_str()),
    }
}

pub(crate) fn parse_exception_kind(text: &str) -> Result<ExceptionKind, StoreError> {
    ExceptionKind::parse(text)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown exception kind {text:?}")))
}

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
    /// Stores a partner acknowledgement file, its items and the
    /// reconciliation exceptions, inside an open transaction.
    pub(crate) async fn apply_ack(
        conn: &mut DB::Connection,
        ack: &crate::recon::NewAck<'_>,
    ) -> Result<crate::recon::AckOutcome, crate::StoreError> {
        use crate::recon::{AckOutcome, sql, status_text};
        use sqlx::Row as _;
        let file = ack.file;
        let existing = sqlx::query(sql::SELECT_ACK)
            .bind(&file.partner)
            .bind(file.business_date)
            .fetch_optional(&mut *conn)
            .await
            .db()?;
        if let Some(row) = existing {
            let (id, file_id, sha256): (i64, String, String) = (
                row.try_get(0).db()?,
                row.try_get(1).db()?,
                row.try_get(2).db()?,
            );
            return Ok(if sha256 == ack.sha256 {
                AckOutcome::AlreadyIngested(id)
            } else {
                AckOutcome::Conflict { file_id, sha256 }
            });
        }
        let count = |n: usize| i64::try_from(n).expect("counts fit i64");
        let id: i64 = sqlx::query_scalar(sql::INSERT_ACK)
            .bind(&file.partner)
            .bind(file.business_date)
            .bind(&file.file_id)
            .bind(&ack.sha256)
            .bind(count(file.items.len()))
            .bind(i64::try_from(ack.report.matched).expect("counts fit i64"))
            .bind(count(ack.report.exceptions.len()))
            .bind(ack.ingested_at)
            .fetch_one(&mut *conn)
            .await
            .db()?;
        for item in &file.items {
            let (status, reason) = status_text(&item.status);
            sqlx::query(sql::INSERT_ITEM)
                .bind(id)
                .bind(count(item.line))
                .bind(&item.transaction_id)
                .bind(&item.reference)
                .bind(&item.currency)
                .bind(item.amount_minor)
                .bind(status)
                .bind(reason)
                .execute(&mut *conn)
                .await
                .db()?;
        }
        for exception in &ack.report.exceptions {
            sqlx::query(sql::INSERT_EXCEPTION)
                .bind(id)
                .bind(&file.partner)
                .bind(file.business_date)
                .bind(exception.kind.as_str())
                .bind(&exception.transaction_id)
                .bind(&exception.reference)
                .bind(&exception.currency)
                .bind(exception.ours_minor)
                .bind(exception.theirs_minor)
                .bind(&exception.reason)
                .execute(&mut *conn)
                .await
                .db()?;
        }
        Ok(AckOutcome::Stored(id))
    }

    /// [`ReconStore::exceptions`](crate::ReconStore::exceptions) on a pool.
    pub(crate) async fn read_exceptions(
        pool: &sqlx::Pool<DB>,
        business_date: Option<chrono::NaiveDate>,
        partner: Option<&str>,
    ) -> Result<Vec<crate::recon::StoredException>, crate::StoreError> {
        use crate::recon::{StoredException, exception_filter, parse_exception_kind};
        use sqlx::Row as _;
        let query_text = exception_filter(business_date.is_some(), partner.is_some());
        let mut query = sqlx::query(&query_text);
        if let Some(date) = business_date {
            query = query.bind(date);
        }
        if let Some(partner) = partner {
            query = query.bind(partner.to_owned());
        }
        let rows = query.fetch_all(pool).await.db()?;
        rows.iter()
            .map(|row| {
                Ok(StoredException {
                    partner: row.try_get(0).db()?,
                    business_date: row.try_get(1).db()?,
                    kind: parse_exception_kind(&row.try_get::<String, _>(2).db()?)?,
                    transaction_id: row.try_get(3).db()?,
                    reference: row.try_get(4).db()?,
                    currency: row.try_get(5).db()?,
                    ours_minor: row.try_get(6).db()?,
                    theirs_minor: row.try_get(7).db()?,
                    reason: row.try_get(8).db()?,
                })
            })
            .collect()
    }
}
