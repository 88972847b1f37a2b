//! The bank link against a scripted bank on real loopback TCP: the real codec,
//! real retail MACs through `SoftwareHsm`, the link's real timers.

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use posgate_hsm::{ClearKey, Hsm, KeyRef, KeySpec, Pan, SoftwareHsm};
use posgate_partners::bank::link::{BankLink, LinkConfig, LinkError, LinkTls};
use posgate_partners::bank::protocol::{
    FinancialKind, FinancialRequest, FinancialResponse, IncomingReversal, KeyChangePayload,
    MAC_ALGORITHM, MTI_FINANCIAL_RESPONSE, MTI_NETWORK, MTI_REVERSAL_RESPONSE, NetworkCode,
    NetworkResponse, ResponseCode, Reversal, mac_input, needs_mac, pack_with_mac, read_frame,
    verify_mac, write_frame,
};
use posgate_partners::iso8583::{Message, ascii_1987};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::time::{Instant, timeout};

const MAC_KEY: &str = "bank.mac";
const ZMK: &str = "bank.zmk";
const MAC_KEY_HEX: &str = "0123456789ABCDEFFEDCBA9876543210";
const ZMK_HEX: &str = "1C1C1C1C1C1C1C1C3D3D3D3D3D3D3D3D";
/// Every test finishes well within this, or fails.
const TEST_LIMIT: Duration = Duration::from_secs(15);
/// How long the scripted bank waits for a frame it expects.
const PEER_WAIT: Duration = Duration::from_secs(5);

/// An in-memory HSM holding the shared MAC key and ZMK, as each side has its own.
async fn hsm_with_keys() -> Arc<SoftwareHsm> {
    let hsm = SoftwareHsm::in_memory();
    hsm.import_key(
        MAC_KEY,
        KeySpec::TDES_MAC,
        ClearKey::from_hex(MAC_KEY_HEX).unwrap(),
    )
    .await
    .unwrap();
    hsm.import_key(ZMK, KeySpec::TDES_ZMK, ClearKey::from_hex(ZMK_HEX).unwrap())
        .await
        .unwrap();
    Arc::new(hsm)
}

fn config(addr: String) -> LinkConfig {
    let mut config = LinkConfig::new("test-bank", addr, "4711", MAC_KEY, ZMK);
    config.request_timeout = Duration::from_secs(3);
    config.echo_interval = Duration::from_secs(60);
    config.connect_timeout = Duration::from_secs(1);
    config.backoff_min = Duration::from_millis(50);
    config.backoff_max = Duration::from_millis(200);
    config
}

/// The scripted bank: a listener and its own HSM.
struct Bank {
    listener: TcpListener,
    hsm: Arc<SoftwareHsm>,
}

impl Bank {
    async fn start() -> Bank {
        Bank {
            listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            hsm: hsm_with_keys().await,
        }
    }

    fn addr(&self) -> String {
        self.listener.local_addr().unwrap().to_string()
    }

    async fn accept(&self) -> Peer {
        let (stream, _) = timeout(PEER_WAIT, self.listener.accept())
            .await
            .expect("the link connects")
            .unwrap();
        Peer {
            stream: Box::new(stream),
            hsm: Arc::clone(&self.hsm),
        }
    }

    /// Accepts and answers the sign-on.
    async fn accept_signed_on(&self) -> Peer {
        let mut peer = self.accept().await;
        peer.sign_on().await;
        peer
    }
}

/// A byte stream to the link, plain or TLS.
trait PeerStream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> PeerStream for T {}

/// One connection as the bank sees it.
struct Peer {
    stream: Box<dyn PeerStream>,
    hsm: Arc<SoftwareHsm>,
}

struct Received {
    message: Message,
    frame: Vec<u8>,
}

impl Peer {
    async fn try_recv(&mut self, wait: Duration) -> Option<Received> {
        let frame = timeout(wait, read_frame(&mut self.stream))
            .await
            .ok()?
            .unwrap()?;
        let message = ascii_1987().unpack(&frame).unwrap();
        Some(Received { message, frame })
    }

    /// The next frame; its MAC must verify if it needs one.
    async fn recv(&mut self) -> Received {
        let received = self
            .try_recv(PEER_WAIT)
            .await
            .expect("a frame from the link");
        if needs_mac(received.message.mti()) {
            verify_mac(
                ascii_1987(),
                &received.frame,
                &received.message,
                self.hsm.as_ref(),
                MAC_KEY,
            )
            .await
            .expect("the link's MAC verifies");
        }
        received
    }

    async fn expect_network(&mut self, code: NetworkCode) -> Message {
        let message = self.recv().await.message;
        assert_eq!(message.mti(), MTI_NETWORK);
        assert_eq!(message.get_str(70), Some(code.as_str()));
        message
    }

    async fn send_frame(&mut self, frame: &[u8]) {
        write_frame(&mut self.stream, frame).await.unwrap();
    }

    async fn send_plain(&mut self, message: &Message) {
        let frame = ascii_1987().pack(message).unwrap();
        self.send_frame(&frame).await;
    }

    /// Packs with the bank's newest MAC key.
    async fn signed(&self, message: &mut Message) -> Vec<u8> {
        pack_with_mac(
            ascii_1987(),
            message,
            self.hsm.as_ref(),
            &KeyRef::latest(MAC_KEY),
        )
        .await
        .unwrap()
        .0
    }

    async fn sign_on(&mut self) {
        let request = self.expect_network(NetworkCode::SignOn).await;
        self.send_plain(&NetworkResponse::answer(
            &request,
            ResponseCode::Approved,
            None,
        ))
        .await;
    }

    /// The approval of `request`, approval code derived from its STAN.
    async fn approval(&self, request: &Message) -> Vec<u8> {
        let mut response = FinancialResponse {
            response_code: ResponseCode::Approved,
            approval_code: Some(format!("A{}", &request.get_str(11).unwrap()[1..])),
            loyalty: None,
        }
        .to_message(request)
        .unwrap();
        self.signed(&mut response).await
    }

    async fn approve(&mut self, request: &Message) {
        let frame = self.approval(request).await;
        self.send_frame(&frame).await;
    }
}

/// A sale with a fresh STAN and an RRN derived from it.
fn sale(link: &BankLink) -> Message {
    let stan = link.next_stan();
    let rrn = format!("633000{stan}");
    FinancialRequest {
        kind: FinancialKind::Sale,
        pan: Some(&Pan::parse("4111111111111111").unwrap()),
        original: None,
        expiry: None,
        track2: None,
        amount_minor: 1_500,
        currency_numeric: "901",
        stan: &stan,
        rrn: &rrn,
        transmitted_at: Utc::now(),
        local: NaiveDate::from_ymd_opt(2026, 11, 23)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap(),
        entry_mode: "071",
        pin_block: None,
        icc_data: None,
        security_code: None,
        terminal_id: "TERM0001",
        merchant_id: "MERCHANT0000001",
        acquirer_id: "4711",
    }
    .to_message()
    .unwrap()
}

/// Asserts `response` answers `request` and is the bank's approval of it.
fn assert_answers(response: &Message, request: &Message) {
    assert_eq!(response.mti(), MTI_FINANCIAL_RESPONSE);
    assert_eq!(response.get_str(11), request.get_str(11));
    assert_eq!(response.get_str(37), request.get_str(37));
    let parsed = FinancialResponse::parse(response).unwrap();
    assert!(parsed.response_code.is_approved());
    assert_eq!(
        parsed.approval_code.as_deref(),
        Some(format!("A{}", &request.get_str(11).unwrap()[1..]).as_str())
    );
}

async fn start_link(config: LinkConfig) -> BankLink {
    let hsm: Arc<dyn Hsm> = hsm_with_keys().await;
    BankLink::start(config, hsm)
}

async fn bounded(test: impl Future<Output = ()>) {
    timeout(TEST_LIMIT, test).await.expect("test timed out");
}

/// The link signs on before anything else, refuses requests until then, and signs off on shutdown.
#[tokio::test]
async fn signs_on_first_and_off_at_shutdown() {
    bounded(async {
        let bank = Bank::start().await;
        let link = start_link(config(bank.addr())).await;
        let mut peer = bank.accept().await;
        let sign_on = peer.expect_network(NetworkCode::SignOn).await;
        assert!(!link.is_up());
        assert_eq!(link.send(sale(&link)).await, Err(LinkError::NotConnected));
        peer.send_plain(&NetworkResponse::answer(
            &sign_on,
            ResponseCode::Approved,
            None,
        ))
        .await;
        assert!(link.wait_up(Duration::from_secs(2)).await);

        let request = sale(&link);
        let (response, ()) = tokio::join!(link.send(request.clone()), async {
            let received = peer.recv().await.message;
            assert_eq!(received.get_str(37), request.get_str(37));
            peer.approve(&received).await;
        });
        assert_answers(&response.unwrap(), &request);

        let ((), ()) = tokio::join!(link.shutdown(), async {
            let sign_off = peer.expect_network(NetworkCode::SignOff).await;
            peer.send_plain(&NetworkResponse::answer(
                &sign_off,
                ResponseCode::Approved,
                None,
            ))
            .await;
        });
        assert!(!link.is_up());
        assert_eq!(link.send(sale(&link)).await, Err(LinkError::NotConnected));
    })
    .await;
}

/// Many concurrent requests answered in reverse order each get their own answer.
#[tokio::test]
async fn concurrent_requests_answered_out_of_order_are_matched() {
    bounded(async {
        let bank = Bank::start().await;
        let link = start_link(config(bank.addr())).await;
        let mut peer = bank.accept_signed_on().await;
        assert!(link.wait_up(Duration::from_secs(2)).await);

        let requests: Vec<Message> = (0..24).map(|_| sale(&link)).collect();
        let sends = requests.iter().map(|request| {
            let link = link.clone();
            let request = request.clone();
            tokio::spawn(async move { link.send(request).await })
        });
        let handles: Vec<_> = sends.collect();
        let mut received = Vec::new();
        for _ in 0..requests.len() {
            received.push(peer.recv().await.message);
        }
        for request in received.iter().rev() {
            peer.approve(request).await;
        }
        for (handle, request) in handles.into_iter().zip(&requests) {
            assert_answers(&handle.await.unwrap().unwrap(), request);
        }
    })
    .await;
}

/// No answer in time is a `Timeout`; the late answer is dropped and the next request gets its own.
#[tokio::test]
async fn late_answer_after_timeout_is_dropped() {
    bounded(async {
        let bank = Bank::start().await;
        let mut config = config(bank.addr());
        config.request_timeout = Duration::from_millis(300);
        let link = start_link(config).await;
        let mut peer = bank.accept_signed_on().await;
        assert!(link.wait_up(Duration::from_secs(2)).await);

        let first = sale(&link);
        let started = Instant::now();
        let (result, received) = tokio::join!(link.send(first.clone()), peer.recv());
        assert_eq!(result, Err(LinkError::Timeout));
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(LinkError::Timeout.outcome_unknown());

        let late = peer.approval(&received.message).await;
        peer.send_frame(&late).await;
        let second = sale(&link);
        let (result, ()) = tokio::join!(link.send(second.clone()), async {
            let received = peer.recv().await.message;
            peer.send_frame(&late).await;
            peer.approve(&received).await;
        });
        assert_answers(&result.unwrap(), &second);
        assert!(link.is_up());
    })
    .await;
}

/// A second copy of an answer is dropped; the link goes on matching correctly.
#[tokio::test]
async fn duplicate_answer_is_dropped() {
    bounded(async {
        let bank = Bank::start().await;
        let link = start_link(config(bank.addr())).await;
        let mut peer = bank.accept_signed_on().await;
        assert!(link.wait_up(Duration::from_secs(2)).await);

        let first = sale(&link);
        let (result, ()) = tokio::join!(link.send(first.clone()), async {
            let received = peer.recv().await.message;
            let answer = peer.approval(&received).await;
            peer.send_frame(&answer).await;
            peer.send_frame(&answer).await;
        });
        assert_answers(&result.unwrap(), &first);

        let second = sale(&link);
        let (result, ()) = tokio::join!(link.send(second.clone()), async {
            let received = peer.recv().await.message;
            peer.approve(&received).await;
        });
        assert_answers(&result.unwrap(), &second);
    })
    .await;
}

/// A reversal (field 90: a secondary bitmap) carries its MAC in field 128, both ways.
#[tokio::test]
async fn reversal_carries_its_mac_in_field_128() {
    bounded(async {
        let bank = Bank::start().await;
        let link = start_link(config(bank.addr())).await;
        let mut peer = bank.accept_signed_on().await;
        assert!(link.wait_up(Duration::from_secs(2)).await);

        let stan = link.next_stan();
        let reversal = Reversal {
            original_kind: FinancialKind::Sale,
            original_stan: "000001",
            original_transmitted_at: Utc::now(),
            rrn: "633000000001",
            amount_minor: 1_500,
            currency_numeric: "901",
            stan: &stan,
            transmitted_at: Utc::now(),
            repeat: true,
            terminal_id: "TERM0001",
            merchant_id: "MERCHANT0000001",
            acquirer_id: "4711",
        }
        .to_message()
        .unwrap();
        let (result, ()) = tokio::join!(link.send(reversal), async {
            let received = peer.recv().await.message;
            assert!(received.has(128) && !received.has(64));
            let parsed = IncomingReversal::parse(&received).unwrap();
            assert!(parsed.repeat);
            assert_eq!(parsed.original.stan, "000001");
            let mut answer = FinancialResponse {
                response_code: ResponseCode::Approved,
                approval_code: None,
                loyalty: None,
            }
            .to_message(&received)
            .unwrap();
            let frame = peer.signed(&mut answer).await;
            peer.send_frame(&frame).await;
        });
        let response = result.unwrap();
        assert_eq!(response.mti(), MTI_REVERSAL_RESPONSE);
        assert!(response.has(128));
        assert!(
            FinancialResponse::parse(&response)
                .unwrap()
                .response_code
                .is_approved()
        );
    })
    .await;
}

/// An answer whose MAC does not verify counts as no answer: `BadMac`, outcome unknown.
#[tokio::test]
async fn answer_with_bad_mac_is_bad_mac() {
    bounded(async {
        let bank = Bank::start().await;
        let link = start_link(config(bank.addr())).await;
        let mut peer = bank.accept_signed_on().await;
        assert!(link.wait_up(Duration::from_secs(2)).await);

        let request = sale(&link);
        let (result, ()) = tokio::join!(link.send(request), async {
            let received = peer.recv().await.message;
            let signed = peer.approval(&received).await;
            let mut answer = ascii_1987().unpack(&signed).unwrap();
            let mut mac = answer.get(64).unwrap().to_vec();
            mac[7] ^= 0x01;
            answer.set(64, mac);
            peer.send_plain(&answer).await;
        });
        let error = result.unwrap_err();
        assert_eq!(error, LinkError::BadMac);
        assert!(error.outcome_unknown());
    })
    .await;
}

/// The peer closing mid-request fails it at once with `ConnectionLost`; the link reconnects and signs on again.
#[tokio::test]
async fn connection_loss_fails_in_flight_and_reconnects() {
    bounded(async {
        let bank = Bank::start().await;
        let link = start_link(config(bank.addr())).await;
        let mut peer = bank.accept_signed_on().await;
        assert!(link.wait_up(Duration::from_secs(2)).await);

        let request = sale(&link);
        let started = Instant::now();
        let (result, ()) = tokio::join!(link.send(request), async {
            peer.recv().await;
            drop(peer);
        });
        assert_eq!(result, Err(LinkError::ConnectionLost));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "failed at once, not at the 3 s timeout"
        );

        let mut peer = bank.accept().await;
        peer.sign_on().await;
        assert!(link.wait_up(Duration::from_secs(2)).await);
        let request = sale(&link);
        let (result, ()) = tokio::join!(link.send(request.clone()), async {
            let received = peer.recv().await.message;
            peer.approve(&received).await;
        });
        assert_answers(&result.unwrap(), &request);
    })
    .await;
}

/// A refused sign-on keeps the link down; it reconnects after a backoff pause and signs on again.
#[tokio::test]
async fn refused_sign_on_is_retried_after_backoff() {
    bounded(async {
        let bank = Bank::start().await;
        let link = start_link(config(bank.addr())).await;
        let mut peer = bank.accept().await;
        let sign_on = peer.expect_network(NetworkCode::SignOn).await;
        peer.send_plain(&NetworkResponse::answer(
            &sign_on,
            ResponseCode::IssuerUnavailable,
            None,
        ))
        .await;
        let refused_at = Instant::now();
        assert!(
            peer.try_recv(Duration::from_secs(2)).await.is_none(),
            "the link closes the refused connection"
        );
        assert!(!link.is_up());

        let mut peer = bank.accept().await;
        // backoff_min is 50 ms: the first pause is 25 to 50 ms.
        assert!(refused_at.elapsed() >= Duration::from_millis(25));
        peer.sign_on().await;
        assert!(link.wait_up(Duration::from_secs(2)).await);
        let ((), ()) = tokio::join!(link.shutdown(), async {
            let sign_off = peer.expect_network(NetworkCode::SignOff).await;
            peer.send_plain(&NetworkResponse::answer(
                &sign_off,
                ResponseCode::Approved,
                None,
            ))
            .await;
        });
    })
    .await;
}

/// Garbage from the bank is dropped without harm; dropping the last handle signs off.
#[tokio::test]
async fn garbage_is_dropped_and_dropping_the_link_signs_off() {
    bounded(async {
        let bank = Bank::start().await;
        let link = start_link(config(bank.addr())).await;
        let mut peer = bank.accept_signed_on().await;
        assert!(link.wait_up(Duration::from_secs(2)).await);

        peer.send_frame(b"not ISO 8583 at all").await;
        let request = sale(&link);
        let (result, ()) = tokio::join!(link.send(request.clone()), async {
            let received = peer.recv().await.message;
            peer.approve(&received).await;
        });
        assert_answers(&result.unwrap(), &request);

        let clone = link.clone();
        drop(link);
        assert!(clone.is_up(), "a clone keeps the link");
        drop(clone);
        let sign_off = peer.expect_network(NetworkCode::SignOff).await;
        peer.send_plain(&NetworkResponse::answer(
            &sign_off,
            ResponseCode::Approved,
            None,
        ))
        .await;
        assert!(
            peer.try_recv(Duration::from_secs(2)).await.is_none(),
            "the link closes after signing off"
        );
    })
    .await;
}

/// Beyond `max_in_flight`, `send` fails with `Busy` and nothing goes on the wire.
#[tokio::test]
async fn busy_beyond_max_in_flight_sends_nothing() {
    bounded(async {
        let bank = Bank::start().await;
        let mut config = config(bank.addr());
        config.max_in_flight = 2;
        let link = start_link(config).await;
        let mut peer = bank.accept_signed_on().await;
        assert!(link.wait_up(Duration::from_secs(2)).await);

        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let link = link.clone();
                let request = sale(&link);
                tokio::spawn(async move { link.send(request).await })
            })
            .collect();
        let first = peer.recv().await.message;
        let second = peer.recv().await.message;
        assert_eq!(link.send(sale(&link)).await, Err(LinkError::Busy));
        assert!(
            peer.try_recv(Duration::from_millis(200)).await.is_none(),
            "nothing sent"
        );
        peer.approve(&first).await;
        peer.approve(&second).await;
        for handle in waiting {
            handle.await.unwrap().unwrap();
        }
    })
    .await;
}

/// An idle link sends an echo (0800/301) and stays up when it is answered.
#[tokio::test]
async fn idle_link_sends_echo() {
    bounded(async {
        let bank = Bank::start().await;
        let mut config = config(bank.addr());
        config.echo_interval = Duration::from_millis(200);
        let link = start_link(config).await;
        let mut peer = bank.accept_signed_on().await;
        assert!(link.wait_up(Duration::from_secs(2)).await);
        for _ in 0..2 {
            let echo = peer.expect_network(NetworkCode::Echo).await;
            peer.send_plain(&NetworkResponse::answer(
                &echo,
                ResponseCode::Approved,
                None,
            ))
            .await;
        }
        assert!(link.is_up());
    })
    .await;
}

/// A key change installs the bank's new MAC key as the next version; later MACs use it.
#[tokio::test]
async fn key_change_installs_next_mac_key_version() {
    bounded(async {
        let bank = Bank::start().await;
        let mut config = config(bank.addr());
        config.key_change_interval = Some(Duration::from_secs(3600));
        let link_hsm = hsm_with_keys().await;
        let link = BankLink::start(config, Arc::clone(&link_hsm) as Arc<dyn Hsm>);
        let mut peer = bank.accept_signed_on().await;

        let request = peer.expect_network(NetworkCode::KeyChange).await;
        let new_key = bank.hsm.rotate_key(MAC_KEY).await.unwrap();
        assert_eq!(new_key.version, 2);
        let wrapped = bank
            .hsm
            .wrap_key(&KeyRef::version(MAC_KEY, 2), &KeyRef::latest(ZMK))
            .await
            .unwrap();
        let payload = KeyChangePayload::from_wrapped(&wrapped).unwrap();
        peer.send_plain(&NetworkResponse::answer(
            &request,
            ResponseCode::Approved,
            Some(&payload),
        ))
        .await;
        assert!(link.wait_up(Duration::from_secs(2)).await);
        let installed = link_hsm.key_info(&KeyRef::latest(MAC_KEY)).await.unwrap();
        assert_eq!((installed.version, installed.kcv), (2, new_key.kcv));

        let request = sale(&link);
        let (result, ()) = tokio::join!(link.send(request.clone()), async {
            let received = peer.recv().await;
            let input = mac_input(ascii_1987(), 64, &received.frame).unwrap();
            let mac = received.message.get(64).unwrap();
            let under = |version| KeyRef::version(MAC_KEY, version);
            assert_eq!(
                bank.hsm
                    .mac_verify(&under(2), MAC_ALGORITHM, input, mac)
                    .await
                    .unwrap(),
                2
            );
            assert!(
                bank.hsm
                    .mac_verify(&under(1), MAC_ALGORITHM, input, mac)
                    .await
                    .is_err()
            );
            peer.approve(&received.message).await;
        });
        assert_answers(&result.unwrap(), &request);
    })
    .await;
}

/// With no bank listening, the link stays down and `send` says `NotConnected`.
#[tokio::test]
async fn not_connected_when_the_bank_is_down() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let hsm: Arc<dyn Hsm> = hsm_with_keys().await;
        let link = BankLink::start(config(addr), hsm);
        assert!(!link.wait_up(Duration::from_millis(300)).await);
        assert_eq!(link.send(sale(&link)).await, Err(LinkError::NotConnected));
        link.shutdown().await;
    })
    .await;
}

/// A CA and a certificate for `bank.test` signed by it: (CA PEM, server chain, server key).
fn tls_material() -> (
    String,
    Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>>,
    tokio_rustls::rustls::pki_types::PrivateKeyDer<'static>,
) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["bank.test".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    (ca_cert.pem(), vec![server_cert.der().clone()], key)
}

/// Over TLS the link verifies the bank's certificate against the configured CA and works as over TCP.
#[tokio::test]
async fn works_over_tls() {
    use tokio_rustls::TlsAcceptor;
    use tokio_rustls::rustls::{ServerConfig, crypto};

    bounded(async {
        let (ca_pem, chain, key) = tls_material();
        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca_pem).unwrap();
        let server_config =
            ServerConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(server_config));

        let bank = Bank::start().await;
        let mut config = config(bank.addr());
        config.tls = Some(LinkTls {
            ca_pem_path: ca_path,
            server_name: "bank.test".to_owned(),
        });
        let link = start_link(config).await;
        let (tcp, _) = timeout(PEER_WAIT, bank.listener.accept())
            .await
            .unwrap()
            .unwrap();
        let tls = acceptor.accept(tcp).await.unwrap();
        let mut peer = Peer {
            stream: Box::new(tls),
            hsm: Arc::clone(&bank.hsm),
        };
        peer.sign_on().await;
        assert!(link.wait_up(Duration::from_secs(2)).await);
        let request = sale(&link);
        let (result, ()) = tokio::join!(link.send(request.clone()), async {
            let received = peer.recv().await.message;
            peer.approve(&received).await;
        });
        assert_answers(&result.unwrap(), &request);
    })
    .await;
}
