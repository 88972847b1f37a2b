//! The biller simulator's configuration: listen address, TLS files, its
//! signing key and the keys it accepts, the biller's outstanding bills and
//! faults. Loaded from TOML (see `config/biller-sim.example.toml`) or built
//! by tests.

use std::path::Path;

use posgate_hsm::Secret;
use serde::{Deserialize, Serialize};

use crate::http_server::PartnerService;
use crate::http_server::{ClientKeyConfig, FaultConfig, SimError, parse_key_hex};
use posgate_partners::bill::api::{BillStatus, is_bill_reference, is_date};
use posgate_partners::http::TlsFiles;
use posgate_partners::wallet::api::{MAX_AMOUNT_MINOR, is_code, is_visible_ascii};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillerSimConfig {
    /// `host:port`; `127.0.0.1:0` picks a free port.
    pub listen: String,
    /// Server certificate and key, and the CA that issued posgate's client certificate.
    pub tls: TlsFiles,
    /// The one currency its bills are in, ISO 4217 alphabetic.
    pub currency: String,
    /// The simulator's Ed25519 private key (32-byte seed, 64 hex digits) that signs its answers.
    pub signing_key_hex: Secret<String>,
    /// The `keyid` its answers carry.
    pub key_id: String,
    /// Keys whose signatures it accepts (posgate's).
    #[serde(default)]
    pub client_keys: Vec<ClientKeyConfig>,
    /// Cancels of notices for business days up to and including this one
    /// (`YYYY-MM-DD`) are refused with `CUTOFF_PASSED`; unset: none are.
    #[serde(default)]
    pub closed_through: Option<String>,
    /// The outstanding bills, of one or more biller ids.
    #[serde(default)]
    pub bills: Vec<BillConfig>,
    #[serde(default)]
    pub faults: FaultConfig,
    /// Loopback `IP:port` (e.g. `127.0.0.1:7071`) of the read-only
    /// `GET /ledger` endpoint that dumps the books as JSON; unset: none.
    #[serde(default)]
    pub admin_listen: Option<String>,
}

/// One bill the biller holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillConfig {
    pub biller_id: String,
    /// 1-32 of `[0-9A-Z]`.
    pub bill_reference: String,
    pub amount_minor: i64,
    /// `YYYY-MM-DD`.
    #[serde(default)]
    pub due_date: Option<String>,
    #[serde(default = "open")]
    pub status: BillStatus,
    /// Masked for the receipt, at most 40 characters.
    #[serde(default)]
    pub payer_display_name: Option<String>,
}

fn open() -> BillStatus {
    BillStatus::Open
}

impl BillerSimConfig {
    pub fn from_toml_str(text: &str) -> Result<Self, SimError> {
        crate::http_server::parse_toml(text, Self::validate)
    }

    pub fn from_file(path: &Path) -> Result<Self, SimError> {
        crate::http_server::load_toml(path, Self::validate)
    }

    /// Checks every entry; messages name the entry, never a key.
    pub fn validate(&self) -> Result<(), String> {
        if self.currency.len() != 3 || !self.currency.bytes().all(|byte| byte.is_ascii_uppercase())
        {
            return Err(format!(
                "currency is an ISO 4217 alphabetic code, got {:?}",
                self.currency
            ));
        }
        parse_key_hex("signing_key_hex", self.signing_key_hex.expose())?;
        if !is_visible_ascii(&self.key_id, 1, 64) {
            return Err("key_id is 1-64 printable ASCII".to_owned());
        }
        for (index, key) in self.client_keys.iter().enumerate() {
            parse_key_hex(
                &format!("client_keys[{index}].public_key_hex"),
                &key.public_key_hex,
            )?;
        }
        if let Some(day) = &self.closed_through
            && !is_date(day)
        {
            return Err(format!("closed_through is YYYY-MM-DD, got {day:?}"));
        }
        let mut seen = std::collections::HashSet::new();
        for (index, bill) in self.bills.iter().enumerate() {
            let at = format!("bills[{index}]");
            if !is_code(&bill.biller_id) {
                return Err(format!("{at}.biller_id is 1-32 of [A-Za-z0-9_-]"));
            }
            if !is_bill_reference(&bill.bill_reference) {
                return Err(format!("{at}.bill_reference is 1-32 of [0-9A-Z]"));
            }
            if !seen.insert((bill.biller_id.as_str(), bill.bill_reference.as_str())) {
                return Err(format!("{at}: biller_id and bill_reference appear twice"));
            }
            if !(1..=MAX_AMOUNT_MINOR).contains(&bill.amount_minor) {
                return Err(format!("{at}.amount_minor is 1..=999999999999"));
            }
            if bill.due_date.as_deref().is_some_and(|day| !is_date(day)) {
                return Err(format!("{at}.due_date is YYYY-MM-DD"));
            }
            if bill
                .payer_display_name
                .as_deref()
                .is_some_and(|name| name.chars().count() > 40)
            {
                return Err(format!("{at}.payer_display_name is at most 40 characters"));
            }
        }
        if let Some(listen) = &self.admin_listen {
            crate::http_server::admin::check_loopback(listen)?;
        }
        self.faults
            .validate(<super::service::BillerService as PartnerService>::FAULTABLE)
    }
}
