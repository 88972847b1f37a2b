//! Field-by-field validation of requests. Every check names the field by its
//! proto path; all violations of a request are collected and reported
//! together, and nothing is stored for an invalid request.

use chrono::{DateTime, Utc};
use posgate_proto::v1 as pb;

use posgate_core::bill::SlipInput;

use posgate_core::model::ids::is_valid_id;
use posgate_core::model::money::{Currency, MAX_AMOUNT_MINOR};
use posgate_core::model::{FieldViolation, RequestContext};

/// Longest `client_request_id`, as Stripe and the proto allow.
pub const MAX_CLIENT_REQUEST_ID_LEN: usize = 255;
/// Most barcodes on one slip (Taiwan slips have three).
pub const MAX_BARCODES: usize = 3;
/// Longest barcode accepted before parsing: a 44-digit GS1 code plus scanner prefixes and slack.
pub const MAX_BARCODE_LEN: usize = 64;
/// Longest cancel reason.
pub const MAX_REASON_LEN: usize = 200;
/// How far ahead of the gateway a POS clock may run before its stamp is refused.
pub const MAX_POS_CLOCK_AHEAD: chrono::Duration = chrono::Duration::hours(24);
/// A transaction id is a hyphenated UUID.
pub const TRANSACTION_ID_LEN: usize = 36;

/// Collects violations while reading a request.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// The violations so far, for the checks the core makes.
    pub fn entries_mut(&mut self) -> &mut Vec<FieldViolation> {
        &mut self.0
    }

    /// Ok when nothing was wrong, else every violation.
    pub fn finish(self) -> Result<(), Vec<FieldViolation>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }

    /// Checks an id of 1-32 characters of `[A-Za-z0-9_-]`.
    pub fn id(&mut self, field: &str, value: &str) {
        if value.is_empty() {
            self.add(field, "is required");
        } else if !is_valid_id(value) {
            self.add(field, "must be 1-32 characters of A-Z a-z 0-9 _ -");
        }
    }

    /// Checks an idempotency key: 1-255 printable ASCII characters without spaces.
    pub fn request_id(&mut self, field: &str, value: &str) {
        if value.is_empty() {
            self.add(field, "is required");
        } else if value.len() > MAX_CLIENT_REQUEST_ID_LEN {
            self.add(
                field,
                format!("is {} characters; at most 255 are allowed", value.len()),
            );
        } else if !value.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            self.add(field, "must be printable ASCII without spaces (0x21-0x7E)");
        }
    }

    /// Reads the request context into the `RequestContext` it names; `known_store`
    /// says whether posgate serves the store.
    pub fn context(
        &mut self,
        context: Option<&pb::RequestContext>,
        known_store: impl Fn(&str) -> bool,
        now: DateTime<Utc>,
    ) -> RequestContext {
        let Some(context) = context else {
            self.add("context", "is required");
            return RequestContext {
                store_id: String::new(),
                terminal_id: String::new(),
                operator_id: String::new(),
                client_request_id: String::new(),
                actor: String::new(),
            };
        };
        self.id("context.store_id", &context.store_id);
        if is_valid_id(&context.store_id) && !known_store(&context.store_id) {
            self.add(
                "context.store_id",
                format!("store {} is not configured in posgate", context.store_id),
            );
        }
        self.id("context.terminal_id", &context.terminal_id);
        self.request_id("context.client_request_id", &context.client_request_id);
        self.id("context.operator_id", &context.operator_id);
        self.pos_timestamp(context.pos_timestamp.as_ref(), now);
        RequestContext {
            store_id: context.store_id.clone(),
            terminal_id: context.terminal_id.clone(),
            operator_id: context.operator_id.clone(),
            client_request_id: context.client_request_id.clone(),
            actor: String::new(),
        }
    }

    fn pos_timestamp(&mut self, stamp: Option<&prost_types::Timestamp>, now: DateTime<Utc>) {
        const FIELD: &str = "context.pos_timestamp";
        let Some(stamp) = stamp else {
            self.add(FIELD, "is required");
            return;
        };
        let nanos = u32::try_from(stamp.nanos)
            .ok()
            .filter(|nanos| *nanos < 1_000_000_000);
        match nanos.and_then(|nanos| DateTime::from_timestamp(stamp.seconds, nanos)) {
            None => self.add(FIELD, "is not a valid timestamp"),
            Some(at) if at > now + MAX_POS_CLOCK_AHEAD => {
                self.add(
                    FIELD,
                    "is more than 24 hours ahead of the gateway's clock; check the POS clock",
                );
            }
            Some(_) => {}
        }
    }

    /// Reads a slip: 1-3 barcodes of at most 64 characters, an optional biller id.
    pub fn slip(&mut self, slip: Option<&pb::BillSlip>) -> SlipInput {
        let Some(slip) = slip else {
            self.add("slip", "is required");
            return SlipInput {
                barcodes: Vec::new(),
                biller_id: None,
            };
        };
        if slip.barcodes.is_empty() {
            self.add("slip.barcodes", "is required: scan the slip's barcodes");
        } else if slip.barcodes.len() > MAX_BARCODES {
            self.add(
                "slip.barcodes",
                format!("has {} barcodes; a slip has at most 3", slip.barcodes.len()),
            );
        }
        for (index, barcode) in slip.barcodes.iter().enumerate().take(MAX_BARCODES) {
            let field = format!("slip.barcodes[{index}]");
            let length = barcode.chars().count();
            if barcode.trim().is_empty() {
                self.add(field, "is empty");
            } else if length > MAX_BARCODE_LEN {
                self.add(
                    field,
                    format!("is {length} characters; at most {MAX_BARCODE_LEN} are allowed"),
                );
            }
        }
        if !slip.biller_id.is_empty() {
            self.id("slip.biller_id", &slip.biller_id);
        }
        SlipInput {
            barcodes: slip.barcodes.clone(),
            biller_id: (!slip.biller_id.is_empty()).then(|| slip.biller_id.clone()),
        }
    }

    /// Reads a positive amount in a known currency.
    pub fn positive_money(
        &mut self,
        field: &str,
        money: Option<&pb::Money>,
    ) -> Option<(u64, Currency)> {
        let Some(money) = money else {
            self.add(field, "is required");
            return None;
        };
        let amount = match u64::try_from(money.amount_minor) {
            Ok(0) | Err(_) => {
                self.add(format!("{field}.amount_minor"), "must be positive");
                None
            }
            Ok(amount) if amount > MAX_AMOUNT_MINOR => {
                self.add(
                    format!("{field}.amount_minor"),
                    "exceeds the maximum of 999999999999 minor units",
                );
                None
            }
            Ok(amount) => Some(amount),
        };
        let currency = if money.currency.is_empty() {
            self.add(
                format!("{field}.currency"),
                "is required (ISO 4217 code such as TWD)",
            );
            None
        } else {
            let currency = Currency::from_code(&money.currency);
            if currency.is_none() {
                self.add(
                    format!("{field}.currency"),
                    format!(
                        "{:?} is not an ISO 4217 currency posgate settles",
                        money.currency
                    ),
                );
            }
            currency
        };
        amount.zip(currency)
    }

    /// Checks a transaction id: a hyphenated UUID.
    pub fn transaction_id(&mut self, field: &str, value: &str) {
        if value.is_empty() {
            self.add(field, "is required");
        } else if value.len() != TRANSACTION_ID_LEN || uuid::Uuid::try_parse(value).is_err() {
            self.add(
                field,
                "must be a transaction id as returned by posgate (a 36-character UUID)",
            );
        }
    }

    /// Checks free text: 1 to `max` characters, no control characters.
    pub fn text(&mut self, field: &str, value: &str, max: usize) {
        let length = value.chars().count();
        if value.trim().is_empty() {
            self.add(field, "is required");
        } else if length > max {
            self.add(
                field,
                format!("is {length} characters; at most {max} are allowed"),
            );
        } else if value.chars().any(char::is_control) {
            self.add(field, "must not contain control characters");
        }
    }
}
