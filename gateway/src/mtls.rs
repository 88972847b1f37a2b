//! The server side of mutual TLS: a rustls configuration that requires a
//! client certificate from the configured client CA, a client-certificate
//! verifier whose CRLs are reloaded while serving, and the TLS accept loop
//! that hands finished handshakes to tonic.
//!
//! Expired, revoked and untrusted certificates (and clients without one) are
//! refused at the handshake, before a single HTTP/2 frame is read.

use std::io::BufReader;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use rustls::DistinguishedName;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest as _, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::ServerConfig;

/// How often the CRL file is checked for changes. Revoking a terminal takes
/// effect for new connections within this time; checking the file's
/// modification time and size every 2 s costs nothing.
pub const CRL_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Most TLS handshakes in progress at once. A handshake costs a few
/// signature operations; bounding them keeps a reconnect storm (every till
/// of a chain after a network blip) from starving requests in flight. Further
/// connections wait in the kernel's accept backlog.
pub const MAX_HANDSHAKES_IN_FLIGHT: usize = 128;
/// A client that has not finished its handshake by then is dropped, so slow
/// or silent peers cannot hold handshake slots.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
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
        })
    }

    /// Replaces the CRLs; on error the previous verifier stays in force.
    pub fn reload(&self, crls: Vec<CertificateRevocationListDer<'static>>) -> anyhow::Result<()> {
        let verifier = build_verifier(&self.roots, crls)?;
        *self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = verifier;
        Ok(())
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

/// Accepts TCP connections (with `TCP_NODELAY`), runs at most
/// [`MAX_HANDSHAKES_IN_FLIGHT`] handshakes at once, each within
/// [`HANDSHAKE_TIMEOUT`], and yields the connections whose handshake
/// succeeded. Stops accepting when `stop` turns true or the stream is dropped.
pub fn accept_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    mut stop: watch::Receiver<bool>,
) -> (Incoming, JoinHandle<()>) {
    let (sender, receiver) = mpsc::channel(ACCEPTED_QUEUE);
    let task = tokio::spawn(async move {
        let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES_IN_FLIGHT));
        loop {
            let permit = tokio::select! {
                permit = Arc::clone(&handshakes).acquire_owned() => permit.expect("never closed"),
                () = sender.closed() => break,
                _ = stop.wait_for(|stop| *stop) => break,
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = sender.closed() => break,
                _ = stop.wait_for(|stop| *stop) => break,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            };
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, %peer, "setting TCP_NODELAY failed");
            }
            let (acceptor, sender) = (acceptor.clone(), sender.clone());
            tokio::spawn(async move {
                let _permit = permit;
                if let Some(tls) = handshake(&acceptor, tcp, peer).await {
                    let _ = sender.send(Ok(tls)).await;
                }
            });
        }
    });
    (tokio_stream::wrappers::ReceiverStream::new(receiver), task)
}

async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
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
