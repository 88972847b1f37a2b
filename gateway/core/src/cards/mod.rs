//! Card payments: the card as presented, BIN routing, the bank links, and
//! the rules that keep every charge known: a request is recorded before it
//! is sent, its answer is recorded before the POS hears it, and an unknown
//! outcome is reversed at the bank by the store-and-forward queue.
//!
//! # Layout
//! - [`config`]: the `[card]` section: HSM, bank links, BIN routes, PIN keys, card limits.
//! - [`card`]: the card as presented (PAN, expiry, track 2, PIN, chip data); brands.
//! - [`payments`]: the machinery every card call shares: bank links,
//!   routes, STANs, HSM operations on card data, trace numbers, settlement lines.
//! - [`checks`]: the card rules checked before anything is recorded or sent.
//! - [`iso`]: the ISO 8583 financial request of a record, and the bank's outcome.
//! - [`outcome`]: a new record's draft, and the outcome state machine.
//! - [`service`]: the application service, one function per `PaymentService` RPC.
//! - [`saf`]: the store-and-forward worker (reversals, capture advices), the
//!   expiry of authorizations and the recovery of requests cut off by a crash.
//! - [`error`]: why a card call gave no result.

pub mod card;
pub mod checks;
pub mod config;
pub mod error;
pub mod iso;
pub mod outcome;
pub mod payments;
pub mod saf;
pub mod service;

pub use checks::{CheckedCard, check_card};
pub use error::CardError;
pub use iso::{BankOutcome, Outgoing, send_financial};
pub use outcome::{Draft, PlannedOutcome, draft, plan_outcome};
pub use payments::{Payments, Route, card_lines, up_link};
pub use service::CardService;

/// The STAN space of a link: its acquiring institution id as field 90
/// carries it (zero-padded to 11 digits), so ids that the bank cannot tell
/// apart in field 90 share one space.
pub fn stan_space(acquirer_id: &str) -> String {
    format!("{acquirer_id:0>11}")
}
