//! The software HSM's keystore file and its master key.
//!
//! The file is JSON: a format tag, a check value of the master key (so a
//! wrong master key is reported as such, not as corruption), and one entry
//! per key version. Each entry's material is sealed with AES-256-GCM under
//! the master key, with the entry's label, type, usage, version and KCV as
//! associated data: editing any of them, or moving material between entries,
//! fails decryption. Deleting a whole entry is not detected; back the file
//! up and protect it like any key database.
//!
//! Writes go to a temporary file in the same directory, are synced, then
//! renamed over the old file, so a crash leaves either the old or new keystore.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::HsmError;
use crate::keys::{Kcv, KeyInfo, KeySpec, KeyType, KeyUsage};
use crate::secret::Secret;

/// The environment variable holding the master key as 64 hex digits.
pub const MASTER_KEY_ENV: &str = "POSGATE_HSM_MASTER_KEY";

/// The format tag written into every keystore file.
const FORMAT: &str = "posgate-keystore/1";

/// The message whose HMAC identifies the master key.
const MASTER_CHECK_MESSAGE: &[u8] = b"posgate keystore master key check v1";

/// A keystore larger than this is refused: it holds tens of keys, not millions.
const MAX_KEYSTORE_BYTES: u64 = 16 << 20;

/// The 256-bit key that seals the keystore. Zeroized on drop; prints as `***`.
#[derive(Debug)]
pub struct MasterKey(Secret<[u8; 32]>);

impl MasterKey {
    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, HsmError> {
        let bytes = Zeroizing::new(
            hex::decode(text.trim())
                .map_err(|_| HsmError::MasterKey("not hex; expected 64 hex digits".to_owned()))?,
        );
        let mut key = Zeroizing::new([0_u8; 32]);
        if bytes.len() != key.len() {
            return Err(HsmError::MasterKey(format!(
                "expected 32 bytes (64 hex digits), got {} bytes",
                bytes.len()
            )));
        }
        key.copy_from_slice(&bytes);
        Ok(Self(key.into()))
    }

    /// Reads the master key from the environment variable `name`.
    pub fn from_env(name: &str) -> Result<Self, HsmError> {
        let value =
            Zeroizing::new(std::env::var(name).map_err(|_| {
                HsmError::MasterKey(format!("environment variable {name} is not set"))
            })?);
        Self::from_hex(&value)
    }

    /// Reads the master key from a file holding 64 hex digits.
    pub fn from_file(path: &Path) -> Result<Self, HsmError> {
        let text = Zeroizing::new(fs::read_to_string(path).map_err(|error| {
            HsmError::MasterKey(format!("cannot read {}: {error}", path.display()))
        })?);
        Self::from_hex(&text)
    }

    /// A fresh random master key and its hex form, for `posgate keys init`.
    pub fn generate() -> Result<(Self, Zeroizing<String>), HsmError> {
        let mut key = Zeroizing::new([0_u8; 32]);
        SystemRandom::new()
            .fill(&mut key[..])
            .map_err(|_| HsmError::Internal("system RNG failed".to_owned()))?;
        let text = Zeroizing::new(hex::encode(&key[..]));
        Ok((Self(key.into()), text))
    }

    fn check_value(&self) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.0.expose()[..]);
        hex::encode(&ring::hmac::sign(&key, MASTER_CHECK_MESSAGE).as_ref()[..8])
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(&self.0.expose()[..]).expect("AES-256-GCM takes 32-byte keys")
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct KeystoreFile {
    format: String,
    master_check: String,
    keys: Vec<SealedKey>,
}

/// One key version as stored: metadata in clear, material sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SealedKey {
    label: String,
    key_type: KeyType,
    usage: KeyUsage,
    version: u32,
    kcv: String,
    created_at_unix_s: i64,
    nonce: String,
    sealed: String,
}

impl SealedKey {
    fn associated_data(&self) -> Vec<u8> {
        format!(
            "{FORMAT}\n{}\n{}\n{}\n{}\n{}\n{}",
            self.label, self.key_type, self.usage, self.version, self.kcv, self.created_at_unix_s
        )
        .into_bytes()
    }
}

/// Seals one key version's material under the master key.
pub(crate) fn seal(
    master: &MasterKey,
    info: &KeyInfo,
    material: &[u8],
) -> Result<SealedKey, HsmError> {
    let mut nonce = [0_u8; 12];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| HsmError::Internal("system RNG failed".to_owned()))?;
    let mut entry = SealedKey {
        label: info.label.clone(),
        key_type: info.spec.key_type(),
        usage: info.spec.usage(),
        version: info.version,
        kcv: info.kcv.to_string(),
        created_at_unix_s: info.created_at_unix_s,
        nonce: hex::encode(nonce),
        sealed: String::new(),
    };
    let aad = entry.associated_data();
    let sealed = master
        .cipher()
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: material,
                aad: &aad,
            },
        )
        .map_err(|_| HsmError::Internal("AES-GCM sealing failed".to_owned()))?;
    entry.sealed = hex::encode(sealed);
    Ok(entry)
}

/// Opens one sealed entry: its description and clear material.
pub(crate) fn open(
    path: &Path,
    master: &MasterKey,
    entry: &SealedKey,
) -> Result<(KeyInfo, Zeroizing<Vec<u8>>), HsmError> {
    let corrupt = |reason: String| HsmError::Keystore {
        path: path.to_path_buf(),
        reason,
    };
    let what = format!("entry {:?} v{}", entry.label, entry.version);
    let spec = KeySpec::new(entry.key_type, entry.usage)
        .map_err(|error| corrupt(format!("{what}: {error}")))?;
    let kcv = Kcv::parse(&entry.kcv).map_err(|error| corrupt(format!("{what}: {error}")))?;
    let nonce = hex::decode(&entry.nonce)
        .ok()
        .filter(|nonce| nonce.len() == 12)
        .ok_or_else(|| corrupt(format!("{what}: bad nonce")))?;
    let sealed = hex::decode(&entry.sealed)
        .map_err(|_| corrupt(format!("{what}: sealed material is not hex")))?;
    let aad = entry.associated_data();
    let material = master
        .cipher()
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &sealed,
                aad: &aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| corrupt(format!("{what}: does not decrypt; the file was altered")))?;
    let info = KeyInfo {
        label: entry.label.clone(),
        spec,
        version: entry.version,
        kcv,
        created_at_unix_s: entry.created_at_unix_s,
    };
    Ok((info, material))
}

/// Creates an empty keystore at `path`; refuses to overwrite an existing file.
pub fn create(path: &Path, master: &MasterKey) -> Result<(), HsmError> {
    if path.exists() {
        return Err(HsmError::Keystore {
            path: path.to_path_buf(),
            reason: "already exists; refusing to overwrite a keystore".to_owned(),
        });
    }
    save(path, master, &[])
}

/// Reads and checks a keystore, returning its sealed entries.
pub(crate) fn load(path: &Path, master: &MasterKey) -> Result<Vec<SealedKey>, HsmError> {
    let keystore_error = |reason: String| HsmError::Keystore {
        path: path.to_path_buf(),
        reason,
    };
    let size = fs::metadata(path)
        .map_err(|error| keystore_error(format!("cannot read: {error}")))?
        .len();
    if size > MAX_KEYSTORE_BYTES {
        return Err(keystore_error(format!(
            "{size} bytes is larger than any real keystore"
        )));
    }
    let text = fs::read_to_string(path)
        .map_err(|error| keystore_error(format!("cannot read: {error}")))?;
    let file: KeystoreFile = serde_json::from_str(&text)
        .map_err(|error| keystore_error(format!("not a keystore: {error}")))?;
    if file.format != FORMAT {
        return Err(keystore_error(format!("unknown format {:?}", file.format)));
    }
    if !crate::mac::constant_time_eq(
        file.master_check.as_bytes(),
        master.check_value().as_bytes(),
    ) {
        return Err(HsmError::MasterKey(format!(
            "not the master key {} was sealed with",
            path.display()
        )));
    }
    Ok(file.keys)
}

/// Writes the keystore atomically (temporary file, sync, rename).
pub(crate) fn save(path: &Path, master: &MasterKey, keys: &[SealedKey]) -> Result<(), HsmError> {
    let keystore_error = |reason: String| HsmError::Keystore {
        path: path.to_path_buf(),
        reason,
    };
    let file = KeystoreFile {
        format: FORMAT.to_owned(),
        master_check: master.check_value(),
        keys: keys.to_vec(),
    };
    let text =
        serde_json::to_string_pretty(&file).map_err(|error| keystore_error(error.to_string()))?;
    let temporary = temporary_path(path);
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut handle = options.open(&temporary).map_err(|error| {
        keystore_error(format!("cannot write {}: {error}", temporary.display()))
    })?;
    handle
        .write_all(text.as_bytes())
        .and_then(|()| handle.sync_all())
        .map_err(|error| {
            keystore_error(format!("cannot write {}: {error}", temporary.display()))
        })?;
    fs::rename(&temporary, path)
        .map_err(|error| keystore_error(format!("cannot replace: {error}")))?;
    Ok(())
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}
