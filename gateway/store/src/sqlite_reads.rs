//! The SQLite backend's hot reads: a few rusqlite connections, each read
//! run whole on a blocking thread (`spawn_blocking`) and handed back as a
//! record, rather than one hand-off per row and statement through
//! sqlx-sqlite's worker thread. WAL lets them run beside the writer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

use crate::sqlite_conn::{Target, get, get_date, get_date_opt, get_ts, get_ts_opt, query_optional};
use crate::{StoreError, TransactionStatus};
use posgate_core::model::{IdempotencyKey, RequestFingerprint, StoredAnswer};

/// Read connections, opened as needed and kept: at most this many reads
/// run at once (the others wait for a connection rather than open one).
const CONNECTIONS: usize = 8;

/// A pool of rusqlite read connections.
#[derive(Debug)]
pub(crate) struct ReadPool {
    target: Target,
    busy_timeout: Duration,
    /// One permit per connection, open or not yet opened.
    permits: Arc<tokio::sync::Semaphore>,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    pub(crate) fn new(target: Target, busy_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            target,
            busy_timeout,
            permits: Arc::new(tokio::sync::Semaphore::new(CONNECTIONS)),
            idle: Mutex::new(Vec::with_capacity(CONNECTIONS)),
        })
    }

    /// Runs `read` on a pooled connection on a blocking thread.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|error| StoreError::Database(Box::new(error)))?;
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let idle = pool.idle.lock().ok().and_then(|mut idle| idle.pop());
            let conn = match idle {
                Some(conn) => conn,
                None => pool.target.open(pool.busy_timeout)?,
            };
            let result = read(&conn);
            if let Ok(mut idle) = pool.idle.lock() {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|error| StoreError::Database(Box::new(error)))?
    }

    /// [`Reads::answer`](crate::Reads::answer).
    pub(crate) async fn answer(
        self: &Arc<Self>,
        key: &IdempotencyKey,
    ) -> Result<Option<StoredAnswer>, StoreError> {
        let key = key.clone();
        self.run(move |conn| {
            query_optional(
                conn,
                crate::sql::SELECT_KEY,
                &[&key.store_id, &key.terminal_id, &key.client_request_id],
                answer,
            )
        })
        .await
    }

    /// [`Reads::transaction`](crate::Reads::transaction).
    pub(crate) async fn transaction(
        self: &Arc<Self>,
        store_id: &str,
        id: &str,
    ) -> Result<Option<crate::TransactionRecord>, StoreError> {
        let (store_id, id) = (store_id.to_owned(), id.to_owned());
        self.run(move |conn| {
            query_optional(
                conn,
                crate::sql::SELECT_TRANSACTION,
                &[&id, &store_id],
                transaction,
            )
        })
        .await
    }

    /// [`Reads::card_transaction`](crate::Reads::card_transaction).
    pub(crate) async fn card_transaction(
        self: &Arc<Self>,
        id: &str,
    ) -> Result<Option<crate::CardRecord>, StoreError> {
        let id = id.to_owned();
        self.run(move |conn| query_optional(conn, &crate::card::sql::SELECT_CARD, &[&id], card))
            .await
    }

    /// [`Reads::card_by_request`](crate::Reads::card_by_request).
    pub(crate) async fn card_by_request(
        self: &Arc<Self>,
        key: &IdempotencyKey,
    ) -> Result<Option<crate::CardRecord>, StoreError> {
        let key = key.clone();
        self.run(move |conn| {
            query_optional(
                conn,
                &crate::card::sql::SELECT_CARD_BY_REQUEST,
                &[&key.store_id, &key.terminal_id, &key.client_request_id],
                card,
            )
        })
        .await
    }

    /// [`WalletReads::wallet_transaction`](crate::WalletReads::wallet_transaction).
    pub(crate) async fn wallet_transaction(
        self: &Arc<Self>,
        id: &str,
    ) -> Result<Option<crate::WalletRecord>, StoreError> {
        let id = id.to_owned();
        self.run(move |conn| {
            query_optional(conn, &crate::wallet::sql::SELECT_WALLET, &[&id], wallet)
        })
        .await
    }

    /// [`WalletReads::wallet_by_request`](crate::WalletReads::wallet_by_request).
    pub(crate) async fn wallet_by_request(
        self: &Arc<Self>,
        key: &IdempotencyKey,
    ) -> Result<Option<crate::WalletRecord>, StoreError> {
        let key = key.clone();
        self.run(move |conn| {
            query_optional(
                conn,
                &crate::wallet::sql::SELECT_BY_REQUEST,
                &[&key.store_id, &key.terminal_id, &key.client_request_id],
                wallet,
            )
        })
        .await
    }
}

/// A row of [`SELECT_KEY`](crate::sql::SELECT_KEY) (as `rows::answer`).
pub(crate) fn answer(row: &rusqlite::Row<'_>) -> Result<StoredAnswer, StoreError> {
    Ok(StoredAnswer {
        fingerprint: RequestFingerprint {
            operation: get(row, 0)?,
            digest: get(row, 1)?,
            field_digests: get(row, 2)?,
        },
        transaction_id: get(row, 3)?,
        response: get(row, 4)?,
        pending: get(row, 5)?,
    })
}

/// A row of [`SELECT_TRANSACTION`](crate::sql::SELECT_TRANSACTION) (as `rows::transaction`).
fn transaction(row: &rusqlite::Row<'_>) -> Result<crate::TransactionRecord, StoreError> {
    Ok(crate::TransactionRecord {
        id: get(row, 0)?,
        kind: crate::parse_kind(&get::<String>(row, 1)?)?,
        status: TransactionStatus::parse(&get::<String>(row, 2)?)?,
        store_id: get(row, 3)?,
        terminal_id: get(row, 4)?,
        operator_id: get(row, 5)?,
        client_request_id: get(row, 6)?,
        partner_id: get(row, 7)?,
        amount_minor: get(row, 8)?,
        currency: get(row, 9)?,
        fee_minor: get(row, 10)?,
        business_date: get_date(row, 11)?,
        created_at: get_ts(row, 12)?,
        updated_at: get_ts(row, 13)?,
        cancelled_at: get_ts_opt(row, 14)?,
        cancel_reason: get(row, 15)?,
        bill: crate::BillDetail {
            biller_id: get(row, 16)?,
            agency_code: get(row, 17)?,
            bill_reference: get(row, 18)?,
            due_date: get_date_opt(row, 19)?,
            period: get(row, 20)?,
            late: get(row, 21)?,
        },
    })
}

/// The card columns (as `card::rows::card` at column 0).
fn card(row: &rusqlite::Row<'_>) -> Result<crate::CardRecord, StoreError> {
    use crate::card::{CardRouteKind, CardType};
    Ok(crate::CardRecord {
        id: get(row, 0)?,
        status: TransactionStatus::parse(&get::<String>(row, 1)?)?,
        store_id: get(row, 2)?,
        terminal_id: get(row, 3)?,
        operator_id: get(row, 4)?,
        client_request_id: get(row, 5)?,
        link_id: get(row, 6)?,
        amount_minor: get(row, 7)?,
        currency: get(row, 8)?,
        business_date: get_date(row, 9)?,
        created_at: get_ts(row, 10)?,
        updated_at: get_ts(row, 11)?,
        card_type: CardType::parse(&get::<String>(row, 12)?)?,
        route: CardRouteKind::parse(&get::<String>(row, 13)?)?,
        masked_pan: get(row, 14)?,
        pan_fingerprint: get(row, 15)?,
        card_brand: get(row, 16)?,
        entry_mode: get(row, 17)?,
        cardholder_verification: get(row, 18)?,
        merchant_id: get(row, 19)?,
        bank_terminal_id: get(row, 20)?,
        stan: get(row, 21)?,
        rrn: get(row, 22)?,
        transmitted_at: get_ts(row, 23)?,
        request_mti: get(row, 24)?,
        response_code: get(row, 25)?,
        approval_code: get(row, 26)?,
        captured_minor: get(row, 27)?,
        refunded_minor: get(row, 28)?,
        refund_reserved_minor: get(row, 29)?,
        loyalty_points: get(row, 30)?,
        loyalty_balance: get(row, 31)?,
        original_transaction_id: get(row, 32)?,
        pos_reference: get(row, 33)?,
        authorization_expires_at: get_ts_opt(row, 34)?,
        advice_pending: get(row, 35)?,
    })
}

/// The wallet columns (as `wallet::rows::wallet` at column 0).
fn wallet(row: &rusqlite::Row<'_>) -> Result<crate::WalletRecord, StoreError> {
    use crate::wallet::{WalletOutcome, WalletType};
    Ok(crate::WalletRecord {
        id: get(row, 0)?,
        status: TransactionStatus::parse(&get::<String>(row, 1)?)?,
        store_id: get(row, 2)?,
        terminal_id: get(row, 3)?,
        operator_id: get(row, 4)?,
        client_request_id: get(row, 5)?,
        amount_minor: get(row, 6)?,
        currency: get(row, 7)?,
        business_date: get_date(row, 8)?,
        created_at: get_ts(row, 9)?,
        updated_at: get_ts(row, 10)?,
        wallet_type: WalletType::parse(&get::<String>(row, 11)?)?,
        wallet_operator_id: get(row, 12)?,
        wallet_ref: get(row, 13)?,
        outcome: WalletOutcome {
            account_id: get(row, 14)?,
            display_id: get(row, 15)?,
            operator_name: get(row, 16)?,
            decline_reason: get(row, 18)?,
            operator_response_code: get(row, 19)?,
            operator_reference: get(row, 20)?,
            response_text: get(row, 21)?,
            balance_after_minor: get(row, 22)?,
        },
        funding: get(row, 17)?,
        refunded_minor: get(row, 23)?,
        refund_reserved_minor: get(row, 24)?,
        original_transaction_id: get(row, 25)?,
        pos_reference: get(row, 26)?,
    })
}
