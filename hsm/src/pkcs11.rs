//! The PKCS#11 HSM: keys are objects in a token reached through a PKCS#11
//! module (`SoftHSM2` in tests, a network HSM's client library in production).
//!
//! Objects: each key version is one secret or private key object with
//! `CKA_LABEL` = the posgate label and `CKA_ID` =
//! `v{version}|{part}|{type}|{usage}|{kcv}|{created}`. Parts: `key` (the key
//! itself), `k1`/`k2` (the DES halves of a TDES key: the retail MAC needs
//! single-DES CBC under K1, and ZMK export wraps each half), `pub` (the public
//! half of a signing key).
//!
//! What this backend guarantees, and what it does not (generic PKCS#11 has no
//! payment commands):
//! - AES, HMAC, Ed25519 and ECDSA keys generated here never leave the token
//!   in clear; signing keys are non-extractable, AES data keys and HMAC keys
//!   are extractable only wrapped (`CKA_SENSITIVE`), for export under a KEK.
//! - The retail MAC is composed from DES-CBC under the K1 object and one
//!   DES3-ECB under the K1K2 object; both are sensitive token objects.
//! - PIN translation decrypts the block with the source key and re-encrypts
//!   it with the destination key: the clear PIN passes through posgate's
//!   memory (a zeroizing buffer, for microseconds). A payment HSM's native
//!   translate command (e.g. payShield `CA`/`CC`) avoids this.
//! - TDES key material passes through posgate's memory (zeroized) when a
//!   TDES key is generated, imported or unwrapped: `SoftHSM2` offers neither
//!   DES3 unwrap nor a way to split a DES2 object into the DES halves.
//! - Blocking PKCS#11 calls run on tokio's blocking pool, so a slow network
//!   HSM never stalls the async workers.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CryptokiError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::error::HsmError;
use crate::hsm::{Hsm, PinTranslation, Tag, WrappedKey, expected, mac_spec, pin_spec, require};
use crate::keys::{
    ClearKey, Kcv, KeyInfo, KeyRef, KeySpec, KeyType, KeyUsage, MAX_VERSIONS, PublicKey,
    check_clear_len, validate_label,
};
use crate::mac::{self, MacAlgorithm};
use crate::pan::Pan;
use crate::pin_block::{self, PinBlockFormat, PinCipher};
use crate::secret::Secret;
use crate::software::{DATA_NONCE_LEN, DATA_TAG_LEN, kek_spec_for};

/// Environment variable naming the PKCS#11 module (shared library) path.
pub const MODULE_ENV: &str = "POSGATE_PKCS11_MODULE";
/// Environment variable naming the token label.
pub const TOKEN_ENV: &str = "POSGATE_PKCS11_TOKEN";
/// Environment variable holding the user PIN.
pub const PIN_ENV: &str = "POSGATE_PKCS11_PIN";
/// Environment variable naming a file holding the user PIN.
pub const PIN_FILE_ENV: &str = "POSGATE_PKCS11_PIN_FILE";

/// Sessions kept open for reuse. Two per core of the gateway host is plenty;
/// more would only hold token resources idle.
const MAX_POOLED_SESSIONS: usize = 8;
/// The AES-GCM tag of [`Hsm::encrypt_data`], in bits (`CK_GCM_PARAMS.ulTagBits`).
const GCM_TAG_BITS: u64 = 8 * DATA_TAG_LEN as u64;

/// DER of OID 1.3.101.112 (Ed25519), as `CKA_EC_PARAMS`.
const ED25519_PARAMS: &[u8] = &[0x06, 0x03, 0x2B, 0x65, 0x70];
/// DER of OID 1.2.840.10045.3.1.7 (NIST P-256), as `CKA_EC_PARAMS`.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];

/// Where the token is and how to log in.
#[derive(Debug)]
pub struct Pkcs11Config {
    /// Path of the vendor's PKCS#11 module, e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module_path: PathBuf,
    /// Label of the token (partition) holding posgate's keys.
    pub token_label: String,
    /// The crypto-user PIN.
    pub user_pin: Secret<String>,
}

impl Pkcs11Config {
    /// Reads [`MODULE_ENV`], [`TOKEN_ENV`] and the PIN from [`PIN_ENV`] or
    /// the file named by [`PIN_FILE_ENV`].
    pub fn from_env() -> Result<Self, HsmError> {
        let required = |name: &str| {
            std::env::var(name).map_err(|_| {
                HsmError::Pkcs11Config(format!("environment variable {name} is not set"))
            })
        };
        let user_pin = match std::env::var(PIN_FILE_ENV) {
            Ok(path) => Zeroizing::new(
                std::fs::read_to_string(&path)
                    .map_err(|error| {
                        HsmError::Pkcs11Config(format!("cannot read PIN file {path}: {error}"))
                    })?
                    .trim_end()
                    .to_owned(),
            ),
            Err(_) => Zeroizing::new(required(PIN_ENV)?),
        };
        Ok(Self {
            module_path: PathBuf::from(required(MODULE_ENV)?),
            token_label: required(TOKEN_ENV)?,
            user_pin: user_pin.into(),
        })
    }
}

/// One key version's token objects.
#[derive(Clone)]
struct P11Key {
    info: KeyInfo,
    key: ObjectHandle,
    k1: Option<ObjectHandle>,
    k2: Option<ObjectHandle>,
    public: Option<PublicKey>,
}

struct Inner {
    context: Pkcs11,
    slot: Slot,
    token_label: String,
    pool: Mutex<Vec<Session>>,
    /// Held open for the life of the HSM: PKCS#11 logs the application out
    /// when its last session closes.
    _login_session: Mutex<Session>,
    /// Key versions by label, filled from the token on first use.
    cache: Mutex<HashMap<String, Vec<P11Key>>>,
}

/// The PKCS#11 HSM. Clones share one module, login and session pool.
#[derive(Clone)]
pub struct Pkcs11Hsm {
    inner: Arc<Inner>,
}

impl fmt::Debug for Pkcs11Hsm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Hsm")
            .field("token", &self.inner.token_label)
            .field("slot", &self.inner.slot.id())
            .finish_non_exhaustive()
    }
}

impl Pkcs11Hsm {
    /// Loads the module, finds the token by label and logs in as user.
    ///
    /// A module already initialized in this process (by another `Pkcs11Hsm`)
    /// is accepted.
    pub fn connect(config: &Pkcs11Config) -> Result<Self, HsmError> {
        let context = Pkcs11::new(&config.module_path).map_err(|error| {
            HsmError::Pkcs11Config(format!(
                "cannot load module {}: {error}",
                config.module_path.display()
            ))
        })?;
        match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CryptokiError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(source) => return Err(HsmError::pkcs11("C_Initialize")(source)),
        }
        let slot = context
            .get_slots_with_token()
            .map_err(HsmError::pkcs11("C_GetSlotList"))?
            .into_iter()
            .find(|slot| {
                context
                    .get_token_info(*slot)
                    .is_ok_and(|info| info.label().trim_end() == config.token_label)
            })
            .ok_or_else(|| {
                HsmError::Pkcs11Config(format!("no token labelled {:?}", config.token_label))
            })?;
        let login_session = context
            .open_rw_session(slot)
            .map_err(HsmError::pkcs11("C_OpenSession"))?;
        let pin = AuthPin::from(config.user_pin.expose().as_str().to_owned());
        match login_session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CryptokiError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(source) => return Err(HsmError::pkcs11("C_Login")(source)),
        }
        Ok(Self {
            inner: Arc::new(Inner {
                context,
                slot,
                token_label: config.token_label.clone(),
                pool: Mutex::new(Vec::new()),
                _login_session: Mutex::new(login_session),
                cache: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Runs a blocking token operation on tokio's blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        operation: impl FnOnce(&Inner) -> Result<T, HsmError> + Send + 'static,
    ) -> Result<T, HsmError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || operation(&inner))
            .await
            .map_err(|error| HsmError::Internal(format!("PKCS#11 worker failed: {error}")))?
    }
}

fn poisoned() -> HsmError {
    HsmError::Internal("PKCS#11 lock poisoned by an earlier panic".to_owned())
}

fn unknown(label: &str) -> HsmError {
    HsmError::UnknownKey {
        label: label.to_owned(),
    }
}

fn parse_public_point(raw: &[u8]) -> Vec<u8> {
    // CKA_EC_POINT is a DER OCTET STRING; some modules return the bare point.
    match raw {
        [0x04, len, rest @ ..] if usize::from(*len) == rest.len() => rest.to_vec(),
        _ => raw.to_vec(),
    }
}

fn der_octet_string(bytes: &[u8]) -> Vec<u8> {
    let mut der = vec![
        0x04,
        u8::try_from(bytes.len()).expect("EC points are short"),
    ];
    der.extend_from_slice(bytes);
    der
}

struct Metadata {
    version: u32,
    part: String,
    info_spec: KeySpec,
    kcv: Kcv,
    created_at_unix_s: i64,
}

fn encode_id(info: &KeyInfo, part: &str) -> Vec<u8> {
    format!(
        "v{}|{part}|{}|{}|{}|{}",
        info.version,
        info.spec.key_type(),
        info.spec.usage(),
        info.kcv,
        info.created_at_unix_s
    )
    .into_bytes()
}

fn decode_id(id: &[u8]) -> Option<Metadata> {
    let text = std::str::from_utf8(id).ok()?;
    let fields: Vec<&str> = text.split('|').collect();
    let [version, part, key_type, usage, kcv, created] = fields.as_slice() else {
        return None;
    };
    Some(Metadata {
        version: version.strip_prefix('v')?.parse().ok()?,
        part: (*part).to_owned(),
        info_spec: KeySpec::new(KeyType::parse(key_type).ok()?, KeyUsage::parse(usage).ok()?)
            .ok()?,
        kcv: Kcv::parse(kcv).ok()?,
        created_at_unix_s: created.parse().ok()?,
    })
}

/// Token-side ciphers for PIN blocks.
struct TokenPinCipher<'a> {
    session: &'a Session,
    key: ObjectHandle,
    mechanism: Mechanism<'static>,
}

impl PinCipher for TokenPinCipher<'_> {
    fn encrypt_block(&mut self, block: &mut [u8]) -> Result<(), HsmError> {
        let out = self
            .session
            .encrypt(&self.mechanism, self.key, block)
            .map_err(HsmError::pkcs11("C_Encrypt"))?;
        block.copy_from_slice(&out);
        Ok(())
    }

    fn decrypt_block(&mut self, block: &mut [u8]) -> Result<(), HsmError> {
        let out = Zeroizing::new(
            self.session
                .decrypt(&self.mechanism, self.key, block)
                .map_err(HsmError::pkcs11("C_Decrypt"))?,
        );
        block.copy_from_slice(&out);
        Ok(())
    }
}

impl Inner {
    fn with_session<T>(
        &self,
        operation: impl FnOnce(&Session) -> Result<T, HsmError>,
    ) -> Result<T, HsmError> {
        let pooled = self.pool.lock().map_err(|_| poisoned())?.pop();
        let session = match pooled {
            Some(session) => session,
            None => self
                .context
                .open_rw_session(self.slot)
                .map_err(HsmError::pkcs11("C_OpenSession"))?,
        };
        let result = operation(&session);
        let mut pool = self.pool.lock().map_err(|_| poisoned())?;
        if pool.len() < MAX_POOLED_SESSIONS {
            pool.push(session);
        }
        result
    }

    /// All versions of `label`, oldest first, from the cache or the token.
    fn versions(&self, session: &Session, label: &str) -> Result<Vec<P11Key>, HsmError> {
        if let Some(cached) = self.cache.lock().map_err(|_| poisoned())?.get(label) {
            return Ok(cached.clone());
        }
        let versions = Self::load_versions(session, label)?;
        if !versions.is_empty() {
            self.cache
                .lock()
                .map_err(|_| poisoned())?
                .insert(label.to_owned(), versions.clone());
        }
        Ok(versions)
    }

    fn load_versions(session: &Session, label: &str) -> Result<Vec<P11Key>, HsmError> {
        let handles = session
            .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
            .map_err(HsmError::pkcs11("C_FindObjects"))?;
        let mut by_version: std::collections::BTreeMap<u32, P11Key> =
            std::collections::BTreeMap::new();
        let mut parts = Vec::new();
        for handle in handles {
            let attributes = session
                .get_attributes(handle, &[AttributeType::Id])
                .map_err(HsmError::pkcs11("C_GetAttributeValue"))?;
            let Some(metadata) = attributes.iter().find_map(|attribute| match attribute {
                Attribute::Id(id) => decode_id(id),
                _ => None,
            }) else {
                continue;
            };
            parts.push((handle, metadata));
        }
        for (handle, metadata) in &parts {
            if metadata.part == "key" {
                by_version.insert(
                    metadata.version,
                    P11Key {
                        info: KeyInfo {
                            label: label.to_owned(),
                            spec: metadata.info_spec,
                            version: metadata.version,
                            kcv: metadata.kcv,
                            created_at_unix_s: metadata.created_at_unix_s,
                        },
                        key: *handle,
                        k1: None,
                        k2: None,
                        public: None,
                    },
                );
            }
        }
        for (handle, metadata) in parts {
            let Some(entry) = by_version.get_mut(&metadata.version) else {
                continue;
            };
            match metadata.part.as_str() {
                "k1" => entry.k1 = Some(handle),
                "k2" => entry.k2 = Some(handle),
                "pub" => {
                    entry.public =
                        Some(read_public(session, handle, metadata.info_spec.key_type())?);
                }
                _ => {}
            }
        }
        Ok(by_version.into_values().collect())
    }

    fn resolve(&self, session: &Session, key: &KeyRef) -> Result<P11Key, HsmError> {
        let versions = self.versions(session, key.label())?;
        let found = match key.pinned_version() {
            None => versions.last(),
            Some(version) => versions
                .iter()
                .find(|candidate| candidate.info.version == version),
        };
        match (found, versions.is_empty()) {
            (Some(found), _) => Ok(found.clone()),
            (None, true) => Err(unknown(key.label())),
            (None, false) => Err(HsmError::UnknownVersion {
                label: key.label().to_owned(),
                version: key.pinned_version().unwrap_or_default(),
            }),
        }
    }

    /// The versions a verification tries: the pinned one, or all, newest first.
    fn candidates(&self, session: &Session, key: &KeyRef) -> Result<Vec<P11Key>, HsmError> {
        let mut versions = self.versions(session, key.label())?;
        if versions.is_empty() {
            return Err(unknown(key.label()));
        }
        versions.reverse();
        if let Some(version) = key.pinned_version() {
            versions.retain(|candidate| candidate.info.version == version);
            if versions.is_empty() {
                return Err(HsmError::UnknownVersion {
                    label: key.label().to_owned(),
                    version,
                });
            }
        }
        versions.truncate(MAX_VERSIONS as usize);
        Ok(versions)
    }

    fn next_version(
        session: &Session,
        label: &str,
        spec: KeySpec,
        allow_new: bool,
        allow_next: bool,
    ) -> Result<u32, HsmError> {
        validate_label(label)?;
        let versions = Self::load_versions(session, label)?;
        match versions.last() {
            None if allow_new => Ok(1),
            None => Err(unknown(label)),
            Some(_) if !allow_next => Err(HsmError::KeyExists {
                label: label.to_owned(),
            }),
            Some(latest) if latest.info.spec != spec => Err(HsmError::WrongKeyType {
                label: label.to_owned(),
                expected: "the spec of the key's existing versions",
                actual: spec.to_string(),
            }),
            Some(latest) => Ok(latest.info.version + 1),
        }
    }

    fn remember(&self, session: &Session, label: &str) -> Result<KeyInfo, HsmError> {
        let versions = Self::load_versions(session, label)?;
        let newest = versions
            .last()
            .map(|key| key.info.clone())
            .ok_or_else(|| unknown(label))?;
        self.cache
            .lock()
            .map_err(|_| poisoned())?
            .insert(label.to_owned(), versions);
        Ok(newest)
    }

    fn base_template(info: &KeyInfo, part: &str, class: ObjectClass) -> Vec<Attribute> {
        vec![
            Attribute::Class(class),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Label(info.label.as_bytes().to_vec()),
            Attribute::Id(encode_id(info, part)),
        ]
    }

    /// Usage attributes for a symmetric key object, by spec.
    fn usage_attributes(spec: KeySpec) -> Vec<Attribute> {
        let (sign, crypt, wrap) = match spec.usage() {
            KeyUsage::Mac | KeyUsage::Hmac | KeyUsage::Sign => (true, false, false),
            KeyUsage::Pin | KeyUsage::DataEncryption => (false, true, false),
            KeyUsage::KeyEncryption => (false, false, true),
        };
        // The retail MAC's final step is a DES3-ECB encryption, not a C_Sign.
        let tdes_mac = spec == KeySpec::TDES_MAC;
        // A TDES ZMK must decrypt to import keys on tokens without DES3 unwrap (SoftHSM2).
        let tdes_kek = spec == KeySpec::TDES_ZMK;
        vec![
            Attribute::Sign(sign && !tdes_mac),
            Attribute::Verify(sign && !tdes_mac),
            Attribute::Encrypt(crypt || tdes_mac),
            Attribute::Decrypt(crypt || tdes_kek),
            Attribute::Wrap(wrap),
            Attribute::Unwrap(wrap && !tdes_kek),
            Attribute::Derive(false),
        ]
    }

    /// Creates the objects of a key version from clear material (TDES, and
    /// clear imports of AES, HMAC and Ed25519 keys).
    fn create_from_clear(
        session: &Session,
        info: &KeyInfo,
        material: &[u8],
    ) -> Result<(), HsmError> {
        let spec = info.spec;
        let sensitive = [Attribute::Sensitive(true)];
        match spec.key_type() {
            KeyType::Tdes2 => {
                let mut main = Self::base_template(info, "key", ObjectClass::SECRET_KEY);
                main.extend([
                    Attribute::KeyType(CkKeyType::DES2),
                    Attribute::Value(material.to_vec()),
                    Attribute::Extractable(false),
                ]);
                main.extend(sensitive.clone());
                main.extend(Self::usage_attributes(spec));
                session
                    .create_object(&main)
                    .map_err(HsmError::pkcs11("C_CreateObject"))?;
                for (part, half) in [("k1", &material[..8]), ("k2", &material[8..])] {
                    // Each half as a DES2 object `K || K`, which is single DES under K:
                    // OpenSSL 3 builds of SoftHSM2 refuse single-DES mechanisms at run time.
                    let mut doubled = Zeroizing::new(half.to_vec());
                    doubled.extend_from_slice(half);
                    let mut template = Self::base_template(info, part, ObjectClass::SECRET_KEY);
                    template.extend([
                        Attribute::KeyType(CkKeyType::DES2),
                        Attribute::Value(doubled.to_vec()),
                        Attribute::Extractable(true),
                        Attribute::Sensitive(true),
                        Attribute::Encrypt(part == "k1" && spec == KeySpec::TDES_MAC),
                        Attribute::Decrypt(false),
                        Attribute::Sign(false),
                        Attribute::Verify(false),
                        Attribute::Wrap(false),
                        Attribute::Unwrap(false),
                    ]);
                    session
                        .create_object(&template)
                        .map_err(HsmError::pkcs11("C_CreateObject"))?;
                }
            }
            KeyType::Aes256 | KeyType::HmacSha256 => {
                let mut template = Self::base_template(info, "key", ObjectClass::SECRET_KEY);
                let key_type = if spec.key_type() == KeyType::Aes256 {
                    CkKeyType::AES
                } else {
                    CkKeyType::GENERIC_SECRET
                };
                template.extend([
                    Attribute::KeyType(key_type),
                    Attribute::Value(material.to_vec()),
                    Attribute::Extractable(spec.usage() != KeyUsage::KeyEncryption),
                ]);
                template.extend(sensitive);
                template.extend(Self::usage_attributes(spec));
                session
                    .create_object(&template)
                    .map_err(HsmError::pkcs11("C_CreateObject"))?;
            }
            KeyType::Ed25519 => {
                let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(material).map_err(
                    |error| HsmError::InvalidInput(format!("Ed25519 seed rejected: {error}")),
                )?;
                let public = ring::signature::KeyPair::public_key(&pair)
                    .as_ref()
                    .to_vec();
                let mut private = Self::base_template(info, "key", ObjectClass::PRIVATE_KEY);
                private.extend([
                    Attribute::KeyType(CkKeyType::EC_EDWARDS),
                    Attribute::EcParams(ED25519_PARAMS.to_vec()),
                    Attribute::Value(material.to_vec()),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Sign(true),
                ]);
                session
                    .create_object(&private)
                    .map_err(HsmError::pkcs11("C_CreateObject"))?;
                let mut public_template = Self::base_template(info, "pub", ObjectClass::PUBLIC_KEY);
                public_template[2] = Attribute::Private(false);
                public_template.extend([
                    Attribute::KeyType(CkKeyType::EC_EDWARDS),
                    Attribute::EcParams(ED25519_PARAMS.to_vec()),
                    Attribute::EcPoint(der_octet_string(&public)),
                    Attribute::Verify(true),
                ]);
                session
                    .create_object(&public_template)
                    .map_err(HsmError::pkcs11("C_CreateObject"))?;
            }
            KeyType::EcdsaP256 => {
                check_clear_len(KeyType::EcdsaP256, material)?;
            }
        }
        Ok(())
    }

    /// Generates a key version inside the token; returns its KCV.
    fn generate_in_token(
        session: &Session,
        label: &str,
        spec: KeySpec,
        version: u32,
    ) -> Result<KeyInfo, HsmError> {
        let created_at_unix_s = chrono::Utc::now().timestamp();
        let provisional = KeyInfo {
            label: label.to_owned(),
            spec,
            version,
            kcv: Kcv([0; 3]),
            created_at_unix_s,
        };
        match spec.key_type() {
            KeyType::Tdes2 => {
                let mut material = Zeroizing::new([0_u8; 16]);
                session
                    .generate_random_slice(&mut material[..])
                    .map_err(HsmError::pkcs11("C_GenerateRandom"))?;
                let info = KeyInfo {
                    kcv: tdes_kcv(&material),
                    ..provisional
                };
                Self::create_from_clear(session, &info, &material[..])?;
                Ok(info)
            }
            KeyType::Aes256 | KeyType::HmacSha256 => {
                // Generate under a temporary ID, read the token's check value, then label it.
                let (mechanism, key_type) = if spec.key_type() == KeyType::Aes256 {
                    (Mechanism::AesKeyGen, CkKeyType::AES)
                } else {
                    (Mechanism::GenericSecretKeyGen, CkKeyType::GENERIC_SECRET)
                };
                let mut template =
                    Self::base_template(&provisional, "new", ObjectClass::SECRET_KEY);
                template.extend([
                    Attribute::KeyType(key_type),
                    Attribute::ValueLen(32.into()),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(spec.usage() != KeyUsage::KeyEncryption),
                ]);
                template.extend(Self::usage_attributes(spec));
                let handle = session
                    .generate_key(&mechanism, &template)
                    .map_err(HsmError::pkcs11("C_GenerateKey"))?;
                let info = KeyInfo {
                    kcv: token_check_value(session, handle, spec)?,
                    ..provisional
                };
                session
                    .update_attributes(handle, &[Attribute::Id(encode_id(&info, "key"))])
                    .map_err(HsmError::pkcs11("C_SetAttributeValue"))?;
                Ok(info)
            }
            KeyType::Ed25519 | KeyType::EcdsaP256 => {
                let (mechanism, params, key_type) = if spec.key_type() == KeyType::Ed25519 {
                    (
                        Mechanism::EccEdwardsKeyPairGen,
                        ED25519_PARAMS,
                        CkKeyType::EC_EDWARDS,
                    )
                } else {
                    (Mechanism::EccKeyPairGen, P256_PARAMS, CkKeyType::EC)
                };
                let mut public_template =
                    Self::base_template(&provisional, "newpub", ObjectClass::PUBLIC_KEY);
                public_template[2] = Attribute::Private(false);
                public_template.extend([
                    Attribute::KeyType(key_type),
                    Attribute::EcParams(params.to_vec()),
                    Attribute::Verify(true),
                ]);
                let mut private_template =
                    Self::base_template(&provisional, "new", ObjectClass::PRIVATE_KEY);
                private_template.extend([
                    Attribute::KeyType(key_type),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Sign(true),
                ]);
                let (public_handle, private_handle) = session
                    .generate_key_pair(&mechanism, &public_template, &private_template)
                    .map_err(HsmError::pkcs11("C_GenerateKeyPair"))?;
                let public = read_public(session, public_handle, spec.key_type())?;
                let info = KeyInfo {
                    kcv: public.kcv(),
                    ..provisional
                };
                session
                    .update_attributes(public_handle, &[Attribute::Id(encode_id(&info, "pub"))])
                    .map_err(HsmError::pkcs11("C_SetAttributeValue"))?;
                session
                    .update_attributes(private_handle, &[Attribute::Id(encode_id(&info, "key"))])
                    .map_err(HsmError::pkcs11("C_SetAttributeValue"))?;
                Ok(info)
            }
        }
    }

    fn compute_mac(
        session: &Session,
        key: &P11Key,
        algorithm: MacAlgorithm,
        data: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let (wanted, expected) = mac_spec(algorithm);
        require(&key.info, wanted, expected)?;
        match algorithm {
            MacAlgorithm::RetailMac(padding) => {
                let padded = mac::pad(data, padding);
                let (head, mut last) = mac::split_last_block(&padded);
                if !head.is_empty() {
                    let k1 = key.k1.ok_or_else(|| {
                        HsmError::Internal(format!("{}: K1 object missing", key.info.label))
                    })?;
                    let chained = session
                        .encrypt(&Mechanism::Des3Cbc([0; 8]), k1, head)
                        .map_err(HsmError::pkcs11("C_Encrypt(DES3-CBC under K1 K1)"))?;
                    for (byte, chain_byte) in last.iter_mut().zip(&chained[chained.len() - 8..]) {
                        *byte ^= chain_byte;
                    }
                }
                session
                    .encrypt(&Mechanism::Des3Ecb, key.key, &last)
                    .map_err(HsmError::pkcs11("C_Encrypt(DES3-ECB)"))
            }
            MacAlgorithm::AesCmac => session
                .sign(&Mechanism::AesCMac, key.key, data)
                .map_err(HsmError::pkcs11("C_Sign(AES-CMAC)")),
        }
    }

    fn pin_cipher<'a>(
        session: &'a Session,
        key: &P11Key,
        format: PinBlockFormat,
    ) -> Result<TokenPinCipher<'a>, HsmError> {
        let (wanted, expected) = pin_spec(format);
        require(&key.info, wanted, expected)?;
        let mechanism = match format {
            PinBlockFormat::Iso0 => Mechanism::Des3Ecb,
            PinBlockFormat::Iso4 => Mechanism::AesEcb,
        };
        Ok(TokenPinCipher {
            session,
            key: key.key,
            mechanism,
        })
    }

    fn translate_pin(&self, request: &OwnedTranslation) -> Result<Vec<u8>, HsmError> {
        self.with_session(|session| {
            let source = self.resolve(session, &request.source_key)?;
            let destination = self.resolve(session, &request.destination_key)?;
            let mut source_cipher = Self::pin_cipher(session, &source, request.source_format)?;
            let mut destination_cipher =
                Self::pin_cipher(session, &destination, request.destination_format)?;
            let pin = pin_block::decipher(
                request.source_format,
                &mut source_cipher,
                request.pan.digits(),
                &request.pin_block,
            )?
            .ok_or_else(|| HsmError::PinBlockInvalid {
                label: source.info.label.clone(),
            })?;
            let mut random_fill = [0_u8; 8];
            session
                .generate_random_slice(&mut random_fill)
                .map_err(HsmError::pkcs11("C_GenerateRandom"))?;
            pin_block::encipher(
                request.destination_format,
                &mut destination_cipher,
                request.pan.digits(),
                &pin,
                random_fill,
            )
        })
    }

    fn sign(session: &Session, key: &P11Key, data: &[u8]) -> Result<Vec<u8>, HsmError> {
        match key.info.spec.key_type() {
            KeyType::Ed25519 => session
                .sign(
                    &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                    key.key,
                    data,
                )
                .map_err(HsmError::pkcs11("C_Sign(EdDSA)")),
            KeyType::EcdsaP256 => {
                let digest = ring::digest::digest(&ring::digest::SHA256, data);
                session
                    .sign(&Mechanism::Ecdsa, key.key, digest.as_ref())
                    .map_err(HsmError::pkcs11("C_Sign(ECDSA)"))
            }
            _ => Err(HsmError::WrongKeyType {
                label: key.info.label.clone(),
                expected: expected::SIGN,
                actual: key.info.spec.to_string(),
            }),
        }
    }

    fn wrap(session: &Session, target: &P11Key, kek: &P11Key) -> Result<WrappedKey, HsmError> {
        let (wanted, expected) = kek_spec_for(&target.info.label, target.info.spec)?;
        require(&kek.info, wanted, expected)?;
        let ciphertext = if target.info.spec.key_type() == KeyType::Tdes2 {
            // Each DES half alone, so the result is the classic ECB layout.
            let mut out = Vec::with_capacity(16);
            for half in [target.k1, target.k2] {
                let half = half.ok_or_else(|| {
                    HsmError::Internal(format!("{}: DES half missing", target.info.label))
                })?;
                // The half is held as `K || K`: the first CBC block is E(ZMK, K).
                let wrapped_half = session
                    .wrap_key(&Mechanism::Des3Cbc([0; 8]), kek.key, half)
                    .map_err(|error| match error {
                        CryptokiError::Pkcs11(RvError::MechanismInvalid, _) => HsmError::Unsupported {
                            backend: "pkcs11",
                            operation: "TDES key export under a ZMK",
                            reason: "the token cannot wrap DES keys under DES3 (SoftHSM2 2.6 cannot); \
                                     a payment HSM's export command does this",
                        },
                        other => HsmError::pkcs11("C_WrapKey(DES3-CBC)")(other),
                    })?;
                out.extend_from_slice(&wrapped_half[..8]);
            }
            out
        } else {
            session
                .wrap_key(&Mechanism::AesKeyWrap, kek.key, target.key)
                .map_err(HsmError::pkcs11("C_WrapKey(AES-KEY-WRAP)"))?
        };
        Ok(WrappedKey {
            spec: target.info.spec,
            kcv: target.info.kcv,
            kek_kcv: kek.info.kcv,
            ciphertext,
        })
    }

    fn unwrap(
        &self,
        session: &Session,
        label: &str,
        wrapped: &WrappedKey,
        kek: &P11Key,
    ) -> Result<KeyInfo, HsmError> {
        let (wanted, expected) = kek_spec_for(label, wrapped.spec)?;
        require(&kek.info, wanted, expected)?;
        if kek.info.kcv != wrapped.kek_kcv {
            return Err(HsmError::KcvMismatch {
                expected: wrapped.kek_kcv.to_string(),
                actual: kek.info.kcv.to_string(),
            });
        }
        let version = Self::next_version(session, label, wrapped.spec, true, true)?;
        let info = KeyInfo {
            label: label.to_owned(),
            spec: wrapped.spec,
            version,
            kcv: wrapped.kcv,
            created_at_unix_s: chrono::Utc::now().timestamp(),
        };
        if wrapped.spec.key_type() == KeyType::Tdes2 {
            if wrapped.ciphertext.len() != 16 {
                return Err(HsmError::InvalidInput(
                    "a TDES key wrapped under a ZMK is 16 bytes".to_owned(),
                ));
            }
            let material = Zeroizing::new(
                session
                    .decrypt(&Mechanism::Des3Ecb, kek.key, &wrapped.ciphertext)
                    .map_err(HsmError::pkcs11("C_Decrypt(DES3-ECB)"))?,
            );
            let computed = tdes_kcv(material[..].try_into().expect("16 bytes"));
            if computed != wrapped.kcv {
                return Err(HsmError::KcvMismatch {
                    expected: wrapped.kcv.to_string(),
                    actual: computed.to_string(),
                });
            }
            Self::create_from_clear(session, &info, &material)?;
        } else {
            let key_type = if wrapped.spec.key_type() == KeyType::Aes256 {
                CkKeyType::AES
            } else {
                CkKeyType::GENERIC_SECRET
            };
            let mut template = Self::base_template(&info, "key", ObjectClass::SECRET_KEY);
            template.extend([
                Attribute::KeyType(key_type),
                Attribute::Sensitive(true),
                Attribute::Extractable(wrapped.spec.usage() != KeyUsage::KeyEncryption),
            ]);
            template.extend(Self::usage_attributes(wrapped.spec));
            let handle = session
                .unwrap_key(
                    &Mechanism::AesKeyWrap,
                    kek.key,
                    &wrapped.ciphertext,
                    &template,
                )
                .map_err(|error| match error {
                    CryptokiError::Pkcs11(
                        // SoftHSM2 reports a failed RFC 3394 integrity check as CKR_GENERAL_ERROR.
                        RvError::EncryptedDataInvalid
                        | RvError::WrappedKeyInvalid
                        | RvError::WrappedKeyLenRange
                        | RvError::EncryptedDataLenRange
                        | RvError::GeneralError,
                        _,
                    ) => HsmError::UnwrapFailed {
                        kek_label: kek.info.label.clone(),
                    },
                    other => HsmError::pkcs11("C_UnwrapKey(AES-KEY-WRAP)")(other),
                })?;
            let computed = token_check_value(session, handle, wrapped.spec)?;
            if computed != wrapped.kcv {
                session
                    .destroy_object(handle)
                    .map_err(HsmError::pkcs11("C_DestroyObject"))?;
                return Err(HsmError::KcvMismatch {
                    expected: wrapped.kcv.to_string(),
                    actual: computed.to_string(),
                });
            }
        }
        self.remember(session, label)
    }
}

fn tdes_kcv(material: &[u8; 16]) -> Kcv {
    let block = crate::wrap::tdes_ecb_encrypt(material, &[0; 8]);
    Kcv([block[0], block[1], block[2]])
}

/// Computes the KCV of a key made inside the token, without its value leaving:
/// `CKA_CHECK_VALUE` if the token reports it (`SoftHSM2` 2.6 does not); else
/// for AES an encryption of the zero block (enabling `CKA_ENCRYPT` for that
/// one call on keys that lack it), for HMAC keys `C_DigestKey` with SHA-1.
fn token_check_value(
    session: &Session,
    handle: ObjectHandle,
    spec: KeySpec,
) -> Result<Kcv, HsmError> {
    let reported = session
        .get_attributes(handle, &[AttributeType::CheckValue])
        .ok()
        .and_then(|attributes| {
            attributes.iter().find_map(|attribute| match attribute {
                Attribute::CheckValue(value) if value.len() >= 3 => {
                    Some(Kcv([value[0], value[1], value[2]]))
                }
                _ => None,
            })
        });
    if let Some(kcv) = reported {
        return Ok(kcv);
    }
    let value = if spec.key_type() == KeyType::Aes256 {
        let may_encrypt = matches!(spec.usage(), KeyUsage::Pin | KeyUsage::DataEncryption);
        if !may_encrypt {
            session
                .update_attributes(handle, &[Attribute::Encrypt(true)])
                .map_err(HsmError::pkcs11("C_SetAttributeValue(CKA_ENCRYPT)"))?;
        }
        let encrypted = session.encrypt(&Mechanism::AesEcb, handle, &[0; 16]);
        if !may_encrypt {
            session
                .update_attributes(handle, &[Attribute::Encrypt(false)])
                .map_err(HsmError::pkcs11("C_SetAttributeValue(CKA_ENCRYPT)"))?;
        }
        encrypted.map_err(HsmError::pkcs11("C_Encrypt(AES-ECB) for the KCV"))?
    } else {
        session
            .digest_init(&Mechanism::Sha1)
            .and_then(|()| session.digest_key(handle))
            .and_then(|()| session.digest_final())
            .map_err(HsmError::pkcs11("C_DigestKey(SHA-1) for the KCV"))?
    };
    Ok(Kcv([value[0], value[1], value[2]]))
}

fn read_public(
    session: &Session,
    handle: ObjectHandle,
    key_type: KeyType,
) -> Result<PublicKey, HsmError> {
    let attributes = session
        .get_attributes(handle, &[AttributeType::EcPoint])
        .map_err(HsmError::pkcs11("C_GetAttributeValue(CKA_EC_POINT)"))?;
    let raw = attributes
        .iter()
        .find_map(|attribute| match attribute {
            Attribute::EcPoint(point) => Some(parse_public_point(point)),
            _ => None,
        })
        .ok_or_else(|| HsmError::Internal("public key object has no CKA_EC_POINT".to_owned()))?;
    match key_type {
        KeyType::Ed25519 => raw
            .as_slice()
            .try_into()
            .map(PublicKey::Ed25519)
            .map_err(|_| HsmError::Internal("Ed25519 public key is not 32 bytes".to_owned())),
        _ => Ok(PublicKey::EcdsaP256(raw)),
    }
}

fn check_signature(public: &PublicKey, data: &[u8], signature: &[u8]) -> bool {
    let algorithm: &dyn ring::signature::VerificationAlgorithm = match public {
        PublicKey::Ed25519(_) => &ring::signature::ED25519,
        PublicKey::EcdsaP256(_) => &ring::signature::ECDSA_P256_SHA256_FIXED,
    };
    ring::signature::UnparsedPublicKey::new(algorithm, public.as_bytes())
        .verify(data, signature)
        .is_ok()
}

/// A [`PinTranslation`] owned, to move onto the blocking pool.
struct OwnedTranslation {
    pan: Pan,
    source_key: KeyRef,
    source_format: PinBlockFormat,
    pin_block: Vec<u8>,
    destination_key: KeyRef,
    destination_format: PinBlockFormat,
}

#[async_trait]
impl Hsm for Pkcs11Hsm {
    fn backend_name(&self) -> &'static str {
        "pkcs11"
    }

    async fn generate_key(&self, label: &str, spec: KeySpec) -> Result<KeyInfo, HsmError> {
        let label = label.to_owned();
        self.blocking(move |inner| {
            inner.with_session(|session| {
                let version = Inner::next_version(session, &label, spec, true, false)?;
                Inner::generate_in_token(session, &label, spec, version)?;
                inner.remember(session, &label)
            })
        })
        .await
    }

    async fn import_key(
        &self,
        label: &str,
        spec: KeySpec,
        material: ClearKey,
    ) -> Result<KeyInfo, HsmError> {
        check_clear_len(spec.key_type(), material.expose())?;
        let label = label.to_owned();
        self.blocking(move |inner| {
            inner.with_session(|session| {
                let version = Inner::next_version(session, &label, spec, true, false)?;
                let clear = material.expose();
                let kcv = match spec.key_type() {
                    KeyType::Tdes2 => tdes_kcv(clear.try_into().expect("length checked")),
                    KeyType::Aes256 => {
                        let mut block = [0_u8; 16];
                        crate::wrap::aes_ecb_encrypt_block(
                            clear.try_into().expect("length checked"),
                            &mut block,
                        );
                        Kcv([block[0], block[1], block[2]])
                    }
                    KeyType::HmacSha256 => {
                        let digest =
                            ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, clear);
                        Kcv([digest.as_ref()[0], digest.as_ref()[1], digest.as_ref()[2]])
                    }
                    KeyType::Ed25519 => {
                        let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(clear)
                            .map_err(|error| {
                                HsmError::InvalidInput(format!("Ed25519 seed rejected: {error}"))
                            })?;
                        let mut public = [0_u8; 32];
                        public
                            .copy_from_slice(ring::signature::KeyPair::public_key(&pair).as_ref());
                        PublicKey::Ed25519(public).kcv()
                    }
                    KeyType::EcdsaP256 => unreachable!("clear ECDSA imports are refused above"),
                };
                let info = KeyInfo {
                    label: label.clone(),
                    spec,
                    version,
                    kcv,
                    created_at_unix_s: chrono::Utc::now().timestamp(),
                };
                Inner::create_from_clear(session, &info, clear)?;
                inner.remember(session, &label)
            })
        })
        .await
    }

    async fn rotate_key(&self, label: &str) -> Result<KeyInfo, HsmError> {
        let label = label.to_owned();
        self.blocking(move |inner| {
            inner.with_session(|session| {
                let spec = inner.resolve(session, &KeyRef::latest(&label))?.info.spec;
                let version = Inner::next_version(session, &label, spec, false, true)?;
                Inner::generate_in_token(session, &label, spec, version)?;
                inner.remember(session, &label)
            })
        })
        .await
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>, HsmError> {
        self.blocking(|inner| {
            inner.with_session(|session| {
                let handles = session
                    .find_objects(&[Attribute::Token(true)])
                    .map_err(HsmError::pkcs11("C_FindObjects"))?;
                let mut keys = Vec::new();
                for handle in handles {
                    let attributes = session
                        .get_attributes(handle, &[AttributeType::Label, AttributeType::Id])
                        .map_err(HsmError::pkcs11("C_GetAttributeValue"))?;
                    let mut label = None;
                    let mut metadata = None;
                    for attribute in attributes {
                        match attribute {
                            Attribute::Label(bytes) => label = String::from_utf8(bytes).ok(),
                            Attribute::Id(id) => metadata = decode_id(&id),
                            _ => {}
                        }
                    }
                    if let (Some(label), Some(metadata)) = (label, metadata)
                        && metadata.part == "key"
                    {
                        keys.push(KeyInfo {
                            label,
                            spec: metadata.info_spec,
                            version: metadata.version,
                            kcv: metadata.kcv,
                            created_at_unix_s: metadata.created_at_unix_s,
                        });
                    }
                }
                keys.sort_by(|left, right| {
                    (&left.label, left.version).cmp(&(&right.label, right.version))
                });
                Ok(keys)
            })
        })
        .await
    }

    async fn key_info(&self, key: &KeyRef) -> Result<KeyInfo, HsmError> {
        let key = key.clone();
        self.blocking(move |inner| {
            inner.with_session(|session| Ok(inner.resolve(session, &key)?.info))
        })
        .await
    }

    async fn mac_generate(
        &self,
        key: &KeyRef,
        algorithm: MacAlgorithm,
        data: &[u8],
    ) -> Result<Tag, HsmError> {
        if data.len() > mac::MAX_MAC_INPUT_BYTES {
            return Err(HsmError::InvalidInput(format!(
                "{} bytes is too much to MAC",
                data.len()
            )));
        }
        let (key, data) = (key.clone(), data.to_vec());
        self.blocking(move |inner| {
            inner.with_session(|session| {
                let found = inner.resolve(session, &key)?;
                Ok(Tag {
                    key_version: found.info.version,
                    bytes: Inner::compute_mac(session, &found, algorithm, &data)?,
                })
            })
        })
        .await
    }

    async fn mac_verify(
        &self,
        key: &KeyRef,
        algorithm: MacAlgorithm,
        data: &[u8],
        presented: &[u8],
    ) -> Result<u32, HsmError> {
        if data.len() > mac::MAX_MAC_INPUT_BYTES {
            return Err(HsmError::InvalidInput(format!(
                "{} bytes is too much to MAC",
                data.len()
            )));
        }
        let (key, data, presented) = (key.clone(), data.to_vec(), presented.to_vec());
        self.blocking(move |inner| {
            inner.with_session(|session| {
                let candidates = inner.candidates(session, &key)?;
                let (wanted, expected) = mac_spec(algorithm);
                require(&candidates[0].info, wanted, expected)?;
                for candidate in &candidates {
                    let computed = Inner::compute_mac(session, candidate, algorithm, &data)?;
                    if mac::mac_matches(&computed, &presented) {
                        return Ok(candidate.info.version);
                    }
                }
                Err(HsmError::MacMismatch {
                    label: key.label().to_owned(),
                })
            })
        })
        .await
    }

    async fn translate_pin(&self, request: PinTranslation<'_>) -> Result<Vec<u8>, HsmError> {
        let owned = OwnedTranslation {
            pan: request.pan.clone(),
            source_key: request.source_key,
            source_format: request.source_format,
            pin_block: request.pin_block.to_vec(),
            destination_key: request.destination_key,
            destination_format: request.destination_format,
        };
        self.blocking(move |inner| inner.translate_pin(&owned))
            .await
    }

    async fn sign(&self, key: &KeyRef, data: &[u8]) -> Result<Tag, HsmError> {
        let (key, data) = (key.clone(), data.to_vec());
        self.blocking(move |inner| {
            inner.with_session(|session| {
                let found = inner.resolve(session, &key)?;
                Ok(Tag {
                    key_version: found.info.version,
                    bytes: Inner::sign(session, &found, &data)?,
                })
            })
        })
        .await
    }

    async fn verify(&self, key: &KeyRef, data: &[u8], signature: &[u8]) -> Result<u32, HsmError> {
        let key_ref = key.clone();
        let candidates = self
            .blocking(move |inner| {
                inner.with_session(|session| inner.candidates(session, &key_ref))
            })
            .await?;
        let newest = &candidates[0].info;
        if !matches!(
            newest.spec.key_type(),
            KeyType::Ed25519 | KeyType::EcdsaP256
        ) {
            return Err(HsmError::WrongKeyType {
                label: newest.label.clone(),
                expected: expected::SIGN,
                actual: newest.spec.to_string(),
            });
        }
        // Verification needs only public keys, so it runs here rather than on the token.
        candidates
            .iter()
            .find(|candidate| {
                candidate
                    .public
                    .as_ref()
                    .is_some_and(|public| check_signature(public, data, signature))
            })
            .map(|candidate| candidate.info.version)
            .ok_or_else(|| HsmError::SignatureMismatch {
                label: key.label().to_owned(),
            })
    }

    async fn public_key(&self, key: &KeyRef) -> Result<PublicKey, HsmError> {
        let key = key.clone();
        self.blocking(move |inner| {
            inner.with_session(|session| {
                let found = inner.resolve(session, &key)?;
                found.public.ok_or_else(|| HsmError::WrongKeyType {
                    label: found.info.label.clone(),
                    expected: expected::SIGN,
                    actual: found.info.spec.to_string(),
                })
            })
        })
        .await
    }

    async fn hmac(&self, key: &KeyRef, data: &[u8]) -> Result<Tag, HsmError> {
        let (key, data) = (key.clone(), data.to_vec());
        self.blocking(move |inner| {
            inner.with_session(|session| {
                let found = inner.resolve(session, &key)?;
                require(&found.info, KeySpec::HMAC_SHA256, expected::HMAC)?;
                let bytes = session
                    .sign(&Mechanism::Sha256Hmac, found.key, &data)
                    .map_err(HsmError::pkcs11("C_Sign(SHA256-HMAC)"))?;
                Ok(Tag {
                    key_version: found.info.version,
                    bytes,
                })
            })
        })
        .await
    }

    async fn encrypt_data(&self, key: &KeyRef, data: &[u8], aad: &[u8]) -> Result<Tag, HsmError> {
        use ring::rand::SecureRandom as _;
        let mut nonce = [0_u8; DATA_NONCE_LEN];
        ring::rand::SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| HsmError::Internal("no randomness for a nonce".to_owned()))?;
        let (key, data, aad) = (key.clone(), Zeroizing::new(data.to_vec()), aad.to_vec());
        self.blocking(move |inner| {
            inner.with_session(|session| {
                let found = inner.resolve(session, &key)?;
                require(&found.info, KeySpec::AES_DATA, expected::AES_DATA)?;
                let mut iv = nonce;
                let params = GcmParams::new(&mut iv, &aad, GCM_TAG_BITS.into())
                    .map_err(HsmError::pkcs11("CK_GCM_PARAMS"))?;
                let sealed = session
                    .encrypt(&Mechanism::AesGcm(params), found.key, &data)
                    .map_err(HsmError::pkcs11("C_Encrypt(AES-GCM)"))?;
                let mut bytes = nonce.to_vec();
                bytes.extend_from_slice(&sealed);
                Ok(Tag {
                    key_version: found.info.version,
                    bytes,
                })
            })
        })
        .await
    }

    async fn decrypt_data(
        &self,
        key: &KeyRef,
        sealed: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        if sealed.len() < DATA_NONCE_LEN + DATA_TAG_LEN {
            return Err(HsmError::InvalidInput(
                "sealed data is shorter than a nonce and a tag".to_owned(),
            ));
        }
        let (key, sealed, aad) = (key.clone(), sealed.to_vec(), aad.to_vec());
        self.blocking(move |inner| {
            inner.with_session(|session| {
                let found = inner.resolve(session, &key)?;
                require(&found.info, KeySpec::AES_DATA, expected::AES_DATA)?;
                let (nonce, body) = sealed.split_at(DATA_NONCE_LEN);
                let mut iv = nonce.to_vec();
                let params = GcmParams::new(&mut iv, &aad, GCM_TAG_BITS.into())
                    .map_err(HsmError::pkcs11("CK_GCM_PARAMS"))?;
                session
                    .decrypt(&Mechanism::AesGcm(params), found.key, body)
                    .map(Zeroizing::new)
                    .map_err(|_| {
                        HsmError::InvalidInput(
                            "sealed data does not authenticate under this key".to_owned(),
                        )
                    })
            })
        })
        .await
    }

    async fn wrap_key(&self, key: &KeyRef, kek: &KeyRef) -> Result<WrappedKey, HsmError> {
        if key.label() == kek.label() {
            return Err(HsmError::InvalidInput(
                "a key cannot be wrapped under itself".to_owned(),
            ));
        }
        let (key, kek) = (key.clone(), kek.clone());
        self.blocking(move |inner| {
            inner.with_session(|session| {
                let target = inner.resolve(session, &key)?;
                let wrapping = inner.resolve(session, &kek)?;
                Inner::wrap(session, &target, &wrapping)
            })
        })
        .await
    }

    async fn unwrap_key(
        &self,
        label: &str,
        wrapped: &WrappedKey,
        kek: &KeyRef,
    ) -> Result<KeyInfo, HsmError> {
        validate_label(label)?;
        let (label, wrapped, kek) = (label.to_owned(), wrapped.clone(), kek.clone());
        self.blocking(move |inner| {
            inner.with_session(|session| {
                let wrapping = inner.resolve(session, &kek)?;
                inner.unwrap(session, &label, &wrapped, &wrapping)
            })
        })
        .await
    }
}
