//! `posgate load` as a process against gateways started in this process:
//! the ceiling mode (`--ceiling`) drives the no-op server it starts, then the
//! gateway, and reports both and their ratio; several `--addr` spread the
//! virtual terminals over several gateways.

use chrono::Utc;
use posgate_core::config::Config;

use crate::support::{OPEN_LIMITS, TestDb, TestGateway, TestInstance, backends, config_text};

/// Requests per phase: enough to touch every scenario of the mix and its retries.
const REQUESTS: &str = "200";

/// Runs `posgate load` with `args` (and `--json`) on the PKI and stores of
/// `gateway`, expects it to succeed and returns its summary.
async fn load_summary(gateway: &TestGateway, args: &[&str]) -> serde_json::Value {
    let config = gateway.pki.dir.join("load.toml");
    std::fs::write(
        &config,
        config_text(gateway.db_url(), &gateway.pki, OPEN_LIMITS),
    )
    .unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_posgate"))
        .arg("load")
        .arg("--pki-dir")
        .arg(&gateway.pki.dir)
        .arg("--config")
        .arg(&config)
        .arg("--json")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "posgate load failed: {stderr}");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("summary is not JSON ({error}): {stderr}"))
}

/// A brief `--ceiling` run: the no-op server serves every request of the
/// mix (pays, inquiries, cancels, retries) without failure, its figures are
/// reported, and the gateway, which writes every payment, comes out below it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ceiling_run_reports_the_no_op_server_and_the_ratio() {
    for backend in backends() {
        let gateway = TestGateway::start(backend, Utc::now()).await;
        let addr = format!("https://{}", gateway.server.addr);
        let summary = load_summary(
            &gateway,
            &[
                "--addr",
                &addr,
                "--ceiling",
                "--count",
                REQUESTS,
                "--concurrency",
                "4",
                "--mix",
                "pay=80,inquire=15,cancel=5",
                "--retry-share",
                "0.1",
            ],
        )
        .await;
        let ceiling = &summary["ceiling"];
        assert_eq!(ceiling["count"], 200, "{backend:?}: {summary}");
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
        assert_eq!(
            summary["addresses"],
            serde_json::json!([{ "addr": addr, "requests": 200 }])
        );
        let ratio = summary["ratio"].as_f64().unwrap();
        assert!(ratio > 0.0 && ratio < 1.5, "ratio {ratio}: {summary}");
        gateway.stop().await;
    }
}

/// `--addr` given as a list of two gateways (each on a database of its
/// own, so each one's rows are what it served): both get requests, each
/// records exactly the payments the summary counts for its address, and
/// `--ceiling` still drives one no-op server with the whole load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_addresses_share_the_terminals() {
    for backend in backends() {
        let gateway = TestGateway::start(backend, Utc::now()).await;
        let other_db = TestDb::new(backend).await;
        let other_config = config_text(&other_db.url, &gateway.pki, OPEN_LIMITS);
        let other = TestInstance::start(
            &Config::parse(&other_config).unwrap(),
            gateway.clock.clone(),
        )
        .await;
        let addrs = [gateway.server.addr, other.server.addr].map(|addr| format!("https://{addr}"));
        let summary = load_summary(
            &gateway,
            &[
                "--addr",
                &addrs.join(","),
                "--ceiling",
                "--count",
                "120",
                "--concurrency",
                "4",
                "--mix",
                "pay=1",
                "--retry-share",
                "0",
            ],
        )
        .await;
        assert_eq!(summary["failures"], 0, "{backend:?}: {summary}");
        assert_eq!(summary["ceiling"]["count"], 120, "{summary}");
        let shares = summary["addresses"].as_array().unwrap();
        let served: Vec<(&str, u64)> = shares
            .iter()
            .map(|share| {
                (
                    share["addr"].as_str().unwrap(),
                    share["requests"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(served.len(), 2, "{summary}");
        assert_eq!((served[0].0, served[1].0), (&*addrs[0], &*addrs[1]));
        assert!(
            served.iter().all(|(_, requests)| *requests > 0),
            "{summary}"
        );
        assert_eq!(served[0].1 + served[1].1, 120, "{summary}");
        for (server, (addr, requests)) in [&gateway.server, &other.server].iter().zip(&served) {
            let rows = server.gateway.db.row_counts().await.unwrap();
            assert_eq!(
                u64::try_from(rows.transactions).unwrap(),
                *requests,
                "{backend:?}: {addr} recorded what it served"
            );
        }
        other.stop().await;
        gateway.stop().await;
    }
}
