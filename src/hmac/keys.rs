//! Secrets: validated, precomputed, never printed.

use std::collections::HashMap;
use std::fmt;

use super::canonical::{HmacSha256, keyed_mac};
use crate::error::ConfigError;

/// Shortest secret accepted: 256 bits, as `secrets.token_hex(32)` makes.
pub(crate) const MIN_SECRET_LEN: usize = 32;
/// Most secrets valid at once for one scope (the shared set, or one caller).
pub(crate) const MAX_KEYS_PER_SCOPE: usize = 4;

/// One HMAC secret, held as its precomputed key schedule. Its `Debug` prints `<redacted>`.
#[derive(Clone)]
pub(crate) struct SigningKey {
    mac: HmacSha256,
}

impl SigningKey {
    /// The secret is the UTF-8 bytes of the configured string, as Python's `hmac.new(secret.encode(), ...)` uses it.
    pub(crate) fn new(what: &'static str, secret: &str) -> Result<Self, ConfigError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(ConfigError::SecretTooShort {
                what,
                min: MIN_SECRET_LEN,
                actual: secret.len(),
            });
        }
        Ok(Self {
            mac: keyed_mac(secret.as_bytes()),
        })
    }

    /// A fresh MAC with the key already absorbed.
    pub(crate) fn mac(&self) -> HmacSha256 {
        self.mac.clone()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The secrets a verifier accepts: shared ones for every caller, or per-caller ones.
///
/// Several secrets may be valid at once, so a secret is rotated by adding the new one
/// everywhere, moving signers to it, then removing the old one: no service restarts at the
/// same moment as another.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyRing {
    shared: Vec<SigningKey>,
    per_caller: HashMap<String, Vec<SigningKey>>,
}

impl KeyRing {
    pub(crate) fn add_shared(&mut self, key: SigningKey) -> Result<(), ConfigError> {
        push_bounded(&mut self.shared, key, "shared secrets")
    }

    pub(crate) fn add_for_caller(
        &mut self,
        caller: &str,
        key: SigningKey,
    ) -> Result<(), ConfigError> {
        let keys = self.per_caller.entry(caller.to_owned()).or_default();
        push_bounded(keys, key, caller)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.shared.is_empty() && self.per_caller.is_empty()
    }

    /// The secrets `caller` may sign with: its own if it has any, else the shared ones.
    pub(crate) fn keys_for(&self, caller: &str) -> &[SigningKey] {
        self.per_caller.get(caller).unwrap_or(&self.shared)
    }
}

fn push_bounded(
    keys: &mut Vec<SigningKey>,
    key: SigningKey,
    scope: &str,
) -> Result<(), ConfigError> {
    if keys.len() >= MAX_KEYS_PER_SCOPE {
        return Err(ConfigError::TooManyKeys {
            scope: scope.to_owned(),
            max: MAX_KEYS_PER_SCOPE,
        });
    }
    keys.push(key);
    Ok(())
}
