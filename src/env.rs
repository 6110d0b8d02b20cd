//! Reading configuration from environment variables.
//!
//! Builders read the environment in `from_env`, which never fails: a variable that is missing
//! or unusable is kept and reported by `build()`, with every other configuration error.

use std::ffi::OsString;

use crate::error::ConfigError;

/// Where variables come from: the process environment, or a table in unit tests.
pub(crate) struct Env {
    lookup: Box<Lookup>,
}

type Lookup = dyn Fn(&str) -> Option<OsString>;

impl Env {
    /// The process environment.
    pub(crate) fn process() -> Self {
        Self {
            lookup: Box::new(|name| std::env::var_os(name)),
        }
    }

    /// A fixed table of variables.
    #[cfg(test)]
    pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        let vars: std::collections::HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        Self {
            lookup: Box::new(move |name| vars.get(name).cloned()),
        }
    }

    /// A variable's value; unset and empty are both `None`. Non-UTF-8 is an error that never
    /// echoes the value.
    pub(crate) fn var(&self, name: &str) -> Result<Option<String>, ConfigError> {
        match (self.lookup)(name).map(OsString::into_string) {
            None => Ok(None),
            Some(Ok(value)) => Ok(Some(value).filter(|v| !v.is_empty())),
            Some(Err(_)) => Err(invalid(name, "not valid UTF-8")),
        }
    }

    /// A variable that must be set.
    #[cfg(feature = "hmac")]
    pub(crate) fn required(&self, name: &str) -> Result<String, ConfigError> {
        self.var(name)?
            .ok_or_else(|| ConfigError::MissingEnv(name.to_owned()))
    }

    /// A comma-separated list, each item trimmed; empty items are skipped.
    #[cfg(any(feature = "hmac", feature = "jwt"))]
    pub(crate) fn list(&self, name: &str) -> Result<Vec<String>, ConfigError> {
        Ok(self
            .var(name)?
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// A switch: `true`/`1`/`yes` or `false`/`0`/`no` (any case); unset is `false`. Anything
    /// else is an error, so that a typo never silently turns a protection off.
    #[cfg(feature = "mtls")]
    pub(crate) fn flag(&self, name: &str) -> Result<bool, ConfigError> {
        match self.var(name)?.map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("false" | "0" | "no") => Ok(false),
            Some("true" | "1" | "yes") => Ok(true),
            Some(_) => Err(invalid(name, "must be true or false")),
        }
    }

    /// A positive integer, or `default` when unset.
    #[cfg(feature = "rate-limit")]
    pub(crate) fn positive(&self, name: &str, default: u32) -> Result<u32, ConfigError> {
        match self.var(name)? {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| invalid(name, format!("{v:?} is not a positive integer"))),
        }
    }
}

/// An error naming the variable and what is wrong with it.
pub(crate) fn invalid(name: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidEnv {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

#[cfg(all(test, feature = "hmac", feature = "mtls", feature = "rate-limit"))]
mod tests {
    use super::*;

    #[test]
    fn empty_is_unset_and_lists_are_trimmed() {
        let env = Env::from_pairs(&[("A", ""), ("L", " a, b ,,c ")]);
        assert_eq!(env.var("A").unwrap(), None);
        assert!(matches!(env.required("A"), Err(ConfigError::MissingEnv(n)) if n == "A"));
        assert_eq!(env.list("L").unwrap(), ["a", "b", "c"]);
        assert!(env.list("UNSET").unwrap().is_empty());
    }

    #[test]
    fn switches_refuse_what_they_do_not_understand() {
        let env = Env::from_pairs(&[("ON", "Yes"), ("OFF", "0"), ("TYPO", "ture")]);
        assert!(env.flag("ON").unwrap());
        assert!(!env.flag("OFF").unwrap());
        assert!(!env.flag("UNSET").unwrap());
        assert!(
            matches!(env.flag("TYPO"), Err(ConfigError::InvalidEnv { name, .. }) if name == "TYPO")
        );
    }

    #[test]
    fn counts_are_positive_integers() {
        let env = Env::from_pairs(&[("N", " 7 "), ("Z", "0"), ("X", "many")]);
        assert_eq!(env.positive("N", 1).unwrap(), 7);
        assert_eq!(env.positive("UNSET", 3).unwrap(), 3);
        assert!(env.positive("Z", 1).is_err());
        assert!(env.positive("X", 1).is_err());
    }
}
