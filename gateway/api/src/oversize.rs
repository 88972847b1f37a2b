//! tonic's refusal of a request message over `max_decoding_message_size`,
//! recognized by its text: the request size layer rewrites it into
//! `RESOURCE_EXHAUSTED`, and the RPC metrics count it as the client gets it.

use tonic::{Code, Status};

/// How tonic's refusal of an over-limit message starts (tonic 0.14
/// `codec/decode.rs`); a test pins it.
const TONIC_TOO_LARGE: &str = "Error, decoded message length too large: ";

/// The sizes tonic names when `status` is its refusal of an over-limit
/// message (`found N bytes, the limit is: M bytes`); `None` for any other status.
pub(crate) fn too_large_sizes(status: &Status) -> Option<&str> {
    if status.code() != Code::OutOfRange {
        return None;
    }
    status.message().strip_prefix(TONIC_TOO_LARGE)
}
