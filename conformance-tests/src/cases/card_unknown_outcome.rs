//! Unknown outcomes: the bank applied a charge and never answered. These
//! cases need a gateway whose acquirer link goes to a bank that drops
//! answers; a black-box suite cannot make a healthy bank do that, so they
//! run only with `--bank-no-response` (see the binary's help for the setup).
//!
//! The bank simulator drops answers at random with probability
//! `faults.no_response`, and it drops reversals (0400) too, so the
//! probability must be below 1.0 for the reversal ever to be acknowledged
//! (0.5 is a good choice): the case sends fresh sales until one gets no
//! answer, then retries that one with the same key until the gateway's
//! store-and-forward queue has reversed it.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use posgate_proto::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt as _;

use super::Case;
use crate::card::VISA_PAN;
use crate::check;
use crate::client::Ctx;

/// A small sale: the approved ones among the attempts stay charged.
const AMOUNT_MINOR: i64 = 100;
/// Fresh sales sent until one gets no answer. At `no_response = 0.5` all 20
/// are answered with probability 2^-20.
const MAX_SALES_UNTIL_NO_ANSWER: usize = 20;
/// How long the POS keeps retrying the unanswered sale before the case
/// gives up: the reversal needs the bank's acknowledgement, which the same
/// faulty bank also drops at random.
pub const REVERSAL_WAIT: Duration = Duration::from_secs(30);
/// Pause between retries. Shorter than the 5 s RetryInfo a real POS honours,
/// to keep the case fast; a retry of an unresolved outcome sends nothing.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "card-unknown.no-answer-then-reversed",
            "A sale the bank never answers is UNAVAILABLE OUTCOME_UNKNOWN with RetryInfo; retries with the same key end in REVERSED, then replay",
            |ctx| Box::pin(no_answer_then_reversed(ctx)),
        )
        .with_bank_no_response(),
    ]
}

/// Sends fresh sales until one gets no answer; returns it and its status.
async fn unanswered_sale(ctx: &Ctx) -> anyhow::Result<(pb::AuthorizeRequest, tonic::Status)> {
    for _ in 0..MAX_SALES_UNTIL_NO_ANSWER {
        let request = ctx.authorize_request(VISA_PAN, AMOUNT_MINOR, pb::CaptureMode::Sale);
        match ctx.authorize(&request).await {
            Ok(_) => {}
            Err(status) if status.code() == Code::Unavailable => return Ok((request, status)),
            Err(status) => bail!(
                "Authorize through a bank that drops answers: expected OK or UNAVAILABLE, got {}",
                check::describe(&status)
            ),
        }
    }
    bail!(
        "{MAX_SALES_UNTIL_NO_ANSWER} sales were all answered: is the gateway's acquirer bank \
         really dropping answers (faults.no_response)?"
    )
}

/// UNAVAILABLE + RetryInfo + ErrorInfo `OUTCOME_UNKNOWN` naming the transaction; returns its id.
fn outcome_unknown(what: &str, status: &tonic::Status) -> anyhow::Result<String> {
    let details = status.get_error_details();
    let info = details.error_info().with_context(|| {
        format!(
            "{what}: UNAVAILABLE without ErrorInfo ({})",
            check::describe(status)
        )
    })?;
    ensure!(
        info.reason == "OUTCOME_UNKNOWN",
        "{what}: expected ErrorInfo reason OUTCOME_UNKNOWN, got {:?} ({})",
        info.reason,
        check::describe(status)
    );
    ensure!(
        details.retry_info().is_some(),
        "{what}: UNAVAILABLE without RetryInfo"
    );
    info.metadata
        .get("transaction_id")
        .cloned()
        .with_context(|| format!("{what}: OUTCOME_UNKNOWN without metadata transaction_id"))
}

async fn no_answer_then_reversed(ctx: &Ctx) -> anyhow::Result<()> {
    let (request, status) = unanswered_sale(ctx).await?;
    let transaction_id = outcome_unknown("unanswered Authorize", &status)?;
    let context = request.context.as_ref().context("context")?;
    let seen = check::ok(
        "GetTransaction of the unanswered sale",
        ctx.get_transaction(&Ctx::get_by_created_key(context)).await,
    )?
    .into_inner()
    .transaction
    .context("GetTransaction answered without a transaction")?;
    ensure!(
        seen.transaction_id == transaction_id,
        "GetTransaction by the key shows {:?}, OUTCOME_UNKNOWN named {transaction_id:?}",
        seen.transaction_id
    );
    ensure!(
        matches!(
            seen.status(),
            pb::CardTransactionStatus::PendingReversal | pb::CardTransactionStatus::Reversed
        ),
        "an unanswered sale is {:?}, expected PENDING_REVERSAL or REVERSED",
        seen.status()
    );
    let started = Instant::now();
    let answer = loop {
        match ctx.authorize(&request).await {
            Err(status) if status.code() == Code::Unavailable => {
                outcome_unknown("retried unanswered Authorize", &status)?;
                ensure!(
                    started.elapsed() < REVERSAL_WAIT,
                    "still OUTCOME_UNKNOWN after {} s of retries: the reversal was not acknowledged",
                    REVERSAL_WAIT.as_secs()
                );
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            answer => break check::ok("retried unanswered Authorize", answer)?,
        }
    };
    let reversed = answer
        .get_ref()
        .transaction
        .clone()
        .context("Authorize answered without a transaction")?;
    ensure!(
        reversed.transaction_id == transaction_id
            && reversed.status() == pb::CardTransactionStatus::Reversed,
        "the retry answered {:?} {:?}, expected {transaction_id} REVERSED",
        reversed.transaction_id,
        reversed.status()
    );
    ensure!(
        reversed.approval_code.is_empty()
            && reversed
                .captured_amount
                .as_ref()
                .is_none_or(|money| money.amount_minor == 0),
        "a reversed sale shows approval {:?} captured {:?}",
        reversed.approval_code,
        reversed.captured_amount
    );
    let first = answer.into_inner();
    let again = check::ok(
        "Authorize retried after the reversal",
        ctx.authorize(&request).await,
    )?;
    check::replayed("Authorize retried after the reversal", &first, &again)
}
