//! rustls settings for the partner API, both ends mutually authenticated:
//! each side trusts only the CA configured for the other (never the system
//! roots), and presents its own certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig, crypto};

/// Why TLS material could not be loaded (file names only, never key bytes).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// PEM file paths of one side of a mutual-TLS link.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The CA that issued the other side's certificate.
    pub ca_cert: std::path::PathBuf,
    /// This side's certificate chain.
    pub cert: std::path::PathBuf,
    /// This side's private key (PKCS#8, SEC1 or PKCS#1 PEM).
    pub key: std::path::PathBuf,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|error| TlsError::Invalid(format!("{}: {error}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError::Invalid(format!(
            "no certificate in {}",
            path.display()
        )));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|error| TlsError::Invalid(format!("{}: {error}", path.display())))?
        .ok_or_else(|| TlsError::Invalid(format!("no private key in {}", path.display())))
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(path)? {
        roots
            .add(certificate)
            .map_err(|error| TlsError::Invalid(format!("{}: {error}", path.display())))?;
    }
    Ok(roots)
}

fn provider() -> Arc<crypto::CryptoProvider> {
    Arc::new(crypto::ring::default_provider())
}

/// The client side: trusts `files.ca_cert` for the partner's server
/// certificate and presents `files.cert`.
pub fn client_config(files: &TlsFiles) -> Result<ClientConfig, TlsError> {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Invalid(error.to_string()))?
        .with_root_certificates(roots(&files.ca_cert)?)
        .with_client_auth_cert(certificates(&files.cert)?, private_key(&files.key)?)
        .map_err(|error| TlsError::Invalid(format!("{}: {error}", files.cert.display())))
}

/// The server side: requires a client certificate issued by `files.ca_cert`.
pub fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(&files.ca_cert)?), provider())
            .build()
            .map_err(|error| TlsError::Invalid(error.to_string()))?;
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Invalid(error.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates(&files.cert)?, private_key(&files.key)?)
        .map_err(|error| TlsError::Invalid(format!("{}: {error}", files.cert.display())))
}
