//! RFC 9421 HTTP Message Signatures with Ed25519, as the partner API uses
//! them: the signature base (§2.5), the `Signature-Input` and `Signature`
//! headers (RFC 8941 dictionaries, label [`SIGNATURE_LABEL`]), signing through
//! the HSM and verification with the partner's public key.
//!
//! Requests cover `"@method" "@target-uri" "content-digest"` (and
//! `"idempotency-key"` when the request has one); responses cover
//! `"@status" "content-digest" "@method";req "@target-uri";req`, which binds
//! an answer to the request it answers. Both carry the parameters
//! `created`, `nonce`, `keyid` and `alg="ed25519"`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use http::HeaderMap;
use posgate_hsm::{Hsm, KeyRef};
use sfv::{BareItem, FieldType as _, Integer, ListEntry, Parameters};

use super::digest::{self, CONTENT_DIGEST, DigestError};
use super::replay::{NonceCache, ReplayError};
use super::structured;

/// The label posgate signs under and looks for.
pub const SIGNATURE_LABEL: &str = "sig1";
/// [`SIGNATURE_LABEL`] as a structured-field key.
const LABEL_KEY: &sfv::KeyRef = sfv::KeyRef::constant(SIGNATURE_LABEL);
/// The component parameter that takes a response's component from its request (§2.4).
const REQ: &sfv::KeyRef = sfv::KeyRef::constant("req");
// The signature parameters posgate writes (§2.3).
const CREATED: &sfv::KeyRef = sfv::KeyRef::constant("created");
const NONCE: &sfv::KeyRef = sfv::KeyRef::constant("nonce");
const KEYID: &sfv::KeyRef = sfv::KeyRef::constant("keyid");
const ALG: &sfv::KeyRef = sfv::KeyRef::constant("alg");
/// The only algorithm accepted.
pub const ALGORITHM: &str = "ed25519";
pub const SIGNATURE_INPUT: &str = "signature-input";
pub const SIGNATURE: &str = "signature";
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// An Ed25519 signature's length in bytes (RFC 8032).
const ED25519_SIGNATURE_BYTES: usize = 64;

/// A message component (RFC 9421 §2.1 fields, §2.2 derived components).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Component {
    Method,
    TargetUri,
    Authority,
    Path,
    Query,
    Status,
    /// An HTTP field by lower-case name.
    Field(String),
}

impl Component {
    fn name(&self) -> &str {
        match self {
            Self::Method => "@method",
            Self::TargetUri => "@target-uri",
            Self::Authority => "@authority",
            Self::Path => "@path",
            Self::Query => "@query",
            Self::Status => "@status",
            Self::Field(name) => name,
        }
    }

    fn parse(name: &str) -> Result<Self, SignatureError> {
        Ok(match name {
            "@method" => Self::Method,
            "@target-uri" => Self::TargetUri,
            "@authority" => Self::Authority,
            "@path" => Self::Path,
            "@query" => Self::Query,
            "@status" => Self::Status,
            other if other.starts_with('@') => {
                return Err(SignatureError::Malformed(format!(
                    "unsupported derived component {other}"
                )));
            }
            other
                if other.bytes().all(|b| {
                    b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b == b'-'
                        || b == b'_'
                        || b == b'.'
                }) && !other.is_empty() =>
            {
                Self::Field(other.to_owned())
            }
            other => {
                return Err(SignatureError::Malformed(format!(
                    "component name {other:?} is not a lower-case field name"
                )));
            }
        })
    }
}

/// A covered component: which component, and whether it is taken from the
/// request a response answers (the `req` parameter, §2.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ComponentId {
    pub component: Component,
    pub from_request: bool,
}

impl ComponentId {
    pub fn of(component: Component) -> Self {
        Self {
            component,
            from_request: false,
        }
    }

    pub fn of_request(component: Component) -> Self {
        Self {
            component,
            from_request: true,
        }
    }

    /// The component identifier: `"@method"`, or `"@method";req`.
    fn to_item(&self) -> Result<sfv::Item, SignatureError> {
        let name = sf_string(self.component.name().to_owned(), "component name")?;
        let mut params = Parameters::new();
        if self.from_request {
            params.insert(REQ.to_owned(), BareItem::Boolean(true));
        }
        Ok(sfv::Item::with_params(name, params))
    }
}

/// `text` as a structured-field string, which holds printable ASCII only.
fn sf_string(text: String, what: &str) -> Result<sfv::String, SignatureError> {
    sfv::String::from_string(text).map_err(|(_, text)| {
        SignatureError::Malformed(format!("{what} {text:?} is not printable ASCII"))
    })
}

/// The request as the signature sees it: method, absolute target URI, fields.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// The absolute URI, e.g. `https://wallet.example:8443/v1/wallet/top-ups`.
    pub target_uri: &'a str,
    pub headers: &'a HeaderMap,
}

/// The message whose components are read.
#[derive(Debug, Clone, Copy)]
pub enum MessageParts<'a> {
    Request(RequestParts<'a>),
    Response {
        status: u16,
        headers: &'a HeaderMap,
        request: RequestParts<'a>,
    },
}

/// The covered components and the parameters, in signed order.
#[derive(Debug, Clone, PartialEq)]
pub struct SignatureParams {
    pub components: Vec<ComponentId>,
    pub params: Parameters,
}

impl SignatureParams {
    /// The value of `@signature-params` and of the `Signature-Input` member:
    /// the components as an inner list, with the parameters.
    pub fn serialize(&self) -> Result<String, SignatureError> {
        let items = (self.components.iter())
            .map(ComponentId::to_item)
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = String::new();
        let mut list = sfv::ListSerializer::with_buffer(&mut out);
        let mut inner_list = list.inner_list();
        inner_list.items(&items);
        let _ = inner_list.finish().parameters(&self.params);
        Ok(out)
    }

    fn string_param(&self, name: &'static str) -> Result<&str, SignatureError> {
        match self.params.get(name) {
            Some(BareItem::String(value)) => Ok(value.as_str()),
            Some(_) => Err(SignatureError::Malformed(format!("{name} is not a string"))),
            None => Err(SignatureError::MissingParameter(name)),
        }
    }

    fn created(&self) -> Result<i64, SignatureError> {
        match self.params.get(CREATED) {
            Some(BareItem::Integer(value)) => Ok(i64::from(*value)),
            Some(_) => Err(SignatureError::Malformed(
                "created is not an integer".into(),
            )),
            None => Err(SignatureError::MissingParameter("created")),
        }
    }
}

/// Why a message could not be signed or its signature was refused. The
/// texts name what is wrong, never a key.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("malformed signature: {0}")]
    Malformed(String),
    #[error("no signature labelled {SIGNATURE_LABEL}")]
    MissingLabel,
    #[error("signature does not cover {0}")]
    MissingComponent(String),
    #[error("component {0} is absent from the message")]
    ComponentAbsent(String),
    #[error("signature parameter {0} missing")]
    MissingParameter(&'static str),
    #[error("signature algorithm {0:?} is not ed25519")]
    WrongAlgorithm(String),
    #[error("unknown key id {0:?}")]
    UnknownKey(String),
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error("signature does not verify")]
    BadSignature,
    #[error("signing failed in the HSM: {0}")]
    Hsm(String),
}

/// One component's value (§2.1, §2.2). Fields: every value trimmed, joined by ", ".
fn component_value(id: &ComponentId, message: &MessageParts<'_>) -> Result<String, SignatureError> {
    let absent = || SignatureError::ComponentAbsent(id.component.name().to_owned());
    let (request, headers, status) = match (message, id.from_request) {
        (MessageParts::Request(request), false)
        | (MessageParts::Response { request, .. }, true) => (Some(request), request.headers, None),
        (MessageParts::Request(_), true) => {
            return Err(SignatureError::Malformed(
                "req parameter on a request".into(),
            ));
        }
        (
            MessageParts::Response {
                status, headers, ..
            },
            false,
        ) => (None, *headers, Some(*status)),
    };
    let uri = || -> Result<http::Uri, SignatureError> {
        let request = request.ok_or_else(absent)?;
        request
            .target_uri
            .parse::<http::Uri>()
            .map_err(|_| SignatureError::Malformed("target URI is not a URI".into()))
    };
    Ok(match &id.component {
        Component::Method => request.ok_or_else(absent)?.method.to_owned(),
        Component::TargetUri => request.ok_or_else(absent)?.target_uri.to_owned(),
        Component::Authority => uri()?
            .authority()
            .ok_or_else(absent)?
            .as_str()
            .to_ascii_lowercase(),
        Component::Path => {
            let uri = uri()?;
            let path = uri.path();
            if path.is_empty() {
                "/".to_owned()
            } else {
                path.to_owned()
            }
        }
        Component::Query => format!("?{}", uri()?.query().unwrap_or("")),
        Component::Status => format!("{:03}", status.ok_or_else(absent)?),
        Component::Field(name) => {
            let mut values = headers.get_all(name.as_str()).iter().peekable();
            if values.peek().is_none() {
                return Err(absent());
            }
            let mut joined = String::new();
            for (index, value) in values.enumerate() {
                let text = value
                    .to_str()
                    .map_err(|_| SignatureError::Malformed(format!("field {name} is not ASCII")))?;
                if index > 0 {
                    joined.push_str(", ");
                }
                joined.push_str(text.trim());
            }
            joined
        }
    })
}

/// The signature base (§2.5): one line per covered component, then `@signature-params`.
pub fn signature_base(
    message: &MessageParts<'_>,
    params: &SignatureParams,
) -> Result<String, SignatureError> {
    let mut base = String::new();
    let mut seen = std::collections::HashSet::new();
    for id in &params.components {
        if !seen.insert(id) {
            return Err(SignatureError::Malformed(format!(
                "component {} covered twice",
                id.component.name()
            )));
        }
        let value = component_value(id, message)?;
        if value.contains('\n') {
            return Err(SignatureError::Malformed(
                "component value has a newline".into(),
            ));
        }
        let _ = writeln!(base, "{}: {value}", id.to_item()?.serialize());
    }
    let _ = write!(base, "\"@signature-params\": {}", params.serialize()?);
    Ok(base)
}

/// The components a request signature must cover.
pub fn request_components(has_idempotency_key: bool) -> Vec<ComponentId> {
    let mut components = vec![
        ComponentId::of(Component::Method),
        ComponentId::of(Component::TargetUri),
        ComponentId::of(Component::Field(CONTENT_DIGEST.to_owned())),
    ];
    if has_idempotency_key {
        components.push(ComponentId::of(Component::Field(
            IDEMPOTENCY_KEY.to_owned(),
        )));
    }
    components
}

/// The components a response signature must cover.
pub fn response_components() -> Vec<ComponentId> {
    vec![
        ComponentId::of(Component::Status),
        ComponentId::of(Component::Field(CONTENT_DIGEST.to_owned())),
        ComponentId::of_request(Component::Method),
        ComponentId::of_request(Component::TargetUri),
    ]
}

fn header_value(value: String) -> Result<http::HeaderValue, SignatureError> {
    http::HeaderValue::try_from(value)
        .map_err(|_| SignatureError::Malformed("header value not representable".into()))
}

/// Signs messages with one HSM key, under one key id the partner knows.
#[derive(Debug, Clone)]
pub struct Signer {
    hsm: Arc<dyn Hsm>,
    key_label: String,
    key_id: String,
}

impl Signer {
    /// `key_label` names the Ed25519 key in `hsm`; `key_id` is the `keyid`
    /// the partner looks the public key up by.
    pub fn new(hsm: Arc<dyn Hsm>, key_label: impl Into<String>, key_id: impl Into<String>) -> Self {
        Self {
            hsm,
            key_label: key_label.into(),
            key_id: key_id.into(),
        }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    fn params(
        &self,
        components: Vec<ComponentId>,
        created_s: i64,
    ) -> Result<SignatureParams, SignatureError> {
        let created = Integer::try_from(created_s)
            .map_err(|_| SignatureError::Malformed(format!("created {created_s} out of range")))?;
        let params = [
            (CREATED, BareItem::Integer(created)),
            (NONCE, BareItem::String(sf_string(new_nonce(), "nonce")?)),
            (
                KEYID,
                BareItem::String(sf_string(self.key_id.clone(), "key id")?),
            ),
            (
                ALG,
                BareItem::from(const { sfv::StringRef::constant(ALGORITHM) }),
            ),
        ];
        Ok(SignatureParams {
            components,
            params: params
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect(),
        })
    }

    /// Sets `Content-Digest`, `Signature-Input` and `Signature` on a request.
    pub async fn sign_request(
        &self,
        method: &str,
        target_uri: &str,
        headers: &mut HeaderMap,
        body: &[u8],
        created_s: i64,
    ) -> Result<(), SignatureError> {
        headers.insert(CONTENT_DIGEST, header_value(digest::content_digest(body))?);
        let params = self.params(
            request_components(headers.contains_key(IDEMPOTENCY_KEY)),
            created_s,
        )?;
        let base = signature_base(
            &MessageParts::Request(RequestParts {
                method,
                target_uri,
                headers,
            }),
            &params,
        )?;
        self.attach(headers, &params, &base).await
    }

    /// Sets `Content-Digest`, `Signature-Input` and `Signature` on a response to `request`.
    pub async fn sign_response(
        &self,
        status: u16,
        headers: &mut HeaderMap,
        body: &[u8],
        request: RequestParts<'_>,
        created_s: i64,
    ) -> Result<(), SignatureError> {
        headers.insert(CONTENT_DIGEST, header_value(digest::content_digest(body))?);
        let params = self.params(response_components(), created_s)?;
        let base = signature_base(
            &MessageParts::Response {
                status,
                headers,
                request,
            },
            &params,
        )?;
        self.attach(headers, &params, &base).await
    }

    /// Signs `base` in the HSM and sets the two signature headers.
    pub async fn attach(
        &self,
        headers: &mut HeaderMap,
        params: &SignatureParams,
        base: &str,
    ) -> Result<(), SignatureError> {
        let signature = self.sign_base(base).await?;
        let input = format!("{SIGNATURE_LABEL}={}", params.serialize()?);
        let value = structured::byte_sequence_member(LABEL_KEY, &signature);
        headers.insert(SIGNATURE_INPUT, header_value(input)?);
        headers.insert(SIGNATURE, header_value(value)?);
        Ok(())
    }

    /// The raw Ed25519 signature of a signature base.
    pub async fn sign_base(&self, base: &str) -> Result<Vec<u8>, SignatureError> {
        let tag = self
            .hsm
            .sign(&KeyRef::latest(&self.key_label), base.as_bytes())
            .await
            .map_err(|error| SignatureError::Hsm(error.to_string()))?;
        Ok(tag.bytes)
    }
}

/// 128 random bits as 32 hex digits: unguessable and never repeated in practice.
pub fn new_nonce() -> String {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0_u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random source works");
    hex::encode(bytes)
}

/// A signature that verified: who signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub key_id: String,
    pub created_s: i64,
}

/// Verifies signatures from known partner keys, with a replay window.
#[derive(Debug)]
pub struct Verifier {
    keys: HashMap<String, [u8; 32]>,
    replay: Mutex<NonceCache>,
}

impl Verifier {
    /// `keys` maps each `keyid` to its Ed25519 public key.
    pub fn new(keys: HashMap<String, [u8; 32]>) -> Self {
        Self::with_cache(keys, NonceCache::default())
    }

    pub fn with_cache(keys: HashMap<String, [u8; 32]>, cache: NonceCache) -> Self {
        Self {
            keys,
            replay: Mutex::new(cache),
        }
    }

    /// Verifies a request's signature, digest and freshness, then records its nonce.
    pub fn verify_request(
        &self,
        request: RequestParts<'_>,
        body: &[u8],
        now_s: i64,
    ) -> Result<Verified, SignatureError> {
        let required = request_components(request.headers.contains_key(IDEMPOTENCY_KEY));
        self.verify(
            &MessageParts::Request(request),
            request.headers,
            body,
            &required,
            now_s,
        )
    }

    /// Verifies a response to `request`, then records its nonce.
    pub fn verify_response(
        &self,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
        request: RequestParts<'_>,
        now_s: i64,
    ) -> Result<Verified, SignatureError> {
        let message = MessageParts::Response {
            status,
            headers,
            request,
        };
        self.verify(&message, headers, body, &response_components(), now_s)
    }

    fn verify(
        &self,
        message: &MessageParts<'_>,
        headers: &HeaderMap,
        body: &[u8],
        required: &[ComponentId],
        now_s: i64,
    ) -> Result<Verified, SignatureError> {
        let (params, signature) = read_signature_headers(headers)?;
        for component in required {
            if !params.components.contains(component) {
                let name = component.to_item()?.serialize();
                return Err(SignatureError::MissingComponent(name));
            }
        }
        let algorithm = params.string_param("alg")?;
        if algorithm != ALGORITHM {
            return Err(SignatureError::WrongAlgorithm(algorithm.to_owned()));
        }
        let key_id = params.string_param("keyid")?;
        let nonce = params.string_param("nonce")?;
        let created_s = params.created()?;
        let public_key = self
            .keys
            .get(key_id)
            .ok_or_else(|| SignatureError::UnknownKey(key_id.to_owned()))?;
        let base = signature_base(message, &params)?;
        verify_ed25519(public_key, base.as_bytes(), &signature)?;
        let digest_header = headers
            .get(CONTENT_DIGEST)
            .and_then(|value| value.to_str().ok())
            .ok_or(SignatureError::MissingHeader(CONTENT_DIGEST))?;
        digest::verify_content_digest(digest_header, body)?;
        crate::http::lock(&self.replay).check_and_remember(key_id, nonce, created_s, now_s)?;
        Ok(Verified {
            key_id: key_id.to_owned(),
            created_s,
        })
    }
}

/// Checks an Ed25519 signature with a raw 32-byte public key.
pub fn verify_ed25519(
    public_key: &[u8; 32],
    data: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    if signature.len() != ED25519_SIGNATURE_BYTES {
        return Err(SignatureError::BadSignature);
    }
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
        .verify(data, signature)
        .map_err(|_| SignatureError::BadSignature)
}

/// Reads the [`SIGNATURE_LABEL`] member of `Signature-Input` and `Signature`.
pub fn read_signature_headers(
    headers: &HeaderMap,
) -> Result<(SignatureParams, Vec<u8>), SignatureError> {
    let input = single_header(headers, SIGNATURE_INPUT, "signature-input")?;
    let signature = single_header(headers, SIGNATURE, "signature")?;
    let mut inputs = structured::parse_dictionary(input).map_err(SignatureError::Malformed)?;
    let input_list = match inputs.swap_remove(LABEL_KEY) {
        Some(ListEntry::InnerList(list)) => list,
        Some(ListEntry::Item(_)) => {
            return Err(SignatureError::Malformed(
                "signature-input member is not an inner list".into(),
            ));
        }
        None => return Err(SignatureError::MissingLabel),
    };
    let mut components = Vec::with_capacity(input_list.items.len());
    for item in &input_list.items {
        let Some(name) = item.bare_item.as_string() else {
            return Err(SignatureError::Malformed(
                "component identifier is not a string".into(),
            ));
        };
        let from_request = match item.params.len() {
            0 => false,
            1 if item.params.get(REQ) == Some(&BareItem::Boolean(true)) => true,
            _ => {
                return Err(SignatureError::Malformed(format!(
                    "unsupported parameters on component {name}"
                )));
            }
        };
        components.push(ComponentId {
            component: Component::parse(name.as_str())?,
            from_request,
        });
    }
    let mut signatures =
        structured::parse_dictionary(signature).map_err(SignatureError::Malformed)?;
    let bytes = match signatures.swap_remove(LABEL_KEY) {
        Some(ListEntry::Item(sfv::Item {
            bare_item: BareItem::ByteSequence(bytes),
            ..
        })) => bytes,
        Some(_) => {
            return Err(SignatureError::Malformed(
                "signature member is not a byte sequence".into(),
            ));
        }
        None => return Err(SignatureError::MissingLabel),
    };
    Ok((
        SignatureParams {
            components,
            params: input_list.params,
        },
        bytes,
    ))
}

fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &'static str,
    label: &'static str,
) -> Result<&'a str, SignatureError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next().ok_or(SignatureError::MissingHeader(label))?;
    if values.next().is_some() {
        return Err(SignatureError::Malformed(format!(
            "{label} sent more than once"
        )));
    }
    first
        .to_str()
        .map_err(|_| SignatureError::Malformed(format!("{label} is not ASCII")))
}
