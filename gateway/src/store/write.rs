//! The statements of one [`WriteRequest`](super::WriteRequest), written once
//! for both backends. sqlx's connection types differ per database, so the
//! sequence is a macro expanded inside each backend's transaction; the SQL
//! text is shared (see `super::sql`).

/// Defines `async fn apply_write(conn: &mut $connection, request)`, which
/// runs the statements of a write inside an open transaction. The caller
/// commits on `Written` and rolls back otherwise.
macro_rules! define_apply_write {
    ($connection:ty) => {
        // One linear sequence of statements; splitting it would only scatter
        // the order in which a write's rows are committed.
        #[allow(clippy::too_many_lines)]
        async fn apply_write(
            conn: &mut $connection,
            request: &$crate::store::WriteRequest,
        ) -> Result<$crate::store::WriteOutcome, $crate::store::StoreError> {
            use $crate::store::{Change, WriteOutcome, rows, sql};
            let key = &request.key;
            let answer = &request.answer;
            let inserted = sqlx::query(sql::INSERT_KEY)
                .bind(&key.store_id)
                .bind(&key.terminal_id)
                .bind(&key.client_request_id)
                .bind(&answer.fingerprint.operation)
                .bind(&answer.fingerprint.digest)
                .bind(&answer.fingerprint.field_digests)
                .bind(&answer.response)
                .bind(&answer.transaction_id)
                .bind(request.created_at)
                .bind(request.expires_at)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            if inserted == 0 {
                let row = sqlx::query(sql::SELECT_KEY)
                    .bind(&key.store_id)
                    .bind(&key.terminal_id)
                    .bind(&key.client_request_id)
                    .fetch_one(&mut *conn)
                    .await?;
                return Ok(WriteOutcome::KeyTaken(rows::answer(&row)?));
            }
            let business_date = match &request.change {
                Change::Create(record) => {
                    sqlx::query(sql::INSERT_TRANSACTION)
                        .bind(&record.id)
                        .bind(record.kind.as_str())
                        .bind(record.status.as_str())
                        .bind(&record.store_id)
                        .bind(&record.terminal_id)
                        .bind(&record.operator_id)
                        .bind(&record.client_request_id)
                        .bind(&record.partner_id)
                        .bind(record.amount_minor)
                        .bind(&record.currency)
                        .bind(record.fee_minor)
                        .bind(record.business_date)
                        .bind(record.created_at)
                        .execute(&mut *conn)
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
                        .await?;
                    record.business_date
                }
                Change::Transition(change) => {
                    let updated = sqlx::query(sql::TRANSITION)
                        .bind(change.to.as_str())
                        .bind(change.at)
                        .bind(&change.reason)
                        .bind(&change.transaction_id)
                        .bind(&change.store_id)
                        .bind(change.from.as_str())
                        .execute(&mut *conn)
                        .await?
                        .rows_affected();
                    if updated == 0 {
                        let status: Option<String> = sqlx::query_scalar(sql::SELECT_STATUS)
                            .bind(&change.transaction_id)
                            .bind(&change.store_id)
                            .fetch_optional(&mut *conn)
                            .await?;
                        let current = status
                            .as_deref()
                            .map($crate::store::TransactionStatus::parse)
                            .transpose()?;
                        return Ok(WriteOutcome::StatusMismatch { current });
                    }
                    change.business_date
                }
            };
            for line in &request.lines {
                sqlx::query(sql::INSERT_LINE)
                    .bind(request.transaction_id())
                    .bind(business_date)
                    .bind(&line.party)
                    .bind(&line.kind)
                    .bind(&line.currency)
                    .bind(line.amount_minor)
                    .bind(request.created_at)
                    .execute(&mut *conn)
                    .await?;
            }
            let event = &request.event;
            sqlx::query(sql::INSERT_EVENT)
                .bind(request.transaction_id())
                .bind(&event.event_type)
                .bind(
                    event
                        .from_status
                        .map($crate::store::TransactionStatus::as_str),
                )
                .bind(event.to_status.as_str())
                .bind(&event.actor)
                .bind(&event.detail)
                .bind(request.created_at)
                .execute(&mut *conn)
                .await?;
            Ok(WriteOutcome::Written)
        }
    };
}

pub(crate) use define_apply_write;
