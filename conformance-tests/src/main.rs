//! `posgate-conformance`: runs the POS API conformance suite against a
//! running gateway and prints a PASS/FAIL report (or JSON with `--json`).
//! Exit code 0 when every case passed, 1 otherwise.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use posgate_conformance::{Target, all_cases};

#[derive(Debug, Parser)]
#[command(
    name = "posgate-conformance",
    version,
    about = "Black-box conformance suite for a running posgate gateway (BillPaymentService)",
    after_help = "Example:\n  posgate-conformance --addr https://127.0.0.1:50051 --ca certs/ca.pem \\\n    --store S001 --tw-agency-code TPC --jp-store S101 --jp-company-code 912345"
)]
struct Cli {
    /// The gateway's gRPC address.
    #[arg(
        long,
        env = "POSGATE_CONFORMANCE_ADDR",
        default_value = "https://127.0.0.1:50051"
    )]
    addr: String,
    /// PEM file of the CA that signed the gateway's server certificate.
    #[arg(long, env = "POSGATE_CONFORMANCE_CA")]
    ca: Option<PathBuf>,
    /// Server name to verify in the gateway's certificate [default: the host of --addr].
    #[arg(long)]
    domain: Option<String>,
    /// A configured store that collects the Taiwanese biller's bills.
    #[arg(long, default_value = "S001")]
    store: String,
    /// Terminal id to act as (1-30 characters) [default: T-CONF-<random>, unique per run].
    #[arg(long)]
    terminal: Option<String>,
    /// Operator (cashier) id sent in every request.
    #[arg(long, default_value = "OP1")]
    operator: String,
    /// Collection-item code of a Taiwanese biller (profile tw-cvs-3seg) that refuses late payment.
    #[arg(long, default_value = "TPC")]
    tw_agency_code: String,
    /// That Taiwanese biller's currency.
    #[arg(long, default_value = "TWD")]
    tw_currency: String,
    /// A configured store that collects the Japanese biller's bills.
    #[arg(long, default_value = "S101")]
    jp_store: String,
    /// Company code of a Japanese biller (profile jp-gs1-cvs, JPY) that refuses late payment.
    #[arg(long, default_value = "912345")]
    jp_company_code: String,
    /// Run only the cases whose name contains this text.
    #[arg(long)]
    case: Option<String>,
    /// List the cases and exit.
    #[arg(long)]
    list: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

impl Cli {
    fn target(&self) -> anyhow::Result<Target> {
        let ca_pem = match &self.ca {
            Some(path) => Some(
                std::fs::read(path)
                    .with_context(|| format!("reading CA certificate {}", path.display()))?,
            ),
            None => None,
        };
        Ok(Target {
            addr: self.addr.clone(),
            ca_pem,
            domain: self.domain.clone(),
            store_id: self.store.clone(),
            terminal_id: self
                .terminal
                .clone()
                .unwrap_or_else(Target::random_terminal_id),
            operator_id: self.operator.clone(),
            tw_agency_code: self.tw_agency_code.clone(),
            tw_currency: self.tw_currency.clone(),
            jp_store_id: self.jp_store.clone(),
            jp_company_code: self.jp_company_code.clone(),
        })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.list {
        let mut list = String::new();
        for case in all_cases() {
            let _ = writeln!(list, "{:40}  {}", case.name, case.description);
        }
        emit(&list);
        return ExitCode::SUCCESS;
    }
    let report = match cli.target() {
        Ok(target) => posgate_conformance::run(&target, cli.case.as_deref()).await,
        Err(error) => Err(error),
    };
    match report {
        Ok(report) => {
            if cli.json {
                emit(&format!("{:#}\n", report.to_json()));
            } else {
                emit(&report.to_text());
            }
            if report.all_passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            if cli.json {
                emit(&format!(
                    "{:#}\n",
                    serde_json::json!({ "error": format!("{error:#}") })
                ));
            }
            eprintln!("posgate-conformance: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes to stdout, ignoring a closed pipe (`posgate-conformance | head`):
/// the exit code still tells the verdict.
fn emit(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}
