//! Runs `schemathesis` (`PyPI`) against a live wallet simulator with the
//! OpenAPI document: every request signed by a Python hook per RFC 9421
//! (`tests/schemathesis/posgate_signing.py`), every answer's signature checked
//! by it, and schemathesis's own checks (status codes, content types,
//! response schemas, headers, negative data rejected) over the wallet and
//! transaction endpoints. Skipped with a printed reason when schemathesis is
//! not installed, unless `POSGATE_REQUIRE_SCHEMATHESIS=1`.

use std::path::Path;
use std::time::Duration;

use posgate_partners::wallet::sim::WalletSim;

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

/// The simulator conforms to the OpenAPI document under schemathesis, with real signatures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallet_simulator_conforms_to_openapi() {
    let required = std::env::var("POSGATE_REQUIRE_SCHEMATHESIS").is_ok_and(|value| value == "1");
    if !available() {
        assert!(
            !required,
            "POSGATE_REQUIRE_SCHEMATHESIS=1 but python3 cannot import schemathesis and cryptography"
        );
        println!(
            "SKIPPED wallet_simulator_conforms_to_openapi: schemathesis not installed (pip install schemathesis cryptography)"
        );
        return;
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let (server_tls, client_tls) = pki(dir.path(), "");
    let sim = WalletSim::start(sim_config(server_tls)).await.unwrap();
    let url = format!("https://{}", sim.addr());
    let mut command = tokio::process::Command::new("python3");
    command
        .args(["-m", "schemathesis.cli", "run"])
        .arg(manifest.join("openapi/partner-api-v1.yaml"))
        .args(["--url", &url])
        .arg("--tls-verify")
        .arg(&client_tls.ca_cert)
        .arg("--request-cert")
        .arg(&client_tls.cert)
        .arg("--request-cert-key")
        .arg(&client_tls.key)
        .args(["--include-tag", "wallet", "--include-tag", "transactions"])
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
        .arg(dir.path().join("report"))
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
        .current_dir(dir.path())
        .kill_on_drop(true);
    let output = tokio::time::timeout(RUN_TIMEOUT, command.output())
        .await
        .expect("schemathesis finishes within the bound")
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stats = sim.stats();
    sim.shutdown().await;
    assert!(
        output.status.success(),
        "schemathesis failed:\n{stdout}\n{stderr}"
    );
    // The run really went through the signature check and reached the ledger.
    assert!(stats.top_ups + stats.payments > 0, "{stats:?}\n{stdout}");
    assert!(stats.requests > stats.unauthorized, "{stats:?}");
    println!("{stdout}");
}
