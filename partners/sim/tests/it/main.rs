//! Integration tests of posgate-sims: the simulators over real sockets,
//! driven by posgate-partners' production clients and link.

mod bank_sim;
mod biller_sim;
mod schemathesis;
mod wallet_sim;
