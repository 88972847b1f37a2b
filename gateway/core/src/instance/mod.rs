//! One gateway instance among several on one database: its identity, the
//! leases it holds on shared work, and the leadership of the jobs that must
//! run once.
//!
//! - [`config`]: the `[instance]` section (id, lease length, leader poll, drain delay).
//! - [`leases`]: renewing and releasing the leases this instance holds.
//! - [`leader`]: the leader election over the database's lock.

pub mod config;
pub mod leader;
pub mod leases;

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::ports::db::Lease;

pub use config::InstanceConfig;

/// This process as one instance of the gateway.
#[derive(Debug, Clone)]
pub struct Instance {
    /// The configured (or generated) instance id: in logs, health and metrics.
    pub id: String,
    /// Who holds this process's leases: the id and a token drawn at start,
    /// so that a restarted instance (or a second process misconfigured with
    /// the same id) never mistakes another process's leases for its own.
    pub holder: String,
    /// How long a lease lasts without renewal.
    pub lease: Duration,
}

impl Instance {
    /// The instance of this process: `config.id`, or one generated from the
    /// host name and process id when none is configured.
    pub fn start(config: &InstanceConfig) -> Self {
        let id = config.id.clone().unwrap_or_else(generated_id);
        let token = uuid::Uuid::now_v7().simple().to_string();
        // The last 8 hex digits of a UUID v7 are random.
        let holder = format!("{id}#{}", &token[token.len() - 8..]);
        Self {
            id,
            holder,
            lease: config.lease,
        }
    }

    /// A lease taken at `now`, lasting [`Self::lease`].
    pub fn lease_at(&self, now: DateTime<Utc>) -> Lease {
        Lease {
            holder: self.holder.clone(),
            now,
            until: now + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::MAX),
        }
    }
}

/// An id for an instance configured without one: `<host>-<pid>`.
fn generated_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| sanitize(name.trim()))
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "posgate".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Keeps the id characters [`config::check_id`] allows, at most 40 of them.
fn sanitize(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(40)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_differ_between_starts_of_one_id() {
        let config = InstanceConfig {
            id: Some("gw-1".to_owned()),
            ..InstanceConfig::default()
        };
        let (first, second) = (Instance::start(&config), Instance::start(&config));
        assert_eq!(first.id, "gw-1");
        assert!(first.holder.starts_with("gw-1#"));
        assert_ne!(first.holder, second.holder);
    }

    #[test]
    fn generated_ids_are_valid_ids() {
        let id = Instance::start(&InstanceConfig::default()).id;
        assert!(config::check_id(&id).is_ok(), "{id}");
        assert_eq!(sanitize("host name/ü.local"), "hostname.local");
    }
}
