//! The software HSM: keys in process memory (zeroized on drop), persisted in
//! a keystore file sealed under a master key (see [`crate::keystore`]).
//!
//! Guarantees: no API returns key material or a clear PIN; `Debug` prints
//! labels and counts only; symmetric keys and seeds are zeroized when a key
//! or the HSM is dropped. Limits: keys are as safe as this process's memory
//! and the master key; `ring`'s cached signing key pairs and HMAC contexts do
//! not zeroize their internal copies. Use the PKCS#11 backend with a real HSM
//! where the keys must never be in the gateway's memory.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use async_trait::async_trait;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use zeroize::Zeroizing;

use crate::error::HsmError;
use crate::hsm::{Hsm, PinTranslation, Tag, WrappedKey, expected, mac_spec, pin_spec, require};
use crate::keys::{
    ClearKey, Kcv, KeyInfo, KeyRef, KeySpec, KeyType, MAX_VERSIONS, PublicKey, check_clear_len,
    validate_label,
};
use crate::keystore::{self, MasterKey, SealedKey};
use crate::mac::{self, MacAlgorithm};
use crate::pin_block::{self, PinCipher};
use crate::wrap;

/// The software HSM. Cheap to share behind an `Arc`.
pub struct SoftwareHsm {
    store: Option<(PathBuf, MasterKey)>,
    keys: RwLock<BTreeMap<String, Vec<SoftKey>>>,
    rng: SystemRandom,
}

struct SoftKey {
    info: KeyInfo,
    material: Material,
    sealed: Option<SealedKey>,
}

enum Material {
    Tdes(Zeroizing<[u8; 16]>),
    Aes(Zeroizing<[u8; 32]>),
    Hmac(Zeroizing<[u8; 32]>),
    Ed25519 {
        seed: Zeroizing<[u8; 32]>,
        pair: Ed25519KeyPair,
    },
    Ecdsa {
        pkcs8: Zeroizing<Vec<u8>>,
        pair: EcdsaKeyPair,
    },
}

impl Material {
    /// Builds material from its stored bytes (raw key, Ed25519 seed, or ECDSA PKCS#8).
    fn from_bytes(key_type: KeyType, bytes: &[u8]) -> Result<Self, HsmError> {
        let rejected = |what: &str| {
            HsmError::InvalidInput(format!("{key_type} key material rejected: {what}"))
        };
        Ok(match key_type {
            KeyType::Tdes2 => Self::Tdes(Zeroizing::new(fixed(bytes, key_type)?)),
            KeyType::Aes256 => Self::Aes(Zeroizing::new(fixed(bytes, key_type)?)),
            KeyType::HmacSha256 => Self::Hmac(Zeroizing::new(fixed(bytes, key_type)?)),
            KeyType::Ed25519 => {
                let seed = Zeroizing::new(fixed::<32>(bytes, key_type)?);
                let pair = Ed25519KeyPair::from_seed_unchecked(&seed[..])
                    .map_err(|error| rejected(&error.to_string()))?;
                Self::Ed25519 { seed, pair }
            }
            KeyType::EcdsaP256 => {
                let pair = EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    bytes,
                    &SystemRandom::new(),
                )
                .map_err(|error| rejected(&error.to_string()))?;
                Self::Ecdsa {
                    pkcs8: Zeroizing::new(bytes.to_vec()),
                    pair,
                }
            }
        })
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Self::Tdes(key) => &key[..],
            Self::Aes(key) | Self::Hmac(key) => &key[..],
            Self::Ed25519 { seed, .. } => &seed[..],
            Self::Ecdsa { pkcs8, .. } => pkcs8,
        }
    }

    fn public_key(&self) -> Option<PublicKey> {
        match self {
            Self::Ed25519 { pair, .. } => {
                let mut bytes = [0_u8; 32];
                bytes.copy_from_slice(pair.public_key().as_ref());
                Some(PublicKey::Ed25519(bytes))
            }
            Self::Ecdsa { pair, .. } => {
                Some(PublicKey::EcdsaP256(pair.public_key().as_ref().to_vec()))
            }
            _ => None,
        }
    }

    fn kcv(&self) -> Kcv {
        let mut kcv = [0_u8; 3];
        match self {
            Self::Tdes(key) => kcv.copy_from_slice(&wrap::tdes_ecb_encrypt(key, &[0; 8])[..3]),
            Self::Aes(key) => {
                let mut block = [0_u8; 16];
                wrap::aes_ecb_encrypt_block(key, &mut block);
                kcv.copy_from_slice(&block[..3]);
            }
            Self::Hmac(key) => {
                let digest =
                    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &key[..]);
                kcv.copy_from_slice(&digest.as_ref()[..3]);
            }
            Self::Ed25519 { .. } | Self::Ecdsa { .. } => {
                return self
                    .public_key()
                    .expect("signing keys have public keys")
                    .kcv();
            }
        }
        Kcv(kcv)
    }
}

fn fixed<const N: usize>(bytes: &[u8], key_type: KeyType) -> Result<[u8; N], HsmError> {
    <[u8; N]>::try_from(bytes).map_err(|_| HsmError::BadKeyLength {
        key_type: key_type.to_string(),
        expected_bytes: N,
        actual_bytes: bytes.len(),
    })
}

/// How a new key version relates to the label's existing versions.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Insert {
    /// Version 1 of a new label.
    New,
    /// The next version of an existing label with the same spec.
    Next,
    /// Version 1 if the label is new, else the next version.
    NewOrNext,
}

struct TdesPinCipher<'a>(&'a [u8; 16]);

impl PinCipher for TdesPinCipher<'_> {
    fn encrypt_block(&mut self, block: &mut [u8]) -> Result<(), HsmError> {
        block.copy_from_slice(&wrap::tdes_ecb_encrypt(self.0, block));
        Ok(())
    }

    fn decrypt_block(&mut self, block: &mut [u8]) -> Result<(), HsmError> {
        block.copy_from_slice(&wrap::tdes_ecb_decrypt(self.0, block));
        Ok(())
    }
}

struct AesPinCipher<'a>(&'a [u8; 32]);

impl PinCipher for AesPinCipher<'_> {
    fn encrypt_block(&mut self, block: &mut [u8]) -> Result<(), HsmError> {
        wrap::aes_ecb_encrypt_block(self.0, block);
        Ok(())
    }

    fn decrypt_block(&mut self, block: &mut [u8]) -> Result<(), HsmError> {
        wrap::aes_ecb_decrypt_block(self.0, block);
        Ok(())
    }
}

impl fmt::Debug for SoftwareHsm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let labels = self.keys.read().map(|keys| keys.len()).unwrap_or_default();
        f.debug_struct("SoftwareHsm")
            .field("keystore", &self.store.as_ref().map(|(path, _)| path))
            .field("labels", &labels)
            .finish_non_exhaustive()
    }
}

impl SoftwareHsm {
    /// An HSM that keeps keys in memory only (tests, `posgate demo`).
    #[must_use]
    pub fn in_memory() -> Self {
        Self {
            store: None,
            keys: RwLock::new(BTreeMap::new()),
            rng: SystemRandom::new(),
        }
    }

    /// Opens an existing keystore file, checking the master key and every entry.
    pub fn open(path: &Path, master: MasterKey) -> Result<Self, HsmError> {
        let sealed_keys = keystore::load(path, &master)?;
        let mut keys: BTreeMap<String, Vec<SoftKey>> = BTreeMap::new();
        for sealed in sealed_keys {
            let (info, bytes) = keystore::open(path, &master, &sealed)?;
            let material = Material::from_bytes(info.spec.key_type(), &bytes)?;
            keys.entry(info.label.clone()).or_default().push(SoftKey {
                info,
                material,
                sealed: Some(sealed),
            });
        }
        for versions in keys.values_mut() {
            versions.sort_by_key(|key| key.info.version);
        }
        Ok(Self {
            store: Some((path.to_path_buf(), master)),
            keys: RwLock::new(keys),
            rng: SystemRandom::new(),
        })
    }

    /// Creates an empty keystore file at `path` and opens it.
    pub fn create(path: &Path, master: MasterKey) -> Result<Self, HsmError> {
        keystore::create(path, &master)?;
        Self::open(path, master)
    }

    fn random<const N: usize>(&self) -> Result<Zeroizing<[u8; N]>, HsmError> {
        let mut bytes = Zeroizing::new([0_u8; N]);
        self.rng
            .fill(&mut bytes[..])
            .map_err(|_| HsmError::Internal("system RNG failed".to_owned()))?;
        Ok(bytes)
    }

    fn fresh_material(&self, key_type: KeyType) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        Ok(match key_type {
            KeyType::Tdes2 => Zeroizing::new(self.random::<16>()?.to_vec()),
            KeyType::Aes256 | KeyType::HmacSha256 | KeyType::Ed25519 => {
                Zeroizing::new(self.random::<32>()?.to_vec())
            }
            KeyType::EcdsaP256 => {
                let document = EcdsaKeyPair::generate_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &self.rng,
                )
                .map_err(|_| HsmError::Internal("ECDSA key generation failed".to_owned()))?;
                Zeroizing::new(document.as_ref().to_vec())
            }
        })
    }

    fn insert(
        &self,
        label: &str,
        spec: KeySpec,
        bytes: &[u8],
        mode: Insert,
    ) -> Result<KeyInfo, HsmError> {
        validate_label(label)?;
        let material = Material::from_bytes(spec.key_type(), bytes)?;
        let mut keys = self.keys.write().map_err(|_| poisoned())?;
        let existing = keys.get(label);
        let version = match (existing.and_then(|versions| versions.last()), mode) {
            (None, Insert::New | Insert::NewOrNext) => 1,
            (None, Insert::Next) => return Err(unknown(label)),
            (Some(_), Insert::New) => {
                return Err(HsmError::KeyExists {
                    label: label.to_owned(),
                });
            }
            (Some(latest), Insert::Next | Insert::NewOrNext) => {
                if latest.info.spec != spec {
                    return Err(HsmError::WrongKeyType {
                        label: label.to_owned(),
                        expected: "the spec of the key's existing versions",
                        actual: spec.to_string(),
                    });
                }
                latest.info.version + 1
            }
        };
        let info = KeyInfo {
            label: label.to_owned(),
            spec,
            version,
            kcv: material.kcv(),
            created_at_unix_s: chrono::Utc::now().timestamp(),
        };
        let sealed = match &self.store {
            Some((_, master)) => Some(keystore::seal(master, &info, material.bytes())?),
            None => None,
        };
        let versions = keys.entry(label.to_owned()).or_default();
        versions.push(SoftKey {
            info: info.clone(),
            material,
            sealed,
        });
        let excess = versions.len().saturating_sub(MAX_VERSIONS as usize);
        versions.drain(..excess);
        self.persist(&keys)?;
        Ok(info)
    }

    fn persist(&self, keys: &BTreeMap<String, Vec<SoftKey>>) -> Result<(), HsmError> {
        let Some((path, master)) = &self.store else {
            return Ok(());
        };
        let sealed: Vec<SealedKey> = keys
            .values()
            .flatten()
            .filter_map(|key| key.sealed.clone())
            .collect();
        keystore::save(path, master, &sealed)
    }

    /// Runs `operation` on the one version `key` names.
    fn with_key<T>(
        &self,
        key: &KeyRef,
        operation: impl FnOnce(&SoftKey) -> Result<T, HsmError>,
    ) -> Result<T, HsmError> {
        let keys = self.keys.read().map_err(|_| poisoned())?;
        let versions = keys.get(key.label()).ok_or_else(|| unknown(key.label()))?;
        let found = match key.pinned_version() {
            None => versions.last(),
            Some(version) => versions
                .iter()
                .find(|candidate| candidate.info.version == version),
        };
        let found = found.ok_or_else(|| HsmError::UnknownVersion {
            label: key.label().to_owned(),
            version: key.pinned_version().unwrap_or_default(),
        })?;
        operation(found)
    }

    /// Returns the first version (newest first) for which `check` is true.
    fn verify_any(
        &self,
        key: &KeyRef,
        wanted: KeySpec,
        expected: &'static str,
        check: impl Fn(&SoftKey) -> bool,
    ) -> Result<Option<u32>, HsmError> {
        let keys = self.keys.read().map_err(|_| poisoned())?;
        let versions = keys.get(key.label()).ok_or_else(|| unknown(key.label()))?;
        let newest = versions.last().ok_or_else(|| unknown(key.label()))?;
        require(&newest.info, wanted, expected)?;
        let mut candidates: Vec<&SoftKey> = match key.pinned_version() {
            None => versions.iter().rev().collect(),
            Some(version) => versions
                .iter()
                .filter(|candidate| candidate.info.version == version)
                .collect(),
        };
        if candidates.is_empty() {
            return Err(HsmError::UnknownVersion {
                label: key.label().to_owned(),
                version: key.pinned_version().unwrap_or_default(),
            });
        }
        candidates.truncate(MAX_VERSIONS as usize);
        Ok(candidates
            .into_iter()
            .find(|candidate| check(candidate))
            .map(|candidate| candidate.info.version))
    }

    fn compute_mac(
        key: &SoftKey,
        algorithm: MacAlgorithm,
        data: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let (wanted, expected) = mac_spec(algorithm);
        require(&key.info, wanted, expected)?;
        match (&key.material, algorithm) {
            (Material::Tdes(material), MacAlgorithm::RetailMac(padding)) => {
                Ok(mac::retail_mac(material, data, padding).to_vec())
            }
            (Material::Aes(material), MacAlgorithm::AesCmac) => {
                Ok(mac::aes_cmac(material, data).to_vec())
            }
            _ => unreachable!("the spec check above matches material to algorithm"),
        }
    }

    fn compute_signature(&self, key: &SoftKey, data: &[u8]) -> Result<Vec<u8>, HsmError> {
        match &key.material {
            Material::Ed25519 { pair, .. } => Ok(pair.sign(data).as_ref().to_vec()),
            Material::Ecdsa { pair, .. } => pair
                .sign(&self.rng, data)
                .map(|signature| signature.as_ref().to_vec())
                .map_err(|_| HsmError::Internal("ECDSA signing failed".to_owned())),
            _ => Err(wrong(&key.info, expected::SIGN)),
        }
    }

    fn check_signature(key: &SoftKey, data: &[u8], signature_bytes: &[u8]) -> bool {
        let Some(public) = key.material.public_key() else {
            return false;
        };
        let algorithm: &dyn signature::VerificationAlgorithm = match public {
            PublicKey::Ed25519(_) => &signature::ED25519,
            PublicKey::EcdsaP256(_) => &signature::ECDSA_P256_SHA256_FIXED,
        };
        signature::UnparsedPublicKey::new(algorithm, public.as_bytes())
            .verify(data, signature_bytes)
            .is_ok()
    }

    fn compute_hmac(key: &SoftKey, data: &[u8]) -> Result<Vec<u8>, HsmError> {
        require(&key.info, KeySpec::HMAC_SHA256, expected::HMAC)?;
        let Material::Hmac(material) = &key.material else {
            unreachable!("hmac-sha256 specs hold HMAC material");
        };
        let hmac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &material[..]);
        Ok(ring::hmac::sign(&hmac_key, data).as_ref().to_vec())
    }
}

fn poisoned() -> HsmError {
    HsmError::Internal("key table lock poisoned by an earlier panic".to_owned())
}

/// AES-GCM nonce length of [`Hsm::encrypt_data`].
pub(crate) const DATA_NONCE_LEN: usize = 12;
/// AES-GCM tag length of [`Hsm::encrypt_data`].
pub(crate) const DATA_TAG_LEN: usize = 16;

fn unknown(label: &str) -> HsmError {
    HsmError::UnknownKey {
        label: label.to_owned(),
    }
}

fn wrong(info: &KeyInfo, expected: &'static str) -> HsmError {
    HsmError::WrongKeyType {
        label: info.label.clone(),
        expected,
        actual: info.spec.to_string(),
    }
}

fn check_data_len(data: &[u8]) -> Result<(), HsmError> {
    if data.len() > mac::MAX_MAC_INPUT_BYTES {
        return Err(HsmError::InvalidInput(format!(
            "{} bytes is more than the {} a MAC covers",
            data.len(),
            mac::MAX_MAC_INPUT_BYTES
        )));
    }
    Ok(())
}

/// The KEK spec a key of `spec` is wrapped under.
pub(crate) fn kek_spec_for(
    info_label: &str,
    spec: KeySpec,
) -> Result<(KeySpec, &'static str), HsmError> {
    match spec.key_type() {
        KeyType::Tdes2 => Ok((KeySpec::TDES_ZMK, expected::TDES_KEK)),
        KeyType::Aes256 | KeyType::HmacSha256 => Ok((KeySpec::AES_KEK, expected::AES_KEK)),
        KeyType::Ed25519 | KeyType::EcdsaP256 => Err(HsmError::WrongKeyType {
            label: info_label.to_owned(),
            expected: expected::WRAPPABLE,
            actual: spec.to_string(),
        }),
    }
}

#[async_trait]
impl Hsm for SoftwareHsm {
    fn backend_name(&self) -> &'static str {
        "software"
    }

    async fn generate_key(&self, label: &str, spec: KeySpec) -> Result<KeyInfo, HsmError> {
        let material = self.fresh_material(spec.key_type())?;
        self.insert(label, spec, &material, Insert::New)
    }

    async fn import_key(
        &self,
        label: &str,
        spec: KeySpec,
        material: ClearKey,
    ) -> Result<KeyInfo, HsmError> {
        check_clear_len(spec.key_type(), material.expose())?;
        self.insert(label, spec, material.expose(), Insert::New)
    }

    async fn rotate_key(&self, label: &str) -> Result<KeyInfo, HsmError> {
        let spec = self.with_key(&KeyRef::latest(label), |key| Ok(key.info.spec))?;
        let material = self.fresh_material(spec.key_type())?;
        self.insert(label, spec, &material, Insert::Next)
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>, HsmError> {
        let keys = self.keys.read().map_err(|_| poisoned())?;
        Ok(keys
            .values()
            .flatten()
            .map(|key| key.info.clone())
            .collect())
    }

    async fn key_info(&self, key: &KeyRef) -> Result<KeyInfo, HsmError> {
        self.with_key(key, |found| Ok(found.info.clone()))
    }

    async fn mac_generate(
        &self,
        key: &KeyRef,
        algorithm: MacAlgorithm,
        data: &[u8],
    ) -> Result<Tag, HsmError> {
        check_data_len(data)?;
        self.with_key(key, |found| {
            Ok(Tag {
                key_version: found.info.version,
                bytes: Self::compute_mac(found, algorithm, data)?,
            })
        })
    }

    async fn mac_verify(
        &self,
        key: &KeyRef,
        algorithm: MacAlgorithm,
        data: &[u8],
        mac: &[u8],
    ) -> Result<u32, HsmError> {
        check_data_len(data)?;
        let (wanted, expected) = mac_spec(algorithm);
        let matched = self.verify_any(key, wanted, expected, |candidate| {
            Self::compute_mac(candidate, algorithm, data)
                .is_ok_and(|computed| mac::mac_matches(&computed, mac))
        })?;
        matched.ok_or_else(|| HsmError::MacMismatch {
            label: key.label().to_owned(),
        })
    }

    async fn translate_pin(&self, request: PinTranslation<'_>) -> Result<Vec<u8>, HsmError> {
        let random_fill = *self.random::<8>()?;
        let pan_digits = request.pan.digits();
        let pin = self.with_key(&request.source_key, |source| {
            let (wanted, expected) = pin_spec(request.source_format);
            require(&source.info, wanted, expected)?;
            let decoded = match &source.material {
                Material::Tdes(key) => pin_block::decipher(
                    request.source_format,
                    &mut TdesPinCipher(key),
                    pan_digits,
                    request.pin_block,
                ),
                Material::Aes(key) => pin_block::decipher(
                    request.source_format,
                    &mut AesPinCipher(key),
                    pan_digits,
                    request.pin_block,
                ),
                _ => unreachable!("PIN specs hold TDES or AES material"),
            }?;
            decoded.ok_or_else(|| HsmError::PinBlockInvalid {
                label: source.info.label.clone(),
            })
        })?;
        self.with_key(&request.destination_key, |destination| {
            let (wanted, expected) = pin_spec(request.destination_format);
            require(&destination.info, wanted, expected)?;
            match &destination.material {
                Material::Tdes(key) => pin_block::encipher(
                    request.destination_format,
                    &mut TdesPinCipher(key),
                    pan_digits,
                    &pin,
                    random_fill,
                ),
                Material::Aes(key) => pin_block::encipher(
                    request.destination_format,
                    &mut AesPinCipher(key),
                    pan_digits,
                    &pin,
                    random_fill,
                ),
                _ => unreachable!("PIN specs hold TDES or AES material"),
            }
        })
    }

    async fn sign(&self, key: &KeyRef, data: &[u8]) -> Result<Tag, HsmError> {
        self.with_key(key, |found| {
            Ok(Tag {
                key_version: found.info.version,
                bytes: self.compute_signature(found, data)?,
            })
        })
    }

    async fn verify(&self, key: &KeyRef, data: &[u8], signature: &[u8]) -> Result<u32, HsmError> {
        let spec = self.with_key(&KeyRef::latest(key.label()), |found| Ok(found.info.spec))?;
        if spec.key_type() != KeyType::Ed25519 && spec.key_type() != KeyType::EcdsaP256 {
            return Err(HsmError::WrongKeyType {
                label: key.label().to_owned(),
                expected: expected::SIGN,
                actual: spec.to_string(),
            });
        }
        let matched = self.verify_any(key, spec, expected::SIGN, |candidate| {
            Self::check_signature(candidate, data, signature)
        })?;
        matched.ok_or_else(|| HsmError::SignatureMismatch {
            label: key.label().to_owned(),
        })
    }

    async fn public_key(&self, key: &KeyRef) -> Result<PublicKey, HsmError> {
        self.with_key(key, |found| {
            found
                .material
                .public_key()
                .ok_or_else(|| wrong(&found.info, expected::SIGN))
        })
    }

    async fn hmac(&self, key: &KeyRef, data: &[u8]) -> Result<Tag, HsmError> {
        self.with_key(key, |found| {
            Ok(Tag {
                key_version: found.info.version,
                bytes: Self::compute_hmac(found, data)?,
            })
        })
    }

    async fn encrypt_data(&self, key: &KeyRef, data: &[u8], aad: &[u8]) -> Result<Tag, HsmError> {
        use aes_gcm::aead::{Aead, KeyInit, Payload};
        self.with_key(key, |found| {
            require(&found.info, KeySpec::AES_DATA, expected::AES_DATA)?;
            let Material::Aes(material) = &found.material else {
                return Err(wrong(&found.info, expected::AES_DATA));
            };
            let mut nonce = [0_u8; DATA_NONCE_LEN];
            SystemRandom::new()
                .fill(&mut nonce)
                .map_err(|_| HsmError::Internal("no randomness for a nonce".to_owned()))?;
            let cipher = aes_gcm::Aes256Gcm::new_from_slice(&material[..])
                .map_err(|_| HsmError::Internal("AES-256-GCM key length".to_owned()))?;
            let sealed = cipher
                .encrypt(
                    aes_gcm::Nonce::from_slice(&nonce),
                    Payload { msg: data, aad },
                )
                .map_err(|_| HsmError::Internal("AES-256-GCM encryption failed".to_owned()))?;
            let mut bytes = nonce.to_vec();
            bytes.extend_from_slice(&sealed);
            Ok(Tag {
                key_version: found.info.version,
                bytes,
            })
        })
    }

    async fn decrypt_data(
        &self,
        key: &KeyRef,
        sealed: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        use aes_gcm::aead::{Aead, KeyInit, Payload};
        self.with_key(key, |found| {
            require(&found.info, KeySpec::AES_DATA, expected::AES_DATA)?;
            let Material::Aes(material) = &found.material else {
                return Err(wrong(&found.info, expected::AES_DATA));
            };
            if sealed.len() < DATA_NONCE_LEN + DATA_TAG_LEN {
                return Err(HsmError::InvalidInput(
                    "sealed data is shorter than a nonce and a tag".to_owned(),
                ));
            }
            let (nonce, body) = sealed.split_at(DATA_NONCE_LEN);
            let cipher = aes_gcm::Aes256Gcm::new_from_slice(&material[..])
                .map_err(|_| HsmError::Internal("AES-256-GCM key length".to_owned()))?;
            cipher
                .decrypt(
                    aes_gcm::Nonce::from_slice(nonce),
                    Payload { msg: body, aad },
                )
                .map(Zeroizing::new)
                .map_err(|_| {
                    HsmError::InvalidInput(
                        "sealed data does not authenticate under this key".to_owned(),
                    )
                })
        })
    }

    async fn wrap_key(&self, key: &KeyRef, kek: &KeyRef) -> Result<WrappedKey, HsmError> {
        if key.label() == kek.label() {
            return Err(HsmError::InvalidInput(
                "a key cannot be wrapped under itself".to_owned(),
            ));
        }
        self.with_key(key, |target| {
            let (wanted, expected) = kek_spec_for(&target.info.label, target.info.spec)?;
            self.with_key(kek, |wrapping| {
                require(&wrapping.info, wanted, expected)?;
                let ciphertext = match &wrapping.material {
                    Material::Tdes(kek_material) => {
                        wrap::tdes_ecb_encrypt(kek_material, target.material.bytes())
                    }
                    Material::Aes(kek_material) => {
                        wrap::aes_key_wrap(kek_material, target.material.bytes())
                    }
                    _ => unreachable!("KEK specs hold TDES or AES material"),
                };
                Ok(WrappedKey {
                    spec: target.info.spec,
                    kcv: target.info.kcv,
                    kek_kcv: wrapping.info.kcv,
                    ciphertext,
                })
            })
        })
    }

    async fn unwrap_key(
        &self,
        label: &str,
        wrapped: &WrappedKey,
        kek: &KeyRef,
    ) -> Result<KeyInfo, HsmError> {
        validate_label(label)?;
        let (wanted, expected) = kek_spec_for(label, wrapped.spec)?;
        let material = self.with_key(kek, |wrapping| {
            require(&wrapping.info, wanted, expected)?;
            if wrapping.info.kcv != wrapped.kek_kcv {
                return Err(HsmError::KcvMismatch {
                    expected: wrapped.kek_kcv.to_string(),
                    actual: wrapping.info.kcv.to_string(),
                });
            }
            match &wrapping.material {
                Material::Tdes(kek_material) => {
                    if wrapped.ciphertext.len() != 16 {
                        return Err(HsmError::InvalidInput(
                            "a TDES key wrapped under a ZMK is 16 bytes".to_owned(),
                        ));
                    }
                    Ok(wrap::tdes_ecb_decrypt(kek_material, &wrapped.ciphertext))
                }
                Material::Aes(kek_material) => {
                    wrap::aes_key_unwrap(kek_material, &wrapped.ciphertext).ok_or_else(|| {
                        HsmError::UnwrapFailed {
                            kek_label: wrapping.info.label.clone(),
                        }
                    })
                }
                _ => unreachable!("KEK specs hold TDES or AES material"),
            }
        })?;
        check_clear_len(wrapped.spec.key_type(), &material)?;
        let computed = Material::from_bytes(wrapped.spec.key_type(), &material)?.kcv();
        if computed != wrapped.kcv {
            return Err(HsmError::KcvMismatch {
                expected: wrapped.kcv.to_string(),
                actual: computed.to_string(),
            });
        }
        self.insert(label, wrapped.spec, &material, Insert::NewOrNext)
    }
}
