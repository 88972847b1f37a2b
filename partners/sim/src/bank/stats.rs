//! Counters of what the simulator saw and did, for tests and the demo.

use std::collections::BTreeMap;

/// A copy of the simulator's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Requests received, by MTI (`"0200"`, `"0401"`, ...), MAC failures and unparsable frames included.
    pub requests_by_mti: BTreeMap<String, u64>,
    /// Answers sent, by MTI (a duplicated answer counts twice).
    pub responses_by_mti: BTreeMap<String, u64>,
    /// Reversals that undid their original.
    pub reversals_applied: u64,
    /// Reversals whose original was never seen (recorded; a late original is then declined).
    pub reversals_unknown_original: u64,
    /// Reversals of an original already reversed, or declined: nothing to undo.
    pub reversals_nothing_to_undo: u64,
    /// Reversals, captures and refunds whose reference (RRN and field 90)
    /// fit more than one transaction: refused with 25, nothing applied.
    pub references_ambiguous: u64,
    /// Repeats with the same RRN and content, answered from the record.
    pub duplicates_replayed: u64,
    /// Repeats with the same RRN and different content, refused with 94.
    pub duplicates_refused: u64,
    /// Requests whose STAN their acquirer already used that day for another
    /// RRN, refused with 94 (duplicate transmission).
    pub duplicate_stans_refused: u64,
    /// Requests whose MAC was missing or did not verify.
    pub mac_failures: u64,
    /// Frames that did not unpack (no MTI to answer with): ignored.
    pub unparsable_frames: u64,
    /// MAC-valid requests with missing or malformed fields (answered 30).
    pub format_errors: u64,
    /// Key changes (0800/161) performed.
    pub key_changes: u64,
    /// Faults injected, by name (`no_response`, `drop_connection`, `late_response`,
    /// `duplicate_response`, `bad_mac`, `decline_all`).
    pub faults_injected: BTreeMap<String, u64>,
}

impl SimStats {
    /// Requests received with this MTI.
    pub fn requests(&self, mti: &str) -> u64 {
        self.requests_by_mti.get(mti).copied().unwrap_or_default()
    }

    /// Answers sent with this MTI.
    pub fn responses(&self, mti: &str) -> u64 {
        self.responses_by_mti.get(mti).copied().unwrap_or_default()
    }

    /// Times a fault was injected.
    pub fn faults(&self, name: &str) -> u64 {
        self.faults_injected.get(name).copied().unwrap_or_default()
    }

    pub(crate) fn count_request(&mut self, mti: &str) {
        *self.requests_by_mti.entry(mti.to_owned()).or_default() += 1;
    }

    pub(crate) fn count_response(&mut self, mti: &str) {
        *self.responses_by_mti.entry(mti.to_owned()).or_default() += 1;
    }

    pub(crate) fn count_fault(&mut self, name: &str) {
        *self.faults_injected.entry(name.to_owned()).or_default() += 1;
    }
}
