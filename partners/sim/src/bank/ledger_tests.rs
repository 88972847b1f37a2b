//! Unit tests of the ledger's arithmetic, without a network.

use super::*;
use crate::bank::config::{AccountConfig, FaultConfig};

const VISA: &str = "4111111111111111";
const CO_BRAND: &str = "5411111111111115";

fn config() -> SimConfig {
    let account = |pan: &str| AccountConfig {
        pan: pan.to_owned().into(),
        expiry: "3012".to_owned(),
        pin: Some("1234".to_owned().into()),
        limit_minor: 100_000,
        balance_minor: 10_000,
        currency: "901".to_owned(),
        blocked: false,
        security_code: Some("123".to_owned().into()),
    };
    SimConfig {
        listen: "127.0.0.1:0".to_owned(),
        mac_key_hex: "0123456789ABCDEFFEDCBA9876543210".to_owned().into(),
        zmk_hex: "1C2D3E4F5A6B7C8D8D7C6B5A4F3E2D1C".to_owned().into(),
        zpk_hex: "A1B2C3D4E5F60718293A4B5C6D7E8F90".to_owned().into(),
        co_brand_bins: vec!["541111".to_owned()],
        points_per_unit: 100,
        accounts: vec![account(VISA), account(CO_BRAND)],
        faults: FaultConfig::default(),
        admin_listen: None,
    }
}

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 15).expect("valid date")
}

fn key(mti: &str, stan: &str, rrn: &str) -> OriginalKey {
    OriginalKey {
        mti: mti.to_owned(),
        stan: stan.to_owned(),
        transmitted_at: "0115103000".to_owned(),
        acquirer_id: "10000000001".to_owned(),
        rrn: rrn.to_owned(),
    }
}

fn request(kind: FinancialKind, pan: &str, amount_minor: i64, stan: &str) -> FinancialRequest {
    let mti = if kind == FinancialKind::Authorization {
        "0100"
    } else {
        "0200"
    };
    FinancialRequest {
        kind,
        pan_digits: pan.to_owned().into(),
        refunded: None,
        expiry: None,
        amount_minor,
        currency: "901".to_owned(),
        key: key(mti, stan, &format!("RRN{stan}")),
        pin_block: None,
        security_code: None,
        fingerprint: format!("{kind:?}{pan}{amount_minor}").into_bytes(),
    }
}

/// A reversal of `original` sent with STAN `stan` (field 37: the original's RRN).
fn reversal_of(original: &OriginalKey, stan: &str, fingerprint: &[u8]) -> ReversalRequest {
    ReversalRequest {
        key: key("0400", stan, &original.rrn),
        original: original.clone(),
        fingerprint: fingerprint.to_vec(),
    }
}

fn account(ledger: &Ledger, pan: &str) -> AccountSnapshot {
    ledger.snapshot().account(pan).expect("configured").clone()
}

/// A hold, then a partial capture: the captured part is posted, the rest released.
#[test]
fn partial_capture_releases_the_rest() {
    let mut ledger = Ledger::new(&config()).expect("valid");
    let auth = request(FinancialKind::Authorization, VISA, 5_000, "000001");
    assert_eq!(ledger.financial(&auth, today()).0.response_code, "00");
    assert_eq!(account(&ledger, VISA).held_minor, 5_000);
    assert_eq!(account(&ledger, VISA).available_minor, 85_000);
    let capture = CaptureRequest {
        key: key("0220", "000002", "RRN000001"),
        original: auth.key.clone(),
        amount_minor: 3_000,
        currency: "901".to_owned(),
        fingerprint: b"capture".to_vec(),
    };
    assert_eq!(ledger.capture(&capture).0.response_code, "00");
    let after = account(&ledger, VISA);
    assert_eq!(
        (after.held_minor, after.posted_minor, after.available_minor),
        (0, 3_000, 87_000)
    );
    assert_eq!(ledger.capture(&capture).1, Effect::Replayed);
    assert_eq!(account(&ledger, VISA).posted_minor, 3_000);
}

/// A sale then its reversal: balance and points back exactly; a second reversal changes nothing.
#[test]
fn sale_reversal_restores_exactly_once() {
    let mut ledger = Ledger::new(&config()).expect("valid");
    let sale = request(FinancialKind::Sale, CO_BRAND, 12_345, "000003");
    let (answer, _) = ledger.financial(&sale, today());
    assert_eq!(
        answer.loyalty,
        Some(Loyalty {
            points_delta: 123,
            points_balance: 123
        })
    );
    let reversal = reversal_of(&sale.key, "000103", b"r");
    let (answer, effect) = ledger.reversal(&reversal);
    assert_eq!(
        (answer.response_code.as_str(), effect),
        ("00", Effect::Reversed)
    );
    assert_eq!(
        answer.loyalty,
        Some(Loyalty {
            points_delta: -123,
            points_balance: 0
        })
    );
    let other = reversal_of(&sale.key, "000103", b"r2");
    assert_eq!(ledger.reversal(&other).1, Effect::Conflict);
    let after = account(&ledger, CO_BRAND);
    assert_eq!(
        (after.posted_minor, after.points, after.available_minor),
        (0, 0, 90_000)
    );
}

/// A reversal before its original: answered 00, and the late original is declined.
#[test]
fn early_reversal_declines_late_original() {
    let mut ledger = Ledger::new(&config()).expect("valid");
    let sale = request(FinancialKind::Sale, VISA, 1_000, "000004");
    let reversal = reversal_of(&sale.key, "000104", b"r");
    assert_eq!(ledger.reversal(&reversal).1, Effect::UnknownOriginal);
    assert_eq!(
        ledger.financial(&sale, today()).0.response_code,
        RC_DO_NOT_HONOUR
    );
    assert_eq!(account(&ledger, VISA).posted_minor, 0);
}

/// Same RRN, different amount: 94 and no charge.
#[test]
fn changed_repeat_is_refused() {
    let mut ledger = Ledger::new(&config()).expect("valid");
    let sale = request(FinancialKind::Sale, VISA, 1_000, "000005");
    ledger.financial(&sale, today());
    let mut changed = sale.clone();
    changed.amount_minor = 2_000;
    changed.fingerprint = b"changed".to_vec();
    assert_eq!(
        ledger.financial(&changed, today()).0.response_code,
        RC_DUPLICATE
    );
    assert_eq!(ledger.financial(&sale, today()).1, Effect::Replayed);
    assert_eq!(account(&ledger, VISA).posted_minor, 1_000);
}

/// Funds, PIN and expiry checks decline with their codes.
#[test]
fn declines() {
    let mut ledger = Ledger::new(&config()).expect("valid");
    let too_much = request(FinancialKind::Sale, VISA, 90_001, "000006");
    assert_eq!(
        ledger.financial(&too_much, today()).0.response_code,
        RC_INSUFFICIENT_FUNDS
    );
    let mut bad_pin = request(FinancialKind::Sale, VISA, 100, "000007");
    bad_pin.pin_block = Some([0; 8].into());
    assert_eq!(
        ledger.financial(&bad_pin, today()).0.response_code,
        RC_WRONG_PIN
    );
    let mut good_pin = request(FinancialKind::Sale, VISA, 100, "000008");
    let clear = iso0_clear_block("1234", VISA).expect("valid");
    let cipher = TdesEde2::new_from_slice(&ledger.zpk[..]).expect("16 bytes");
    let mut block = *clear;
    des::cipher::BlockEncrypt::encrypt_block(&cipher, GenericArray::from_mut_slice(&mut block));
    good_pin.pin_block = Some(block.into());
    assert_eq!(
        ledger.financial(&good_pin, today()).0.response_code,
        RC_APPROVED
    );
    let late = NaiveDate::from_ymd_opt(2031, 1, 1).expect("valid date");
    let expired = request(FinancialKind::Sale, VISA, 100, "000009");
    assert_eq!(ledger.financial(&expired, late).0.response_code, RC_EXPIRED);
    let unknown = request(FinancialKind::Sale, "4000000000000002", 100, "000010");
    assert_eq!(
        ledger.financial(&unknown, today()).0.response_code,
        RC_INVALID_CARD
    );
}

/// Settlement cycles list each RRN's postings once, then only what changed
/// (a late reversal); a closed cycle gives the same items again.
#[test]
fn settlement_cycles_report_changes_by_rrn() {
    let mut ledger = Ledger::new(&config()).expect("valid");
    let sale = request(FinancialKind::Sale, VISA, 2_000, "000011");
    let voided = request(FinancialKind::Sale, VISA, 700, "000012");
    let held = request(FinancialKind::Authorization, VISA, 900, "000013");
    for request in [&sale, &voided, &held] {
        assert_eq!(ledger.financial(request, today()).0.response_code, "00");
    }
    let reverse =
        |original: &FinancialRequest| reversal_of(&original.key, &original.key.stan, b"r");
    ledger.reversal(&reverse(&voided));
    let day1 = ledger.settle_cycle(today());
    let summary: Vec<_> = day1
        .iter()
        .map(|item| (item.rrn.as_str(), item.posted_delta_minor))
        .collect();
    // The voided sale nets to zero; the open authorization posted nothing.
    assert_eq!(summary, [("RRN000011", 2_000), ("RRN000012", 0)]);
    assert_eq!(ledger.settle_cycle(today()), day1);
    ledger.reversal(&reverse(&sale));
    let day2 = ledger.settle_cycle(today().succ_opt().unwrap());
    assert_eq!(day2.len(), 1);
    assert_eq!(
        (day2[0].rrn.as_str(), day2[0].posted_delta_minor),
        ("RRN000011", -2_000)
    );
}

/// Two acquirers' originals with the same STAN in the same second (field
/// 90 data differing only in the acquirer): a reversal reaches only the one
/// whose RRN and field 90 it names, a reversal whose RRN and field 90
/// disagree is refused, and a refund by field 90 alone reaches the right one.
#[test]
fn originals_are_matched_by_rrn_and_field_90_together() {
    let mut ledger = Ledger::new(&config()).expect("valid");
    let visa = request(FinancialKind::Sale, VISA, 1_000, "000020");
    let mut co_brand = request(FinancialKind::Sale, CO_BRAND, 3_000, "000020");
    co_brand.key.rrn = "RRNCOBRAND01".to_owned();
    co_brand.key.acquirer_id = "20000000002".to_owned();
    assert_eq!(
        ledger.financial(&visa, today()).0.response_code,
        RC_APPROVED
    );
    assert_eq!(
        ledger.financial(&co_brand, today()).0.response_code,
        RC_APPROVED
    );

    let mut wrong = visa.key.clone();
    wrong.stan = "000021".to_owned();
    let mismatched = reversal_of(&wrong, "000023", b"m");
    assert_eq!(ledger.reversal(&mismatched).1, Effect::Ambiguous);
    assert_eq!(account(&ledger, CO_BRAND).posted_minor, 3_000);
    assert_eq!(account(&ledger, VISA).posted_minor, 1_000);

    let mut reversal = reversal_of(&co_brand.key, "000024", b"r");
    reversal.key.acquirer_id = co_brand.key.acquirer_id.clone();
    assert_eq!(ledger.reversal(&reversal).1, Effect::Reversed);
    assert_eq!(account(&ledger, CO_BRAND).posted_minor, 0);
    assert_eq!(
        account(&ledger, VISA).posted_minor,
        1_000,
        "the other card is untouched"
    );

    let mut refund = request(FinancialKind::Refund, "", 500, "000022");
    refund.refunded = Some(visa.key.clone());
    assert_eq!(
        ledger.financial(&refund, today()).0.response_code,
        RC_APPROVED
    );
    assert_eq!(account(&ledger, VISA).posted_minor, 500);
}

/// A STAN its acquirer already used that day for another transaction is
/// refused 94 and applies nothing, whatever the message; the same STAN on
/// another day or from another acquirer is a new trace; repeats of the same
/// transaction (a retransmitted sale, an 0401 after its 0400) are answered
/// from the record as before.
#[test]
fn stan_reused_for_another_rrn_is_refused() {
    let mut ledger = Ledger::new(&config()).expect("valid");
    let first = request(FinancialKind::Sale, VISA, 1_000, "000030");
    let (answer, effect) = ledger.financial(&first, today());
    assert_eq!(
        (answer.response_code.as_str(), effect),
        ("00", Effect::Applied)
    );

    // Another sale, another authorization and a capture under the same
    // STAN, the same day (another second): refused, nothing held or posted.
    let mut other_sale = request(FinancialKind::Sale, CO_BRAND, 2_000, "000030");
    other_sale.key.rrn = "RRNOTHER0001".to_owned();
    other_sale.key.transmitted_at = "0115235959".to_owned();
    let mut other_auth = request(FinancialKind::Authorization, VISA, 500, "000030");
    other_auth.key.rrn = "RRNOTHER0002".to_owned();
    for duplicate in [&other_sale, &other_auth] {
        assert_eq!(
            ledger.financial(duplicate, today()),
            (Answer::code(RC_DUPLICATE), Effect::DuplicateStan)
        );
    }
    let auth = request(FinancialKind::Authorization, VISA, 700, "000031");
    assert_eq!(
        ledger.financial(&auth, today()).0.response_code,
        RC_APPROVED
    );
    let capture = CaptureRequest {
        key: key("0220", "000030", &auth.key.rrn),
        original: auth.key.clone(),
        amount_minor: 700,
        currency: "901".to_owned(),
        fingerprint: b"capture".to_vec(),
    };
    assert_eq!(ledger.capture(&capture).1, Effect::DuplicateStan);
    let reversal_of_other = reversal_of(&auth.key, "000030", b"r");
    assert_eq!(ledger.reversal(&reversal_of_other).1, Effect::DuplicateStan);
    let books = account(&ledger, VISA);
    assert_eq!((books.held_minor, books.posted_minor), (700, 1_000));
    assert_eq!(account(&ledger, CO_BRAND).posted_minor, 0);

    // The same STAN the next day, or from another acquirer, is a new trace.
    let mut next_day = other_sale.clone();
    next_day.key.transmitted_at = "0116000001".to_owned();
    let (answer, effect) = ledger.financial(&next_day, today());
    assert_eq!(
        (answer.response_code.as_str(), effect),
        ("00", Effect::Applied)
    );
    let mut elsewhere = other_auth.clone();
    elsewhere.key.acquirer_id = "20000000002".to_owned();
    assert_eq!(ledger.financial(&elsewhere, today()).1, Effect::Applied);

    // Repeats of the same transaction: the sale retransmitted (same STAN,
    // then a new one), its reversal and that reversal's 0401 repeat.
    assert_eq!(ledger.financial(&first, today()).1, Effect::Replayed);
    let mut retransmitted = first.clone();
    retransmitted.key.stan = "000032".to_owned();
    assert_eq!(
        ledger.financial(&retransmitted, today()).1,
        Effect::Replayed
    );
    let reversal = reversal_of(&first.key, "000033", b"r");
    assert_eq!(ledger.reversal(&reversal).1, Effect::Reversed);
    assert_eq!(ledger.reversal(&reversal).1, Effect::Replayed);
    let by_original_stan = reversal_of(&first.key, &first.key.stan, b"r");
    assert_eq!(ledger.reversal(&by_original_stan).1, Effect::Replayed);
    assert_eq!(account(&ledger, VISA).posted_minor, 0);
}

/// The derived `Debug` of the config and of a request prints keys, PANs,
/// PINs, security codes and PIN blocks as `***`.
#[test]
fn debug_masks_secrets() {
    let config = config();
    let mut request = request(FinancialKind::Sale, VISA, 100, "000011");
    request.pin_block = Some([0xAB; 8].into());
    request.security_code = Some("987".to_owned().into());
    let text = format!("{config:?}\n{request:?}");
    for secret in [
        VISA,
        CO_BRAND,
        "1234",
        "\"123\"",
        "987",
        "171",
        "0123456789ABCDEF",
        "1C2D3E4F5A6B7C8D",
        "A1B2C3D4E5F60718",
    ] {
        assert!(!text.contains(secret), "{secret} printed: {text}");
    }
    assert!(text.contains("pan: ***"), "{text}");
    assert!(text.contains("pin_block: Some(***)"), "{text}");
}
