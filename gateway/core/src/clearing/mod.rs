//! Daily clearing: business-day close, per-partner clearing files (fixed
//! width and CSV), detached HSM signatures with a manifest, fees and net
//! positions, settlement instructions and reconciliation.
//!
//! # Layout
//! - [`service`]: the clearing application service: close a day, verify files, reconcile, the scheduled close.
//! - [`model`]: the shared types: items, net positions, a day's run, partner settings.
//! - [`close`]: a day's close and run: balance check, one streaming pass, positions, publish.
//! - [`layout`]: the `tw-fixed` and `jp-fixed` record layouts (positions documented) and the CSV.
//! - [`sign`]: per-file Ed25519 signatures through the HSM and the SHA-256 manifest.
//! - [`verify`]: `posgate clearing verify`: signatures, manifest, layout and trailer totals.
//! - [`schedule`]: the scheduled close inside `posgate serve` (one instance, by advisory lock).
//! - [`settle`]: settlement instructions: NACHA ACH (USD), fixed-width instruction files.
//! - [`recon`]: acknowledgement files, reconciliation, exceptions.

pub mod close;
pub mod layout;
pub mod model;
pub mod recon;
pub mod schedule;
pub mod service;
pub mod settle;
pub mod sign;
pub mod verify;
