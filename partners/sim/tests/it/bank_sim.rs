//! The bank simulator over real loopback TCP, driven with the real codec and
//! the bank protocol builders: approvals, every decline code, holds and
//! captures, reversals, idempotency, MAC handling, loyalty points, each
//! fault as a client sees it, and exact ledger totals.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use des::TdesEde2;
use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockEncrypt, KeyInit};
use posgate_hsm::pin_block::iso0_clear_block;
use posgate_hsm::{ClearKey, Hsm, KeyRef, KeySpec, Pan, Secret, SoftwareHsm};
use posgate_partners::bank::protocol::{
    Advice, FinancialKind, FinancialRequest, KeyChangePayload, NetworkCode, NetworkRequest,
    Reversal, needs_mac, read_frame, write_frame,
};
use posgate_partners::iso8583::{Message, Mti, ascii_1987};
use posgate_sims::bank::mac::{pack_with_mac, verify_mac};
use posgate_sims::bank::{AccountConfig, BankSim, FaultConfig, SimConfig};
use tokio::net::TcpStream;

/// Test keys (the same as config/bank-sim.example.toml): never use them for real traffic.
const MAC_KEY_HEX: &str = "0123456789ABCDEFFEDCBA9876543210";
const ZMK_HEX: &str = "1C2D3E4F5A6B7C8D8D7C6B5A4F3E2D1C";
const ZPK_HEX: &str = "A1B2C3D4E5F60718293A4B5C6D7E8F90";

const VISA: &str = "4111111111111111";
const MASTERCARD: &str = "5555555555554444";
const JCB: &str = "3530111333300000";
const CO_BRAND: &str = "5200828282828210";
const BLOCKED: &str = "4012888888881881";
const EXPIRED: &str = "4242424242424242";
const LOW_BALANCE: &str = "5105105105105100";
/// Luhn-valid, but no account at the simulated bank.
const UNKNOWN: &str = "4000056655665556";
const PIN: &str = "1234";

/// Every test ends within this, whatever the simulator does.
const TEST_BOUND: Duration = Duration::from_secs(20);
/// How long a client waits for an answer that should come.
const ANSWER_WAIT: Duration = Duration::from_secs(3);
/// How long a client waits to be sure no answer comes.
const SILENCE_WAIT: Duration = Duration::from_millis(400);

const MAC_LABEL: &str = "client.mac";
const ZMK_LABEL: &str = "client.zmk";

async fn bounded<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(TEST_BOUND, test)
        .await
        .expect("the test finished in time");
}

fn account(pan: &str, limit_minor: i64, balance_minor: i64) -> AccountConfig {
    AccountConfig {
        pan: pan.to_owned().into(),
        expiry: "3012".to_owned(),
        pin: Some(PIN.to_owned().into()),
        limit_minor,
        balance_minor,
        currency: "901".to_owned(),
        blocked: false,
        security_code: None,
    }
}

fn config() -> SimConfig {
    let mut jcb = account(JCB, 500_000, 0);
    "392".clone_into(&mut jcb.currency);
    let mut blocked = account(BLOCKED, 100_000, 0);
    blocked.blocked = true;
    let mut expired = account(EXPIRED, 100_000, 0);
    "2001".clone_into(&mut expired.expiry);
    SimConfig {
        listen: "127.0.0.1:0".to_owned(),
        mac_key_hex: MAC_KEY_HEX.to_owned().into(),
        zmk_hex: ZMK_HEX.to_owned().into(),
        zpk_hex: ZPK_HEX.to_owned().into(),
        co_brand_bins: vec!["520082".to_owned()],
        points_per_unit: 100,
        accounts: vec![
            account(VISA, 1_000_000, 0),
            account(MASTERCARD, 1_000_000, 200_000),
            jcb,
            account(CO_BRAND, 1_000_000, 0),
            blocked,
            expired,
            account(LOW_BALANCE, 10_000, 9_500),
        ],
        faults: FaultConfig::default(),
        admin_listen: None,
    }
}

async fn start() -> BankSim {
    BankSim::start(config())
        .await
        .expect("the simulator starts")
}

static NEXT: AtomicU32 = AtomicU32::new(1);

fn next_number() -> u32 {
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One request the client sent, enough to build its capture or reversal.
#[derive(Clone)]
struct Sent {
    kind: FinancialKind,
    pan: &'static str,
    amount_minor: i64,
    currency: &'static str,
    stan: String,
    rrn: String,
    at: DateTime<Utc>,
    pin_block: Option<[u8; 8]>,
}

impl Sent {
    fn new(kind: FinancialKind, pan: &'static str, amount_minor: i64) -> Self {
        let number = next_number();
        Self {
            kind,
            pan,
            amount_minor,
            currency: if pan == JCB { "392" } else { "901" },
            stan: format!("{number:06}"),
            rrn: format!("RR{number:010}"),
            at: Utc::now(),
            pin_block: None,
        }
    }

    fn with_pin(mut self, pin: &str) -> Self {
        self.pin_block = Some(pin_block(pin, self.pan));
        self
    }

    fn message(&self) -> Message {
        FinancialRequest {
            kind: self.kind,
            pan: Some(&Pan::parse(self.pan).expect("a valid PAN")),
            original: None,
            expiry: None,
            track2: None,
            amount_minor: self.amount_minor,
            currency_numeric: self.currency,
            stan: &self.stan,
            rrn: &self.rrn,
            transmitted_at: self.at,
            local: self.at.naive_utc(),
            entry_mode: "051",
            pin_block: self
                .pin_block
                .map(|block| Secret::new(block.to_vec()))
                .as_ref(),
            icc_data: None,
            security_code: None,
            terminal_id: "TERM0001",
            merchant_id: "MERCHANT0000001",
            acquirer_id: "400001",
        }
        .to_message()
        .expect("a valid request")
    }

    fn capture(&self, amount_minor: i64) -> Message {
        let stan = format!("{:06}", next_number());
        Advice {
            original_stan: &self.stan,
            original_transmitted_at: self.at,
            rrn: &self.rrn,
            amount_minor,
            currency_numeric: self.currency,
            stan: &stan,
            transmitted_at: Utc::now(),
            local: Utc::now().naive_utc(),
            approval_code: None,
            terminal_id: "TERM0001",
            merchant_id: "MERCHANT0000001",
            acquirer_id: "400001",
        }
        .to_message()
        .expect("a valid advice")
    }

    fn reversal(&self, stan: &str, repeat: bool) -> Message {
        Reversal {
            original_kind: self.kind,
            original_stan: &self.stan,
            original_transmitted_at: self.at,
            rrn: &self.rrn,
            amount_minor: self.amount_minor,
            currency_numeric: self.currency,
            stan,
            transmitted_at: self.at,
            repeat,
            terminal_id: "TERM0001",
            merchant_id: "MERCHANT0000001",
            acquirer_id: "400001",
        }
        .to_message()
        .expect("a valid reversal")
    }
}

fn pin_block(pin: &str, pan: &str) -> [u8; 8] {
    let key = hex::decode(ZPK_HEX).expect("hex");
    let cipher = TdesEde2::new_from_slice(&key).expect("16 bytes");
    let mut block = *iso0_clear_block(pin, pan).expect("a valid PIN");
    cipher.encrypt_block(GenericArray::from_mut_slice(&mut block));
    block
}

/// What a client saw after sending.
#[derive(Debug)]
enum Received {
    Answer { message: Message, mac_ok: bool },
    Closed,
    Nothing,
}

/// A bare client: the codec, the protocol's MAC helpers and a socket.
struct Client {
    stream: TcpStream,
    hsm: SoftwareHsm,
}

impl Client {
    async fn connect(sim: &BankSim) -> Self {
        let hsm = SoftwareHsm::in_memory();
        for (label, spec, hex_key) in [
            (MAC_LABEL, KeySpec::TDES_MAC, MAC_KEY_HEX),
            (ZMK_LABEL, KeySpec::TDES_ZMK, ZMK_HEX),
        ] {
            hsm.import_key(label, spec, ClearKey::from_hex(hex_key).expect("hex"))
                .await
                .expect("import");
        }
        let stream = TcpStream::connect(sim.addr()).await.expect("connect");
        Self { stream, hsm }
    }

    async fn send(&mut self, mut message: Message) {
        let packed = if needs_mac(message.mti()) {
            pack_with_mac(
                ascii_1987(),
                &mut message,
                &self.hsm,
                &KeyRef::latest(MAC_LABEL),
            )
            .await
            .expect("pack with MAC")
        } else {
            ascii_1987().pack(&message).expect("pack")
        };
        write_frame(&mut self.stream, &packed).await.expect("write");
    }

    async fn receive(&mut self, wait: Duration) -> Received {
        match tokio::time::timeout(wait, read_frame(&mut self.stream)).await {
            Err(_) => Received::Nothing,
            Ok(Ok(None) | Err(_)) => Received::Closed,
            Ok(Ok(Some(frame))) => {
                let message = ascii_1987().unpack(&frame).expect("the answer unpacks");
                let mac_ok = !needs_mac(message.mti())
                    || verify_mac(ascii_1987(), &frame, &message, &self.hsm, MAC_LABEL)
                        .await
                        .is_some();
                Received::Answer { message, mac_ok }
            }
        }
    }

    /// Sends and returns the MAC-verified answer.
    async fn call(&mut self, message: Message) -> Message {
        self.send(message).await;
        self.answer().await
    }

    async fn answer(&mut self) -> Message {
        match self.receive(ANSWER_WAIT).await {
            Received::Answer { message, mac_ok } => {
                assert!(mac_ok, "the answer's MAC verifies");
                message
            }
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    /// Sends and returns field 39 of the answer.
    async fn code(&mut self, message: Message) -> String {
        let answer = self.call(message).await;
        answer.get_str(39).expect("field 39").to_owned()
    }
}

fn posted(sim: &BankSim, pan: &str) -> i64 {
    sim.ledger().account(pan).expect("configured").posted_minor
}

fn held(sim: &BankSim, pan: &str) -> i64 {
    sim.ledger().account(pan).expect("configured").held_minor
}

/// A sale is approved with an approval code, echoes STAN and RRN, and posts.
#[tokio::test]
async fn sale_is_approved_and_posted() {
    bounded(async {
        let sim = start().await;
        let mut client = Client::connect(&sim).await;
        let sale = Sent::new(FinancialKind::Sale, VISA, 12_345);
        let answer = client.call(sale.message()).await;
        assert_eq!(answer.mti(), Mti::new(*b"0210"));
        assert_eq!(answer.get_str(39), Some("00"));
        assert_eq!(answer.get_str(11), Some(sale.stan.as_str()));
        assert_eq!(answer.get_str(37), Some(sale.rrn.as_str()));
        assert_eq!(answer.get(38).map(<[u8]>::len), Some(6));
        assert!(!answer.has(2), "the PAN is not echoed");
        let visa = sim.ledger().account(VISA).expect("configured").clone();
        assert_eq!((visa.posted_minor, visa.available_minor), (12_345, 987_655));
        assert!(
            !format!("{:?}", sim.ledger()).contains(VISA),
            "no full PAN in Debug"
        );
        assert_eq!(sim.stats().requests("0200"), 1);
        assert_eq!(sim.stats().responses("0210"), 1);
        sim.shutdown().await;
    })
    .await;
}

/// Each decline has its response code and changes nothing.
#[tokio::test]
async fn declines_have_their_codes() {
    bounded(async {
        let sim = start().await;
        let mut client = Client::connect(&sim).await;
        let sale = |pan| Sent::new(FinancialKind::Sale, pan, 1_000);
        assert_eq!(client.code(sale(BLOCKED).message()).await, "05");
        assert_eq!(client.code(sale(UNKNOWN).message()).await, "14");
        assert_eq!(client.code(sale(EXPIRED).message()).await, "54");
        assert_eq!(client.code(sale(LOW_BALANCE).message()).await, "51");
        let wrong_pin = sale(VISA).with_pin("9999");
        assert_eq!(client.code(wrong_pin.message()).await, "55");
        let right_pin = sale(VISA).with_pin(PIN);
        assert_eq!(client.code(right_pin.message()).await, "00");
        // Bad Luhn: the builders refuse it, so set field 2 by hand.
        let mut bad_luhn = sale(VISA).message();
        bad_luhn.set_str(2, "4111111111111112");
        assert_eq!(client.code(bad_luhn).await, "14");
        // A currency the account does not hold, and a missing amount: format errors.
        let mut yen = sale(VISA);
        yen.currency = "392";
        assert_eq!(client.code(yen.message()).await, "30");
        let mut no_amount = sale(VISA).message();
        no_amount.remove(4);
        assert_eq!(client.code(no_amount).await, "30");
        // Within open-to-buy exactly is approved, one unit more is not.
        let low = sim
            .ledger()
            .account(LOW_BALANCE)
            .expect("configured")
            .available_minor;
        assert_eq!(low, 500);
        let over = Sent::new(FinancialKind::Authorization, LOW_BALANCE, 501);
        assert_eq!(client.code(over.message()).await, "51");
        let exact = Sent::new(FinancialKind::Authorization, LOW_BALANCE, 500);
        assert_eq!(client.code(exact.message()).await, "00");
        let ledger = sim.ledger();
        assert_eq!(ledger.totals("901").posted_minor, 1_000);
        assert_eq!(ledger.totals("901").held_minor, 500);
        assert_eq!(sim.stats().format_errors, 1);
        sim.shutdown().await;
    })
    .await;
}

/// An authorization holds; a partial capture posts the captured part and
/// releases the rest; a repeated capture changes nothing.
#[tokio::test]
async fn hold_then_partial_capture_releases_the_rest() {
    bounded(async {
        let sim = start().await;
        let mut client = Client::connect(&sim).await;
        let auth = Sent::new(FinancialKind::Authorization, MASTERCARD, 50_000);
        let answer = client.call(auth.message()).await;
        assert_eq!(answer.mti(), Mti::new(*b"0110"));
        assert_eq!(answer.get_str(39), Some("00"));
        let before = sim
            .ledger()
            .account(MASTERCARD)
            .expect("configured")
            .clone();
        assert_eq!(
            (before.held_minor, before.available_minor),
            (50_000, 750_000)
        );
        let capture = auth.capture(30_000);
        let answer = client.call(capture.clone()).await;
        assert_eq!(answer.mti(), Mti::new(*b"0230"));
        assert_eq!(answer.get_str(39), Some("00"));
        let after = sim
            .ledger()
            .account(MASTERCARD)
            .expect("configured")
            .clone();
        assert_eq!(
            (after.held_minor, after.posted_minor, after.available_minor),
            (0, 30_000, 770_000)
        );
        assert_eq!(client.code(capture).await, "00", "the same advice again");
        assert_eq!(posted(&sim, MASTERCARD), 30_000);
        assert_eq!(sim.stats().duplicates_replayed, 1);
        // A capture above the authorized amount, and of an unknown authorization.
        let auth2 = Sent::new(FinancialKind::Authorization, MASTERCARD, 1_000);
        client.call(auth2.message()).await;
        assert_eq!(client.code(auth2.capture(1_001)).await, "13");
        let never = Sent::new(FinancialKind::Authorization, MASTERCARD, 1_000);
        assert_eq!(client.code(never.capture(1_000)).await, "25");
        assert_eq!(held(&sim, MASTERCARD), 1_000);
        sim.shutdown().await;
    })
    .await;
}

/// A sale then its reversal restores the account exactly; a 0401 repeat
/// answers 00 again without undoing twice.
#[tokio::test]
async fn reversal_restores_exactly_once() {
    bounded(async {
        let sim = start().await;
        let mut client = Client::connect(&sim).await;
        let before = sim.ledger();
        let sale = Sent::new(FinancialKind::Sale, VISA, 77_777);
        assert_eq!(client.code(sale.message()).await, "00");
        let reversal_stan = format!("{:06}", next_number());
        let answer = client.call(sale.reversal(&reversal_stan, false)).await;
        assert_eq!(answer.mti(), Mti::new(*b"0410"));
        assert_eq!(answer.get_str(39), Some("00"));
        assert_eq!(
            sim.ledger().accounts,
            before.accounts,
            "the books are as before the sale"
        );
        assert_eq!(sim.ledger().totals, before.totals);
        let repeat = client.call(sale.reversal(&reversal_stan, true)).await;
        assert_eq!(repeat.mti(), Mti::new(*b"0410"));
        assert_eq!(repeat.get_str(39), Some("00"));
        // A later repeat with a new STAN is the same content: replayed too.
        let other_stan = format!("{:06}", next_number());
        assert_eq!(client.code(sale.reversal(&other_stan, true)).await, "00");
        assert_eq!(sim.ledger().accounts, before.accounts);
        let stats = sim.stats();
        assert_eq!(stats.reversals_applied, 1);
        assert_eq!(stats.requests("0401"), 2);
        assert_eq!(stats.duplicates_replayed, 2);
        // Reversing an authorization releases its hold.
        let auth = Sent::new(FinancialKind::Authorization, VISA, 5_000);
        assert_eq!(client.code(auth.message()).await, "00");
        assert_eq!(held(&sim, VISA), 5_000);
        let stan = format!("{:06}", next_number());
        assert_eq!(client.code(auth.reversal(&stan, false)).await, "00");
        assert_eq!(held(&sim, VISA), 0);
        sim.shutdown().await;
    })
    .await;
}

/// A reversal of an original the bank never saw answers 00; when the
/// original arrives late it is declined and changes nothing.
#[tokio::test]
async fn reversal_before_original_declines_the_late_original() {
    bounded(async {
        let sim = start().await;
        let mut client = Client::connect(&sim).await;
        let sale = Sent::new(FinancialKind::Sale, VISA, 4_000);
        let stan = format!("{:06}", next_number());
        assert_eq!(client.code(sale.reversal(&stan, false)).await, "00");
        assert_eq!(sim.stats().reversals_unknown_original, 1);
        assert_eq!(client.code(sale.message()).await, "05");
        assert_eq!(posted(&sim, VISA), 0);
        sim.shutdown().await;
    })
    .await;
}

/// The same RRN and content gets the same answer without a second charge;
/// the same RRN with a different amount gets 94.
#[tokio::test]
async fn rrn_idempotency() {
    bounded(async {
        let sim = start().await;
        let mut client = Client::connect(&sim).await;
        let sale = Sent::new(FinancialKind::Sale, VISA, 2_500);
        let first = client.call(sale.message()).await;
        let mut retry = sale.clone();
        retry.stan = format!("{:06}", next_number());
        let second = client.call(retry.message()).await;
        assert_eq!(second.get_str(39), Some("00"));
        assert_eq!(second.get(38), first.get(38), "the same approval code");
        assert_eq!(
            second.get_str(11),
            Some(retry.stan.as_str()),
            "matched to the retry"
        );
        assert_eq!(posted(&sim, VISA), 2_500);
        let mut changed = sale.clone();
        changed.amount_minor = 2_600;
        assert_eq!(client.code(changed.message()).await, "94");
        assert_eq!(posted(&sim, VISA), 2_500);
        let stats = sim.stats();
        assert_eq!(
            (stats.duplicates_replayed, stats.duplicates_refused),
            (1, 1)
        );
        sim.shutdown().await;
    })
    .await;
}

/// A STAN the acquirer already used today for another RRN is refused 94
/// (duplicate transmission) and applies nothing, for a sale and for a
/// reversal alike; the first transaction's own repeats are still answered.
#[tokio::test]
async fn stan_reused_for_another_rrn_is_refused() {
    bounded(async {
        let sim = start().await;
        let mut client = Client::connect(&sim).await;
        let sale = Sent::new(FinancialKind::Sale, VISA, 1_500);
        assert_eq!(client.code(sale.message()).await, "00");
        let mut other = Sent::new(FinancialKind::Sale, MASTERCARD, 900);
        other.stan.clone_from(&sale.stan);
        let answer = client.call(other.message()).await;
        assert_eq!(answer.get_str(39), Some("94"));
        assert_eq!(answer.get_str(37), Some(other.rrn.as_str()));
        assert_eq!(posted(&sim, MASTERCARD), 0);
        let auth = Sent::new(FinancialKind::Authorization, VISA, 700);
        assert_eq!(client.code(auth.message()).await, "00");
        assert_eq!(client.code(auth.reversal(&sale.stan, false)).await, "94");
        assert_eq!(
            held(&sim, VISA),
            700,
            "the reversal under a used STAN undid nothing"
        );
        // The first sale retransmitted, and reversed under its own STAN.
        assert_eq!(client.code(sale.message()).await, "00");
        assert_eq!(client.code(sale.reversal(&sale.stan, false)).await, "00");
        assert_eq!(posted(&sim, VISA), 0);
        let stats = sim.stats();
        assert_eq!(stats.duplicate_stans_refused, 2);
        assert_eq!(stats.duplicates_replayed, 1);
        sim.shutdown().await;
    })
    .await;
}

/// A request with a bad or missing MAC is not applied and is answered 96.
#[tokio::test]
async fn bad_request_mac_is_answered_96_and_not_applied() {
    bounded(async {
        let sim = start().await;
        let mut client = Client::connect(&sim).await;
        let sale = Sent::new(FinancialKind::Sale, VISA, 9_000);
        let mut message = sale.message();
        let mut packed = pack_with_mac(
            ascii_1987(),
            &mut message,
            &client.hsm,
            &KeyRef::latest(MAC_LABEL),
        )
        .await
        .expect("pack");
        let last = packed.len() - 1;
        packed[last] = if packed[last] == b'0' { b'1' } else { b'0' };
        write_frame(&mut client.stream, &packed)
            .await
            .expect("write");
        let answer = client.answer().await;
        assert_eq!(answer.get_str(39), Some("96"));
        assert_eq!(answer.get_str(11), Some(sale.stan.as_str()));
        let unmacced = ascii_1987().pack(&sale.message()).expect("pack");
        write_frame(&mut client.stream, &unmacced)
            .await
            .expect("write");
        assert_eq!(client.answer().await.get_str(39), Some("96"));
        assert_eq!(posted(&sim, VISA), 0);
        assert_eq!(sim.stats().mac_failures, 2);
        // The same RRN with a good MAC is then applied: the failures recorded nothing.
        assert_eq!(client.code(sale.message()).await, "00");
        sim.shutdown().await;
    })
    .await;
}

/// Co-brand cards earn points on sales and captures; refunds and reversals take them back.
#[tokio::test]
async fn co_brand_points_and_take_back() {
    bounded(async {
        let sim = start().await;
        let mut client = Client::connect(&sim).await;
        let sale = Sent::new(FinancialKind::Sale, CO_BRAND, 12_050);
        let answer = client.call(sale.message()).await;
        assert_eq!(answer.get_str(48), Some("PTS+000000120BAL000000000120"));
        let auth = Sent::new(FinancialKind::Authorization, CO_BRAND, 10_000);
        let answer = client.call(auth.message()).await;
        assert_eq!(answer.get_str(48), Some("PTS+000000000BAL000000000120"));
        let answer = client.call(auth.capture(8_000)).await;
        assert_eq!(answer.get_str(48), Some("PTS+000000080BAL000000000200"));
        let refund = Sent::new(FinancialKind::Refund, CO_BRAND, 5_000);
        let answer = client.call(refund.message()).await;
        assert_eq!(answer.get_str(39), Some("00"));
        assert_eq!(answer.get_str(48), Some("PTS-000000050BAL000000000150"));
        let stan = format!("{:06}", next_number());
        let answer = client.call(sale.reversal(&stan, false)).await;
        assert_eq!(answer.get_str(48), Some("PTS-000000120BAL000000000030"));
        let card = sim.ledger().account(CO_BRAND).expect("configured").clone();
        assert_eq!((card.points, card.posted_minor), (30, 8_000 - 5_000));
        // Non co-brand cards carry no field 48.
        let plain = client
            .call(Sent::new(FinancialKind::Sale, VISA, 10_000).message())
            .await;
        assert!(!plain.has(48));
        sim.shutdown().await;
    })
    .await;
}

/// Sign-on, echo and sign-off are answered without MAC; a key change
/// returns a new MAC key under the ZMK, which then works, while the old one
/// still verifies.
#[tokio::test]
async fn network_management_and_key_change() {
    bounded(async {
        let sim = start().await;
        let mut client = Client::connect(&sim).await;
        for code in [NetworkCode::SignOn, NetworkCode::Echo] {
            let stan = format!("{:06}", next_number());
            let request = NetworkRequest::new(code, &stan, Utc::now())
                .to_message()
                .expect("valid");
            let answer = client.call(request).await;
            assert_eq!(answer.mti(), Mti::new(*b"0810"));
            assert_eq!(
                (answer.get_str(39), answer.get_str(11)),
                (Some("00"), Some(stan.as_str()))
            );
        }
        let stan = format!("{:06}", next_number());
        let request = NetworkRequest::new(NetworkCode::KeyChange, &stan, Utc::now())
            .to_message()
            .expect("valid");
        let answer = client.call(request).await;
        assert_eq!(answer.get_str(39), Some("00"));
        let payload =
            KeyChangePayload::parse(answer.get_str(48).expect("field 48")).expect("KEY..KCV..");
        let zmk_kcv = client
            .hsm
            .key_info(&KeyRef::latest(ZMK_LABEL))
            .await
            .expect("zmk")
            .kcv;
        let info = client
            .hsm
            .unwrap_key(
                MAC_LABEL,
                &payload.to_wrapped(zmk_kcv),
                &KeyRef::latest(ZMK_LABEL),
            )
            .await
            .expect("the new key unwraps and its KCV checks");
        assert_eq!(info.version, 2);
        assert_eq!(sim.mac_key_version().await, 2);
        // The client now MACs with version 2; the answer is MAC'd with it too.
        assert_eq!(
            client
                .code(Sent::new(FinancialKind::Sale, VISA, 100).message())
                .await,
            "00"
        );
        // A client still on version 1 is still served during the change.
        let mut old = Client::connect(&sim).await;
        assert_eq!(
            old.code(Sent::new(FinancialKind::Sale, VISA, 100).message())
                .await,
            "00"
        );
        assert_eq!(sim.stats().key_changes, 1);
        let stan = format!("{:06}", next_number());
        let request = NetworkRequest::new(NetworkCode::SignOff, &stan, Utc::now())
            .to_message()
            .expect("valid");
        assert_eq!(client.code(request).await, "00");
        sim.shutdown().await;
    })
    .await;
}

fn fault(configure: impl FnOnce(&mut FaultConfig)) -> FaultConfig {
    let mut faults = FaultConfig::default();
    configure(&mut faults);
    faults
}

/// No response: the sale is applied, nothing comes back; 0800s are still answered.
#[tokio::test]
async fn fault_no_response() {
    bounded(async {
        let sim = start().await;
        sim.set_faults(fault(|faults| faults.no_response = 1.0));
        let mut client = Client::connect(&sim).await;
        client
            .send(Sent::new(FinancialKind::Sale, VISA, 1_500).message())
            .await;
        assert!(matches!(
            client.receive(SILENCE_WAIT).await,
            Received::Nothing
        ));
        assert_eq!(posted(&sim, VISA), 1_500, "applied although unanswered");
        let stan = format!("{:06}", next_number());
        let echo = NetworkRequest::new(NetworkCode::Echo, &stan, Utc::now())
            .to_message()
            .expect("valid");
        assert_eq!(
            client.code(echo).await,
            "00",
            "network management is never faulted"
        );
        assert_eq!(sim.stats().faults("no_response"), 1);
        sim.shutdown().await;
    })
    .await;
}

/// Dropped connection: the sale is applied and the connection closes unanswered.
#[tokio::test]
async fn fault_drop_connection() {
    bounded(async {
        let sim = start().await;
        sim.set_faults(fault(|faults| faults.drop_connection = 1.0));
        let mut client = Client::connect(&sim).await;
        client
            .send(Sent::new(FinancialKind::Sale, VISA, 1_600).message())
            .await;
        assert!(matches!(
            client.receive(ANSWER_WAIT).await,
            Received::Closed
        ));
        assert_eq!(posted(&sim, VISA), 1_600);
        sim.set_faults(FaultConfig::default());
        let mut again = Client::connect(&sim).await;
        assert_eq!(
            again
                .code(Sent::new(FinancialKind::Sale, VISA, 1).message())
                .await,
            "00"
        );
        sim.shutdown().await;
    })
    .await;
}

/// Late response: applied at once, answered only after `late_by`; latency delays every answer.
#[tokio::test]
async fn fault_late_response_and_latency() {
    bounded(async {
        let sim = start().await;
        sim.set_faults(fault(|faults| {
            faults.late_response = 1.0;
            faults.late_by = Duration::from_millis(600);
        }));
        let mut client = Client::connect(&sim).await;
        let started = Instant::now();
        client
            .send(Sent::new(FinancialKind::Sale, VISA, 1_700).message())
            .await;
        assert!(matches!(
            client.receive(Duration::from_millis(200)).await,
            Received::Nothing
        ));
        assert_eq!(posted(&sim, VISA), 1_700, "applied before the answer");
        let answer = client.answer().await;
        assert_eq!(answer.get_str(39), Some("00"));
        assert!(started.elapsed() >= Duration::from_millis(600));
        sim.set_faults(fault(|faults| faults.latency = Duration::from_millis(300)));
        let started = Instant::now();
        assert_eq!(
            client
                .code(Sent::new(FinancialKind::Sale, VISA, 1).message())
                .await,
            "00"
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
        sim.shutdown().await;
    })
    .await;
}

/// Duplicate response: the same answer arrives twice.
#[tokio::test]
async fn fault_duplicate_response() {
    bounded(async {
        let sim = start().await;
        sim.set_faults(fault(|faults| faults.duplicate_response = 1.0));
        let mut client = Client::connect(&sim).await;
        let sale = Sent::new(FinancialKind::Sale, VISA, 1_800);
        let first = client.call(sale.message()).await;
        let second = client.answer().await;
        assert_eq!(first, second);
        assert_eq!(second.get_str(11), Some(sale.stan.as_str()));
        assert_eq!(posted(&sim, VISA), 1_800, "charged once");
        assert_eq!(sim.stats().responses("0210"), 2);
        sim.shutdown().await;
    })
    .await;
}

/// Bad MAC on the answer: the sale is applied, the answer's MAC fails to verify.
#[tokio::test]
async fn fault_bad_mac_on_the_answer() {
    bounded(async {
        let sim = start().await;
        sim.set_faults(fault(|faults| faults.bad_mac = 1.0));
        let mut client = Client::connect(&sim).await;
        client
            .send(Sent::new(FinancialKind::Sale, VISA, 1_900).message())
            .await;
        match client.receive(ANSWER_WAIT).await {
            Received::Answer { message, mac_ok } => {
                assert!(!mac_ok, "the MAC is corrupted");
                assert_eq!(message.get_str(39), Some("00"));
            }
            other => panic!("expected an answer, got {other:?}"),
        }
        assert_eq!(posted(&sim, VISA), 1_900);
        sim.shutdown().await;
    })
    .await;
}

/// `decline_all` answers every financial request with its code and applies nothing.
#[tokio::test]
async fn fault_decline_all() {
    bounded(async {
        let sim = start().await;
        sim.set_faults(fault(|faults| faults.decline_all = Some("91".to_owned())));
        let mut client = Client::connect(&sim).await;
        assert_eq!(
            client
                .code(Sent::new(FinancialKind::Sale, VISA, 2_000).message())
                .await,
            "91"
        );
        assert_eq!(posted(&sim, VISA), 0);
        assert_eq!(sim.stats().faults("decline_all"), 1);
        sim.shutdown().await;
    })
    .await;
}

/// The same seed injects the same faults on the same traffic.
#[tokio::test]
async fn faults_are_reproducible_by_seed() {
    bounded(async {
        let mut outcomes = Vec::new();
        for _ in 0..2 {
            let sim = start().await;
            sim.set_faults(fault(|faults| {
                faults.no_response = 0.5;
                faults.seed = 7;
            }));
            let mut client = Client::connect(&sim).await;
            let mut seen = Vec::new();
            for _ in 0..8 {
                client
                    .send(Sent::new(FinancialKind::Sale, VISA, 10).message())
                    .await;
                seen.push(matches!(
                    client.receive(Duration::from_millis(150)).await,
                    Received::Answer { .. }
                ));
            }
            assert_eq!(posted(&sim, VISA), 80, "every request applied");
            outcomes.push(seen);
            sim.shutdown().await;
        }
        assert_eq!(outcomes[0], outcomes[1]);
        assert!(outcomes[0].contains(&true) && outcomes[0].contains(&false));
    })
    .await;
}

/// Many requests in flight on one connection, and on several, all answered;
/// after a mixed sequence the totals per currency are exact.
#[tokio::test]
async fn concurrent_mixed_sequence_totals_are_exact() {
    bounded(async {
        let sim = start().await;
        let mut client = Client::connect(&sim).await;
        let sales: Vec<Sent> = (0..50)
            .map(|_| Sent::new(FinancialKind::Sale, MASTERCARD, 1_001))
            .collect();
        for sale in &sales {
            client.send(sale.message()).await;
        }
        let mut stans = Vec::new();
        for _ in &sales {
            let answer = client.answer().await;
            assert_eq!(answer.get_str(39), Some("00"));
            stans.push(answer.get_str(11).expect("STAN").to_owned());
        }
        stans.sort();
        let mut sent: Vec<String> = sales.iter().map(|sale| sale.stan.clone()).collect();
        sent.sort();
        assert_eq!(stans, sent, "every request answered once");
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let mut other = Client::connect(&sim).await;
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    let code = other
                        .code(Sent::new(FinancialKind::Sale, VISA, 7).message())
                        .await;
                    assert_eq!(code, "00");
                }
            }));
        }
        for task in tasks {
            task.await.expect("client task");
        }
        // Mixed: holds, a partial capture, a refund, a reversal, a decline, yen.
        let auth = Sent::new(FinancialKind::Authorization, VISA, 10_000);
        client.call(auth.message()).await;
        client.call(auth.capture(6_000)).await;
        let open = Sent::new(FinancialKind::Authorization, MASTERCARD, 3_333);
        client.call(open.message()).await;
        client
            .call(Sent::new(FinancialKind::Refund, VISA, 250).message())
            .await;
        let reversed = Sent::new(FinancialKind::Sale, MASTERCARD, 9_999);
        client.call(reversed.message()).await;
        let stan = format!("{:06}", next_number());
        client.call(reversed.reversal(&stan, false)).await;
        client
            .call(Sent::new(FinancialKind::Sale, LOW_BALANCE, 9_999).message())
            .await;
        client
            .call(Sent::new(FinancialKind::Sale, JCB, 4_321).message())
            .await;
        let ledger = sim.ledger();
        let twd = ledger.totals("901");
        assert_eq!(twd.posted_minor, 50 * 1_001 + 40 * 7 + 6_000 - 250);
        assert_eq!(twd.held_minor, 3_333);
        let jpy = ledger.totals("392");
        assert_eq!((jpy.posted_minor, jpy.held_minor), (4_321, 0));
        let sum: i128 = ledger
            .accounts
            .iter()
            .filter(|account| account.currency == "901")
            .map(|account| i128::from(account.posted_minor))
            .sum();
        assert_eq!(sum, twd.posted_minor);
        sim.shutdown().await;
    })
    .await;
}

/// The example config parses, validates and starts.
#[tokio::test]
async fn example_config_starts() {
    bounded(async {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../config/bank-sim.example.toml");
        let mut config = SimConfig::from_file(&path).expect("the example config is valid");
        assert!(config.accounts.len() >= 6);
        config.listen = "127.0.0.1:0".to_owned();
        let sim = BankSim::start(config).await.expect("starts");
        let mut client = Client::connect(&sim).await;
        assert_eq!(
            client
                .code(Sent::new(FinancialKind::Sale, VISA, 100).message())
                .await,
            "00"
        );
        sim.shutdown().await;
    })
    .await;
}

/// A `BankLink` with the client keys, started against `sim`.
async fn start_link(sim: &BankSim) -> posgate_partners::bank::link::BankLink {
    use posgate_partners::bank::link::{BankLink, LinkConfig};
    use std::sync::Arc;

    let hsm = Arc::new(SoftwareHsm::in_memory());
    for (label, spec, hex_key) in [
        (MAC_LABEL, KeySpec::TDES_MAC, MAC_KEY_HEX),
        (ZMK_LABEL, KeySpec::TDES_ZMK, ZMK_HEX),
    ] {
        hsm.import_key(label, spec, ClearKey::from_hex(hex_key).expect("hex"))
            .await
            .expect("import");
    }
    let mut config = LinkConfig::new(
        "acquirer",
        sim.addr().to_string(),
        "400001",
        MAC_LABEL,
        ZMK_LABEL,
    );
    config.request_timeout = Duration::from_millis(700);
    config.key_change_interval = Some(Duration::from_secs(3600));
    BankLink::start(config, hsm)
}

/// The real `BankLink` signs on to the simulator and changes keys with it (0800s carry no MAC).
#[tokio::test]
async fn bank_link_signs_on_and_changes_keys() {
    bounded(async {
        let sim = start().await;
        let link = start_link(&sim).await;
        assert!(link.wait_up(Duration::from_secs(5)).await, "signed on");
        let deadline = Instant::now() + Duration::from_secs(5);
        while sim.stats().key_changes == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(sim.stats().key_changes, 1, "key change after sign-on");
        assert_eq!(sim.mac_key_version().await, 2);
        link.shutdown().await;
        sim.shutdown().await;
    })
    .await;
}

/// The real `BankLink` gets a sale approved, and sees a no-response fault as
/// an unknown outcome. Ignored until the link's MAC helpers (protocol/mac.rs)
/// handle the MAC's hex wire form in `ascii_1987`: they overwrite the last 8
/// bytes of a frame whose MAC takes 16, so the simulator cannot unpack the
/// link's financial requests.
#[tokio::test]
async fn bank_link_sale_and_fault() {
    use posgate_partners::bank::link::LinkError;

    bounded(async {
        let sim = start().await;
        let link = start_link(&sim).await;
        assert!(link.wait_up(Duration::from_secs(5)).await, "signed on");
        let mut sale = Sent::new(FinancialKind::Sale, VISA, 3_210);
        sale.stan = link.next_stan();
        let answer = link.send(sale.message()).await.expect("answered");
        assert_eq!(answer.get_str(39), Some("00"));
        assert_eq!(posted(&sim, VISA), 3_210);
        sim.set_faults(fault(|faults| faults.no_response = 1.0));
        let mut lost = Sent::new(FinancialKind::Sale, VISA, 1_000);
        lost.stan = link.next_stan();
        let error = link.send(lost.message()).await.expect_err("no answer");
        assert_eq!(error, LinkError::Timeout);
        assert!(error.outcome_unknown());
        assert_eq!(posted(&sim, VISA), 4_210, "the bank applied it");
        link.shutdown().await;
        sim.shutdown().await;
    })
    .await;
}

/// Issue 13 item 19: the admin endpoint on loopback dumps the books read-only
/// (per account held, posted and points; per RRN what each transaction
/// applied), with masked PANs only; a non-loopback address is refused.
#[tokio::test]
async fn admin_endpoint_dumps_the_ledger() {
    bounded(async {
        let mut exposed = config();
        exposed.admin_listen = Some("0.0.0.0:0".to_owned());
        let refused = BankSim::start(exposed).await.expect_err("not loopback");
        assert!(refused.to_string().contains("admin_listen"), "{refused}");

        let mut with_admin = config();
        with_admin.admin_listen = Some("127.0.0.1:0".to_owned());
        let sim = BankSim::start(with_admin).await.expect("starts");
        let mut client = Client::connect(&sim).await;
        let sale = Sent::new(FinancialKind::Sale, VISA, 12_345);
        assert_eq!(client.code(sale.message()).await, "00");
        let auth = Sent::new(FinancialKind::Authorization, MASTERCARD, 5_000);
        assert_eq!(client.code(auth.message()).await, "00");

        let get = |request: &'static str| {
            let admin = sim.admin_addr().expect("configured");
            async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut stream = TcpStream::connect(admin).await.expect("connect");
                stream.write_all(request.as_bytes()).await.expect("write");
                let mut response = String::new();
                stream.read_to_string(&mut response).await.expect("read");
                response
            }
        };
        let response = get("GET /ledger HTTP/1.1\r\nhost: sim\r\n\r\n").await;
        let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(!body.contains(VISA), "no full PAN in the dump");
        let dump: serde_json::Value = serde_json::from_str(body).expect("JSON");
        let account = |masked: &str| {
            dump["accounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|account| account["pan_masked"] == masked)
                .cloned()
                .expect("the account is listed")
        };
        let visa = posgate_hsm::Pan::parse(VISA).unwrap().masked();
        let mastercard = posgate_hsm::Pan::parse(MASTERCARD).unwrap().masked();
        assert_eq!(account(&visa)["posted_minor"], 12_345);
        assert_eq!(account(&mastercard)["held_minor"], 5_000);
        let applied = dump["applied"].as_array().unwrap();
        let entry = applied
            .iter()
            .find(|entry| entry["rrn"] == sale.rrn.as_str())
            .expect("the sale's RRN is listed");
        assert_eq!(entry["kind"], "sale");
        assert_eq!(entry["posted_minor"], 12_345);
        assert_eq!(entry["stan"], sale.stan.as_str());
        assert_eq!(entry["reversed"], false);
        let response = get("POST /ledger HTTP/1.1\r\n\r\n").await;
        assert!(response.starts_with("HTTP/1.1 405"), "{response}");
        assert_eq!(sim.ledger().account(VISA).unwrap().posted_minor, 12_345);
        sim.shutdown().await;
    })
    .await;
}
