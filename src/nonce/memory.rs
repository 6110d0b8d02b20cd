//! The in-process nonce store: sharded, bounded, forgetting whole generations at once.

use std::collections::hash_map::RandomState;
use std::future::{Ready, ready};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::{NonceError, NonceStore};
use crate::clock::{Clock, SystemClock};

/// Default capacity: one million nonces (16 to 32 MB when full; memory grows on demand).
const DEFAULT_CAPACITY: usize = 1_000_000;
/// Nonces per shard below which adding shards buys nothing.
const MIN_PER_SHARD: usize = 4096;
const MAX_SHARDS: usize = 64;
/// Slots a generation starts with; it doubles as it fills.
const MIN_SLOTS: usize = 64;

/// A bounded, in-memory [`NonceStore`] for a single process.
///
/// * **Concurrency**: pairs are spread over up to 64 independently locked shards by a keyed
///   hash, so concurrent requests rarely contend.
/// * **Expiry without scanning**: each shard keeps two generations, the current one and the
///   previous one. New pairs go into the current generation; once it is one TTL old it becomes
///   the previous one and the old previous generation is dropped whole, in one deallocation.
///   Nothing is ever scanned or removed entry by entry. A pair is therefore remembered for at
///   least its TTL and at most twice its TTL; remembering longer is always safe, since it can
///   only refuse a nonce that its owner reused.
/// * **Bounded**: at most `capacity` pairs are held, counting both generations. The bound
///   applies per shard (`capacity` divided by the shard count, rounded up), so with uneven
///   luck a shard can fill slightly before the whole store does; so a burst of more than `capacity` requests within two
///   TTLs is refused with [`NonceError::Full`] (the layer answers 503) rather than evicting
///   anything: evicting a live nonce would let its request be replayed. Size it for twice your
///   peak requests per TTL.
/// * **Memory**: a pair is stored as a 64-bit keyed hash of `(caller, nonce)`, never as the
///   strings, in a flat open-addressing table kept at most half full: **16 to 32 bytes per
///   pair** however long the nonce, and each check touches about one cache line per
///   generation. The hash key is random per process, so nobody can choose colliding nonces;
///   the chance that a fresh pair collides with one of a million held ones is about 1 in
///   2 × 10¹³, and the only effect would be one refused request. Only callers that hold a
///   valid secret reach the store.
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
    current: Generation,
    previous: Generation,
    /// When `current` started, in Unix ms.
    started: u64,
    /// The longest TTL seen: how long a generation stays current. It only grows, so no pair
    /// is ever forgotten before its own TTL.
    span: u64,
}

impl MemoryNonceStore {
    /// A store that holds at most `capacity` nonces (at least one).
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

    /// The number of pairs held (seen within the last one to two TTLs).
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Whether the store holds no pairs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most pairs the store will hold.
    pub fn capacity(&self) -> usize {
        self.inner.per_shard_capacity * self.inner.shards.len()
    }

    /// Records the pair unless it is held; synchronous, since nothing here waits.
    fn record(&self, caller: &str, nonce: &str, ttl: Duration) -> Result<(), NonceError> {
        let inner = &*self.inner;
        let key = inner.key(caller, nonce);
        // Bits 32.. pick the shard; the table indexes by the low bits, so they stay independent.
        let shard = &inner.shards[(key >> 32) as usize & (inner.shards.len() - 1)];
        let now = inner.clock.now_millis();
        let ttl = crate::clock::millis(ttl);

        let mut shard = lock(shard);
        shard.rotate(now, ttl);
        if shard.current.contains(key) || shard.previous.contains(key) {
            return Err(NonceError::Replayed);
        }
        if shard.len() >= inner.per_shard_capacity {
            return Err(NonceError::Full);
        }
        shard.current.insert(key);
        Ok(())
    }
}

impl Default for MemoryNonceStore {
    /// A store with room for one million nonces.
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
    /// A keyed 64-bit hash of the pair; never 0, which marks an empty slot.
    fn key(&self, caller: &str, nonce: &str) -> u64 {
        let mut h = self.hash_key.build_hasher();
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        h.write_usize(caller.len());
        h.write(caller.as_bytes());
        h.write(nonce.as_bytes());
        h.finish().max(1)
    }
}

impl Shard {
    fn len(&self) -> usize {
        self.current.len + self.previous.len
    }

    /// Retires generations older than the span: every pair in a dropped generation was
    /// recorded at least one span ago.
    fn rotate(&mut self, now: u64, ttl: u64) {
        self.span = self.span.max(ttl);
        let age = now.saturating_sub(self.started);
        if age < self.span {
            return;
        }
        if age < self.span.saturating_mul(2) {
            // Size the next generation for as many pairs as the last one took, so steady
            // traffic never regrows it and a past burst does not keep its size. It starts
            // where the last one ended, not now, so a quiet spell cannot stretch a generation
            // past one span.
            let next = Generation::with_slots((self.current.len * 2).next_power_of_two());
            self.previous = std::mem::replace(&mut self.current, next);
            self.started += self.span;
        } else {
            // Idle for two spans: everything held has expired.
            self.previous = Generation::default();
            self.current = Generation::default();
            self.started = now;
        }
    }
}

/// A set of nonzero `u64` keys: open addressing with linear probing, at most half full, never
/// deleting (a generation is dropped whole), so probes are short and need no tombstones.
#[derive(Default)]
struct Generation {
    slots: Box<[u64]>,
    len: usize,
}

impl Generation {
    fn with_slots(slots: usize) -> Self {
        Self {
            slots: vec![0; slots.max(MIN_SLOTS)].into_boxed_slice(),
            len: 0,
        }
    }

    fn contains(&self, key: u64) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let mask = self.slots.len() - 1;
        let mut i = key as usize & mask;
        loop {
            match self.slots[i] {
                0 => return false,
                k if k == key => return true,
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Inserts a key known to be absent.
    fn insert(&mut self, key: u64) {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = key as usize & mask;
        while self.slots[i] != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = key;
        self.len += 1;
    }

    fn grow(&mut self) {
        let mut bigger = Generation::with_slots(self.slots.len() * 2);
        for &key in self.slots.iter().filter(|&&k| k != 0) {
            bigger.insert(key);
        }
        *self = bigger;
    }
}

/// A poisoned shard only means another request panicked mid-insert; the tables are still valid.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

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

    fn replayed(store: &MemoryNonceStore, nonce: &str) -> bool {
        matches!(store.record("a", nonce, TTL), Err(NonceError::Replayed))
    }

    #[test]
    fn nonce_is_remembered_at_least_its_ttl_and_at_most_twice_that() {
        let clock = ManualClock::default();
        let store = MemoryNonceStore::with_clock(10, clock.clone());
        // Recorded at the very start of a generation: kept for two TTLs.
        store.record("a", "early", TTL).unwrap();
        clock.advance(TTL - Duration::from_millis(1));
        // Recorded at the very end of it: kept for just over one TTL.
        store.record("a", "late", TTL).unwrap();
        assert!(replayed(&store, "early"));
        clock.advance(TTL);
        assert!(replayed(&store, "early"));
        assert!(replayed(&store, "late"));
        clock.advance(Duration::from_millis(1));
        // Both generations are gone two TTLs after the first began.
        assert!(store.record("a", "early", TTL).is_ok());
        assert!(store.record("a", "late", TTL).is_ok());
        assert!(replayed(&store, "late"));
    }

    #[test]
    fn a_longer_ttl_is_honoured_even_after_shorter_ones() {
        let clock = ManualClock::default();
        let store = MemoryNonceStore::with_clock(10, clock.clone());
        store.record("a", "short", Duration::from_secs(1)).unwrap();
        store.record("a", "long", TTL).unwrap();
        clock.advance(TTL - Duration::from_millis(1));
        assert!(replayed(&store, "long"));
    }

    #[test]
    fn an_idle_store_forgets_everything_after_two_ttls() {
        let clock = ManualClock::default();
        let store = MemoryNonceStore::with_clock(10, clock.clone());
        store.record("a", "n", TTL).unwrap();
        clock.advance(TTL * 5);
        assert!(store.record("a", "other", TTL).is_ok());
        assert_eq!(store.len(), 1);
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
        // Still full one TTL later: the previous generation counts until it is dropped.
        clock.advance(TTL);
        assert!(matches!(store.record("a", "4", TTL), Err(NonceError::Full)));
        // Two TTLs later there is room again.
        clock.advance(TTL);
        assert!(store.record("a", "4", TTL).is_ok());
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn generations_grow_and_keep_every_key() {
        let mut generation = Generation::default();
        for key in 1..=10_000u64 {
            assert!(!generation.contains(key * 7919));
            generation.insert(key * 7919);
        }
        assert_eq!(generation.len, 10_000);
        assert!(generation.slots.len() >= 20_000);
        assert!((1..=10_000u64).all(|key| generation.contains(key * 7919)));
        assert!(!generation.contains(3));
    }

    #[test]
    fn steady_traffic_keeps_memory_flat() {
        let clock = ManualClock::default();
        let store = MemoryNonceStore::with_clock(100_000, clock.clone());
        let mut n = 0;
        for _ in 0..10 {
            for _ in 0..1000 {
                n += 1;
                store.record("a", &n.to_string(), TTL).unwrap();
            }
            clock.advance(TTL);
        }
        // One generation of 1000 and the one before it, however long the traffic runs.
        assert!(store.len() <= 2000, "{}", store.len());
    }

    #[test]
    fn concurrent_records_of_one_pair_succeed_exactly_once() {
        let store = MemoryNonceStore::new(1_000_000);
        for round in 0..200 {
            let nonce = format!("n{round}");
            let wins: usize = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..4)
                    .map(|_| scope.spawn(|| usize::from(store.record("a", &nonce, TTL).is_ok())))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).sum()
            });
            assert_eq!(wins, 1, "round {round}");
        }
    }

    #[test]
    fn capacity_is_split_over_shards() {
        let store = MemoryNonceStore::new(1_000_000);
        assert_eq!(store.inner.shards.len(), 64);
        assert!(store.capacity() >= 1_000_000);
        assert_eq!(MemoryNonceStore::new(3).capacity(), 3);
    }
}
