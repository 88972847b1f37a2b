//! Structured field values through the `sfv` crate: the one bounded parse of
//! `Signature-Input`, `Signature` and `Content-Digest`, and the one-member
//! byte-sequence dictionaries posgate writes. RFC 9421 and RFC 9530 define
//! those fields over RFC 8941, so parsing follows RFC 8941 exactly: RFC
//! 9651's dates and display strings are refused.

/// Largest header value parsed, in bytes: a signature header is a few
/// hundred bytes, so anything near this is an attack, not a partner.
pub const MAX_FIELD_BYTES: usize = 8 * 1024;

/// Parses a dictionary-valued header of at most [`MAX_FIELD_BYTES`]. A
/// repeated key keeps its first position and takes the last value (RFC 8941 §4.2.2).
pub fn parse_dictionary(input: &str) -> Result<sfv::Dictionary, String> {
    if input.len() > MAX_FIELD_BYTES {
        return Err(format!("longer than {MAX_FIELD_BYTES} bytes"));
    }
    sfv::Parser::new(input)
        .with_version(sfv::Version::Rfc8941)
        .parse_dictionary()
        .map_err(|error| error.to_string())
}

/// `key=:<base64>:`, a dictionary with one byte-sequence member.
pub fn byte_sequence_member(key: &sfv::KeyRef, bytes: &[u8]) -> String {
    let mut out = String::new();
    let _ = sfv::DictSerializer::with_buffer(&mut out).bare_item(key, bytes);
    out
}

#[cfg(test)]
mod tests {
    use sfv::{BareItem, FieldType as _, ListEntry};

    use super::*;

    /// The RFC 9421 B.2.6 Signature-Input parses and serializes back to the same text.
    #[test]
    fn signature_input_round_trips() {
        let text = "sig-b26=(\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\"";
        let members = parse_dictionary(text).unwrap();
        assert!(matches!(
            members.get("sig-b26"),
            Some(ListEntry::InnerList(_))
        ));
        assert_eq!(members.serialize().as_deref(), Some(text));
    }

    /// A byte-sequence member is written as RFC 8941 says and reads back.
    #[test]
    fn byte_sequence_member_round_trips() {
        let text = byte_sequence_member(sfv::key_ref("sig1"), &[1, 2]);
        assert_eq!(text, "sig1=:AQI=:");
        let Some(ListEntry::Item(item)) = parse_dictionary(&text).unwrap().swap_remove("sig1")
        else {
            panic!("item expected")
        };
        assert_eq!(item.bare_item, BareItem::ByteSequence(vec![1, 2]));
    }

    /// Malformed input, RFC 9651-only items and oversized headers are errors, never panics.
    #[test]
    fn malformed_is_refused() {
        for bad in [
            "A=1",
            "a=",
            "a=(\"x\"",
            "a=\"open",
            "a=:@@:",
            "a=1,",
            "a=?2",
            "a=@1659578233",
            "a=%\"caf%c3%a9\"",
        ] {
            assert!(parse_dictionary(bad).is_err(), "{bad} should fail");
        }
        assert!(parse_dictionary(&"a".repeat(MAX_FIELD_BYTES + 1)).is_err());
    }
}
