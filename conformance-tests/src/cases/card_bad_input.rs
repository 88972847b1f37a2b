//! Bad card input, as a table: each row takes a valid Authorize, breaks
//! exactly one field, and expects `INVALID_ARGUMENT` with a
//! google.rpc.BadRequest naming exactly that field's path (never its value).
//! Each row also proves nothing was stored: `GetTransaction` by the refused
//! request's key is `NOT_FOUND`. An expired card is a precondition, not a
//! format error.

use posgate_proto::v1 as pb;
use tonic::Code;

use super::Case;
use crate::card::{self, EXPIRED, PIN, VISA_PAN};
use crate::check;
use crate::client::Ctx;

/// A small sale: if a row were wrongly accepted, the card is barely charged.
const AMOUNT_MINOR: i64 = 100;
/// A security code of the wrong length (CVV2 is 3 digits, 4 for American Express).
const SHORT_SECURITY_CODE: &str = "12";

/// One row: the case name (after `card-bad.`), what it sends, the field it must name.
struct Row {
    name: &'static str,
    description: &'static str,
    field: &'static str,
    breaks: fn(&Ctx, &mut pb::AuthorizeRequest) -> anyhow::Result<()>,
}

fn account(request: &mut pb::AuthorizeRequest) -> &mut pb::PanAndExpiry {
    match request.card.as_mut().and_then(|card| card.account.as_mut()) {
        Some(pb::card_input::Account::PanAndExpiry(account)) => account,
        _ => unreachable!("valid requests carry PAN and expiry"),
    }
}

fn card_input(request: &mut pb::AuthorizeRequest) -> &mut pb::CardInput {
    request.card.as_mut().expect("valid requests carry a card")
}

fn rows() -> Vec<Row> {
    vec![
        Row {
            name: "pan-bad-luhn",
            description: "Authorize of a PAN whose Luhn check digit is wrong",
            field: "card.pan_and_expiry.pan",
            breaks: |_, r| {
                let account = account(r);
                account.pan = card::with_bad_check_digit(&account.pan);
                anyhow::ensure!(!card::luhn_valid(&account.pan), "the PAN still passes Luhn");
                Ok(())
            },
        },
        Row {
            name: "expiry-malformed",
            description: "Authorize with expiry \"12/30\" (not YYYY-MM)",
            field: "card.pan_and_expiry.expiry",
            breaks: |_, r| {
                "12/30".clone_into(&mut account(r).expiry);
                Ok(())
            },
        },
        Row {
            name: "missing-capture-mode",
            description: "Authorize with capture_mode UNSPECIFIED",
            field: "capture_mode",
            breaks: |_, r| {
                r.capture_mode = pb::CaptureMode::Unspecified.into();
                Ok(())
            },
        },
        Row {
            name: "pos-reference-control-char",
            description: "Authorize with a BEL (0x07) in pos_reference (printable ASCII only)",
            field: "pos_reference",
            breaks: |_, r| {
                "CONF\u{7}REF".clone_into(&mut r.pos_reference);
                Ok(())
            },
        },
        Row {
            name: "wrong-currency",
            description: "Authorize in JPY at a store whose card currency is TWD",
            field: "amount.currency",
            breaks: |ctx, r| {
                let other = if ctx.target.tw_currency == "JPY" {
                    "TWD"
                } else {
                    "JPY"
                };
                other.clone_into(&mut r.amount.as_mut().expect("an amount").currency);
                Ok(())
            },
        },
        Row {
            name: "pin-key-not-this-terminals",
            description: "Authorize from the suite's terminal with a PIN under a key assigned to other terminals",
            field: "card.pin.key_id",
            breaks: |ctx, r| {
                card_input(r).pin = Some(ctx.pin_block(VISA_PAN, PIN)?);
                Ok(())
            },
        },
        Row {
            name: "security-code-wrong-length",
            description: "A keyed Authorize with a 2-digit security code",
            field: "card.security_code",
            breaks: |_, r| {
                let card = card_input(r);
                card.entry_mode = pb::CardEntryMode::Keyed.into();
                SHORT_SECURITY_CODE.clone_into(&mut card.security_code);
                Ok(())
            },
        },
    ]
}

pub(super) fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = rows()
        .into_iter()
        .map(|row| {
            let description = format!(
                "{} is INVALID_ARGUMENT naming {} and stores nothing",
                row.description, row.field
            );
            let (field, breaks) = (row.field, row.breaks);
            Case::new(format!("card-bad.{}", row.name), description, move |ctx| {
                Box::pin(run_row(ctx, field, breaks))
            })
        })
        .collect();
    cases.push(Case::new(
        "card-bad.expired-card",
        "Authorize of a card that expired in January 2020 is FAILED_PRECONDITION CARD_EXPIRED and stores nothing",
        |ctx| Box::pin(expired_card(ctx)),
    ));
    cases
}

/// Checks the refused request's key found nothing.
async fn nothing_stored(ctx: &Ctx, request: &pb::AuthorizeRequest) -> anyhow::Result<()> {
    let Some(context) = request.context.as_ref() else {
        return Ok(());
    };
    check::code(
        "GetTransaction by the refused request's key",
        Code::NotFound,
        ctx.get_transaction(&Ctx::get_by_created_key(context)).await,
    )?;
    Ok(())
}

async fn run_row(
    ctx: &Ctx,
    field: &'static str,
    breaks: fn(&Ctx, &mut pb::AuthorizeRequest) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut request = ctx.authorize_request(VISA_PAN, AMOUNT_MINOR, pb::CaptureMode::Sale);
    breaks(ctx, &mut request)?;
    check::invalid_field("Authorize", field, ctx.authorize(&request).await)?;
    nothing_stored(ctx, &request).await
}

async fn expired_card(ctx: &Ctx) -> anyhow::Result<()> {
    let mut request = ctx.authorize_request(VISA_PAN, AMOUNT_MINOR, pb::CaptureMode::Sale);
    EXPIRED.clone_into(&mut account(&mut request).expiry);
    check::precondition(
        "Authorize of an expired card",
        "CARD_EXPIRED",
        ctx.authorize(&request).await,
    )?;
    nothing_stored(ctx, &request).await
}
