//! Starts a real `posgate serve` for the tests, configured like
//! `config/posgate.example.toml` (the file itself, with its paths, ports and
//! rate limits rewritten): a dev CA, server certificate, CRL and a client
//! certificate per identity the suite acts as, made by `posgate certs`,
//! a fresh SQLite file, the published test keystore made by `posgate keys
//! init-test`, a `posgate sim bank` child (from
//! `config/bank-sim.example.toml`) on a free port as both bank links, a
//! `posgate sim wallet` child (from `config/wallet-sim.example.toml`) as the
//! wallet operator `ICASH`, and a `posgate sim biller` child (from
//! `config/biller-sim.example.toml`) behind the example's online biller
//! (uncommented). Guards kill every process on drop, also when a test panics.

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use posgate_conformance::card::TEST_PIN_KEY_HEX;
use posgate_conformance::target::load_client_certs;
use posgate_conformance::{Ctx, Target};

/// How long the gateway may take to migrate its database, sign on to its
/// banks and start serving.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a simulator may take to print its address.
const SIM_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between readiness probes.
const READY_POLL: Duration = Duration::from_millis(100);

/// What the gateway logs (at info, for `posgate_partners`) per bank link signed on.
const SIGNED_ON: &str = "signed on to the bank";
/// Bank links of the example config (acquirer and co-brand issuer).
const EXAMPLE_BANK_LINKS: usize = 2;
/// The gateway's log filter: warnings, plus the bank links' sign-on.
const GATEWAY_LOG_FILTER: &str = "warn,posgate_partners=info";

/// The example configs, rewritten per test below.
const EXAMPLE_CONFIG: &str = include_str!("../../../config/posgate.example.toml");
const EXAMPLE_BANK_CONFIG: &str = include_str!("../../../config/bank-sim.example.toml");
const EXAMPLE_WALLET_CONFIG: &str = include_str!("../../../config/wallet-sim.example.toml");
/// The wallet operator id the suite's wallet cases use.
pub const WALLET_OPERATOR: &str = "ICASH";
const EXAMPLE_BILLER_CONFIG: &str = include_str!("../../../config/biller-sim.example.toml");
/// The example's online biller section starts with this line (commented out).
const ONLINE_BILLER_START: &str = "# [[biller]]\n# id = \"CTBC-CARD\"";
/// The collection-item code of the example's online biller.
const ONLINE_AGENCY_CODE: &str = "CCB";

/// Share of financial requests the faulty bank leaves unanswered. Below 1.0
/// on purpose: the simulator drops reversals (0400) at the same rate, and a
/// reversal must eventually be acknowledged for the unknown-outcome case.
const FAULTY_BANK_NO_RESPONSE: &str = "0.5";
/// The faulty gateway's bank timeout: short, so an unanswered sale becomes
/// `OUTCOME_UNKNOWN` quickly.
const FAULTY_GATEWAY_BANK_TIMEOUT_MS: &str = "500";

/// What the bank behind a test gateway does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bank {
    /// The example simulator: answers everything.
    Healthy,
    /// The example simulator with `faults.no_response`, behind a gateway with
    /// a 500 ms bank timeout and fast store-and-forward retries.
    DropsAnswers,
}

/// A running `posgate sim bank` or `posgate sim biller`; dropping it kills the process.
pub struct SimProcess {
    child: Child,
    /// Held so the simulator's stdout stays open.
    _stdout: BufReader<ChildStdout>,
    pub addr: String,
    kind: &'static str,
    log: PathBuf,
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SimProcess {
    /// Starts `posgate sim {kind}` with `config` and waits for its address.
    async fn start(
        binary: &Path,
        dir: &Path,
        kind: &'static str,
        config: &str,
    ) -> anyhow::Result<Self> {
        let path = dir.join(format!("{kind}-sim.toml"));
        std::fs::write(&path, config)?;
        let log = dir.join(format!("{kind}-sim.log"));
        let mut child = Command::new(binary)
            .args(["sim", kind, "--config"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {} sim {kind}", binary.display()))?;
        let stdout = child.stdout.take().context("simulator stdout")?;
        // Reading a line blocks; a thread keeps the runtime free and the timeout bounds it.
        let reading = tokio::task::spawn_blocking(move || {
            let mut stdout = BufReader::new(stdout);
            let mut line = String::new();
            let read = stdout.read_line(&mut line);
            (stdout, line, read)
        });
        let outcome = tokio::time::timeout(SIM_READY_TIMEOUT, reading).await;
        let Ok(Ok((stdout, line, Ok(_)))) = outcome else {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "posgate sim {kind} printed no address within {SIM_READY_TIMEOUT:?}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        let mut sim = Self {
            child,
            _stdout: stdout,
            addr: String::new(),
            kind,
            log,
        };
        let listening = format!("{kind} simulator listening on ");
        sim.addr = line
            .trim()
            .strip_prefix(listening.as_str())
            .with_context(|| format!("posgate sim {kind} printed {line:?}:\n{}", sim.log()))?
            .to_owned();
        Ok(sim)
    }

    /// The simulator's log so far, for failure messages.
    pub fn log(&self) -> String {
        format!(
            "--- posgate sim {} ---\n{}",
            self.kind,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }
}

/// A running gateway and its bank; dropping it kills both (gateway first).
pub struct Gateway {
    child: Child,
    pub port: u16,
    pub ca_pem: Vec<u8>,
    /// The client certificates (`posgate certs issue` names) of every identity below.
    pub certs_dir: PathBuf,
    /// The suite's terminal: fresh per gateway, with its certificates issued.
    pub terminal_id: String,
    log: PathBuf,
    bank_kind: Bank,
    pub bank: SimProcess,
    pub wallet: SimProcess,
    pub biller: SimProcess,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// Starts a gateway with a healthy bank and waits until it serves.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(Bank::Healthy).await
    }

    /// Starts the keystore, the bank simulator and `posgate serve`, and
    /// waits until the gateway accepts TLS connections and both bank links
    /// have signed on.
    pub async fn start_with(bank_kind: Bank) -> anyhow::Result<Self> {
        let binary = gateway_binary()?;
        let dir = tempfile::tempdir()?;
        init_test_keystore(&binary, dir.path())?;
        let terminal_id = Target::random_terminal_id();
        let ca_pem = write_dev_pki(&binary, dir.path(), &terminal_id)?;
        let bank = SimProcess::start(&binary, dir.path(), "bank", &bank_config(bank_kind)?).await?;
        let wallet = SimProcess::start(
            &binary,
            dir.path(),
            "wallet",
            &sim_config(dir.path(), EXAMPLE_WALLET_CONFIG, "127.0.0.1:8443")?,
        )
        .await?;
        let biller = SimProcess::start(
            &binary,
            dir.path(),
            "biller",
            &sim_config(dir.path(), EXAMPLE_BILLER_CONFIG, "127.0.0.1:8444")?,
        )
        .await?;
        let port = free_port()?;
        let config = dir.path().join("posgate.toml");
        let text = config_text(dir.path(), port, &bank.addr, bank_kind)?
            + &wallet_operator_section(dir.path(), &wallet.addr)
            + &online_biller_section(dir.path(), &biller.addr)?;
        std::fs::write(&config, text)?;
        let log = dir.path().join("posgate.log");
        let child = Command::new(&binary)
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", GATEWAY_LOG_FILTER)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut gateway = Self {
            child,
            port,
            ca_pem,
            certs_dir: dir.path().to_owned(),
            terminal_id,
            log,
            bank_kind,
            bank,
            wallet,
            biller,
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
            terminal_id: self.terminal_id.clone(),
            operator_id: "OP1".to_owned(),
            tw_agency_code: "TPC".to_owned(),
            tw_currency: "TWD".to_owned(),
            jp_store_id: "S101".to_owned(),
            jp_company_code: "912345".to_owned(),
            pin_terminal_id: "T01".to_owned(),
            pin_key_id: "TPK-TEST".to_owned(),
            pin_key_hex: TEST_PIN_KEY_HEX.to_owned(),
            bank_no_response: self.bank_kind == Bank::DropsAnswers,
            wallet_operator_id: Some(WALLET_OPERATOR.to_owned()),
            online_agency_code: Some(ONLINE_AGENCY_CODE.to_owned()),
            client_certs: load_client_certs(&self.certs_dir).expect("client certificates"),
        }
    }

    /// The gateway's and the simulators' logs so far, for failure messages.
    pub fn log(&self) -> String {
        format!(
            "--- posgate serve ---\n{}\n{}\n{}\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            self.bank.log(),
            self.wallet.log(),
            self.biller.log()
        )
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
            let signed_on = std::fs::read_to_string(&self.log)
                .unwrap_or_default()
                .matches(SIGNED_ON)
                .count();
            let connected = if signed_on >= EXAMPLE_BANK_LINKS {
                Ctx::connect(&self.target()).await.map(drop)
            } else {
                Err(anyhow::anyhow!(
                    "{signed_on} of {EXAMPLE_BANK_LINKS} bank links signed on"
                ))
            };
            match connected {
                Ok(()) => return Ok(()),
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

/// `posgate keys --keystore K --master-key-file M init-test`, as an operator would.
fn init_test_keystore(binary: &Path, dir: &Path) -> anyhow::Result<()> {
    let output = Command::new(binary)
        .arg("keys")
        .arg("--keystore")
        .arg(dir.join("posgate.keystore"))
        .arg("--master-key-file")
        .arg(dir.join("master.key"))
        .arg("init-test")
        .env("RUST_LOG", "warn")
        .output()
        .context("running posgate keys init-test")?;
    ensure!(
        output.status.success(),
        "posgate keys init-test failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// `text` with every `from` replaced by `to`; fails when `from` is absent,
/// so a change to the example config breaks this test loudly, not subtly.
fn rewrite(text: &str, from: &str, to: &str) -> anyhow::Result<String> {
    ensure!(
        text.contains(from),
        "the example config no longer contains {from:?}"
    );
    Ok(text.replace(from, to))
}

/// The example simulator on a free port; with `DropsAnswers`, dropping answers.
fn bank_config(bank: Bank) -> anyhow::Result<String> {
    let text = rewrite(
        EXAMPLE_BANK_CONFIG,
        r#"listen = "127.0.0.1:8583""#,
        r#"listen = "127.0.0.1:0""#,
    )?;
    match bank {
        Bank::Healthy => Ok(text),
        Bank::DropsAnswers => rewrite(
            &text,
            "no_response = 0.0",
            &format!("no_response = {FAULTY_BANK_NO_RESPONSE}"),
        ),
    }
}

/// An example simulator config listening on a free port instead of
/// `listen`, with this test's dev PKI.
fn sim_config(dir: &Path, example: &str, listen: &str) -> anyhow::Result<String> {
    let mut text = rewrite(
        example,
        &format!(r#"listen = "{listen}""#),
        r#"listen = "127.0.0.1:0""#,
    )?;
    for name in ["ca.pem", "server.pem", "server.key"] {
        text = rewrite(
            &text,
            &format!("certs/dev/{name}"),
            &dir.join(name).display().to_string(),
        )?;
    }
    Ok(text)
}

/// The commented `[[wallet_operator]]` of the example config, filled in for
/// the wallet simulator at `addr` (the example's key ids and keys), with card
/// top-ups and auto-reload in NT$100 steps.
fn wallet_operator_section(dir: &Path, addr: &str) -> String {
    let port = addr.rsplit(':').next().unwrap_or_default();
    let path = |name: &str| dir.join(name).display().to_string();
    format!(
        r#"
[[wallet_operator]]
id = "{WALLET_OPERATOR}"
name = "i-Cash"
url = "https://localhost:{port}"
currency = "TWD"
key_id = "posgate-dev-1"
signing_key = "partner-api.signing"
operator_key_id = "icash-sim-1"
operator_public_key_hex = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
ca_cert = "{ca}"
client_cert = "{cert}"
client_key = "{key}"
top_up_unit_minor = 10000
max_top_up_minor = 1000000
max_payment_minor = 1000000
card_top_up = true
reload_steps_minor = [10000, 50000]
"#,
        ca = path("ca.pem"),
        cert = path("operator.wallet-link.pem"),
        key = path("operator.wallet-link.key"),
    )
}

/// The example's online biller section, uncommented, pointed at the biller
/// simulator at `addr` with posgate's client certificate `operator.o1`.
fn online_biller_section(dir: &Path, addr: &str) -> anyhow::Result<String> {
    let start = EXAMPLE_CONFIG
        .find(ONLINE_BILLER_START)
        .context("the example config no longer has the online biller section")?;
    let section = &EXAMPLE_CONFIG[start..];
    let end = section.find("\n\n").unwrap_or(section.len());
    let mut text: String = section[..end]
        .lines()
        .map(|line| line.strip_prefix("# ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n");
    let path = |name: &str| dir.join(name).display().to_string();
    for (from, to) in [
        (
            "https://localhost:8444".to_owned(),
            format!("https://{addr}"),
        ),
        ("certs/dev/ca.pem".to_owned(), path("ca.pem")),
        (
            "certs/dev/biller-link.pem".to_owned(),
            path("operator.o1.pem"),
        ),
        (
            "certs/dev/biller-link.key".to_owned(),
            path("operator.o1.key"),
        ),
    ] {
        text = rewrite(&text, &from, &to)?;
    }
    Ok(format!("\n{text}\n"))
}

/// The example gateway config, with this test's paths, port and bank.
fn config_text(dir: &Path, port: u16, bank_addr: &str, bank: Bank) -> anyhow::Result<String> {
    let path = |name: &str| dir.join(name).display().to_string();
    let mut rewrites = vec![
        ("127.0.0.1:50051".to_owned(), format!("127.0.0.1:{port}")),
        ("certs/server.pem".to_owned(), path("server.pem")),
        ("certs/server.key".to_owned(), path("server.key")),
        ("certs/ca.pem".to_owned(), path("ca.pem")),
        ("certs/crl.pem".to_owned(), path("crl.pem")),
        (
            "shutdown_grace_seconds = 20".to_owned(),
            "shutdown_grace_seconds = 1".to_owned(),
        ),
        (
            "sqlite://posgate.db".to_owned(),
            format!("sqlite://{}", path("gw.db")),
        ),
        ("keys/posgate.keystore".to_owned(), path("posgate.keystore")),
        ("keys/master.key".to_owned(), path("master.key")),
        ("127.0.0.1:8583".to_owned(), bank_addr.to_owned()),
    ];
    // Rate limits far above the suite's bursts: the self-test checks the
    // contract, not the shedding (which the suite tolerates by retrying).
    for limit in [
        "terminal_per_second = 20",
        "terminal_burst = 40",
        "store_per_second = 100",
        "store_burst = 200",
    ] {
        let name = limit.split(" = ").next().unwrap_or(limit);
        rewrites.push((limit.to_owned(), format!("{name} = 100000")));
    }
    if bank == Bank::DropsAnswers {
        rewrites.extend([
            (
                "request_timeout_ms = 30000".to_owned(),
                format!("request_timeout_ms = {FAULTY_GATEWAY_BANK_TIMEOUT_MS}"),
            ),
            (
                "retry_min_ms = 1000".to_owned(),
                "retry_min_ms = 100".to_owned(),
            ),
            (
                "retry_max_ms = 300000".to_owned(),
                "retry_max_ms = 1000".to_owned(),
            ),
        ]);
    }
    let mut text = EXAMPLE_CONFIG.to_owned();
    for (from, to) in &rewrites {
        text = rewrite(&text, from, to)?;
    }
    Ok(text)
}

/// A port that was free a moment ago. Another process could take it before
/// the gateway binds; the gateway then exits and the test says so.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// `posgate certs init`, then a client certificate for every identity the
/// suite acts as (its terminal at both stores, its second terminal, the PIN
/// terminal, an auditor and an operator), as an operator would; returns the CA PEM.
fn write_dev_pki(binary: &Path, dir: &Path, terminal_id: &str) -> anyhow::Result<Vec<u8>> {
    let certs = |args: &[&str]| -> anyhow::Result<()> {
        let output = Command::new(binary)
            .arg("certs")
            .args(args)
            .arg("--dir")
            .arg(dir)
            .env("RUST_LOG", "warn")
            .output()
            .context("running posgate certs")?;
        ensure!(
            output.status.success(),
            "posgate certs {args:?} failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    };
    certs(&["init"])?;
    for terminal in [
        format!("S001/{terminal_id}"),
        format!("S001/{terminal_id}-B"),
        format!("S101/{terminal_id}"),
        "S001/T01".to_owned(),
    ] {
        certs(&["issue", "--terminal", &terminal])?;
    }
    certs(&["issue", "--auditor", "a1"])?;
    certs(&["issue", "--operator", "o1"])?;
    // posgate's client certificate towards the wallet operator.
    certs(&["issue", "--operator", "wallet-link"])?;
    Ok(std::fs::read(dir.join("ca.pem"))?)
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
        .args(["build", "-p", "posgate", "--bin", "posgate"])
        .env("CARGO_TARGET_DIR", target_dir);
    if profile_dir
        .file_name()
        .is_some_and(|name| name == "release")
    {
        build.arg("--release");
    }
    let status = build.status().context("running cargo build for posgate")?;
    ensure!(status.success(), "cargo build -p posgate failed: {status}");
    Ok(candidate)
}
