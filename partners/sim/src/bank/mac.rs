//! MAC on the bank link, encoding-aware: the MAC covers the packed message up
//! to the MAC field's wire bytes at the end. In `ascii_1987` the 8 MAC bytes
//! travel as 16 hex characters, so the input ends 16 bytes before the frame's end.

use posgate_hsm::{Hsm, KeyRef, MacAlgorithm, MacPadding};

use posgate_partners::iso8583::{Dialect, Message};

/// Contract section 2: ISO 9797-1 MAC algorithm 3, padding method 1.
pub const MAC_ALGORITHM: MacAlgorithm = MacAlgorithm::RetailMac(MacPadding::Method1);
/// Length of the MAC value (before wire encoding).
pub const MAC_BYTES: usize = 8;

/// The MAC field of a message: 128 with a secondary bitmap, else 64.
pub fn mac_field(message: &Message) -> u8 {
    if message
        .fields()
        .any(|(field, _)| (65..=127).contains(&field))
    {
        128
    } else {
        64
    }
}

/// The bytes the MAC covers: `packed` without the MAC field's wire bytes.
fn mac_input<'a>(dialect: &Dialect, field: u8, packed: &'a [u8]) -> Option<&'a [u8]> {
    let wire_len = dialect.field(field)?.wire_len()?;
    packed.len().checked_sub(wire_len).map(|end| &packed[..end])
}

/// Why a message could not be MAC'd.
#[derive(Debug, thiserror::Error)]
pub enum MacPackError {
    #[error("pack: {0}")]
    Pack(String),
    #[error("HSM: {0}")]
    Hsm(String),
}

/// Sets the MAC field (64 or 128), computes it under `key` over the packed
/// bytes before it, and returns the wire bytes with the MAC in place.
pub async fn pack_with_mac(
    dialect: &Dialect,
    message: &mut Message,
    hsm: &dyn Hsm,
    key: &KeyRef,
) -> Result<Vec<u8>, MacPackError> {
    message.remove(64);
    message.remove(128);
    let field = mac_field(message);
    message.set(field, [0_u8; MAC_BYTES]);
    let placeholder = dialect
        .pack(message)
        .map_err(|error| MacPackError::Pack(error.to_string()))?;
    let input = mac_input(dialect, field, &placeholder)
        .ok_or_else(|| MacPackError::Pack("the MAC field has no fixed wire length".to_owned()))?;
    let tag = hsm
        .mac_generate(key, MAC_ALGORITHM, input)
        .await
        .map_err(|error| MacPackError::Hsm(error.to_string()))?;
    message.set(field, &tag.bytes[..MAC_BYTES]);
    dialect
        .pack(message)
        .map_err(|error| MacPackError::Pack(error.to_string()))
}

/// Verifies the MAC of `message`, unpacked from `frame`, under any kept
/// version of `label`. Returns the version that matched; `None` if the MAC
/// is missing, misplaced or wrong.
pub async fn verify_mac(
    dialect: &Dialect,
    frame: &[u8],
    message: &Message,
    hsm: &dyn Hsm,
    label: &str,
) -> Option<u32> {
    let field = mac_field(message);
    let mac = message.get(field)?;
    let input = mac_input(dialect, field, frame)?;
    if mac.len() != MAC_BYTES {
        return None;
    }
    hsm.mac_verify(&KeyRef::latest(label), MAC_ALGORITHM, input, mac)
        .await
        .ok()
}
