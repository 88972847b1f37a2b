//! The [`Hsm`] trait: every secret operation posgate performs, by key label.
//! Implementations: [`crate::SoftwareHsm`] and [`crate::Pkcs11Hsm`].

use std::fmt;

use async_trait::async_trait;

use crate::error::HsmError;
use crate::keys::{ClearKey, Kcv, KeyInfo, KeyRef, KeySpec, PublicKey};
use crate::mac::MacAlgorithm;
use crate::pan::{Pan, PanFingerprint};
use crate::pin_block::PinBlockFormat;

/// A MAC, signature or HMAC tag with the key version that produced it, so a
/// caller can record which version to verify against after a rotation.
#[derive(Clone, PartialEq, Eq)]
pub struct Tag {
    pub key_version: u32,
    pub bytes: Vec<u8>,
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tag(v{}, {})",
            self.key_version,
            hex::encode_upper(&self.bytes)
        )
    }
}

/// A PIN block to move from the terminal PIN key to a zone PIN key.
#[derive(Debug, Clone)]
pub struct PinTranslation<'a> {
    /// The card the PIN belongs to: formats 0 and 4 bind the PIN to it.
    pub pan: &'a Pan,
    /// The key the block arrives under (a terminal PIN key).
    pub source_key: KeyRef,
    pub source_format: PinBlockFormat,
    /// The enciphered block as received.
    pub pin_block: &'a [u8],
    /// The key the block leaves under (a zone PIN key shared with the bank).
    pub destination_key: KeyRef,
    pub destination_format: PinBlockFormat,
}

/// A key enciphered under a key-encryption key, as exchanged with a partner.
///
/// TDES keys under a TDES ZMK: each 8-byte half TDES-ECB enciphered (the
/// classic key-exchange layout). AES and HMAC keys under an AES KEK: RFC 3394
/// AES key wrap (40 bytes). The KCVs let the receiver check both keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub spec: KeySpec,
    /// KCV of the wrapped key, checked after unwrapping.
    pub kcv: Kcv,
    /// KCV of the key-encryption key it is wrapped under.
    pub kek_kcv: Kcv,
    pub ciphertext: Vec<u8>,
}

/// Everything posgate does with a secret. No method returns clear key
/// material or a clear PIN; keys are named by label and version.
///
/// Verification with [`KeyRef::latest`] tries every kept version, newest
/// first, so values made before a rotation still verify.
#[async_trait]
pub trait Hsm: Send + Sync + fmt::Debug {
    /// A short name for logs and errors, e.g. `software` or `pkcs11`.
    fn backend_name(&self) -> &'static str;

    /// Generates version 1 of a new key inside the HSM.
    async fn generate_key(&self, label: &str, spec: KeySpec) -> Result<KeyInfo, HsmError>;

    /// Imports clear material as version 1 of a new key (key ceremony
    /// components, test vectors). ECDSA keys cannot be imported in clear.
    async fn import_key(
        &self,
        label: &str,
        spec: KeySpec,
        material: ClearKey,
    ) -> Result<KeyInfo, HsmError>;

    /// Generates the next version of an existing key, same spec. Older
    /// versions keep verifying; the oldest beyond [`crate::keys::MAX_VERSIONS`] are destroyed.
    async fn rotate_key(&self, label: &str) -> Result<KeyInfo, HsmError>;

    /// Every version of every key, sorted by label then version.
    async fn list_keys(&self) -> Result<Vec<KeyInfo>, HsmError>;

    /// One key version's description (the newest for [`KeyRef::latest`]).
    async fn key_info(&self, key: &KeyRef) -> Result<KeyInfo, HsmError>;

    /// Computes a full-length MAC (8 bytes retail MAC, 16 bytes CMAC).
    async fn mac_generate(
        &self,
        key: &KeyRef,
        algorithm: MacAlgorithm,
        data: &[u8],
    ) -> Result<Tag, HsmError>;

    /// Verifies a MAC, possibly truncated to its leftmost 4 or more bytes.
    /// Returns the version that matched.
    async fn mac_verify(
        &self,
        key: &KeyRef,
        algorithm: MacAlgorithm,
        data: &[u8],
        mac: &[u8],
    ) -> Result<u32, HsmError>;

    /// Re-enciphers a PIN block from one PIN key and format to another.
    async fn translate_pin(&self, request: PinTranslation<'_>) -> Result<Vec<u8>, HsmError>;

    /// Signs `data` (Ed25519: 64 bytes; ECDSA P-256 with SHA-256: fixed 64-byte `r || s`).
    async fn sign(&self, key: &KeyRef, data: &[u8]) -> Result<Tag, HsmError>;

    /// Verifies a signature made by [`Hsm::sign`]. Returns the version that matched.
    async fn verify(&self, key: &KeyRef, data: &[u8], signature: &[u8]) -> Result<u32, HsmError>;

    /// The public half of a signing key, for partners.
    async fn public_key(&self, key: &KeyRef) -> Result<PublicKey, HsmError>;

    /// HMAC-SHA256 of `data` (32 bytes).
    async fn hmac(&self, key: &KeyRef, data: &[u8]) -> Result<Tag, HsmError>;

    /// Enciphers `data` (AES-256-GCM, a fresh 96-bit nonce, `aad` bound to
    /// it) under an `aes256/data` key, for data kept at rest that must be
    /// readable later only inside posgate: card-on-file tokens. Returns the
    /// key version used and `nonce || ciphertext || tag`.
    async fn encrypt_data(&self, key: &KeyRef, data: &[u8], aad: &[u8]) -> Result<Tag, HsmError>;

    /// Deciphers what [`Hsm::encrypt_data`] made (version pinned by `key`),
    /// checking its tag and `aad`. The clear data is zeroized on drop.
    async fn decrypt_data(
        &self,
        key: &KeyRef,
        sealed: &[u8],
        aad: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, HsmError>;

    /// Enciphers `key` under the key-encryption key `kek` for export.
    async fn wrap_key(&self, key: &KeyRef, kek: &KeyRef) -> Result<WrappedKey, HsmError>;

    /// Imports a wrapped key as version 1 of `label`, or as the next version
    /// if `label` exists with the same spec. Checks the KCV.
    async fn unwrap_key(
        &self,
        label: &str,
        wrapped: &WrappedKey,
        kek: &KeyRef,
    ) -> Result<KeyInfo, HsmError>;
}

/// The expected-type strings used in [`HsmError::WrongKeyType`].
pub(crate) mod expected {
    pub const RETAIL_MAC: &str = "a tdes2/mac key";
    pub const AES_CMAC: &str = "an aes256/mac key";
    pub const PIN_ISO0: &str = "a tdes2/pin key";
    pub const PIN_ISO4: &str = "an aes256/pin key";
    pub const SIGN: &str = "an ed25519/sign or ecdsa-p256/sign key";
    pub const HMAC: &str = "an hmac-sha256/hmac key";
    pub const TDES_KEK: &str = "a tdes2/kek key (TDES keys are exported under a ZMK)";
    pub const AES_KEK: &str = "an aes256/kek key (AES and HMAC keys are exported under an AES KEK)";
    pub const AES_DATA: &str = "an aes256/data key";
    pub const WRAPPABLE: &str =
        "a tdes2, aes256 or hmac-sha256 key (signing keys are not exportable)";
}

/// Checks a key's spec against the one an operation needs.
pub(crate) fn require(
    info: &KeyInfo,
    wanted: KeySpec,
    expected: &'static str,
) -> Result<(), HsmError> {
    if info.spec == wanted {
        Ok(())
    } else {
        Err(HsmError::WrongKeyType {
            label: info.label.clone(),
            expected,
            actual: info.spec.to_string(),
        })
    }
}

/// The spec a MAC algorithm needs, with its error string.
pub(crate) fn mac_spec(algorithm: MacAlgorithm) -> (KeySpec, &'static str) {
    match algorithm {
        MacAlgorithm::RetailMac(_) => (KeySpec::TDES_MAC, expected::RETAIL_MAC),
        MacAlgorithm::AesCmac => (KeySpec::AES_MAC, expected::AES_CMAC),
    }
}

/// The spec a PIN block format needs, with its error string.
pub(crate) fn pin_spec(format: PinBlockFormat) -> (KeySpec, &'static str) {
    match format {
        PinBlockFormat::Iso0 => (KeySpec::TDES_PIN, expected::PIN_ISO0),
        PinBlockFormat::Iso4 => (KeySpec::AES_PIN, expected::PIN_ISO4),
    }
}

/// A PAN's fingerprint needs the HSM's HMAC; it lives here so that `pan`
/// (parsing and masking) does not depend on the HSM.
impl Pan {
    /// HMAC-SHA256 of the digits under `key`: a stable look-up key that
    /// reveals nothing without the HSM.
    pub async fn fingerprint(
        &self,
        hsm: &dyn Hsm,
        key: &KeyRef,
    ) -> Result<PanFingerprint, HsmError> {
        let tag = hsm.hmac(key, self.digits().as_bytes()).await?;
        Ok(PanFingerprint {
            key_version: tag.key_version,
            hex: hex::encode(tag.bytes),
        })
    }
}
