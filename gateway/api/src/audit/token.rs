//! The page-token filter encoding of `SearchTransactions`: the request's
//! filter as the page token binds it (the token itself is
//! `posgate_core::audit::page_token`).

use posgate_proto::v1 as pb;
use prost::Message as _;

/// The filter as a page token's digest binds it: its protobuf encoding
/// without the PAN (the core adds the PAN's fingerprints instead).
pub fn encoded_filter(filter: Option<&pb::TransactionFilter>) -> Vec<u8> {
    let mut filter = filter.cloned().unwrap_or_default();
    filter.pan = String::new();
    filter.encode_to_vec()
}
