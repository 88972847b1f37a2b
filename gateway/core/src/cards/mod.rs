//! Card payments' domain: the `[card]` config section (bank links, BIN
//! routes, keys) and the STAN space of an acquirer.

pub mod config;

/// The STAN space of a link: its acquiring institution id as field 90
/// carries it (zero-padded to 11 digits), so ids that the bank cannot tell
/// apart in field 90 share one space.
pub fn stan_space(acquirer_id: &str) -> String {
    format!("{acquirer_id:0>11}")
}
