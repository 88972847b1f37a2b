//! Bill collection: which biller a slip belongs to, whether it may be paid
//! now, what the chain earns, and who owes whom. Batch-only billers are
//! told through the daily file; online billers are also asked and notified
//! in real time.
//!
//! # Layout
//! - [`barcode`]: slip barcodes and their biller profiles.
//! - [`config`]: the `[[biller]]` sections, with the online billers' `[biller.online]`.
//! - [`registry`]: the biller registry (which biller a slip belongs to).
//! - [`checks`]: reading a slip and the rules it must pass (agency code,
//!   amount limits, fee, due date).
//! - [`plan`]: the records a payment or cancellation writes, and the bill event.
//! - [`online`]: the online billers' connectors: inquiry, payment notice, cancel.
//! - [`service`]: the application service, one function per `BillPaymentService` RPC.
//! - [`saf`]: the worker that resolves payment notices whose outcome is unknown.
//! - [`error`]: why a bill call gave no result.

pub mod barcode;
pub mod checks;
pub mod config;
pub mod error;
pub mod online;
pub mod plan;
pub mod registry;
pub mod saf;
pub mod service;

pub use checks::{ReadBill, SlipInput, check_fee, read_bill};
pub use error::BillError;
pub use plan::{payment_lines, plan_cancel, plan_payment};
pub use registry::BillerRegistry;
pub use service::BillService;
