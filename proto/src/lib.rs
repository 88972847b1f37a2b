//! The posgate POS API, package `posgate.v1`, as generated Rust types with
//! tonic clients and servers.
//!
//! # Layout
//! - `posgate/v1/common.proto`: `RequestContext`, `Money` and the error conventions.
//! - `posgate/v1/bill_payment.proto`: `BillPaymentService` (cash bill collection).
//! - `posgate/v1/payment.proto`: `PaymentService` (card payments).
//! - `posgate/v1/wallet.proto`: `WalletService` (e-wallet top-up and spend).
//! - `posgate/v1/audit.proto`: `AuditService` (auditors' read-only access).
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, for gRPC reflection.

/// Generated code for package `posgate.v1`.
#[allow(clippy::pedantic, missing_debug_implementations)]
pub mod v1 {
    tonic::include_proto!("posgate.v1");
}

/// The encoded `FileDescriptorSet` of every posgate proto file, served by
/// gRPC reflection so tools like grpcurl can call the API without the files.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/posgate_descriptor.bin"));
