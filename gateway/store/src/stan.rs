//! The SQL side of [`posgate_core::ports::db::stan`].

pub(crate) use posgate_core::ports::db::stan::*;

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Type};

use crate::backend::{Backend, Statements};
use crate::{SqlxResultExt as _, StoreError};

pub(super) mod sql {
    /// Moves the counter by `$3` and returns where it ends: the block is the
    /// `$3` numbers before it. One statement, so concurrent gateways
    /// serialize on the row and never share a block.
    pub const ALLOCATE: &str = "INSERT INTO stan_counters (institution_id, stan_day, next_stan) \
         VALUES ($1, $2, 1 + $3) ON CONFLICT (institution_id, stan_day) \
         DO UPDATE SET next_stan = stan_counters.next_stan + $3 RETURNING next_stan";
    pub const SET_SAF_STAN: &str =
        "UPDATE saf_queue SET stan = COALESCE(stan, $1) WHERE id = $2 RETURNING stan";
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
    /// Allocates a block of `count` STANs for an institution's day:
    /// [`StanStore::allocate_stans`] on either backend's pool.
    pub(crate) async fn allocate_stans(
        pool: &sqlx::Pool<DB>,
        institution_id: &str,
        day: chrono::NaiveDate,
        count: u32,
    ) -> Result<std::ops::Range<u32>, StoreError> {
        let next_after: i64 = sqlx::query_scalar(sql::ALLOCATE)
            .bind(institution_id)
            .bind(day)
            .bind(i64::from(count))
            .fetch_one(pool)
            .await
            .db()?;
        block(institution_id, day, next_after, count)
    }

    /// Records a queue entry's STAN unless it has one: [`StanStore::saf_set_stan`].
    pub(crate) async fn saf_set_stan(
        pool: &sqlx::Pool<DB>,
        id: i64,
        stan: &str,
    ) -> Result<String, StoreError> {
        let recorded: Option<String> = sqlx::query_scalar(sql::SET_SAF_STAN)
            .bind(stan)
            .bind(id)
            .fetch_optional(pool)
            .await
            .db()?;
        recorded.ok_or_else(|| StoreError::Invariant(format!("no queue entry {id}")))
    }
}
