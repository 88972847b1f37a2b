//! The SQLite backend's writer: one OS thread owning a rusqlite connection.
//! It takes every write waiting on its queue (up to [`MAX_BATCH`]), applies
//! each in its own savepoint inside one `BEGIN IMMEDIATE` transaction,
//! commits once (one fsync for the batch) and answers every caller. Every
//! statement is a cached prepared statement run on this thread: no hand-off
//! per statement, as sqlx-sqlite's worker thread needed.
//!
//! The statements are the synchronous twins of the generic sqlx ones
//! (`write.rs`, `card`, `wallet`, `bill_online`, `audit`), on the same SQL
//! text. The audit chain's head is read once per batch; each written job's
//! entries are hashed in memory from it ([`entry_hash`](crate::audit::entry_hash))
//! and inserted, and the head row is written once before the commit.

use rusqlite::{Connection, ToSql};
use tokio::sync::{mpsc, oneshot};

use crate::audit::EntryContent;
use crate::sqlite_conn::{Date, Ts, date_opt, execute, get, query_all, query_optional, ts_opt};
use crate::{
    BillWrite, CardWrite, Change, KeyOp, StoreError, TransactionStatus, WalletWrite, WriteOutcome,
    WriteRequest,
};

/// Most writes committed in one transaction. Bounds the latency one batch
/// adds and the work lost to one failed commit.
pub(crate) const MAX_BATCH: usize = 256;

/// The writer connection's page cache, in KiB.
const WRITER_CACHE_KIB: u32 = 65_536;

/// The answer channel of one job.
pub(crate) type Reply = oneshot::Sender<Result<Done, StoreError>>;

/// One write for the writer thread.
#[derive(Debug)]
pub(crate) enum Job {
    Write(WriteRequest),
    Card(CardWrite),
    /// An audit-read entry of the audit chain.
    AuditRead(EntryContent),
    Wallet(WalletWrite),
    Bill(BillWrite),
}

/// What the writer did with one job.
#[derive(Debug)]
pub(crate) enum Done {
    Write(WriteOutcome),
    /// The chain sequence of an appended audit-read entry.
    Appended(i64),
}

/// The audit chain's head as the batch has moved it so far.
#[derive(Debug, Clone)]
struct Head {
    sequence: i64,
    hash: Vec<u8>,
}

/// Writes the chain head after a batch's entries.
const SET_HEAD: &str = "UPDATE audit_head SET sequence = $1, head_hash = $2 WHERE id = 1";

/// One chain entry (the multi-row insert's text with one row).
static INSERT_ENTRY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{}VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        crate::audit::sql::INSERT_ENTRIES
    )
});

/// The writer thread's loop: waits for a job, takes every other job waiting
/// (up to [`MAX_BATCH`]), writes them in one transaction and answers them.
/// Ends when every sender is gone.
pub(crate) fn run(
    conn: &Connection,
    mut queue: mpsc::Receiver<(Job, Reply)>,
    counters: &posgate_core::ports::db::WriteCounters,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        counters.batch(batch.len());
        let started = std::time::Instant::now();
        let written = write_batch(conn, &batch);
        crate::metrics::record_batch(
            crate::metrics::Backend::Sqlite,
            batch.len(),
            started.elapsed(),
        );
        match written {
            Ok(outcomes) => {
                for ((_, reply), outcome) in batch.drain(..).zip(outcomes) {
                    // A caller that went away (cancelled request) needs no answer.
                    let _ = reply.send(outcome);
                }
            }
            Err(error) => {
                tracing::error!(%error, writes = batch.len(), "sqlite batch commit failed");
                let message = error.to_string();
                // A busy or locked database (another process holding the
                // write lock past the busy timeout) is worth a retry with the
                // same key; anything else is not.
                let busy = matches!(error, StoreError::Unavailable(_));
                for (_, reply) in batch.drain(..) {
                    let failed = format!("batch commit failed: {message}");
                    let _ = reply.send(Err(if busy {
                        StoreError::Unavailable(failed.into())
                    } else {
                        StoreError::Corrupt(failed)
                    }));
                }
            }
        }
    }
}

/// Runs a statement that needs no arguments (transaction control).
fn control(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    execute(conn, sql, &[]).map(|_| ())
}

/// Applies a batch in one transaction. Each write's outcome is its own; the
/// whole batch fails only if the transaction itself cannot begin or commit.
fn write_batch(
    conn: &Connection,
    batch: &[(Job, Reply)],
) -> Result<Vec<Result<Done, StoreError>>, StoreError> {
    control(conn, "BEGIN IMMEDIATE")?;
    let result = (|| {
        let start = query_optional(conn, crate::audit::sql::SELECT_HEAD, &[], |row| {
            Ok(Head {
                sequence: get(row, 0)?,
                hash: get(row, 1)?,
            })
        })?
        .ok_or_else(|| StoreError::Corrupt("the audit chain has no head row".to_owned()))?;
        let mut head = start.clone();
        // First the whole batch under one savepoint, no savepoint per write:
        // a savepoint makes SQLite copy every page a write touches into its
        // sub-journal, about a tenth of a PayBill's instructions. Only when
        // a write is refused or fails does the batch go back and run again
        // with a savepoint per write, so that write alone leaves nothing.
        control(conn, "SAVEPOINT posgate_batch")?;
        let outcomes = if let Some(outcomes) = write_together(conn, batch, &mut head) {
            outcomes
        } else {
            control(conn, "ROLLBACK TO posgate_batch")?;
            head = start.clone();
            batch
                .iter()
                .map(|(job, _)| write_one(conn, job, &mut head))
                .collect()
        };
        control(conn, "RELEASE posgate_batch")?;
        if head.sequence != start.sequence {
            execute(conn, SET_HEAD, &[&head.sequence, &head.hash])?;
        }
        control(conn, "COMMIT")?;
        Ok(outcomes)
    })();
    if result.is_err() && !conn.is_autocommit() {
        let _ = control(conn, "ROLLBACK");
    }
    result
}

/// Every write of the batch, none in a savepoint of its own; `None` (the
/// caller rolls the batch back) as soon as one is refused or fails after it
/// may have changed something. A write refused by its own checks, before
/// any statement, keeps its outcome.
fn write_together(
    conn: &Connection,
    batch: &[(Job, Reply)],
    head: &mut Head,
) -> Option<Vec<Result<Done, StoreError>>> {
    let mut outcomes = Vec::with_capacity(batch.len());
    for (job, _) in batch {
        if let Err(error) = check(job) {
            outcomes.push(Err(error));
            continue;
        }
        match apply(conn, job, head) {
            Ok(done @ (Done::Write(WriteOutcome::Written) | Done::Appended(_))) => {
                outcomes.push(Ok(done));
            }
            _ => return None,
        }
    }
    Some(outcomes)
}

/// The invariants a job must hold before any statement runs.
fn check(job: &Job) -> Result<(), StoreError> {
    match job {
        Job::Write(request) => request.check(),
        Job::Card(write) => write.check(),
        Job::AuditRead(_) => Ok(()),
        Job::Wallet(write) => write.check(),
        Job::Bill(write) => write.check(),
    }
}

/// One write inside the batch's transaction, in a savepoint so that a write
/// that is refused or fails leaves the others (and the chain head) untouched.
fn write_one(conn: &Connection, job: &Job, head: &mut Head) -> Result<Done, StoreError> {
    check(job)?;
    control(conn, "SAVEPOINT posgate_write")?;
    let before = head.clone();
    let outcome = apply(conn, job, head);
    if !matches!(
        outcome,
        Ok(Done::Write(WriteOutcome::Written) | Done::Appended(_))
    ) {
        *head = before;
        control(conn, "ROLLBACK TO posgate_write")?;
    }
    control(conn, "RELEASE posgate_write")?;
    outcome
}

/// A job's statements and, when it wrote, its chain entries after `head`.
fn apply(conn: &Connection, job: &Job, head: &mut Head) -> Result<Done, StoreError> {
    let mut chain = Vec::new();
    match job {
        Job::Write(request) => apply_write(conn, request, &mut chain),
        Job::Card(write) => apply_card_write(conn, write, &mut chain),
        Job::Wallet(write) => apply_wallet_write(conn, write, &mut chain),
        Job::Bill(write) => apply_bill_write(conn, write, &mut chain),
        Job::AuditRead(content) => {
            append_chain(conn, head, std::slice::from_ref(content)).map(Done::Appended)
        }
    }
    .and_then(|done| match done {
        Done::Write(WriteOutcome::Written) => {
            append_chain(conn, head, &chain)?;
            Ok(done)
        }
        other => Ok(other),
    })
}

/// Appends entries to the audit chain after `head` and moves `head` past
/// them; the last sequence. The head row itself is written once per batch.
fn append_chain(
    conn: &Connection,
    head: &mut Head,
    contents: &[EntryContent],
) -> Result<i64, StoreError> {
    for content in contents {
        let sequence = head.sequence + 1;
        let hash = crate::audit::entry_hash(&head.hash, sequence, content).to_vec();
        execute(
            conn,
            &INSERT_ENTRY,
            &[
                &sequence,
                &content.entry_type.as_str(),
                &content.transaction_id.as_deref(),
                &content.event_type,
                &content.from_status.as_deref(),
                &content.to_status.as_deref(),
                &content.actor,
                &content.detail,
                &content.occurred_at,
                &head.hash,
                &hash,
            ],
        )?;
        head.sequence = sequence;
        head.hash = hash;
    }
    Ok(head.sequence)
}

/// A batch-biller write ([`WriteRequest`](crate::WriteRequest)): claim the key with its
/// answer, create (claiming the slip) or move the payment, append lines and event.
fn apply_write(
    conn: &Connection,
    request: &WriteRequest,
    chain: &mut Vec<EntryContent>,
) -> Result<Done, StoreError> {
    let answer = &request.answer;
    if let Some(taken) = insert_key(
        conn,
        &request.key,
        &answer.fingerprint,
        &answer.response,
        &answer.transaction_id,
        request.created_at,
        request.expires_at,
        false,
    )? {
        return Ok(Done::Write(taken));
    }
    let business_date = match &request.change {
        Change::Create(record) => {
            insert_bill_transaction(conn, record)?;
            if request.claims_slip {
                claim_slip(conn, record)?;
            }
            record.business_date
        }
        Change::Transition(change) => {
            if let Some(mismatch) = transition(conn, change)? {
                return Ok(Done::Write(mismatch));
            }
            if change.to == TransactionStatus::Cancelled {
                execute(conn, crate::sql::FREE_SLIP, &[&change.transaction_id])?;
            }
            change.business_date
        }
    };
    append_lines_and_event(
        conn,
        request.transaction_id(),
        business_date,
        &request.lines,
        &request.event,
        request.created_at,
        chain,
    )?;
    Ok(Done::Write(WriteOutcome::Written))
}

/// Inserts the `transactions` row every kind of payment starts with.
fn insert_transaction(
    conn: &Connection,
    row: &crate::write::TransactionRow<'_>,
) -> Result<(), StoreError> {
    execute(
        conn,
        crate::sql::INSERT_TRANSACTION,
        &[
            &row.id,
            &row.kind.as_str(),
            &row.status.as_str(),
            &row.store_id,
            &row.terminal_id,
            &row.operator_id,
            &row.client_request_id,
            &row.partner_id,
            &row.amount_minor,
            &row.currency,
            &row.fee_minor,
            &Date(row.business_date),
            &Ts(row.created_at),
        ],
    )?;
    Ok(())
}

/// Inserts a bill payment: its `transactions` and `bill_payments` rows.
fn insert_bill_transaction(
    conn: &Connection,
    record: &crate::TransactionRecord,
) -> Result<(), StoreError> {
    insert_transaction(
        conn,
        &crate::write::TransactionRow {
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
    )?;
    let bill = &record.bill;
    execute(
        conn,
        crate::sql::INSERT_BILL,
        &[
            &record.id,
            &bill.biller_id,
            &bill.agency_code,
            &bill.bill_reference,
            &date_opt(bill.due_date),
            &bill.period,
            &bill.late,
        ],
    )?;
    Ok(())
}

/// Claims a new payment's slip; `SlipAlreadyPaid` when another live
/// payment holds it.
fn claim_slip(conn: &Connection, record: &crate::TransactionRecord) -> Result<(), StoreError> {
    let bill = &record.bill;
    let claimed = execute(
        conn,
        crate::sql::CLAIM_SLIP,
        &[
            &bill.biller_id,
            &bill.bill_reference,
            &bill.period,
            &record.amount_minor,
            &record.id,
        ],
    )?;
    if claimed == 0 {
        return Err(StoreError::SlipAlreadyPaid {
            biller_id: bill.biller_id.clone(),
            bill_reference: bill.bill_reference.clone(),
            period: bill.period.clone(),
        });
    }
    Ok(())
}

/// The current status of a transaction, as a mismatch answer.
fn mismatch(conn: &Connection, sql: &str, args: &[&dyn ToSql]) -> Result<WriteOutcome, StoreError> {
    let status: Option<String> = query_optional(conn, sql, args, |row| get(row, 0))?;
    let current = status
        .as_deref()
        .map(TransactionStatus::parse)
        .transpose()?;
    Ok(WriteOutcome::StatusMismatch { current })
}

/// A guarded status change of a bill payment; the mismatch when it is not
/// in `change.from`.
fn transition(
    conn: &Connection,
    change: &crate::StatusChange,
) -> Result<Option<WriteOutcome>, StoreError> {
    let updated = execute(
        conn,
        crate::sql::TRANSITION,
        &[
            &change.to.as_str(),
            &Ts(change.at),
            &change.reason,
            &change.transaction_id,
            &change.store_id,
            &change.from.as_str(),
        ],
    )?;
    if updated > 0 {
        return Ok(None);
    }
    mismatch(
        conn,
        crate::sql::SELECT_STATUS,
        &[&change.transaction_id, &change.store_id],
    )
    .map(Some)
}

/// Inserts an idempotency key; when another request holds it, nothing is
/// inserted and that request's answer comes back.
#[allow(clippy::too_many_arguments)]
fn insert_key(
    conn: &Connection,
    key: &posgate_core::model::IdempotencyKey,
    fingerprint: &posgate_core::model::RequestFingerprint,
    response: &[u8],
    transaction_id: &str,
    at: chrono::DateTime<chrono::Utc>,
    expires_at: chrono::DateTime<chrono::Utc>,
    pending: bool,
) -> Result<Option<WriteOutcome>, StoreError> {
    let inserted = execute(
        conn,
        crate::sql::INSERT_KEY,
        &[
            &key.store_id,
            &key.terminal_id,
            &key.client_request_id,
            &fingerprint.operation,
            &fingerprint.digest,
            &fingerprint.field_digests,
            &response,
            &transaction_id,
            &Ts(at),
            &Ts(expires_at),
            &pending,
        ],
    )?;
    if inserted == 0 {
        return key_taken(conn, key).map(Some);
    }
    Ok(None)
}

/// The answer under a key another request holds.
fn key_taken(
    conn: &Connection,
    key: &posgate_core::model::IdempotencyKey,
) -> Result<WriteOutcome, StoreError> {
    query_optional(
        conn,
        crate::sql::SELECT_KEY,
        &[&key.store_id, &key.terminal_id, &key.client_request_id],
        crate::sqlite_reads::answer,
    )?
    .map(WriteOutcome::KeyTaken)
    .ok_or_else(|| StoreError::Invariant("answer for a key nobody claimed".to_owned()))
}

/// A card, wallet or bill write's idempotency-key operation; an answer when
/// the key is another request's (the write stops there).
fn apply_key_op(
    conn: &Connection,
    key_op: Option<&KeyOp>,
    transaction_id: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Option<WriteOutcome>, StoreError> {
    use crate::card::sql as card_sql;
    match key_op {
        Some(KeyOp::Claim {
            key,
            fingerprint,
            expires_at,
        }) => insert_key(
            conn,
            key,
            fingerprint,
            &[],
            transaction_id,
            at,
            *expires_at,
            true,
        ),
        Some(KeyOp::ClaimAnswered {
            key,
            answer,
            expires_at,
        }) => insert_key(
            conn,
            key,
            &answer.fingerprint,
            &answer.response,
            transaction_id,
            at,
            *expires_at,
            false,
        ),
        Some(KeyOp::Answer { key, response }) => {
            let updated = execute(
                conn,
                card_sql::ANSWER_KEY,
                &[
                    response,
                    &false,
                    &key.store_id,
                    &key.terminal_id,
                    &key.client_request_id,
                    &true,
                ],
            )?;
            if updated == 0 {
                return key_taken(conn, key).map(Some);
            }
            Ok(None)
        }
        Some(KeyOp::Release { key }) => {
            execute(
                conn,
                card_sql::RELEASE_KEY,
                &[
                    &key.store_id,
                    &key.terminal_id,
                    &key.client_request_id,
                    &true,
                ],
            )?;
            Ok(None)
        }
        None => Ok(None),
    }
}

/// Moves a refund's reservation on its original; `RefundExceeds` when the
/// original has less left than the refund asks.
fn adjust_refund(
    conn: &Connection,
    refund: &crate::RefundAdjust,
    adjust_sql: &str,
    remaining_sql: &str,
) -> Result<Option<WriteOutcome>, StoreError> {
    let updated = execute(
        conn,
        adjust_sql,
        &[
            &refund.reserve_delta,
            &refund.refunded_delta,
            &refund.original_id,
        ],
    )?;
    if updated > 0 {
        return Ok(None);
    }
    let remaining: Option<i64> =
        query_optional(conn, remaining_sql, &[&refund.original_id], |row| {
            get::<Option<i64>>(row, 0)
        })?
        .flatten();
    Ok(Some(WriteOutcome::RefundExceeds {
        remaining: remaining.unwrap_or(0),
    }))
}

/// Moves a card or wallet transaction `from` → `to`, guarded.
fn move_status(
    conn: &Connection,
    transaction_id: &str,
    from: TransactionStatus,
    to: TransactionStatus,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Option<WriteOutcome>, StoreError> {
    use crate::card::sql as card_sql;
    let updated = execute(
        conn,
        card_sql::UPDATE_STATUS,
        &[&to.as_str(), &Ts(at), &transaction_id, &from.as_str()],
    )?;
    if updated > 0 {
        return Ok(None);
    }
    mismatch(conn, card_sql::SELECT_STATUS, &[&transaction_id]).map(Some)
}

/// The date a write's lines take (the first open date on or after `date`)
/// and whether they moved. SQLite has one writer: no close runs beside it.
fn open_business_date(
    conn: &Connection,
    date: chrono::NaiveDate,
) -> Result<(chrono::NaiveDate, bool), StoreError> {
    let closed = query_all(
        conn,
        crate::clearing::sql::SELECT_CLOSED_FROM,
        &[&Date(date)],
        |row| crate::sqlite_conn::get_date(row, 0),
    )?;
    let open = crate::clearing::next_open_date(date, &closed);
    Ok((open, open != date))
}

/// A change's settlement lines (re-dated to the next open business date,
/// as adjustments, when `business_date` is closed) and its event; queues
/// the event's chain entries in `chain` (as the sqlx twin does).
fn append_lines_and_event(
    conn: &Connection,
    transaction_id: &str,
    business_date: chrono::NaiveDate,
    lines: &[crate::SettlementLine],
    event: &crate::Event,
    at: chrono::DateTime<chrono::Utc>,
    chain: &mut Vec<EntryContent>,
) -> Result<(), StoreError> {
    use crate::sql;
    if !posgate_core::model::event::is_stored_event_type(&event.event_type) {
        return Err(StoreError::Invariant(format!(
            "event type {:?} has no audit.proto mapping (model::event::STORED_EVENT_TYPES)",
            event.event_type
        )));
    }
    if !lines.is_empty() {
        let (line_date, moved) = open_business_date(conn, business_date)?;
        let statement = sql::insert_lines(lines.len());
        let line_date = Date(line_date);
        let at_ts = Ts(at);
        let kinds: Vec<String> = lines
            .iter()
            .map(|line| {
                if moved {
                    crate::clearing::adjustment_kind(&line.kind)
                } else {
                    line.kind.clone()
                }
            })
            .collect();
        let orders: Vec<i64> = (0_i64..).take(lines.len()).collect();
        let mut args: Vec<&dyn ToSql> = Vec::with_capacity(3 + lines.len() * 5);
        args.push(&transaction_id);
        args.push(&line_date);
        args.push(&at_ts);
        for ((order, line), kind) in orders.iter().zip(lines).zip(&kinds) {
            args.push(order);
            args.push(&line.party);
            args.push(kind);
            args.push(&line.currency);
            args.push(&line.amount_minor);
        }
        let inserted = execute(conn, &statement, &args)?;
        if inserted != lines.len() {
            return Err(StoreError::Invariant(format!(
                "{inserted} of {} settlement lines of {transaction_id} were written",
                lines.len()
            )));
        }
    }
    let received = event.from_status.is_none() && event.event_type != "received";
    let accepted = TransactionStatus::InProgress;
    let from_status = if received {
        Some(accepted)
    } else {
        event.from_status
    };
    let from_text = from_status.map(TransactionStatus::as_str);
    let to_text = event.to_status.as_str();
    let at_ts = Ts(at);
    let accepted_text = accepted.as_str();
    let mut args: Vec<&dyn ToSql> = vec![
        &transaction_id,
        &event.event_type,
        &from_text,
        &to_text,
        &event.actor,
        &event.detail,
        &at_ts,
    ];
    if received {
        args.push(&accepted_text);
    }
    execute(
        conn,
        if received {
            sql::INSERT_RECEIVED_AND_EVENT
        } else {
            sql::INSERT_EVENT
        },
        &args,
    )?;
    let occurred_at = crate::audit::canonical_time(at);
    if received {
        chain.push(EntryContent {
            entry_type: crate::audit::EntryType::Event,
            transaction_id: Some(transaction_id.to_owned()),
            event_type: "received".to_owned(),
            from_status: None,
            to_status: Some(accepted_text.to_owned()),
            actor: event.actor.clone(),
            detail: "request accepted".to_owned(),
            occurred_at: occurred_at.clone(),
        });
    }
    chain.push(EntryContent {
        entry_type: crate::audit::EntryType::Event,
        transaction_id: Some(transaction_id.to_owned()),
        event_type: event.event_type.clone(),
        from_status: from_text.map(str::to_owned),
        to_status: Some(to_text.to_owned()),
        actor: event.actor.clone(),
        detail: event.detail.clone(),
        occurred_at,
    });
    Ok(())
}

/// Queues a write's store-and-forward items, acknowledges the ones it
/// settled, appends its lines and event.
fn queue_and_append(
    conn: &Connection,
    write: crate::write::WriteTail<'_>,
    chain: &mut Vec<EntryContent>,
) -> Result<(), StoreError> {
    use crate::card::sql as card_sql;
    let at = Ts(write.at);
    for item in write.enqueue {
        execute(
            conn,
            card_sql::INSERT_SAF,
            &[
                &write.transaction_id,
                &item.link_id,
                &item.kind.as_str(),
                &item.amount_minor,
                &item.currency,
                &Ts(item.next_attempt_at),
                &at,
            ],
        )?;
    }
    for id in write.acked {
        execute(conn, card_sql::ACK_SAF, &[&at, id])?;
    }
    append_lines_and_event(
        conn,
        write.transaction_id,
        write.business_date,
        write.lines,
        write.event,
        write.at,
        chain,
    )
}

/// A [`CardWrite`]: its key step, the card row created or updated (a guarded
/// status move first), the refund reservation, then queue, lines and event.
// One linear sequence of statements, as its sqlx twin.
#[allow(clippy::too_many_lines)]
fn apply_card_write(
    conn: &Connection,
    write: &CardWrite,
    chain: &mut Vec<EntryContent>,
) -> Result<Done, StoreError> {
    use crate::CardChange;
    use crate::card::sql as card_sql;
    if let Some(taken) = apply_key_op(conn, write.key.as_ref(), &write.transaction_id, write.at)? {
        return Ok(Done::Write(taken));
    }
    match &write.change {
        CardChange::Create(record) => {
            insert_transaction(
                conn,
                &crate::write::TransactionRow {
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
            )?;
            execute(
                conn,
                card_sql::INSERT_CARD,
                &[
                    &record.id,
                    &record.card_type.as_str(),
                    &record.route.as_str(),
                    &record.masked_pan,
                    &record.pan_fingerprint,
                    &record.card_brand,
                    &record.entry_mode,
                    &record.cardholder_verification,
                    &record.merchant_id,
                    &record.bank_terminal_id,
                    &record.stan,
                    &record.rrn,
                    &Ts(record.transmitted_at),
                    &record.request_mti,
                    &record.response_code,
                    &record.approval_code,
                    &record.captured_minor,
                    &record.refunded_minor,
                    &record.refund_reserved_minor,
                    &record.loyalty_points,
                    &record.loyalty_balance,
                    &record.original_transaction_id,
                    &record.pos_reference,
                    &ts_opt(record.authorization_expires_at),
                    &record.advice_pending,
                ],
            )?;
        }
        CardChange::Update(update) => {
            if let (Some(from), Some(to)) = (update.from, update.to)
                && let Some(mismatch) =
                    move_status(conn, &update.transaction_id, from, to, write.at)?
            {
                return Ok(Done::Write(mismatch));
            }
            let (loyalty_set, points, balance) = match update.loyalty {
                Some((points, balance)) => (true, Some(points), balance),
                None => (false, None, None),
            };
            let (expiry_set, expiry) = match update.authorization_expires_at {
                Some(expiry) => (true, expiry),
                None => (false, None),
            };
            execute(
                conn,
                card_sql::UPDATE_CARD,
                &[
                    &update.response_code,
                    &update.approval_code,
                    &update.captured_minor,
                    &loyalty_set,
                    &points,
                    &balance,
                    &expiry_set,
                    &ts_opt(expiry),
                    &update.advice_pending,
                    &update.transaction_id,
                ],
            )?;
        }
    }
    if let Some(refund) = &write.refund
        && let Some(exceeds) = adjust_refund(
            conn,
            refund,
            card_sql::ADJUST_REFUND,
            card_sql::SELECT_REMAINING,
        )?
    {
        return Ok(Done::Write(exceeds));
    }
    queue_and_append(conn, crate::write::WriteTail::from(write), chain)?;
    Ok(Done::Write(WriteOutcome::Written))
}

/// A [`WalletWrite`]: its key step, the wallet row created or updated (a
/// guarded status move first), the refund reservation, then queue, lines and event.
fn apply_wallet_write(
    conn: &Connection,
    write: &WalletWrite,
    chain: &mut Vec<EntryContent>,
) -> Result<Done, StoreError> {
    use crate::WalletChange;
    use crate::wallet::sql as wallet_sql;
    if let Some(taken) = apply_key_op(conn, write.key.as_ref(), &write.transaction_id, write.at)? {
        return Ok(Done::Write(taken));
    }
    match &write.change {
        WalletChange::Create(record) => {
            let partner =
                posgate_core::model::Party::Wallet(record.wallet_operator_id.clone()).to_string();
            insert_transaction(
                conn,
                &crate::write::TransactionRow {
                    id: &record.id,
                    kind: crate::TransactionKind::WalletPayment,
                    status: record.status,
                    store_id: &record.store_id,
                    terminal_id: &record.terminal_id,
                    operator_id: &record.operator_id,
                    client_request_id: &record.client_request_id,
                    partner_id: &partner,
                    amount_minor: record.amount_minor,
                    currency: &record.currency,
                    fee_minor: 0,
                    business_date: record.business_date,
                    created_at: record.created_at,
                },
            )?;
            let outcome = &record.outcome;
            execute(
                conn,
                wallet_sql::INSERT_WALLET,
                &[
                    &record.id,
                    &record.wallet_type.as_str(),
                    &record.wallet_operator_id,
                    &record.wallet_ref,
                    &outcome.account_id,
                    &outcome.display_id,
                    &outcome.operator_name,
                    &record.funding,
                    &outcome.decline_reason,
                    &outcome.operator_response_code,
                    &outcome.operator_reference,
                    &outcome.response_text,
                    &outcome.balance_after_minor,
                    &record.refunded_minor,
                    &record.refund_reserved_minor,
                    &record.original_transaction_id,
                    &record.pos_reference,
                ],
            )?;
        }
        WalletChange::Update(update) => {
            if let (Some(from), Some(to)) = (update.from, update.to)
                && let Some(mismatch) =
                    move_status(conn, &update.transaction_id, from, to, write.at)?
            {
                return Ok(Done::Write(mismatch));
            }
            if let Some(outcome) = &update.outcome {
                execute(
                    conn,
                    wallet_sql::UPDATE_OUTCOME,
                    &[
                        &outcome.account_id,
                        &outcome.display_id,
                        &outcome.operator_name,
                        &outcome.decline_reason,
                        &outcome.operator_response_code,
                        &outcome.operator_reference,
                        &outcome.response_text,
                        &outcome.balance_after_minor,
                        &update.transaction_id,
                    ],
                )?;
            }
        }
    }
    if let Some(refund) = &write.refund
        && let Some(exceeds) = adjust_refund(
            conn,
            refund,
            wallet_sql::ADJUST_REFUND,
            wallet_sql::SELECT_REMAINING,
        )?
    {
        return Ok(Done::Write(exceeds));
    }
    queue_and_append(conn, crate::write::WriteTail::from(write), chain)?;
    Ok(Done::Write(WriteOutcome::Written))
}

/// An online biller's [`BillWrite`]: its key step, the payment created or
/// moved, then queue, lines and event.
fn apply_bill_write(
    conn: &Connection,
    write: &BillWrite,
    chain: &mut Vec<EntryContent>,
) -> Result<Done, StoreError> {
    if let Some(taken) = apply_key_op(conn, write.key.as_ref(), &write.transaction_id, write.at)? {
        return Ok(Done::Write(taken));
    }
    match &write.change {
        Change::Create(record) => insert_bill_transaction(conn, record)?,
        Change::Transition(change) => {
            if let Some(mismatch) = transition(conn, change)? {
                return Ok(Done::Write(mismatch));
            }
        }
    }
    queue_and_append(conn, crate::write::WriteTail::from(write), chain)?;
    Ok(Done::Write(WriteOutcome::Written))
}

/// Starts the writer thread on `conn`; the queue's sending half.
pub(crate) fn spawn(
    conn: Connection,
    capacity: usize,
    counters: std::sync::Arc<posgate_core::ports::db::WriteCounters>,
) -> Result<mpsc::Sender<(Job, Reply)>, StoreError> {
    // The pages of the indexes every write touches stay cached (SQLite's
    // default cache is 2 MiB; this is an upper bound, grown as used).
    conn.execute_batch(&format!("PRAGMA cache_size = -{WRITER_CACHE_KIB}"))
        .map_err(crate::sqlite_conn::db)?;
    let (writes, pending) = mpsc::channel(capacity);
    std::thread::Builder::new()
        .name("posgate-sqlite-writer".to_owned())
        .spawn(move || run(&conn, pending, &counters))
        .map_err(|error| StoreError::Database(Box::new(error)))?;
    Ok(writes)
}
