//! Ports: the traits the core needs from outside, implemented by other
//! crates and wired up by the binary.
//!
//! - [`db`]: the transaction database (posgate-store implements it).
//! - [`answers`]: the encoding of stored answers (the API implements it).
//! - [`partners`]: the wallet operator and biller connectors (the binary
//!   wraps posgate-partners' HTTP clients).

pub mod answers;
pub mod db;
pub mod partners;
