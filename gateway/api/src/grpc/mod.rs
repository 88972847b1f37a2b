//! The gRPC services: each handler converts the protobuf request into the
//! core's input, calls one core service function, and turns the result into
//! the response or a status with google.rpc details. [`Gateway`] is the
//! services' shared state; the `posgate` binary fills it with the database
//! handle, the partner connectors and the HSM-backed machinery it builds.
//!
//! # Layout
//! - [`status`]: domain and store errors to gRPC statuses with details.
//! - [`admission`]: the in-flight bound and per-terminal / per-store rate limits.
//! - [`request_size`]: `RESOURCE_EXHAUSTED` for a request over the size limit.
//! - [`idempotent`]: replay of stored answers and detection of reused keys.
//! - [`bill_payment`]: the `BillPaymentService` implementation (batch and online billers).
//! - [`payment`]: the `PaymentService` implementation (card payments).
//! - [`audit`]: the `AuditService` implementation (auditors only).
//! - [`wallet`]: the `WalletService` implementation (e-wallet top-up, pay,
//!   refund, balance, card links).

pub mod admission;
pub mod audit;
pub mod bill_payment;
pub mod idempotent;
pub mod payment;
pub mod request_size;
pub mod status;
pub mod wallet;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use chrono::{DateTime, Utc};
use posgate_proto::v1 as pb;
use tokio::sync::OwnedSemaphorePermit;
use tonic::Status;

use crate::access::Identity;
use crate::validate::Violations;
use admission::Admission;
use posgate_core::bill::BillService;
use posgate_core::bill::BillerRegistry;
use posgate_core::bill::online::OnlineBillers;
use posgate_core::cards::{CardService, Payments};
use posgate_core::config::{AccessLog, Config};
use posgate_core::model::IdempotencyKey;
use posgate_core::model::RequestContext;
use posgate_core::model::business_day::StoreConfig;
use posgate_core::model::clock::Clock;
use posgate_core::ports::db::Database;
use posgate_core::wallet::{WalletService, Wallets};
use status::{invalid_argument, refused};

/// Everything the services share.
#[derive(Debug)]
pub struct Gateway {
    pub db: Arc<dyn Database>,
    pub billers: BillerRegistry,
    pub stores: BTreeMap<String, StoreConfig>,
    pub retention: chrono::Duration,
    pub clock: Arc<dyn Clock>,
    pub admission: Admission,
    /// Card payments' machinery (bank links, routes, keys), when configured.
    pub payments: Option<Arc<Payments>>,
    /// The card payments service, over `payments`, when configured.
    pub cards: Option<Arc<CardService>>,
    /// Audit chain sealing and `AuditService`, when an HSM is configured.
    pub audit: Option<posgate_core::audit::Audit>,
    /// The wallet service, over the wallet operators, when configured.
    pub wallets: Option<Arc<WalletService>>,
    /// Online billers' clients (empty when every biller is batch-only).
    pub online_billers: Arc<OnlineBillers>,
    /// The bill payments service (batch and online billers).
    pub bills: Arc<BillService>,
    /// HSM label of the key that signs clearing files (`clearing.signing_key`),
    /// whose public half `AuditService.GetSigningKeys` publishes.
    pub clearing_signing_key: String,
}

impl Gateway {
    pub fn new(
        config: &Config,
        db: Arc<dyn Database>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        let billers = BillerRegistry::new(config.billers.clone())?;
        let retention = chrono::Duration::from_std(config.idempotency_retention)
            .map_err(|_| "idempotency retention is too long".to_owned())?;
        let online_billers = Arc::new(OnlineBillers::default());
        let bills = bill_service(
            &db,
            &billers,
            &online_billers,
            &config.stores,
            retention,
            &clock,
        );
        Ok(Self {
            db,
            billers,
            stores: config.stores.clone(),
            retention,
            clock,
            admission: Admission::new(&config.limits),
            payments: None,
            cards: None,
            audit: None,
            wallets: None,
            online_billers,
            bills,
            clearing_signing_key: config.clearing.signing_key.clone(),
        })
    }

    #[must_use]
    pub fn with_audit(mut self, audit: posgate_core::audit::Audit) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Adds the wallet service over `wallets`, answering with
    /// `WalletService` messages. Card top-ups, links and auto-reload use the
    /// card payments added before ([`Self::with_payments`]).
    #[must_use]
    pub fn with_wallets(mut self, wallets: Arc<Wallets>) -> Self {
        let answers = crate::wallet::view::ProtoWalletAnswers {
            card_config: self
                .payments
                .as_ref()
                .map(|payments| payments.config.clone()),
        };
        self.wallets = Some(Arc::new(WalletService::new(
            Arc::clone(&self.db),
            wallets,
            self.payments.clone(),
            Arc::new(answers),
            self.stores.clone(),
            self.retention,
            Arc::clone(&self.clock),
        )));
        self
    }

    #[must_use]
    pub fn with_online_billers(mut self, billers: Arc<OnlineBillers>) -> Self {
        self.bills = bill_service(
            &self.db,
            &self.billers,
            &billers,
            &self.stores,
            self.retention,
            &self.clock,
        );
        self.online_billers = billers;
        self
    }

    /// Adds card payments: the card service over `payments`, answering
    /// with `PaymentService` messages.
    #[must_use]
    pub fn with_payments(mut self, payments: Arc<Payments>) -> Self {
        let answers = crate::payments::view::ProtoCardAnswers {
            config: payments.config.clone(),
        };
        self.cards = Some(Arc::new(CardService::new(
            Arc::clone(&self.db),
            Arc::clone(&payments),
            Arc::new(answers),
            self.stores.clone(),
            self.retention,
            Arc::clone(&self.clock),
        )));
        self.payments = Some(payments);
        self
    }

    /// Admits a request: takes an in-flight slot, validates the context with
    /// the rest of the fields, refuses a caller acting for another store or
    /// terminal than its certificate's, then charges the terminal's and
    /// store's rate limits. All of it happens before idempotency or any
    /// store access, so a refused request stores nothing. Malformed ids are
    /// reported as invalid fields first; well-formed ids of another store or
    /// terminal are `PERMISSION_DENIED`.
    pub fn admit(
        &self,
        caller: &Identity,
        context: Option<&pb::RequestContext>,
        now: DateTime<Utc>,
        check_rest: impl FnOnce(&mut Violations),
    ) -> Result<(OwnedSemaphorePermit, RequestContext), Status> {
        let permit = self.admission.enter().map_err(refused)?;
        let mut violations = Violations::default();
        let mut request_context =
            violations.context(context, |id| self.stores.contains_key(id), now);
        request_context.actor = caller.spiffe_id();
        check_rest(&mut violations);
        violations
            .finish()
            .map_err(|violations| invalid_argument(&violations))?;
        caller.check_acts_for(context)?;
        self.admission
            .charge(&request_context.store_id, &request_context.terminal_id)
            .map_err(refused)?;
        Ok((permit, request_context))
    }

    /// The configuration of a store validation found configured.
    pub fn store_config(&self, store_id: &str) -> &StoreConfig {
        self.stores
            .get(store_id)
            .expect("validation checked the store is configured")
    }
}

/// The bill service over the gateway's database and billers, answering
/// with `BillPaymentService` messages.
fn bill_service(
    db: &Arc<dyn Database>,
    billers: &BillerRegistry,
    online: &Arc<OnlineBillers>,
    stores: &BTreeMap<String, StoreConfig>,
    retention: chrono::Duration,
    clock: &Arc<dyn Clock>,
) -> Arc<BillService> {
    Arc::new(BillService::new(
        Arc::clone(db),
        billers.clone(),
        Arc::clone(online),
        Arc::new(crate::bill::view::ProtoBillAnswers),
        stores.clone(),
        retention,
        Arc::clone(clock),
    ))
}

/// The idempotency key of a request, from its context.
pub fn key_of(request_context: &RequestContext) -> IdempotencyKey {
    IdempotencyKey {
        store_id: request_context.store_id.clone(),
        terminal_id: request_context.terminal_id.clone(),
        client_request_id: request_context.client_request_id.clone(),
    }
}

/// The access log's level, [`AccessLog`] as a number (see [`set_access_log`]).
static ACCESS_LOG: AtomicU8 = AtomicU8::new(ACCESS_INFO);
const ACCESS_INFO: u8 = 0;
const ACCESS_DEBUG: u8 = 1;
const ACCESS_OFF: u8 = 2;

/// Sets the level of the access log (`log.access`) for the whole process:
/// one line per finished RPC, target `posgate_api::access`.
pub fn set_access_log(level: AccessLog) {
    let level = match level {
        AccessLog::Info => ACCESS_INFO,
        AccessLog::Debug => ACCESS_DEBUG,
        AccessLog::Off => ACCESS_OFF,
    };
    ACCESS_LOG.store(level, Ordering::Relaxed);
}

/// Runs one RPC's work and logs its outcome and latency (the access log).
pub async fn logged<T>(
    rpc: &str,
    context: Option<&pb::RequestContext>,
    work: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    if ACCESS_LOG.load(Ordering::Relaxed) == ACCESS_OFF {
        return work.await;
    }
    let started = Instant::now();
    let result = work.await;
    log_outcome(rpc, context, started, &result);
    result
}

/// Logs one finished RPC with its outcome and latency, at the access log's
/// level. Names the store and terminal the request claimed, never any of
/// its card data.
pub fn log_outcome<T>(
    rpc: &str,
    context: Option<&pb::RequestContext>,
    started: Instant,
    result: &Result<T, Status>,
) {
    macro_rules! access {
        ($($field:tt)*) => {
            match ACCESS_LOG.load(Ordering::Relaxed) {
                ACCESS_INFO => tracing::info!(target: "posgate_api::access", $($field)*),
                ACCESS_DEBUG => tracing::debug!(target: "posgate_api::access", $($field)*),
                _ => {}
            }
        };
    }
    let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let (store, terminal) =
        context.map_or(("", ""), |c| (c.store_id.as_str(), c.terminal_id.as_str()));
    match result {
        Ok(_) => access!(rpc, store, terminal, latency_us, code = "OK", "rpc done"),
        Err(status) => {
            access!(rpc, store, terminal, latency_us, code = ?status.code(), message = status.message(), "rpc refused");
        }
    }
}
