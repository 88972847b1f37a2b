//! Starts a real `posgate serve` for the tests: a dev CA and server
//! certificate made with rcgen, a config with the example stores and billers
//! on a fresh SQLite file, a free port, and a guard that kills the process.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use posgate_conformance::{Ctx, Target};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// How long the gateway may take to migrate its database and start serving.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause between readiness probes.
const READY_POLL: Duration = Duration::from_millis(100);

/// The stores and billers of `config/posgate.example.toml`, which the
/// suite's default settings (S001/TPC, S101/912345) expect.
const EXAMPLE_STORES_AND_BILLERS: &str = r#"
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
agency_codes = ["TPC", "TP2"]
currency = "TWD"
min_amount_minor = 100
max_amount_minor = 2000000
accept_after_due = false
fee = { kind = "fixed", amount_minor = 1000 }

[[biller]]
id = "TWD-WATER"
name = "Taipei Water Department"
profile = "tw-cvs-3seg"
agency_codes = ["TWW"]
currency = "TWD"
min_amount_minor = 100
max_amount_minor = 5000000
accept_after_due = true
fee = { kind = "tiered", tiers = [ { up_to_minor = 100000, fee_minor = 500 }, { up_to_minor = 999999999999, fee_minor = 800 } ] }

[[biller]]
id = "TKGAS"
name = "Tokyo Gas"
profile = "jp-gs1-cvs"
agency_codes = ["912345"]
currency = "JPY"
min_amount_minor = 1
max_amount_minor = 300000
accept_after_due = false
fee = { kind = "percent", rate_percent = "0.5", min_minor = 30, max_minor = 150, rounding = "half-up" }
"#;

/// A running gateway; dropping it kills the process (also when a test panics).
pub struct Gateway {
    child: Child,
    pub port: u16,
    pub ca_pem: Vec<u8>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// Starts `posgate serve` and waits until it accepts TLS connections.
    pub async fn start() -> anyhow::Result<Self> {
        let binary = gateway_binary()?;
        let dir = tempfile::tempdir()?;
        let ca_pem = write_dev_pki(dir.path())?;
        let port = free_port()?;
        let config = dir.path().join("posgate.toml");
        std::fs::write(&config, config_text(dir.path(), port))?;
        let log = dir.path().join("posgate.log");
        let child = Command::new(&binary)
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut gateway = Self {
            child,
            port,
            ca_pem,
            log,
            _dir: dir,
        };
        gateway.wait_ready().await?;
        Ok(gateway)
    }

    /// Settings for the suite against this gateway, with a fresh terminal.
    pub fn target(&self) -> Target {
        Target {
            addr: format!("https://127.0.0.1:{}", self.port),
            ca_pem: Some(self.ca_pem.clone()),
            domain: Some("localhost".to_owned()),
            store_id: "S001".to_owned(),
            terminal_id: Target::random_terminal_id(),
            operator_id: "OP1".to_owned(),
            tw_agency_code: "TPC".to_owned(),
            tw_currency: "TWD".to_owned(),
            jp_store_id: "S101".to_owned(),
            jp_company_code: "912345".to_owned(),
        }
    }

    /// The gateway's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "posgate exited with {status} before serving:\n{}",
                    self.log()
                );
            }
            match Ctx::connect(&self.target()).await {
                Ok(_) => return Ok(()),
                Err(error) if started.elapsed() > READY_TIMEOUT => {
                    bail!(
                        "posgate not ready after {READY_TIMEOUT:?}: {error:#}\n{}",
                        self.log()
                    );
                }
                Err(_) => tokio::time::sleep(READY_POLL).await,
            }
        }
    }
}

fn config_text(dir: &Path, port: u16) -> String {
    // Rate limits far above the suite's bursts: the self-test checks the
    // contract, not the shedding (which the suite tolerates by retrying).
    format!(
        r#"[server]
listen = "127.0.0.1:{port}"
tls_cert = "{cert}"
tls_key = "{key}"
shutdown_grace_seconds = 1

[database]
url = "sqlite://{db}"
max_connections = 4

[limits]
terminal_per_second = 100000
terminal_burst = 100000
store_per_second = 100000
store_burst = 100000
max_in_flight = 1024
{EXAMPLE_STORES_AND_BILLERS}"#,
        cert = dir.join("server.pem").display(),
        key = dir.join("server.key").display(),
        db = dir.join("gw.db").display(),
    )
}

/// A port that was free a moment ago. Another process could take it before
/// the gateway binds; the gateway then exits and the test says so.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Writes a CA and a server certificate for localhost / 127.0.0.1; returns the CA PEM.
fn write_dev_pki(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "posgate conformance test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate()?;
    let mut server_params = CertificateParams::new(vec!["localhost".to_owned()])?;
    server_params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    server_params
        .distinguished_name
        .push(DnType::CommonName, "posgate (conformance test)");
    let server_cert = server_params.signed_by(&server_key, &issuer)?;

    std::fs::write(dir.join("ca.pem"), ca_cert.pem())?;
    std::fs::write(dir.join("server.pem"), server_cert.pem())?;
    std::fs::write(dir.join("server.key"), server_key.serialize_pem())?;
    Ok(ca_cert.pem().into_bytes())
}

/// The binary, found once per test process.
static BINARY: Mutex<Option<PathBuf>> = Mutex::new(None);

/// `POSGATE_BIN`, else `posgate` next to this test's target directory
/// (built by `cargo test --workspace`), else built once with cargo.
fn gateway_binary() -> anyhow::Result<PathBuf> {
    let mut found = BINARY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(path) = found.as_ref() {
        return Ok(path.clone());
    }
    let path = match std::env::var_os("POSGATE_BIN") {
        Some(path) => PathBuf::from(path),
        None => built_binary()?,
    };
    ensure!(
        path.is_file(),
        "posgate binary {} does not exist",
        path.display()
    );
    *found = Some(path.clone());
    Ok(path)
}

fn built_binary() -> anyhow::Result<PathBuf> {
    // This test runs as target/<profile>/deps/it-<hash>.
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable is not in target/<profile>/deps")?;
    let candidate = profile_dir.join(format!("posgate{}", std::env::consts::EXE_SUFFIX));
    if candidate.is_file() {
        return Ok(candidate);
    }
    let target_dir = profile_dir.parent().context("no target directory")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "-p", "posgate-gateway", "--bin", "posgate"])
        .env("CARGO_TARGET_DIR", target_dir);
    if profile_dir
        .file_name()
        .is_some_and(|name| name == "release")
    {
        build.arg("--release");
    }
    let status = build.status().context("running cargo build for posgate")?;
    ensure!(
        status.success(),
        "cargo build -p posgate-gateway failed: {status}"
    );
    Ok(candidate)
}
