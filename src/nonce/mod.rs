//! Replay protection: remember each `(caller, nonce)` pair for a while and refuse it a second time.
//!
//! [`NonceStore`] is the contract: one atomic check-and-record per request. The HMAC layer calls it
//! only **after** the signature has been verified, so unauthenticated traffic can never write to a
//! store. [`MemoryNonceStore`] is the in-process default; a store shared by many replicas (Redis)
//! implements the same trait.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower_zerotrust::nonce::{MemoryNonceStore, NonceError, NonceStore};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let store = MemoryNonceStore::new(10_000);
//! let ttl = Duration::from_secs(60);
//! assert!(store.check_and_record("gateway", "a3f9b2c1", ttl).await.is_ok());
//! assert!(matches!(
//!     store.check_and_record("gateway", "a3f9b2c1", ttl).await,
//!     Err(NonceError::Replayed)
//! ));
//! # }
//! ```

mod memory;
#[cfg(feature = "redis")]
mod redis;

use std::future::Future;
use std::time::Duration;

pub use memory::MemoryNonceStore;
#[cfg(feature = "redis")]
pub use redis::RedisNonceStore;

use crate::BoxError;

/// Why a nonce was not recorded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NonceError {
    /// The pair was already recorded and has not expired: the request is a replay.
    #[error("nonce already used")]
    Replayed,
    /// The store is at capacity. It refuses new nonces rather than forgetting live ones, since
    /// forgetting a live nonce would re-open it for replay.
    #[error("nonce store is full")]
    Full,
    /// The backend failed (for example, Redis is unreachable). Callers fail closed.
    #[error("nonce store unavailable")]
    Unavailable(#[source] BoxError),
}

/// Atomic check-and-record of `(caller, nonce)` pairs with a time to live.
///
/// Implementations must make the check and the record one atomic step: of many concurrent
/// calls with the same pair, exactly one may succeed.
pub trait NonceStore: Send + Sync + 'static {
    /// The future returned by [`check_and_record`](Self::check_and_record). `Unpin`, so the
    /// layer can poll it in place: a store that answers at once (like [`MemoryNonceStore`])
    /// costs no extra step; a networked one returns a boxed future.
    type Future: Future<Output = Result<(), NonceError>> + Send + Unpin + 'static;

    /// Records `(caller, nonce)` for `ttl` and succeeds, or fails with
    /// [`NonceError::Replayed`] if the pair is already recorded and live.
    ///
    /// The returned future must not borrow the arguments: copy what the backend needs.
    fn check_and_record(&self, caller: &str, nonce: &str, ttl: Duration) -> Self::Future;
}
