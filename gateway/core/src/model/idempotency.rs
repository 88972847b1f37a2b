//! Request fingerprints: what tells a retry from a key reused for another
//! request. Each compared field is digested on its own, so a conflict can say
//! which field differs without keeping the field's value.

use std::fmt;

use sha2::{Digest, Sha256};

/// Identifies one request of one terminal. Terminal ids are only unique
/// within a store, so the store is part of the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    pub store_id: String,
    pub terminal_id: String,
    pub client_request_id: String,
}

/// What identifies a request's content, to tell a retry from a key reused
/// for something else: the RPC, a digest over all compared fields, and a
/// digest per field so a conflict can say which field differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFingerprint {
    pub operation: String,
    pub digest: Vec<u8>,
    /// `field=hexdigest` lines, sorted by field path.
    pub field_digests: String,
}

/// The first answer given under a key.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    pub fingerprint: RequestFingerprint,
    pub transaction_id: String,
    /// The encoded response, replayed as is. Empty while `pending`.
    pub response: Vec<u8>,
    /// The first request under the key has not been answered yet (a card
    /// payment waiting for the bank, or one being reversed).
    pub pending: bool,
}

impl fmt::Debug for StoredAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredAnswer")
            .field("operation", &self.fingerprint.operation)
            .field("transaction_id", &self.transaction_id)
            .field("response_len", &self.response.len())
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

/// Hex characters kept of each field's SHA-256: 128 bits, ample to tell two
/// values apart, half the storage.
const FIELD_DIGEST_HEX_LEN: usize = 32;

/// Builds a [`RequestFingerprint`] field by field.
#[derive(Debug)]
pub struct FingerprintBuilder<'a> {
    operation: &'static str,
    /// Field paths and the hex of their digests' first half.
    fields: Vec<(&'a str, [u8; FIELD_DIGEST_HEX_LEN])>,
}

/// Fields a fingerprint usually has; more only grow the list.
const USUAL_FIELDS: usize = 8;

impl<'a> FingerprintBuilder<'a> {
    /// Starts a fingerprint for an RPC (the RPC is itself compared).
    pub fn new(operation: &'static str) -> Self {
        Self {
            operation,
            fields: Vec::with_capacity(USUAL_FIELDS),
        }
    }

    /// Adds a field by its proto path. Values are length-prefixed inside the
    /// digest so that no two different lists of parts digest alike.
    #[must_use]
    pub fn field(mut self, path: &'a str, parts: &[&[u8]]) -> Self {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        let digest = hasher.finalize();
        let mut hex = [0_u8; FIELD_DIGEST_HEX_LEN];
        hex::encode_to_slice(&digest[..FIELD_DIGEST_HEX_LEN / 2], &mut hex)
            .expect("the buffer holds the hex of half a SHA-256");
        self.fields.push((path, hex));
        self
    }

    /// Adds a single-valued field.
    #[must_use]
    pub fn value(self, path: &'a str, value: impl AsRef<[u8]>) -> Self {
        self.field(path, &[value.as_ref()])
    }

    pub fn finish(mut self) -> RequestFingerprint {
        // Bytewise, as the `(String, String)` pairs this replaced sorted.
        self.fields.sort_unstable();
        let len = self
            .fields
            .iter()
            .map(|(path, _)| path.len() + FIELD_DIGEST_HEX_LEN + 2)
            .sum();
        let mut field_digests = String::with_capacity(len);
        for (path, digest) in &self.fields {
            field_digests.push_str(path);
            field_digests.push('=');
            field_digests.push_str(std::str::from_utf8(digest).expect("hex is ASCII"));
            field_digests.push('\n');
        }
        let digest = Sha256::new()
            .chain_update(self.operation.as_bytes())
            .chain_update([0])
            .chain_update(field_digests.as_bytes())
            .finalize()
            .to_vec();
        RequestFingerprint {
            operation: self.operation.to_owned(),
            digest,
            field_digests,
        }
    }
}

/// The field paths whose values differ between a stored and a new request,
/// "operation" first when the RPC differs. Empty when they are the same request.
pub fn differing_fields(stored: &RequestFingerprint, new: &RequestFingerprint) -> Vec<String> {
    if stored.digest == new.digest && stored.operation == new.operation {
        return Vec::new();
    }
    if stored.operation != new.operation {
        return vec!["operation".to_owned()];
    }
    let parse = |text: &str| -> Vec<(String, String)> {
        text.lines()
            .filter_map(|line| line.split_once('='))
            .map(|(path, digest)| (path.to_owned(), digest.to_owned()))
            .collect()
    };
    let (old, new) = (parse(&stored.field_digests), parse(&new.field_digests));
    let mut paths: Vec<String> = old
        .iter()
        .filter(|entry| !new.contains(entry))
        .chain(new.iter().filter(|entry| !old.contains(entry)))
        .map(|(path, _)| path.clone())
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same fields in any order give the same fingerprint; a changed field is named.
    #[test]
    fn names_the_field_that_differs() {
        let a = FingerprintBuilder::new("PayBill")
            .value("amount.amount_minor", "100")
            .value("slip.biller_id", "")
            .finish();
        let b = FingerprintBuilder::new("PayBill")
            .value("slip.biller_id", "")
            .value("amount.amount_minor", "100")
            .finish();
        let c = FingerprintBuilder::new("PayBill")
            .value("slip.biller_id", "")
            .value("amount.amount_minor", "101")
            .finish();
        assert_eq!(a, b);
        assert!(differing_fields(&a, &b).is_empty());
        assert_eq!(
            differing_fields(&a, &c),
            vec!["amount.amount_minor".to_owned()]
        );
        let other_rpc = FingerprintBuilder::new("CancelBill")
            .value("amount.amount_minor", "100")
            .finish();
        assert_eq!(
            differing_fields(&a, &other_rpc),
            vec!["operation".to_owned()]
        );
    }

    /// Fingerprints are stored: the same fields give the same bytes as ever
    /// (values computed independently: SHA-256 of length-prefixed parts).
    #[test]
    fn fingerprints_keep_their_stored_form() {
        let fingerprint = FingerprintBuilder::new("PayBill")
            .field("slip.barcodes", &[b"AB", b"C"])
            .value("amount.amount_minor", "100")
            .finish();
        assert_eq!(
            fingerprint.field_digests,
            "amount.amount_minor=7ed28be4278c4f30d417b6648f57c81d\n\
             slip.barcodes=45f797d3f083d395969237f6d394b60f\n"
        );
        assert_eq!(
            hex::encode(&fingerprint.digest),
            "64123f72d59226d0244cd09ae23c13d7f34a1c1773fab3ca2eec36c375fb83a6"
        );
    }

    /// Parts are length-prefixed: `["ab","c"]` and `["a","bc"]` differ.
    #[test]
    fn parts_do_not_run_together() {
        let a = FingerprintBuilder::new("X")
            .field("f", &[b"ab", b"c"])
            .finish();
        let b = FingerprintBuilder::new("X")
            .field("f", &[b"a", b"bc"])
            .finish();
        assert_ne!(a.digest, b.digest);
    }
}

/// A call's answer: new, or the stored answer of the first request under
/// the same key (the caller replays its bytes unchanged).
#[derive(Debug)]
pub enum Answered<T> {
    New(T),
    Replayed(StoredAnswer),
}
