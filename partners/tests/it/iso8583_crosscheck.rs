//! Cross-check against pyiso8583, an independent implementation: messages
//! packed by posgate decode to the same fields in pyiso8583, and messages
//! encoded by pyiso8583 are byte-identical to posgate's and unpack to the
//! same message. Skipped (with a note on stderr) when pyiso8583 is missing,
//! unless `POSGATE_REQUIRE_PYISO8583=1`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use posgate_partners::iso8583::{Dialect, FieldKind, Message, Mti, ascii_1987, bcd_binary_1987};
use serde_json::{Map, Value, json};

use super::iso8583::sample_0200;
use super::iso8583_gen::{SplitMix64, random_message};

/// Pseudo-random messages per dialect, on top of the typical ones.
const RANDOM_MESSAGES: usize = 200;
/// Fixed seed: the same messages on every run and machine.
const SEED: u64 = 0x0583_1987_C0DE_0001;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/pyiso8583_crosscheck.py")
}

/// Whether pyiso8583 can be imported; fails the test when it cannot and
/// `POSGATE_REQUIRE_PYISO8583=1`.
fn pyiso8583_available() -> bool {
    let imported = Command::new("python3")
        .args(["-c", "import iso8583"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !imported {
        let required = std::env::var("POSGATE_REQUIRE_PYISO8583").is_ok_and(|value| value == "1");
        assert!(
            !required,
            "POSGATE_REQUIRE_PYISO8583=1 but `python3 -c 'import iso8583'` fails: pip install pyiso8583"
        );
        eprintln!(
            "skipping the pyiso8583 cross-check: `import iso8583` fails (pip install pyiso8583)"
        );
    }
    imported
}

fn typical_messages() -> Vec<Message> {
    let mut auth = Message::new(Mti::new(*b"0100"));
    auth.set_str(2, "4761739001010119")
        .set_str(3, "000000")
        .set_str(4, "000000099900")
        .set_str(7, "1123145500")
        .set_str(11, "000007")
        .set_str(14, "2512")
        .set_str(22, "012")
        .set_str(32, "00000001234")
        .set_str(37, "532714000007")
        .set_str(41, "TERM0001")
        .set_str(42, "MERCHANT0000001")
        .set_str(49, "392")
        .set(64, vec![1, 2, 3, 4, 5, 6, 7, 8]);

    let mut response = sample_0200();
    response.set_mti(response.mti().response());
    response
        .set_str(38, "A1B2C3")
        .set_str(39, "00")
        .set_str(48, "PTS+000000120BAL000000004200");

    let mut reversal = Message::new(Mti::new(*b"0400"));
    reversal
        .set_str(2, "4761739001010119")
        .set_str(3, "000000")
        .set_str(4, "000000012500")
        .set_str(7, "1123145600")
        .set_str(11, "000124")
        .set_str(37, "532714000123")
        .set_str(41, "TERM0001")
        .set_str(42, "MERCHANT0000001")
        .set_str(90, "020000012311231455000000000123400000000000")
        .set(128, vec![0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10]);

    let mut sign_on = Message::new(Mti::new(*b"0800"));
    sign_on
        .set_str(7, "1123145500")
        .set_str(11, "000001")
        .set_str(70, "001");
    let mut key_change = Message::new(Mti::new(*b"0810"));
    key_change
        .set_str(7, "1123145500")
        .set_str(11, "000002")
        .set_str(39, "00")
        .set_str(48, "KEY0123456789ABCDEF0123456789ABCDEFKCV1A2B3C")
        .set_str(70, "161");

    vec![auth, sample_0200(), response, reversal, sign_on, key_change]
}

fn messages(dialect: &Dialect) -> Vec<Message> {
    let mut rng = SplitMix64::new(SEED);
    let mut all = typical_messages();
    all.extend((0..RANDOM_MESSAGES).map(|_| random_message(dialect, &mut rng)));
    all
}

/// The value as pyiso8583 represents it: hex text for b fields, else text.
fn py_value(dialect: &Dialect, field: u8, value: &[u8]) -> String {
    if dialect.field(field).unwrap().kind == FieldKind::B {
        hex::encode_upper(value)
    } else {
        String::from_utf8(value.to_vec()).unwrap()
    }
}

fn py_doc(dialect: &Dialect, message: &Message) -> Map<String, Value> {
    let mut doc = Map::new();
    doc.insert("t".into(), message.mti().as_str().into());
    for (field, value) in message.fields() {
        doc.insert(field.to_string(), py_value(dialect, field, value).into());
    }
    doc
}

/// The primary and (if any) secondary bitmap as pyiso8583 reports them.
fn bitmaps(message: &Message) -> (String, Option<String>) {
    let mut bitmap = 0u128;
    for (field, _) in message.fields() {
        bitmap |= 1u128 << (128 - u32::from(field));
    }
    if bitmap & u128::from(u64::MAX) != 0 {
        bitmap |= 1 << 127;
    }
    let text = format!("{bitmap:032X}");
    let secondary = (bitmap & (1 << 127) != 0).then(|| text[16..].to_string());
    (text[..16].to_string(), secondary)
}

fn run_script(request: &Value) -> Value {
    let mut child = Command::new("python3")
        .arg(script())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "cross-check script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("script prints JSON")
}

fn cross_check(dialect: &Dialect) {
    let messages = messages(dialect);
    let packed: Vec<Vec<u8>> = messages.iter().map(|m| dialect.pack(m).unwrap()).collect();
    let n_fields: Vec<u8> = (2..=128)
        .filter(|field| {
            dialect
                .field(*field)
                .is_some_and(|spec| spec.kind == FieldKind::N)
        })
        .collect();
    let request = json!({
        "dialect": dialect.name(),
        "n_fields": n_fields,
        "decode": packed.iter().map(hex::encode_upper).collect::<Vec<_>>(),
        "encode": messages.iter().map(|m| Value::Object(py_doc(dialect, m))).collect::<Vec<_>>(),
    });
    let answer = run_script(&request);
    let decoded = answer["decoded"].as_array().unwrap();
    let encoded = answer["encoded"].as_array().unwrap();
    assert_eq!(decoded.len(), messages.len());
    assert_eq!(encoded.len(), messages.len());

    let mut secondary_seen = 0;
    for (index, message) in messages.iter().enumerate() {
        let context = format!("{} message {index} ({:?})", dialect.name(), message.mti());
        // posgate -> pyiso8583: same MTI, bitmaps and fields.
        let mut theirs = decoded[index]
            .as_object()
            .unwrap_or_else(|| panic!("{context}: not an object"))
            .clone();
        assert!(
            !theirs.contains_key("error"),
            "{context}: pyiso8583 failed: {}",
            theirs["error"]
        );
        let (primary, secondary) = bitmaps(message);
        assert_eq!(
            theirs.remove("p"),
            Some(primary.into()),
            "{context}: primary bitmap"
        );
        assert_eq!(
            theirs.remove("1"),
            secondary.clone().map(Value::from),
            "{context}: secondary bitmap"
        );
        secondary_seen += usize::from(secondary.is_some());
        let ours = py_doc(dialect, message);
        for (key, value) in &mut theirs {
            // pyiso8583 prints decoded binary data in either case; ours is upper.
            let field: Option<u8> = key.parse().ok();
            if field.is_some_and(|f| dialect.field(f).unwrap().kind == FieldKind::B) {
                *value = value.as_str().unwrap().to_uppercase().into();
            }
        }
        assert_eq!(theirs, ours, "{context}: pyiso8583 decodes differently");

        // pyiso8583 -> posgate: byte-identical, and unpacks to the message.
        let their_bytes = encoded[index]
            .as_str()
            .unwrap_or_else(|| panic!("{context}: pyiso8583 failed to encode: {}", encoded[index]));
        let their_bytes = hex::decode(their_bytes).unwrap();
        assert_eq!(their_bytes, packed[index], "{context}: wire images differ");
        assert_eq!(&dialect.unpack(&their_bytes).unwrap(), message, "{context}");
    }
    assert!(
        secondary_seen > 50,
        "only {secondary_seen} messages had a secondary bitmap"
    );
}

/// `ascii_1987` agrees with pyiso8583's `default_ascii` both ways.
#[test]
fn ascii_1987_matches_pyiso8583() {
    if pyiso8583_available() {
        cross_check(ascii_1987());
    }
}

/// `bcd_binary_1987` agrees with pyiso8583's `default` with BCD n fields, both ways.
#[test]
fn bcd_binary_1987_matches_pyiso8583() {
    if pyiso8583_available() {
        cross_check(bcd_binary_1987());
    }
}
