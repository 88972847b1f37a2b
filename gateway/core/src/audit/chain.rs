//! The audit chain in the store: every transaction event and every audit
//! read is one entry of a SHA-256 hash chain with a gapless sequence number,
//! appended in the same database transaction as the change it records.
//!
//! # Canonical entry (version 1)
//! `entry_hash(n) = SHA-256(entry_hash(n-1) || canonical(n))`, where
//! `entry_hash(0)` is 32 zero bytes and `canonical(n)` is the ASCII tag
//! `posgate-audit-entry v1` followed by nine fields, each written as its
//! byte length (4 bytes, big-endian) and its UTF-8 bytes, in this order:
//! sequence (decimal, no leading zeros), entry type (`event` or
//! `audit_read`), transaction id, event type, from status, to status, actor,
//! detail, occurred at (RFC 3339 UTC with exactly 6 fractional digits and
//! `Z`). An absent value (no transaction, no from status) is the empty
//! string. Length prefixes make the encoding injective: no two different
//! entries share canonical bytes.
//!
//! Each row also stores the hash it chains from (`prev_hash`), so a
//! verifier can tell a changed entry from a missing, added or moved one.

use crate::model::chain::EntryContent;
use chrono::{DateTime, SecondsFormat, Utc};

use sha2::{Digest as _, Sha256};

/// The hash entry 1 chains from.
pub const GENESIS_HASH: [u8; 32] = [0; 32];
/// The tag that starts every canonical entry; a new version changes it.
pub const CANONICAL_TAG: &[u8] = b"posgate-audit-entry v1";

/// The time format entries hash: RFC 3339 in UTC, microseconds, `Z`.
pub fn canonical_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The canonical bytes of an entry at `sequence` (see the module docs).
pub fn canonical_bytes(sequence: i64, content: &EntryContent) -> Vec<u8> {
    let sequence = sequence.to_string();
    let fields: [&str; 9] = [
        &sequence,
        content.entry_type.as_str(),
        content.transaction_id.as_deref().unwrap_or(""),
        &content.event_type,
        content.from_status.as_deref().unwrap_or(""),
        content.to_status.as_deref().unwrap_or(""),
        &content.actor,
        &content.detail,
        &content.occurred_at,
    ];
    let mut out = Vec::with_capacity(
        CANONICAL_TAG.len() + fields.iter().map(|field| field.len() + 4).sum::<usize>(),
    );
    out.extend_from_slice(CANONICAL_TAG);
    for field in fields {
        let len = u32::try_from(field.len()).expect("audit fields are far below 4 GiB");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out
}

/// `SHA-256(prev_hash || canonical(sequence, content))`.
pub fn entry_hash(prev_hash: &[u8], sequence: i64, content: &EntryContent) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(canonical_bytes(sequence, content));
    hasher.finalize().into()
}

/// The statement a checkpoint's Ed25519 signature covers (audit.proto).
pub fn checkpoint_statement(sequence: i64, head_hash: &[u8]) -> Vec<u8> {
    format!(
        "posgate/v1 checkpoint {sequence} {}",
        hex::encode(head_hash)
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::chain::EntryType;

    fn content() -> EntryContent {
        EntryContent {
            entry_type: EntryType::Event,
            transaction_id: Some("t1".to_owned()),
            event_type: "bill_paid".to_owned(),
            from_status: None,
            to_status: Some("paid".to_owned()),
            actor: "a".to_owned(),
            detail: String::new(),
            occurred_at: "2026-11-23T03:00:00.000000Z".to_owned(),
        }
    }

    /// The canonical bytes are length-prefixed, so moving a character from
    /// one field to the next changes the hash.
    #[test]
    fn canonical_form_is_injective_across_field_boundaries() {
        let a = content();
        let mut b = content();
        b.actor = "ab".to_owned();
        let mut c = content();
        c.actor = "a".to_owned();
        c.detail = "b".to_owned();
        assert_ne!(canonical_bytes(1, &b), canonical_bytes(1, &c));
        assert_ne!(
            entry_hash(&GENESIS_HASH, 1, &a),
            entry_hash(&GENESIS_HASH, 2, &a)
        );
    }

    /// The first bytes of an entry are the tag, then the sequence's length and digits.
    #[test]
    fn canonical_form_starts_with_tag_and_sequence() {
        let bytes = canonical_bytes(42, &content());
        assert!(bytes.starts_with(b"posgate-audit-entry v1\0\0\0\x0242"));
    }
}
