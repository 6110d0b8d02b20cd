//! The verified claims of a token, for handlers that need more than the `Principal`.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The claims of a verified token, put into the request's extensions next to the
/// [`Principal`](crate::Principal). Cheap to clone.
///
/// ```
/// # use tower_zerotrust::jwt::Claims;
/// # fn handler(claims: Claims) {
/// let email: Option<String> = claims.get("email");
/// let tenant: Option<u64> = claims.get("tenant_id");
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    map: Arc<Map<String, Value>>,
}

impl Claims {
    pub(crate) fn new(map: Map<String, Value>) -> Self {
        Self { map: Arc::new(map) }
    }

    /// A claim deserialized into `T`; `None` when it is absent or of another shape.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        self.map.get(name).and_then(|v| T::deserialize(v).ok())
    }

    /// A claim as raw JSON.
    pub fn value(&self, name: &str) -> Option<&Value> {
        self.map.get(name)
    }

    /// The `sub` claim.
    pub fn subject(&self) -> Option<&str> {
        self.map.get("sub").and_then(Value::as_str)
    }

    /// All claims.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.map
    }
}

/// A dotted path to the claim holding roles: `roles`, `realm_access.roles` (Keycloak),
/// `scope` / `scp` (space-separated), `permissions` (Auth0), or a namespaced claim such as
/// `https://example.com/roles`.
#[derive(Debug, Clone)]
pub(crate) struct RolesPath(Vec<String>);

impl RolesPath {
    pub(crate) fn parse(path: &str) -> Option<Self> {
        // A URL-shaped claim name is one segment: its dots are part of the name.
        if path.contains("://") {
            return Some(Self(vec![path.to_owned()]));
        }
        let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
        segments
            .iter()
            .all(|s| !s.is_empty())
            .then_some(Self(segments))
    }

    /// The roles at this path: an array of strings, or one space-separated string.
    pub(crate) fn roles(&self, claims: &Map<String, Value>) -> Vec<String> {
        let mut at = claims.get(&self.0[0]);
        for segment in &self.0[1..] {
            at = at.and_then(|v| v.get(segment));
        }
        match at {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn roles(path: &str, claims: Value) -> Vec<String> {
        let Value::Object(map) = claims else { panic!() };
        RolesPath::parse(path).unwrap().roles(&map)
    }

    #[test]
    fn roles_come_from_the_common_places() {
        assert_eq!(roles("roles", json!({"roles": ["a", "b"]})), ["a", "b"]);
        assert_eq!(
            roles(
                "realm_access.roles",
                json!({"realm_access": {"roles": ["admin"]}})
            ),
            ["admin"]
        );
        assert_eq!(
            roles("scope", json!({"scope": "models:read  models:write"})),
            ["models:read", "models:write"]
        );
        assert_eq!(roles("scp", json!({"scp": ["x"]})), ["x"]);
        assert_eq!(
            roles("permissions", json!({"permissions": ["p", 3, "q"]})),
            ["p", "q"]
        );
        assert_eq!(
            roles(
                "https://example.com/roles",
                json!({"https://example.com/roles": ["ns"]})
            ),
            ["ns"]
        );
        assert!(roles("roles", json!({"roles": {"not": "a list"}})).is_empty());
        assert!(roles("a.b.c", json!({"a": {"b": 1}})).is_empty());
    }

    #[test]
    fn empty_segments_are_refused() {
        assert!(RolesPath::parse("a..b").is_none());
        assert!(RolesPath::parse("").is_none());
    }

    #[test]
    fn typed_access() {
        let Value::Object(map) = json!({"sub": "svc", "n": 3, "email": "a@b"}) else {
            panic!()
        };
        let claims = Claims::new(map);
        assert_eq!(claims.subject(), Some("svc"));
        assert_eq!(claims.get::<u32>("n"), Some(3));
        assert_eq!(claims.get::<u32>("email"), None);
        assert_eq!(claims.get::<String>("missing"), None);
    }
}
