//! Bill collection: slip barcodes and their biller profiles, the biller
//! registry, and the `online` config section of online billers.

pub mod barcode;
pub mod config;
pub mod registry;

pub use registry::BillerRegistry;
