//! Network management (0800/0810): sign-on 001, sign-off 002, echo 301 and
//! key change 161. Never faulted, never MAC'd.

use posgate_hsm::{Hsm, KeyRef};

use super::ledger::{RC_APPROVED, RC_DUPLICATE, RC_FORMAT_ERROR, RC_SYSTEM_MALFUNCTION};
use super::server::{MAC_KEY_LABEL, Shared, ZMK_LABEL, lock};
use posgate_partners::bank::protocol::response_mti;
use posgate_partners::iso8583::Message;

/// Fields an 0810 echoes from its 0800.
const ECHOED_FIELDS: [u8; 4] = [7, 11, 32, 70];

/// The 0810 for an 0800.
pub(crate) async fn answer(shared: &Shared, request: &Message) -> Message {
    let mut response = Message::new(response_mti(request.mti()));
    for field in ECHOED_FIELDS {
        if let Some(value) = request.get(field) {
            response.set(field, value);
        }
    }
    if !first_use_of_stan(shared, request) {
        lock(&shared.stats).duplicate_stans_refused += 1;
        response.set_str(39, RC_DUPLICATE);
        return response;
    }
    let code = match request.get_str(70) {
        Some("001" | "002" | "301") => RC_APPROVED,
        Some("161") => match change_key(shared).await {
            Ok(field_48) => {
                response.set_str(48, &field_48);
                RC_APPROVED
            }
            Err(error) => {
                tracing::error!(%error, "bank sim: key change failed");
                RC_SYSTEM_MALFUNCTION
            }
        },
        _ => RC_FORMAT_ERROR,
    };
    response.set_str(39, code);
    response
}

/// Whether the 0800's STAN (field 11) is new for its acquirer (field 32)
/// that day (field 7): a host refuses a reused trace number, whichever
/// message used it first.
fn first_use_of_stan(shared: &Shared, request: &Message) -> bool {
    let field = |number| request.get_str(number).unwrap_or_default();
    let day = field(7).get(..4).unwrap_or_default();
    lock(&shared.ledger).trace_network(field(32), day, field(11))
}

/// Generates the next version of the MAC key and returns field 48:
/// `KEY` + the new key under the ZMK (32 hex) + `KCV` + its check value (6 hex).
///
/// Requests keep verifying under any kept version, and each answer is MAC'd
/// with the version its request used, so traffic in flight during the change
/// is not disturbed.
async fn change_key(shared: &Shared) -> Result<String, posgate_hsm::HsmError> {
    let _serialised = shared.key_change.lock().await;
    let info = shared.hsm.rotate_key(MAC_KEY_LABEL).await?;
    let wrapped = shared
        .hsm
        .wrap_key(
            &KeyRef::version(MAC_KEY_LABEL, info.version),
            &KeyRef::latest(ZMK_LABEL),
        )
        .await?;
    lock(&shared.stats).key_changes += 1;
    tracing::info!(version = info.version, kcv = %wrapped.kcv, "bank sim: MAC key changed");
    Ok(format!(
        "KEY{}KCV{}",
        hex::encode_upper(&wrapped.ciphertext),
        wrapped.kcv
    ))
}
