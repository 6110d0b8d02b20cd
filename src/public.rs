//! Paths that pass an authentication layer without credentials, such as `/health`.

use std::collections::HashSet;

use crate::error::ConfigError;

/// Exact request paths (no prefixes, no patterns: a public path should be obvious).
#[derive(Debug, Clone, Default)]
pub(crate) struct PublicPaths(HashSet<String>);

impl PublicPaths {
    /// Adds a path; it must start with `/`, or it could never match.
    pub(crate) fn insert(&mut self, path: String) -> Result<(), ConfigError> {
        if !path.starts_with('/') {
            return Err(ConfigError::Invalid {
                what: "public path",
                reason: format!("{path:?} must start with '/'"),
            });
        }
        self.0.insert(path);
        Ok(())
    }

    pub(crate) fn contains(&self, path: &str) -> bool {
        self.0.contains(path)
    }
}
