//! Access control lists from a source of truth, cached with a TTL: the common case
//! is answered from memory, a miss asks the source once however many requests are waiting.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::BoxError;
use crate::clock::{Clock, SharedClock, millis, monotonic_millis};
use crate::error::ConfigError;

/// The source of truth for `(principal, resource, permission)` decisions: a controller, a
/// database, a policy service.
///
/// Give it a timeout of its own: a request waits for it on a cache miss.
pub trait AclSource: Send + Sync + 'static {
    /// Whether `principal` may do `permission` on `resource`. `principal` is the caller's
    /// [qualified id](crate::Principal::qualified_id) (`jwt:<sub>` for token subjects). An error
    /// fails closed (503) for decisions that are not cached.
    fn is_allowed(
        &self,
        principal: &str,
        resource: &str,
        permission: &str,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send;
}

/// The object-safe form of [`AclSource`], so the cache is not generic.
trait DynSource: Send + Sync {
    fn is_allowed<'a>(
        &'a self,
        principal: &'a str,
        resource: &'a str,
        permission: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<bool, BoxError>> + Send + 'a>>;
}

impl<S: AclSource> DynSource for S {
    fn is_allowed<'a>(
        &'a self,
        principal: &'a str,
        resource: &'a str,
        permission: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<bool, BoxError>> + Send + 'a>> {
        Box::pin(AclSource::is_allowed(self, principal, resource, permission))
    }
}

/// Why an ACL decision could not be made.
#[derive(Debug, Clone, thiserror::Error)]
#[error("ACL source failed: {0}")]
pub struct AclError(Arc<str>);

/// An [`AclSource`] behind a bounded in-memory cache: allowed and denied answers are kept for a
/// TTL (denials for their own, usually shorter, TTL), concurrent misses for one key make a
/// single source call, and source errors are never cached.
///
/// Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct AclCache {
    inner: Arc<Inner>,
}

struct Inner {
    source: Box<dyn DynSource>,
    ttl: Duration,
    negative_ttl: Duration,
    capacity: usize,
    /// `None`: the monotonic clock.
    clock: Option<SharedClock>,
    entries: Mutex<HashMap<Box<str>, Entry>>,
}

type Flight = Arc<OnceCell<Result<bool, AclError>>>;

enum Entry {
    /// `expires` in the cache's clock's milliseconds.
    Ready {
        allowed: bool,
        expires: u64,
    },
    Loading(Flight),
}

/// Builds an [`AclCache`].
#[must_use]
pub struct AclCacheBuilder {
    source: Box<dyn DynSource>,
    ttl: Duration,
    negative_ttl: Duration,
    capacity: usize,
    clock: Option<SharedClock>,
}

impl AclCache {
    /// A cache over `source`: TTL 5 minutes, denials 30 seconds, 100 000 entries.
    pub fn builder(source: impl AclSource) -> AclCacheBuilder {
        AclCacheBuilder {
            source: Box::new(source),
            ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(30),
            capacity: 100_000,
            clock: None,
        }
    }

    /// Whether `principal` may do `permission` on `resource`: from the cache, or from the source
    /// (once, for every caller waiting on the same key).
    ///
    /// # Errors
    ///
    /// The source failed and no answer is cached.
    pub async fn is_allowed(
        &self,
        principal: &str,
        resource: &str,
        permission: &str,
    ) -> Result<bool, AclError> {
        let key = cache_key(principal, resource, permission);
        let flight = {
            let mut entries = self.inner.lock();
            match entries.get(&*key) {
                Some(Entry::Ready { allowed, expires }) if *expires > self.inner.now() => {
                    return Ok(*allowed);
                }
                Some(Entry::Loading(flight)) => flight.clone(),
                _ => {
                    self.inner.make_room(&mut entries);
                    let flight = Flight::default();
                    entries.insert(key.clone(), Entry::Loading(flight.clone()));
                    flight
                }
            }
        };
        let outcome = flight
            .get_or_init(|| async {
                self.inner
                    .source
                    .is_allowed(principal, resource, permission)
                    .await
                    .map_err(|e| AclError(e.to_string().into()))
            })
            .await
            .clone();
        self.inner.settle(key, &flight, &outcome);
        outcome
    }

    /// Forgets every cached answer (after the source of truth changed, say).
    pub fn clear(&self) {
        self.inner.lock().clear();
    }

    /// How many answers are cached or being fetched.
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn now(&self) -> u64 {
        self.clock
            .as_ref()
            .map_or_else(monotonic_millis, SharedClock::now_millis)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Entry>> {
        // A panic while holding the lock leaves a map that is still consistent.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Turns a finished flight into a cached answer, or forgets it when the source failed.
    fn settle(&self, key: Box<str>, flight: &Flight, outcome: &Result<bool, AclError>) {
        let mut entries = self.lock();
        let ours = matches!(entries.get(&*key), Some(Entry::Loading(f)) if Arc::ptr_eq(f, flight));
        if !ours {
            return;
        }
        match outcome {
            Ok(allowed) => {
                let ttl = if *allowed {
                    self.ttl
                } else {
                    self.negative_ttl
                };
                entries.insert(
                    key,
                    Entry::Ready {
                        allowed: *allowed,
                        expires: self.now().saturating_add(millis(ttl)),
                    },
                );
            }
            Err(_) => {
                entries.remove(&*key);
            }
        }
    }

    /// Keeps the map within its capacity: expired answers go first, then any answers (they
    /// will be asked again); flights in progress stay.
    fn make_room(&self, entries: &mut HashMap<Box<str>, Entry>) {
        if entries.len() < self.capacity {
            return;
        }
        let now = self.now();
        entries.retain(|_, e| !matches!(e, Entry::Ready { expires, .. } if *expires <= now));
        let target = self.capacity - self.capacity / 8;
        if entries.len() > target {
            let excess = entries.len() - target;
            let victims: Vec<Box<str>> = entries
                .iter()
                .filter(|(_, e)| matches!(e, Entry::Ready { .. }))
                .map(|(k, _)| k.clone())
                .take(excess)
                .collect();
            for key in victims {
                entries.remove(&key);
            }
        }
    }
}

/// One string for the three parts; the lengths in front keep `("a:b", "c")` and `("a", "b:c")`
/// apart whatever the parts contain.
fn cache_key(principal: &str, resource: &str, permission: &str) -> Box<str> {
    format!(
        "{}:{}:{principal}{resource}{permission}",
        principal.len(),
        resource.len()
    )
    .into_boxed_str()
}

impl AclCacheBuilder {
    /// How long an "allowed" answer is kept.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long a "denied" answer is kept.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// How many answers are kept at most.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// The clock answers expire by: a monotonic clock by default. Give one to move time in
    /// tests instead of waiting for it; it must not go back (a wall clock set back would keep
    /// cached grants past their TTL).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(SharedClock::new(clock));
        self
    }

    /// Checks the bounds.
    ///
    /// # Errors
    ///
    /// A capacity of zero.
    pub fn build(self) -> Result<AclCache, ConfigError> {
        if self.capacity == 0 {
            return Err(ConfigError::Invalid {
                what: "ACL cache capacity",
                reason: "must be at least 1".into(),
            });
        }
        Ok(AclCache {
            inner: Arc::new(Inner {
                source: self.source,
                ttl: self.ttl,
                negative_ttl: self.negative_ttl,
                capacity: self.capacity,
                clock: self.clock,
                entries: Mutex::new(HashMap::new()),
            }),
        })
    }
}

impl std::fmt::Debug for AclCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AclCache")
            .field("ttl", &self.inner.ttl)
            .field("negative_ttl", &self.inner.negative_ttl)
            .field("capacity", &self.inner.capacity)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for AclCacheBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AclCacheBuilder")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}
