//! Access control end to end over real mutual-TLS sockets with real
//! certificates: the role × RPC table, terminals held to their own store and
//! terminal (nothing stored otherwise), handshake refusal of expired,
//! revoked (CRL reloaded while serving), untrusted and missing client
//! certificates, and no full PAN anywhere in the logs.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pb::bill_payment_service_client::BillPaymentServiceClient;
use pb::payment_service_client::PaymentServiceClient;
use posgate::tls::{ClientCert, DevPki, client_tls};
use posgate_api::access::Identity;
use posgate_api::mtls::CRL_POLL_INTERVAL;
use posgate_core::ports::db::RowCounts;
use posgate_proto::v1 as pb;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt as _;

use crate::cards::{CardWorld, keyed, sale, visa_ok};
use crate::support::{
    Backend, TestGateway, backends, bad_request_fields, context, endpoint, issue, terminal, tw_pay,
    tw_slip, utc,
};

const NOW: &str = "2026-11-23T03:00:00Z";
/// How long a revocation may take to reach new handshakes: a few CRL polls.
const REVOCATION_DEADLINE: Duration = Duration::from_secs(10);

fn auditor() -> Identity {
    Identity::Auditor {
        auditor_id: "a1".into(),
    }
}

fn operator() -> Identity {
    Identity::Operator {
        operator_id: "o1".into(),
    }
}

fn reason(status: &Status) -> String {
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default()
}

async fn counts(gw: &TestGateway) -> RowCounts {
    gw.store().row_counts().await.unwrap()
}

fn assert_nothing_stored(counts: &RowCounts, what: &str) {
    assert_eq!(
        (
            counts.idempotency_keys,
            counts.transactions,
            counts.bill_payments,
            counts.settlement_lines,
            counts.events
        ),
        (0, 0, 0, 0, 0),
        "{what} stored nothing"
    );
}

/// Which services an RPC of the table belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pos,
    Health,
    Audit,
}

/// Calls RPC number `index` of the table on `channel` with a well-formed
/// request from S001/T01; returns its name, kind and outcome.
async fn call(index: usize, channel: Channel) -> Option<(&'static str, Kind, Result<(), Status>)> {
    let now = utc(NOW);
    let mut bills = BillPaymentServiceClient::new(channel.clone());
    let mut cards = PaymentServiceClient::new(channel.clone());
    let key = format!("acl-{}", uuid::Uuid::now_v7().simple());
    let ctx = context("S001", "T01", &key, now);
    let unknown_id = uuid::Uuid::now_v7().to_string();
    let (name, kind, outcome) = match index {
        0 => (
            "InquireBill",
            Kind::Pos,
            bills
                .inquire_bill(pb::InquireBillRequest {
                    context: ctx,
                    slip: Some(pb::BillSlip {
                        barcodes: tw_slip("TPC", "ACL1", "2026-12-31", 1234),
                        biller_id: String::new(),
                    }),
                })
                .await
                .map(drop),
        ),
        1 => (
            "PayBill",
            Kind::Pos,
            bills.pay_bill(tw_pay(&key, now)).await.map(drop),
        ),
        2 => (
            "CancelBill",
            Kind::Pos,
            bills
                .cancel_bill(pb::CancelBillRequest {
                    context: ctx,
                    transaction_id: unknown_id,
                    reason: "acl".into(),
                })
                .await
                .map(drop),
        ),
        3 => (
            "GetBillPayment",
            Kind::Pos,
            bills
                .get_bill_payment(pb::GetBillPaymentRequest {
                    context: ctx,
                    lookup: Some(pb::get_bill_payment_request::Lookup::TransactionId(
                        unknown_id,
                    )),
                })
                .await
                .map(drop),
        ),
        4 => (
            "Authorize",
            Kind::Pos,
            cards.authorize(sale(&key, &visa_ok(), 100)).await.map(drop),
        ),
        5 => (
            "Capture",
            Kind::Pos,
            cards
                .capture(pb::CaptureRequest {
                    context: ctx,
                    transaction_id: unknown_id,
                    amount: None,
                })
                .await
                .map(drop),
        ),
        6 => (
            "Void",
            Kind::Pos,
            cards
                .void(pb::VoidRequest {
                    context: ctx,
                    transaction_id: unknown_id,
                    reason: "acl".into(),
                })
                .await
                .map(drop),
        ),
        7 => (
            "Refund",
            Kind::Pos,
            cards
                .refund(pb::CardRefundRequest {
                    context: ctx,
                    original_transaction_id: unknown_id,
                    amount: Some(pb::Money {
                        amount_minor: 100,
                        currency: "TWD".into(),
                    }),
                    reason: "acl".into(),
                    card: None,
                })
                .await
                .map(drop),
        ),
        8 => (
            "GetTransaction",
            Kind::Pos,
            cards
                .get_transaction(pb::GetTransactionRequest {
                    context: ctx,
                    lookup: Some(pb::get_transaction_request::Lookup::TransactionId(
                        unknown_id,
                    )),
                })
                .await
                .map(drop),
        ),
        9 => (
            "Health.Check",
            Kind::Health,
            HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(drop),
        ),
        10 => (
            "AuditService.VerifyChain",
            Kind::Audit,
            pb::audit_service_client::AuditServiceClient::new(channel)
                .verify_chain(pb::VerifyChainRequest {
                    context: Some(pb::AuditContext {
                        auditor_id: "a1".into(),
                        ..pb::AuditContext::default()
                    }),
                    ..pb::VerifyChainRequest::default()
                })
                .await
                .map(drop),
        ),
        _ => return None,
    };
    Some((name, kind, outcome))
}

/// Whether the role × service table lets `identity` call an RPC of `kind`.
fn expect_allowed(identity: &Identity, kind: Kind) -> bool {
    matches!(
        (identity, kind),
        (_, Kind::Health)
            | (Identity::Terminal { .. }, Kind::Pos)
            | (Identity::Auditor { .. }, Kind::Audit)
    )
}

/// Role × RPC: terminals reach every bill and card RPC, auditors and
/// operators are refused them (`ROLE_NOT_ALLOWED`) with nothing stored;
/// terminals and operators are refused the audit service; every identity
/// may check health.
#[tokio::test]
async fn role_by_rpc_table() {
    for backend in backends() {
        let gw = TestGateway::start(backend, utc(NOW)).await;
        // The denied callers go first, so the row counts show they stored nothing.
        for identity in [auditor(), operator(), terminal("S001", "T01")] {
            let channel = gw.channel_as(&identity);
            let mut index = 0;
            while let Some((rpc, kind, outcome)) = call(index, channel.clone()).await {
                index += 1;
                let allowed = expect_allowed(&identity, kind);
                match (&outcome, allowed) {
                    (Err(status), true) => assert!(
                        !matches!(
                            status.code(),
                            Code::PermissionDenied | Code::Unauthenticated
                        ),
                        "{identity} must reach {rpc}: {status:?}"
                    ),
                    (Err(status), false) => {
                        assert_eq!(status.code(), Code::PermissionDenied, "{identity} {rpc}");
                        assert_eq!(reason(status), "ROLE_NOT_ALLOWED", "{identity} {rpc}");
                    }
                    (Ok(()), true) => {}
                    (Ok(()), false) => panic!("{identity} was let through to {rpc}"),
                }
                // Bills are fully served here: a terminal's well-formed inquiry and payment succeed.
                if allowed && matches!(rpc, "InquireBill" | "PayBill" | "Health.Check") {
                    assert!(outcome.is_ok(), "{identity} {rpc}: {outcome:?}");
                }
            }
            assert_eq!(index, 11, "the table covers every RPC");
            if !matches!(identity, Identity::Terminal { .. }) {
                assert_nothing_stored(&counts(&gw).await, &format!("{identity}"));
            }
        }
        assert_eq!(counts(&gw).await.transactions, 1, "the terminal's PayBill");
        gw.stop().await;
    }
}

/// A terminal claiming another store or terminal is refused with
/// `PERMISSION_DENIED` / `IDENTITY_MISMATCH` naming the field, before
/// idempotency or any write: nothing is stored, and the key stays free.
#[tokio::test]
async fn cross_store_and_cross_terminal_are_denied_and_store_nothing() {
    for backend in backends() {
        let now = utc(NOW);
        let gw = TestGateway::start(backend, now).await;
        let mut client = gw.client.clone(); // S001/T01
        let cases: [(&str, &str, &[&str]); 3] = [
            ("S101", "T01", &["context.store_id"]),
            ("S001", "T02", &["context.terminal_id"]),
            ("S101", "T09", &["context.store_id", "context.terminal_id"]),
        ];
        for (store, till, fields) in cases {
            let mut pay = tw_pay("x-1", now);
            pay.context = context(store, till, "x-1", now);
            let status = client.pay_bill(pay).await.unwrap_err();
            assert_eq!(status.code(), Code::PermissionDenied, "{store}/{till}");
            assert_eq!(reason(&status), "IDENTITY_MISMATCH");
            assert_eq!(
                bad_request_fields(&status),
                fields.to_vec(),
                "{store}/{till}"
            );
            assert!(
                status
                    .message()
                    .contains("spiffe://posgate/store/S001/terminal/T01"),
                "{}",
                status.message()
            );
            let status = client
                .cancel_bill(pb::CancelBillRequest {
                    context: context(store, till, "x-2", now),
                    transaction_id: uuid::Uuid::now_v7().to_string(),
                    reason: "x".into(),
                })
                .await
                .unwrap_err();
            assert_eq!(
                reason(&status),
                "IDENTITY_MISMATCH",
                "cancel {store}/{till}"
            );
            let status = client
                .get_bill_payment(pb::GetBillPaymentRequest {
                    context: context(store, till, "x-3", now),
                    lookup: Some(pb::get_bill_payment_request::Lookup::PaidClientRequestId(
                        "x-1".into(),
                    )),
                })
                .await
                .unwrap_err();
            assert_eq!(reason(&status), "IDENTITY_MISMATCH", "get {store}/{till}");
        }
        assert_nothing_stored(
            &counts(&gw).await,
            "cross-store and cross-terminal requests",
        );
        // The real S001/T02 can use the key the impostor tried: it was never claimed.
        let mut own = tw_pay("x-1", now);
        own.context = context("S001", "T02", "x-1", now);
        gw.bills_as("S001", "T02").pay_bill(own).await.unwrap();
        let after = counts(&gw).await;
        assert_eq!((after.transactions, after.idempotency_keys), (1, 1));
        gw.stop().await;
    }
}

/// Writes the HTTP/2 client preface over a raw TLS connection presenting
/// `client` and reads the server's first frame: `Ok` when the server took
/// the connection, else the TLS error (a refused certificate shows as the
/// alert the server sent).
async fn handshake(addr: SocketAddr, ca: &Path, client: Option<&ClientCert>) -> Result<(), String> {
    use rustls::pki_types::ServerName;
    let read_pem = |path: &Path| std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut read_pem(ca)) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        Some(client) => builder
            .with_client_auth_cert(
                rustls_pemfile::certs(&mut read_pem(&client.cert))
                    .collect::<Result<_, _>>()
                    .unwrap(),
                rustls_pemfile::private_key(&mut read_pem(&client.key))
                    .unwrap()
                    .unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|error| error.to_string())?;
    // The client preface and an empty SETTINGS frame.
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    tls.write_all(&preface)
        .await
        .map_err(|error| error.to_string())?;
    let mut frame_header = [0u8; 9];
    match tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut frame_header)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("no answer within 5 s".into()),
    }
}

/// Expired, untrusted-CA and missing client certificates are refused at the
/// TLS handshake (with the matching alert), while a valid one is served;
/// through tonic, the refused client gets a transport error, never a status
/// from a service.
#[tokio::test]
async fn bad_certificates_are_refused_at_the_handshake() {
    let gw = TestGateway::start(Backend::Sqlite, utc(NOW)).await;
    let (addr, pki) = (gw.server.addr, &gw.pki);
    let spiffe = terminal("S001", "T01").spiffe_id();
    let good = issue(pki, &terminal("S001", "T01"));
    handshake(addr, &pki.ca_cert, Some(&good))
        .await
        .expect("a valid certificate is served");

    let now = time::OffsetDateTime::now_utc();
    let expired = pki
        .issue_client_valid(
            &pki.dir,
            "expired",
            &spiffe,
            now - time::Duration::days(30),
            now - time::Duration::days(1),
        )
        .unwrap();
    let not_yet = pki
        .issue_client_valid(
            &pki.dir,
            "not-yet",
            &spiffe,
            now + time::Duration::days(1),
            now + time::Duration::days(30),
        )
        .unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other_ca = DevPki::generate(other_dir.path()).unwrap();
    let untrusted = issue(&other_ca, &terminal("S001", "T01"));
    for (what, cert, alert) in [
        ("expired", Some(&expired), "CertificateExpired"),
        ("not yet valid", Some(&not_yet), "CertificateExpired"),
        // The rogue CA has the same name as the real one, so the chain is
        // built and its signature fails: the impersonation case.
        ("untrusted CA", Some(&untrusted), "DecryptError"),
        ("no client certificate", None, "CertificateRequired"),
    ] {
        let error = handshake(addr, &pki.ca_cert, cert).await.expect_err(what);
        assert!(error.contains(alert), "{what}: {error}");
    }

    let mut health = HealthClient::new(endpoint(addr, pki, &expired).connect_lazy());
    let status = health
        .check(HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert!(
        !matches!(
            status.code(),
            Code::PermissionDenied | Code::Unauthenticated | Code::Ok
        ),
        "refused before any service: {status:?}"
    );
    let anonymous = Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(client_tls(&pki.ca_cert, "localhost").unwrap())
        .unwrap()
        .connect_lazy();
    let status = HealthClient::new(anonymous)
        .check(HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert!(
        !matches!(
            status.code(),
            Code::PermissionDenied | Code::Unauthenticated | Code::Ok
        ),
        "refused before any service: {status:?}"
    );
    assert_nothing_stored(&counts(&gw).await, "refused clients");
    gw.stop().await;
}

/// Revocation without a restart: a terminal is served, its certificate is
/// revoked with the CRL, and within a bounded wait its new connections are
/// refused at the handshake (`CertificateRevoked`) while other terminals go on;
/// a broken CRL file afterwards keeps the last good CRL in force.
#[tokio::test]
async fn revocation_reloads_the_crl_without_restart() {
    let gw = TestGateway::start(Backend::Sqlite, utc(NOW)).await;
    let (addr, pki) = (gw.server.addr, &gw.pki);
    let doomed = issue(pki, &terminal("S001", "T05"));
    let other = issue(pki, &terminal("S001", "T06"));
    let mut health = HealthClient::new(endpoint(addr, pki, &doomed).connect().await.unwrap());
    health.check(HealthCheckRequest::default()).await.unwrap();
    handshake(addr, &pki.ca_cert, Some(&doomed)).await.unwrap();

    pki.revoke(&doomed.cert).unwrap();
    let started = std::time::Instant::now();
    let error = loop {
        if let Err(error) = handshake(addr, &pki.ca_cert, Some(&doomed)).await {
            break error;
        }
        assert!(
            started.elapsed() < REVOCATION_DEADLINE,
            "the revoked certificate was still accepted after {REVOCATION_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(error.contains("CertificateRevoked"), "{error}");
    handshake(addr, &pki.ca_cert, Some(&other))
        .await
        .expect("an unrevoked terminal is still served");

    // A truncated CRL: the server logs an error and keeps the previous CRL.
    std::fs::write(&pki.crl, "-----BEGIN X509 CRL-----\nnot a crl\n").unwrap();
    tokio::time::sleep(CRL_POLL_INTERVAL * 2 + Duration::from_millis(500)).await;
    let error = handshake(addr, &pki.ca_cert, Some(&doomed))
        .await
        .unwrap_err();
    assert!(
        error.contains("CertificateRevoked"),
        "still revoked: {error}"
    );
    handshake(addr, &pki.ca_cert, Some(&other))
        .await
        .expect("still served with the previous CRL");
    gw.stop().await;
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Every log line of a run with test cards (keyed PAN, track 2, a bad PAN, a
/// cross-terminal attempt), from the gateway, its bank links and the bank
/// simulators at every level, is captured: no full PAN or track appears.
/// Current-thread runtime: every task runs on this thread, under the
/// capturing subscriber.
#[tokio::test]
async fn no_full_pan_in_any_log_line() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut world = CardWorld::start(Backend::Sqlite).await;
    let pan = visa_ok();
    let track2 = format!(";{pan}=29122010000000000000?");
    world
        .client
        .authorize(sale("log-1", &pan, 120))
        .await
        .unwrap();
    let mut swiped = sale("log-2", &pan, 130);
    swiped.card = Some(pb::CardInput {
        entry_mode: pb::CardEntryMode::MagstripeFallback.into(),
        account: Some(pb::card_input::Account::Track2(track2.clone())),
        ..pb::CardInput::default()
    });
    world.client.authorize(swiped).await.unwrap();
    let bad_luhn = format!("{}{}", &pan[..15], (pan.as_bytes()[15] - b'0' + 1) % 10);
    let mut bad = sale("log-3", &bad_luhn, 140);
    bad.card = keyed(&bad_luhn);
    assert_eq!(
        world.client.authorize(bad).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let mut impostor = sale("log-4", &pan, 150);
    impostor.context.as_mut().unwrap().terminal_id = "T02".into();
    let status = world.client.authorize(impostor).await.unwrap_err();
    assert_eq!(reason(&status), "IDENTITY_MISMATCH");
    let stored = world.gw.store().row_counts().await.unwrap();
    assert_eq!(stored.transactions, 2, "only the two good sales are stored");
    world.gw.stop().await;

    let logs = captured.text();
    assert!(
        logs.contains("rpc done") && logs.contains("Authorize"),
        "the capture saw the gateway's logs ({} bytes)",
        logs.len()
    );
    for secret in [
        pan.as_str(),
        bad_luhn.as_str(),
        track2.as_str(),
        &track2[1..20],
    ] {
        assert!(
            !logs.contains(secret),
            "a full PAN or track leaked into the logs"
        );
    }
}
