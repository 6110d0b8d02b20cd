//! Tokens already verified: services send the same token for many requests, and its
//! signature, issuer, audience and claims give the same answer every time. Only what changes
//! between requests is checked again on a hit: the time claims and the certificate binding.

use std::sync::Arc;

use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};

use crate::claims::Claims;
use crate::principal::Principal;

/// What a verified token proved, with what must be checked again on every use.
#[derive(Debug)]
pub(crate) struct Verified {
    pub(crate) principal: Principal,
    pub(crate) claims: Claims,
    pub(crate) exp: u64,
    pub(crate) nbf: Option<u64>,
    /// `cnf.x5t#S256`: the certificate the token is bound to.
    pub(crate) bound_to: Option<[u8; 32]>,
    /// The signing keys' generation when it was verified: a key set refresh may have
    /// withdrawn the key, so the token is verified again.
    generation: u64,
}

impl Verified {
    pub(crate) fn new(
        principal: Principal,
        claims: Claims,
        (exp, nbf): (u64, Option<u64>),
        bound_to: Option<[u8; 32]>,
        generation: u64,
    ) -> Self {
        Self {
            principal,
            claims,
            exp,
            nbf,
            bound_to,
            generation,
        }
    }
}

/// Verified tokens by the SHA-256 of the token, so a hit needs the very same token (a second
/// preimage is out of reach) and an entry holds no credential. Bounded: the least useful
/// entries are evicted.
pub(crate) struct TokenCache(Cache<[u8; 32], Arc<Verified>>);

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> Option<Self> {
        (capacity > 0).then(|| Self(Cache::new(capacity)))
    }

    pub(crate) fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The token's entry, unless the keys changed since it was verified.
    pub(crate) fn get(&self, key: &[u8; 32], generation: u64) -> Option<Arc<Verified>> {
        self.0.get(key).filter(|v| v.generation == generation)
    }

    pub(crate) fn insert(&self, key: [u8; 32], verified: Verified) {
        self.0.insert(key, Arc::new(verified));
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("len", &self.0.len())
            .finish()
    }
}
