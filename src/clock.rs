//! Wall-clock time, injectable so that expiry can be tested without sleeping.

use std::time::{SystemTime, UNIX_EPOCH};

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
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(any(feature = "hmac", feature = "jwt"))]
pub(crate) use shared::SharedClock;

#[cfg(any(feature = "hmac", feature = "jwt"))]
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
