//! `posgate load` as a process against a gateway started in this process:
//! the ceiling mode (`--ceiling`) drives the no-op server it starts, then the
//! gateway, and reports both and their ratio.

use chrono::Utc;

use crate::support::{OPEN_LIMITS, TestGateway, backends, config_text};

/// Requests per phase: enough to touch every scenario of the mix and its retries.
const REQUESTS: &str = "200";

/// A brief `--ceiling` run: the no-op server serves every request of the
/// mix (pays, inquiries, cancels, retries) without failure, its figures are
/// reported, and the gateway, which writes every payment, comes out below it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ceiling_run_reports_the_no_op_server_and_the_ratio() {
    for backend in backends() {
        let gateway = TestGateway::start(backend, Utc::now()).await;
        let config = gateway.pki.dir.join("load.toml");
        std::fs::write(
            &config,
            config_text(gateway.db_url(), &gateway.pki, OPEN_LIMITS),
        )
        .unwrap();
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_posgate"))
            .arg("load")
            .args(["--addr", &format!("https://{}", gateway.server.addr)])
            .arg("--pki-dir")
            .arg(&gateway.pki.dir)
            .arg("--config")
            .arg(&config)
            .args([
                "--ceiling",
                "--json",
                "--count",
                REQUESTS,
                "--concurrency",
                "4",
            ])
            .args([
                "--mix",
                "pay=80,inquire=15,cancel=5",
                "--retry-share",
                "0.1",
            ])
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{backend:?}: posgate load failed: {stderr}"
        );
        let summary: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|error| panic!("{backend:?}: summary is not JSON ({error}): {stderr}"));
        let ceiling = &summary["ceiling"];
        assert_eq!(ceiling["count"], 200, "{summary}");
        assert_eq!(ceiling["failures"], 0, "{summary}");
        assert!(
            ceiling["requests_per_s"].as_f64().unwrap() > 0.0,
            "{summary}"
        );
        assert!(ceiling["p50_ms"].as_f64().unwrap() > 0.0, "{summary}");
        assert!(
            ceiling["p99_ms"].as_f64().unwrap() >= ceiling["p50_ms"].as_f64().unwrap(),
            "{summary}"
        );
        assert_eq!(summary["overall"]["count"], 200, "{summary}");
        assert_eq!(summary["failures"], 0, "{summary}");
        let ratio = summary["ratio"].as_f64().unwrap();
        assert!(ratio > 0.0 && ratio < 1.5, "ratio {ratio}: {summary}");
        gateway.stop().await;
    }
}
