//! PostgreSQL group commit, set-based: a batch of writes is a fixed handful
//! of statements whatever its size. Each write is first seen as the rows it
//! touches (a [`Plan`]); then every step runs once for the whole batch, as
//! one statement over arrays (`UNNEST`): claim the idempotency keys, move the
//! refund reservations, move the statuses, insert the new transactions and
//! their kind's rows, claim the slips, update the card and wallet rows, queue
//! and acknowledge store-and-forward entries, insert the settlement lines,
//! the events and the audit-chain entries.
//!
//! A write that must fail fails alone, without a savepoint:
//! - a key another request holds is not inserted (`ON CONFLICT DO NOTHING`),
//!   and that write does nothing more;
//! - a refund beyond what is left, a status that moved, or a slip another
//!   payment holds is found by its step's `RETURNING`, and that write's
//!   earlier steps are undone exactly (its key row deleted or put back to
//!   pending, its reservation moved back, its just-inserted rows deleted).
//!
//! Two writes of one batch that touch the same transaction (or the same
//! refund original) never share a statement: the second goes to a later
//! round of the same database transaction. Rows are sorted by key before
//! they are locked, so two writers' batches take the keys in one order.
//! The chain head is advanced once per batch, last, so its row lock is held
//! only through the COMMIT.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgConnection, Row as _};

use crate::SqlxResultExt as _;
use crate::audit::{EntryContent, EntryType, canonical_time};
use crate::write::WriteTail;
use crate::{
    BillWrite, CardChange, CardRecord, CardWrite, Change, Event, KeyOp, NewSafItem, RefundAdjust,
    SettlementLine, StatusChange, StoreError, TransactionKind, TransactionRecord,
    TransactionStatus, WalletChange, WalletRecord, WalletWrite, WriteOutcome, WriteRequest,
};
use posgate_core::model::wallet::WalletOutcome;
use posgate_core::model::{IdempotencyKey, RequestFingerprint, StoredAnswer};
use posgate_core::ports::db::CardUpdate;

/// One state change for the writers.
#[derive(Debug)]
pub(crate) enum Job {
    Write(WriteRequest),
    Card(CardWrite),
    Wallet(WalletWrite),
    Bill(BillWrite),
}

impl Job {
    /// The invariants a write must hold before it reaches SQL.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        let event = match self {
            Job::Write(request) => {
                request.check()?;
                &request.event
            }
            Job::Card(write) => {
                write.check()?;
                &write.event
            }
            Job::Wallet(write) => {
                write.check()?;
                &write.event
            }
            Job::Bill(write) => {
                write.check()?;
                &write.event
            }
        };
        // Auditors read every event as an `audit.proto` type: one without
        // a mapping would reach them as UNSPECIFIED.
        if !posgate_core::model::event::is_stored_event_type(&event.event_type) {
            return Err(StoreError::Invariant(format!(
                "event type {:?} has no audit.proto mapping (model::event::STORED_EVENT_TYPES)",
                event.event_type
            )));
        }
        Ok(())
    }
}

/// What a write does to its idempotency key.
enum KeyStep<'a> {
    /// Insert the key (pending, or with its answer).
    Claim {
        key: &'a IdempotencyKey,
        fingerprint: &'a RequestFingerprint,
        response: &'a [u8],
        created_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        pending: bool,
    },
    /// Give a pending key its answer.
    Answer {
        key: &'a IdempotencyKey,
        response: &'a [u8],
    },
    /// Delete a pending key (the request may be sent again).
    Release { key: &'a IdempotencyKey },
}

/// The transaction a write creates.
enum Create<'a> {
    Bill(&'a TransactionRecord),
    Card(&'a CardRecord),
    Wallet(&'a WalletRecord),
}

/// A guarded status move.
struct Move<'a> {
    from: TransactionStatus,
    to: TransactionStatus,
    at: DateTime<Utc>,
    /// Bill payments: the move is also guarded by the store, and a move to
    /// `cancelled` records when and why.
    bill: Option<(&'a str, &'a str)>,
}

/// Which table a refund reservation lives in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RefundTable {
    Card,
    Wallet,
}

/// A write as the rows it touches.
struct Plan<'a> {
    transaction_id: &'a str,
    at: DateTime<Utc>,
    key: Option<KeyStep<'a>>,
    refund: Option<(&'a RefundAdjust, RefundTable)>,
    moves: Option<Move<'a>>,
    create: Option<Create<'a>>,
    claims_slip: bool,
    frees_slip: bool,
    card_update: Option<&'a CardUpdate>,
    wallet_outcome: Option<&'a WalletOutcome>,
    enqueue: &'a [NewSafItem],
    acked: &'a [i64],
    business_date: NaiveDate,
    lines: &'a [SettlementLine],
    event: &'a Event,
}

fn key_step(key: Option<&KeyOp>, at: DateTime<Utc>) -> Option<KeyStep<'_>> {
    Some(match key? {
        KeyOp::Claim {
            key,
            fingerprint,
            expires_at,
        } => KeyStep::Claim {
            key,
            fingerprint,
            response: &[],
            created_at: at,
            expires_at: *expires_at,
            pending: true,
        },
        KeyOp::ClaimAnswered {
            key,
            answer,
            expires_at,
        } => KeyStep::Claim {
            key,
            fingerprint: &answer.fingerprint,
            response: &answer.response,
            created_at: at,
            expires_at: *expires_at,
            pending: false,
        },
        KeyOp::Answer { key, response } => KeyStep::Answer { key, response },
        KeyOp::Release { key } => KeyStep::Release { key },
    })
}

impl<'a> Plan<'a> {
    fn of(job: &'a Job) -> Self {
        match job {
            Job::Write(request) => Self::of_write(request),
            Job::Bill(write) => Self::of_bill(write),
            Job::Card(write) => Self::of_card(write),
            Job::Wallet(write) => Self::of_wallet(write),
        }
    }

    /// A plan with a write's common parts (see [`WriteTail`]) and key
    /// step, touching nothing else; each kind of write fills in the rest.
    fn base(tail: WriteTail<'a>, key: Option<KeyStep<'a>>) -> Self {
        Self {
            transaction_id: tail.transaction_id,
            at: tail.at,
            key,
            refund: None,
            moves: None,
            create: None,
            claims_slip: false,
            frees_slip: false,
            card_update: None,
            wallet_outcome: None,
            enqueue: tail.enqueue,
            acked: tail.acked,
            business_date: tail.business_date,
            lines: tail.lines,
            event: tail.event,
        }
    }

    fn of_write(request: &'a WriteRequest) -> Self {
        let answer = &request.answer;
        let (create, moves, business_date) = match &request.change {
            Change::Create(record) => (Some(Create::Bill(record)), None, record.business_date),
            Change::Transition(change) => (None, Some(bill_move(change)), change.business_date),
        };
        let tail = WriteTail {
            transaction_id: request.transaction_id(),
            enqueue: &[],
            acked: &[],
            at: request.created_at,
            business_date,
            lines: &request.lines,
            event: &request.event,
        };
        let key = KeyStep::Claim {
            key: &request.key,
            fingerprint: &answer.fingerprint,
            response: &answer.response,
            created_at: request.created_at,
            expires_at: request.expires_at,
            pending: false,
        };
        Self {
            claims_slip: create.is_some() && request.claims_slip,
            frees_slip: moves
                .as_ref()
                .is_some_and(|step| step.to == TransactionStatus::Cancelled),
            create,
            moves,
            ..Self::base(tail, Some(key))
        }
    }

    fn of_bill(write: &'a BillWrite) -> Self {
        let (create, moves) = match &write.change {
            Change::Create(record) => (Some(Create::Bill(record)), None),
            Change::Transition(change) => (None, Some(bill_move(change))),
        };
        Self {
            moves,
            create,
            ..Self::base(
                WriteTail::from(write),
                key_step(write.key.as_ref(), write.at),
            )
        }
    }

    fn of_card(write: &'a CardWrite) -> Self {
        let (create, moves, card_update) = match &write.change {
            CardChange::Create(record) => (Some(Create::Card(record)), None, None),
            CardChange::Update(update) => (
                None,
                card_move(update.from, update.to, write.at),
                Some(update),
            ),
        };
        Self {
            refund: write
                .refund
                .as_ref()
                .map(|refund| (refund, RefundTable::Card)),
            moves,
            create,
            card_update,
            ..Self::base(
                WriteTail::from(write),
                key_step(write.key.as_ref(), write.at),
            )
        }
    }

    fn of_wallet(write: &'a WalletWrite) -> Self {
        let (create, moves, wallet_outcome) = match &write.change {
            WalletChange::Create(record) => (Some(Create::Wallet(record)), None, None),
            WalletChange::Update(update) => (
                None,
                card_move(update.from, update.to, write.at),
                update.outcome.as_ref(),
            ),
        };
        Self {
            refund: write
                .refund
                .as_ref()
                .map(|refund| (refund, RefundTable::Wallet)),
            moves,
            create,
            wallet_outcome,
            ..Self::base(
                WriteTail::from(write),
                key_step(write.key.as_ref(), write.at),
            )
        }
    }

    /// The rows no other write of the same round may touch.
    fn exclusive_ids(&self) -> impl Iterator<Item = &'a str> {
        std::iter::once(self.transaction_id)
            .chain(self.refund.map(|(refund, _)| refund.original_id.as_str()))
    }

    fn key(&self) -> Option<&'a IdempotencyKey> {
        match self.key.as_ref()? {
            KeyStep::Claim { key, .. } | KeyStep::Answer { key, .. } | KeyStep::Release { key } => {
                Some(key)
            }
        }
    }
}

/// A bill payment's status move: guarded by its store too, and a move to
/// `cancelled` records when and why.
fn bill_move(change: &StatusChange) -> Move<'_> {
    Move {
        from: change.from,
        to: change.to,
        at: change.at,
        bill: Some((&change.store_id, &change.reason)),
    }
}

/// A card or wallet update's status move, when it has both ends.
fn card_move<'a>(
    from: Option<TransactionStatus>,
    to: Option<TransactionStatus>,
    at: DateTime<Utc>,
) -> Option<Move<'a>> {
    Some(Move {
        from: from?,
        to: to?,
        at,
        bill: None,
    })
}

/// A write's outcome while its batch runs.
enum State {
    /// Still going through the steps of its round.
    Live,
    /// Its key is another request's: the answer is read at the end.
    Taken,
    /// Decided; nothing of it stays.
    Done(Result<WriteOutcome, StoreError>),
    /// Its key's holder in this batch was undone: it runs again next round.
    Again,
}

/// Commits a batch in one transaction and returns each job's outcome, in
/// order. `Err` when the transaction itself failed (nothing was committed).
pub(crate) async fn commit(
    conn: &mut PgConnection,
    jobs: &[&Job],
) -> Result<Vec<Result<WriteOutcome, StoreError>>, StoreError> {
    let plans: Vec<Plan<'_>> = jobs.iter().map(|job| Plan::of(job)).collect();
    let mut states: Vec<State> = jobs
        .iter()
        .map(|job| match job.check() {
            Ok(()) => State::Live,
            Err(error) => State::Done(Err(error)),
        })
        .collect();
    // Custom plans for this batch's statements: a generic plan of an
    // `UPDATE ... FROM UNNEST($1)` cached while the tables were small scans
    // them in full, and PostgreSQL never re-plans it on that connection as
    // they grow (seen as 36.7M rows read by 3,612 scans of `transactions`
    // in one 20 s wallet run). Planning costs microseconds per statement
    // per batch, not per write.
    let mut tx = sqlx::Connection::begin_with(conn, BEGIN).await.db()?;
    let line_dates = line_dates(&mut tx, &plans, &states).await?;
    let mut chain = Vec::new();
    let mut pending: Vec<usize> = (0..plans.len())
        .filter(|&index| matches!(states[index], State::Live))
        .collect();
    let mut rounds = 0;
    while !pending.is_empty() {
        // Every round decides at least one write, or runs again only writes
        // whose key's holder this batch undid: it ends within one round per write.
        rounds += 1;
        if rounds > plans.len() + 1 {
            return Err(StoreError::Invariant(
                "a batch's writes kept losing their keys to each other".to_owned(),
            ));
        }
        let (round, mut later) = split_round(&plans, pending);
        for &index in &round {
            states[index] = State::Live;
        }
        run_round(&mut tx, &plans, &round, &mut states).await?;
        read_taken(&mut tx, &plans, &round, &mut states).await?;
        let written: Vec<usize> = pick(&round, |index| matches!(states[index], State::Live));
        append_rows(&mut tx, &plans, &written, &line_dates, &mut chain).await?;
        for index in written {
            states[index] = State::Done(Ok(WriteOutcome::Written));
        }
        later.extend(pick(&round, |index| matches!(states[index], State::Again)));
        later.sort_unstable();
        pending = later;
    }
    append_chain(&mut tx, &chain).await?;
    tx.commit().await.db()?;
    Ok(states
        .into_iter()
        .map(|state| match state {
            State::Done(outcome) => outcome,
            State::Live | State::Taken | State::Again => Err(StoreError::Invariant(
                "a write of the batch was left undecided".to_owned(),
            )),
        })
        .collect())
}

/// Opens a batch's transaction, with custom plans (see [`commit`]).
const BEGIN: &str = "BEGIN; SET LOCAL plan_cache_mode = force_custom_plan";

/// Splits off the writes that can share statements: no two touch the same
/// transaction or refund original. The rest wait for a later round.
fn split_round(plans: &[Plan<'_>], pending: Vec<usize>) -> (Vec<usize>, Vec<usize>) {
    let mut taken: HashSet<&str> = HashSet::new();
    let mut round = Vec::with_capacity(pending.len());
    let mut later = Vec::new();
    for index in pending {
        let plan = &plans[index];
        if plan.exclusive_ids().any(|id| taken.contains(id)) {
            later.push(index);
        } else {
            taken.extend(plan.exclusive_ids());
            round.push(index);
        }
    }
    (round, later)
}

/// The date each write's lines take: its business date, or the next open
/// one when that day is closed (a closed day never changes). The shared
/// close lock is taken first, so a close waits for this batch and every
/// batch after the close sees the day closed.
async fn line_dates(
    conn: &mut PgConnection,
    plans: &[Plan<'_>],
    states: &[State],
) -> Result<Vec<(NaiveDate, bool)>, StoreError> {
    let earliest = plans
        .iter()
        .zip(states)
        .filter(|(plan, state)| matches!(state, State::Live) && !plan.lines.is_empty())
        .map(|(plan, _)| plan.business_date)
        .min();
    let closed: Vec<NaiveDate> = match earliest {
        Some(earliest) => {
            sqlx::query(crate::backend::XACT_LOCK_SHARED)
                .bind(crate::clearing::CLOSE_LOCK_KEY)
                .execute(&mut *conn)
                .await
                .db()?;
            sqlx::query_scalar(crate::clearing::sql::SELECT_CLOSED_FROM)
                .bind(earliest)
                .fetch_all(&mut *conn)
                .await
                .db()?
        }
        None => Vec::new(),
    };
    Ok(plans
        .iter()
        .map(|plan| {
            let open = crate::clearing::next_open_date(plan.business_date, &closed);
            (open, open != plan.business_date)
        })
        .collect())
}

/// The guarded steps of a round, in an order where each failure has only
/// earlier steps of its own write to undo: keys, refund reservations,
/// status moves, then the new rows and their slip claims.
async fn run_round(
    conn: &mut PgConnection,
    plans: &[Plan<'_>],
    round: &[usize],
    states: &mut [State],
) -> Result<(), StoreError> {
    claim_keys(conn, plans, round, states).await?;
    answer_keys(conn, plans, round, states).await?;
    let live = |states: &[State]| -> Vec<usize> {
        pick(round, |index| matches!(states[index], State::Live))
    };
    let failed = adjust_refunds(conn, plans, &live(states), states).await?;
    undo(conn, plans, &failed, Undo::KEY).await?;
    let failed = move_statuses(conn, plans, &live(states), states).await?;
    undo(conn, plans, &failed, Undo::KEY | Undo::REFUND).await?;
    insert_transactions(conn, plans, &live(states)).await?;
    let failed = claim_slips(conn, plans, &live(states), states).await?;
    undo(
        conn,
        plans,
        &failed,
        Undo::KEY | Undo::REFUND | Undo::CREATED,
    )
    .await?;
    let live = live(states);
    update_kind_rows(conn, plans, &live).await?;
    release_keys(conn, plans, &live).await?;
    Ok(())
}

// ---- keys -------------------------------------------------------------

const CLAIM_KEYS: &str = "INSERT INTO idempotency_keys (store_id, terminal_id, client_request_id, \
     operation, request_digest, field_digests, response, transaction_id, created_at, expires_at, pending) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[], \
     $7::bytea[], $8::text[], $9::timestamptz[], $10::timestamptz[], $11::bool[]) \
     ON CONFLICT DO NOTHING RETURNING store_id, terminal_id, client_request_id, transaction_id";

/// Inserts the keys the round's writes claim; a write whose key is held
/// (by an earlier request, or by another write of this batch) is `Taken`.
async fn claim_keys(
    conn: &mut PgConnection,
    plans: &[Plan<'_>],
    round: &[usize],
    states: &mut [State],
) -> Result<(), StoreError> {
    let mut claims: Vec<usize> = pick(round, |index| {
        matches!(plans[index].key, Some(KeyStep::Claim { .. }))
    });
    if claims.is_empty() {
        return Ok(());
    }
    // One lock order for every writer: no deadlock between two batches.
    claims.sort_by_key(|&index| sort_key(plans[index].key()));
    let mut columns = KeyColumns::default();
    let mut fingerprints = (Vec::new(), Vec::new(), Vec::new());
    let mut rest = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for &index in &claims {
        let plan = &plans[index];
        if let Some(KeyStep::Claim {
            key,
            fingerprint,
            response,
            created_at,
            expires_at,
            pending,
        }) = &plan.key
        {
            columns.push(key);
            fingerprints.0.push(fingerprint.operation.as_str());
            fingerprints.1.push(fingerprint.digest.as_slice());
            fingerprints.2.push(fingerprint.field_digests.as_str());
            rest.0.push(*response);
            rest.1.push(plan.transaction_id);
            rest.2.push(*created_at);
            rest.3.push(*expires_at);
            rest.4.push(*pending);
        }
    }
    let rows = sqlx::query(CLAIM_KEYS)
        .bind(&columns.stores)
        .bind(&columns.terminals)
        .bind(&columns.requests)
        .bind(&fingerprints.0)
        .bind(&fingerprints.1)
        .bind(&fingerprints.2)
        .bind(&rest.0)
        .bind(&rest.1)
        .bind(&rest.2)
        .bind(&rest.3)
        .bind(&rest.4)
        .fetch_all(&mut *conn)
        .await
        .db()?;
    let won: HashSet<(String, String, String, String)> = rows
        .iter()
        .map(|row| {
            Ok((
                row.try_get(0).db()?,
                row.try_get(1).db()?,
                row.try_get(2).db()?,
                row.try_get(3).db()?,
            ))
        })
        .collect::<Result<_, StoreError>>()?;
    for index in claims {
        let plan = &plans[index];
        let key = plan.key().expect("a claim has a key");
        let mine = (
            key.store_id.clone(),
            key.terminal_id.clone(),
            key.client_request_id.clone(),
            plan.transaction_id.to_owned(),
        );
        if !won.contains(&mine) {
            states[index] = State::Taken;
        }
    }
    Ok(())
}

const ANSWER_KEYS: &str = "UPDATE idempotency_keys k SET response = u.response, pending = FALSE \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bytea[]) AS u(s, t, c, response) \
     WHERE k.store_id = u.s AND k.terminal_id = u.t AND k.client_request_id = u.c AND k.pending \
     RETURNING k.store_id, k.terminal_id, k.client_request_id";

/// Gives pending keys their answers; a key no longer pending is `Taken`.
async fn answer_keys(
    conn: &mut PgConnection,
    plans: &[Plan<'_>],
    round: &[usize],
    states: &mut [State],
) -> Result<(), StoreError> {
    let mut answers: Vec<usize> = pick(round, |index| {
        matches!(plans[index].key, Some(KeyStep::Answer { .. }))
    });
    if answers.is_empty() {
        return Ok(());
    }
    answers.sort_by_key(|&index| sort_key(plans[index].key()));
    let mut columns = KeyColumns::default();
    let mut responses: Vec<&[u8]> = Vec::with_capacity(answers.len());
    for &index in &answers {
        if let Some(KeyStep::Answer { key, response }) = &plans[index].key {
            columns.push(key);
            responses.push(response);
        }
    }
    let rows = sqlx::query(ANSWER_KEYS)
        .bind(&columns.stores)
        .bind(&columns.terminals)
        .bind(&columns.requests)
        .bind(&responses)
        .fetch_all(&mut *conn)
        .await
        .db()?;
    let answered = key_set(&rows)?;
    for index in answers {
        let key = plans[index].key().expect("an answer has a key");
        if !answered.contains(&key_tuple(key)) {
            states[index] = State::Taken;
        }
    }
    Ok(())
}

const RELEASE_KEYS: &str = "DELETE FROM idempotency_keys k \
     USING UNNEST($1::text[], $2::text[], $3::text[]) AS u(s, t, c) \
     WHERE k.store_id = u.s AND k.terminal_id = u.t AND k.client_request_id = u.c AND k.pending";

/// Deletes the pending keys of requests that may be sent again.
async fn release_keys(
    conn: &mut PgConnection,
    plans: &[Plan<'_>],
    live: &[usize],
) -> Result<(), StoreError> {
    let mut columns = KeyColumns::default();
    for &index in live {
        if let Some(KeyStep::Release { key }) = &plans[index].key {
            columns.push(key);
        }
    }
    if columns.stores.is_empty() {
        return Ok(());
    }
    sqlx::query(RELEASE_KEYS)
        .bind(&columns.stores)
        .bind(&columns.terminals)
        .bind(&columns.requests)
        .execute(&mut *conn)
        .await
        .db()?;
    Ok(())
}

const SELECT_KEYS: &str = "SELECT k.operation, k.request_digest, k.field_digests, k.transaction_id, \
     k.response, k.pending, k.store_id, k.terminal_id, k.client_request_id FROM idempotency_keys k \
     JOIN UNNEST($1::text[], $2::text[], $3::text[]) AS u(s, t, c) \
     ON k.store_id = u.s AND k.terminal_id = u.t AND k.client_request_id = u.c";

/// Reads the answers under the keys the round's `Taken` writes found held.
/// A claim whose key is gone (its holder in this batch was undone) runs
/// again in the next round.
async fn read_taken(
    conn: &mut PgConnection,
    plans: &[Plan<'_>],
    round: &[usize],
    states: &mut [State],
) -> Result<(), StoreError> {
    let taken: Vec<usize> = pick(round, |index| matches!(states[index], State::Taken));
    if taken.is_empty() {
        return Ok(());
    }
    let mut columns = KeyColumns::default();
    for &index in &taken {
        columns.push(plans[index].key().expect("a taken write has a key"));
    }
    let rows = sqlx::query(SELECT_KEYS)
        .bind(&columns.stores)
        .bind(&columns.terminals)
        .bind(&columns.requests)
        .fetch_all(&mut *conn)
        .await
        .db()?;
    let mut answers: HashMap<(String, String, String), StoredAnswer> = HashMap::new();
    for row in &rows {
        let key = (
            row.try_get(6).db()?,
            row.try_get(7).db()?,
            row.try_get(8).db()?,
        );
        answers.insert(key, crate::rows::answer(row)?);
    }
    for index in taken {
        let plan = &plans[index];
        let key = plan.key().expect("a taken write has a key");
        states[index] = match answers.get(&key_tuple(key)) {
            Some(answer) => State::Done(Ok(WriteOutcome::KeyTaken(answer.clone()))),
            None if matches!(plan.key, Some(KeyStep::Claim { .. })) => State::Again,
            None => State::Done(Err(StoreError::Invariant(
                "answer for a key nobody claimed".to_owned(),
            ))),
        };
    }
    Ok(())
}

/// The indices among `indices` that `keep` keeps, in order.
fn pick(indices: &[usize], keep: impl Fn(usize) -> bool) -> Vec<usize> {
    indices
        .iter()
        .copied()
        .filter(|&index| keep(index))
        .collect()
}

/// The first column of `rows`, as a set (the ids a step's `RETURNING` names).
fn first_column(rows: &[sqlx::postgres::PgRow]) -> Result<HashSet<String>, StoreError> {
    rows.iter().map(|row| row.try_get(0).db()).collect()
}

/// Key columns as arrays.
#[derive(Default)]
struct KeyColumns<'a> {
    stores: Vec<&'a str>,
    terminals: Vec<&'a str>,
    requests: Vec<&'a str>,
}

impl<'a> KeyColumns<'a> {
    fn push(&mut self, key: &'a IdempotencyKey) {
        self.stores.push(&key.store_id);
        self.terminals.push(&key.terminal_id);
        self.requests.push(&key.client_request_id);
    }
}

fn sort_key(key: Option<&IdempotencyKey>) -> Option<(&str, &str, &str)> {
    key.map(|key| {
        (
            key.store_id.as_str(),
            key.terminal_id.as_str(),
            key.client_request_id.as_str(),
        )
    })
}

fn key_tuple(key: &IdempotencyKey) -> (String, String, String) {
    (
        key.store_id.clone(),
        key.terminal_id.clone(),
        key.client_request_id.clone(),
    )
}

fn key_set(
    rows: &[sqlx::postgres::PgRow],
) -> Result<HashSet<(String, String, String)>, StoreError> {
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get(0).db()?,
                row.try_get(1).db()?,
                row.try_get(2).db()?,
            ))
        })
        .collect()
}

// ---- guarded steps ----------------------------------------------------

const ADJUST_CARD_REFUNDS: &str = "UPDATE card_payments c SET \
     refund_reserved_minor = c.refund_reserved_minor + u.reserve, \
     refunded_minor = c.refunded_minor + u.refunded \
     FROM UNNEST($1::text[], $2::int8[], $3::int8[]) AS u(id, reserve, refunded) \
     WHERE c.transaction_id = u.id \
     AND c.refunded_minor + c.refund_reserved_minor + u.reserve + u.refunded <= c.captured_minor \
     RETURNING c.transaction_id";
const ADJUST_WALLET_REFUNDS: &str = "UPDATE wallet_payments w SET \
     refund_reserved_minor = w.refund_reserved_minor + u.reserve, \
     refunded_minor = w.refunded_minor + u.refunded \
     FROM UNNEST($1::text[], $2::int8[], $3::int8[]) AS u(id, reserve, refunded), transactions t \
     WHERE w.transaction_id = u.id AND t.id = u.id \
     AND w.refunded_minor + w.refund_reserved_minor + u.reserve + u.refunded <= t.amount_minor \
     RETURNING w.transaction_id";
/// Moves reservations back by exactly what [`ADJUST_CARD_REFUNDS`] moved.
const UNDO_CARD_REFUNDS: &str = "UPDATE card_payments c SET \
     refund_reserved_minor = c.refund_reserved_minor - u.reserve, \
     refunded_minor = c.refunded_minor - u.refunded \
     FROM UNNEST($1::text[], $2::int8[], $3::int8[]) AS u(id, reserve, refunded) \
     WHERE c.transaction_id = u.id";
const UNDO_WALLET_REFUNDS: &str = "UPDATE wallet_payments w SET \
     refund_reserved_minor = w.refund_reserved_minor - u.reserve, \
     refunded_minor = w.refunded_minor - u.refunded \
     FROM UNNEST($1::text[], $2::int8[], $3::int8[]) AS u(id, reserve, refunded) \
     WHERE w.transaction_id = u.id";

/// Moves refund reservations; a refund beyond what its original has left
/// is `RefundExceeds` and returned for undoing.
async fn adjust_refunds(
    conn: &mut PgConnection,
    plans: &[Plan<'_>],
    live: &[usize],
    states: &mut [State],
) -> Result<Vec<usize>, StoreError> {
    let mut failed = Vec::new();
    for table in [RefundTable::Card, RefundTable::Wallet] {
        let mut refunds: Vec<(usize, &RefundAdjust)> = live
            .iter()
            .filter_map(|&index| match plans[index].refund {
                Some((refund, of)) if of == table => Some((index, refund)),
                _ => None,
            })
            .collect();
        if refunds.is_empty() {
            continue;
        }
        refunds.sort_by(|a, b| a.1.original_id.cmp(&b.1.original_id));
        let (sql, remaining_sql) = match table {
            RefundTable::Card => (ADJUST_CARD_REFUNDS, crate::card::sql::SELECT_REMAINING),
            RefundTable::Wallet => (ADJUST_WALLET_REFUNDS, crate::wallet::sql::SELECT_REMAINING),
        };
        let rows = refund_query(sql, &refunds)
            .fetch_all(&mut *conn)
            .await
            .db()?;
        let adjusted = first_column(&rows)?;
        for (index, refund) in refunds {
            if adjusted.contains(&refund.original_id) {
                continue;
            }
            let remaining: Option<i64> = sqlx::query_scalar(remaining_sql)
                .bind(&refund.original_id)
                .fetch_optional(&mut *conn)
                .await
                .db()?;
            states[index] = State::Done(Ok(WriteOutcome::RefundExceeds {
                remaining: remaining.unwrap_or(0),
            }));
            failed.push(index);
        }
    }
    Ok(failed)
}

fn refund_query<'q>(
    sql: &'static str,
    refunds: &[(usize, &'q RefundAdjust)],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let ids: Vec<&str> = refunds
        .iter()
        .map(|(_, r)| r.original_id.as_str())
        .collect();
    let reserve: Vec<i64> = refunds.iter().map(|(_, r)| r.reserve_delta).collect();
    let refunded: Vec<i64> = refunds.iter().map(|(_, r)| r.refunded_delta).collect();
    sqlx::query(sql).bind(ids).bind(reserve).bind(refunded)
}

const MOVE_STATUSES: &str = "UPDATE transactions t SET status = u.to_status, updated_at = u.at, \
     cancelled_at = CASE WHEN u.bill AND u.to_status = 'cancelled' THEN u.at ELSE t.cancelled_at END, \
     cancel_reason = CASE WHEN u.bill AND u.to_status = 'cancelled' THEN u.reason ELSE t.cancel_reason END \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bool[], $6::text[], $7::text[]) \
     AS u(id, from_status, to_status, at, bill, store_id, reason) \
     WHERE t.id = u.id AND t.status = u.from_status AND (NOT u.bill OR t.store_id = u.store_id) \
     RETURNING t.id";
const SELECT_STATUSES: &str =
    "SELECT id, store_id, status FROM transactions WHERE id = ANY($1::text[])";

/// Moves statuses, guarded by the state each write expects; a write that
/// finds its transaction elsewhere (or missing) is `StatusMismatch` naming
/// where it is, and returned for undoing.
async fn move_statuses(
    conn: &mut PgConnection,
    plans: &[Plan<'_>],
    live: &[usize],
    states: &mut [State],
) -> Result<Vec<usize>, StoreError> {
    let mut moves: Vec<usize> = pick(live, |index| plans[index].moves.is_some());
    if moves.is_empty() {
        return Ok(Vec::new());
    }
    moves.sort_by_key(|&index| plans[index].transaction_id);
    let mut columns = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for &index in &moves {
        let plan = &plans[index];
        let step = plan.moves.as_ref().expect("filtered on moves");
        let (store, reason) = step.bill.unwrap_or(("", ""));
        columns.0.push(plan.transaction_id);
        columns.1.push(step.from.as_str());
        columns.2.push(step.to.as_str());
        columns.3.push(step.at);
        columns.4.push(step.bill.is_some());
        columns.5.push(store);
        columns.6.push(reason);
    }
    let rows = sqlx::query(MOVE_STATUSES)
        .bind(&columns.0)
        .bind(&columns.1)
        .bind(&columns.2)
        .bind(&columns.3)
        .bind(&columns.4)
        .bind(&columns.5)
        .bind(&columns.6)
        .fetch_all(&mut *conn)
        .await
        .db()?;
    let done = first_column(&rows)?;
    let failed: Vec<usize> = moves
        .into_iter()
        .filter(|&index| !done.contains(plans[index].transaction_id))
        .collect();
    if failed.is_empty() {
        return Ok(failed);
    }
    let ids: Vec<&str> = failed
        .iter()
        .map(|&index| plans[index].transaction_id)
        .collect();
    let rows = sqlx::query(SELECT_STATUSES)
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await
        .db()?;
    let mut current: HashMap<String, (String, String)> = HashMap::new();
    for row in &rows {
        current.insert(
            row.try_get(0).db()?,
            (row.try_get(1).db()?, row.try_get(2).db()?),
        );
    }
    for &index in &failed {
        let plan = &plans[index];
        let store = plan.moves.as_ref().and_then(|step| step.bill).map(|b| b.0);
        let found = match current.get(plan.transaction_id) {
            Some((its_store, text)) if store.is_none_or(|store| store == its_store) => {
                Some(TransactionStatus::parse(text)?)
            }
            _ => None,
        };
        states[index] = State::Done(Ok(WriteOutcome::StatusMismatch { current: found }));
    }
    Ok(failed)
}

const CLAIM_SLIPS: &str = "INSERT INTO bill_slip_claims (biller_id, bill_reference, period, \
     amount_minor, transaction_id) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[]) \
     ON CONFLICT DO NOTHING RETURNING transaction_id";

/// Claims the slips of new batch-biller payments; a slip another live
/// payment holds is `SlipAlreadyPaid` and returned for undoing.
async fn claim_slips(
    conn: &mut PgConnection,
    plans: &[Plan<'_>],
    live: &[usize],
    states: &mut [State],
) -> Result<Vec<usize>, StoreError> {
    let mut claims: Vec<(usize, &TransactionRecord)> = live
        .iter()
        .filter_map(|&index| match plans[index].create {
            Some(Create::Bill(record)) if plans[index].claims_slip => Some((index, record)),
            _ => None,
        })
        .collect();
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    claims.sort_by(|a, b| {
        let slip = |r: &TransactionRecord| {
            (
                r.bill.biller_id.clone(),
                r.bill.bill_reference.clone(),
                r.bill.period.clone(),
                r.amount_minor,
            )
        };
        slip(a.1).cmp(&slip(b.1))
    });
    let rows = sqlx::query(CLAIM_SLIPS)
        .bind(
            claims
                .iter()
                .map(|(_, r)| r.bill.biller_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            claims
                .iter()
                .map(|(_, r)| r.bill.bill_reference.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            claims
                .iter()
                .map(|(_, r)| r.bill.period.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            claims
                .iter()
                .map(|(_, r)| r.amount_minor)
                .collect::<Vec<_>>(),
        )
        .bind(
            claims
                .iter()
                .map(|(_, r)| r.id.as_str())
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut *conn)
        .await
        .db()?;
    let claimed = first_column(&rows)?;
    let mut failed = Vec::new();
    for (index, record) in claims {
        if claimed.contains(&record.id) {
            continue;
        }
        let bill = &record.bill;
        states[index] = State::Done(Err(StoreError::SlipAlreadyPaid {
            biller_id: bill.biller_id.clone(),
            bill_reference: bill.bill_reference.clone(),
            period: bill.period.clone(),
        }));
        failed.push(index);
    }
    Ok(failed)
}

/// What of a failed write's earlier steps to undo.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Undo(u8);

impl Undo {
    const KEY: Self = Self(1);
    const REFUND: Self = Self(2);
    const CREATED: Self = Self(4);

    fn has(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }
}

impl std::ops::BitOr for Undo {
    type Output = Self;
    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

const UNDO_CLAIMS: &str = "DELETE FROM idempotency_keys k \
     USING UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) AS u(s, t, c, x) \
     WHERE k.store_id = u.s AND k.terminal_id = u.t AND k.client_request_id = u.c \
     AND k.transaction_id = u.x";
const UNDO_ANSWERS: &str = "UPDATE idempotency_keys k SET response = ''::bytea, pending = TRUE \
     FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u(s, t, c) \
     WHERE k.store_id = u.s AND k.terminal_id = u.t AND k.client_request_id = u.c";
const UNDO_BILLS: &str = "DELETE FROM bill_payments WHERE transaction_id = ANY($1::text[])";
const UNDO_TRANSACTIONS: &str = "DELETE FROM transactions WHERE id = ANY($1::text[])";

/// Undoes exactly what the failed writes' earlier steps did, so that
/// nothing of them stays and the rest of the batch goes on.
async fn undo(
    conn: &mut PgConnection,
    plans: &[Plan<'_>],
    failed: &[usize],
    what: Undo,
) -> Result<(), StoreError> {
    if failed.is_empty() {
        return Ok(());
    }
    if what.has(Undo::KEY) {
        let mut claims = KeyColumns::default();
        let mut claim_ids = Vec::new();
        let mut answers = KeyColumns::default();
        for &index in failed {
            match &plans[index].key {
                Some(KeyStep::Claim { key, .. }) => {
                    claims.push(key);
                    claim_ids.push(plans[index].transaction_id);
                }
                Some(KeyStep::Answer { key, .. }) => answers.push(key),
                Some(KeyStep::Release { .. }) | None => {}
            }
        }
        if !claim_ids.is_empty() {
            sqlx::query(UNDO_CLAIMS)
                .bind(&claims.stores)
                .bind(&claims.terminals)
                .bind(&claims.requests)
                .bind(&claim_ids)
                .execute(&mut *conn)
                .await
                .db()?;
        }
        if !answers.stores.is_empty() {
            sqlx::query(UNDO_ANSWERS)
                .bind(&answers.stores)
                .bind(&answers.terminals)
                .bind(&answers.requests)
                .execute(&mut *conn)
                .await
                .db()?;
        }
    }
    if what.has(Undo::REFUND) {
        for (table, sql) in [
            (RefundTable::Card, UNDO_CARD_REFUNDS),
            (RefundTable::Wallet, UNDO_WALLET_REFUNDS),
        ] {
            let refunds: Vec<(usize, &RefundAdjust)> = failed
                .iter()
                .filter_map(|&index| match plans[index].refund {
                    Some((refund, of)) if of == table => Some((index, refund)),
                    _ => None,
                })
                .collect();
            if !refunds.is_empty() {
                refund_query(sql, &refunds).execute(&mut *conn).await.db()?;
            }
        }
    }
    if what.has(Undo::CREATED) {
        // Only bill payments claim slips, so only they are created and undone.
        let ids: Vec<&str> = failed
            .iter()
            .filter(|&&index| matches!(plans[index].create, Some(Create::Bill(_))))
            .map(|&index| plans[index].transaction_id)
            .collect();
        if !ids.is_empty() {
            for sql in [UNDO_BILLS, UNDO_TRANSACTIONS] {
                sqlx::query(sql).bind(&ids).execute(&mut *conn).await.db()?;
            }
        }
    }
    Ok(())
}

// ---- new rows ---------------------------------------------------------

const INSERT_TRANSACTIONS: &str = "INSERT INTO transactions (id, kind, status, store_id, terminal_id, \
     operator_id, client_request_id, partner_id, amount_minor, currency, fee_minor, business_date, \
     created_at, updated_at) \
     SELECT u.*, u.created_at FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
     $6::text[], $7::text[], $8::text[], $9::int8[], $10::text[], $11::int8[], $12::date[], \
     $13::timestamptz[]) AS u(id, kind, status, store_id, terminal_id, operator_id, client_request_id, \
     partner_id, amount_minor, currency, fee_minor, business_date, created_at)";
const INSERT_BILLS: &str = "INSERT INTO bill_payments (transaction_id, biller_id, agency_code, \
     bill_reference, due_date, period, late) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::date[], $6::text[], $7::bool[])";
const INSERT_CARDS: &str = "INSERT INTO card_payments (transaction_id, card_type, route, masked_pan, \
     pan_fingerprint, card_brand, entry_mode, cardholder_verification, merchant_id, bank_terminal_id, \
     stan, rrn, transmitted_at, request_mti, response_code, approval_code, captured_minor, refunded_minor, \
     refund_reserved_minor, loyalty_points, loyalty_balance, original_transaction_id, pos_reference, \
     authorization_expires_at, advice_pending) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
     $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::timestamptz[], \
     $14::text[], $15::text[], $16::text[], $17::int8[], $18::int8[], $19::int8[], $20::int8[], \
     $21::int8[], $22::text[], $23::text[], $24::timestamptz[], $25::bool[])";
const INSERT_WALLETS: &str = "INSERT INTO wallet_payments (transaction_id, wallet_type, \
     wallet_operator_id, wallet_ref, account_id, display_id, operator_name, funding, decline_reason, \
     operator_response_code, operator_reference, response_text, balance_after_minor, refunded_minor, \
     refund_reserved_minor, original_transaction_id, pos_reference) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
     $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::int8[], \
     $14::int8[], $15::int8[], $16::text[], $17::text[])";

/// The `transactions` columns of new rows.
#[derive(Default)]
struct TransactionColumns<'a> {
    id: Vec<&'a str>,
    kind: Vec<&'static str>,
    status: Vec<&'static str>,
    store_id: Vec<&'a str>,
    terminal_id: Vec<&'a str>,
    operator_id: Vec<&'a str>,
    client_request_id: Vec<&'a str>,
    partner_id: Vec<String>,
    amount_minor: Vec<i64>,
    currency: Vec<&'a str>,
    fee_minor: Vec<i64>,
    business_date: Vec<NaiveDate>,
    created_at: Vec<DateTime<Utc>>,
}

impl<'a> TransactionColumns<'a> {
    fn push(&mut self, create: &Create<'a>) {
        match *create {
            Create::Bill(r) => self.row(
                &r.id,
                r.kind,
                r.status,
                [
                    &r.store_id,
                    &r.terminal_id,
                    &r.operator_id,
                    &r.client_request_id,
                ],
                r.partner_id.clone(),
                (r.amount_minor, &r.currency, r.fee_minor),
                (r.business_date, r.created_at),
            ),
            Create::Card(r) => self.row(
                &r.id,
                TransactionKind::CardPayment,
                r.status,
                [
                    &r.store_id,
                    &r.terminal_id,
                    &r.operator_id,
                    &r.client_request_id,
                ],
                r.link_id.clone(),
                (r.amount_minor, &r.currency, 0),
                (r.business_date, r.created_at),
            ),
            Create::Wallet(r) => self.row(
                &r.id,
                TransactionKind::WalletPayment,
                r.status,
                [
                    &r.store_id,
                    &r.terminal_id,
                    &r.operator_id,
                    &r.client_request_id,
                ],
                posgate_core::model::Party::Wallet(r.wallet_operator_id.clone()).to_string(),
                (r.amount_minor, &r.currency, 0),
                (r.business_date, r.created_at),
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn row(
        &mut self,
        id: &'a str,
        kind: TransactionKind,
        status: TransactionStatus,
        who: [&'a str; 4],
        partner_id: String,
        (amount_minor, currency, fee_minor): (i64, &'a str, i64),
        (business_date, created_at): (NaiveDate, DateTime<Utc>),
    ) {
        self.id.push(id);
        self.kind.push(kind.as_str());
        self.status.push(status.as_str());
        self.store_id.push(who[0]);
        self.terminal_id.push(who[1]);
        self.operator_id.push(who[2]);
        self.client_request_id.push(who[3]);
        self.partner_id.push(partner_id);
        self.amount_minor.push(amount_minor);
        self.currency.push(currency);
        self.fee_minor.push(fee_minor);
        self.business_date.push(business_date);
        self.created_at.push(created_at);
    }
}

/// Inserts the round's new transactions and their kind's rows.
async fn insert_transactions(
    conn: &mut PgConnection,
    plans: &[Plan<'_>],
    live: &[usize],
) -> Result<(), StoreError> {
    let mut creates: Vec<&Create<'_>> = live
        .iter()
        .filter_map(|&index| plans[index].create.as_ref())
        .collect();
    if creates.is_empty() {
        return Ok(());
    }
    creates.sort_by_key(|create| match create {
        Create::Bill(r) => r.id.as_str(),
        Create::Card(r) => r.id.as_str(),
        Create::Wallet(r) => r.id.as_str(),
    });
    let mut t = TransactionColumns::default();
    for create in &creates {
        t.push(create);
    }
    sqlx::query(INSERT_TRANSACTIONS)
        .bind(&t.id)
        .bind(&t.kind)
        .bind(&t.status)
        .bind(&t.store_id)
        .bind(&t.terminal_id)
        .bind(&t.operator_id)
        .bind(&t.client_request_id)
        .bind(&t.partner_id)
        .bind(&t.amount_minor)
        .bind(&t.currency)
        .bind(&t.fee_minor)
        .bind(&t.business_date)
        .bind(&t.created_at)
        .execute(&mut *conn)
        .await
        .db()?;
    let bills: Vec<&TransactionRecord> = creates
        .iter()
        .filter_map(|create| match create {
            Create::Bill(r) => Some(*r),
            _ => None,
        })
        .collect();
    if !bills.is_empty() {
        sqlx::query(INSERT_BILLS)
            .bind(bills.iter().map(|r| r.id.as_str()).collect::<Vec<_>>())
            .bind(
                bills
                    .iter()
                    .map(|r| r.bill.biller_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                bills
                    .iter()
                    .map(|r| r.bill.agency_code.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                bills
                    .iter()
                    .map(|r| r.bill.bill_reference.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(bills.iter().map(|r| r.bill.due_date).collect::<Vec<_>>())
            .bind(
                bills
                    .iter()
                    .map(|r| r.bill.period.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(bills.iter().map(|r| r.bill.late).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await
            .db()?;
    }
    let cards: Vec<&CardRecord> = creates
        .iter()
        .filter_map(|create| match create {
            Create::Card(r) => Some(*r),
            _ => None,
        })
        .collect();
    if !cards.is_empty() {
        insert_cards(conn, &cards).await?;
    }
    let wallets: Vec<&WalletRecord> = creates
        .iter()
        .filter_map(|create| match create {
            Create::Wallet(r) => Some(*r),
            _ => None,
        })
        .collect();
    if !wallets.is_empty() {
        insert_wallets(conn, &wallets).await?;
    }
    Ok(())
}

/// Collects one column of `rows` as an array.
fn column<'r, R, T>(rows: &[&'r R], get: impl Fn(&'r R) -> T) -> Vec<T> {
    rows.iter().map(|row| get(row)).collect()
}

async fn insert_cards(conn: &mut PgConnection, cards: &[&CardRecord]) -> Result<(), StoreError> {
    sqlx::query(INSERT_CARDS)
        .bind(column(cards, |r| r.id.as_str()))
        .bind(column(cards, |r| r.card_type.as_str()))
        .bind(column(cards, |r| r.route.as_str()))
        .bind(column(cards, |r| r.masked_pan.as_str()))
        .bind(column(cards, |r| r.pan_fingerprint.as_str()))
        .bind(column(cards, |r| r.card_brand.as_str()))
        .bind(column(cards, |r| r.entry_mode.as_str()))
        .bind(column(cards, |r| r.cardholder_verification.as_str()))
        .bind(column(cards, |r| r.merchant_id.as_str()))
        .bind(column(cards, |r| r.bank_terminal_id.as_str()))
        .bind(column(cards, |r| r.stan.as_str()))
        .bind(column(cards, |r| r.rrn.as_str()))
        .bind(column(cards, |r| r.transmitted_at))
        .bind(column(cards, |r| r.request_mti.as_str()))
        .bind(column(cards, |r| r.response_code.as_str()))
        .bind(column(cards, |r| r.approval_code.as_str()))
        .bind(column(cards, |r| r.captured_minor))
        .bind(column(cards, |r| r.refunded_minor))
        .bind(column(cards, |r| r.refund_reserved_minor))
        .bind(column(cards, |r| r.loyalty_points))
        .bind(column(cards, |r| r.loyalty_balance))
        .bind(column(cards, |r| r.original_transaction_id.as_deref()))
        .bind(column(cards, |r| r.pos_reference.as_str()))
        .bind(column(cards, |r| r.authorization_expires_at))
        .bind(column(cards, |r| r.advice_pending))
        .execute(&mut *conn)
        .await
        .db()?;
    Ok(())
}

async fn insert_wallets(
    conn: &mut PgConnection,
    wallets: &[&WalletRecord],
) -> Result<(), StoreError> {
    sqlx::query(INSERT_WALLETS)
        .bind(column(wallets, |r| r.id.as_str()))
        .bind(column(wallets, |r| r.wallet_type.as_str()))
        .bind(column(wallets, |r| r.wallet_operator_id.as_str()))
        .bind(column(wallets, |r| r.wallet_ref.as_str()))
        .bind(column(wallets, |r| r.outcome.account_id.as_str()))
        .bind(column(wallets, |r| r.outcome.display_id.as_str()))
        .bind(column(wallets, |r| r.outcome.operator_name.as_str()))
        .bind(column(wallets, |r| r.funding.as_str()))
        .bind(column(wallets, |r| r.outcome.decline_reason.as_str()))
        .bind(column(wallets, |r| {
            r.outcome.operator_response_code.as_str()
        }))
        .bind(column(wallets, |r| r.outcome.operator_reference.as_str()))
        .bind(column(wallets, |r| r.outcome.response_text.as_str()))
        .bind(column(wallets, |r| r.outcome.balance_after_minor))
        .bind(column(wallets, |r| r.refunded_minor))
        .bind(column(wallets, |r| r.refund_reserved_minor))
        .bind(column(wallets, |r| r.original_transaction_id.as_deref()))
        .bind(column(wallets, |r| r.pos_reference.as_str()))
        .execute(&mut *conn)
        .await
        .db()?;
    Ok(())
}

const UPDATE_CARDS: &str = "UPDATE card_payments c SET \
     response_code = COALESCE(u.response_code, c.response_code), \
     approval_code = COALESCE(u.approval_code, c.approval_code), \
     captured_minor = COALESCE(u.captured_minor, c.captured_minor), \
     loyalty_points = CASE WHEN u.loyalty_set THEN u.points ELSE c.loyalty_points END, \
     loyalty_balance = CASE WHEN u.loyalty_set THEN u.balance ELSE c.loyalty_balance END, \
     authorization_expires_at = CASE WHEN u.expiry_set THEN u.expiry ELSE c.authorization_expires_at END, \
     advice_pending = COALESCE(u.advice_pending, c.advice_pending) \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::bool[], $6::int8[], $7::int8[], \
     $8::bool[], $9::timestamptz[], $10::bool[]) AS u(id, response_code, approval_code, captured_minor, \
     loyalty_set, points, balance, expiry_set, expiry, advice_pending) \
     WHERE c.transaction_id = u.id";
const UPDATE_WALLETS: &str = "UPDATE wallet_payments w SET account_id = u.account_id, \
     display_id = u.display_id, operator_name = u.operator_name, decline_reason = u.decline_reason, \
     operator_response_code = u.operator_response_code, operator_reference = u.operator_reference, \
     response_text = u.response_text, balance_after_minor = u.balance_after_minor \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
     $8::text[], $9::int8[]) AS u(id, account_id, display_id, operator_name, decline_reason, \
     operator_response_code, operator_reference, response_text, balance_after_minor) \
     WHERE w.transaction_id = u.id";
const FREE_SLIPS: &str = "DELETE FROM bill_slip_claims WHERE transaction_id = ANY($1::text[])";

/// The card and wallet rows' new facts, and the slips cancellations free.
async fn update_kind_rows(
    conn: &mut PgConnection,
    plans: &[Plan<'_>],
    live: &[usize],
) -> Result<(), StoreError> {
    let mut cards: Vec<&CardUpdate> = live
        .iter()
        .filter_map(|&index| plans[index].card_update)
        .collect();
    if !cards.is_empty() {
        cards.sort_by(|a, b| a.transaction_id.cmp(&b.transaction_id));
        sqlx::query(UPDATE_CARDS)
            .bind(column(&cards, |u| u.transaction_id.as_str()))
            .bind(column(&cards, |u| u.response_code.as_deref()))
            .bind(column(&cards, |u| u.approval_code.as_deref()))
            .bind(column(&cards, |u| u.captured_minor))
            .bind(column(&cards, |u| u.loyalty.is_some()))
            .bind(column(&cards, |u| u.loyalty.map(|(points, _)| points)))
            .bind(column(&cards, |u| {
                u.loyalty.and_then(|(_, balance)| balance)
            }))
            .bind(column(&cards, |u| u.authorization_expires_at.is_some()))
            .bind(column(&cards, |u| u.authorization_expires_at.flatten()))
            .bind(column(&cards, |u| u.advice_pending))
            .execute(&mut *conn)
            .await
            .db()?;
    }
    let mut wallets: Vec<(&str, &WalletOutcome)> = live
        .iter()
        .filter_map(|&index| {
            let plan = &plans[index];
            plan.wallet_outcome
                .map(|outcome| (plan.transaction_id, outcome))
        })
        .collect();
    if !wallets.is_empty() {
        wallets.sort_by_key(|(id, _)| *id);
        let outcomes: Vec<&WalletOutcome> = wallets.iter().map(|(_, o)| *o).collect();
        sqlx::query(UPDATE_WALLETS)
            .bind(wallets.iter().map(|(id, _)| *id).collect::<Vec<_>>())
            .bind(column(&outcomes, |o| o.account_id.as_str()))
            .bind(column(&outcomes, |o| o.display_id.as_str()))
            .bind(column(&outcomes, |o| o.operator_name.as_str()))
            .bind(column(&outcomes, |o| o.decline_reason.as_str()))
            .bind(column(&outcomes, |o| o.operator_response_code.as_str()))
            .bind(column(&outcomes, |o| o.operator_reference.as_str()))
            .bind(column(&outcomes, |o| o.response_text.as_str()))
            .bind(column(&outcomes, |o| o.balance_after_minor))
            .execute(&mut *conn)
            .await
            .db()?;
    }
    let freed: Vec<&str> = live
        .iter()
        .filter(|&&index| plans[index].frees_slip)
        .map(|&index| plans[index].transaction_id)
        .collect();
    if !freed.is_empty() {
        sqlx::query(FREE_SLIPS)
            .bind(&freed)
            .execute(&mut *conn)
            .await
            .db()?;
    }
    Ok(())
}

// ---- queue, lines, events, chain ---------------------------------------

const INSERT_SAF: &str = "INSERT INTO saf_queue (transaction_id, link_id, kind, amount_minor, \
     currency, next_attempt_at, created_at) \
     SELECT q.transaction_id, q.link_id, q.kind, q.amount_minor, q.currency, q.next_attempt_at, \
     q.created_at FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], \
     $6::timestamptz[], $7::timestamptz[]) WITH ORDINALITY \
     AS q(transaction_id, link_id, kind, amount_minor, currency, next_attempt_at, created_at, ord) \
     ORDER BY q.ord";
const ACK_SAF: &str = "UPDATE saf_queue q SET acked_at = u.at \
     FROM UNNEST($1::int8[], $2::timestamptz[]) AS u(id, at) \
     WHERE q.id = u.id AND q.acked_at IS NULL";
const INSERT_LINES: &str = "INSERT INTO settlement_lines (transaction_id, business_date, party, kind, \
     currency, amount_minor, created_at, store_id, reference) \
     SELECT t.id, l.business_date, l.party, l.kind, l.currency, l.amount_minor, l.created_at, \
     t.store_id, COALESCE(b.bill_reference, c.rrn, w.operator_reference, '') \
     FROM UNNEST($1::text[], $2::date[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], \
     $7::int8[]) WITH ORDINALITY \
     AS l(transaction_id, business_date, created_at, party, kind, currency, amount_minor, ord) \
     JOIN transactions t ON t.id = l.transaction_id \
     LEFT JOIN bill_payments b ON b.transaction_id = t.id \
     LEFT JOIN card_payments c ON c.transaction_id = t.id \
     LEFT JOIN wallet_payments w ON w.transaction_id = t.id \
     ORDER BY l.ord";
const INSERT_EVENTS: &str = "INSERT INTO transaction_events (transaction_id, event_type, from_status, \
     to_status, actor, detail, at) \
     SELECT e.transaction_id, e.event_type, e.from_status, e.to_status, e.actor, e.detail, e.at \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
     $7::timestamptz[]) WITH ORDINALITY \
     AS e(transaction_id, event_type, from_status, to_status, actor, detail, at, ord) ORDER BY e.ord";

/// The rows every written write appends, in the writes' order: queue
/// entries and acknowledgements, settlement lines, events; and the events'
/// chain entries, queued in `chain` for the batch's end.
async fn append_rows(
    conn: &mut PgConnection,
    plans: &[Plan<'_>],
    written: &[usize],
    line_dates: &[(NaiveDate, bool)],
    chain: &mut Vec<EntryContent>,
) -> Result<(), StoreError> {
    if written.is_empty() {
        return Ok(());
    }
    let queued: Vec<(&str, DateTime<Utc>, &NewSafItem)> = written
        .iter()
        .flat_map(|&index| {
            let plan = &plans[index];
            plan.enqueue
                .iter()
                .map(move |item| (plan.transaction_id, plan.at, item))
        })
        .collect();
    if !queued.is_empty() {
        let items: Vec<&NewSafItem> = queued.iter().map(|(_, _, item)| *item).collect();
        sqlx::query(INSERT_SAF)
            .bind(queued.iter().map(|(id, _, _)| *id).collect::<Vec<_>>())
            .bind(column(&items, |i| i.link_id.as_str()))
            .bind(column(&items, |i| i.kind.as_str()))
            .bind(column(&items, |i| i.amount_minor))
            .bind(column(&items, |i| i.currency.as_str()))
            .bind(column(&items, |i| i.next_attempt_at))
            .bind(queued.iter().map(|(_, at, _)| *at).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await
            .db()?;
    }
    let acked: Vec<(i64, DateTime<Utc>)> = written
        .iter()
        .flat_map(|&index| {
            let plan = &plans[index];
            plan.acked.iter().map(move |id| (*id, plan.at))
        })
        .collect();
    if !acked.is_empty() {
        sqlx::query(ACK_SAF)
            .bind(acked.iter().map(|(id, _)| *id).collect::<Vec<_>>())
            .bind(acked.iter().map(|(_, at)| *at).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await
            .db()?;
    }
    insert_lines(conn, plans, written, line_dates).await?;
    insert_events(conn, plans, written, chain).await
}

async fn insert_lines(
    conn: &mut PgConnection,
    plans: &[Plan<'_>],
    written: &[usize],
    line_dates: &[(NaiveDate, bool)],
) -> Result<(), StoreError> {
    let mut ids = Vec::new();
    let mut dates = Vec::new();
    let mut ats = Vec::new();
    let mut parties = Vec::new();
    let mut kinds = Vec::new();
    let mut currencies = Vec::new();
    let mut amounts = Vec::new();
    for &index in written {
        let plan = &plans[index];
        let (date, moved) = line_dates[index];
        for line in plan.lines {
            ids.push(plan.transaction_id);
            dates.push(date);
            ats.push(plan.at);
            parties.push(line.party.as_str());
            // A late line lands on the next open day as an adjustment.
            kinds.push(if moved {
                crate::clearing::adjustment_kind(&line.kind)
            } else {
                line.kind.clone()
            });
            currencies.push(line.currency.as_str());
            amounts.push(line.amount_minor);
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    let inserted = sqlx::query(INSERT_LINES)
        .bind(&ids)
        .bind(&dates)
        .bind(&ats)
        .bind(&parties)
        .bind(&kinds)
        .bind(&currencies)
        .bind(&amounts)
        .execute(&mut *conn)
        .await
        .db()?
        .rows_affected();
    // The lines take their facts from the transaction's row; fewer
    // inserted means a write's transaction row is missing.
    if inserted != ids.len() as u64 {
        return Err(StoreError::Invariant(format!(
            "{inserted} of {} settlement lines were written",
            ids.len()
        )));
    }
    Ok(())
}

/// Inserts the written writes' events, with the RECEIVED event that
/// `audit.proto` puts first in every transaction's history: a write that
/// creates a transaction (its event comes from no state) and records
/// another first state (a bill PAID, a card request SENT) gets its RECEIVED
/// right before. Every event goes through here, so none escapes the chain.
async fn insert_events(
    conn: &mut PgConnection,
    plans: &[Plan<'_>],
    written: &[usize],
    chain: &mut Vec<EntryContent>,
) -> Result<(), StoreError> {
    let accepted = TransactionStatus::InProgress;
    let mut rows: Vec<(&str, Event, DateTime<Utc>)> = Vec::new();
    for &index in written {
        let plan = &plans[index];
        let event = plan.event;
        let received = event.from_status.is_none() && event.event_type != "received";
        if received {
            rows.push((
                plan.transaction_id,
                Event {
                    event_type: "received".to_owned(),
                    from_status: None,
                    to_status: accepted,
                    actor: event.actor.clone(),
                    detail: "request accepted".to_owned(),
                },
                plan.at,
            ));
        }
        rows.push((
            plan.transaction_id,
            Event {
                from_status: if received {
                    Some(accepted)
                } else {
                    event.from_status
                },
                ..event.clone()
            },
            plan.at,
        ));
    }
    let events: Vec<&Event> = rows.iter().map(|(_, event, _)| event).collect();
    sqlx::query(INSERT_EVENTS)
        .bind(rows.iter().map(|(id, _, _)| *id).collect::<Vec<_>>())
        .bind(column(&events, |e| e.event_type.as_str()))
        .bind(column(&events, |e| {
            e.from_status.map(TransactionStatus::as_str)
        }))
        .bind(column(&events, |e| e.to_status.as_str()))
        .bind(column(&events, |e| e.actor.as_str()))
        .bind(column(&events, |e| e.detail.as_str()))
        .bind(rows.iter().map(|(_, _, at)| *at).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await
        .db()?;
    chain.extend(rows.into_iter().map(|(id, event, at)| EntryContent {
        entry_type: EntryType::Event,
        transaction_id: Some(id.to_owned()),
        event_type: event.event_type,
        from_status: event.from_status.map(|status| status.as_str().to_owned()),
        to_status: Some(event.to_status.as_str().to_owned()),
        actor: event.actor,
        detail: event.detail,
        occurred_at: canonical_time(at),
    }));
    Ok(())
}

const APPEND_CHAIN: &str = "WITH appended AS (INSERT INTO audit_chain (sequence, entry_type, \
     transaction_id, event_type, from_status, to_status, actor, detail, occurred_at, prev_hash, \
     entry_hash) SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], \
     $6::text[], $7::text[], $8::text[], $9::text[], $10::bytea[], $11::bytea[])) \
     UPDATE audit_head SET head_hash = $12 WHERE id = 1";

/// Appends the batch's chain entries: advance the head by their number
/// (its row lock is held from here to the COMMIT), hash them in order in
/// memory, and write them and the new head hash in one statement.
pub(crate) async fn append_chain(
    conn: &mut PgConnection,
    contents: &[EntryContent],
) -> Result<i64, StoreError> {
    let count = i64::try_from(contents.len()).unwrap_or(i64::MAX);
    let (last, prev_hash): (i64, Vec<u8>) = sqlx::query_as(crate::audit::sql::ADVANCE_HEAD)
        .bind(count)
        .fetch_one(&mut *conn)
        .await
        .db()?;
    if contents.is_empty() {
        return Ok(last);
    }
    let (links, head_hash) = crate::audit::chain_links(prev_hash, last - count + 1, contents);
    let mut sequences = Vec::with_capacity(links.len());
    let mut prev_hashes = Vec::with_capacity(links.len());
    let mut hashes = Vec::with_capacity(links.len());
    for (sequence, prev, hash) in links {
        sequences.push(sequence);
        prev_hashes.push(prev);
        hashes.push(hash);
    }
    let contents: Vec<&EntryContent> = contents.iter().collect();
    sqlx::query(APPEND_CHAIN)
        .bind(&sequences)
        .bind(column(&contents, |c| c.entry_type.as_str()))
        .bind(column(&contents, |c| c.transaction_id.as_deref()))
        .bind(column(&contents, |c| c.event_type.as_str()))
        .bind(column(&contents, |c| c.from_status.as_deref()))
        .bind(column(&contents, |c| c.to_status.as_deref()))
        .bind(column(&contents, |c| c.actor.as_str()))
        .bind(column(&contents, |c| c.detail.as_str()))
        .bind(column(&contents, |c| c.occurred_at.as_str()))
        .bind(&prev_hashes)
        .bind(&hashes)
        .bind(&head_hash)
        .execute(&mut *conn)
        .await
        .db()?;
    Ok(last)
}
