//! Keyed GCRA buckets (governor) with a bound on how many keys they hold.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::reject::{Rejection, RejectionKind};

/// A quota: `average` requests per second sustained, up to `burst` at once (seed 004's Traefik
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
    /// The bucket holds as many keys as it may; nobody new can be tracked until idle keys are
    /// purged.
    Saturated,
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
                Rejection::new(
                    RejectionKind::RateLimited,
                    "rate_limit.exceeded",
                    "Too many requests",
                )
                .with_retry_after(retry_after),
            ),
            Self::Saturated => Some(
                Rejection::new(
                    RejectionKind::RateLimited,
                    "rate_limit.saturated",
                    "Too many clients",
                )
                .with_retry_after(Duration::from_secs(1)),
            ),
            Self::Unavailable => Some(Rejection::new(
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
            Self::Saturated | Self::Unavailable | Self::Unchecked => None,
        }
    }
}

type Keyed<K> = RateLimiter<K, DashMapStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// How often (in checks) the bucket looks at its size.
const MAINTAIN_EVERY: u64 = 1024;
/// How often (in time) a saturated bucket tries to purge.
const SATURATED_RETRY: Duration = Duration::from_millis(100);

pub(crate) struct Bucket<K: Hash + Eq + Clone> {
    limiter: Keyed<K>,
    clock: DefaultClock,
    quota: RateQuota,
    /// Which quota this is (`default`, `principal`, `role:<name>`, `anonymous`): the shared
    /// store keeps each quota's keys apart by it.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    label: Box<str>,
    max_keys: usize,
    checks: AtomicU64,
    saturated: AtomicBool,
    last_purge: Mutex<Instant>,
}

impl<K: Hash + Eq + Clone> Bucket<K> {
    pub(crate) fn new(quota: RateQuota, label: &str, max_keys: usize) -> Option<Self> {
        let clock = DefaultClock::default();
        let limiter = RateLimiter::<K, _, _, governor::middleware::NoOpMiddleware<_>>::new(
            quota.governor()?,
            DashMapStateStore::default(),
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
            saturated: AtomicBool::new(false),
            last_purge: Mutex::new(Instant::now()),
        })
    }

    pub(crate) fn check(&self, key: &K) -> Decision {
        let n = self.checks.fetch_add(1, Ordering::Relaxed);
        if n.is_multiple_of(MAINTAIN_EVERY) {
            self.maintain();
        }
        if self.saturated.load(Ordering::Relaxed) {
            self.maintain_when_saturated();
            if self.saturated.load(Ordering::Relaxed) {
                return Decision::Saturated;
            }
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

    /// Drops keys whose state is back to fresh; marks the bucket saturated if it is still over
    /// its bound.
    fn maintain(&self) {
        if self.limiter.len() > self.max_keys {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
            *self.last_purge.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        }
        self.saturated
            .store(self.limiter.len() > self.max_keys, Ordering::Relaxed);
    }

    fn maintain_when_saturated(&self) {
        let due = {
            let last = self.last_purge.lock().unwrap_or_else(|e| e.into_inner());
            last.elapsed() >= SATURATED_RETRY
        };
        if due {
            self.maintain();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusal_then_recovery() {
        let bucket: Bucket<u32> = Bucket::new(RateQuota::new(100, 3), "default", 10).unwrap();
        for remaining in [2, 1, 0] {
            assert_eq!(
                bucket.check(&1),
                Decision::Allow {
                    limit: 3,
                    remaining
                }
            );
        }
        let Decision::Deny { retry_after, .. } = bucket.check(&1) else {
            panic!("the fourth request in a burst of three passed");
        };
        assert!(retry_after <= Duration::from_millis(10), "{retry_after:?}");
        assert!(
            matches!(bucket.check(&2), Decision::Allow { .. }),
            "other keys are untouched"
        );
        std::thread::sleep(Duration::from_millis(15));
        assert!(matches!(bucket.check(&1), Decision::Allow { .. }));
        assert!(RateQuota::new(0, 1).governor().is_none());
        assert!(RateQuota::new(1, 0).governor().is_none());
    }

    /// A flood of distinct keys: memory stays bounded. Keys idle long enough to be fresh again
    /// (here after 1 ms) are purged; while nothing can be purged the bucket refuses new work.
    #[test]
    fn a_million_distinct_keys_stay_within_the_bound() {
        let max_keys = 10_000;
        let bucket: Bucket<u64> =
            Bucket::new(RateQuota::new(1000, 1), "default", max_keys).unwrap();
        let mut allowed = 0;
        for key in 0..1_000_000u64 {
            if matches!(bucket.check(&key), Decision::Allow { .. }) {
                allowed += 1;
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
        assert!(allowed > 0);

        // Keys that stay "recent" (1 per second) cannot be purged: the bucket saturates and
        // refuses instead of growing.
        let slow: Bucket<u64> = Bucket::new(RateQuota::new(1, 1), "default", 1000).unwrap();
        let saturated = (0..20_000u64)
            .filter(|key| slow.check(key) == Decision::Saturated)
            .count();
        assert!(saturated > 15_000, "{saturated}");
        assert!(
            slow.len() <= 1000 + MAINTAIN_EVERY as usize,
            "{}",
            slow.len()
        );
    }
}
