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
