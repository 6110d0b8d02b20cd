//! The verified claims of a token, for handlers (and policies) that need more than the
//! `Principal`: put into the request by the JWT layer, read by whoever needs them.

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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
