//! Operations per second for the HSM's hot paths on both backends:
//! `cargo bench -p posgate-hsm --bench hsm_ops`.
//!
//! Each operation runs one at a time from one task for about a second (at
//! most `MAX_ITERATIONS` times), over a 64-byte message, as the gateway
//! issues them. The PKCS#11 run needs `SoftHSM2`: the bench makes a token in a
//! temporary directory and re-runs itself with `SOFTHSM2_CONF` pointing at it
//! (the module reads that variable when it loads).

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use posgate_hsm::keys::KeyRef;
use posgate_hsm::{
    ClearKey, Hsm, KeySpec, MacAlgorithm, MacPadding, Pkcs11Config, Pkcs11Hsm, SoftwareHsm,
};
use zeroize::Zeroizing;

/// How long each operation is measured.
const RUN_FOR: Duration = Duration::from_secs(1);
/// Upper bound on iterations per operation, whatever the speed.
const MAX_ITERATIONS: u32 = 2_000_000;
const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const CHILD_ARG: &str = "--pkcs11-child";

async fn setup(hsm: &dyn Hsm) {
    let clear = |hex_text: &str| ClearKey::from_hex(hex_text).unwrap();
    hsm.import_key(
        "bench-zak",
        KeySpec::TDES_MAC,
        clear("0123456789ABCDEFFEDCBA9876543210"),
    )
    .await
    .unwrap();
    hsm.generate_key("bench-cmac", KeySpec::AES_MAC)
        .await
        .unwrap();
    hsm.generate_key("bench-ed25519", KeySpec::ED25519)
        .await
        .unwrap();
    hsm.generate_key("bench-hmac", KeySpec::HMAC_SHA256)
        .await
        .unwrap();
}

async fn measure(name: &str, backend: &str, mut operation: impl AsyncFnMut()) {
    let started = Instant::now();
    let mut iterations = 0_u32;
    while started.elapsed() < RUN_FOR && iterations < MAX_ITERATIONS {
        operation().await;
        iterations += 1;
    }
    let ops_per_s = f64::from(iterations) / started.elapsed().as_secs_f64();
    println!("{backend:<9} {name:<28} {ops_per_s:>12.0} ops/s");
}

async fn run(hsm: Arc<dyn Hsm>) {
    setup(&*hsm).await;
    let backend = hsm.backend_name();
    let message = [0x5A_u8; 64];
    let zak = KeyRef::latest("bench-zak");
    let cmac = KeyRef::latest("bench-cmac");
    let signer = KeyRef::latest("bench-ed25519");
    let hmac = KeyRef::latest("bench-hmac");
    let retail = MacAlgorithm::RetailMac(MacPadding::Method1);
    measure("retail MAC (ISO 9797-1 alg 3)", backend, async || {
        hsm.mac_generate(&zak, retail, &message).await.unwrap();
    })
    .await;
    measure("AES-CMAC", backend, async || {
        hsm.mac_generate(&cmac, MacAlgorithm::AesCmac, &message)
            .await
            .unwrap();
    })
    .await;
    measure("Ed25519 sign", backend, async || {
        hsm.sign(&signer, &message).await.unwrap();
    })
    .await;
    measure("HMAC-SHA256", backend, async || {
        hsm.hmac(&hmac, &message).await.unwrap();
    })
    .await;
}

fn pkcs11_in_child() {
    let directory = tempfile::tempdir().unwrap();
    let tokens = directory.path().join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = directory.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let init = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            "posgate-bench",
            "--pin",
            "4321",
            "--so-pin",
            "87654321",
        ])
        .output();
    if !init.is_ok_and(|output| output.status.success()) {
        println!("pkcs11    skipped: softhsm2-util could not make a token (install softhsm2)");
        return;
    }
    let status = Command::new(std::env::current_exe().unwrap())
        .arg(CHILD_ARG)
        .env("SOFTHSM2_CONF", &conf)
        .status()
        .unwrap();
    assert!(status.success(), "PKCS#11 bench failed");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|argument| argument == CHILD_ARG) {
        let config = Pkcs11Config {
            module_path: MODULE.into(),
            token_label: "posgate-bench".to_owned(),
            user_pin: Zeroizing::new("4321".to_owned()).into(),
        };
        run(Arc::new(Pkcs11Hsm::connect(&config).unwrap())).await;
        return;
    }
    run(Arc::new(SoftwareHsm::in_memory())).await;
    if std::path::Path::new(MODULE).exists() {
        pkcs11_in_child();
    } else {
        println!("pkcs11    skipped: {MODULE} not found (install softhsm2)");
    }
}
