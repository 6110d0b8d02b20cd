//! What each route requires: (method, path pattern) or a gRPC method → a [`Require`].

use std::fmt;

use http::Method;

use super::engine::Engine;
use super::permission::check_required;
use crate::error::ConfigError;

/// What a route requires of the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Require {
    /// Nobody needs to be proven (health checks, metrics scrapes).
    Public,
    /// Any proven principal.
    Authenticated,
    /// A principal whose roles grant this permission.
    Permission(String),
    /// A principal whose roles grant every one of these permissions.
    AllPermissions(Vec<String>),
    /// A principal holding this role (a server that requires roles).
    Role(String),
    /// The [policy engine](super::PolicyEngine)'s decision (a Rego policy, ...): it sees the
    /// whole request and may allow callers nobody proved.
    Engine(Engine),
}

impl Require {
    /// [`Require::Permission`].
    pub fn permission(permission: impl Into<String>) -> Self {
        Self::Permission(permission.into())
    }

    /// [`Require::AllPermissions`].
    pub fn all_permissions<I, P>(permissions: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        Self::AllPermissions(permissions.into_iter().map(Into::into).collect())
    }

    /// [`Require::Role`].
    pub fn role(role: impl Into<String>) -> Self {
        Self::Role(role.into())
    }

    /// What `engine` decides.
    pub fn engine(engine: impl Into<Engine>) -> Self {
        Self::Engine(engine.into())
    }

    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        match self {
            Self::Permission(p) => check_required(p),
            Self::AllPermissions(ps) if ps.is_empty() => Err(ConfigError::Invalid {
                what: "authorization rule",
                reason: "AllPermissions needs at least one permission".into(),
            }),
            Self::AllPermissions(ps) => ps.iter().try_for_each(|p| check_required(p)),
            Self::Role(r) => {
                super::permission::check_name("role", r).map_err(|reason| ConfigError::Invalid {
                    what: "authorization rule",
                    reason,
                })
            }
            Self::Public | Self::Authenticated | Self::Engine(_) => Ok(()),
        }
    }
}

impl fmt::Display for Require {
    /// `public`, `authenticated`, `permission models:read`, `all permissions a, b`, `role admin`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Public => f.write_str("public"),
            Self::Authenticated => f.write_str("authenticated"),
            Self::Permission(p) => write!(f, "permission {p}"),
            Self::AllPermissions(ps) => write!(f, "all permissions {}", ps.join(", ")),
            Self::Role(r) => write!(f, "role {r}"),
            Self::Engine(_) => f.write_str("policy engine"),
        }
    }
}

/// One rule: a method (or any) and a path pattern.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    method: Option<Method>,
    pattern: Pattern,
    pub(crate) require: Require,
    /// As configured: `GET /models/{id}`, or the pattern alone for any method (gRPC).
    pub(crate) description: Box<str>,
}

impl Rule {
    pub(crate) fn new(
        method: Option<Method>,
        pattern: &str,
        require: Require,
    ) -> Result<Self, ConfigError> {
        require.check()?;
        let description = match &method {
            Some(method) => format!("{method} {pattern}"),
            None => pattern.to_owned(),
        };
        Ok(Self {
            method,
            pattern: Pattern::parse(pattern)?,
            require,
            description: description.into_boxed_str(),
        })
    }

    /// A `GET` rule covers `HEAD` too: routers answer `HEAD` with the `GET` handler (axum
    /// does), so a `HEAD` request must not slip past what protects `GET`.
    pub(crate) fn matches(&self, method: &Method, path: &str) -> bool {
        let method_matches = match &self.method {
            None => true,
            Some(m) => m == method || (*m == Method::GET && *method == Method::HEAD),
        };
        method_matches && self.pattern.matches(path)
    }
}

/// A path pattern in axum's syntax: literal segments, `{name}` for exactly one segment, and a
/// last segment `{*name}` or `*` for the rest of the path (one segment or more). gRPC methods
/// are paths too: `/pkg.Service/Method`, or `/pkg.Service/*` for all of a service's methods.
#[derive(Debug, Clone)]
struct Pattern {
    segments: Box<[Segment]>,
    rest: bool,
}

#[derive(Debug, Clone)]
enum Segment {
    Literal(Box<str>),
    Any,
}

impl Pattern {
    fn parse(pattern: &str) -> Result<Self, ConfigError> {
        let invalid = |reason: &str| ConfigError::Invalid {
            what: "route pattern",
            reason: format!("{pattern:?}: {reason}"),
        };
        let Some(body) = pattern.strip_prefix('/') else {
            return Err(invalid("must start with '/'"));
        };
        let mut parts: Vec<&str> = body.split('/').collect();
        let rest = matches!(parts.last(), Some(&last) if last == "*" || (last.starts_with("{*") && last.ends_with('}')));
        if rest {
            parts.pop();
        }
        let mut segments = Vec::with_capacity(parts.len());
        for part in parts {
            if part.starts_with('{') && part.ends_with('}') && part.len() > 2 {
                if part.starts_with("{*") {
                    return Err(invalid("`{*rest}` may only be the last segment"));
                }
                segments.push(Segment::Any);
            } else if part.contains(['{', '}', '*']) {
                return Err(invalid("`{`, `}` and `*` only form whole segments"));
            } else {
                segments.push(Segment::Literal(part.into()));
            }
        }
        Ok(Self {
            segments: segments.into_boxed_slice(),
            rest,
        })
    }

    fn matches(&self, path: &str) -> bool {
        let Some(mut path) = path.strip_prefix('/') else {
            return false;
        };
        for (i, segment) in self.segments.iter().enumerate() {
            let (part, tail) = match path.split_once('/') {
                Some((part, tail)) => (part, Some(tail)),
                None => (path, None),
            };
            let ok = match segment {
                Segment::Literal(literal) => **literal == *part,
                Segment::Any => !part.is_empty(),
            };
            if !ok {
                return false;
            }
            match tail {
                Some(tail) => path = tail,
                None => {
                    // The path ended; it matches if the pattern ends here too.
                    return i + 1 == self.segments.len() && !self.rest;
                }
            }
        }
        // Segments used up with path left: only a rest pattern takes it (and it must be
        // non-empty).
        self.rest && !path.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, path: &str) -> bool {
        Pattern::parse(pattern).unwrap().matches(path)
    }

    #[test]
    fn literal_parameter_and_rest_segments() {
        assert!(matches("/models", "/models"));
        assert!(!matches("/models", "/models/"));
        assert!(!matches("/models", "/models/1"));
        assert!(!matches("/models", "/model"));
        assert!(matches("/models/{id}", "/models/42"));
        assert!(!matches("/models/{id}", "/models/"));
        assert!(!matches("/models/{id}", "/models"));
        assert!(!matches("/models/{id}", "/models/42/versions"));
        assert!(matches("/files/{*path}", "/files/a/b/c"));
        assert!(!matches("/files/{*path}", "/files"));
        assert!(!matches("/files/{*path}", "/files/"));
        assert!(matches("/registry.Models/*", "/registry.Models/Get"));
        assert!(!matches("/registry.Models/*", "/registry.Other/Get"));
        assert!(matches("/", "/"));
        assert!(!matches("/", "/x"));
        assert!(!matches("/models", "models"));
    }

    proptest::proptest! {
        #![proptest_config(crate::fuzz::config())]

        /// Route templates and request paths are arbitrary text: parsing and matching never
        /// panic, and a template made of a path's own segments matches that path.
        #[test]
        fn any_template_and_path(template in "[ -~]{0,60}", path in "[ -~]{0,80}") {
            if let Ok(pattern) = Pattern::parse(&template) {
                let _ = pattern.matches(&path);
            }
            let literal: String = path.chars().filter(|c| !matches!(c, '{' | '}' | '*')).collect();
            if literal.starts_with('/') {
                proptest::prop_assert!(Pattern::parse(&literal).unwrap().matches(&literal));
            }
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["models", "/mod{id}", "/{*rest}/x", "/a*", "/x/{}"] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?}");
        }
    }
}
