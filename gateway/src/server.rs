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
use posgate_core::instance::Instance;
use posgate_core::instance::leader::Leadership;
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
    /// This process as one gateway instance (its id, its lease holder).
    pub instance: Instance,
    /// Whether this instance leads the once-only jobs, as the election last saw it.
    pub leadership: Leadership,
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
        let payments = Payments::start(config.card.clone(), Arc::clone(&hsm), &gateway.db);
        gateway = gateway.with_payments(Arc::new(payments));
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
    let instance = Instance::start(&config.instance);
    let gateway = open_gateway(config, clock, &instance).await?;
    let tls = posgate_api::mtls::ServerTls::load(&config.server)?;
    let listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    let addr = listener.local_addr()?;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    report_static_health(&health_reporter, &gateway).await;
    let (reflection, reflection_v1alpha) = reflection_services()?;
    let background = Background::start(config, &gateway, &instance, &health_reporter)?;
    let leadership = background.leadership.clone();
    let health_loops = background.health_loops();
    let (draining, ops) = start_ops(config, &gateway, &instance, &leadership).await?;
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
    let signal = Draining {
        instance_id: instance.id.clone(),
        health: health_reporter,
        gateway: Arc::clone(&gateway),
        health_loops,
        announce: draining,
        delay: config.instance.drain_delay,
        stop_accepting,
        stopping: stopping_tx,
    }
    .after(shutdown);
    let stopping_gateway = Arc::clone(&gateway);
    let stopping_instance = instance.clone();
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
        wind_down(background, &stopping_gateway, &stopping_instance).await;
        drop(ops);
        outcome
    });
    tracing::info!(%addr, instance = %instance.id, "posgate serving");
    Ok(RunningServer {
        addr,
        gateway,
        task,
        handshakes,
        instance,
        leadership,
        metrics_addr,
    })
}

/// Starts the operations endpoint (`[metrics]`) over this instance's
/// state; returns the sender that tells its `/health` the instance drains.
async fn start_ops(
    config: &Config,
    gateway: &Arc<Gateway>,
    instance: &Instance,
    leadership: &Leadership,
) -> anyhow::Result<(
    tokio::sync::watch::Sender<bool>,
    Option<crate::ops::OpsServer>,
)> {
    let (draining, draining_watch) = tokio::sync::watch::channel(false);
    let state = crate::ops::InstanceState {
        id: instance.id.clone(),
        leadership: leadership.clone(),
        draining: draining_watch,
    };
    Ok((draining, crate::ops::start(config, gateway, state).await?))
}

/// Opens and migrates the transaction store and builds the shared gateway
/// state with its HSM-backed services.
async fn open_gateway(
    config: &Config,
    clock: Arc<dyn Clock>,
    instance: &Instance,
) -> anyhow::Result<Arc<Gateway>> {
    let application_name = format!("posgate {}", instance.id);
    let store = store::open_as(
        &config.database.url,
        config.database.max_connections,
        config.database.writers,
        &application_name,
    )
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

/// The server's background work: the leader election, lease renewal, key
/// purging, card health, the card, wallet and online-bill
/// store-and-forward workers, the audit sealer and the scheduled clearing
/// run. Every instance runs the store-and-forward workers (each entry is
/// leased to one of them); only the leader purges keys, seals and clears.
struct Background {
    upkeep: JoinHandle<()>,
    card_health: JoinHandle<()>,
    /// Per-biller health of online billers (their circuit breakers).
    biller_health: JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
    /// Tasks that finish their current step when told to stop.
    stoppable: Vec<JoinHandle<()>>,
    /// Whether this instance leads.
    leadership: Leadership,
}

impl Background {
    fn start(
        config: &Config,
        gateway: &Arc<Gateway>,
        instance: &Instance,
        health: &tonic_health::server::HealthReporter,
    ) -> anyhow::Result<Self> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (leads, leadership) = tokio::sync::watch::channel(false);
        let mut stoppable = vec![
            tokio::spawn(posgate_core::instance::leader::run(
                Arc::clone(&gateway.db),
                instance.id.clone(),
                config.instance.leader_poll,
                leads,
                stopped.clone(),
            )),
            tokio::spawn(posgate_core::instance::leases::renew(
                Arc::clone(&gateway.db),
                instance.clone(),
                Arc::clone(&gateway.clock),
                stopped.clone(),
            )),
        ];
        if let Some(cards) = &gateway.cards {
            stoppable.push(tokio::spawn(saf::run(
                Arc::clone(cards),
                instance.clone(),
                stopped.clone(),
            )));
        }
        if let Some(audit) = &gateway.audit
            && audit.config.seal
        {
            stoppable.push(tokio::spawn(posgate_core::audit::seal::run(
                audit.clone(),
                Arc::clone(&gateway.clock),
                leadership.clone(),
                stopped.clone(),
            )));
        }
        if let Some(wallets) = &gateway.wallets {
            stoppable.push(tokio::spawn(posgate_core::wallet::saf::run(
                Arc::clone(wallets),
                instance.clone(),
                stopped.clone(),
            )));
        }
        if !gateway.online_billers.is_empty() {
            stoppable.push(tokio::spawn(posgate_core::bill::saf::run(
                Arc::clone(&gateway.bills),
                instance.clone(),
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
                    leadership.clone(),
                    stopped,
                ),
            ));
        }
        Ok(Self {
            upkeep: tokio::spawn(run_upkeep(Arc::clone(gateway), leadership.clone())),
            card_health: tokio::spawn(report_card_health(Arc::clone(gateway), health.clone())),
            biller_health: tokio::spawn(report_biller_health(Arc::clone(gateway), health.clone())),
            stop,
            stoppable,
            leadership,
        })
    }

    /// The loops that follow partner health: a draining instance stops
    /// them before it reports `NOT_SERVING`, so they cannot turn it back.
    fn health_loops(&self) -> [tokio::task::AbortHandle; 2] {
        [
            self.card_health.abort_handle(),
            self.biller_health.abort_handle(),
        ]
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

/// The end of a drain, once no request is in flight: the workers stop
/// (each finishes its pass, the leader resigns), then this instance's
/// leases are freed, so the other instances take its queue entries over at
/// once and never while one of its deliveries is still under way; then the
/// bank links sign off.
async fn wind_down(background: Background, gateway: &Gateway, instance: &Instance) {
    background.stop().await;
    if let Err(error) = posgate_core::instance::leases::release(gateway.db.as_ref(), instance).await
    {
        tracing::warn!(%error, "releasing this instance's leases failed; they run out by themselves");
    }
    if let Some(payments) = &gateway.payments {
        payments.shutdown().await;
    }
    tracing::info!(instance = %instance.id, "server stopped");
}

/// What a draining instance does once shutdown is asked, in order.
struct Draining {
    instance_id: String,
    health: tonic_health::server::HealthReporter,
    gateway: Arc<Gateway>,
    /// The partner health loops, stopped so they cannot report `SERVING` again.
    health_loops: [tokio::task::AbortHandle; 2],
    /// Tells the operations endpoint's `/health` that this instance drains.
    announce: tokio::sync::watch::Sender<bool>,
    /// How long `NOT_SERVING` is reported before new connections are refused.
    delay: Duration,
    stop_accepting: tokio::sync::watch::Sender<bool>,
    /// Starts the grace period of the requests in flight.
    stopping: tokio::sync::oneshot::Sender<()>,
}

impl Draining {
    /// Waits for `shutdown`, then reports `NOT_SERVING` everywhere (so
    /// clients' health checks move their calls to the other instances while
    /// this one still answers), waits the drain delay, and stops accepting;
    /// the server then finishes the requests in flight.
    async fn after(self, shutdown: impl Future<Output = ()>) {
        shutdown.await;
        tracing::info!(instance = %self.instance_id, drain_ms = self.delay.as_millis(), "draining: reporting NOT_SERVING, then refusing new connections and finishing requests in flight");
        for health_loop in self.health_loops {
            health_loop.abort();
        }
        self.announce.send_replace(true);
        report_draining(&self.health, &self.gateway).await;
        tokio::time::sleep(self.delay).await;
        let _ = self.stop_accepting.send(true);
        let _ = self.stopping.send(());
    }
}

/// A draining instance: every health entry `NOT_SERVING`, the server's own
/// ("") included, so balancing clients stop sending calls here.
async fn report_draining(reporter: &tonic_health::server::HealthReporter, gateway: &Gateway) {
    use tonic_health::ServingStatus::NotServing;
    type Payments = posgate_proto::v1::payment_service_server::PaymentServiceServer<PaymentApi>;
    type Bills =
        posgate_proto::v1::bill_payment_service_server::BillPaymentServiceServer<BillPaymentApi>;
    reporter.set_service_status("", NotServing).await;
    reporter.set_not_serving::<Bills>().await;
    reporter.set_not_serving::<Payments>().await;
    reporter.set_not_serving::<WalletHealth>().await;
    reporter.set_not_serving::<AuditHealth>().await;
    for biller in gateway.online_billers.all() {
        reporter
            .set_service_status(biller_health_name(&biller.id), NotServing)
            .await;
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

/// Hourly upkeep: the leader purges expired idempotency keys (one purge
/// among the instances is enough); every instance drops its idle
/// rate-limiter state.
async fn run_upkeep(gateway: Arc<Gateway>, leadership: Leadership) {
    let mut interval = tokio::time::interval(UPKEEP_INTERVAL);
    loop {
        interval.tick().await;
        if *leadership.borrow() {
            match gateway.db.purge_expired_keys(gateway.clock.now()).await {
                Ok(purged) => tracing::info!(purged, "purged expired idempotency keys"),
                Err(error) => {
                    tracing::warn!(%error, "purging expired idempotency keys failed; will retry");
                }
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
