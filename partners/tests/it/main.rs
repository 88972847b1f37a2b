//! Integration tests of posgate-partners.

mod bank_link;
mod iso8583;
mod iso8583_crosscheck;
mod iso8583_gen;
mod iso8583_props;
