//! What card payments put on the bank link, recorded at the wire by a proxy
//! between the gateway and the bank simulator: the security code in field
//! 48, the STAN of a repeated reversal, the sign-off at shutdown, and what a
//! refused capture advice does to the payment.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pb::payment_service_client::PaymentServiceClient;
use posgate_core::model::clock::Clock as _;
use posgate_partners::bank::protocol::{read_frame, write_frame};
use posgate_partners::iso8583::{Message, ascii_1987};
use posgate_proto::v1 as pb;
use posgate_sims::bank::{BankSim, FaultConfig, SimConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::cards::{
    CardWorld, acquirer_config, auth_only, card_config, cobrand_config, context, init_tracing,
    sale, visa_ok, write_keystore,
};
use crate::support::{OPEN_LIMITS, TestDb, TestGateway, backends, utc};

/// Which way a recorded frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToBank,
    FromBank,
}

/// A TCP proxy in front of a bank that records every frame, unpacked.
struct WireRecorder {
    addr: SocketAddr,
    frames: Arc<Mutex<Vec<(Direction, Message)>>>,
    task: JoinHandle<()>,
}

impl Drop for WireRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WireRecorder {
    async fn start(bank: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let frames = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&frames);
        let task = tokio::spawn(async move {
            while let Ok((gateway_side, _)) = listener.accept().await {
                let Ok(bank_side) = TcpStream::connect(bank).await else {
                    continue;
                };
                let (gateway_read, gateway_write) = gateway_side.into_split();
                let (bank_read, bank_write) = bank_side.into_split();
                tokio::spawn(pump(
                    gateway_read,
                    bank_write,
                    Direction::ToBank,
                    Arc::clone(&recorded),
                ));
                tokio::spawn(pump(
                    bank_read,
                    gateway_write,
                    Direction::FromBank,
                    Arc::clone(&recorded),
                ));
            }
        });
        Self { addr, frames, task }
    }

    /// The frames that went `direction` with MTI `mti`, in order.
    fn frames(&self, direction: Direction, mti: &str) -> Vec<Message> {
        self.frames
            .lock()
            .unwrap()
            .iter()
            .filter(|(way, message)| *way == direction && message.mti().as_str() == mti)
            .map(|(_, message)| message.clone())
            .collect()
    }
}

/// Copies frames one way, recording each.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    direction: Direction,
    frames: Arc<Mutex<Vec<(Direction, Message)>>>,
) {
    while let Ok(Some(frame)) = read_frame(&mut from).await {
        if let Ok(message) = ascii_1987().unpack(&frame) {
            frames.lock().unwrap().push((direction, message));
        }
        if write_frame(&mut to, &frame).await.is_err() {
            return;
        }
    }
}

/// A card world whose acquirer link goes through a recorder.
async fn recorded_world(
    backend: crate::support::Backend,
    timeout_ms: u64,
    acquirer: SimConfig,
) -> (CardWorld, WireRecorder) {
    init_tracing();
    let acquirer = BankSim::start(acquirer).await.unwrap();
    let cobrand = BankSim::start(cobrand_config()).await.unwrap();
    let recorder = WireRecorder::start(acquirer.addr()).await;
    let db = TestDb::new(backend).await;
    write_keystore(db.dir.path()).await;
    let (a, c) = (recorder.addr.to_string(), cobrand.addr().to_string());
    let gw = TestGateway::start_with(db, utc("2026-11-23T03:00:00Z"), OPEN_LIMITS, |dir| {
        card_config(dir, &a, &c, timeout_ms)
    })
    .await;
    let client = PaymentServiceClient::new(gw.channel.clone());
    let world = CardWorld {
        gw,
        acquirer,
        cobrand,
        client,
    };
    world.wait_links_up().await;
    (world, recorder)
}

/// Moves the gateway's clock on until `done` holds (retries fall due), or
/// fails after 30 s naming `what`.
async fn advance_until(world: &CardWorld, what: &str, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(30), "{what}");
        world
            .gw
            .clock
            .set(world.gw.clock.now() + chrono::Duration::seconds(2));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn transaction(world: &CardWorld, id: &str) -> pb::CardTransaction {
    world
        .client
        .clone()
        .get_transaction(pb::GetTransactionRequest {
            context: context(&format!("get-{}", uuid::Uuid::now_v7())),
            lookup: Some(pb::get_transaction_request::Lookup::TransactionId(
                id.to_owned(),
            )),
        })
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap()
}

/// Issue 13 item 6: a keyed sale's security code goes to the bank in field
/// 48 (`CV21` + code, space-padded to 4), and the bank declines a wrong one (N7).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_code_reaches_the_bank_in_field_48() {
    for backend in backends() {
        let mut bank = acquirer_config();
        bank.accounts[0].security_code = Some("123".to_owned().into());
        let (world, recorder) = recorded_world(backend, 2_000, bank).await;
        let mut client = world.client.clone();
        let with_code = |key: &str, code: &str| {
            let mut request = sale(key, &visa_ok(), 1_000);
            code.clone_into(&mut request.card.as_mut().unwrap().security_code);
            request
        };
        let right = client
            .authorize(with_code("cvv-ok", "123"))
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        assert_eq!(right.response_code, "00", "{backend:?}");
        let sent = recorder.frames(Direction::ToBank, "0200");
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].get_str(48), Some("CV21123 "), "{backend:?}");
        let wrong = client
            .authorize(with_code("cvv-wrong", "999"))
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        assert_eq!(
            (
                pb::CardTransactionStatus::try_from(wrong.status).unwrap(),
                wrong.response_code.as_str()
            ),
            (pb::CardTransactionStatus::Declined, "N7"),
            "{backend:?}"
        );
        assert_eq!(
            world
                .acquirer
                .ledger()
                .account(&visa_ok())
                .unwrap()
                .posted_minor,
            1_000
        );
        // Without a code, nothing is sent in field 48.
        client
            .authorize(sale("cvv-none", &visa_ok(), 500))
            .await
            .unwrap();
        assert_eq!(
            recorder.frames(Direction::ToBank, "0200")[2].get_str(48),
            None
        );
    }
}

/// Issue 13 item 7: a reversal repeated (0401) carries the STAN of its
/// first transmission (0400), so the bank can match the two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_reversal_keeps_its_stan() {
    for backend in backends() {
        let (world, recorder) = recorded_world(backend, 300, acquirer_config()).await;
        world.acquirer.set_faults(FaultConfig {
            no_response: 1.0,
            ..FaultConfig::default()
        });
        let status = world
            .client
            .clone()
            .authorize(sale("rev-stan", &visa_ok(), 4_200))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        advance_until(&world, "the reversal was repeated", || {
            recorder.frames(Direction::ToBank, "0401").len() >= 2
        })
        .await;
        world.acquirer.set_faults(FaultConfig::default());
        world.drain_queue(Duration::from_secs(30)).await;
        let original = &recorder.frames(Direction::ToBank, "0200")[0];
        let mut reversals = recorder.frames(Direction::ToBank, "0400");
        reversals.extend(recorder.frames(Direction::ToBank, "0401"));
        let stans: std::collections::BTreeSet<_> = reversals
            .iter()
            .map(|message| message.get_str(11).unwrap().to_owned())
            .collect();
        assert_eq!(
            stans.len(),
            1,
            "{backend:?}: one STAN for the reversal and its repeats: {stans:?}"
        );
        assert_ne!(stans.first().map(String::as_str), original.get_str(11));
        for reversal in &reversals {
            assert_eq!(reversal.get_str(37), original.get_str(37));
        }
        assert_eq!(
            world
                .acquirer
                .ledger()
                .account(&visa_ok())
                .unwrap()
                .posted_minor,
            0,
            "{backend:?}: reversed at the bank"
        );
    }
}

/// Issue 13 item 8: stopping the gateway signs each bank link off: the
/// 0800/002 reaches the bank and its 0810 comes back before the link closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_signs_off_at_the_bank() {
    for backend in backends() {
        let (world, recorder) = recorded_world(backend, 2_000, acquirer_config()).await;
        let CardWorld { gw, .. } = world;
        // Held past the stop: the sign-off must come from stopping the
        // server, not from the links being dropped later.
        let gateway = Arc::clone(&gw.server.gateway);
        gw.stop().await;
        let code = |message: &Message| message.get_str(70).map(str::to_owned);
        let sign_offs: Vec<_> = recorder
            .frames(Direction::ToBank, "0800")
            .iter()
            .filter(|message| code(message).as_deref() == Some("002"))
            .cloned()
            .collect();
        assert_eq!(sign_offs.len(), 1, "{backend:?}: one sign-off sent");
        let answered = recorder
            .frames(Direction::FromBank, "0810")
            .iter()
            .any(|message| {
                code(message).as_deref() == Some("002")
                    && message.get_str(11) == sign_offs[0].get_str(11)
                    && message.get_str(39) == Some("00")
            });
        assert!(answered, "{backend:?}: the bank answered the sign-off");
        let payments = gateway.payments.as_ref().unwrap();
        assert!(
            payments.links.values().all(|link| !link.is_up()),
            "{backend:?}"
        );
    }
}

/// Issue 13 item 17: a capture advice the bank refuses (25) leaves the
/// payment `CAPTURE_REFUSED` with the bank's code, not `CAPTURED`; a "not now"
/// answer (91) is retried instead of taken as final.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_capture_advice_is_capture_refused() {
    for backend in backends() {
        let (world, _recorder) = recorded_world(backend, 2_000, acquirer_config()).await;
        let mut client = world.client.clone();
        let authorized = client
            .authorize(auth_only("cap-refused", &visa_ok(), 10_000))
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        let id = authorized.transaction_id.clone();
        world.acquirer.set_faults(FaultConfig {
            decline_all: Some("91".to_owned()),
            ..FaultConfig::default()
        });
        client
            .capture(pb::CaptureRequest {
                context: context("cap-refused-capture"),
                transaction_id: id.clone(),
                amount: Some(pb::Money {
                    amount_minor: 8_000,
                    currency: "TWD".to_owned(),
                }),
            })
            .await
            .unwrap();
        advance_until(&world, "the advice was retried after 91", || {
            world.acquirer.stats().requests("0220") >= 2
        })
        .await;
        let retried = transaction(&world, &id).await;
        assert_eq!(
            pb::CardTransactionStatus::try_from(retried.status).unwrap(),
            pb::CardTransactionStatus::Captured,
            "{backend:?}: still captured while the bank says 'not now'"
        );
        assert!(retried.advice_pending, "{backend:?}");
        world.acquirer.set_faults(FaultConfig {
            decline_all: Some("25".to_owned()),
            ..FaultConfig::default()
        });
        world.drain_queue(Duration::from_secs(30)).await;
        let refused = transaction(&world, &id).await;
        assert_eq!(
            (
                pb::CardTransactionStatus::try_from(refused.status).unwrap(),
                refused.response_code.as_str(),
                refused.advice_pending
            ),
            (pb::CardTransactionStatus::CaptureRefused, "25", false),
            "{backend:?}"
        );
        let events = world.gw.store().events(&id).await.unwrap();
        assert!(
            events
                .iter()
                .any(|event| event.event_type == "capture_refused"),
            "{backend:?}: {events:?}"
        );
    }
}
