//! The server side of mutual TLS: a rustls configuration that requires a
//! client certificate from the configured client CA, a client-certificate
//! verifier whose CRLs are reloaded while serving, and the TLS accept loop
//! that hands finished handshakes to tonic.
//!
//! Expired, revoked and untrusted certificates (and clients without one) are
//! refused at the handshake, before a single HTTP/2 frame is read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::BufReader;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use rustls::DistinguishedName;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerSessionMemoryCache, StoresServerSessions, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest as _, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{LazyConfigAcceptor, TlsAcceptor};

use posgate_core::config::ServerConfig;

/// How often the CRL file is checked for changes. Revoking a terminal takes
/// effect for new connections within this time; checking the file's
/// modification time and size every 2 s costs nothing.
pub const CRL_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Most TLS handshakes past their `ClientHello` at once. A handshake costs a
/// few signature operations; bounding them keeps a reconnect storm (every
/// till of a chain after a network blip) from starving requests in flight.
/// Only a connection that has sent its whole `ClientHello` takes a slot, so
/// silent peers never hold one; further handshakes wait for a slot, in order.
pub const MAX_HANDSHAKES_IN_FLIGHT: usize = 128;
/// A connection must deliver its complete `ClientHello` within this time of
/// being accepted, or it is dropped. A till sends it right after the TCP
/// handshake, one round trip; 3 s leaves room for a congested backup link
/// while a silent peer's socket is soon freed. Waiting for it holds no
/// handshake slot.
pub const CLIENT_HELLO_TIMEOUT: Duration = Duration::from_secs(3);
/// After its `ClientHello`, a client that has not finished the handshake
/// (waiting for a slot included) within this time is dropped, so slow peers
/// cannot hold handshake slots for long. A till needs two round trips.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most connections waiting for their `ClientHello` at once; each costs a
/// socket and a small task. At the bound the one waiting longest is dropped
/// to make room: a real client sends its `ClientHello` at once, so the oldest
/// waiter is the likeliest idle one, and a flood cannot lock new tills out.
pub const MAX_AWAITING_HELLO: usize = 4096;
/// Most of those from one source address, the oldest from that source
/// dropped beyond it: one host flooding the port evicts only its own
/// connections. A store behind one NAT address reconnects a few dozen tills
/// at once, each waiting one round trip, far below this.
pub const MAX_AWAITING_HELLO_PER_SOURCE: usize = 512;
/// TLS sessions kept for resumption (about 1 KiB each with the client's
/// certificate): two per till (TLS 1.3 sends two tickets) for some thousands of
/// tills; beyond it the oldest are forgotten and those tills make a full handshake.
pub const MAX_RESUMABLE_SESSIONS: usize = 8192;
/// Finished handshakes waiting for the HTTP/2 server to take them.
const ACCEPTED_QUEUE: usize = 64;
/// Pause after a failed accept (such as running out of file descriptors) so
/// the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// A client-certificate verifier whose inner webpki verifier (and so its
/// CRLs) can be swapped while serving. The trust anchors never change.
#[derive(Debug)]
pub struct ReloadingVerifier {
    roots: Arc<RootCertStore>,
    hints: Vec<DistinguishedName>,
    inner: RwLock<Arc<dyn ClientCertVerifier>>,
    /// The sessions clients may resume; forgotten when the CRLs change.
    sessions: Arc<SessionCache>,
}

/// TLS sessions a reconnecting client resumes (a TLS 1.3 PSK with a fresh
/// key exchange: no certificate chain, CRL or signature checks, so a reconnect
/// storm costs little). A resumed session keeps the identity of the
/// certificate its full handshake verified and is not checked against the CRL
/// again, so every CRL reload forgets all sessions, and no session is kept
/// from a handshake that may have been verified before the reload (one that
/// ends within [`HANDSHAKE_TIMEOUT`] of it): a revoked till's next connection
/// is a full handshake, which its certificate fails.
#[derive(Debug)]
pub struct SessionCache {
    sessions: RwLock<Arc<dyn StoresServerSessions>>,
    reloaded_at: Mutex<Option<Instant>>,
}

impl SessionCache {
    fn new() -> Self {
        Self {
            sessions: RwLock::new(ServerSessionMemoryCache::new(MAX_RESUMABLE_SESSIONS)),
            reloaded_at: Mutex::new(None),
        }
    }

    fn current(&self) -> Arc<dyn StoresServerSessions> {
        Arc::clone(
            &self
                .sessions
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Forgets every session.
    fn forget_all(&self) {
        *self
            .reloaded_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        *self
            .sessions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            ServerSessionMemoryCache::new(MAX_RESUMABLE_SESSIONS);
    }
}

impl StoresServerSessions for SessionCache {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let reloaded_at = *self
            .reloaded_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if reloaded_at.is_some_and(|at| at.elapsed() <= HANDSHAKE_TIMEOUT) {
            return false;
        }
        self.current().put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.current().get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.current().take(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

impl ReloadingVerifier {
    pub fn new(
        roots: Arc<RootCertStore>,
        crls: Vec<CertificateRevocationListDer<'static>>,
    ) -> anyhow::Result<Self> {
        let inner = build_verifier(&roots, crls)?;
        Ok(Self {
            hints: inner.root_hint_subjects().to_vec(),
            roots,
            inner: RwLock::new(inner),
            sessions: Arc::new(SessionCache::new()),
        })
    }

    /// Replaces the CRLs; on error the previous verifier stays in force.
    /// Resumable sessions are forgotten (see [`SessionCache`]).
    pub fn reload(&self, crls: Vec<CertificateRevocationListDer<'static>>) -> anyhow::Result<()> {
        let verifier = build_verifier(&self.roots, crls)?;
        *self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = verifier;
        self.sessions.forget_all();
        Ok(())
    }

    /// The sessions clients may resume, for the server's TLS configuration.
    pub fn sessions(&self) -> Arc<SessionCache> {
        Arc::clone(&self.sessions)
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        Arc::clone(
            &self
                .inner
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

fn build_verifier(
    roots: &Arc<RootCertStore>,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::clone(roots), provider);
    if !crls.is_empty() {
        // posgate's client CAs issue end-entity certificates directly.
        builder = builder.with_crls(crls).only_check_end_entity_revocation();
    }
    builder
        .build()
        .context("building the client certificate verifier (is the CRL signed by the client CA?)")
}

impl ClientCertVerifier for ReloadingVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

/// The server's TLS: its certificate, and the client verifier that requires
/// a certificate from `client_ca` (checked against the CRL, if configured).
pub struct ServerTls {
    pub acceptor: TlsAcceptor,
    pub verifier: Arc<ReloadingVerifier>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    pub fn load(server: &ServerConfig) -> anyhow::Result<Self> {
        let certs = read_certs(&server.tls_cert)?;
        let key = rustls_pemfile::private_key(&mut BufReader::new(open(&server.tls_key)?))
            .with_context(|| format!("reading TLS key {}", server.tls_key.display()))?
            .with_context(|| format!("no private key in {}", server.tls_key.display()))?;
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(read_certs(&server.client_ca)?);
        anyhow::ensure!(
            added > 0,
            "server.client_ca {}: no usable CA certificate",
            server.client_ca.display()
        );
        let crls = match &server.crl {
            Some(path) => parse_crls(
                &std::fs::read(path)
                    .with_context(|| format!("reading server.crl {}", path.display()))?,
            )
            .with_context(|| format!("server.crl {}", path.display()))?,
            None => Vec::new(),
        };
        let verifier = Arc::new(ReloadingVerifier::new(Arc::new(roots), crls)?);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_client_cert_verifier(Arc::clone(&verifier) as Arc<dyn ClientCertVerifier>)
            .with_single_cert(certs, key)
            .context("the server certificate and key do not match")?;
        // gRPC runs over HTTP/2 only; tonic's clients insist on negotiating it.
        config.alpn_protocols = vec![b"h2".to_vec()];
        // Reconnecting tills resume their sessions; forgotten on every CRL reload.
        config.session_storage = verifier.sessions();
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            verifier,
        })
    }
}

fn open(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = rustls_pemfile::certs(&mut BufReader::new(open(path)?))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading certificates from {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", path.display());
    Ok(certs)
}

/// The CRLs of a PEM file; at least one.
pub fn parse_crls(pem: &[u8]) -> anyhow::Result<Vec<CertificateRevocationListDer<'static>>> {
    let crls = rustls_pemfile::crls(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .context("reading PEM")?;
    anyhow::ensure!(!crls.is_empty(), "no X509 CRL block in the file");
    Ok(crls)
}

/// Polls the CRL file and swaps the verifier's CRLs when its content
/// changes. A file that cannot be read or parsed (or whose CRL the CA did not
/// sign) leaves the previous CRLs in force and is logged once per change.
pub async fn watch_crl(path: PathBuf, verifier: Arc<ReloadingVerifier>) {
    let mut seen_stamp = file_stamp(&path);
    let mut seen_hash = std::fs::read(&path)
        .ok()
        .map(|bytes| Sha256::digest(&bytes));
    let mut interval = tokio::time::interval(CRL_POLL_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let stamp = file_stamp(&path);
        if stamp == seen_stamp {
            continue;
        }
        seen_stamp = stamp;
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::error!(path = %path.display(), %error, "cannot read the CRL; keeping the previous one");
                continue;
            }
        };
        let hash = Sha256::digest(&bytes);
        if seen_hash == Some(hash) {
            continue;
        }
        seen_hash = Some(hash);
        match parse_crls(&bytes).and_then(|crls| verifier.reload(crls)) {
            Ok(()) => tracing::info!(path = %path.display(), "CRL reloaded"),
            Err(error) => {
                tracing::error!(path = %path.display(), error = format!("{error:#}"), "bad CRL; keeping the previous one");
            }
        }
    }
}

/// What tells a file changed without reading it.
fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

/// The stream of finished TLS connections tonic serves.
pub type Incoming = tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsStream<TcpStream>>>;

/// The connections accepted whose `ClientHello` has not arrived yet, oldest
/// first, by source address too; dropping an entry's sender drops its
/// connection.
#[derive(Debug, Default)]
struct AwaitingHello {
    next_id: u64,
    by_age: BTreeMap<u64, (IpAddr, oneshot::Sender<()>)>,
    by_source: HashMap<IpAddr, BTreeSet<u64>>,
}

impl AwaitingHello {
    /// Registers a new connection from `source`, first dropping the oldest
    /// one of the same source at [`MAX_AWAITING_HELLO_PER_SOURCE`] and the
    /// oldest of all at [`MAX_AWAITING_HELLO`]. The receiver resolves when
    /// the connection is dropped to make room.
    fn admit(&mut self, source: IpAddr) -> (u64, oneshot::Receiver<()>) {
        let oldest_of_source = self
            .by_source
            .get(&source)
            .filter(|ids| ids.len() >= MAX_AWAITING_HELLO_PER_SOURCE)
            .and_then(|ids| ids.first().copied());
        if let Some(id) = oldest_of_source {
            self.leave(id);
        }
        if self.by_age.len() >= MAX_AWAITING_HELLO {
            self.drop_oldest();
        }
        let id = self.next_id;
        self.next_id += 1;
        let (evict, evicted) = oneshot::channel();
        self.by_age.insert(id, (source, evict));
        self.by_source.entry(source).or_default().insert(id);
        (id, evicted)
    }

    /// Drops the connection waiting longest; false when none waits.
    fn drop_oldest(&mut self) -> bool {
        match self.by_age.first_key_value() {
            Some((&id, _)) => {
                self.leave(id);
                true
            }
            None => false,
        }
    }

    /// Forgets a connection (its `ClientHello` came, it failed, or it is dropped).
    fn leave(&mut self, id: u64) {
        let Some((source, _evict)) = self.by_age.remove(&id) else {
            return;
        };
        if let Some(ids) = self.by_source.get_mut(&source) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_source.remove(&source);
            }
        }
    }

    fn len(&self) -> usize {
        self.by_age.len()
    }
}

/// What the accept loop is doing, for tests and operators.
#[derive(Debug, Clone, Default)]
pub struct HandshakeGauge {
    awaiting: Arc<Mutex<AwaitingHello>>,
}

impl HandshakeGauge {
    /// Connections accepted that have not sent their whole `ClientHello` yet.
    pub fn awaiting_client_hello(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AwaitingHello> {
        self.awaiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A connection's place among those waiting for their `ClientHello`, given
/// up when dropped.
struct AwaitingPlace {
    gauge: HandshakeGauge,
    id: u64,
}

impl Drop for AwaitingPlace {
    fn drop(&mut self) {
        self.gauge.lock().leave(self.id);
    }
}

/// Accepts TCP connections (with `TCP_NODELAY`) as fast as they come, and
/// yields those whose TLS handshake succeeds. A connection first waits for
/// its `ClientHello` ([`CLIENT_HELLO_TIMEOUT`], holding no slot, bounded by
/// [`MAX_AWAITING_HELLO`] and [`MAX_AWAITING_HELLO_PER_SOURCE`]); then it
/// takes one of [`MAX_HANDSHAKES_IN_FLIGHT`] slots and must finish within
/// [`HANDSHAKE_TIMEOUT`]. Silent or slow peers so never keep a till that
/// speaks from connecting. Stops accepting when `stop` turns true or the
/// stream is dropped.
pub fn accept_tls(
    listener: TcpListener,
    acceptor: &TlsAcceptor,
    mut stop: watch::Receiver<bool>,
) -> (Incoming, JoinHandle<()>, HandshakeGauge) {
    let (sender, receiver) = mpsc::channel(ACCEPTED_QUEUE);
    let gauge = HandshakeGauge::default();
    let config = Arc::clone(acceptor.config());
    let loop_gauge = gauge.clone();
    let task = tokio::spawn(async move {
        let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES_IN_FLIGHT));
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = sender.closed() => break,
                _ = stop.wait_for(|stop| *stop) => break,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) if out_of_descriptors(&error) && loop_gauge.lock().drop_oldest() => {
                    tracing::warn!(%error, "out of sockets: dropped the connection waiting longest for its ClientHello");
                    tokio::task::yield_now().await;
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            };
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, %peer, "setting TCP_NODELAY failed");
            }
            let (id, evicted) = loop_gauge.lock().admit(peer.ip());
            let place = AwaitingPlace {
                gauge: loop_gauge.clone(),
                id,
            };
            let (config, handshakes, sender) =
                (Arc::clone(&config), Arc::clone(&handshakes), sender.clone());
            tokio::spawn(async move {
                if let Some(tls) = handshake(tcp, peer, place, evicted, config, &handshakes).await {
                    let _ = sender.send(Ok(tls)).await;
                }
            });
        }
    });
    (
        tokio_stream::wrappers::ReceiverStream::new(receiver),
        task,
        gauge,
    )
}

/// EMFILE or ENFILE: the process or the system is out of file descriptors.
fn out_of_descriptors(error: &std::io::Error) -> bool {
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    matches!(error.raw_os_error(), Some(EMFILE | ENFILE))
}

/// One connection's handshake: its `ClientHello` within
/// [`CLIENT_HELLO_TIMEOUT`] (unless dropped to make room first), then a slot
/// and the rest within [`HANDSHAKE_TIMEOUT`].
async fn handshake(
    tcp: TcpStream,
    peer: SocketAddr,
    place: AwaitingPlace,
    evicted: oneshot::Receiver<()>,
    config: Arc<rustls::ServerConfig>,
    handshakes: &Semaphore,
) -> Option<TlsStream<TcpStream>> {
    let hello = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
    let start = tokio::select! {
        hello = tokio::time::timeout(CLIENT_HELLO_TIMEOUT, hello) => hello,
        _ = evicted => {
            // Debug, not info: a flood would otherwise flood the log too.
            tracing::debug!(%peer, "connection without ClientHello dropped to make room for new ones");
            return None;
        }
    };
    drop(place);
    let start = match start {
        Ok(Ok(start)) => start,
        Ok(Err(error)) => {
            tracing::info!(%peer, %error, "TLS handshake refused (bad ClientHello)");
            return None;
        }
        Err(_) => {
            tracing::debug!(%peer, timeout_ms = CLIENT_HELLO_TIMEOUT.as_millis(), "no TLS ClientHello in time");
            return None;
        }
    };
    let rest = async {
        let _slot = handshakes.acquire().await.expect("never closed");
        start.into_stream(config).await
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, rest).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(error)) => {
            tracing::info!(%peer, %error, "TLS handshake refused");
            None
        }
        Err(_) => {
            tracing::info!(%peer, timeout_ms = HANDSHAKE_TIMEOUT.as_millis(), "TLS handshake timed out");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// A CRL reload forgets every resumable session, and keeps none from a
    /// handshake that may have been verified before it.
    #[test]
    fn a_crl_reload_forgets_resumable_sessions() {
        let cache = SessionCache::new();
        assert!(cache.put(b"till".to_vec(), b"session".to_vec()));
        assert_eq!(cache.get(b"till").as_deref(), Some(&b"session"[..]));
        cache.forget_all();
        assert_eq!(cache.get(b"till"), None);
        assert!(
            !cache.put(b"late".to_vec(), b"session".to_vec()),
            "a handshake ending right after the reload may have used the old CRL"
        );
        assert_eq!(cache.take(b"late"), None);
    }

    /// One source beyond its cap evicts its own oldest connection, not another source's.
    #[test]
    fn a_flooding_source_evicts_only_its_own_oldest() {
        let mut awaiting = AwaitingHello::default();
        let (other, mut other_evicted) = awaiting.admit(ip("10.0.0.2"));
        let mut flood = Vec::new();
        for _ in 0..MAX_AWAITING_HELLO_PER_SOURCE {
            flood.push(awaiting.admit(ip("10.0.0.1")));
        }
        assert_eq!(awaiting.len(), MAX_AWAITING_HELLO_PER_SOURCE + 1);
        let (newest, _newest_evicted) = awaiting.admit(ip("10.0.0.1"));
        assert_eq!(awaiting.len(), MAX_AWAITING_HELLO_PER_SOURCE + 1);
        assert!(
            flood[0].1.try_recv().is_err(),
            "the flood's oldest was dropped"
        );
        assert!(!awaiting.by_age.contains_key(&flood[0].0));
        assert!(awaiting.by_age.contains_key(&newest));
        assert!(awaiting.by_age.contains_key(&other));
        assert_eq!(
            other_evicted.try_recv(),
            Err(oneshot::error::TryRecvError::Empty),
            "the other source's connection is untouched"
        );
    }

    /// At the global cap the oldest connection of all makes room; leaving frees every index.
    #[test]
    fn the_global_cap_evicts_the_oldest() {
        let mut awaiting = AwaitingHello::default();
        let mut all = Vec::new();
        for index in 0..MAX_AWAITING_HELLO {
            let [.., high, low] = u32::try_from(index).unwrap().to_be_bytes();
            let source = IpAddr::from([10, 1, high, low]);
            all.push(awaiting.admit(source));
        }
        let (newest, _) = awaiting.admit(ip("10.9.9.9"));
        assert_eq!(awaiting.len(), MAX_AWAITING_HELLO);
        assert!(!awaiting.by_age.contains_key(&all[0].0));
        assert!(awaiting.by_age.contains_key(&newest));
        for (id, _) in &all {
            awaiting.leave(*id);
        }
        awaiting.leave(newest);
        assert_eq!(awaiting.len(), 0);
        assert!(awaiting.by_source.is_empty());
        assert!(!awaiting.drop_oldest());
    }
}
