//! The domain model: values every domain shares, and the records the
//! database keeps (transactions, card and wallet payments, card links, the
//! audit chain's entries, partners' acknowledgement files).

pub mod actor;
pub mod bill;
pub mod business_day;
pub mod card;
pub mod chain;
pub mod clock;
pub mod config_error;
pub mod event;
pub mod idempotency;
pub mod ids;
pub mod link;
pub mod money;
pub mod party;
pub mod recon;
pub mod request;
pub mod transaction;
pub mod unknown;
pub mod wallet;

pub use actor::{Actor, Worker};
pub use idempotency::{IdempotencyKey, RequestFingerprint, StoredAnswer};
pub use party::Party;
pub use request::{FieldViolation, RequestContext};
pub use unknown::UnknownValue;
