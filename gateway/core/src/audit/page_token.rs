//! Page tokens of `SearchTransactions`: the chain position the search is
//! pinned to, the cursor (first sequence of the last row returned) and a
//! digest of the filter, authenticated by an HMAC made in the HSM. Tokens
//! do not expire and work on every gateway instance sharing the HSM key.
//!
//! Format: lower-case hex of `version (1 byte) || as_of (8, big-endian) ||
//! after (8) || SHA-256(filter) (32) || HMAC-SHA256 (32)`, 162 characters.

use posgate_hsm::{Hsm, HsmError, KeyRef};
use sha2::{Digest as _, Sha256};

const VERSION: u8 = 1;
const PAYLOAD_LEN: usize = 1 + 8 + 8 + 32;
const MAC_LEN: usize = 32;
/// Domain separation: the MAC of a page token is never valid for anything else.
const MAC_CONTEXT: &[u8] = b"posgate/v1 audit page token\0";

/// Where the next page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub as_of: i64,
    pub after: i64,
}

/// Why a token was refused (the caller answers `INVALID_ARGUMENT` on `page_token`).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the page token is malformed")]
    Malformed,
    #[error("the page token was altered or was not made by posgate")]
    Altered,
    #[error("the page token belongs to a search with another filter")]
    OtherFilter,
    #[error(transparent)]
    Hsm(#[from] HsmError),
}

/// The digest binding a token to its filter: `encoded_filter` is the
/// request's filter as the API encodes it, without the PAN, which is
/// replaced by its fingerprints, so the digest holds no card number.
pub fn filter_digest(encoded_filter: &[u8], pan_fingerprints: &[String]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(encoded_filter);
    for fingerprint in pan_fingerprints {
        hasher.update(b"\0pan-fingerprint ");
        hasher.update(fingerprint.as_bytes());
    }
    hasher.finalize().into()
}

async fn mac(hsm: &dyn Hsm, key_label: &str, payload: &[u8]) -> Result<Vec<u8>, HsmError> {
    let mut data = MAC_CONTEXT.to_vec();
    data.extend_from_slice(payload);
    Ok(hsm.hmac(&KeyRef::latest(key_label), &data).await?.bytes)
}

/// Makes the token for the page after `cursor`.
pub async fn encode(
    hsm: &dyn Hsm,
    key_label: &str,
    cursor: Cursor,
    digest: &[u8; 32],
) -> Result<String, HsmError> {
    let mut payload = Vec::with_capacity(PAYLOAD_LEN + MAC_LEN);
    payload.push(VERSION);
    payload.extend_from_slice(&cursor.as_of.to_be_bytes());
    payload.extend_from_slice(&cursor.after.to_be_bytes());
    payload.extend_from_slice(digest);
    let tag = mac(hsm, key_label, &payload).await?;
    payload.extend_from_slice(&tag);
    Ok(hex::encode(payload))
}

/// Reads a token, checking its MAC and that it belongs to `digest`'s filter.
pub async fn decode(
    hsm: &dyn Hsm,
    key_label: &str,
    token: &str,
    digest: &[u8; 32],
) -> Result<Cursor, TokenError> {
    let bytes = hex::decode(token).map_err(|_| TokenError::Malformed)?;
    if bytes.len() != PAYLOAD_LEN + MAC_LEN || bytes[0] != VERSION {
        return Err(TokenError::Malformed);
    }
    let (payload, tag) = bytes.split_at(PAYLOAD_LEN);
    let expected = mac(hsm, key_label, payload).await?;
    let differences = expected
        .iter()
        .zip(tag)
        .fold(0_u8, |acc, (a, b)| acc | (a ^ b));
    if differences != 0 || expected.len() != tag.len() {
        return Err(TokenError::Altered);
    }
    if payload[17..] != digest[..] {
        return Err(TokenError::OtherFilter);
    }
    let int = |range: std::ops::Range<usize>| {
        i64::from_be_bytes(payload[range].try_into().expect("8 bytes"))
    };
    Ok(Cursor {
        as_of: int(1..9),
        after: int(9..17),
    })
}
