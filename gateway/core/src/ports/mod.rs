//! Ports: the traits the core needs from outside, implemented and wired up by the binary.

pub mod partners;
