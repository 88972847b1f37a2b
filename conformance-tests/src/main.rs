//! `posgate-conformance`: runs the POS API conformance suite against a
//! running gateway and prints a PASS/FAIL report (or JSON with `--json`).
//! Exit code 0 when every case passed, 1 otherwise.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use posgate_conformance::target::load_client_certs;
use posgate_conformance::{Target, all_cases};

const AFTER_HELP: &str = "\
Example:
  posgate-conformance --addr https://127.0.0.1:50051 --ca certs/ca.pem \\
    --client-certs certs --terminal T-CONF-1 \\
    --store S001 --tw-agency-code TPC --jp-store S101 --jp-company-code 912345

Mutual TLS: the gateway requires a client certificate per caller, whose
SPIFFE id names it. --client-certs DIR holds one per identity the suite acts
as, named as `posgate certs issue` names them:
  terminal.S001.T-CONF-1  terminal.S001.T-CONF-1-B  terminal.S101.T-CONF-1
  terminal.S001.T01 (the --pin-terminal)  auditor.a1  operator.o1
(each NAME.pem with NAME.key), for example:
  posgate certs issue --dir certs --terminal S001/T-CONF-1
  posgate certs issue --dir certs --auditor a1
The access cases check the role table and that a terminal acts only for
its own store and terminal.

Card cases (PaymentService) expect a gateway configured like
config/posgate.example.toml, with the published test keys and the bank
simulator's test cards:
  posgate keys --keystore keys/posgate.keystore --master-key-file keys/master.key init-test
  posgate sim bank --config config/bank-sim.example.toml
  posgate serve --config config/posgate.example.toml
Each run charges the simulator's Visa card a few NT dollars (authorizations
are voided), so the example's NT$10,000 limit lasts hundreds of runs; restart
the simulator to reset its ledger. Every request uses a fresh UUID key and
the suite acts as a fresh terminal (T-CONF-<random>), so runs against the
same gateway never collide; cases with an online PIN act as --pin-terminal.

Unknown outcomes: a healthy bank always answers, so the OUTCOME_UNKNOWN case
needs a second setup and runs only with --bank-no-response (and then only
it runs). Start a simulator that drops answers, with faults.no_response
BELOW 1.0 (e.g. 0.5: it drops reversals too, and the reversal must
eventually be acknowledged), and a gateway whose acquirer link points at it
with a short request_timeout_ms (e.g. 500) and short retry_min_ms /
retry_max_ms (e.g. 100 / 1000), then:
  posgate-conformance --addr https://127.0.0.1:50052 --ca certs/ca.pem --bank-no-response
The case sends small sales until one is UNAVAILABLE with ErrorInfo
OUTCOME_UNKNOWN, then retries it with the same key (for at most 30 s) until
the store-and-forward queue has reversed it: the answer must be REVERSED.

Online billers: the online-bill.* cases run only with --online-agency-code
CODE, the collection-item code of a biller with mode = \"online\" whose
partner is the biller simulator with the example's bills (the commented
CTBC-CARD section of config/posgate.example.toml, agency code CCB):
  posgate sim biller --config config/biller-sim.example.toml
  posgate-conformance --addr https://127.0.0.1:50051 --ca certs/ca.pem --online-agency-code CCB
Each run pays the simulator's open NT$500 bill and cancels it again.";

#[derive(Debug, Parser)]
#[command(
    name = "posgate-conformance",
    version,
    about = "Black-box conformance suite for a running posgate gateway (BillPaymentService and PaymentService)",
    after_help = AFTER_HELP
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
    /// Directory of client certificates, one per identity (see below).
    #[arg(long, env = "POSGATE_CONFORMANCE_CLIENT_CERTS")]
    client_certs: Option<PathBuf>,
    /// Server name to verify in the gateway's certificate [default: the host of --addr].
    #[arg(long)]
    domain: Option<String>,
    /// A configured store that collects the Taiwanese biller's bills.
    #[arg(long, default_value = "S001")]
    store: String,
    /// Terminal id to act as (1-30 characters) [default: T-CONF-<random>,
    /// unique per run; with --client-certs, required].
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
    /// A terminal of --store that the PIN key is assigned to (cases with an online PIN).
    #[arg(long, default_value = "T01")]
    pin_terminal: String,
    /// Id of the terminal PIN key assigned to --pin-terminal.
    #[arg(long, default_value = "TPK-TEST")]
    pin_key_id: String,
    /// That PIN key in clear (32 hex digits): a published TEST key only [default: the example's TPK-TEST].
    #[arg(long, default_value = posgate_conformance::card::TEST_PIN_KEY_HEX, hide_default_value = true)]
    pin_key_hex: String,
    /// Run only the cases that need a bank simulator that never answers
    /// (`faults.no_response`), instead of all the others. See the
    /// "Unknown outcomes" section of --help.
    #[arg(long)]
    bank_no_response: bool,
    /// The wallet operator id of the wallet cases (a `posgate sim wallet`
    /// from config/wallet-sim.example.toml behind the gateway); without it
    /// the wallet cases are skipped.
    #[arg(long)]
    wallet_operator: Option<String>,
    /// Collection-item code of an online biller backed by `posgate sim
    /// biller` with config/biller-sim.example.toml's bills; enables the
    /// `online-bill.*` cases.
    #[arg(long)]
    online_agency_code: Option<String>,
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
        let client_certs = match &self.client_certs {
            Some(dir) => load_client_certs(dir)?,
            None => Vec::new(),
        };
        anyhow::ensure!(
            self.client_certs.is_none() || self.terminal.is_some(),
            "--client-certs needs --terminal: the terminal its certificates were issued for"
        );
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
            pin_terminal_id: self.pin_terminal.clone(),
            pin_key_id: self.pin_key_id.clone(),
            pin_key_hex: self.pin_key_hex.clone(),
            bank_no_response: self.bank_no_response,
            wallet_operator_id: self.wallet_operator.clone(),
            online_agency_code: self.online_agency_code.clone(),
            client_certs,
        })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.list {
        let mut list = String::new();
        for case in all_cases() {
            let needs = if case.needs_bank_no_response {
                " [--bank-no-response]"
            } else {
                ""
            };
            let _ = writeln!(list, "{:40}  {}{needs}", case.name, case.description);
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
