//! What a verifier accepts: keys, issuers, audiences, time leeway, size and claim rules.

use std::sync::Arc;
use std::time::Duration;

use super::cache::TokenCache;
use super::claims::RolesPath;
use super::keys::{Algorithm, JwtKey};
use crate::clock::{Clock, SharedClock};
use crate::env::{self, Env};
use crate::error::{ConfigError, FirstError};
use crate::public::PublicPaths;

const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
const DEFAULT_CACHE_CAPACITY: usize = 4096;
/// Most static keys valid at once.
const MAX_KEYS: usize = 16;

/// The validated configuration of a [`RequireJwtLayer`](super::RequireJwtLayer).
///
/// Build it with [`JwtConfig::builder`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub(crate) inner: Arc<Settings>,
}

#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) keys: Vec<JwtKey>,
    #[cfg(feature = "jwks")]
    pub(crate) jwks: Option<super::JwksSource>,
    /// Accepted `iss` values.
    pub(crate) issuers: Vec<String>,
    pub(crate) leeway_secs: u64,
    pub(crate) required_claims: Vec<String>,
    /// Accepted `aud` values (the token's `aud` must contain one).
    pub(crate) audiences: Vec<String>,
    /// Accepted `typ` values of access tokens.
    pub(crate) token_types: Vec<String>,
    /// Whether a token without `typ` is refused.
    pub(crate) require_token_type: bool,
    pub(crate) max_token_bytes: usize,
    pub(crate) cache: Option<TokenCache>,
    pub(crate) roles: RolesPath,
    pub(crate) public_paths: PublicPaths,
    pub(crate) optional: bool,
    pub(crate) clock: SharedClock,
}

impl Settings {
    /// Changes whenever the verifying keys may have: cached verdicts of another generation
    /// are not used.
    pub(crate) fn key_generation(&self) -> u64 {
        #[cfg(feature = "jwks")]
        if let Some(jwks) = &self.jwks {
            return jwks.generation();
        }
        0
    }

    /// Whether a single static key, without a key id, can verify everything, so the token's
    /// header need not be read to choose one.
    pub(crate) fn single_key(&self) -> Option<&JwtKey> {
        #[cfg(feature = "jwks")]
        if self.jwks.is_some() {
            return None;
        }
        match self.keys.as_slice() {
            [key] if key.kid().is_none() => Some(key),
            _ => None,
        }
    }
}

impl JwtConfig {
    /// A builder: add keys, the accepted issuer(s) and audience(s).
    pub fn builder() -> JwtConfigBuilder {
        JwtConfigBuilder::default()
    }

    /// How many verified tokens are remembered now, by every layer built from this
    /// configuration (at most its [`cache_capacity`](JwtConfigBuilder::cache_capacity); each
    /// entry holds a token's hash, its principal and its claims, not the token).
    pub fn remembered_tokens(&self) -> usize {
        self.inner.cache.as_ref().map_or(0, TokenCache::len)
    }
}

/// Builds a [`JwtConfig`]; [`build`](Self::build) checks it.
#[derive(Debug, Clone)]
#[must_use]
pub struct JwtConfigBuilder {
    keys: Vec<JwtKey>,
    #[cfg(feature = "jwks")]
    jwks: Option<super::JwksSource>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    leeway: Duration,
    required_claims: Vec<String>,
    token_types: Vec<String>,
    require_token_type: bool,
    max_token_bytes: usize,
    cache_capacity: usize,
    roles_claim: String,
    public_paths: PublicPaths,
    optional: bool,
    clock: SharedClock,
    error: FirstError,
}

impl Default for JwtConfigBuilder {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            #[cfg(feature = "jwks")]
            jwks: None,
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway: DEFAULT_LEEWAY,
            required_claims: Vec::new(),
            token_types: vec!["JWT".to_owned(), "at+jwt".to_owned()],
            require_token_type: false,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            roles_claim: "roles".to_owned(),
            public_paths: PublicPaths::default(),
            optional: false,
            clock: SharedClock::default(),
            error: FirstError::default(),
        }
    }
}

impl JwtConfigBuilder {
    /// A builder from the environment, or `None` when no key variable is set (the environment
    /// leaves bearer tokens off):
    ///
    /// * `JWT_SECRET`: an HS256 shared secret (at least 32 bytes);
    /// * `JWT_PUBLIC_KEY_FILE`: a PEM public key; its type decides the algorithm (RSA → RS256,
    ///   P-256 → ES256, P-384 → ES384, Ed25519 → EdDSA);
    /// * `JWT_JWKS_URL`: a JSON Web Key Set URL (feature `jwks`);
    /// * `JWT_ISSUER`, `JWT_AUDIENCE` (required with any of the above; comma-separated to accept
    ///   several);
    /// * `JWT_ROLES_CLAIM`: where the roles are (default `roles`; `realm_access.roles`, `scope`,
    ///   `permissions`, ...).
    ///
    /// A variable or key file that is missing or unusable, or `JWT_JWKS_URL` without the `jwks`
    /// feature, is reported by [`build`](Self::build), as [`ConfigError::MissingEnv`] or
    /// [`ConfigError::InvalidEnv`].
    pub fn from_env() -> Option<Self> {
        Self::read_env(&Env::process())
    }

    fn read_env(env: &Env) -> Option<Self> {
        let variables = ["JWT_SECRET", "JWT_PUBLIC_KEY_FILE", "JWT_JWKS_URL"];
        if variables
            .iter()
            .all(|name| env.var(name).ok().flatten().is_none())
        {
            return None;
        }
        let mut builder = Self::default();
        let read = builder.add_env(env);
        builder.error.keep(read);
        Some(builder)
    }

    fn add_env(&mut self, env: &Env) -> Result<(), ConfigError> {
        if let Some(secret) = env.var("JWT_SECRET")? {
            let key = JwtKey::hmac(Algorithm::HS256, &secret)
                .map_err(|e| env::invalid("JWT_SECRET", e.to_string()))?;
            self.keys.push(key);
        }
        if let Some(file) = env.var("JWT_PUBLIC_KEY_FILE")? {
            let pem = std::fs::read(&file).map_err(|e| {
                env::invalid("JWT_PUBLIC_KEY_FILE", format!("cannot read {file}: {e}"))
            })?;
            let key = JwtKey::from_public_pem(&pem)
                .map_err(|e| env::invalid("JWT_PUBLIC_KEY_FILE", e.to_string()))?;
            self.keys.push(key);
        }
        if let Some(url) = env.var("JWT_JWKS_URL")? {
            self.add_jwks_from_env(&url)?;
        }
        self.issuers = env.list("JWT_ISSUER")?;
        if self.issuers.is_empty() {
            return Err(ConfigError::MissingEnv("JWT_ISSUER".into()));
        }
        self.audiences = env.list("JWT_AUDIENCE")?;
        if self.audiences.is_empty() {
            return Err(ConfigError::MissingEnv("JWT_AUDIENCE".into()));
        }
        if let Some(path) = env.var("JWT_ROLES_CLAIM")? {
            self.roles_claim = path;
        }
        Ok(())
    }

    #[cfg(feature = "jwks")]
    fn add_jwks_from_env(&mut self, url: &str) -> Result<(), ConfigError> {
        let source = super::JwksSource::builder(url)
            .build()
            .map_err(|e| env::invalid("JWT_JWKS_URL", e.to_string()))?;
        self.jwks = Some(source);
        Ok(())
    }

    #[cfg(not(feature = "jwks"))]
    fn add_jwks_from_env(&mut self, _url: &str) -> Result<(), ConfigError> {
        Err(env::invalid(
            "JWT_JWKS_URL",
            "key sets need the `jwks` cargo feature",
        ))
    }

    /// Adds a key (at most 16). Tokens naming a `kid` are checked against the key with that id;
    /// tokens without one, against the keys of their algorithm.
    pub fn key(mut self, key: JwtKey) -> Self {
        if self.keys.len() >= MAX_KEYS {
            self.error.keep(Err(ConfigError::TooManyKeys {
                scope: "JWT keys".into(),
                max: MAX_KEYS,
            }));
        } else {
            self.keys.push(key);
        }
        self
    }

    /// Verifies tokens with the keys of a JSON Web Key Set, fetched and refreshed as needed.
    #[cfg(feature = "jwks")]
    pub fn jwks(mut self, source: super::JwksSource) -> Self {
        self.jwks = Some(source);
        self
    }

    /// An accepted `iss`. At least one is required; call again to accept several.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// An accepted `aud`: a token is accepted when its `aud` (a string or an array) contains
    /// one of them. At least one is required; call again to accept several.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Clock skew tolerated on `exp` and `nbf` (default 30 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// A claim every token must carry, besides `sub`, `exp`, `iss` and `aud` (always required).
    pub fn require_claim(mut self, name: impl Into<String>) -> Self {
        self.required_claims.push(name.into());
        self
    }

    /// The `typ` header values accepted (default `JWT` and `at+jwt`, RFC 9068), replacing the
    /// defaults. Compared as media types: case-insensitively, with or without `application/`.
    /// Tokens of another type are refused (`jwt.wrong_token_type`), and so, always, are the
    /// tokens that sign pub/sub messages, so that whoever reads a message cannot replay its
    /// token as an access token.
    pub fn token_types<I, T>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.token_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Refuses tokens without a `typ` header (by default they are accepted, as most identity
    /// providers issue them).
    pub fn require_token_type(mut self) -> Self {
        self.require_token_type = true;
        self
    }

    /// The longest token accepted, in bytes (default 8 KiB). Longer ones are refused before any
    /// parsing.
    pub fn max_token_size(mut self, bytes: usize) -> Self {
        self.max_token_bytes = bytes;
        self
    }

    /// How many verified tokens are remembered (default 4096; 0 turns the cache off).
    ///
    /// Services send the same token for many requests; a remembered one skips the signature
    /// and claim checks, whose answer cannot change, and only its time claims and
    /// certificate binding are checked again. Entries are keyed by the token's SHA-256 and
    /// forgotten whenever a key set refresh may have withdrawn a key.
    pub fn cache_capacity(mut self, tokens: usize) -> Self {
        self.cache_capacity = tokens;
        self
    }

    /// Where the principal's roles are in the claims: a dotted path such as `roles` (the
    /// default), `realm_access.roles`, `scope` or `permissions`.
    pub fn roles_claim(mut self, path: impl Into<String>) -> Self {
        self.roles_claim = path.into();
        self
    }

    /// A path (exact match, such as `/health`) that passes without a token.
    pub fn public_path(mut self, path: impl Into<String>) -> Self {
        let inserted = self.public_paths.insert(path.into());
        self.error.keep(inserted);
        self
    }

    /// Lets requests without a bearer token through without a principal, so that another
    /// authentication layer can prove them. A token that is present but bad is still refused.
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// Reads time from `clock` instead of the system clock (for tests).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = SharedClock::new(clock);
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// No key (static or key set), no issuer or audience, an invalid roles path or size, or an
    /// invalid key or variable given earlier.
    pub fn build(self) -> Result<JwtConfig, ConfigError> {
        self.error.check()?;
        #[cfg(feature = "jwks")]
        let has_keys = !self.keys.is_empty() || self.jwks.is_some();
        #[cfg(not(feature = "jwks"))]
        let has_keys = !self.keys.is_empty();
        if !has_keys {
            return Err(ConfigError::NoKeys);
        }
        let required = |what: &'static str, values: &[String]| {
            if values.is_empty() || values.iter().any(String::is_empty) {
                Err(ConfigError::Invalid {
                    what,
                    reason: "at least one non-empty value is required".into(),
                })
            } else {
                Ok(())
            }
        };
        required("issuer", &self.issuers)?;
        required("audience", &self.audiences)?;
        let roles = RolesPath::parse(&self.roles_claim).ok_or_else(|| ConfigError::Invalid {
            what: "roles claim",
            reason: format!("{:?} is not a dotted claim path", self.roles_claim),
        })?;
        if self.max_token_bytes == 0 {
            return Err(ConfigError::Invalid {
                what: "max token size",
                reason: "must be at least 1 byte".into(),
            });
        }
        if self.token_types.iter().any(|t| {
            t.is_empty() || super::validate::same_type(t, super::validate::MESSAGE_TOKEN_TYPE)
        }) {
            return Err(ConfigError::Invalid {
                what: "token types",
                reason: "token types must be non-empty, and message tokens are never access tokens"
                    .into(),
            });
        }
        Ok(JwtConfig {
            inner: Arc::new(Settings {
                keys: self.keys,
                #[cfg(feature = "jwks")]
                jwks: self.jwks,
                issuers: self.issuers,
                leeway_secs: self.leeway.as_secs(),
                required_claims: self.required_claims,
                audiences: self.audiences,
                token_types: self.token_types,
                require_token_type: self.require_token_type,
                max_token_bytes: self.max_token_bytes,
                cache: TokenCache::new(self.cache_capacity),
                roles,
                public_paths: self.public_paths,
                optional: self.optional,
                clock: self.clock,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> JwtKey {
        JwtKey::hmac(Algorithm::HS256, "0123456789abcdef0123456789abcdef").unwrap()
    }

    /// Without a key variable the environment leaves tokens off; with one, every other
    /// problem is reported by `build()`, naming the variable.
    #[test]
    fn environment_turns_tokens_on_and_build_reports_its_problems() {
        let read = |pairs: &[(&str, &str)]| JwtConfigBuilder::read_env(&Env::from_pairs(pairs));
        assert!(read(&[("JWT_ISSUER", "idp")]).is_none());
        let secret = ("JWT_SECRET", "0123456789abcdef0123456789abcdef");
        let no_issuer = read(&[secret, ("JWT_AUDIENCE", "api")]).unwrap().build();
        assert!(
            matches!(&no_issuer, Err(ConfigError::MissingEnv(name)) if name == "JWT_ISSUER"),
            "{no_issuer:?}"
        );
        let short = read(&[
            ("JWT_SECRET", "short"),
            ("JWT_ISSUER", "idp"),
            ("JWT_AUDIENCE", "api"),
        ]);
        let short = short.unwrap().build();
        assert!(
            matches!(&short, Err(ConfigError::InvalidEnv { name, .. }) if name == "JWT_SECRET"),
            "{short:?}"
        );
        let unreadable = read(&[
            ("JWT_PUBLIC_KEY_FILE", "/nonexistent/key.pem"),
            ("JWT_ISSUER", "idp"),
            ("JWT_AUDIENCE", "api"),
        ]);
        let unreadable = unreadable.unwrap().build();
        assert!(
            matches!(&unreadable, Err(ConfigError::InvalidEnv { name, .. }) if name == "JWT_PUBLIC_KEY_FILE"),
            "{unreadable:?}"
        );
        let config = read(&[secret, ("JWT_ISSUER", "idp, idp2"), ("JWT_AUDIENCE", "api")])
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(config.inner.issuers, ["idp", "idp2"]);
    }

    #[test]
    fn issuer_and_audience_are_required() {
        let none = JwtConfig::builder().key(key()).audience("a").build();
        assert!(matches!(
            none,
            Err(ConfigError::Invalid { what: "issuer", .. })
        ));
        let none = JwtConfig::builder().key(key()).issuer("i").build();
        assert!(matches!(
            none,
            Err(ConfigError::Invalid {
                what: "audience",
                ..
            })
        ));
        assert!(matches!(
            JwtConfig::builder().issuer("i").audience("a").build(),
            Err(ConfigError::NoKeys)
        ));
        assert!(
            JwtConfig::builder()
                .key(key())
                .issuer("i")
                .audience("a")
                .build()
                .is_ok()
        );
    }

    #[test]
    fn bad_roles_paths_and_key_counts_are_refused() {
        let base = || JwtConfig::builder().key(key()).issuer("i").audience("a");
        assert!(base().roles_claim("a..b").build().is_err());
        let mut many = base();
        for _ in 0..MAX_KEYS {
            many = many.key(key());
        }
        assert!(matches!(many.build(), Err(ConfigError::TooManyKeys { .. })));
    }
}
