//! The SQL side of [`posgate_core::ports::db::card`].

pub(crate) use posgate_core::model::card::*;
pub(crate) use posgate_core::ports::db::card::*;

/// SQL of card writes and reads, shared by both backends.
pub(super) mod sql {
    use std::sync::LazyLock;

    /// The columns [`super::rows::card`] decodes, from `transactions t` joined
    /// with `card_payments c`.
    pub const CARD_COLUMNS: &str = "t.id, t.status, t.store_id, t.terminal_id, t.operator_id, t.client_request_id, \
             t.partner_id, t.amount_minor, t.currency, t.business_date, t.created_at, t.updated_at, \
             c.card_type, c.route, c.masked_pan, c.pan_fingerprint, c.card_brand, c.entry_mode, \
             c.cardholder_verification, c.merchant_id, c.bank_terminal_id, c.stan, c.rrn, \
             c.transmitted_at, c.request_mti, c.response_code, c.approval_code, c.captured_minor, \
             c.refunded_minor, c.refund_reserved_minor, c.loyalty_points, c.loyalty_balance, \
             c.original_transaction_id, c.pos_reference, c.authorization_expires_at, c.advice_pending";

    pub const ANSWER_KEY: &str = "UPDATE idempotency_keys SET response = $1, pending = $2 \
         WHERE store_id = $3 AND terminal_id = $4 AND client_request_id = $5 AND pending = $6";
    pub const RELEASE_KEY: &str = "DELETE FROM idempotency_keys \
         WHERE store_id = $1 AND terminal_id = $2 AND client_request_id = $3 AND pending = $4";
    pub const INSERT_CARD: &str = "INSERT INTO card_payments (transaction_id, card_type, route, masked_pan, \
         pan_fingerprint, card_brand, entry_mode, cardholder_verification, merchant_id, bank_terminal_id, \
         stan, rrn, transmitted_at, request_mti, response_code, approval_code, captured_minor, refunded_minor, \
         refund_reserved_minor, loyalty_points, loyalty_balance, original_transaction_id, pos_reference, \
         authorization_expires_at, advice_pending) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
         $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)";
    pub const UPDATE_STATUS: &str =
        "UPDATE transactions SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4";
    pub const SELECT_STATUS: &str = "SELECT status FROM transactions WHERE id = $1";
    pub const UPDATE_CARD: &str = "UPDATE card_payments SET \
         response_code = COALESCE($1, response_code), \
         approval_code = COALESCE($2, approval_code), \
         captured_minor = COALESCE($3, captured_minor), \
         loyalty_points = CASE WHEN $4 THEN $5 ELSE loyalty_points END, \
         loyalty_balance = CASE WHEN $4 THEN $6 ELSE loyalty_balance END, \
         authorization_expires_at = CASE WHEN $7 THEN $8 ELSE authorization_expires_at END, \
         advice_pending = COALESCE($9, advice_pending) \
         WHERE transaction_id = $10";
    pub const ADJUST_REFUND: &str = "UPDATE card_payments SET \
         refund_reserved_minor = refund_reserved_minor + $1, refunded_minor = refunded_minor + $2 \
         WHERE transaction_id = $3 AND refunded_minor + refund_reserved_minor + $1 + $2 <= captured_minor";
    pub const SELECT_REMAINING: &str = "SELECT captured_minor - refunded_minor - refund_reserved_minor \
         FROM card_payments WHERE transaction_id = $1";
    pub const INSERT_SAF: &str = "INSERT INTO saf_queue (transaction_id, link_id, kind, amount_minor, \
         currency, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
    pub const ACK_SAF: &str =
        "UPDATE saf_queue SET acked_at = $1 WHERE id = $2 AND acked_at IS NULL";
    /// A failed attempt: counted, rescheduled, and its lease freed.
    pub const RETRY_SAF: &str = "UPDATE saf_queue SET attempts = attempts + 1, next_attempt_at = $1, \
         last_error = $2, lease_owner = NULL, lease_until = NULL WHERE id = $3 AND acked_at IS NULL";
    pub static SELECT_CARD: LazyLock<String> = LazyLock::new(|| {
        [
            "SELECT ",
            CARD_COLUMNS,
            " FROM transactions t JOIN card_payments c ON c.transaction_id = t.id WHERE t.id = $1",
        ]
        .concat()
    });
    pub static SELECT_CARD_BY_REQUEST: LazyLock<String> = LazyLock::new(|| {
        [
            "SELECT ",
            CARD_COLUMNS,
            " FROM transactions t JOIN card_payments c ON c.transaction_id = t.id \
         WHERE t.store_id = $1 AND t.terminal_id = $2 AND t.client_request_id = $3 \
         AND t.kind = 'card_payment' ORDER BY t.created_at DESC, t.id DESC LIMIT 1",
        ]
        .concat()
    });
    pub const SELECT_REFUND_IDS: &str = "SELECT transaction_id FROM card_payments \
         WHERE original_transaction_id = $1 ORDER BY transaction_id";
    pub static SELECT_STALE: LazyLock<String> = LazyLock::new(|| {
        [
            "SELECT ",
            CARD_COLUMNS,
            " FROM transactions t JOIN card_payments c ON c.transaction_id = t.id \
         WHERE t.kind = 'card_payment' AND t.status = 'in_progress' AND t.updated_at < $1 \
         ORDER BY t.updated_at LIMIT $2",
        ]
        .concat()
    });
    pub static SELECT_EXPIRED_AUTHORIZATIONS: LazyLock<String> = LazyLock::new(|| {
        [
            "SELECT ",
            CARD_COLUMNS,
            " FROM transactions t JOIN card_payments c ON c.transaction_id = t.id \
         WHERE t.kind = 'card_payment' AND t.status = 'authorized' \
         AND c.authorization_expires_at < $1 ORDER BY c.authorization_expires_at LIMIT $2",
        ]
        .concat()
    });
    pub static SELECT_SAF_DUE: LazyLock<String> = LazyLock::new(|| {
        [
            "SELECT q.id, q.kind, q.link_id, q.amount_minor, q.currency, q.attempts, q.stan, ",
            CARD_COLUMNS,
            " FROM saf_queue q JOIN transactions t ON t.id = q.transaction_id \
         JOIN card_payments c ON c.transaction_id = t.id \
         WHERE q.acked_at IS NULL AND q.lease_owner = $1 AND q.next_attempt_at <= $2 \
         ORDER BY q.next_attempt_at, q.id LIMIT $3",
        ]
        .concat()
    });
    pub const COUNT_SAF_OPEN: &str = "SELECT count(*) FROM saf_queue WHERE acked_at IS NULL";
    /// Each queue's unacknowledged entries and its oldest one's `created_at`:
    /// the queue is the kind of transaction an entry joins (as the queues'
    /// own `COUNT_SAF_OPEN` statements decide it). SQLite's instants are
    /// RFC 3339 text in UTC with 0, 3, 6 or 9 fraction digits, whose text
    /// order is their time order, so `min` is the oldest on both backends.
    pub const SELECT_SAF_BACKLOG: &str = "\
        SELECT 'card', count(*), min(q.created_at) FROM saf_queue q \
         JOIN card_payments c ON c.transaction_id = q.transaction_id WHERE q.acked_at IS NULL \
        UNION ALL SELECT 'wallet', count(*), min(q.created_at) FROM saf_queue q \
         JOIN wallet_payments w ON w.transaction_id = q.transaction_id WHERE q.acked_at IS NULL \
        UNION ALL SELECT 'bill', count(*), min(q.created_at) FROM saf_queue q \
         JOIN bill_payments b ON b.transaction_id = q.transaction_id WHERE q.acked_at IS NULL";
}

/// Row decoding of card reads, generic over the backend's row type.
pub(super) mod rows {
    use sqlx::{ColumnIndex, Decode, Row, Type};

    use crate::SqlxResultExt as _;

    use super::{CardRecord, CardRouteKind, CardType, SafItem, SafKind};
    use crate::{StoreError, TransactionStatus};

    /// Decodes the card columns starting at column `at`.
    pub fn card<'r, R>(row: &'r R, at: usize) -> Result<CardRecord, StoreError>
    where
        R: Row,
        usize: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        Option<String>: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
        Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
        bool: Decode<'r, R::Database> + Type<R::Database>,
        chrono::NaiveDate: Decode<'r, R::Database> + Type<R::Database>,
        chrono::DateTime<chrono::Utc>: Decode<'r, R::Database> + Type<R::Database>,
        Option<chrono::DateTime<chrono::Utc>>: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(CardRecord {
            id: row.try_get(at).db()?,
            status: TransactionStatus::parse(&row.try_get::<String, _>(at + 1).db()?)?,
            store_id: row.try_get(at + 2).db()?,
            terminal_id: row.try_get(at + 3).db()?,
            operator_id: row.try_get(at + 4).db()?,
            client_request_id: row.try_get(at + 5).db()?,
            link_id: row.try_get(at + 6).db()?,
            amount_minor: row.try_get(at + 7).db()?,
            currency: row.try_get(at + 8).db()?,
            business_date: row.try_get(at + 9).db()?,
            created_at: row.try_get(at + 10).db()?,
            updated_at: row.try_get(at + 11).db()?,
            card_type: CardType::parse(&row.try_get::<String, _>(at + 12).db()?)?,
            route: CardRouteKind::parse(&row.try_get::<String, _>(at + 13).db()?)?,
            masked_pan: row.try_get(at + 14).db()?,
            pan_fingerprint: row.try_get(at + 15).db()?,
            card_brand: row.try_get(at + 16).db()?,
            entry_mode: row.try_get(at + 17).db()?,
            cardholder_verification: row.try_get(at + 18).db()?,
            merchant_id: row.try_get(at + 19).db()?,
            bank_terminal_id: row.try_get(at + 20).db()?,
            stan: row.try_get(at + 21).db()?,
            rrn: row.try_get(at + 22).db()?,
            transmitted_at: row.try_get(at + 23).db()?,
            request_mti: row.try_get(at + 24).db()?,
            response_code: row.try_get(at + 25).db()?,
            approval_code: row.try_get(at + 26).db()?,
            captured_minor: row.try_get(at + 27).db()?,
            refunded_minor: row.try_get(at + 28).db()?,
            refund_reserved_minor: row.try_get(at + 29).db()?,
            loyalty_points: row.try_get(at + 30).db()?,
            loyalty_balance: row.try_get(at + 31).db()?,
            original_transaction_id: row.try_get(at + 32).db()?,
            pos_reference: row.try_get(at + 33).db()?,
            authorization_expires_at: row.try_get(at + 34).db()?,
            advice_pending: row.try_get(at + 35).db()?,
        })
    }

    /// Decodes a queue row: seven queue columns, then the card columns.
    pub fn saf_item<'r, R>(row: &'r R) -> Result<SafItem, StoreError>
    where
        R: Row,
        usize: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        Option<String>: Decode<'r, R::Database> + Type<R::Database>,
        i32: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
        Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
        bool: Decode<'r, R::Database> + Type<R::Database>,
        chrono::NaiveDate: Decode<'r, R::Database> + Type<R::Database>,
        chrono::DateTime<chrono::Utc>: Decode<'r, R::Database> + Type<R::Database>,
        Option<chrono::DateTime<chrono::Utc>>: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(SafItem {
            id: row.try_get(0).db()?,
            kind: SafKind::parse(&row.try_get::<String, _>(1).db()?)?,
            link_id: row.try_get(2).db()?,
            amount_minor: row.try_get(3).db()?,
            currency: row.try_get(4).db()?,
            attempts: row.try_get(5).db()?,
            stan: row.try_get(6).db()?,
            transaction: card(row, 7)?,
        })
    }
}
