//! The gRPC service layer: turns protobuf requests into validated domain
//! commands, runs them through idempotency and the store, and turns domain
//! outcomes into responses or statuses with google.rpc details.
//!
//! # Layout
//! - [`validate`]: field-by-field checks of every request, collecting every violation.
//! - [`status`]: domain and store errors to gRPC statuses with details.
//! - [`admission`]: the in-flight bound and per-terminal / per-store rate limits.
//! - [`idempotent`]: replay of stored answers and detection of reused keys.
//! - [`bill_payment`]: the `BillPaymentService` implementation.

pub mod admission;
pub mod bill_payment;
pub mod idempotent;
pub mod status;
pub mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::bill::BillerRegistry;
use crate::clock::Clock;
use crate::config::{Config, StoreConfig};
use crate::store::Store;
use admission::Admission;

/// Everything the services share.
#[derive(Debug)]
pub struct Gateway {
    pub store: Arc<dyn Store>,
    pub billers: BillerRegistry,
    pub stores: BTreeMap<String, StoreConfig>,
    pub retention: chrono::Duration,
    pub clock: Arc<dyn Clock>,
    pub admission: Admission,
}

impl Gateway {
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        Ok(Self {
            store,
            billers: BillerRegistry::new(config.billers.clone())?,
            stores: config.stores.clone(),
            retention: chrono::Duration::from_std(config.idempotency_retention)
                .map_err(|_| "idempotency retention is too long".to_owned())?,
            clock,
            admission: Admission::new(&config.limits),
        })
    }
}
