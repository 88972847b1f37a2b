//! `Content-Digest` (RFC 9530 §2) with `sha-256`, the one algorithm posgate
//! sends and requires: the value is an RFC 8941 dictionary whose member
//! `sha-256` is the byte sequence of the SHA-256 of the message content.

use sfv::{KeyRef, ListEntry};

use super::structured;

/// The header name, lower-case as HTTP/2 and the signature base want it.
pub const CONTENT_DIGEST: &str = "content-digest";

/// The RFC 9530 algorithm key posgate uses.
const SHA_256: &KeyRef = KeyRef::constant("sha-256");

/// The `Content-Digest` value of `body`: `sha-256=:<base64>:`.
pub fn content_digest(body: &[u8]) -> String {
    let hash = ring::digest::digest(&ring::digest::SHA256, body);
    structured::byte_sequence_member(SHA_256, hash.as_ref())
}

/// Why a `Content-Digest` header does not vouch for a body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("content-digest is not a structured-field dictionary: {0}")]
    Malformed(String),
    #[error("content-digest has no sha-256 member")]
    NoSha256,
    #[error("content-digest sha-256 does not match the body")]
    Mismatch,
}

/// Checks a received `Content-Digest` against the body. Other algorithms in
/// the dictionary are ignored; `sha-256` must be present and equal.
pub fn verify_content_digest(header: &str, body: &[u8]) -> Result<(), DigestError> {
    let members = structured::parse_dictionary(header).map_err(DigestError::Malformed)?;
    let received = match members.get(SHA_256).ok_or(DigestError::NoSha256)? {
        ListEntry::Item(item) => item.bare_item.as_byte_sequence(),
        ListEntry::InnerList(_) => None,
    }
    .ok_or_else(|| DigestError::Malformed("sha-256 is not a byte sequence".to_owned()))?;
    let hash = ring::digest::digest(&ring::digest::SHA256, body);
    // A digest is public (anyone can hash the body), so a plain comparison leaks nothing.
    if received == hash.as_ref() {
        Ok(())
    } else {
        Err(DigestError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9530 Appendix B: the sha-256 of `{"hello": "world"}` + LF, and of empty content.
    #[test]
    fn rfc9530_vectors() {
        assert_eq!(
            content_digest(b"{\"hello\": \"world\"}\n"),
            "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:"
        );
        assert_eq!(
            content_digest(b""),
            "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
        );
    }

    /// A changed body, a missing member and garbage are all refused.
    #[test]
    fn mismatch_and_malformed() {
        let header = content_digest(b"{\"amount_minor\":100}");
        assert_eq!(
            verify_content_digest(&header, b"{\"amount_minor\":100}"),
            Ok(())
        );
        assert_eq!(
            verify_content_digest(&header, b"{\"amount_minor\":900}"),
            Err(DigestError::Mismatch)
        );
        assert_eq!(
            verify_content_digest("sha-512=:AAAA:", b""),
            Err(DigestError::NoSha256)
        );
        assert!(matches!(
            verify_content_digest("sha-256=not-bytes(", b""),
            Err(DigestError::Malformed(_))
        ));
    }
}
