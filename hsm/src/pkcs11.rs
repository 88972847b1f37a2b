//! placeholder
pub struct Pkcs11Config; #[derive(Debug)] pub struct Pkcs11Hsm;
