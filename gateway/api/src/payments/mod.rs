//! Card payments on the API side: the card read from `CardInput`, and the
//! card records and results as `PaymentService` messages. The card
//! service itself (rules, outcome state machine, bank requests,
//! store-and-forward) is `posgate_core::cards`.
//!
//! # Layout
//! - [`card`]: `CardInput` read and checked; the card enums as the API names them.
//! - [`view`]: records as `posgate.v1.CardTransaction`, the answers of
//!   `PaymentService`, and the encoding of stored answers (the core's
//!   `CardAnswers` port).

pub mod card;
pub mod view;
