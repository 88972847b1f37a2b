//! Who is calling and what they may do.
//!
//! Every caller presents a client certificate (mutual TLS, see [`crate::mtls`])
//! whose URI SAN is a SPIFFE id naming its identity:
//!
//! | SPIFFE id | identity | may call |
//! |---|---|---|
//! | `spiffe://posgate/store/{S}/terminal/{T}` | a POS terminal | bill, card and wallet payments, for its own store and terminal only |
//! | `spiffe://posgate/auditor/{id}` | an auditor | the audit service |
//! | `spiffe://posgate/operator/{id}` | an operator | health and reflection only |
//!
//! Health and reflection are open to every authenticated identity. The role
//! table is [`allowed`]; [`AccessLayer`] enforces it for every RPC before any
//! service code runs, and [`Identity::check_acts_for`] (called by
//! [`crate::grpc::Gateway::admit`]) refuses a terminal that claims another
//! store or terminal in its request context, before anything is stored.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use posgate_proto::v1 as pb;
use rustls::pki_types::CertificateDer;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::ERROR_DOMAIN;

/// The trust domain of posgate's SPIFFE ids.
pub const TRUST_DOMAIN: &str = "posgate";
/// `google.rpc.ErrorInfo` reason: the identity's role may not call this service.
pub const ROLE_NOT_ALLOWED: &str = "ROLE_NOT_ALLOWED";
/// `google.rpc.ErrorInfo` reason: a terminal claimed another store or terminal.
pub const IDENTITY_MISMATCH: &str = "IDENTITY_MISMATCH";
/// `google.rpc.ErrorInfo` reason: the certificate carries no posgate SPIFFE id.
pub const NO_IDENTITY: &str = "NO_SPIFFE_IDENTITY";
/// Longest id segment accepted in a SPIFFE id; store and terminal ids are far shorter.
const MAX_SEGMENT_LEN: usize = 64;

/// Who is calling, from the mTLS client certificate's SPIFFE URI SAN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// `spiffe://posgate/store/{S}/terminal/{T}`
    Terminal {
        store_id: String,
        terminal_id: String,
    },
    /// `spiffe://posgate/auditor/{id}`
    Auditor { auditor_id: String },
    /// `spiffe://posgate/operator/{id}`
    Operator { operator_id: String },
}

/// What an identity is allowed to do comes from its role alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Terminal,
    Auditor,
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Terminal => "terminal",
            Self::Auditor => "auditor",
            Self::Operator => "operator",
        }
    }
}

/// Why a certificate or SPIFFE id names no posgate identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("{0:?} is not a SPIFFE id of trust domain {TRUST_DOMAIN}")]
    ForeignId(String),
    #[error(
        "SPIFFE id {0:?} names no posgate identity (store/S/terminal/T, auditor/ID or operator/ID)"
    )]
    UnknownShape(String),
    #[error("the client certificate cannot be parsed: {0}")]
    BadCertificate(String),
    #[error("the client certificate carries no posgate SPIFFE id in its URI SAN")]
    NoSpiffeId,
}

impl Identity {
    /// Parses `spiffe://posgate/...` into an identity.
    pub fn parse_spiffe(uri: &str) -> Result<Identity, AccessError> {
        let path = uri
            .strip_prefix("spiffe://")
            .and_then(|rest| rest.strip_prefix(TRUST_DOMAIN))
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(|| AccessError::ForeignId(uri.to_owned()))?;
        let segments: Vec<&str> = path.split('/').collect();
        if !segments.iter().all(|segment| is_id_segment(segment)) {
            return Err(AccessError::UnknownShape(uri.to_owned()));
        }
        match segments.as_slice() {
            ["store", store, "terminal", terminal] => Ok(Self::Terminal {
                store_id: (*store).to_owned(),
                terminal_id: (*terminal).to_owned(),
            }),
            ["auditor", id] => Ok(Self::Auditor {
                auditor_id: (*id).to_owned(),
            }),
            ["operator", id] => Ok(Self::Operator {
                operator_id: (*id).to_owned(),
            }),
            _ => Err(AccessError::UnknownShape(uri.to_owned())),
        }
    }

    /// The SPIFFE id this identity is written as in certificates and event actors.
    pub fn spiffe_id(&self) -> String {
        match self {
            Self::Terminal {
                store_id,
                terminal_id,
            } => format!("spiffe://{TRUST_DOMAIN}/store/{store_id}/terminal/{terminal_id}"),
            Self::Auditor { auditor_id } => format!("spiffe://{TRUST_DOMAIN}/auditor/{auditor_id}"),
            Self::Operator { operator_id } => {
                format!("spiffe://{TRUST_DOMAIN}/operator/{operator_id}")
            }
        }
    }

    pub fn role(&self) -> Role {
        match self {
            Self::Terminal { .. } => Role::Terminal,
            Self::Auditor { .. } => Role::Auditor,
            Self::Operator { .. } => Role::Operator,
        }
    }

    /// The identity of a DER client certificate: its one posgate SPIFFE URI SAN.
    pub fn from_certificate(der: &[u8]) -> Result<Identity, AccessError> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|error| AccessError::BadCertificate(error.to_string()))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|error| AccessError::BadCertificate(error.to_string()))?
            .ok_or(AccessError::NoSpiffeId)?;
        let mut spiffe = san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::URI(uri) if uri.starts_with("spiffe://") => Some(*uri),
                _ => None,
            });
        // SPIFFE allows exactly one SPIFFE id per certificate.
        match (spiffe.next(), spiffe.next()) {
            (Some(uri), None) => Self::parse_spiffe(uri),
            _ => Err(AccessError::NoSpiffeId),
        }
    }

    /// Refuses a request whose context claims another store or terminal than
    /// this identity's. Only terminals act for a store; the role table keeps
    /// the others away from services that carry a request context.
    pub fn check_acts_for(&self, context: Option<&pb::RequestContext>) -> Result<(), Status> {
        let Self::Terminal {
            store_id,
            terminal_id,
        } = self
        else {
            return Err(role_not_allowed(self.role(), "a POS request context"));
        };
        // A missing context is a validation error, reported with the other fields.
        let Some(context) = context else {
            return Ok(());
        };
        let mut mismatched = Vec::new();
        if context.store_id != *store_id {
            mismatched.push(("context.store_id", "store", store_id));
        }
        if context.terminal_id != *terminal_id {
            mismatched.push(("context.terminal_id", "terminal", terminal_id));
        }
        if mismatched.is_empty() {
            return Ok(());
        }
        let mut details = ErrorDetails::new();
        let mut metadata = HashMap::new();
        metadata.insert("identity".to_owned(), self.spiffe_id());
        details.set_error_info(IDENTITY_MISMATCH, ERROR_DOMAIN, metadata);
        for (field, kind, own) in &mismatched {
            details.add_bad_request_violation(
                *field,
                format!("must be this terminal's own {kind} {own} (from its client certificate)"),
            );
        }
        let fields: Vec<&str> = mismatched.iter().map(|(field, ..)| *field).collect();
        Err(Status::with_error_details(
            Code::PermissionDenied,
            format!(
                "{} may act only for its own store and terminal: {} differ",
                self.spiffe_id(),
                fields.join(", ")
            ),
            details,
        ))
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spiffe_id())
    }
}

/// Store, terminal, auditor and operator ids: letters, digits, `-`, `_` and
/// `.` (auditor ids may carry dots), never a `.` or `..` path segment.
fn is_id_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= MAX_SEGMENT_LEN
        && segment != "."
        && segment != ".."
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The gRPC services posgate serves, by their full proto names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    BillPayment,
    Payment,
    Wallet,
    Audit,
    Health,
    Reflection,
}

impl Service {
    /// The service of a gRPC request path `/{package.Service}/{Method}`.
    pub fn from_path(path: &str) -> Option<Service> {
        let name = path.strip_prefix('/')?.split('/').next()?;
        Some(match name {
            "posgate.v1.BillPaymentService" => Self::BillPayment,
            "posgate.v1.PaymentService" => Self::Payment,
            "posgate.v1.WalletService" => Self::Wallet,
            "posgate.v1.AuditService" => Self::Audit,
            "grpc.health.v1.Health" => Self::Health,
            "grpc.reflection.v1.ServerReflection" | "grpc.reflection.v1alpha.ServerReflection" => {
                Self::Reflection
            }
            _ => return None,
        })
    }
}

/// The role × service table: the one place that says who may call what.
/// Services not listed (and unknown paths) are denied.
const ALLOWED: &[(Role, Service)] = &[
    (Role::Terminal, Service::BillPayment),
    (Role::Terminal, Service::Payment),
    (Role::Terminal, Service::Wallet),
    (Role::Terminal, Service::Health),
    (Role::Terminal, Service::Reflection),
    (Role::Auditor, Service::Audit),
    (Role::Auditor, Service::Health),
    (Role::Auditor, Service::Reflection),
    (Role::Operator, Service::Health),
    (Role::Operator, Service::Reflection),
];

/// Whether `role` may call `service`.
pub fn allowed(role: Role, service: Service) -> bool {
    ALLOWED.contains(&(role, service))
}

/// `PERMISSION_DENIED` with `ErrorInfo { reason: ROLE_NOT_ALLOWED }`.
fn role_not_allowed(role: Role, what: &str) -> Status {
    let mut metadata = HashMap::new();
    metadata.insert("role".to_owned(), role.as_str().to_owned());
    Status::with_error_details(
        Code::PermissionDenied,
        format!("the {} role may not call {what}", role.as_str()),
        ErrorDetails::with_error_info(ROLE_NOT_ALLOWED, ERROR_DOMAIN, metadata),
    )
}

/// The identity of the peer of a request, from its TLS client certificate:
/// `UNAUTHENTICATED` without one, `PERMISSION_DENIED` when it names no
/// posgate identity. Reads the identity [`AccessLayer`] already parsed when
/// there is one.
pub fn identity_of<T>(request: &tonic::Request<T>) -> Result<Identity, Status> {
    if let Some(identity) = request.extensions().get::<Identity>() {
        return Ok(identity.clone());
    }
    identity_from_certs(request.peer_certs().as_deref().map(Vec::as_slice))
}

fn identity_from_certs(certs: Option<&[CertificateDer<'static>]>) -> Result<Identity, Status> {
    let Some(leaf) = certs.and_then(<[_]>::first) else {
        return Err(Status::unauthenticated(
            "a client certificate is required (mutual TLS)",
        ));
    };
    Identity::from_certificate(leaf).map_err(|error| {
        Status::with_error_details(
            Code::PermissionDenied,
            error.to_string(),
            ErrorDetails::with_error_info(NO_IDENTITY, ERROR_DOMAIN, HashMap::new()),
        )
    })
}

/// `AuditService`: the caller must be an auditor whose id equals
/// `claimed_auditor_id` (`AuditContext.auditor_id`); else `PERMISSION_DENIED`
/// (no certificate: `UNAUTHENTICATED`). Returns the auditor's id.
pub fn require_auditor<T>(
    request: &tonic::Request<T>,
    claimed_auditor_id: &str,
) -> Result<String, Status> {
    match identity_of(request)? {
        Identity::Auditor { auditor_id } if auditor_id == claimed_auditor_id => Ok(auditor_id),
        Identity::Auditor { auditor_id } => {
            let mut details = ErrorDetails::new();
            let mut metadata = HashMap::new();
            metadata.insert(
                "identity".to_owned(),
                format!("spiffe://{TRUST_DOMAIN}/auditor/{auditor_id}"),
            );
            details.set_error_info(IDENTITY_MISMATCH, ERROR_DOMAIN, metadata);
            details.add_bad_request_violation(
                "context.auditor_id",
                format!("must be this auditor's own id {auditor_id} (from its client certificate)"),
            );
            Err(Status::with_error_details(
                Code::PermissionDenied,
                "an auditor may act only as itself: context.auditor_id differs",
                details,
            ))
        }
        other => Err(role_not_allowed(other.role(), "AuditService")),
    }
}

/// The tower layer that authenticates every request and enforces [`allowed`]
/// before any service runs; it leaves the parsed [`Identity`] in the
/// request's extensions for the services. It sees every call, refused or
/// served, so it counts them all ([`crate::metered`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct AccessLayer;

impl<S> tower::Layer<S> for AccessLayer {
    type Service = AccessService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AccessService { inner }
    }
}

/// See [`AccessLayer`].
#[derive(Debug, Clone)]
pub struct AccessService<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for AccessService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::Either<
        futures::future::Ready<Result<Self::Response, Self::Error>>,
        crate::metered::MeteredFuture<S::Future>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let started = std::time::Instant::now();
        let rpc = crate::metered::rpc_label(request.uri().path());
        match authorize(&request) {
            Ok(identity) => {
                request.extensions_mut().insert(identity);
                futures::future::Either::Right(crate::metered::MeteredFuture::new(
                    self.inner.call(request),
                    rpc,
                    started,
                ))
            }
            Err(status) => {
                tracing::info!(path = request.uri().path(), code = ?status.code(), message = status.message(), "rpc refused by access control");
                crate::metered::record(rpc, status.code(), started);
                futures::future::Either::Left(futures::future::ready(Ok(status.into_http())))
            }
        }
    }
}

/// The identities of the connections' client certificates, parsed once per
/// connection instead of once per request. tonic hands every request of a
/// connection the same `Arc` of its peer certificates, so the `Arc`'s address
/// names the connection; each entry holds a `Weak` of that `Arc`, which keeps
/// the allocation (not the certificates) from being freed and its address
/// reused while the entry exists, so an address found here is the same
/// connection's certificates. Entries of closed connections are dropped as
/// the map grows.
#[derive(Debug, Default)]
struct ConnectionIdentities {
    by_certs: HashMap<usize, (Weak<Vec<CertificateDer<'static>>>, Identity)>,
    prune_at: usize,
}

/// Connections' identities kept before the closed ones are pruned (then twice
/// the live ones, at least this).
const IDENTITY_CACHE_MIN_PRUNE: usize = 1024;

static CONNECTION_IDENTITIES: Mutex<Option<ConnectionIdentities>> = Mutex::new(None);

/// The identity of a connection's peer certificates, parsed on the
/// connection's first request.
fn connection_identity(certs: &Arc<Vec<CertificateDer<'static>>>) -> Result<Identity, Status> {
    let address = Arc::as_ptr(certs) as usize;
    let lock = || {
        CONNECTION_IDENTITIES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    if let Some(cache) = lock().as_ref()
        && let Some((_, identity)) = cache.by_certs.get(&address)
    {
        return Ok(identity.clone());
    }
    let identity = identity_from_certs(Some(certs.as_slice()))?;
    let mut guard = lock();
    let cache = guard.get_or_insert_with(ConnectionIdentities::default);
    if cache.by_certs.len() >= cache.prune_at {
        cache
            .by_certs
            .retain(|_, (certs, _)| certs.strong_count() > 0);
        cache.prune_at = (cache.by_certs.len() * 2).max(IDENTITY_CACHE_MIN_PRUNE);
    }
    cache
        .by_certs
        .insert(address, (Arc::downgrade(certs), identity.clone()));
    Ok(identity)
}

/// Authenticates a request and checks its role may call its service.
fn authorize<B>(request: &http::Request<B>) -> Result<Identity, Status> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let certs = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs);
    let identity = match &certs {
        Some(certs) => connection_identity(certs)?,
        None => identity_from_certs(None)?,
    };
    let path = request.uri().path();
    match Service::from_path(path) {
        Some(service) if allowed(identity.role(), service) => Ok(identity),
        Some(_) => Err(role_not_allowed(
            identity.role(),
            path.trim_start_matches('/'),
        )),
        None => Err(role_not_allowed(
            identity.role(),
            &format!("unknown service {}", path.trim_start_matches('/')),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_each_role() {
        for uri in [
            "spiffe://posgate/store/S001/terminal/T01",
            "spiffe://posgate/auditor/a1",
            "spiffe://posgate/operator/o-1",
            "spiffe://posgate/auditor/jane.doe",
        ] {
            let identity = Identity::parse_spiffe(uri).expect(uri);
            assert_eq!(identity.spiffe_id(), uri);
        }
    }

    #[test]
    fn refuses_foreign_and_malformed_ids() {
        for uri in [
            "spiffe://other/store/S001/terminal/T01",
            "spiffe://posgatex/auditor/a1",
            "https://posgate/auditor/a1",
            "spiffe://posgate/store/S001",
            "spiffe://posgate/store/S001/terminal/",
            "spiffe://posgate/store/S001/terminal/T01/extra",
            "spiffe://posgate/auditor/a1/../x",
            "spiffe://posgate/admin/a1",
        ] {
            assert!(Identity::parse_spiffe(uri).is_err(), "{uri} was accepted");
        }
    }

    /// A connection's certificates are parsed once; another connection's
    /// (another `Arc`, even at a freed one's address) are parsed anew.
    #[test]
    fn identities_are_parsed_once_per_connection() {
        let der = |uri: &str| {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params
                .subject_alt_names
                .push(rcgen::SanType::URI(uri.try_into().unwrap()));
            let key = rcgen::KeyPair::generate().unwrap();
            CertificateDer::from(params.self_signed(&key).unwrap().der().to_vec())
        };
        let first = Arc::new(vec![der("spiffe://posgate/store/S001/terminal/T01")]);
        let identity = connection_identity(&first).unwrap();
        assert_eq!(connection_identity(&first).unwrap(), identity);
        drop(first);
        let second = Arc::new(vec![der("spiffe://posgate/auditor/a1")]);
        assert_eq!(
            connection_identity(&second).unwrap(),
            Identity::Auditor {
                auditor_id: "a1".to_owned()
            }
        );
    }

    #[test]
    fn role_table_denies_by_default() {
        assert!(allowed(Role::Terminal, Service::Payment));
        assert!(!allowed(Role::Terminal, Service::Audit));
        assert!(allowed(Role::Auditor, Service::Audit));
        assert!(!allowed(Role::Auditor, Service::BillPayment));
        assert!(!allowed(Role::Operator, Service::Payment));
        assert!(allowed(Role::Operator, Service::Health));
        assert_eq!(Service::from_path("/posgate.v1.Unknown/X"), None);
        assert_eq!(
            Service::from_path("/grpc.health.v1.Health/Check"),
            Some(Service::Health)
        );
    }
}
