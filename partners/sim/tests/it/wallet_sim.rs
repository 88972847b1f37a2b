//! The wallet simulator over real HTTPS with mutual TLS, driven by the
//! signed partner API client: ledger rules, signature refusals (401),
//! idempotency, reversals, faults, timeouts and the circuit breaker.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use http_body_util::{BodyExt as _, Full};
use posgate_hsm::{ClearKey, Hsm, KeySpec, SoftwareHsm};
use posgate_partners::http::{
    BreakerState, CallError, ClientSettings, PartnerClient, PartnerRequest, RequestParts, Retry,
    Signer, TlsFiles, Verifier,
};
use posgate_partners::wallet::WalletCallError;
use posgate_partners::wallet::api::{
    self, Channel, DeclineCode, Funding, Money, PaymentRequest, RefundRequest, ResultStatus,
    ReversalStatus, TopUpRequest, TransactionState, WalletRef,
};
use posgate_partners::wallet::client::WalletOperatorClient;
use posgate_sims::wallet::{
    ClientKeyConfig, FaultConfig, WalletConfig, WalletSim, WalletSimConfig,
};
use tempfile::TempDir;

/// posgate's test signing key (the gateway's `partner-api.signing` test key,
/// RFC 8032 section 7.1 test 3) and key id. TEST KEY ONLY.
pub const POSGATE_SEED_HEX: &str =
    "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7";
pub const POSGATE_KEY_ID: &str = "posgate-test";
/// The simulator's test signing key and key id. TEST KEY ONLY.
pub const SIM_SEED_HEX: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
pub const SIM_KEY_ID: &str = "wallet-sim-test";
const SIGNING_LABEL: &str = "posgate.partner-api";

pub const RICH: &str = "1000000000000001";
pub const EMPTY: &str = "1000000000000002";
pub const BLOCKED: &str = "1000000000000003";
pub const BARCODE: &str = "MEMBER-ABC-0001";

pub fn public_of(seed_hex: &str) -> [u8; 32] {
    use ring::signature::KeyPair as _;
    let seed = hex::decode(seed_hex).unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    pair.public_key().as_ref().try_into().unwrap()
}

/// A CA, a server certificate for 127.0.0.1/localhost and a client
/// certificate, as PEM files in `dir`, with `prefix` on the names.
pub fn pki(dir: &Path, prefix: &str) -> (TlsFiles, TlsFiles) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct subject names: OpenSSL (schemathesis) takes a leaf whose
    // subject equals its issuer's for self-signed.
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{prefix}posgate test CA"));
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let write = |name: &str, text: String| {
        let path = dir.join(format!("{prefix}{name}"));
        std::fs::write(&path, text).unwrap();
        path
    };
    let ca = write("ca.pem", ca_cert.pem());
    let issue = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{prefix}{name}"));
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).unwrap();
        (
            write(&format!("{name}.pem"), cert.pem()),
            write(&format!("{name}.key"), key.serialize_pem()),
        )
    };
    let (server_cert, server_key) = issue(
        vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
        ExtendedKeyUsagePurpose::ServerAuth,
        "server",
    );
    let (client_cert, client_key) = issue(
        vec!["posgate.test".to_owned()],
        ExtendedKeyUsagePurpose::ClientAuth,
        "client",
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

pub fn sim_config(server_tls: TlsFiles) -> WalletSimConfig {
    WalletSimConfig {
        listen: "127.0.0.1:0".to_owned(),
        tls: server_tls,
        operator_name: "i-Cash".to_owned(),
        currency: "TWD".to_owned(),
        signing_key_hex: SIM_SEED_HEX.to_owned().into(),
        key_id: SIM_KEY_ID.to_owned(),
        client_keys: vec![ClientKeyConfig {
            key_id: POSGATE_KEY_ID.to_owned(),
            public_key_hex: hex::encode(public_of(POSGATE_SEED_HEX)),
        }],
        wallets: vec![
            WalletConfig {
                account_id: RICH.to_owned(),
                member_barcode: Some(BARCODE.to_owned().into()),
                balance_minor: 100_000,
                max_balance_minor: 1_000_000,
                max_top_up_minor: Some(500_000),
                max_payment_minor: Some(300_000),
                blocked: false,
            },
            WalletConfig {
                account_id: EMPTY.to_owned(),
                member_barcode: None,
                balance_minor: 0,
                max_balance_minor: 100_000,
                max_top_up_minor: None,
                max_payment_minor: None,
                blocked: false,
            },
            WalletConfig {
                account_id: BLOCKED.to_owned(),
                member_barcode: None,
                balance_minor: 5_000,
                max_balance_minor: 100_000,
                max_top_up_minor: None,
                max_payment_minor: None,
                blocked: true,
            },
        ],
        faults: FaultConfig::default(),
        admin_listen: None,
    }
}

pub async fn posgate_signer(seed_hex: &str, key_id: &str) -> Signer {
    let hsm = SoftwareHsm::in_memory();
    hsm.import_key(
        SIGNING_LABEL,
        KeySpec::ED25519,
        ClearKey::new(hex::decode(seed_hex).unwrap()),
    )
    .await
    .unwrap();
    Signer::new(Arc::new(hsm), SIGNING_LABEL, key_id)
}

pub fn sim_verifier() -> Arc<Verifier> {
    Arc::new(Verifier::new(HashMap::from([(
        SIM_KEY_ID.to_owned(),
        public_of(SIM_SEED_HEX),
    )])))
}

pub struct Fixture {
    pub _dir: TempDir,
    pub sim: WalletSim,
    pub client_tls: TlsFiles,
    pub wallet: WalletOperatorClient,
}

pub async fn start(tune: impl FnOnce(&mut ClientSettings)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (server_tls, client_tls) = pki(dir.path(), "");
    let sim = WalletSim::start(sim_config(server_tls)).await.unwrap();
    let wallet = client_for(&sim, &client_tls, tune).await;
    Fixture {
        _dir: dir,
        sim,
        client_tls,
        wallet,
    }
}

async fn client_for(
    sim: &WalletSim,
    tls: &TlsFiles,
    tune: impl FnOnce(&mut ClientSettings),
) -> WalletOperatorClient {
    let mut settings = ClientSettings::new(
        "wallet:ICASH",
        format!("https://{}", sim.addr()),
        tls.clone(),
    );
    settings.request_timeout = Duration::from_secs(5);
    tune(&mut settings);
    let signer = posgate_signer(POSGATE_SEED_HEX, POSGATE_KEY_ID).await;
    WalletOperatorClient::new(PartnerClient::new(settings, signer, sim_verifier()).unwrap())
}

pub fn new_id() -> String {
    uuid_v4()
}

/// A random lower-case UUID (v4 layout) from the system RNG.
fn uuid_v4() -> String {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0_u8; 16];
    ring::rand::SystemRandom::new().fill(&mut bytes).unwrap();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

pub fn channel() -> Channel {
    Channel {
        store_id: "S001".into(),
        terminal_id: "T01".into(),
    }
}

pub fn top_up(account: &str, amount_minor: i64) -> TopUpRequest {
    TopUpRequest {
        transaction_id: new_id(),
        wallet: WalletRef::account(account),
        amount: Money::new(amount_minor, "TWD"),
        funding: Funding::Cash,
        channel: channel(),
    }
}

pub fn payment(wallet: WalletRef, amount_minor: i64) -> PaymentRequest {
    PaymentRequest {
        transaction_id: new_id(),
        wallet,
        amount: Money::new(amount_minor, "TWD"),
        pos_reference: Some("R-1".into()),
        channel: channel(),
    }
}

fn balance_of(sim: &WalletSim, account: &str) -> i64 {
    sim.ledger().wallets[account].balance_minor
}

/// Books balance: opening + top-ups - payments + refunds = sum of balances.
fn assert_books_balance(sim: &WalletSim) {
    let totals = sim.ledger().totals;
    assert_eq!(
        totals.opening_minor + totals.top_ups_minor - totals.payments_minor + totals.refunds_minor,
        totals.balances_minor,
        "{totals:?}"
    );
}

/// Top-up, payment and balance move the ledger; every limit declines with its own code.
#[tokio::test]
async fn ledger_rules_over_https() {
    let fixture = start(|_| {}).await;
    let wallet = &fixture.wallet;
    let result = wallet.top_up(&top_up(RICH, 50_000)).await.unwrap();
    assert_eq!(result.status, ResultStatus::Completed);
    assert_eq!(result.balance_after, Some(Money::new(150_000, "TWD")));
    assert_eq!(
        result.wallet.as_ref().unwrap().display_id,
        "************0001"
    );
    let result = wallet
        .pay(&payment(WalletRef::barcode(BARCODE), 20_000))
        .await
        .unwrap();
    assert_eq!(result.balance_after, Some(Money::new(130_000, "TWD")));

    let declines = [
        (
            wallet
                .pay(&payment(WalletRef::account(RICH), 300_001))
                .await,
            DeclineCode::TransactionLimitExceeded,
        ),
        (
            wallet.pay(&payment(WalletRef::account(EMPTY), 1)).await,
            DeclineCode::InsufficientBalance,
        ),
        (
            wallet.pay(&payment(WalletRef::account(BLOCKED), 1)).await,
            DeclineCode::WalletBlocked,
        ),
        (
            wallet.top_up(&top_up(EMPTY, 100_001)).await,
            DeclineCode::BalanceLimitExceeded,
        ),
        (
            wallet.top_up(&top_up("9999", 100)).await,
            DeclineCode::WalletNotFound,
        ),
        (
            wallet
                .pay(&payment(WalletRef::barcode("UNKNOWN-CODE"), 1))
                .await,
            DeclineCode::WalletNotFound,
        ),
    ];
    for (result, code) in declines {
        let result = result.unwrap();
        assert_eq!(
            (result.status, result.decline_code),
            (ResultStatus::Declined, Some(code))
        );
        assert!(result.balance_after.is_none());
    }
    let mut wrong_currency = top_up(RICH, 100);
    wrong_currency.amount.currency = "JPY".into();
    let result = wallet.top_up(&wrong_currency).await.unwrap();
    assert_eq!(result.decline_code, Some(DeclineCode::CurrencyMismatch));

    let balance = wallet.balance(&WalletRef::barcode(BARCODE)).await.unwrap();
    assert_eq!(balance.balance, Money::new(130_000, "TWD"));
    assert_eq!(balance.limits.max_payment, Some(Money::new(300_000, "TWD")));
    assert!(matches!(
        wallet.balance(&WalletRef::account("nope")).await,
        Err(WalletCallError::Rejected { status: 404, .. })
    ));
    assert_eq!(balance_of(&fixture.sim, EMPTY), 0);
    assert_eq!(balance_of(&fixture.sim, BLOCKED), 5_000);
    assert_books_balance(&fixture.sim);
    fixture.sim.shutdown().await;
}

/// Refunds are bounded by the payment; reversals apply once, and a reversal
/// that arrives first blocks its late original.
#[tokio::test]
async fn refunds_and_reversals() {
    let fixture = start(|_| {}).await;
    let wallet = &fixture.wallet;
    let paid = payment(WalletRef::account(RICH), 30_000);
    wallet.pay(&paid).await.unwrap();
    let refund = |amount_minor| RefundRequest {
        transaction_id: new_id(),
        original_transaction_id: paid.transaction_id.clone(),
        amount: Money::new(amount_minor, "TWD"),
        channel: channel(),
    };
    assert_eq!(
        wallet.refund(&refund(10_000)).await.unwrap().status,
        ResultStatus::Completed
    );
    let too_much = wallet.refund(&refund(20_001)).await.unwrap();
    assert_eq!(
        too_much.decline_code,
        Some(DeclineCode::RefundExceedsPayment)
    );
    assert_eq!(balance_of(&fixture.sim, RICH), 80_000);
    let mut unknown = refund(1);
    unknown.original_transaction_id = new_id();
    assert!(matches!(
        wallet.refund(&unknown).await,
        Err(WalletCallError::Rejected { status: 404, .. })
    ));

    let credit = top_up(RICH, 5_000);
    wallet.top_up(&credit).await.unwrap();
    assert_eq!(balance_of(&fixture.sim, RICH), 85_000);
    for _ in 0..2 {
        let reversed = wallet.reverse(&credit.transaction_id).await.unwrap();
        assert_eq!(reversed.status, ReversalStatus::Reversed);
        assert_eq!(reversed.balance_after, Some(Money::new(80_000, "TWD")));
    }
    let status = wallet
        .status(&credit.transaction_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.status, TransactionState::Reversed);
    assert!(wallet.status(&new_id()).await.unwrap().is_none());

    let late = top_up(RICH, 7_000);
    assert_eq!(
        wallet.reverse(&late.transaction_id).await.unwrap().status,
        ReversalStatus::NotApplied
    );
    let result = wallet.top_up(&late).await.unwrap();
    assert_eq!(result.decline_code, Some(DeclineCode::AlreadyReversed));
    assert_eq!(balance_of(&fixture.sim, RICH), 80_000);
    assert_books_balance(&fixture.sim);
    fixture.sim.shutdown().await;
}

/// Sends a raw POST to a simulator with the given headers; returns status, headers, body.
pub async fn raw_post(
    addr: SocketAddr,
    client_tls: &TlsFiles,
    path: &str,
    headers: HeaderMap,
    body: &[u8],
) -> (u16, HeaderMap, Bytes) {
    let tls = posgate_partners::http::tls::client_config(client_tls).unwrap();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(https);
    let mut request = hyper::Request::builder()
        .method(Method::POST)
        .uri(format!("https://{addr}{path}"))
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    *request.headers_mut() = headers;
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    (
        parts.status.as_u16(),
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

async fn raw(
    fixture: &Fixture,
    path: &str,
    headers: HeaderMap,
    body: &[u8],
) -> (u16, HeaderMap, Bytes) {
    raw_post(fixture.sim.addr(), &fixture.client_tls, path, headers, body).await
}

/// Headers of a POST to `path` at `addr` signed by `signer` at `created_s`,
/// with Idempotency-Key `raw-key-1`.
pub async fn signed_post_headers(
    addr: SocketAddr,
    path: &str,
    signer: &Signer,
    body: &[u8],
    created_s: i64,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("idempotency-key", HeaderValue::from_static("raw-key-1"));
    let uri = format!("https://{addr}{path}");
    signer
        .sign_request("POST", &uri, &mut headers, body, created_s)
        .await
        .unwrap();
    headers
}

async fn signed_headers(
    fixture: &Fixture,
    signer: &Signer,
    body: &[u8],
    created_s: i64,
) -> HeaderMap {
    signed_post_headers(
        fixture.sim.addr(),
        api::TOP_UPS_PATH,
        signer,
        body,
        created_s,
    )
    .await
}

/// Unsigned, wrongly keyed, tampered, stale and replayed requests get a
/// signed 401 problem and change nothing; the same request well signed works.
#[tokio::test]
async fn refuses_unsigned_bad_stale_and_replayed() {
    let fixture = start(|_| {}).await;
    let body = serde_json::to_vec(&top_up(RICH, 1_000)).unwrap();
    let signer = posgate_signer(POSGATE_SEED_HEX, POSGATE_KEY_ID).await;
    let now = posgate_partners::http::unix_now_s();
    let stranger = posgate_signer(SIM_SEED_HEX, "stranger").await;
    let impostor = posgate_signer(SIM_SEED_HEX, POSGATE_KEY_ID).await;

    let mut unsigned = HeaderMap::new();
    unsigned.insert("idempotency-key", HeaderValue::from_static("raw-key-1"));
    let mut tampered = signed_headers(&fixture, &signer, &body, now).await;
    tampered.insert("idempotency-key", HeaderValue::from_static("raw-key-2"));
    let cases = [
        ("unsigned", unsigned),
        (
            "unknown key id",
            signed_headers(&fixture, &stranger, &body, now).await,
        ),
        (
            "wrong key",
            signed_headers(&fixture, &impostor, &body, now).await,
        ),
        ("tampered", tampered),
        (
            "stale",
            signed_headers(&fixture, &signer, &body, now - 301).await,
        ),
        (
            "future",
            signed_headers(&fixture, &signer, &body, now + 120).await,
        ),
    ];
    for (what, headers) in cases {
        let (status, response_headers, response_body) =
            raw(&fixture, api::TOP_UPS_PATH, headers, &body).await;
        assert_eq!(status, 401, "{what}");
        assert_eq!(
            response_headers["content-type"], "application/problem+json",
            "{what}"
        );
        let problem: api::Problem = serde_json::from_slice(&response_body).unwrap();
        assert_eq!(problem.status, 401);
        assert!(
            response_headers.contains_key("signature"),
            "{what}: 401 is signed too"
        );
    }
    // A tampered body under a valid signature: the digest no longer matches.
    let good = signed_headers(&fixture, &signer, &body, now).await;
    let mut other_body = body.clone();
    other_body.push(b' ');
    assert_eq!(
        raw(&fixture, api::TOP_UPS_PATH, good.clone(), &other_body)
            .await
            .0,
        401
    );
    assert_eq!(fixture.sim.ledger().totals.completed, 0);
    assert_eq!(fixture.sim.stats().unauthorized, 7);

    let fresh = signed_headers(&fixture, &signer, &body, now).await;
    let (status, headers, answer) = raw(&fixture, api::TOP_UPS_PATH, fresh.clone(), &body).await;
    assert_eq!(status, 200);
    // The answer is signed by the simulator and bound to this request.
    let uri = format!("https://{}{}", fixture.sim.addr(), api::TOP_UPS_PATH);
    let request = RequestParts {
        method: "POST",
        target_uri: &uri,
        headers: &fresh,
    };
    sim_verifier()
        .verify_response(200, &headers, &answer, request, now)
        .unwrap();
    // Replaying the exact signed request is refused even though the key matches.
    assert_eq!(raw(&fixture, api::TOP_UPS_PATH, fresh, &body).await.0, 401);
    assert_eq!(fixture.sim.ledger().totals.completed, 1);
    fixture.sim.shutdown().await;
}

/// The same Idempotency-Key and body replays the first answer without a
/// second application; a different body under the key is 409.
#[tokio::test]
async fn idempotency_key_replays_and_conflicts() {
    let fixture = start(|_| {}).await;
    let request = top_up(RICH, 10_000);
    let first = fixture.wallet.top_up(&request).await.unwrap();
    let second = fixture.wallet.top_up(&request).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(balance_of(&fixture.sim, RICH), 110_000);
    assert_eq!(fixture.sim.stats().idempotent_replays, 1);
    let mut changed = request.clone();
    changed.amount.amount_minor = 20_000;
    assert!(matches!(
        fixture.wallet.top_up(&changed).await,
        Err(WalletCallError::Rejected { status: 409, .. })
    ));
    assert_eq!(balance_of(&fixture.sim, RICH), 110_000);
    fixture.sim.shutdown().await;
}

/// A dropped connection after the operator applied a payment: the client
/// retries with the same key and gets the stored answer; applied once.
#[tokio::test]
async fn dropped_answer_is_retried_idempotently() {
    let fixture = start(|_| {}).await;
    fixture.sim.set_faults(FaultConfig {
        drop_connection: 1.0,
        max_faults: Some(1),
        ..FaultConfig::default()
    });
    // Only the first attempt is faulted: the retry is answered from the idempotency store.
    let response = fixture
        .wallet
        .partner()
        .call(PartnerRequest {
            method: Method::POST,
            path: api::PAYMENTS_PATH,
            body: serde_json::to_vec(&payment(WalletRef::account(RICH), 1_000)).unwrap(),
            idempotency_key: Some("drop-1"),
            retry: Retry::Idempotent,
        })
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.attempts, 2);
    assert_eq!(balance_of(&fixture.sim, RICH), 99_000);
    assert_eq!(fixture.sim.stats().payments, 1);
    assert_eq!(fixture.sim.stats().idempotent_replays, 1);
    fixture.sim.shutdown().await;
}

/// Answers with a bad signature are never trusted: the outcome is unknown
/// although the operator applied it once; a reversal undoes it.
#[tokio::test]
async fn bad_answer_signature_is_unknown_then_reversed() {
    let fixture = start(|_| {}).await;
    fixture.sim.set_faults(FaultConfig {
        bad_signature: 1.0,
        ..FaultConfig::default()
    });
    let request = top_up(RICH, 40_000);
    let error = fixture.wallet.top_up(&request).await.unwrap_err();
    assert!(
        matches!(&error, WalletCallError::OutcomeUnknown(reason) if reason.contains("signature")),
        "{error}"
    );
    assert_eq!(
        balance_of(&fixture.sim, RICH),
        140_000,
        "applied exactly once"
    );
    fixture.sim.set_faults(FaultConfig::default());
    let reversed = fixture
        .wallet
        .reverse(&request.transaction_id)
        .await
        .unwrap();
    assert_eq!(reversed.status, ReversalStatus::Reversed);
    assert_eq!(balance_of(&fixture.sim, RICH), 100_000);
    assert_books_balance(&fixture.sim);
    fixture.sim.shutdown().await;
}

/// No answer within the timeout is an unknown outcome, never a decline.
#[tokio::test]
async fn timeout_is_unknown() {
    let fixture = start(|settings| {
        settings.request_timeout = Duration::from_millis(300);
        settings.max_attempts = 2;
    })
    .await;
    fixture.sim.set_faults(FaultConfig {
        no_response: 1.0,
        ..FaultConfig::default()
    });
    let started = std::time::Instant::now();
    let error = fixture
        .wallet
        .pay(&payment(WalletRef::account(RICH), 500))
        .await
        .unwrap_err();
    assert!(
        matches!(error, WalletCallError::OutcomeUnknown(_)),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(balance_of(&fixture.sim, RICH), 99_500);
    fixture.sim.shutdown().await;
}

/// `decline_all` declines without touching the books.
#[tokio::test]
async fn decline_all_fault() {
    let fixture = start(|_| {}).await;
    fixture.sim.set_faults(FaultConfig {
        decline_all: Some("05".into()),
        ..FaultConfig::default()
    });
    let result = fixture.wallet.top_up(&top_up(RICH, 1_000)).await.unwrap();
    assert_eq!(
        (result.status, result.operator_response_code.as_str()),
        (ResultStatus::Declined, "05")
    );
    assert_eq!(balance_of(&fixture.sim, RICH), 100_000);
    fixture.sim.shutdown().await;
}

/// A partner that is down: nothing is sent (Unavailable), and after the
/// threshold the breaker opens and fails calls without touching the network.
#[tokio::test]
async fn breaker_opens_when_partner_down() {
    let fixture = start(|settings| {
        settings.breaker.failure_threshold = 2;
        settings.breaker.open_for = Duration::from_secs(60);
    })
    .await;
    let Fixture {
        sim, wallet, _dir, ..
    } = fixture;
    sim.shutdown().await;
    let error = wallet.top_up(&top_up(RICH, 100)).await.unwrap_err();
    assert!(matches!(error, WalletCallError::Unavailable(_)), "{error}");
    assert!(matches!(
        wallet.partner().breaker_state(),
        BreakerState::Open { .. }
    ));
    let started = std::time::Instant::now();
    let error = wallet.partner().call(PartnerRequest {
        method: Method::GET,
        path: "/v1/transactions/x",
        body: Vec::new(),
        idempotency_key: None,
        retry: Retry::Idempotent,
    });
    let error = error.await.unwrap_err();
    assert!(
        matches!(&error, CallError::Unavailable { reason, .. } if reason == "circuit open"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_millis(100));
}

/// A client certificate from another CA cannot connect: mutual TLS, nothing sent.
#[tokio::test]
async fn foreign_client_certificate_refused() {
    let fixture = start(|_| {}).await;
    let other = tempfile::tempdir().unwrap();
    let (_, mut foreign) = pki(other.path(), "other-");
    foreign.ca_cert = fixture.client_tls.ca_cert.clone();
    let wallet = client_for(&fixture.sim, &foreign, |_| {}).await;
    let error = wallet.top_up(&top_up(RICH, 100)).await.unwrap_err();
    assert!(
        matches!(
            error,
            WalletCallError::Unavailable(_) | WalletCallError::OutcomeUnknown(_)
        ),
        "{error}"
    );
    assert_eq!(fixture.sim.stats().requests, 0);
    assert_eq!(balance_of(&fixture.sim, RICH), 100_000);
    fixture.sim.shutdown().await;
}

/// The example config parses and validates, and its published public keys
/// match its seeds and the test seeds used here.
#[test]
fn example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/wallet-sim.example.toml");
    let config = WalletSimConfig::from_file(&path).unwrap();
    assert_eq!(config.signing_key_hex.expose(), SIM_SEED_HEX);
    assert_eq!(
        config.client_keys[0].public_key_hex,
        hex::encode(public_of(POSGATE_SEED_HEX))
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(&hex::encode(public_of(SIM_SEED_HEX))));
    assert_eq!(config.wallets.len(), 3);
    let debug = format!("{config:?}");
    assert!(!debug.contains(SIM_SEED_HEX), "the signing key is masked");
    assert!(
        !debug.contains("MEMBER-ABC-0001"),
        "member barcodes are masked"
    );
}

/// A call marked `Retry::Never` is sent once: after a dropped answer it is
/// an unknown outcome, with no second attempt (the partner saw one request).
#[tokio::test]
async fn non_idempotent_call_is_not_retried() {
    let fixture = start(|_| {}).await;
    fixture.sim.set_faults(FaultConfig {
        drop_connection: 1.0,
        max_faults: Some(1),
        ..FaultConfig::default()
    });
    let error = fixture
        .wallet
        .partner()
        .call(PartnerRequest {
            method: Method::POST,
            path: api::PAYMENTS_PATH,
            body: serde_json::to_vec(&payment(WalletRef::account(RICH), 1_000)).unwrap(),
            idempotency_key: Some("once-1"),
            retry: Retry::Never,
        })
        .await
        .unwrap_err();
    assert!(matches!(error, CallError::OutcomeUnknown { .. }), "{error}");
    assert_eq!(fixture.sim.stats().requests, 1);
    assert_eq!(balance_of(&fixture.sim, RICH), 99_000);
    fixture.sim.shutdown().await;
}

/// `GET /ledger` on the simulator's loopback admin address, as text.
pub async fn admin_get(addr: SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: sim\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// Issue 13 items 18 and 19: a reversal that would take a wallet below zero
/// (its top-up was spent) is refused, for good, and the balance never goes
/// negative; the books are readable from outside on the loopback admin
/// endpoint (`GET /ledger`), which refuses anything else and cannot be
/// bound off loopback.
#[tokio::test]
async fn spent_top_up_is_not_reversed_and_the_ledger_is_readable() {
    let dir = tempfile::tempdir().unwrap();
    let (server_tls, client_tls) = pki(dir.path(), "");
    let mut open_to_network = sim_config(server_tls.clone());
    open_to_network.admin_listen = Some("0.0.0.0:0".to_owned());
    assert!(WalletSim::start(open_to_network).await.is_err());
    let mut config = sim_config(server_tls);
    config.admin_listen = Some("127.0.0.1:0".to_owned());
    let sim = WalletSim::start(config).await.unwrap();
    let wallet = client_for(&sim, &client_tls, |_| {}).await;
    let credit = top_up(RICH, 50_000);
    wallet.top_up(&credit).await.unwrap();
    let spent = wallet
        .pay(&payment(WalletRef::account(RICH), 140_000))
        .await
        .unwrap();
    assert_eq!(spent.status, ResultStatus::Completed);
    assert_eq!(balance_of(&sim, RICH), 10_000);
    for _ in 0..2 {
        let refused = wallet.reverse(&credit.transaction_id).await.unwrap();
        assert_eq!(refused.status, ReversalStatus::Refused);
        assert_eq!(refused.decline_code, Some(DeclineCode::InsufficientBalance));
        assert_eq!(refused.balance_after, Some(Money::new(10_000, "TWD")));
    }
    assert_eq!(balance_of(&sim, RICH), 10_000);
    assert!(sim.ledger().wallets.values().all(|w| w.balance_minor >= 0));
    assert_books_balance(&sim);

    let admin = sim.admin_addr().unwrap();
    assert!(admin.ip().is_loopback());
    let (status, body) = admin_get(admin, "/ledger").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let books: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(books["accounts"][RICH]["balance_minor"], 10_000);
    assert_eq!(books["accounts"][RICH]["held_minor"], 0);
    let applied = &books["transactions"][credit.transaction_id.as_str()];
    assert_eq!(applied["kind"], "WALLET_TOP_UP");
    assert_eq!(applied["state"], "COMPLETED");
    assert_eq!(applied["reversal_refused"], true);
    assert!(!body.contains(BARCODE), "no member barcode in the dump");
    let (status, _) = admin_get(admin, "/other").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    sim.shutdown().await;
}
