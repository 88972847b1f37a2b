//! Compiles `posgate/v1/*.proto` with protox (a pure-Rust protobuf parser), so
//! building posgate never needs a system `protoc`. The file descriptor set is
//! also written out for gRPC server reflection.

use std::path::PathBuf;

use prost::Message as _;

const PROTO_FILES: &[&str] = &[
    "posgate/v1/common.proto",
    "posgate/v1/bill_payment.proto",
    "posgate/v1/payment.proto",
    "posgate/v1/wallet.proto",
    "posgate/v1/audit.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = protox::compile(PROTO_FILES, ["."])?;
    std::fs::write(
        out_dir.join("posgate_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    for file in PROTO_FILES {
        println!("cargo:rerun-if-changed={file}");
    }
    Ok(())
}
