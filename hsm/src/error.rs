//! The one error type every HSM operation returns: each variant names what
//! went wrong and with which key, never with which key material.

use std::path::PathBuf;

/// What an HSM operation can fail with. Nothing here ever carries key
/// material, a clear PIN or a full PAN.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HsmError {
    /// No key carries this label.
    #[error("no key labelled {label:?}")]
    UnknownKey { label: String },

    /// The label exists, but not at this version.
    #[error("key {label:?} has no version {version}")]
    UnknownVersion { label: String, version: u32 },

    /// `generate`/`import` of a label that already exists (use `rotate`).
    #[error("key {label:?} already exists; rotate it to add a version")]
    KeyExists { label: String },

    /// The key exists but its type or usage does not fit the operation.
    #[error("key {label:?} is {actual}, but this operation needs {expected}")]
    WrongKeyType {
        label: String,
        expected: &'static str,
        /// The key's spec (`KeySpec` as displayed).
        actual: String,
    },

    /// A key type paired with a usage it cannot serve.
    #[error("a {key_type} key cannot be used for {usage}")]
    InvalidKeySpec { key_type: String, usage: String },

    /// Labels are 1 to 64 characters of `[A-Za-z0-9._-]`.
    #[error("invalid key label {label:?}: {reason}")]
    InvalidLabel { label: String, reason: &'static str },

    /// Imported clear material has the wrong length for its type.
    #[error("key material for a {key_type} key must be {expected_bytes} bytes, got {actual_bytes}")]
    BadKeyLength {
        key_type: String,
        expected_bytes: usize,
        actual_bytes: usize,
    },

    /// A presented MAC does not match under any version tried.
    #[error("MAC verification failed under key {label:?}")]
    MacMismatch { label: String },

    /// A presented signature does not verify under any version tried.
    #[error("signature verification failed under key {label:?}")]
    SignatureMismatch { label: String },

    /// The PIN block does not decode: wrong PIN key, wrong PAN, wrong format
    /// or a corrupted block. Which of these is deliberately not said.
    #[error(
        "PIN block does not decode under key {label:?} (wrong PIN key, wrong PAN or corrupted block)"
    )]
    PinBlockInvalid { label: String },

    /// Input that is malformed regardless of keys (lengths, formats).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The key check value of an unwrapped or imported key differs from the one given.
    #[error("key check value mismatch: expected {expected}, computed {actual}")]
    KcvMismatch { expected: String, actual: String },

    /// Unwrapping failed its integrity check: wrong KEK or corrupted blob.
    #[error(
        "unwrap under key {kek_label:?} failed: wrong key-encryption key or corrupted wrapped key"
    )]
    UnwrapFailed { kek_label: String },

    /// The backend cannot do this, and says why.
    #[error("{operation} is not supported by the {backend} backend: {reason}")]
    Unsupported {
        backend: &'static str,
        operation: &'static str,
        reason: &'static str,
    },

    /// The keystore file is missing, unreadable, corrupted or tampered with.
    #[error("keystore {path}: {reason}")]
    Keystore { path: PathBuf, reason: String },

    /// The master key is missing, malformed or not the one the keystore was sealed with.
    #[error("keystore master key: {0}")]
    MasterKey(String),

    /// A PKCS#11 call failed.
    #[error("PKCS#11 {operation} failed: {source}")]
    Pkcs11 {
        operation: &'static str,
        #[source]
        source: cryptoki::error::Error,
    },

    /// PKCS#11 configuration is incomplete or names a token that is not there.
    #[error("PKCS#11 configuration: {0}")]
    Pkcs11Config(String),

    /// A bug or an environment failure (a worker thread panicked, the RNG failed).
    #[error("internal HSM error: {0}")]
    Internal(String),
}

impl HsmError {
    pub(crate) fn pkcs11(operation: &'static str) -> impl FnOnce(cryptoki::error::Error) -> Self {
        move |source| Self::Pkcs11 { operation, source }
    }
}
