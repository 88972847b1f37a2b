//! The partner call metrics: one count and one latency per call to a bank,
//! a wallet operator or an online biller (README "Metrics"). The bank link
//! and the partner API calls record them; the `posgate` binary installs the
//! Prometheus recorder (without one, recording costs next to nothing).
//!
//! Labels are bounded by configuration: `partner` is the settlement party of
//! the link, operator or biller (`bank:acquirer`, `wallet:ICASH`,
//! `biller:TPC`) and `outcome` one of [`CallOutcome`]. No transaction,
//! terminal or card data is ever a label.

use std::sync::Arc;
use std::time::Duration;

use metrics::SharedString;

/// `posgate_partner_calls_total{partner,outcome}`: calls by how they ended.
pub const PARTNER_CALLS_TOTAL: &str = "posgate_partner_calls_total";
/// `posgate_partner_call_duration_seconds{partner}`: a call's time, every
/// attempt and backoff included.
pub const PARTNER_CALL_DURATION_SECONDS: &str = "posgate_partner_call_duration_seconds";

/// How a partner call ended: the closed set of the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The partner answered and did what was asked.
    Ok,
    /// The partner answered with a refusal: an ISO 8583 response code other
    /// than approval, an HTTP 4xx, or a declined, rejected or refused result.
    Declined,
    /// No answer in time: the outcome is unknown.
    Timeout,
    /// Sent, but no usable answer (connection lost, bad MAC or signature,
    /// 5xx, an answer that does not parse): the outcome is unknown.
    Error,
    /// Nothing was sent: the link was down or full, the partner could not be
    /// connected to, or the request could not be built.
    Unavailable,
    /// Nothing was sent: the partner's circuit breaker is open.
    BreakerOpen,
}

impl CallOutcome {
    /// The value of the `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Declined => "declined",
            Self::Timeout => "timeout",
            Self::Error => "error",
            Self::Unavailable => "unavailable",
            Self::BreakerOpen => "breaker_open",
        }
    }
}

/// A partner's `partner` label value, made once per link or client so a
/// call clones a reference count, not a string.
pub fn partner_label(party: &str) -> SharedString {
    SharedString::from(Arc::<str>::from(party))
}

/// Records one finished call.
pub fn record_call(partner: &SharedString, outcome: CallOutcome, took: Duration) {
    metrics::counter!(PARTNER_CALLS_TOTAL, "partner" => partner.clone(), "outcome" => outcome.as_str())
        .increment(1);
    metrics::histogram!(PARTNER_CALL_DURATION_SECONDS, "partner" => partner.clone())
        .record(took.as_secs_f64());
}

/// A partner API answer that can carry a refusal in a 200 body: a declined
/// wallet operation, a rejected bill notice or cancel, a refused reversal.
/// Each answer type says so beside its definition (reads refuse nothing).
pub trait Refusal {
    /// True when the partner answered but did not do what was asked.
    fn refused(&self) -> bool {
        false
    }
}
