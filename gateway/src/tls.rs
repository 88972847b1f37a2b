//! TLS material: the client side's TLS settings, and a development PKI (a CA
//! that keeps its key, a server certificate for localhost, client
//! certificates carrying SPIFFE ids, and a CA-signed CRL) that `posgate
//! certs`, the demo, the tests and the load generator use. Production
//! deployments bring their own PKI; the server side is in [`posgate_api::mtls`].

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// The server name the development server certificate carries.
pub const DEV_SERVER_NAME: &str = "localhost";
/// Validity of development certificates unless told otherwise: a year, so a
/// dev setup keeps working without thought but still expires.
pub const DEFAULT_VALIDITY_DAYS: u32 = 365;
/// Validity of the development CA: longer than anything it issues.
const CA_VALIDITY_DAYS: i64 = 3650;
/// How long a CRL says it is current. posgate does not enforce `nextUpdate`
/// (an operator re-runs `posgate certs revoke` when needed), but a CRL must
/// carry one.
const CRL_VALIDITY_DAYS: i64 = 30;
/// Certificates are valid from slightly in the past so a client whose clock
/// is a little ahead of the server's is not refused.
const CLOCK_SKEW_ALLOWANCE: Duration = Duration::minutes(5);

/// Files of a development PKI, all in one directory.
#[derive(Debug, Clone)]
pub struct DevPki {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    /// The CA's private key, kept so client certificates and CRLs can be issued later.
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// The CA-signed certificate revocation list (empty at first).
    pub crl: PathBuf,
}

/// A client certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A client certificate and its key, as PEM text (for callers that mint many).
#[derive(Debug, Clone)]
pub struct ClientCertPem {
    pub cert_pem: String,
    pub key_pem: String,
}

impl ClientCertPem {
    /// The tonic client identity of this certificate.
    pub fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, &self.key_pem)
    }
}

impl DevPki {
    /// The file names of a PKI in `dir`, without checking they exist.
    pub fn at(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            crl: dir.join("crl.pem"),
        }
    }

    /// An existing PKI in `dir` (made by [`DevPki::generate`] or `posgate certs init`).
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let pki = Self::at(dir);
        for file in [&pki.ca_cert, &pki.ca_key] {
            anyhow::ensure!(
                file.is_file(),
                "{} is missing: run `posgate certs init --dir {}` first",
                file.display(),
                dir.display()
            );
        }
        Ok(pki)
    }

    /// Creates a CA (keeping its key), a server certificate for localhost /
    /// 127.0.0.1 and an empty CRL in `dir`.
    pub fn generate(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca_key = KeyPair::generate().context("generating CA key")?;
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "posgate development CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        ca_params.not_before = now - CLOCK_SKEW_ALLOWANCE;
        ca_params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
        let ca_cert = ca_params.self_signed(&ca_key).context("self-signing CA")?;
        let pki = Self::at(dir);
        write_private(&pki.ca_key, &ca_key.serialize_pem())?;
        std::fs::write(&pki.ca_cert, ca_cert.pem())?;
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
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        set_validity(&mut server_params, DEFAULT_VALIDITY_DAYS);
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .context("signing server cert")?;
        std::fs::write(&pki.server_cert, server_cert.pem())?;
        write_private(&pki.server_key, &server_key.serialize_pem())?;
        write_crl(&pki.crl, &issuer, Vec::new())?;
        Ok(pki)
    }

    /// The CA as an issuer, from its certificate and kept key.
    pub fn issuer(&self) -> anyhow::Result<Issuer<'static, KeyPair>> {
        let key = std::fs::read_to_string(&self.ca_key)
            .with_context(|| format!("reading CA key {}", self.ca_key.display()))?;
        let key = KeyPair::from_pem(&key).context("parsing the CA key")?;
        let cert = std::fs::read_to_string(&self.ca_cert)
            .with_context(|| format!("reading CA certificate {}", self.ca_cert.display()))?;
        Issuer::from_ca_cert_pem(&cert, key).context("parsing the CA certificate")
    }

    /// Issues a client certificate for `spiffe_id`, valid for a year, as
    /// `{name}.pem` and `{name}.key` in `dir`.
    pub fn issue_client(
        &self,
        dir: &Path,
        name: &str,
        spiffe_id: &str,
    ) -> anyhow::Result<ClientCert> {
        let now = OffsetDateTime::now_utc();
        self.issue_client_valid(
            dir,
            name,
            spiffe_id,
            now - CLOCK_SKEW_ALLOWANCE,
            now + Duration::days(i64::from(DEFAULT_VALIDITY_DAYS)),
        )
    }

    /// Issues a client certificate valid from `not_before` to `not_after`
    /// (tests use this to make expired and not-yet-valid certificates).
    pub fn issue_client_valid(
        &self,
        dir: &Path,
        name: &str,
        spiffe_id: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> anyhow::Result<ClientCert> {
        let pem = mint_client(&self.issuer()?, spiffe_id, not_before, not_after)?;
        let cert = ClientCert {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&cert.cert, &pem.cert_pem)
            .with_context(|| format!("writing {}", cert.cert.display()))?;
        write_private(&cert.key, &pem.key_pem)?;
        Ok(cert)
    }

    /// Adds the serial of the certificate in `cert_pem_file` to the CRL and
    /// re-signs it; returns the serial (hex). Revoking twice changes nothing.
    pub fn revoke(&self, cert_pem_file: &Path) -> anyhow::Result<String> {
        let pem = std::fs::read(cert_pem_file)
            .with_context(|| format!("reading {}", cert_pem_file.display()))?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem)
            .map_err(|error| anyhow::anyhow!("{} is not PEM: {error}", cert_pem_file.display()))?;
        let cert = pem
            .parse_x509()
            .map_err(|error| anyhow::anyhow!("{}: {error}", cert_pem_file.display()))?;
        let serial = cert.raw_serial().to_vec();
        let mut revoked = self.revoked()?;
        if !revoked
            .iter()
            .any(|entry| entry.serial_number.as_ref() == serial)
        {
            revoked.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: OffsetDateTime::now_utc(),
                reason_code: None,
                invalidity_date: None,
            });
        }
        write_crl(&self.crl, &self.issuer()?, revoked)?;
        Ok(hex::encode(serial))
    }

    /// The entries of the current CRL (none when there is no CRL file yet).
    fn revoked(&self) -> anyhow::Result<Vec<RevokedCertParams>> {
        if !self.crl.exists() {
            return Ok(Vec::new());
        }
        let pem = std::fs::read(&self.crl)?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem)
            .map_err(|error| anyhow::anyhow!("{} is not PEM: {error}", self.crl.display()))?;
        let (_, crl) = x509_parser::parse_x509_crl(&pem.contents)
            .map_err(|error| anyhow::anyhow!("{} is not a CRL: {error}", self.crl.display()))?;
        Ok(crl
            .iter_revoked_certificates()
            .map(|entry| RevokedCertParams {
                serial_number: SerialNumber::from_slice(entry.raw_serial()),
                revocation_time: entry.revocation_date.to_datetime(),
                reason_code: None,
                invalidity_date: None,
            })
            .collect())
    }
}

/// Mints a client certificate for `spiffe_id` signed by `issuer`, in memory.
pub fn mint_client(
    issuer: &Issuer<'_, KeyPair>,
    spiffe_id: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> anyhow::Result<ClientCertPem> {
    let key = KeyPair::generate().context("generating client key")?;
    let mut params = CertificateParams::new(Vec::<String>::new()).context("client parameters")?;
    params.subject_alt_names = vec![SanType::URI(
        spiffe_id
            .try_into()
            .with_context(|| format!("SPIFFE id {spiffe_id}"))?,
    )];
    params
        .distinguished_name
        .push(DnType::CommonName, spiffe_id);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = not_before;
    params.not_after = not_after;
    let cert = params
        .signed_by(&key, issuer)
        .context("signing client cert")?;
    Ok(ClientCertPem {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn set_validity(params: &mut CertificateParams, days: u32) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - CLOCK_SKEW_ALLOWANCE;
    params.not_after = now + Duration::days(i64::from(days));
}

/// Signs and writes a CRL. Its number counts the revocations, so every
/// revocation makes a CRL with a higher number than the one it replaces.
fn write_crl(
    path: &Path,
    issuer: &Issuer<'_, KeyPair>,
    revoked: Vec<RevokedCertParams>,
) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    let number = u64::try_from(revoked.len()).unwrap_or(u64::MAX) + 1;
    let crl = CertificateRevocationListParams {
        this_update: now - CLOCK_SKEW_ALLOWANCE,
        next_update: now + Duration::days(CRL_VALIDITY_DAYS),
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(issuer)
    .context("signing the CRL")?;
    // Write then rename, so a server polling the file never reads half of it.
    let partial = path.with_extension("pem.partial");
    std::fs::write(&partial, crl.pem().context("encoding the CRL")?)?;
    std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, pem: &str) -> anyhow::Result<()> {
    std::fs::write(path, pem).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// A client's TLS settings trusting `ca` for server name `domain`, without a
/// client certificate (the gateway refuses such clients at the handshake).
pub fn client_tls(ca: &Path, domain: &str) -> anyhow::Result<ClientTlsConfig> {
    let ca =
        std::fs::read(ca).with_context(|| format!("reading CA certificate {}", ca.display()))?;
    Ok(ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name(domain))
}

/// A client's TLS settings presenting the client certificate `cert` / `key`.
pub fn client_tls_as(
    ca: &Path,
    domain: &str,
    cert: &ClientCert,
) -> anyhow::Result<ClientTlsConfig> {
    let pem = std::fs::read(&cert.cert)
        .with_context(|| format!("reading client certificate {}", cert.cert.display()))?;
    let key = std::fs::read(&cert.key)
        .with_context(|| format!("reading client key {}", cert.key.display()))?;
    Ok(client_tls(ca, domain)?.identity(Identity::from_pem(pem, key)))
}
