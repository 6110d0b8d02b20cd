//! Permissions such as `models:read`, and grants that may use wildcards (`models:*`, `*`).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use crate::error::ConfigError;

/// FNV-1a: the policy's tables are built from configuration and only looked up per request,
/// so nobody can flood them with colliding keys; a fast hash for short names is what they need.
pub(crate) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A lookup-only table keyed by names.
pub(crate) type NameMap<V> = HashMap<Box<str>, V, BuildHasherDefault<Fnv>>;

/// The permissions one role grants, compiled for lookup: exact names in a hash set, `prefix:*`
/// grants as prefixes, and `*` as everything.
#[derive(Debug, Clone, Default)]
pub(crate) struct Grants {
    everything: bool,
    exact: HashSet<Box<str>, BuildHasherDefault<Fnv>>,
    /// `models:*` is kept as `models:`.
    prefixes: Vec<Box<str>>,
}

impl Grants {
    pub(crate) fn new<I, P>(role: &str, permissions: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        let mut grants = Self::default();
        for permission in permissions {
            let permission = permission.as_ref();
            check_grant(role, permission)?;
            if permission == "*" {
                grants.everything = true;
            } else if let Some(prefix) = permission.strip_suffix('*') {
                grants.prefixes.push(prefix.into());
            } else {
                grants.exact.insert(permission.into());
            }
        }
        Ok(grants)
    }

    /// Whether these grants cover `permission` (a plain name, never a wildcard).
    pub(crate) fn allows(&self, permission: &str) -> bool {
        self.everything
            || self.exact.contains(permission)
            || self.prefixes.iter().any(|p| permission.starts_with(&**p))
    }
}

/// A grant is a name (`models:read`), a family (`models:*`) or everything (`*`); a `*`
/// anywhere else would be taken literally by some readers and as a wildcard by others.
fn check_grant(role: &str, permission: &str) -> Result<(), ConfigError> {
    let wildcard_ok = match permission.find('*') {
        None => true,
        Some(at) => {
            at + 1 == permission.len() && (permission == "*" || permission[..at].ends_with(':'))
        }
    };
    if !wildcard_ok {
        return Err(invalid(format!(
            "role {role:?}: permission {permission:?} may only end in `:*`, or be `*`"
        )));
    }
    check_name("permission", permission)
        .map_err(|reason| invalid(format!("role {role:?}: {reason}")))
}

/// A permission that a route or a handler requires: a plain name, no wildcard.
pub(crate) fn check_required(permission: &str) -> Result<(), ConfigError> {
    if permission.contains('*') {
        return Err(invalid(format!(
            "required permission {permission:?} must not contain `*`"
        )));
    }
    check_name("permission", permission).map_err(invalid)
}

/// Names are 1–128 visible ASCII characters.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{what} {name:?} must be 1-128 visible ASCII characters"
        ));
    }
    Ok(())
}

fn invalid(reason: String) -> ConfigError {
    ConfigError::Invalid {
        what: "authorization policy",
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_family_and_everything() {
        let grants = Grants::new("r", ["models:read", "training:*"]).unwrap();
        assert!(grants.allows("models:read"));
        assert!(!grants.allows("models:write"));
        assert!(!grants.allows("models:reader"));
        assert!(grants.allows("training:start"));
        assert!(!grants.allows("trainingx:start"));
        assert!(
            Grants::new("admin", ["*"])
                .unwrap()
                .allows("anything:at-all")
        );
        assert!(!Grants::default().allows("models:read"));
    }

    #[test]
    fn malformed_grants_are_refused() {
        for bad in [
            "",
            "mod*ls:read",
            "models*",
            "*:read",
            "models:**",
            "has space",
            "**",
        ] {
            assert!(Grants::new("r", [bad]).is_err(), "{bad:?}");
        }
        assert!(check_required("models:*").is_err());
        assert!(check_required("models:read").is_ok());
    }
}
