//! Clearing's domain: partner settings and the shared types of a day's run
//! (`model`), and settlement instructions (`settle`).

pub mod model;
pub mod settle;
