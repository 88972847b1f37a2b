//! The SQL side of [`posgate_core::ports::db::stan`].

pub(crate) use posgate_core::ports::db::stan::*;

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
        impl $crate::stan::StanStore for $store {
            async fn allocate_stans(
                &self,
                institution_id: &str,
                day: chrono::NaiveDate,
                count: u32,
            ) -> Result<std::ops::Range<u32>, $crate::StoreError> {
                let next_after: i64 = sqlx::query_scalar($crate::stan::sql::ALLOCATE)
                    .bind(institution_id)
                    .bind(day)
                    .bind(i64::from(count))
                    .fetch_one(&self.$pool)
                    .await
                    .db()?;
                $crate::stan::block(institution_id, day, next_after, count)
            }

            async fn saf_set_stan(
                &self,
                id: i64,
                stan: &str,
            ) -> Result<String, $crate::StoreError> {
                let recorded: Option<String> = sqlx::query_scalar($crate::stan::sql::SET_SAF_STAN)
                    .bind(stan)
                    .bind(id)
                    .fetch_optional(&self.$pool)
                    .await
                    .db()?;
                recorded
                    .ok_or_else(|| $crate::StoreError::Invariant(format!("no queue entry {id}")))
            }
        }
    };
}

pub(crate) use define_stan_store;
