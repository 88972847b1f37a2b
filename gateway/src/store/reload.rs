//! Wallet card links (`LinkCard`) and the durable state of card-funded
//! top-ups and auto-reloads (migration 0010).
//!
//! A saga row names the step about to run and the ids its transactions will
//! carry, and is written BEFORE that step's external call; each step's own
//! transaction (a card SALE, a wallet `TOP_UP`, the wallet PAYMENT) is then
//! recorded like any other. After a crash the recovery worker
//! (`wallet::reload::recover`) reads the saga and the states of its
//! transactions and either finishes it or compensates every earlier step.

use chrono::{DateTime, Utc};

use super::StoreError;

use posgate_core::model::{IdempotencyKey, RequestFingerprint};

/// The state of a card link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStatus {
    Active,
    Declined,
    Unlinked,
}

impl LinkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Declined => "declined",
            Self::Unlinked => "unlinked",
        }
    }

    pub fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "active" => Ok(Self::Active),
            "declined" => Ok(Self::Declined),
            "unlinked" => Ok(Self::Unlinked),
            other => Err(StoreError::Corrupt(format!(
                "unknown card link status {other:?}"
            ))),
        }
    }
}

/// A wallet's link to a co-brand card. `token` is the PAN and expiry
/// enciphered in the HSM; no clear card data is ever stored, and the token
/// itself prints as `***`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardLink {
    pub link_id: String,
    pub status: LinkStatus,
    pub wallet_operator_id: String,
    pub wallet_ref: String,
    pub account_id: String,
    pub display_id: String,
    pub masked_pan: String,
    pub pan_fingerprint: String,
    pub card_brand: String,
    /// The bank link of the card's co-brand route.
    pub card_link: String,
    pub token: posgate_hsm::Secret<Vec<u8>>,
    pub token_key: String,
    pub token_key_version: i64,
    pub auto_reload: bool,
    pub step_minor: i64,
    pub currency: String,
    pub store_id: String,
    pub terminal_id: String,
    pub operator_id: String,
    pub client_request_id: String,
    pub linked_at: DateTime<Utc>,
    pub unlinked_at: Option<DateTime<Utc>>,
    pub unlink_reason: Option<String>,
}

/// What a saga is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SagaKind {
    /// Pay found the balance short: card SALE, wallet `TOP_UP`, then PAYMENT.
    AutoReload,
    /// A top-up paid by a card at the counter: card SALE, then `TOP_UP`.
    CardTopUp,
}

impl SagaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AutoReload => "auto_reload",
            Self::CardTopUp => "card_top_up",
        }
    }

    pub fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "auto_reload" => Ok(Self::AutoReload),
            "card_top_up" => Ok(Self::CardTopUp),
            other => Err(StoreError::Corrupt(format!("unknown saga kind {other:?}"))),
        }
    }
}

/// The step a saga is in: the one whose external call may be under way.
/// Steps only move forward; `Done` and `Compensated` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SagaStep {
    Card,
    TopUp,
    Pay,
    Done,
    Compensated,
}

impl SagaStep {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Card => "card",
            Self::TopUp => "top_up",
            Self::Pay => "pay",
            Self::Done => "done",
            Self::Compensated => "compensated",
        }
    }

    pub fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "card" => Ok(Self::Card),
            "top_up" => Ok(Self::TopUp),
            "pay" => Ok(Self::Pay),
            "done" => Ok(Self::Done),
            "compensated" => Ok(Self::Compensated),
            other => Err(StoreError::Corrupt(format!("unknown saga step {other:?}"))),
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Compensated)
    }
}

/// One saga: the parent wallet transaction and the ids of its steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saga {
    /// The parent wallet transaction (the PAYMENT, or the card-funded `TOP_UP`).
    pub saga_id: String,
    pub kind: SagaKind,
    pub step: SagaStep,
    pub link_id: Option<String>,
    pub card_transaction_id: String,
    /// The auto-reload `TOP_UP` (auto-reload only).
    pub top_up_transaction_id: Option<String>,
    pub reload_minor: i64,
    pub currency: String,
    /// The decline reason the parent got when a step failed.
    pub failure: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An answered idempotency key written with a link change.
#[derive(Debug, Clone)]
pub struct AnsweredKey {
    pub key: IdempotencyKey,
    pub fingerprint: RequestFingerprint,
    pub response: Vec<u8>,
    pub at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What a link write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkWrite {
    Written,
    /// The key was already used: nothing written; read its answer.
    KeyTaken,
    /// The wallet already has an active link (`LinkCard`), or the link is no
    /// longer active (`UnlinkCard`): nothing written.
    Conflict,
}

/// Links and sagas, the same SQL on both backends (`define_reload_store!`).
#[async_trait::async_trait]
pub trait ReloadStore: Send + Sync {
    /// Stores a new link and its answered key in one transaction.
    async fn insert_link(
        &self,
        link: &CardLink,
        answer: &AnsweredKey,
    ) -> Result<LinkWrite, StoreError>;
    /// Marks an active link unlinked, with its answered key.
    async fn unlink(
        &self,
        link_id: &str,
        reason: &str,
        answer: &AnsweredKey,
    ) -> Result<LinkWrite, StoreError>;
    /// The wallet's active link.
    async fn active_link(
        &self,
        wallet_operator_id: &str,
        wallet_ref: &str,
    ) -> Result<Option<CardLink>, StoreError>;
    async fn card_link(&self, link_id: &str) -> Result<Option<CardLink>, StoreError>;
    /// Inserts a saga or moves it to `saga.step` (durable on return).
    async fn put_saga(&self, saga: &Saga) -> Result<(), StoreError>;
    async fn saga(&self, saga_id: &str) -> Result<Option<Saga>, StoreError>;
    /// The saga a step transaction (card SALE or auto-reload `TOP_UP`) belongs to.
    async fn saga_of_step(&self, transaction_id: &str) -> Result<Option<Saga>, StoreError>;
    /// Sagas not final and unchanged since before `before`, oldest first.
    async fn open_sagas(&self, before: DateTime<Utc>, limit: i64) -> Result<Vec<Saga>, StoreError>;
}

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

/// Implements [`ReloadStore`] for a backend's store over its pool `$pool`
/// (on SQLite the read pool: these small writes wait for the writer's lock
/// like any second writer, under the busy timeout).
macro_rules! define_reload_store {
    ($store:ty, $pool:ident, $row:ty) => {
        fn reload_link_of(
            row: &$row,
        ) -> Result<$crate::store::CardLink, $crate::store::StoreError> {
            use sqlx::Row as _;
            Ok($crate::store::CardLink {
                link_id: row.try_get(0).db()?,
                status: $crate::store::LinkStatus::parse(&row.try_get::<String, _>(1).db()?)?,
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

        fn reload_saga_of(row: &$row) -> Result<$crate::store::Saga, $crate::store::StoreError> {
            use sqlx::Row as _;
            Ok($crate::store::Saga {
                saga_id: row.try_get(0).db()?,
                kind: $crate::store::SagaKind::parse(&row.try_get::<String, _>(1).db()?)?,
                step: $crate::store::SagaStep::parse(&row.try_get::<String, _>(2).db()?)?,
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

        #[async_trait::async_trait]
        impl $crate::store::ReloadStore for $store {
            async fn insert_link(
                &self,
                link: &$crate::store::CardLink,
                answer: &$crate::store::AnsweredKey,
            ) -> Result<$crate::store::LinkWrite, $crate::store::StoreError> {
                use $crate::store::reload::sql as reload_sql;
                let mut tx = self.$pool.begin().await.db()?;
                if !reload_insert_key(&mut tx, answer, &link.link_id).await? {
                    tx.rollback().await.db()?;
                    return Ok($crate::store::LinkWrite::KeyTaken);
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
                        return Ok($crate::store::LinkWrite::Conflict);
                    }
                    Err(error) => return Err($crate::store::db_error(error)),
                }
                tx.commit().await.db()?;
                Ok($crate::store::LinkWrite::Written)
            }

            async fn unlink(
                &self,
                link_id: &str,
                reason: &str,
                answer: &$crate::store::AnsweredKey,
            ) -> Result<$crate::store::LinkWrite, $crate::store::StoreError> {
                use $crate::store::reload::sql as reload_sql;
                let mut tx = self.$pool.begin().await.db()?;
                if !reload_insert_key(&mut tx, answer, link_id).await? {
                    tx.rollback().await.db()?;
                    return Ok($crate::store::LinkWrite::KeyTaken);
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
                    return Ok($crate::store::LinkWrite::Conflict);
                }
                tx.commit().await.db()?;
                Ok($crate::store::LinkWrite::Written)
            }

            async fn active_link(
                &self,
                wallet_operator_id: &str,
                wallet_ref: &str,
            ) -> Result<Option<$crate::store::CardLink>, $crate::store::StoreError> {
                use $crate::store::reload::sql as reload_sql;
                let query = format!(
                    "SELECT {} FROM wallet_card_links WHERE wallet_operator_id = $1 \
                     AND wallet_ref = $2 AND status = 'active'",
                    reload_sql::LINK_COLUMNS
                );
                sqlx::query(&query)
                    .bind(wallet_operator_id)
                    .bind(wallet_ref)
                    .fetch_optional(&self.$pool)
                    .await
                    .db()?
                    .as_ref()
                    .map(reload_link_of)
                    .transpose()
            }

            async fn card_link(
                &self,
                link_id: &str,
            ) -> Result<Option<$crate::store::CardLink>, $crate::store::StoreError> {
                use $crate::store::reload::sql as reload_sql;
                let query = format!(
                    "SELECT {} FROM wallet_card_links WHERE link_id = $1",
                    reload_sql::LINK_COLUMNS
                );
                sqlx::query(&query)
                    .bind(link_id)
                    .fetch_optional(&self.$pool)
                    .await
                    .db()?
                    .as_ref()
                    .map(reload_link_of)
                    .transpose()
            }

            async fn put_saga(
                &self,
                saga: &$crate::store::Saga,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::reload::sql as reload_sql;
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
                    .execute(&self.$pool)
                    .await
                    .db()?;
                Ok(())
            }

            async fn saga(
                &self,
                saga_id: &str,
            ) -> Result<Option<$crate::store::Saga>, $crate::store::StoreError> {
                use $crate::store::reload::sql as reload_sql;
                let query = format!(
                    "SELECT {} FROM wallet_reload_sagas WHERE saga_id = $1",
                    reload_sql::SAGA_COLUMNS
                );
                sqlx::query(&query)
                    .bind(saga_id)
                    .fetch_optional(&self.$pool)
                    .await
                    .db()?
                    .as_ref()
                    .map(reload_saga_of)
                    .transpose()
            }

            async fn saga_of_step(
                &self,
                transaction_id: &str,
            ) -> Result<Option<$crate::store::Saga>, $crate::store::StoreError> {
                use $crate::store::reload::sql as reload_sql;
                let query = format!(
                    "SELECT {} FROM wallet_reload_sagas WHERE card_transaction_id = $1 \
                     OR top_up_transaction_id = $1 LIMIT 1",
                    reload_sql::SAGA_COLUMNS
                );
                sqlx::query(&query)
                    .bind(transaction_id)
                    .fetch_optional(&self.$pool)
                    .await
                    .db()?
                    .as_ref()
                    .map(reload_saga_of)
                    .transpose()
            }

            async fn open_sagas(
                &self,
                before: chrono::DateTime<chrono::Utc>,
                limit: i64,
            ) -> Result<Vec<$crate::store::Saga>, $crate::store::StoreError> {
                use $crate::store::reload::sql as reload_sql;
                let query = format!(
                    "SELECT {} FROM wallet_reload_sagas WHERE step NOT IN ('done', 'compensated') \
                     AND updated_at < $1 ORDER BY updated_at LIMIT $2",
                    reload_sql::SAGA_COLUMNS
                );
                sqlx::query(&query)
                    .bind(before)
                    .bind(limit)
                    .fetch_all(&self.$pool)
                    .await
                    .db()?
                    .iter()
                    .map(reload_saga_of)
                    .collect()
            }
        }

        /// Inserts an answered key; false when the key was already taken.
        async fn reload_insert_key(
            conn: &mut sqlx::Transaction<'_, <$row as sqlx::Row>::Database>,
            answer: &$crate::store::AnsweredKey,
            transaction_id: &str,
        ) -> Result<bool, $crate::store::StoreError> {
            let inserted = sqlx::query($crate::store::sql::INSERT_KEY)
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
    };
}

pub(crate) use define_reload_store;

#[cfg(test)]
mod tests {
    use super::*;

    /// A card link prints its masked PAN, never its enciphered card token.
    #[test]
    fn card_link_never_prints_its_token() {
        let now = Utc::now();
        let link = CardLink {
            link_id: "link-1".to_owned(),
            status: LinkStatus::Active,
            wallet_operator_id: "op".to_owned(),
            wallet_ref: "1234567890123456".to_owned(),
            account_id: "1234567890123456".to_owned(),
            display_id: "3456".to_owned(),
            masked_pan: "411111******1111".to_owned(),
            pan_fingerprint: "ab".repeat(32),
            card_brand: "VISA".to_owned(),
            card_link: "bank".to_owned(),
            token: posgate_hsm::Secret::new(vec![0xC0, 0xFF, 0xEE, 0x42]),
            token_key: "wallet-card-token".to_owned(),
            token_key_version: 1,
            auto_reload: true,
            step_minor: 1_000,
            currency: "TWD".to_owned(),
            store_id: "S001".to_owned(),
            terminal_id: "T01".to_owned(),
            operator_id: "clerk".to_owned(),
            client_request_id: "req-1".to_owned(),
            linked_at: now,
            unlinked_at: None,
            unlink_reason: None,
        };
        for text in [format!("{link:?}"), format!("{link:#?}")] {
            assert!(!text.contains("192, 255, 238, 66"), "{text}");
            assert!(!text.contains("[192,"), "{text}");
            assert!(text.contains("token: ***"), "{text}");
            assert!(text.contains("411111******1111"), "{text}");
        }
        assert_eq!(link.token.to_string(), "***");
    }
}
