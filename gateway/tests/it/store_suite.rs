//! The store suite: the same cases against SQLite and PostgreSQL.

use std::sync::Arc;

use posgate_core::model::idempotency::FingerprintBuilder;
use posgate_core::model::transaction::{
    BillDetail, Event, SettlementLine, TransactionKind, TransactionRecord, TransactionStatus,
};
use posgate_core::model::{IdempotencyKey, StoredAnswer};
use posgate_core::ports::db::{
    Change, Database, StatusChange, StoreError, WriteOutcome, WriteRequest,
};

use crate::support::{Backend, TestDb, backends, date, utc};

fn record(id: &str) -> TransactionRecord {
    let at = utc("2026-11-23T03:00:00Z");
    TransactionRecord {
        id: id.to_owned(),
        kind: TransactionKind::BillPayment,
        status: TransactionStatus::Paid,
        store_id: "S001".to_owned(),
        terminal_id: "T01".to_owned(),
        operator_id: "OP1".to_owned(),
        client_request_id: format!("key-{id}"),
        partner_id: "TPC".to_owned(),
        amount_minor: 123_400,
        currency: "TWD".to_owned(),
        fee_minor: 1_000,
        business_date: date("2026-11-23"),
        created_at: at,
        updated_at: at,
        cancelled_at: None,
        cancel_reason: None,
        bill: BillDetail {
            biller_id: "TPC".to_owned(),
            agency_code: "TPC".to_owned(),
            bill_reference: "0000KS2025080001".to_owned(),
            due_date: Some(date("2026-12-31")),
            period: "1511".to_owned(),
            late: false,
        },
    }
}

fn lines(sign: i64) -> Vec<SettlementLine> {
    let line = |party: &str, kind: &str, amount: i64| SettlementLine {
        party: party.to_owned(),
        kind: kind.to_owned(),
        currency: "TWD".to_owned(),
        amount_minor: amount * sign,
    };
    vec![
        line("store:S001", "collection", -123_400),
        line("biller:TPC", "collection", 123_400),
        line("biller:TPC", "fee", -1_000),
        line("chain", "fee", 1_000),
    ]
}

fn create(id: &str, key: &str, amount_digest: &str) -> WriteRequest {
    let at = utc("2026-11-23T03:00:00Z");
    WriteRequest {
        key: IdempotencyKey {
            store_id: "S001".into(),
            terminal_id: "T01".into(),
            client_request_id: key.into(),
        },
        answer: StoredAnswer {
            fingerprint: FingerprintBuilder::new("PayBill")
                .value("amount.amount_minor", amount_digest)
                .finish(),
            transaction_id: id.to_owned(),
            response: format!("answer for {id}").into_bytes(),
            pending: false,
        },
        created_at: at,
        expires_at: at + chrono::Duration::days(30),
        change: Change::Create(Box::new(record(id))),
        lines: lines(1),
        event: Event {
            event_type: "bill_paid".into(),
            from_status: None,
            to_status: TransactionStatus::Paid,
            actor: "store/S001/terminal/T01/operator/OP1".into(),
            detail: "cash".into(),
        },
        claims_slip: false,
    }
}

fn cancel(id: &str, key: &str) -> WriteRequest {
    let at = utc("2026-11-23T04:00:00Z");
    let mut request = create(id, key, "cancel");
    request.answer.fingerprint = FingerprintBuilder::new("CancelBill")
        .value("transaction_id", id)
        .finish();
    request.created_at = at;
    request.change = Change::Transition(StatusChange {
        transaction_id: id.to_owned(),
        store_id: "S001".to_owned(),
        from: TransactionStatus::Paid,
        to: TransactionStatus::Cancelled,
        at,
        reason: "wrong slip".to_owned(),
        business_date: date("2026-11-23"),
    });
    request.lines = lines(-1);
    request.event.event_type = "bill_cancelled".into();
    request.event.from_status = Some(TransactionStatus::Paid);
    request.event.to_status = TransactionStatus::Cancelled;
    request
}

async fn each_backend<F, Fut>(test: F)
where
    F: Fn(Backend, Arc<dyn Database>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for backend in backends() {
        let db = TestDb::new(backend).await;
        test(backend, db.store().await).await;
    }
}

/// A write commits the transaction, its bill, its lines and its event together, and reads back equal.
#[tokio::test]
async fn write_then_read_back() {
    each_backend(|backend, store| async move {
        assert_eq!(
            store.write(create("tx-1", "k1", "100")).await.unwrap(),
            WriteOutcome::Written,
            "{backend:?}"
        );
        assert_eq!(
            store.transaction("S001", "tx-1").await.unwrap(),
            Some(record("tx-1")),
            "{backend:?}"
        );
        assert_eq!(
            store.transaction("S002", "tx-1").await.unwrap(),
            None,
            "another store cannot see it"
        );
        assert_eq!(store.settlement_lines("tx-1").await.unwrap(), lines(1));
        // `audit.proto`: RECEIVED first, then the first state (PAID), in one commit.
        let events = store.events("tx-1").await.unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(kinds, ["received", "bill_paid"], "{backend:?}");
        assert_eq!(events[0].from_status, None);
        assert_eq!(events[1].from_status, Some(TransactionStatus::InProgress));
        let counts = store.row_counts().await.unwrap();
        assert_eq!(
            (
                counts.transactions,
                counts.settlement_lines,
                counts.events,
                counts.idempotency_keys
            ),
            (1, 4, 2, 1)
        );
    })
    .await;
}

/// A second write under a used key writes nothing and returns the first answer.
#[tokio::test]
async fn used_key_returns_first_answer() {
    each_backend(|backend, store| async move {
        store.write(create("tx-1", "k1", "100")).await.unwrap();
        let outcome = store.write(create("tx-2", "k1", "999")).await.unwrap();
        let WriteOutcome::KeyTaken(answer) = outcome else {
            panic!("{backend:?}: expected KeyTaken, got {outcome:?}")
        };
        assert_eq!(answer.transaction_id, "tx-1");
        assert_eq!(answer.response, b"answer for tx-1");
        assert_eq!(store.transaction("S001", "tx-2").await.unwrap(), None);
        assert_eq!(store.row_counts().await.unwrap().settlement_lines, 4);
        let key = IdempotencyKey {
            store_id: "S001".into(),
            terminal_id: "T01".into(),
            client_request_id: "k1".into(),
        };
        assert_eq!(
            store.answer(&key).await.unwrap().unwrap().transaction_id,
            "tx-1"
        );
    })
    .await;
}

/// A guarded transition moves paid to cancelled once; a second one finds the new state and writes nothing.
#[tokio::test]
async fn transition_is_guarded() {
    each_backend(|backend, store| async move {
        store.write(create("tx-1", "k1", "100")).await.unwrap();
        assert_eq!(
            store.write(cancel("tx-1", "k2")).await.unwrap(),
            WriteOutcome::Written,
            "{backend:?}"
        );
        let cancelled = store.transaction("S001", "tx-1").await.unwrap().unwrap();
        assert_eq!(cancelled.status, TransactionStatus::Cancelled);
        assert_eq!(cancelled.cancel_reason.as_deref(), Some("wrong slip"));
        let again = store.write(cancel("tx-1", "k3")).await.unwrap();
        assert_eq!(
            again,
            WriteOutcome::StatusMismatch {
                current: Some(TransactionStatus::Cancelled)
            }
        );
        let missing = store.write(cancel("tx-404", "k4")).await.unwrap();
        assert_eq!(missing, WriteOutcome::StatusMismatch { current: None });
        let counts = store.row_counts().await.unwrap();
        assert_eq!(
            (
                counts.settlement_lines,
                counts.events,
                counts.idempotency_keys
            ),
            // Create: RECEIVED and PAID; cancel: CANCELLED.
            (8, 3, 2)
        );
        let sum: i64 = store
            .settlement_lines("tx-1")
            .await
            .unwrap()
            .iter()
            .map(|l| l.amount_minor)
            .sum();
        assert_eq!(sum, 0);
    })
    .await;
}

/// Unbalanced lines are refused before any SQL runs.
#[tokio::test]
async fn unbalanced_lines_are_refused() {
    each_backend(|_, store| async move {
        let mut request = create("tx-1", "k1", "100");
        request.lines[0].amount_minor += 1;
        assert!(matches!(
            store.write(request).await,
            Err(StoreError::Invariant(_))
        ));
        assert_eq!(
            store.row_counts().await.unwrap(),
            posgate_core::ports::db::RowCounts::default()
        );
    })
    .await;
}

/// Settlement lines and events are append-only: the database refuses updates and deletes.
#[tokio::test]
async fn lines_and_events_are_append_only() {
    for backend in backends() {
        let db = TestDb::new(backend).await;
        let store = db.store().await;
        store.write(create("tx-1", "k1", "100")).await.unwrap();
        let statements = [
            "UPDATE settlement_lines SET amount_minor = 0",
            "DELETE FROM settlement_lines",
            "UPDATE transaction_events SET detail = 'x'",
            "DELETE FROM transaction_events",
        ];
        for statement in statements {
            let refused = match backend {
                Backend::Sqlite => {
                    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
                    sqlx::query(statement).execute(&pool).await.is_err()
                }
                Backend::Postgres => {
                    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
                    sqlx::query(statement).execute(&pool).await.is_err()
                }
            };
            assert!(refused, "{backend:?}: {statement} must be refused");
        }
        assert_eq!(store.settlement_lines("tx-1").await.unwrap(), lines(1));
    }
}

/// Expired keys are purged; live ones stay.
#[tokio::test]
async fn purge_removes_only_expired_keys() {
    each_backend(|_, store| async move {
        store.write(create("tx-1", "k1", "100")).await.unwrap();
        assert_eq!(
            store
                .purge_expired_keys(utc("2026-12-01T00:00:00Z"))
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            store
                .purge_expired_keys(utc("2026-12-24T00:00:00Z"))
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store.row_counts().await.unwrap().transactions,
            1,
            "the transaction itself stays"
        );
    })
    .await;
}

/// Migrating twice is harmless.
#[tokio::test]
async fn migrate_is_idempotent() {
    each_backend(|_, store| async move {
        store.migrate().await.unwrap();
        store.migrate().await.unwrap();
    })
    .await;
}

/// Many concurrent writes under one key commit exactly one transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_under_one_key_commit_once() {
    each_backend(|backend, store| async move {
        let writes = (0..50).map(|index| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .write(create(&format!("tx-{index}"), "same-key", "100"))
                    .await
            })
        });
        let outcomes: Vec<WriteOutcome> = futures::future::join_all(writes)
            .await
            .into_iter()
            .map(|joined| joined.unwrap().unwrap())
            .collect();
        let written = outcomes
            .iter()
            .filter(|outcome| **outcome == WriteOutcome::Written)
            .count();
        assert_eq!(written, 1, "{backend:?}");
        let counts = store.row_counts().await.unwrap();
        assert_eq!(
            (counts.transactions, counts.settlement_lines),
            (1, 4),
            "{backend:?}"
        );
    })
    .await;
}

/// Concurrent payments of one slip through two store handles (two gateway
/// instances) under different keys: one claims it, the rest are refused
/// with nothing stored; its cancellation frees the slip for a new payment.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slip_is_claimed_by_one_live_payment() {
    for backend in backends() {
        let db = TestDb::new(backend).await;
        let instances = [db.store().await, db.store().await];
        let claim = |id: String| {
            let mut request = create(&id, &format!("key-{id}"), "100");
            request.claims_slip = true;
            request
        };
        let writes = (0..20).map(|index| {
            let store = Arc::clone(&instances[index % 2]);
            let request = claim(format!("tx-{index}"));
            tokio::spawn(async move { store.write(request).await })
        });
        let outcomes: Vec<_> = futures::future::join_all(writes)
            .await
            .into_iter()
            .map(|joined| joined.unwrap())
            .collect();
        let winners: Vec<usize> = (0..outcomes.len())
            .filter(|&index| matches!(outcomes[index], Ok(WriteOutcome::Written)))
            .collect();
        assert_eq!(winners.len(), 1, "{backend:?}: {outcomes:?}");
        for outcome in &outcomes {
            assert!(
                matches!(
                    outcome,
                    Ok(WriteOutcome::Written) | Err(StoreError::SlipAlreadyPaid { .. })
                ),
                "{backend:?}: {outcome:?}"
            );
        }
        let store = &instances[0];
        let counts = store.row_counts().await.unwrap();
        assert_eq!(
            (
                counts.idempotency_keys,
                counts.transactions,
                counts.settlement_lines
            ),
            (1, 1, 4),
            "{backend:?}: refused payments store nothing"
        );

        let again = store.write(claim("tx-again".to_owned())).await;
        assert!(
            matches!(again, Err(StoreError::SlipAlreadyPaid { .. })),
            "{backend:?}: {again:?}"
        );
        let winner = format!("tx-{}", winners[0]);
        assert_eq!(
            store.write(cancel(&winner, "cancel-key")).await.unwrap(),
            WriteOutcome::Written
        );
        assert_eq!(
            store.write(claim("tx-after".to_owned())).await.unwrap(),
            WriteOutcome::Written,
            "{backend:?}: a cancelled payment frees its slip"
        );
    }
}

/// SQLite: while another process holds the database's write lock past the
/// writer's busy timeout, a write fails as `Unavailable` (the POS may retry
/// with the same key), nothing of it is stored, and once the lock is gone
/// the same write commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_sqlite_database_is_unavailable_not_corrupt() {
    use sqlx::Connection as _;
    let db = TestDb::new(Backend::Sqlite).await;
    let store = db.store().await;
    let mut other = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let refused = store.write(create("tx-locked", "key-locked", "100")).await;
    assert!(
        matches!(refused, Err(StoreError::Unavailable(_))),
        "{refused:?}"
    );
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    assert_eq!(store.row_counts().await.unwrap().transactions, 0);
    assert_eq!(
        store
            .write(create("tx-locked", "key-locked", "100"))
            .await
            .unwrap(),
        WriteOutcome::Written
    );
}
