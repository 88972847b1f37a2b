//! Benchmark seeders: bulk SQL that writes a benchmark day straight into the
//! database, bypassing the services (development only).
//!
//! # Layout
//! - [`clearing`]: seeding a clearing benchmark day and peak-memory reading.
//! - [`audit`]: `posgate audit bench`, seeding N transactions and measuring.

pub mod audit;
pub mod clearing;
