//! Clearing's benchmark seeder (the domain and its service are in
//! `posgate_core::clearing`).
//!
//! # Layout
//! - [`bench`]: bulk-SQL seeding of a benchmark day and peak-memory reading.

pub mod bench;
