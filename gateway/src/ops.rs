//! The operations endpoint (`[metrics]`, README "Metrics"): a small HTTP/1.1
//! listener of its own, apart from the POS's gRPC port, answering
//! `GET /metrics` in the Prometheus text format and `GET /health` (this
//! instance's id, leadership and serving state, as JSON; 503 once draining),
//! anything else 404.
//!
//! - The Prometheus recorder is installed once per process ([`recorder`]):
//!   the crates record through the `metrics` facade wherever the event
//!   happens (RPCs in the access layer, partner calls in posgate-partners,
//!   batches in posgate-store, the backlog and seal lag in posgate-core),
//!   and every server started in the process renders the same registry.
//! - Gauges that are a look at in-memory state (circuit breakers, bank
//!   links, instance and leadership) are set when a scrape comes
//!   ([`Ops::publish_state`]); the store-and-forward backlog is read from the
//!   database every few seconds by a worker this endpoint starts and stops.
//! - The listener is bounded: [`MAX_CONNECTIONS`] at once, a header read
//!   timeout, one request per connection and a time limit per connection.
//!   A route is one arm of [`Ops::answer`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use posgate_api::grpc::Gateway;
use posgate_api::grpc::admission::{RATE_LIMITED_TOTAL, Refusal};
use posgate_core::config::Config;
use posgate_partners::http::BreakerState;

/// `posgate_circuit_breaker_state{partner}`: 0 closed, 1 half-open, 2 open.
pub const CIRCUIT_BREAKER_STATE: &str = "posgate_circuit_breaker_state";
/// `posgate_bank_link_up{link}`: 1 while the bank link is signed on.
pub const BANK_LINK_UP: &str = "posgate_bank_link_up";
/// `posgate_instance_info{instance,version}`: always 1; its labels are the point.
pub const INSTANCE_INFO: &str = "posgate_instance_info";
/// `posgate_leader`: 1 while this process leads the once-only jobs.
pub const LEADER: &str = "posgate_leader";

/// Connections served at once. Scrapers (a Prometheus or two) and an
/// orchestrator's probes make a handful; more wait in the listen backlog
/// instead of costing memory.
const MAX_CONNECTIONS: usize = 8;
/// Time to send a request's headers: a scraper sends them at once; a
/// connection that dribbles them is cut.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection may live, answer included: a rendered registry is
/// tens of kilobytes, sent in milliseconds to any live reader.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed accept (out of file descriptors): the listener
/// retries instead of spinning.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// How often the recorder folds recorded histogram samples into their
/// buckets, so memory stays bounded however rarely anyone scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
/// The Prometheus text exposition format's content type.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Latency buckets of every `*_seconds` histogram: from a cached read to a
/// bank's 30 s timeout.
const LATENCY_BUCKETS_S: [f64; 16] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// Batch size buckets, up to the writers' largest batch (256 writes).
const BATCH_SIZE_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// What the endpoint reports of its server as an instance among several.
#[derive(Debug, Clone)]
pub struct InstanceState {
    /// The configured or generated instance id.
    pub id: String,
    /// Whether the server leads the once-only jobs (the election's view).
    pub leadership: watch::Receiver<bool>,
    /// Turns true when the server starts draining (SIGTERM).
    pub draining: watch::Receiver<bool>,
}

/// The running endpoint; dropping it stops the listener, its connections
/// and the backlog worker.
#[derive(Debug)]
pub struct OpsServer {
    addr: SocketAddr,
    accept: JoinHandle<()>,
    backlog: JoinHandle<()>,
    /// Ends the backlog worker's loop (it also ends if this is dropped).
    stop_backlog: watch::Sender<bool>,
}

impl OpsServer {
    /// The address the endpoint listens on (the port chosen when configured as 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for OpsServer {
    fn drop(&mut self) {
        let _ = self.stop_backlog.send(true);
        // The connections live in the accept task's JoinSet: they go with it.
        self.accept.abort();
        self.backlog.abort();
    }
}

/// Starts the endpoint when `[metrics]` is configured: installs the
/// recorder (once per process), binds, serves, and keeps the backlog
/// gauges fresh. `None` without the section.
pub async fn start(
    config: &Config,
    gateway: &Arc<Gateway>,
    instance: InstanceState,
) -> anyhow::Result<Option<OpsServer>> {
    let Some(metrics) = config.metrics else {
        return Ok(None);
    };
    let prometheus = recorder()?;
    let listener = TcpListener::bind(metrics.listen)
        .await
        .with_context(|| format!("binding the metrics endpoint {}", metrics.listen))?;
    let addr = listener.local_addr()?;
    let ops = Arc::new(Ops {
        prometheus,
        gateway: Arc::clone(gateway),
        instance,
    });
    let (stop_backlog, stopped) = watch::channel(false);
    let backlog = tokio::spawn(posgate_core::metrics::run_saf_backlog(
        Arc::clone(&gateway.db),
        Arc::clone(&gateway.clock),
        stopped,
    ));
    tracing::info!(%addr, "operations endpoint serving GET /metrics and GET /health");
    Ok(Some(OpsServer {
        addr,
        accept: tokio::spawn(serve(listener, ops)),
        backlog,
        stop_backlog,
    }))
}

/// The process's Prometheus recorder, installed on first use with its
/// histogram buckets and metric descriptions, and its upkeep thread.
pub fn recorder() -> anyhow::Result<PrometheusHandle> {
    static RECORDER: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    RECORDER
        .get_or_init(install_recorder)
        .clone()
        .map_err(|error| anyhow::anyhow!("installing the metrics recorder: {error}"))
}

fn install_recorder() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &LATENCY_BUCKETS_S)
        .and_then(|builder| {
            builder.set_buckets_for_metric(
                Matcher::Full(posgate_store::metrics::DB_BATCH_SIZE.to_owned()),
                &BATCH_SIZE_BUCKETS,
            )
        })
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|error| error.to_string())?;
    describe();
    // Counters of a closed label set start at zero, so a rate over them
    // exists before the first refusal.
    for scope in Refusal::SCOPES {
        metrics::counter!(RATE_LIMITED_TOTAL, "scope" => scope).increment(0);
    }
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("posgate-metrics-upkeep".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            }
        })
        .map_err(|error| format!("starting the metrics upkeep thread: {error}"))?;
    Ok(handle)
}

/// The HELP text and unit of every metric posgate records (README "Metrics").
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    use posgate_api::metered::{REQUEST_DURATION_SECONDS, REQUESTS_TOTAL};
    use posgate_core::metrics::{AUDIT_SEAL_LAG_ENTRIES, SAF_OLDEST_AGE_SECONDS, SAF_QUEUE_DEPTH};
    use posgate_partners::metrics::{PARTNER_CALL_DURATION_SECONDS, PARTNER_CALLS_TOTAL};
    use posgate_store::metrics::{DB_BATCH_SIZE, DB_COMMIT_DURATION_SECONDS};
    describe_counter!(
        REQUESTS_TOTAL,
        Unit::Count,
        "Finished gRPC calls by method path (rpc) and status code."
    );
    describe_histogram!(
        REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time from a gRPC call reaching the gateway to its last frame, by method path."
    );
    describe_counter!(
        PARTNER_CALLS_TOTAL,
        Unit::Count,
        "Calls to banks, wallet operators and online billers by partner and outcome \
         (ok, declined, timeout, error, unavailable, breaker_open)."
    );
    describe_histogram!(
        PARTNER_CALL_DURATION_SECONDS,
        Unit::Seconds,
        "Time of a partner call, every attempt and backoff included, by partner."
    );
    describe_gauge!(
        CIRCUIT_BREAKER_STATE,
        "Circuit breaker of a wallet operator or online biller: 0 closed, 1 half-open, 2 open."
    );
    describe_gauge!(BANK_LINK_UP, "1 while the bank link is signed on, else 0.");
    describe_gauge!(
        SAF_QUEUE_DEPTH,
        Unit::Count,
        "Store-and-forward entries waiting for a partner's acknowledgement, by queue."
    );
    describe_gauge!(
        SAF_OLDEST_AGE_SECONDS,
        Unit::Seconds,
        "Age of the oldest unacknowledged store-and-forward entry, by queue (0 when empty)."
    );
    describe_histogram!(
        DB_BATCH_SIZE,
        Unit::Count,
        "Writes committed in one database transaction by the group commit, by backend."
    );
    describe_histogram!(
        DB_COMMIT_DURATION_SECONDS,
        Unit::Seconds,
        "Time of one group-commit transaction, begin to commit, by backend."
    );
    describe_counter!(
        RATE_LIMITED_TOTAL,
        Unit::Count,
        "Requests refused by admission (RESOURCE_EXHAUSTED), by the limit that refused them."
    );
    describe_gauge!(
        AUDIT_SEAL_LAG_ENTRIES,
        Unit::Count,
        "Audit chain entries not yet covered by a signed checkpoint."
    );
    describe_gauge!(
        INSTANCE_INFO,
        "Always 1: the instance id and version of this gateway process."
    );
    describe_gauge!(
        LEADER,
        "1 while this process leads the once-only jobs, else 0."
    );
}

/// What the endpoint answers from.
struct Ops {
    prometheus: PrometheusHandle,
    gateway: Arc<Gateway>,
    instance: InstanceState,
}

impl Ops {
    /// The answer to one request: a route per arm, 404 for anything else.
    /// Async so that a route may await the gateway's state.
    #[allow(clippy::unused_async)]
    async fn answer<B>(&self, request: &Request<B>) -> Response<Full<Bytes>> {
        match (request.method(), request.uri().path()) {
            (&Method::GET, "/metrics") => self.metrics(),
            (&Method::GET, "/health") => self.health(),
            _ => text(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "not found\n",
            ),
        }
    }

    /// `GET /metrics`: the registry in the Prometheus text format.
    fn metrics(&self) -> Response<Full<Bytes>> {
        self.publish_state();
        text(StatusCode::OK, PROMETHEUS_TEXT, self.prometheus.render())
    }

    /// `GET /health`: this instance's id, whether it leads, and whether it
    /// serves: 200 while serving, 503 once draining, so an HTTP health check
    /// (a load balancer's, an orchestrator's) moves traffic away first.
    fn health(&self) -> Response<Full<Bytes>> {
        let serving = !*self.instance.draining.borrow();
        let body = serde_json::json!({
            "instance": self.instance.id,
            "leader": *self.instance.leadership.borrow(),
            "serving": serving,
            "version": env!("CARGO_PKG_VERSION"),
        });
        let status = if serving {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        text(status, "application/json", format!("{body}\n"))
    }

    /// Sets the gauges that look at in-memory state: each online biller's
    /// and wallet operator's circuit breaker, each bank link, this
    /// process's instance and leadership.
    fn publish_state(&self) {
        for biller in self.gateway.online_billers.all() {
            breaker_gauge(biller.party(), biller.client.breaker_state());
        }
        if let Some(wallets) = &self.gateway.wallets {
            for operator in wallets.wallets().operators.values() {
                breaker_gauge(operator.config.party(), operator.client.breaker_state());
            }
        }
        if let Some(payments) = &self.gateway.payments {
            for (link, bank) in &payments.links {
                metrics::gauge!(BANK_LINK_UP, "link" => link.clone()).set(flag(bank.is_up()));
            }
        }
        metrics::gauge!(INSTANCE_INFO, "instance" => self.instance.id.clone(), "version" => env!("CARGO_PKG_VERSION"))
            .set(1.0);
        metrics::gauge!(LEADER).set(flag(*self.instance.leadership.borrow()));
    }
}

fn breaker_gauge(partner: String, state: BreakerState) {
    let value = match state {
        BreakerState::Closed { .. } => 0.0,
        BreakerState::HalfOpen { .. } => 1.0,
        BreakerState::Open { .. } => 2.0,
    };
    metrics::gauge!(CIRCUIT_BREAKER_STATE, "partner" => partner).set(value);
}

fn flag(on: bool) -> f64 {
    if on { 1.0 } else { 0.0 }
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

/// The accept loop: a connection slot first, then a connection, served in
/// a task the loop owns (aborting the loop ends them all).
async fn serve(listener: TcpListener, ops: Arc<Ops>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        let slot = Arc::clone(&slots)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        while connections.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "metrics endpoint: accept failed; retrying");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let ops = Arc::clone(&ops);
        connections.spawn(async move {
            serve_connection(stream, ops).await;
            drop(slot);
        });
    }
}

/// One connection: one request, bounded in time.
async fn serve_connection(stream: TcpStream, ops: Arc<Ops>) {
    let service = hyper::service::service_fn(move |request| {
        let ops = Arc::clone(&ops);
        async move { Ok::<_, Infallible>(ops.answer(&request).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%error, "metrics endpoint: connection failed"),
        Err(_) => tracing::debug!("metrics endpoint: connection cut after its time limit"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    /// A gateway over a fresh SQLite file, with no partners.
    async fn ops(dir: &std::path::Path) -> Ops {
        let config = Config::parse(&format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"s.pem\"\ntls_key = \"s.key\"\n\
             client_ca = \"ca.pem\"\n[database]\nurl = \"sqlite://{}\"\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n",
            dir.join("ops.db").display()
        ))
        .unwrap();
        let db = posgate_store::open(&config.database.url, 1).await.unwrap();
        db.migrate().await.unwrap();
        let clock = Arc::new(posgate_core::model::clock::SystemClock);
        Ops {
            prometheus: recorder().unwrap(),
            gateway: Arc::new(Gateway::new(&config, db, clock).unwrap()),
            instance: InstanceState {
                id: "ops-test".to_owned(),
                leadership: posgate_core::instance::leader::always(true),
                draining: posgate_core::instance::leader::always(false),
            },
        }
    }

    async fn get(ops: &Ops, method: Method, path: &str) -> (StatusCode, String, String) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap();
        let response = ops.answer(&request).await;
        let content_type = response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    /// Only `GET /metrics` and `GET /health` are served; every other path or method is 404.
    #[tokio::test]
    async fn anything_but_get_metrics_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let ops = ops(dir.path()).await;
        for (method, path) in [
            (Method::GET, "/"),
            (Method::GET, "/metrics/"),
            (Method::POST, "/health"),
            (Method::POST, "/metrics"),
            (Method::DELETE, "/metrics"),
        ] {
            let (status, _, _) = get(&ops, method.clone(), path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        }
    }

    /// `GET /health` names the instance and its leadership, and turns 503
    /// when the server drains.
    #[tokio::test]
    async fn health_reports_the_instance_and_turns_503_when_draining() {
        let dir = tempfile::tempdir().unwrap();
        let mut ops = ops(dir.path()).await;
        let (status, content_type, body) = get(&ops, Method::GET, "/health").await;
        assert_eq!(
            (status, content_type.as_str()),
            (StatusCode::OK, "application/json")
        );
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(health["instance"], "ops-test");
        assert_eq!(health["leader"], true);
        assert_eq!(health["serving"], true);
        ops.instance.draining = posgate_core::instance::leader::always(true);
        let (status, _, body) = get(&ops, Method::GET, "/health").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("\"serving\":false"), "{body}");
    }

    /// `GET /metrics` is the Prometheus text format: HELP and TYPE lines,
    /// histogram buckets, the process gauges and zeroed closed-set counters.
    #[tokio::test]
    async fn metrics_are_prometheus_text() {
        let dir = tempfile::tempdir().unwrap();
        let ops = ops(dir.path()).await;
        posgate_api::metered::record(
            "/posgate.v1.BillPaymentService/PayBill",
            tonic::Code::Ok,
            std::time::Instant::now(),
        );
        let (status, content_type, body) = get(&ops, Method::GET, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, PROMETHEUS_TEXT);
        for expected in [
            "# HELP posgate_requests_total Finished gRPC calls",
            "# TYPE posgate_requests_total counter",
            "posgate_requests_total{rpc=\"/posgate.v1.BillPaymentService/PayBill\",code=\"OK\"} ",
            "# TYPE posgate_request_duration_seconds histogram",
            "posgate_request_duration_seconds_bucket{rpc=\"/posgate.v1.BillPaymentService/PayBill\",le=\"0.0005\"} ",
            "posgate_request_duration_seconds_bucket{rpc=\"/posgate.v1.BillPaymentService/PayBill\",le=\"+Inf\"} ",
            "posgate_request_duration_seconds_count{rpc=\"/posgate.v1.BillPaymentService/PayBill\"} ",
            "# TYPE posgate_rate_limited_total counter",
            "posgate_rate_limited_total{scope=\"in_flight\"} ",
            "posgate_rate_limited_total{scope=\"terminal\"} ",
            "posgate_rate_limited_total{scope=\"store\"} ",
            "# TYPE posgate_instance_info gauge",
            "posgate_leader ",
        ] {
            assert!(
                body.contains(expected),
                "{expected:?} missing from:\n{body}"
            );
        }
        // Every sample line is `name{labels} value` with a number for value.
        for line in body
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
        {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            assert!(series.starts_with("posgate_"), "{line}");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
