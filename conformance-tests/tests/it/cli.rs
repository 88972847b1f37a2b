//! The `posgate-conformance` binary: exit codes and the JSON report.

use tokio::process::Command;

use crate::gateway::Gateway;

const BINARY: &str = env!("CARGO_BIN_EXE_posgate-conformance");

/// With every selected case passing, the binary exits 0 and prints a JSON
/// report counting them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_report_and_exit_code_zero_when_cases_pass() {
    let gateway = Gateway::start().await.expect("gateway starts");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &gateway.ca_pem).unwrap();
    let output = Command::new(BINARY)
        .args([
            "--addr",
            &format!("https://127.0.0.1:{}", gateway.port),
            "--domain",
            "localhost",
        ])
        .arg("--ca")
        .arg(&ca)
        .arg("--client-certs")
        .arg(&gateway.certs_dir)
        .args(["--terminal", &gateway.terminal_id])
        .args(["--case", "bill.pay", "--json"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "exit {:?}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is JSON");
    assert_eq!(report["failed"], 0, "{report:#}");
    assert_eq!(
        report["passed"], 2,
        "bill.pay-tw and bill.pay-jp: {report:#}"
    );
    assert!(
        report["cases"]
            .as_array()
            .unwrap()
            .iter()
            .all(|case| case["status"] == "pass")
    );
    assert!(
        report["terminal_id"]
            .as_str()
            .unwrap()
            .starts_with("T-CONF-")
    );
}

/// An unreachable gateway or an unusable setting exits 1 with a reason.
#[tokio::test]
async fn exit_code_one_when_the_suite_cannot_run() {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = Command::new(BINARY)
        .args([
            "--addr",
            &format!("http://127.0.0.1:{closed_port}"),
            "--json",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    assert!(
        report["error"].as_str().unwrap().contains("connecting"),
        "{report}"
    );

    let output = Command::new(BINARY)
        .args([
            "--addr",
            "http://127.0.0.1:1",
            "--tw-agency-code",
            "toolong",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--tw-agency-code"));
}
