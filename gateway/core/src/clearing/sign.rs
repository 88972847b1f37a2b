//! Detached signatures and the manifest. Every data file of a day gets a
//! `.sig` file: an Ed25519 signature, made by the HSM, over a statement that
//! binds the file's name, size and SHA-256 (so a partner verifies a large
//! file by hashing it, and the HSM never holds a file in memory). The
//! manifest lists every data file with its SHA-256 and size and is signed
//! the same way.
//!
//! Signature file: one line `ed25519 <key label> <key version> <128 hex digits>`.
//! Manifest (`MANIFEST_YYYYMMDD.txt`):
//! ```text
//! posgate-clearing-manifest v1
//! business_date YYYY-MM-DD
//! created_at <RFC 3339 UTC>
//! file <sha256 hex> <size bytes> <name>      (one per data file, sorted by name)
//! ```

use std::io::Write as _;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use posgate_hsm::{Hsm, HsmError, KeyRef};
use sha2::{Digest as _, Sha256};

use crate::ports::db::clearing::FileRecord;

/// What the signature of a file covers.
pub fn statement(name: &str, size_bytes: i64, sha256_hex: &str) -> Vec<u8> {
    format!("posgate-clearing-file v1\nname {name}\nsize {size_bytes}\nsha256 {sha256_hex}\n")
        .into_bytes()
}

/// A parsed signature file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub key_label: String,
    pub key_version: u32,
    pub bytes: Vec<u8>,
}

impl Signature {
    pub fn to_line(&self) -> String {
        format!(
            "ed25519 {} {} {}\n",
            self.key_label,
            self.key_version,
            hex::encode(&self.bytes)
        )
    }

    /// Parses a signature file's text; the error says what is malformed.
    pub fn parse(text: &str) -> Result<Self, String> {
        let fields: Vec<&str> = text.trim_end_matches('\n').split(' ').collect();
        let [algorithm, label, version, signature] = fields.as_slice() else {
            return Err("expected `ed25519 <label> <version> <hex>`".to_owned());
        };
        if *algorithm != "ed25519" {
            return Err(format!("algorithm {algorithm:?} is not ed25519"));
        }
        let key_version = version
            .parse()
            .map_err(|_| format!("key version {version:?} is not a number"))?;
        let bytes = hex::decode(signature).map_err(|_| "signature is not hex".to_owned())?;
        if bytes.len() != 64 {
            return Err(format!(
                "signature has {} bytes, Ed25519 has 64",
                bytes.len()
            ));
        }
        Ok(Self {
            key_label: (*label).to_owned(),
            key_version,
            bytes,
        })
    }
}

/// Signs a file's statement with the HSM's Ed25519 key `label`.
pub async fn sign_file(
    hsm: &dyn Hsm,
    label: &str,
    file: &FileRecord,
) -> Result<Signature, HsmError> {
    let tag = hsm
        .sign(
            &KeyRef::latest(label),
            &statement(&file.name, file.size_bytes, &file.sha256),
        )
        .await?;
    Ok(Signature {
        key_label: label.to_owned(),
        key_version: tag.key_version,
        bytes: tag.bytes,
    })
}

/// The manifest's name for a business date.
pub fn manifest_name(date: NaiveDate) -> String {
    format!("MANIFEST_{}.txt", super::layout::compact_date(date))
}

/// The manifest text of a day's data files (sorted by name by the caller).
pub fn manifest(date: NaiveDate, created_at: DateTime<Utc>, files: &[FileRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    writeln!(out, "posgate-clearing-manifest v1").expect("Vec write");
    writeln!(
        out,
        "business_date {}",
        crate::model::business_day::format_date(date)
    )
    .expect("Vec write");
    writeln!(
        out,
        "created_at {}",
        created_at.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
    .expect("Vec write");
    for file in files {
        writeln!(
            out,
            "file {} {} {}",
            file.sha256, file.size_bytes, file.name
        )
        .expect("Vec write");
    }
    out
}

/// One manifest entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    pub line: usize,
    pub file: FileRecord,
}

/// Parses a manifest; the error names the line.
pub fn parse_manifest(text: &str) -> Result<Vec<ManifestEntry>, String> {
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        match index {
            0 if line != "posgate-clearing-manifest v1" => {
                return Err(format!("line 1: not a posgate clearing manifest: {line:?}"));
            }
            1 if !line.starts_with("business_date ") => {
                return Err(format!("line 2: expected `business_date`, found {line:?}"));
            }
            2 if !line.starts_with("created_at ") => {
                return Err(format!("line 3: expected `created_at`, found {line:?}"));
            }
            0..=2 => {}
            _ => {
                let fields: Vec<&str> = line.splitn(4, ' ').collect();
                let [tag, sha256, size, name] = fields.as_slice() else {
                    return Err(format!(
                        "line {number}: expected `file <sha256> <size> <name>`"
                    ));
                };
                let size_bytes = size
                    .parse()
                    .map_err(|_| format!("line {number}: size {size:?} is not a number"))?;
                if *tag != "file" || sha256.len() != 64 {
                    return Err(format!(
                        "line {number}: expected `file <sha256> <size> <name>`"
                    ));
                }
                entries.push(ManifestEntry {
                    line: number,
                    file: FileRecord {
                        name: (*name).to_owned(),
                        size_bytes,
                        sha256: (*sha256).to_owned(),
                    },
                });
            }
        }
    }
    Ok(entries)
}

/// SHA-256 (hex) and size of a file, read in blocks.
pub fn hash_file(path: &std::path::Path) -> std::io::Result<(String, i64)> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut size: i64 = 0;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        size += read as i64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// Checks an Ed25519 signature against a raw 32-byte public key.
pub fn verify_with_public_key(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
        .verify(message, signature)
        .is_ok()
}

/// Where signatures are checked: the HSM (by label and version), or a partner's copy of the public key.
#[derive(Debug, Clone)]
pub enum Verifier {
    Hsm(std::sync::Arc<dyn Hsm>),
    PublicKey(Vec<u8>),
}

impl Verifier {
    pub async fn check(&self, signature: &Signature, message: &[u8]) -> bool {
        match self {
            Self::Hsm(hsm) => hsm
                .verify(
                    &KeyRef::version(signature.key_label.clone(), signature.key_version),
                    message,
                    &signature.bytes,
                )
                .await
                .is_ok(),
            Self::PublicKey(key) => verify_with_public_key(key, message, &signature.bytes),
        }
    }
}
