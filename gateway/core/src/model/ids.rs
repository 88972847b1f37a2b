//! Identifiers: the id alphabet every configured and requested id follows.

/// Longest store, terminal, operator or biller id we accept; matches the proto docs.
pub const MAX_ID_LEN: usize = 32;

/// True for the id alphabet the proto documents: 1-32 of `[A-Za-z0-9_-]`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
