//! What the load run observed: latency histograms per RPC, errors by
//! status, replays, card outcomes; and the summary printed as a table or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use tonic::Code;

use super::card::CardAnswer;
use super::wallet::WalletAnswer;
use super::{Failure, LoadArgs, Measured, Rpc};

/// Largest latency the histograms hold (60 s); longer ones saturate there,
/// which cannot happen below `REQUEST_TIMEOUT` anyway.
const HISTOGRAM_MAX_US: u64 = 60_000_000;
/// Three significant digits: 0.1 % resolution at any latency.
const HISTOGRAM_SIGNIFICANT_DIGITS: u8 = 3;

/// What a terminal (or the whole run) observed.
#[derive(Debug)]
pub(super) struct Stats {
    /// Latency of every request, by `Rpc::index`, successful or not.
    latency_us: [Histogram<u64>; Rpc::ALL.len()],
    errors_by_status: BTreeMap<&'static str, u64>,
    replays_identical: u64,
    replay_mismatches: u64,
    bad_answers: u64,
    card: CardCounts,
    /// Wallet top-ups and payments the operator declined (a valid answer).
    wallet_declines: u64,
}

/// What fresh card sales came back as.
#[derive(Debug, Default, Clone)]
pub(super) struct CardCounts {
    approved: u64,
    /// Declined "51": the test card's credit line is used up. A valid answer.
    insufficient_funds: u64,
    /// Any other decline of a test card, by response code: a failure.
    unexpected_declines: BTreeMap<String, u64>,
}

impl CardCounts {
    fn merge(&mut self, other: &Self) {
        self.approved += other.approved;
        self.insufficient_funds += other.insufficient_funds;
        for (code, count) in &other.unexpected_declines {
            *self.unexpected_declines.entry(code.clone()).or_default() += count;
        }
    }

    fn unexpected(&self) -> u64 {
        self.unexpected_declines.values().sum()
    }
}

/// How many requests one `--addr` served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AddressShare {
    pub(super) addr: String,
    pub(super) requests: u64,
}

impl Stats {
    /// Requests sent, whatever their outcome.
    pub(super) fn requests(&self) -> u64 {
        self.latency_us.iter().map(Histogram::len).sum()
    }

    pub(super) fn new() -> Self {
        Self {
            latency_us: Rpc::ALL.map(|_| new_histogram()),
            errors_by_status: BTreeMap::new(),
            replays_identical: 0,
            replay_mismatches: 0,
            bad_answers: 0,
            card: CardCounts::default(),
            wallet_declines: 0,
        }
    }

    /// Records a fresh card sale: its latency, and what the bank answered.
    pub(super) fn record_card(&mut self, latency: Duration, outcome: Result<CardAnswer, Failure>) {
        let outcome = outcome.map(|answer| match answer {
            CardAnswer::Approved => self.card.approved += 1,
            CardAnswer::InsufficientFunds => self.card.insufficient_funds += 1,
            CardAnswer::Declined(code) => {
                *self.card.unexpected_declines.entry(code).or_default() += 1;
            }
        });
        self.record(Rpc::Authorize, latency, outcome);
    }

    /// Records a wallet top-up or payment; a DECLINED answer is counted apart.
    pub(super) fn record_wallet(
        &mut self,
        rpc: Rpc,
        latency: Duration,
        outcome: Result<WalletAnswer, Failure>,
    ) {
        let outcome = outcome.map(|answer| {
            if answer == WalletAnswer::Declined {
                self.wallet_declines += 1;
            }
        });
        self.record(rpc, latency, outcome);
    }

    pub(super) fn record(&mut self, rpc: Rpc, latency: Duration, outcome: Result<(), Failure>) {
        let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us[rpc.index()].saturating_record(latency_us.max(1));
        match outcome {
            Ok(()) if rpc.is_replay() => self.replays_identical += 1,
            Ok(()) => {}
            Err(Failure::Status(code)) => {
                *self.errors_by_status.entry(status_name(code)).or_default() += 1;
            }
            Err(Failure::ReplayMismatch) => self.replay_mismatches += 1,
            Err(Failure::BadAnswer) => self.bad_answers += 1,
        }
    }

    pub(super) fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.latency_us.iter_mut().zip(&other.latency_us) {
            mine.add(theirs)
                .expect("every histogram is built with the same bounds");
        }
        for (name, count) in &other.errors_by_status {
            *self.errors_by_status.entry(name).or_default() += count;
        }
        self.replays_identical += other.replays_identical;
        self.replay_mismatches += other.replay_mismatches;
        self.bad_answers += other.bad_answers;
        self.card.merge(&other.card);
        self.wallet_declines += other.wallet_declines;
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, HISTOGRAM_SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// The canonical gRPC name of a status code, as the proto docs write it
/// (the same table as the gateway's metrics `code` label).
fn status_name(code: Code) -> &'static str {
    posgate_api::metered::code_label(code)
}

/// One line of the latency table.
#[derive(Debug)]
struct Row {
    name: &'static str,
    count: u64,
    per_second: f64,
    latency_us_p50: u64,
    latency_us_p90: u64,
    latency_us_p99: u64,
    latency_us_max: u64,
}

impl Row {
    fn new(name: &'static str, latency_us: &Histogram<u64>, elapsed: Duration) -> Self {
        Self {
            name,
            count: latency_us.len(),
            per_second: per_second(latency_us.len(), elapsed),
            latency_us_p50: latency_us.value_at_quantile(0.50),
            latency_us_p90: latency_us.value_at_quantile(0.90),
            latency_us_p99: latency_us.value_at_quantile(0.99),
            latency_us_max: latency_us.max(),
        }
    }

    fn text(&self) -> String {
        format!(
            "{:<17} {:>8} {:>8.0} {:>8} {:>8} {:>8} {:>8}\n",
            self.name,
            self.count,
            self.per_second,
            self.latency_us_p50,
            self.latency_us_p90,
            self.latency_us_p99,
            self.latency_us_max
        )
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "rpc": self.name,
            "count": self.count,
            "requests_per_s": round_to(self.per_second, 1),
            "latency_us_p50": self.latency_us_p50,
            "latency_us_p90": self.latency_us_p90,
            "latency_us_p99": self.latency_us_p99,
            "latency_us_max": self.latency_us_max,
        })
    }
}

/// `value` rounded to `decimals` places, as the report prints it.
fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

#[allow(clippy::cast_precision_loss)] // Request counts stay far below 2^52.
fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
}

/// The run's results, ready to print.
#[derive(Debug)]
pub(super) struct Summary {
    elapsed: Duration,
    concurrency: u32,
    connections: u32,
    rows: Vec<Row>,
    overall: Row,
    errors_by_status: BTreeMap<&'static str, u64>,
    replays_identical: u64,
    replay_mismatches: u64,
    bad_answers: u64,
    card: CardCounts,
    wallet_declines: u64,
    /// The card sales row (fresh `Authorize` calls), for the card lines.
    card_row: Row,
    /// Requests per gateway address, in `--addr` order.
    per_address: Vec<AddressShare>,
    /// The same load against the no-op server (`--ceiling`).
    ceiling: Option<Ceiling>,
}

/// What the no-op server of `--ceiling` did under the same load.
#[derive(Debug)]
struct Ceiling {
    overall: Row,
    /// Its non-OK answers; they fail the run like the gateway's.
    failures: u64,
}

/// Microseconds as milliseconds, for the ceiling lines.
#[allow(clippy::cast_precision_loss)] // Latencies stay far below 2^52 us.
fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Summary {
    pub(super) fn new(measured: &Measured, args: &LoadArgs) -> Self {
        let (stats, elapsed) = (&measured.stats, measured.elapsed);
        let mut overall = new_histogram();
        for histogram in &stats.latency_us {
            overall
                .add(histogram)
                .expect("every histogram is built with the same bounds");
        }
        Self {
            elapsed,
            concurrency: args.concurrency,
            connections: args.concurrency,
            rows: Rpc::ALL
                .iter()
                .map(|rpc| Row::new(rpc.name(), &stats.latency_us[rpc.index()], elapsed))
                .collect(),
            overall: Row::new("all", &overall, elapsed),
            errors_by_status: stats.errors_by_status.clone(),
            replays_identical: stats.replays_identical,
            replay_mismatches: stats.replay_mismatches,
            bad_answers: stats.bad_answers,
            card: stats.card.clone(),
            wallet_declines: stats.wallet_declines,
            card_row: Row::new(
                Rpc::Authorize.name(),
                &stats.latency_us[Rpc::Authorize.index()],
                elapsed,
            ),
            per_address: measured.per_address.clone(),
            ceiling: None,
        }
    }

    /// Adds the no-op server's run (`--ceiling`): its overall figures and failures.
    pub(super) fn with_ceiling(mut self, ceiling: Summary) -> Self {
        self.ceiling = Some(Ceiling {
            failures: ceiling.failures(),
            overall: ceiling.overall,
        });
        self
    }

    /// The gateway's throughput as a share of the no-op server's under the
    /// same load; none without `--ceiling` or when the no-op server served nothing.
    pub(super) fn ratio(&self) -> Option<f64> {
        let ceiling = self.ceiling.as_ref()?;
        (ceiling.overall.per_second > 0.0)
            .then(|| self.overall.per_second / ceiling.overall.per_second)
    }

    /// Failed requests: error statuses, replay mismatches, malformed
    /// answers, and card declines other than "51"; with `--ceiling`, the
    /// no-op server's non-OK answers too.
    pub(super) fn failures(&self) -> u64 {
        self.errors_by_status.values().sum::<u64>()
            + self.replay_mismatches
            + self.bad_answers
            + self.card.unexpected()
            + self.ceiling.as_ref().map_or(0, |ceiling| ceiling.failures)
    }

    /// Card sales per second, approved or declined "51".
    fn card_payments_per_s(&self) -> f64 {
        per_second(
            self.card.approved + self.card.insufficient_funds,
            self.elapsed,
        )
    }

    pub(super) fn text(&self) -> String {
        let mut out = format!(
            "posgate load: {} requests in {:.2} s = {:.0} req/s (concurrency {}, {} connections)\n",
            self.overall.count,
            self.elapsed.as_secs_f64(),
            self.overall.per_second,
            self.concurrency,
            self.connections
        );
        let addresses: Vec<String> = (self.per_address.iter())
            .map(|share| format!("{} ({} requests)", share.addr, share.requests))
            .collect();
        let _ = writeln!(out, "addresses: {}", addresses.join(", "));
        out.push_str("rpc                  count    req/s   p50_us   p90_us   p99_us   max_us\n");
        for row in self.rows.iter().chain([&self.overall]) {
            out.push_str(&row.text());
        }
        let _ = writeln!(
            out,
            "retries: {} replayed identically, {} mismatched",
            self.replays_identical, self.replay_mismatches
        );
        let errors = if self.errors_by_status.is_empty() {
            "none".to_owned()
        } else {
            let parts: Vec<String> = (self.errors_by_status.iter())
                .map(|(name, count)| format!("{name}={count}"))
                .collect();
            parts.join(", ")
        };
        if self.card_row.count > 0 {
            let _ = writeln!(
                out,
                "card payments: {:.0}/s ({} approved, {} declined 51 insufficient funds); p50 {} us, p99 {} us",
                self.card_payments_per_s(),
                self.card.approved,
                self.card.insufficient_funds,
                self.card_row.latency_us_p50,
                self.card_row.latency_us_p99
            );
        }
        if !self.card.unexpected_declines.is_empty() {
            let parts: Vec<String> = (self.card.unexpected_declines.iter())
                .map(|(code, count)| format!("{code}={count}"))
                .collect();
            let _ = writeln!(out, "unexpected card declines: {}", parts.join(", "));
        }
        if self.wallet_declines > 0 {
            let _ = writeln!(
                out,
                "wallet declines (operator refusals, valid answers): {}",
                self.wallet_declines
            );
        }
        let _ = writeln!(out, "errors by status: {errors}");
        if self.bad_answers > 0 {
            let _ = writeln!(out, "malformed OK answers: {}", self.bad_answers);
        }
        if let Some(ceiling) = &self.ceiling {
            let _ = writeln!(
                out,
                "ceiling (no-op server, same client and load): {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms ({} requests, {} failed)",
                ceiling.overall.per_second,
                ms(ceiling.overall.latency_us_p50),
                ms(ceiling.overall.latency_us_p99),
                ceiling.overall.count,
                ceiling.failures
            );
            let _ = writeln!(
                out,
                "gateway: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
                self.overall.per_second,
                ms(self.overall.latency_us_p50),
                ms(self.overall.latency_us_p99)
            );
            let ratio = self
                .ratio()
                .map_or_else(|| "n/a".to_owned(), |ratio| format!("{ratio:.4}"));
            let _ = writeln!(out, "ratio (gateway req/s / ceiling req/s): {ratio}");
        }
        out
    }

    /// The summary as one JSON object.
    pub(super) fn json(&self) -> String {
        let card = &self.card_row;
        let mut json = serde_json::json!({
            "elapsed_s": round_to(self.elapsed.as_secs_f64(), 3),
            "concurrency": self.concurrency,
            "connections": self.connections,
            "addresses": self.per_address.iter().map(|share| serde_json::json!({
                "addr": share.addr,
                "requests": share.requests,
            })).collect::<Vec<_>>(),
            "rpcs": self.rows.iter().map(Row::json).collect::<Vec<_>>(),
            "overall": self.overall.json(),
            "retries": {
                "replayed_identically": self.replays_identical,
                "mismatched": self.replay_mismatches,
            },
            "card": {
                "payments_per_s": round_to(self.card_payments_per_s(), 1),
                "approved": self.card.approved,
                "declined_insufficient_funds": self.card.insufficient_funds,
                "latency_us_p50": card.latency_us_p50,
                "latency_us_p90": card.latency_us_p90,
                "latency_us_p99": card.latency_us_p99,
                "latency_us_max": card.latency_us_max,
                "unexpected_declines": self.card.unexpected_declines,
            },
            "wallet_declines": self.wallet_declines,
            "errors_by_status": self.errors_by_status,
            "malformed_ok_answers": self.bad_answers,
            "failures": self.failures(),
        });
        if let Some(ceiling) = &self.ceiling {
            json["ceiling"] = serde_json::json!({
                "requests_per_s": round_to(ceiling.overall.per_second, 1),
                "p50_ms": ms(ceiling.overall.latency_us_p50),
                "p99_ms": ms(ceiling.overall.latency_us_p99),
                "count": ceiling.overall.count,
                "failures": ceiling.failures,
            });
            json["ratio"] = self.ratio().map(|ratio| round_to(ratio, 4)).into();
        }
        json.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One second of `count` OK `PayBill`s of `latency_us` each and
    /// `failed` unavailable ones, all on one address.
    fn measured(count: u64, latency_us: u64, failed: u64) -> Measured {
        Measured {
            stats: stats(count, latency_us, failed),
            elapsed: Duration::from_secs(1),
            per_address: vec![AddressShare {
                addr: "https://127.0.0.1:50051".to_owned(),
                requests: count + failed,
            }],
        }
    }

    /// Stats of `count` OK `PayBill`s of `latency_us` each, and `failed` unavailable ones.
    fn stats(count: u64, latency_us: u64, failed: u64) -> Stats {
        let mut stats = Stats::new();
        for _ in 0..count {
            stats.record(Rpc::PayBill, Duration::from_micros(latency_us), Ok(()));
        }
        for _ in 0..failed {
            stats.record(
                Rpc::PayBill,
                Duration::from_micros(latency_us),
                Err(Failure::Status(Code::Unavailable)),
            );
        }
        stats
    }

    /// The ceiling's figures and the ratio go into the JSON and the table;
    /// the ceiling's failures count among the run's.
    #[test]
    fn ceiling_figures_and_ratio_are_reported() {
        let args = super::super::tests::parse_args(&["--ceiling"]).unwrap();
        let gateway = Summary::new(&measured(100, 2_000, 0), &args);
        assert_eq!(gateway.ratio(), None);
        assert!(gateway.json().parse::<serde_json::Value>().unwrap()["ceiling"].is_null());
        let ceiling = Summary::new(&measured(400, 1_000, 0), &args);
        let summary = gateway.with_ceiling(ceiling);
        assert_eq!(summary.ratio(), Some(0.25));
        assert_eq!(summary.failures(), 0);
        let json: serde_json::Value = summary.json().parse().unwrap();
        assert_eq!(json["ratio"], 0.25);
        assert_eq!(json["ceiling"]["requests_per_s"], 400.0);
        assert_eq!(json["ceiling"]["count"], 400);
        assert_eq!(json["ceiling"]["failures"], 0);
        assert!((json["ceiling"]["p50_ms"].as_f64().unwrap() - 1.0).abs() < 0.01);
        assert!((json["ceiling"]["p99_ms"].as_f64().unwrap() - 1.0).abs() < 0.01);
        assert_eq!(json["overall"]["requests_per_s"], 100.0);
        let text = summary.text();
        assert!(
            text.contains(
                "ceiling (no-op server, same client and load): 400 req/s, p50 1.00 ms, p99 1.00 ms"
            ),
            "{text}"
        );
        assert!(
            text.contains("gateway: 100 req/s, p50 2.00 ms, p99 2.00 ms"),
            "{text}"
        );
        assert!(
            text.contains("ratio (gateway req/s / ceiling req/s): 0.2500"),
            "{text}"
        );

        let gateway = Summary::new(&measured(100, 2_000, 0), &args);
        let failing = gateway.with_ceiling(Summary::new(&measured(10, 1_000, 3), &args));
        assert_eq!(failing.failures(), 3);
        let json: serde_json::Value = failing.json().parse().unwrap();
        assert_eq!(json["failures"], 3);
        assert_eq!(json["ceiling"]["failures"], 3);
    }

    /// Each address's requests go into the table and the JSON, in `--addr`
    /// order; the ceiling's single no-op address does not replace them.
    #[test]
    fn requests_per_address_are_reported() {
        let args = super::super::tests::parse_args(&["--ceiling"]).unwrap();
        let mut two = measured(0, 1_000, 0);
        two.stats = stats(30, 1_000, 2);
        two.per_address = vec![
            AddressShare {
                addr: "https://127.0.0.1:50051".to_owned(),
                requests: 16,
            },
            AddressShare {
                addr: "https://127.0.0.1:50052".to_owned(),
                requests: 16,
            },
        ];
        assert_eq!(two.stats.requests(), 32);
        let summary =
            Summary::new(&two, &args).with_ceiling(Summary::new(&measured(90, 500, 0), &args));
        let text = summary.text();
        assert!(
            text.contains(
                "addresses: https://127.0.0.1:50051 (16 requests), https://127.0.0.1:50052 (16 requests)\n"
            ),
            "{text}"
        );
        let json: serde_json::Value = summary.json().parse().unwrap();
        assert_eq!(
            json["addresses"],
            serde_json::json!([
                { "addr": "https://127.0.0.1:50051", "requests": 16 },
                { "addr": "https://127.0.0.1:50052", "requests": 16 },
            ])
        );
        assert_eq!(json["ceiling"]["count"], 90);
    }
}
