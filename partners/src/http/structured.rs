//! The subset of RFC 8941 structured field values the partner API uses:
//! dictionaries whose members are items (integer, string, token, byte
//! sequence, boolean) or inner lists, each with parameters. Enough to read
//! and write `Signature-Input`, `Signature` and `Content-Digest`; decimals are
//! refused (nothing here carries one).

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Largest header value parsed, in bytes: a signature header is a few
/// hundred bytes, so anything near this is an attack, not a partner.
pub const MAX_FIELD_BYTES: usize = 8 * 1024;

/// A bare item (RFC 8941 §3.3) without decimals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Integer(i64),
    String(String),
    Token(String),
    Bytes(Vec<u8>),
    Boolean(bool),
}

/// Parameters in order of appearance (order matters: it is signed).
pub type Params = Vec<(String, Item)>;

/// A dictionary member's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberValue {
    Item(Item),
    InnerList(Vec<(Item, Params)>),
}

/// A member value with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub value: MemberValue,
    pub params: Params,
}

impl Member {
    /// An item member convenience view: `Some(item)` for items, `None` for inner lists.
    pub fn item(&self) -> Option<&Item> {
        match &self.value {
            MemberValue::Item(item) => Some(item),
            MemberValue::InnerList(_) => None,
        }
    }
}

/// A parsed dictionary member as `(key, member)`; `.item` reads an item member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DictEntry {
    pub item: Item,
    pub member: Member,
}

/// Parses a dictionary into `(key, entry)` pairs in order. An item member's
/// item is also in `entry.item`; an inner list member has `Item::Boolean(false)` there.
pub fn parse_dictionary(input: &str) -> Result<Vec<(String, DictEntry)>, String> {
    if input.len() > MAX_FIELD_BYTES {
        return Err(format!("longer than {MAX_FIELD_BYTES} bytes"));
    }
    let mut parser = Parser {
        bytes: input.as_bytes(),
        at: 0,
    };
    let mut members: Vec<(String, DictEntry)> = Vec::new();
    parser.skip_sp();
    while !parser.done() {
        let key = parser.key()?;
        let member = if parser.eat(b'=') {
            if parser.peek() == Some(b'(') {
                let list = parser.inner_list()?;
                let params = parser.params()?;
                Member {
                    value: MemberValue::InnerList(list),
                    params,
                }
            } else {
                let item = parser.bare_item()?;
                let params = parser.params()?;
                Member {
                    value: MemberValue::Item(item),
                    params,
                }
            }
        } else {
            let params = parser.params()?;
            Member {
                value: MemberValue::Item(Item::Boolean(true)),
                params,
            }
        };
        let item = member.item().cloned().unwrap_or(Item::Boolean(false));
        // A repeated key overrides the earlier value (RFC 8941 §4.2.2).
        members.retain(|(existing, _)| *existing != key);
        members.push((key, DictEntry { item, member }));
        parser.skip_ows();
        if parser.done() {
            break;
        }
        if !parser.eat(b',') {
            return Err(format!("expected ',' at byte {}", parser.at));
        }
        parser.skip_ows();
        if parser.done() {
            return Err("trailing ','".to_owned());
        }
    }
    Ok(members)
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    fn key(&mut self) -> Result<String, String> {
        let start = self.at;
        match self.peek() {
            Some(b'a'..=b'z' | b'*') => self.at += 1,
            _ => return Err(format!("expected a key at byte {start}")),
        }
        while matches!(
            self.peek(),
            Some(b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*')
        ) {
            self.at += 1;
        }
        Ok(String::from_utf8_lossy(&self.bytes[start..self.at]).into_owned())
    }

    fn inner_list(&mut self) -> Result<Vec<(Item, Params)>, String> {
        if !self.eat(b'(') {
            return Err(format!("expected '(' at byte {}", self.at));
        }
        let mut items = Vec::new();
        loop {
            self.skip_sp();
            if self.eat(b')') {
                return Ok(items);
            }
            let item = self.bare_item()?;
            let params = self.params()?;
            items.push((item, params));
            match self.peek() {
                Some(b' ' | b')') => {}
                _ => return Err(format!("expected ' ' or ')' at byte {}", self.at)),
            }
        }
    }

    fn params(&mut self) -> Result<Params, String> {
        let mut params: Params = Vec::new();
        while self.eat(b';') {
            self.skip_sp();
            let key = self.key()?;
            let value = if self.eat(b'=') {
                self.bare_item()?
            } else {
                Item::Boolean(true)
            };
            params.retain(|(existing, _)| *existing != key);
            params.push((key, value));
        }
        Ok(params)
    }

    fn bare_item(&mut self) -> Result<Item, String> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.integer(),
            Some(b'"') => self.string(),
            Some(b':') => self.byte_sequence(),
            Some(b'?') => self.boolean(),
            Some(b'A'..=b'Z' | b'a'..=b'z' | b'*') => Ok(self.token()),
            _ => Err(format!("expected an item at byte {}", self.at)),
        }
    }

    fn integer(&mut self) -> Result<Item, String> {
        let start = self.at;
        self.eat(b'-');
        let digits_start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        let digits = self.at - digits_start;
        if digits == 0 || digits > 15 || self.peek() == Some(b'.') {
            return Err(format!("bad integer at byte {start}"));
        }
        let text = std::str::from_utf8(&self.bytes[start..self.at]).map_err(|e| e.to_string())?;
        text.parse()
            .map(Item::Integer)
            .map_err(|_| format!("bad integer at byte {start}"))
    }

    fn string(&mut self) -> Result<Item, String> {
        let start = self.at;
        self.at += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(format!("unterminated string at byte {start}")),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(Item::String(out));
                }
                Some(b'\\') => {
                    self.at += 1;
                    match self.peek() {
                        Some(escaped @ (b'"' | b'\\')) => out.push(char::from(escaped)),
                        _ => return Err(format!("bad escape at byte {}", self.at)),
                    }
                    self.at += 1;
                }
                Some(byte @ 0x20..=0x7E) => {
                    out.push(char::from(byte));
                    self.at += 1;
                }
                Some(_) => return Err(format!("non-printable byte in string at {}", self.at)),
            }
        }
    }

    fn token(&mut self) -> Item {
        let start = self.at;
        self.at += 1;
        while matches!(
            self.peek(),
            Some(
                b'A'..=b'Z'
                | b'a'..=b'z'
                | b'0'..=b'9'
                | b':'
                | b'/'
                | b'!'
                | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~',
            )
        ) {
            self.at += 1;
        }
        Item::Token(String::from_utf8_lossy(&self.bytes[start..self.at]).into_owned())
    }

    fn byte_sequence(&mut self) -> Result<Item, String> {
        let start = self.at;
        self.at += 1;
        let body_start = self.at;
        while matches!(
            self.peek(),
            Some(b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' | b'=')
        ) {
            self.at += 1;
        }
        let body = &self.bytes[body_start..self.at];
        if !self.eat(b':') {
            return Err(format!("unterminated byte sequence at byte {start}"));
        }
        STANDARD
            .decode(body)
            .map(Item::Bytes)
            .map_err(|_| format!("bad base64 in byte sequence at byte {start}"))
    }

    fn boolean(&mut self) -> Result<Item, String> {
        self.at += 1;
        let value = match self.peek() {
            Some(b'1') => true,
            Some(b'0') => false,
            _ => return Err(format!("bad boolean at byte {}", self.at)),
        };
        self.at += 1;
        Ok(Item::Boolean(value))
    }
}

/// Serializes a bare item (RFC 8941 §4.1.3).
pub fn serialize_item(item: &Item, out: &mut String) {
    match item {
        Item::Integer(value) => {
            let _ = write!(out, "{value}");
        }
        Item::String(value) => {
            out.push('"');
            for c in value.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        Item::Token(value) => out.push_str(value),
        Item::Bytes(value) => {
            out.push(':');
            out.push_str(&STANDARD.encode(value));
            out.push(':');
        }
        Item::Boolean(value) => out.push_str(if *value { "?1" } else { "?0" }),
    }
}

/// Serializes parameters (RFC 8941 §4.1.1.2): `;key=value`, `;key` for true.
pub fn serialize_params(params: &Params, out: &mut String) {
    for (key, value) in params {
        out.push(';');
        out.push_str(key);
        if *value != Item::Boolean(true) {
            out.push('=');
            serialize_item(value, out);
        }
    }
}

/// Serializes an inner list with its parameters (RFC 8941 §4.1.1.1).
pub fn serialize_inner_list(items: &[(Item, Params)], params: &Params, out: &mut String) {
    out.push('(');
    for (index, (item, item_params)) in items.iter().enumerate() {
        if index > 0 {
            out.push(' ');
        }
        serialize_item(item, out);
        serialize_params(item_params, out);
    }
    out.push(')');
    serialize_params(params, out);
}

/// Is `text` a valid sf-string body (printable ASCII)?
pub fn is_sf_string(text: &str) -> bool {
    text.bytes().all(|byte| (0x20..=0x7E).contains(&byte))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC 9421 B.2.6 Signature-Input parses and serializes back to the same text.
    #[test]
    fn signature_input_round_trips() {
        let text = "sig-b26=(\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\"";
        let members = parse_dictionary(text).unwrap();
        assert_eq!(members.len(), 1);
        let (key, entry) = &members[0];
        assert_eq!(key, "sig-b26");
        let MemberValue::InnerList(items) = &entry.member.value else {
            panic!("inner list expected")
        };
        let mut out = format!("{key}=");
        serialize_inner_list(items, &entry.member.params, &mut out);
        assert_eq!(out, text);
    }

    /// Tokens, booleans, bytes, `;req` flags and several members parse.
    #[test]
    fn items_and_members() {
        let members =
            parse_dictionary("a=1, b=?0, c=tok/x, d=:AQI=:, e;x=\"q\\\"\", f=(\"@method\";req)")
                .unwrap();
        assert_eq!(members[0].1.item, Item::Integer(1));
        assert_eq!(members[1].1.item, Item::Boolean(false));
        assert_eq!(members[2].1.item, Item::Token("tok/x".into()));
        assert_eq!(members[3].1.item, Item::Bytes(vec![1, 2]));
        assert_eq!(
            members[4].1.member.params,
            vec![("x".to_owned(), Item::String("q\"".into()))]
        );
        let MemberValue::InnerList(items) = &members[5].1.member.value else {
            panic!("inner list expected")
        };
        assert_eq!(items[0].1, vec![("req".to_owned(), Item::Boolean(true))]);
    }

    /// Malformed input is an error, never a panic.
    #[test]
    fn malformed_is_refused() {
        for bad in [
            "A=1", "a=", "a=(\"x\"", "a=\"open", "a=:@@:", "a=1,", "a=1.5", "a=?2",
        ] {
            assert!(parse_dictionary(bad).is_err(), "{bad} should fail");
        }
        assert!(parse_dictionary(&"a".repeat(MAX_FIELD_BYTES + 1)).is_err());
    }
}
