//! Ports: the traits the core needs from outside, implemented by other
//! crates and wired up by the binary.
//!
//! - [`db`]: the transaction database (posgate-store implements it).

pub mod db;
