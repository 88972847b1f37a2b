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
pub(super) fn block(
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

pub(super) mod sql {
    /// Moves the counter by `$3` and returns where it ends: the block is the
    /// `$3` numbers before it. One statement, so concurrent gateways
    /// serialize on the row and never share a block.
    pub const ALLOCATE: &str = "INSERT INTO stan_counters (institution_id, stan_day, next_stan) \
         VALUES ($1, $2, 1 + $3) ON CONFLICT (institution_id, stan_day) \
         DO UPDATE SET next_stan = stan_counters.next_stan + $3 RETURNING next_stan";
    pub const SET_SAF_STAN: &str =
        "UPDATE saf_queue SET stan = COALESCE(stan, $1) WHERE id = $2 RETURNING stan";
}

/// Implements [`StanStore`] for a backend whose pool is the field `$pool`.
macro_rules! define_stan_store {
    ($store:ty, $pool:ident) => {
        #[async_trait::async_trait]
        impl $crate::store::stan::StanStore for $store {
            async fn allocate_stans(
                &self,
                institution_id: &str,
                day: chrono::NaiveDate,
                count: u32,
            ) -> Result<std::ops::Range<u32>, $crate::store::StoreError> {
                let next_after: i64 = sqlx::query_scalar($crate::store::stan::sql::ALLOCATE)
                    .bind(institution_id)
                    .bind(day)
                    .bind(i64::from(count))
                    .fetch_one(&self.$pool)
                    .await
                    .db()?;
                $crate::store::stan::block(institution_id, day, next_after, count)
            }

            async fn saf_set_stan(
                &self,
                id: i64,
                stan: &str,
            ) -> Result<String, $crate::store::StoreError> {
                let recorded: Option<String> =
                    sqlx::query_scalar($crate::store::stan::sql::SET_SAF_STAN)
                        .bind(stan)
                        .bind(id)
                        .fetch_optional(&self.$pool)
                        .await
                        .db()?;
                recorded.ok_or_else(|| {
                    $crate::store::StoreError::Invariant(format!("no queue entry {id}"))
                })
            }
        }
    };
}

pub(crate) use define_stan_store;

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
