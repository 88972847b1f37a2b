//! The ceiling of `posgate load --ceiling`: a no-op gRPC server in its own
//! process (`posgate noop-server`, hidden), and the handle the load tool
//! keeps on that process.
//!
//! The server terminates TLS exactly as `posgate serve` does: the `[server]`
//! section of the same config file (certificate, key, client CA, CRL, read
//! by [`posgate_api::mtls::ServerTls`], so the same rustls settings, client
//! certificate verification and ALPN), the same accept loop
//! ([`posgate_api::mtls::accept_tls`]), the same tonic settings
//! ([`crate::server::grpc_transport`]) and message size limit, on a tokio
//! runtime like the server's. Every unary RPC of `BillPaymentService`,
//! `PaymentService` and `WalletService` answers at once with an empty
//! (default) message and status OK. It has no access control, admission,
//! store, partners or logging per request: what is left is what any
//! tonic server over this TLS costs.
//!
//! It prints its bound address on stdout (one line) and runs until its
//! standard input closes (its parent is gone), SIGTERM or Ctrl-C.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use pb::bill_payment_service_server::{BillPaymentService, BillPaymentServiceServer};
use pb::payment_service_server::{PaymentService, PaymentServiceServer};
use pb::wallet_service_server::{WalletService, WalletServiceServer};
use posgate_api::grpc::request_size::MAX_REQUEST_BYTES;
use posgate_proto::v1 as pb;
use tokio::io::AsyncBufReadExt as _;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tonic::{Request, Response, Status};

use posgate_core::config::Config;

/// Time the no-op server has to start and print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Time requests in flight get to finish once the server is told to stop.
const STOP_GRACE: Duration = Duration::from_secs(1);
/// The hidden subcommand that runs the no-op server.
pub const SUBCOMMAND: &str = "noop-server";

/// Options of the hidden `posgate noop-server`.
#[derive(Debug, clap::Args)]
pub struct NoopArgs {
    /// The gateway's config file: its `[server]` section gives the TLS
    /// certificate, key, client CA and CRL.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Address to listen on (port 0: any free port); printed once bound.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
}

/// Runs the no-op server until standard input closes, SIGTERM or Ctrl-C.
///
/// # Errors
///
/// Fails when the config or the TLS files cannot be read, or the address
/// cannot be bound.
pub async fn serve(args: NoopArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)
        .with_context(|| format!("loading config {}", args.config.display()))?;
    let tls = posgate_api::mtls::ServerTls::load(&config.server)?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    // One line, flushed (stdout is line-buffered): the parent waits for it.
    println!("{}", listener.local_addr()?);
    let (stop_accepting, accepting) = tokio::sync::watch::channel(false);
    let (incoming, acceptor, _handshakes) =
        posgate_api::mtls::accept_tls(listener, &tls.acceptor, accepting);
    let crl_watch = config.server.crl.clone().map(|path| {
        tokio::spawn(posgate_api::mtls::watch_crl(
            path,
            std::sync::Arc::clone(&tls.verifier),
        ))
    });
    let limit = MAX_REQUEST_BYTES;
    let router = crate::server::grpc_transport()
        .add_service(BillPaymentServiceServer::new(Noop).max_decoding_message_size(limit))
        .add_service(PaymentServiceServer::new(Noop).max_decoding_message_size(limit))
        .add_service(WalletServiceServer::new(Noop).max_decoding_message_size(limit));
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        tokio::select! {
            () = crate::server::termination_signal() => {}
            () = stdin_closed() => {}
        }
        let _ = stop_accepting.send(true);
        let _ = stopping_tx.send(());
    };
    let serving = router.serve_with_incoming_shutdown(incoming, signal);
    let outcome = tokio::select! {
        result = serving => result.map_err(anyhow::Error::from),
        () = async { let _ = stopping_rx.await; tokio::time::sleep(STOP_GRACE).await } => Ok(()),
    };
    acceptor.abort();
    if let Some(crl_watch) = crl_watch {
        crl_watch.abort();
    }
    outcome
}

/// Resolves when standard input reaches its end (the parent closed it or
/// died). Read on a plain thread, not tokio's blocking pool, so a read still
/// blocked does not hold up the runtime's shutdown.
async fn stdin_closed() {
    let (closed, on_close) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = [0_u8; 256];
        let mut stdin = std::io::stdin().lock();
        while matches!(stdin.read(&mut sink), Ok(read) if read > 0) {}
        let _ = closed.send(());
    });
    let _ = on_close.await;
}

/// Answers every RPC with an empty message.
#[derive(Debug, Clone, Copy)]
struct Noop;

/// Implements a generated service trait on [`Noop`]: each listed method
/// answers `Ok` with the default response.
macro_rules! noop_service {
    ($service:ident { $($method:ident($request:ident) -> $response:ident;)* }) => {
        #[tonic::async_trait]
        impl $service for Noop {
            $(
                async fn $method(
                    &self,
                    _request: Request<pb::$request>,
                ) -> Result<Response<pb::$response>, Status> {
                    Ok(Response::new(pb::$response::default()))
                }
            )*
        }
    };
}

noop_service!(BillPaymentService {
    inquire_bill(InquireBillRequest) -> InquireBillResponse;
    pay_bill(PayBillRequest) -> PayBillResponse;
    cancel_bill(CancelBillRequest) -> CancelBillResponse;
    get_bill_payment(GetBillPaymentRequest) -> GetBillPaymentResponse;
});

noop_service!(PaymentService {
    authorize(AuthorizeRequest) -> AuthorizeResponse;
    capture(CaptureRequest) -> CaptureResponse;
    void(VoidRequest) -> VoidResponse;
    refund(CardRefundRequest) -> CardRefundResponse;
    get_transaction(GetTransactionRequest) -> GetTransactionResponse;
});

noop_service!(WalletService {
    top_up(TopUpRequest) -> TopUpResponse;
    pay(PayRequest) -> PayResponse;
    refund(WalletRefundRequest) -> WalletRefundResponse;
    get_balance(GetBalanceRequest) -> GetBalanceResponse;
    link_card(LinkCardRequest) -> LinkCardResponse;
    unlink_card(UnlinkCardRequest) -> UnlinkCardResponse;
    get_wallet_transaction(GetWalletTransactionRequest) -> GetWalletTransactionResponse;
});

/// A no-op server process started by the load tool. Killed when stopped or
/// dropped (an error on the way); it also exits by itself when this
/// process dies, because its standard input then closes.
#[derive(Debug)]
pub(super) struct NoopProcess {
    child: Child,
    pub(super) addr: SocketAddr,
}

impl NoopProcess {
    /// Starts `posgate noop-server` (this very executable) with the
    /// gateway's config, and waits for the address it listens on.
    pub(super) async fn start(config: &std::path::Path) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding the posgate executable")?;
        let mut child = Command::new(&exe)
            .arg(SUBCOMMAND)
            .arg("--config")
            .arg(config)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} {SUBCOMMAND}", exe.display()))?;
        let stdout = child.stdout.take().context("the no-op server's stdout")?;
        let mut line = String::new();
        let read = tokio::time::timeout(
            START_TIMEOUT,
            tokio::io::BufReader::new(stdout).read_line(&mut line),
        )
        .await;
        let addr = match read {
            Ok(Ok(read)) if read > 0 => line
                .trim()
                .parse()
                .with_context(|| format!("the no-op server printed {line:?}, not an address"))?,
            Ok(Ok(_)) => bail!("the no-op server exited before listening (see its error above)"),
            Ok(Err(error)) => return Err(error).context("reading the no-op server's address"),
            Err(_) => bail!(
                "the no-op server did not print its address within {} s",
                START_TIMEOUT.as_secs()
            ),
        };
        Ok(Self { child, addr })
    }

    /// Kills the server and waits for it to go.
    pub(super) async fn stop(mut self) {
        if let Err(error) = self.child.kill().await {
            tracing::warn!(%error, "stopping the no-op server");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: NoopArgs,
    }

    /// The config is required; the address defaults to any free loopback port.
    #[test]
    fn noop_server_arguments() {
        let cli = Cli::try_parse_from(["noop", "--config", "posgate.toml"]).unwrap();
        assert_eq!(cli.args.config, PathBuf::from("posgate.toml"));
        assert_eq!(cli.args.listen, "127.0.0.1:0".parse().unwrap());
        let cli =
            Cli::try_parse_from(["noop", "-c", "x.toml", "--listen", "127.0.0.1:6000"]).unwrap();
        assert_eq!(cli.args.listen.port(), 6000);
        assert!(Cli::try_parse_from(["noop"]).is_err());
        assert!(Cli::try_parse_from(["noop", "-c", "x", "--listen", "nowhere"]).is_err());
    }
}
