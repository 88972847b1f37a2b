//! The HTTPS side shared by the partner simulators: accept loop with a
//! connection limit, TLS with client certificates, HTTP/1.1 through hyper,
//! and per request: verify the signature and digest (401 otherwise), check
//! the Idempotency-Key, hand the request to the simulator's
//! [`PartnerService`], sign the answer, deliver faults. Shutdown is a watch
//! channel every loop selects on (as in mini-redis and the bank simulator).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use super::faults::{Fault, FaultConfig, FaultPlan};
use crate::lock;
use posgate_partners::http::signature::{IDEMPOTENCY_KEY, SIGNATURE};
use posgate_partners::http::{RequestParts, Signer, Verifier, unix_now_s};
use posgate_partners::wallet::api::{self, FieldError, Problem, is_visible_ascii};

/// Connections served at once: posgate pools a few dozen per instance.
const MAX_CONNECTIONS: usize = 256;
/// Largest request body read, bytes: partner requests are a few hundred.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// A client that has not finished its TLS handshake in this long is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Idempotency keys remembered at most; past it POSTs get 503 rather than
/// being applied without replay protection.
const MAX_IDEMPOTENCY_KEYS: usize = 2_000_000;
/// Pause after a failed accept (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A stored answer for an Idempotency-Key.
struct StoredAnswer {
    /// SHA-256 of method, path and body: the "same request" test.
    fingerprint: Vec<u8>,
    status: u16,
    body: Bytes,
}

/// What one simulator (wallet operator, biller) adds to the shared server:
/// its POST operations and its books.
pub trait PartnerService: Send + Sync + 'static {
    /// One POST endpoint.
    type Operation: Copy + Send;
    /// Names the simulator in logs, e.g. `wallet sim`.
    const NAME: &'static str;
    /// The POST operation at `path`, if any.
    fn operation(path: &str) -> Option<Self::Operation>;
    /// The faultable operations' names, as `faults.only` names them.
    const FAULTABLE: &'static [&'static str];
    /// The operation's name in `faults.only`.
    fn operation_name(operation: Self::Operation) -> &'static str;
    /// Whether the fault plan applies to it (money-moving requests only).
    fn faultable(operation: Self::Operation) -> bool {
        Self::FAULTABLE.contains(&Self::operation_name(operation))
    }
    /// Parses, checks and applies one request (once per Idempotency-Key).
    fn apply(&self, operation: Self::Operation, body: &[u8], faults: &FaultConfig) -> Answer;
    /// `GET /v1/transactions/{id}` (`id` not yet checked).
    fn transaction_status(&self, id: &str) -> Answer;
    /// The books as JSON, for the read-only admin endpoint (`GET /ledger`).
    /// Never a credential (member barcodes, keys).
    fn ledger_json(&self) -> serde_json::Value;
}

/// Counters the shared server keeps for every simulator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerCounters {
    pub requests: u64,
    /// Refused with 401 (signature, digest, replay).
    pub unauthorized: u64,
    /// Answered from the idempotency store.
    pub idempotent_replays: u64,
    /// Idempotency-Key reused with a different body (409).
    pub conflicts: u64,
    pub faults_injected: u64,
}

pub(crate) struct Shared<S> {
    pub signer: Signer,
    pub verifier: Verifier,
    pub service: S,
    pub faults: Mutex<FaultPlan>,
    pub counters: Mutex<ServerCounters>,
    answers: Mutex<HashMap<String, StoredAnswer>>,
}

impl<S: PartnerService> Shared<S> {
    pub fn new(signer: Signer, verifier: Verifier, service: S, faults: FaultPlan) -> Self {
        Self {
            signer,
            verifier,
            service,
            faults: Mutex::new(faults),
            counters: Mutex::new(ServerCounters::default()),
            answers: Mutex::new(HashMap::new()),
        }
    }
}

/// The handler asks hyper to close the connection without answering.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DropConnection {}

pub(crate) async fn accept_loop<S: PartnerService>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared<S>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = shutdown.changed() => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "{}: accept failed", S::NAME);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        let mut connection_shutdown = shutdown.clone();
        connections.spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "{}: TLS handshake failed", S::NAME);
                    return;
                }
                Err(_) => return,
            };
            let request_shutdown = connection_shutdown.clone();
            let service = service_fn(move |request| {
                let shared = shared.clone();
                let shutdown = request_shutdown.clone();
                async move { handle(&shared, request, shutdown).await }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service);
            tokio::select! {
                result = connection => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "{}: connection ended", S::NAME);
                    }
                }
                _ = connection_shutdown.changed() => {}
            }
        });
        // Reap finished connections so the set stays as small as the live ones.
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
}

/// What to send: status, content type and JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    problem: bool,
    pub body: Bytes,
    /// The `Allow` header of a 405.
    allow: Option<&'static str>,
}

pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Answer {
    Answer {
        status,
        problem: false,
        body: Bytes::from(serde_json::to_vec(value).expect("wire models serialize")),
        allow: None,
    }
}

pub fn problem(status: StatusCode, kind: &str, detail: String, field: Option<String>) -> Answer {
    let body = Problem {
        kind: format!("urn:posgate:problem:{kind}"),
        title: status.canonical_reason().unwrap_or("error").to_owned(),
        status: status.as_u16(),
        detail: Some(detail),
        field,
    };
    Answer {
        problem: true,
        ..json(status, &body)
    }
}

fn method_not_allowed(method: &Method, allowed: &'static str) -> Answer {
    Answer {
        allow: Some(allowed),
        ..problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            format!("{method} is not allowed here; use {allowed}"),
            None,
        )
    }
}

pub fn bad_request(error: FieldError) -> Answer {
    problem(
        StatusCode::BAD_REQUEST,
        "invalid-field",
        error.reason,
        Some(error.field),
    )
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn handle<S: PartnerService>(
    shared: &Shared<S>,
    request: hyper::Request<Incoming>,
    shutdown: watch::Receiver<bool>,
) -> Result<Response<Full<Bytes>>, DropConnection> {
    let (parts, body) = request.into_parts();
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| parts.uri.authority().map(http::uri::Authority::as_str))
        .unwrap_or_default()
        .to_owned();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str)
        .to_owned();
    let target_uri = format!("https://{host}{path_and_query}");
    lock(&shared.counters).requests += 1;
    let (answer, fault) = verify_and_route(shared, &parts, &target_uri, body).await;
    let request = RequestParts {
        method: parts.method.as_str(),
        target_uri: &target_uri,
        headers: &parts.headers,
    };
    deliver(shared, request, answer, fault, shutdown).await
}

async fn verify_and_route<S: PartnerService>(
    shared: &Shared<S>,
    parts: &http::request::Parts,
    target_uri: &str,
    body: Incoming,
) -> (Answer, Fault) {
    let body = match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            let answer = problem(
                StatusCode::BAD_REQUEST,
                "body",
                format!("unreadable body: {error}"),
                Some("body".into()),
            );
            return (answer, Fault::None);
        }
    };
    let request = RequestParts {
        method: parts.method.as_str(),
        target_uri,
        headers: &parts.headers,
    };
    if let Err(error) = shared.verifier.verify_request(request, &body, unix_now_s()) {
        lock(&shared.counters).unauthorized += 1;
        tracing::info!(%error, path = %parts.uri.path(), "{}: request refused", S::NAME);
        let answer = problem(
            StatusCode::UNAUTHORIZED,
            "bad-signature",
            error.to_string(),
            None,
        );
        return (answer, Fault::None);
    }
    route(
        shared,
        &parts.method,
        parts.uri.path(),
        &parts.headers,
        &body,
    )
    .await
}

/// Signs the answer and sends it, or applies the drawn fault instead.
async fn deliver<S: PartnerService>(
    shared: &Shared<S>,
    request: RequestParts<'_>,
    answer: Answer,
    fault: Fault,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Response<Full<Bytes>>, DropConnection> {
    let mut headers = HeaderMap::new();
    let content_type = if answer.problem {
        "application/problem+json"
    } else {
        "application/json"
    };
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    if let Some(allow) = answer.allow {
        headers.insert(http::header::ALLOW, HeaderValue::from_static(allow));
    }
    if let Err(error) = shared
        .signer
        .sign_response(
            answer.status.as_u16(),
            &mut headers,
            &answer.body,
            request,
            unix_now_s(),
        )
        .await
    {
        tracing::error!(%error, "{}: cannot sign answer", S::NAME);
        return Err(DropConnection);
    }
    match fault {
        Fault::None | Fault::ServerError => {}
        Fault::NoResponse => {
            // Hold the request open until the simulator stops.
            let _ = shutdown.wait_for(|stopped| *stopped).await;
            return Err(DropConnection);
        }
        Fault::DropConnection => return Err(DropConnection),
        Fault::BadSignature => corrupt_signature(&mut headers),
    }
    let mut response = Response::new(Full::new(answer.body));
    *response.status_mut() = answer.status;
    *response.headers_mut() = headers;
    Ok(response)
}

/// Flips one bit of the signature so it no longer verifies.
fn corrupt_signature(headers: &mut HeaderMap) {
    use base64::Engine as _;
    let Some(value) = headers.get(SIGNATURE).and_then(|value| value.to_str().ok()) else {
        return;
    };
    let Some(encoded) = value.split(':').nth(1) else {
        return;
    };
    let Ok(mut bytes) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
        return;
    };
    if let Some(first) = bytes.first_mut() {
        *first ^= 0x01;
    }
    let corrupted = format!(
        "sig1=:{}:",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    );
    if let Ok(value) = HeaderValue::from_str(&corrupted) {
        headers.insert(SIGNATURE, value);
    }
}

async fn route<S: PartnerService>(
    shared: &Shared<S>,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> (Answer, Fault) {
    if let Some(id) = path.strip_prefix(api::TRANSACTIONS_PATH) {
        if *method != Method::GET {
            return (method_not_allowed(method, "GET"), Fault::None);
        }
        return (shared.service.transaction_status(id), Fault::None);
    }
    let Some(operation) = S::operation(path) else {
        return (
            problem(
                StatusCode::NOT_FOUND,
                "no-such-endpoint",
                format!("no endpoint {method} {path}"),
                None,
            ),
            Fault::None,
        );
    };
    if *method != Method::POST {
        return (method_not_allowed(method, "POST"), Fault::None);
    }
    let Some(key) = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|value| value.to_str().ok())
        .filter(|key| is_visible_ascii(key, 1, 255))
        .map(str::to_owned)
    else {
        return (
            bad_request(FieldError {
                field: "Idempotency-Key".into(),
                reason: "required on every POST: 1-255 printable ASCII".into(),
            }),
            Fault::None,
        );
    };
    let fingerprint = {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(path.as_bytes());
        context.update(b"\n");
        context.update(body);
        context.finish().as_ref().to_vec()
    };
    let (fault, faults) = if S::faultable(operation)
        && lock(&shared.faults)
            .config()
            .applies_to(S::operation_name(operation))
    {
        let mut plan = lock(&shared.faults);
        (plan.draw(), plan.config().clone())
    } else {
        (Fault::None, FaultConfig::default())
    };
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    if fault != Fault::None {
        lock(&shared.counters).faults_injected += 1;
    }
    if !fault.applies() {
        let answer = problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the partner is overloaded; nothing was applied, try again".into(),
            None,
        );
        return (answer, fault);
    }
    if let Some(answer) = replay_or_conflict(shared, &key, &fingerprint) {
        return (answer, fault);
    }
    let answer = shared.service.apply(operation, body, &faults);
    if answer.status == StatusCode::OK {
        let mut answers = lock(&shared.answers);
        if answers.len() >= MAX_IDEMPOTENCY_KEYS {
            return (
                problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "full",
                    "idempotency store full".into(),
                    None,
                ),
                Fault::None,
            );
        }
        answers.insert(
            key,
            StoredAnswer {
                fingerprint,
                status: 200,
                body: answer.body.clone(),
            },
        );
    }
    (answer, fault)
}

/// The stored answer for a repeated Idempotency-Key, or 409 if the request differs.
fn replay_or_conflict<S>(shared: &Shared<S>, key: &str, fingerprint: &[u8]) -> Option<Answer> {
    let answers = lock(&shared.answers);
    let stored = answers.get(key)?;
    if stored.fingerprint != fingerprint {
        lock(&shared.counters).conflicts += 1;
        return Some(problem(
            StatusCode::CONFLICT,
            "idempotency-key-reused",
            "Idempotency-Key already used for a different request".into(),
            None,
        ));
    }
    lock(&shared.counters).idempotent_replays += 1;
    Some(Answer {
        status: StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK),
        problem: false,
        body: stored.body.clone(),
        allow: None,
    })
}

/// Parses a JSON body and applies the wire model's checks; either failure is a 400 naming the field.
pub fn parse<T: serde::de::DeserializeOwned>(
    body: &[u8],
    check: impl Fn(&T) -> Result<(), FieldError>,
) -> Result<T, Answer> {
    let value = api::parse_body::<T>(body).map_err(bad_request)?;
    check(&value).map_err(bad_request)?;
    Ok(value)
}

/// The 404 of a status inquiry or a reference to a transaction the partner never saw.
pub fn unknown_transaction(field: &str, detail: &str) -> Answer {
    problem(
        StatusCode::NOT_FOUND,
        "unknown-transaction",
        detail.to_owned(),
        Some(field.to_owned()),
    )
}

/// What a ledger says of one transaction: kind, state, amount, processed at.
pub type StatusFacts = (
    api::TransactionKind,
    api::TransactionState,
    api::Money,
    String,
);

/// The answer of `GET /v1/transactions/{id}`: 400 for an id that is not a
/// transaction id, 404 when `lookup` finds nothing, else the status.
pub fn status_answer(id: &str, lookup: impl FnOnce(&str) -> Option<StatusFacts>) -> Answer {
    if !api::is_transaction_id(id) {
        return bad_request(FieldError {
            field: "transaction_id".into(),
            reason: "not a lower-case UUID".into(),
        });
    }
    match lookup(id) {
        Some((kind, status, amount, processed_at)) => json(
            StatusCode::OK,
            &api::TransactionStatus {
                transaction_id: id.to_owned(),
                kind,
                status,
                amount: Some(amount),
                processed_at: Some(processed_at),
            },
        ),
        None => unknown_transaction("transaction_id", "no such transaction"),
    }
}
