//! The names of the events a transaction's history records.

/// Every event type the gateway stores. A closed list: the store refuses to
/// append an event whose type is not here ([`is_stored_event_type`]), and the
/// API maps each one to the type an auditor sees, so no stored event can
/// reach an auditor as `UNSPECIFIED`.
pub const STORED_EVENT_TYPES: &[&str] = &[
    "received",
    "sent",
    "bill_notice_sent",
    "approved",
    // A wallet operator completed the request.
    "completed",
    // The operator refused to reverse a credit already spent: it stands.
    "reversal_refused",
    "declined",
    "not_sent",
    "bill_rejected",
    "outcome_unknown",
    "reversal_sent",
    "reversed",
    "reversal_acknowledged",
    "captured",
    "voided",
    "expired",
    "refunded",
    "bill_paid",
    "bill_cancelled",
    // A saga step being undone (wallet credit) or undone (card SALE).
    "compensating",
    "compensated",
    "advice_acknowledged",
    // A refused capture advice is the bank's answer to it; its to_status
    // (CAPTURE_REFUSED) and details (the response code) say it refused.
    "capture_refused",
];

/// Whether `stored` is one of [`STORED_EVENT_TYPES`].
pub fn is_stored_event_type(stored: &str) -> bool {
    STORED_EVENT_TYPES.contains(&stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_event_types_are_listed_once() {
        let mut seen = std::collections::BTreeSet::new();
        for name in STORED_EVENT_TYPES {
            assert!(seen.insert(*name), "{name} listed twice");
            assert!(is_stored_event_type(name), "{name}");
        }
        assert!(!is_stored_event_type("made_up"));
    }
}
