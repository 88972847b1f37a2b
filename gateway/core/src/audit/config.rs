//! The `[audit]` config section: sealing cadence, key labels, limits of
//! `VerifyChain` and exports.

use std::time::Duration;

use serde::Deserialize;

/// Seal after this many new entries...
pub const DEFAULT_CHECKPOINT_EVERY_ENTRIES: i64 = 1_000;
/// ...or after this long with any new entry, whichever comes first: an
/// auditor never waits long for fresh traffic to be covered by a signature.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);
/// Widest range one `VerifyChain` call may check (audit.proto): at ~1 million
/// entries per second, about ten seconds of work.
pub const DEFAULT_MAX_VERIFY_RANGE: i64 = 10_000_000;
/// Exports one auditor may run at once (audit.proto default).
pub const DEFAULT_MAX_CONCURRENT_EXPORTS: usize = 2;

/// `[audit]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// HSM label of the Ed25519 key that signs checkpoints.
    pub signing_key: String,
    /// HSM label of the HMAC key that authenticates page tokens.
    pub page_token_key: String,
    pub checkpoint_every_entries: i64,
    pub checkpoint_interval: Duration,
    /// Run the sealer inside `posgate serve`.
    pub seal: bool,
    pub max_verify_range: i64,
    pub max_concurrent_exports: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            signing_key: "audit-sign".to_owned(),
            page_token_key: "audit-token".to_owned(),
            checkpoint_every_entries: DEFAULT_CHECKPOINT_EVERY_ENTRIES,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            seal: true,
            max_verify_range: DEFAULT_MAX_VERIFY_RANGE,
            max_concurrent_exports: DEFAULT_MAX_CONCURRENT_EXPORTS,
        }
    }
}

/// `[audit]` as written in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    signing_key: Option<String>,
    page_token_key: Option<String>,
    checkpoint_every_entries: Option<i64>,
    checkpoint_interval_seconds: Option<u64>,
    seal: Option<bool>,
    max_verify_range: Option<i64>,
    max_concurrent_exports: Option<usize>,
}

impl RawAudit {
    /// Checks the values; the error names the key.
    pub fn check(self) -> Result<AuditConfig, (String, String)> {
        let defaults = AuditConfig::default();
        let config = AuditConfig {
            signing_key: self.signing_key.unwrap_or(defaults.signing_key),
            page_token_key: self.page_token_key.unwrap_or(defaults.page_token_key),
            checkpoint_every_entries: self
                .checkpoint_every_entries
                .unwrap_or(defaults.checkpoint_every_entries),
            checkpoint_interval: self
                .checkpoint_interval_seconds
                .map_or(defaults.checkpoint_interval, Duration::from_secs),
            seal: self.seal.unwrap_or(defaults.seal),
            max_verify_range: self.max_verify_range.unwrap_or(defaults.max_verify_range),
            max_concurrent_exports: self
                .max_concurrent_exports
                .unwrap_or(defaults.max_concurrent_exports),
        };
        let bad = |key: &str, reason: &str| Err((format!("audit.{key}"), reason.to_owned()));
        if config.checkpoint_every_entries < 1 {
            return bad("checkpoint_every_entries", "must be at least 1");
        }
        if config.checkpoint_interval.is_zero() {
            return bad("checkpoint_interval_seconds", "must be at least 1");
        }
        if config.max_verify_range < 1 {
            return bad("max_verify_range", "must be at least 1");
        }
        if config.max_concurrent_exports < 1 {
            return bad("max_concurrent_exports", "must be at least 1");
        }
        Ok(config)
    }
}
