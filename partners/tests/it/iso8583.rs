//! ISO 8583 codec: known wire images, every error case (field and offset),
//! redaction of card data, MTI rules.

use posgate_partners::iso8583::{
    BitmapEncoding, Dialect, Encoding, FieldKind, FieldSpec, Length, Message, Mti, PackError,
    UnpackError, ascii_1987, bcd_binary_1987,
};

const PAN: &str = "4761739001010119";
const TRACK2: &str = "4761739001010119=25122011143804400000";

/// A typical 0200 sale with PIN, ICC data and a MAC.
pub fn sample_0200() -> Message {
    let mut m = Message::new(Mti::new(*b"0200"));
    m.set_str(2, PAN)
        .set_str(3, "000000")
        .set_str(4, "000000012500")
        .set_str(7, "1123145500")
        .set_str(11, "000123")
        .set_str(12, "225500")
        .set_str(13, "1123")
        .set_str(14, "2512")
        .set_str(22, "051")
        .set_str(25, "00")
        .set_str(32, "12345678901")
        .set_str(35, TRACK2)
        .set_str(37, "532714000123")
        .set_str(41, "TERM0001")
        .set_str(42, "MERCHANT0000001")
        .set_str(48, "PTS+000000120BAL000000004200")
        .set_str(49, "901")
        .set(52, vec![0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0])
        .set(55, vec![0x9F, 0x26, 0x08, 1, 2, 3, 4, 5, 6, 7, 8])
        .set(64, vec![0xA1, 0xB2, 0xC3, 0xD4, 0xE5, 0xF6, 0x07, 0x18]);
    m
}

fn sample_0800() -> Message {
    let mut m = Message::new(Mti::new(*b"0800"));
    m.set_str(7, "1123145500")
        .set_str(11, "000001")
        .set_str(70, "301");
    m
}

fn unpack_err(dialect: &Dialect, bytes: &[u8]) -> UnpackError {
    dialect.unpack(bytes).expect_err("unpack should fail")
}

fn pack_err(m: &Message) -> PackError {
    ascii_1987().pack(m).expect_err("pack should fail")
}

/// An 0800 echo packs to the exact ASCII image pyiso8583's `default_ascii` gives.
#[test]
fn ascii_0800_wire_image() {
    let bytes = ascii_1987().pack(&sample_0800()).unwrap();
    assert_eq!(
        bytes,
        b"0800822000000000000004000000000000001123145500000001301"
    );
    assert_eq!(ascii_1987().unpack(&bytes).unwrap(), sample_0800());
}

/// The same 0800 in the BCD dialect: BCD MTI, binary bitmaps, BCD digits.
#[test]
fn bcd_0800_wire_image() {
    let bytes = bcd_binary_1987().pack(&sample_0800()).unwrap();
    let mut expected = vec![
        0x08, 0x00, 0x82, 0x20, 0, 0, 0, 0, 0, 0, 0x04, 0, 0, 0, 0, 0, 0, 0,
    ];
    expected.extend_from_slice(&[0x11, 0x23, 0x14, 0x55, 0x00, 0x00, 0x00, 0x01, 0x03, 0x01]);
    assert_eq!(bytes, expected);
    assert_eq!(bcd_binary_1987().unpack(&bytes).unwrap(), sample_0800());
}

/// A 0200 with b, LLVAR and LLLVAR fields survives both dialects.
#[test]
fn sample_0200_round_trips_in_both_dialects() {
    for dialect in [ascii_1987(), bcd_binary_1987()] {
        let bytes = dialect.pack(&sample_0200()).unwrap();
        assert_eq!(
            dialect.unpack(&bytes).unwrap(),
            sample_0200(),
            "{}",
            dialect.name()
        );
    }
}

/// In `ascii_1987` binary fields travel as hex: PIN block 16 chars, MAC last 16.
#[test]
fn ascii_binary_fields_are_hex() {
    let bytes = ascii_1987().pack(&sample_0200()).unwrap();
    assert!(bytes.ends_with(b"A1B2C3D4E5F60718"));
    assert_eq!(ascii_1987().field(64).unwrap().wire_len(), Some(16));
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        text.contains("123456789ABCDEF0022"),
        "PIN block then LLL 022 of field 55"
    );
}

/// Lower-case hex is accepted on unpack.
#[test]
fn lower_case_hex_accepted() {
    let bytes = ascii_1987().pack(&sample_0200()).unwrap();
    let lower = String::from_utf8(bytes)
        .unwrap()
        .replace("A1B2C3D4E5F60718", "a1b2c3d4e5f60718");
    assert_eq!(
        ascii_1987().unpack(lower.as_bytes()).unwrap(),
        sample_0200()
    );
}

/// Message API: set/replace/remove keep fields ordered and equal by content.
#[test]
fn message_api() {
    let mut m = Message::new(Mti::new(*b"0100"));
    m.set_str(70, "001")
        .set_str(3, "000000")
        .set_str(11, "000042");
    assert_eq!(
        m.fields().map(|(field, _)| field).collect::<Vec<_>>(),
        [3, 11, 70]
    );
    m.set_str(11, "7").set_str(3, "2000000000");
    assert_eq!(m.get_str(11), Some("7"));
    assert_eq!(m.get_str(3), Some("2000000000"));
    assert_eq!(m.remove(11), Some(b"7".to_vec()));
    assert!(!m.has(11) && m.remove(11).is_none() && m.get(1).is_none());
    let mut other = Message::new(Mti::new(*b"0100"));
    other.set_str(3, "2000000000").set_str(70, "001");
    assert_eq!(m, other);
    m.set_mti(Mti::new(*b"0110"));
    assert_ne!(m, other);
    for round in 0..10_000u32 {
        m.set_str(48, &"x".repeat((round % 900) as usize));
    }
    assert_eq!(m.get(48).unwrap().len(), 9_999 % 900);
}

/// Field 1 is the codec's: setting it panics.
#[test]
#[should_panic(expected = "not a data element")]
fn setting_field_1_panics() {
    Message::new(Mti::new(*b"0200")).set_str(1, "x");
}

/// `Mti::response` maps requests, repeats and advices to their responses.
#[test]
fn mti_response() {
    for (request, response) in [
        ("0100", "0110"),
        ("0200", "0210"),
        ("0220", "0230"),
        ("0400", "0410"),
        ("0401", "0410"),
        ("0800", "0810"),
    ] {
        let mti = Mti::new(request.as_bytes().try_into().unwrap());
        assert!(!mti.is_response());
        assert_eq!(mti.response().as_str(), response);
        assert!(mti.response().is_response());
    }
    assert_eq!(Mti::new(*b"0210").response().as_str(), "0210");
}

/// Debug never shows the PAN, expiry, track 2, PIN block or ICC data.
#[test]
fn debug_redacts_card_data() {
    let text = format!("{:?}", sample_0200());
    assert!(text.contains("476173******0119"), "{text}");
    assert!(!text.contains(PAN) && !text.contains("25122011"), "{text}");
    assert!(
        text.contains("<redacted 8 bytes>") && text.contains("<redacted 11 bytes>"),
        "{text}"
    );
    assert!(
        !text.contains("123456789ABCDEF0") && !text.contains("2512\""),
        "{text}"
    );
    assert!(text.contains("\"000000012500\""), "{text}");
    let mut short = Message::new(Mti::new(*b"0200"));
    short.set_str(2, "12345");
    assert!(format!("{short:?}").contains("<redacted 5 bytes>"));
}

/// Pack errors name the field and never print its value.
#[test]
fn pack_errors_name_the_field() {
    let mut m = sample_0200();
    m.set_str(4, "12500");
    let error = pack_err(&m);
    assert_eq!(error.field, 4);
    assert!(
        error
            .to_string()
            .starts_with("field 4: length 5, expected exactly 12"),
        "{error}"
    );

    let mut m = sample_0200();
    m.set_str(2, "47617390010101X9");
    let error = pack_err(&m);
    assert_eq!(error.field, 2);
    assert!(
        error.reason.contains("position 14") && !error.to_string().contains("4761739"),
        "{error}"
    );

    let mut m = sample_0200();
    m.set_str(2, "47617390010101190000");
    assert_eq!(pack_err(&m).field, 2, "20 digits exceed LLVAR 19");

    let mut m = sample_0200();
    m.set(55, vec![0u8; 256]);
    assert_eq!(pack_err(&m).field, 55);

    let mut m = sample_0200();
    m.set_str(41, "TERM\u{e9}01");
    assert_eq!(pack_err(&m).field, 41, "non-ASCII in ans");

    let mut m = sample_0200();
    m.set_str(37, "ABC_12345678");
    assert_eq!(pack_err(&m).field, 37, "underscore is not an");

    let mut m = sample_0200();
    m.set_mti(Mti::new(*b"02X0"));
    let error = pack_err(&m);
    assert_eq!(error.field, 0);
    assert!(error.to_string().starts_with("MTI:"));

    let mut out = b"keep".to_vec();
    assert!(ascii_1987().pack_into(&m, &mut out).is_err());
    assert_eq!(
        out, b"keep",
        "pack_into leaves the buffer as it was on error"
    );

    let sparse = Dialect::new("sparse", Encoding::Ascii, BitmapEncoding::Hex).with_field(
        3,
        FieldSpec::new(
            FieldKind::N,
            Length::Fixed(6),
            Encoding::Ascii,
            Encoding::Ascii,
            "Processing Code",
        ),
    );
    let error = sparse.pack(&sample_0800()).expect_err("field 7 undefined");
    assert_eq!(error.field, 7);
}

/// Unpack errors: MTI and bitmaps (field None), each field's prefix, data
/// and class, and trailing bytes, each at the right offset.
#[test]
fn unpack_errors_name_field_and_offset() {
    let dialect = ascii_1987();
    let good = dialect.pack(&sample_0800()).unwrap();
    // 0..4 MTI, 4..20 primary, 20..36 secondary, 36..46 field 7, 46..52 field 11, 52..55 field 70.

    let e = unpack_err(dialect, b"08");
    assert_eq!((e.field, e.offset), (None, 0));
    let e = unpack_err(dialect, b"08A0");
    assert_eq!((e.field, e.offset), (None, 2));
    let e = unpack_err(dialect, &good[..10]);
    assert_eq!((e.field, e.offset), (None, 4), "{e}");
    let mut bad = good.clone();
    bad[9] = b'G';
    let e = unpack_err(dialect, &bad);
    assert_eq!((e.field, e.offset), (None, 9), "{e}");
    let e = unpack_err(dialect, &good[..30]);
    assert_eq!(
        (e.field, e.offset),
        (None, 20),
        "truncated secondary bitmap: {e}"
    );

    let e = unpack_err(dialect, &good[..40]);
    assert_eq!((e.field, e.offset), (Some(7), 36), "{e}");
    assert!(e.reason.contains("needs 10 bytes, only 4 remain"), "{e}");
    let mut bad = good.clone();
    bad[48] = b'x';
    let e = unpack_err(dialect, &bad);
    assert_eq!((e.field, e.offset), (Some(11), 48), "{e}");
    assert!(e.to_string().starts_with("field 11 at offset 48: "), "{e}");

    let mut long = good.clone();
    long.extend_from_slice(b"99");
    let e = unpack_err(dialect, &long);
    assert_eq!((e.field, e.offset), (None, 55), "{e}");
    assert!(e.reason.contains("2 trailing bytes"), "{e}");

    // Variable fields: PAN prefix not digits, too long, truncated data.
    let mut m = Message::new(Mti::new(*b"0100"));
    m.set_str(2, PAN);
    let good = dialect.pack(&m).unwrap();
    // 0..4 MTI, 4..20 bitmap, 20..22 LL, 22.. PAN.
    let mut bad = good.clone();
    bad[21] = b'?';
    let e = unpack_err(dialect, &bad);
    assert_eq!((e.field, e.offset), (Some(2), 21), "{e}");
    let mut bad = good.clone();
    bad[20..22].copy_from_slice(b"20");
    let e = unpack_err(dialect, &bad);
    assert_eq!((e.field, e.offset), (Some(2), 20), "{e}");
    assert!(e.reason.contains("exceeds the maximum 19"), "{e}");
    let e = unpack_err(dialect, &good[..30]);
    assert_eq!((e.field, e.offset), (Some(2), 22), "{e}");
    let e = unpack_err(dialect, &good[..21]);
    assert_eq!((e.field, e.offset), (Some(2), 20), "{e}");
    assert!(!e.to_string().contains("47617"), "no PAN digits in errors");

    // Hex binary field: odd length and non-hex data.
    let mut m = Message::new(Mti::new(*b"0100"));
    m.set(55, vec![0xAB; 3]);
    let good = dialect.pack(&m).unwrap();
    // 0..4 MTI, 4..20 bitmap, 20..23 LLL "006", 23..29 data.
    let mut bad = good.clone();
    bad[20..23].copy_from_slice(b"005");
    let e = unpack_err(dialect, &bad);
    assert_eq!((e.field, e.offset), (Some(55), 20), "{e}");
    let mut bad = good.clone();
    bad[26] = b'Z';
    let e = unpack_err(dialect, &bad);
    assert_eq!((e.field, e.offset), (Some(55), 26), "{e}");

    // A field the dialect does not define.
    let sparse = Dialect::new("sparse", Encoding::Ascii, BitmapEncoding::Hex);
    let e = unpack_err(&sparse, &good);
    assert_eq!((e.field, e.offset), (Some(55), 20), "{e}");
}

/// BCD dialect: bad nibbles in MTI, prefix, digits and pad are located.
#[test]
fn bcd_unpack_errors() {
    let dialect = bcd_binary_1987();
    let mut m = Message::new(Mti::new(*b"0200"));
    m.set_str(2, "476173900101011").set_str(3, "000000");
    let good = dialect.pack(&m).unwrap();
    // 0..2 MTI, 2..10 bitmap, 10 LL (0x15), 11..19 PAN (odd: pad nibble), 19..22 field 3.
    assert_eq!(good[10], 0x15);
    assert_eq!(good[11], 0x04, "left zero pad nibble");
    assert_eq!(dialect.unpack(&good).unwrap(), m);
    let mut bad = good.clone();
    bad[1] = 0x0A;
    assert_eq!(unpack_err(dialect, &bad).offset, 1);
    let mut bad = good.clone();
    bad[10] = 0x1F;
    let e = unpack_err(dialect, &bad);
    assert_eq!((e.field, e.offset), (Some(2), 10), "{e}");
    let mut bad = good.clone();
    bad[11] = 0x14;
    let e = unpack_err(dialect, &bad);
    assert_eq!((e.field, e.offset), (Some(2), 11), "non-zero pad: {e}");
    let mut bad = good.clone();
    bad[20] = 0xC0;
    let e = unpack_err(dialect, &bad);
    assert_eq!((e.field, e.offset), (Some(3), 20), "{e}");
}

/// Unpack refuses oversized input before looking at it.
#[test]
fn oversized_input_refused() {
    let huge = vec![b'0'; posgate_partners::iso8583::MAX_MESSAGE_BYTES + 1];
    let e = unpack_err(ascii_1987(), &huge);
    assert_eq!((e.field, e.offset), (None, 0));
}

/// The committed fuzz seeds are valid messages (so fuzzing starts deep).
#[test]
fn fuzz_seeds_unpack() {
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/unpack");
    let mut count = 0;
    for entry in std::fs::read_dir(seeds).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let dialect = if name.starts_with("bcd") {
            bcd_binary_1987()
        } else {
            ascii_1987()
        };
        let message = dialect
            .unpack(&bytes)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(dialect.pack(&message).unwrap(), bytes, "{name}");
        count += 1;
    }
    assert!(count >= 5);
}

/// A hand-made dialect with binary length prefixes and an LLL BCD prefix
/// over 999: the codec follows the table, and refuses what it cannot carry.
#[test]
fn custom_dialect_with_binary_lengths() {
    let dialect = Dialect::new("binary-lengths", Encoding::Binary, BitmapEncoding::Binary)
        .with_field(
            2,
            FieldSpec::new(
                FieldKind::N,
                Length::LlVar(19),
                Encoding::Binary,
                Encoding::Ascii,
                "PAN",
            ),
        )
        .with_field(
            48,
            FieldSpec::new(
                FieldKind::Ans,
                Length::LllVar(300),
                Encoding::Binary,
                Encoding::Ascii,
                "Additional",
            ),
        );
    let mut m = Message::new(Mti::new(*b"0100"));
    m.set_str(2, PAN).set_str(48, &"z".repeat(300));
    let bytes = dialect.pack(&m).unwrap();
    // MTI 4 + bitmap 8, then one length byte (16) and the PAN, then 2 bytes (300).
    assert_eq!(bytes[12], 16);
    assert_eq!(&bytes[29..31], &[0x01, 0x2C]);
    assert_eq!(dialect.unpack(&bytes).unwrap(), m);
    let mut bad = bytes.clone();
    bad[29..31].copy_from_slice(&[0x01, 0x2D]);
    let e = unpack_err(&dialect, &bad);
    assert_eq!((e.field, e.offset), (Some(48), 29), "{e}");

    let mut m = Message::new(Mti::new(*b"0100"));
    m.set_str(48, "abc");
    let mut bytes = bcd_binary_1987().pack(&m).unwrap();
    // MTI 2 + bitmap 8, then the BCD LLL prefix 0x00 0x03: make it 0x10 0x03 (1003).
    assert_eq!(&bytes[10..12], &[0x00, 0x03]);
    bytes[10] = 0x10;
    let e = unpack_err(bcd_binary_1987(), &bytes);
    assert_eq!((e.field, e.offset), (Some(48), 10), "{e}");
}

/// A spec whose maximum its prefix cannot carry is a programming error.
#[test]
#[should_panic(expected = "does not fit the length prefix")]
fn spec_too_long_for_prefix_panics() {
    let _ = Dialect::new("bad", Encoding::Ascii, BitmapEncoding::Hex).with_field(
        55,
        FieldSpec::new(
            FieldKind::B,
            Length::LlVar(60),
            Encoding::Ascii,
            Encoding::Ascii,
            "ICC",
        ),
    );
}
