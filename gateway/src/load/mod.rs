//! `posgate load`: a load generator that drives a running gateway through its
//! real gRPC API over TLS and reports throughput, latency and errors.
//!
//! Each task is a virtual POS terminal (`L0000`, `L0001`, …) of one configured
//! store. It builds valid bill slips for the billers that store can collect
//! (read from the gateway's own config file), and sends a random mix of
//! `PayBill`, `InquireBill` and `CancelBill` requests back to back, each with a
//! fresh idempotency key. A share of requests are deliberate retries: an
//! earlier `PayBill` sent again verbatim, which must come back identical and
//! flagged with `posgate-idempotent-replay: true`. Cancels only ever target a
//! payment the same terminal made earlier in the run.
//!
//! The `card` scenario sends card sales (`PaymentService.Authorize`) on the
//! bank simulator's test cards; retries replay earlier card sales the same
//! way. A card decline "51" (the test card's limit is used up) is a valid
//! answer, counted apart from errors.
//!
//! The run stops after `--duration-s` seconds or `--count` requests. Every
//! answer other than OK, every replay that differs from its original, and
//! every OK answer of the wrong shape is a failure; any failure makes the
//! command exit non-zero, so CI can use it as a smoke test.
//!
//! `--addr` may be given several times (or as a comma-separated list) to
//! drive several gateway instances at once, e.g. two `posgate serve` on one
//! PostgreSQL. Virtual terminal `i` connects to address `i mod n`, over its
//! own connection as with one address: the terminals split evenly and
//! always the same way, the run opens as many connections and TLS
//! handshakes as a one-address run (so the two compare), and the summary
//! can say how many requests each address served. A tonic balanced channel
//! over the list is what a real POS would rather use (it survives the loss
//! of an instance), but it opens a connection per terminal and address and
//! picks an instance per request by its own load estimate, which is a
//! different client than the one-address run it is compared with.
//!
//! With `--ceiling` the run has two phases with the same client settings
//! (connections, concurrency, duration or count, mix, requests): first
//! against a no-op gRPC server started in its own process with the
//! gateway's TLS and mutual-TLS settings (`noop`), then against the
//! gateway. The summary adds the no-op server's figures and the ratio of
//! the gateway's throughput to it, a figure that carries from one machine
//! to another far better than requests per second do. The no-op server
//! answers empty messages, so in that phase only the status is checked.
//! With several addresses the ceiling is still one no-op server driven by
//! every terminal: what this client and one server process reach on this
//! machine, so the ratios of one- and several-instance runs compare.
//!
//! Layout:
//! - `mod.rs` (this file): options, scenario mix, virtual terminals, bill slips.
//! - `card`: the card scenario: test cards, sale requests, what an answer counts as.
//! - `wallet`: the wallet scenarios: cash top-ups and payments on one wallet.
//! - `noop`: the no-op server of `--ceiling` and its process.
//! - `stats`: histograms and counters per terminal, the summary as a table or JSON.

mod card;
pub mod noop;
mod stats;
mod wallet;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use chrono::{Datelike, Days, NaiveDate, Utc};
use chrono_tz::Tz;
use futures::StreamExt as _;
use posgate_proto::v1::bill_payment_service_client::BillPaymentServiceClient;
use posgate_proto::v1::payment_service_client::PaymentServiceClient;
use posgate_proto::v1::wallet_service_client::WalletServiceClient;
use posgate_proto::v1::{
    AuthorizeRequest, AuthorizeResponse, BillSlip, CancelBillRequest, InquireBillRequest, Money,
    PayBillRequest, PayBillResponse, RequestContext,
};
use tokio::task::JoinSet;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Code, Status};

use self::card::CardRoute;
use self::noop::NoopProcess;
use self::stats::{AddressShare, Stats, Summary};
use self::wallet::WalletRoute;
use uuid::Uuid;

use crate::tls::{DEV_SERVER_NAME, DevPki, client_tls};
use posgate_api::grpc::idempotent::REPLAY_HEADER;
use posgate_core::bill::barcode::{self, BarcodeProfile, ParsedSlip, TwYearConvention};
use posgate_core::bill::config::BillerConfig;
use posgate_core::config::Config;
use posgate_core::model::business_day::StoreConfig;

/// The gateway of the example config.
const DEFAULT_ADDR: &str = "https://127.0.0.1:50051";
/// Default number of virtual terminals: enough to keep a small gateway busy.
const DEFAULT_CONCURRENCY: u32 = 32;
/// Most virtual terminals: each is a task with its own histograms; beyond a
/// thousand the generator measures its own scheduling more than the gateway.
const MAX_CONCURRENCY: u32 = 1024;
/// Validity of the client certificates minted for one run: longer than the
/// longest run, short enough that a leaked one is soon useless.
const RUN_CERT_VALIDITY: std::time::Duration =
    std::time::Duration::from_secs(MAX_DURATION_S + 3600);
/// Terminals connecting at once at the start; the gateway bounds handshakes
/// in flight anyway, this keeps the generator's own start-up orderly.
const CONNECTS_IN_PARALLEL: usize = 32;
/// Run length when neither `--duration-s` nor `--count` is given.
const DEFAULT_DURATION_S: u64 = 10;
/// Longest run: a load test is a bounded experiment, not a soak daemon.
const MAX_DURATION_S: u64 = 24 * 3600;
/// Most requests one run may send.
const MAX_COUNT: u64 = 100_000_000;
/// The first wallet of `config/wallet-sim.example.toml` (NT$1,000, may hold NT$10,000).
const DEFAULT_WALLET_CARD: &str = "1000000000000001";
/// Default scenario mix, as weights.
const DEFAULT_MIX: &str = "pay=80,inquire=15,cancel=5";
/// Default share of requests that replay an earlier `PayBill`.
const DEFAULT_RETRY_SHARE: &str = "0.05";
/// Deadline of one request; a gateway that takes longer is failing the test.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for establishing each TLS connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Payments (bill and card) each terminal remembers for retries and cancels; older ones are
/// forgotten so memory stays bounded however long the run.
const REMEMBERED_PAYMENTS: usize = 64;
/// Slips fall due this many days after today in the store's time zone, so no
/// payment in the run is late.
const DUE_IN_DAYS: u64 = 30;
/// The cashier every virtual terminal claims.
const OPERATOR_ID: &str = "LOAD";
/// Cancel reason recorded for audit.
const CANCEL_REASON: &str = "posgate load test";
/// Stores in this time zone collect yen bills; all others collect the rest.
const JAPAN_TIME_ZONE: Tz = chrono_tz::Asia::Tokyo;
/// The currency of Japanese billers.
const JAPAN_CURRENCY: &str = "JPY";
/// Length of a Taiwanese slip's bill reference (segment 2).
const TW_BILL_REFERENCE_LEN: usize = 16;
/// Length of a Japanese slip's free field.
const JP_BILL_REFERENCE_LEN: usize = 21;
/// Largest amount a Taiwanese slip prints (nine digits of whole dollars).
const TW_MAX_AMOUNT_WHOLE: u64 = 999_999_999;
/// Largest amount a Japanese slip prints (six digits of yen).
const JP_MAX_AMOUNT_WHOLE: u64 = 999_999;
/// ROC year = Gregorian year − 1911.
const ROC_YEAR_OFFSET: i32 = 1911;

/// Options of `posgate load`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
The gateway's [limits] must allow the load: every task is its own terminal \
(L0000, L0001, ...) sending back to back over its own mutual-TLS connection, \
with a client certificate minted for the run from the development CA in \
--pki-dir (`posgate certs init`), and tasks are spread round-robin \
over the configured stores that have a biller to pay. Raise \
terminal_per_second/terminal_burst, store_per_second/store_burst and \
max_in_flight in the server's config, or rate-limit refusals \
(RESOURCE_EXHAUSTED) will be counted as errors.

Example:
  posgate load --addr https://127.0.0.1:50051 --pki-dir certs \\
      --config posgate.toml --concurrency 32 --duration-s 10 \\
      --mix pay=80,inquire=15,cancel=5 --retry-share 0.05

Several instances (e.g. two `posgate serve` on one PostgreSQL): repeat \
--addr or give a comma-separated list; terminal i connects to address \
i mod n, and the summary says how many requests each address served:
  posgate load --addr https://127.0.0.1:50051 --addr https://127.0.0.1:50052 \\
      --pki-dir certs --config posgate.toml

Card payments (--mix card=N) need a gateway with cards configured and the \
bank simulator behind it. Every sale is NT$1 (or ¥1) on the simulator's test \
cards (Visa and co-brand in TWD stores, JCB in JPY stores); the example \
simulator's NT$10,000 limit per card then lasts about 20,000 TWD sales, after \
which the bank declines \"51\" (counted apart, not an error). For long runs \
copy config/bank-sim.example.toml and raise limit_minor of those cards. Set up \
a gateway like this (a development CA and server certificate come from \
`posgate certs init --dir certs`, which writes ca.pem, ca.key, server.pem, server.key, crl.pem):
  posgate certs init --dir certs
  posgate keys --keystore keys/posgate.keystore --master-key-file keys/master.key init-test
  posgate sim bank --config config/bank-sim.example.toml &
  cp config/posgate.example.toml posgate.toml   # raise [limits] as said above
  posgate serve --config posgate.toml &
  posgate load --pki-dir certs --config posgate.toml --mix pay=50,card=50

--ceiling first runs the same load against a no-op gRPC server (a child \
process of this executable serving with the [server] TLS settings of \
--config, answering every call at once with an empty message), then \
against the gateway, and prints both and the ratio gateway/no-op. With \
several --addr there is still one no-op server, driven by every terminal:
  posgate load --pki-dir certs --config posgate.toml --ceiling \
      --concurrency 64 --duration-s 20 --mix pay=100 --retry-share 0")]
pub struct LoadArgs {
    /// Gateway URL; repeat it (or give a comma-separated list) to spread the
    /// terminals over several instances: terminal i connects to address i mod n.
    #[arg(long = "addr", value_delimiter = ',', default_value = DEFAULT_ADDR)]
    pub addrs: Vec<String>,
    /// Development PKI directory (`posgate certs init`): its CA key signs a
    /// client certificate per virtual terminal, and its ca.pem verifies the gateway.
    #[arg(long)]
    pub pki_dir: PathBuf,
    /// PEM file of the CA that signed the gateway's certificate [default: `PKI_DIR/ca.pem`].
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Server name to verify in the gateway's certificate.
    #[arg(long, default_value = DEV_SERVER_NAME)]
    pub domain: String,
    /// The gateway's config file, for its stores and billers.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Concurrent virtual POS terminals (tasks).
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CONCURRENCY)))]
    pub concurrency: u32,
    /// Stop after this many seconds [default: 10 unless --count is given].
    #[arg(long, conflicts_with = "count",
        value_parser = clap::value_parser!(u64).range(1..=MAX_DURATION_S))]
    pub duration_s: Option<u64>,
    /// Stop after this many requests in total.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_COUNT))]
    pub count: Option<u64>,
    /// Scenario weights: `pay`, `inquire`, `cancel` (a cancel falls back to a
    /// pay while the terminal has nothing to cancel), `card` (a card sale),
    /// `topup` (a cash wallet top-up), `wallet` (a wallet payment).
    #[arg(long, default_value = DEFAULT_MIX)]
    pub mix: Mix,
    /// The wallet card number of the `topup` and `wallet` scenarios.
    #[arg(long, default_value = DEFAULT_WALLET_CARD)]
    pub wallet_card: String,
    /// Share of requests (0-1) that resend an earlier PayBill or card sale verbatim.
    #[arg(long, default_value = DEFAULT_RETRY_SHARE, value_parser = parse_share)]
    pub retry_share: f64,
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// First drive a no-op gRPC server (own process, the gateway's TLS and
    /// mutual-TLS settings) with the same client settings, then the
    /// gateway; print both and the ratio.
    #[arg(long)]
    pub ceiling: bool,
}

/// Runs the load described by `args` and prints the summary.
///
/// # Errors
///
/// Fails when the config or CA cannot be read, no store has a biller to pay
/// (or takes cards, for the card scenario),
/// the gateway cannot be reached, or any request failed.
pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)
        .with_context(|| format!("loading config {}", args.config.display()))?;
    if args.addrs.len() > args.concurrency as usize {
        bail!(
            "{} addresses but only {} virtual terminals: every address needs one (raise --concurrency)",
            args.addrs.len(),
            args.concurrency
        );
    }
    let routes = routes(&config, args.mix, &args.wallet_card)?;
    let ceiling = if args.ceiling {
        Some(measure_ceiling(&args, &routes).await?)
    } else {
        None
    };
    let measured = measure(&args, &args.addrs, Checks::Full, &routes).await?;
    let mut summary = Summary::new(&measured, &args);
    if let Some(ceiling) = &ceiling {
        summary = summary.with_ceiling(Summary::new(ceiling, &args));
    }
    if args.json {
        println!("{}", summary.json());
    } else {
        print!("{}", summary.text());
    }
    let failures = summary.failures();
    if failures > 0 {
        bail!("{failures} request(s) failed");
    }
    Ok(())
}

/// What is checked of an OK answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checks {
    /// Its shape, and that a retry replays the first answer (the gateway).
    Full,
    /// Nothing: the no-op server's answers are empty. Non-OK statuses
    /// still fail.
    StatusOnly,
}

/// Drives the no-op server, started for this and killed after it, with
/// the run's client settings: every terminal connects to it, whatever the
/// number of `--addr`.
async fn measure_ceiling(args: &LoadArgs, routes: &[Arc<Route>]) -> anyhow::Result<Measured> {
    let noop = NoopProcess::start(&args.config).await?;
    let addrs = [format!("https://{}", noop.addr)];
    let measured = measure(args, &addrs, Checks::StatusOnly, routes).await;
    noop.stop().await;
    measured.context("driving the no-op server")
}

/// What one phase of the run saw.
#[derive(Debug)]
struct Measured {
    stats: Stats,
    elapsed: Duration,
    /// Requests each address served, in `--addr` order.
    per_address: Vec<AddressShare>,
}

/// Connects the virtual terminals to `addrs` (terminal `i` to address
/// `i mod n`), runs them to the end of the budget and returns what they
/// saw, how long the run took and how the requests spread.
async fn measure(
    args: &LoadArgs,
    addrs: &[String],
    checks: Checks,
    routes: &[Arc<Route>],
) -> anyhow::Result<Measured> {
    let channels = connect(args, addrs, routes).await?;
    let budget = Arc::new(Budget::from_args(args));
    let started = Instant::now();
    let (stats, requests) = drive(args, routes, &channels, addrs.len(), &budget, checks).await?;
    let elapsed = started.elapsed();
    let per_address = addrs
        .iter()
        .zip(requests)
        .map(|(addr, requests)| AddressShare {
            addr: addr.clone(),
            requests,
        })
        .collect();
    Ok(Measured {
        stats,
        elapsed,
        per_address,
    })
}

/// Parses a share between 0 and 1 inclusive.
fn parse_share(text: &str) -> Result<f64, String> {
    let share: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if (0.0..=1.0).contains(&share) {
        Ok(share)
    } else {
        Err(format!("{text} is not between 0 and 1"))
    }
}

/// Scenario weights, e.g. `pay=80,inquire=15,cancel=5` or `pay=50,card=50`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    pay: u32,
    inquire: u32,
    cancel: u32,
    card: u32,
    topup: u32,
    wallet: u32,
}

/// Largest weight one scenario may have; keeps the total far from overflow.
const MAX_MIX_WEIGHT: u32 = 1_000_000;

impl FromStr for Mix {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut weights: [Option<u32>; 6] = [None; 6];
        for part in text.split(',') {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not NAME=WEIGHT"))?;
            let slot = match name.trim() {
                "pay" => 0,
                "inquire" => 1,
                "cancel" => 2,
                "card" => 3,
                "topup" => 4,
                "wallet" => 5,
                other => {
                    return Err(format!(
                        "unknown scenario {other:?}: use pay, inquire, cancel, card, topup, wallet"
                    ));
                }
            };
            let weight: u32 = weight
                .trim()
                .parse()
                .ok()
                .filter(|weight| *weight <= MAX_MIX_WEIGHT)
                .ok_or_else(|| format!("weight {weight:?} is not 0-{MAX_MIX_WEIGHT}"))?;
            if weights[slot].replace(weight).is_some() {
                return Err(format!("scenario {:?} given twice", name.trim()));
            }
        }
        let [pay, inquire, cancel, card, topup, wallet] = weights.map(Option::unwrap_or_default);
        if pay + inquire + cancel + card + topup + wallet == 0 {
            return Err("the weights add up to 0".to_owned());
        }
        Ok(Self {
            pay,
            inquire,
            cancel,
            card,
            topup,
            wallet,
        })
    }
}

impl Mix {
    /// The scenario a uniform draw in `0..total` falls on.
    fn pick(self, draw: u64) -> Action {
        if draw < u64::from(self.pay) {
            Action::Pay
        } else if draw < u64::from(self.pay + self.inquire) {
            Action::Inquire
        } else if draw < u64::from(self.pay + self.inquire + self.cancel) {
            Action::Cancel
        } else if draw < u64::from(self.pay + self.inquire + self.cancel + self.card) {
            Action::Card
        } else if draw < u64::from(self.pay + self.inquire + self.cancel + self.card + self.topup) {
            Action::TopUp
        } else {
            Action::WalletPay
        }
    }

    fn total(self) -> u64 {
        u64::from(self.pay + self.inquire + self.cancel + self.card + self.topup + self.wallet)
    }

    /// Whether wallet top-ups or payments run (a terminal then needs a wallet operator).
    fn has_wallets(self) -> bool {
        self.topup + self.wallet > 0
    }

    /// Whether any bill scenario runs (a terminal then needs billers).
    fn has_bills(self) -> bool {
        self.pay + self.inquire + self.cancel > 0
    }

    /// Whether card sales run (a terminal then needs a card route).
    fn has_cards(self) -> bool {
        self.card > 0
    }
}

/// What a terminal does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Pay,
    Inquire,
    Cancel,
    Card,
    TopUp,
    WalletPay,
    Replay,
}

/// The RPCs reported separately; a replayed `PayBill` or `Authorize` is its
/// own row because it is answered from the idempotency store and is much faster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    PayBill,
    PayBillReplay,
    InquireBill,
    CancelBill,
    /// A fresh card sale (`PaymentService.Authorize`).
    Authorize,
    AuthorizeReplay,
    /// `WalletService.TopUp` (cash).
    TopUp,
    /// `WalletService.Pay`.
    WalletPay,
}

impl Rpc {
    const ALL: [Self; 8] = [
        Self::PayBill,
        Self::PayBillReplay,
        Self::InquireBill,
        Self::CancelBill,
        Self::Authorize,
        Self::AuthorizeReplay,
        Self::TopUp,
        Self::WalletPay,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::PayBill => "PayBill",
            Self::PayBillReplay => "PayBill/replay",
            Self::InquireBill => "InquireBill",
            Self::CancelBill => "CancelBill",
            Self::Authorize => "Authorize",
            Self::AuthorizeReplay => "Authorize/replay",
            Self::TopUp => "TopUp",
            Self::WalletPay => "WalletPay",
        }
    }

    fn is_replay(self) -> bool {
        matches!(self, Self::PayBillReplay | Self::AuthorizeReplay)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// When the run stops. Shared by all terminals.
#[derive(Debug)]
enum Budget {
    Until(Instant),
    Count { limit: u64, issued: AtomicU64 },
}

impl Budget {
    fn from_args(args: &LoadArgs) -> Self {
        match args.count {
            Some(limit) => Self::Count {
                limit,
                issued: AtomicU64::new(0),
            },
            None => Self::Until(
                Instant::now() + Duration::from_secs(args.duration_s.unwrap_or(DEFAULT_DURATION_S)),
            ),
        }
    }

    /// Claims one more request; false once the run is over.
    fn take(&self) -> bool {
        match self {
            Self::Until(deadline) => Instant::now() < *deadline,
            Self::Count { limit, issued } => issued.fetch_add(1, Ordering::Relaxed) < *limit,
        }
    }
}

/// A small, fast, seedable generator (`SplitMix64`). Load generation needs
/// spread, not cryptographic quality, and the crate has no `rand`.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    /// A generator seeded from the random bits of a fresh version-7 UUID.
    fn seeded() -> Self {
        Self(Uuid::now_v7().as_u64_pair().1)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (modulo bias is irrelevant at load-test scale).
    fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "empty range");
        self.next_u64() % bound
    }

    /// Uniform in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "empty range {low}..={high}");
        low + self.below(high - low + 1)
    }

    /// True with probability `share`.
    fn chance(&mut self, share: f64) -> bool {
        let upper = u32::try_from(self.next_u64() >> 32).unwrap_or(u32::MAX);
        f64::from(upper) / 4_294_967_296.0 < share
    }

    fn digits(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(b'0' + u8::try_from(self.below(10)).unwrap_or(0)))
            .collect()
    }
}

/// A biller as the load generator uses it: amounts already in whole units.
#[derive(Debug, Clone)]
struct LoadBiller {
    id: String,
    profile: BarcodeProfile,
    agency_codes: Vec<String>,
    currency_code: &'static str,
    minor_per_major: u64,
    amount_whole_min: u64,
    amount_whole_max: u64,
}

/// Most whole amounts tried when looking for a biller's smallest payable bill.
const FEE_SEARCH_STEPS: u64 = 100_000;

impl TryFrom<&BillerConfig> for LoadBiller {
    type Error = anyhow::Error;

    fn try_from(biller: &BillerConfig) -> anyhow::Result<Self> {
        let minor_per_major = biller.currency.minor_per_major();
        let printable_max = match biller.profile {
            BarcodeProfile::JapanGs1Cvs => JP_MAX_AMOUNT_WHOLE,
            _ => TW_MAX_AMOUNT_WHOLE,
        };
        let amount_whole_max = (biller.max_amount_minor / minor_per_major).min(printable_max);
        // Bills the biller's fee would swallow are refused (FEE_EXCEEDS_AMOUNT):
        // start above them, so every generated payment can succeed.
        let lowest = biller.min_amount_minor.div_ceil(minor_per_major).max(1);
        // Fees are small next to bills, so the search is short; it is bounded
        // for a contract whose fee would swallow every bill.
        let amount_whole_min = (lowest..=amount_whole_max.min(lowest + FEE_SEARCH_STEPS))
            .find(|&whole| posgate_core::bill::check_fee(biller, whole * minor_per_major).is_ok())
            .unwrap_or(u64::MAX);
        if amount_whole_min > amount_whole_max || biller.agency_codes.is_empty() {
            bail!(
                "biller {} has no whole amount its slips can carry (above its fee), or no agency code",
                biller.id
            );
        }
        Ok(Self {
            id: biller.id.clone(),
            profile: biller.profile,
            agency_codes: biller.agency_codes.clone(),
            currency_code: biller.currency.code,
            minor_per_major,
            amount_whole_min,
            amount_whole_max,
        })
    }
}

/// A store, the billers its terminals pay and the cards they take.
#[derive(Debug)]
struct Route {
    store_id: String,
    time_zone: Tz,
    billers: Vec<LoadBiller>,
    /// Test cards in the store's card currency; none when it takes no cards.
    card: Option<CardRoute>,
    /// The wallet of the wallet scenarios; none without a wallet operator there.
    wallet: Option<WalletRoute>,
}

/// Whether a store collects a biller's bills: Japanese stores take yen
/// billers, every other store takes the rest.
fn collects(store: &StoreConfig, biller: &BillerConfig) -> bool {
    (store.time_zone == JAPAN_TIME_ZONE) == (biller.currency.code == JAPAN_CURRENCY)
}

/// Every configured store that can run the mix: collect at least one
/// biller when the mix has bill scenarios, take test cards when it has card sales.
fn routes(config: &Config, mix: Mix, wallet_card: &str) -> anyhow::Result<Vec<Arc<Route>>> {
    let mut routes = Vec::new();
    for store in config.stores.values() {
        let billers = config
            .billers
            .iter()
            .filter(|biller| collects(store, biller))
            .map(LoadBiller::try_from)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let card = card::card_route(config, &store.id);
        let bills_ok = !mix.has_bills() || !billers.is_empty();
        let cards_ok = !mix.has_cards() || card.is_some();
        let wallet = wallet::wallet_route(config, &store.id, wallet_card);
        let wallets_ok = !mix.has_wallets() || wallet.is_some();
        if bills_ok && cards_ok && wallets_ok {
            routes.push(Arc::new(Route {
                store_id: store.id.clone(),
                time_zone: store.time_zone,
                billers,
                card,
                wallet,
            }));
        }
    }
    if routes.is_empty() {
        bail!(
            "no store in the config can run the mix: bill scenarios need a biller in the store's currency \
             (Asia/Tokyo stores pay JPY billers, others the rest); card sales need [card] with the store \
             in card.stores and a TWD or JPY card currency; wallet scenarios need a [[wallet_operator]] \
             enabled for the store (see --help)"
        );
    }
    Ok(routes)
}

/// A random valid slip of `biller`, due `DUE_IN_DAYS` after `today`.
fn random_slip(biller: &LoadBiller, today: NaiveDate, rng: &mut Rng) -> ParsedSlip {
    let agency_index = usize::try_from(rng.below(biller.agency_codes.len() as u64)).unwrap_or(0);
    let agency_code = biller.agency_codes[agency_index].clone();
    let amount_whole = rng.between(biller.amount_whole_min, biller.amount_whole_max);
    let due_date = today + Days::new(DUE_IN_DAYS);
    if let Some(years) = biller.profile.tw_year_convention() {
        ParsedSlip {
            profile: biller.profile,
            agency_code,
            bill_reference: rng.digits(TW_BILL_REFERENCE_LEN),
            due_date,
            amount_whole,
            period: Some(tw_period(today, years)),
            reissue_count: None,
            stamp_duty: None,
        }
    } else {
        ParsedSlip {
            profile: biller.profile,
            agency_code,
            bill_reference: rng.digits(JP_BILL_REFERENCE_LEN),
            due_date,
            amount_whole,
            period: None,
            reissue_count: Some(0),
            stamp_duty: Some(false),
        }
    }
}

/// The billing period a Taiwanese slip prints: `YYMM` of `today`.
fn tw_period(today: NaiveDate, years: TwYearConvention) -> String {
    let year = match years {
        TwYearConvention::Roc => today.year() - ROC_YEAR_OFFSET,
        TwYearConvention::Gregorian => today.year(),
    };
    format!("{:02}{:02}", year.rem_euclid(100), today.month())
}

/// The store and terminal id of virtual terminal `task`.
fn terminal_of(routes: &[Arc<Route>], task: usize) -> (&Arc<Route>, String) {
    (&routes[task % routes.len()], format!("L{task:04}"))
}

/// Opens one mutual-TLS channel per virtual terminal, to address
/// `task mod addrs.len()`, each presenting a client certificate minted for
/// that terminal from the dev CA.
async fn connect(
    args: &LoadArgs,
    addrs: &[String],
    routes: &[Arc<Route>],
) -> anyhow::Result<Vec<Channel>> {
    let pki = DevPki::open(&args.pki_dir)?;
    let issuer = pki.issuer()?;
    let ca = args.ca.clone().unwrap_or_else(|| pki.ca_cert.clone());
    let tls = client_tls(&ca, &args.domain)?;
    let targets = addrs
        .iter()
        .map(|addr| {
            Channel::from_shared(addr.clone())
                .with_context(|| format!("--addr {addr:?} is not a URL"))
                .map(|endpoint| endpoint.connect_timeout(CONNECT_TIMEOUT))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let now = time::OffsetDateTime::now_utc();
    let not_after = now + RUN_CERT_VALIDITY;
    let mut endpoints = Vec::new();
    for task in 0..args.concurrency as usize {
        let (route, terminal_id) = terminal_of(routes, task);
        let spiffe_id = posgate_api::access::Identity::Terminal {
            store_id: route.store_id.clone(),
            terminal_id,
        }
        .spiffe_id();
        let cert = crate::tls::mint_client(
            &issuer,
            &spiffe_id,
            now - time::Duration::minutes(5),
            not_after,
        )?;
        let slot = task % addrs.len();
        let endpoint = targets[slot]
            .clone()
            .tls_config(tls.clone().identity(cert.identity()))?;
        endpoints.push((slot, endpoint));
    }
    let connected: Vec<_> = futures::stream::iter(endpoints)
        .map(|(slot, endpoint)| async move { (slot, endpoint.connect().await) })
        .buffered(CONNECTS_IN_PARALLEL)
        .collect()
        .await;
    connected
        .into_iter()
        .map(|(slot, channel)| channel.with_context(|| format!("connecting to {}", addrs[slot])))
        .collect()
}

/// Runs every terminal to the end of the budget and merges their
/// statistics; also returns the requests sent to each of the `addresses`
/// (terminal `i` talks to address `i mod addresses`).
async fn drive(
    args: &LoadArgs,
    routes: &[Arc<Route>],
    channels: &[Channel],
    addresses: usize,
    budget: &Arc<Budget>,
    checks: Checks,
) -> anyhow::Result<(Stats, Vec<u64>)> {
    let mut tasks = JoinSet::new();
    for (task, channel) in channels.iter().enumerate() {
        let channel = channel.clone();
        let (route, id) = terminal_of(routes, task);
        let terminal = Terminal {
            client: BillPaymentServiceClient::new(channel.clone()),
            cards: PaymentServiceClient::new(channel.clone()),
            wallets: WalletServiceClient::new(channel),
            route: Arc::clone(route),
            id,
            mix: args.mix,
            retry_share: args.retry_share,
            checks,
            rng: Rng::seeded(),
            remembered: VecDeque::new(),
            cancellable: VecDeque::new(),
            stats: Stats::new(),
        };
        let budget = Arc::clone(budget);
        tasks.spawn(async move { (task % addresses, terminal.run(budget).await) });
    }
    let mut total = Stats::new();
    let mut requests = vec![0; addresses];
    while let Some(joined) = tasks.join_next().await {
        let (slot, stats) = joined.context("a load task panicked")?;
        let stats = stats?;
        requests[slot] += stats.requests();
        total.merge(&stats);
    }
    Ok((total, requests))
}

/// A request this terminal made and its answer, kept for retries. Boxed:
/// the messages are hundreds of bytes and of different sizes.
#[derive(Debug)]
enum Remembered {
    Bill {
        request: Box<PayBillRequest>,
        response: Box<PayBillResponse>,
    },
    Card {
        request: Box<AuthorizeRequest>,
        response: Box<AuthorizeResponse>,
    },
}

/// Why a request counts as failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// The gateway answered with a status other than OK.
    Status(Code),
    /// A retried `PayBill` came back different from the first answer, or
    /// without the replay header.
    ReplayMismatch,
    /// An OK answer of the wrong shape: no payment, or a fresh request
    /// flagged as a replay.
    BadAnswer,
}

impl From<Status> for Failure {
    fn from(status: Status) -> Self {
        Self::Status(status.code())
    }
}

/// One virtual POS terminal.
#[derive(Debug)]
struct Terminal {
    client: BillPaymentServiceClient<Channel>,
    cards: PaymentServiceClient<Channel>,
    wallets: WalletServiceClient<Channel>,
    route: Arc<Route>,
    /// This terminal's id, `L` and the task number.
    id: String,
    mix: Mix,
    retry_share: f64,
    checks: Checks,
    rng: Rng,
    /// Recent answered payments (bill and card), oldest first, at most `REMEMBERED_PAYMENTS`.
    remembered: VecDeque<Remembered>,
    /// Transaction ids not yet cancelled, oldest first, at most `REMEMBERED_PAYMENTS`.
    cancellable: VecDeque<String>,
    stats: Stats,
}

impl Terminal {
    async fn run(mut self, budget: Arc<Budget>) -> anyhow::Result<Stats> {
        while budget.take() {
            self.step().await?;
        }
        Ok(self.stats)
    }

    async fn step(&mut self) -> anyhow::Result<()> {
        match self.choose() {
            Action::Pay => self.pay().await?,
            Action::Inquire => self.inquire().await?,
            Action::Cancel => self.cancel().await,
            Action::Card => self.card_sale().await?,
            Action::TopUp => self.wallet_call(true).await?,
            Action::WalletPay => self.wallet_call(false).await?,
            Action::Replay => self.replay().await,
        }
        Ok(())
    }

    /// The next action; a retry or cancel needs an earlier payment, and
    /// falls back to the mix or to a new payment without one.
    fn choose(&mut self) -> Action {
        if !self.remembered.is_empty() && self.rng.chance(self.retry_share) {
            return Action::Replay;
        }
        match self.mix.pick(self.rng.below(self.mix.total())) {
            Action::Cancel if self.cancellable.is_empty() => Action::Pay,
            action => action,
        }
    }

    async fn pay(&mut self) -> anyhow::Result<()> {
        let request = self.pay_request()?;
        let started = Instant::now();
        let result = self.client.pay_bill(with_timeout(request.clone())).await;
        let latency = started.elapsed();
        let checks = self.checks;
        let outcome = result.map_err(Failure::from).and_then(|response| {
            if checks == Checks::StatusOnly {
                return Ok((String::new(), response.into_inner()));
            }
            let fresh = !is_replay(response.metadata());
            let response = response.into_inner();
            match response.payment.as_ref() {
                Some(payment) if fresh => Ok((payment.transaction_id.clone(), response)),
                _ => Err(Failure::BadAnswer),
            }
        });
        let outcome = outcome.map(|(transaction_id, response)| {
            self.remember(Remembered::Bill {
                request: Box::new(request),
                response: Box::new(response),
            });
            self.remember_cancellable(transaction_id);
        });
        self.stats.record(Rpc::PayBill, latency, outcome);
        Ok(())
    }

    async fn inquire(&mut self) -> anyhow::Result<()> {
        let request = InquireBillRequest {
            context: Some(self.context()),
            slip: Some(self.new_slip()?.0),
        };
        let started = Instant::now();
        let result = self.client.inquire_bill(with_timeout(request)).await;
        let latency = started.elapsed();
        let checks = self.checks;
        let outcome =
            result
                .map_err(Failure::from)
                .and_then(|response| match response.into_inner().bill {
                    Some(_) => Ok(()),
                    None if checks == Checks::StatusOnly => Ok(()),
                    None => Err(Failure::BadAnswer),
                });
        self.stats.record(Rpc::InquireBill, latency, outcome);
        Ok(())
    }

    async fn cancel(&mut self) {
        let Some(transaction_id) = self.cancellable.pop_front() else {
            return;
        };
        let request = CancelBillRequest {
            context: Some(self.context()),
            transaction_id,
            reason: CANCEL_REASON.to_owned(),
        };
        let started = Instant::now();
        let result = self.client.cancel_bill(with_timeout(request)).await;
        let latency = started.elapsed();
        let checks = self.checks;
        let outcome = result.map_err(Failure::from).and_then(|response| {
            match response.into_inner().payment {
                Some(_) => Ok(()),
                None if checks == Checks::StatusOnly => Ok(()),
                None => Err(Failure::BadAnswer),
            }
        });
        self.stats.record(Rpc::CancelBill, latency, outcome);
    }

    /// A card sale on the store's test cards. Falls back to a bill payment
    /// when the store takes no cards (only in a mix that also pays bills).
    async fn card_sale(&mut self) -> anyhow::Result<()> {
        let Some(route) = self.route.card.clone() else {
            return self.pay().await;
        };
        let request = card::sale_request(&route, self.context(), &mut self.rng);
        let started = Instant::now();
        let result = self.cards.authorize(with_timeout(request.clone())).await;
        let latency = started.elapsed();
        if self.checks == Checks::StatusOnly {
            let outcome = result.map_err(Failure::from).map(|response| {
                self.remember(Remembered::Card {
                    request: Box::new(request),
                    response: Box::new(response.into_inner()),
                });
            });
            self.stats.record(Rpc::Authorize, latency, outcome);
            return Ok(());
        }
        let outcome = result.map_err(Failure::from).and_then(|response| {
            if is_replay(response.metadata()) {
                return Err(Failure::BadAnswer);
            }
            let response = response.into_inner();
            card::classify(&response).map(|answer| (answer, response))
        });
        let outcome = outcome.map(|(answer, response)| {
            self.remember(Remembered::Card {
                request: Box::new(request),
                response: Box::new(response),
            });
            answer
        });
        self.stats.record_card(latency, outcome);
        Ok(())
    }

    /// A cash top-up (`top_up`) or a payment on the store's wallet. Falls
    /// back to a bill payment when the store has no wallet operator.
    async fn wallet_call(&mut self, top_up: bool) -> anyhow::Result<()> {
        let Some(route) = self.route.wallet.clone() else {
            return self.pay().await;
        };
        let started = Instant::now();
        let (rpc, result) = if top_up {
            let request = route.top_up_request(self.context());
            let result = self.wallets.top_up(with_timeout(request)).await;
            (
                Rpc::TopUp,
                result.map(|answer| answer.into_inner().transaction),
            )
        } else {
            let request = route.pay_request(self.context(), &mut self.rng);
            let result = self.wallets.pay(with_timeout(request)).await;
            (
                Rpc::WalletPay,
                result.map(|answer| answer.into_inner().transaction),
            )
        };
        let latency = started.elapsed();
        if self.checks == Checks::StatusOnly {
            self.stats
                .record(rpc, latency, result.map(drop).map_err(Failure::from));
            return Ok(());
        }
        let outcome = result
            .map_err(Failure::from)
            .and_then(|transaction| wallet::classify(transaction.as_ref()));
        self.stats.record_wallet(rpc, latency, outcome);
        Ok(())
    }

    /// Resends a remembered `PayBill` or card sale verbatim; the answer must
    /// be the first answer, byte for byte, flagged as a replay.
    async fn replay(&mut self) {
        let index = usize::try_from(self.rng.below(self.remembered.len() as u64)).unwrap_or(0);
        let started = Instant::now();
        let checks = self.checks;
        let (rpc, outcome) = match &self.remembered[index] {
            Remembered::Bill { request, response } => {
                let original = (**response).clone();
                let result = self
                    .client
                    .pay_bill(with_timeout((**request).clone()))
                    .await;
                (
                    Rpc::PayBillReplay,
                    replay_outcome(result, &original, checks),
                )
            }
            Remembered::Card { request, response } => {
                let original = (**response).clone();
                let result = self
                    .cards
                    .authorize(with_timeout((**request).clone()))
                    .await;
                (
                    Rpc::AuthorizeReplay,
                    replay_outcome(result, &original, checks),
                )
            }
        };
        self.stats.record(rpc, started.elapsed(), outcome);
    }

    /// Keeps an answered payment for later retries, forgetting the oldest
    /// beyond `REMEMBERED_PAYMENTS`.
    fn remember(&mut self, payment: Remembered) {
        if self.remembered.len() == REMEMBERED_PAYMENTS {
            self.remembered.pop_front();
        }
        self.remembered.push_back(payment);
    }

    /// Keeps a bill payment's id for a later cancel, forgetting the oldest
    /// beyond `REMEMBERED_PAYMENTS`.
    fn remember_cancellable(&mut self, transaction_id: String) {
        if self.cancellable.len() == REMEMBERED_PAYMENTS {
            self.cancellable.pop_front();
        }
        self.cancellable.push_back(transaction_id);
    }

    fn pay_request(&mut self) -> anyhow::Result<PayBillRequest> {
        let (slip, amount) = self.new_slip()?;
        Ok(PayBillRequest {
            context: Some(self.context()),
            slip: Some(slip),
            amount: Some(amount),
        })
    }

    /// A fresh slip of a random biller of this terminal's store, and the cash
    /// that pays it exactly.
    fn new_slip(&mut self) -> anyhow::Result<(BillSlip, Money)> {
        let route = Arc::clone(&self.route);
        let biller_index = usize::try_from(self.rng.below(route.billers.len() as u64))?;
        let biller = &route.billers[biller_index];
        let today = Utc::now().with_timezone(&route.time_zone).date_naive();
        let slip = random_slip(biller, today, &mut self.rng);
        let barcodes = barcode::encode(&slip)
            .with_context(|| format!("building a slip for biller {}", biller.id))?;
        let amount_minor = i64::try_from(slip.amount_whole * biller.minor_per_major)?;
        let slip = BillSlip {
            barcodes,
            biller_id: biller.id.clone(),
        };
        let amount = Money {
            amount_minor,
            currency: biller.currency_code.to_owned(),
        };
        Ok((slip, amount))
    }

    /// A request context with a new idempotency key.
    fn context(&self) -> RequestContext {
        RequestContext {
            store_id: self.route.store_id.clone(),
            terminal_id: self.id.clone(),
            client_request_id: Uuid::now_v7().to_string(),
            pos_timestamp: Some(SystemTime::now().into()),
            operator_id: OPERATOR_ID.to_owned(),
        }
    }
}

fn with_timeout<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(REQUEST_TIMEOUT);
    request
}

fn is_replay(metadata: &MetadataMap) -> bool {
    metadata
        .get(REPLAY_HEADER)
        .is_some_and(|value| value.as_bytes() == b"true")
}

/// A retry's outcome: OK only when flagged as a replay and equal to the
/// first answer (any OK answer without `Checks::Full`).
fn replay_outcome<T: PartialEq>(
    result: Result<tonic::Response<T>, Status>,
    original: &T,
    checks: Checks,
) -> Result<(), Failure> {
    let response = result.map_err(Failure::from)?;
    if checks == Checks::StatusOnly
        || (is_replay(response.metadata()) && response.get_ref() == original)
    {
        Ok(())
    } else {
        Err(Failure::ReplayMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slips generated per biller in the round-trip test.
    const SLIPS_PER_BILLER: usize = 200;

    const CONFIG: &str = r#"
        [server]
        listen = "127.0.0.1:0"
        tls_cert = "server.pem"
        tls_key = "server.key"
        client_ca = "ca.pem"
        [database]
        url = "sqlite::memory:"
        [[store]]
        id = "S001"
        name = "Taipei"
        time_zone = "Asia/Taipei"
        cutoff = "23:00"
        [[store]]
        id = "S101"
        name = "Tokyo"
        time_zone = "Asia/Tokyo"
        cutoff = "00:00"
        [[biller]]
        id = "TPC"
        name = "Taiwan Power"
        profile = "tw-cvs-3seg"
        agency_codes = ["TPC", "TP2"]
        currency = "TWD"
        min_amount_minor = 150
        max_amount_minor = 2000000
        fee = { kind = "fixed", amount_minor = 1000 }
        [[biller]]
        id = "TKGAS"
        name = "Tokyo Gas"
        profile = "jp-gs1-cvs"
        agency_codes = ["912345"]
        currency = "JPY"
        min_amount_minor = 1
        max_amount_minor = 300000
        fee = { kind = "fixed", amount_minor = 30 }
    "#;

    /// A mix parses into its weights, missing scenarios weigh 0, and the
    /// draw ranges follow the weights.
    #[test]
    fn mix_parses_weights_and_picks_by_range() {
        let mix: Mix = "pay=80, inquire=15,cancel=5".parse().unwrap();
        assert_eq!(
            mix,
            Mix {
                pay: 80,
                inquire: 15,
                cancel: 5,
                card: 0,
                topup: 0,
                wallet: 0,
            }
        );
        assert_eq!(mix.total(), 100);
        assert_eq!(mix.pick(79), Action::Pay);
        assert_eq!(mix.pick(80), Action::Inquire);
        assert_eq!(mix.pick(95), Action::Cancel);
        let inquire_only: Mix = "inquire=1".parse().unwrap();
        assert_eq!(inquire_only.pick(0), Action::Inquire);
        let half_cards: Mix = "pay=50,card=50".parse().unwrap();
        assert_eq!(half_cards.total(), 100);
        assert_eq!(half_cards.pick(49), Action::Pay);
        assert_eq!(half_cards.pick(50), Action::Card);
        assert!(half_cards.has_bills() && half_cards.has_cards());
        let cards_only: Mix = "card=1".parse().unwrap();
        assert!(!cards_only.has_bills());
        let wallets: Mix = "topup=1,wallet=3".parse().unwrap();
        assert_eq!(wallets.pick(0), Action::TopUp);
        assert_eq!(wallets.pick(1), Action::WalletPay);
        assert_eq!(wallets.pick(3), Action::WalletPay);
        assert!(wallets.has_wallets() && !wallets.has_bills() && !wallets.has_cards());
    }

    /// Unknown names, repeats, bad weights and an all-zero mix are refused.
    #[test]
    fn mix_refuses_nonsense() {
        for text in [
            "pay=1,refund=1",
            "pay=1,pay=2",
            "pay",
            "pay=-1",
            "pay=0,cancel=0",
            "",
        ] {
            assert!(text.parse::<Mix>().is_err(), "{text:?} was accepted");
        }
    }

    /// Retry shares outside 0..=1 are refused.
    #[test]
    fn share_must_be_a_fraction() {
        assert_eq!(parse_share("0.05"), Ok(0.05));
        assert!(parse_share("1.5").is_err());
        assert!(parse_share("-0.1").is_err());
        assert!(parse_share("x").is_err());
    }

    /// Stores get only the billers of their currency: Tokyo pays yen, Taipei the rest.
    #[test]
    fn stores_pay_billers_of_their_currency() {
        let config = Config::parse(CONFIG).unwrap();
        let routes = routes(&config, DEFAULT_MIX.parse().unwrap(), DEFAULT_WALLET_CARD).unwrap();
        let billers_of = |store: &str| -> Vec<String> {
            let route = routes.iter().find(|route| route.store_id == store).unwrap();
            route
                .billers
                .iter()
                .map(|biller| biller.id.clone())
                .collect()
        };
        assert_eq!(billers_of("S001"), ["TPC"]);
        assert_eq!(billers_of("S101"), ["TKGAS"]);
    }

    /// Generated slips encode to barcodes that `barcode::parse` reads back
    /// unchanged, due in the future, with amounts inside the biller's limits.
    #[test]
    fn generated_slips_parse_back_within_limits() {
        let config = Config::parse(CONFIG).unwrap();
        let today = NaiveDate::from_ymd_opt(2025, 12, 31).unwrap();
        let mut rng = Rng(7);
        for biller in &config.billers {
            let load_biller = LoadBiller::try_from(biller).unwrap();
            for _ in 0..SLIPS_PER_BILLER {
                let slip = random_slip(&load_biller, today, &mut rng);
                let barcodes = barcode::encode(&slip).unwrap();
                let segments: Vec<&str> = barcodes.iter().map(String::as_str).collect();
                let parsed = barcode::parse(biller.profile, &segments).unwrap();
                assert_eq!(parsed, slip);
                assert!(parsed.due_date > today);
                let amount_minor = parsed.amount_whole * biller.currency.minor_per_major();
                assert!(
                    (biller.min_amount_minor..=biller.max_amount_minor).contains(&amount_minor)
                );
                assert!(biller.agency_codes.contains(&parsed.agency_code));
            }
        }
    }

    /// A biller whose limits hold no whole amount is refused up front.
    #[test]
    fn biller_without_a_whole_amount_is_refused() {
        let mut config = Config::parse(CONFIG).unwrap();
        let biller = &mut config.billers[0];
        biller.min_amount_minor = 101;
        biller.max_amount_minor = 199;
        assert!(LoadBiller::try_from(&*biller).is_err());
    }

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: LoadArgs,
    }

    /// `posgate load` options parsed from `extra` after the required ones.
    pub(super) fn parse_args(extra: &[&str]) -> Result<LoadArgs, clap::Error> {
        use clap::Parser as _;
        let required = ["load", "--pki-dir", "certs", "--config", "posgate.toml"];
        Cli::try_parse_from(required.iter().chain(extra)).map(|cli| cli.args)
    }

    /// `--addr` defaults to the example gateway, and takes several
    /// addresses repeated, as a comma-separated list, or both, in order.
    #[test]
    fn addr_takes_several_gateways() {
        assert_eq!(parse_args(&[]).unwrap().addrs, [DEFAULT_ADDR]);
        let (a, b, c) = (
            "https://127.0.0.1:50051",
            "https://127.0.0.1:50052",
            "https://127.0.0.1:50053",
        );
        let repeated = parse_args(&["--addr", a, "--addr", b]).unwrap();
        assert_eq!(repeated.addrs, [a, b]);
        let listed = parse_args(&["--addr", &format!("{a},{b}"), "--addr", c]).unwrap();
        assert_eq!(listed.addrs, [a, b, c]);
    }

    /// `--ceiling` is off by default, a plain flag, and goes with every
    /// other run option (the ratio runs of the README).
    #[test]
    fn ceiling_is_a_flag_beside_the_run_options() {
        let args = parse_args(&[]).unwrap();
        assert!(!args.ceiling);
        assert_eq!(args.concurrency, DEFAULT_CONCURRENCY);
        let args = parse_args(&[
            "--ceiling",
            "--json",
            "--concurrency",
            "64",
            "--duration-s",
            "20",
            "--mix",
            "pay=100",
            "--retry-share",
            "0",
        ])
        .unwrap();
        assert!(args.ceiling && args.json);
        assert_eq!(args.concurrency, 64);
        assert_eq!(args.duration_s, Some(20));
        assert_eq!(args.mix, "pay=100".parse().unwrap());
        assert!(args.retry_share.abs() < f64::EPSILON);
        let args = parse_args(&["--ceiling", "--count", "200", "--concurrency", "4"]).unwrap();
        assert!(args.ceiling);
        assert_eq!(args.count, Some(200));
        assert!(parse_args(&["--ceiling=yes"]).is_err());
        assert!(parse_args(&["--ceiling", "--count", "1", "--duration-s", "1"]).is_err());
    }

    /// With `Checks::StatusOnly` any OK answer is a good retry; with
    /// `Checks::Full` only the first answer flagged as a replay is. A
    /// non-OK status fails either way.
    #[test]
    fn status_only_checks_accept_any_ok_replay() {
        let original = PayBillResponse::default();
        let different = PayBillResponse {
            payment: Some(posgate_proto::v1::BillPayment::default()),
        };
        let unflagged = || Ok(tonic::Response::new(different.clone()));
        assert_eq!(
            replay_outcome(unflagged(), &original, Checks::StatusOnly),
            Ok(())
        );
        assert_eq!(
            replay_outcome(unflagged(), &original, Checks::Full),
            Err(Failure::ReplayMismatch)
        );
        let mut flagged = tonic::Response::new(original.clone());
        flagged
            .metadata_mut()
            .insert(REPLAY_HEADER, "true".parse().unwrap());
        assert_eq!(replay_outcome(Ok(flagged), &original, Checks::Full), Ok(()));
        for checks in [Checks::Full, Checks::StatusOnly] {
            assert_eq!(
                replay_outcome::<PayBillResponse>(
                    Err(Status::unavailable("down")),
                    &original,
                    checks
                ),
                Err(Failure::Status(Code::Unavailable))
            );
        }
    }

    /// The count budget hands out exactly `limit` requests.
    #[test]
    fn count_budget_is_exact() {
        let budget = Budget::Count {
            limit: 3,
            issued: AtomicU64::new(0),
        };
        let granted = (0..10).filter(|_| budget.take()).count();
        assert_eq!(granted, 3);
    }
}
