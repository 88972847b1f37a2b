//! What every request carries: its context (who asks, under which
//! idempotency key) and the field violations a refused request reports.

/// Who is asking: the request context every service call carries (shop,
/// terminal, operator, idempotency key) and the authenticated caller.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub store_id: String,
    pub terminal_id: String,
    pub operator_id: String,
    pub client_request_id: String,
    /// The authenticated caller (its SPIFFE id), recorded as the actor of events.
    pub actor: String,
}

impl RequestContext {
    /// The idempotency key the request is made under.
    pub fn idempotency_key(&self) -> super::IdempotencyKey {
        super::IdempotencyKey {
            store_id: self.store_id.clone(),
            terminal_id: self.terminal_id.clone(),
            client_request_id: self.client_request_id.clone(),
        }
    }
}

/// A field the caller got wrong, by its proto path, with a reason in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}
