//! TLS material: loading the server's certificate and key, and a development
//! PKI (a CA and a server certificate for localhost) that the demo, the tests
//! and the load generator use. Production deployments bring their own.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// The server name the development server certificate carries.
pub const DEV_SERVER_NAME: &str = "localhost";

/// Files of a development PKI.
#[derive(Debug, Clone)]
pub struct DevPki {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl DevPki {
    /// Creates a CA and a server certificate for localhost / 127.0.0.1 in `dir`.
    pub fn generate(dir: &Path) -> anyhow::Result<Self> {
        let ca_key = KeyPair::generate().context("generating CA key")?;
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "posgate development CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).context("self-signing CA")?;
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().context("generating server key")?;
        let mut server_params = CertificateParams::new(vec![DEV_SERVER_NAME.to_owned()])
            .context("server parameters")?;
        server_params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        server_params
            .distinguished_name
            .push(DnType::CommonName, "posgate gateway (development)");
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .context("signing server cert")?;

        let pki = Self {
            ca_cert: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        };
        std::fs::write(&pki.ca_cert, ca_cert.pem())?;
        std::fs::write(&pki.server_cert, server_cert.pem())?;
        std::fs::write(&pki.server_key, server_key.serialize_pem())?;
        Ok(pki)
    }
}

/// The server's TLS settings from PEM files.
pub fn server_tls(cert: &Path, key: &Path) -> anyhow::Result<ServerTlsConfig> {
    let cert = std::fs::read(cert)
        .with_context(|| format!("reading TLS certificate {}", cert.display()))?;
    let key = std::fs::read(key).with_context(|| format!("reading TLS key {}", key.display()))?;
    Ok(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
}

/// A client's TLS settings trusting `ca` for server name `domain`.
pub fn client_tls(ca: &Path, domain: &str) -> anyhow::Result<ClientTlsConfig> {
    let ca =
        std::fs::read(ca).with_context(|| format!("reading CA certificate {}", ca.display()))?;
    Ok(ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name(domain))
}
