//! Online billers through the real gRPC API against a real biller simulator
//! on loopback (HTTPS, mutual TLS, RFC 9421 signatures both ways): inquiry,
//! payment notice and cancel in real time, declines that store nothing, the
//! notice fault table resolved by the store-and-forward worker (status
//! inquiry, then the same notice), a restart with a queued notice, and a
//! kill -9 of `posgate serve` mid-notice. Every test ends with the biller's
//! ledger and the gateway's records agreeing to the cent.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use pb::bill_payment_service_client::BillPaymentServiceClient;
use posgate_core::model::transaction::TransactionStatus;
use posgate_core::ports::db::Database;
use posgate_partners::bill::api::BillStatus;
use posgate_partners::http::TlsFiles;
use posgate_partners::wallet::api::{TransactionKind, TransactionState};
use posgate_proto::v1 as pb;
use posgate_sims::biller::{BillConfig, BillerSim, BillerSimConfig, ClientKeyConfig, FaultConfig};
use posgate_sims::test_keys::{PARTNER_API_SIGN_SEED, write_test_keystore};
use tonic::transport::Channel;

use super::cards::init_tracing;
use super::support::{
    Backend, OPEN_LIMITS, TestDb, TestGateway, backends, bad_request_fields, context, money,
    tw_slip, utc,
};
use super::wallets::{Child, connect_channel, error_reason, pki, public_of, serve, serve_config};

/// The simulator's test signing seed (RFC 8032 section 7.1 test 2). TEST KEY ONLY.
const SIM_SEED_HEX: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
const SIM_KEY_ID: &str = "biller-sim-test";
const POSGATE_KEY_ID: &str = "posgate-test";
/// The online biller's id and the agency code on its slips.
pub const BILLER: &str = "CARD";
pub const AGENCY: &str = "CCB";
/// Bills: slip reference (before padding to 16) and amount in whole TWD.
pub const BILLS: [(&str, u64); 10] = [
    ("B0001", 1_000),
    ("B0002", 2_000),
    ("B0003", 3_000),
    ("B0004", 4_000),
    ("B0005", 5_000),
    ("B0006", 6_000),
    ("B0007", 7_000),
    ("B0008", 8_000),
    ("B0009", 9_000),
    ("B0010", 10_000),
];
/// A bill the biller holds at another amount than its slip says.
const RESTATED: (&str, u64) = ("B0100", 500);
const RESTATED_REMOTE_MINOR: i64 = 45_000;
/// A bill the biller already holds as paid.
const PAID_ELSEWHERE: (&str, u64) = ("B0200", 700);
const DUE: &str = "2026-12-31";

fn reference(slip_reference: &str) -> String {
    format!("{slip_reference:0>16}")
}

fn bill(slip_reference: &str, amount_minor: i64, status: BillStatus) -> BillConfig {
    BillConfig {
        biller_id: BILLER.to_owned(),
        bill_reference: reference(slip_reference),
        amount_minor,
        due_date: Some(DUE.to_owned()),
        status,
        payer_display_name: None,
    }
}

pub fn sim_config(tls: TlsFiles) -> BillerSimConfig {
    let mut bills: Vec<BillConfig> = BILLS
        .iter()
        .map(|(slip, whole)| bill(slip, *whole as i64 * 100, BillStatus::Open))
        .collect();
    bills.push(bill(RESTATED.0, RESTATED_REMOTE_MINOR, BillStatus::Open));
    bills.push(bill(
        PAID_ELSEWHERE.0,
        PAID_ELSEWHERE.1 as i64 * 100,
        BillStatus::Paid,
    ));
    BillerSimConfig {
        listen: "127.0.0.1:0".to_owned(),
        tls,
        currency: "TWD".to_owned(),
        signing_key_hex: SIM_SEED_HEX.to_owned().into(),
        key_id: SIM_KEY_ID.to_owned(),
        client_keys: vec![ClientKeyConfig {
            key_id: POSGATE_KEY_ID.to_owned(),
            public_key_hex: public_of(PARTNER_API_SIGN_SEED),
        }],
        closed_through: None,
        bills,
        faults: FaultConfig::default(),
        admin_listen: None,
    }
}

/// The gateway's `[hsm]` and online `[[biller]]` sections for `addr`.
fn biller_config(dir: &Path, addr: std::net::SocketAddr, client: &TlsFiles) -> String {
    format!(
        r#"
[hsm]
backend = "software"
keystore = "{keystore}"
master_key_file = "{master}"
"#,
        keystore = dir.join("keys.ks").display(),
        master = dir.join("master.key").display(),
    ) + &biller_section(addr, client)
}

/// The online `[[biller]]` section for the simulator at `addr` (its
/// signing key is the HSM's `partner-api.signing`: `[hsm]` comes apart).
pub fn biller_section(addr: std::net::SocketAddr, client: &TlsFiles) -> String {
    format!(
        r#"
[[biller]]
id = "{BILLER}"
name = "Co-brand card bills"
profile = "tw-cvs-3seg"
agency_codes = ["{AGENCY}"]
currency = "TWD"
min_amount_minor = 100
max_amount_minor = 5000000
accept_after_due = false
fee = {{ kind = "fixed", amount_minor = 500 }}
mode = "online"

[biller.online]
url = "https://{addr}"
key_id = "{POSGATE_KEY_ID}"
signing_key = "partner-api.signing"
biller_key_id = "{SIM_KEY_ID}"
biller_public_key_hex = "{sim_public}"
ca_cert = "{ca}"
client_cert = "{cert}"
client_key = "{key}"
request_timeout_ms = 1000
max_attempts = 2
retry_min_ms = 100
retry_max_ms = 500
"#,
        sim_public = public_of(SIM_SEED_HEX),
        ca = client.ca_cert.display(),
        cert = client.cert.display(),
        key = client.key.display(),
    )
}

/// A gateway with a biller simulator behind it.
pub struct BillerWorld {
    pub gw: TestGateway,
    pub sim: BillerSim,
    /// The gateway's biller configuration sections, for a restart.
    extra: String,
}

impl BillerWorld {
    pub async fn start(backend: Backend) -> Self {
        init_tracing();
        let db = TestDb::new(backend).await;
        write_test_keystore(
            &db.dir.path().join("keys.ks"),
            &db.dir.path().join("master.key"),
        )
        .await
        .unwrap();
        let (server_tls, client_tls) = pki(db.dir.path());
        let sim = BillerSim::start(sim_config(server_tls)).await.unwrap();
        let extra = biller_config(db.dir.path(), sim.addr(), &client_tls);
        let gw = TestGateway::start_with(db, utc("2026-11-23T03:00:00Z"), OPEN_LIMITS, |_| {
            extra.clone()
        })
        .await;
        Self { gw, sim, extra }
    }

    fn client(&self) -> BillPaymentServiceClient<Channel> {
        self.gw.client.clone()
    }

    pub async fn stop(self) {
        self.gw.stop().await;
        self.sim.shutdown().await;
    }
}

fn slip(bill: (&str, u64)) -> Option<pb::BillSlip> {
    Some(pb::BillSlip {
        barcodes: tw_slip(AGENCY, bill.0, DUE, bill.1),
        biller_id: String::new(),
    })
}

pub fn pay(key: &str, bill: (&str, u64)) -> pb::PayBillRequest {
    pb::PayBillRequest {
        context: context("S001", "T01", key, utc("2026-11-23T03:00:00Z")),
        slip: slip(bill),
        amount: money(bill.1 as i64 * 100, "TWD"),
    }
}

/// Retries `request` (same key) until the POS gets a final answer, as a POS
/// would after `UNAVAILABLE` or `ABORTED`.
async fn pay_until_final(
    client: &mut BillPaymentServiceClient<Channel>,
    request: &pb::PayBillRequest,
) -> Result<pb::BillPayment, tonic::Status> {
    let started = std::time::Instant::now();
    loop {
        match client.pay_bill(request.clone()).await {
            Ok(answer) => return Ok(answer.into_inner().payment.unwrap()),
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::Unavailable | tonic::Code::Aborted
                ) && error_reason(&status) != "PARTNER_UNAVAILABLE" =>
            {
                assert!(
                    started.elapsed() < Duration::from_secs(40),
                    "no final answer: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => return Err(status),
        }
    }
}

/// The gateway's paid online bills (id → amount) among `ids`, from the store.
async fn gateway_paid(store: &dyn Database, ids: &[String]) -> BTreeMap<String, i64> {
    let mut paid = BTreeMap::new();
    for id in ids {
        let record = store.transaction("S001", id).await.unwrap().unwrap();
        assert_ne!(
            record.status,
            TransactionStatus::InProgress,
            "{id} resolved"
        );
        if record.status == TransactionStatus::Paid {
            let lines = store.settlement_lines(id).await.unwrap();
            assert_eq!(lines.iter().map(|line| line.amount_minor).sum::<i64>(), 0);
            assert!(
                lines
                    .iter()
                    .any(|line| line.party == format!("biller:{BILLER}")
                        && line.amount_minor == record.amount_minor)
            );
            paid.insert(id.clone(), record.amount_minor);
        }
    }
    paid
}

/// The biller's accepted notices (id → amount).
fn biller_accepted(sim: &BillerSim) -> BTreeMap<String, i64> {
    sim.ledger()
        .entries
        .into_values()
        .filter(|entry| {
            entry.kind == TransactionKind::BillPayment && entry.state == TransactionState::Accepted
        })
        .map(|entry| (entry.transaction_id, entry.amount_minor))
        .collect()
}

/// Books agree to the cent: the notices the biller accepted are exactly the
/// payments the gateway recorded paid, amount for amount.
async fn assert_books_agree(store: &dyn Database, sim: &BillerSim, ids: &[String]) {
    let gateway = gateway_paid(store, ids).await;
    let biller = biller_accepted(sim);
    assert_eq!(gateway, biller, "gateway paid == biller accepted");
    assert_eq!(
        gateway.values().sum::<i64>(),
        sim.ledger().collected_minor(),
        "to the cent"
    );
}

/// Inquiry asks the biller; pay notifies it and records balanced lines; a
/// replay is the same answer; declines (unknown bill, already paid, amount
/// the biller restated) name their field and store nothing; cancel reaches
/// the biller too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_inquiry_pay_cancel_and_declines() {
    for backend in backends() {
        let world = BillerWorld::start(backend).await;
        let mut client = world.client();
        let now = utc("2026-11-23T03:00:00Z");
        let inquiry = client
            .inquire_bill(pb::InquireBillRequest {
                context: context("S001", "T01", "inq-1", now),
                slip: slip(RESTATED),
            })
            .await
            .unwrap()
            .into_inner();
        let bill = inquiry.bill.unwrap();
        assert_eq!(
            bill.amount,
            money(RESTATED_REMOTE_MINOR, "TWD"),
            "{backend:?}: the biller's amount, not the slip's"
        );
        assert_eq!(bill.due_date, DUE);

        let paid = client
            .pay_bill(pay("pay-1", BILLS[0]))
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap();
        assert_eq!(paid.status(), pb::BillPaymentStatus::Paid);
        assert_eq!(paid.fee, money(500, "TWD"));
        let replay = client
            .pay_bill(pay("pay-1", BILLS[0]))
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap();
        assert_eq!(replay, paid);
        assert_eq!(
            world.sim.biller_counters().notices,
            1,
            "one notice for two calls"
        );

        let rows_before = world.gw.store().row_counts().await.unwrap();
        let declines = [
            (pay("pay-2", BILLS[0]), "BILL_ALREADY_PAID"),
            (pay("pay-3", PAID_ELSEWHERE), "BILL_ALREADY_PAID"),
            (pay("pay-4", ("B0999", 1_000)), "BILL_NOT_FOUND"),
        ];
        for (request, reason) in declines {
            let status = client.pay_bill(request).await.unwrap_err();
            assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{reason}");
            assert_eq!(error_reason(&status), reason);
        }
        let status = client.pay_bill(pay("pay-5", RESTATED)).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(bad_request_fields(&status), ["amount.amount_minor"]);
        assert_eq!(
            world.gw.store().row_counts().await.unwrap(),
            rows_before,
            "{backend:?}: a decline stores nothing"
        );
        assert_eq!(
            world.sim.biller_counters().notices,
            1,
            "declines never notify"
        );

        // The restated bill is paid at the biller's amount.
        let restated = pb::PayBillRequest {
            amount: money(RESTATED_REMOTE_MINOR, "TWD"),
            ..pay("pay-6", RESTATED)
        };
        let restated = client
            .pay_bill(restated)
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap();
        assert_eq!(
            restated.bill.unwrap().amount,
            money(RESTATED_REMOTE_MINOR, "TWD")
        );

        let cancelled = client
            .cancel_bill(pb::CancelBillRequest {
                context: context("S001", "T01", "cancel-1", now),
                transaction_id: paid.transaction_id.clone(),
                reason: "customer changed mind".to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap();
        assert_eq!(cancelled.status(), pb::BillPaymentStatus::Cancelled);
        let entry = world.sim.entry(&paid.transaction_id).unwrap();
        assert_eq!(entry.state, TransactionState::Cancelled, "{backend:?}");
        assert_eq!(world.sim.ledger().collected_minor(), RESTATED_REMOTE_MINOR);
        let ids = [restated.transaction_id];
        assert_books_agree(world.gw.store().as_ref(), &world.sim, &ids).await;
        world.stop().await;
    }
}

/// The notice fault table: a dropped connection and one 503 are retried by
/// the client (paid at once); a late answer, no answer, a bad answer
/// signature and a 503 that persists leave the outcome unknown, the POS gets
/// `OUTCOME_UNKNOWN`, and the worker resolves each (status inquiry, then the
/// same notice) so the POS's retry gets the final answer; a biller that is
/// down is `PARTNER_UNAVAILABLE` with nothing stored. Books agree at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_notice_fault_table() {
    for backend in backends() {
        let world = BillerWorld::start(backend).await;
        let mut client = world.client();
        let mut ids = Vec::new();
        let cases = [
            (
                "drop",
                FaultConfig {
                    drop_connection: 1.0,
                    max_faults: Some(1),
                    ..FaultConfig::default()
                },
                false,
            ),
            (
                "503 once",
                FaultConfig {
                    server_error: 1.0,
                    max_faults: Some(1),
                    ..FaultConfig::default()
                },
                false,
            ),
            (
                "late",
                FaultConfig {
                    latency: Duration::from_millis(1_500),
                    ..FaultConfig::default()
                },
                true,
            ),
            (
                "no response",
                FaultConfig {
                    no_response: 1.0,
                    ..FaultConfig::default()
                },
                true,
            ),
            (
                "bad signature",
                FaultConfig {
                    bad_signature: 1.0,
                    ..FaultConfig::default()
                },
                true,
            ),
            (
                "503 persists",
                FaultConfig {
                    server_error: 1.0,
                    ..FaultConfig::default()
                },
                true,
            ),
        ];
        let mut table = Vec::new();
        for (index, (what, faults, unknown)) in cases.into_iter().enumerate() {
            world.sim.set_faults(faults);
            let request = pay(&format!("fault-{index}"), BILLS[index]);
            let first = client.pay_bill(request.clone()).await;
            if unknown {
                let status = first.unwrap_err();
                assert_eq!(
                    error_reason(&status),
                    "OUTCOME_UNKNOWN",
                    "{backend:?} {what}: {status:?}"
                );
                world.sim.set_faults(FaultConfig::default());
            } else {
                first.unwrap();
            }
            let payment = pay_until_final(&mut client, &request).await.unwrap();
            assert_eq!(payment.status(), pb::BillPaymentStatus::Paid, "{what}");
            table.push(format!(
                "{what}: first answer {}, final PAID",
                if unknown { "OUTCOME_UNKNOWN" } else { "PAID" }
            ));
            ids.push(payment.transaction_id);
        }
        assert_eq!(world.gw.store().bill_saf_open().await.unwrap(), 0);

        // The biller rejects the notice itself (after a good inquiry): a clear
        // error, the key released, no lines.
        world.sim.set_faults(FaultConfig {
            decline_all: Some("05".into()),
            ..FaultConfig::default()
        });
        let status = client
            .pay_bill(pay("reject-1", BILLS[8]))
            .await
            .unwrap_err();
        assert_eq!(error_reason(&status), "BILLER_REJECTED", "{status:?}");
        world.sim.set_faults(FaultConfig::default());
        let retried = client.pay_bill(pay("reject-1", BILLS[8])).await.unwrap();
        let retried = retried.into_inner().payment.unwrap();
        assert_eq!(
            retried.status(),
            pb::BillPaymentStatus::Paid,
            "the key was released"
        );
        ids.push(retried.transaction_id);
        table.push("notice rejected: BILLER_REJECTED, key released, retry PAID".to_owned());

        // A biller that is down: nothing sent, nothing stored.
        let BillerWorld { gw, sim, .. } = world;
        let ledger = sim.ledger();
        let rows_before = gw.store().row_counts().await.unwrap();
        let mut client = gw.client.clone();
        // Shut the simulator down, keeping its ledger snapshot for the books.
        sim.shutdown().await;
        let status = client.pay_bill(pay("down-1", BILLS[9])).await.unwrap_err();
        assert_eq!(error_reason(&status), "PARTNER_UNAVAILABLE", "{status:?}");
        assert_eq!(gw.store().row_counts().await.unwrap(), rows_before);
        table.push("biller down: PARTNER_UNAVAILABLE, nothing stored".to_owned());

        let paid = gateway_paid(gw.store().as_ref(), &ids).await;
        let accepted: BTreeMap<String, i64> = ledger
            .entries
            .into_values()
            .filter(|entry| entry.state == TransactionState::Accepted)
            .map(|entry| (entry.transaction_id, entry.amount_minor))
            .collect();
        assert_eq!(paid, accepted, "{backend:?}: books agree");
        println!(
            "{backend:?} online notice fault table:\n  {}",
            table.join("\n  ")
        );
        gw.stop().await;
    }
}

/// Holds the store's writer: a lock the first batch of writes must wait
/// for (PostgreSQL: the audit chain head's row, which every batch takes
/// last; SQLite: the database's write lock), so that writes sent while it
/// is held meet in a later batch than the ones already taken.
struct HeldWriter {
    release: Box<dyn FnOnce() -> futures::future::BoxFuture<'static, ()> + Send>,
}

impl HeldWriter {
    async fn take(backend: Backend, url: &str) -> Self {
        use sqlx::Connection as _;
        match backend {
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
                sqlx::query("SELECT sequence FROM audit_head WHERE id = 1 FOR UPDATE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                Self {
                    release: Box::new(move || {
                        Box::pin(async move {
                            sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
                        })
                    }),
                }
            }
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                Self {
                    release: Box::new(move || {
                        Box::pin(async move {
                            sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
                        })
                    }),
                }
            }
        }
    }

    async fn release(self) {
        (self.release)().await;
    }
}

/// Waits (bounded) until the store's writer reports `done`.
async fn wait_for_writer(
    store: &dyn Database,
    what: &str,
    done: impl Fn(posgate_core::ports::db::WriteStats) -> bool,
) {
    let started = std::time::Instant::now();
    while !done(store.write_stats()) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "writer never reached: {what} ({:?})",
            store.write_stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// 50 tills send the same PayBill for an online biller at once, in two
/// waves that reach the store's writer in different batches: the first
/// wave's batch waits on a held lock until the second wave is queued too.
/// One notice reaches the biller, one transaction is stored, and every
/// till (retrying while the first request's outcome is unknown, as a POS
/// does) gets the same answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_duplicates_over_several_batches_notify_once() {
    for backend in backends() {
        let world = BillerWorld::start(backend).await;
        let store = std::sync::Arc::clone(world.gw.store());
        let before = store.write_stats();
        let held = HeldWriter::take(backend, world.gw.db_url()).await;
        let request = pay("storm-1", BILLS[1]);
        let send = |count: usize| {
            (0..count)
                .map(|_| {
                    let mut client = world.client();
                    let request = request.clone();
                    tokio::spawn(async move { pay_until_final(&mut client, &request).await })
                })
                .collect::<Vec<_>>()
        };
        let mut calls = send(10);
        wait_for_writer(store.as_ref(), "first wave taken", |now| {
            now.submitted >= before.submitted + 10 && now.batches > before.batches
        })
        .await;
        let first_taken = store.write_stats().batches;
        calls.extend(send(40));
        wait_for_writer(store.as_ref(), "second wave queued", |now| {
            now.submitted >= before.submitted + 50
        })
        .await;
        held.release().await;
        let answers: Vec<pb::BillPayment> = futures::future::join_all(calls)
            .await
            .into_iter()
            .map(|joined| joined.unwrap().unwrap())
            .collect();
        assert!(
            answers.iter().all(|answer| *answer == answers[0]),
            "{backend:?}: 50 identical answers"
        );
        assert_eq!(answers[0].status(), pb::BillPaymentStatus::Paid);
        let after = store.write_stats();
        assert!(
            after.batches > first_taken,
            "{backend:?}: the second wave met in a later batch ({before:?} -> {after:?})"
        );
        assert_eq!(
            world.sim.biller_counters().notices,
            1,
            "{backend:?}: one partner call"
        );
        let counts = store.row_counts().await.unwrap();
        assert_eq!(
            (counts.transactions, counts.idempotency_keys),
            (1, 1),
            "{backend:?}: one transaction"
        );
        assert_books_agree(
            store.as_ref(),
            &world.sim,
            &[answers[0].transaction_id.clone()],
        )
        .await;
        world.stop().await;
    }
}

/// A queued notice survives a restart: the gateway stops while the
/// biller's answers do not verify, and a new gateway on the same database
/// resolves it from the queue; the POS's retry gets the final answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_notice_survives_restart() {
    for backend in backends() {
        let world = BillerWorld::start(backend).await;
        let mut client = world.client();
        world.sim.set_faults(FaultConfig {
            bad_signature: 1.0,
            ..FaultConfig::default()
        });
        let request = pay("restart-1", BILLS[0]);
        let status = client.pay_bill(request.clone()).await.unwrap_err();
        assert_eq!(error_reason(&status), "OUTCOME_UNKNOWN");
        let BillerWorld { gw, sim, extra } = world;
        let db = gw.stop_keeping_db().await;
        assert_eq!(
            db.store().await.bill_saf_open().await.unwrap(),
            1,
            "the notice is queued in the database"
        );
        sim.set_faults(FaultConfig::default());
        let gw =
            TestGateway::start_with(db, utc("2026-11-23T03:05:00Z"), OPEN_LIMITS, |_| extra).await;
        let mut client = gw.client.clone();
        let payment = pay_until_final(&mut client, &request).await.unwrap();
        assert_eq!(payment.status(), pb::BillPaymentStatus::Paid);
        assert_eq!(gw.store().bill_saf_open().await.unwrap(), 0);
        assert_eq!(
            sim.biller_counters().notices,
            1,
            "applied once, never sent again"
        );
        assert_books_agree(gw.store().as_ref(), &sim, &[payment.transaction_id]).await;
        gw.stop().await;
        sim.shutdown().await;
    }
}

/// SIGKILL of `posgate serve` while the biller holds a notice it has
/// applied: the restarted gateway finds the notice it never finished, asks
/// the biller, records it paid, and the POS's retry gets that answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_notice_ends_paid_once() {
    for backend in backends() {
        init_tracing();
        let db = TestDb::new(backend).await;
        let dir = db.dir.path().to_owned();
        write_test_keystore(&dir.join("keys.ks"), &dir.join("master.key"))
            .await
            .unwrap();
        let (server_tls, client_tls) = pki(&dir);
        // `posgate serve` runs on the real clock, and the biller refuses
        // past-due slips: the bills fall due 90 days from today.
        let due = (chrono::Utc::now().date_naive() + chrono::Days::new(90))
            .format("%Y-%m-%d")
            .to_string();
        let mut biller = sim_config(server_tls);
        for bill in &mut biller.bills {
            bill.due_date = Some(due.clone());
        }
        let sim = BillerSim::start(biller).await.unwrap();
        // The biller applies the notice and keeps quiet: the gateway waits.
        sim.set_faults(FaultConfig {
            no_response: 1.0,
            ..FaultConfig::default()
        });
        let (pki, port, config) = serve_config(&db, &biller_config(&dir, sim.addr(), &client_tls));

        let mut gateway: Child = serve(&config);
        let mut client = BillPaymentServiceClient::new(connect_channel(port, &pki).await);
        let mut request = pay("kill-1", BILLS[0]);
        request.slip = Some(pb::BillSlip {
            barcodes: tw_slip(AGENCY, BILLS[0].0, &due, BILLS[0].1),
            biller_id: String::new(),
        });
        let mut caller = client.clone();
        let attempt = request.clone();
        let in_flight = tokio::spawn(async move { caller.pay_bill(attempt).await });
        let started = std::time::Instant::now();
        while sim.biller_counters().notices == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the notice reached the biller"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // SIGKILL: no shutdown, no answer recorded.
        gateway.0.kill().unwrap();
        gateway.0.wait().unwrap();
        assert!(
            in_flight.await.unwrap().is_err(),
            "the POS never got an answer"
        );

        sim.set_faults(FaultConfig::default());
        let _restarted = serve(&config);
        client = BillPaymentServiceClient::new(connect_channel(port, &pki).await);
        let payment = pay_until_final(&mut client, &request).await.unwrap();
        assert_eq!(payment.status(), pb::BillPaymentStatus::Paid, "{backend:?}");
        assert_eq!(
            sim.biller_counters().notices,
            1,
            "{backend:?}: applied once"
        );
        let store = db.store().await;
        assert_books_agree(store.as_ref(), &sim, &[payment.transaction_id]).await;
        sim.shutdown().await;
    }
}

/// The example config's online biller (uncommented) parses; a bad
/// `[[biller]]` online setting is refused naming its key.
#[tokio::test]
async fn online_biller_config_is_checked() {
    let example = include_str!("../../../config/posgate.example.toml");
    let start = example.find("# [[biller]]\n# id = \"CTBC-CARD\"").unwrap();
    let end = start + example[start..].find("\n\n").unwrap();
    let section: String = example[start..end]
        .lines()
        .map(|line| line.strip_prefix("# ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let pki = posgate::tls::DevPki::generate(dir.path()).unwrap();
    let base = super::support::config_text("sqlite://unused.db", &pki, OPEN_LIMITS);
    let config = posgate_core::config::Config::parse(&format!("{base}\n{section}\n")).unwrap();
    let online = config
        .billers
        .iter()
        .find(|biller| biller.id == "CTBC-CARD");
    assert!(
        online.unwrap().online.is_some(),
        "the example is an online biller"
    );

    let bad = [
        (
            section.replace("mode = \"online\"", "mode = \"live\""),
            "biller[3].mode",
        ),
        (
            section.replace(
                "biller_public_key_hex = \"3d40",
                "biller_public_key_hex = \"zz40",
            ),
            "biller[3].online.biller_public_key_hex",
        ),
        (
            section.replace("url = \"https://", "url = \"http://"),
            "biller[3].online.url",
        ),
        (
            section[..section.find("[biller.online]").unwrap()].to_owned(),
            "biller[3].online",
        ),
    ];
    for (text, key) in bad {
        let error = posgate_core::config::Config::parse(&format!("{base}\n{text}\n")).unwrap_err();
        assert!(error.to_string().contains(key), "{key}: {error}");
    }
}

/// Each online biller has its own health entry (`biller:<id>`) that follows
/// its circuit breaker; `BillPaymentService` stays `SERVING` while it is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn biller_health_follows_its_breaker() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let world = BillerWorld::start(Backend::Sqlite).await;
    let health = HealthClient::new(world.gw.channel.clone());
    let status_of = |service: String| {
        let mut health = health.clone();
        async move {
            health
                .check(tonic_health::pb::HealthCheckRequest { service })
                .await
                .map(|answer| answer.into_inner().status())
                .ok()
        }
    };
    let biller = posgate::server::biller_health_name(BILLER);
    let bills = "posgate.v1.BillPaymentService".to_owned();
    let started = std::time::Instant::now();
    while status_of(biller.clone()).await != Some(ServingStatus::Serving) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "biller reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let BillerWorld { gw, sim, .. } = world;
    sim.shutdown().await;
    let mut client = gw.client.clone();
    let started = std::time::Instant::now();
    while status_of(biller.clone()).await != Some(ServingStatus::NotServing) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "breaker opened"
        );
        let _ = client.pay_bill(pay("down", BILLS[0])).await;
    }
    assert_eq!(status_of(bills).await, Some(ServingStatus::Serving));
    gw.stop().await;
}
