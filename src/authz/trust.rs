//! The service trust matrix: who may call whom.

use std::collections::{BTreeMap, BTreeSet};

use super::permission::check_name;
use crate::error::ConfigError;

/// Which callers each service accepts. Callers not listed for a target, including every
/// external or unknown caller, are refused.
///
/// The matrix describes the whole system; each service takes its own row with
/// [`callers_of`](Self::callers_of) and gives it to its
/// [`AuthorizeConfigBuilder::allow_callers`](super::AuthorizeConfigBuilder::allow_callers)
/// (or to the HMAC layer's `allow_callers`).
///
/// ```
/// use tower_zerotrust::authz::TrustMatrix;
///
/// # fn main() -> Result<(), tower_zerotrust::ConfigError> {
/// // A "who can call whom" table, row by row.
/// let matrix = TrustMatrix::builder()
///     .caller("gateway", ["vault", "memory-service", "rag-service"])
///     .caller("memory-service", ["rag-service"])
///     .caller("rag-service", ["memory-service"])
///     .caller("heartbeat", ["gateway", "memory-service", "rag-service"])
///     .build()?;
/// assert!(matrix.may_call("gateway", "vault"));
/// assert!(!matrix.may_call("heartbeat", "vault"));
/// assert_eq!(matrix.callers_of("rag-service"), ["gateway", "heartbeat", "memory-service"]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustMatrix {
    /// target → callers it accepts.
    callers: BTreeMap<String, BTreeSet<String>>,
}

/// Builds a [`TrustMatrix`] by caller ("can call") or by target ("accepts").
#[derive(Debug, Default)]
#[must_use]
pub struct TrustMatrixBuilder {
    pairs: Vec<(String, String)>,
}

impl TrustMatrix {
    /// An empty builder: nobody may call anybody.
    pub fn builder() -> TrustMatrixBuilder {
        TrustMatrixBuilder::default()
    }

    /// Whether `caller` may call `target`.
    pub fn may_call(&self, caller: &str, target: &str) -> bool {
        self.callers
            .get(target)
            .is_some_and(|callers| callers.contains(caller))
    }

    /// The callers `target` accepts, sorted: its `ALLOWED_CALLERS`.
    pub fn callers_of(&self, target: &str) -> Vec<String> {
        self.callers
            .get(target)
            .map(|callers| callers.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl TrustMatrixBuilder {
    /// `caller` may call each of `targets` (a row of a "who can call whom" table).
    pub fn caller<I, T>(mut self, caller: &str, targets: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        for target in targets {
            self.pairs.push((caller.to_owned(), target.into()));
        }
        self
    }

    /// `target` accepts each of `callers` (a service's `ALLOWED_CALLERS`).
    pub fn target<I, C>(mut self, target: &str, callers: I) -> Self
    where
        I: IntoIterator<Item = C>,
        C: Into<String>,
    {
        for caller in callers {
            self.pairs.push((caller.into(), target.to_owned()));
        }
        self
    }

    /// Checks the names.
    ///
    /// # Errors
    ///
    /// An empty or malformed service name.
    pub fn build(self) -> Result<TrustMatrix, ConfigError> {
        let mut callers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (caller, target) in self.pairs {
            for name in [&caller, &target] {
                check_name("service", name).map_err(|reason| ConfigError::Invalid {
                    what: "trust matrix",
                    reason,
                })?;
            }
            callers.entry(target).or_default().insert(caller);
        }
        Ok(TrustMatrix { callers })
    }
}
