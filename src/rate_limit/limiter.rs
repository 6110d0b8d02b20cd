//! Keyed GCRA buckets (governor) with a bound on how many keys they hold.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock as _, QuantaClock, QuantaInstant, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::{Quota, RateLimiter};

use crate::clock::SharedClock;
use crate::reject::{Origin, Rejection, RejectionKind};

/// A quota: `average` requests per second sustained, up to `burst` at once (Traefik's
/// `rateLimit: {average, burst}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateQuota {
    /// Requests per second, sustained.
    pub average: u32,
    /// Requests that may arrive at once.
    pub burst: u32,
}

impl RateQuota {
    /// `average` per second, `burst` at once.
    pub const fn new(average: u32, burst: u32) -> Self {
        Self { average, burst }
    }

    pub(crate) fn governor(self) -> Option<Quota> {
        let average = NonZeroU32::new(self.average)?;
        let burst = NonZeroU32::new(self.burst)?;
        Some(Quota::per_second(average).allow_burst(burst))
    }
}

/// A decision the shared store is still computing.
pub(crate) type PendingDecision =
    std::pin::Pin<Box<dyn std::future::Future<Output = Decision> + Send>>;

/// What one check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Allow {
        limit: u32,
        remaining: u32,
    },
    Deny {
        limit: u32,
        retry_after: Duration,
    },
    /// The shared store could not answer, and the limit fails closed.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Unavailable,
    /// The shared store could not answer, and the limit fails open: allowed, uncounted.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Unchecked,
}

impl Decision {
    /// The refusal, when this is one.
    pub(crate) fn rejection(self) -> Option<Rejection> {
        match self {
            Self::Allow { .. } | Self::Unchecked => None,
            Self::Deny { retry_after, .. } => Some(
                Rejection::by(
                    Origin::RateLimit,
                    RejectionKind::RateLimited,
                    "rate_limit.exceeded",
                    "Too many requests",
                )
                .with_retry_after(retry_after),
            ),
            Self::Unavailable => Some(Rejection::by(
                Origin::RateLimit,
                RejectionKind::Unavailable,
                "rate_limit.store_unavailable",
                "Rate limiting unavailable",
            )),
        }
    }

    /// `RateLimit-Limit` and `RateLimit-Remaining`, when this decision has them.
    pub(crate) fn quota_headers(self) -> Option<(u32, u32)> {
        match self {
            Self::Allow { limit, remaining } => Some((limit, remaining)),
            Self::Deny { limit, .. } => Some((limit, 0)),
            Self::Unavailable | Self::Unchecked => None,
        }
    }
}

type Keyed<K> = RateLimiter<K, Table<K>, LimiterClock, StateInformationMiddleware>;

/// How often (in checks) the bucket looks at its size.
const MAINTAIN_EVERY: u64 = 1024;

/// governor's keyed state, shared with the bucket so that it can be emptied.
struct Table<K: Hash + Eq + Clone>(Arc<DashMapStateStore<K>>);

impl<K: Hash + Eq + Clone> StateStore for Table<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for Table<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        self.0.retain_recent(drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&*self.0);
    }

    fn len(&self) -> usize {
        ShrinkableKeyedStateStore::len(&*self.0)
    }

    fn is_empty(&self) -> bool {
        ShrinkableKeyedStateStore::is_empty(&*self.0)
    }
}

/// The time quotas are measured in: a monotonic clock, or one given to the builder (so that
/// tests and simulations move time instead of waiting for it).
#[derive(Clone)]
pub(crate) enum LimiterClock {
    Monotonic {
        clock: QuantaClock,
        origin: QuantaInstant,
    },
    Given(SharedClock),
}

impl Default for LimiterClock {
    fn default() -> Self {
        let clock = QuantaClock::default();
        let origin = clock.now();
        Self::Monotonic { clock, origin }
    }
}

impl governor::clock::Clock for LimiterClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        match self {
            Self::Monotonic { clock, origin } => clock.now().duration_since(*origin),
            Self::Given(clock) => Nanos::new(clock.now_millis().saturating_mul(1_000_000)),
        }
    }
}

impl std::fmt::Debug for LimiterClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Monotonic { .. } => "Monotonic",
            Self::Given(_) => "Given",
        })
    }
}

pub(crate) struct Bucket<K: Hash + Eq + Clone> {
    limiter: Keyed<K>,
    clock: LimiterClock,
    quota: RateQuota,
    /// Which quota this is (`default`, `principal`, `role:<name>`, `anonymous`): the shared
    /// store keeps each quota's keys apart by it.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    label: Box<str>,
    max_keys: usize,
    checks: AtomicU64,
    table: Arc<DashMapStateStore<K>>,
}

impl<K: Hash + Eq + Clone> Bucket<K> {
    pub(crate) fn new(
        quota: RateQuota,
        label: &str,
        max_keys: usize,
        clock: LimiterClock,
    ) -> Option<Self> {
        let table = Arc::new(DashMapStateStore::default());
        let limiter = RateLimiter::<K, _, _, governor::middleware::NoOpMiddleware<_>>::new(
            quota.governor()?,
            Table(table.clone()),
            clock.clone(),
        )
        .with_middleware::<StateInformationMiddleware>();
        Some(Self {
            limiter,
            clock,
            quota,
            label: label.into(),
            max_keys,
            checks: AtomicU64::new(0),
            table,
        })
    }

    pub(crate) fn check(&self, key: &K) -> Decision {
        let n = self.checks.fetch_add(1, Ordering::Relaxed);
        if n.is_multiple_of(MAINTAIN_EVERY) {
            self.maintain();
        }
        match self.limiter.check_key(key) {
            Ok(state) => Decision::Allow {
                limit: self.quota.burst,
                remaining: state.remaining_burst_capacity(),
            },
            Err(not_until) => Decision::Deny {
                limit: self.quota.burst,
                retry_after: not_until.wait_time_from(self.clock.now()),
            },
        }
    }

    #[cfg(feature = "redis")]
    pub(crate) fn quota(&self) -> RateQuota {
        self.quota
    }

    #[cfg(feature = "redis")]
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// Drops keys whose state is back to fresh (idle keys). If the table is still over its
    /// bound, every key is busy: a flood of distinct keys. The table then starts afresh, so
    /// that memory stays bounded and nobody is refused for want of room: each key's next
    /// request starts a new burst.
    fn maintain(&self) {
        if self.limiter.len() <= self.max_keys {
            return;
        }
        self.limiter.retain_recent();
        if self.limiter.len() > self.max_keys {
            tracing::warn!(target: "tower_zerotrust::rate_limit", quota = %self.label, keys = self.limiter.len(), "more busy clients than the key table holds; starting it afresh");
            self.table.clear();
        }
        self.limiter.shrink_to_fit();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn burst_then_refusal_then_recovery() {
        let clock = ManualClock::at(1_000);
        let bucket: Bucket<u32> =
            Bucket::new(RateQuota::new(100, 3), "default", 10, given(&clock)).unwrap();
        for remaining in [2, 1, 0] {
            assert_eq!(
                bucket.check(&1),
                Decision::Allow {
                    limit: 3,
                    remaining
                }
            );
        }
        // 100 per second: the next one is due in 10 ms.
        assert_eq!(
            bucket.check(&1),
            Decision::Deny {
                limit: 3,
                retry_after: Duration::from_millis(10)
            }
        );
        assert!(
            matches!(bucket.check(&2), Decision::Allow { .. }),
            "other keys are untouched"
        );
        clock.advance(Duration::from_millis(9));
        assert!(matches!(bucket.check(&1), Decision::Deny { .. }));
        clock.advance(Duration::from_millis(1));
        assert_eq!(
            bucket.check(&1),
            Decision::Allow {
                limit: 3,
                remaining: 0
            }
        );
        assert!(RateQuota::new(0, 1).governor().is_none());
        assert!(RateQuota::new(1, 0).governor().is_none());
    }

    fn given(clock: &ManualClock) -> LimiterClock {
        LimiterClock::Given(SharedClock::new(clock.clone()))
    }

    /// A flood of distinct keys: memory stays bounded. Keys idle long enough to be fresh again
    /// (here after 1 ms) are purged; while nothing can be purged the bucket refuses new work.
    #[test]
    fn a_million_distinct_keys_stay_within_the_bound() {
        let max_keys = 10_000;
        let clock = ManualClock::at(1_000);
        let bucket: Bucket<u64> =
            Bucket::new(RateQuota::new(1000, 1), "default", max_keys, given(&clock)).unwrap();
        let mut allowed = 0;
        for key in 0..1_000_000u64 {
            if matches!(bucket.check(&key), Decision::Allow { .. }) {
                allowed += 1;
            }
            // A thousand new keys a millisecond: each is idle again a millisecond later.
            if key % 1000 == 999 {
                clock.advance(Duration::from_millis(1));
            }
            if key % 4096 == 0 {
                assert!(
                    bucket.len() <= max_keys + 2 * MAINTAIN_EVERY as usize,
                    "{}",
                    bucket.len()
                );
            }
        }
        assert!(bucket.len() <= max_keys + 2 * MAINTAIN_EVERY as usize);
        assert_eq!(allowed, 1_000_000, "each key's first request is allowed");

        // Keys that stay busy (1 per second, and time stands still) cannot be purged as idle:
        // past the bound the table starts afresh, so memory stays bounded and nobody is
        // refused for want of room.
        let slow: Bucket<u64> =
            Bucket::new(RateQuota::new(1, 1), "default", 1000, given(&clock)).unwrap();
        let refused = (0..20_000u64)
            .filter(|key| !matches!(slow.check(key), Decision::Allow { .. }))
            .count();
        assert_eq!(refused, 0);
        assert!(
            slow.len() <= 1000 + MAINTAIN_EVERY as usize,
            "{}",
            slow.len()
        );
        // A key that was busy before the table started afresh is limited again at once.
        assert!(matches!(slow.check(&19_999), Decision::Deny { .. }));
    }
}
