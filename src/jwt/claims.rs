//! Where a token's roles are among its claims.

use serde_json::{Map, Value};

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
}
