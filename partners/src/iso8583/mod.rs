//! A spec-driven ISO 8583 codec.
//!
//! A [`Dialect`] holds one [`FieldSpec`] per data element (content class,
//! length rule, length and data encodings); [`Dialect::pack`] and
//! [`Dialect::unpack`] turn a [`Message`] into bytes and back, checking every
//! field against its spec. Values are logical content: ASCII digits for `n`
//! fields whatever the wire encoding, raw bytes for `b` fields.
//!
//! ```
//! use posgate_partners::iso8583::{Message, Mti, ascii_1987};
//!
//! let mut request = Message::new(Mti::new(*b"0800"));
//! request.set_str(7, "1123145500").set_str(11, "000001").set_str(70, "301");
//! let bytes = ascii_1987().pack(&request).unwrap();
//! assert_eq!(ascii_1987().unpack(&bytes).unwrap(), request);
//! ```
//!
//! # Layout
//! - `mti`: [`Mti`], the message type indicator and its response rule.
//! - `message`: [`Message`], fields in one buffer; `Debug` masks card data.
//! - `spec`: [`FieldKind`], [`Length`], [`Encoding`], [`FieldSpec`],
//!   [`BitmapEncoding`], [`Dialect`].
//! - `codec`: pack and unpack, driven by a dialect's field table.
//! - `dialects`: [`ascii_1987`] (the bank link's) and [`bcd_binary_1987`].
//! - `error`: [`PackError`] and [`UnpackError`], which never carry values.

mod codec;
mod dialects;
mod error;
mod message;
mod mti;
mod spec;

pub use codec::MAX_MESSAGE_BYTES;
pub use dialects::{ascii_1987, bcd_binary_1987};
pub use error::{PackError, UnpackError};
pub use message::{Message, SENSITIVE_FIELDS};
pub use mti::Mti;
pub use spec::{BitmapEncoding, Dialect, Encoding, FieldKind, FieldSpec, Length};
