//! Co-brand card links, card-funded top-ups and the auto-reload of Pay,
//! through the real gRPC API against a real co-brand bank simulator (ISO
//! 8583) and a real wallet simulator (signed HTTPS): faults at every step
//! boundary, and kill -9 of a real `posgate serve` between steps. After
//! each case the bank simulator's ledger, the wallet simulator's ledger and
//! the gateway's settlement lines agree to the cent.

use std::path::Path;

use posgate_core::model::clock::Clock as _;
use std::time::Duration;

use pb::wallet_service_client::WalletServiceClient;
use posgate_partners::http::TlsFiles;
use posgate_proto::v1 as pb;
use posgate_sims::bank::{BankSim, FaultConfig as BankFaults};
use posgate_sims::test_keys::PARTNER_API_SIGN_SEED;
use posgate_sims::wallet::{FaultConfig, WalletSim, WalletSimConfig};
use tonic::transport::Channel;

use super::cards::{
    acquirer_config, card_config, co_brand, cobrand_config, init_tracing, keyed, visa_ok,
    write_keystore,
};
use super::support::{Backend, OPEN_LIMITS, TestDb, TestGateway, backends, utc};
use super::wallets::{
    card, context, error_reason, pki, pki_with, public_of, sim_config, status_of, twd, wallet,
};

/// Wallets of the simulator, one per case so cases do not interfere.
const W_OK: &str = "2000000000000001";
const W_CARD_DECLINED: &str = "2000000000000002";
const W_CARD_UNKNOWN: &str = "2000000000000003";
const W_TOP_UP_DECLINED: &str = "2000000000000004";
const W_TOP_UP_UNKNOWN: &str = "2000000000000005";
const W_PAY_DECLINED: &str = "2000000000000006";
const W_PAY_UNKNOWN: &str = "2000000000000007";
const W_CARD_TOP_UP: &str = "2000000000000008";
const W_CARD_TOP_UP_DECLINED: &str = "2000000000000009";
const W_KILL: &str = "2000000000000010";
const W_RACE: &str = "2000000000000011";
const W_READ_BACK: &str = "2000000000000012";
const W_REPLAY: &str = "2000000000000013";

/// The wallet simulator's wallets: all empty; one holds at most NT$600 (so
/// a NT$1,000 reload is declined), one pays at most NT$500 at a time.
fn reload_sim_config(tls: TlsFiles) -> WalletSimConfig {
    let mut config = sim_config(tls, public_of(PARTNER_API_SIGN_SEED));
    let roomy = |id: &str| wallet(id, 0, 10_000_000);
    let mut pay_limited = roomy(W_PAY_DECLINED);
    pay_limited.max_payment_minor = Some(50_000);
    let mut race_limited = roomy(W_RACE);
    race_limited.max_payment_minor = Some(50_000);
    config.wallets.extend([
        roomy(W_OK),
        roomy(W_CARD_DECLINED),
        roomy(W_CARD_UNKNOWN),
        wallet(W_TOP_UP_DECLINED, 0, 60_000),
        roomy(W_TOP_UP_UNKNOWN),
        pay_limited,
        roomy(W_PAY_UNKNOWN),
        roomy(W_CARD_TOP_UP),
        wallet(W_CARD_TOP_UP_DECLINED, 0, 10_000),
        roomy(W_KILL),
        race_limited,
        roomy(W_READ_BACK),
        wallet(W_REPLAY, 100_000, 10_000_000),
    ]);
    config
}

/// The `[[wallet_operator]]` section (the `[hsm]` comes with the card
/// config), with card top-ups and auto-reload steps of NT$500 and NT$1,000.
fn operator_section(sim: &WalletSim, client: &TlsFiles) -> String {
    super::wallets::operator_section(sim, client)
        + "card_top_up = true\nreload_steps_minor = [50000, 100000]\n"
}

/// A gateway with an acquirer, a co-brand issuer and a wallet operator.
struct ReloadWorld {
    gw: TestGateway,
    sim: WalletSim,
    acquirer: BankSim,
    cobrand: BankSim,
    client: WalletServiceClient<Channel>,
}

impl ReloadWorld {
    async fn start(backend: Backend) -> Self {
        Self::start_with_pki(backend, false, false).await
    }

    /// With the wallet simulator's or posgate's certificate expired.
    async fn start_with_pki(backend: Backend, server_expired: bool, client_expired: bool) -> Self {
        init_tracing();
        let acquirer = BankSim::start(acquirer_config()).await.unwrap();
        let cobrand = BankSim::start(cobrand_config()).await.unwrap();
        let db = TestDb::new(backend).await;
        write_keystore(db.dir.path()).await;
        let (server_tls, client_tls) = pki_with(db.dir.path(), server_expired, client_expired);
        let sim = WalletSim::start(reload_sim_config(server_tls))
            .await
            .unwrap();
        let (a, c) = (acquirer.addr().to_string(), cobrand.addr().to_string());
        let operator = operator_section(&sim, &client_tls);
        let gw = TestGateway::start_with(db, utc("2026-11-23T03:00:00Z"), OPEN_LIMITS, |dir| {
            card_config(dir, &a, &c, 1_000) + &operator
        })
        .await;
        let payments = gw.server.gateway.payments.as_ref().unwrap();
        for link in payments.links.values() {
            assert!(link.wait_up(Duration::from_secs(10)).await, "bank link up");
        }
        let client = WalletServiceClient::new(gw.channel.clone());
        Self {
            gw,
            sim,
            acquirer,
            cobrand,
            client,
        }
    }

    fn balance(&self, account: &str) -> i64 {
        self.sim.ledger().wallets[account].balance_minor
    }

    /// What the co-brand issuer has posted to the co-brand card.
    fn posted(&self) -> i64 {
        self.cobrand
            .ledger()
            .account(&co_brand())
            .unwrap()
            .posted_minor
    }

    /// Runs the store-and-forward and saga workers (moving the clock on)
    /// until nothing is queued and no saga is open.
    async fn drain(&self) {
        let gateway = &self.gw.server.gateway;
        let started = std::time::Instant::now();
        loop {
            let far = self.gw.clock.now() + chrono::Duration::days(1);
            let open = gateway.db.open_sagas(far, 1).await.unwrap();
            if gateway.db.saf_open().await.unwrap() == 0 && open.is_empty() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "queues and sagas did not drain: {open:?}"
            );
            self.gw
                .clock
                .set(self.gw.clock.now() + chrono::Duration::seconds(3));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn link(&self, key: &str, account: &str, step_minor: i64) -> pb::LinkCardResponse {
        self.client
            .clone()
            .link_card(link_request(key, account, &co_brand(), step_minor))
            .await
            .unwrap()
            .into_inner()
    }

    async fn stop(self) {
        self.gw.stop().await;
        self.sim.shutdown().await;
        self.acquirer.shutdown().await;
        self.cobrand.shutdown().await;
    }
}

fn link_request(key: &str, account: &str, pan: &str, step_minor: i64) -> pb::LinkCardRequest {
    pb::LinkCardRequest {
        context: context(key),
        wallet: card(account),
        card: keyed(pan),
        auto_reload: Some(pb::AutoReloadSettings {
            enabled: true,
            step: twd(step_minor),
        }),
    }
}

fn pay_request(key: &str, account: &str, amount_minor: i64) -> pb::PayRequest {
    pb::PayRequest {
        context: context(key),
        wallet: card(account),
        amount: twd(amount_minor),
        pos_reference: "AR-1".to_owned(),
    }
}

/// The nets posgate's settlement lines give the bank (`bank:*`) and the
/// wallet operator (`wallet:*`) over `ids`; every transaction's lines sum
/// to zero.
async fn gateway_books(world: &ReloadWorld, ids: &[String]) -> (i64, i64) {
    let (mut bank, mut wallet) = (0, 0);
    for id in ids.iter().filter(|id| !id.is_empty()) {
        let lines = world.gw.store().settlement_lines(id).await.unwrap();
        assert_eq!(
            lines.iter().map(|l| l.amount_minor).sum::<i64>(),
            0,
            "{id}: {lines:?}"
        );
        for line in lines {
            if line.party.starts_with("bank:") {
                bank += line.amount_minor;
            } else if line.party.starts_with("wallet:") {
                wallet += line.amount_minor;
            }
        }
    }
    (bank, wallet)
}

/// The ids of a payment, its card SALE and its auto-reload `TOP_UP`.
fn saga_ids(payment: &pb::WalletTransaction) -> Vec<String> {
    let reload = payment
        .auto_reload
        .as_ref()
        .expect("an auto-reload was attempted");
    vec![
        payment.transaction_id.clone(),
        reload
            .card_transaction
            .as_ref()
            .map(|card| card.transaction_id.clone())
            .unwrap_or_default(),
        reload.top_up_transaction_id.clone(),
    ]
}

/// Asserts the three books agree: the bank posted `posted_delta` to the
/// co-brand card, the wallet moved by `wallet_delta`, and posgate's lines say
/// exactly that.
async fn assert_books(
    world: &ReloadWorld,
    ids: &[String],
    posted_delta: i64,
    wallet_delta: i64,
    account: &str,
    posted_before: i64,
) {
    let (bank, wallet) = gateway_books(world, ids).await;
    assert_eq!(world.posted() - posted_before, posted_delta, "bank ledger");
    assert_eq!(-bank, posted_delta, "posgate's bank lines = bank ledger");
    assert_eq!(world.balance(account), wallet_delta, "wallet ledger");
    assert_eq!(
        wallet, wallet_delta,
        "posgate's wallet lines = wallet ledger"
    );
}

/// `LinkCard` verifies the co-brand card at the issuer and keeps a token,
/// never the PAN; Pay on a short balance reloads by the step rounded up,
/// pays, answers once (replayed byte for byte), and the three books agree.
/// `UnlinkCard` stops auto-reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_then_auto_reload_pays_and_books_agree() {
    for backend in backends() {
        let world = ReloadWorld::start(backend).await;
        let mut client = world.client.clone();
        let posted_before = world.posted();
        let linked = world.link("link-1", W_OK, 50_000).await;
        let link = linked.link.clone().unwrap();
        assert_eq!(link.status, pb::WalletCardLinkStatus::Active as i32);
        assert_eq!(
            link.masked_pan,
            "356999******".to_owned() + &co_brand()[12..]
        );
        let verification = linked.verification.unwrap();
        assert_eq!(
            verification.status,
            pb::CardTransactionStatus::Verified as i32
        );
        assert_eq!(
            verification.r#type,
            pb::CardTransactionType::Verification as i32
        );
        // Replayed, not linked twice.
        assert_eq!(
            world.link("link-1", W_OK, 50_000).await.link,
            Some(link.clone())
        );
        let again = client
            .link_card(link_request("link-2", W_OK, &co_brand(), 50_000))
            .await
            .unwrap_err();
        assert_eq!(error_reason(&again), "ALREADY_LINKED");
        let balance = client
            .get_balance(pb::GetBalanceRequest {
                context: context("bal-1"),
                wallet: card(W_OK),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(balance.card_link.unwrap().link_id, link.link_id);

        // Balance 0, price NT$800, step NT$500: reload NT$1,000.
        let paid = client
            .pay(pay_request("pay-1", W_OK, 80_000))
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        assert_eq!(
            status_of(&paid),
            pb::WalletTransactionStatus::Completed,
            "{paid:?}"
        );
        let reload = paid.auto_reload.clone().unwrap();
        assert_eq!(reload.amount, twd(100_000));
        let sale = reload.card_transaction.clone().unwrap();
        assert_eq!(sale.status, pb::CardTransactionStatus::Captured as i32);
        assert_eq!(paid.balance_after, twd(20_000));
        let replay = client
            .pay(pay_request("pay-1", W_OK, 80_000))
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        assert_eq!(replay, paid);
        assert_eq!(world.sim.stats().payments, 1, "one payment at the operator");
        let top_up = world
            .client
            .clone()
            .get_wallet_transaction(pb::GetWalletTransactionRequest {
                context: context("get-1"),
                lookup: Some(pb::get_wallet_transaction_request::Lookup::TransactionId(
                    reload.top_up_transaction_id.clone(),
                )),
            })
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        assert_eq!(top_up.funding, pb::WalletFunding::AutoReload as i32);
        assert_eq!(top_up.parent_transaction_id, paid.transaction_id);
        assert_books(
            &world,
            &saga_ids(&paid),
            100_000,
            20_000,
            W_OK,
            posted_before,
        )
        .await;

        // The token is ciphertext: no row holds the PAN.
        let link_row = world
            .gw
            .store()
            .card_link(&link.link_id)
            .await
            .unwrap()
            .unwrap();
        assert!(!link_row.token.expose().is_empty());
        let pan = co_brand();
        assert!(
            !link_row
                .token
                .expose()
                .windows(pan.len())
                .any(|w| w == pan.as_bytes())
        );

        // Unlinked: a short balance is a plain decline.
        let unlinked = client
            .unlink_card(pb::UnlinkCardRequest {
                context: context("unlink-1"),
                wallet: card(W_OK),
                reason: "customer request".to_owned(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            unlinked.link.unwrap().status,
            pb::WalletCardLinkStatus::Unlinked as i32
        );
        let declined = client
            .pay(pay_request("pay-2", W_OK, 80_000))
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        assert_eq!(status_of(&declined), pb::WalletTransactionStatus::Declined);
        assert!(declined.auto_reload.is_none());
        let not_linked = client
            .unlink_card(pb::UnlinkCardRequest {
                context: context("unlink-2"),
                wallet: card(W_OK),
                reason: "again".to_owned(),
            })
            .await
            .unwrap_err();
        assert_eq!(error_reason(&not_linked), "NOT_LINKED");
        world.stop().await;
    }
}

/// `LinkCard` refuses what it must, naming the field, storing nothing: a
/// card that is not co-brand, a step the operator does not allow, a step
/// in another currency, a missing card.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_card_refusals_name_the_field() {
    for backend in backends() {
        let world = ReloadWorld::start(backend).await;
        let mut client = world.client.clone();
        let not_co_brand = client
            .link_card(link_request("bad-1", W_OK, &visa_ok(), 50_000))
            .await
            .unwrap_err();
        assert_eq!(error_reason(&not_co_brand), "NOT_CO_BRAND_CARD");
        let bad_step = client
            .link_card(link_request("bad-2", W_OK, &co_brand(), 70_000))
            .await
            .unwrap_err();
        assert_eq!(bad_step.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            super::support::bad_request_fields(&bad_step),
            vec!["auto_reload.step.amount_minor".to_owned()]
        );
        let mut yen = link_request("bad-3", W_OK, &co_brand(), 50_000);
        yen.auto_reload.as_mut().unwrap().step = Some(pb::Money {
            amount_minor: 500,
            currency: "JPY".to_owned(),
        });
        let bad_currency = client.link_card(yen).await.unwrap_err();
        assert_eq!(
            super::support::bad_request_fields(&bad_currency),
            vec!["auto_reload.step.currency".to_owned()]
        );
        let mut no_card = link_request("bad-4", W_OK, &co_brand(), 50_000);
        no_card.card = None;
        let missing = client.link_card(no_card).await.unwrap_err();
        assert_eq!(
            super::support::bad_request_fields(&missing),
            vec!["card".to_owned()]
        );
        assert!(
            world
                .gw
                .store()
                .active_link("ICASH", W_OK)
                .await
                .unwrap()
                .is_none()
        );
        let asked = world.cobrand.stats().requests_by_mti;
        assert!(
            !asked.contains_key("0100") && !asked.contains_key("0200"),
            "the issuer was never asked: {asked:?}"
        );
        world.stop().await;
    }
}

/// A card-funded top-up charges the card, then credits the wallet; when the
/// operator declines the credit, the card sale is reversed. Books agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_top_up_and_its_reversal() {
    for backend in backends() {
        let world = ReloadWorld::start(backend).await;
        let mut client = world.client.clone();
        let posted_before = world.posted();
        let request = |key: &str, account: &str, amount: i64| pb::TopUpRequest {
            context: context(key),
            wallet: card(account),
            amount: twd(amount),
            funding: Some(pb::top_up_request::Funding::Card(
                keyed(&co_brand()).unwrap(),
            )),
        };
        let topped = client
            .top_up(request("ctu-1", W_CARD_TOP_UP, 30_000))
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        assert_eq!(
            status_of(&topped),
            pb::WalletTransactionStatus::Completed,
            "{topped:?}"
        );
        assert_eq!(topped.funding, pb::WalletFunding::Card as i32);
        let sale = topped.card_transaction.clone().unwrap();
        assert_eq!(sale.status, pb::CardTransactionStatus::Captured as i32);
        assert_books(
            &world,
            &[topped.transaction_id.clone(), sale.transaction_id.clone()],
            30_000,
            30_000,
            W_CARD_TOP_UP,
            posted_before,
        )
        .await;

        // The wallet holds at most NT$100: the credit is declined, the sale reversed.
        let posted_before = world.posted();
        let declined = client
            .top_up(request("ctu-2", W_CARD_TOP_UP_DECLINED, 30_000))
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        assert_eq!(status_of(&declined), pb::WalletTransactionStatus::Declined);
        assert_eq!(
            declined.decline_reason,
            pb::WalletDeclineReason::BalanceLimitExceeded as i32
        );
        world.drain().await;
        let sale = declined.card_transaction.clone().unwrap();
        assert_books(
            &world,
            &[declined.transaction_id.clone(), sale.transaction_id],
            0,
            0,
            W_CARD_TOP_UP_DECLINED,
            posted_before,
        )
        .await;
        // Cash-only operators and non-card input are unchanged; a bad card names the field.
        let mut bad = request("ctu-3", W_CARD_TOP_UP, 30_000);
        bad.funding = Some(pb::top_up_request::Funding::Card(pb::CardInput::default()));
        let error = client.top_up(bad).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        assert!(
            super::support::bad_request_fields(&error)
                .iter()
                .all(|field| field.starts_with("card")),
            "{error:?}"
        );
        world.stop().await;
    }
}

/// One row of the fault table: what breaks, at which step, and what the
/// POS must finally hear.
struct Fault {
    name: &'static str,
    account: &'static str,
    /// Applied before the Pay.
    bank: Option<BankFaults>,
    wallet: Option<FaultConfig>,
    /// The first answer: Ok(decline reason) or `Err(OUTCOME_UNKNOWN)`.
    first: Result<pb::WalletDeclineReason, ()>,
}

fn fault_table() -> Vec<Fault> {
    let wallet_only = |only: &str| FaultConfig {
        no_response: 1.0,
        only: vec![only.to_owned()],
        ..FaultConfig::default()
    };
    vec![
        Fault {
            name: "bank declines the reload",
            account: W_CARD_DECLINED,
            bank: Some(BankFaults {
                decline_all: Some("05".to_owned()),
                ..BankFaults::default()
            }),
            wallet: None,
            first: Ok(pb::WalletDeclineReason::AutoReloadDeclined),
        },
        Fault {
            name: "bank does not answer the reload",
            account: W_CARD_UNKNOWN,
            bank: Some(BankFaults {
                no_response: 1.0,
                ..BankFaults::default()
            }),
            wallet: None,
            first: Err(()),
        },
        Fault {
            name: "operator declines the top-up",
            account: W_TOP_UP_DECLINED,
            bank: None,
            wallet: None,
            first: Ok(pb::WalletDeclineReason::BalanceLimitExceeded),
        },
        Fault {
            name: "operator does not answer the top-up",
            account: W_TOP_UP_UNKNOWN,
            bank: None,
            wallet: Some(wallet_only("top_up")),
            first: Err(()),
        },
        Fault {
            name: "operator declines the payment",
            account: W_PAY_DECLINED,
            bank: None,
            wallet: None,
            first: Ok(pb::WalletDeclineReason::TransactionLimitExceeded),
        },
        Fault {
            name: "operator does not answer the payment",
            account: W_PAY_UNKNOWN,
            bank: None,
            wallet: Some(wallet_only("payment")),
            first: Err(()),
        },
    ]
}

/// Faults at every step boundary of an auto-reload: the POS gets one clear
/// answer (DECLINED with the failing step's reason, or `OUTCOME_UNKNOWN` then
/// REVERSED on retry), every earlier step is undone through the durable
/// queues, and the bank ledger, the wallet ledger and posgate's lines agree:
/// nothing moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_at_every_step_are_compensated() {
    for backend in backends() {
        let world = ReloadWorld::start(backend).await;
        let mut client = world.client.clone();
        for (index, fault) in fault_table().into_iter().enumerate() {
            let name = fault.name;
            world
                .link(&format!("fl-{index}"), fault.account, 100_000)
                .await;
            let posted_before = world.posted();
            if let Some(bank) = fault.bank.clone() {
                world.cobrand.set_faults(bank);
            }
            if let Some(wallet) = fault.wallet.clone() {
                world.sim.set_faults(wallet);
            }
            let key = format!("fp-{index}");
            let first = client.pay(pay_request(&key, fault.account, 80_000)).await;
            world.cobrand.set_faults(BankFaults::default());
            world.sim.set_faults(FaultConfig::default());
            let answer = match (first, &fault.first) {
                (Ok(answer), Ok(reason)) => {
                    let payment = answer.into_inner().transaction.unwrap();
                    assert_eq!(
                        status_of(&payment),
                        pb::WalletTransactionStatus::Declined,
                        "{backend:?} {name}: {payment:?}"
                    );
                    assert_eq!(payment.decline_reason, *reason as i32, "{backend:?} {name}");
                    world.drain().await;
                    let replay = client
                        .pay(pay_request(&key, fault.account, 80_000))
                        .await
                        .unwrap()
                        .into_inner()
                        .transaction
                        .unwrap();
                    assert_eq!(replay, payment, "{backend:?} {name}: replayed");
                    payment
                }
                (Err(status), Err(())) => {
                    assert_eq!(
                        (status.code(), error_reason(&status).as_str()),
                        (tonic::Code::Unavailable, "OUTCOME_UNKNOWN"),
                        "{backend:?} {name}"
                    );
                    world.drain().await;
                    let payment = client
                        .pay(pay_request(&key, fault.account, 80_000))
                        .await
                        .unwrap()
                        .into_inner()
                        .transaction
                        .unwrap();
                    assert_eq!(
                        status_of(&payment),
                        pb::WalletTransactionStatus::Reversed,
                        "{backend:?} {name}: {payment:?}"
                    );
                    payment
                }
                (other, _) => panic!("{backend:?} {name}: unexpected first answer {other:?}"),
            };
            assert_books(
                &world,
                &saga_ids(&answer),
                0,
                0,
                fault.account,
                posted_before,
            )
            .await;
            let saga = world
                .gw
                .store()
                .saga(&answer.transaction_id)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                saga.step,
                posgate_core::ports::db::SagaStep::Compensated,
                "{name}"
            );
        }
        world.stop().await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `posgate serve`, aborting (like kill -9) at `crash_at` if set.
fn serve(config: &Path, crash_at: Option<&str>) -> super::wallets::Child {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_posgate"));
    command
        .args(["serve", "--config"])
        .arg(config)
        .stderr(std::process::Stdio::null());
    if let Some(point) = crash_at {
        command.env(posgate_core::wallet::saga::ABORT_AT_ENV, point);
    }
    super::wallets::Child(command.spawn().unwrap())
}

/// A real `posgate serve` dies (abort: no unwinding, nothing flushed, as
/// kill -9) between the steps of an auto-reload: after the bank charged the
/// card, after the operator credited the reload, after the operator took
/// the payment, each before posgate recorded it. The restarted gateway's
/// recovery worker compensates every step, the POS's retry gets REVERSED,
/// and the bank ledger, the wallet ledger and posgate's lines agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_steps_is_compensated_after_restart() {
    const POINTS: [&str; 3] = [
        "reload.card_answered",
        "reload.top_up_answered",
        "reload.pay_answered",
    ];
    for backend in backends() {
        init_tracing();
        let acquirer = BankSim::start(acquirer_config()).await.unwrap();
        let cobrand = BankSim::start(cobrand_config()).await.unwrap();
        let db = TestDb::new(backend).await;
        let dir = db.dir.path().to_owned();
        write_keystore(&dir).await;
        let (server_tls, client_tls) = pki(&dir);
        let sim = WalletSim::start(reload_sim_config(server_tls))
            .await
            .unwrap();
        let pki = posgate::tls::DevPki::generate(&dir).unwrap();
        let port = free_port();
        let text = super::support::config_text(&db.url, &pki, OPEN_LIMITS)
            .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))
            + &card_config(
                &dir,
                &acquirer.addr().to_string(),
                &cobrand.addr().to_string(),
                1_000,
            )
            + &operator_section(&sim, &client_tls);
        let config = dir.join("posgate.toml");
        std::fs::write(&config, text).unwrap();
        let store = db.store().await;
        let posted = || cobrand.ledger().account(&co_brand()).unwrap().posted_minor;
        {
            let _gateway = serve(&config, None);
            let mut client = super::wallets::connect(port, &pki).await;
            let linked = link_until_up(
                &mut client,
                link_request("kl-1", W_KILL, &co_brand(), 50_000),
            )
            .await;
            assert_eq!(
                linked.link.unwrap().status,
                pb::WalletCardLinkStatus::Active as i32
            );
        }
        for (index, point) in POINTS.into_iter().enumerate() {
            let posted_before = posted();
            let wallet_before = sim.ledger().wallets[W_KILL].balance_minor;
            let request = pay_request(&format!("kp-{index}"), W_KILL, 80_000);
            {
                let mut gateway = serve(&config, Some(point));
                let mut client = super::wallets::connect(port, &pki).await;
                let answer = client.pay(request.clone()).await;
                assert!(
                    answer.is_err(),
                    "{backend:?} {point}: the POS never got an answer"
                );
                let exit = gateway.0.wait().unwrap();
                assert!(!exit.success(), "{backend:?} {point}: the gateway died");
            }
            let _restarted = serve(&config, None);
            let client = super::wallets::connect(port, &pki).await;
            let settled = super::wallets::retry_until_answered(Duration::from_secs(90), || {
                let (mut client, request) = (client.clone(), request.clone());
                async move { client.pay(request).await }
            })
            .await
            .transaction
            .unwrap();
            assert_eq!(
                status_of(&settled),
                pb::WalletTransactionStatus::Reversed,
                "{backend:?} {point}: {settled:?}"
            );
            // Wait for every queued compensation to be acknowledged.
            let started = std::time::Instant::now();
            while store.saf_open().await.unwrap() > 0 {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "{backend:?} {point}: queue drained"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let ids = saga_ids(&settled);
            let (mut bank, mut wallet) = (0, 0);
            for id in ids.iter().filter(|id| !id.is_empty()) {
                for line in store.settlement_lines(id).await.unwrap() {
                    if line.party.starts_with("bank:") {
                        bank += line.amount_minor;
                    } else if line.party.starts_with("wallet:") {
                        wallet += line.amount_minor;
                    }
                }
            }
            assert_eq!(
                posted() - posted_before,
                0,
                "{backend:?} {point}: bank ledger"
            );
            assert_eq!(bank, 0, "{backend:?} {point}: posgate's bank lines");
            assert_eq!(
                sim.ledger().wallets[W_KILL].balance_minor - wallet_before,
                0,
                "{backend:?} {point}: wallet ledger"
            );
            assert_eq!(wallet, 0, "{backend:?} {point}: posgate's wallet lines");
        }
        sim.shutdown().await;
        acquirer.shutdown().await;
        cobrand.shutdown().await;
    }
}

/// `LinkCard` until the gateway's bank links are signed on.
async fn link_until_up(
    client: &mut WalletServiceClient<Channel>,
    request: pb::LinkCardRequest,
) -> pb::LinkCardResponse {
    let started = std::time::Instant::now();
    loop {
        match client.link_card(request.clone()).await {
            Ok(answer) => return answer.into_inner(),
            Err(status) if status.code() == tonic::Code::Unavailable => {
                assert!(started.elapsed() < Duration::from_secs(20), "{status:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    }
}

/// Expired certificates are refused in both directions of the partner API:
/// posgate will not talk to an operator whose server certificate expired,
/// and the operator refuses posgate's expired client certificate. Either
/// way no request reaches the operator and no card is charged. (Bad signatures and
/// replayed or stale nonces, both directions, are covered by
/// `wallets::bad_signature_refused_by_operator`,
/// `wallets::unknown_outcome_is_reversed`, and in posgate-partners
/// `wallet_sim::refuses_unsigned_bad_stale_and_replayed` and
/// `wallet_sim::bad_answer_signature_is_unknown_then_reversed`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificates_refused_both_ways() {
    for (server_expired, client_expired) in [(true, false), (false, true)] {
        let world =
            ReloadWorld::start_with_pki(Backend::Sqlite, server_expired, client_expired).await;
        let mut client = world.client.clone();
        let posted_before = world.posted();
        let error = client
            .top_up(pb::TopUpRequest {
                context: context("exp-1"),
                wallet: card(W_OK),
                amount: twd(10_000),
                funding: Some(pb::top_up_request::Funding::Cash(pb::CashFunding {})),
            })
            .await
            .unwrap_err();
        // TLS 1.3: posgate refuses an expired server certificate before it
        // writes anything (PARTNER_UNAVAILABLE); the operator's refusal of
        // posgate's certificate comes after posgate wrote its request, so
        // posgate cannot know and takes the safe side (OUTCOME_UNKNOWN, a
        // reversal queued). Either way the operator processed nothing.
        let expected = if server_expired {
            "PARTNER_UNAVAILABLE"
        } else {
            "OUTCOME_UNKNOWN"
        };
        assert_eq!(
            (error.code(), error_reason(&error).as_str()),
            (tonic::Code::Unavailable, expected),
            "server expired {server_expired}, client expired {client_expired}: {error:?}"
        );
        assert_eq!(
            world.sim.stats().requests,
            0,
            "nothing reached the operator"
        );
        assert_eq!(world.posted(), posted_before, "no card charged");
        world.stop().await;
    }
}

/// `WalletService` is SERVING in gRPC health when operators are configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallet_service_health_serving() {
    let world = ReloadWorld::start(Backend::Sqlite).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(world.gw.channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "posgate.v1.WalletService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    world.stop().await;
}

/// A request context of another till of the same store.
fn context_of(terminal_id: &str, request_id: &str) -> Option<pb::RequestContext> {
    let mut context = context(request_id);
    if let Some(context) = context.as_mut() {
        terminal_id.clone_into(&mut context.terminal_id);
    }
    context
}

/// Issue 13 item 18: two tills pay from one auto-reload wallet. Till 1's
/// NT$800 payment reloads NT$1,000 by card and is then declined (over the
/// wallet's NT$500 payment limit); before its compensation reaches the
/// operator, till 2 spends NT$500 of that reload. The operator refuses to
/// reverse a top-up already spent, so no balance goes negative: the reload
/// stands, the co-brand card keeps its charge (the card paid for money the
/// wallet keeps), and the bank, the operator and posgate agree to the cent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tills_on_one_wallet_never_take_it_negative() {
    for backend in backends() {
        let world = ReloadWorld::start(backend).await;
        let mut till_1 = world.client.clone();
        let till_2_identity = super::support::terminal("S001", "T02");
        let mut till_2 = WalletServiceClient::new(world.gw.channel_as(&till_2_identity));
        world.link("race-link", W_RACE, 100_000).await;
        let posted_before = world.posted();
        // The operator answers no reversal (503) until till 2 has paid: the
        // state in which the outside tester saw the wallet go negative.
        world.sim.set_faults(FaultConfig {
            server_error: 1.0,
            only: vec!["reversal".to_owned()],
            ..FaultConfig::default()
        });
        let declined = till_1
            .pay(pay_request("race-a", W_RACE, 80_000))
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        assert_eq!(
            status_of(&declined),
            pb::WalletTransactionStatus::Declined,
            "{backend:?}: {declined:?}"
        );
        let reload = declined.auto_reload.clone().unwrap();
        assert_eq!(reload.amount, twd(100_000));
        assert_eq!(
            world.balance(W_RACE),
            100_000,
            "the reload is at the operator"
        );
        let spent = till_2
            .pay(pb::PayRequest {
                context: context_of("T02", "race-b"),
                wallet: card(W_RACE),
                amount: twd(50_000),
                pos_reference: "AR-2".to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        assert_eq!(status_of(&spent), pb::WalletTransactionStatus::Completed);
        assert!(
            spent.auto_reload.is_none(),
            "till 2 found the balance enough"
        );
        world.sim.set_faults(FaultConfig::default());
        world.drain().await;

        let ledger = world.sim.ledger();
        assert!(
            ledger
                .wallets
                .values()
                .all(|wallet| wallet.balance_minor >= 0),
            "{backend:?}: a wallet went negative: {:?}",
            ledger.wallets
        );
        assert_eq!(world.balance(W_RACE), 50_000, "{backend:?}");
        let balance = till_1
            .get_balance(pb::GetBalanceRequest {
                context: context("race-bal"),
                wallet: card(W_RACE),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(balance.balance, twd(50_000));
        let top_up = world
            .gw
            .store()
            .wallet_transaction(&reload.top_up_transaction_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            top_up.status,
            posgate_core::model::transaction::TransactionStatus::Completed,
            "{backend:?}: the spent reload stands"
        );
        let sale_id = reload.card_transaction.unwrap().transaction_id;
        let sale = world
            .gw
            .store()
            .card_transaction(&sale_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            sale.status,
            posgate_core::model::transaction::TransactionStatus::Captured,
            "{backend:?}: the card paid for the reload the wallet keeps"
        );
        let mut ids = saga_ids(&declined);
        ids.push(spent.transaction_id.clone());
        assert_books(&world, &ids, 100_000, 50_000, W_RACE, posted_before).await;
        assert_audit_history(&world, &ids).await;
        // The declined payment's replay is its first answer.
        let replay = till_1
            .pay(pay_request("race-a", W_RACE, 80_000))
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        assert_eq!(replay, declined);
        world.stop().await;
    }
}

/// Issue 13 items 3 and 15: with the clock at a time that has nanoseconds,
/// every answer's times equal its read-back on both backends (PayBill and
/// `GetBillPayment`, Authorize and `GetTransaction`, `TopUp` and
/// `GetWalletTransaction`), and a Pay that auto-reloaded, looked up by its
/// key, is that payment (not the saga's `TOP_UP`) and reads back as answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_backs_equal_the_answer_and_the_key_finds_its_payment() {
    for backend in backends() {
        let world = ReloadWorld::start(backend).await;
        world.link("rb-link", W_READ_BACK, 50_000).await;
        let at = utc("2026-11-23T03:00:00.070782137Z");
        world.gw.clock.set(at);

        let mut bills = world.gw.bills_as("S001", "T01");
        let paid = bills
            .pay_bill(super::support::tw_pay("rb-bill", at))
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap();
        let bill_back = bills
            .get_bill_payment(pb::GetBillPaymentRequest {
                context: super::support::context("S001", "T01", "rb-bill-get", at),
                lookup: Some(pb::get_bill_payment_request::Lookup::TransactionId(
                    paid.transaction_id.clone(),
                )),
            })
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap();
        assert!(paid.paid_at.is_some());
        assert_eq!(bill_back.paid_at, paid.paid_at, "{backend:?}: paid_at");

        let mut cards =
            pb::payment_service_client::PaymentServiceClient::new(world.gw.channel.clone());
        let sale = cards
            .authorize(super::cards::sale("rb-sale", &visa_ok(), 1_000))
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        let sale_back = cards
            .get_transaction(pb::GetTransactionRequest {
                context: super::cards::context("rb-sale-get"),
                lookup: Some(pb::get_transaction_request::Lookup::TransactionId(
                    sale.transaction_id.clone(),
                )),
            })
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        assert_eq!(
            sale_back.created_at, sale.created_at,
            "{backend:?}: created_at"
        );
        assert_eq!(
            sale_back.updated_at, sale.updated_at,
            "{backend:?}: updated_at"
        );

        let mut wallets = world.client.clone();
        let topped = wallets
            .top_up(super::wallets::top_up("rb-top-up", W_READ_BACK, 10_000))
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        let topped_back = get_wallet(&world, "rb-top-up-get", &topped.transaction_id).await;
        assert_eq!(topped_back, topped, "{backend:?}: TopUp read back");

        // NT$100 in the wallet, NT$800 to pay: an auto-reload of NT$1,000.
        let paid = wallets
            .pay(pay_request("rb-pay", W_READ_BACK, 80_000))
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        assert_eq!(status_of(&paid), pb::WalletTransactionStatus::Completed);
        assert!(paid.auto_reload.is_some());
        let by_key = wallets
            .get_wallet_transaction(pb::GetWalletTransactionRequest {
                context: context("rb-pay-get"),
                lookup: Some(
                    pb::get_wallet_transaction_request::Lookup::CreatedClientRequestId(
                        "rb-pay".to_owned(),
                    ),
                ),
            })
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        assert_eq!(by_key.r#type, pb::WalletTransactionType::Payment as i32);
        assert_eq!(by_key, paid, "{backend:?}: the key finds its payment");
        world.stop().await;
    }
}

async fn get_wallet(world: &ReloadWorld, key: &str, id: &str) -> pb::WalletTransaction {
    world
        .client
        .clone()
        .get_wallet_transaction(pb::GetWalletTransactionRequest {
            context: context(key),
            lookup: Some(pb::get_wallet_transaction_request::Lookup::TransactionId(
                id.to_owned(),
            )),
        })
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap()
}

/// Advisory lock key of the replay test's gate (database-wide, so chosen
/// to collide with nothing else).
const GATE_ANSWER: i64 = 0x5047_1302_0002;

/// Installs the replay test's gate: a PostgreSQL trigger that holds the
/// write answering key `key` while the test holds advisory lock `GATE_ANSWER`.
async fn install_gate(db_url: &str, key: &str) {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(db_url).await.unwrap();
    for statement in [
        format!(
            "CREATE FUNCTION gate_answer() RETURNS trigger AS $$ BEGIN \
             PERFORM pg_advisory_xact_lock_shared({GATE_ANSWER}); RETURN NEW; END $$ LANGUAGE plpgsql"
        ),
        format!(
            "CREATE TRIGGER gate_answer BEFORE UPDATE ON idempotency_keys FOR EACH ROW \
             WHEN (OLD.pending AND NOT NEW.pending AND NEW.client_request_id = '{key}') \
             EXECUTE FUNCTION gate_answer()"
        ),
    ] {
        sqlx::query(&statement).execute(&mut conn).await.unwrap();
    }
}

/// Waits until a session waits on advisory lock `gate`.
async fn wait_blocked_on(conn: &mut sqlx::PgConnection, gate: i64) {
    let started = std::time::Instant::now();
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND ((classid::bigint << 32) | objid::bigint) = $1",
        )
        .bind(gate)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nobody reached gate {gate:#x}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn refund_request(key: &str, original_id: &str, amount_minor: i64) -> pb::WalletRefundRequest {
    pb::WalletRefundRequest {
        context: context(key),
        original_transaction_id: original_id.to_owned(),
        amount: twd(amount_minor),
        reason: "returned goods".to_owned(),
    }
}

/// Issue 13 item 2: the first answer is the answer. A wallet refund's answer
/// embeds its payment; while that answer's commit is held (a PostgreSQL
/// gate, so no timing luck), a second refund of the same payment completes.
/// The first refund's answer, its replay and what was stored are the same
/// bytes: the embedded payment is not read again after the commit.
/// PostgreSQL only: holding one commit while others go on needs row-level
/// locks, which SQLite's single writer does not have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_answer_is_stored_whole_and_replayed() {
    use sqlx::Connection as _;
    for backend in backends() {
        if backend != Backend::Postgres {
            continue;
        }
        let world = ReloadWorld::start(backend).await;
        let mut client = world.client.clone();
        let paid = client
            .pay(pay_request("rp-pay", W_REPLAY, 50_000))
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        assert_eq!(status_of(&paid), pb::WalletTransactionStatus::Completed);
        install_gate(world.gw.db_url(), "rp-refund-1").await;
        let mut gate = sqlx::PgConnection::connect(world.gw.db_url())
            .await
            .unwrap();
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(GATE_ANSWER)
            .execute(&mut gate)
            .await
            .unwrap();
        let mut first_client = client.clone();
        let payment_id = paid.transaction_id.clone();
        let first = tokio::spawn(async move {
            first_client
                .refund(refund_request("rp-refund-1", &payment_id, 10_000))
                .await
                .map(tonic::Response::into_inner)
        });
        wait_blocked_on(&mut gate, GATE_ANSWER).await;
        let second = client
            .refund(refund_request("rp-refund-2", &paid.transaction_id, 10_000))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            status_of(second.refund.as_ref().unwrap()),
            pb::WalletTransactionStatus::Completed
        );
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(GATE_ANSWER)
            .execute(&mut gate)
            .await
            .unwrap();
        let first = first.await.unwrap().unwrap();
        let replay = client
            .refund(refund_request("rp-refund-1", &paid.transaction_id, 10_000))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(replay, first, "the replay is the first answer");
        let key = posgate_core::model::IdempotencyKey {
            store_id: "S001".to_owned(),
            terminal_id: "T01".to_owned(),
            client_request_id: "rp-refund-1".to_owned(),
        };
        let stored = world.gw.store().answer(&key).await.unwrap().unwrap();
        assert_eq!(
            stored.response,
            prost::Message::encode_to_vec(&first),
            "the first answer is what was stored"
        );
        world.stop().await;
    }
}

/// Issue 13 item 4: every event of `ids` reaches auditors as an
/// `audit.proto` type (none UNSPECIFIED), and each history opens with
/// RECEIVED.
async fn assert_audit_history(world: &ReloadWorld, ids: &[String]) {
    for id in ids.iter().filter(|id| !id.is_empty()) {
        let events = world.gw.store().events(id).await.unwrap();
        assert_eq!(
            events.first().map(|event| event.event_type.as_str()),
            Some("received"),
            "{id}: {events:?}"
        );
        for event in &events {
            assert_ne!(
                posgate_api::audit::view::event_type(&event.event_type),
                pb::TransactionEventType::Unspecified,
                "{id}: {event:?}"
            );
        }
    }
}
