//! Card payments end to end: the real gRPC API over TLS, real bank links
//! over loopback TCP to real bank simulators (an acquirer and the co-brand
//! issuer, each with its own ledger), real HSM operations (software HSM with
//! a sealed keystore), on SQLite and PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use des::TdesEde2;
use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockEncrypt, KeyInit};
use pb::payment_service_client::PaymentServiceClient;
use posgate_core::model::clock::Clock as _;
use posgate_proto::v1 as pb;
use posgate_sims::bank::{AccountConfig, BankSim, FaultConfig, SimConfig};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::{Backend, OPEN_LIMITS, TestDb, TestGateway, backends, utc};

use posgate_sims::test_keys::{MAC_KEY, TPK, ZMK, ZPK, write_test_keystore};

/// A Luhn-valid PAN from its first digits and length.
pub fn pan(prefix: &str, len: usize) -> String {
    let mut digits: Vec<u32> = prefix.chars().map(|c| c.to_digit(10).unwrap()).collect();
    while digits.len() < len - 1 {
        digits.push(7);
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 0 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    digits.push((10 - sum % 10) % 10);
    digits
        .iter()
        .map(|d| char::from_digit(*d, 10).unwrap())
        .collect()
}

pub fn visa_ok() -> String {
    pan("411111", 16)
}
pub fn mc_low() -> String {
    pan("555555", 16)
}
pub fn blocked() -> String {
    pan("401288", 16)
}
pub fn unknown_card() -> String {
    pan("400000", 16)
}
pub fn co_brand() -> String {
    pan("356999", 16)
}

fn account(pan: String, limit_minor: i64, blocked: bool) -> AccountConfig {
    AccountConfig {
        pan: pan.into(),
        expiry: "2912".to_owned(),
        pin: Some("1234".to_owned().into()),
        limit_minor,
        balance_minor: 0,
        currency: "901".to_owned(),
        blocked,
        security_code: None,
    }
}

fn sim_config(accounts: Vec<AccountConfig>, co_brand_bins: Vec<String>) -> SimConfig {
    SimConfig {
        listen: "127.0.0.1:0".to_owned(),
        mac_key_hex: MAC_KEY.to_owned().into(),
        zmk_hex: ZMK.to_owned().into(),
        zpk_hex: ZPK.to_owned().into(),
        co_brand_bins,
        points_per_unit: 100,
        accounts,
        faults: FaultConfig::default(),
        admin_listen: None,
    }
}

/// The acquiring bank: a Visa with a large line, a Mastercard with NT$500
/// open, a blocked card.
pub fn acquirer_config() -> SimConfig {
    sim_config(
        vec![
            account(visa_ok(), 100_000_000_000, false),
            account(mc_low(), 50_000, false),
            account(blocked(), 10_000_000, true),
        ],
        Vec::new(),
    )
}

/// The co-brand issuer: one co-brand card, earning points.
pub fn cobrand_config() -> SimConfig {
    sim_config(
        vec![account(co_brand(), 100_000_000_000, false)],
        vec!["356999".to_owned()],
    )
}

/// Writes the gateway's keystore (the published test keys).
pub async fn write_keystore(dir: &std::path::Path) {
    write_test_keystore(&dir.join("keys.ks"), &dir.join("master.key"))
        .await
        .unwrap();
}

/// The card sections of the gateway config for two links.
pub fn card_config(
    dir: &std::path::Path,
    acquirer: &str,
    cobrand: &str,
    timeout_ms: u64,
) -> String {
    format!(
        r#"
[hsm]
backend = "software"
keystore = "{keystore}"
master_key_file = "{master}"

[card]
acquirer_link = "acquirer"
retry_min_ms = 100
retry_max_ms = 1000
stores = {{ S001 = {{ merchant_id = "000000000S001", currency = "TWD" }} }}

[[bank_link]]
id = "acquirer"
addr = "{acquirer}"
request_timeout_ms = {timeout_ms}
acquirer_id = "10000000001"
mac_key = "acquirer.mac"
zmk = "acquirer.zmk"
zpk = "acquirer.zpk"
merchant_name = "posgate test store"

[[bank_link]]
id = "cobrand"
addr = "{cobrand}"
request_timeout_ms = {timeout_ms}
acquirer_id = "10000000001"
mac_key = "cobrand.mac"
zmk = "cobrand.zmk"
zpk = "cobrand.zpk"
merchant_name = "posgate test store"

[[bin_route]]
prefix = "356999"
link = "cobrand"

[[pin_key]]
id = "TPK-S001-T01"
hsm_label = "tpk.test"
terminals = ["S001/T01"]
"#,
        keystore = dir.join("keys.ks").display(),
        master = dir.join("master.key").display(),
    )
}

/// Sends the gateway's and the links' logs to the test's output (shown for
/// failing tests), filtered by `RUST_LOG` (default: warnings).
pub fn init_tracing() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// A gateway with two bank simulators behind it.
pub struct CardWorld {
    pub gw: TestGateway,
    pub acquirer: BankSim,
    pub cobrand: BankSim,
    pub client: PaymentServiceClient<Channel>,
}

impl CardWorld {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with_timeout(backend, 2_000).await
    }

    pub async fn start_with_timeout(backend: Backend, timeout_ms: u64) -> Self {
        init_tracing();
        let acquirer = BankSim::start(acquirer_config()).await.unwrap();
        let cobrand = BankSim::start(cobrand_config()).await.unwrap();
        let db = TestDb::new(backend).await;
        write_keystore(db.dir.path()).await;
        let (a, c) = (acquirer.addr().to_string(), cobrand.addr().to_string());
        let gw = TestGateway::start_with(db, utc("2026-11-23T03:00:00Z"), OPEN_LIMITS, |dir| {
            card_config(dir, &a, &c, timeout_ms)
        })
        .await;
        let client = PaymentServiceClient::new(gw.channel.clone());
        let world = Self {
            gw,
            acquirer,
            cobrand,
            client,
        };
        world.wait_links_up().await;
        world
    }

    pub async fn wait_links_up(&self) {
        wait_links_up(&self.gw.server).await;
    }

    /// Runs store-and-forward passes until the queue is empty (moving the
    /// clock on so retries fall due), or fails after `limit`.
    pub async fn drain_queue(&self, limit: Duration) {
        drain_queue(&self.gw, limit).await;
    }
}

/// Lets `gw`'s store-and-forward workers run until its queue is empty
/// (moving the clock on so retries fall due), or fails after `limit`.
pub async fn drain_queue(gw: &TestGateway, limit: Duration) {
    let started = std::time::Instant::now();
    loop {
        if gw.server.gateway.db.saf_open().await.unwrap() == 0 {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "store-and-forward queue did not drain"
        );
        gw.clock.set(gw.clock.now() + chrono::Duration::seconds(2));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every bank link of `server` has signed on (at most 10 s each).
pub async fn wait_links_up(server: &posgate::server::RunningServer) {
    let payments = server.gateway.payments.as_ref().unwrap();
    for link in payments.links.values() {
        assert!(
            link.wait_up(Duration::from_secs(10)).await,
            "bank link {} came up",
            link.name()
        );
    }
}

pub fn context(request_id: &str) -> Option<pb::RequestContext> {
    Some(pb::RequestContext {
        store_id: "S001".to_owned(),
        terminal_id: "T01".to_owned(),
        client_request_id: request_id.to_owned(),
        pos_timestamp: Some(prost_types::Timestamp {
            seconds: utc("2026-11-23T03:00:00Z").timestamp(),
            nanos: 0,
        }),
        operator_id: "OP7".to_owned(),
    })
}

pub fn keyed(pan: &str) -> Option<pb::CardInput> {
    Some(pb::CardInput {
        entry_mode: pb::CardEntryMode::Keyed.into(),
        account: Some(pb::card_input::Account::PanAndExpiry(pb::PanAndExpiry {
            pan: pan.to_owned(),
            expiry: "2029-12".to_owned(),
        })),
        ..pb::CardInput::default()
    })
}

/// A PIN block as the terminal's PIN pad makes it: ISO 9564 format 0 under the TPK.
pub fn pin_block(pin: &str, pan: &str) -> pb::PinBlock {
    let clear = posgate_hsm::pin_block::iso0_clear_block(pin, pan).unwrap();
    let cipher = TdesEde2::new_from_slice(&hex::decode(TPK).unwrap()).unwrap();
    let mut block = GenericArray::clone_from_slice(&clear[..]);
    cipher.encrypt_block(&mut block);
    pb::PinBlock {
        format: pb::PinBlockFormat::Iso0.into(),
        block_hex: hex::encode_upper(block),
        key_id: "TPK-S001-T01".to_owned(),
        ksn_hex: String::new(),
    }
}

pub fn sale(request_id: &str, pan: &str, amount_minor: i64) -> pb::AuthorizeRequest {
    pb::AuthorizeRequest {
        context: context(request_id),
        card: keyed(pan),
        amount: Some(pb::Money {
            amount_minor,
            currency: "TWD".to_owned(),
        }),
        capture_mode: pb::CaptureMode::Sale.into(),
        pos_reference: format!("R-{request_id}"),
    }
}

pub fn auth_only(request_id: &str, pan: &str, amount_minor: i64) -> pb::AuthorizeRequest {
    pb::AuthorizeRequest {
        capture_mode: pb::CaptureMode::AuthOnly.into(),
        ..sale(request_id, pan, amount_minor)
    }
}

fn status_of(transaction: &pb::CardTransaction) -> pb::CardTransactionStatus {
    pb::CardTransactionStatus::try_from(transaction.status).unwrap()
}

fn error_reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .or_else(|| {
            status
                .get_error_details()
                .precondition_failure()
                .and_then(|failure| failure.violations.first().map(|v| v.r#type.clone()))
        })
        .unwrap_or_default()
}

/// A sale is approved, recorded, replayed byte for byte, and posted at the bank once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sale_approved_replayed_and_posted_once() {
    for backend in backends() {
        let mut world = CardWorld::start(backend).await;
        let first = world
            .client
            .authorize(sale("s-1", &visa_ok(), 12_300))
            .await
            .unwrap();
        let tx = first.get_ref().transaction.clone().unwrap();
        assert_eq!(
            status_of(&tx),
            pb::CardTransactionStatus::Captured,
            "{backend:?}"
        );
        assert_eq!(tx.response_code, "00");
        assert_eq!(tx.approval_code.len(), 6);
        assert_eq!(
            tx.masked_pan,
            "411111******7771".replace("7771", &visa_ok()[12..])
        );
        assert_eq!(tx.captured_amount.as_ref().unwrap().amount_minor, 12_300);
        let again = world
            .client
            .authorize(sale("s-1", &visa_ok(), 12_300))
            .await
            .unwrap();
        assert_eq!(
            again.metadata().get("posgate-idempotent-replay").unwrap(),
            "true"
        );
        assert_eq!(again.get_ref(), first.get_ref());
        let account = world
            .acquirer
            .ledger()
            .account(&visa_ok())
            .cloned()
            .unwrap();
        assert_eq!(account.posted_minor, 12_300, "charged once at the bank");
        let lines = world
            .gw
            .store()
            .settlement_lines(&tx.transaction_id)
            .await
            .unwrap();
        assert_eq!(lines.iter().map(|l| l.amount_minor).sum::<i64>(), 0);
        assert!(
            lines
                .iter()
                .any(|l| l.party == "store:S001" && l.amount_minor == 12_300)
        );
        world.gw.stop().await;
    }
}

/// Bank declines are answers, recorded and replayed, never charges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declines_carry_the_bank_code() {
    for backend in backends() {
        let mut world = CardWorld::start(backend).await;
        let mut wrong_pin = sale("d-55", &visa_ok(), 1_000);
        if let Some(card) = wrong_pin.card.as_mut() {
            card.pin = Some(pin_block("9999", &visa_ok()));
        }
        for (id, request, code) in [
            ("d-51", sale("d-51", &mc_low(), 90_000), "51"),
            ("d-05", sale("d-05", &blocked(), 1_000), "05"),
            ("d-14", sale("d-14", &unknown_card(), 1_000), "14"),
            ("d-55", wrong_pin, "55"),
        ] {
            let answer = world.client.authorize(request).await.unwrap();
            let tx = answer.into_inner().transaction.unwrap();
            assert_eq!(
                status_of(&tx),
                pb::CardTransactionStatus::Declined,
                "{id} {backend:?}"
            );
            assert_eq!(tx.response_code, code, "{id}");
            assert!(!tx.response_text.is_empty());
        }
        let mut right_pin = sale("p-ok", &visa_ok(), 1_000);
        if let Some(card) = right_pin.card.as_mut() {
            card.pin = Some(pin_block("1234", &visa_ok()));
        }
        let tx = world
            .client
            .authorize(right_pin)
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        assert_eq!(
            status_of(&tx),
            pb::CardTransactionStatus::Captured,
            "PIN translated and verified"
        );
        assert_eq!(world.acquirer.ledger().totals("901").posted_minor, 1_000);
        world.gw.stop().await;
    }
}

/// Authorization, partial capture (advice delivered), void of another
/// authorization (reversal delivered), and refunds up to the captured amount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_void_and_refund() {
    for backend in backends() {
        let mut world = CardWorld::start(backend).await;
        let auth = world
            .client
            .authorize(auth_only("a-1", &visa_ok(), 50_000))
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        assert_eq!(status_of(&auth), pb::CardTransactionStatus::Authorized);
        assert_eq!(world.acquirer.ledger().totals("901").held_minor, 50_000);
        let captured = world
            .client
            .capture(pb::CaptureRequest {
                context: context("c-1"),
                transaction_id: auth.transaction_id.clone(),
                amount: Some(pb::Money {
                    amount_minor: 30_000,
                    currency: "TWD".to_owned(),
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        assert_eq!(status_of(&captured), pb::CardTransactionStatus::Captured);
        assert!(captured.advice_pending);
        let other = world
            .client
            .authorize(auth_only("a-2", &visa_ok(), 7_000))
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        let voided = world
            .client
            .void(pb::VoidRequest {
                context: context("v-1"),
                transaction_id: other.transaction_id.clone(),
                reason: "customer changed mind".to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        assert_eq!(status_of(&voided), pb::CardTransactionStatus::Voided);
        world.drain_queue(Duration::from_secs(20)).await;
        let totals = world.acquirer.ledger().totals("901");
        assert_eq!(
            (totals.held_minor, totals.posted_minor),
            (0, 30_000),
            "capture posted, rest and void released"
        );

        let refund = |id: &str, amount: i64| pb::CardRefundRequest {
            context: context(id),
            original_transaction_id: auth.transaction_id.clone(),
            amount: Some(pb::Money {
                amount_minor: amount,
                currency: "TWD".to_owned(),
            }),
            reason: "returned goods".to_owned(),
            card: None,
        };
        let first = world
            .client
            .refund(refund("r-1", 10_000))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            status_of(first.refund.as_ref().unwrap()),
            pb::CardTransactionStatus::Captured
        );
        assert_eq!(
            first
                .original
                .as_ref()
                .unwrap()
                .refunded_amount
                .as_ref()
                .unwrap()
                .amount_minor,
            10_000
        );
        let too_much = world
            .client
            .refund(refund("r-2", 20_001))
            .await
            .unwrap_err();
        assert_eq!(too_much.code(), Code::FailedPrecondition);
        assert_eq!(error_reason(&too_much), "REFUND_EXCEEDS_REMAINING");
        world.client.refund(refund("r-3", 20_000)).await.unwrap();
        assert_eq!(
            world.acquirer.ledger().totals("901").posted_minor,
            0,
            "fully refunded at the bank"
        );
        let fetched = world
            .client
            .get_transaction(pb::GetTransactionRequest {
                context: context("g-1"),
                lookup: Some(pb::get_transaction_request::Lookup::TransactionId(
                    auth.transaction_id.clone(),
                )),
            })
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        assert_eq!(fetched.refund_transaction_ids.len(), 2);
        assert!(!fetched.advice_pending);
        world.gw.stop().await;
    }
}

/// Co-brand cards go to the co-brand issuer, which returns loyalty points.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn co_brand_cards_earn_points() {
    let mut world = CardWorld::start(Backend::Sqlite).await;
    let tx = world
        .client
        .authorize(sale("cb-1", &co_brand(), 25_000))
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    assert_eq!(
        pb::CardRoute::try_from(tx.route).unwrap(),
        pb::CardRoute::CoBrandIssuer
    );
    let points = tx.loyalty.unwrap();
    assert_eq!(points.points_earned, 250, "1 point per NT$1");
    assert_eq!(world.cobrand.ledger().totals("901").posted_minor, 25_000);
    assert_eq!(world.acquirer.ledger().totals("901").posted_minor, 0);
    world.gw.stop().await;
}

/// Every fault the bank can throw ends with the customer charged exactly
/// as the gateway says: unknown outcomes are reversed, retries never charge twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_end_reversed_or_answered() {
    for backend in backends() {
        let mut world = CardWorld::start_with_timeout(backend, 1_000).await;
        let faults = [
            (
                "no_response",
                FaultConfig {
                    no_response: 1.0,
                    ..FaultConfig::default()
                },
                true,
            ),
            (
                "drop_connection",
                FaultConfig {
                    drop_connection: 1.0,
                    ..FaultConfig::default()
                },
                true,
            ),
            (
                "late_response",
                FaultConfig {
                    late_response: 1.0,
                    late_by: Duration::from_millis(2_500),
                    ..FaultConfig::default()
                },
                true,
            ),
            (
                "bad_mac",
                FaultConfig {
                    bad_mac: 1.0,
                    ..FaultConfig::default()
                },
                true,
            ),
            (
                "latency_over_timeout",
                FaultConfig {
                    latency: Duration::from_millis(1_800),
                    ..FaultConfig::default()
                },
                true,
            ),
            (
                "duplicate_response",
                FaultConfig {
                    duplicate_response: 1.0,
                    ..FaultConfig::default()
                },
                false,
            ),
        ];
        for (name, fault, unknown) in faults {
            world.acquirer.set_faults(fault);
            let id = format!("f-{name}");
            let result = world.client.authorize(sale(&id, &visa_ok(), 1_111)).await;
            world.acquirer.set_faults(FaultConfig::default());
            if unknown {
                let status = result.unwrap_err();
                assert_eq!(
                    status.code(),
                    Code::Unavailable,
                    "{name} {backend:?}: {status:?}"
                );
                assert_eq!(error_reason(&status), "OUTCOME_UNKNOWN", "{name}");
                // A retry while the reversal is pending sends nothing new.
                let again = world.client.authorize(sale(&id, &visa_ok(), 1_111)).await;
                if let Err(status) = &again {
                    assert_eq!(status.code(), Code::Unavailable, "{name}");
                }
                world.wait_links_up().await;
                world.drain_queue(Duration::from_secs(30)).await;
                let final_answer = world
                    .client
                    .authorize(sale(&id, &visa_ok(), 1_111))
                    .await
                    .unwrap();
                let tx = final_answer.into_inner().transaction.unwrap();
                assert_eq!(
                    status_of(&tx),
                    pb::CardTransactionStatus::Reversed,
                    "{name}"
                );
            } else {
                let tx = result.unwrap().into_inner().transaction.unwrap();
                assert_eq!(
                    status_of(&tx),
                    pb::CardTransactionStatus::Captured,
                    "{name}"
                );
            }
        }
        world.wait_links_up().await;
        let posted = world.acquirer.ledger().totals("901").posted_minor;
        assert_eq!(
            posted, 1_111,
            "{backend:?}: only the duplicate-answer sale stands at the bank"
        );
        world.gw.stop().await;
    }
}

/// Waits until gRPC health reports `PaymentService` in `wanted` state.
async fn wait_card_health(world: &CardWorld, wanted: ServingStatus) {
    let mut health = HealthClient::new(world.gw.channel.clone());
    let started = std::time::Instant::now();
    loop {
        let status = health
            .check(HealthCheckRequest {
                service: "posgate.v1.PaymentService".to_owned(),
            })
            .await
            .map(|answer| answer.into_inner().status);
        if status.as_ref().ok() == Some(&i32::from(wanted)) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "health became {wanted:?}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A bank that cannot be reached: health says so, and Authorize is
/// UNAVAILABLE before anything is sent or stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_down_stores_nothing() {
    let mut world = CardWorld::start(Backend::Sqlite).await;
    let CardWorld { acquirer, .. } = &world;
    let _ = acquirer;
    wait_card_health(&world, ServingStatus::Serving).await;
    let before = world.gw.store().row_counts().await.unwrap();
    let world_acquirer = std::mem::replace(
        &mut world.acquirer,
        BankSim::start(sim_config(Vec::new(), Vec::new()))
            .await
            .unwrap(),
    );
    world_acquirer.shutdown().await;
    let payments = Arc::clone(world.gw.server.gateway.payments.as_ref().unwrap());
    let link = payments.link("acquirer").unwrap();
    let started = std::time::Instant::now();
    while link.is_up() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "link notices the bank is gone"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = world
        .client
        .authorize(sale("down-1", &visa_ok(), 500))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(error_reason(&status), "PARTNER_UNAVAILABLE");
    assert_eq!(
        world.gw.store().row_counts().await.unwrap(),
        before,
        "nothing stored"
    );
    world.gw.stop().await;
}

/// Bad card input is refused naming the field, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_card_input_names_the_field() {
    let mut world = CardWorld::start(Backend::Sqlite).await;
    let before = world.gw.store().row_counts().await.unwrap();
    let with_card = |card: pb::CardInput| pb::AuthorizeRequest {
        card: Some(card),
        ..sale("bad", &visa_ok(), 100)
    };
    let base = keyed(&visa_ok()).unwrap();
    let account = |pan: &str, expiry: &str| {
        Some(pb::card_input::Account::PanAndExpiry(pb::PanAndExpiry {
            pan: pan.to_owned(),
            expiry: expiry.to_owned(),
        }))
    };
    let cases: Vec<(&str, pb::AuthorizeRequest)> = vec![
        (
            "card.pan_and_expiry.pan",
            with_card(pb::CardInput {
                account: account("4111111111111112", "2029-12"),
                ..base.clone()
            }),
        ),
        (
            "card.pan_and_expiry.pan",
            with_card(pb::CardInput {
                account: account("4111 1111 1111 1111", "2029-12"),
                ..base.clone()
            }),
        ),
        (
            "card.pan_and_expiry.expiry",
            with_card(pb::CardInput {
                account: account(&visa_ok(), "12/29"),
                ..base.clone()
            }),
        ),
        (
            "card.entry_mode",
            with_card(pb::CardInput {
                entry_mode: 0,
                ..base.clone()
            }),
        ),
        (
            "card.entry_mode",
            with_card(pb::CardInput {
                entry_mode: pb::CardEntryMode::Magstripe.into(),
                ..base.clone()
            }),
        ),
        (
            "card.track2",
            with_card(pb::CardInput {
                entry_mode: pb::CardEntryMode::Magstripe.into(),
                account: Some(pb::card_input::Account::Track2("4111=12".to_owned())),
                ..base.clone()
            }),
        ),
        (
            "card.security_code",
            with_card(pb::CardInput {
                security_code: "12".to_owned(),
                ..base.clone()
            }),
        ),
        (
            "card.icc_data_hex",
            with_card(pb::CardInput {
                icc_data_hex: "9F26".to_owned(),
                ..base.clone()
            }),
        ),
        (
            "card.pin.block_hex",
            with_card(pb::CardInput {
                pin: Some(pb::PinBlock {
                    block_hex: "XYZ".to_owned(),
                    ..pin_block("1234", &visa_ok())
                }),
                ..base.clone()
            }),
        ),
        (
            "card.pin.key_id",
            with_card(pb::CardInput {
                pin: Some(pb::PinBlock {
                    key_id: "TPK-OTHER".to_owned(),
                    ..pin_block("1234", &visa_ok())
                }),
                ..base.clone()
            }),
        ),
        (
            "capture_mode",
            pb::AuthorizeRequest {
                capture_mode: 0,
                ..sale("bad", &visa_ok(), 100)
            },
        ),
        (
            "pos_reference",
            pb::AuthorizeRequest {
                pos_reference: "\u{7}".to_owned(),
                ..sale("bad", &visa_ok(), 100)
            },
        ),
        (
            "amount.currency",
            pb::AuthorizeRequest {
                amount: Some(pb::Money {
                    amount_minor: 100,
                    currency: "JPY".to_owned(),
                }),
                ..sale("bad", &visa_ok(), 100)
            },
        ),
        ("amount.amount_minor", sale("bad", &visa_ok(), 0)),
        ("amount.amount_minor", sale("bad", &visa_ok(), 20_000_001)),
        (
            "card",
            pb::AuthorizeRequest {
                card: None,
                ..sale("bad", &visa_ok(), 100)
            },
        ),
    ];
    for (field, request) in cases {
        let status = world.client.authorize(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        let fields = crate::support::bad_request_fields(&status);
        assert!(fields.iter().any(|f| f == field), "{field}: got {fields:?}");
        assert!(!status.message().contains(&visa_ok()), "no PAN in errors");
    }
    let expired = world
        .client
        .authorize(with_card(pb::CardInput {
            account: account(&visa_ok(), "2025-01"),
            ..base.clone()
        }))
        .await
        .unwrap_err();
    assert_eq!(error_reason(&expired), "CARD_EXPIRED");
    assert_eq!(
        world.gw.store().row_counts().await.unwrap(),
        before,
        "nothing stored"
    );
    world.gw.stop().await;
}

/// An authorization not captured within its hold period expires: the hold
/// is released at the bank and a late capture is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncaptured_authorization_expires_and_releases_the_hold() {
    let mut world = CardWorld::start(Backend::Sqlite).await;
    let auth = world
        .client
        .authorize(auth_only("exp-1", &visa_ok(), 8_000))
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    assert_eq!(world.acquirer.ledger().totals("901").held_minor, 8_000);
    world
        .gw
        .clock
        .set(world.gw.clock.now() + chrono::Duration::days(8));
    let started = std::time::Instant::now();
    loop {
        let tx = world
            .client
            .get_transaction(pb::GetTransactionRequest {
                context: context("exp-get"),
                lookup: Some(pb::get_transaction_request::Lookup::TransactionId(
                    auth.transaction_id.clone(),
                )),
            })
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        if status_of(&tx) == pb::CardTransactionStatus::Expired && !tx.advice_pending {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "expired and released"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(world.acquirer.ledger().totals("901").held_minor, 0);
    let late = world
        .client
        .capture(pb::CaptureRequest {
            context: context("exp-cap"),
            transaction_id: auth.transaction_id.clone(),
            amount: Some(pb::Money {
                amount_minor: 8_000,
                currency: "TWD".to_owned(),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(error_reason(&late), "AUTHORIZATION_EXPIRED");
    world.gw.stop().await;
}
