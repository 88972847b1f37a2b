//! The metrics endpoint (`[metrics]`, README "Metrics") over a real socket:
//! a gateway with two bank simulators and an online biller simulator is
//! scraped, serves real RPCs (batch and online PayBill, a refused PayBill, a
//! card sale), is scraped again, and the counters must have moved: requests
//! by method and code, partner calls by partner and outcome, the group
//! commit's batches. A sale whose answer never comes shows in the card
//! queue's depth and age until its reversal drains it. No label value may
//! name a store, terminal or transaction, and the endpoint stops with the
//! server.
//!
//! The Prometheus registry is one per process and the other tests of this
//! binary run beside this one, so the checks are "moved by at least".

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pb::payment_service_client::PaymentServiceClient;
use posgate_proto::v1 as pb;
use posgate_sims::bank::{BankSim, FaultConfig};
use posgate_sims::biller::BillerSim;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::cards::{
    acquirer_config, card_config, cobrand_config, drain_queue, init_tracing, sale, visa_ok,
    write_keystore,
};
use super::online_bills::{BILLS, biller_section, pay, sim_config};
use super::support::{Backend, OPEN_LIMITS, TestDb, TestGateway, backends, money, tw_pay, utc};
use super::wallets::pki;

const PAY_BILL: &str = "/posgate.v1.BillPaymentService/PayBill";
const AUTHORIZE: &str = "/posgate.v1.PaymentService/Authorize";
/// How long the counters may take to show what was done (they are
/// recorded before the answers go out; the margin is for a busy machine).
const SETTLE: Duration = Duration::from_secs(20);

/// A gateway with `[metrics]` on, two bank simulators and an online biller.
struct World {
    gw: TestGateway,
    metrics: SocketAddr,
    acquirer: BankSim,
    cobrand: BankSim,
    biller: BillerSim,
}

impl World {
    async fn start(backend: Backend) -> Self {
        init_tracing();
        let acquirer = BankSim::start(acquirer_config()).await.unwrap();
        let cobrand = BankSim::start(cobrand_config()).await.unwrap();
        let db = TestDb::new(backend).await;
        write_keystore(db.dir.path()).await;
        let (server_tls, client_tls) = pki(db.dir.path());
        let biller = BillerSim::start(sim_config(server_tls)).await.unwrap();
        let (a, c) = (acquirer.addr().to_string(), cobrand.addr().to_string());
        let gw = TestGateway::start_with(db, utc("2026-11-23T03:00:00Z"), OPEN_LIMITS, |dir| {
            card_config(dir, &a, &c, 2_000)
                + &biller_section(biller.addr(), &client_tls)
                + "\n[metrics]\nlisten = \"127.0.0.1:0\"\n"
        })
        .await;
        let payments = gw.server.gateway.payments.as_ref().unwrap();
        for link in payments.links.values() {
            assert!(
                link.wait_up(Duration::from_secs(10)).await,
                "{} up",
                link.name()
            );
        }
        let metrics = gw.server.metrics_addr.expect("[metrics] is configured");
        Self {
            gw,
            metrics,
            acquirer,
            cobrand,
            biller,
        }
    }

    async fn stop(self) {
        self.gw.stop().await;
        self.biller.shutdown().await;
        self.acquirer.shutdown().await;
        self.cobrand.shutdown().await;
    }
}

/// One HTTP/1.1 GET over a fresh connection: the status and the body.
async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the endpoint answers within 10 s")?;
    let text = String::from_utf8(raw).expect("UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("headers end");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status line");
    Ok((status, body.to_owned()))
}

/// One sample line of the text format: `name{label="value",...} number`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of a scrape (comment lines skipped).
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.strip_suffix('}').expect("closing brace")),
                None => (series, ""),
            };
            Sample {
                name: name.to_owned(),
                labels: labels_of(labels),
                value: value.parse().expect("numeric value"),
            }
        })
        .collect()
}

/// `key="value",...` with the format's escapes (`\"`, `\\`, `\n`).
fn labels_of(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return labels;
        }
        assert_eq!(chars.next(), Some('"'), "label {key} is quoted");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                other => value.push(other),
            }
        }
        labels.insert(key.trim_start_matches(',').to_owned(), value);
    }
}

/// The sum of the samples named `name` carrying every pair of `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|sample| {
            sample.name == name
                && labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(value))
        })
        .map(|sample| sample.value)
        .sum()
}

/// Scrapes until `done` holds for the samples (or fails after [`SETTLE`],
/// naming `what`); returns the samples and the text.
async fn scrape_until(
    addr: SocketAddr,
    what: &str,
    done: impl Fn(&[Sample]) -> bool,
) -> (Vec<Sample>, String) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let (status, text) = http_get(addr, "/metrics").await.unwrap();
        assert_eq!(status, 200);
        let samples = samples(&text);
        if done(&samples) {
            return (samples, text);
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {SETTLE:?}\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What must have moved between two scrapes, as (series, labels, least increase).
fn expected_moves(backend: Backend) -> Vec<(&'static str, Vec<(&'static str, &'static str)>, f64)> {
    let backend = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    vec![
        (
            "posgate_requests_total",
            vec![("rpc", PAY_BILL), ("code", "OK")],
            2.0,
        ),
        (
            "posgate_requests_total",
            vec![("rpc", PAY_BILL), ("code", "INVALID_ARGUMENT")],
            1.0,
        ),
        (
            "posgate_requests_total",
            vec![("rpc", AUTHORIZE), ("code", "OK")],
            1.0,
        ),
        (
            "posgate_request_duration_seconds_count",
            vec![("rpc", PAY_BILL)],
            3.0,
        ),
        (
            "posgate_partner_calls_total",
            vec![("partner", "bank:acquirer"), ("outcome", "ok")],
            1.0,
        ),
        (
            "posgate_partner_calls_total",
            vec![("partner", "biller:CARD"), ("outcome", "ok")],
            1.0,
        ),
        (
            "posgate_partner_call_duration_seconds_count",
            vec![("partner", "biller:CARD")],
            1.0,
        ),
        (
            "posgate_db_batch_size_count",
            vec![("backend", backend)],
            1.0,
        ),
        (
            "posgate_db_commit_duration_seconds_count",
            vec![("backend", backend)],
            1.0,
        ),
    ]
}

/// Real RPCs move the request, partner and batch counters, a lost answer
/// shows in the card queue's depth and age until drained, no label names a
/// store, terminal or transaction, and the endpoint (404 off its one route)
/// stops with the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_show_real_calls_and_no_identifiers() {
    for backend in backends() {
        let world = World::start(backend).await;
        let (status, before) = http_get(world.metrics, "/metrics").await.unwrap();
        assert_eq!(status, 200, "{backend:?}");
        let before = samples(&before);
        assert_eq!(http_get(world.metrics, "/nope").await.unwrap().0, 404);
        // /health names the instance; a lone instance becomes the leader.
        let deadline = Instant::now() + SETTLE;
        loop {
            let (status, body) = http_get(world.metrics, "/health").await.unwrap();
            assert_eq!(status, 200, "{backend:?}: {body}");
            let health: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(health["serving"], true, "{body}");
            assert!(
                health["instance"].as_str().is_some_and(|id| !id.is_empty()),
                "{body}"
            );
            if health["leader"] == true {
                break;
            }
            assert!(Instant::now() < deadline, "never the leader: {body}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }

        let now = utc("2026-11-23T03:00:00Z");
        let mut bills = world.gw.client.clone();
        let batch = bills.pay_bill(tw_pay("metrics-pay-1", now)).await.unwrap();
        let mut refused = tw_pay("metrics-pay-2", now);
        refused.amount = money(0, "");
        let status = bills.pay_bill(refused).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let online = bills
            .pay_bill(pay("metrics-online-1", BILLS[0]))
            .await
            .unwrap();
        let mut cards = PaymentServiceClient::new(world.gw.channel.clone());
        let card = cards
            .authorize(sale("metrics-card-1", &visa_ok(), 12_300))
            .await
            .unwrap();
        let transaction_ids = [
            batch.into_inner().payment.unwrap().transaction_id,
            online.into_inner().payment.unwrap().transaction_id,
            card.into_inner().transaction.unwrap().transaction_id,
        ];

        let moves = expected_moves(backend);
        let (after, text) = scrape_until(world.metrics, "the counters move", |after| {
            moves.iter().all(|(name, labels, least)| {
                value(after, name, labels) - value(&before, name, labels) >= *least
            })
        })
        .await;
        for line in [
            "posgate_bank_link_up{link=\"acquirer\"} 1\n",
            "posgate_circuit_breaker_state{partner=\"biller:CARD\"} 0\n",
            "posgate_saf_queue_depth{queue=\"card\"} ",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
        for name in [
            "posgate_saf_queue_depth",
            "posgate_saf_oldest_age_seconds",
            "posgate_instance_info",
            "posgate_leader",
        ] {
            assert!(
                after.iter().any(|sample| sample.name == name),
                "{name} is exported"
            );
        }
        for sample in &after {
            for value in sample.labels.values() {
                for identifier in ["S001", "S101", "T01"] {
                    assert!(!value.contains(identifier), "{sample:?} names {identifier}");
                }
            }
        }
        let secrets = transaction_ids.iter().cloned().chain([
            visa_ok(),
            "metrics-pay-1".to_owned(),
            "metrics-online-1".to_owned(),
            "metrics-card-1".to_owned(),
        ]);
        for secret in secrets {
            assert!(!text.contains(&secret), "the scrape shows {secret}");
        }

        // A sale whose answer never comes waits in the card queue for its
        // reversal: the backlog gauges show it (its age on the gateway's
        // clock), the bank call counts as a timeout, and the queue drains.
        world.acquirer.set_faults(FaultConfig {
            no_response: 1.0,
            ..FaultConfig::default()
        });
        let status = cards
            .authorize(sale("metrics-card-2", &visa_ok(), 2_222))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        world.gw.clock.set(now + chrono::Duration::seconds(90));
        let card_queue = [("queue", "card")];
        let timeouts = [("partner", "bank:acquirer"), ("outcome", "timeout")];
        scrape_until(
            world.metrics,
            "the card queue shows the reversal",
            |samples| {
                value(samples, "posgate_saf_queue_depth", &card_queue) >= 1.0
                    && value(samples, "posgate_saf_oldest_age_seconds", &card_queue) >= 90.0
                    && value(samples, "posgate_partner_calls_total", &timeouts)
                        - value(&before, "posgate_partner_calls_total", &timeouts)
                        >= 1.0
            },
        )
        .await;
        world.acquirer.set_faults(FaultConfig::default());
        drain_queue(&world.gw, SETTLE).await;
        scrape_until(world.metrics, "the card queue drains", |samples| {
            value(samples, "posgate_saf_queue_depth", &card_queue) < 0.5
        })
        .await;

        let metrics = world.metrics;
        world.stop().await;
        let deadline = Instant::now() + SETTLE;
        while tokio::net::TcpStream::connect(metrics).await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "{backend:?}: the endpoint stops with the server"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
