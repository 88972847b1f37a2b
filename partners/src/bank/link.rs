//! The bank link (contract section 3): one persistent TCP (optionally TLS)
//! connection to a bank, many requests in flight on it.
//!
//! A background task connects, signs on (0800/001), optionally changes the
//! MAC key (0800/161), keeps the line alive with echoes (0800/301) when idle,
//! and reconnects with exponential backoff and jitter when the connection
//! drops. [`BankLink::send`] adds the MAC, sends, and waits for the response
//! with the same MTI class, STAN and RRN, whose MAC it verifies.
//!
//! # Layout
//! - this file: the public API (`LinkConfig`, `BankLink`, `LinkError`).
//! - [`in_flight`]: the table of requests waiting for an answer, and the
//!   recently finished ones that tell late and duplicate answers apart.
//! - [`session`]: the connection task: connect, sign-on, echo, key change,
//!   read and write loops, sign-off.
//! - [`transport`]: TCP and TLS connection set-up.
//! - [`backoff`]: reconnect delays.

mod backoff;
mod in_flight;
mod session;
mod transport;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use posgate_hsm::{Hsm, KeyRef};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use self::in_flight::{InFlight, MatchKey};
use super::protocol::{self, MacError, is_network};
use crate::iso8583::{Message, ascii_1987};

/// Default time a request waits for its answer.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound on requests in flight: enough for a busy store chain's
/// acquirer link, small enough that a stuck bank cannot pile up memory.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;
/// Default idle time before an echo.
pub const DEFAULT_ECHO_INTERVAL: Duration = Duration::from_secs(30);
/// Default TCP (and TLS handshake) connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default first reconnect delay.
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Default longest reconnect delay.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// The shortest echo and key change intervals honoured: shorter ones would
/// turn the keepalive into a busy loop against the bank.
pub const MIN_TIMER_INTERVAL: Duration = Duration::from_millis(100);
/// STANs are 6 digits, 000001 to 999999.
const MAX_STAN: u32 = 999_999;

/// How to reach one bank and which keys to use with it.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Used in logs, e.g. "acquirer".
    pub name: String,
    /// `host:port`.
    pub addr: String,
    pub request_timeout: Duration,
    /// Beyond this many requests in flight, `send` fails with `Busy` and sends nothing.
    pub max_in_flight: usize,
    /// Idle time after which an echo (0800/301) is sent.
    pub echo_interval: Duration,
    pub connect_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Field 32.
    pub acquirer_id: String,
    /// HSM label of the TDES MAC session key (tdes2/mac).
    pub mac_key: String,
    /// HSM label of the zone master key (tdes2/kek) new MAC keys arrive under.
    pub zmk: String,
    /// If set, a key change (0800/161) right after each sign-on and then at this interval.
    pub key_change_interval: Option<Duration>,
    pub tls: Option<LinkTls>,
    /// Where the link's own 0800s (sign-on, echo, key change, sign-off) take
    /// their STANs: `None` for the link's own counter (one process alone
    /// talks to the bank), or the gateway's shared per-day counter, so that
    /// several gateway instances never send one STAN twice in a day.
    pub stans: Option<Arc<dyn StanSource>>,
}

/// A source of STANs shared beyond this process (the gateway's database).
#[async_trait::async_trait]
pub trait StanSource: Send + Sync + std::fmt::Debug {
    /// The next STAN (6 digits), or why none could be had.
    async fn next_stan(&self) -> Result<String, String>;
}

impl LinkConfig {
    /// A configuration with the default timeouts and limits.
    pub fn new(
        name: impl Into<String>,
        addr: impl Into<String>,
        acquirer_id: impl Into<String>,
        mac_key: impl Into<String>,
        zmk: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            addr: addr.into(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            echo_interval: DEFAULT_ECHO_INTERVAL,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            backoff_min: DEFAULT_BACKOFF_MIN,
            backoff_max: DEFAULT_BACKOFF_MAX,
            acquirer_id: acquirer_id.into(),
            mac_key: mac_key.into(),
            zmk: zmk.into(),
            key_change_interval: None,
            tls: None,
            stans: None,
        }
    }
}

/// TLS towards the bank (rustls client).
#[derive(Debug, Clone)]
pub struct LinkTls {
    /// PEM file with the CA certificates the bank's certificate must chain to.
    pub ca_pem_path: PathBuf,
    /// The name the bank's certificate must carry.
    pub server_name: String,
}

/// Why `send` gave no answer. [`LinkError::outcome_unknown`] tells whether
/// the bank may have acted on the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("bank link is down or not signed on; nothing was sent")]
    NotConnected,
    #[error("too many requests in flight on the bank link; nothing was sent")]
    Busy,
    #[error("no answer from the bank in time; outcome unknown")]
    Timeout,
    #[error("connection to the bank dropped before the answer; outcome unknown")]
    ConnectionLost,
    #[error("the bank's answer failed MAC verification; outcome unknown")]
    BadMac,
    #[error("HSM failure before sending: {0}")]
    Hsm(String),
    #[error("message could not be encoded: {0}")]
    Codec(String),
    #[error("no STAN for the link's own message: {0}; nothing was sent")]
    NoStan(String),
}

impl LinkError {
    /// True when the request went out and the bank may have acted on it:
    /// the caller must reverse or enquire, never simply retry as new.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::Timeout | Self::ConnectionLost | Self::BadMac)
    }
}

/// A link to one bank. Cheap to clone; all clones share one connection.
/// When the last clone is dropped, the link shuts down as by
/// [`BankLink::shutdown`], in the background.
#[derive(Clone)]
pub struct BankLink {
    inner: Arc<Inner>,
    _owners: Arc<ShutdownOnDrop>,
}

/// Shared by all clones of one `BankLink` (the connection task holds only
/// `Inner`): its drop tells the task to sign off and stop.
struct ShutdownOnDrop(Arc<Inner>);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        self.0.shutdown.send_replace(true);
        self.0.up.send_replace(false);
    }
}

/// What the API and the connection task share.
struct Inner {
    config: LinkConfig,
    /// The link's settlement party, `bank:{name}`, as the metrics' `partner` label.
    partner_label: metrics::SharedString,
    hsm: Arc<dyn Hsm>,
    next_stan: AtomicU32,
    in_flight: Mutex<InFlight>,
    /// True while signed on and not shutting down.
    up: watch::Sender<bool>,
    /// Set once by `shutdown`.
    shutdown: watch::Sender<bool>,
    /// When a frame last went out or came in, for the idle echo.
    last_activity: Mutex<Instant>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for BankLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BankLink")
            .field("name", &self.inner.config.name)
            .field("addr", &self.inner.config.addr)
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

impl BankLink {
    /// Spawns the connection task and returns at once; [`BankLink::is_up`]
    /// tells when it has signed on. Must be called inside a tokio runtime.
    /// Echo and key change intervals below [`MIN_TIMER_INTERVAL`] are raised to it.
    pub fn start(mut config: LinkConfig, hsm: Arc<dyn Hsm>) -> BankLink {
        config.echo_interval = config.echo_interval.max(MIN_TIMER_INTERVAL);
        config.key_change_interval = config
            .key_change_interval
            .map(|interval| interval.max(MIN_TIMER_INTERVAL));
        let (up, _) = watch::channel(false);
        let (shutdown, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            in_flight: Mutex::new(InFlight::new(config.max_in_flight)),
            partner_label: crate::metrics::partner_label(&format!("bank:{}", config.name)),
            config,
            hsm,
            next_stan: AtomicU32::new(0),
            up,
            shutdown,
            last_activity: Mutex::new(Instant::now()),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(session::run(Arc::clone(&inner)));
        *lock(&inner.task) = Some(task);
        BankLink {
            _owners: Arc::new(ShutdownOnDrop(Arc::clone(&inner))),
            inner,
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// True while signed on (and not shutting down).
    pub fn is_up(&self) -> bool {
        *self.inner.up.borrow()
    }

    /// Waits until signed on or `timeout` passes; returns `is_up()`.
    pub async fn wait_up(&self, timeout: Duration) -> bool {
        let mut up = self.inner.up.subscribe();
        matches!(
            tokio::time::timeout(timeout, up.wait_for(|up| *up)).await,
            Ok(Ok(_))
        )
    }

    /// Next STAN (6 digits, 000001..=999999, wrapping). With at most
    /// `max_in_flight` requests waiting, a wrapped STAN is long answered.
    pub fn next_stan(&self) -> String {
        self.inner.next_stan()
    }

    /// Sends a request (fields 7, 11 and 37 set by the caller; the MAC is
    /// added here) and waits for the matching response, whose MAC is verified.
    /// Each call counts in the partner call metrics ([`crate::metrics`]).
    pub async fn send(&self, request: Message) -> Result<Message, LinkError> {
        let started = std::time::Instant::now();
        let answer = self.send_unmetered(request).await;
        crate::metrics::record_call(
            &self.inner.partner_label,
            call_outcome(&answer),
            started.elapsed(),
        );
        answer
    }

    async fn send_unmetered(&self, mut request: Message) -> Result<Message, LinkError> {
        if is_network(request.mti()) || request.mti().is_response() {
            return Err(LinkError::Codec(format!(
                "send() carries requests of the financial classes, not {}",
                request.mti().as_str()
            )));
        }
        let key = MatchKey::for_request(&request)?;
        if !self.is_up() {
            return Err(LinkError::NotConnected);
        }
        let (frame, key_version) = protocol::pack_with_mac(
            ascii_1987(),
            &mut request,
            self.inner.hsm.as_ref(),
            &KeyRef::latest(self.inner.config.mac_key.as_str()),
        )
        .await
        .map_err(|error| match error {
            MacError::Hsm(error) => LinkError::Hsm(error.to_string()),
            other => LinkError::Codec(other.to_string()),
        })?;
        tracing::debug!(
            link = %self.inner.config.name,
            mti = request.mti().as_str(),
            stan = %key.stan,
            rrn = key.rrn.as_deref().unwrap_or(""),
            mac_key_version = key_version,
            "sending request"
        );
        self.inner.exchange(key, frame, false).await
    }

    /// Stops taking requests, waits (at most one request timeout) for those
    /// in flight, signs off (0800/002) and closes. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
        self.inner.up.send_replace(false);
        let task = lock(&self.inner.task).take();
        if let Some(task) = task
            && let Err(error) = task.await
        {
            tracing::error!(link = %self.inner.config.name, %error, "bank link task failed");
        }
    }
}

impl Inner {
    fn next_stan(&self) -> String {
        let counter = self.next_stan.fetch_add(1, Ordering::Relaxed);
        format!("{:06}", counter % MAX_STAN + 1)
    }

    /// The STAN of one of the link's own 0800s: from the shared source when
    /// there is one, else from the link's counter.
    async fn network_stan(&self) -> Result<String, LinkError> {
        match &self.config.stans {
            Some(source) => source.next_stan().await.map_err(LinkError::NoStan),
            None => Ok(self.next_stan()),
        }
    }

    fn touch(&self) {
        *lock(&self.last_activity) = Instant::now();
    }

    fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Registers the waiter, hands the frame to the writer and waits for the
    /// answer. `control` marks the link's own 0800s: they need a connection
    /// but not a sign-on, and do not count against `max_in_flight`.
    async fn exchange(
        &self,
        key: MatchKey,
        frame: Vec<u8>,
        control: bool,
    ) -> Result<Message, LinkError> {
        let (reply_tx, mut reply_rx) = oneshot::channel();
        let writer: mpsc::Sender<Vec<u8>> =
            lock(&self.in_flight).reserve(key.clone(), reply_tx, control)?;
        if writer.send(frame).await.is_err() {
            lock(&self.in_flight).cancel(&key);
            return Err(LinkError::NotConnected);
        }
        self.touch();
        match tokio::time::timeout(self.config.request_timeout, &mut reply_rx).await {
            Ok(Ok(result)) => result,
            // The waiter was dropped unanswered: the connection was torn down.
            Ok(Err(_)) => Err(LinkError::ConnectionLost),
            Err(_) => {
                if lock(&self.in_flight).expire(&key) {
                    tracing::warn!(
                        link = %self.config.name,
                        mti = key.mti.as_str(),
                        stan = %key.stan,
                        rrn = key.rrn.as_deref().unwrap_or(""),
                        "no answer in time"
                    );
                    Err(LinkError::Timeout)
                } else {
                    // Answered (or failed) just as the timer fired.
                    reply_rx
                        .try_recv()
                        .unwrap_or(Err(LinkError::ConnectionLost))
                }
            }
        }
    }
}

/// The metrics' outcome of a request: approved (field 39 `00`) or declined
/// when the bank answered, else what kept the answer away.
fn call_outcome(answer: &Result<Message, LinkError>) -> crate::metrics::CallOutcome {
    use crate::metrics::CallOutcome;
    match answer {
        Ok(response) => match response.get_str(39).and_then(protocol::ResponseCode::parse) {
            Some(code) if code.is_approved() => CallOutcome::Ok,
            _ => CallOutcome::Declined,
        },
        Err(LinkError::Timeout) => CallOutcome::Timeout,
        Err(LinkError::ConnectionLost | LinkError::BadMac) => CallOutcome::Error,
        // Nothing went out: the link was down or full, or the request could not be built.
        Err(
            LinkError::NotConnected
            | LinkError::Busy
            | LinkError::Hsm(_)
            | LinkError::Codec(_)
            | LinkError::NoStan(_),
        ) => CallOutcome::Unavailable,
    }
}

/// Locks a mutex, going on with the data if a holder panicked: every
/// critical section here leaves the data consistent at each statement.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sent_requests_have_unknown_outcomes() {
        assert!(LinkError::Timeout.outcome_unknown());
        assert!(LinkError::ConnectionLost.outcome_unknown());
        assert!(LinkError::BadMac.outcome_unknown());
        assert!(!LinkError::Busy.outcome_unknown());
        assert!(!LinkError::NotConnected.outcome_unknown());
        assert!(!LinkError::Hsm(String::new()).outcome_unknown());
    }
}
