//! The replay window: a signature is accepted only if it was created within
//! [`MAX_SIGNATURE_AGE_S`] (and not more than [`MAX_CLOCK_SKEW_S`] ahead of
//! our clock), and only once: its `(keyid, nonce)` is remembered for as long
//! as the signature could still pass the age check, in a bounded cache.

use std::collections::{HashSet, VecDeque};

/// Oldest signature accepted, seconds. Five minutes covers a partner's
/// retries with backoff while keeping the nonce cache small.
pub const MAX_SIGNATURE_AGE_S: i64 = 300;

/// How far a signature's `created` may be ahead of our clock, seconds:
/// NTP-synchronised hosts differ by far less; more means a wrong clock.
pub const MAX_CLOCK_SKEW_S: i64 = 30;

/// Most nonces remembered at once. At the design's 5,000 requests per
/// second per partner over a 330 s window this would need 1.65 M entries; the
/// cache refuses (fail closed) rather than forget when full, so size it for
/// the partner API's real rate (a few hundred per second) with headroom.
pub const MAX_REMEMBERED_NONCES: usize = 200_000;

/// Longest nonce accepted, characters (posgate sends 32 hex digits).
pub const MAX_NONCE_CHARS: usize = 64;

/// Why the replay window refused a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("signature created {age_s} s ago, older than the {MAX_SIGNATURE_AGE_S} s window")]
    Stale { age_s: i64 },
    #[error("signature created {ahead_s} s in the future (more than {MAX_CLOCK_SKEW_S} s skew)")]
    FromFuture { ahead_s: i64 },
    #[error("nonce already used within the replay window")]
    Replayed,
    #[error("nonce empty or longer than {MAX_NONCE_CHARS} characters")]
    BadNonce,
    #[error("replay cache full ({MAX_REMEMBERED_NONCES} nonces): refusing rather than forgetting")]
    Full,
}

/// Seen nonces with the time each may be forgotten. Insertion order is
/// expiry order because every entry lives the same length from insertion.
#[derive(Debug)]
pub struct NonceCache {
    capacity: usize,
    seen: HashSet<(String, String)>,
    expiry: VecDeque<(i64, (String, String))>,
}

impl Default for NonceCache {
    fn default() -> Self {
        Self::with_capacity(MAX_REMEMBERED_NONCES)
    }
}

impl NonceCache {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity,
            seen: HashSet::new(),
            expiry: VecDeque::new(),
        }
    }

    /// Number of nonces remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Checks `created` against `now_s` (both Unix seconds) and records the
    /// nonce. Call it only after the signature verified, so forged requests
    /// cannot fill the cache.
    pub fn check_and_remember(
        &mut self,
        key_id: &str,
        nonce: &str,
        created_s: i64,
        now_s: i64,
    ) -> Result<(), ReplayError> {
        if nonce.is_empty() || nonce.chars().count() > MAX_NONCE_CHARS {
            return Err(ReplayError::BadNonce);
        }
        let age_s = now_s.saturating_sub(created_s);
        if age_s > MAX_SIGNATURE_AGE_S {
            return Err(ReplayError::Stale { age_s });
        }
        if -age_s > MAX_CLOCK_SKEW_S {
            return Err(ReplayError::FromFuture { ahead_s: -age_s });
        }
        self.forget_expired(now_s);
        let entry = (key_id.to_owned(), nonce.to_owned());
        if self.seen.contains(&entry) {
            return Err(ReplayError::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(ReplayError::Full);
        }
        // Kept until no signature with this created time can pass the age check.
        let forget_at = now_s + MAX_SIGNATURE_AGE_S + MAX_CLOCK_SKEW_S;
        self.seen.insert(entry.clone());
        self.expiry.push_back((forget_at, entry));
        Ok(())
    }

    fn forget_expired(&mut self, now_s: i64) {
        while let Some((forget_at, _)) = self.expiry.front() {
            if *forget_at > now_s {
                break;
            }
            if let Some((_, entry)) = self.expiry.pop_front() {
                self.seen.remove(&entry);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A nonce passes once; the same nonce from another key is a different entry.
    #[test]
    fn replay_refused_once_seen() {
        let mut cache = NonceCache::default();
        assert_eq!(cache.check_and_remember("k1", "n1", 1000, 1000), Ok(()));
        assert_eq!(
            cache.check_and_remember("k1", "n1", 1000, 1001),
            Err(ReplayError::Replayed)
        );
        assert_eq!(cache.check_and_remember("k2", "n1", 1000, 1001), Ok(()));
    }

    /// Old and future signatures are refused at the exact boundaries.
    #[test]
    fn window_boundaries() {
        let mut cache = NonceCache::default();
        let now = 10_000;
        assert_eq!(
            cache.check_and_remember("k", "a", now - MAX_SIGNATURE_AGE_S, now),
            Ok(())
        );
        assert_eq!(
            cache.check_and_remember("k", "b", now - MAX_SIGNATURE_AGE_S - 1, now),
            Err(ReplayError::Stale {
                age_s: MAX_SIGNATURE_AGE_S + 1
            })
        );
        assert_eq!(
            cache.check_and_remember("k", "c", now + MAX_CLOCK_SKEW_S, now),
            Ok(())
        );
        assert_eq!(
            cache.check_and_remember("k", "d", now + MAX_CLOCK_SKEW_S + 1, now),
            Err(ReplayError::FromFuture {
                ahead_s: MAX_CLOCK_SKEW_S + 1
            })
        );
        assert_eq!(
            cache.check_and_remember("k", "", now, now),
            Err(ReplayError::BadNonce)
        );
    }

    /// Entries are forgotten only after they could no longer pass the age
    /// check, and a full cache refuses instead of evicting live nonces.
    #[test]
    fn expiry_and_bound() {
        let mut cache = NonceCache::with_capacity(2);
        assert_eq!(cache.check_and_remember("k", "a", 0, 0), Ok(()));
        assert_eq!(cache.check_and_remember("k", "b", 0, 0), Ok(()));
        assert_eq!(
            cache.check_and_remember("k", "c", 0, 0),
            Err(ReplayError::Full)
        );
        let later = MAX_SIGNATURE_AGE_S + MAX_CLOCK_SKEW_S;
        // By then a replay of "a" would be stale anyway, so forgetting it is safe.
        assert_eq!(cache.check_and_remember("k", "c", later, later), Ok(()));
        assert_eq!(cache.len(), 1);
    }
}
