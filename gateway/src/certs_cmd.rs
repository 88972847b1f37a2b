//! `posgate certs`: a development PKI for mutual TLS.
//!
//! `init` makes a CA (keeping `ca.key`), a server certificate for localhost /
//! 127.0.0.1 and an empty CA-signed CRL; `issue` makes client certificates
//! whose URI SAN is the caller's SPIFFE id; `revoke` adds a certificate's
//! serial to the CRL, which a running gateway picks up without a restart.
//! Production deployments use their own CA; the gateway only needs its
//! certificate (`server.client_ca`) and optionally its CRL (`server.crl`).

use std::path::PathBuf;

use anyhow::Context as _;
use posgate::tls::{DEFAULT_VALIDITY_DAYS, DevPki};
use posgate_api::access::Identity;
use time::{Duration, OffsetDateTime};

/// Certificates are valid from slightly in the past so a client whose clock
/// is a little ahead of the server's is not refused.
const CLOCK_SKEW_ALLOWANCE: Duration = Duration::minutes(5);

#[derive(Debug, clap::Subcommand)]
pub enum CertsCommand {
    /// Create a development CA, a server certificate for localhost and an empty CRL in --dir.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// Replace an existing CA in --dir (every certificate it issued stops working).
        #[arg(long)]
        force: bool,
    },
    /// Issue a client certificate signed by the CA in --dir: exactly one of
    /// --terminal STORE/TERMINAL, --auditor ID, --operator ID.
    Issue {
        #[arg(long)]
        dir: PathBuf,
        /// A POS terminal, as STORE/TERMINAL (for example S001/T01).
        #[arg(long, group = "who")]
        terminal: Option<String>,
        #[arg(long, group = "who")]
        auditor: Option<String>,
        #[arg(long, group = "who")]
        operator: Option<String>,
        /// Validity in days.
        #[arg(long, default_value_t = DEFAULT_VALIDITY_DAYS)]
        days: u32,
        /// Where to write NAME.pem and NAME.key (default: --dir).
        #[arg(long)]
        out: Option<PathBuf>,
        /// File name stem [default: terminal.STORE.TERMINAL, auditor.ID or
        /// operator.ID, the names posgate-conformance --client-certs reads].
        #[arg(long)]
        name: Option<String>,
    },
    /// Revoke a certificate issued by the CA in --dir: add its serial to crl.pem and re-sign it.
    Revoke {
        #[arg(long)]
        dir: PathBuf,
        /// The certificate (PEM) to revoke.
        #[arg(long)]
        cert: PathBuf,
    },
}

pub fn run(command: CertsCommand) -> anyhow::Result<()> {
    match command {
        CertsCommand::Init { dir, force } => {
            if DevPki::at(&dir).ca_key.exists() && !force {
                anyhow::bail!(
                    "{} already holds a CA; pass --force to replace it",
                    dir.display()
                );
            }
            let pki = DevPki::generate(&dir)?;
            println!("CA certificate      {}", pki.ca_cert.display());
            println!("CA key (keep safe)  {}", pki.ca_key.display());
            println!("server certificate  {}", pki.server_cert.display());
            println!("server key          {}", pki.server_key.display());
            println!("CRL                 {}", pki.crl.display());
            Ok(())
        }
        CertsCommand::Issue {
            dir,
            terminal,
            auditor,
            operator,
            days,
            out,
            name,
        } => {
            let identity = identity_of(terminal, auditor, operator)?;
            let pki = DevPki::open(&dir)?;
            let name = name.unwrap_or_else(|| default_name(&identity));
            let out = out.unwrap_or(dir);
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let now = OffsetDateTime::now_utc();
            let cert = pki.issue_client_valid(
                &out,
                &name,
                &identity.spiffe_id(),
                now - CLOCK_SKEW_ALLOWANCE,
                now + Duration::days(i64::from(days)),
            )?;
            println!("{}", identity.spiffe_id());
            println!("certificate  {}", cert.cert.display());
            println!("key          {}", cert.key.display());
            Ok(())
        }
        CertsCommand::Revoke { dir, cert } => {
            let pki = DevPki::open(&dir)?;
            let serial = pki.revoke(&cert)?;
            println!(
                "revoked serial {serial}; {} updated (a running gateway reloads it within seconds)",
                pki.crl.display()
            );
            Ok(())
        }
    }
}

fn identity_of(
    terminal: Option<String>,
    auditor: Option<String>,
    operator: Option<String>,
) -> anyhow::Result<Identity> {
    let uri = match (terminal, auditor, operator) {
        (Some(terminal), None, None) => {
            let (store, terminal) = terminal
                .split_once('/')
                .context("--terminal must be STORE/TERMINAL, for example S001/T01")?;
            format!("spiffe://posgate/store/{store}/terminal/{terminal}")
        }
        (None, Some(auditor), None) => format!("spiffe://posgate/auditor/{auditor}"),
        (None, None, Some(operator)) => format!("spiffe://posgate/operator/{operator}"),
        _ => anyhow::bail!("give exactly one of --terminal, --auditor, --operator"),
    };
    Identity::parse_spiffe(&uri).map_err(anyhow::Error::from)
}

fn default_name(identity: &Identity) -> String {
    match identity {
        Identity::Terminal {
            store_id,
            terminal_id,
        } => format!("terminal.{store_id}.{terminal_id}"),
        Identity::Auditor { auditor_id } => format!("auditor.{auditor_id}"),
        Identity::Operator { operator_id } => format!("operator.{operator_id}"),
    }
}
