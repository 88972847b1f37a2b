//! The biller simulator over real HTTPS with mutual TLS, driven by the
//! signed partner API client: the ledger of outstanding bills, signature
//! refusals (401), idempotency, faults and their resolution by retry or
//! status inquiry.

use std::path::Path;
use std::time::Duration;

use posgate_partners::bill::BillCallError;
use posgate_partners::bill::api::{
    self, BillCancelRequest, BillInquiryRequest, BillPaymentNotice, BillStatus, CancelRejectCode,
    CancelStatus, NoticeRejectCode, NoticeStatus,
};
use posgate_partners::bill::client::BillerClient;
use posgate_partners::http::{ClientSettings, PartnerClient, TlsFiles};
use posgate_partners::wallet::api::{Money, Problem, TransactionKind, TransactionState};
use posgate_sims::biller::{BillConfig, BillerSim, BillerSimConfig, ClientKeyConfig};
use posgate_sims::http_server::FaultConfig;
use tempfile::TempDir;

use super::wallet_sim::{
    POSGATE_KEY_ID, POSGATE_SEED_HEX, SIM_KEY_ID, SIM_SEED_HEX, channel, new_id, pki,
    posgate_signer, public_of, raw_post, signed_post_headers, sim_verifier,
};

pub const BILLER: &str = "CTBC-CARD";
pub const OPEN_BILL: &str = "4000123412341234";
pub const SMALL_BILL: &str = "4000123412340001";
pub const PAID_BILL: &str = "4000123412340002";
pub const EXPIRED_BILL: &str = "4000123412340003";
pub const OPEN_AMOUNT_MINOR: i64 = 1_234_500;
pub const SMALL_AMOUNT_MINOR: i64 = 50_000;

fn bill(reference: &str, amount_minor: i64, status: BillStatus) -> BillConfig {
    BillConfig {
        biller_id: BILLER.to_owned(),
        bill_reference: reference.to_owned(),
        amount_minor,
        due_date: Some("2026-12-20".to_owned()),
        status,
        payer_display_name: Some("W** D*-M**G".to_owned()),
    }
}

/// The simulator's config for tests: four bills, posgate's test key, no faults.
pub fn biller_config(server_tls: TlsFiles) -> BillerSimConfig {
    BillerSimConfig {
        listen: "127.0.0.1:0".to_owned(),
        tls: server_tls,
        currency: "TWD".to_owned(),
        signing_key_hex: SIM_SEED_HEX.to_owned().into(),
        key_id: SIM_KEY_ID.to_owned(),
        client_keys: vec![ClientKeyConfig {
            key_id: POSGATE_KEY_ID.to_owned(),
            public_key_hex: hex::encode(public_of(POSGATE_SEED_HEX)),
        }],
        closed_through: Some("2026-12-01".to_owned()),
        bills: vec![
            bill(OPEN_BILL, OPEN_AMOUNT_MINOR, BillStatus::Open),
            bill(SMALL_BILL, SMALL_AMOUNT_MINOR, BillStatus::Open),
            bill(PAID_BILL, 70_000, BillStatus::Paid),
            bill(EXPIRED_BILL, 90_000, BillStatus::Expired),
        ],
        faults: FaultConfig::default(),
        admin_listen: None,
    }
}

struct Fixture {
    _dir: TempDir,
    sim: BillerSim,
    client_tls: TlsFiles,
    biller: BillerClient,
}

async fn start(tune: impl FnOnce(&mut ClientSettings)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (server_tls, client_tls) = pki(dir.path(), "");
    let sim = BillerSim::start(biller_config(server_tls)).await.unwrap();
    let mut settings = ClientSettings::new(
        format!("biller:{BILLER}"),
        format!("https://{}", sim.addr()),
        client_tls.clone(),
    );
    settings.request_timeout = Duration::from_secs(5);
    tune(&mut settings);
    let signer = posgate_signer(POSGATE_SEED_HEX, POSGATE_KEY_ID).await;
    let biller = BillerClient::new(PartnerClient::new(settings, signer, sim_verifier()).unwrap());
    Fixture {
        _dir: dir,
        sim,
        client_tls,
        biller,
    }
}

fn inquiry(reference: &str) -> BillInquiryRequest {
    BillInquiryRequest {
        biller_id: BILLER.to_owned(),
        bill_reference: reference.to_owned(),
        channel: channel(),
    }
}

fn notice(reference: &str, amount_minor: i64, business_date: &str) -> BillPaymentNotice {
    BillPaymentNotice {
        transaction_id: new_id(),
        biller_id: BILLER.to_owned(),
        bill_reference: reference.to_owned(),
        amount: Money::new(amount_minor, "TWD"),
        paid_at: "2026-12-04T10:00:00+08:00".to_owned(),
        business_date: business_date.to_owned(),
        channel: channel(),
    }
}

fn cancel(original: &str) -> BillCancelRequest {
    BillCancelRequest {
        transaction_id: new_id(),
        original_transaction_id: original.to_owned(),
        reason: "customer changed their mind".to_owned(),
    }
}

/// Inquiry, notice and cancel follow the bill's state; every refusal has its own code.
#[tokio::test]
async fn bill_ledger_rules_over_https() {
    let fixture = start(|_| {}).await;
    let biller = &fixture.biller;
    let found = biller.inquire(&inquiry(OPEN_BILL)).await.unwrap().unwrap();
    assert_eq!(
        (found.amount, found.status),
        (Money::new(OPEN_AMOUNT_MINOR, "TWD"), BillStatus::Open)
    );
    assert_eq!(biller.inquire(&inquiry("99")).await.unwrap(), None);

    let paid = notice(OPEN_BILL, OPEN_AMOUNT_MINOR, "2026-12-04");
    let result = biller.notify(&paid).await.unwrap();
    assert_eq!(result.status, NoticeStatus::Accepted);
    assert!(result.partner_reference.is_some());
    let after = biller.inquire(&inquiry(OPEN_BILL)).await.unwrap().unwrap();
    assert_eq!(after.status, BillStatus::Paid);

    let rejects = [
        (
            notice(OPEN_BILL, OPEN_AMOUNT_MINOR, "2026-12-04"),
            NoticeRejectCode::AlreadyPaid,
        ),
        (
            notice(SMALL_BILL, SMALL_AMOUNT_MINOR + 1, "2026-12-04"),
            NoticeRejectCode::AmountMismatch,
        ),
        (
            notice("77", 100, "2026-12-04"),
            NoticeRejectCode::BillNotFound,
        ),
        (
            notice(PAID_BILL, 70_000, "2026-12-04"),
            NoticeRejectCode::AlreadyPaid,
        ),
        (
            notice(EXPIRED_BILL, 90_000, "2026-12-04"),
            NoticeRejectCode::Expired,
        ),
    ];
    for (request, code) in rejects {
        let result = biller.notify(&request).await.unwrap();
        assert_eq!(
            (result.status, result.reject_code),
            (NoticeStatus::Rejected, Some(code))
        );
        let status = biller
            .status(&request.transaction_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.status, TransactionState::Rejected);
    }
    let status = biller.status(&paid.transaction_id).await.unwrap().unwrap();
    assert_eq!(
        (status.kind, status.status),
        (TransactionKind::BillPayment, TransactionState::Accepted)
    );
    assert_eq!(biller.status(&new_id()).await.unwrap(), None);
    assert_eq!(fixture.sim.ledger().collected_minor(), OPEN_AMOUNT_MINOR);

    // Cancel: the bill is open again and the notice no longer counts.
    let cancelled = biller.cancel(&cancel(&paid.transaction_id)).await.unwrap();
    assert_eq!(cancelled.status, CancelStatus::Cancelled);
    let status = biller.status(&paid.transaction_id).await.unwrap().unwrap();
    assert_eq!(status.status, TransactionState::Cancelled);
    let again = biller.inquire(&inquiry(OPEN_BILL)).await.unwrap().unwrap();
    assert_eq!(again.status, BillStatus::Open);
    assert_eq!(fixture.sim.ledger().collected_minor(), 0);

    // A rejected notice cannot be cancelled; an unknown one is a 404; a closed day is past cutoff.
    let rejected = notice("77", 100, "2026-12-04");
    biller.notify(&rejected).await.unwrap();
    let result = biller
        .cancel(&cancel(&rejected.transaction_id))
        .await
        .unwrap();
    assert_eq!(result.reject_code, Some(CancelRejectCode::NotPaid));
    assert!(matches!(
        biller.cancel(&cancel(&new_id())).await,
        Err(BillCallError::Rejected { status: 404, .. })
    ));
    let old = notice(SMALL_BILL, SMALL_AMOUNT_MINOR, "2026-12-01");
    biller.notify(&old).await.unwrap();
    let result = biller.cancel(&cancel(&old.transaction_id)).await.unwrap();
    assert_eq!(
        (result.status, result.reject_code),
        (CancelStatus::Rejected, Some(CancelRejectCode::CutoffPassed))
    );
    assert_eq!(fixture.sim.ledger().collected_minor(), SMALL_AMOUNT_MINOR);
    fixture.sim.shutdown().await;
}

/// Unsigned, stale, replayed and tampered requests get a signed 401 and the books do not move.
#[tokio::test]
async fn bill_refuses_unsigned_stale_and_replayed() {
    let fixture = start(|_| {}).await;
    let addr = fixture.sim.addr();
    let body = serde_json::to_vec(&notice(OPEN_BILL, OPEN_AMOUNT_MINOR, "2026-12-04")).unwrap();
    let signer = posgate_signer(POSGATE_SEED_HEX, POSGATE_KEY_ID).await;
    let now = posgate_partners::http::unix_now_s();
    let mut unsigned = http::HeaderMap::new();
    unsigned.insert(
        "idempotency-key",
        http::HeaderValue::from_static("raw-key-1"),
    );
    let stale = signed_post_headers(addr, api::PAYMENTS_PATH, &signer, &body, now - 301).await;
    let good = signed_post_headers(addr, api::PAYMENTS_PATH, &signer, &body, now).await;
    let mut tampered_body = body.clone();
    tampered_body.push(b' ');
    for (what, headers, body) in [
        ("unsigned", unsigned, &body),
        ("stale", stale, &body),
        ("tampered", good.clone(), &tampered_body),
    ] {
        let (status, headers, answer) =
            raw_post(addr, &fixture.client_tls, api::PAYMENTS_PATH, headers, body).await;
        assert_eq!(status, 401, "{what}");
        assert!(headers.contains_key("signature"), "{what}: 401 is signed");
        let problem: Problem = serde_json::from_slice(&answer).unwrap();
        assert_eq!(problem.status, 401);
    }
    assert!(fixture.sim.ledger().entries.is_empty());
    let fresh = signed_post_headers(addr, api::PAYMENTS_PATH, &signer, &body, now).await;
    let (status, ..) = raw_post(
        addr,
        &fixture.client_tls,
        api::PAYMENTS_PATH,
        fresh.clone(),
        &body,
    )
    .await;
    assert_eq!(status, 200);
    let (status, ..) = raw_post(addr, &fixture.client_tls, api::PAYMENTS_PATH, fresh, &body).await;
    assert_eq!(status, 401, "the same signature twice is a replay");
    assert_eq!(fixture.sim.ledger().entries.len(), 1);
    assert_eq!(fixture.sim.counters().unauthorized, 4);
    fixture.sim.shutdown().await;
}

/// The same notice twice is applied once; the key with another body is 409.
#[tokio::test]
async fn bill_notice_idempotent() {
    let fixture = start(|_| {}).await;
    let request = notice(SMALL_BILL, SMALL_AMOUNT_MINOR, "2026-12-04");
    let first = fixture.biller.notify(&request).await.unwrap();
    let second = fixture.biller.notify(&request).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(first.status, NoticeStatus::Accepted);
    assert_eq!(fixture.sim.counters().idempotent_replays, 1);
    let mut changed = request.clone();
    changed.amount.amount_minor += 1;
    assert!(matches!(
        fixture.biller.notify(&changed).await,
        Err(BillCallError::Rejected { status: 409, .. })
    ));
    assert_eq!(fixture.sim.ledger().collected_minor(), SMALL_AMOUNT_MINOR);
    fixture.sim.shutdown().await;
}

/// Each fault on a notice: a dropped connection and a 503 are retried with
/// the same key (applied once; the 503 applied nothing first); a bad
/// signature and no answer leave the outcome unknown, which the status
/// inquiry resolves.
#[tokio::test]
async fn bill_faults_resolved_by_retry_or_status_inquiry() {
    let fixture = start(|settings| {
        settings.request_timeout = Duration::from_millis(500);
        settings.max_attempts = 2;
    })
    .await;
    let biller = &fixture.biller;
    for (what, faults) in [
        (
            "drop",
            FaultConfig {
                drop_connection: 1.0,
                max_faults: Some(1),
                ..FaultConfig::default()
            },
        ),
        (
            "503",
            FaultConfig {
                server_error: 1.0,
                max_faults: Some(1),
                ..FaultConfig::default()
            },
        ),
    ] {
        fixture.sim.set_faults(faults);
        let request = notice(SMALL_BILL, SMALL_AMOUNT_MINOR, "2026-12-04");
        let result = biller.notify(&request).await.unwrap();
        assert_eq!(result.status, NoticeStatus::Accepted, "{what}");
        biller
            .cancel(&cancel(&request.transaction_id))
            .await
            .unwrap();
    }
    // Each applied exactly once: the drop by its first attempt, the 503 by its retry.
    assert_eq!(fixture.sim.biller_counters().notices, 2);
    assert_eq!(fixture.sim.counters().idempotent_replays, 1);

    for (what, faults) in [
        (
            "bad signature",
            FaultConfig {
                bad_signature: 1.0,
                ..FaultConfig::default()
            },
        ),
        (
            "no response",
            FaultConfig {
                no_response: 1.0,
                ..FaultConfig::default()
            },
        ),
    ] {
        fixture.sim.set_faults(faults);
        let request = notice(SMALL_BILL, SMALL_AMOUNT_MINOR, "2026-12-04");
        let error = biller.notify(&request).await.unwrap_err();
        assert!(
            matches!(error, BillCallError::OutcomeUnknown(_)),
            "{what}: {error}"
        );
        fixture.sim.set_faults(FaultConfig::default());
        let status = biller
            .status(&request.transaction_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.status, TransactionState::Accepted, "{what}");
        // The retried notice under the same key is the first answer again.
        let result = biller.notify(&request).await.unwrap();
        assert_eq!(result.status, NoticeStatus::Accepted, "{what}");
        biller
            .cancel(&cancel(&request.transaction_id))
            .await
            .unwrap();
    }
    assert_eq!(fixture.sim.ledger().collected_minor(), 0);
    fixture.sim.shutdown().await;
}

/// `decline_all` rejects every notice with the configured code, recording the rejection.
#[tokio::test]
async fn bill_decline_all_fault() {
    let fixture = start(|_| {}).await;
    fixture.sim.set_faults(FaultConfig {
        decline_all: Some("05".into()),
        ..FaultConfig::default()
    });
    let request = notice(SMALL_BILL, SMALL_AMOUNT_MINOR, "2026-12-04");
    let result = fixture.biller.notify(&request).await.unwrap();
    assert_eq!(
        (result.status, result.partner_response_code.as_str()),
        (NoticeStatus::Rejected, "05")
    );
    let found = fixture
        .biller
        .inquire(&inquiry(SMALL_BILL))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.status, BillStatus::Open);
    fixture.sim.shutdown().await;
}

/// The example config parses and validates with the published test keys.
#[test]
fn biller_example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/biller-sim.example.toml");
    let config = BillerSimConfig::from_file(&path).unwrap();
    assert_eq!(config.signing_key_hex.expose(), SIM_SEED_HEX);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(&hex::encode(public_of(SIM_SEED_HEX))));
    assert_eq!(config.bills.len(), 4);
    assert!(
        !format!("{config:?}").contains(SIM_SEED_HEX),
        "the signing key is masked"
    );
}

/// Issue 13 item 19: the biller simulator's books (each bill's status, each
/// notice or cancel by transaction id, the total collected) are readable on
/// its loopback admin endpoint, which never binds off loopback.
#[tokio::test]
async fn ledger_is_readable_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let (server_tls, _) = pki(dir.path(), "");
    let mut open_to_network = biller_config(server_tls.clone());
    open_to_network.admin_listen = Some("192.0.2.1:0".to_owned());
    assert!(BillerSim::start(open_to_network).await.is_err());
    let mut config = biller_config(server_tls);
    config.admin_listen = Some("127.0.0.1:0".to_owned());
    let sim = BillerSim::start(config).await.unwrap();
    let (status, body) = super::wallet_sim::admin_get(sim.admin_addr().unwrap(), "/ledger").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let books: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(!books["bills"].as_array().unwrap().is_empty());
    assert_eq!(books["collected_minor"], 0);
    sim.shutdown().await;
}
