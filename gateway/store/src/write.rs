//! The statements of one write, written once for both backends: functions
//! of [`Statements`], generic over the [`Backend`], run inside the
//! transaction a backend's writer opened. The SQL text is shared (see
//! `crate::sql`).

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Type};

use crate::SqlxResultExt as _;
use crate::backend::{Backend, RowsAffected as _, Statements};
use crate::{BillWrite, CardWrite, NewSafItem, WalletWrite};

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
    /// Runs the statements of a write inside an open transaction and
    /// queues its audit-chain entry in `chain`. The caller appends the chain
    /// entries and commits on `Written`, and rolls back otherwise.
    // One linear sequence of statements; splitting it would only scatter
    // the order in which a write's rows are committed.
    #[allow(clippy::too_many_lines)]
    pub(crate) async fn apply_write(
        conn: &mut DB::Connection,
        request: &crate::WriteRequest,
        chain: &mut Vec<crate::audit::EntryContent>,
    ) -> Result<crate::WriteOutcome, crate::StoreError> {
        use crate::{Change, WriteOutcome};
        let key = &request.key;
        let answer = &request.answer;
        if let Some(taken) = Self::insert_key(
            conn,
            key,
            &answer.fingerprint,
            &answer.response,
            &answer.transaction_id,
            request.created_at,
            request.expires_at,
            false,
        )
        .await?
        {
            return Ok(taken);
        }
        let business_date = match &request.change {
            Change::Create(record) => {
                Self::insert_bill_transaction(conn, record).await?;
                if request.claims_slip {
                    Self::claim_slip(conn, record).await?;
                }
                record.business_date
            }
            Change::Transition(change) => {
                if let Some(mismatch) = Self::transition(conn, change).await? {
                    return Ok(mismatch);
                }
                if change.to == crate::TransactionStatus::Cancelled {
                    sqlx::query(crate::sql::FREE_SLIP)
                        .bind(&change.transaction_id)
                        .execute(&mut *conn)
                        .await
                        .db()?;
                }
                change.business_date
            }
        };
        Self::append_lines_and_event(
            conn,
            request.transaction_id(),
            business_date,
            &request.lines,
            &request.event,
            request.created_at,
            chain,
        )
        .await?;
        Ok(WriteOutcome::Written)
    }

    /// Inserts the `transactions` row every kind of payment starts with.
    pub(crate) async fn insert_transaction(
        conn: &mut DB::Connection,
        row: &TransactionRow<'_>,
    ) -> Result<(), crate::StoreError> {
        sqlx::query(crate::sql::INSERT_TRANSACTION)
            .bind(row.id)
            .bind(row.kind.as_str())
            .bind(row.status.as_str())
            .bind(row.store_id)
            .bind(row.terminal_id)
            .bind(row.operator_id)
            .bind(row.client_request_id)
            .bind(row.partner_id)
            .bind(row.amount_minor)
            .bind(row.currency)
            .bind(row.fee_minor)
            .bind(row.business_date)
            .bind(row.created_at)
            .execute(&mut *conn)
            .await
            .db()?;
        Ok(())
    }

    /// Inserts a bill payment: its `transactions` and `bill_payments` rows.
    pub(crate) async fn insert_bill_transaction(
        conn: &mut DB::Connection,
        record: &crate::TransactionRecord,
    ) -> Result<(), crate::StoreError> {
        use crate::sql;
        Self::insert_transaction(
            conn,
            &TransactionRow {
                id: &record.id,
                kind: record.kind,
                status: record.status,
                store_id: &record.store_id,
                terminal_id: &record.terminal_id,
                operator_id: &record.operator_id,
                client_request_id: &record.client_request_id,
                partner_id: &record.partner_id,
                amount_minor: record.amount_minor,
                currency: &record.currency,
                fee_minor: record.fee_minor,
                business_date: record.business_date,
                created_at: record.created_at,
            },
        )
        .await?;
        let bill = &record.bill;
        sqlx::query(sql::INSERT_BILL)
            .bind(&record.id)
            .bind(&bill.biller_id)
            .bind(&bill.agency_code)
            .bind(&bill.bill_reference)
            .bind(bill.due_date)
            .bind(&bill.period)
            .bind(bill.late)
            .execute(&mut *conn)
            .await
            .db()?;
        Ok(())
    }

    /// Claims a new payment's slip; `SlipAlreadyPaid` (the caller rolls
    /// back) when another live payment holds it. The primary key decides,
    /// so concurrent writers on any instance cannot both win.
    async fn claim_slip(
        conn: &mut DB::Connection,
        record: &crate::TransactionRecord,
    ) -> Result<(), crate::StoreError> {
        let bill = &record.bill;
        let claimed = sqlx::query(crate::sql::CLAIM_SLIP)
            .bind(&bill.biller_id)
            .bind(&bill.bill_reference)
            .bind(&bill.period)
            .bind(record.amount_minor)
            .bind(&record.id)
            .execute(&mut *conn)
            .await
            .db()?
            .rows_affected();
        if claimed == 0 {
            return Err(crate::StoreError::SlipAlreadyPaid {
                biller_id: bill.biller_id.clone(),
                bill_reference: bill.bill_reference.clone(),
                period: bill.period.clone(),
            });
        }
        Ok(())
    }

    /// Applies a guarded status change of a bill payment; the mismatch
    /// (nothing written) when the transaction is not in `change.from`.
    pub(crate) async fn transition(
        conn: &mut DB::Connection,
        change: &crate::StatusChange,
    ) -> Result<Option<crate::WriteOutcome>, crate::StoreError> {
        use crate::sql;
        let updated = sqlx::query(sql::TRANSITION)
            .bind(change.to.as_str())
            .bind(change.at)
            .bind(&change.reason)
            .bind(&change.transaction_id)
            .bind(&change.store_id)
            .bind(change.from.as_str())
            .execute(&mut *conn)
            .await
            .db()?
            .rows_affected();
        if updated > 0 {
            return Ok(None);
        }
        let status: Option<String> = sqlx::query_scalar(sql::SELECT_STATUS)
            .bind(&change.transaction_id)
            .bind(&change.store_id)
            .fetch_optional(&mut *conn)
            .await
            .db()?;
        let current = status
            .as_deref()
            .map(crate::TransactionStatus::parse)
            .transpose()?;
        Ok(Some(crate::WriteOutcome::StatusMismatch { current }))
    }

    /// Inserts an idempotency key. When another request holds the key,
    /// nothing is inserted and that request's answer comes back.
    #[allow(clippy::too_many_arguments)]
    async fn insert_key(
        conn: &mut DB::Connection,
        key: &posgate_core::model::IdempotencyKey,
        fingerprint: &posgate_core::model::RequestFingerprint,
        response: &[u8],
        transaction_id: &str,
        at: chrono::DateTime<chrono::Utc>,
        expires_at: chrono::DateTime<chrono::Utc>,
        pending: bool,
    ) -> Result<Option<crate::WriteOutcome>, crate::StoreError> {
        let inserted = sqlx::query(crate::sql::INSERT_KEY)
            .bind(&key.store_id)
            .bind(&key.terminal_id)
            .bind(&key.client_request_id)
            .bind(&fingerprint.operation)
            .bind(&fingerprint.digest)
            .bind(&fingerprint.field_digests)
            .bind(response)
            .bind(transaction_id)
            .bind(at)
            .bind(expires_at)
            .bind(pending)
            .execute(&mut *conn)
            .await
            .db()?
            .rows_affected();
        if inserted == 0 {
            return Self::key_taken(conn, key).await.map(Some);
        }
        Ok(None)
    }

    /// Applies a card or wallet write's idempotency-key operation; an
    /// answer when the key is another request's (the write stops there).
    pub(crate) async fn apply_key_op(
        conn: &mut DB::Connection,
        key_op: Option<&crate::KeyOp>,
        transaction_id: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<crate::WriteOutcome>, crate::StoreError> {
        use crate::KeyOp;
        use crate::card::sql as card_sql;
        match key_op {
            Some(KeyOp::Claim {
                key,
                fingerprint,
                expires_at,
            }) => {
                if let Some(taken) = Self::insert_key(
                    conn,
                    key,
                    fingerprint,
                    &[],
                    transaction_id,
                    at,
                    *expires_at,
                    true,
                )
                .await?
                {
                    return Ok(Some(taken));
                }
            }
            Some(KeyOp::ClaimAnswered {
                key,
                answer,
                expires_at,
            }) => {
                if let Some(taken) = Self::insert_key(
                    conn,
                    key,
                    &answer.fingerprint,
                    &answer.response,
                    transaction_id,
                    at,
                    *expires_at,
                    false,
                )
                .await?
                {
                    return Ok(Some(taken));
                }
            }
            Some(KeyOp::Answer { key, response }) => {
                let updated = sqlx::query(card_sql::ANSWER_KEY)
                    .bind(response)
                    .bind(false)
                    .bind(&key.store_id)
                    .bind(&key.terminal_id)
                    .bind(&key.client_request_id)
                    .bind(true)
                    .execute(&mut *conn)
                    .await
                    .db()?
                    .rows_affected();
                if updated == 0 {
                    return Self::key_taken(conn, key).await.map(Some);
                }
            }
            Some(KeyOp::Release { key }) => {
                sqlx::query(card_sql::RELEASE_KEY)
                    .bind(&key.store_id)
                    .bind(&key.terminal_id)
                    .bind(&key.client_request_id)
                    .bind(true)
                    .execute(&mut *conn)
                    .await
                    .db()?;
            }
            None => {}
        }
        Ok(None)
    }

    /// Moves a refund's reservation on its original (card or wallet:
    /// `adjust_sql` / `remaining_sql`); `RefundExceeds` when the original
    /// has less left than the refund asks.
    pub(crate) async fn adjust_refund(
        conn: &mut DB::Connection,
        refund: &crate::RefundAdjust,
        adjust_sql: &'static str,
        remaining_sql: &'static str,
    ) -> Result<Option<crate::WriteOutcome>, crate::StoreError> {
        let updated = sqlx::query(adjust_sql)
            .bind(refund.reserve_delta)
            .bind(refund.refunded_delta)
            .bind(&refund.original_id)
            .execute(&mut *conn)
            .await
            .db()?
            .rows_affected();
        if updated > 0 {
            return Ok(None);
        }
        let remaining: Option<i64> = sqlx::query_scalar(remaining_sql)
            .bind(&refund.original_id)
            .fetch_optional(&mut *conn)
            .await
            .db()?;
        Ok(Some(crate::WriteOutcome::RefundExceeds {
            remaining: remaining.unwrap_or(0),
        }))
    }

    /// Queues a write's store-and-forward items and acknowledges the ones it settled.
    async fn queue_saf(
        conn: &mut DB::Connection,
        transaction_id: &str,
        enqueue: &[crate::NewSafItem],
        acked: &[i64],
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), crate::StoreError> {
        use crate::card::sql as card_sql;
        for item in enqueue {
            sqlx::query(card_sql::INSERT_SAF)
                .bind(transaction_id)
                .bind(&item.link_id)
                .bind(item.kind.as_str())
                .bind(item.amount_minor)
                .bind(&item.currency)
                .bind(item.next_attempt_at)
                .bind(at)
                .execute(&mut *conn)
                .await
                .db()?;
        }
        for id in acked {
            sqlx::query(card_sql::ACK_SAF)
                .bind(at)
                .bind(id)
                .execute(&mut *conn)
                .await
                .db()?;
        }
        Ok(())
    }

    /// The answer under a key another request holds.
    async fn key_taken(
        conn: &mut DB::Connection,
        key: &posgate_core::model::IdempotencyKey,
    ) -> Result<crate::WriteOutcome, crate::StoreError> {
        let row = sqlx::query(crate::sql::SELECT_KEY)
            .bind(&key.store_id)
            .bind(&key.terminal_id)
            .bind(&key.client_request_id)
            .fetch_optional(&mut *conn)
            .await
            .db()?;
        match row {
            Some(row) => Ok(crate::WriteOutcome::KeyTaken(crate::rows::answer(&row)?)),
            None => Err(crate::StoreError::Invariant(
                "answer for a key nobody claimed".to_owned(),
            )),
        }
    }

    /// Appends a change's settlement lines (re-dated to the next open
    /// business date, as adjustments, when `business_date` is closed)
    /// and its event, and queues the event's audit-chain entry in
    /// `chain`. Every event goes through here, so none escapes the
    /// chain. The caller appends the queued entries (`append_chain_entries`)
    /// as the last statements of the database transaction, so the chain
    /// head's lock is held only until the COMMIT that follows.
    async fn append_lines_and_event(
        conn: &mut DB::Connection,
        transaction_id: &str,
        business_date: chrono::NaiveDate,
        lines: &[crate::SettlementLine],
        event: &crate::Event,
        at: chrono::DateTime<chrono::Utc>,
        chain: &mut Vec<crate::audit::EntryContent>,
    ) -> Result<(), crate::StoreError> {
        use crate::sql;
        // Auditors read every event as an `audit.proto` type: one
        // without a mapping would reach them as UNSPECIFIED.
        if !posgate_core::model::event::is_stored_event_type(&event.event_type) {
            return Err(crate::StoreError::Invariant(format!(
                "event type {:?} has no audit.proto mapping (model::event::STORED_EVENT_TYPES)",
                event.event_type
            )));
        }
        // A closed business day never changes: late lines go to the next open date.
        let (line_date, moved) = if lines.is_empty() {
            (business_date, false)
        } else {
            Self::open_business_date(&mut *conn, business_date).await?
        };
        if !lines.is_empty() {
            let statement = sql::insert_lines(lines.len());
            let mut query = sqlx::query(&statement)
                .bind(transaction_id)
                .bind(line_date)
                .bind(at);
            for (order, line) in (0_i64..).zip(lines) {
                let kind = if moved {
                    crate::clearing::adjustment_kind(&line.kind)
                } else {
                    line.kind.clone()
                };
                query = query
                    .bind(order)
                    .bind(&line.party)
                    .bind(kind)
                    .bind(&line.currency)
                    .bind(line.amount_minor);
            }
            let inserted = query.execute(&mut *conn).await.db()?.rows_affected();
            // The lines take their facts from the transaction's row; none
            // inserted means the write's transaction row is missing.
            if inserted != lines.len() as u64 {
                return Err(crate::StoreError::Invariant(format!(
                    "{inserted} of {} settlement lines of {transaction_id} were written",
                    lines.len()
                )));
            }
        }
        // `audit.proto`: the first event of every transaction is
        // RECEIVED. A write that creates a transaction (its event comes
        // from no state) and records another first state (a bill PAID, a
        // card request SENT) gets its RECEIVED in the same statement.
        let received = event.from_status.is_none() && event.event_type != "received";
        let accepted = crate::TransactionStatus::InProgress;
        let event = &crate::Event {
            from_status: if received {
                Some(accepted)
            } else {
                event.from_status
            },
            ..event.clone()
        };
        let mut insert = sqlx::query(if received {
            sql::INSERT_RECEIVED_AND_EVENT
        } else {
            sql::INSERT_EVENT
        })
        .bind(transaction_id)
        .bind(&event.event_type)
        .bind(event.from_status.map(crate::TransactionStatus::as_str))
        .bind(event.to_status.as_str())
        .bind(&event.actor)
        .bind(&event.detail)
        .bind(at);
        if received {
            insert = insert.bind(accepted.as_str());
        }
        insert.execute(&mut *conn).await.db()?;
        if received {
            chain.push(crate::audit::EntryContent {
                entry_type: crate::audit::EntryType::Event,
                transaction_id: Some(transaction_id.to_owned()),
                event_type: "received".to_owned(),
                from_status: None,
                to_status: Some(accepted.as_str().to_owned()),
                actor: event.actor.clone(),
                detail: "request accepted".to_owned(),
                occurred_at: crate::audit::canonical_time(at),
            });
        }
        let entry = crate::audit::EntryContent {
            entry_type: crate::audit::EntryType::Event,
            transaction_id: Some(transaction_id.to_owned()),
            event_type: event.event_type.clone(),
            from_status: event.from_status.map(|status| status.as_str().to_owned()),
            to_status: Some(event.to_status.as_str().to_owned()),
            actor: event.actor.clone(),
            detail: event.detail.clone(),
            occurred_at: crate::audit::canonical_time(at),
        };
        chain.push(entry);
        Ok(())
    }
    /// Moves a card or wallet transaction `from` → `to`, guarded: when it is
    /// not in `from` nothing is written and the answer is the
    /// `StatusMismatch` naming its current state.
    pub(crate) async fn move_status(
        conn: &mut DB::Connection,
        transaction_id: &str,
        from: crate::TransactionStatus,
        to: crate::TransactionStatus,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<crate::WriteOutcome>, crate::StoreError> {
        use crate::card::sql as card_sql;
        let updated = sqlx::query(card_sql::UPDATE_STATUS)
            .bind(to.as_str())
            .bind(at)
            .bind(transaction_id)
            .bind(from.as_str())
            .execute(&mut *conn)
            .await
            .db()?
            .rows_affected();
        if updated > 0 {
            return Ok(None);
        }
        let status: Option<String> = sqlx::query_scalar(card_sql::SELECT_STATUS)
            .bind(transaction_id)
            .fetch_optional(&mut *conn)
            .await
            .db()?;
        let current = status
            .as_deref()
            .map(crate::TransactionStatus::parse)
            .transpose()?;
        Ok(Some(crate::WriteOutcome::StatusMismatch { current }))
    }

    /// Defines `async fn apply_card_write(conn: &mut $connection, write)`, the
    /// statements of one [`CardWrite`](super::CardWrite) inside an open
    /// transaction. The caller commits on `Written` and rolls back otherwise.
    #[allow(clippy::too_many_lines)]
    pub(crate) async fn apply_card_write(
        conn: &mut DB::Connection,
        write: &crate::CardWrite,
        chain: &mut Vec<crate::audit::EntryContent>,
    ) -> Result<crate::WriteOutcome, crate::StoreError> {
        use crate::card::sql as card_sql;
        use crate::{CardChange, WriteOutcome};
        if let Some(taken) =
            Self::apply_key_op(conn, write.key.as_ref(), &write.transaction_id, write.at).await?
        {
            return Ok(taken);
        }
        match &write.change {
            CardChange::Create(record) => {
                Self::insert_transaction(
                    conn,
                    &TransactionRow {
                        id: &record.id,
                        kind: crate::TransactionKind::CardPayment,
                        status: record.status,
                        store_id: &record.store_id,
                        terminal_id: &record.terminal_id,
                        operator_id: &record.operator_id,
                        client_request_id: &record.client_request_id,
                        partner_id: &record.link_id,
                        amount_minor: record.amount_minor,
                        currency: &record.currency,
                        fee_minor: 0,
                        business_date: record.business_date,
                        created_at: record.created_at,
                    },
                )
                .await?;
                sqlx::query(card_sql::INSERT_CARD)
                    .bind(&record.id)
                    .bind(record.card_type.as_str())
                    .bind(record.route.as_str())
                    .bind(&record.masked_pan)
                    .bind(&record.pan_fingerprint)
                    .bind(&record.card_brand)
                    .bind(&record.entry_mode)
                    .bind(&record.cardholder_verification)
                    .bind(&record.merchant_id)
                    .bind(&record.bank_terminal_id)
                    .bind(&record.stan)
                    .bind(&record.rrn)
                    .bind(record.transmitted_at)
                    .bind(&record.request_mti)
                    .bind(&record.response_code)
                    .bind(&record.approval_code)
                    .bind(record.captured_minor)
                    .bind(record.refunded_minor)
                    .bind(record.refund_reserved_minor)
                    .bind(record.loyalty_points)
                    .bind(record.loyalty_balance)
                    .bind(&record.original_transaction_id)
                    .bind(&record.pos_reference)
                    .bind(record.authorization_expires_at)
                    .bind(record.advice_pending)
                    .execute(&mut *conn)
                    .await
                    .db()?;
            }
            CardChange::Update(update) => {
                if let (Some(from), Some(to)) = (update.from, update.to)
                    && let Some(mismatch) =
                        Self::move_status(conn, &update.transaction_id, from, to, write.at).await?
                {
                    return Ok(mismatch);
                }
                let (loyalty_set, points, balance) = match update.loyalty {
                    Some((points, balance)) => (true, Some(points), balance),
                    None => (false, None, None),
                };
                let (expiry_set, expiry) = match update.authorization_expires_at {
                    Some(expiry) => (true, expiry),
                    None => (false, None),
                };
                sqlx::query(card_sql::UPDATE_CARD)
                    .bind(&update.response_code)
                    .bind(&update.approval_code)
                    .bind(update.captured_minor)
                    .bind(loyalty_set)
                    .bind(points)
                    .bind(balance)
                    .bind(expiry_set)
                    .bind(expiry)
                    .bind(update.advice_pending)
                    .bind(&update.transaction_id)
                    .execute(&mut *conn)
                    .await
                    .db()?;
            }
        }
        if let Some(refund) = &write.refund
            && let Some(exceeds) = Self::adjust_refund(
                conn,
                refund,
                card_sql::ADJUST_REFUND,
                card_sql::SELECT_REMAINING,
            )
            .await?
        {
            return Ok(exceeds);
        }
        Self::queue_and_append(conn, WriteTail::from(write), chain).await?;
        Ok(WriteOutcome::Written)
    }
    /// The date a write's lines take (the first open date on or after
    /// `date`) and whether they moved. The backend's
    /// [`WRITE_GUARD`](Backend::WRITE_GUARD) runs first (PostgreSQL: the
    /// shared advisory lock that orders writes against a close).
    async fn open_business_date(
        conn: &mut DB::Connection,
        date: chrono::NaiveDate,
    ) -> Result<(chrono::NaiveDate, bool), crate::StoreError> {
        if let Some(guard) = DB::WRITE_GUARD {
            sqlx::query(guard)
                .bind(crate::clearing::CLOSE_LOCK_KEY)
                .execute(&mut *conn)
                .await
                .db()?;
        }
        let closed: Vec<chrono::NaiveDate> =
            sqlx::query_scalar(crate::clearing::sql::SELECT_CLOSED_FROM)
                .bind(date)
                .fetch_all(&mut *conn)
                .await
                .db()?;
        let open = crate::clearing::next_open_date(date, &closed);
        Ok((open, open != date))
    }

    /// The last statements of a card, wallet or bill write: queue its
    /// store-and-forward items, acknowledge the ones it settled, append its
    /// lines and event.
    pub(crate) async fn queue_and_append(
        conn: &mut DB::Connection,
        write: WriteTail<'_>,
        chain: &mut Vec<crate::audit::EntryContent>,
    ) -> Result<(), crate::StoreError> {
        Self::queue_saf(
            conn,
            write.transaction_id,
            write.enqueue,
            write.acked,
            write.at,
        )
        .await?;
        Self::append_lines_and_event(
            conn,
            write.transaction_id,
            write.business_date,
            write.lines,
            write.event,
            write.at,
            chain,
        )
        .await
    }

    /// Card records a query selects by one instant (`$1`) and a limit (`$2`).
    async fn cards_by_time(
        pool: &sqlx::Pool<DB>,
        sql: &'static str,
        at: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<crate::CardRecord>, crate::StoreError> {
        let rows = sqlx::query(sql)
            .bind(at)
            .bind(limit)
            .fetch_all(pool)
            .await
            .db()?;
        rows.iter()
            .map(|row| crate::card::rows::card(row, 0))
            .collect()
    }

    /// [`Reads::answer`](crate::Reads::answer).
    pub(crate) async fn answer(
        pool: &sqlx::Pool<DB>,
        key: &posgate_core::model::IdempotencyKey,
    ) -> Result<Option<posgate_core::model::StoredAnswer>, crate::StoreError> {
        let row = sqlx::query(crate::sql::SELECT_KEY)
            .bind(&key.store_id)
            .bind(&key.terminal_id)
            .bind(&key.client_request_id)
            .fetch_optional(pool)
            .await
            .db()?;
        row.as_ref().map(crate::rows::answer).transpose()
    }

    /// [`Reads::transaction`](crate::Reads::transaction).
    pub(crate) async fn transaction(
        pool: &sqlx::Pool<DB>,
        store_id: &str,
        id: &str,
    ) -> Result<Option<crate::TransactionRecord>, crate::StoreError> {
        let row = sqlx::query(crate::sql::SELECT_TRANSACTION)
            .bind(id)
            .bind(store_id)
            .fetch_optional(pool)
            .await
            .db()?;
        row.as_ref().map(crate::rows::transaction).transpose()
    }

    /// [`Reads::settlement_lines`](crate::Reads::settlement_lines).
    pub(crate) async fn settlement_lines(
        pool: &sqlx::Pool<DB>,
        transaction_id: &str,
    ) -> Result<Vec<crate::SettlementLine>, crate::StoreError> {
        let rows = sqlx::query(crate::sql::SELECT_LINES)
            .bind(transaction_id)
            .fetch_all(pool)
            .await
            .db()?;
        rows.iter().map(crate::rows::line).collect()
    }

    /// [`Reads::events`](crate::Reads::events).
    pub(crate) async fn events(
        pool: &sqlx::Pool<DB>,
        transaction_id: &str,
    ) -> Result<Vec<crate::Event>, crate::StoreError> {
        let rows = sqlx::query(crate::sql::SELECT_EVENTS)
            .bind(transaction_id)
            .fetch_all(pool)
            .await
            .db()?;
        rows.iter().map(crate::rows::event).collect()
    }

    /// [`Reads::purge_expired_keys`](crate::Reads::purge_expired_keys).
    pub(crate) async fn purge_expired_keys(
        pool: &sqlx::Pool<DB>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, crate::StoreError> {
        Ok(sqlx::query(crate::sql::PURGE_KEYS)
            .bind(now)
            .execute(pool)
            .await
            .db()?
            .rows_affected())
    }

    /// [`Reads::row_counts`](crate::Reads::row_counts).
    pub(crate) async fn row_counts(
        pool: &sqlx::Pool<DB>,
    ) -> Result<crate::RowCounts, crate::StoreError> {
        let (idempotency_keys, transactions, bill_payments, settlement_lines, events) =
            sqlx::query_as(crate::sql::ROW_COUNTS)
                .fetch_one(pool)
                .await
                .db()?;
        Ok(crate::RowCounts {
            idempotency_keys,
            transactions,
            bill_payments,
            settlement_lines,
            events,
        })
    }

    /// [`Reads::card_transaction`](crate::Reads::card_transaction).
    pub(crate) async fn card_transaction(
        pool: &sqlx::Pool<DB>,
        id: &str,
    ) -> Result<Option<crate::CardRecord>, crate::StoreError> {
        let row = sqlx::query(&crate::card::sql::SELECT_CARD)
            .bind(id)
            .fetch_optional(pool)
            .await
            .db()?;
        row.as_ref()
            .map(|row| crate::card::rows::card(row, 0))
            .transpose()
    }

    /// [`Reads::card_by_request`](crate::Reads::card_by_request).
    pub(crate) async fn card_by_request(
        pool: &sqlx::Pool<DB>,
        key: &posgate_core::model::IdempotencyKey,
    ) -> Result<Option<crate::CardRecord>, crate::StoreError> {
        let row = sqlx::query(&crate::card::sql::SELECT_CARD_BY_REQUEST)
            .bind(&key.store_id)
            .bind(&key.terminal_id)
            .bind(&key.client_request_id)
            .fetch_optional(pool)
            .await
            .db()?;
        row.as_ref()
            .map(|row| crate::card::rows::card(row, 0))
            .transpose()
    }

    /// [`Reads::refund_ids`](crate::Reads::refund_ids).
    pub(crate) async fn refund_ids(
        pool: &sqlx::Pool<DB>,
        original_id: &str,
    ) -> Result<Vec<String>, crate::StoreError> {
        sqlx::query_scalar(crate::card::sql::SELECT_REFUND_IDS)
            .bind(original_id)
            .fetch_all(pool)
            .await
            .db()
    }

    /// [`Reads::stale_in_progress`](crate::Reads::stale_in_progress).
    pub(crate) async fn stale_in_progress(
        pool: &sqlx::Pool<DB>,
        before: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<crate::CardRecord>, crate::StoreError> {
        Self::cards_by_time(pool, &crate::card::sql::SELECT_STALE, before, limit).await
    }

    /// [`Reads::expired_authorizations`](crate::Reads::expired_authorizations).
    pub(crate) async fn expired_authorizations(
        pool: &sqlx::Pool<DB>,
        now: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<crate::CardRecord>, crate::StoreError> {
        Self::cards_by_time(
            pool,
            &crate::card::sql::SELECT_EXPIRED_AUTHORIZATIONS,
            now,
            limit,
        )
        .await
    }

    /// [`Reads::saf_due`](crate::Reads::saf_due).
    pub(crate) async fn saf_due(
        pool: &sqlx::Pool<DB>,
        now: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<crate::SafItem>, crate::StoreError> {
        let rows = sqlx::query(&crate::card::sql::SELECT_SAF_DUE)
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await
            .db()?;
        rows.iter().map(crate::card::rows::saf_item).collect()
    }

    /// [`Reads::saf_retry`](crate::Reads::saf_retry).
    pub(crate) async fn saf_retry(
        pool: &sqlx::Pool<DB>,
        id: i64,
        next_attempt_at: chrono::DateTime<chrono::Utc>,
        error: &str,
    ) -> Result<(), crate::StoreError> {
        sqlx::query(crate::card::sql::RETRY_SAF)
            .bind(next_attempt_at)
            .bind(error)
            .bind(id)
            .execute(pool)
            .await
            .db()?;
        Ok(())
    }

    /// [`Reads::saf_open`](crate::Reads::saf_open).
    pub(crate) async fn saf_open(pool: &sqlx::Pool<DB>) -> Result<i64, crate::StoreError> {
        sqlx::query_scalar(crate::card::sql::COUNT_SAF_OPEN)
            .fetch_one(pool)
            .await
            .db()
    }
}

/// The `transactions` row of a new payment, whatever its kind.
pub(crate) struct TransactionRow<'a> {
    pub id: &'a str,
    pub kind: crate::TransactionKind,
    pub status: crate::TransactionStatus,
    pub store_id: &'a str,
    pub terminal_id: &'a str,
    pub operator_id: &'a str,
    pub client_request_id: &'a str,
    /// The partner reference: biller id, bank link id, or the wallet operator's party.
    pub partner_id: &'a str,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub fee_minor: i64,
    pub business_date: chrono::NaiveDate,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The parts of a card, wallet or bill write that
/// [`Statements::queue_and_append`] writes last.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriteTail<'a> {
    pub transaction_id: &'a str,
    pub enqueue: &'a [NewSafItem],
    pub acked: &'a [i64],
    pub at: chrono::DateTime<chrono::Utc>,
    pub business_date: chrono::NaiveDate,
    pub lines: &'a [crate::SettlementLine],
    pub event: &'a crate::Event,
}

impl<'a> From<&'a CardWrite> for WriteTail<'a> {
    fn from(write: &'a CardWrite) -> Self {
        Self {
            transaction_id: &write.transaction_id,
            enqueue: &write.enqueue,
            acked: &write.acked,
            at: write.at,
            business_date: write.business_date,
            lines: &write.lines,
            event: &write.event,
        }
    }
}

impl<'a> From<&'a WalletWrite> for WriteTail<'a> {
    fn from(write: &'a WalletWrite) -> Self {
        Self {
            transaction_id: &write.transaction_id,
            enqueue: &write.enqueue,
            acked: &write.acked,
            at: write.at,
            business_date: write.business_date,
            lines: &write.lines,
            event: &write.event,
        }
    }
}

impl<'a> From<&'a BillWrite> for WriteTail<'a> {
    fn from(write: &'a BillWrite) -> Self {
        Self {
            transaction_id: &write.transaction_id,
            enqueue: &write.enqueue,
            acked: &write.acked,
            at: write.at,
            business_date: write.business_date,
            lines: &write.lines,
            event: &write.event,
        }
    }
}
