//! `WalletService` through the real gRPC API against a real wallet
//! simulator on loopback (HTTPS, mutual TLS, RFC 9421 signatures both ways):
//! top-up, pay, balance, declines, replay, refunds, unknown outcomes
//! reversed by the store-and-forward worker, refused signatures, bad input.

use std::path::Path;
use std::time::Duration;

use pb::wallet_service_client::WalletServiceClient;
use posgate_partners::http::TlsFiles;
use posgate_proto::v1 as pb;
use posgate_sims::test_keys::{PARTNER_API_SIGN_SEED, write_test_keystore};
use posgate_sims::wallet::{
    ClientKeyConfig, FaultConfig, WalletConfig, WalletSim, WalletSimConfig,
};
use tonic::transport::Channel;

use super::cards::init_tracing;
use super::support::{Backend, OPEN_LIMITS, TestDb, TestGateway, backends, utc};

/// The simulator's test signing seed (RFC 8032 section 7.1 test 2). TEST KEY ONLY.
pub const SIM_SEED_HEX: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
const SIM_KEY_ID: &str = "wallet-sim-test";
const POSGATE_KEY_ID: &str = "posgate-test";

pub const RICH: &str = "1000000000000001";
pub const EMPTY: &str = "1000000000000002";
const BARCODE: &str = "MEMBER-ABC-0001";
/// A wallet with room for any load run.
const ROOMY: &str = "1000000000000009";

pub fn public_of(seed_hex: &str) -> String {
    use ring::signature::KeyPair as _;
    let seed = hex::decode(seed_hex).unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    hex::encode(pair.public_key().as_ref())
}

/// A CA, the simulator's server certificate (127.0.0.1) and posgate's client certificate.
pub fn pki(dir: &Path) -> (TlsFiles, TlsFiles) {
    pki_with(dir, false, false)
}

/// As [`pki`], with the server's or the client's certificate expired (valid
/// only through 2020).
pub fn pki_with(dir: &Path, server_expired: bool, client_expired: bool) -> (TlsFiles, TlsFiles) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "wallet test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let ca = write("wallet-ca.pem", ca_cert.pem());
    let issue = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, name: &str, expired: bool| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        if expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let cert = params.signed_by(&key, &issuer).unwrap();
        (
            write(&format!("{name}.pem"), cert.pem()),
            write(&format!("{name}.key"), key.serialize_pem()),
        )
    };
    let (server_cert, server_key) = issue(
        vec!["127.0.0.1".to_owned()],
        ExtendedKeyUsagePurpose::ServerAuth,
        "wallet-server",
        server_expired,
    );
    let (client_cert, client_key) = issue(
        vec!["posgate.test".to_owned()],
        ExtendedKeyUsagePurpose::ClientAuth,
        "wallet-client",
        client_expired,
    );
    (
        TlsFiles {
            ca_cert: ca.clone(),
            cert: server_cert,
            key: server_key,
        },
        TlsFiles {
            ca_cert: ca,
            cert: client_cert,
            key: client_key,
        },
    )
}

pub fn wallet(account_id: &str, balance_minor: i64, max_balance_minor: i64) -> WalletConfig {
    WalletConfig {
        account_id: account_id.to_owned(),
        member_barcode: None,
        balance_minor,
        max_balance_minor,
        max_top_up_minor: None,
        max_payment_minor: None,
        blocked: false,
    }
}

pub fn sim_config(tls: TlsFiles, posgate_public_hex: String) -> WalletSimConfig {
    let mut rich = wallet(RICH, 100_000, 1_000_000);
    rich.member_barcode = Some(BARCODE.to_owned().into());
    WalletSimConfig {
        listen: "127.0.0.1:0".to_owned(),
        tls,
        operator_name: "i-Cash".to_owned(),
        currency: "TWD".to_owned(),
        signing_key_hex: SIM_SEED_HEX.to_owned().into(),
        key_id: SIM_KEY_ID.to_owned(),
        client_keys: vec![ClientKeyConfig {
            key_id: POSGATE_KEY_ID.to_owned(),
            public_key_hex: posgate_public_hex,
        }],
        wallets: vec![
            rich,
            wallet(EMPTY, 0, 100_000),
            wallet(ROOMY, 100_000_000, 100_000_000_000),
        ],
        faults: FaultConfig::default(),
        admin_listen: None,
    }
}

fn wallet_config(dir: &Path, sim: &WalletSim, client: &TlsFiles) -> String {
    format!(
        r#"
[hsm]
backend = "software"
keystore = "{keystore}"
master_key_file = "{master}"
"#,
        keystore = dir.join("keys.ks").display(),
        master = dir.join("master.key").display(),
    ) + &operator_section(sim, client)
}

/// The `[[wallet_operator]]` section for the simulator (the `[hsm]` comes
/// from the caller); keys may be appended to it.
pub fn operator_section(sim: &WalletSim, client: &TlsFiles) -> String {
    format!(
        r#"
[[wallet_operator]]
id = "ICASH"
name = "i-Cash"
url = "https://{addr}"
currency = "TWD"
key_id = "{POSGATE_KEY_ID}"
signing_key = "partner-api.signing"
operator_key_id = "{SIM_KEY_ID}"
operator_public_key_hex = "{sim_public}"
ca_cert = "{ca}"
client_cert = "{cert}"
client_key = "{key}"
request_timeout_ms = 1000
max_attempts = 2
top_up_unit_minor = 10000
max_top_up_minor = 1000000
max_payment_minor = 1000000
retry_min_ms = 100
retry_max_ms = 500
"#,
        addr = sim.addr(),
        sim_public = public_of(SIM_SEED_HEX),
        ca = client.ca_cert.display(),
        cert = client.cert.display(),
        key = client.key.display(),
    )
}

/// A gateway with a wallet simulator behind it.
pub struct WalletWorld {
    pub gw: TestGateway,
    pub sim: WalletSim,
    pub client: WalletServiceClient<Channel>,
    /// The gateway's wallet configuration sections, for a restart.
    extra: String,
}

impl WalletWorld {
    pub async fn start(backend: Backend) -> Self {
        Self::start_trusting(backend, public_of(PARTNER_API_SIGN_SEED)).await
    }

    /// `posgate_public_hex`: the key the simulator accepts for posgate's key id.
    async fn start_trusting(backend: Backend, posgate_public_hex: String) -> Self {
        init_tracing();
        let db = TestDb::new(backend).await;
        write_test_keystore(
            &db.dir.path().join("keys.ks"),
            &db.dir.path().join("master.key"),
        )
        .await
        .unwrap();
        let (server_tls, client_tls) = pki(db.dir.path());
        let sim = WalletSim::start(sim_config(server_tls, posgate_public_hex))
            .await
            .unwrap();
        let extra = wallet_config(db.dir.path(), &sim, &client_tls);
        let gw = TestGateway::start_with(db, utc("2026-11-23T03:00:00Z"), OPEN_LIMITS, |_| {
            extra.clone()
        })
        .await;
        let client = WalletServiceClient::new(gw.channel.clone());
        Self {
            gw,
            sim,
            client,
            extra,
        }
    }

    fn balance(&self, account: &str) -> i64 {
        self.sim.ledger().wallets[account].balance_minor
    }

    async fn transaction(&self, id: &str) -> pb::WalletTransaction {
        self.client
            .clone()
            .get_wallet_transaction(pb::GetWalletTransactionRequest {
                context: context("get"),
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

    pub async fn stop(self) {
        self.gw.stop().await;
        self.sim.shutdown().await;
    }
}

pub fn context(request_id: &str) -> Option<pb::RequestContext> {
    Some(pb::RequestContext {
        store_id: "S001".to_owned(),
        terminal_id: "T01".to_owned(),
        client_request_id: request_id.to_owned(),
        pos_timestamp: Some(prost_types::Timestamp {
            seconds: 1_795_000_000,
            nanos: 0,
        }),
        operator_id: "OP1".to_owned(),
    })
}

pub fn card(number: &str) -> Option<pb::WalletRef> {
    Some(pb::WalletRef {
        wallet_operator_id: "ICASH".to_owned(),
        id: Some(pb::wallet_ref::Id::CardNumber(number.to_owned())),
    })
}

pub fn twd(amount_minor: i64) -> Option<pb::Money> {
    Some(pb::Money {
        amount_minor,
        currency: "TWD".to_owned(),
    })
}

pub fn top_up(key: &str, number: &str, amount_minor: i64) -> pb::TopUpRequest {
    pb::TopUpRequest {
        context: context(key),
        wallet: card(number),
        amount: twd(amount_minor),
        funding: Some(pb::top_up_request::Funding::Cash(pb::CashFunding {})),
    }
}

pub fn pay(key: &str, wallet: Option<pb::WalletRef>, amount_minor: i64) -> pb::PayRequest {
    pb::PayRequest {
        context: context(key),
        wallet,
        amount: twd(amount_minor),
        pos_reference: "R-42".to_owned(),
    }
}

pub fn status_of(transaction: &pb::WalletTransaction) -> pb::WalletTransactionStatus {
    pb::WalletTransactionStatus::try_from(transaction.status).unwrap()
}

pub fn error_reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    let details = status.get_error_details();
    details
        .error_info()
        .map(|info| info.reason.clone())
        .or_else(|| {
            details
                .precondition_failure()
                .and_then(|f| f.violations.first().map(|v| v.r#type.clone()))
        })
        .unwrap_or_default()
}

/// Settlement lines of a transaction sum to zero, with the operator as a party.
async fn assert_lines_balance(world: &WalletWorld, id: &str, store_side: i64) {
    let lines = world.gw.store().settlement_lines(id).await.unwrap();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines.iter().map(|line| line.amount_minor).sum::<i64>(), 0);
    let store = lines
        .iter()
        .find(|line| line.party == "store:S001")
        .unwrap();
    assert_eq!(store.amount_minor, store_side);
    assert!(lines.iter().any(|line| line.party == "wallet:ICASH"));
}

/// A cash top-up and a payment complete at the operator, balances agree on
/// both sides, settlement lines balance, and the transactions read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_up_pay_and_balance() {
    for backend in backends() {
        let world = WalletWorld::start(backend).await;
        let mut client = world.client.clone();
        let topped = client
            .top_up(top_up("tu-1", RICH, 50_000))
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        assert_eq!(status_of(&topped), pb::WalletTransactionStatus::Completed);
        assert_eq!(topped.balance_after, twd(150_000));
        assert_eq!(
            topped.wallet.as_ref().unwrap().display_id,
            "************0001"
        );
        assert!(!topped.operator_reference.is_empty());
        assert_lines_balance(&world, &topped.transaction_id, -50_000).await;

        let barcode = Some(pb::WalletRef {
            wallet_operator_id: "ICASH".to_owned(),
            id: Some(pb::wallet_ref::Id::MemberBarcode(BARCODE.to_owned())),
        });
        let paid = client
            .pay(pay("pay-1", barcode.clone(), 20_000))
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        assert_eq!(status_of(&paid), pb::WalletTransactionStatus::Completed);
        assert_eq!(paid.balance_after, twd(130_000));
        assert_eq!(paid.pos_reference, "R-42");
        assert_lines_balance(&world, &paid.transaction_id, 20_000).await;
        // A retry with the same barcode replays (the barcode is compared by
        // its keyed digest); another barcode under the key is refused.
        let again = client.pay(pay("pay-1", barcode, 20_000)).await.unwrap();
        assert_eq!(
            again.metadata().get("posgate-idempotent-replay").unwrap(),
            "true"
        );
        let other = Some(pb::WalletRef {
            wallet_operator_id: "ICASH".to_owned(),
            id: Some(pb::wallet_ref::Id::MemberBarcode(
                "MEMBER-XYZ-0002".to_owned(),
            )),
        });
        let error = client.pay(pay("pay-1", other, 20_000)).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::AlreadyExists);
        assert_eq!(world.balance(RICH), 130_000);

        let balance = client
            .get_balance(pb::GetBalanceRequest {
                context: context("bal"),
                wallet: card(RICH),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(balance.balance, twd(130_000));
        assert_eq!(balance.limits.unwrap().max_balance, twd(1_000_000));

        let by_key = client
            .get_wallet_transaction(pb::GetWalletTransactionRequest {
                context: context("get"),
                lookup: Some(
                    pb::get_wallet_transaction_request::Lookup::CreatedClientRequestId(
                        "pay-1".to_owned(),
                    ),
                ),
            })
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        assert_eq!(by_key, world.transaction(&paid.transaction_id).await);
        assert_eq!(world.sim.stats().top_ups + world.sim.stats().payments, 2);
        world.stop().await;
    }
}

/// A short balance is a DECLINED answer, replayed for the same key without a
/// second call; the key with another amount is `ALREADY_EXISTS`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_balance_declined_and_replayed() {
    for backend in backends() {
        let world = WalletWorld::start(backend).await;
        let mut client = world.client.clone();
        let first = client
            .pay(pay("short-1", card(EMPTY), 5_000))
            .await
            .unwrap();
        assert!(first.metadata().get("posgate-idempotent-replay").is_none());
        let first = first.into_inner().transaction.unwrap();
        assert_eq!(status_of(&first), pb::WalletTransactionStatus::Declined);
        assert_eq!(
            first.decline_reason,
            pb::WalletDeclineReason::InsufficientBalance as i32
        );
        assert!(!first.response_text.is_empty());
        assert!(
            world
                .gw
                .store()
                .settlement_lines(&first.transaction_id)
                .await
                .unwrap()
                .is_empty()
        );

        let again = client
            .pay(pay("short-1", card(EMPTY), 5_000))
            .await
            .unwrap();
        assert_eq!(
            again.metadata().get("posgate-idempotent-replay").unwrap(),
            "true"
        );
        assert_eq!(again.into_inner().transaction.unwrap(), first);
        assert_eq!(
            world.sim.stats().payments,
            1,
            "the replay made no second operator call"
        );

        let error = client
            .pay(pay("short-1", card(EMPTY), 6_000))
            .await
            .unwrap_err();
        assert_eq!(error.code(), tonic::Code::AlreadyExists);
        world.stop().await;
    }
}

/// Refunds: partial refund completes and updates the payment; more than
/// what remains, and refunds of a top-up, are refused before the operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_bounded_by_the_payment() {
    for backend in backends() {
        let world = WalletWorld::start(backend).await;
        let mut client = world.client.clone();
        let paid = client
            .pay(pay("p", card(RICH), 30_000))
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        let refund = |key: &str, id: &str, amount| pb::WalletRefundRequest {
            context: context(key),
            original_transaction_id: id.to_owned(),
            amount: twd(amount),
            reason: "customer returned goods".to_owned(),
        };
        let answer = client
            .refund(refund("r1", &paid.transaction_id, 10_000))
            .await
            .unwrap()
            .into_inner();
        let refunded = answer.refund.unwrap();
        assert_eq!(status_of(&refunded), pb::WalletTransactionStatus::Completed);
        let original = answer.original.unwrap();
        assert_eq!(original.refunded_amount, twd(10_000));
        assert_eq!(
            original.refund_transaction_ids,
            vec![refunded.transaction_id.clone()]
        );
        assert_lines_balance(&world, &refunded.transaction_id, -10_000).await;
        assert_eq!(world.balance(RICH), 80_000);

        let error = client
            .refund(refund("r2", &paid.transaction_id, 20_001))
            .await
            .unwrap_err();
        assert_eq!(
            (error.code(), error_reason(&error).as_str()),
            (tonic::Code::FailedPrecondition, "REFUND_EXCEEDS_REMAINING")
        );
        let topped = client
            .top_up(top_up("t", RICH, 10_000))
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        let error = client
            .refund(refund("r3", &topped.transaction_id, 100))
            .await
            .unwrap_err();
        assert_eq!(error_reason(&error), "NOT_REFUNDABLE");
        assert_eq!(world.sim.stats().refunds, 1);
        world.stop().await;
    }
}

/// Answers with a bad signature are never trusted: the POS hears
/// `OUTCOME_UNKNOWN`, the store-and-forward worker reverses the top-up at the
/// operator (which had applied it), and a retry then gets REVERSED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_outcome_is_reversed() {
    for backend in backends() {
        let world = WalletWorld::start(backend).await;
        let mut client = world.client.clone();
        world.sim.set_faults(FaultConfig {
            bad_signature: 1.0,
            ..FaultConfig::default()
        });
        let error = client
            .top_up(top_up("lost-1", RICH, 30_000))
            .await
            .unwrap_err();
        assert_eq!(
            (error.code(), error_reason(&error).as_str()),
            (tonic::Code::Unavailable, "OUTCOME_UNKNOWN")
        );
        assert_eq!(world.balance(RICH), 130_000, "the operator applied it once");
        let again = client
            .top_up(top_up("lost-1", RICH, 30_000))
            .await
            .unwrap_err();
        assert_eq!(error_reason(&again), "OUTCOME_UNKNOWN");

        world.sim.set_faults(FaultConfig::default());
        let started = std::time::Instant::now();
        let reversed = loop {
            let answer = client.top_up(top_up("lost-1", RICH, 30_000)).await;
            if let Ok(answer) = answer {
                break answer.into_inner().transaction.unwrap();
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "reversal not delivered"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(status_of(&reversed), pb::WalletTransactionStatus::Reversed);
        assert_eq!(world.balance(RICH), 100_000, "reversed at the operator");
        assert!(
            world
                .gw
                .store()
                .settlement_lines(&reversed.transaction_id)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(world.gw.store().wallet_saf_open().await.unwrap(), 0);
        assert!(world.sim.entry(&reversed.transaction_id).unwrap().reversed);
        world.stop().await;
    }
}

/// The operator refuses requests whose signature does not verify with the
/// key it holds for posgate: 401, nothing moves, the POS gets DECLINED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signature_refused_by_operator() {
    for backend in backends() {
        let other = public_of("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let world = WalletWorld::start_trusting(backend, other).await;
        let mut client = world.client.clone();
        let answer = client
            .top_up(top_up("sig-1", RICH, 10_000))
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        assert_eq!(status_of(&answer), pb::WalletTransactionStatus::Declined);
        assert_eq!(answer.operator_response_code, "HTTP401");
        assert_eq!(world.balance(RICH), 100_000);
        assert!(world.sim.stats().unauthorized >= 1);
        assert_eq!(world.sim.stats().top_ups, 0);
        world.stop().await;
    }
}

/// Bad input names the field and stores nothing; an unreachable operator
/// is `UNAVAILABLE` `PARTNER_UNAVAILABLE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_operator_down() {
    for backend in backends() {
        let world = WalletWorld::start(backend).await;
        let mut client = world.client.clone();
        let before = world.gw.store().row_counts().await.unwrap();
        let cases: Vec<(pb::TopUpRequest, &str)> = vec![
            (top_up("b1", "12345", 10_000), "wallet.card_number"),
            (top_up("b2", RICH, 10_050), "amount.amount_minor"),
            (top_up("b3", RICH, 2_000_000), "amount.amount_minor"),
            (
                pb::TopUpRequest {
                    amount: Some(pb::Money {
                        amount_minor: 10_000,
                        currency: "JPY".to_owned(),
                    }),
                    ..top_up("b4", RICH, 0)
                },
                "amount.currency",
            ),
            (
                pb::TopUpRequest {
                    wallet: Some(pb::WalletRef {
                        wallet_operator_id: "NOPE".to_owned(),
                        id: Some(pb::wallet_ref::Id::CardNumber(RICH.to_owned())),
                    }),
                    ..top_up("b5", RICH, 10_000)
                },
                "wallet.wallet_operator_id",
            ),
            (
                pb::TopUpRequest {
                    funding: None,
                    ..top_up("b6", RICH, 10_000)
                },
                "funding",
            ),
        ];
        for (request, field) in cases {
            let error = client.top_up(request).await.unwrap_err();
            assert_eq!(error.code(), tonic::Code::InvalidArgument, "{field}");
            assert!(
                super::support::bad_request_fields(&error).contains(&field.to_owned()),
                "{field}: {error:?}"
            );
        }
        assert_eq!(world.gw.store().row_counts().await.unwrap(), before);
        assert_eq!(world.sim.stats().requests, 0);

        let WalletWorld {
            gw,
            sim,
            mut client,
            ..
        } = world;
        sim.shutdown().await;
        let error = client
            .pay(pay("down-1", card(RICH), 100))
            .await
            .unwrap_err();
        assert_eq!(
            (error.code(), error_reason(&error).as_str()),
            (tonic::Code::Unavailable, "PARTNER_UNAVAILABLE")
        );
        gw.stop().await;
    }
}

/// An unknown outcome survives a restart: the gateway stops while the
/// reversal is still failing (the operator's answers do not verify), and a
/// new gateway on the same database delivers it from the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reversal_survives_restart() {
    for backend in backends() {
        let world = WalletWorld::start(backend).await;
        let mut client = world.client.clone();
        world.sim.set_faults(FaultConfig {
            bad_signature: 1.0,
            ..FaultConfig::default()
        });
        let error = client
            .pay(pay("lost-2", card(RICH), 25_000))
            .await
            .unwrap_err();
        assert_eq!(error_reason(&error), "OUTCOME_UNKNOWN");
        assert_eq!(world.balance(RICH), 75_000, "the operator applied it once");
        let WalletWorld { gw, sim, extra, .. } = world;
        let db = gw.stop_keeping_db().await;
        assert_eq!(
            db.store().await.wallet_saf_open().await.unwrap(),
            1,
            "the reversal is queued in the database"
        );

        sim.set_faults(FaultConfig::default());
        let gw =
            TestGateway::start_with(db, utc("2026-11-23T03:05:00Z"), OPEN_LIMITS, |_| extra).await;
        let mut client = WalletServiceClient::new(gw.channel.clone());
        let started = std::time::Instant::now();
        let reversed = loop {
            if let Ok(answer) = client.pay(pay("lost-2", card(RICH), 25_000)).await {
                break answer.into_inner().transaction.unwrap();
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "reversal not delivered after restart"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(status_of(&reversed), pb::WalletTransactionStatus::Reversed);
        assert_eq!(sim.ledger().wallets[RICH].balance_minor, 100_000);
        assert_eq!(gw.store().wallet_saf_open().await.unwrap(), 0);
        gw.stop().await;
        sim.shutdown().await;
    }
}

/// Throughput of `TopUp` and `Pay` through the gateway with the simulator
/// answering at once (`--ignored`; prints its numbers). Each call is two
/// durable commits at the gateway and one signed HTTPS round trip.
#[allow(clippy::cast_precision_loss)] // Call counts and seconds, printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand: cargo test --release -p posgate --test it wallet_throughput -- --ignored --nocapture"]
async fn wallet_throughput() {
    const CALLS: usize = 4_000;
    const CONCURRENCY: usize = 64;
    for backend in backends() {
        let world = WalletWorld::start(backend).await;
        // Warm the pools (gRPC channel, HTTPS connections to the operator).
        for index in 0..CONCURRENCY {
            world
                .client
                .clone()
                .top_up(top_up(&format!("warm-{index}"), ROOMY, 10_000))
                .await
                .unwrap();
        }
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let started = std::time::Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..CONCURRENCY {
            let (mut client, next) = (world.client.clone(), std::sync::Arc::clone(&next));
            tasks.push(tokio::spawn(async move {
                let mut latencies_us = Vec::new();
                loop {
                    let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if index >= CALLS {
                        return latencies_us;
                    }
                    let key = format!("load-{index}");
                    let call = std::time::Instant::now();
                    let status = if index % 2 == 0 {
                        client
                            .top_up(top_up(&key, ROOMY, 10_000))
                            .await
                            .unwrap()
                            .into_inner()
                            .transaction
                            .unwrap()
                            .status
                    } else {
                        client
                            .pay(pay(&key, card(ROOMY), 10_000))
                            .await
                            .unwrap()
                            .into_inner()
                            .transaction
                            .unwrap()
                            .status
                    };
                    assert_eq!(status, pb::WalletTransactionStatus::Completed as i32);
                    latencies_us
                        .push(u64::try_from(call.elapsed().as_micros()).unwrap_or(u64::MAX));
                }
            }));
        }
        let mut latencies_us = Vec::new();
        for task in tasks {
            latencies_us.extend(task.await.unwrap());
        }
        let elapsed = started.elapsed();
        latencies_us.sort_unstable();
        // Percentiles by rank: index = (n - 1) * percent / 100.
        let at = |percent: usize| latencies_us[(latencies_us.len() - 1) * percent / 100];
        println!(
            "wallet throughput ({backend:?}): {CALLS} TopUp/Pay calls, concurrency {CONCURRENCY}: {:.0} calls/s; latency p50 {} us, p99 {} us",
            CALLS as f64 / elapsed.as_secs_f64(),
            at(50),
            at(99),
        );
        let totals = world.sim.ledger().totals;
        assert_eq!(
            totals.top_ups_minor - totals.payments_minor,
            10_000 * CONCURRENCY as i64
        );
        world.stop().await;
    }
}

/// A terminal acts only for itself: another terminal's context is
/// `PERMISSION_DENIED`, and nothing reaches the operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_acts_only_for_itself() {
    let world = WalletWorld::start(Backend::Sqlite).await;
    let other = super::support::terminal("S001", "T02");
    let mut client = WalletServiceClient::new(world.gw.channel_as(&other));
    let error = client
        .top_up(top_up("perm-1", RICH, 10_000))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::PermissionDenied);
    assert_eq!(world.sim.stats().requests, 0);
    world.stop().await;
}

/// Kills the child on drop, so a failing test leaves no process behind.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `posgate serve` config for `db` on a free port, with `extra` sections,
/// written into the database's directory: the dev PKI, the port and the file.
pub fn serve_config(db: &TestDb, extra: &str) -> (posgate::tls::DevPki, u16, std::path::PathBuf) {
    let dir = db.dir.path();
    let pki = posgate::tls::DevPki::generate(dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = super::support::config_text(&db.url, &pki, OPEN_LIMITS)
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))
        + extra;
    let config = dir.join("posgate.toml");
    std::fs::write(&config, text).unwrap();
    (pki, port, config)
}

pub fn serve(config: &Path) -> Child {
    Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_posgate"))
            .args(["serve", "--config"])
            .arg(config)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A channel as S001/T01 to a `posgate serve` child on `port`, once it serves.
pub async fn connect_channel(port: u16, pki: &posgate::tls::DevPki) -> Channel {
    let identity = super::support::terminal("S001", "T01");
    let endpoint = super::support::endpoint(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        pki,
        &super::support::issue(pki, &identity),
    );
    for _ in 0..200 {
        if let Ok(channel) = endpoint.connect().await {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("posgate serve did not come up within 10 s");
}

/// Retries a POS call with the same key (as a till would after
/// `UNAVAILABLE` or `ABORTED`) until it is answered, for at most `limit`.
pub async fn retry_until_answered<T, F, Fut>(limit: Duration, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let started = std::time::Instant::now();
    loop {
        assert!(
            started.elapsed() < limit,
            "the outcome settled within {limit:?}"
        );
        match call().await {
            Ok(answer) => return answer.into_inner(),
            Err(status) => {
                assert!(
                    matches!(
                        status.code(),
                        tonic::Code::Unavailable | tonic::Code::Aborted
                    ),
                    "{status:?}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// A `WalletService` client as S001/T01 to a `posgate serve` child on `port`.
pub async fn connect(port: u16, pki: &posgate::tls::DevPki) -> WalletServiceClient<Channel> {
    WalletServiceClient::new(connect_channel(port, pki).await)
}

/// SIGKILL of the gateway while the operator holds a top-up it has applied:
/// the restarted gateway finds the request it never finished, reverses it at
/// the operator, and the POS's retry learns it was `REVERSED`. No value moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_top_up_ends_reversed() {
    for backend in backends() {
        init_tracing();
        let db = TestDb::new(backend).await;
        let dir = db.dir.path().to_owned();
        write_test_keystore(&dir.join("keys.ks"), &dir.join("master.key"))
            .await
            .unwrap();
        let (server_tls, client_tls) = pki(&dir);
        let sim = WalletSim::start(sim_config(server_tls, public_of(PARTNER_API_SIGN_SEED)))
            .await
            .unwrap();
        // The operator applies the top-up and keeps quiet: the gateway waits.
        sim.set_faults(FaultConfig {
            no_response: 1.0,
            ..FaultConfig::default()
        });
        let (pki, port, config) = serve_config(&db, &wallet_config(&dir, &sim, &client_tls));

        let mut gateway = serve(&config);
        let mut client = connect(port, &pki).await;
        let request = top_up("kill-1", RICH, 40_000);
        let mut caller = client.clone();
        let attempt = request.clone();
        let in_flight = tokio::spawn(async move { caller.top_up(attempt).await });
        let started = std::time::Instant::now();
        while sim.stats().top_ups == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the top-up reached the operator"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            sim.ledger().wallets[RICH].balance_minor,
            140_000,
            "{backend:?}: applied"
        );
        // SIGKILL: no shutdown, no answer recorded.
        gateway.0.kill().unwrap();
        gateway.0.wait().unwrap();
        assert!(
            in_flight.await.unwrap().is_err(),
            "the POS never got an answer"
        );

        sim.set_faults(FaultConfig::default());
        let _restarted = serve(&config);
        client = connect(port, &pki).await;
        let settled = retry_until_answered(Duration::from_secs(40), || {
            let (mut client, request) = (client.clone(), request.clone());
            async move { client.top_up(request).await }
        })
        .await
        .transaction
        .unwrap();
        assert_eq!(
            status_of(&settled),
            pb::WalletTransactionStatus::Reversed,
            "{backend:?}"
        );
        assert_eq!(
            sim.ledger().wallets[RICH].balance_minor,
            100_000,
            "{backend:?}: nothing moved"
        );
        assert_eq!(sim.stats().reversals, 1);
        sim.shutdown().await;
    }
}

/// Top-ups and payments under a misbehaving operator (dropped connections
/// and answers whose signature does not verify, on requests and reversals
/// alike): once every POS retry has its final answer, each transaction
/// posgate calls COMPLETED is applied at the operator exactly once, every
/// other one moved nothing, and both books agree to the cent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn books_agree_under_faults() {
    const CALLS: usize = 120;
    const CONCURRENCY: usize = 8;
    for backend in backends() {
        let world = WalletWorld::start(backend).await;
        world.sim.set_faults(FaultConfig {
            drop_connection: 0.2,
            bad_signature: 0.2,
            seed: 7,
            ..FaultConfig::default()
        });
        let request = |index: usize| -> (String, bool, i64) {
            // Every fifth call pays from the empty wallet: declined.
            (
                format!("chaos-{index}"),
                index.is_multiple_of(2),
                if index.is_multiple_of(5) { 0 } else { 10_000 },
            )
        };
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..CONCURRENCY {
            let (mut client, next) = (world.client.clone(), std::sync::Arc::clone(&next));
            let clock = std::sync::Arc::clone(&world.gw.clock);
            tasks.push(tokio::spawn(async move {
                let mut finals = Vec::new();
                loop {
                    let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if index >= CALLS {
                        return finals;
                    }
                    let (key, is_top_up, amount) = request(index);
                    let started = std::time::Instant::now();
                    let answer = loop {
                        let result = if is_top_up {
                            client
                                .top_up(top_up(&key, ROOMY, 10_000))
                                .await
                                .map(|a| a.into_inner().transaction)
                        } else if amount == 0 {
                            client
                                .pay(pay(&key, card(EMPTY), 10_000))
                                .await
                                .map(|a| a.into_inner().transaction)
                        } else {
                            client
                                .pay(pay(&key, card(ROOMY), amount))
                                .await
                                .map(|a| a.into_inner().transaction)
                        };
                        match result {
                            Ok(transaction) => break transaction.unwrap(),
                            Err(status) => {
                                assert!(
                                    matches!(
                                        status.code(),
                                        tonic::Code::Unavailable | tonic::Code::Aborted
                                    ),
                                    "{status:?}"
                                );
                                assert!(
                                    started.elapsed() < Duration::from_secs(60),
                                    "{key} never settled"
                                );
                                // The gateway runs on a hand-set clock: move it on so
                                // reversal retries and cut-off recoveries fall due.
                                let now = posgate_core::model::clock::Clock::now(clock.as_ref());
                                clock.set(now + chrono::Duration::seconds(1));
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    };
                    finals.push(answer);
                }
            }));
        }
        let mut finals = Vec::new();
        for task in tasks {
            finals.extend(task.await.unwrap());
        }
        assert_eq!(finals.len(), CALLS);
        assert_eq!(world.gw.store().wallet_saf_open().await.unwrap(), 0);
        let mut net_minor = 0;
        let mut counts = std::collections::BTreeMap::new();
        for transaction in &finals {
            let status = status_of(transaction);
            *counts.entry(format!("{status:?}")).or_insert(0) += 1;
            let entry = world.sim.entry(&transaction.transaction_id);
            let applied = entry
                .as_ref()
                .is_some_and(|entry| entry.completed && !entry.reversed);
            match status {
                pb::WalletTransactionStatus::Completed => {
                    assert!(
                        applied,
                        "{transaction:?} completed at posgate, not at the operator"
                    );
                    let amount = transaction.amount.as_ref().unwrap().amount_minor;
                    net_minor += if transaction.r#type == pb::WalletTransactionType::TopUp as i32 {
                        amount
                    } else {
                        -amount
                    };
                }
                pb::WalletTransactionStatus::Declined | pb::WalletTransactionStatus::Reversed => {
                    assert!(!applied, "{transaction:?} moved value at the operator");
                }
                other => panic!("not final: {other:?}"),
            }
        }
        let totals = world.sim.ledger().totals;
        assert_eq!(
            totals.top_ups_minor - totals.payments_minor,
            net_minor,
            "{counts:?}"
        );
        assert_eq!(world.balance(ROOMY), 100_000_000 + net_minor, "{counts:?}");
        assert!(
            counts.contains_key("Reversed") || world.sim.stats().faults_injected == 0,
            "{counts:?}"
        );
        println!(
            "{backend:?}: {counts:?}, net {net_minor} minor units, {} faults",
            world.sim.stats().faults_injected
        );
        world.stop().await;
    }
}
