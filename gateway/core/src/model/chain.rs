//! The audit chain's entries and checkpoints as stored (the canonical
//! encoding and hashes are `audit::chain`'s).

use chrono::{DateTime, Utc};

use super::UnknownValue;

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    /// A state change (or other event) of a transaction.
    Event,
    /// A read made through `AuditService`.
    AuditRead,
}

impl EntryType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Event => "event",
            Self::AuditRead => "audit_read",
        }
    }

    pub fn parse(text: &str) -> Result<Self, UnknownValue> {
        match text {
            "event" => Ok(Self::Event),
            "audit_read" => Ok(Self::AuditRead),
            other => Err(UnknownValue::new("audit entry type", other)),
        }
    }
}

/// The content of one entry: exactly what is hashed, besides the sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryContent {
    pub entry_type: EntryType,
    pub transaction_id: Option<String>,
    pub event_type: String,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    pub actor: String,
    pub detail: String,
    /// Canonical text, see [`canonical_time`].
    pub occurred_at: String,
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainEntry {
    pub sequence: i64,
    pub content: EntryContent,
    pub prev_hash: Vec<u8>,
    pub entry_hash: Vec<u8>,
}

/// A signed chain position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub sequence: i64,
    pub head_hash: Vec<u8>,
    pub signature: Vec<u8>,
    pub key_label: String,
    pub key_version: i32,
    pub signed_at: DateTime<Utc>,
}
