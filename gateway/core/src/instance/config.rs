//! The `[instance]` section: who this gateway instance is, and the timings
//! of its leases, its leader election and its draining.

use std::time::Duration;

use serde::Deserialize;

use crate::model::config_error::ConfigError;

/// The `[instance]` section, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    /// The instance id (letters, digits, `-`, `_`, `.`; at most 40), or
    /// `None` to generate one at start from the host name and process id.
    pub id: Option<String>,
    /// How long a lease on a queue entry or a saga lasts without renewal:
    /// how long the entries of an instance that died wait before another
    /// instance takes them over. Renewed every third of it.
    pub lease: Duration,
    /// How often an instance that does not lead tries to become the leader,
    /// and the leader checks it still is: the takeover time after a leader
    /// dies is at most this (plus the database noticing the closed connection).
    pub leader_poll: Duration,
    /// How long a draining instance reports `NOT_SERVING` before it stops
    /// taking new connections, so that clients' health checks move their
    /// calls to the other instances first.
    pub drain_delay: Duration,
}

impl Default for InstanceConfig {
    fn default() -> Self {
        Self {
            id: None,
            // Long enough that a renewal every 5 s survives a busy database;
            // short enough that a dead instance's reversals wait seconds, not minutes.
            lease: Duration::from_secs(15),
            leader_poll: Duration::from_secs(1),
            // Clients' health checks poll every second or so.
            drain_delay: Duration::from_secs(2),
        }
    }
}

/// `[instance]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInstance {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    lease_seconds: Option<u64>,
    #[serde(default)]
    leader_poll_ms: Option<u64>,
    #[serde(default)]
    drain_ms: Option<u64>,
}

/// Leases shorter than this would expire between two renewals of a busy instance.
const MIN_LEASE_SECONDS: u64 = 3;
/// Leases longer than this would hold a dead instance's reversals too long.
const MAX_LEASE_SECONDS: u64 = 600;
/// Bounds of the leader poll: not a busy loop, not a long outage.
const LEADER_POLL_MS: std::ops::RangeInclusive<u64> = 100..=60_000;
/// Bound of the drain delay: below the shutdown grace of any orchestrator.
const MAX_DRAIN_MS: u64 = 60_000;

impl RawInstance {
    pub(crate) fn check(self) -> Result<InstanceConfig, ConfigError> {
        let defaults = InstanceConfig::default();
        if let Some(id) = &self.id {
            check_id(id)?;
        }
        let lease = match self.lease_seconds {
            None => defaults.lease,
            Some(seconds) if (MIN_LEASE_SECONDS..=MAX_LEASE_SECONDS).contains(&seconds) => {
                Duration::from_secs(seconds)
            }
            Some(_) => {
                return Err(invalid(
                    "instance.lease_seconds",
                    format!("must be between {MIN_LEASE_SECONDS} and {MAX_LEASE_SECONDS}"),
                ));
            }
        };
        let leader_poll = match self.leader_poll_ms {
            None => defaults.leader_poll,
            Some(ms) if LEADER_POLL_MS.contains(&ms) => Duration::from_millis(ms),
            Some(_) => {
                return Err(invalid(
                    "instance.leader_poll_ms",
                    "must be between 100 and 60000",
                ));
            }
        };
        let drain_delay = match self.drain_ms {
            None => defaults.drain_delay,
            Some(ms) if ms <= MAX_DRAIN_MS => Duration::from_millis(ms),
            Some(_) => {
                return Err(invalid(
                    "instance.drain_ms",
                    format!("must be at most {MAX_DRAIN_MS}"),
                ));
            }
        };
        Ok(InstanceConfig {
            id: self.id,
            lease,
            leader_poll,
            drain_delay,
        })
    }
}

/// Instance ids appear in logs, metrics and lease rows: short and plain.
pub fn check_id(id: &str) -> Result<(), ConfigError> {
    let plain = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if id.is_empty() || id.len() > 40 || !plain {
        return Err(invalid(
            "instance.id",
            "must be 1 to 40 letters, digits, '-', '_' or '.'",
        ));
    }
    Ok(())
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Result<InstanceConfig, ConfigError> {
        toml::from_str::<RawInstance>(text).unwrap().check()
    }

    #[test]
    fn defaults_and_bounds() {
        assert_eq!(raw("").unwrap(), InstanceConfig::default());
        let set =
            raw("id = \"gw-2\"\nlease_seconds = 5\nleader_poll_ms = 250\ndrain_ms = 0").unwrap();
        assert_eq!(set.id.as_deref(), Some("gw-2"));
        assert_eq!(set.lease, Duration::from_secs(5));
        assert_eq!(set.leader_poll, Duration::from_millis(250));
        assert_eq!(set.drain_delay, Duration::ZERO);
        for (text, key) in [
            ("id = \"gw 1\"", "instance.id"),
            ("lease_seconds = 1", "instance.lease_seconds"),
            ("leader_poll_ms = 10", "instance.leader_poll_ms"),
            ("drain_ms = 600000", "instance.drain_ms"),
        ] {
            match raw(text) {
                Err(ConfigError::Invalid { key: named, .. }) => assert_eq!(named, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
