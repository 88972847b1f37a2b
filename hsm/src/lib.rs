//! posgate-hsm: every secret posgate uses lives behind the [`Hsm`] trait.
//! Nothing outside this crate holds a clear key or a clear PIN.
//!
//! # Layout
//!
//! - [`hsm`]: the `Hsm` trait, its request and result types (`Tag`, `PinTranslation`, `WrappedKey`).
//! - [`error`]: `HsmError`, the one typed error every operation returns.
//! - [`keys`]: key types and usages, `KeySpec`, `KeyRef`, `KeyInfo`, `Kcv`, `ClearKey`, `PublicKey`.
//! - [`mac`]: ISO 9797-1 MAC algorithm 3 (retail MAC), AES-CMAC, ISO 9797-1 padding.
//! - [`pin_block`]: ISO 9564 PIN block formats 0 and 4, and their encipherment.
//! - [`wrap`]: key-wrapping formats (TDES-ECB under a ZMK, RFC 3394 AES key wrap).
//! - [`keystore`]: the software HSM's keystore file, sealed with AES-256-GCM, and its `MasterKey`.
//! - [`software`]: `SoftwareHsm`, keys in zeroizing memory, persisted in the keystore.
//! - [`pkcs11`]: `Pkcs11Hsm`, keys as PKCS#11 objects in a token (`SoftHSM2` in tests, a network HSM in production).
//! - [`pan`]: `Pan` (Luhn, masked printing, keyed fingerprint) and `CardExpiry`.
//! - [`secret`]: `Secret<T>`, the one masking type for card data and key material.
//!
//! The backends' guarantees differ; `hsm/README.md` spells them out.

pub mod error;
pub mod hsm;
pub mod keys;
pub mod keystore;
pub mod mac;
pub mod pan;
pub mod pin_block;
pub mod pkcs11;
pub mod secret;
pub mod software;
pub(crate) mod wrap;

pub use error::HsmError;
pub use hsm::{Hsm, PinTranslation, Tag, WrappedKey};
pub use keys::{ClearKey, Kcv, KeyInfo, KeyRef, KeySpec, KeyType, KeyUsage, PublicKey};
pub use keystore::MasterKey;
pub use mac::{MacAlgorithm, MacPadding};
pub use pan::{CardExpiry, Pan, PanError, PanFingerprint};
pub use pin_block::PinBlockFormat;
pub use pkcs11::{Pkcs11Config, Pkcs11Hsm};
pub use secret::Secret;
pub use software::SoftwareHsm;
