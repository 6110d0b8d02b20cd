//! Roles → permissions (YAML, or code), and principal → roles assignments.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Deserialize;

use super::permission::{Grants, NameMap, check_name};
use crate::error::ConfigError;
use crate::principal::Principal;

/// Who may do what: roles and the permissions they grant, and roles assigned to principals by
/// name (for callers whose credentials carry no roles, such as HMAC services or certificates).
///
/// A principal's roles are the ones its credentials carry ([`Principal::roles`]) plus the ones
/// assigned to its id here. Everything not granted is denied.
///
/// ```
/// use tower_zerotrust::authz::Policy;
/// use tower_zerotrust::{AuthMethod, Principal};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let policy = Policy::from_yaml(r#"
/// roles:
///   viewer:
///     description: "Read-only access"
///     permissions: ["models:read", "metrics:read"]
///   admin:
///     permissions: ["*"]
/// "#)?;
/// let alice = Principal::new("alice", AuthMethod::Jwt).with_roles(["viewer"]);
/// assert!(policy.allows(&alice, "models:read"));
/// assert!(!policy.allows(&alice, "models:delete"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Policy {
    roles: NameMap<Grants>,
    assignments: NameMap<Box<[Box<str>]>>,
}

/// The roles format, plus an optional `principals:` map of id → roles.
#[derive(Deserialize)]
struct PolicyFile {
    roles: BTreeMap<String, RoleEntry>,
    #[serde(default)]
    principals: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleEntry {
    #[serde(default)]
    #[allow(dead_code)] // documentation for people; read so that typos of it are refused
    description: Option<String>,
    permissions: Vec<String>,
}

impl Policy {
    /// The YAML of [`example_roles`](Self::example_roles): a starting point for a roles file.
    pub const EXAMPLE_ROLES_YAML: &'static str = EXAMPLE_ROLES;

    /// An empty policy builder.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder::default()
    }

    /// Parses the roles format:
    ///
    /// ```yaml
    /// roles:
    ///   developer:
    ///     description: "Model development access"
    ///     permissions: ["models:read", "models:write", "training:*"]
    /// principals:            # optional: roles for callers whose credentials carry none
    ///   model_registry: [developer]   # a service (HMAC caller or certificate identity)
    ///   "jwt:alice": [developer]      # a token subject
    /// ```
    ///
    /// # Errors
    ///
    /// YAML that does not follow the format, or a malformed role or permission name.
    pub fn from_yaml(yaml: &str) -> Result<Self, ConfigError> {
        let file: PolicyFile = serde_yaml_ng::from_str(yaml).map_err(|e| ConfigError::Invalid {
            what: "policy YAML",
            reason: e.to_string(),
        })?;
        let mut builder = Self::builder();
        for (name, role) in file.roles {
            builder = builder.role(name, role.permissions);
        }
        for (principal, roles) in file.principals {
            builder = builder.assign(principal, roles);
        }
        builder.build()
    }

    /// Reads [`from_yaml`](Self::from_yaml) from a file.
    ///
    /// # Errors
    ///
    /// The file is unreadable or invalid.
    pub fn from_yaml_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let yaml = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Self::from_yaml(&yaml)
    }

    /// The reference service's four roles over models, training, metrics and logs: `admin`,
    /// `operator`, `developer` and `viewer` (see [`EXAMPLE_ROLES_YAML`](Self::EXAMPLE_ROLES_YAML)).
    pub fn example_roles() -> Self {
        Self::from_yaml(Self::EXAMPLE_ROLES_YAML).expect("the built-in roles are valid")
    }

    /// Whether `principal` holds a role that grants `permission`.
    pub fn allows(&self, principal: &Principal, permission: &str) -> bool {
        self.roles_of(principal)
            .any(|role| self.roles.get(role).is_some_and(|g| g.allows(permission)))
    }

    /// Whether `principal` holds `role`, from its credentials or by assignment.
    pub fn has_role(&self, principal: &Principal, role: &str) -> bool {
        self.roles_of(principal).any(|r| r == role)
    }

    /// The principal's roles: its own, then the ones assigned to its id.
    pub fn roles_of<'a>(&'a self, principal: &'a Principal) -> impl Iterator<Item = &'a str> {
        let assigned = self
            .assignments
            .get(principal.qualified_id())
            .map(|roles| &roles[..])
            .unwrap_or_default();
        principal
            .roles()
            .iter()
            .map(String::as_str)
            .chain(assigned.iter().map(|r| &**r))
    }

    /// Whether a role of this name is defined.
    pub fn has_role_named(&self, role: &str) -> bool {
        self.roles.contains_key(role)
    }
}

/// Builds a [`Policy`] in code.
#[derive(Debug, Default)]
#[must_use]
pub struct PolicyBuilder {
    roles: Vec<(String, Vec<String>)>,
    assignments: Vec<(String, Vec<String>)>,
}

impl PolicyBuilder {
    /// Defines `role` with these permissions (names such as `models:read`, families such as
    /// `models:*`, or `*`). Defining a role twice adds to it.
    pub fn role<I, P>(mut self, role: impl Into<String>, permissions: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.roles.push((
            role.into(),
            permissions.into_iter().map(Into::into).collect(),
        ));
        self
    }

    /// Gives the principal with this [qualified id](crate::Principal::qualified_id) these
    /// roles: a bare id names a service identity (an HMAC caller or a certificate identity), never a token
    /// subject; a token subject is written `jwt:<sub>`.
    pub fn assign<I, R>(mut self, principal: impl Into<String>, roles: I) -> Self
    where
        I: IntoIterator<Item = R>,
        R: Into<String>,
    {
        self.assignments.push((
            principal.into(),
            roles.into_iter().map(Into::into).collect(),
        ));
        self
    }

    /// Checks every name and compiles the grants.
    ///
    /// # Errors
    ///
    /// A malformed role name, principal id or permission.
    pub fn build(self) -> Result<Policy, ConfigError> {
        let invalid = |reason| ConfigError::Invalid {
            what: "authorization policy",
            reason,
        };
        let mut merged: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (role, permissions) in self.roles {
            check_name("role", &role).map_err(invalid)?;
            merged.entry(role).or_default().extend(permissions);
        }
        let mut roles = NameMap::default();
        for (role, permissions) in merged {
            let grants = Grants::new(&role, &permissions)?;
            roles.insert(role.into_boxed_str(), grants);
        }
        let mut assignments: HashMap<Box<str>, Vec<Box<str>>> = HashMap::new();
        for (principal, assigned) in self.assignments {
            check_name("principal", &principal).map_err(invalid)?;
            let entry = assignments.entry(principal.into_boxed_str()).or_default();
            for role in assigned {
                check_name("role", &role).map_err(invalid)?;
                entry.push(role.into_boxed_str());
            }
        }
        Ok(Policy {
            roles,
            assignments: assignments
                .into_iter()
                .map(|(k, v)| (k, v.into_boxed_slice()))
                .collect(),
        })
    }
}

/// A [`Policy`] that can be replaced while serving: every layer and [`Authorizer`](super::Authorizer)
/// holding a clone sees the new policy on its next decision.
///
/// Cheap to clone; clones share the policy.
#[derive(Debug, Clone)]
pub struct SharedPolicy {
    current: Arc<ArcSwap<Policy>>,
    file: Option<Arc<PathBuf>>,
}

impl SharedPolicy {
    /// Shares `policy`.
    pub fn new(policy: Policy) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(policy)),
            file: None,
        }
    }

    /// Reads a policy file now, and again on every [`reload`](Self::reload).
    ///
    /// # Errors
    ///
    /// The file is unreadable or invalid.
    pub fn from_yaml_file(path: impl Into<PathBuf>) -> Result<Self, ConfigError> {
        let path = path.into();
        let policy = Policy::from_yaml_file(&path)?;
        Ok(Self {
            file: Some(Arc::new(path)),
            ..Self::new(policy)
        })
    }

    /// The policy in force.
    pub fn current(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    /// The policy in force, without touching its reference count: for the per-request path.
    pub(crate) fn load(&self) -> arc_swap::Guard<Arc<Policy>> {
        self.current.load()
    }

    /// Replaces the policy.
    pub fn store(&self, policy: Policy) {
        self.current.store(Arc::new(policy));
    }

    /// Reads the policy file again; an unreadable or invalid file keeps the policy in force and
    /// returns the error (also logged). Without a file, nothing changes.
    ///
    /// # Errors
    ///
    /// The new file is unreadable or invalid.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        match Policy::from_yaml_file(&**path) {
            Ok(policy) => {
                self.store(policy);
                tracing::info!(target: "tower_zerotrust::authz", file = %path.display(), "policy reloaded");
                Ok(())
            }
            Err(error) => {
                tracing::warn!(target: "tower_zerotrust::authz", file = %path.display(), %error, "policy reload failed; keeping the current policy");
                Err(error)
            }
        }
    }

    /// Reloads every `interval` in a background task on the current tokio runtime, for as long
    /// as the returned handle is not aborted.
    pub fn reload_every(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        crate::periodic::every(interval, false, move || {
            let _ = this.reload();
        })
    }
}

impl From<Policy> for SharedPolicy {
    fn from(policy: Policy) -> Self {
        Self::new(policy)
    }
}

/// The reference service's role definitions.
const EXAMPLE_ROLES: &str = r#"
roles:
  admin:
    description: "Full system access"
    permissions:
      - "models:read"
      - "models:write"
      - "models:delete"
      - "training:start"
      - "training:stop"
      - "users:manage"

  operator:
    description: "Operations and monitoring"
    permissions:
      - "models:read"
      - "training:read"
      - "metrics:read"
      - "logs:read"

  developer:
    description: "Model development access"
    permissions:
      - "models:read"
      - "models:write"
      - "training:start"
      - "training:read"

  viewer:
    description: "Read-only access"
    permissions:
      - "models:read"
      - "metrics:read"
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::AuthMethod;

    fn jwt(roles: &[&str]) -> Principal {
        Principal::new("someone", AuthMethod::Jwt).with_roles(roles.iter().copied())
    }

    #[test]
    fn example_roles() {
        let policy = Policy::example_roles();
        assert!(policy.allows(&jwt(&["admin"]), "models:delete"));
        assert!(!policy.allows(&jwt(&["operator"]), "models:write"));
        assert!(policy.allows(&jwt(&["operator"]), "logs:read"));
        assert!(policy.allows(&jwt(&["developer"]), "training:start"));
        assert!(!policy.allows(&jwt(&["viewer"]), "training:read"));
        assert!(policy.allows(&jwt(&["viewer", "developer"]), "models:write"));
        assert!(!policy.allows(&jwt(&[]), "models:read"));
        assert!(!policy.allows(&jwt(&["unknown-role"]), "models:read"));
    }

    #[test]
    fn assignments_add_roles_to_principals_by_id() {
        let policy = Policy::builder()
            .role("read_models", ["models:read"])
            .assign("model_registry", ["read_models"])
            .build()
            .unwrap();
        let service = Principal::new("model_registry", AuthMethod::Hmac);
        assert!(policy.allows(&service, "models:read"));
        assert!(policy.has_role(&service, "read_models"));
        let other = Principal::new("router_core", AuthMethod::Hmac);
        assert!(!policy.allows(&other, "models:read"));
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let err = |yaml: &str| Policy::from_yaml(yaml).unwrap_err().to_string();
        assert!(err("roles: [").contains("invalid policy YAML"));
        assert!(err("nothing: here").contains("roles"));
        assert!(err("roles:\n  a:\n    permissions: ['mod*ls']").contains("may only end"));
        assert!(err("roles:\n  a:\n    permisions: ['x']").contains("permisions"));
        assert!(err("roles:\n  a:\n    permissions: 'x'").contains("invalid policy YAML"));
    }
}
