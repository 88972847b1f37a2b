//! The wallet simulator's configuration: listen address, TLS files, its
//! signing key and the keys it accepts, the operator's wallets and faults.
//! Loaded from TOML (see `config/wallet-sim.example.toml`) or built by tests.

use std::path::Path;

use posgate_hsm::Secret;
use serde::Deserialize;

use super::SimError;
use crate::http_server::PartnerService;
pub use crate::http_server::{ClientKeyConfig, FaultConfig, parse_key_hex};
use posgate_partners::http::TlsFiles;
use posgate_partners::wallet::api::is_visible_ascii;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalletSimConfig {
    /// `host:port`; `127.0.0.1:0` picks a free port.
    pub listen: String,
    /// Server certificate and key, and the CA that issued posgate's client certificate.
    pub tls: TlsFiles,
    /// The operator's display name (e.g. "i-Cash"), at most 40 characters.
    pub operator_name: String,
    /// The one currency its wallets hold, ISO 4217 alphabetic.
    pub currency: String,
    /// The simulator's Ed25519 private key (32-byte seed, 64 hex digits) that signs its answers.
    pub signing_key_hex: Secret<String>,
    /// The `keyid` its answers carry.
    pub key_id: String,
    /// Keys whose signatures it accepts (posgate's).
    #[serde(default)]
    pub client_keys: Vec<ClientKeyConfig>,
    #[serde(default)]
    pub wallets: Vec<WalletConfig>,
    #[serde(default)]
    pub faults: FaultConfig,
    /// Loopback `IP:port` (e.g. `127.0.0.1:7071`) of the read-only
    /// `GET /ledger` endpoint that dumps the books as JSON; unset: none.
    #[serde(default)]
    pub admin_listen: Option<String>,
}

/// One wallet account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalletConfig {
    /// The number on the wallet card, 1-64 printable ASCII.
    pub account_id: String,
    /// A static member barcode that resolves to this wallet (a credential; never printed).
    #[serde(default)]
    pub member_barcode: Option<Secret<String>>,
    /// Opening balance, minor units.
    #[serde(default)]
    pub balance_minor: i64,
    /// The most the wallet may hold.
    pub max_balance_minor: i64,
    /// The largest single top-up, if limited.
    #[serde(default)]
    pub max_top_up_minor: Option<i64>,
    /// The largest single payment, if limited.
    #[serde(default)]
    pub max_payment_minor: Option<i64>,
    /// A blocked wallet declines everything with `WALLET_BLOCKED`.
    #[serde(default)]
    pub blocked: bool,
}

impl WalletSimConfig {
    pub fn from_toml_str(text: &str) -> Result<Self, SimError> {
        crate::http_server::parse_toml(text, Self::validate)
    }

    pub fn from_file(path: &Path) -> Result<Self, SimError> {
        crate::http_server::load_toml(path, Self::validate)
    }

    /// Checks every entry; messages name the entry, never a key or barcode.
    pub fn validate(&self) -> Result<(), String> {
        if self.currency.len() != 3 || !self.currency.bytes().all(|byte| byte.is_ascii_uppercase())
        {
            return Err(format!(
                "currency is an ISO 4217 alphabetic code, got {:?}",
                self.currency
            ));
        }
        if self.operator_name.is_empty() || self.operator_name.chars().count() > 40 {
            return Err("operator_name is 1-40 characters".to_owned());
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
        let mut accounts = std::collections::HashSet::new();
        let mut barcodes = std::collections::HashSet::new();
        for (index, wallet) in self.wallets.iter().enumerate() {
            let at = format!("wallets[{index}]");
            if !is_visible_ascii(&wallet.account_id, 1, 64) {
                return Err(format!("{at}.account_id is 1-64 printable ASCII"));
            }
            if !accounts.insert(wallet.account_id.as_str()) {
                return Err(format!("{at}.account_id appears twice"));
            }
            if let Some(barcode) = wallet.member_barcode.as_ref().map(Secret::expose)
                && (!is_visible_ascii(barcode, 6, 64) || !barcodes.insert(barcode.as_str()))
            {
                return Err(format!(
                    "{at}.member_barcode is 6-64 printable ASCII and unique"
                ));
            }
            if wallet.balance_minor < 0 || wallet.max_balance_minor < wallet.balance_minor {
                return Err(format!("{at}: 0 <= balance_minor <= max_balance_minor"));
            }
            if wallet.max_top_up_minor.is_some_and(|limit| limit <= 0)
                || wallet.max_payment_minor.is_some_and(|limit| limit <= 0)
            {
                return Err(format!("{at}: limits are positive"));
            }
        }
        if let Some(listen) = &self.admin_listen {
            crate::http_server::admin::check_loopback(listen)?;
        }
        self.faults
            .validate(<super::service::WalletService as PartnerService>::FAULTABLE)
    }
}
