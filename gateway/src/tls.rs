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
    /// The CA's private key, kept to issue client certificates later.
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// A client certificate and its key (PEM files).
#[derive(Debug, Clone)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
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
        let ca_key_pem = ca_key.serialize_pem();
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
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        };
        std::fs::write(&pki.ca_cert, ca_cert.pem())?;
        std::fs::write(&pki.ca_key, ca_key_pem)?;
        std::fs::write(&pki.server_cert, server_cert.pem())?;
        std::fs::write(&pki.server_key, server_key.serialize_pem())?;
        Ok(pki)
    }
}

impl DevPki {
    /// CONTRACT SHIM (issue 8): issues a client certificate for
    /// `spiffe_id` (its only URI SAN), signed by the dev CA, into
    /// `dir/{name}.pem` and `dir/{name}.key`.
    pub fn issue_client(
        &self,
        dir: &Path,
        name: &str,
        spiffe_id: &str,
    ) -> anyhow::Result<ClientCert> {
        let ca_pem = std::fs::read_to_string(&self.ca_cert).context("reading the dev CA")?;
        let ca_key = KeyPair::from_pem(
            &std::fs::read_to_string(&self.ca_key).context("reading the dev CA key")?,
        )
        .context("parsing the dev CA key")?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).context("loading the dev CA")?;
        let key = KeyPair::generate().context("generating client key")?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).context("client parameters")?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.subject_alt_names.push(SanType::URI(
            spiffe_id
                .try_into()
                .context("SPIFFE id is not an IA5 string")?,
        ));
        let cert = params
            .signed_by(&key, &issuer)
            .context("signing client cert")?;
        let files = ClientCert {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.cert, cert.pem())?;
        std::fs::write(&files.key, key.serialize_pem())?;
        Ok(files)
    }
}

/// The server's TLS settings from PEM files; with `client_ca`, clients may
/// present a certificate signed by it (optional: services that need an
/// identity refuse calls without one).
pub fn server_tls(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> anyhow::Result<ServerTlsConfig> {
    let cert = std::fs::read(cert)
        .with_context(|| format!("reading TLS certificate {}", cert.display()))?;
    let key = std::fs::read(key).with_context(|| format!("reading TLS key {}", key.display()))?;
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(ca) = client_ca {
        let ca = std::fs::read(ca)
            .with_context(|| format!("reading client CA certificate {}", ca.display()))?;
        config = config
            .client_ca_root(Certificate::from_pem(ca))
            .client_auth_optional(true);
    }
    Ok(config)
}

/// A client's TLS settings with a client certificate (mTLS).
pub fn client_tls_with_identity(
    ca: &Path,
    domain: &str,
    cert: &Path,
    key: &Path,
) -> anyhow::Result<ClientTlsConfig> {
    let cert = std::fs::read(cert)
        .with_context(|| format!("reading client certificate {}", cert.display()))?;
    let key =
        std::fs::read(key).with_context(|| format!("reading client key {}", key.display()))?;
    Ok(client_tls(ca, domain)?.identity(Identity::from_pem(cert, key)))
}

/// A client's TLS settings trusting `ca` for server name `domain`.
pub fn client_tls(ca: &Path, domain: &str) -> anyhow::Result<ClientTlsConfig> {
    let ca =
        std::fs::read(ca).with_context(|| format!("reading CA certificate {}", ca.display()))?;
    Ok(ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name(domain))
}
