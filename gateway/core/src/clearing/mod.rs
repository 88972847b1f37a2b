//! Clearing's domain: partner settings and the shared types of a day's run
//! (`model`), reconciliation files and matching (`recon`), and settlement
//! instructions (`settle`).

pub mod model;
pub mod recon;
pub mod settle;
