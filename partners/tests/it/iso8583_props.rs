//! Property tests of the ISO 8583 codec: round trips of arbitrary valid
//! messages, and no panics with plausible error offsets on hostile input.

use posgate_partners::iso8583::{Dialect, ascii_1987, bcd_binary_1987};
use proptest::prelude::*;

use super::iso8583_gen::{SplitMix64, message_with};

fn dialects() -> [&'static Dialect; 2] {
    [ascii_1987(), bcd_binary_1987()]
}

/// Fields to generate: mostly primary, some secondary (65..=128).
fn field_numbers() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop_oneof![3 => 2u8..=64, 1 => 65u8..=128], 0..30)
}

/// A packed valid message of dialect `which` (0 ASCII, 1 BCD).
fn packed(which: usize, seed: u64, fields: &[u8]) -> Vec<u8> {
    let dialect = dialects()[which];
    let message = message_with(dialect, &mut SplitMix64::new(seed), fields);
    dialect
        .pack(&message)
        .expect("generated messages are valid")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// unpack(pack(m)) == m, and pack(unpack(bytes)) == bytes, in both dialects.
    #[test]
    fn round_trip(seed in any::<u64>(), fields in field_numbers()) {
        for dialect in dialects() {
            let message = message_with(dialect, &mut SplitMix64::new(seed), &fields);
            let bytes = dialect.pack(&message).unwrap();
            let back = dialect.unpack(&bytes).unwrap();
            prop_assert_eq!(&back, &message);
            prop_assert_eq!(dialect.pack(&back).unwrap(), bytes);
        }
    }

    /// Arbitrary bytes never panic; an error points inside the input.
    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        for dialect in dialects() {
            if let Err(error) = dialect.unpack(&bytes) {
                prop_assert!(error.offset <= bytes.len(), "{error}");
            }
        }
    }

    /// Arbitrary bytes after a valid MTI and bitmap prefix never panic.
    #[test]
    fn arbitrary_fields(
        which in 0usize..2, seed in any::<u64>(), fields in field_numbers(),
        tail in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut bytes = packed(which, seed, &fields);
        let header = if which == 0 { 20 } else { 10 };
        bytes.truncate(header.min(bytes.len()));
        bytes.extend_from_slice(&tail);
        if let Err(error) = dialects()[which].unpack(&bytes) {
            prop_assert!(error.offset <= bytes.len(), "{error}");
        }
    }

    /// Every strict prefix of a valid message is refused, at an offset
    /// within the prefix.
    #[test]
    fn truncated(which in 0usize..2, seed in any::<u64>(), fields in field_numbers(), cut in any::<prop::sample::Index>()) {
        let bytes = packed(which, seed, &fields);
        let len = cut.index(bytes.len());
        let error = dialects()[which].unpack(&bytes[..len]).expect_err("a strict prefix is incomplete");
        prop_assert!(error.offset <= len, "{error} (prefix of {len})");
    }

    /// A flipped bit never panics; an error is found no earlier than the
    /// start of the length prefix (at most 2 bytes before) holding the flip,
    /// and whatever unpacks still round-trips.
    #[test]
    fn bit_flipped(which in 0usize..2, seed in any::<u64>(), fields in field_numbers(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let dialect = dialects()[which];
        let mut bytes = packed(which, seed, &fields);
        let position = at.index(bytes.len());
        bytes[position] ^= 1 << bit;
        match dialect.unpack(&bytes) {
            Err(error) => {
                prop_assert!(error.offset <= bytes.len(), "{error}");
                prop_assert!(error.offset + 2 >= position, "{error} but flip at {position}");
            }
            Ok(message) => {
                let repacked = dialect.pack(&message).unwrap();
                prop_assert_eq!(dialect.unpack(&repacked).unwrap(), message);
            }
        }
    }
}
