//! The gateway's TOML configuration: server, database, limits, stores and
//! billers. Every value is checked once at load time, so the rest of the code
//! works with typed, valid settings.
//!
//! Environment overrides (for containers and secrets): `POSGATE_DATABASE_URL`
//! replaces `database.url`, `POSGATE_LISTEN` replaces `server.listen`.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveTime;
use chrono_tz::Tz;
use serde::Deserialize;

use crate::bill::barcode::BarcodeProfile;
use crate::bill::config::BillerConfig;
use crate::cards;
use crate::cards::config::{
    CardConfig, HsmConfig, RawBinRoute, RawCard, RawCardSections, RawLink, RawPinKey,
};
use crate::clearing::model::{PartnerConfig, RawPartner};
use crate::model::Party;
use crate::model::ids::is_valid_id;
use crate::model::money::{Currency, FeeContract, FeeRule, MAX_AMOUNT_MINOR};

use crate::model::business_day::StoreConfig;
pub use crate::model::config_error::ConfigError;

/// The whole configuration, as loaded and checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub idempotency_retention: Duration,
    pub limits: LimitsConfig,
    pub stores: BTreeMap<String, StoreConfig>,
    pub billers: Vec<BillerConfig>,
    pub log_json: bool,
    /// The per-request access log (`log.access`).
    pub log_access: AccessLog,
    /// Card payments: HSM, bank links, routing. Disabled when not configured.
    pub card: CardConfig,
    /// Clearing partners (`[[partner]]`): file layout, currency, fee contract.
    pub partners: Vec<PartnerConfig>,
    /// Clearing run settings (`[clearing]`).
    pub clearing: ClearingConfig,
    /// Settlement instruction settings (`[settlement]`): posgate's ACH
    /// originator identity and its accounts for the instruction files.
    pub settlement: crate::clearing::settle::SettlementConfig,
    /// Audit chain sealing and `AuditService` settings (`[audit]`).
    pub audit: crate::audit::config::AuditConfig,
    /// E-wallet operators (`[[wallet_operator]]`); they need `[hsm]` for signing.
    pub wallet_operators: Vec<crate::wallet::config::WalletOperatorConfig>,
    /// This gateway among several on one database (`[instance]`).
    pub instance: crate::instance::InstanceConfig,
    /// The operations endpoint (`[metrics]`): Prometheus metrics on a listen
    /// address of their own. `None` (no section): no endpoint.
    pub metrics: Option<MetricsConfig>,
}

/// `[metrics]`: where the operations endpoint (`GET /metrics`) listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: String,
}

impl RawMetrics {
    /// Checks the section against the gRPC listener it must not share.
    fn check(self, server: &ServerConfig) -> Result<MetricsConfig, ConfigError> {
        let listen: SocketAddr = self
            .listen
            .parse()
            .map_err(|_| invalid("metrics.listen", "not a socket address like 127.0.0.1:9464"))?;
        if listen.port() != 0 && listen == server.listen {
            return Err(invalid(
                "metrics.listen",
                "must differ from server.listen: the metrics endpoint has a listener of its own",
            ));
        }
        Ok(MetricsConfig { listen })
    }
}

/// Where clearing files go and how they are signed.
#[derive(Debug, Clone)]
pub struct ClearingConfig {
    /// Directory of the daily clearing files (one subdirectory per business date).
    pub out_dir: PathBuf,
    /// HSM label of the Ed25519 key that signs the files.
    pub signing_key: String,
    /// Run the close of each business day inside `posgate serve`.
    pub scheduled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClearing {
    #[serde(default = "default_clearing_dir")]
    out_dir: PathBuf,
    #[serde(default = "default_signing_key")]
    signing_key: String,
    #[serde(default)]
    scheduled: bool,
}

impl Default for RawClearing {
    fn default() -> Self {
        Self {
            out_dir: default_clearing_dir(),
            signing_key: default_signing_key(),
            scheduled: false,
        }
    }
}

fn default_clearing_dir() -> PathBuf {
    PathBuf::from("clearing")
}

fn default_signing_key() -> String {
    "clearing-sign".to_owned()
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// PEM bundle of the CAs whose client certificates are accepted. Every
    /// caller must present one (mutual TLS); its SPIFFE id says who it is.
    pub client_ca: PathBuf,
    /// A PEM CRL signed by the client CA, re-read while serving when it changes.
    pub crl: Option<PathBuf>,
    /// Seconds to let in-flight requests finish after SIGTERM before exiting anyway.
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `sqlite://path` or `postgres://...`.
    pub url: String,
    pub max_connections: u32,
    /// PostgreSQL group-commit writer tasks. Every batch of every instance
    /// advances the one audit chain head, so several instances on one
    /// database share it best with one writer each (README).
    pub writers: usize,
}

/// Load-shedding limits. Requests over a limit get `RESOURCE_EXHAUSTED` with
/// retry advice at once rather than waiting in an unbounded queue.
#[derive(Debug, Clone, Copy)]
pub struct LimitsConfig {
    pub terminal_per_second: u32,
    pub terminal_burst: u32,
    pub store_per_second: u32,
    pub store_burst: u32,
    pub max_in_flight: usize,
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    database: RawDatabase,
    #[serde(default)]
    idempotency: RawIdempotency,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    log: RawLog,
    #[serde(default, rename = "store")]
    stores: Vec<RawStore>,
    #[serde(default, rename = "biller")]
    billers: Vec<RawBiller>,
    #[serde(default)]
    hsm: Option<HsmConfig>,
    #[serde(default)]
    card: Option<RawCard>,
    #[serde(default, rename = "bank_link")]
    bank_links: Vec<RawLink>,
    #[serde(default, rename = "bin_route")]
    bin_routes: Vec<RawBinRoute>,
    #[serde(default, rename = "pin_key")]
    pin_keys: Vec<RawPinKey>,
    #[serde(default, rename = "partner")]
    partners: Vec<RawPartner>,
    #[serde(default)]
    clearing: RawClearing,
    #[serde(default)]
    settlement: crate::clearing::settle::SettlementConfig,
    #[serde(default)]
    audit: crate::audit::config::RawAudit,
    #[serde(default, rename = "wallet_operator")]
    wallet_operators: Vec<crate::wallet::config::RawWalletOperator>,
    #[serde(default)]
    metrics: Option<RawMetrics>,
    #[serde(default)]
    instance: crate::instance::config::RawInstance,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: String,
    tls_cert: PathBuf,
    tls_key: PathBuf,
    client_ca: PathBuf,
    #[serde(default)]
    crl: Option<PathBuf>,
    #[serde(default = "default_shutdown_grace_seconds")]
    shutdown_grace_seconds: u64,
}

fn default_shutdown_grace_seconds() -> u64 {
    // Long enough for any request in flight (they take milliseconds) and for
    // database commits to finish, short enough for an orchestrator's kill timer.
    20
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: String,
    #[serde(default = "default_max_connections")]
    max_connections: u32,
    #[serde(default = "default_writers")]
    writers: usize,
}

/// `database.writers`: 1 to [`MAX_WRITERS`], and on PostgreSQL fewer than
/// the pool's connections (each writer holds one; reads need the rest).
fn check_writers(database: &RawDatabase) -> Result<(), ConfigError> {
    let writers = database.writers;
    if !(1..=MAX_WRITERS).contains(&writers) {
        return Err(invalid(
            "database.writers",
            format!("must be 1 to {MAX_WRITERS}"),
        ));
    }
    let postgres = database.url.starts_with("postgres");
    if postgres && u32::try_from(writers).is_ok_and(|w| w >= database.max_connections) {
        return Err(invalid(
            "database.writers",
            "must be below database.max_connections (each writer holds a connection)",
        ));
    }
    Ok(())
}

fn default_writers() -> usize {
    // Four overlap one batch's statements with another's commit on a small
    // machine; more only queue on the audit chain head.
    4
}

/// Most writer tasks: each holds a pooled connection.
const MAX_WRITERS: usize = 16;

fn default_max_connections() -> u32 {
    // Enough connections to keep PostgreSQL busy on a small machine; each
    // costs a backend process, so more only adds contention.
    16
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdempotency {
    retention_days: u32,
}

impl Default for RawIdempotency {
    fn default() -> Self {
        // A POS that retries the next morning, or after a long weekend, must still be safe.
        Self { retention_days: 30 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    terminal_per_second: u32,
    terminal_burst: u32,
    store_per_second: u32,
    store_burst: u32,
    max_in_flight: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        // A till scans a few items a second at most; 20/s with a burst of 40
        // tolerates a POS replaying its offline queue without letting one
        // broken terminal starve its store. A store has a handful of tills.
        // In-flight work is bounded so memory and latency stay bounded under
        // overload: beyond it the gateway sheds instead of queueing.
        Self {
            terminal_per_second: 20,
            terminal_burst: 40,
            store_per_second: 100,
            store_burst: 200,
            max_in_flight: 1024,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default)]
    json: bool,
    #[serde(default)]
    access: AccessLog,
}

/// The level of the access log, one line per finished RPC ("rpc done" or
/// "rpc refused": RPC, store, terminal, latency, status code): `info` (the
/// default: shown at the usual level), `debug` (shown only when the log
/// level lets debug lines through, e.g. `RUST_LOG=posgate_api::access=debug`)
/// or `off` (never formatted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLog {
    #[default]
    Info,
    Debug,
    Off,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    id: String,
    name: String,
    time_zone: String,
    cutoff: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBiller {
    id: String,
    name: String,
    profile: String,
    agency_codes: Vec<String>,
    currency: String,
    min_amount_minor: u64,
    max_amount_minor: u64,
    #[serde(default)]
    accept_after_due: bool,
    #[serde(default)]
    allow_repeat_payment: bool,
    fee: FeeRule,
    /// `"batch"` (the default: told only through the daily file) or `"online"`.
    #[serde(default)]
    mode: Option<String>,
    /// Required for `mode = "online"`.
    #[serde(default)]
    online: Option<crate::bill::config::RawOnlineBiller>,
}

impl Config {
    /// The clearing context this configuration describes: its stores'
    /// calendars, its partners, and the HSM of `[hsm]` with the `[clearing]`
    /// signing key.
    pub fn clearing_context(
        &self,
        db: std::sync::Arc<dyn crate::ports::db::Database>,
    ) -> Result<crate::clearing::close::ClearingContext, crate::clearing::close::ContextError> {
        use crate::clearing::close::{ClearingContext, ContextError};
        let hsm = self
            .card
            .hsm
            .as_ref()
            .ok_or(ContextError::NoHsm)?
            .open()
            .map_err(ContextError::Hsm)?;
        Ok(ClearingContext {
            store: db,
            hsm,
            signing_key: self.clearing.signing_key.clone(),
            partners: self.partners.clone(),
            settlement: self.settlement.clone(),
            calendars: self
                .stores
                .iter()
                .map(|(store_id, store)| {
                    (
                        store_id.clone(),
                        crate::model::business_day::BusinessCalendar::from(store),
                    )
                })
                .collect(),
        })
    }

    /// Reads, parses and checks a config file, then applies environment overrides.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::parse(&text).map_err(|error| match error {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.to_owned(),
                source,
            },
            other => other,
        })?;
        if let Ok(url) = std::env::var("POSGATE_DATABASE_URL") {
            config.database.url = url;
        }
        if let Ok(listen) = std::env::var("POSGATE_LISTEN") {
            config.server.listen = listen
                .parse()
                .map_err(|_| invalid("POSGATE_LISTEN", "not a socket address"))?;
        }
        Ok(config)
    }

    /// Parses and checks config text (no environment overrides).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: PathBuf::new(),
            source,
        })?;
        let server = ServerConfig {
            listen: raw.server.listen.parse().map_err(|_| {
                invalid("server.listen", "not a socket address like 127.0.0.1:50051")
            })?,
            tls_cert: raw.server.tls_cert,
            tls_key: raw.server.tls_key,
            client_ca: raw.server.client_ca,
            crl: raw.server.crl,
            shutdown_grace: Duration::from_secs(raw.server.shutdown_grace_seconds),
        };
        check_writers(&raw.database)?;
        if raw.idempotency.retention_days == 0 {
            return Err(invalid("idempotency.retention_days", "must be at least 1"));
        }
        let limits = check_limits(&raw.limits)?;
        let metrics = raw
            .metrics
            .map(|metrics| metrics.check(&server))
            .transpose()?;
        let stores = check_stores(raw.stores)?;
        let billers = check_billers(raw.billers)?;
        let store_ids: Vec<String> = stores.keys().cloned().collect();
        let partners = check_partners(raw.partners)?;
        raw.settlement
            .check()
            .map_err(|error| invalid("settlement", error.to_string()))?;
        let wallet_operators = crate::wallet::config::check(raw.wallet_operators, &store_ids)?;
        if !wallet_operators.is_empty() && raw.hsm.is_none() {
            return Err(invalid(
                "wallet_operator",
                "wallet operators sign requests with an HSM key: configure [hsm]",
            ));
        }
        let card = cards::config::check(
            RawCardSections {
                hsm: raw.hsm,
                card: raw.card,
                links: raw.bank_links,
                bin_routes: raw.bin_routes,
                pin_keys: raw.pin_keys,
            },
            &store_ids,
        )?;
        let config = Self {
            server,
            database: DatabaseConfig {
                url: raw.database.url,
                max_connections: raw.database.max_connections.max(1),
                writers: raw.database.writers,
            },
            idempotency_retention: Duration::from_secs(
                u64::from(raw.idempotency.retention_days) * 86_400,
            ),
            limits,
            stores,
            billers,
            log_json: raw.log.json,
            log_access: raw.log.access,
            card,
            partners,
            clearing: ClearingConfig {
                out_dir: raw.clearing.out_dir,
                signing_key: raw.clearing.signing_key,
                scheduled: raw.clearing.scheduled,
            },
            settlement: raw.settlement,
            audit: raw
                .audit
                .check()
                .map_err(|(key, reason)| invalid(key, reason))?,
            wallet_operators,
            instance: raw.instance.check()?,
            metrics,
        };
        check_partner_currencies(&config)?;
        Ok(config)
    }

    /// The currencies a settlement party's items can be in, each with what
    /// brings it there (for messages): a biller's bills, a wallet operator's
    /// payments, and every card store's sales for each bank link a card can
    /// be routed to (the acquirer link and every co-brand range's link).
    fn party_currencies(&self) -> BTreeMap<String, BTreeMap<&'static str, String>> {
        let mut parties: BTreeMap<String, BTreeMap<&'static str, String>> = BTreeMap::new();
        for biller in &self.billers {
            parties
                .entry(Party::Biller(biller.id.clone()).to_string())
                .or_default()
                .insert(
                    biller.currency.code,
                    format!("bills of biller {}", biller.id),
                );
        }
        for operator in &self.wallet_operators {
            parties.entry(operator.party()).or_default().insert(
                operator.currency.code,
                format!("wallet operator {}", operator.id),
            );
        }
        let links = self
            .card
            .acquirer_link
            .iter()
            .chain(self.card.co_brand.iter().map(|route| &route.link));
        for link in links {
            for (store_id, currency) in &self.card.store_currency {
                parties
                    .entry(Party::Bank(link.clone()).to_string())
                    .or_default()
                    .entry(currency.code)
                    .or_insert_with(|| format!("card sales at store {store_id} on link {link}"));
            }
        }
        parties
    }
}

/// Refuses a clearing partner whose items can be in another currency than
/// the one it settles in: its file, fees and settlement instruction would
/// mix currencies (a JPY file with a TWD trailer).
fn check_partner_currencies(config: &Config) -> Result<(), ConfigError> {
    let parties = config.party_currencies();
    for (index, partner) in config.partners.iter().enumerate() {
        let Some(currencies) = parties.get(&partner.id) else {
            continue;
        };
        if let Some((currency, source)) = currencies
            .iter()
            .find(|(currency, _)| **currency != partner.currency.code)
        {
            return Err(invalid(
                format!("partner[{index}].currency"),
                format!(
                    "partner {} settles in {}, but its items include {currency} ({source}); \
                     give it the currency of its items, or route each currency to a partner of its own",
                    partner.id, partner.currency.code
                ),
            ));
        }
    }
    Ok(())
}

fn check_limits(raw: &RawLimits) -> Result<LimitsConfig, ConfigError> {
    let positive = [
        ("limits.terminal_per_second", raw.terminal_per_second),
        ("limits.terminal_burst", raw.terminal_burst),
        ("limits.store_per_second", raw.store_per_second),
        ("limits.store_burst", raw.store_burst),
    ];
    if let Some((key, _)) = positive.iter().find(|(_, value)| *value == 0) {
        return Err(invalid(*key, "must be at least 1"));
    }
    if raw.max_in_flight == 0 {
        return Err(invalid("limits.max_in_flight", "must be at least 1"));
    }
    Ok(LimitsConfig {
        terminal_per_second: raw.terminal_per_second,
        terminal_burst: raw.terminal_burst,
        store_per_second: raw.store_per_second,
        store_burst: raw.store_burst,
        max_in_flight: raw.max_in_flight,
    })
}

fn check_stores(raw: Vec<RawStore>) -> Result<BTreeMap<String, StoreConfig>, ConfigError> {
    let mut stores = BTreeMap::new();
    for (index, store) in raw.into_iter().enumerate() {
        let key = |field: &str| format!("store[{index}].{field}");
        if !is_valid_id(&store.id) {
            return Err(invalid(
                key("id"),
                "must be 1-32 characters of A-Z a-z 0-9 _ -",
            ));
        }
        let time_zone: Tz = store
            .time_zone
            .parse()
            .map_err(|_| invalid(key("time_zone"), "not an IANA time zone like Asia/Taipei"))?;
        let cutoff = NaiveTime::parse_from_str(&store.cutoff, "%H:%M")
            .map_err(|_| invalid(key("cutoff"), "not a local time HH:MM"))?;
        let config = StoreConfig {
            id: store.id.clone(),
            name: store.name,
            time_zone,
            cutoff,
        };
        if stores.insert(store.id, config).is_some() {
            return Err(invalid(key("id"), "duplicate store id"));
        }
    }
    Ok(stores)
}

fn check_billers(raw: Vec<RawBiller>) -> Result<Vec<BillerConfig>, ConfigError> {
    let mut ids = HashSet::new();
    let mut codes = HashSet::new();
    let mut billers = Vec::with_capacity(raw.len());
    for (index, biller) in raw.into_iter().enumerate() {
        let key = |field: &str| format!("biller[{index}].{field}");
        if !is_valid_id(&biller.id) || !ids.insert(biller.id.clone()) {
            return Err(invalid(
                key("id"),
                "must be a unique id of 1-32 characters of A-Z a-z 0-9 _ -",
            ));
        }
        let profile = BarcodeProfile::parse_name(&biller.profile)
            .ok_or_else(|| invalid(key("profile"), "must be \"tw-cvs-3seg\" or \"jp-gs1-cvs\""))?;
        let currency = Currency::from_code(&biller.currency)
            .ok_or_else(|| invalid(key("currency"), "not an ISO 4217 code posgate knows"))?;
        if biller.agency_codes.is_empty() {
            return Err(invalid(key("agency_codes"), "must list at least one code"));
        }
        for code in &biller.agency_codes {
            if !codes.insert((profile, code.clone())) {
                return Err(invalid(
                    key("agency_codes"),
                    format!("code {code} belongs to two billers"),
                ));
            }
        }
        if biller.min_amount_minor == 0
            || biller.min_amount_minor > biller.max_amount_minor
            || biller.max_amount_minor > MAX_AMOUNT_MINOR
        {
            return Err(invalid(
                key("min_amount_minor"),
                "need 1 <= min_amount_minor <= max_amount_minor <= 999999999999",
            ));
        }
        let fee =
            FeeContract::new(biller.fee, currency).map_err(|reason| invalid(key("fee"), reason))?;
        let online = match (biller.mode.as_deref().unwrap_or("batch"), biller.online) {
            ("batch", None) => None,
            ("batch", Some(_)) => {
                return Err(invalid(key("online"), "is only for mode = \"online\""));
            }
            ("online", Some(raw)) => Some(
                raw.check()
                    .map_err(|(field, reason)| invalid(key(&field), reason))?,
            ),
            ("online", None) => {
                return Err(invalid(
                    key("online"),
                    "mode = \"online\" needs an [biller.online] table (url, keys, TLS files)",
                ));
            }
            (_, _) => return Err(invalid(key("mode"), "must be \"batch\" or \"online\"")),
        };
        billers.push(BillerConfig {
            id: biller.id,
            name: biller.name,
            profile,
            agency_codes: biller.agency_codes,
            currency,
            min_amount_minor: biller.min_amount_minor,
            max_amount_minor: biller.max_amount_minor,
            accept_after_due: biller.accept_after_due,
            allow_repeat_payment: biller.allow_repeat_payment,
            fee,
            online,
        });
    }
    Ok(billers)
}

fn check_partners(raw: Vec<RawPartner>) -> Result<Vec<PartnerConfig>, ConfigError> {
    let mut ids = HashSet::new();
    let mut partners = Vec::with_capacity(raw.len());
    for (index, partner) in raw.into_iter().enumerate() {
        if !ids.insert(partner.id.clone()) {
            return Err(invalid(
                format!("partner[{index}].id"),
                "duplicate partner id",
            ));
        }
        let checked = PartnerConfig::check(partner)
            .map_err(|(field, reason)| invalid(format!("partner[{index}].{field}"), reason))?;
        partners.push(checked);
    }
    Ok(partners)
}

/// A store's trading calendar, from its `[[stores]]` entry.
impl From<&StoreConfig> for crate::model::business_day::BusinessCalendar {
    fn from(store: &StoreConfig) -> Self {
        Self {
            time_zone: store.time_zone,
            cutoff: store.cutoff,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest configuration that parses, plus `extra`.
    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!(
            "[server]\nlisten = \"127.0.0.1:50051\"\ntls_cert = \"s.pem\"\ntls_key = \"s.key\"\n\
             client_ca = \"ca.pem\"\n[database]\nurl = \"sqlite://x.db\"\n{extra}"
        ))
    }

    fn invalid_key(result: Result<Config, ConfigError>) -> String {
        match result {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid key, got {other:?}"),
        }
    }

    /// `[metrics]` is optional; its address is checked and named in errors.
    #[test]
    fn metrics_section_is_optional_and_checked() {
        assert_eq!(parse("").unwrap().metrics, None);
        let config = parse("[metrics]\nlisten = \"127.0.0.1:9464\"\n").unwrap();
        assert_eq!(
            config.metrics.unwrap().listen,
            "127.0.0.1:9464".parse().unwrap()
        );
        assert_eq!(
            invalid_key(parse("[metrics]\nlisten = \"localhost\"\n")),
            "metrics.listen"
        );
        assert_eq!(
            invalid_key(parse("[metrics]\nlisten = \"127.0.0.1:50051\"\n")),
            "metrics.listen"
        );
        assert!(matches!(
            parse("[metrics]\nlisten = \"127.0.0.1:9464\"\npath = \"/m\"\n"),
            Err(ConfigError::Parse { .. })
        ));
    }

    /// `database.writers` defaults to 4, is bounded, and on PostgreSQL
    /// stays below the pool size.
    #[test]
    fn writers_are_bounded() {
        let with = |database: &str| {
            Config::parse(&format!(
                "[server]\nlisten = \"127.0.0.1:50051\"\ntls_cert = \"s.pem\"\ntls_key = \"s.key\"\n\
                 client_ca = \"ca.pem\"\n[database]\n{database}\n"
            ))
        };
        assert_eq!(parse("").unwrap().database.writers, 4);
        let two = with("url = \"postgres://db/x\"\nwriters = 2").unwrap();
        assert_eq!(two.database.writers, 2);
        for database in [
            "url = \"sqlite://x.db\"\nwriters = 0",
            "url = \"sqlite://x.db\"\nwriters = 17",
            "url = \"postgres://db/x\"\nmax_connections = 4\nwriters = 4",
        ] {
            assert_eq!(
                invalid_key(with(database)),
                "database.writers",
                "{database}"
            );
        }
    }
}
