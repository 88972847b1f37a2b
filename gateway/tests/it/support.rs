//! Test support: backends (a temporary SQLite file, or a private PostgreSQL
//! schema per test), a gateway started in-process on a real mutual-TLS
//! socket with a hand-set clock, more instances of it on the same database,
//! client channels per caller identity (each with its own certificate from
//! the test's dev PKI), and slip builders.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDate, Utc};
use pb::bill_payment_service_client::BillPaymentServiceClient;
use posgate::server::{self, RunningServer};
use posgate::tls::{DevPki, client_tls_as};
use posgate_api::access::Identity;
use posgate_core::bill::barcode::{self, BarcodeProfile, ParsedSlip};
use posgate_core::config::Config;
use posgate_core::model::clock::ManualClock;
use posgate_core::ports::db::Database;
use posgate_proto::v1 as pb;
use posgate_store as store;
use tonic::transport::Channel;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The backends to run a test on: SQLite always, PostgreSQL when
/// `POSGATE_TEST_PG_URL` is set (CI always sets it; elsewhere the skip is printed).
pub fn backends() -> Vec<Backend> {
    if std::env::var("POSGATE_TEST_PG_URL").is_ok() {
        vec![Backend::Sqlite, Backend::Postgres]
    } else {
        eprintln!(
            "SKIPPED on PostgreSQL: POSGATE_TEST_PG_URL is not set (CI sets it); running on SQLite only"
        );
        vec![Backend::Sqlite]
    }
}

/// A database for one test, removed when dropped (the PostgreSQL schema is
/// dropped best-effort; the SQLite file goes with its temporary directory).
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("posgate.db").display()),
            Backend::Postgres => postgres_schema_url().await,
        };
        Self { url, dir }
    }

    /// A migrated store on this database.
    pub async fn store(&self) -> Arc<dyn Database> {
        let store = store::open(&self.url, 8).await.expect("open store");
        store.migrate().await.expect("migrate");
        store
    }
}

/// Creates a fresh schema and returns a URL whose connections use it, so
/// PostgreSQL tests run in parallel without seeing each other's rows.
async fn postgres_schema_url() -> String {
    use sqlx::Connection as _;
    let base = std::env::var("POSGATE_TEST_PG_URL").expect("checked by backends()");
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .expect("connect to POSGATE_TEST_PG_URL");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .expect("create schema");
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{schema}")
}

/// The test configuration: a Taipei store (23:00 cutoff), a Tokyo store
/// (midnight cutoff), and Taiwan and Japan billers.
pub fn config_text(db_url: &str, pki: &DevPki, limits: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
tls_cert = "{cert}"
tls_key = "{key}"
client_ca = "{ca}"
crl = "{crl}"
shutdown_grace_seconds = 5

[database]
url = "{db_url}"
max_connections = 8

[instance]
# Tests stop servers often: no pause between NOT_SERVING and closing.
drain_ms = 0

[limits]
{limits}

[[store]]
id = "S001"
name = "Taipei Xinyi"
time_zone = "Asia/Taipei"
cutoff = "23:00"

[[store]]
id = "S101"
name = "Tokyo Shinjuku"
time_zone = "Asia/Tokyo"
cutoff = "00:00"

[[biller]]
id = "TPC"
name = "Taiwan Power Company"
profile = "tw-cvs-3seg"
agency_codes = ["TPC"]
currency = "TWD"
min_amount_minor = 100
max_amount_minor = 2000000
accept_after_due = false
fee = {{ kind = "fixed", amount_minor = 1000 }}

[[biller]]
id = "WATER"
name = "Taipei Water Department"
profile = "tw-cvs-3seg"
agency_codes = ["TWW"]
currency = "TWD"
min_amount_minor = 100
max_amount_minor = 5000000
accept_after_due = true
allow_repeat_payment = true
fee = {{ kind = "tiered", tiers = [ {{ up_to_minor = 100000, fee_minor = 500 }}, {{ up_to_minor = 999999999999, fee_minor = 800 }} ] }}

[[biller]]
id = "TKGAS"
name = "Tokyo Gas"
profile = "jp-gs1-cvs"
agency_codes = ["912345"]
currency = "JPY"
min_amount_minor = 1
max_amount_minor = 300000
accept_after_due = false
fee = {{ kind = "percent", rate_percent = "0.5", min_minor = 30, max_minor = 150, rounding = "half-up" }}
"#,
        cert = pki.server_cert.display(),
        key = pki.server_key.display(),
        ca = pki.ca_cert.display(),
        crl = pki.crl.display(),
    )
}

/// Generous limits so tests are never shed unless they mean to be.
pub const OPEN_LIMITS: &str = "terminal_per_second = 100000\nterminal_burst = 100000\nstore_per_second = 100000\nstore_burst = 100000\nmax_in_flight = 4096";

/// The identity of the common test terminal, S001/T01.
pub fn terminal(store_id: &str, terminal_id: &str) -> Identity {
    Identity::Terminal {
        store_id: store_id.to_owned(),
        terminal_id: terminal_id.to_owned(),
    }
}

/// A gateway running in this process, with its clock, its dev PKI, and
/// clients connected as terminal S001/T01 (the identity most tests use).
#[derive(Debug)]
pub struct TestGateway {
    /// Keeps the database (and the certificates in its directory) alive.
    db: TestDb,
    pub server: RunningServer,
    pub clock: Arc<ManualClock>,
    /// The gateway's CA, server certificate and CRL.
    pub pki: DevPki,
    /// `BillPaymentService` as terminal S001/T01.
    pub client: BillPaymentServiceClient<Channel>,
    /// A channel as terminal S001/T01.
    pub channel: Channel,
    channels: Mutex<HashMap<Identity, Channel>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// The configuration it runs, for more instances of it.
    config_text: String,
}

/// A gateway server started in this process with its own listener: the
/// extra instances of a test that runs several on one database.
#[derive(Debug)]
pub struct TestInstance {
    pub server: RunningServer,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestInstance {
    /// Starts a server on `config` reading `clock`.
    pub async fn start(config: &Config, clock: Arc<ManualClock>) -> Self {
        let (server, shutdown) = start_server(config, clock).await;
        Self {
            server,
            shutdown: Some(shutdown),
        }
    }

    /// A channel to this instance presenting a new certificate for
    /// `identity` from `pki`. It connects on first request.
    pub fn channel_as(&self, pki: &DevPki, identity: &Identity) -> Channel {
        endpoint(self.server.addr, pki, &issue(pki, identity)).connect_lazy()
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        stop_server(&mut self.server, self.shutdown.take()).await;
    }
}

/// Starts `posgate::server::start` with a shutdown signal the caller keeps.
async fn start_server(
    config: &Config,
    clock: Arc<ManualClock>,
) -> (RunningServer, tokio::sync::oneshot::Sender<()>) {
    let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
    let server = server::start(config, clock, async {
        let _ = stop.await;
    })
    .await
    .expect("server starts");
    (server, shutdown)
}

/// Signals `server` to stop (unless already signalled) and waits for it.
async fn stop_server(
    server: &mut RunningServer,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
) {
    if let Some(shutdown) = shutdown {
        let _ = shutdown.send(());
    }
    let _ = (&mut server.task).await;
}

impl TestGateway {
    pub async fn start(backend: Backend, now: DateTime<Utc>) -> Self {
        Self::start_with_limits(backend, now, OPEN_LIMITS).await
    }

    pub async fn start_with_limits(backend: Backend, now: DateTime<Utc>, limits: &str) -> Self {
        Self::start_with(TestDb::new(backend).await, now, limits, |_| String::new()).await
    }

    /// Starts with extra configuration sections, written by `extra` into the
    /// test's directory if it needs files (keystores, keys).
    pub async fn start_with(
        db: TestDb,
        now: DateTime<Utc>,
        limits: &str,
        extra: impl FnOnce(&std::path::Path) -> String,
    ) -> Self {
        let pki = DevPki::generate(db.dir.path()).expect("dev pki");
        let text = config_text(&db.url, &pki, limits) + &extra(db.dir.path());
        let config = Config::parse(&text).expect("test config parses");
        let clock = Arc::new(ManualClock::new(now));
        let (server, shutdown) = start_server(&config, clock.clone()).await;
        let common = terminal("S001", "T01");
        let channel = endpoint(server.addr, &pki, &issue(&pki, &common))
            .connect()
            .await
            .expect("connect as S001/T01");
        let client = BillPaymentServiceClient::new(channel.clone());
        Self {
            db,
            server,
            clock,
            pki,
            client,
            channels: Mutex::new(HashMap::from([(common, channel.clone())])),
            channel,
            shutdown: Some(shutdown),
            config_text: text,
        }
    }

    /// Another instance of this gateway: the same configuration (database,
    /// PKI, partners), its own listener, the same clock.
    pub async fn another_instance(&self) -> TestInstance {
        let config = Config::parse(&self.config_text).expect("test config parses");
        TestInstance::start(&config, self.clock.clone()).await
    }

    /// A channel to the gateway presenting a certificate for `identity`
    /// (issued on first use, then reused). It connects on first request.
    pub fn channel_as(&self, identity: &Identity) -> Channel {
        let mut channels = self.channels.lock().expect("not poisoned");
        channels
            .entry(identity.clone())
            .or_insert_with(|| {
                endpoint(self.server.addr, &self.pki, &issue(&self.pki, identity)).connect_lazy()
            })
            .clone()
    }

    /// `BillPaymentService` as terminal `store_id`/`terminal_id`.
    pub fn bills_as(&self, store_id: &str, terminal_id: &str) -> BillPaymentServiceClient<Channel> {
        BillPaymentServiceClient::new(self.channel_as(&terminal(store_id, terminal_id)))
    }

    pub fn store(&self) -> &Arc<dyn Database> {
        &self.server.gateway.db
    }

    /// The database URL, for tests that reach past the gateway (tampering).
    pub fn db_url(&self) -> &str {
        &self.db.url
    }

    /// Stops the server gracefully and hands back its database (and the
    /// directory with its files), for a restart on the same data.
    pub async fn stop_keeping_db(mut self) -> TestDb {
        stop_server(&mut self.server, self.shutdown.take()).await;
        self.db
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        stop_server(&mut self.server, self.shutdown.take()).await;
    }
}

/// Issues a client certificate for `identity` into the PKI's directory.
pub fn issue(pki: &DevPki, identity: &Identity) -> posgate::tls::ClientCert {
    let name = format!("client-{}", uuid::Uuid::now_v7().simple());
    pki.issue_client(&pki.dir, &name, &identity.spiffe_id())
        .expect("issue client cert")
}

/// An endpoint to `addr` trusting the PKI's CA and presenting `cert`.
pub fn endpoint(
    addr: std::net::SocketAddr,
    pki: &DevPki,
    cert: &posgate::tls::ClientCert,
) -> tonic::transport::Endpoint {
    Channel::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(client_tls_as(&pki.ca_cert, "localhost", cert).expect("client tls"))
        .expect("tls config")
}

pub fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("rfc3339")
        .with_timezone(&Utc)
}

pub fn date(text: &str) -> NaiveDate {
    NaiveDate::from_str(text).expect("date")
}

/// A Taiwan Power slip: three Code 39 barcodes.
pub fn tw_slip(agency_code: &str, reference: &str, due: &str, amount_twd: u64) -> Vec<String> {
    barcode::encode(&ParsedSlip {
        profile: BarcodeProfile::TaiwanCvsThreeSegment,
        agency_code: agency_code.to_owned(),
        bill_reference: format!("{reference:0>16}"),
        due_date: date(due),
        amount_whole: amount_twd,
        period: Some("1511".to_owned()),
        reissue_count: None,
        stamp_duty: None,
    })
    .expect("valid TW slip")
}

/// A Tokyo Gas slip: one GS1-128 barcode.
pub fn jp_slip(company_code: &str, reference: &str, due: &str, amount_yen: u64) -> Vec<String> {
    barcode::encode(&ParsedSlip {
        profile: BarcodeProfile::JapanGs1Cvs,
        agency_code: company_code.to_owned(),
        bill_reference: format!("{reference:0>21}"),
        due_date: date(due),
        amount_whole: amount_yen,
        period: None,
        reissue_count: Some(0),
        stamp_duty: Some(false),
    })
    .expect("valid JP slip")
}

pub fn context(
    store: &str,
    terminal: &str,
    key: &str,
    at: DateTime<Utc>,
) -> Option<pb::RequestContext> {
    Some(pb::RequestContext {
        store_id: store.to_owned(),
        terminal_id: terminal.to_owned(),
        client_request_id: key.to_owned(),
        pos_timestamp: Some(prost_types::Timestamp {
            seconds: at.timestamp(),
            nanos: 0,
        }),
        operator_id: "OP1".to_owned(),
    })
}

pub fn money(amount_minor: i64, currency: &str) -> Option<pb::Money> {
    Some(pb::Money {
        amount_minor,
        currency: currency.to_owned(),
    })
}

/// A valid PayBill of NT$1,234 to Taiwan Power from S001/T01 at `at`, for
/// a slip of its own per key (a slip is paid once): the bill reference is
/// derived from `key`, so the same key always pays the same slip.
pub fn tw_pay(key: &str, at: DateTime<Utc>) -> pb::PayBillRequest {
    pb::PayBillRequest {
        context: context("S001", "T01", key, at),
        slip: Some(pb::BillSlip {
            barcodes: tw_slip("TPC", &reference_of(key), "2026-12-31", 1234),
            biller_id: String::new(),
        }),
        amount: money(123_400, "TWD"),
    }
}

/// A 16-character bill reference of its own for `key` (FNV-1a of the key).
pub fn reference_of(key: &str) -> String {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("KS{:014}", hash % 100_000_000_000_000)
}

/// The field paths named in a status's google.rpc.BadRequest.
pub fn bad_request_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt as _;
    status
        .get_details_bad_request()
        .map(|bad| {
            bad.field_violations
                .into_iter()
                .map(|violation| violation.field)
                .collect()
        })
        .unwrap_or_default()
}

/// Reads a manual clock in tests without importing the trait everywhere.
pub trait NowForTest {
    fn now_for_test(&self) -> DateTime<Utc>;
}

impl NowForTest for ManualClock {
    fn now_for_test(&self) -> DateTime<Utc> {
        posgate_core::model::clock::Clock::now(self)
    }
}
