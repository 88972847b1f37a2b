//! The server: TLS, health, load shedding, graceful shutdown of the real binary.

use std::time::Duration;

use posgate_gateway::config::Config;
use posgate_gateway::tls::{DevPki, client_tls_as};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt as _;

use crate::support::{Backend, OPEN_LIMITS, TestGateway, config_text, tw_pay, utc};

/// Health reports BillPaymentService as serving over TLS.
#[tokio::test]
async fn health_reports_serving() {
    let gw = TestGateway::start(Backend::Sqlite, utc("2026-11-23T03:00:00Z")).await;
    let mut health = HealthClient::new(gw.channel.clone());
    let response = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "posgate.v1.BillPaymentService".into(),
        })
        .await
        .unwrap();
    assert_eq!(response.into_inner().status(), ServingStatus::Serving);
    gw.stop().await;
}

/// A terminal over its rate limit is shed with `RESOURCE_EXHAUSTED` and retry advice; another terminal is not.
#[tokio::test]
async fn terminal_over_its_rate_is_shed_with_retry_advice() {
    let limits = "terminal_per_second = 1\nterminal_burst = 2\nstore_per_second = 1000\nstore_burst = 1000\nmax_in_flight = 64";
    let now = utc("2026-11-23T03:00:00Z");
    let mut gw = TestGateway::start_with_limits(Backend::Sqlite, now, limits).await;
    gw.client.pay_bill(tw_pay("rl-1", now)).await.unwrap();
    gw.client.pay_bill(tw_pay("rl-2", now)).await.unwrap();
    let shed = gw.client.pay_bill(tw_pay("rl-3", now)).await.unwrap_err();
    assert_eq!(shed.code(), Code::ResourceExhausted);
    let retry = shed
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("RetryInfo");
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(1),
        "{retry:?}"
    );
    assert_eq!(
        gw.store().row_counts().await.unwrap().transactions,
        2,
        "the shed request stored nothing"
    );
    let mut other = tw_pay("rl-4", now);
    other.context.as_mut().unwrap().terminal_id = "T02".into();
    gw.bills_as("S001", "T02").pay_bill(other).await.unwrap();
    gw.stop().await;
}

/// Requests in flight when shutdown starts finish; every OK answer is a stored payment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_requests_in_flight() {
    let now = utc("2026-11-23T03:00:00Z");
    let gw = TestGateway::start(Backend::Sqlite, now).await;
    // Each caller pays bills back to back until the server refuses one, so
    // requests are in flight whenever the shutdown starts, however slow the
    // machine is.
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let callers: Vec<_> = (0..8)
        .map(|caller| {
            let mut client = gw.client.clone();
            let answered = std::sync::Arc::clone(&answered);
            tokio::spawn(async move {
                for index in 0.. {
                    let request = tw_pay(&format!("sd-{caller}-{index}"), now);
                    if let Err(status) = client.pay_bill(request).await {
                        return status;
                    }
                    answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                unreachable!("the loop ends with the server's refusal")
            })
        })
        .collect();
    let started = tokio::time::Instant::now();
    while answered.load(std::sync::atomic::Ordering::SeqCst) < 10 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no payment was answered"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let store = std::sync::Arc::clone(gw.store());
    gw.stop().await;
    for caller in callers {
        let status = tokio::time::timeout(Duration::from_secs(30), caller)
            .await
            .expect("callers stop once the server is gone")
            .unwrap();
        // A request that starts on a connection the server is closing gets
        // the server's GOAWAY, which the tonic client reports as INTERNAL
        // "h2 protocol error"; nothing was processed for it either.
        let goaway =
            status.code() == Code::Internal && status.message().contains("h2 protocol error");
        assert!(
            goaway
                || matches!(
                    status.code(),
                    Code::Unavailable | Code::Cancelled | Code::Unknown
                ),
            "a request refused at shutdown must say so: {status:?}"
        );
    }
    let ok = answered.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        store.row_counts().await.unwrap().transactions,
        ok,
        "every OK answer was committed, and nothing else"
    );
}

/// Kills the child on drop, so a failing test leaves no server behind.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `posgate serve` exits cleanly on SIGTERM after serving requests.
#[tokio::test]
async fn serve_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate(dir.path()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let db_url = format!("sqlite://{}", dir.path().join("gw.db").display());
    let text = config_text(&db_url, &pki, OPEN_LIMITS)
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    Config::parse(&text).unwrap();
    let config = dir.path().join("posgate.toml");
    std::fs::write(&config, text).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_posgate"))
        .args(["serve", "--config"])
        .arg(&config)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(child);
    let endpoint = Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(
            client_tls_as(
                &pki.ca_cert,
                "localhost",
                &crate::support::issue(&pki, &crate::support::terminal("S001", "T01")),
            )
            .unwrap(),
        )
        .unwrap();
    let mut channel = None;
    for _ in 0..100 {
        if let Ok(connected) = endpoint.connect().await {
            channel = Some(connected);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut client = posgate_proto::v1::bill_payment_service_client::BillPaymentServiceClient::new(
        channel.expect("server came up within 10 s"),
    );
    let now = chrono::Utc::now();
    let mut request = tw_pay("sig-1", now);
    request.slip = Some(posgate_proto::v1::BillSlip {
        barcodes: crate::support::tw_slip(
            "TPC",
            "1",
            &(now + chrono::Duration::days(30))
                .format("%Y-%m-%d")
                .to_string(),
            1234,
        ),
        biller_id: String::new(),
    });
    client.pay_bill(request).await.unwrap();
    let pid = guard.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut exited = None;
    for _ in 0..100 {
        if let Some(status) = guard.0.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(exited.expect("exited within 10 s of SIGTERM").success());
}
