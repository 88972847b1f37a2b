//! `posgate demo`: a scripted store day against a real gateway. It starts
//! the gateway in this process on a temporary SQLite database with a freshly
//! generated development CA, then drives POS traffic through the real gRPC
//! API over TLS (bill payments in Taipei and Tokyo, a retried duplicate, a
//! rejected bad barcode, a cancel; card payments through a bank simulator on
//! loopback: a sale, a co-brand sale with points, a decline, an unknown
//! outcome reversed by the store-and-forward queue, a refund) and prints what
//! happened and who owes whom.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use chrono::{DateTime, Days, NaiveDate, Utc};
use pb::bill_payment_service_client::BillPaymentServiceClient;
use pb::payment_service_client::PaymentServiceClient;
use posgate_proto::v1 as pb;
use posgate_sims::bank::{BankSim, FaultConfig, SimConfig};
use tonic::transport::Channel;

use posgate::server;
use posgate::tls::{DevPki, client_tls_as};
use posgate_api::access::Identity;
use posgate_api::grpc::idempotent::REPLAY_HEADER;
use posgate_core::bill::barcode::{self, BarcodeProfile, ParsedSlip};
use posgate_core::config::Config;
use posgate_core::model::clock::SystemClock;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep the demo's directory (database, certificates, config) here instead of a temporary one.
    #[arg(long)]
    pub keep_dir: Option<std::path::PathBuf>,
}

/// The demo's configuration: the example stores and billers, open limits.
const DEMO_CONFIG: &str = include_str!("../../config/posgate.example.toml");
/// The example bank simulator (test cards, test keys).
const SIM_CONFIG: &str = include_str!("../../config/bank-sim.example.toml");

/// The demo's tills: each connects with its own client certificate.
const TILLS: [(&str, &str); 3] = [("S001", "T01"), ("S001", "T02"), ("S101", "T01")];

struct Demo {
    /// Bill payments as S001/T01.
    client: BillPaymentServiceClient<Channel>,
    /// Channels per till (store, terminal), each over mutual TLS as that terminal.
    tills: BTreeMap<(&'static str, &'static str), Channel>,
    cards: PaymentServiceClient<Channel>,
    now: DateTime<Utc>,
    step: usize,
}

impl Demo {
    /// Bill payments as another till.
    fn bills_as(&self, store: &str, terminal: &str) -> BillPaymentServiceClient<Channel> {
        BillPaymentServiceClient::new(self.tills[&(store, terminal)].clone())
    }

    fn context(&self, store: &str, terminal: &str, key: &str) -> pb::RequestContext {
        pb::RequestContext {
            store_id: store.to_owned(),
            terminal_id: terminal.to_owned(),
            client_request_id: key.to_owned(),
            pos_timestamp: Some(prost_types::Timestamp {
                seconds: self.now.timestamp(),
                nanos: 0,
            }),
            operator_id: "CASHIER7".to_owned(),
        }
    }

    fn say(&mut self, what: &str, outcome: &str) {
        self.step += 1;
        println!("{:>2}. {what:<58} {outcome}", self.step);
    }
}

fn slip(
    profile: BarcodeProfile,
    code: &str,
    reference: &str,
    due: NaiveDate,
    amount_whole: u64,
) -> anyhow::Result<Vec<String>> {
    let japan = profile == BarcodeProfile::JapanGs1Cvs;
    let slip = ParsedSlip {
        profile,
        agency_code: code.to_owned(),
        bill_reference: if japan {
            format!("{reference:0>21}")
        } else {
            format!("{reference:0>16}")
        },
        due_date: due,
        amount_whole,
        period: (!japan).then(|| "1511".to_owned()),
        reissue_count: japan.then_some(0),
        stamp_duty: japan.then_some(false),
    };
    barcode::encode(&slip).context("building a demo slip")
}

fn describe(status: &tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    let fields = status
        .get_details_bad_request()
        .map(|bad| {
            bad.field_violations
                .into_iter()
                .map(|v| v.field)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    format!("{:?} [{fields}] {}", status.code(), status.message())
}

/// Connects each demo till over mutual TLS with its own client certificate.
async fn connect_tills(
    pki: &DevPki,
    dir: &std::path::Path,
    addr: std::net::SocketAddr,
) -> anyhow::Result<BTreeMap<(&'static str, &'static str), Channel>> {
    let mut tills = BTreeMap::new();
    for (store, terminal) in TILLS {
        let identity = Identity::Terminal {
            store_id: store.to_owned(),
            terminal_id: terminal.to_owned(),
        };
        let cert = pki.issue_client(
            dir,
            &format!("terminal-{store}-{terminal}"),
            &identity.spiffe_id(),
        )?;
        let channel = Channel::from_shared(format!("https://{addr}"))?
            .tls_config(client_tls_as(
                &pki.ca_cert,
                posgate::tls::DEV_SERVER_NAME,
                &cert,
            )?)?
            .connect()
            .await
            .with_context(|| format!("connecting as {identity}"))?;
        tills.insert((store, terminal), channel);
    }
    Ok(tills)
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let dir = args
        .keep_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    let pki = DevPki::generate(&dir)?;
    let sim_config = SimConfig::from_toml_str(&SIM_CONFIG.replace("127.0.0.1:8583", "127.0.0.1:0"))
        .context("simulator config")?;
    let bank = BankSim::start(sim_config)
        .await
        .context("starting the bank simulator")?;
    posgate_sims::test_keys::write_test_keystore(
        &dir.join("demo.keystore"),
        &dir.join("master.key"),
    )
    .await
    .context("writing the demo keystore")?;
    let text = DEMO_CONFIG
        .replace("127.0.0.1:8583", &bank.addr().to_string())
        .replace(
            "keys/posgate.keystore",
            &dir.join("demo.keystore").display().to_string(),
        )
        .replace(
            "keys/master.key",
            &dir.join("master.key").display().to_string(),
        )
        .replace("request_timeout_ms = 30000", "request_timeout_ms = 1000")
        .replace("retry_min_ms = 1000", "retry_min_ms = 100")
        .replace("127.0.0.1:50051", "127.0.0.1:0")
        .replace("certs/server.pem", &pki.server_cert.display().to_string())
        .replace("certs/server.key", &pki.server_key.display().to_string())
        .replace("certs/ca.pem", &pki.ca_cert.display().to_string())
        .replace("certs/crl.pem", &pki.crl.display().to_string())
        .replace(
            "sqlite://posgate.db",
            &format!("sqlite://{}", dir.join("demo.db").display()),
        );
    let config = Config::parse(&text).context("demo config")?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = server::start(&config, Arc::new(SystemClock), async {
        let _ = stopped.await;
    })
    .await?;
    println!(
        "posgate demo: gateway on https://{} (mutual TLS: development CA, a client certificate per till), SQLite at {}",
        running.addr,
        dir.join("demo.db").display()
    );
    let tills = connect_tills(&pki, &dir, running.addr).await?;
    let channel = tills[&("S001", "T01")].clone();
    if let Some(payments) = &running.gateway.payments {
        for link in payments.links.values() {
            anyhow::ensure!(
                link.wait_up(std::time::Duration::from_secs(10)).await,
                "bank link {} did not come up",
                link.name()
            );
        }
    }
    let mut demo = Demo {
        cards: PaymentServiceClient::new(channel.clone()),
        client: BillPaymentServiceClient::new(channel),
        tills,
        now: Utc::now(),
        step: 0,
    };
    let due = demo
        .now
        .date_naive()
        .checked_add_days(Days::new(20))
        .context("due date")?;
    let mut outcome = script(&mut demo, due).await;
    if outcome.is_ok() {
        outcome = card_payments(&mut demo, &bank).await;
    }
    let summary = settlement_summary(&running.gateway).await;
    let ledger = bank.ledger();
    let _ = stop.send(());
    running.task.await??;
    outcome?;
    println!("\nsettlement lines by party (minor units; every transaction sums to zero):");
    for ((party, currency), amount) in summary? {
        println!("  {party:<16} {currency} {amount:>12}");
    }
    println!("\nthe bank simulator's own ledger (minor units, ISO 4217 numeric currency):");
    for (currency, totals) in &ledger.totals {
        println!(
            "  {currency}: posted {} held {}",
            totals.posted_minor, totals.held_minor
        );
    }
    bank.shutdown().await;
    println!("\ndemo finished: every answer came from the real gRPC API over mutual TLS.");
    Ok(())
}

async fn script(demo: &mut Demo, due: NaiveDate) -> anyhow::Result<()> {
    let paid_transaction_id = taiwan_payments(demo, due).await?;
    tokyo_payment_and_cancel(demo, due, paid_transaction_id).await
}

/// Taipei: inquire, pay, a retried duplicate, a smudged slip. Returns the payment's id.
async fn taiwan_payments(demo: &mut Demo, due: NaiveDate) -> anyhow::Result<String> {
    let power = slip(
        BarcodeProfile::TaiwanCvsThreeSegment,
        "TPC",
        "KS2025080001",
        due,
        1_234,
    )?;
    let inquiry = pb::InquireBillRequest {
        context: Some(demo.context("S001", "T01", "demo-inq-1")),
        slip: Some(pb::BillSlip {
            barcodes: power.clone(),
            biller_id: String::new(),
        }),
    };
    let bill = demo
        .client
        .inquire_bill(inquiry)
        .await?
        .into_inner()
        .bill
        .context("bill")?;
    let amount = bill.amount.clone().context("amount")?;
    demo.say(
        &format!("S001 scans a {} slip {}", bill.biller_name, power.join(" ")),
        &format!(
            "due {}, collect {} {}",
            bill.due_date, amount.amount_minor, amount.currency
        ),
    );
    let pay = pb::PayBillRequest {
        context: Some(demo.context("S001", "T01", "demo-pay-1")),
        slip: Some(pb::BillSlip {
            barcodes: power.clone(),
            biller_id: String::new(),
        }),
        amount: Some(amount.clone()),
    };
    let paid = demo
        .client
        .pay_bill(pay.clone())
        .await?
        .into_inner()
        .payment
        .context("payment")?;
    let fee = paid.fee.clone().unwrap_or_default();
    demo.say(
        "S001 takes the cash: PayBill",
        &format!(
            "PAID {} (fee {} {})",
            paid.transaction_id, fee.amount_minor, fee.currency
        ),
    );
    let retried = demo.client.pay_bill(pay).await?;
    let replayed = retried.metadata().get(REPLAY_HEADER).is_some();
    let same =
        retried.into_inner().payment.map(|p| p.transaction_id) == Some(paid.transaction_id.clone());
    demo.say(
        "network blip: the POS retries the same PayBill",
        &format!("replayed={replayed}, same transaction={same}"),
    );
    anyhow::ensure!(replayed && same, "the retry must replay the first answer");

    let mut misread = power.clone();
    let smudged = if &misread[2][4..5] == "7" { "8" } else { "7" };
    misread[2].replace_range(4..5, smudged);
    let bad = pb::PayBillRequest {
        context: Some(demo.context("S001", "T02", "demo-pay-2")),
        slip: Some(pb::BillSlip {
            barcodes: misread,
            biller_id: String::new(),
        }),
        amount: Some(amount),
    };
    let refused = demo
        .bills_as("S001", "T02")
        .pay_bill(bad)
        .await
        .expect_err("a misread slip is refused");
    demo.say(
        "S001/T02 scans a smudged slip (check characters wrong)",
        &describe(&refused),
    );

    Ok(paid.transaction_id)
}

/// Tokyo: a GS1-128 slip; then Taipei cancels its payment and looks it up.
async fn tokyo_payment_and_cancel(
    demo: &mut Demo,
    due: NaiveDate,
    paid_transaction_id: String,
) -> anyhow::Result<()> {
    let gas = slip(BarcodeProfile::JapanGs1Cvs, "912345", "778899", due, 12_345)?;
    let tokyo = pb::PayBillRequest {
        context: Some(demo.context("S101", "T01", "demo-pay-3")),
        slip: Some(pb::BillSlip {
            barcodes: gas,
            biller_id: String::new(),
        }),
        amount: Some(pb::Money {
            amount_minor: 12_345,
            currency: "JPY".into(),
        }),
    };
    let tokyo = demo
        .bills_as("S101", "T01")
        .pay_bill(tokyo)
        .await?
        .into_inner()
        .payment
        .context("payment")?;
    demo.say(
        "S101 (Tokyo) collects a Tokyo Gas GS1-128 slip",
        &format!(
            "PAID {} JPY, fee {} JPY",
            12_345,
            tokyo.fee.map(|f| f.amount_minor).unwrap_or_default()
        ),
    );

    let cancel = pb::CancelBillRequest {
        context: Some(demo.context("S001", "T01", "demo-cancel-1")),
        transaction_id: paid_transaction_id,
        reason: "customer brought the wrong slip".into(),
    };
    let cancelled = demo
        .client
        .cancel_bill(cancel)
        .await?
        .into_inner()
        .payment
        .context("payment")?;
    demo.say(
        "S001 cancels the Taiwan Power payment (same day)",
        &format!("{:?}", cancelled.status()),
    );
    let get = pb::GetBillPaymentRequest {
        context: Some(demo.context("S001", "T01", "demo-get-1")),
        lookup: Some(pb::get_bill_payment_request::Lookup::PaidClientRequestId(
            "demo-pay-1".into(),
        )),
    };
    let found = demo
        .client
        .get_bill_payment(get)
        .await?
        .into_inner()
        .payment
        .context("payment")?;
    demo.say(
        "S001 looks the payment up by the key it paid with",
        &format!(
            "{:?} on business day {}",
            found.status(),
            found.business_date
        ),
    );
    Ok(())
}

/// Sums the settlement lines of every transaction, per party and currency.
async fn settlement_summary(
    gateway: &posgate_api::grpc::Gateway,
) -> anyhow::Result<BTreeMap<(String, String), i64>> {
    let mut totals = BTreeMap::new();
    for store in gateway.stores.keys() {
        for key in [
            "demo-pay-1",
            "demo-pay-3",
            "demo-card-1",
            "demo-card-2",
            "demo-card-5",
        ] {
            let key = posgate_core::model::IdempotencyKey {
                store_id: store.clone(),
                terminal_id: "T01".into(),
                client_request_id: key.into(),
            };
            let Some(answer) = gateway.db.answer(&key).await? else {
                continue;
            };
            for line in gateway.db.settlement_lines(&answer.transaction_id).await? {
                *totals.entry((line.party, line.currency)).or_insert(0) += line.amount_minor;
            }
        }
    }
    Ok(totals)
}

fn card(pan: &str) -> pb::CardInput {
    pb::CardInput {
        entry_mode: pb::CardEntryMode::Chip.into(),
        account: Some(pb::card_input::Account::PanAndExpiry(pb::PanAndExpiry {
            pan: pan.to_owned(),
            expiry: "2030-12".to_owned(),
        })),
        ..pb::CardInput::default()
    }
}

fn card_outcome(transaction: Option<&pb::CardTransaction>) -> String {
    transaction.map_or_else(String::new, |tx| {
        let points = tx
            .loyalty
            .as_ref()
            .map(|points| format!(", {} points", points.points_earned))
            .unwrap_or_default();
        format!(
            "{:?} code {} {}{points}",
            tx.status(),
            tx.response_code,
            tx.masked_pan
        )
    })
}

/// Card payments through the bank simulator: a sale, a co-brand sale, a
/// decline, an unknown outcome reversed at the bank, and a refund.
async fn card_payments(demo: &mut Demo, bank: &BankSim) -> anyhow::Result<()> {
    let money = |amount_minor| {
        Some(pb::Money {
            amount_minor,
            currency: "TWD".into(),
        })
    };
    let sale = |demo: &Demo, key: &str, pan: &str, amount| pb::AuthorizeRequest {
        context: Some(demo.context("S001", "T01", key)),
        card: Some(card(pan)),
        amount: money(amount),
        capture_mode: pb::CaptureMode::Sale.into(),
        pos_reference: format!("R-{key}"),
    };
    let first = sale(demo, "demo-card-1", "4111111111111111", 45_000);
    let visa = demo.cards.authorize(first).await?.into_inner().transaction;
    demo.say(
        "S001 takes a Visa chip card for NT$450",
        &card_outcome(visa.as_ref()),
    );
    let co_brand = sale(demo, "demo-card-2", "5200828282828210", 120_000);
    let co_brand = demo
        .cards
        .authorize(co_brand)
        .await?
        .into_inner()
        .transaction;
    demo.say(
        "a co-brand card pays NT$1,200 (on-us route)",
        &card_outcome(co_brand.as_ref()),
    );
    let big = sale(demo, "demo-card-3", "5555555555554444", 900_000);
    let declined = demo.cards.authorize(big).await?.into_inner().transaction;
    demo.say(
        "NT$9,000 on a card with NT$8,000 open",
        &card_outcome(declined.as_ref()),
    );

    bank.set_faults(FaultConfig {
        no_response: 1.0,
        ..FaultConfig::default()
    });
    let lost = sale(demo, "demo-card-4", "4111111111111111", 30_000);
    let unknown = demo
        .cards
        .authorize(lost.clone())
        .await
        .expect_err("the bank never answers");
    bank.set_faults(FaultConfig::default());
    demo.say(
        "the bank charges but never answers (1 s timeout)",
        &describe(&unknown),
    );
    let reversed = loop {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        if let Ok(answer) = demo.cards.authorize(lost.clone()).await {
            break answer.into_inner().transaction;
        }
    };
    demo.say(
        "the POS retries: the queue reversed it at the bank",
        &card_outcome(reversed.as_ref()),
    );

    let visa = visa.context("the first sale")?;
    let refund = pb::CardRefundRequest {
        context: Some(demo.context("S001", "T01", "demo-card-5")),
        original_transaction_id: visa.transaction_id,
        amount: money(15_000),
        reason: "one item returned".into(),
        card: None,
    };
    let refunded = demo.cards.refund(refund).await?.into_inner();
    demo.say(
        "S001 refunds NT$150 of the Visa sale (no card needed)",
        &card_outcome(refunded.refund.as_ref()),
    );
    Ok(())
}
