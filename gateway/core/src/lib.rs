//! posgate-core: the domain model, config sections, ports and application
//! services of the gateway, free of transport and database crates (no tonic,
//! prost, sqlx or hyper; a dependency check in `.ci/run` keeps it so).
//!
//! # Layout
//! - [`model`]: values every domain shares, one file each:
//!   - [`model::money`]: currencies, amount bounds, fee contracts with explicit rounding.
//!   - [`model::business_day`]: store time zones and cutoffs to business dates.
//!   - [`model::clock`]: the current time, replaceable in tests.
//!   - [`model::idempotency`]: idempotency keys, request fingerprints, stored answers.
//!   - [`model::request`]: the request context of every call, field violations.

pub mod model;
