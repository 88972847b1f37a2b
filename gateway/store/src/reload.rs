//! The SQL side of [`posgate_core::ports::db::reload`].

pub(super) mod sql {
    pub const LINK_COLUMNS: &str = "link_id, status, wallet_operator_id, wallet_ref, account_id, \
         display_id, masked_pan, pan_fingerprint, card_brand, card_link, token, token_key, \
         token_key_version, auto_reload, step_minor, currency, store_id, terminal_id, operator_id, \
         client_request_id, linked_at, unlinked_at, unlink_reason";
    pub const INSERT_LINK: &str = "INSERT INTO wallet_card_links (link_id, status, wallet_operator_id, \
         wallet_ref, account_id, display_id, masked_pan, pan_fingerprint, card_brand, card_link, token, \
         token_key, token_key_version, auto_reload, step_minor, currency, store_id, terminal_id, \
         operator_id, client_request_id, linked_at, unlinked_at, unlink_reason) VALUES ($1, $2, $3, $4, \
         $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)";
    pub const UNLINK: &str = "UPDATE wallet_card_links SET status = 'unlinked', unlinked_at = $1, \
         unlink_reason = $2 WHERE link_id = $3 AND status = 'active'";
    pub const SAGA_COLUMNS: &str = "saga_id, kind, step, link_id, card_transaction_id, \
         top_up_transaction_id, reload_minor, currency, failure, created_at, updated_at";
    pub const PUT_SAGA: &str = "INSERT INTO wallet_reload_sagas (saga_id, kind, step, link_id, \
         card_transaction_id, top_up_transaction_id, reload_minor, currency, failure, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (saga_id) DO UPDATE SET step = excluded.step, failure = excluded.failure, \
         updated_at = excluded.updated_at";
}

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Type};

use crate::SqlxResultExt as _;
use crate::backend::{Backend, RowsAffected as _, Statements};

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
    /// Decodes a row of [`sql::LINK_COLUMNS`].
    fn reload_link_of(row: &DB::Row) -> Result<crate::CardLink, crate::StoreError> {
        use sqlx::Row as _;
        Ok(crate::CardLink {
            link_id: row.try_get(0).db()?,
            status: crate::LinkStatus::parse(&row.try_get::<String, _>(1).db()?)?,
            wallet_operator_id: row.try_get(2).db()?,
            wallet_ref: row.try_get(3).db()?,
            account_id: row.try_get(4).db()?,
            display_id: row.try_get(5).db()?,
            masked_pan: row.try_get(6).db()?,
            pan_fingerprint: row.try_get(7).db()?,
            card_brand: row.try_get(8).db()?,
            card_link: row.try_get(9).db()?,
            token: posgate_hsm::Secret::new(row.try_get(10).db()?),
            token_key: row.try_get(11).db()?,
            token_key_version: row.try_get(12).db()?,
            auto_reload: row.try_get(13).db()?,
            step_minor: row.try_get(14).db()?,
            currency: row.try_get(15).db()?,
            store_id: row.try_get(16).db()?,
            terminal_id: row.try_get(17).db()?,
            operator_id: row.try_get(18).db()?,
            client_request_id: row.try_get(19).db()?,
            linked_at: row.try_get(20).db()?,
            unlinked_at: row.try_get(21).db()?,
            unlink_reason: row.try_get(22).db()?,
        })
    }

    /// Decodes a row of [`sql::SAGA_COLUMNS`].
    fn reload_saga_of(row: &DB::Row) -> Result<crate::Saga, crate::StoreError> {
        use sqlx::Row as _;
        Ok(crate::Saga {
            saga_id: row.try_get(0).db()?,
            kind: crate::SagaKind::parse(&row.try_get::<String, _>(1).db()?)?,
            step: crate::SagaStep::parse(&row.try_get::<String, _>(2).db()?)?,
            link_id: row.try_get(3).db()?,
            card_transaction_id: row.try_get(4).db()?,
            top_up_transaction_id: row.try_get(5).db()?,
            reload_minor: row.try_get(6).db()?,
            currency: row.try_get(7).db()?,
            failure: row.try_get(8).db()?,
            created_at: row.try_get(9).db()?,
            updated_at: row.try_get(10).db()?,
        })
    }

    /// [`ReloadStore::insert_link`](crate::ReloadStore::insert_link). The
    /// reload statements run on the backend's pool (on SQLite the read pool:
    /// these small writes wait for the writer's lock like any second writer,
    /// under the busy timeout).
    pub(crate) async fn insert_link(
        pool: &sqlx::Pool<DB>,
        link: &crate::CardLink,
        answer: &crate::AnsweredKey,
    ) -> Result<crate::LinkWrite, crate::StoreError> {
        use crate::reload::sql as reload_sql;
        let mut tx = pool.begin().await.db()?;
        if !Self::reload_insert_key(&mut tx, answer, &link.link_id).await? {
            tx.rollback().await.db()?;
            return Ok(crate::LinkWrite::KeyTaken);
        }
        let inserted = sqlx::query(reload_sql::INSERT_LINK)
            .bind(&link.link_id)
            .bind(link.status.as_str())
            .bind(&link.wallet_operator_id)
            .bind(&link.wallet_ref)
            .bind(&link.account_id)
            .bind(&link.display_id)
            .bind(&link.masked_pan)
            .bind(&link.pan_fingerprint)
            .bind(&link.card_brand)
            .bind(&link.card_link)
            .bind(link.token.expose())
            .bind(&link.token_key)
            .bind(link.token_key_version)
            .bind(link.auto_reload)
            .bind(link.step_minor)
            .bind(&link.currency)
            .bind(&link.store_id)
            .bind(&link.terminal_id)
            .bind(&link.operator_id)
            .bind(&link.client_request_id)
            .bind(link.linked_at)
            .bind(link.unlinked_at)
            .bind(&link.unlink_reason)
            .execute(&mut *tx)
            .await;
        match inserted {
            Ok(_) => {}
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                tx.rollback().await.db()?;
                return Ok(crate::LinkWrite::Conflict);
            }
            Err(error) => return Err(crate::db_error(error)),
        }
        tx.commit().await.db()?;
        Ok(crate::LinkWrite::Written)
    }

    /// [`ReloadStore::unlink`](crate::ReloadStore::unlink).
    pub(crate) async fn unlink(
        pool: &sqlx::Pool<DB>,
        link_id: &str,
        reason: &str,
        answer: &crate::AnsweredKey,
    ) -> Result<crate::LinkWrite, crate::StoreError> {
        use crate::reload::sql as reload_sql;
        let mut tx = pool.begin().await.db()?;
        if !Self::reload_insert_key(&mut tx, answer, link_id).await? {
            tx.rollback().await.db()?;
            return Ok(crate::LinkWrite::KeyTaken);
        }
        let updated = sqlx::query(reload_sql::UNLINK)
            .bind(answer.at)
            .bind(reason)
            .bind(link_id)
            .execute(&mut *tx)
            .await
            .db()?
            .rows_affected();
        if updated == 0 {
            tx.rollback().await.db()?;
            return Ok(crate::LinkWrite::Conflict);
        }
        tx.commit().await.db()?;
        Ok(crate::LinkWrite::Written)
    }

    /// [`ReloadStore::active_link`](crate::ReloadStore::active_link).
    pub(crate) async fn active_link(
        pool: &sqlx::Pool<DB>,
        wallet_operator_id: &str,
        wallet_ref: &str,
    ) -> Result<Option<crate::CardLink>, crate::StoreError> {
        use crate::reload::sql as reload_sql;
        let query = format!(
            "SELECT {} FROM wallet_card_links WHERE wallet_operator_id = $1 \
                     AND wallet_ref = $2 AND status = 'active'",
            reload_sql::LINK_COLUMNS
        );
        sqlx::query(&query)
            .bind(wallet_operator_id)
            .bind(wallet_ref)
            .fetch_optional(pool)
            .await
            .db()?
            .as_ref()
            .map(Self::reload_link_of)
            .transpose()
    }

    /// [`ReloadStore::card_link`](crate::ReloadStore::card_link).
    pub(crate) async fn card_link(
        pool: &sqlx::Pool<DB>,
        link_id: &str,
    ) -> Result<Option<crate::CardLink>, crate::StoreError> {
        use crate::reload::sql as reload_sql;
        let query = format!(
            "SELECT {} FROM wallet_card_links WHERE link_id = $1",
            reload_sql::LINK_COLUMNS
        );
        sqlx::query(&query)
            .bind(link_id)
            .fetch_optional(pool)
            .await
            .db()?
            .as_ref()
            .map(Self::reload_link_of)
            .transpose()
    }

    /// [`ReloadStore::put_saga`](crate::ReloadStore::put_saga).
    pub(crate) async fn put_saga(
        pool: &sqlx::Pool<DB>,
        saga: &crate::Saga,
    ) -> Result<(), crate::StoreError> {
        use crate::reload::sql as reload_sql;
        sqlx::query(reload_sql::PUT_SAGA)
            .bind(&saga.saga_id)
            .bind(saga.kind.as_str())
            .bind(saga.step.as_str())
            .bind(&saga.link_id)
            .bind(&saga.card_transaction_id)
            .bind(&saga.top_up_transaction_id)
            .bind(saga.reload_minor)
            .bind(&saga.currency)
            .bind(&saga.failure)
            .bind(saga.created_at)
            .bind(saga.updated_at)
            .execute(pool)
            .await
            .db()?;
        Ok(())
    }

    /// [`ReloadStore::saga`](crate::ReloadStore::saga).
    pub(crate) async fn saga(
        pool: &sqlx::Pool<DB>,
        saga_id: &str,
    ) -> Result<Option<crate::Saga>, crate::StoreError> {
        use crate::reload::sql as reload_sql;
        let query = format!(
            "SELECT {} FROM wallet_reload_sagas WHERE saga_id = $1",
            reload_sql::SAGA_COLUMNS
        );
        sqlx::query(&query)
            .bind(saga_id)
            .fetch_optional(pool)
            .await
            .db()?
            .as_ref()
            .map(Self::reload_saga_of)
            .transpose()
    }

    /// [`ReloadStore::saga_of_step`](crate::ReloadStore::saga_of_step).
    pub(crate) async fn saga_of_step(
        pool: &sqlx::Pool<DB>,
        transaction_id: &str,
    ) -> Result<Option<crate::Saga>, crate::StoreError> {
        use crate::reload::sql as reload_sql;
        let query = format!(
            "SELECT {} FROM wallet_reload_sagas WHERE card_transaction_id = $1 \
                     OR top_up_transaction_id = $1 LIMIT 1",
            reload_sql::SAGA_COLUMNS
        );
        sqlx::query(&query)
            .bind(transaction_id)
            .fetch_optional(pool)
            .await
            .db()?
            .as_ref()
            .map(Self::reload_saga_of)
            .transpose()
    }

    /// [`ReloadStore::open_sagas`](crate::ReloadStore::open_sagas).
    pub(crate) async fn open_sagas(
        pool: &sqlx::Pool<DB>,
        before: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<crate::Saga>, crate::StoreError> {
        Self::sagas_open_since(pool, before, None, limit).await
    }

    /// The open sagas `holder` holds, after a claim
    /// ([`ReloadStore::claim_sagas`](crate::ReloadStore::claim_sagas)).
    pub(crate) async fn held_sagas(
        pool: &sqlx::Pool<DB>,
        before: chrono::DateTime<chrono::Utc>,
        holder: &str,
        limit: i64,
    ) -> Result<Vec<crate::Saga>, crate::StoreError> {
        Self::sagas_open_since(pool, before, Some(holder), limit).await
    }

    /// Sagas open and unchanged since `before`, oldest first; only those
    /// `holder` holds when given.
    async fn sagas_open_since(
        pool: &sqlx::Pool<DB>,
        before: chrono::DateTime<chrono::Utc>,
        holder: Option<&str>,
        limit: i64,
    ) -> Result<Vec<crate::Saga>, crate::StoreError> {
        use crate::reload::sql as reload_sql;
        let query = format!(
            "SELECT {} FROM wallet_reload_sagas WHERE step NOT IN ('done', 'compensated') \
                     AND updated_at < $1 AND ($2 IS NULL OR lease_owner = $2) \
                     ORDER BY updated_at LIMIT $3",
            reload_sql::SAGA_COLUMNS
        );
        sqlx::query(&query)
            .bind(before)
            .bind(holder)
            .bind(limit)
            .fetch_all(pool)
            .await
            .db()?
            .iter()
            .map(Self::reload_saga_of)
            .collect()
    }

    /// Inserts an answered key; false when the key was already taken.
    pub(crate) async fn reload_insert_key(
        conn: &mut sqlx::Transaction<'_, DB>,
        answer: &crate::AnsweredKey,
        transaction_id: &str,
    ) -> Result<bool, crate::StoreError> {
        let inserted = sqlx::query(crate::sql::INSERT_KEY)
            .bind(&answer.key.store_id)
            .bind(&answer.key.terminal_id)
            .bind(&answer.key.client_request_id)
            .bind(&answer.fingerprint.operation)
            .bind(&answer.fingerprint.digest)
            .bind(&answer.fingerprint.field_digests)
            .bind(&answer.response)
            .bind(transaction_id)
            .bind(answer.at)
            .bind(answer.expires_at)
            .bind(false)
            .execute(&mut **conn)
            .await
            .db()?
            .rows_affected();
        Ok(inserted == 1)
    }
}
