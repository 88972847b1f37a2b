//! The simulator's configuration: listen address, keys, card accounts,
//! loyalty rules and faults. Loaded from TOML (see
//! `config/bank-sim.example.toml`) or built in code by tests.

use std::path::Path;
use std::time::Duration;

use posgate_hsm::{CardExpiry, Pan, Secret};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::SimError;

/// The currency an account holds when its config names none: 901, New Taiwan dollar.
const DEFAULT_CURRENCY: &str = "901";

/// Everything the simulator needs to stand in for a bank.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// `host:port` to listen on; `127.0.0.1:0` picks a free port.
    pub listen: String,
    /// Clear TDES MAC session key (32 hex), imported as version 1 of the simulator's MAC key.
    pub mac_key_hex: Secret<String>,
    /// Clear TDES zone master key (32 hex): new MAC keys leave wrapped under it.
    pub zmk_hex: Secret<String>,
    /// Clear TDES zone PIN key (32 hex): PIN blocks (ISO 9564 format 0) arrive under it.
    pub zpk_hex: Secret<String>,
    /// PAN prefixes of co-brand cards, which earn loyalty points.
    #[serde(default)]
    pub co_brand_bins: Vec<String>,
    /// Minor units of spend per loyalty point (100 = 1 point per NT$1.00 in TWD cents).
    #[serde(default = "default_points_per_unit")]
    pub points_per_unit: i64,
    /// The card accounts the simulated bank holds.
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
    /// Faults to inject from the start; change them at run time with `BankSim::set_faults`.
    #[serde(default)]
    pub faults: FaultConfig,
    /// If set, `host:port` of the read-only admin endpoint (`GET /ledger`:
    /// the books as JSON). Loopback addresses only: the books name cards.
    #[serde(default)]
    pub admin_listen: Option<String>,
}

fn default_points_per_unit() -> i64 {
    100
}

/// One card account: a credit line with an opening balance.
///
/// Open-to-buy (available) = `limit_minor` - `balance_minor` - held - posted,
/// where held and posted are what the simulator's traffic added.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// Full PAN (12 to 19 digits, Luhn valid). Never printed.
    pub pan: Secret<String>,
    /// Expiry month, `YYMM` as carried in field 14.
    pub expiry: String,
    /// The cardholder's PIN (4 to 12 digits); without one, PIN blocks are refused with 55.
    #[serde(default)]
    pub pin: Option<Secret<String>>,
    /// Credit limit in minor units of `currency`.
    pub limit_minor: i64,
    /// What the cardholder already owed before the simulator started, minor units.
    #[serde(default)]
    pub balance_minor: i64,
    /// ISO 4217 numeric code, as carried in field 49.
    #[serde(default = "default_currency")]
    pub currency: String,
    /// A blocked card is declined with 05 (do not honour).
    #[serde(default)]
    pub blocked: bool,
    /// The card security code (CVV2/CVC2, 3 digits; CID, 4). A request
    /// carrying another code in field 48 is declined with N7; without one
    /// configured, sent codes are not checked.
    #[serde(default)]
    pub security_code: Option<Secret<String>>,
}

fn default_currency() -> String {
    DEFAULT_CURRENCY.to_owned()
}

/// Faults the simulator injects into financial requests (0100, 0200, 0220,
/// 0400 and their repeats); network management (0800) is never faulted.
///
/// Every "process" fault applies the request to the ledger first: the
/// gateway must treat the outcome as unknown and reverse or retry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    /// Delay added before every financial answer.
    #[serde(rename = "latency_ms", with = "millis")]
    pub latency: Duration,
    /// Probability of applying the request and never answering.
    pub no_response: f64,
    /// Probability of applying the request, then closing the connection without answering.
    pub drop_connection: f64,
    /// Probability of applying the request and answering `late_by` later.
    pub late_response: f64,
    /// How late a late answer is.
    #[serde(rename = "late_by_ms", with = "millis")]
    pub late_by: Duration,
    /// Probability of answering twice.
    pub duplicate_response: f64,
    /// Probability of answering with a corrupted MAC.
    pub bad_mac: f64,
    /// Answer every financial request with this response code, without touching the ledger.
    pub decline_all: Option<String>,
    /// Seed of the fault RNG: the same seed and traffic give the same faults.
    pub seed: u64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            no_response: 0.0,
            drop_connection: 0.0,
            late_response: 0.0,
            late_by: Duration::from_secs(5),
            duplicate_response: 0.0,
            bad_mac: 0.0,
            decline_all: None,
            seed: 1,
        }
    }
}

impl FaultConfig {
    /// Checks probabilities are within 0..=1 and the decline code is two characters.
    pub fn validate(&self) -> Result<(), String> {
        let probabilities = [
            ("no_response", self.no_response),
            ("drop_connection", self.drop_connection),
            ("late_response", self.late_response),
            ("duplicate_response", self.duplicate_response),
            ("bad_mac", self.bad_mac),
        ];
        for (name, value) in probabilities {
            if !(0.0..=1.0).contains(&value) {
                return Err(format!(
                    "faults.{name} is a probability 0.0..=1.0, got {value}"
                ));
            }
        }
        let total: f64 = probabilities.iter().map(|(_, value)| value).sum();
        if total > 1.0 {
            return Err(format!(
                "the fault probabilities add up to {total}; at most one fault applies per request, so they must add up to 1.0 or less"
            ));
        }
        if let Some(code) = &self.decline_all
            && (code.len() != 2 || !code.bytes().all(|byte| byte.is_ascii_alphanumeric()))
        {
            return Err(format!(
                "faults.decline_all is a 2-character response code, got {code:?}"
            ));
        }
        Ok(())
    }
}

/// Durations as whole milliseconds in TOML (shared by every simulator's config).
pub(crate) mod millis {
    use super::{Deserialize, Deserializer, Duration, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

impl SimConfig {
    /// Parses TOML and validates it.
    pub fn from_toml_str(text: &str) -> Result<Self, SimError> {
        let config: Self =
            toml::from_str(text).map_err(|error| SimError::Config(error.to_string()))?;
        config.validate().map_err(SimError::Config)?;
        Ok(config)
    }

    /// Reads, parses and validates a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, SimError> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            SimError::Config(format!("cannot read {}: {error}", path.display()))
        })?;
        Self::from_toml_str(&text)
            .map_err(|error| SimError::Config(format!("{}: {error}", path.display())))
    }

    /// Checks keys, accounts and faults; the message names the bad entry, never a PAN or key.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("mac_key_hex", self.mac_key_hex.expose()),
            ("zmk_hex", self.zmk_hex.expose()),
            ("zpk_hex", self.zpk_hex.expose()),
        ] {
            let valid = value.len() == 32 && value.bytes().all(|byte| byte.is_ascii_hexdigit());
            if !valid {
                return Err(format!("{name} is a two-key TDES key: 32 hex digits"));
            }
        }
        if let Some(admin) = &self.admin_listen {
            let loopback = admin
                .parse::<std::net::SocketAddr>()
                .is_ok_and(|addr| addr.ip().is_loopback());
            if !loopback {
                return Err(format!(
                    "admin_listen must be a loopback address and port (e.g. 127.0.0.1:9401), got {admin:?}"
                ));
            }
        }
        if self.points_per_unit <= 0 {
            return Err(format!(
                "points_per_unit (minor units per point) must be positive, got {}",
                self.points_per_unit
            ));
        }
        if let Some(bin) = self
            .co_brand_bins
            .iter()
            .find(|bin| bin.is_empty() || !bin.bytes().all(|byte| byte.is_ascii_digit()))
        {
            return Err(format!("co_brand_bins entry {bin:?} is not a digit prefix"));
        }
        let mut seen = std::collections::HashSet::new();
        for (index, account) in self.accounts.iter().enumerate() {
            account
                .validate()
                .map_err(|reason| format!("accounts[{index}]: {reason}"))?;
            if !seen.insert(account.pan.expose().as_str()) {
                return Err(format!("accounts[{index}]: the PAN appears twice"));
            }
        }
        self.faults.validate()
    }
}

impl AccountConfig {
    fn validate(&self) -> Result<(), String> {
        Pan::parse(self.pan.expose()).map_err(|error| error.to_string())?;
        CardExpiry::parse(&self.expiry).map_err(|error| error.to_string())?;
        if let Some(pin) = self.pin.as_ref().map(Secret::expose) {
            let valid =
                (4..=12).contains(&pin.len()) && pin.bytes().all(|byte| byte.is_ascii_digit());
            if !valid {
                return Err("a PIN has 4 to 12 digits".to_owned());
            }
        }
        if let Some(code) = self.security_code.as_ref().map(Secret::expose) {
            let valid =
                (3..=4).contains(&code.len()) && code.bytes().all(|byte| byte.is_ascii_digit());
            if !valid {
                return Err("a security code has 3 or 4 digits".to_owned());
            }
        }
        if self.limit_minor < 0 || self.balance_minor < 0 {
            return Err("limit_minor and balance_minor are not negative".to_owned());
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(format!(
                "currency is an ISO 4217 numeric code (3 digits), got {:?}",
                self.currency
            ));
        }
        Ok(())
    }
}
