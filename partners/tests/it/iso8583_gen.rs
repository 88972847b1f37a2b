//! Deterministic generators of valid ISO 8583 messages for the property
//! tests, the pyiso8583 cross-check and the fuzz seed corpus.

use posgate_partners::iso8583::{Dialect, FieldKind, FieldSpec, Length, Message, Mti};

/// `SplitMix64`: a tiny, well-mixed PRNG, so fixed seeds give the same
/// messages on every machine without a `rand` dependency.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-enough value in `0..bound` (bound > 0).
    pub fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next_u64() % u64::try_from(bound).unwrap()).unwrap()
    }
}

/// Message types the bank link and simulator exchange.
pub const MTIS: [&[u8; 4]; 12] = [
    b"0100", b"0110", b"0200", b"0210", b"0220", b"0230", b"0400", b"0401", b"0410", b"0420",
    b"0800", b"0810",
];

const Z_ALPHABET: &[u8] = b"0123456789:;<=>?D";

/// A random value valid for `spec`: right length, right content class.
pub fn random_value(spec: &FieldSpec, rng: &mut SplitMix64) -> Vec<u8> {
    let units = match spec.length {
        Length::Fixed(units) => usize::from(units),
        Length::LlVar(max) | Length::LllVar(max) => {
            // Favour short values so messages stay small, but reach the maximum too.
            let max = usize::from(max);
            match rng.below(8) {
                0 => max,
                1 => 0,
                _ => rng.below(max.min(40) + 1),
            }
        }
    };
    (0..units).map(|_| random_byte(spec.kind, rng)).collect()
}

fn random_byte(kind: FieldKind, rng: &mut SplitMix64) -> u8 {
    loop {
        let byte = match kind {
            FieldKind::N => b'0' + u8::try_from(rng.below(10)).unwrap(),
            FieldKind::Z => Z_ALPHABET[rng.below(Z_ALPHABET.len())],
            FieldKind::An | FieldKind::Ans => 0x20 + u8::try_from(rng.below(0x5F)).unwrap(),
            FieldKind::B => u8::try_from(rng.below(256)).unwrap(),
        };
        if kind.allows(byte) {
            return byte;
        }
    }
}

/// A random field set: mostly primary fields, often some secondary ones.
pub fn random_fields(rng: &mut SplitMix64) -> Vec<u8> {
    let count = rng.below(25);
    let with_secondary = rng.below(2) == 0;
    (0..count)
        .map(|_| {
            if with_secondary && rng.below(3) == 0 {
                u8::try_from(65 + rng.below(64)).unwrap()
            } else {
                u8::try_from(2 + rng.below(63)).unwrap()
            }
        })
        .collect()
}

/// A valid message of `dialect` with the given fields (undefined ones skipped).
pub fn message_with(dialect: &Dialect, rng: &mut SplitMix64, fields: &[u8]) -> Message {
    let mut message = Message::new(Mti::new(*MTIS[rng.below(MTIS.len())]));
    for &field in fields {
        if let Some(spec) = dialect.field(field) {
            message.set(field, random_value(spec, rng));
        }
    }
    message
}

/// A random valid message of `dialect`.
pub fn random_message(dialect: &Dialect, rng: &mut SplitMix64) -> Message {
    let fields = random_fields(rng);
    message_with(dialect, rng, &fields)
}
