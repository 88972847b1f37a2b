//! The partner dialects: one ISO 8583:1987 field table, written two ways.
//!
//! Lengths and length types follow pyiso8583's `specs.default_ascii` and
//! `specs.default` field by field (so the cross-check compares like with
//! like); the content classes (n, an, ans, b, z), which pyiso8583 does not
//! check, follow ISO 8583:1987.

use std::sync::LazyLock;

use super::spec::{BitmapEncoding, Dialect, Encoding, FieldKind, FieldSpec, Length};

use FieldKind::{An, Ans, B, N, Z};
use Length::{Fixed, LlVar, LllVar};

/// `(field, kind, length, name)` for data elements 2..=128 of ISO 8583:1987
/// but 65: pyiso8583 (like ISO 8583:1993) reads bit 65 as announcing a
/// tertiary bitmap, which no partner of ours uses, so it is left undefined
/// and a message announcing it is refused.
/// Binary lengths are in bytes: pyiso8583's `default_ascii` writes the 8
/// bytes of field 52 as 16 hex characters and field 55 as up to 510.
const FIELDS_1987: [(u8, FieldKind, Length, &str); 126] = [
    (2, N, LlVar(19), "Primary Account Number (PAN)"),
    (3, N, Fixed(6), "Processing Code"),
    (4, N, Fixed(12), "Amount, Transaction"),
    (5, N, Fixed(12), "Amount, Settlement"),
    (6, N, Fixed(12), "Amount, Cardholder Billing"),
    (7, N, Fixed(10), "Transmission Date and Time"),
    (8, N, Fixed(8), "Amount, Cardholder Billing Fee"),
    (9, N, Fixed(8), "Conversion Rate, Settlement"),
    (10, N, Fixed(8), "Conversion Rate, Cardholder Billing"),
    (11, N, Fixed(6), "System Trace Audit Number"),
    (12, N, Fixed(6), "Time, Local Transaction"),
    (13, N, Fixed(4), "Date, Local Transaction"),
    (14, N, Fixed(4), "Date, Expiration"),
    (15, N, Fixed(4), "Date, Settlement"),
    (16, N, Fixed(4), "Date, Conversion"),
    (17, N, Fixed(4), "Date, Capture"),
    (18, N, Fixed(4), "Merchant Type"),
    (19, N, Fixed(3), "Acquiring Institution Country Code"),
    (20, N, Fixed(3), "PAN Country Code"),
    (21, N, Fixed(3), "Forwarding Institution Country Code"),
    (22, N, Fixed(3), "Point-of-Service Entry Mode"),
    (23, N, Fixed(3), "PAN Sequence Number"),
    (24, N, Fixed(3), "Network International ID (NII)"),
    (25, N, Fixed(2), "Point-of-Service Condition Code"),
    (26, N, Fixed(2), "Point-of-Service Capture Code"),
    (27, N, Fixed(1), "Authorizing ID Response Length"),
    // x+n: a C (credit) or D (debit) sign, then digits.
    (28, An, Fixed(9), "Amount, Transaction Fee"),
    (29, An, Fixed(9), "Amount, Settlement Fee"),
    (30, An, Fixed(9), "Amount, Transaction Processing Fee"),
    (31, An, Fixed(9), "Amount, Settlement Processing Fee"),
    (32, N, LlVar(11), "Acquiring Institution ID Code"),
    (33, N, LlVar(11), "Forwarding Institution ID Code"),
    (34, Ans, LlVar(28), "Primary Account Number, Extended"),
    (35, Z, LlVar(37), "Track 2 Data"),
    (36, Z, LllVar(104), "Track 3 Data"),
    (37, An, Fixed(12), "Retrieval Reference Number"),
    (38, An, Fixed(6), "Authorization ID Response"),
    (39, An, Fixed(2), "Response Code"),
    (40, An, Fixed(3), "Service Restriction Code"),
    (41, Ans, Fixed(8), "Card Acceptor Terminal ID"),
    (42, Ans, Fixed(15), "Card Acceptor ID Code"),
    (43, Ans, Fixed(40), "Card Acceptor Name/Location"),
    (44, Ans, LlVar(25), "Additional Response Data"),
    (45, Ans, LlVar(76), "Track 1 Data"),
    (46, Ans, LllVar(999), "Additional Data - ISO"),
    (47, Ans, LllVar(999), "Additional Data - National"),
    (48, Ans, LllVar(999), "Additional Data - Private"),
    (49, An, Fixed(3), "Currency Code, Transaction"),
    (50, An, Fixed(3), "Currency Code, Settlement"),
    (51, An, Fixed(3), "Currency Code, Cardholder Billing"),
    (52, B, Fixed(8), "PIN"),
    (53, N, Fixed(16), "Security-Related Control Information"),
    (54, Ans, LllVar(240), "Additional Amounts"),
    (55, B, LllVar(255), "ICC data"),
    (56, Ans, LllVar(999), "Reserved ISO"),
    (57, Ans, LllVar(999), "Reserved National"),
    (58, Ans, LllVar(999), "Reserved National"),
    (59, Ans, LllVar(999), "Reserved National"),
    (60, Ans, LllVar(999), "Reserved National"),
    (61, Ans, LllVar(999), "Reserved Private"),
    (62, Ans, LllVar(999), "Reserved Private"),
    (63, Ans, LllVar(999), "Reserved Private"),
    (64, B, Fixed(8), "MAC"),
    (66, N, Fixed(1), "Settlement Code"),
    (67, N, Fixed(2), "Extended Payment Code"),
    (68, N, Fixed(3), "Receiving Institution Country Code"),
    (69, N, Fixed(3), "Settlement Institution Country Code"),
    (70, N, Fixed(3), "Network Management Information Code"),
    (71, N, Fixed(4), "Message Number"),
    (72, N, Fixed(4), "Message Number, Last"),
    (73, N, Fixed(6), "Date, Action"),
    (74, N, Fixed(10), "Credits, Number"),
    (75, N, Fixed(10), "Credits, Reversal Number"),
    (76, N, Fixed(10), "Debits, Number"),
    (77, N, Fixed(10), "Debits, Reversal Number"),
    (78, N, Fixed(10), "Transfer, Number"),
    (79, N, Fixed(10), "Transfer, Reversal Number"),
    (80, N, Fixed(10), "Inquiries, Number"),
    (81, N, Fixed(10), "Authorizations, Number"),
    (82, N, Fixed(12), "Credits, Processing Fee Amount"),
    (83, N, Fixed(12), "Credits, Transaction Fee Amount"),
    (84, N, Fixed(12), "Debits, Processing Fee Amount"),
    (85, N, Fixed(12), "Debits, Transaction Fee Amount"),
    (86, N, Fixed(16), "Credits, Amount"),
    (87, N, Fixed(16), "Credits, Reversal Amount"),
    (88, N, Fixed(16), "Debits, Amount"),
    (89, N, Fixed(16), "Debits, Reversal Amount"),
    (90, N, Fixed(42), "Original Data Elements"),
    (91, An, Fixed(1), "File Update Code"),
    (92, An, Fixed(2), "File Security Code"),
    (93, An, Fixed(5), "Response Indicator"),
    (94, An, Fixed(7), "Service Indicator"),
    (95, An, Fixed(42), "Replacement Amounts"),
    (96, B, Fixed(8), "Message Security Code"),
    (97, An, Fixed(17), "Amount, Net Settlement"),
    (98, Ans, Fixed(25), "Payee"),
    (99, N, LlVar(11), "Settlement Institution ID Code"),
    (100, N, LlVar(11), "Receiving Institution ID Code"),
    (101, Ans, LlVar(17), "File Name"),
    (102, Ans, LlVar(28), "Account ID 1"),
    (103, Ans, LlVar(28), "Account ID 2"),
    (104, Ans, LllVar(100), "Transaction Description"),
    (105, Ans, LllVar(999), "Reserved for ISO Use"),
    (106, Ans, LllVar(999), "Reserved for ISO Use"),
    (107, Ans, LllVar(999), "Reserved for ISO Use"),
    (108, Ans, LllVar(999), "Reserved for ISO Use"),
    (109, Ans, LllVar(999), "Reserved for ISO Use"),
    (110, Ans, LllVar(999), "Reserved for ISO Use"),
    (111, Ans, LllVar(999), "Reserved for ISO Use"),
    (112, Ans, LllVar(999), "Reserved for National Use"),
    (113, Ans, LllVar(999), "Reserved for National Use"),
    (114, Ans, LllVar(999), "Reserved for National Use"),
    (115, Ans, LllVar(999), "Reserved for National Use"),
    (116, Ans, LllVar(999), "Reserved for National Use"),
    (117, Ans, LllVar(999), "Reserved for National Use"),
    (118, Ans, LllVar(999), "Reserved for National Use"),
    (119, Ans, LllVar(999), "Reserved for National Use"),
    (120, Ans, LllVar(999), "Reserved for Private Use"),
    (121, Ans, LllVar(999), "Reserved for Private Use"),
    (122, Ans, LllVar(999), "Reserved for Private Use"),
    (123, Ans, LllVar(999), "Reserved for Private Use"),
    (124, Ans, LllVar(999), "Reserved for Private Use"),
    (125, Ans, LllVar(999), "Reserved for Private Use"),
    (126, Ans, LllVar(999), "Reserved for Private Use"),
    (127, Ans, LllVar(999), "Reserved for Private Use"),
    (128, B, Fixed(8), "MAC"),
];

static ASCII_1987: LazyLock<Dialect> = LazyLock::new(|| {
    build("ascii_1987", Encoding::Ascii, BitmapEncoding::Hex, |_| {
        (Encoding::Ascii, Encoding::Ascii)
    })
});

static BCD_BINARY_1987: LazyLock<Dialect> = LazyLock::new(|| {
    build(
        "bcd_binary_1987",
        Encoding::Bcd,
        BitmapEncoding::Binary,
        |kind| match kind {
            N => (Encoding::Bcd, Encoding::Bcd),
            B => (Encoding::Bcd, Encoding::Binary),
            An | Ans | Z => (Encoding::Bcd, Encoding::Ascii),
        },
    )
});

fn build(
    name: &str,
    mti_encoding: Encoding,
    bitmap_encoding: BitmapEncoding,
    encodings: impl Fn(FieldKind) -> (Encoding, Encoding),
) -> Dialect {
    FIELDS_1987.iter().fold(
        Dialect::new(name, mti_encoding, bitmap_encoding),
        |dialect, &(field, kind, length, field_name)| {
            let (length_encoding, data_encoding) = encodings(kind);
            dialect.with_field(
                field,
                FieldSpec::new(kind, length, length_encoding, data_encoding, field_name),
            )
        },
    )
}

/// The simulator's ISO 8583:1987 ASCII profile, mirroring pyiso8583's
/// `default_ascii` spec: ASCII MTI, hex-ASCII bitmaps, ASCII lengths, every
/// field as ASCII text, `b` fields (52 PIN block, 55 ICC data, 64/128 MAC,
/// 96) as upper-case hex: 8 bytes travel as 16 characters and LLL
/// prefixes count characters. The one dialect the bank link and simulator use.
pub fn ascii_1987() -> &'static Dialect {
    &ASCII_1987
}

/// The same field table for hosts that pack: BCD MTI (2 bytes), binary
/// bitmaps, BCD length prefixes (1 byte LL, 2 bytes LLL, counting digits for
/// `n` fields and bytes otherwise), `n` data as left-zero-padded BCD, `b` data
/// raw, text as ASCII. pyiso8583's `default` spec with `n` fields switched to
/// BCD (`data_enc` "b", `len_count` "nibbles", `left_pad` "0") and `len_enc`
/// "bcd".
pub fn bcd_binary_1987() -> &'static Dialect {
    &BCD_BINARY_1987
}
