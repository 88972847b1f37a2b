//! Opening the byte stream to the bank: TCP, optionally wrapped in TLS.

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};

use super::{LinkConfig, LinkTls};

/// A connected byte stream, plain or TLS.
pub(super) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Connects within `connect_timeout` (TCP and TLS handshake each).
pub(super) async fn connect(config: &LinkConfig) -> io::Result<Box<dyn Io>> {
    let tcp = tokio::time::timeout(config.connect_timeout, TcpStream::connect(&config.addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TCP connect timed out"))??;
    // Requests are small and latency matters more than packet count.
    tcp.set_nodelay(true)?;
    let Some(tls) = &config.tls else {
        return Ok(Box::new(tcp));
    };
    let connector = tls_connector(tls)?;
    let server_name = ServerName::try_from(tls.server_name.clone())
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
    let stream = tokio::time::timeout(config.connect_timeout, connector.connect(server_name, tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    Ok(Box::new(stream))
}

fn tls_connector(tls: &LinkTls) -> io::Result<TlsConnector> {
    let pem = std::fs::read(&tls.ca_pem_path)?;
    let mut roots = RootCertStore::empty();
    for certificate in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots
            .add(certificate?)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
    }
    if roots.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no CA certificate in {}", tls.ca_pem_path.display()),
        ));
    }
    let config = ClientConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}
