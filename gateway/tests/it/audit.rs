//! The audit chain and `AuditService` end to end: traffic through the real
//! gRPC API writes the chain, the HSM seals it, auditors (mTLS client
//! certificates) search, read histories, verify and export; tampering by
//! direct SQL is found and named, on SQLite and PostgreSQL.

use chrono::{DateTime, Utc};
use pb::audit_service_client::AuditServiceClient;
use posgate_api::access::Identity;
use posgate_core::audit::chain::entry_hash;
use posgate_core::audit::seal::seal_once;
use posgate_core::model::chain::EntryType;
use posgate_proto::v1 as pb;
use sqlx::Connection as _;
use tonic::Code;
use tonic::transport::Channel;

use crate::cards::{CardWorld, co_brand, sale, visa_ok, write_keystore};
use crate::support::{
    Backend, OPEN_LIMITS, TestDb, TestGateway, backends, bad_request_fields, context, jp_slip,
    money, tw_slip, utc,
};

const NOW: &str = "2026-11-23T03:00:00Z";

/// A bills gateway with an HSM (the audit needs one), sealing by hand.
async fn audit_gateway(backend: Backend, audit_section: &str) -> TestGateway {
    audit_gateway_with(backend, OPEN_LIMITS, audit_section).await
}

async fn audit_gateway_with(backend: Backend, limits: &str, audit_section: &str) -> TestGateway {
    crate::cards::init_tracing();
    let db = TestDb::new(backend).await;
    write_keystore(db.dir.path()).await;
    let audit_section = audit_section.to_owned();
    TestGateway::start_with(db, utc(NOW), limits, move |dir| {
        format!(
            "\n[hsm]\nbackend = \"software\"\nkeystore = \"{}\"\nmaster_key_file = \"{}\"\n\n[audit]\n{audit_section}\n",
            dir.join("keys.ks").display(),
            dir.join("master.key").display(),
        )
    })
    .await
}

fn manual_sealing() -> &'static str {
    "seal = false"
}

/// A slip reference of digits derived from an idempotency key (FNV-1a).
fn reference(key: &str) -> String {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{:015}", hash % 1_000_000_000_000_000)
}

/// Pays a Taiwan Power bill of `amount_twd` from S001/T01; returns its id.
async fn pay_tw(gw: &TestGateway, key: &str, amount_twd: u64) -> String {
    let mut client = gw.client.clone();
    let request = pb::PayBillRequest {
        context: context("S001", "T01", key, utc(NOW)),
        slip: Some(pb::BillSlip {
            barcodes: tw_slip("TPC", &reference(key), "2026-12-31", amount_twd),
            biller_id: String::new(),
        }),
        amount: money(i64::try_from(amount_twd).unwrap() * 100, "TWD"),
    };
    client
        .pay_bill(request)
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap()
        .transaction_id
}

/// Pays a Tokyo Gas bill from S101/T01; returns its id.
async fn pay_jp(gw: &TestGateway, key: &str, amount_yen: u64) -> String {
    let mut client = gw.bills_as("S101", "T01");
    let request = pb::PayBillRequest {
        context: context("S101", "T01", key, utc(NOW)),
        slip: Some(pb::BillSlip {
            barcodes: jp_slip("912345", &reference(key), "2026-12-31", amount_yen),
            biller_id: String::new(),
        }),
        amount: money(i64::try_from(amount_yen).unwrap(), "JPY"),
    };
    client
        .pay_bill(request)
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap()
        .transaction_id
}

fn actx(at: DateTime<Utc>) -> Option<pb::AuditContext> {
    Some(pb::AuditContext {
        auditor_id: "a1".to_owned(),
        client_request_id: uuid::Uuid::now_v7().to_string(),
        client_timestamp: Some(prost_types::Timestamp {
            seconds: at.timestamp(),
            nanos: 0,
        }),
        purpose: "2026 PCI audit, sample 14".to_owned(),
    })
}

pub fn auditor(gw: &TestGateway) -> AuditServiceClient<Channel> {
    AuditServiceClient::new(gw.channel_as(&Identity::Auditor {
        auditor_id: "a1".to_owned(),
    }))
}

async fn seal(gw: &TestGateway) -> i64 {
    let audit = gw.server.gateway.audit.as_ref().unwrap();
    seal_once(audit, utc(NOW)).await.unwrap().unwrap().sequence
}

pub async fn verify(
    client: &mut AuditServiceClient<Channel>,
    from: i64,
    to: i64,
) -> pb::VerifyChainResponse {
    client
        .verify_chain(pb::VerifyChainRequest {
            context: actx(utc(NOW)),
            from_sequence: from,
            to_sequence: to,
        })
        .await
        .unwrap()
        .into_inner()
}

async fn search(
    client: &mut AuditServiceClient<Channel>,
    filter: Option<pb::TransactionFilter>,
    page_size: i32,
    page_token: &str,
) -> Result<pb::SearchTransactionsResponse, tonic::Status> {
    client
        .search_transactions(pb::SearchTransactionsRequest {
            context: actx(utc(NOW)),
            filter,
            page_size,
            page_token: page_token.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Every page of a search, following tokens.
async fn search_all(
    client: &mut AuditServiceClient<Channel>,
    filter: Option<pb::TransactionFilter>,
) -> Vec<pb::TransactionSummary> {
    let mut rows = Vec::new();
    let mut token = String::new();
    loop {
        let page = search(client, filter.clone(), 1000, &token).await.unwrap();
        rows.extend(page.transactions);
        if page.next_page_token.is_empty() {
            return rows;
        }
        token = page.next_page_token;
    }
}

/// Bills and card payments through the gRPC API all reach the chain; it verifies and seals.
#[tokio::test]
async fn chain_records_bill_and_card_traffic() {
    for backend in backends() {
        let world = CardWorld::start(backend).await;
        let mut cards = world.client.clone();
        let gw = &world.gw;
        let bill = pay_tw(gw, "b-1", 1234).await;
        let sale_id = cards
            .authorize(sale("s-1", &visa_ok(), 12_300))
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap()
            .transaction_id;
        cards
            .authorize(sale("s-2", &co_brand(), 4_500))
            .await
            .unwrap();
        let events = gw.store().events(&sale_id).await.unwrap().len()
            + gw.store().events(&bill).await.unwrap().len();
        let (head, _) = gw.store().chain_head().await.unwrap();
        assert!(
            head > i64::try_from(events).unwrap(),
            "{backend:?}: every event is chained"
        );
        let entries = gw.store().chain_entries(1, head, 1000).await.unwrap();
        let sequences: Vec<i64> = entries.iter().map(|entry| entry.sequence).collect();
        assert_eq!(
            sequences,
            (1..=head).collect::<Vec<_>>(),
            "{backend:?}: gapless"
        );
        assert!(
            entries
                .iter()
                .all(|e| e.content.entry_type == EntryType::Event)
        );
        assert_eq!(seal(gw).await, head);
        let mut client = auditor(gw);
        let report = verify(&mut client, 0, 0).await;
        assert!(report.ok, "{backend:?}: {report:?}");
        assert_eq!(report.checked_from_sequence, 1);
        assert_eq!(report.checked_to_sequence, head);
        assert_eq!(report.checked_count, head);
        assert_eq!(report.checkpoint.as_ref().unwrap().sequence, head);
        assert_eq!(
            report.head_hash_hex,
            report.checkpoint.unwrap().head_hash_hex
        );

        let history = client
            .get_transaction_history(pb::GetTransactionHistoryRequest {
                context: actx(utc(NOW)),
                transaction_id: sale_id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let summary = history.transaction.unwrap();
        assert_eq!(summary.r#type(), pb::TransactionType::CardSale);
        assert_eq!(summary.status(), pb::TransactionStatus::Captured);
        assert_eq!(
            summary.masked_pan,
            format!("411111******{}", &visa_ok()[12..])
        );
        assert_eq!(summary.card_brand(), pb::CardBrand::Visa);
        // `audit.proto`: RECEIVED first (no earlier state), then SENT.
        assert_eq!(
            history.events[0].event_type(),
            pb::TransactionEventType::Received
        );
        assert_eq!(
            history.events[0].from_status(),
            pb::TransactionStatus::Unspecified
        );
        assert_eq!(
            history.events[1].event_type(),
            pb::TransactionEventType::Sent
        );
        assert_eq!(history.events[0].sequence, summary.first_sequence);
        assert_eq!(
            history.events.last().unwrap().sequence,
            summary.last_sequence
        );
        assert!(
            history
                .events
                .iter()
                .any(|e| e.event_type() == pb::TransactionEventType::Approved)
        );
        let actor = history.events[0].actor.as_ref().unwrap();
        assert_eq!(actor.kind(), pb::ActorKind::Terminal);
        assert_eq!(actor.id, "spiffe://posgate/store/S001/terminal/T01");
        assert!(history.events.iter().all(|e| e.entry_hash_hex.len() == 64));

        // The PAN filter matches card transactions by HSM fingerprint only.
        let by_pan = search_all(
            &mut client,
            Some(pb::TransactionFilter {
                pan: visa_ok(),
                ..Default::default()
            }),
        )
        .await;
        assert_eq!(by_pan.len(), 1, "{backend:?}");
        assert_eq!(by_pan[0].transaction_id, sale_id);
        // The read is audited, with the PAN masked and fingerprinted, never in clear.
        let (head_after, _) = gw.store().chain_head().await.unwrap();
        let last = gw
            .store()
            .chain_entries(head_after, head_after, 1)
            .await
            .unwrap();
        let read = &last[0].content;
        assert_eq!(read.entry_type, EntryType::AuditRead);
        assert_eq!(read.event_type, "SearchTransactions");
        assert_eq!(read.actor, "spiffe://posgate/auditor/a1");
        assert!(
            read.detail
                .contains(&format!("411111******{}", &visa_ok()[12..]))
        );
        assert!(read.detail.contains("\"row_count\":1"));
        assert!(read.detail.contains("fingerprints"));
        assert!(
            !read.detail.contains(&visa_ok()),
            "{backend:?}: full PAN in the audit log"
        );
        let types = search_all(
            &mut client,
            Some(pb::TransactionFilter {
                types: vec![pb::TransactionType::BillPayment.into()],
                ..Default::default()
            }),
        )
        .await;
        assert_eq!(types.len(), 1);
        assert_eq!(types[0].transaction_id, bill);
        assert_eq!(types[0].fee.as_ref().unwrap().amount_minor, 1000);
    }
}

/// A raw connection for tampering, with the chain's append-only triggers
/// removed, as an attacker with database rights would.
enum Raw {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Raw {
    async fn open(gw: &TestGateway) -> Self {
        let url = gw.db_url();
        if url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            for trigger in [
                "audit_chain_no_update",
                "audit_chain_no_delete",
                "audit_checkpoints_no_update",
                "audit_checkpoints_no_delete",
            ] {
                sqlx::query(&format!("DROP TRIGGER {trigger}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            Self::Sqlite(conn)
        } else {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            for statement in [
                "ALTER TABLE audit_chain DISABLE TRIGGER audit_chain_append_only",
                "ALTER TABLE audit_checkpoints DISABLE TRIGGER audit_checkpoints_append_only",
            ] {
                sqlx::query(statement).execute(&mut conn).await.unwrap();
            }
            Self::Postgres(conn)
        }
    }

    async fn exec(&mut self, sql: &str) {
        match self {
            Self::Sqlite(conn) => sqlx::query(sql).execute(conn).await.map(|_| ()),
            Self::Postgres(conn) => sqlx::query(sql).execute(conn).await.map(|_| ()),
        }
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
    }

    async fn exec_bytes(&mut self, sql: &str, a: Vec<u8>, b: Vec<u8>, sequence: i64) {
        match self {
            Self::Sqlite(conn) => sqlx::query(sql)
                .bind(a)
                .bind(b)
                .bind(sequence)
                .execute(conn)
                .await
                .map(|_| ()),
            Self::Postgres(conn) => sqlx::query(sql)
                .bind(a)
                .bind(b)
                .bind(sequence)
                .execute(conn)
                .await
                .map(|_| ()),
        }
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
    }

    /// Renumbers entries from `from` on by `delta` (through a high range,
    /// since sequence is a primary key checked row by row).
    async fn shift(&mut self, from: i64, delta: i64) {
        self.exec(&format!(
            "UPDATE audit_chain SET sequence = sequence + 1000000 WHERE sequence >= {from}"
        ))
        .await;
        self.exec(&format!(
            "UPDATE audit_chain SET sequence = sequence - 1000000 + ({delta}) WHERE sequence >= 1000000"
        ))
        .await;
    }
}

/// How each tampering is done.
#[derive(Debug, Clone, Copy)]
enum Tamper {
    ModifyContent,
    Delete,
    DeleteAndRenumber,
    Insert,
    Reorder,
    RewriteAndRehash,
    ForgeCheckpointSignature,
}

async fn tamper(gw: &TestGateway, raw: &mut Raw, how: Tamper) {
    let store = gw.store();
    match how {
        Tamper::ModifyContent => {
            raw.exec("UPDATE audit_chain SET detail = 'nothing to see' WHERE sequence = 3")
                .await;
        }
        Tamper::Delete => raw.exec("DELETE FROM audit_chain WHERE sequence = 3").await,
        Tamper::DeleteAndRenumber => {
            raw.exec("DELETE FROM audit_chain WHERE sequence = 3").await;
            raw.shift(4, -1).await;
            raw.exec("UPDATE audit_head SET sequence = sequence - 1")
                .await;
        }
        Tamper::Insert => {
            let before = store.chain_entries(2, 2, 1).await.unwrap().remove(0);
            raw.shift(3, 1).await;
            raw.exec("UPDATE audit_head SET sequence = sequence + 1")
                .await;
            raw.exec_bytes(
                "INSERT INTO audit_chain (sequence, entry_type, transaction_id, event_type, from_status, \
                 to_status, actor, detail, occurred_at, prev_hash, entry_hash) VALUES ($3, 'event', NULL, \
                 'bill_paid', NULL, 'paid', 'store/S001/terminal/T01/operator/X', '', \
                 '2026-11-23T03:00:00.000000Z', $1, $2)",
                before.entry_hash.clone(),
                vec![7; 32],
                3,
            )
            .await;
        }
        Tamper::Reorder => {
            raw.exec("UPDATE audit_chain SET sequence = 1000003 WHERE sequence = 3")
                .await;
            raw.exec("UPDATE audit_chain SET sequence = 3 WHERE sequence = 4")
                .await;
            raw.exec("UPDATE audit_chain SET sequence = 4 WHERE sequence = 1000003")
                .await;
        }
        Tamper::RewriteAndRehash => {
            // The attacker changes entry 3 and recomputes every hash after it.
            let (head, _) = store.chain_head().await.unwrap();
            let entries = store.chain_entries(1, head, 1000).await.unwrap();
            let mut prev = entries[1].entry_hash.clone();
            for mut entry in entries.into_iter().skip(2) {
                if entry.sequence == 3 {
                    "rewritten".clone_into(&mut entry.content.detail);
                    raw.exec("UPDATE audit_chain SET detail = 'rewritten' WHERE sequence = 3")
                        .await;
                }
                let hash = entry_hash(&prev, entry.sequence, &entry.content).to_vec();
                raw.exec_bytes(
                    "UPDATE audit_chain SET prev_hash = $1, entry_hash = $2 WHERE sequence = $3",
                    prev.clone(),
                    hash.clone(),
                    entry.sequence,
                )
                .await;
                prev = hash;
            }
        }
        Tamper::ForgeCheckpointSignature => {
            raw.exec_bytes(
                "UPDATE audit_checkpoints SET signature = $1 WHERE sequence = $3 AND $2 = $2",
                vec![1; 64],
                vec![0],
                12,
            )
            .await;
        }
    }
}

/// Each kind of tampering by direct SQL is named, at the exact first bad sequence.
#[tokio::test]
async fn tampering_is_found_and_named() {
    let cases = [
        (Tamper::ModifyContent, 3, pb::ChainProblem::Modified),
        (Tamper::Delete, 3, pb::ChainProblem::Deleted),
        (Tamper::DeleteAndRenumber, 3, pb::ChainProblem::Deleted),
        (Tamper::Insert, 3, pb::ChainProblem::Inserted),
        (Tamper::Reorder, 3, pb::ChainProblem::Reordered),
        // Six bills, two entries each (RECEIVED, PAID): the checkpoint is at 12.
        (
            Tamper::RewriteAndRehash,
            12,
            pb::ChainProblem::CheckpointMismatch,
        ),
        (
            Tamper::ForgeCheckpointSignature,
            12,
            pb::ChainProblem::CheckpointSignatureInvalid,
        ),
    ];
    for backend in backends() {
        for (how, first_bad, problem) in cases {
            let gw = audit_gateway(backend, manual_sealing()).await;
            for index in 0..6 {
                pay_tw(&gw, &format!("t-{index}"), 100 + index).await;
            }
            assert_eq!(seal(&gw).await, 12);
            let mut client = auditor(&gw);
            assert!(
                verify(&mut client, 0, 0).await.ok,
                "{backend:?} {how:?} intact"
            );
            let mut raw = Raw::open(&gw).await;
            tamper(&gw, &mut raw, how).await;
            let report = verify(&mut client, 0, 0).await;
            assert!(!report.ok, "{backend:?} {how:?}: {report:?}");
            assert_eq!(
                report.first_bad_sequence, first_bad,
                "{backend:?} {how:?}: {report:?}"
            );
            assert_eq!(report.problem(), problem, "{backend:?} {how:?}: {report:?}");
            assert_eq!(report.checked_to_sequence, first_bad);
            assert!(!report.problem_detail.is_empty());
            assert!(report.head_hash_hex.is_empty());
            gw.stop().await;
        }
    }
}

/// Verification from the middle starts at the latest checkpoint before it.
#[tokio::test]
async fn verification_anchors_on_a_checkpoint() {
    for backend in backends() {
        let gw = audit_gateway(backend, manual_sealing()).await;
        for index in 0..4 {
            pay_tw(&gw, &format!("v-{index}"), 200 + index).await;
        }
        // Each bill is two entries (RECEIVED, PAID): checkpoints at 8 and 16.
        assert_eq!(seal(&gw).await, 8);
        for index in 4..8 {
            pay_tw(&gw, &format!("v-{index}"), 200 + index).await;
        }
        assert_eq!(seal(&gw).await, 16);
        let mut client = auditor(&gw);
        let report = verify(&mut client, 12, 16).await;
        assert!(report.ok, "{backend:?}: {report:?}");
        assert_eq!(report.checked_from_sequence, 9);
        assert_eq!(report.checked_count, 8);
        assert_eq!(report.checkpoint.unwrap().sequence, 16);
        // Bad ranges name the field.
        for (from, to, field) in [
            (-1, 0, "from_sequence"),
            (0, -1, "to_sequence"),
            (0, 10_000, "to_sequence"),
            (8, 7, "from_sequence"),
        ] {
            let status = client
                .verify_chain(pb::VerifyChainRequest {
                    context: actx(utc(NOW)),
                    from_sequence: from,
                    to_sequence: to,
                })
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{from} {to}");
            assert_eq!(bad_request_fields(&status), vec![field.to_owned()]);
        }
        gw.stop().await;
    }
}

/// With no checkpoint yet, `VerifyChain` to 0 says `NO_CHECKPOINT`.
#[tokio::test]
async fn no_checkpoint_is_a_precondition() {
    let gw = audit_gateway(Backend::Sqlite, manual_sealing()).await;
    pay_tw(&gw, "n-1", 100).await;
    let mut client = auditor(&gw);
    let status = client
        .verify_chain(pb::VerifyChainRequest {
            context: actx(utc(NOW)),
            from_sequence: 0,
            to_sequence: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("checkpoint"));
    // An explicit range is verified without a checkpoint (linkage only).
    assert!(verify(&mut client, 1, 1).await.ok);
}

/// Pages stay stable (pinned `as_of_sequence`) while new traffic arrives; filters combine.
#[tokio::test]
async fn search_pages_are_stable_and_filters_match() {
    for backend in backends() {
        let gw = audit_gateway(backend, manual_sealing()).await;
        let mut ids = Vec::new();
        for index in 0..8 {
            ids.push(pay_tw(&gw, &format!("p-{index}"), 100 + index).await);
        }
        for index in 0..4 {
            ids.push(pay_jp(&gw, &format!("j-{index}"), 1000 + index).await);
        }
        let mut client = auditor(&gw);
        let first = search(&mut client, None, 5, "").await.unwrap();
        assert_eq!(first.transactions.len(), 5);
        let as_of = first.as_of_sequence;
        // New traffic, and a cancellation, between pages.
        pay_tw(&gw, "late-1", 999).await;
        let mut seen: Vec<String> = first
            .transactions
            .iter()
            .map(|t| t.transaction_id.clone())
            .collect();
        let mut token = first.next_page_token;
        while !token.is_empty() {
            let page = search(&mut client, None, 5, &token).await.unwrap();
            assert_eq!(page.as_of_sequence, as_of, "{backend:?}: pinned");
            seen.extend(page.transactions.iter().map(|t| t.transaction_id.clone()));
            token = page.next_page_token;
        }
        assert_eq!(
            seen, ids,
            "{backend:?}: every row once, in chain order, none added"
        );
        // A fresh search sees the late payment.
        assert_eq!(search_all(&mut client, None).await.len(), 13);

        let count = |filter: pb::TransactionFilter| {
            let mut client = client.clone();
            async move { search_all(&mut client, Some(filter)).await.len() }
        };
        assert_eq!(
            count(pb::TransactionFilter {
                store_ids: vec!["S101".to_owned()],
                ..Default::default()
            })
            .await,
            4
        );
        assert_eq!(
            count(pb::TransactionFilter {
                amount_min: money(10_200, "TWD"),
                amount_max: money(10_400, "TWD"),
                ..Default::default()
            })
            .await,
            3
        );
        assert_eq!(
            count(pb::TransactionFilter {
                partner_ids: vec!["TKGAS".to_owned()],
                business_date_from: "2026-11-23".to_owned(),
                business_date_to: "2026-11-23".to_owned(),
                ..Default::default()
            })
            .await,
            4
        );
        assert_eq!(
            count(pb::TransactionFilter {
                client_request_id: "p-3".to_owned(),
                terminal_ids: vec!["T01".to_owned()],
                ..Default::default()
            })
            .await,
            1
        );
        assert_eq!(
            count(pb::TransactionFilter {
                statuses: vec![pb::TransactionStatus::Cancelled.into()],
                ..Default::default()
            })
            .await,
            0
        );
        assert_eq!(
            count(pb::TransactionFilter {
                types: vec![pb::TransactionType::WalletTopUp.into()],
                ..Default::default()
            })
            .await,
            0
        );
        assert_eq!(
            count(pb::TransactionFilter {
                created_from: Some(prost_types::Timestamp {
                    seconds: utc(NOW).timestamp() + 1,
                    nanos: 0,
                }),
                ..Default::default()
            })
            .await,
            0
        );

        // Bad input names the field and stores nothing (no audit-read entry).
        let (head_before, _) = gw.store().chain_head().await.unwrap();
        let bad = |filter: pb::TransactionFilter| Some(filter);
        let cases: Vec<(Option<pb::TransactionFilter>, i32, String, &str)> = vec![
            (None, -1, String::new(), "page_size"),
            (None, 1001, String::new(), "page_size"),
            (None, 5, "zz".to_owned(), "page_token"),
            (None, 5, "ab".repeat(81), "page_token"),
            (
                bad(pb::TransactionFilter {
                    store_ids: vec!["bad id".to_owned()],
                    ..Default::default()
                }),
                0,
                String::new(),
                "filter.store_ids[0]",
            ),
            (
                bad(pb::TransactionFilter {
                    pan: "4111111111111112".to_owned(),
                    ..Default::default()
                }),
                0,
                String::new(),
                "filter.pan",
            ),
            (
                bad(pb::TransactionFilter {
                    business_date_from: "2026-11-24".to_owned(),
                    business_date_to: "2026-11-23".to_owned(),
                    ..Default::default()
                }),
                0,
                String::new(),
                "filter.business_date_to",
            ),
            (
                bad(pb::TransactionFilter {
                    types: vec![0],
                    ..Default::default()
                }),
                0,
                String::new(),
                "filter.types[0]",
            ),
            (
                bad(pb::TransactionFilter {
                    amount_min: money(5, "TWD"),
                    amount_max: money(10, "JPY"),
                    ..Default::default()
                }),
                0,
                String::new(),
                "filter.amount_max.currency",
            ),
            (
                bad(pb::TransactionFilter {
                    amount_min: money(-1, "TWD"),
                    ..Default::default()
                }),
                0,
                String::new(),
                "filter.amount_min.amount_minor",
            ),
        ];
        for (filter, page_size, page_token, field) in cases {
            let status = search(&mut client, filter, page_size, &page_token)
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
            assert_eq!(
                bad_request_fields(&status),
                vec![field.to_owned()],
                "{status:?}"
            );
        }
        // A token from another filter is refused.
        let page = search(&mut client, None, 2, "").await.unwrap();
        let other = search(
            &mut client,
            Some(pb::TransactionFilter {
                store_ids: vec!["S001".to_owned()],
                ..Default::default()
            }),
            2,
            &page.next_page_token,
        )
        .await
        .unwrap_err();
        assert_eq!(bad_request_fields(&other), vec!["page_token".to_owned()]);
        let mut context = actx(utc(NOW)).unwrap();
        context.auditor_id = "bad id!".to_owned();
        let status = client
            .search_transactions(pb::SearchTransactionsRequest {
                context: Some(context),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            bad_request_fields(&status),
            vec!["context.auditor_id".to_owned()]
        );
        let (head_after, _) = gw.store().chain_head().await.unwrap();
        // Only the one valid search above was recorded.
        assert_eq!(head_after, head_before + 1, "{backend:?}");
        gw.stop().await;
    }
}

/// Statuses are as of the pinned position; history shows every event.
#[tokio::test]
async fn history_and_status_as_of() {
    for backend in backends() {
        let gw = audit_gateway(backend, manual_sealing()).await;
        let id = pay_tw(&gw, "h-1", 500).await;
        pay_tw(&gw, "h-2", 501).await;
        let mut client = auditor(&gw);
        let first = search(&mut client, None, 1, "").await.unwrap();
        assert_eq!(first.transactions[0].status(), pb::TransactionStatus::Paid);
        let mut bills = gw.client.clone();
        bills
            .cancel_bill(pb::CancelBillRequest {
                context: context("S001", "T01", "h-cancel", utc(NOW)),
                transaction_id: id.clone(),
                reason: "wrong slip".to_owned(),
            })
            .await
            .unwrap();
        let cancelled = search_all(
            &mut client,
            Some(pb::TransactionFilter {
                statuses: vec![pb::TransactionStatus::Cancelled.into()],
                ..Default::default()
            }),
        )
        .await;
        assert_eq!(cancelled.len(), 1, "{backend:?}");
        assert!(cancelled[0].last_sequence > cancelled[0].first_sequence);
        let history = client
            .get_transaction_history(pb::GetTransactionHistoryRequest {
                context: actx(utc(NOW)),
                transaction_id: id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let kinds: Vec<_> = history
            .events
            .iter()
            .map(pb::TransactionEvent::event_type)
            .collect();
        assert_eq!(
            kinds,
            vec![
                pb::TransactionEventType::Received,
                pb::TransactionEventType::Paid,
                pb::TransactionEventType::Cancelled
            ]
        );
        assert_eq!(history.events[2].from_status(), pb::TransactionStatus::Paid);
        assert_eq!(
            history.events[2].to_status(),
            pb::TransactionStatus::Cancelled
        );
        assert_eq!(
            history.transaction.unwrap().status(),
            pb::TransactionStatus::Cancelled
        );
        let missing = client
            .get_transaction_history(pb::GetTransactionHistoryRequest {
                context: actx(utc(NOW)),
                transaction_id: uuid::Uuid::now_v7().to_string(),
            })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
        let bad = client
            .get_transaction_history(pb::GetTransactionHistoryRequest {
                context: actx(utc(NOW)),
                transaction_id: "nope".to_owned(),
            })
            .await
            .unwrap_err();
        assert_eq!(bad_request_fields(&bad), vec!["transaction_id".to_owned()]);
        gw.stop().await;
    }
}

/// The whole export: its bytes, digest and checkpoint.
struct Export {
    header: pb::ExportHeader,
    bytes: Vec<u8>,
    trailer: pb::ExportTrailer,
}

async fn export(
    client: &mut AuditServiceClient<Channel>,
    format: pb::ExportFormat,
    checkpoint_sequence: i64,
) -> Export {
    use pb::export_transactions_response::Part;
    let mut stream = client
        .export_transactions(pb::ExportTransactionsRequest {
            context: actx(utc(NOW)),
            filter: None,
            format: format.into(),
            checkpoint_sequence,
        })
        .await
        .unwrap()
        .into_inner();
    let (mut header, mut bytes, mut trailer) = (None, Vec::new(), None);
    while let Some(message) = stream.message().await.unwrap() {
        match message.part.unwrap() {
            Part::Header(h) => header = Some(h),
            Part::Chunk(chunk) => {
                assert!(!chunk.is_empty() && chunk.len() <= 65_536);
                bytes.extend(chunk);
            }
            Part::Trailer(t) => trailer = Some(t),
        }
    }
    Export {
        header: header.unwrap(),
        bytes,
        trailer: trailer.unwrap(),
    }
}

/// Exports are byte-identical for one checkpoint, and carry a verifiable trailer.
#[tokio::test]
async fn exports_are_deterministic_per_checkpoint() {
    use sha2::Digest as _;
    for backend in backends() {
        let gw = audit_gateway(backend, manual_sealing()).await;
        let id = pay_tw(&gw, "e-1", 700).await;
        pay_jp(&gw, "e-2", 1500).await;
        let sealed = seal(&gw).await;
        let mut client = auditor(&gw);
        let csv = export(&mut client, pb::ExportFormat::Csv, 0).await;
        assert_eq!(csv.header.as_of_sequence, sealed);
        assert_eq!(
            csv.header.file_name,
            format!("posgate-transactions-{sealed:012}.csv")
        );
        assert_eq!(csv.trailer.row_count, 2);
        assert_eq!(
            csv.trailer.byte_count,
            i64::try_from(csv.bytes.len()).unwrap()
        );
        assert_eq!(
            csv.trailer.content_sha256_hex,
            hex::encode(sha2::Sha256::digest(&csv.bytes))
        );
        let checkpoint = csv.trailer.checkpoint.clone().unwrap();
        assert_eq!(checkpoint.sequence, sealed);
        assert_eq!(checkpoint.key_id, "audit-sign:1");
        let text = String::from_utf8(csv.bytes.clone()).unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert!(lines[0].starts_with("transaction_id,type,status,store_id"));
        assert!(lines[1].starts_with(&format!(
            "{id},TRANSACTION_TYPE_BILL_PAYMENT,TRANSACTION_STATUS_PAID,S001,T01,OP1,TPC,70000,TWD,1000,TWD,2026-11-23,2026-11-23T03:00:00.000000Z,"
        )), "{}", lines[1]);
        let jsonl = export(&mut client, pb::ExportFormat::JsonLines, 0).await;
        let first: serde_json::Value =
            serde_json::from_slice(jsonl.bytes.split(|b| *b == b'\n').next().unwrap()).unwrap();
        assert_eq!(first["transaction_id"], id.as_str());
        assert_eq!(first["amount"]["amount_minor"], "70000");
        assert_eq!(first["type"], "TRANSACTION_TYPE_BILL_PAYMENT");
        assert_eq!(first["parent_transaction_id"], "");

        // More traffic and a cancellation; the old checkpoint still gives the same bytes.
        pay_tw(&gw, "e-3", 800).await;
        let mut bills = gw.client.clone();
        bills
            .cancel_bill(pb::CancelBillRequest {
                context: context("S001", "T01", "e-cancel", utc(NOW)),
                transaction_id: id.clone(),
                reason: "wrong slip".to_owned(),
            })
            .await
            .unwrap();
        let later = seal(&gw).await;
        let again = export(&mut client, pb::ExportFormat::Csv, sealed).await;
        assert_eq!(
            again.bytes, csv.bytes,
            "{backend:?}: byte-identical for one checkpoint"
        );
        assert_eq!(again.trailer, csv.trailer);
        let latest = export(&mut client, pb::ExportFormat::Csv, 0).await;
        assert_eq!(latest.header.as_of_sequence, later);
        assert_eq!(latest.trailer.row_count, 3);
        assert!(
            String::from_utf8(latest.bytes)
                .unwrap()
                .contains("TRANSACTION_STATUS_CANCELLED")
        );
        for (format, sequence, field) in [
            (pb::ExportFormat::Unspecified, 0, "format"),
            (pb::ExportFormat::Csv, sealed + 1, "checkpoint_sequence"),
            (pb::ExportFormat::Csv, -1, "checkpoint_sequence"),
        ] {
            let status = client
                .export_transactions(pb::ExportTransactionsRequest {
                    context: actx(utc(NOW)),
                    filter: None,
                    format: format.into(),
                    checkpoint_sequence: sequence,
                })
                .await
                .unwrap_err();
            assert_eq!(bad_request_fields(&status), vec![field.to_owned()]);
        }
        gw.stop().await;
    }
}

/// Only auditors: a terminal, or another auditor's id, is `PERMISSION_DENIED`
/// (a caller without a certificate never completes the handshake: see
/// `access::bad_certificates_are_refused_at_the_handshake`).
#[tokio::test]
async fn only_the_auditor_of_the_certificate_may_read() {
    let gw = audit_gateway(Backend::Sqlite, manual_sealing()).await;
    pay_tw(&gw, "x-1", 100).await;
    let (head, _) = gw.store().chain_head().await.unwrap();
    let request = || pb::SearchTransactionsRequest {
        context: actx(utc(NOW)),
        ..Default::default()
    };
    let terminal = gw.channel_as(&Identity::Terminal {
        store_id: "S001".to_owned(),
        terminal_id: "T01".to_owned(),
    });
    let status = AuditServiceClient::new(terminal)
        .search_transactions(request())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let other = gw.channel_as(&Identity::Auditor {
        auditor_id: "a2".to_owned(),
    });
    let status = AuditServiceClient::new(other)
        .search_transactions(request())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // A terminal certificate still pays bills (AuditService is the only gated service here).
    let (after, _) = gw.store().chain_head().await.unwrap();
    assert_eq!(after, head, "refused reads are not recorded");
}

/// The background sealer signs a checkpoint every N entries; concurrent
/// writers keep the chain gapless.
#[tokio::test]
async fn sealer_and_concurrent_writers() {
    for backend in backends() {
        let gw = audit_gateway(backend, "checkpoint_every_entries = 10").await;
        let mut tasks = Vec::new();
        for index in 0..40 {
            let client = gw.client.clone();
            tasks.push(tokio::spawn(async move {
                let mut client = client;
                let request = pb::PayBillRequest {
                    context: context("S001", "T01", &format!("c-{index}"), utc(NOW)),
                    slip: Some(pb::BillSlip {
                        barcodes: tw_slip(
                            "TPC",
                            &reference(&format!("c-{index}")),
                            "2026-12-31",
                            100,
                        ),
                        biller_id: String::new(),
                    }),
                    amount: money(10_000, "TWD"),
                };
                client.pay_bill(request).await.unwrap();
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let (head, _) = gw.store().chain_head().await.unwrap();
        // Each bill is two entries: RECEIVED, then PAID.
        assert_eq!(head, 80, "{backend:?}");
        let entries = gw.store().chain_entries(1, head, 1000).await.unwrap();
        assert_eq!(
            entries.iter().map(|e| e.sequence).collect::<Vec<_>>(),
            (1..=80).collect::<Vec<_>>()
        );
        let started = std::time::Instant::now();
        loop {
            let latest = gw.store().latest_checkpoint(head).await.unwrap();
            if latest.is_some_and(|checkpoint| checkpoint.sequence == 80) {
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "sealed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let mut client = auditor(&gw);
        let report = verify(&mut client, 0, 0).await;
        assert!(report.ok, "{backend:?}: {report:?}");
        assert_eq!(report.checked_count, 80);
        gw.stop().await;
    }
}

/// An auditor over its rate limit is told to wait (`RESOURCE_EXHAUSTED`), and the refused read is not recorded.
#[tokio::test]
async fn auditors_are_rate_limited() {
    let limits = "terminal_per_second = 1\nterminal_burst = 2\nstore_per_second = 100\nstore_burst = 100\nmax_in_flight = 64";
    let gw = audit_gateway_with(Backend::Sqlite, limits, manual_sealing()).await;
    let mut client = auditor(&gw);
    search(&mut client, None, 1, "").await.unwrap();
    search(&mut client, None, 1, "").await.unwrap();
    let (head, _) = gw.store().chain_head().await.unwrap();
    let status = search(&mut client, None, 1, "").await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(gw.store().chain_head().await.unwrap().0, head);
}
