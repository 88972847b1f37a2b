//! Unpack arbitrary bytes in every dialect: never a panic, errors point
//! inside the input, and whatever unpacks packs again and round-trips.

#![no_main]

use libfuzzer_sys::fuzz_target;
use posgate_partners::iso8583::{ascii_1987, bcd_binary_1987};

fuzz_target!(|data: &[u8]| {
    for dialect in [ascii_1987(), bcd_binary_1987()] {
        match dialect.unpack(data) {
            Err(error) => assert!(error.offset <= data.len(), "{error}"),
            Ok(message) => {
                // Debug masks card data by slicing values: it must not panic either.
                let _ = format!("{message:?}");
                let packed = dialect.pack(&message).expect("an unpacked message packs");
                assert_eq!(dialect.unpack(&packed).expect("and unpacks"), message);
            }
        }
    }
});
