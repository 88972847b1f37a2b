//! The store suite: the same cases against SQLite and PostgreSQL.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use posgate_core::model::idempotency::FingerprintBuilder;
use posgate_core::model::transaction::{
    BillDetail, Event, SettlementLine, TransactionKind, TransactionRecord, TransactionStatus,
};
use posgate_core::model::{IdempotencyKey, StoredAnswer};
use posgate_core::ports::db::{
    BillSafItem, BillWrite, Change, Database, Lease, NewSafItem, SafKind, StatusChange, StoreError,
    WriteOutcome, WriteRequest,
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

/// A bill payment with a queued notice (an online biller's unknown outcome), written as the bill service does.
fn notice_queued(id: &str) -> BillWrite {
    let at = utc("2026-11-23T03:00:00Z");
    let mut paid = record(id);
    paid.status = TransactionStatus::InProgress;
    BillWrite {
        transaction_id: id.to_owned(),
        at,
        key: None,
        change: Change::Create(Box::new(paid)),
        lines: Vec::new(),
        business_date: date("2026-11-23"),
        event: Event {
            event_type: "outcome_unknown".into(),
            from_status: None,
            to_status: TransactionStatus::InProgress,
            actor: "worker/store-and-forward".into(),
            detail: "test".into(),
        },
        enqueue: vec![NewSafItem {
            link_id: "TPC".to_owned(),
            kind: SafKind::Advice,
            amount_minor: 123_400,
            currency: "TWD".to_owned(),
            next_attempt_at: at,
        }],
        acked: Vec::new(),
    }
}

/// Two instances claiming one queue: an entry is held by one holder until
/// its lease runs out, is renewed, freed by a retry, or released by a
/// draining holder; the card and wallet queues never see bill entries.
#[tokio::test]
async fn queue_entries_are_leased_to_one_instance_at_a_time() {
    each_backend(|backend, store| async move {
        for id in ["lease-1", "lease-2", "lease-3"] {
            let outcome = store.write_bill(notice_queued(id)).await.unwrap();
            assert_eq!(outcome, WriteOutcome::Written, "{backend:?}");
        }
        let now = utc("2026-11-23T03:00:01Z");
        let lease = |holder: &str, at: DateTime<Utc>| Lease {
            holder: holder.to_owned(),
            now: at,
            until: at + chrono::Duration::seconds(15),
        };
        let ids = |items: Vec<BillSafItem>| {
            let mut ids: Vec<i64> = items.into_iter().map(|item| item.id).collect();
            ids.sort_unstable();
            ids
        };

        let first = ids(store.bill_saf_claim(&lease("a#1", now), 2).await.unwrap());
        assert_eq!(first.len(), 2, "{backend:?}: a claims up to its limit");
        let second = ids(store.bill_saf_claim(&lease("b#1", now), 10).await.unwrap());
        assert_eq!(second.len(), 1, "{backend:?}: b takes only the free entry");
        assert!(!first.contains(&second[0]), "{backend:?}");
        assert!(
            store
                .saf_claim(&lease("c#1", now), 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .wallet_saf_claim(&lease("c#1", now), 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            ids(store.bill_saf_claim(&lease("a#1", now), 10).await.unwrap()),
            first,
            "{backend:?}: a holder sees what it holds"
        );

        // Renewed leases hold past the first expiry; unrenewed ones are taken over.
        let later = now + chrono::Duration::seconds(10);
        assert_eq!(store.renew_leases(&lease("a#1", later)).await.unwrap(), 2);
        let after_first_expiry = now + chrono::Duration::seconds(16);
        let taken = ids(store
            .bill_saf_claim(&lease("c#1", after_first_expiry), 10)
            .await
            .unwrap());
        assert_eq!(
            taken, second,
            "{backend:?}: b's lapsed entry goes to c, a's renewed ones stay"
        );

        // A retry frees the entry at once; a draining holder frees the rest.
        store
            .saf_retry(first[0], now, "biller unreachable")
            .await
            .unwrap();
        let freed = ids(store
            .bill_saf_claim(&lease("c#1", after_first_expiry), 10)
            .await
            .unwrap());
        assert_eq!(freed, vec![first[0], second[0]], "{backend:?}");
        assert_eq!(store.release_leases("a#1").await.unwrap(), 1, "{backend:?}");
        let all = ids(store
            .bill_saf_claim(&lease("c#1", after_first_expiry), 10)
            .await
            .unwrap());
        assert_eq!(all.len(), 3, "{backend:?}");
    })
    .await;
}

/// One leader among the instances of one database: PostgreSQL's lock is
/// held by one store handle at a time, passes on when released, and when
/// its connection is lost; SQLite (one process per file) always leads.
#[tokio::test]
async fn one_store_handle_leads_at_a_time() {
    for backend in backends() {
        let db = TestDb::new(backend).await;
        let (first, second) = (db.store().await, db.store().await);
        let mut lock = first
            .try_lead()
            .await
            .unwrap()
            .expect("the first handle leads");
        assert!(lock.held().await);
        let other = second.try_lead().await.unwrap();
        if backend == Backend::Sqlite {
            assert!(other.is_some(), "SQLite always leads");
            continue;
        }
        assert!(
            other.is_none(),
            "a second leader while the first holds the lock"
        );
        lock.release().await;
        let lock = second
            .try_lead()
            .await
            .unwrap()
            .expect("the lock passed on");
        // A leader that vanishes without releasing (its connection closed)
        // leaves the lock to the next candidate.
        drop(lock);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if first.try_lead().await.unwrap().is_some() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the lock stayed with a closed connection"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}
