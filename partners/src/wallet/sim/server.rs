//! The HTTPS side: accept loop with a connection limit, TLS with client
//! certificates, HTTP/1.1 through hyper, and per request: verify the
//! signature and digest (401 otherwise), check the Idempotency-Key, apply to
//! the ledger, sign the answer, deliver faults. Shutdown is a watch channel
//! every loop selects on (as in mini-redis and the bank simulator).

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

use super::faults::{Fault, FaultPlan};
use super::ledger::{Ledger, Outcome, RC_OTHER};
use super::stats::WalletSimStats;
use crate::http::signature::{IDEMPOTENCY_KEY, SIGNATURE};
use crate::http::{RequestParts, Signer, Verifier, lock, unix_now_s};
use crate::wallet::api::{
    self, BalanceRequest, DeclineCode, FieldError, PaymentRequest, Problem, RefundRequest,
    ResultStatus, ReversalRequest, ReversalResult, TopUpRequest, TransactionStatus, WalletBalance,
    WalletResult, is_visible_ascii,
};

/// Connections served at once: posgate pools a few dozen per instance.
const MAX_CONNECTIONS: usize = 256;
/// Largest request body read, bytes: wallet requests are a few hundred.
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

pub(crate) struct Shared {
    pub signer: Signer,
    pub verifier: Verifier,
    pub ledger: Mutex<Ledger>,
    pub faults: Mutex<FaultPlan>,
    pub stats: Mutex<WalletSimStats>,
    answers: Mutex<HashMap<String, StoredAnswer>>,
}

impl Shared {
    pub fn new(signer: Signer, verifier: Verifier, ledger: Ledger, faults: FaultPlan) -> Self {
        Self {
            signer,
            verifier,
            ledger: Mutex::new(ledger),
            faults: Mutex::new(faults),
            stats: Mutex::new(WalletSimStats::default()),
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

pub(crate) async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
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
                    tracing::warn!(%error, "wallet sim: accept failed");
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
                    tracing::debug!(%peer, %error, "wallet sim: TLS handshake failed");
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
                        tracing::debug!(%peer, %error, "wallet sim: connection ended");
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
struct Answer {
    status: StatusCode,
    problem: bool,
    body: Bytes,
    /// The `Allow` header of a 405.
    allow: Option<&'static str>,
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Answer {
    Answer {
        status,
        problem: false,
        body: Bytes::from(serde_json::to_vec(value).expect("wire models serialize")),
        allow: None,
    }
}

fn problem(status: StatusCode, kind: &str, detail: String, field: Option<String>) -> Answer {
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

fn bad_request(error: FieldError) -> Answer {
    problem(
        StatusCode::BAD_REQUEST,
        "invalid-field",
        error.reason,
        Some(error.field),
    )
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn handle(
    shared: &Shared,
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
    lock(&shared.stats).requests += 1;
    let (answer, fault) = verify_and_route(shared, &parts, &target_uri, body).await;
    let request = RequestParts {
        method: parts.method.as_str(),
        target_uri: &target_uri,
        headers: &parts.headers,
    };
    deliver(shared, request, answer, fault, shutdown).await
}

async fn verify_and_route(
    shared: &Shared,
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
        lock(&shared.stats).unauthorized += 1;
        tracing::info!(%error, path = %parts.uri.path(), "wallet sim: request refused");
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
async fn deliver(
    shared: &Shared,
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
        tracing::error!(%error, "wallet sim: cannot sign answer");
        return Err(DropConnection);
    }
    match fault {
        Fault::None => {}
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

/// Which operation a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    TopUp,
    Payment,
    Refund,
    Reversal,
    Balance,
}

impl Operation {
    fn of(path: &str) -> Option<Self> {
        Some(match path {
            api::TOP_UPS_PATH => Self::TopUp,
            api::PAYMENTS_PATH => Self::Payment,
            api::REFUNDS_PATH => Self::Refund,
            api::REVERSALS_PATH => Self::Reversal,
            api::BALANCE_PATH => Self::Balance,
            _ => return None,
        })
    }

    fn faultable(self) -> bool {
        self != Self::Balance
    }

    /// The name `faults.only` uses.
    fn name(self) -> &'static str {
        match self {
            Self::TopUp => "top_up",
            Self::Payment => "payment",
            Self::Refund => "refund",
            Self::Reversal => "reversal",
            Self::Balance => "balance",
        }
    }
}

async fn route(
    shared: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> (Answer, Fault) {
    if let Some(id) = path.strip_prefix(api::TRANSACTIONS_PATH) {
        if *method != Method::GET {
            return (method_not_allowed(method, "GET"), Fault::None);
        }
        return (transaction_status(shared, id), Fault::None);
    }
    let Some(operation) = Operation::of(path) else {
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
    let faulted =
        operation.faultable() && lock(&shared.faults).config().applies_to(operation.name());
    let (fault, latency, decline_all) = if faulted {
        let mut plan = lock(&shared.faults);
        (
            plan.draw(),
            plan.latency(),
            plan.config().decline_all.clone(),
        )
    } else {
        (Fault::None, Duration::ZERO, None)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(answer) = replay_or_conflict(shared, &key, &fingerprint) {
        return (answer, fault);
    }
    let answer = apply(shared, operation, body, decline_all.as_deref());
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
    if fault != Fault::None {
        lock(&shared.stats).faults_injected += 1;
    }
    (answer, fault)
}

/// The stored answer for a repeated Idempotency-Key, or 409 if the request differs.
fn replay_or_conflict(shared: &Shared, key: &str, fingerprint: &[u8]) -> Option<Answer> {
    let answers = lock(&shared.answers);
    let stored = answers.get(key)?;
    if stored.fingerprint != fingerprint {
        lock(&shared.stats).conflicts += 1;
        return Some(problem(
            StatusCode::CONFLICT,
            "idempotency-key-reused",
            "Idempotency-Key already used for a different request".into(),
            None,
        ));
    }
    lock(&shared.stats).idempotent_replays += 1;
    Some(Answer {
        status: StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK),
        problem: false,
        body: stored.body.clone(),
        allow: None,
    })
}

fn result_of(transaction_id: &str, outcome: Outcome) -> WalletResult {
    WalletResult {
        transaction_id: transaction_id.to_owned(),
        status: outcome.status,
        decline_code: outcome.decline_code,
        operator_response_code: outcome.response_code.to_owned(),
        operator_reference: outcome.operator_reference,
        wallet: outcome.wallet,
        balance_after: outcome.balance_after,
        processed_at: outcome.processed_at,
    }
}

fn declined_by_fault(transaction_id: &str, code: &str) -> WalletResult {
    WalletResult {
        transaction_id: transaction_id.to_owned(),
        status: ResultStatus::Declined,
        decline_code: Some(DeclineCode::Other),
        operator_response_code: code.chars().take(16).collect::<String>().if_empty(RC_OTHER),
        operator_reference: None,
        wallet: None,
        balance_after: None,
        processed_at: now_rfc3339(),
    }
}

trait IfEmpty {
    fn if_empty(self, fallback: &str) -> String;
}

impl IfEmpty for String {
    fn if_empty(self, fallback: &str) -> String {
        if self.is_empty() {
            fallback.to_owned()
        } else {
            self
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    body: &[u8],
    check: impl Fn(&T) -> Result<(), FieldError>,
) -> Result<T, Answer> {
    let value = api::parse_body::<T>(body).map_err(bad_request)?;
    check(&value).map_err(bad_request)?;
    Ok(value)
}

/// A top-up, payment or refund: declined by the `decline_all` fault without
/// touching the books, or applied by `move_money`.
fn money_move(
    shared: &Shared,
    decline_all: Option<&str>,
    transaction_id: &str,
    move_money: impl FnOnce(&mut Ledger) -> Option<Outcome>,
) -> Answer {
    if let Some(code) = decline_all {
        return json(StatusCode::OK, &declined_by_fault(transaction_id, code));
    }
    match move_money(&mut lock(&shared.ledger)) {
        Some(outcome) => json(StatusCode::OK, &result_of(transaction_id, outcome)),
        None => problem(
            StatusCode::NOT_FOUND,
            "unknown-transaction",
            "original_transaction_id is not a transaction of this operator".into(),
            Some("original_transaction_id".into()),
        ),
    }
}

fn apply(shared: &Shared, operation: Operation, body: &[u8], decline_all: Option<&str>) -> Answer {
    let now = now_rfc3339();
    let answer = match operation {
        Operation::TopUp => parse::<TopUpRequest>(body, TopUpRequest::check).map(|request| {
            lock(&shared.stats).top_ups += 1;
            money_move(shared, decline_all, &request.transaction_id, |ledger| {
                Some(ledger.top_up(&request, &now))
            })
        }),
        Operation::Payment => parse::<PaymentRequest>(body, PaymentRequest::check).map(|request| {
            lock(&shared.stats).payments += 1;
            money_move(shared, decline_all, &request.transaction_id, |ledger| {
                Some(ledger.pay(&request, &now))
            })
        }),
        Operation::Refund => parse::<RefundRequest>(body, RefundRequest::check).map(|request| {
            lock(&shared.stats).refunds += 1;
            money_move(shared, decline_all, &request.transaction_id, |ledger| {
                ledger.refund(&request, &now)
            })
        }),
        Operation::Reversal => {
            parse::<ReversalRequest>(body, ReversalRequest::check).map(|request| {
                lock(&shared.stats).reversals += 1;
                let (status, balance_after) =
                    lock(&shared.ledger).reverse(&request.original_transaction_id);
                json(
                    StatusCode::OK,
                    &ReversalResult {
                        original_transaction_id: request.original_transaction_id,
                        status,
                        balance_after,
                        processed_at: now,
                    },
                )
            })
        }
        Operation::Balance => parse::<BalanceRequest>(body, BalanceRequest::check).map(|request| {
            lock(&shared.stats).balance_inquiries += 1;
            balance(shared, &request, now)
        }),
    };
    answer.unwrap_or_else(|answer| answer)
}

fn balance(shared: &Shared, request: &BalanceRequest, now: String) -> Answer {
    match lock(&shared.ledger).balance(&request.wallet) {
        Some((wallet, balance, limits, blocked)) => json(
            StatusCode::OK,
            &WalletBalance {
                wallet,
                balance,
                limits,
                blocked,
                as_of: now,
            },
        ),
        None => problem(
            StatusCode::NOT_FOUND,
            "unknown-wallet",
            "the operator does not know this wallet".into(),
            Some("wallet".into()),
        ),
    }
}

fn transaction_status(shared: &Shared, id: &str) -> Answer {
    lock(&shared.stats).status_inquiries += 1;
    if !api::is_transaction_id(id) {
        return bad_request(FieldError {
            field: "transaction_id".into(),
            reason: "not a lower-case UUID".into(),
        });
    }
    match lock(&shared.ledger).status(id) {
        Some((kind, status, amount, processed_at)) => json(
            StatusCode::OK,
            &TransactionStatus {
                transaction_id: id.to_owned(),
                kind,
                status,
                amount: Some(amount),
                processed_at: Some(processed_at),
            },
        ),
        None => problem(
            StatusCode::NOT_FOUND,
            "unknown-transaction",
            "no such transaction".into(),
            Some("transaction_id".into()),
        ),
    }
}
