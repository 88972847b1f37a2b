//! Bad input, as a table: each row takes a valid request, breaks exactly one
//! field, and expects `INVALID_ARGUMENT` with a google.rpc.BadRequest naming
//! exactly that field's path. When the broken PayBill still carries the valid
//! request's idempotency key, the row also proves nothing was stored: the key
//! finds no payment, and the valid request with that key then makes a new
//! payment rather than replaying or being refused.

use anyhow::Context as _;
use posgate_proto::v1 as pb;
use tonic::Code;

use super::Case;
use crate::check;
use crate::client::{Ctx, DUE_IN_DAYS, timestamp_at};
use crate::money;

/// A valid request of one RPC and the change that breaks it.
#[derive(Clone, Copy)]
enum Breakage {
    PayTw(fn(&Ctx, &mut pb::PayBillRequest)),
    PayJp(fn(&Ctx, &mut pb::PayBillRequest)),
    InquireTw(fn(&Ctx, &mut pb::InquireBillRequest)),
    Cancel(fn(&Ctx, &mut pb::CancelBillRequest)),
    Get(fn(&Ctx, &mut pb::GetBillPaymentRequest)),
}

/// One row: the case name (after `bad.`), what it sends, the field it must name.
struct Row {
    name: &'static str,
    description: &'static str,
    field: &'static str,
    breakage: Breakage,
}

/// How far ahead the "future POS clock" row stamps its request: beyond the
/// 24 hours the contract allows.
const FUTURE_POS_CLOCK_HOURS: i64 = 48;
/// The API's largest amount plus one.
const AMOUNT_TOO_LARGE_MINOR: i64 = 1_000_000_000_000;
/// An agency code no deployment is expected to configure.
const UNKNOWN_AGENCY_CODE: &str = "Z9Z";
/// A Taiwanese amount no biller's limit reaches: the largest the slip holds.
const TW_AMOUNT_OVER_LIMIT_WHOLE: u64 = crate::slip::TW_MAX_AMOUNT_WHOLE;

fn context(request: &mut pb::PayBillRequest) -> &mut pb::RequestContext {
    request
        .context
        .as_mut()
        .expect("valid requests carry a context")
}

fn slip(request: &mut pb::PayBillRequest) -> &mut pb::BillSlip {
    request.slip.as_mut().expect("valid requests carry a slip")
}

fn amount(request: &mut pb::PayBillRequest) -> &mut pb::Money {
    request
        .amount
        .as_mut()
        .expect("valid requests carry an amount")
}

/// Replaces the character at `index` with another one of a different check
/// value (`A` and `J` count as 1, like `1`), as a scanner misread would.
fn corrupt_char(text: &mut String, index: usize) {
    let replacement = if matches!(text.as_bytes()[index], b'1' | b'A' | b'J') {
        "2"
    } else {
        "1"
    };
    text.replace_range(index..=index, replacement);
}

/// Pays a fresh Taiwanese slip built by `build` from a valid one, with the matching amount.
fn with_tw_slip(
    ctx: &Ctx,
    request: &mut pb::PayBillRequest,
    build: impl FnOnce(&mut crate::slip::TwSlip),
) {
    let mut tw = ctx.tw_slip(DUE_IN_DAYS);
    build(&mut tw);
    slip(request).barcodes = tw.barcodes().to_vec();
    request.amount = Some(ctx.tw_amount(&tw));
}

#[allow(clippy::too_many_lines, reason = "one table, one row per case")]
fn rows() -> Vec<Row> {
    use Breakage::{Cancel, Get, InquireTw, PayJp, PayTw};
    vec![
        Row {
            name: "missing-context",
            description: "PayBill without context",
            field: "context",
            breakage: PayTw(|_, r| r.context = None),
        },
        Row {
            name: "empty-store-id",
            description: "PayBill with an empty context.store_id",
            field: "context.store_id",
            breakage: PayTw(|_, r| context(r).store_id.clear()),
        },
        Row {
            name: "unknown-store",
            description: "PayBill from a store posgate does not serve",
            field: "context.store_id",
            breakage: PayTw(|_, r| "NO-SUCH-STORE-CONF".clone_into(&mut context(r).store_id)),
        },
        Row {
            name: "terminal-id-33-chars",
            description: "PayBill with a 33-character terminal_id (limit 32)",
            field: "context.terminal_id",
            breakage: PayTw(|_, r| context(r).terminal_id = "T".repeat(33)),
        },
        Row {
            name: "client-request-id-256-chars",
            description: "PayBill with a 256-character client_request_id (limit 255)",
            field: "context.client_request_id",
            breakage: PayTw(|_, r| context(r).client_request_id = "k".repeat(256)),
        },
        Row {
            name: "client-request-id-with-space",
            description: "PayBill with a space in client_request_id (printable ASCII 0x21-0x7E only)",
            field: "context.client_request_id",
            breakage: PayTw(|_, r| {
                context(r).client_request_id = format!("conf {}", Ctx::new_key());
            }),
        },
        Row {
            name: "missing-operator-id",
            description: "PayBill without operator_id",
            field: "context.operator_id",
            breakage: PayTw(|_, r| context(r).operator_id.clear()),
        },
        Row {
            name: "missing-pos-timestamp",
            description: "PayBill without pos_timestamp",
            field: "context.pos_timestamp",
            breakage: PayTw(|_, r| context(r).pos_timestamp = None),
        },
        Row {
            name: "pos-timestamp-2-days-ahead",
            description: "PayBill stamped 2 days ahead of the gateway's clock (limit 24 h)",
            field: "context.pos_timestamp",
            breakage: PayTw(|_, r| {
                let ahead = chrono::Utc::now() + chrono::Duration::hours(FUTURE_POS_CLOCK_HOURS);
                context(r).pos_timestamp = Some(timestamp_at(ahead));
            }),
        },
        Row {
            name: "missing-slip",
            description: "PayBill without slip",
            field: "slip",
            breakage: PayTw(|_, r| r.slip = None),
        },
        Row {
            name: "zero-barcodes",
            description: "PayBill with a slip of no barcodes",
            field: "slip.barcodes",
            breakage: PayTw(|_, r| slip(r).barcodes.clear()),
        },
        Row {
            name: "four-barcodes",
            description: "PayBill with 4 barcodes (a slip has at most 3)",
            field: "slip.barcodes",
            breakage: PayTw(|_, r| {
                let extra = slip(r).barcodes[0].clone();
                slip(r).barcodes.push(extra);
            }),
        },
        Row {
            name: "barcode-65-chars",
            description: "PayBill with a 65-character barcode (limit 64)",
            field: "slip.barcodes[0]",
            breakage: PayTw(|_, r| slip(r).barcodes[0] = "9".repeat(65)),
        },
        Row {
            name: "tw-wrong-check-pair",
            description: "PayBill of a Taiwanese slip whose check pair is wrong",
            field: "slip.barcodes[2]",
            breakage: PayTw(|_, r| corrupt_char(&mut slip(r).barcodes[2], 4)),
        },
        Row {
            name: "tw-misread-bill-number",
            description: "PayBill of a Taiwanese slip with one bill-number character misread (caught by the check pair)",
            field: "slip.barcodes[2]",
            breakage: PayTw(|_, r| corrupt_char(&mut slip(r).barcodes[1], 15)),
        },
        Row {
            name: "jp-wrong-check-digit",
            description: "PayBill of a Japanese slip whose check digit is wrong",
            field: "slip.barcodes[0]",
            breakage: PayJp(|_, r| {
                let barcode = &mut slip(r).barcodes[0];
                let last = barcode
                    .pop()
                    .and_then(|c| c.to_digit(10))
                    .expect("44 digits");
                barcode.push(char::from_digit((last + 1) % 10, 10).expect("a digit"));
            }),
        },
        Row {
            name: "unknown-agency-code",
            description: "PayBill of a valid Taiwanese slip whose agency code no biller has",
            field: "slip.barcodes[0]",
            breakage: PayTw(|ctx, r| {
                with_tw_slip(ctx, r, |s| {
                    UNKNOWN_AGENCY_CODE.clone_into(&mut s.agency_code);
                });
            }),
        },
        Row {
            name: "tw-amount-over-biller-limit",
            description: "PayBill of a valid Taiwanese slip for NT$999,999,999, over the biller's limit",
            field: "slip.barcodes[2]",
            breakage: PayTw(|ctx, r| {
                with_tw_slip(ctx, r, |s| s.amount_whole = TW_AMOUNT_OVER_LIMIT_WHOLE);
            }),
        },
        Row {
            name: "biller-id-mismatch",
            description: "PayBill naming a slip.biller_id other than the slip's biller",
            field: "slip.biller_id",
            breakage: PayTw(|_, r| "NOT-THIS-BILLER".clone_into(&mut slip(r).biller_id)),
        },
        Row {
            name: "missing-amount",
            description: "PayBill without amount",
            field: "amount",
            breakage: PayTw(|_, r| r.amount = None),
        },
        Row {
            name: "amount-zero",
            description: "PayBill of amount 0",
            field: "amount.amount_minor",
            breakage: PayTw(|_, r| amount(r).amount_minor = 0),
        },
        Row {
            name: "amount-negative",
            description: "PayBill of a negative amount",
            field: "amount.amount_minor",
            breakage: PayTw(|_, r| amount(r).amount_minor = -amount(r).amount_minor),
        },
        Row {
            name: "amount-10-to-the-12",
            description: "PayBill of 10^12 minor units (limit 10^12 - 1)",
            field: "amount.amount_minor",
            breakage: PayTw(|_, r| amount(r).amount_minor = AMOUNT_TOO_LARGE_MINOR),
        },
        Row {
            name: "unknown-currency",
            description: "PayBill in currency \"XYZ\"",
            field: "amount.currency",
            breakage: PayTw(|_, r| "XYZ".clone_into(&mut amount(r).currency)),
        },
        Row {
            name: "currency-not-billers",
            description: "PayBill in JPY for a Taiwanese biller paid in TWD",
            field: "amount.currency",
            breakage: PayTw(|ctx, r| {
                let other = if ctx.target.tw_currency == "JPY" {
                    "USD"
                } else {
                    "JPY"
                };
                other.clone_into(&mut amount(r).currency);
            }),
        },
        Row {
            name: "amount-not-slip-amount",
            description: "PayBill collecting one whole unit more than the slip says",
            field: "amount.amount_minor",
            breakage: PayTw(|ctx, r| {
                let one =
                    money::whole_to_minor(1, &ctx.target.tw_currency).expect("validated currency");
                amount(r).amount_minor += one;
            }),
        },
        Row {
            name: "jp-amount-not-slip-amount",
            description: "PayBill collecting one yen more than a Japanese slip says",
            field: "amount.amount_minor",
            breakage: PayJp(|_, r| amount(r).amount_minor += 1),
        },
        Row {
            name: "inquire-wrong-check-pair",
            description: "InquireBill of a Taiwanese slip whose check pair is wrong",
            field: "slip.barcodes[2]",
            breakage: InquireTw(|_, r| {
                let slip = r.slip.as_mut().expect("valid requests carry a slip");
                corrupt_char(&mut slip.barcodes[2], 5);
            }),
        },
        Row {
            name: "inquire-missing-slip",
            description: "InquireBill without slip",
            field: "slip",
            breakage: InquireTw(|_, r| r.slip = None),
        },
        Row {
            name: "cancel-missing-context",
            description: "CancelBill without context",
            field: "context",
            breakage: Cancel(|_, r| r.context = None),
        },
        Row {
            name: "cancel-malformed-transaction-id",
            description: "CancelBill of a transaction_id that is not a UUID",
            field: "transaction_id",
            breakage: Cancel(|_, r| "not-a-transaction-id".clone_into(&mut r.transaction_id)),
        },
        Row {
            name: "cancel-empty-reason",
            description: "CancelBill without a reason",
            field: "reason",
            breakage: Cancel(|_, r| r.reason.clear()),
        },
        Row {
            name: "get-without-lookup",
            description: "GetBillPayment with neither transaction_id nor paid_client_request_id",
            field: "lookup",
            breakage: Get(|_, r| r.lookup = None),
        },
        Row {
            name: "get-malformed-transaction-id",
            description: "GetBillPayment of a transaction_id that is not a UUID",
            field: "transaction_id",
            breakage: Get(|_, r| {
                r.lookup = Some(pb::get_bill_payment_request::Lookup::TransactionId(
                    "12345".to_owned(),
                ));
            }),
        },
    ]
}

pub(super) fn cases() -> Vec<Case> {
    rows()
        .into_iter()
        .map(|row| {
            let description = format!(
                "{} is INVALID_ARGUMENT naming {}",
                row.description, row.field
            );
            let (field, breakage) = (row.field, row.breakage);
            Case::new(format!("bad.{}", row.name), description, move |ctx| {
                Box::pin(run_row(ctx, field, breakage))
            })
        })
        .collect()
}

async fn run_row(ctx: &Ctx, field: &'static str, breakage: Breakage) -> anyhow::Result<()> {
    match breakage {
        Breakage::PayTw(breaks) => bad_pay(ctx, field, ctx.tw_pay_request(), breaks).await,
        Breakage::PayJp(breaks) => bad_pay(ctx, field, ctx.jp_pay_request(), breaks).await,
        Breakage::InquireTw(breaks) => {
            let valid = ctx.tw_pay_request();
            let mut request = pb::InquireBillRequest {
                context: valid.context,
                slip: valid.slip,
            };
            breaks(ctx, &mut request);
            check::invalid_field("InquireBill", field, ctx.inquire(&request).await)
        }
        Breakage::Cancel(breaks) => {
            let mut request = ctx.tw_cancel_request(&uuid::Uuid::now_v7().to_string());
            breaks(ctx, &mut request);
            check::invalid_field("CancelBill", field, ctx.cancel(&request).await)
        }
        Breakage::Get(breaks) => {
            let mut request = ctx.tw_get_by_id(&uuid::Uuid::now_v7().to_string());
            breaks(ctx, &mut request);
            check::invalid_field("GetBillPayment", field, ctx.get(&request).await)
        }
    }
}

/// The idempotency key of a request, if it has a context.
fn key(request: &pb::PayBillRequest) -> Option<(&str, &str, &str)> {
    request.context.as_ref().map(|c| {
        (
            c.store_id.as_str(),
            c.terminal_id.as_str(),
            c.client_request_id.as_str(),
        )
    })
}

async fn bad_pay(
    ctx: &Ctx,
    field: &'static str,
    valid: pb::PayBillRequest,
    breaks: fn(&Ctx, &mut pb::PayBillRequest),
) -> anyhow::Result<()> {
    let mut bad = valid.clone();
    breaks(ctx, &mut bad);
    check::invalid_field("PayBill", field, ctx.pay(&bad).await)?;
    if key(&bad) != key(&valid) {
        // The broken request's key is itself invalid or elsewhere: nothing to look up.
        return Ok(());
    }
    let context = valid.context.as_ref().context("context")?;
    check::code(
        "GetBillPayment by the refused request's key",
        Code::NotFound,
        ctx.get(&Ctx::get_by_paid_key(context)).await,
    )?;
    let answer = check::ok(
        "the valid PayBill with the refused request's key",
        ctx.pay(&valid).await,
    )?;
    check::not_replayed("the valid PayBill with the refused request's key", &answer)
}
