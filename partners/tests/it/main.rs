//! Integration tests of posgate-partners.

mod bank_link;
mod bank_sim;
mod biller_sim;
mod iso8583;
mod iso8583_crosscheck;
mod iso8583_gen;
mod iso8583_props;
mod schemathesis;
mod wallet_sim;
