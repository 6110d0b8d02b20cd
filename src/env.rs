//! Reading configuration from environment variables.

use crate::error::ConfigError;

/// Reads a variable: unset is `None`; non-UTF-8 is an error that never echoes the value.
pub(crate) fn var(name: &'static str) -> Result<Option<String>, ConfigError> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError::InvalidEnv {
            name,
            reason: "not valid UTF-8".into(),
        }),
    }
}

/// Reads a variable that must be set.
pub(crate) fn required(name: &'static str) -> Result<String, ConfigError> {
    var(name)?.ok_or(ConfigError::MissingEnv(name))
}
