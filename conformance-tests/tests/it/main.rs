//! Integration tests of the conformance suite: its slip encoders against
//! known vectors, and the whole suite (library and binary) against a real
//! `posgate` gateway started for the test.

mod cli;
mod gateway;
mod slips;
mod suite;
