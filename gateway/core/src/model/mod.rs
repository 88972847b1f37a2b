//! The domain model: values every domain shares.

pub mod business_day;
pub mod clock;
pub mod config_error;
pub mod event;
pub mod idempotency;
pub mod ids;
pub mod money;
pub mod request;

pub use idempotency::{IdempotencyKey, RequestFingerprint, StoredAnswer};
pub use request::{FieldViolation, RequestContext};
