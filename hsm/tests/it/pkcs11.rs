//! The shared suite on `Pkcs11Hsm` over `SoftHSM2`.
//!
//! `SoftHSM2` reads `SOFTHSM2_CONF` when the module initializes, and setting an
//! environment variable inside a running test is unsafe in Rust 2024 (and
//! forbidden here). So each test re-runs itself: the parent makes a token in
//! a temporary directory with `softhsm2-util`, then runs this same test binary
//! with `--exact <test>` and `SOFTHSM2_CONF` pointing at it; the child, seeing
//! `POSGATE_SOFTHSM_CHILD`, connects and runs the case. One token per test
//! process: works the same under `cargo test` and cargo-nextest.
//!
//! Without `SoftHSM2` installed the tests print why and pass, unless
//! `POSGATE_REQUIRE_SOFTHSM=1` (as in CI), which turns a missing `SoftHSM2` into a failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use posgate_hsm::{Hsm, Pkcs11Config, Pkcs11Hsm};
use zeroize::Zeroizing;

const TOKEN_LABEL: &str = "posgate-test";
const USER_PIN: &str = "4321";
const SO_PIN: &str = "87654321";
const CHILD_MARKER: &str = "POSGATE_SOFTHSM_CHILD";

fn module_path() -> PathBuf {
    std::env::var_os("POSGATE_SOFTHSM_MODULE").map_or_else(
        || PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"),
        PathBuf::from,
    )
}

fn softhsm_missing() -> Option<String> {
    if !module_path().exists() {
        return Some(format!(
            "SoftHSM2 module {} not found",
            module_path().display()
        ));
    }
    let util = Command::new("softhsm2-util").arg("--version").output();
    if !util.is_ok_and(|output| output.status.success()) {
        return Some("softhsm2-util not found on PATH".to_owned());
    }
    None
}

/// Makes a fresh token in `directory` and returns the config file path.
fn make_token(directory: &Path) -> PathBuf {
    let tokens = directory.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = directory.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let output = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            TOKEN_LABEL,
            "--pin",
            USER_PIN,
            "--so-pin",
            SO_PIN,
        ])
        .output()
        .expect("softhsm2-util runs");
    assert!(
        output.status.success(),
        "softhsm2-util --init-token failed: {output:?}"
    );
    conf
}

/// In the child: one connected HSM per process.
fn connected() -> Arc<Pkcs11Hsm> {
    static HSM: OnceLock<Arc<Pkcs11Hsm>> = OnceLock::new();
    Arc::clone(HSM.get_or_init(|| {
        let config = Pkcs11Config {
            module_path: module_path(),
            token_label: TOKEN_LABEL.to_owned(),
            user_pin: Zeroizing::new(USER_PIN.to_owned()).into(),
        };
        Arc::new(Pkcs11Hsm::connect(&config).expect("SoftHSM2 token connects"))
    }))
}

/// Parent: re-runs `test_name` in a child with its own token and checks it passed.
/// Child: returns the connected HSM.
// The shared-suite macro awaits every backend constructor.
#[allow(clippy::unused_async)]
pub async fn make(test_name: &str) -> Option<Arc<dyn Hsm>> {
    if std::env::var_os(CHILD_MARKER).is_some() {
        return Some(connected());
    }
    if let Some(reason) = softhsm_missing() {
        assert!(
            std::env::var("POSGATE_REQUIRE_SOFTHSM").as_deref() != Ok("1"),
            "POSGATE_REQUIRE_SOFTHSM=1 but {reason}; install the softhsm2 package"
        );
        eprintln!(
            "SKIPPED {test_name}: {reason} (install softhsm2, or set POSGATE_REQUIRE_SOFTHSM=1 to make this a failure)"
        );
        return None;
    }
    let directory = tempfile::tempdir().unwrap();
    let conf = make_token(directory.path());
    let output = Command::new(std::env::current_exe().unwrap())
        .args([test_name, "--exact", "--test-threads=1", "--nocapture"])
        .env("SOFTHSM2_CONF", &conf)
        .env(CHILD_MARKER, "1")
        .output()
        .expect("the test binary re-runs itself");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{test_name} on SoftHSM2 failed:\n{stdout}\n{stderr}"
    );
    None
}

crate::shared_suite!(make);

/// The connection refuses a token label that does not exist, with a typed error.
#[tokio::test]
async fn unknown_token_is_a_config_error() {
    let name = crate::test_name(module_path!(), "unknown_token_is_a_config_error");
    if std::env::var_os(CHILD_MARKER).is_none() && make(&name).await.is_none() {
        return;
    }
    let _ = connected();
    let config = Pkcs11Config {
        module_path: module_path(),
        token_label: "no-such-token".to_owned(),
        user_pin: Zeroizing::new(USER_PIN.to_owned()).into(),
    };
    let error = Pkcs11Hsm::connect(&config).unwrap_err();
    assert!(
        matches!(error, posgate_hsm::HsmError::Pkcs11Config(_)),
        "{error}"
    );
    assert!(!format!("{config:?}").contains(USER_PIN));
}
