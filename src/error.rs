//! Configuration errors, reported when a layer is built, never per request.

use std::time::Duration;

/// Why a configuration was refused.
///
/// Every builder in this crate validates its input in `build()` and returns this error, so a bad
/// deployment fails at start-up with a message that names what to fix, instead of refusing
/// requests later. Messages never contain secret values.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required environment variable is not set.
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    /// An environment variable is set but unusable.
    #[error("environment variable {name} is invalid: {reason}")]
    InvalidEnv {
        /// The variable's name.
        name: String,
        /// What is wrong with it (never its value when it is a secret).
        reason: String,
    },
    /// A secret is too short to resist brute force.
    #[error("{what} must be at least {min} bytes long, got {actual}")]
    SecretTooShort {
        /// Which secret.
        what: &'static str,
        /// The minimum length in bytes.
        min: usize,
        /// The length that was given.
        actual: usize,
    },
    /// No key was configured, so nothing could ever be verified.
    #[error("no secret configured: add one with `secret` or `caller_secret`")]
    NoKeys,
    /// More keys than the bound allows for one caller.
    #[error("too many secrets for {scope}: at most {max} may be valid at once")]
    TooManyKeys {
        /// `shared` or the caller id.
        scope: String,
        /// The bound.
        max: usize,
    },
    /// Nonces would be forgotten while their timestamp is still accepted, letting a captured
    /// request be replayed.
    #[error(
        "nonce TTL {ttl:?} is shorter than twice the timestamp window {window:?}: a captured request could be replayed after its nonce is forgotten"
    )]
    ReplayGap {
        /// The configured timestamp window (each side).
        window: Duration,
        /// The configured nonce TTL.
        ttl: Duration,
    },
    /// A configuration file could not be read.
    #[error("cannot read {}: {reason}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// The configuration would not be secure: no credentials at all, a bearer token sent in
    /// plaintext across the network, TLS material with an `http://` URL. Each message names
    /// the way out.
    #[error("insecure configuration refused: {0}")]
    Insecure(&'static str),
    /// A value is outside its allowed range or format.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was invalid.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// The first configuration error a builder met, kept for its `build()` to report.
#[cfg(any(
    feature = "hmac",
    feature = "jwt",
    feature = "mtls",
    feature = "rate-limit"
))]
#[derive(Debug, Clone, Default)]
pub(crate) struct FirstError(Option<ConfigError>);

#[cfg(any(
    feature = "hmac",
    feature = "jwt",
    feature = "mtls",
    feature = "rate-limit"
))]
impl FirstError {
    /// Keeps `result`'s error unless an earlier one is kept.
    pub(crate) fn keep(&mut self, result: Result<(), ConfigError>) {
        if let Err(error) = result {
            self.0.get_or_insert(error);
        }
    }

    /// `Err` with the first error kept, if any.
    pub(crate) fn check(self) -> Result<(), ConfigError> {
        self.0.map_or(Ok(()), Err)
    }
}
