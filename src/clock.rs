//! Wall-clock time, injectable so that expiry can be tested without sleeping.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `duration` in whole milliseconds, saturating (a duration past `u64::MAX` ms is forever).
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A source of the current Unix time in milliseconds.
///
/// Layers and stores use [`SystemClock`] unless a test injects its own.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> u64;
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> u64 {
        // A clock before 1970 is a broken host; treating it as the epoch fails closed
        // (every timestamp then looks far in the future and is refused).
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, millis)
    }
}

#[cfg(any(
    feature = "hmac",
    feature = "jwt",
    feature = "rate-limit",
    feature = "authz"
))]
pub(crate) use shared::SharedClock;

/// Milliseconds on a monotonic clock, from an arbitrary origin: for durations that a wall
/// clock set back must not stretch.
#[cfg(feature = "authz")]
pub(crate) fn monotonic_millis() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    millis(ORIGIN.get_or_init(std::time::Instant::now).elapsed())
}

#[cfg(any(
    feature = "hmac",
    feature = "jwt",
    feature = "rate-limit",
    feature = "authz"
))]
mod shared {
    use super::{Clock, SystemClock};

    /// A clock shared by a layer's clones, with a `Debug` that does not require one of every
    /// `Clock`.
    #[derive(Clone)]
    pub(crate) struct SharedClock(std::sync::Arc<dyn Clock>);

    impl SharedClock {
        pub(crate) fn new(clock: impl Clock) -> Self {
            Self(std::sync::Arc::new(clock))
        }

        pub(crate) fn now_millis(&self) -> u64 {
            self.0.now_millis()
        }
    }

    impl Default for SharedClock {
        fn default() -> Self {
            Self::new(SystemClock)
        }
    }

    impl std::fmt::Debug for SharedClock {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Clock")
        }
    }
}

/// A clock that stands still until a test moves it (unused by the feature sets whose tests
/// need no time).
#[cfg(test)]
#[allow(dead_code)]
#[derive(Debug, Clone, Default)]
pub(crate) struct ManualClock(std::sync::Arc<std::sync::atomic::AtomicU64>);

#[cfg(test)]
#[allow(dead_code)]
impl ManualClock {
    pub(crate) fn at(millis: u64) -> Self {
        let clock = Self::default();
        clock.set(millis);
        clock
    }

    pub(crate) fn set(&self, millis: u64) {
        self.0.store(millis, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn advance(&self, by: std::time::Duration) {
        self.0
            .fetch_add(millis(by), std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
impl Clock for ManualClock {
    fn now_millis(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}
