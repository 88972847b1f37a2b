//! Durable STANs (ISO 8583 field 11): blocks of trace numbers taken from a
//! counter row per acquiring institution id and UTC day, so no two requests
//! of one institution carry the same STAN on the same day, whichever link,
//! process or gateway instance sent them.

use std::ops::Range;

use chrono::NaiveDate;

use super::StoreError;

/// The highest STAN: field 11 is 6 digits and 000000 is not used.
pub const MAX_STAN: u32 = 999_999;

/// Hands out STAN blocks.
#[async_trait::async_trait]
pub trait StanStore: Send + Sync {
    /// Takes up to `count` STANs of `institution_id` on `day` that were never
    /// handed out before. The range is shorter than `count` only at the end
    /// of the day's space; `StanSpaceExhausted` once nothing is left.
    async fn allocate_stans(
        &self,
        institution_id: &str,
        day: NaiveDate,
        count: u32,
    ) -> Result<Range<u32>, StoreError>;

    /// Records the STAN a queue entry (reversal, advice) went out with the
    /// first time; its repeats reuse it. Returns the STAN recorded, which is
    /// the earlier one if the entry already had one.
    async fn saf_set_stan(&self, id: i64, stan: &str) -> Result<String, StoreError>;
}

/// The block `allocate_stans` returns once the counter moved from
/// `next_before` by `count`: clipped to [`MAX_STAN`].
pub fn block(
    institution_id: &str,
    day: NaiveDate,
    next_after: i64,
    count: u32,
) -> Result<Range<u32>, StoreError> {
    let first = next_after - i64::from(count);
    let end = next_after.min(i64::from(MAX_STAN) + 1);
    if first > i64::from(MAX_STAN) {
        return Err(StoreError::Invariant(format!(
            "STAN space of institution {institution_id} on {day} is used up (999999 trace numbers)"
        )));
    }
    let first = u32::try_from(first).map_err(|_| {
        StoreError::Corrupt(format!(
            "stan_counters of {institution_id} on {day} is below 1"
        ))
    })?;
    let end = u32::try_from(end).expect("clipped to MAX_STAN + 1");
    Ok(first..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_stop_at_the_last_stan() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 4).unwrap();
        assert_eq!(block("1", day, 101, 100).unwrap(), 1..101);
        assert_eq!(block("1", day, 1_000_050, 100).unwrap(), 999_950..1_000_000);
        assert!(block("1", day, 1_000_101, 100).is_err());
    }
}
