//! Card-payment configuration: the HSM, the bank links, the BIN routing
//! table, the terminals' PIN keys and the card limits. Checked once at load.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::model::config_error::ConfigError;
use crate::model::ids::is_valid_id;
use crate::model::money::Currency;

/// Where the gateway's keys live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "backend", rename_all = "lowercase")]
pub enum HsmConfig {
    /// The software HSM: a keystore file sealed under a master key, read
    /// from `master_key_file` or the environment (`POSGATE_HSM_MASTER_KEY`).
    Software {
        keystore: PathBuf,
        #[serde(default)]
        master_key_file: Option<PathBuf>,
    },
    /// A PKCS#11 token (`SoftHSM2`, a network HSM), from the environment
    /// (`POSGATE_PKCS11_MODULE`, `POSGATE_PKCS11_TOKEN`, `POSGATE_PKCS11_PIN(_FILE)`).
    Pkcs11,
}

impl HsmConfig {
    /// Opens the HSM this section names.
    pub fn open(&self) -> Result<std::sync::Arc<dyn posgate_hsm::Hsm>, posgate_hsm::HsmError> {
        use posgate_hsm::keystore::MASTER_KEY_ENV;
        use posgate_hsm::{MasterKey, Pkcs11Config, Pkcs11Hsm, SoftwareHsm};
        Ok(match self {
            Self::Software {
                keystore,
                master_key_file,
            } => {
                let master = match master_key_file {
                    Some(path) => MasterKey::from_file(path)?,
                    None => MasterKey::from_env(MASTER_KEY_ENV)?,
                };
                std::sync::Arc::new(SoftwareHsm::open(keystore, master)?)
            }
            Self::Pkcs11 => std::sync::Arc::new(Pkcs11Hsm::connect(&Pkcs11Config::from_env()?)?),
        })
    }
}

/// One ISO 8583 bank link.
#[derive(Debug, Clone)]
pub struct BankLinkConfig {
    pub id: String,
    pub addr: String,
    pub request_timeout: Duration,
    pub max_in_flight: usize,
    pub echo_interval: Duration,
    pub acquirer_id: String,
    /// HSM labels of the link's keys.
    pub mac_key: String,
    pub zmk: String,
    pub zpk: String,
    /// Ask the bank for a new MAC key this often (and after each sign-on).
    pub key_change_interval: Option<Duration>,
    /// The merchant name printed on receipts of this route.
    pub merchant_name: String,
}

/// A co-brand BIN range: cards in it go to the co-brand issuer's link.
#[derive(Debug, Clone)]
pub struct BinRoute {
    /// Leading PAN digits (1-11 digits).
    pub prefix: String,
    pub link: String,
    /// The issuer requires an online PIN on this range.
    pub pin_required: bool,
}

/// A terminal PIN key: which key a PIN pad encrypts under, and which
/// terminals may use it.
#[derive(Debug, Clone)]
pub struct PinKeyConfig {
    /// The id terminals send in `card.pin.key_id`.
    pub id: String,
    /// The key's HSM label.
    pub hsm_label: String,
    /// `STORE/TERMINAL` pairs allowed to use it.
    pub terminals: Vec<String>,
}

/// Card payments as configured.
#[derive(Debug, Clone)]
pub struct CardConfig {
    pub hsm: Option<HsmConfig>,
    /// HSM label of the HMAC key that fingerprints PANs.
    pub pan_fingerprint_key: String,
    pub links: Vec<BankLinkConfig>,
    /// The link of every card outside the co-brand ranges.
    pub acquirer_link: Option<String>,
    pub co_brand: Vec<BinRoute>,
    pub pin_keys: Vec<PinKeyConfig>,
    /// Card brands the chain accepts (lower case: visa, mastercard, jcb, ...).
    pub accepted_brands: Vec<String>,
    /// Largest card amount per currency, in minor units.
    pub max_amount_minor: BTreeMap<&'static str, i64>,
    pub authorization_hold: Duration,
    pub refund_window_days: u32,
    /// The merchant id (ISO 8583 field 42) per store; stores without one take no cards.
    pub merchant_ids: BTreeMap<String, String>,
    /// The card currency per store.
    pub store_currency: BTreeMap<String, Currency>,
    /// How soon a failed reversal or advice is tried again, growing to the max.
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl CardConfig {
    /// The store's merchant id (field 42, space-padded); empty for a store without cards.
    pub fn merchant_id(&self, store_id: &str) -> String {
        self.merchant_ids.get(store_id).cloned().unwrap_or_default()
    }

    /// No card payments configured.
    pub fn disabled() -> Self {
        Self {
            hsm: None,
            pan_fingerprint_key: "pan-fingerprint".to_owned(),
            links: Vec::new(),
            acquirer_link: None,
            co_brand: Vec::new(),
            pin_keys: Vec::new(),
            accepted_brands: Vec::new(),
            max_amount_minor: BTreeMap::new(),
            authorization_hold: Duration::from_secs(7 * 86_400),
            refund_window_days: 180,
            merchant_ids: BTreeMap::new(),
            store_currency: BTreeMap::new(),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
        }
    }

    pub fn enabled(&self) -> bool {
        self.acquirer_link.is_some()
    }

    pub fn link(&self, id: &str) -> Option<&BankLinkConfig> {
        self.links.iter().find(|link| link.id == id)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCard {
    acquirer_link: String,
    #[serde(default = "default_pan_fingerprint_key")]
    pan_fingerprint_key: String,
    #[serde(default = "default_brands")]
    accepted_brands: Vec<String>,
    #[serde(default)]
    max_amount_minor: BTreeMap<String, i64>,
    #[serde(default = "default_hold_days")]
    authorization_hold_days: u32,
    #[serde(default = "default_refund_window_days")]
    refund_window_days: u32,
    #[serde(default = "default_retry_min_ms")]
    retry_min_ms: u64,
    #[serde(default = "default_retry_max_ms")]
    retry_max_ms: u64,
    /// `store id = { merchant_id = "...", currency = "TWD" }`.
    #[serde(default)]
    stores: BTreeMap<String, RawCardStore>,
}

fn default_pan_fingerprint_key() -> String {
    "pan-fingerprint".to_owned()
}

fn default_brands() -> Vec<String> {
    ["visa", "mastercard", "jcb", "american_express", "unionpay"]
        .map(str::to_owned)
        .to_vec()
}

fn default_hold_days() -> u32 {
    // Card schemes let an authorization stand about a week.
    7
}

fn default_refund_window_days() -> u32 {
    180
}

fn default_retry_min_ms() -> u64 {
    1_000
}

fn default_retry_max_ms() -> u64 {
    // A reversal is retried at least every five minutes until the bank answers.
    300_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCardStore {
    merchant_id: String,
    currency: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLink {
    id: String,
    addr: String,
    #[serde(default = "default_timeout_ms")]
    request_timeout_ms: u64,
    #[serde(default = "default_max_in_flight")]
    max_in_flight: usize,
    #[serde(default = "default_echo_s")]
    echo_interval_s: u64,
    acquirer_id: String,
    mac_key: String,
    zmk: String,
    zpk: String,
    #[serde(default)]
    key_change_interval_s: Option<u64>,
    merchant_name: String,
}

fn default_timeout_ms() -> u64 {
    30_000
}

fn default_max_in_flight() -> usize {
    256
}

fn default_echo_s() -> u64 {
    30
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBinRoute {
    prefix: String,
    link: String,
    #[serde(default)]
    pin_required: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPinKey {
    id: String,
    hsm_label: String,
    terminals: Vec<String>,
}

/// The raw card sections of the config file.
#[derive(Debug, Default)]
pub(crate) struct RawCardSections {
    pub hsm: Option<HsmConfig>,
    pub card: Option<RawCard>,
    pub links: Vec<RawLink>,
    pub bin_routes: Vec<RawBinRoute>,
    pub pin_keys: Vec<RawPinKey>,
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// Checks the `[[bank_link]]` sections.
fn check_links(raw: Vec<RawLink>) -> Result<Vec<BankLinkConfig>, ConfigError> {
    let mut links = Vec::new();
    for (index, link) in raw.into_iter().enumerate() {
        let key = |field: &str| format!("bank_link[{index}].{field}");
        if !is_valid_id(&link.id) || links.iter().any(|l: &BankLinkConfig| l.id == link.id) {
            return Err(invalid(key("id"), "must be a unique id of 1-32 characters"));
        }
        if link.request_timeout_ms == 0 || link.max_in_flight == 0 {
            return Err(invalid(
                key("request_timeout_ms"),
                "timeouts and max_in_flight must be positive",
            ));
        }
        if link.acquirer_id.is_empty()
            || link.acquirer_id.len() > 11
            || !link.acquirer_id.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(invalid(key("acquirer_id"), "must be 1-11 digits"));
        }
        check_stan_space(&links, &link.acquirer_id, &key("acquirer_id"))?;
        links.push(BankLinkConfig {
            id: link.id,
            addr: link.addr,
            request_timeout: Duration::from_millis(link.request_timeout_ms),
            max_in_flight: link.max_in_flight,
            echo_interval: Duration::from_secs(link.echo_interval_s.max(1)),
            acquirer_id: link.acquirer_id,
            mac_key: link.mac_key,
            zmk: link.zmk,
            zpk: link.zpk,
            key_change_interval: link.key_change_interval_s.map(Duration::from_secs),
            merchant_name: link.merchant_name,
        });
    }
    Ok(links)
}

/// Links with the same acquiring institution id share one STAN space (see
/// `payments::stan_space`), so their requests never carry the same field 90
/// on the same day. Ids that differ only in leading zeros would reach the
/// bank as different field 32 but the same field 90: ambiguous originals, so
/// they are refused rather than silently merged.
fn check_stan_space(
    earlier: &[BankLinkConfig],
    acquirer_id: &str,
    key: &str,
) -> Result<(), ConfigError> {
    let space = super::stan_space(acquirer_id);
    match earlier.iter().find(|other| {
        other.acquirer_id != acquirer_id && super::stan_space(&other.acquirer_id) == space
    }) {
        Some(other) => Err(invalid(
            key,
            format!(
                "{acquirer_id} and bank link {}'s {} are the same institution in field 90 \
                 (zero-padded to 11 digits) but differ in field 32; write both the same way \
                 so the two links share one STAN space",
                other.id, other.acquirer_id
            ),
        )),
        None => Ok(()),
    }
}

/// Checks the card sections against each other and the stores.
pub(crate) fn check(raw: RawCardSections, store_ids: &[String]) -> Result<CardConfig, ConfigError> {
    let mut config = CardConfig::disabled();
    config.hsm = raw.hsm;
    config.links = check_links(raw.links)?;
    for (index, route) in raw.bin_routes.into_iter().enumerate() {
        let key = |field: &str| format!("bin_route[{index}].{field}");
        if route.prefix.is_empty()
            || route.prefix.len() > 11
            || !route.prefix.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(invalid(key("prefix"), "must be 1-11 digits"));
        }
        if config.link(&route.link).is_none() {
            return Err(invalid(key("link"), "names no [[bank_link]]"));
        }
        config.co_brand.push(BinRoute {
            prefix: route.prefix,
            link: route.link,
            pin_required: route.pin_required,
        });
    }
    // Longest prefix first, so the most specific range wins.
    config
        .co_brand
        .sort_by_key(|range| std::cmp::Reverse(range.prefix.len()));
    for (index, pin_key) in raw.pin_keys.into_iter().enumerate() {
        let key = |field: &str| format!("pin_key[{index}].{field}");
        if pin_key.id.is_empty() || pin_key.id.len() > 64 {
            return Err(invalid(key("id"), "must be 1-64 characters"));
        }
        if pin_key.terminals.iter().any(|t| !t.contains('/')) {
            return Err(invalid(key("terminals"), "entries are STORE/TERMINAL"));
        }
        config.pin_keys.push(PinKeyConfig {
            id: pin_key.id,
            hsm_label: pin_key.hsm_label,
            terminals: pin_key.terminals,
        });
    }
    let Some(card) = raw.card else {
        if config.links.is_empty() {
            return Ok(config);
        }
        return Err(invalid(
            "card",
            "a [card] section is needed with [[bank_link]]",
        ));
    };
    if config.link(&card.acquirer_link).is_none() {
        return Err(invalid("card.acquirer_link", "names no [[bank_link]]"));
    }
    if config.hsm.is_none() {
        return Err(invalid("hsm", "card payments need an [hsm] section"));
    }
    config.acquirer_link = Some(card.acquirer_link);
    config.pan_fingerprint_key = card.pan_fingerprint_key;
    config.accepted_brands = card.accepted_brands;
    config.authorization_hold =
        Duration::from_secs(u64::from(card.authorization_hold_days) * 86_400);
    config.refund_window_days = card.refund_window_days;
    config.retry_min = Duration::from_millis(card.retry_min_ms.max(10));
    config.retry_max = Duration::from_millis(card.retry_max_ms.max(card.retry_min_ms));
    // Defaults from the proto: 200,000 TWD, 1,000,000 JPY, 10,000 USD.
    for (currency, amount) in [("TWD", 20_000_000), ("JPY", 1_000_000), ("USD", 1_000_000)] {
        config.max_amount_minor.insert(currency, amount);
    }
    for (code, amount) in card.max_amount_minor {
        let currency = Currency::from_code(&code)
            .ok_or_else(|| invalid("card.max_amount_minor", format!("unknown currency {code}")))?;
        if amount <= 0 {
            return Err(invalid("card.max_amount_minor", "amounts must be positive"));
        }
        config.max_amount_minor.insert(currency.code, amount);
    }
    for (store, settings) in card.stores {
        let key = format!("card.stores.{store}");
        if !store_ids.contains(&store) {
            return Err(invalid(key, "names no [[store]]"));
        }
        if settings.merchant_id.is_empty() || settings.merchant_id.len() > 15 {
            return Err(invalid(key, "merchant_id must be 1-15 characters"));
        }
        let currency = Currency::from_code(&settings.currency)
            .ok_or_else(|| invalid(key.clone(), "unknown currency"))?;
        // Field 42 is exactly 15 characters, space-padded.
        config
            .merchant_ids
            .insert(store.clone(), format!("{:<15}", settings.merchant_id));
        config.store_currency.insert(store, currency);
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_link(id: &str, acquirer_id: &str) -> RawLink {
        toml::from_str(&format!(
            "id = \"{id}\"\naddr = \"127.0.0.1:1\"\nacquirer_id = \"{acquirer_id}\"\n\
             mac_key = \"m\"\nzmk = \"z\"\nzpk = \"p\"\nmerchant_name = \"n\"\n"
        ))
        .unwrap()
    }

    /// Links of one institution share a STAN space; ids that are the same
    /// institution in field 90 but differ in field 32 are refused at load.
    #[test]
    fn links_that_could_collide_in_field_90_are_refused() {
        let shared = check_links(vec![
            raw_link("acquirer", "10000000001"),
            raw_link("cobrand", "10000000001"),
        ])
        .unwrap();
        assert_eq!(
            super::super::stan_space(&shared[0].acquirer_id),
            super::super::stan_space(&shared[1].acquirer_id)
        );
        let error = check_links(vec![raw_link("a", "123"), raw_link("b", "00000000123")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("bank_link[1].acquirer_id"), "{error}");
        assert!(check_links(vec![raw_link("a", "123"), raw_link("b", "124")]).is_ok());
    }
}
