//! The in-process nonce store: sharded, bounded, expiring in insertion order.

use std::collections::hash_map::RandomState;
use std::collections::{HashSet, VecDeque};
use std::future::{Ready, ready};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::{NonceError, NonceStore};
use crate::clock::{Clock, SystemClock};

/// Default capacity: one million live nonces (26 to 53 MB when full; memory grows on demand).
const DEFAULT_CAPACITY: usize = 1_000_000;
/// Nonces per shard below which adding shards buys nothing.
const MIN_PER_SHARD: usize = 4096;
const MAX_SHARDS: usize = 64;
/// Expired entries dropped per insert in steady state: more than one, so a backlog drains.
const PURGE_BUDGET: usize = 8;

/// A bounded, in-memory [`NonceStore`] for a single process.
///
/// * **Concurrency**: pairs are spread over up to 64 independently locked shards by a keyed
///   hash, so concurrent requests rarely contend.
/// * **Bounded**: at most `capacity` live pairs (rounded up to a multiple of the shard
///   count). When a shard is full of live pairs, new pairs are refused with
///   [`NonceError::Full`] (the layer answers 503): a live nonce is never evicted, since
///   evicting it would let its request be replayed.
/// * **Expiry without scanning**: every shard keeps its pairs in a queue in insertion order,
///   and each insert drops a few expired pairs from the front. Nothing walks the whole map.
///   A pair is remembered for at least its TTL; under a backlog of expired pairs, or when a
///   pair with a shorter TTL queues behind a longer one, a little longer. Remembering longer
///   is always safe: it can only refuse a nonce that its owner reused.
/// * **Memory**: a pair is stored as a 64-bit keyed hash of `(caller, nonce)`, never as the
///   strings, so an entry costs the same however long the nonce: 8 bytes plus a control byte
///   in the hash set (10 to 21 bytes with the table's load-factor slack) and 16 bytes in the
///   expiry queue (up to 32 while it grows), **26 to 53 bytes per live nonce**. The hash key
///   is random per process, so nobody can choose colliding nonces; the chance that a fresh
///   pair collides with one of a million live ones is about 1 in 2 × 10¹³, and the only effect
///   would be one refused request. Only callers that hold a valid secret reach the store.
///
/// Clones share the same store: give one to every layer that must see the same nonces.
#[derive(Clone)]
pub struct MemoryNonceStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    per_shard_capacity: usize,
    hash_key: RandomState,
    clock: Box<dyn Clock>,
}

#[derive(Default)]
struct Shard {
    live: HashSet<u64, BuildHasherDefault<KeyHasher>>,
    /// (expiry in Unix ms, pair) in insertion order; with one TTL that is also expiry order.
    queue: VecDeque<(u64, u64)>,
}

impl MemoryNonceStore {
    /// A store that holds at most `capacity` live nonces (at least one).
    pub fn new(capacity: usize) -> Self {
        Self::with_clock(capacity, SystemClock)
    }

    /// A store that reads time from `clock` (for tests that move time by hand).
    pub fn with_clock(capacity: usize, clock: impl Clock) -> Self {
        let capacity = capacity.max(1);
        let shards = (capacity / MIN_PER_SHARD)
            .clamp(1, MAX_SHARDS)
            .next_power_of_two()
            .min(MAX_SHARDS);
        Self {
            inner: Arc::new(Inner {
                shards: (0..shards).map(|_| Mutex::default()).collect(),
                per_shard_capacity: capacity.div_ceil(shards),
                hash_key: RandomState::new(),
                clock: Box::new(clock),
            }),
        }
    }

    /// The number of pairs held, live or expired but not yet dropped.
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| lock(s).live.len()).sum()
    }

    /// Whether the store holds no pairs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most pairs the store will hold.
    pub fn capacity(&self) -> usize {
        self.inner.per_shard_capacity * self.inner.shards.len()
    }

    /// Records the pair unless it is live; synchronous, since nothing here waits.
    fn record(&self, caller: &str, nonce: &str, ttl: Duration) -> Result<(), NonceError> {
        let inner = &*self.inner;
        let key = inner.key(caller, nonce);
        // Bits 32.. pick the shard; the set uses the low bits (bucket) and the top 7 (tag),
        // so the three stay independent.
        let shard = &inner.shards[(key >> 32) as usize & (inner.shards.len() - 1)];
        let now = inner.clock.now_millis();
        let expires = now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));

        let mut shard = lock(shard);
        shard.purge(now, PURGE_BUDGET);
        if shard.live.contains(&key) {
            return Err(NonceError::Replayed);
        }
        if shard.live.len() >= inner.per_shard_capacity {
            shard.purge(now, usize::MAX);
            if shard.live.len() >= inner.per_shard_capacity {
                return Err(NonceError::Full);
            }
        }
        shard.live.insert(key);
        shard.queue.push_back((expires, key));
        Ok(())
    }
}

impl Default for MemoryNonceStore {
    /// A store with room for one million live nonces.
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl std::fmt::Debug for MemoryNonceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryNonceStore")
            .field("shards", &self.inner.shards.len())
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

impl NonceStore for MemoryNonceStore {
    type Future = Ready<Result<(), NonceError>>;

    fn check_and_record(&self, caller: &str, nonce: &str, ttl: Duration) -> Self::Future {
        ready(self.record(caller, nonce, ttl))
    }
}

impl Inner {
    fn key(&self, caller: &str, nonce: &str) -> u64 {
        let mut h = self.hash_key.build_hasher();
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        h.write_usize(caller.len());
        h.write(caller.as_bytes());
        h.write(nonce.as_bytes());
        h.finish()
    }
}

impl Shard {
    /// Drops up to `budget` expired pairs from the front of the queue. Every pair in the set
    /// has exactly one queue entry, so each pop removes exactly one pair.
    fn purge(&mut self, now: u64, budget: usize) {
        for _ in 0..budget {
            match self.queue.front() {
                Some(&(expires, key)) if expires <= now => {
                    self.queue.pop_front();
                    self.live.remove(&key);
                }
                _ => break,
            }
        }
    }
}

/// A poisoned shard only means another request panicked mid-insert; the set is still valid.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Passes a key, already a keyed hash, straight to the set instead of hashing it again.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used for `u64` keys; fold anything else rather than lose it.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[derive(Clone, Default)]
    struct ManualClock(Arc<AtomicU64>);

    impl ManualClock {
        fn advance(&self, by: Duration) {
            self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
        }
    }

    impl Clock for ManualClock {
        fn now_millis(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn second_use_is_a_replay() {
        let store = MemoryNonceStore::new(10);
        assert!(store.record("a", "n1", TTL).is_ok());
        assert!(matches!(
            store.record("a", "n1", TTL),
            Err(NonceError::Replayed)
        ));
    }

    #[test]
    fn pairs_are_per_caller_and_unambiguous() {
        let store = MemoryNonceStore::new(10);
        assert!(store.record("a", "n1", TTL).is_ok());
        assert!(store.record("b", "n1", TTL).is_ok());
        assert!(store.record("ab", "c", TTL).is_ok());
        assert!(store.record("a", "bc", TTL).is_ok());
    }

    #[test]
    fn nonce_is_remembered_for_exactly_its_ttl() {
        let clock = ManualClock::default();
        let store = MemoryNonceStore::with_clock(10, clock.clone());
        store.record("a", "n", TTL).unwrap();
        clock.advance(TTL - Duration::from_millis(1));
        assert!(matches!(
            store.record("a", "n", TTL),
            Err(NonceError::Replayed)
        ));
        clock.advance(Duration::from_millis(1));
        assert!(store.record("a", "n", TTL).is_ok());
        // Recorded again: a replay once more.
        assert!(matches!(
            store.record("a", "n", TTL),
            Err(NonceError::Replayed)
        ));
    }

    #[test]
    fn full_store_refuses_and_never_evicts_live_nonces() {
        let clock = ManualClock::default();
        let store = MemoryNonceStore::with_clock(3, clock.clone());
        for n in ["1", "2", "3"] {
            store.record("a", n, TTL).unwrap();
        }
        assert!(matches!(store.record("a", "4", TTL), Err(NonceError::Full)));
        // Nothing live was forgotten.
        for n in ["1", "2", "3"] {
            assert!(matches!(
                store.record("a", n, TTL),
                Err(NonceError::Replayed)
            ));
        }
        // Once they expire there is room again.
        clock.advance(TTL);
        assert!(store.record("a", "4", TTL).is_ok());
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn expired_pairs_are_purged_as_new_ones_arrive() {
        let clock = ManualClock::default();
        let store = MemoryNonceStore::with_clock(100_000, clock.clone());
        for i in 0..1000 {
            store.record("a", &i.to_string(), TTL).unwrap();
        }
        clock.advance(TTL);
        for i in 1000..2000 {
            store.record("a", &i.to_string(), TTL).unwrap();
        }
        // Each insert drops up to PURGE_BUDGET expired pairs, so the backlog is gone.
        assert_eq!(store.len(), 1000);
    }

    #[test]
    fn capacity_is_split_over_shards() {
        let store = MemoryNonceStore::new(1_000_000);
        assert_eq!(store.inner.shards.len(), 64);
        assert!(store.capacity() >= 1_000_000);
        assert_eq!(MemoryNonceStore::new(3).capacity(), 3);
    }
}
