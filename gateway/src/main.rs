//! The `posgate` binary: serve, migrate, demo, load, keys, certs, sim, clearing.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use posgate::{load, server};
use posgate_core::config::Config;
use posgate_core::model::clock::SystemClock;
use posgate_store as store;
use tracing_subscriber::EnvFilter;

mod audit_cmd;
mod certs_cmd;
mod clearing_cmd;
mod demo;
mod keys_cmd;

#[derive(Debug, Parser)]
#[command(
    name = "posgate",
    version,
    about = "Payment and partner-services gateway for convenience-store chains"
)]
struct Cli {
    /// Log as JSON lines (also set by `log.json = true` in the config).
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

// Parsed once at startup: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway: migrate the store, then serve gRPC over mutual TLS until SIGTERM.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Apply pending schema migrations and exit.
    Migrate {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run a scripted store day against a real gateway on a temporary SQLite database.
    Demo(demo::DemoArgs),
    /// Drive load through the real gRPC API and print throughput and latency.
    Load(load::LoadArgs),
    /// The no-op gRPC server of `posgate load --ceiling` (started by it).
    #[command(name = load::noop::SUBCOMMAND, hide = true)]
    NoopServer(load::noop::NoopArgs),
    /// Manage HSM keys: init a keystore, generate, list, rotate, export and import keys.
    Keys(keys_cmd::KeysArgs),
    /// Development PKI for mutual TLS: init a CA, issue client certificates, revoke them.
    #[command(subcommand)]
    Certs(certs_cmd::CertsCommand),
    /// Run a partner simulator.
    #[command(subcommand)]
    Sim(SimCommand),
    /// Auditors: search, history, verify and export over `AuditService`; bench.
    Audit(audit_cmd::AuditArgs),
    /// Daily clearing: close a business day, write and verify partner files.
    #[command(subcommand)]
    Clearing(clearing_cmd::ClearingCommand),
}

#[derive(Debug, Subcommand)]
enum SimCommand {
    /// An ISO 8583 bank (acquirer or co-brand issuer) with its own card ledger
    /// and fault injection; runs until SIGTERM or Ctrl-C.
    Bank {
        /// The simulator's TOML (see config/bank-sim.example.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// An e-wallet operator speaking Partner API v1 (HTTPS, mutual TLS,
    /// RFC 9421 signatures) with its own wallet ledger and fault injection;
    /// runs until SIGTERM or Ctrl-C.
    Wallet {
        /// The simulator's TOML (see config/wallet-sim.example.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// An online biller speaking Partner API v1 (HTTPS, mutual TLS, RFC 9421
    /// signatures) with its own ledger of outstanding bills and fault
    /// injection; runs until SIGTERM or Ctrl-C.
    Biller {
        /// The simulator's TOML (see config/biller-sim.example.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// Logs to stderr through a writer thread: a request formats its line and
/// hands it over, and never waits for the write itself (unless a burst fills
/// the writer's queue: lines are never dropped). Colours only on a terminal.
/// The returned guard writes out what is queued when dropped at the end of
/// `main`.
fn init_logging(json: bool) -> tracing_appender::non_blocking::WorkerGuard {
    use std::io::IsTerminal as _;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("posgate-log")
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    guard
}

fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(path).with_context(|| format!("loading config {}", path.display()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            let config = load_config(&config)?;
            let _log = init_logging(cli.log_json || config.log_json);
            posgate_api::grpc::set_access_log(config.log_access);
            let running =
                server::start(&config, Arc::new(SystemClock), server::termination_signal()).await?;
            running.task.await.context("server task")??;
            Ok(())
        }
        Command::Migrate { config } => {
            let config = load_config(&config)?;
            let _log = init_logging(cli.log_json || config.log_json);
            let store = store::open(&config.database.url, 1).await?;
            store.migrate().await?;
            println!("migrations applied to {}", redact_url(&config.database.url));
            Ok(())
        }
        Command::Demo(args) => {
            let _log = init_logging(cli.log_json);
            demo::run(args).await
        }
        Command::Load(args) => {
            let _log = init_logging(cli.log_json);
            load::run(args).await
        }
        Command::NoopServer(args) => {
            let _log = init_logging(cli.log_json);
            load::noop::serve(args).await
        }
        Command::Keys(args) => {
            let _log = init_logging(cli.log_json);
            keys_cmd::run(args).await
        }
        Command::Audit(args) => {
            let _log = init_logging(cli.log_json);
            audit_cmd::run(args).await
        }
        Command::Certs(command) => {
            let _log = init_logging(cli.log_json);
            certs_cmd::run(command)
        }
        Command::Clearing(command) => {
            let _log = init_logging(cli.log_json);
            clearing_cmd::run(command).await
        }
        Command::Sim(SimCommand::Bank { config }) => {
            let _log = init_logging(cli.log_json);
            posgate_sims::bank::run(&config)
                .await
                .with_context(|| format!("bank simulator with {}", config.display()))
        }
        Command::Sim(SimCommand::Wallet { config }) => {
            let _log = init_logging(cli.log_json);
            posgate_sims::wallet::run(&config)
                .await
                .with_context(|| format!("wallet simulator with {}", config.display()))
        }
        Command::Sim(SimCommand::Biller { config }) => {
            let _log = init_logging(cli.log_json);
            posgate_sims::biller::run(&config)
                .await
                .with_context(|| format!("biller simulator with {}", config.display()))
        }
    }
}

/// A database URL without its password, for printing.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    }
}
