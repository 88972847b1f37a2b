//! The bad-input table: every case is `INVALID_ARGUMENT` naming its field in
//! google.rpc.BadRequest, and writes nothing, on both backends.

use posgate_core::bill::barcode::tw_check_pair;
use posgate_core::ports::db::RowCounts;
use posgate_proto::v1 as pb;
use tonic::Code;

use crate::support::{
    TestGateway, backends, bad_request_fields, context, jp_slip, money, tw_pay, tw_slip, utc,
};

type Mutation = Box<dyn Fn(&mut pb::PayBillRequest)>;

/// A request of any BillPaymentService RPC.
enum Case {
    Pay(Mutation),
    Inquire(Mutation),
    Cancel(Box<dyn Fn(&mut pb::CancelBillRequest)>),
    Get(Box<dyn Fn(&mut pb::GetBillPaymentRequest)>),
}

fn pay(mutation: impl Fn(&mut pb::PayBillRequest) + 'static) -> Case {
    Case::Pay(Box::new(mutation))
}

fn ctx(request: &mut pb::PayBillRequest) -> &mut pb::RequestContext {
    request.context.as_mut().unwrap()
}

fn barcodes(request: &mut pb::PayBillRequest) -> &mut Vec<String> {
    &mut request.slip.as_mut().unwrap().barcodes
}

fn amount(request: &mut pb::PayBillRequest) -> &mut pb::Money {
    request.amount.as_mut().unwrap()
}

/// Replaces one character of a barcode.
fn replace_char(barcode: &mut String, index: usize, with: char) {
    let mut chars: Vec<char> = barcode.chars().collect();
    chars[index] = if chars[index] == with {
        if with == '1' { '2' } else { '1' }
    } else {
        with
    };
    *barcode = chars.into_iter().collect();
}

/// A TW slip whose check pair is right but whose due date is month 13.
fn tw_month_13() -> Vec<String> {
    let seg1 = "151301TPC";
    let seg2 = "0000KS2025080001";
    let without = "1511000001234";
    let (odd, even) = tw_check_pair(seg1, seg2, without);
    vec![
        seg1.into(),
        seg2.into(),
        format!("1511{odd}{even}000001234"),
    ]
}

fn table() -> Vec<(&'static str, &'static str, Case)> {
    let now = utc("2026-11-23T03:00:00Z");
    vec![
        ("missing context", "context", pay(|r| r.context = None)),
        (
            "empty store",
            "context.store_id",
            pay(|r| ctx(r).store_id.clear()),
        ),
        (
            "unknown store",
            "context.store_id",
            pay(|r| ctx(r).store_id = "S999".into()),
        ),
        (
            "store with a space",
            "context.store_id",
            pay(|r| ctx(r).store_id = "S 01".into()),
        ),
        (
            "empty terminal",
            "context.terminal_id",
            pay(|r| ctx(r).terminal_id.clear()),
        ),
        (
            "33-character terminal",
            "context.terminal_id",
            pay(|r| ctx(r).terminal_id = "T".repeat(33)),
        ),
        (
            "empty key",
            "context.client_request_id",
            pay(|r| ctx(r).client_request_id.clear()),
        ),
        (
            "256-character key",
            "context.client_request_id",
            pay(|r| ctx(r).client_request_id = "k".repeat(256)),
        ),
        (
            "key with a space",
            "context.client_request_id",
            pay(|r| ctx(r).client_request_id = "a b".into()),
        ),
        (
            "key with non-ASCII",
            "context.client_request_id",
            pay(|r| ctx(r).client_request_id = "clé".into()),
        ),
        (
            "empty operator",
            "context.operator_id",
            pay(|r| ctx(r).operator_id.clear()),
        ),
        (
            "missing pos_timestamp",
            "context.pos_timestamp",
            pay(|r| ctx(r).pos_timestamp = None),
        ),
        (
            "pos_timestamp 2 days ahead",
            "context.pos_timestamp",
            pay(move |r| {
                ctx(r).pos_timestamp = Some(prost_types::Timestamp {
                    seconds: now.timestamp() + 2 * 86_400,
                    nanos: 0,
                });
            }),
        ),
        (
            "pos_timestamp negative nanos",
            "context.pos_timestamp",
            pay(|r| ctx(r).pos_timestamp.as_mut().unwrap().nanos = -1),
        ),
        ("missing slip", "slip", pay(|r| r.slip = None)),
        ("no barcodes", "slip.barcodes", pay(|r| barcodes(r).clear())),
        (
            "four barcodes",
            "slip.barcodes",
            pay(|r| barcodes(r).push("X".into())),
        ),
        (
            "two barcodes",
            "slip.barcodes",
            pay(|r| {
                barcodes(r).pop();
            }),
        ),
        (
            "65-character barcode",
            "slip.barcodes[0]",
            pay(|r| barcodes(r)[0] = "1".repeat(65)),
        ),
        (
            "blank barcode",
            "slip.barcodes[1]",
            pay(|r| barcodes(r)[1] = "   ".into()),
        ),
        (
            "TW wrong check pair",
            "slip.barcodes[2]",
            pay(|r| replace_char(&mut barcodes(r)[2], 4, '7')),
        ),
        (
            "TW lower case",
            "slip.barcodes[1]",
            pay(|r| barcodes(r)[1] = barcodes(r)[1].to_lowercase()),
        ),
        (
            "TW month 13",
            "slip.barcodes[0]",
            pay(|r| *barcodes(r) = tw_month_13()),
        ),
        (
            "TW unknown agency code",
            "slip.barcodes[0]",
            pay(|r| *barcodes(r) = tw_slip("ZZZ", "1", "2026-12-31", 1234)),
        ),
        (
            "TW amount over the biller's limit",
            "slip.barcodes[2]",
            pay(|r| {
                *barcodes(r) = tw_slip("TPC", "1", "2026-12-31", 30_000);
                amount(r).amount_minor = 3_000_000;
            }),
        ),
        (
            "JP wrong check digit",
            "slip.barcodes[0]",
            pay(|r| {
                let mut slip = jp_slip("912345", "1", "2026-12-31", 1000);
                replace_char(&mut slip[0], 43, '0');
                *barcodes(r) = slip;
            }),
        ),
        (
            "JP 43 digits",
            "slip.barcodes[0]",
            pay(|r| {
                let mut slip = jp_slip("912345", "1", "2026-12-31", 1000);
                slip[0].pop();
                *barcodes(r) = slip;
            }),
        ),
        (
            "JP unknown company code",
            "slip.barcodes[0]",
            pay(|r| *barcodes(r) = jp_slip("999999", "1", "2026-12-31", 1000)),
        ),
        (
            "biller does not match slip",
            "slip.biller_id",
            pay(|r| r.slip.as_mut().unwrap().biller_id = "TKGAS".into()),
        ),
        (
            "biller id with symbols",
            "slip.biller_id",
            pay(|r| r.slip.as_mut().unwrap().biller_id = "T*C".into()),
        ),
        ("missing amount", "amount", pay(|r| r.amount = None)),
        (
            "zero amount",
            "amount.amount_minor",
            pay(|r| amount(r).amount_minor = 0),
        ),
        (
            "negative amount",
            "amount.amount_minor",
            pay(|r| amount(r).amount_minor = -123_400),
        ),
        (
            "amount 10^12",
            "amount.amount_minor",
            pay(|r| amount(r).amount_minor = 1_000_000_000_000),
        ),
        (
            "amount i64::MAX",
            "amount.amount_minor",
            pay(|r| amount(r).amount_minor = i64::MAX),
        ),
        (
            "unknown currency",
            "amount.currency",
            pay(|r| amount(r).currency = "XYZ".into()),
        ),
        (
            "empty currency",
            "amount.currency",
            pay(|r| amount(r).currency.clear()),
        ),
        (
            "lower-case currency",
            "amount.currency",
            pay(|r| amount(r).currency = "twd".into()),
        ),
        (
            "currency not the biller's",
            "amount.currency",
            pay(|r| amount(r).currency = "JPY".into()),
        ),
        (
            "cash not the slip amount",
            "amount.amount_minor",
            pay(|r| amount(r).amount_minor = 123_401),
        ),
        (
            "inquire without slip",
            "slip",
            Case::Inquire(Box::new(|r| r.slip = None)),
        ),
        (
            "inquire unknown store",
            "context.store_id",
            Case::Inquire(Box::new(|r| ctx(r).store_id = "S404".into())),
        ),
        (
            "cancel without transaction id",
            "transaction_id",
            Case::Cancel(Box::new(|r| r.transaction_id.clear())),
        ),
        (
            "cancel malformed transaction id",
            "transaction_id",
            Case::Cancel(Box::new(|r| r.transaction_id = "not-a-uuid".into())),
        ),
        (
            "cancel without reason",
            "reason",
            Case::Cancel(Box::new(|r| r.reason = "  ".into())),
        ),
        (
            "cancel 201-character reason",
            "reason",
            Case::Cancel(Box::new(|r| r.reason = "x".repeat(201))),
        ),
        (
            "cancel reason with control character",
            "reason",
            Case::Cancel(Box::new(|r| r.reason = "a\u{7}b".into())),
        ),
        (
            "get without lookup",
            "lookup",
            Case::Get(Box::new(|r| r.lookup = None)),
        ),
        (
            "get with 256-character key",
            "paid_client_request_id",
            Case::Get(Box::new(|r| {
                r.lookup = Some(pb::get_bill_payment_request::Lookup::PaidClientRequestId(
                    "k".repeat(256),
                ));
            })),
        ),
    ]
}

/// Every bad input is `INVALID_ARGUMENT` naming its field, and nothing is written.
#[tokio::test]
async fn bad_inputs_name_the_field_and_store_nothing() {
    let cases = table();
    assert!(cases.len() >= 30, "the table has {} cases", cases.len());
    for backend in backends() {
        let now = utc("2026-11-23T03:00:00Z");
        let mut gw = TestGateway::start(backend, now).await;
        for (index, (name, field, case)) in cases.iter().enumerate() {
            let key = format!("bad-{index}");
            let result = match case {
                Case::Pay(mutation) => {
                    let mut request = tw_pay(&key, now);
                    mutation(&mut request);
                    gw.client.pay_bill(request).await.map(drop)
                }
                Case::Inquire(mutation) => {
                    let mut pay = tw_pay(&key, now);
                    mutation(&mut pay);
                    let request = pb::InquireBillRequest {
                        context: pay.context,
                        slip: pay.slip,
                    };
                    gw.client.inquire_bill(request).await.map(drop)
                }
                Case::Cancel(mutation) => {
                    let mut request = pb::CancelBillRequest {
                        context: context("S001", "T01", &key, now),
                        transaction_id: uuid::Uuid::now_v7().to_string(),
                        reason: "wrong slip".into(),
                    };
                    mutation(&mut request);
                    gw.client.cancel_bill(request).await.map(drop)
                }
                Case::Get(mutation) => {
                    let mut request = pb::GetBillPaymentRequest {
                        context: context("S001", "T01", &key, now),
                        lookup: Some(pb::get_bill_payment_request::Lookup::PaidClientRequestId(
                            "x".into(),
                        )),
                    };
                    mutation(&mut request);
                    gw.client.get_bill_payment(request).await.map(drop)
                }
            };
            let status = result.expect_err(name);
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "{backend:?} {name}: {}",
                status.message()
            );
            let fields = bad_request_fields(&status);
            assert!(
                fields.iter().any(|f| f == field),
                "{backend:?} {name}: expected {field} in {fields:?}"
            );
            assert_eq!(
                gw.store().row_counts().await.unwrap(),
                RowCounts::default(),
                "{backend:?} {name}: wrote rows"
            );
        }
        println!(
            "{backend:?}: {} bad inputs refused with their field named, 0 rows written",
            cases.len()
        );
        // The table's valid baseline is accepted, so the refusals above are the mutations' doing.
        gw.client.pay_bill(tw_pay("baseline", now)).await.unwrap();
        assert_eq!(money(123_400, "TWD"), tw_pay("baseline", now).amount);
        gw.stop().await;
    }
}
