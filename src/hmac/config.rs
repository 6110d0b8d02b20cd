//! What a verifier accepts: secrets, callers, time windows, public paths.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::canonical::is_valid_field;
use super::keys::{KeyRing, SigningKey};
use crate::clock::{Clock, SharedClock};
use crate::env::{self, Env};
use crate::error::{ConfigError, FirstError};
use crate::public::PublicPaths;

const DEFAULT_WINDOW: Duration = Duration::from_secs(30);
const DEFAULT_NONCE_TTL: Duration = Duration::from_secs(60);
/// Clocks of replicas may disagree by this much: nonces are kept that much longer.
const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(5);

/// The validated configuration of a [`VerifyHmacLayer`](super::VerifyHmacLayer).
///
/// Build it with [`HmacConfig::builder`], or from the environment with
/// [`HmacConfigBuilder::from_env`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HmacConfig {
    pub(crate) inner: Arc<Settings>,
}

#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) keys: KeyRing,
    /// `None`: any caller holding a valid secret.
    pub(crate) allowed_callers: Option<HashSet<String>>,
    pub(crate) window_millis: u64,
    /// How long nonces are remembered: the configured TTL plus the clock skew allowed.
    pub(crate) nonce_ttl: Duration,
    pub(crate) public_paths: PublicPaths,
    pub(crate) optional: bool,
    pub(crate) clock: SharedClock,
}

impl HmacConfig {
    /// A builder with the scheme's defaults: ±30 s timestamp window, nonces kept 60 s, no public
    /// paths, credentials required. Add at least one secret, and say who may call with
    /// [`allow_callers`](HmacConfigBuilder::allow_callers) or
    /// [`allow_any_caller`](HmacConfigBuilder::allow_any_caller).
    pub fn builder() -> HmacConfigBuilder {
        HmacConfigBuilder::default()
    }
}

/// Builds an [`HmacConfig`]; [`build`](Self::build) checks it.
#[derive(Debug, Clone)]
#[must_use]
pub struct HmacConfigBuilder {
    keys: KeyRing,
    /// `None` until chosen; `Some(None)` for any caller.
    allowed_callers: Option<Option<HashSet<String>>>,
    window: Duration,
    nonce_ttl: Duration,
    max_clock_skew: Duration,
    public_paths: PublicPaths,
    optional: bool,
    clock: SharedClock,
    error: FirstError,
}

impl Default for HmacConfigBuilder {
    fn default() -> Self {
        Self {
            keys: KeyRing::default(),
            allowed_callers: None,
            window: DEFAULT_WINDOW,
            nonce_ttl: DEFAULT_NONCE_TTL,
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
            public_paths: PublicPaths::default(),
            optional: false,
            clock: SharedClock::default(),
            error: FirstError::default(),
        }
    }
}

impl HmacConfigBuilder {
    /// A builder from the environment variables of services using this scheme:
    ///
    /// * `SERVICE_SECRET` (required, at least 32 bytes): the shared secret.
    /// * `SERVICE_SECRET_PREVIOUS` (optional): a second secret accepted while every signer
    ///   moves to a new `SERVICE_SECRET`, so a secret rotates without a flag day.
    /// * `ALLOWED_CALLERS`: comma-separated service ids, trimmed. When it is unset or empty,
    ///   **no caller is allowed** (every signed request gets 403), as in the services it
    ///   replaces; call [`allow_any_caller`](Self::allow_any_caller) to accept every caller
    ///   that holds the secret.
    ///
    /// A variable that is missing or unusable is reported by [`build`](Self::build), as
    /// [`ConfigError::MissingEnv`] or [`ConfigError::InvalidEnv`].
    pub fn from_env() -> Self {
        Self::read_env(&Env::process())
    }

    fn read_env(env: &Env) -> Self {
        let mut builder = Self::default();
        let read = builder.add_env(env);
        builder.error.keep(read);
        builder
    }

    fn add_env(&mut self, env: &Env) -> Result<(), ConfigError> {
        let secret = env.required("SERVICE_SECRET")?;
        self.keys
            .add_shared(SigningKey::new("SERVICE_SECRET", &secret)?)?;
        if let Some(previous) = env.var("SERVICE_SECRET_PREVIOUS")? {
            let key = SigningKey::new("SERVICE_SECRET_PREVIOUS", &previous)?;
            self.keys.add_shared(key)?;
        }
        let callers = env.list("ALLOWED_CALLERS")?;
        if let Some(bad) = callers.iter().find(|c| !is_valid_field(c)) {
            return Err(env::invalid(
                "ALLOWED_CALLERS",
                format!("{bad:?} is not a valid service id"),
            ));
        }
        if callers.is_empty() {
            tracing::warn!(
                target: "tower_zerotrust::hmac",
                "ALLOWED_CALLERS is unset or empty: every caller will be refused with 403"
            );
        }
        self.allowed_callers = Some(Some(callers.into_iter().collect()));
        Ok(())
    }

    /// Adds a secret that every caller may sign with. Call it again to accept a second secret
    /// while rotating (at most 4 at once). Secrets must be at least 32 bytes.
    pub fn secret(mut self, secret: &str) -> Self {
        let added = SigningKey::new("secret", secret).and_then(|k| self.keys.add_shared(k));
        self.keep_first_error(added)
    }

    /// Adds a secret for one caller only. A caller with its own secrets may no longer use the
    /// shared ones. Call it again to rotate (at most 4 at once).
    pub fn caller_secret(mut self, caller: &str, secret: &str) -> Self {
        let added = check_caller(caller)
            .and_then(|()| SigningKey::new("caller secret", secret))
            .and_then(|k| self.keys.add_for_caller(caller, k));
        self.keep_first_error(added)
    }

    /// Accepts only these callers; others get 403 "Service not authorized" once their signature
    /// has been verified. An empty list refuses everyone.
    pub fn allow_callers<I, C>(mut self, callers: I) -> Self
    where
        I: IntoIterator<Item = C>,
        C: Into<String>,
    {
        let callers: HashSet<String> = callers.into_iter().map(Into::into).collect();
        let checked = callers.iter().try_for_each(|c| check_caller(c));
        self.allowed_callers = Some(Some(callers));
        self.keep_first_error(checked)
    }

    /// Accepts any caller that holds a valid secret: the secret itself is the only check.
    pub fn allow_any_caller(mut self) -> Self {
        self.allowed_callers = Some(None);
        self
    }

    /// How far a request's `X-Timestamp` may be from now, either way (default 30 s).
    pub fn timestamp_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How long a nonce is remembered (default 60 s). It must be at least twice the timestamp
    /// window; see [`build`](Self::build).
    pub fn nonce_ttl(mut self, ttl: Duration) -> Self {
        self.nonce_ttl = ttl;
        self
    }

    /// How far apart the clocks of the replicas sharing a nonce store may be (default 5 s).
    /// Nonces are remembered this much longer than [`nonce_ttl`](Self::nonce_ttl): a replica
    /// whose clock lags accepts a timestamp later than the one that recorded its nonce would,
    /// and must still find the nonce. At most 1 h.
    pub fn max_clock_skew(mut self, skew: Duration) -> Self {
        self.max_clock_skew = skew;
        self
    }

    /// A path (exact match, such as `/health`) that passes without credentials.
    pub fn public_path(mut self, path: impl Into<String>) -> Self {
        let checked = self.public_paths.insert(path.into());
        self.keep_first_error(checked)
    }

    /// Reads time from `clock` instead of the system clock (for tests).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = SharedClock::new(clock);
        self
    }

    /// Lets requests without any HMAC header through without a principal, so that another
    /// authentication layer can prove them. Requests with some or bad headers are still
    /// refused.
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// * a secret shorter than 32 bytes or a malformed caller id;
    /// * [`ConfigError::NoKeys`] when no secret was given;
    /// * [`ConfigError::Invalid`] when neither `allow_callers` nor `allow_any_caller` was
    ///   called, or a public path does not start with `/`;
    /// * [`ConfigError::ReplayGap`] when the nonce TTL is shorter than twice the window. A
    ///   request is accepted while `|now - timestamp| <= window`, so a request recorded at
    ///   time `t` can carry a timestamp as late as `t + window` and stays acceptable until
    ///   `timestamp + window`, that is up to `2 × window` after it was recorded. Its nonce must
    ///   be remembered that long, or the same request could be replayed once it is forgotten.
    ///   For the scheme's ±30 s window that makes 60 s exactly the minimum.
    pub fn build(self) -> Result<HmacConfig, ConfigError> {
        self.error.check()?;
        if self.keys.is_empty() {
            return Err(ConfigError::NoKeys);
        }
        let Some(allowed_callers) = self.allowed_callers else {
            return Err(ConfigError::Invalid {
                what: "callers",
                reason: "say who may call: allow_callers([...]) or allow_any_caller()".into(),
            });
        };
        if self.window.is_zero() || self.window > Duration::from_secs(24 * 3600) {
            return Err(ConfigError::Invalid {
                what: "timestamp window",
                reason: "must be between 1 ms and 24 h".into(),
            });
        }
        if self.max_clock_skew > Duration::from_secs(3600) {
            return Err(ConfigError::Invalid {
                what: "max clock skew",
                reason: "must be at most 1 h".into(),
            });
        }
        if self.nonce_ttl < self.window * 2 {
            return Err(ConfigError::ReplayGap {
                window: self.window,
                ttl: self.nonce_ttl,
            });
        }
        Ok(HmacConfig {
            inner: Arc::new(Settings {
                keys: self.keys,
                allowed_callers,
                window_millis: crate::clock::millis(self.window),
                nonce_ttl: self.nonce_ttl + self.max_clock_skew,
                public_paths: self.public_paths,
                optional: self.optional,
                clock: self.clock,
            }),
        })
    }

    fn keep_first_error(mut self, result: Result<(), ConfigError>) -> Self {
        self.error.keep(result);
        self
    }
}

fn check_caller(caller: &str) -> Result<(), ConfigError> {
    if is_valid_field(caller) {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            what: "caller id",
            reason: format!(
                "{caller:?}: 1 to 128 visible ASCII characters without ':' are required"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn builder() -> HmacConfigBuilder {
        HmacConfig::builder().allow_any_caller()
    }

    /// Reading the environment never fails; `build()` names the variable to fix.
    #[test]
    fn environment_problems_are_reported_by_build() {
        let read = |pairs: &[(&str, &str)]| HmacConfigBuilder::read_env(&Env::from_pairs(pairs));
        let missing = read(&[("ALLOWED_CALLERS", "gateway")]).build();
        assert!(
            matches!(&missing, Err(ConfigError::MissingEnv(name)) if name == "SERVICE_SECRET"),
            "{missing:?}"
        );
        let bad_caller = read(&[("SERVICE_SECRET", SECRET), ("ALLOWED_CALLERS", "a:b")]).build();
        assert!(
            matches!(&bad_caller, Err(ConfigError::InvalidEnv { name, .. }) if name == "ALLOWED_CALLERS"),
            "{bad_caller:?}"
        );
        let short = read(&[("SERVICE_SECRET", "short"), ("ALLOWED_CALLERS", "gateway")]).build();
        assert!(matches!(short, Err(ConfigError::SecretTooShort { .. })));
        let config = read(&[
            ("SERVICE_SECRET", SECRET),
            (
                "SERVICE_SECRET_PREVIOUS",
                "fedcba9876543210fedcba9876543210",
            ),
            ("ALLOWED_CALLERS", " gateway, rag-service "),
        ])
        .public_path("/health")
        .build()
        .unwrap();
        let callers = config.inner.allowed_callers.as_ref().unwrap();
        assert!(callers.contains("gateway") && callers.contains("rag-service"));
        assert!(config.inner.public_paths.contains("/health"));
    }

    #[test]
    fn defaults_match_the_scheme() {
        let config = builder().secret(SECRET).build().unwrap();
        assert_eq!(config.inner.window_millis, 30_000);
        assert_eq!(config.inner.nonce_ttl, Duration::from_secs(65));
        assert!(config.inner.allowed_callers.is_none());
    }

    #[test]
    fn short_secret_is_refused() {
        let err = builder().secret("short").build().unwrap_err();
        assert!(matches!(err, ConfigError::SecretTooShort { actual: 5, .. }));
        assert!(!err.to_string().contains("short\""), "{err}");
    }

    #[test]
    fn replay_gap_is_refused_and_exact_minimum_accepted() {
        let gap = builder()
            .secret(SECRET)
            .nonce_ttl(Duration::from_secs(59))
            .build();
        assert!(matches!(gap, Err(ConfigError::ReplayGap { .. })));
        let wider = builder()
            .secret(SECRET)
            .timestamp_window(Duration::from_secs(300))
            .build();
        assert!(matches!(wider, Err(ConfigError::ReplayGap { .. })));
        assert!(
            builder()
                .secret(SECRET)
                .nonce_ttl(Duration::from_secs(60))
                .build()
                .is_ok()
        );
    }

    #[test]
    fn no_keys_and_bad_callers_are_refused() {
        assert!(matches!(builder().build(), Err(ConfigError::NoKeys)));
        let bad = builder()
            .secret(SECRET)
            .allow_callers(["ok", "not:ok"])
            .build();
        assert!(matches!(bad, Err(ConfigError::Invalid { .. })));
    }

    #[test]
    fn callers_must_be_chosen_and_paths_absolute() {
        let unchosen = HmacConfig::builder().secret(SECRET).build();
        assert!(matches!(
            unchosen,
            Err(ConfigError::Invalid {
                what: "callers",
                ..
            })
        ));
        let relative = builder().secret(SECRET).public_path("health").build();
        assert!(matches!(
            relative,
            Err(ConfigError::Invalid {
                what: "public path",
                ..
            })
        ));
    }

    #[test]
    fn key_count_is_bounded() {
        let mut builder = builder();
        for _ in 0..5 {
            builder = builder.secret(SECRET);
        }
        assert!(matches!(
            builder.build(),
            Err(ConfigError::TooManyKeys { .. })
        ));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let config = builder()
            .secret(SECRET)
            .caller_secret("gateway", SECRET)
            .build()
            .unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(debug.contains("<redacted>"));
    }
}
