//! The partner API client: HTTPS with mutual TLS over a connection pool,
//! every request signed and every answer verified, a timeout per request,
//! retries only where the operation is idempotent, and a circuit breaker per
//! partner.
//!
//! Outcomes are what the caller needs to stay correct with money:
//! [`CallError::Unavailable`] means nothing reached the partner (safe to fail
//! the POS call without recording anything); [`CallError::OutcomeUnknown`]
//! means the request may have been applied (the caller must resolve it, by
//! reversal or status inquiry).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use metrics::SharedString;

use super::breaker::{BreakerConfig, BreakerState, CircuitBreaker};
use super::signature::{IDEMPOTENCY_KEY, RequestParts, Signer, Verifier};
use super::tls::{TlsError, TlsFiles};
use super::{lock, unix_now_s};
use crate::metrics::CallOutcome;

/// Default time for one attempt, connect to last body byte: partner API
/// calls are single database writes on the partner's side.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Default TCP connect and TLS handshake budget; a partner that cannot
/// accept in this long is down, and nothing was sent yet.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default attempts per call (the first plus two retries).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Upper bound on attempts whatever the config says.
pub const MAX_ATTEMPTS_LIMIT: u32 = 10;
/// Idle connections kept per partner host: enough for a few hundred calls per
/// second at a few milliseconds each without reconnecting.
pub const POOL_MAX_IDLE_PER_HOST: usize = 32;
/// How long an idle pooled connection is kept.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest answer accepted, bytes: partner answers are a few hundred bytes.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// First retry delay; doubled per retry up to [`RETRY_BACKOFF_MAX`].
pub const RETRY_BACKOFF_BASE: Duration = Duration::from_millis(50);
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How to reach one partner.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// posgate's name of the partner for logs and metrics, e.g. `wallet:ICASH`.
    pub partner: String,
    /// `https://host:port` (a trailing `/` is dropped).
    pub base_url: String,
    pub tls: TlsFiles,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_attempts: u32,
    pub breaker: BreakerConfig,
}

impl ClientSettings {
    pub fn new(partner: impl Into<String>, base_url: impl Into<String>, tls: TlsFiles) -> Self {
        Self {
            partner: partner.into(),
            base_url: base_url.into(),
            tls,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            breaker: BreakerConfig::default(),
        }
    }
}

/// Whether a call may be sent again after an unknown outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// A read, or a POST whose Idempotency-Key makes the partner apply it once.
    Idempotent,
    /// Send at most once (retried only when nothing was sent).
    Never,
}

/// One call to a partner.
#[derive(Debug, Clone)]
pub struct PartnerRequest<'a> {
    pub method: Method,
    /// Path and query, starting with `/`.
    pub path: &'a str,
    /// The JSON body (empty for GET).
    pub body: Vec<u8>,
    pub idempotency_key: Option<&'a str>,
    pub retry: Retry,
}

/// A verified answer (any 2xx or 4xx status).
#[derive(Debug, Clone)]
pub struct PartnerResponse {
    pub status: u16,
    pub body: Bytes,
    /// The key id that signed it.
    pub key_id: String,
    /// Attempts made, 1 when the first one answered.
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Nothing reached the partner (connect or TLS failure, circuit open).
    #[error("partner {partner} unavailable: {reason}")]
    Unavailable {
        partner: String,
        reason: String,
        /// The circuit breaker refused the last attempt.
        breaker_open: bool,
    },
    /// The request may have been applied; no verified answer came back.
    #[error("partner {partner} outcome unknown: {reason}")]
    OutcomeUnknown {
        partner: String,
        reason: String,
        /// The last attempt that went out had no answer in time.
        timed_out: bool,
    },
    /// posgate could not build or sign the request (nothing was sent).
    #[error("partner {partner} request not sent: {reason}")]
    Local { partner: String, reason: String },
}

impl CallError {
    /// The call's `outcome` label (see [`crate::metrics`]).
    pub fn outcome(&self) -> CallOutcome {
        match self {
            Self::Unavailable {
                breaker_open: true, ..
            } => CallOutcome::BreakerOpen,
            Self::Unavailable { .. } | Self::Local { .. } => CallOutcome::Unavailable,
            Self::OutcomeUnknown {
                timed_out: true, ..
            } => CallOutcome::Timeout,
            Self::OutcomeUnknown { .. } => CallOutcome::Error,
        }
    }
}

/// The result of one attempt.
enum Attempt {
    Answered(PartnerResponse),
    NotSent(String),
    /// Sent, no usable answer; `timed_out` when none came within the request timeout.
    Unknown {
        reason: String,
        timed_out: bool,
    },
}

impl Attempt {
    /// Sent, and what came back (or failed) is no usable answer.
    fn unknown(reason: String) -> Self {
        Self::Unknown {
            reason,
            timed_out: false,
        }
    }
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A pooled, signing, verifying client for one partner.
pub struct PartnerClient {
    settings: ClientSettings,
    /// `settings.partner` as the metrics' `partner` label.
    partner_label: SharedString,
    http: HttpsClient,
    signer: Signer,
    verifier: Arc<Verifier>,
    breaker: Mutex<CircuitBreaker>,
}

impl std::fmt::Debug for PartnerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerClient")
            .field("partner", &self.settings.partner)
            .field("base_url", &self.settings.base_url)
            .finish_non_exhaustive()
    }
}

impl PartnerClient {
    /// Loads the TLS files and builds the pool; connects lazily.
    pub fn new(
        mut settings: ClientSettings,
        signer: Signer,
        verifier: Arc<Verifier>,
    ) -> Result<Self, TlsError> {
        while settings.base_url.ends_with('/') {
            settings.base_url.pop();
        }
        settings.max_attempts = settings.max_attempts.clamp(1, MAX_ATTEMPTS_LIMIT);
        let tls = super::tls::client_config(&settings.tls)?;
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(settings.connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(connector);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .build(https);
        Ok(Self {
            breaker: Mutex::new(CircuitBreaker::new(settings.breaker)),
            partner_label: crate::metrics::partner_label(&settings.partner),
            settings,
            http,
            signer,
            verifier,
        })
    }

    pub fn partner(&self) -> &str {
        &self.settings.partner
    }

    /// The partner's name as the metrics' `partner` label.
    pub(crate) fn partner_label(&self) -> &SharedString {
        &self.partner_label
    }

    pub fn breaker_state(&self) -> BreakerState {
        lock(&self.breaker).state()
    }

    /// The longest one call may take, every attempt and its backoff
    /// included: past it, a request recorded `in_progress` has lost its caller.
    pub fn longest_call(&self) -> Duration {
        (self.settings.request_timeout + RETRY_BACKOFF_MAX) * self.settings.max_attempts
    }

    /// Sends `request` with retries per its [`Retry`] and the breaker.
    pub async fn call(&self, request: PartnerRequest<'_>) -> Result<PartnerResponse, CallError> {
        let mut sent_before = false;
        let mut timed_out = false;
        let mut breaker_open = false;
        let mut last_reason = String::new();
        for attempt in 1..=self.settings.max_attempts {
            if attempt > 1 {
                tokio::time::sleep(backoff(attempt - 1)).await;
            }
            if !lock(&self.breaker).try_acquire(tokio::time::Instant::now()) {
                "circuit open".clone_into(&mut last_reason);
                breaker_open = true;
                break;
            }
            match self.attempt(&request).await {
                Ok(Attempt::Answered(mut response)) => {
                    lock(&self.breaker).record_success();
                    response.attempts = attempt;
                    return Ok(response);
                }
                Ok(Attempt::NotSent(reason)) => {
                    lock(&self.breaker).record_failure(tokio::time::Instant::now());
                    tracing::debug!(partner = %self.settings.partner, attempt, %reason, "partner call not sent");
                    last_reason = reason;
                }
                Ok(Attempt::Unknown {
                    reason,
                    timed_out: timeout,
                }) => {
                    lock(&self.breaker).record_failure(tokio::time::Instant::now());
                    tracing::warn!(partner = %self.settings.partner, attempt, %reason, "partner call outcome unknown");
                    sent_before = true;
                    timed_out = timeout;
                    last_reason = reason;
                    if request.retry == Retry::Never {
                        break;
                    }
                }
                Err(error) => return Err(error),
            }
        }
        let partner = self.settings.partner.clone();
        Err(if sent_before {
            CallError::OutcomeUnknown {
                partner,
                reason: last_reason,
                timed_out,
            }
        } else {
            CallError::Unavailable {
                partner,
                reason: last_reason,
                breaker_open,
            }
        })
    }

    async fn attempt(&self, request: &PartnerRequest<'_>) -> Result<Attempt, CallError> {
        let local = |reason: String| CallError::Local {
            partner: self.settings.partner.clone(),
            reason,
        };
        let target_uri = format!("{}{}", self.settings.base_url, request.path);
        let uri: http::Uri = target_uri
            .parse()
            .map_err(|_| local(format!("bad URI {target_uri}")))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        if let Some(key) = request.idempotency_key {
            let value = HeaderValue::from_str(key)
                .map_err(|_| local("idempotency key is not a header value".into()))?;
            headers.insert(IDEMPOTENCY_KEY, value);
        }
        self.signer
            .sign_request(
                request.method.as_str(),
                &target_uri,
                &mut headers,
                &request.body,
                unix_now_s(),
            )
            .await
            .map_err(|error| local(error.to_string()))?;
        let mut http_request = hyper::Request::builder()
            .method(request.method.clone())
            .uri(uri)
            .body(Full::new(Bytes::from(request.body.clone())))
            .map_err(|error| local(error.to_string()))?;
        http_request.headers_mut().extend(headers.clone());

        let exchange = async {
            let response = match self.http.request(http_request).await {
                Ok(response) => response,
                Err(error) if error.is_connect() => {
                    return Attempt::NotSent(format!("connect: {error}"));
                }
                Err(error) => return Attempt::unknown(format!("exchange: {error}")),
            };
            let (parts, body) = response.into_parts();
            let body = match Limited::new(body, MAX_RESPONSE_BYTES).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) => return Attempt::unknown(format!("reading answer: {error}")),
            };
            let status = parts.status.as_u16();
            let sent = RequestParts {
                method: request.method.as_str(),
                target_uri: &target_uri,
                headers: &headers,
            };
            match self
                .verifier
                .verify_response(status, &parts.headers, &body, sent, unix_now_s())
            {
                Ok(verified) if status < 500 => Attempt::Answered(PartnerResponse {
                    status,
                    body,
                    key_id: verified.key_id,
                    attempts: 0,
                }),
                Ok(_) => Attempt::unknown(format!("partner answered {status}")),
                Err(error) => Attempt::unknown(format!("answer refused: {error}")),
            }
        };
        Ok(
            tokio::time::timeout(self.settings.request_timeout, exchange)
                .await
                .unwrap_or_else(|_| Attempt::Unknown {
                    reason: format!(
                        "no answer within {} ms",
                        self.settings.request_timeout.as_millis()
                    ),
                    timed_out: true,
                }),
        )
    }
}

fn backoff(retry: u32) -> Duration {
    RETRY_BACKOFF_BASE
        .saturating_mul(1_u32 << retry.min(16).saturating_sub(1))
        .min(RETRY_BACKOFF_MAX)
}
