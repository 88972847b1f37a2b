//! E-wallets' domain: the wallet operators' config section.

pub mod config;
