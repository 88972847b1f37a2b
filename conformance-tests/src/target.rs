//! The deployment under test: its address and trust anchor, the client
//! certificates the suite presents (one per identity), and the identities
//! and billers the suite uses there.

use std::path::Path;

use anyhow::{Context as _, ensure};

use crate::money;

/// Longest id the API accepts for stores, terminals and operators.
pub const MAX_ID_LEN: usize = 32;

/// Where the gateway is and who the suite acts as.
#[derive(Debug, Clone)]
pub struct Target {
    /// The gateway's gRPC address, `https://host:port` (or `http://` without TLS).
    pub addr: String,
    /// The PEM CA certificate the gateway's server certificate chains to;
    /// required for `https://`.
    pub ca_pem: Option<Vec<u8>>,
    /// The server name to verify in the gateway's certificate; defaults to
    /// the host of `addr`.
    pub domain: Option<String>,
    /// A configured store whose billers include the Taiwanese one below.
    pub store_id: String,
    /// The terminal the suite acts as; unique per run keeps runs independent.
    pub terminal_id: String,
    /// The cashier id sent in every request.
    pub operator_id: String,
    /// A collection-item code of a batch-only Taiwanese biller
    /// (profile `tw-cvs-3seg`) that refuses late payment.
    pub tw_agency_code: String,
    /// That biller's currency.
    pub tw_currency: String,
    /// A configured store whose billers include the Japanese one below.
    pub jp_store_id: String,
    /// The company code of a Japanese biller (profile `jp-gs1-cvs`, JPY)
    /// that refuses late payment.
    pub jp_company_code: String,
    /// A terminal of `store_id` that the PIN key below is assigned to (card
    /// cases with an online PIN act as it, with fresh keys).
    pub pin_terminal_id: String,
    /// The id of that terminal PIN key (`card.pin.key_id`).
    pub pin_key_id: String,
    /// That key in clear, two-key TDES in hex: the suite plays the PIN pad.
    /// Only ever a published test key.
    pub pin_key_hex: String,
    /// True when the gateway's acquirer link goes to a bank simulator that
    /// drops answers (`faults.no_response`): only the cases that need it run.
    pub bank_no_response: bool,
    /// The wallet operator (`WalletRef.wallet_operator_id`) the wallet cases
    /// use, configured like `config/wallet-sim.example.toml` behind the
    /// gateway; `None` skips the wallet cases.
    pub wallet_operator_id: Option<String>,
    /// Collection-item code of an online biller (`mode = "online"`) whose
    /// partner is `posgate sim biller` with `config/biller-sim.example.toml`'s
    /// bills; `None` skips the `online-bill.*` cases.
    pub online_agency_code: Option<String>,
    /// Client certificates, one per identity the suite acts as (mutual TLS).
    /// Requests go over the channel of the terminal their context names.
    pub client_certs: Vec<ClientCert>,
}

/// A client certificate and key (PEM) for one SPIFFE id.
#[derive(Clone)]
pub struct ClientCert {
    /// `spiffe://posgate/store/{S}/terminal/{T}`, `.../auditor/{id}` or `.../operator/{id}`.
    pub spiffe_id: String,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of debug output.
        f.debug_struct("ClientCert")
            .field("spiffe_id", &self.spiffe_id)
            .finish_non_exhaustive()
    }
}

/// The SPIFFE id of a terminal.
#[must_use]
pub fn terminal_spiffe_id(store_id: &str, terminal_id: &str) -> String {
    format!("spiffe://posgate/store/{store_id}/terminal/{terminal_id}")
}

/// Loads every client certificate of `dir` named as `posgate certs issue`
/// names them: `terminal.{STORE}.{TERMINAL}.pem`, `auditor.{ID}.pem`,
/// `operator.{ID}.pem`, each with its `.key` beside it. Other files are ignored.
///
/// # Errors
///
/// When the directory or a certificate's key cannot be read.
pub fn load_client_certs(dir: &Path) -> anyhow::Result<Vec<ClientCert>> {
    let mut certs = Vec::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading --client-certs {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        let Some(stem) = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(".pem"))
        else {
            continue;
        };
        let spiffe_id = match stem.split_once('.') {
            Some(("terminal", rest)) => match rest.split_once('.') {
                Some((store, terminal)) => terminal_spiffe_id(store, terminal),
                None => continue,
            },
            Some(("auditor", id)) => format!("spiffe://posgate/auditor/{id}"),
            Some(("operator", id)) => format!("spiffe://posgate/operator/{id}"),
            _ => continue,
        };
        let key = path.with_extension("key");
        certs.push(ClientCert {
            spiffe_id,
            cert_pem: std::fs::read(&path)
                .with_context(|| format!("reading {}", path.display()))?,
            key_pem: std::fs::read(&key).with_context(|| format!("reading {}", key.display()))?,
        });
    }
    certs.sort_by(|a, b| a.spiffe_id.cmp(&b.spiffe_id));
    Ok(certs)
}

impl Target {
    /// Checks the settings can make valid requests, so a typo fails fast
    /// instead of as thirty failing cases.
    ///
    /// # Errors
    ///
    /// Names the first setting that cannot be used.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            self.addr.starts_with("https://") || self.addr.starts_with("http://"),
            "--addr must start with https:// or http://, got {:?}",
            self.addr
        );
        ensure!(
            !self.addr.starts_with("https://") || self.ca_pem.is_some(),
            "--ca is required for an https:// address"
        );
        for (flag, value) in [
            ("--store", &self.store_id),
            ("--jp-store", &self.jp_store_id),
            ("--operator", &self.operator_id),
            ("--pin-terminal", &self.pin_terminal_id),
        ] {
            ensure!(
                is_valid_id(value),
                "{flag} {value:?} must be 1-32 characters of A-Z a-z 0-9 _ -"
            );
        }
        // The suite derives a second terminal id by appending two characters.
        ensure!(
            is_valid_id(&self.terminal_id) && self.terminal_id.len() <= MAX_ID_LEN - 2,
            "--terminal {:?} must be 1-30 characters of A-Z a-z 0-9 _ -",
            self.terminal_id
        );
        ensure!(
            self.tw_agency_code.len() == 3
                && self
                    .tw_agency_code
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()),
            "--tw-agency-code {:?} must be 3 characters of 0-9 A-Z",
            self.tw_agency_code
        );
        ensure!(
            self.jp_company_code.len() == 6
                && self.jp_company_code.bytes().all(|b| b.is_ascii_digit()),
            "--jp-company-code {:?} must be 6 digits",
            self.jp_company_code
        );
        ensure!(
            (1..=64).contains(&self.pin_key_id.len())
                && self
                    .pin_key_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')),
            "--pin-key-id {:?} must be 1-64 characters of A-Z a-z 0-9 _ . -",
            self.pin_key_id
        );
        ensure!(
            self.pin_key_hex.len() == 32 && self.pin_key_hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "--pin-key-hex must be 32 hex digits (a two-key TDES key)"
        );
        if !self.client_certs.is_empty() {
            let own = terminal_spiffe_id(&self.store_id, &self.terminal_id);
            ensure!(
                self.client_cert(&own).is_some(),
                "no client certificate for {own} (terminal.{}.{}.pem in --client-certs)",
                self.store_id,
                self.terminal_id
            );
        }
        money::exponent(&self.tw_currency)
            .with_context(|| format!("--tw-currency {:?}", self.tw_currency))?;
        Ok(())
    }

    /// The client certificate for `spiffe_id`, if the target has one.
    #[must_use]
    pub fn client_cert(&self, spiffe_id: &str) -> Option<&ClientCert> {
        self.client_certs
            .iter()
            .find(|cert| cert.spiffe_id == spiffe_id)
    }

    /// The first client certificate whose SPIFFE id starts with `prefix`.
    #[must_use]
    pub fn client_cert_with_prefix(&self, prefix: &str) -> Option<&ClientCert> {
        self.client_certs
            .iter()
            .find(|cert| cert.spiffe_id.starts_with(prefix))
    }

    /// A second terminal of the suite's store, for cases about key scope.
    #[must_use]
    pub fn other_terminal_id(&self) -> String {
        format!("{}-B", self.terminal_id)
    }

    /// A terminal id for a fresh run: `T-CONF-` and 8 random hex digits.
    #[must_use]
    pub fn random_terminal_id() -> String {
        let random = uuid::Uuid::now_v7().simple().to_string();
        // The last characters of a v7 UUID are random; the first are the clock.
        format!("T-CONF-{}", &random[random.len() - 8..])
    }
}

/// 1-32 characters of `[A-Za-z0-9_-]`, as the API requires of ids.
#[must_use]
pub fn is_valid_id(value: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
