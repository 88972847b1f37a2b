//! Bill payments on the API side (the bill service itself is
//! `posgate_core::bill`).
//!
//! # Layout
//! - [`view`]: the bill service's results as `BillPaymentService` messages,
//!   and [`view::ProtoBillAnswers`], the core's port for encoding stored answers.

pub mod view;
