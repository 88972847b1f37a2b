//! Key types, usages, references, public key descriptions and the key check
//! value (KCV). Clear key material only ever appears here inside [`ClearKey`],
//! which zeroizes itself and prints as `***`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::HsmError;
use crate::secret::Secret;

/// The longest label accepted. Labels end up in PKCS#11 `CKA_LABEL` and in
/// log lines, so they stay short and printable.
pub const MAX_LABEL_LEN: usize = 64;

/// Versions kept per label. Verification tries versions newest first, so this
/// bounds the work (and the chances) a forged MAC gets.
pub const MAX_VERSIONS: u32 = 16;

/// The algorithm family of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyType {
    /// Double-length triple DES (K1 K2, 16 bytes): zone MAC and PIN keys, ZMKs.
    Tdes2,
    /// AES with a 256-bit key: CMAC, PIN format 4, key wrapping.
    Aes256,
    /// Ed25519 signing key (RFC 8032).
    Ed25519,
    /// ECDSA over NIST P-256 with SHA-256.
    EcdsaP256,
    /// HMAC-SHA256 key (32 bytes), e.g. for PAN fingerprints.
    HmacSha256,
}

impl KeyType {
    /// Length in bytes of clear material accepted by `import_key`.
    #[must_use]
    pub fn clear_len_bytes(self) -> Option<usize> {
        match self {
            Self::Tdes2 => Some(16),
            Self::Aes256 | Self::Ed25519 | Self::HmacSha256 => Some(32),
            // ECDSA keys are generated inside the HSM only: see `import_key`.
            Self::EcdsaP256 => None,
        }
    }

    /// The stable name used in files, the CLI and PKCS#11 metadata.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tdes2 => "tdes2",
            Self::Aes256 => "aes256",
            Self::Ed25519 => "ed25519",
            Self::EcdsaP256 => "ecdsa-p256",
            Self::HmacSha256 => "hmac-sha256",
        }
    }

    /// Parses [`KeyType::as_str`].
    pub fn parse(text: &str) -> Result<Self, HsmError> {
        [
            Self::Tdes2,
            Self::Aes256,
            Self::Ed25519,
            Self::EcdsaP256,
            Self::HmacSha256,
        ]
        .into_iter()
        .find(|key_type| key_type.as_str() == text)
        .ok_or_else(|| HsmError::InvalidInput(format!("unknown key type {text:?}")))
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a key may be used for. One key, one purpose: a MAC key never
/// decrypts a PIN block and a ZMK never MACs a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyUsage {
    /// Message authentication (retail MAC with TDES, CMAC with AES).
    Mac,
    /// PIN block encryption (terminal or zone PIN key).
    Pin,
    /// Key encryption (ZMK / KEK): wraps and unwraps other keys.
    KeyEncryption,
    /// Digital signatures.
    Sign,
    /// Keyed hashing (HMAC-SHA256).
    Hmac,
    /// Data encryption at rest (AES-256-GCM): card-on-file tokens. Never
    /// wraps keys, so a data key cannot export the keys under it.
    DataEncryption,
}

impl KeyUsage {
    /// The stable name used in files, the CLI and PKCS#11 metadata.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mac => "mac",
            Self::Pin => "pin",
            Self::KeyEncryption => "kek",
            Self::Sign => "sign",
            Self::Hmac => "hmac",
            Self::DataEncryption => "data",
        }
    }

    /// Parses [`KeyUsage::as_str`].
    pub fn parse(text: &str) -> Result<Self, HsmError> {
        [
            Self::Mac,
            Self::Pin,
            Self::KeyEncryption,
            Self::Sign,
            Self::Hmac,
            Self::DataEncryption,
        ]
        .into_iter()
        .find(|usage| usage.as_str() == text)
        .ok_or_else(|| HsmError::InvalidInput(format!("unknown key usage {text:?}")))
    }
}

impl fmt::Display for KeyUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key type together with its single usage. Only valid pairs can be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeySpec {
    key_type: KeyType,
    usage: KeyUsage,
}

impl KeySpec {
    /// Zone (or terminal) MAC key for ISO 9797-1 algorithm 3.
    pub const TDES_MAC: Self = Self::unchecked(KeyType::Tdes2, KeyUsage::Mac);
    /// Terminal or zone PIN key for ISO 9564 format 0.
    pub const TDES_PIN: Self = Self::unchecked(KeyType::Tdes2, KeyUsage::Pin);
    /// Zone master key: wraps TDES keys for exchange with a partner.
    pub const TDES_ZMK: Self = Self::unchecked(KeyType::Tdes2, KeyUsage::KeyEncryption);
    /// AES-CMAC key.
    pub const AES_MAC: Self = Self::unchecked(KeyType::Aes256, KeyUsage::Mac);
    /// AES PIN key for ISO 9564 format 4.
    pub const AES_PIN: Self = Self::unchecked(KeyType::Aes256, KeyUsage::Pin);
    /// AES key-encryption key (RFC 3394 key wrap).
    pub const AES_KEK: Self = Self::unchecked(KeyType::Aes256, KeyUsage::KeyEncryption);
    /// AES-256-GCM data-encryption key (card-on-file tokens).
    pub const AES_DATA: Self = Self::unchecked(KeyType::Aes256, KeyUsage::DataEncryption);
    /// Ed25519 signing key.
    pub const ED25519: Self = Self::unchecked(KeyType::Ed25519, KeyUsage::Sign);
    /// ECDSA P-256 signing key.
    pub const ECDSA_P256: Self = Self::unchecked(KeyType::EcdsaP256, KeyUsage::Sign);
    /// HMAC-SHA256 key.
    pub const HMAC_SHA256: Self = Self::unchecked(KeyType::HmacSha256, KeyUsage::Hmac);

    const fn unchecked(key_type: KeyType, usage: KeyUsage) -> Self {
        Self { key_type, usage }
    }

    /// Pairs a type with a usage, refusing pairs the type cannot serve.
    pub fn new(key_type: KeyType, usage: KeyUsage) -> Result<Self, HsmError> {
        let valid = matches!(
            (key_type, usage),
            (
                KeyType::Tdes2 | KeyType::Aes256,
                KeyUsage::Mac | KeyUsage::Pin | KeyUsage::KeyEncryption
            ) | (KeyType::Aes256, KeyUsage::DataEncryption)
                | (KeyType::Ed25519 | KeyType::EcdsaP256, KeyUsage::Sign)
                | (KeyType::HmacSha256, KeyUsage::Hmac)
        );
        if valid {
            Ok(Self { key_type, usage })
        } else {
            Err(HsmError::InvalidKeySpec {
                key_type: key_type.to_string(),
                usage: usage.to_string(),
            })
        }
    }

    #[must_use]
    pub fn key_type(self) -> KeyType {
        self.key_type
    }

    #[must_use]
    pub fn usage(self) -> KeyUsage {
        self.usage
    }
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.key_type, self.usage)
    }
}

/// Names a key: a label and either one version or the newest one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyRef {
    label: String,
    version: Option<u32>,
}

impl KeyRef {
    /// The newest version of `label`. For verification, every kept version is tried.
    #[must_use]
    pub fn latest(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            version: None,
        }
    }

    /// Exactly this version of `label`.
    #[must_use]
    pub fn version(label: impl Into<String>, version: u32) -> Self {
        Self {
            label: label.into(),
            version: Some(version),
        }
    }

    #[must_use]
    pub fn label(&self) -> &str {
        &self.label
    }

    #[must_use]
    pub fn pinned_version(&self) -> Option<u32> {
        self.version
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            Some(version) => write!(f, "{}@v{version}", self.label),
            None => write!(f, "{}@latest", self.label),
        }
    }
}

/// Checks a label: 1 to [`MAX_LABEL_LEN`] characters of `[A-Za-z0-9._-]`.
pub fn validate_label(label: &str) -> Result<(), HsmError> {
    let reason = if label.is_empty() {
        Some("empty")
    } else if label.len() > MAX_LABEL_LEN {
        Some("longer than 64 characters")
    } else if !label
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
    {
        Some("only A-Z, a-z, 0-9, '.', '_' and '-' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(HsmError::InvalidLabel {
            label: label.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// A key check value: three bytes that identify a key without revealing it.
///
/// Defined as PKCS#11 `CKA_CHECK_VALUE` is, so both backends agree: TDES and
/// AES encrypt a zero block and keep the first three bytes; HMAC keys take the
/// first three bytes of SHA-1 of the key; signing keys take the first three
/// bytes of SHA-256 of the public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kcv(pub [u8; 3]);

impl Kcv {
    /// Parses six hex digits.
    pub fn parse(text: &str) -> Result<Self, HsmError> {
        let bytes = hex::decode(text)
            .ok()
            .and_then(|bytes| <[u8; 3]>::try_from(bytes).ok())
            .ok_or_else(|| HsmError::InvalidInput(format!("KCV {text:?} is not 6 hex digits")))?;
        Ok(Self(bytes))
    }
}

impl fmt::Display for Kcv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_upper(self.0))
    }
}

/// What the HSM tells about a key: never its material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub label: String,
    pub spec: KeySpec,
    pub version: u32,
    pub kcv: Kcv,
    /// When this version was created, seconds since the Unix epoch.
    pub created_at_unix_s: i64,
}

/// Clear key material on its way into the HSM (key ceremony components,
/// test vectors). Zeroized on drop; `Debug` prints `ClearKey(***)`.
#[derive(Debug)]
pub struct ClearKey(Secret<Vec<u8>>);

impl ClearKey {
    /// Takes ownership of the bytes; the caller's copy should be a `Zeroizing` too.
    #[must_use]
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Secret::new(bytes))
    }

    /// Parses hex (as typed by a key custodian), zeroizing the intermediate buffer.
    pub fn from_hex(text: &str) -> Result<Self, HsmError> {
        let bytes = hex::decode(text.trim())
            .map_err(|_| HsmError::InvalidInput("clear key is not valid hex".to_owned()))?;
        Ok(Self::new(bytes))
    }

    pub(crate) fn expose(&self) -> &[u8] {
        self.0.expose()
    }
}

/// A public key, as published to partners who verify posgate's signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// The 32-byte RFC 8032 public key.
    Ed25519([u8; 32]),
    /// The 65-byte uncompressed SEC1 point `04 || x || y`.
    EcdsaP256(Vec<u8>),
}

impl PublicKey {
    /// The raw encoding described on each variant.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Ed25519(bytes) => bytes,
            Self::EcdsaP256(bytes) => bytes,
        }
    }

    /// The signature algorithm the key verifies, as posgate's files and
    /// `AuditService` name it: `ed25519` (RFC 8032, pure) or
    /// `ecdsa-p256-sha256` (fixed 64-byte `r || s`).
    #[must_use]
    pub fn algorithm(&self) -> &'static str {
        match self {
            Self::Ed25519(_) => "ed25519",
            Self::EcdsaP256(_) => "ecdsa-p256-sha256",
        }
    }

    /// The X.509 `SubjectPublicKeyInfo` (DER), what OpenSSL, Java and most
    /// crypto libraries load: RFC 8410 for Ed25519, RFC 5480 for P-256.
    #[must_use]
    pub fn spki_der(&self) -> Vec<u8> {
        // The fixed DER prefixes: SEQUENCE { SEQUENCE { algorithm OID [, curve
        // OID] }, BIT STRING (no unused bits) { key } }.
        const ED25519_PREFIX: [u8; 12] = [
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        const P256_PREFIX: [u8; 26] = [
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        let prefix: &[u8] = match self {
            Self::Ed25519(_) => &ED25519_PREFIX,
            Self::EcdsaP256(_) => &P256_PREFIX,
        };
        [prefix, self.as_bytes()].concat()
    }

    /// [`Self::spki_der`] as a PEM `PUBLIC KEY` block (64-character lines,
    /// trailing newline), as `openssl pkey -pubin` reads it.
    #[must_use]
    pub fn spki_pem(&self) -> String {
        use base64::Engine as _;
        let body = base64::engine::general_purpose::STANDARD.encode(self.spki_der());
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// The KCV of a signing key: SHA-256 of the public key, first three bytes.
    #[must_use]
    pub fn kcv(&self) -> Kcv {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.as_bytes());
        let mut kcv = [0_u8; 3];
        kcv.copy_from_slice(&digest.as_ref()[..3]);
        Kcv(kcv)
    }
}

/// Checks that `material` fits `key_type` (for clear imports).
pub(crate) fn check_clear_len(key_type: KeyType, material: &[u8]) -> Result<(), HsmError> {
    match key_type.clear_len_bytes() {
        Some(expected_bytes) if expected_bytes == material.len() => Ok(()),
        Some(expected_bytes) => Err(HsmError::BadKeyLength {
            key_type: key_type.to_string(),
            expected_bytes,
            actual_bytes: material.len(),
        }),
        None => Err(HsmError::Unsupported {
            backend: "any",
            operation: "clear import of ECDSA keys",
            reason: "ECDSA P-256 keys are generated inside the HSM; publish the public key instead",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SPKI of an Ed25519 key is RFC 8410's own example (section 10.1), byte for byte.
    #[test]
    fn ed25519_spki_matches_rfc_8410() {
        let key: [u8; 32] =
            hex::decode("19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1")
                .unwrap()
                .try_into()
                .unwrap();
        let public = PublicKey::Ed25519(key);
        assert_eq!(public.algorithm(), "ed25519");
        assert_eq!(
            public.spki_pem(),
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n"
        );
    }

    /// A P-256 SPKI is RFC 5480's: id-ecPublicKey, prime256v1, then the 65-byte point (as OpenSSL writes it).
    #[test]
    fn p256_spki_has_rfc_5480_header() {
        let mut point = vec![0x04];
        point.extend((1..=64).map(|byte: u8| byte));
        let der = PublicKey::EcdsaP256(point.clone()).spki_der();
        assert_eq!(der.len(), 91);
        assert_eq!(
            hex::encode(&der[..26]),
            "3059301306072a8648ce3d020106082a8648ce3d030107034200"
        );
        assert_eq!(&der[26..], point.as_slice());
    }
}
