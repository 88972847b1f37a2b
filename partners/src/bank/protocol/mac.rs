//! The MAC on the bank link: ISO 9797-1 MAC algorithm 3 with padding method 1
//! under the link's TDES MAC key, over the packed message up to the MAC
//! field (64, or 128 with a secondary bitmap), which is always last on the
//! wire. In [`crate::iso8583::ascii_1987`] `b` fields travel as hex, so the
//! 8 MAC bytes are the frame's last 16 characters and the MAC covers
//! everything before them.

use posgate_hsm::{Hsm, HsmError, KeyRef, MacAlgorithm, MacPadding};

use super::is_network;
use crate::iso8583::{Dialect, Message, Mti};

/// Length of the MAC value (before wire encoding).
pub const MAC_BYTES: usize = 8;
/// The MAC algorithm of the bank link.
pub const MAC_ALGORITHM: MacAlgorithm = MacAlgorithm::RetailMac(MacPadding::Method1);

/// Why a message could not be given a MAC, or its MAC did not check.
#[derive(Debug, thiserror::Error)]
pub enum MacError {
    #[error("cannot pack the message: {0}")]
    Pack(String),
    #[error("the message carries no MAC in field {0}")]
    Missing(u8),
    #[error("the MAC field is not a fixed {MAC_BYTES}-byte field at the end of the message")]
    Layout,
    #[error("the MAC does not verify")]
    Mismatch,
    #[error("HSM: {0}")]
    Hsm(HsmError),
}

/// Every message except 08xx network management carries a MAC.
pub fn needs_mac(mti: Mti) -> bool {
    !is_network(mti)
}

/// Field 128 when the message has any field 65..=127 (a secondary bitmap), else 64.
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

/// What the MAC covers: `packed` without the wire bytes of the MAC `field`
/// at its end (16 hex characters in `ascii_1987`). `None` if the field has no
/// fixed wire length or `packed` is shorter.
pub fn mac_input<'a>(dialect: &Dialect, field: u8, packed: &'a [u8]) -> Option<&'a [u8]> {
    let wire_len = dialect.field(field)?.wire_len()?;
    packed.len().checked_sub(wire_len).map(|end| &packed[..end])
}

/// Packs `message` with its MAC: sets field 64 or 128 (removing the other),
/// computes the MAC under `mac_key` (normally [`KeyRef::latest`]) over the
/// bytes before it, and returns the wire bytes and the key version used.
pub async fn pack_with_mac(
    dialect: &Dialect,
    message: &mut Message,
    hsm: &dyn Hsm,
    mac_key: &KeyRef,
) -> Result<(Vec<u8>, u32), MacError> {
    message.remove(64);
    message.remove(128);
    let field = mac_field(message);
    message.set(field, [0_u8; MAC_BYTES]);
    let pack = |message: &Message| {
        dialect
            .pack(message)
            .map_err(|error| MacError::Pack(error.to_string()))
    };
    let placeholder = pack(message)?;
    let input = mac_input(dialect, field, &placeholder).ok_or(MacError::Layout)?;
    let tag = hsm
        .mac_generate(mac_key, MAC_ALGORITHM, input)
        .await
        .map_err(MacError::Hsm)?;
    let mac = tag.bytes.get(..MAC_BYTES).ok_or(MacError::Layout)?;
    message.set(field, mac);
    let packed = pack(message)?;
    // Only the MAC's own bytes may differ from what was MACed.
    if packed.len() != placeholder.len() || !packed.starts_with(input) {
        return Err(MacError::Layout);
    }
    Ok((packed, tag.key_version))
}

/// Checks the MAC of `message`, unpacked from `packed`, under any kept
/// version of `mac_key`. Returns the version that matched.
pub async fn verify_mac(
    dialect: &Dialect,
    packed: &[u8],
    message: &Message,
    hsm: &dyn Hsm,
    mac_key: &str,
) -> Result<u32, MacError> {
    let field = mac_field(message);
    let mac = message.get(field).ok_or(MacError::Missing(field))?;
    if mac.len() != MAC_BYTES {
        return Err(MacError::Layout);
    }
    let input = mac_input(dialect, field, packed).ok_or(MacError::Layout)?;
    match hsm
        .mac_verify(&KeyRef::latest(mac_key), MAC_ALGORITHM, input, mac)
        .await
    {
        Ok(version) => Ok(version),
        Err(HsmError::MacMismatch { .. }) => Err(MacError::Mismatch),
        Err(error) => Err(MacError::Hsm(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iso8583::ascii_1987;

    #[test]
    fn mac_input_drops_the_mac_fields_wire_bytes() {
        let packed = b"0200abcdefgh0123456789ABCDEF";
        assert_eq!(
            mac_input(ascii_1987(), 64, packed),
            Some(&b"0200abcdefgh"[..])
        );
        assert_eq!(mac_input(ascii_1987(), 128, b"short"), None);
        assert_eq!(mac_input(ascii_1987(), 2, packed), None);
    }
}
