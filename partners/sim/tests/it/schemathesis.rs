//! Runs `schemathesis` (`PyPI`) against live wallet and biller simulators with the
//! OpenAPI document: every request signed by a Python hook per RFC 9421
//! (`tests/schemathesis/posgate_signing.py`), every answer's signature checked
//! by it, and schemathesis's own checks (status codes, content types,
//! response schemas, headers, negative data rejected) over the wallet, bill
//! and transaction endpoints. Skipped with a printed reason when schemathesis is
//! not installed, unless `POSGATE_REQUIRE_SCHEMATHESIS=1`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use posgate_partners::http::TlsFiles;
use posgate_sims::biller::BillerSim;
use posgate_sims::wallet::WalletSim;

use super::biller_sim::biller_config;
use super::wallet_sim::{
    POSGATE_KEY_ID, POSGATE_SEED_HEX, SIM_SEED_HEX, pki, public_of, sim_config,
};

/// Examples per operation: enough to hit each schema branch, small enough
/// for a 2-core CI run (about a minute in all).
const MAX_EXAMPLES: &str = "40";
/// The whole run's bound.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

fn available() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import schemathesis, cryptography"])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// The outcome of one schemathesis run against a live simulator.
struct Run {
    passed: bool,
    stdout: String,
    stderr: String,
}

/// Whether schemathesis can run; panics when it must (`POSGATE_REQUIRE_SCHEMATHESIS=1`) but cannot.
fn should_run(test: &str) -> bool {
    let required = std::env::var("POSGATE_REQUIRE_SCHEMATHESIS").is_ok_and(|value| value == "1");
    if available() {
        return true;
    }
    assert!(
        !required,
        "POSGATE_REQUIRE_SCHEMATHESIS=1 but python3 cannot import schemathesis and cryptography"
    );
    println!("SKIPPED {test}: schemathesis not installed (pip install schemathesis cryptography)");
    false
}

/// Runs schemathesis over the operations tagged `tags` of the document at `addr`.
async fn schemathesis(addr: SocketAddr, client_tls: &TlsFiles, dir: &Path, tags: &[&str]) -> Run {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let url = format!("https://{addr}");
    let mut command = tokio::process::Command::new("python3");
    command
        .args(["-m", "schemathesis.cli", "run"])
        .arg(manifest.join("../openapi/partner-api-v1.yaml"))
        .args(["--url", &url])
        .arg("--tls-verify")
        .arg(&client_tls.ca_cert)
        .arg("--request-cert")
        .arg(&client_tls.cert)
        .arg("--request-cert-key")
        .arg(&client_tls.key);
    for tag in tags {
        command.args(["--include-tag", tag]);
    }
    command
        .args([
            "--max-examples",
            MAX_EXAMPLES,
            "--seed",
            "1",
            "--workers",
            "1",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--report", "junit", "--report-dir"])
        .arg(dir.join("report"))
        .env("SCHEMATHESIS_HOOKS", "posgate_signing")
        .env("PYTHONPATH", manifest.join("tests/schemathesis"))
        .env("POSGATE_SIGNING_SEED_HEX", POSGATE_SEED_HEX)
        .env("POSGATE_SIGNING_KEY_ID", POSGATE_KEY_ID)
        .env(
            "POSGATE_PARTNER_PUBLIC_HEX",
            hex::encode(public_of(SIM_SEED_HEX)),
        )
        .env("NO_COLOR", "1")
        // schemathesis keeps a cache in its working directory: the test's, not the tree.
        .current_dir(dir)
        .kill_on_drop(true);
    let output = tokio::time::timeout(RUN_TIMEOUT, command.output())
        .await
        .expect("schemathesis finishes within the bound")
        .expect("python3 runs");
    Run {
        passed: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The wallet simulator conforms to the OpenAPI document under schemathesis, with real signatures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallet_simulator_conforms_to_openapi() {
    if !should_run("wallet_simulator_conforms_to_openapi") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server_tls, client_tls) = pki(dir.path(), "");
    let sim = WalletSim::start(sim_config(server_tls)).await.unwrap();
    let run = schemathesis(
        sim.addr(),
        &client_tls,
        dir.path(),
        &["wallet", "transactions"],
    )
    .await;
    let stats = sim.stats();
    sim.shutdown().await;
    assert!(
        run.passed,
        "schemathesis failed:\n{}\n{}",
        run.stdout, run.stderr
    );
    // The run really went through the signature check and reached the ledger.
    assert!(
        stats.top_ups + stats.payments > 0,
        "{stats:?}\n{}",
        run.stdout
    );
    assert!(stats.requests > stats.unauthorized, "{stats:?}");
    println!("{}", run.stdout);
}

/// The biller simulator conforms to the OpenAPI document under schemathesis, with real signatures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn biller_simulator_conforms_to_openapi() {
    if !should_run("biller_simulator_conforms_to_openapi") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server_tls, client_tls) = pki(dir.path(), "");
    let sim = BillerSim::start(biller_config(server_tls)).await.unwrap();
    let run = schemathesis(
        sim.addr(),
        &client_tls,
        dir.path(),
        &["bills", "transactions"],
    )
    .await;
    let counters = sim.biller_counters();
    let server = sim.counters();
    sim.shutdown().await;
    assert!(
        run.passed,
        "schemathesis failed:\n{}\n{}",
        run.stdout, run.stderr
    );
    // The run really went through the signature check and reached the ledger.
    assert!(
        counters.inquiries + counters.notices > 0,
        "{counters:?}\n{}",
        run.stdout
    );
    assert!(server.requests > server.unauthorized, "{server:?}");
    println!("{}", run.stdout);
}
