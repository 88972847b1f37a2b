//! `posgate serve`: the gRPC server over mutual TLS, with access control,
//! health, reflection, admission limits, background upkeep and graceful
//! shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::Server;

use posgate_api::grpc::Gateway;
use posgate_api::grpc::audit::AuditApi;
use posgate_api::grpc::bill_payment::BillPaymentApi;
use posgate_api::grpc::payment::PaymentApi;
use posgate_api::grpc::request_size::{MAX_REQUEST_BYTES, RequestSizeLayer};
use posgate_api::grpc::wallet::WalletApi;
use posgate_core::cards::{Payments, saf};
use posgate_core::config::Config;
use posgate_core::model::clock::Clock;
use posgate_store as store;
use tonic_reflection::pb::v1::server_reflection_server::{
    ServerReflection, ServerReflectionServer,
};
use tonic_reflection::pb::v1alpha;

/// How often expired idempotency keys are purged and idle rate-limiter state is dropped.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(3600);
/// Most concurrent HTTP/2 streams per connection: a POS has a few requests in
/// flight at most; the gateway-wide in-flight bound does the real limiting.
const MAX_STREAMS_PER_CONNECTION: u32 = 256;
/// Keepalive pings find dead POS connections (a till unplugged mid-request).
const HTTP2_KEEPALIVE: Duration = Duration::from_secs(30);

/// A server started in this process.
#[derive(Debug)]
pub struct RunningServer {
    pub addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    pub task: JoinHandle<anyhow::Result<()>>,
    /// The TLS accept loop's state: connections still waiting for their `ClientHello`.
    pub handshakes: posgate_api::mtls::HandshakeGauge,
    /// Where `GET /metrics` is served (`[metrics]`); `None` without the section.
    pub metrics_addr: Option<SocketAddr>,
}

/// Adds what needs the HSM (audit sealing, wallet operators, online
/// billers, card payments) when `[hsm]` is configured.
fn with_hsm_services(mut gateway: Gateway, config: &Config) -> anyhow::Result<Gateway> {
    if let Some(hsm) = &config.card.hsm {
        let hsm = hsm.open().context("opening the HSM")?;
        let db = Arc::clone(&gateway.db);
        gateway = gateway.with_audit(posgate_core::audit::Audit {
            db,
            hsm: Arc::clone(&hsm),
            config: config.audit.clone(),
            pan_fingerprint_key: config.card.pan_fingerprint_key.clone(),
        });
        let online =
            crate::connectors::online_billers(&config.billers, &hsm).map_err(anyhow::Error::msg)?;
        gateway = gateway.with_online_billers(Arc::new(online));
        gateway = gateway.with_payments(Arc::new(Payments::start(
            config.card.clone(),
            Arc::clone(&hsm),
        )));
        // After the card payments: card top-ups, links and auto-reload use them.
        if !config.wallet_operators.is_empty() {
            let wallets = crate::connectors::wallets(&config.wallet_operators, &hsm)
                .map_err(anyhow::Error::msg)?;
            gateway = gateway.with_wallets(Arc::new(wallets));
        }
    }
    if config.billers.iter().any(|biller| biller.online.is_some()) && config.card.hsm.is_none() {
        anyhow::bail!("online billers sign their requests: configure [hsm]");
    }
    Ok(gateway)
}

/// The tonic server with posgate's HTTP/2 settings (streams per connection,
/// keepalive), before its layers and services; `posgate load --ceiling`'s
/// no-op server uses the same.
pub fn grpc_transport() -> Server {
    Server::builder()
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE))
}

/// Opens and migrates the store, binds the listener, and serves until
/// `shutdown` resolves; then stops accepting, lets requests in flight finish
/// (up to the configured grace), and returns.
pub async fn start(
    config: &Config,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<RunningServer> {
    let gateway = open_gateway(config, clock).await?;
    let ops = crate::ops::start(config, &gateway).await?;
    let tls = posgate_api::mtls::ServerTls::load(&config.server)?;
    let listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    let addr = listener.local_addr()?;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    report_static_health(&health_reporter, &gateway).await;
    let (reflection, reflection_v1alpha) = reflection_services()?;
    let background = Background::start(config, &gateway, &health_reporter)?;
    let grace = config.server.shutdown_grace;
    // TLS is terminated by our own acceptor (mtls::accept_tls) so the client
    // verifier can reload CRLs and handshakes are bounded; tonic still sees
    // the peer certificates through its `Connected` impl for tokio-rustls.
    // Every service decodes at most MAX_REQUEST_BYTES per message; the
    // RequestSizeLayer turns tonic's OUT_OF_RANGE for a larger one into
    // RESOURCE_EXHAUSTED, as gRPC's conventions say.
    let limit = MAX_REQUEST_BYTES;
    let router = grpc_transport()
        .layer(RequestSizeLayer)
        .layer(posgate_api::access::AccessLayer)
        .add_service(health_service.max_decoding_message_size(limit))
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(
            BillPaymentApi::new(Arc::clone(&gateway))
                .into_server()
                .max_decoding_message_size(limit),
        )
        .add_service(
            PaymentApi::new(Arc::clone(&gateway))
                .into_server()
                .max_decoding_message_size(limit),
        )
        .add_service(
            AuditApi::new(Arc::clone(&gateway))
                .into_server()
                .max_decoding_message_size(limit),
        )
        .add_service(
            WalletApi::new(Arc::clone(&gateway))
                .into_server()
                .max_decoding_message_size(limit),
        );
    let (stop_accepting, accepting) = tokio::sync::watch::channel(false);
    let (incoming, acceptor, handshakes) =
        posgate_api::mtls::accept_tls(listener, &tls.acceptor, accepting);
    let crl_watch = config.server.crl.clone().map(|path| {
        tokio::spawn(posgate_api::mtls::watch_crl(
            path,
            Arc::clone(&tls.verifier),
        ))
    });
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        tracing::info!(
            "shutdown requested: refusing new connections, finishing requests in flight"
        );
        let _ = stop_accepting.send(true);
        health_reporter.set_not_serving::<WalletHealth>().await;
        health_reporter.set_not_serving::<AuditHealth>().await;
        health_reporter
            .set_not_serving::<posgate_proto::v1::bill_payment_service_server::BillPaymentServiceServer<BillPaymentApi>>()
            .await;
        let _ = stopping_tx.send(());
    };
    let stopping_gateway = Arc::clone(&gateway);
    let metrics_addr = ops.as_ref().map(crate::ops::OpsServer::addr);
    let task = tokio::spawn(async move {
        let serving = router.serve_with_incoming_shutdown(incoming, signal);
        tokio::pin!(serving);
        let outcome = tokio::select! {
            result = &mut serving => result.map_err(anyhow::Error::from),
            () = async { let _ = stopping_rx.await; tokio::time::sleep(grace).await } => {
                tracing::warn!(grace_s = grace.as_secs(), "requests still in flight after the grace period; stopping anyway");
                Ok(())
            }
        };
        acceptor.abort();
        if let Some(crl_watch) = crl_watch {
            crl_watch.abort();
        }
        background.stop().await;
        if let Some(payments) = &stopping_gateway.payments {
            payments.shutdown().await;
        }
        drop(ops);
        tracing::info!("server stopped");
        outcome
    });
    tracing::info!(%addr, "posgate serving");
    Ok(RunningServer {
        addr,
        gateway,
        task,
        handshakes,
        metrics_addr,
    })
}

/// Opens and migrates the transaction store and builds the shared gateway
/// state with its HSM-backed services.
async fn open_gateway(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<Gateway>> {
    let store = store::open(&config.database.url, config.database.max_connections)
        .await
        .context("opening the transaction store")?;
    store
        .migrate()
        .await
        .context("migrating the transaction store")?;
    let gateway = Gateway::new(config, store, clock).map_err(anyhow::Error::msg)?;
    Ok(Arc::new(with_hsm_services(gateway, config)?))
}

/// Health entries that do not change while serving: `BillPaymentService`
/// (always), `WalletService` and `AuditService` (when configured).
async fn report_static_health(reporter: &tonic_health::server::HealthReporter, gateway: &Gateway) {
    reporter
        .set_serving::<posgate_proto::v1::bill_payment_service_server::BillPaymentServiceServer<BillPaymentApi>>()
        .await;
    report_wallet_health(reporter, gateway).await;
    report_audit_health(reporter, gateway).await;
}

/// Server reflection over posgate's and health's protos, v1 and v1alpha
/// (for older clients: grpcio-reflection's stock client, older grpcurl),
/// each limited to [`MAX_REQUEST_BYTES`] per request like every service.
fn reflection_services() -> anyhow::Result<(
    ServerReflectionServer<impl ServerReflection>,
    v1alpha::server_reflection_server::ServerReflectionServer<
        impl v1alpha::server_reflection_server::ServerReflection,
    >,
)> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(posgate_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let v1 = builder()
        .build_v1()
        .context("building reflection service")?;
    let v1alpha = builder()
        .build_v1alpha()
        .context("building reflection service v1alpha")?;
    Ok((
        v1.max_decoding_message_size(MAX_REQUEST_BYTES),
        v1alpha.max_decoding_message_size(MAX_REQUEST_BYTES),
    ))
}

/// The server's background work: key purging, card health, the card and
/// wallet store-and-forward workers, the audit sealer and the scheduled
/// clearing run.
struct Background {
    upkeep: JoinHandle<()>,
    card_health: JoinHandle<()>,
    /// Per-biller health of online billers (their circuit breakers).
    biller_health: JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
    /// Tasks that finish their current step when told to stop.
    stoppable: Vec<JoinHandle<()>>,
}

impl Background {
    fn start(
        config: &Config,
        gateway: &Arc<Gateway>,
        health: &tonic_health::server::HealthReporter,
    ) -> anyhow::Result<Self> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut stoppable = Vec::new();
        if let Some(cards) = &gateway.cards {
            stoppable.push(tokio::spawn(saf::run(Arc::clone(cards), stopped.clone())));
        }
        if let Some(audit) = &gateway.audit
            && audit.config.seal
        {
            stoppable.push(tokio::spawn(posgate_core::audit::seal::run(
                audit.clone(),
                Arc::clone(&gateway.clock),
                stopped.clone(),
            )));
        }
        if let Some(wallets) = &gateway.wallets {
            stoppable.push(tokio::spawn(posgate_core::wallet::saf::run(
                Arc::clone(wallets),
                stopped.clone(),
            )));
        }
        if !gateway.online_billers.is_empty() {
            stoppable.push(tokio::spawn(posgate_core::bill::saf::run(
                Arc::clone(&gateway.bills),
                stopped.clone(),
            )));
        }
        if config.clearing.scheduled {
            let context = config.clearing_context(Arc::clone(&gateway.db))?;
            stoppable.push(tokio::spawn(
                posgate_core::clearing::service::run_scheduled(
                    Arc::new(context),
                    config.clearing.out_dir.clone(),
                    Arc::clone(&gateway.clock),
                    stopped,
                ),
            ));
        }
        Ok(Self {
            upkeep: tokio::spawn(run_upkeep(Arc::clone(gateway))),
            card_health: tokio::spawn(report_card_health(Arc::clone(gateway), health.clone())),
            biller_health: tokio::spawn(report_biller_health(Arc::clone(gateway), health.clone())),
            stop,
            stoppable,
        })
    }

    async fn stop(self) {
        self.upkeep.abort();
        self.card_health.abort();
        self.biller_health.abort();
        let _ = self.stop.send(true);
        for task in self.stoppable {
            let _ = task.await;
        }
    }
}

/// The health entry of `WalletService`.
type WalletHealth = posgate_proto::v1::wallet_service_server::WalletServiceServer<WalletApi>;

/// The health entry of `AuditService`.
type AuditHealth = posgate_proto::v1::audit_service_server::AuditServiceServer<AuditApi>;

/// `AuditService` serves when the audit chain is configured (it needs the
/// HSM); without it every call is refused, and health says so.
async fn report_audit_health(reporter: &tonic_health::server::HealthReporter, gateway: &Gateway) {
    if gateway.audit.is_some() {
        reporter.set_serving::<AuditHealth>().await;
    } else {
        reporter.set_not_serving::<AuditHealth>().await;
    }
}

/// `WalletService` serves when wallet operators are configured; each
/// operator's breaker sheds calls to that operator alone.
async fn report_wallet_health(reporter: &tonic_health::server::HealthReporter, gateway: &Gateway) {
    if gateway.wallets.is_some() {
        reporter.set_serving::<WalletHealth>().await;
    } else {
        reporter.set_not_serving::<WalletHealth>().await;
    }
}

/// How often health follows the bank links (`PaymentService`) and the
/// online billers' circuit breakers.
const HEALTH_INTERVAL: Duration = Duration::from_millis(250);

/// Reports `PaymentService` as serving while every bank link is signed on
/// (and not serving otherwise, or when no cards are configured), so load
/// balancers and integrators can tell when card payments can be taken.
async fn report_card_health(gateway: Arc<Gateway>, reporter: tonic_health::server::HealthReporter) {
    type Payments = posgate_proto::v1::payment_service_server::PaymentServiceServer<PaymentApi>;
    let mut serving = None;
    loop {
        let up = gateway.payments.as_ref().is_some_and(|payments| {
            payments
                .links
                .values()
                .all(posgate_partners::bank::link::BankLink::is_up)
        });
        if serving != Some(up) {
            if up {
                reporter.set_serving::<Payments>().await;
            } else {
                reporter.set_not_serving::<Payments>().await;
            }
            tracing::info!(up, "card payments health");
            serving = Some(up);
        }
        tokio::time::sleep(HEALTH_INTERVAL).await;
    }
}

/// The health service name of an online biller: `biller:<id>`.
pub fn biller_health_name(biller_id: &str) -> String {
    posgate_core::model::Party::Biller(biller_id.to_owned()).to_string()
}

/// Reports each online biller as its own health entry (`biller:<id>`):
/// `NOT_SERVING` while its circuit breaker is open, `SERVING` otherwise.
/// `BillPaymentService` itself stays `SERVING`: batch billers and the other
/// online billers still work.
async fn report_biller_health(
    gateway: Arc<Gateway>,
    reporter: tonic_health::server::HealthReporter,
) {
    use tonic_health::ServingStatus;
    let mut open_by_biller = std::collections::HashMap::new();
    loop {
        for biller in gateway.online_billers.all() {
            let open = matches!(
                biller.client.breaker_state(),
                posgate_partners::http::BreakerState::Open { .. }
            );
            if open_by_biller.insert(biller.id.clone(), open) != Some(open) {
                let status = if open {
                    ServingStatus::NotServing
                } else {
                    ServingStatus::Serving
                };
                reporter
                    .set_service_status(biller_health_name(&biller.id), status)
                    .await;
                tracing::info!(biller = %biller.id, open, "online biller health");
            }
        }
        tokio::time::sleep(HEALTH_INTERVAL).await;
    }
}

async fn run_upkeep(gateway: Arc<Gateway>) {
    let mut interval = tokio::time::interval(UPKEEP_INTERVAL);
    loop {
        interval.tick().await;
        match gateway.db.purge_expired_keys(gateway.clock.now()).await {
            Ok(purged) => tracing::info!(purged, "purged expired idempotency keys"),
            Err(error) => {
                tracing::warn!(%error, "purging expired idempotency keys failed; will retry");
            }
        }
        gateway.admission.forget_idle();
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn termination_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
