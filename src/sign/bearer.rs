//! Client side of JWT: mint service tokens and attach them as `Authorization: Bearer`.

use std::fmt;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Map, Value};

use crate::BoxError;
use crate::clock::{Clock, SharedClock};
use crate::error::ConfigError;
use crate::jwt::Algorithm;

/// The usual `expiration_seconds` default: one hour.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
const MIN_SECRET_LEN: usize = 32;

/// Mints service tokens: `sub` = the service id, its `roles`, `iss`, `aud`, `iat`, `exp` and a
/// random `jti`. The client half of a `JwtAuthenticator`.
///
/// ```
/// use tower_zerotrust::jwt::Algorithm;
/// use tower_zerotrust::sign::TokenIssuer;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let issuer = TokenIssuer::hmac(Algorithm::HS256, "your-secret-key-of-at-least-32-bytes", "intellirouter", "intellirouter-services")?;
/// let token = issuer.mint("router_core", &["route_requests"])?;
/// assert_eq!(token.split('.').count(), 3);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TokenIssuer {
    key: EncodingKey,
    header: Header,
    issuer: String,
    audience: String,
    lifetime: Duration,
    clock: SharedClock,
    certificate_thumbprint: Option<String>,
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
#[error("minting a token failed: {0}")]
pub struct MintError(String);

impl TokenIssuer {
    /// An issuer signing with a shared secret (HS256/384/512, at least 32 bytes).
    ///
    /// # Errors
    ///
    /// A non-HMAC algorithm or a short secret.
    pub fn hmac(
        algorithm: Algorithm,
        secret: &str,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Result<Self, ConfigError> {
        if !matches!(
            algorithm,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(invalid("an HMAC issuer needs HS256, HS384 or HS512"));
        }
        if secret.len() < MIN_SECRET_LEN {
            return Err(ConfigError::SecretTooShort {
                what: "JWT secret",
                min: MIN_SECRET_LEN,
                actual: secret.len(),
            });
        }
        let key = EncodingKey::from_secret(secret.as_bytes());
        Ok(Self::new(algorithm, key, issuer.into(), audience.into()))
    }

    /// An issuer signing with a private key in PEM (PKCS#8, or PKCS#1 for RSA).
    ///
    /// # Errors
    ///
    /// An HMAC algorithm, or a PEM that is not a private key of the algorithm's family.
    pub fn from_pem(
        algorithm: Algorithm,
        private_pem: &[u8],
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Result<Self, ConfigError> {
        use Algorithm::*;
        let key = match algorithm {
            HS256 | HS384 | HS512 => return Err(invalid("HMAC keys are secrets, not PEM")),
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => EncodingKey::from_rsa_pem(private_pem),
            ES256 | ES384 => EncodingKey::from_ec_pem(private_pem),
            EdDSA => EncodingKey::from_ed_pem(private_pem),
        }
        .map_err(|e| invalid(&format!("not a {algorithm:?} private key: {e}")))?;
        Ok(Self::new(algorithm, key, issuer.into(), audience.into()))
    }

    fn new(algorithm: Algorithm, key: EncodingKey, issuer: String, audience: String) -> Self {
        Self {
            key,
            header: Header::new(algorithm.to_jsonwebtoken()),
            issuer,
            audience,
            lifetime: DEFAULT_LIFETIME,
            clock: SharedClock::default(),
            certificate_thumbprint: None,
        }
    }

    /// Names the key in each token's `kid` header.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.header.kid = Some(kid.into());
        self
    }

    /// How long minted tokens live (default one hour).
    #[must_use]
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Reads time from `clock` (for tests).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = SharedClock::new(clock);
        self
    }

    /// Binds the tokens to a client certificate (DER), as RFC 8705 describes: they carry
    /// `cnf: {"x5t#S256": <thumbprint>}` and a server running both the mTLS and the JWT layers
    /// accepts them only on a connection that presents this certificate, so a stolen token is
    /// useless without the certificate's key.
    #[must_use]
    pub fn bound_to_certificate(mut self, certificate_der: &[u8]) -> Self {
        use base64::Engine;
        use sha2::Digest;
        let thumbprint = sha2::Sha256::digest(certificate_der);
        self.certificate_thumbprint =
            Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(thumbprint));
        self
    }

    /// How long minted tokens live.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Mints a token for `subject` with `roles`.
    ///
    /// # Errors
    ///
    /// Signing failed (for example, a key the crypto backend refuses).
    pub fn mint<R: AsRef<str>>(&self, subject: &str, roles: &[R]) -> Result<String, MintError> {
        self.mint_at(subject, roles, self.clock.now_millis() / 1000)
    }

    fn mint_at<R: AsRef<str>>(
        &self,
        subject: &str,
        roles: &[R],
        now: u64,
    ) -> Result<String, MintError> {
        self.mint_with(&self.header, subject, roles, now, self.lifetime, Map::new())
    }

    /// A one-use token that signs a message on `channel`: typed as a message token, for this
    /// issuer's audience scoped to the channel, with its own `lifetime` and `extra` claims (the
    /// payload's digest). No access-token verifier accepts it.
    #[cfg(feature = "redis")]
    pub(crate) fn mint_message<R: AsRef<str>>(
        &self,
        subject: &str,
        roles: &[R],
        channel: &str,
        lifetime: Duration,
        mut extra: Map<String, Value>,
    ) -> Result<String, MintError> {
        use crate::jwt::{MESSAGE_TOKEN_TYPE, message_audience};
        let now = self.clock.now_millis() / 1000;
        let mut header = self.header.clone();
        header.typ = Some(MESSAGE_TOKEN_TYPE.to_owned());
        extra.insert(
            "aud".into(),
            message_audience(&self.audience, channel).into(),
        );
        let lifetime = lifetime.min(self.lifetime);
        self.mint_with(&header, subject, roles, now, lifetime, extra)
    }

    fn mint_with<R: AsRef<str>>(
        &self,
        header: &Header,
        subject: &str,
        roles: &[R],
        now: u64,
        lifetime: Duration,
        extra: Map<String, Value>,
    ) -> Result<String, MintError> {
        let roles: Vec<&str> = roles.iter().map(AsRef::as_ref).collect();
        let mut claims = serde_json::json!({
            "sub": subject,
            "roles": roles,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + lifetime.as_secs(),
            "jti": hex::encode(rand::random::<[u8; 16]>()),
        });
        if let Some(thumbprint) = &self.certificate_thumbprint {
            claims["cnf"] = serde_json::json!({ "x5t#S256": thumbprint });
        }
        if let Value::Object(claims) = &mut claims {
            claims.extend(extra);
        }
        jsonwebtoken::encode(header, &claims, &self.key).map_err(|e| MintError(e.to_string()))
    }
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("algorithm", &self.header.alg)
            .field("kid", &self.header.kid)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("lifetime", &self.lifetime)
            .field("key", &"<redacted>")
            .finish()
    }
}

fn invalid(reason: &str) -> ConfigError {
    ConfigError::Invalid {
        what: "token issuer",
        reason: reason.to_owned(),
    }
}

/// Where [`AddBearerLayer`](super::AddBearerLayer) gets the token for each request: the whole
/// `Authorization` value (`Bearer <token>`).
pub trait TokenSource: Send + Sync + 'static {
    /// The future of [`authorization`](Self::authorization). `Unpin`, so the layer can poll it
    /// in place: sources that answer at once cost no extra step.
    type Future: Future<Output = Result<HeaderValue, BoxError>> + Send + Unpin + 'static;

    /// The `Authorization` header value for the next request.
    fn authorization(&self) -> Self::Future;
}

/// A fixed token.
#[derive(Clone)]
pub struct StaticToken(pub(crate) HeaderValue);

impl StaticToken {
    /// A source that always sends `token`.
    ///
    /// # Errors
    ///
    /// A token that is not a valid header value.
    pub fn new(token: &str) -> Result<Self, ConfigError> {
        bearer(token)
            .map(Self)
            .map_err(|_| invalid("a token must be visible ASCII"))
    }
}

impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticToken(<redacted>)")
    }
}

impl TokenSource for StaticToken {
    type Future = Ready<Result<HeaderValue, BoxError>>;

    fn authorization(&self) -> Self::Future {
        ready(Ok(self.0.clone()))
    }
}

/// Tokens minted by a [`TokenIssuer`] for one service, cached and re-minted once 80 % of their
/// lifetime has passed, so a request never leaves with a token about to expire.
#[derive(Clone)]
pub struct MintedToken {
    inner: Arc<Minted>,
}

struct Minted {
    issuer: TokenIssuer,
    subject: String,
    roles: Vec<String>,
    cached: ArcSwapOption<(HeaderValue, u64)>,
}

impl MintedToken {
    /// Mints tokens for `subject` with `roles`.
    pub fn new<R: Into<String>>(
        issuer: TokenIssuer,
        subject: impl Into<String>,
        roles: impl IntoIterator<Item = R>,
    ) -> Self {
        Self {
            inner: Arc::new(Minted {
                issuer,
                subject: subject.into(),
                roles: roles.into_iter().map(Into::into).collect(),
                cached: ArcSwapOption::empty(),
            }),
        }
    }

    pub(crate) fn current(&self) -> Result<HeaderValue, BoxError> {
        let inner = &*self.inner;
        let now = inner.issuer.clock.now_millis() / 1000;
        if let Some(cached) = inner.cached.load().as_deref()
            && now < cached.1
        {
            return Ok(cached.0.clone());
        }
        let token = inner.issuer.mint_at(&inner.subject, &inner.roles, now)?;
        let value = bearer(&token)?;
        let refresh_at = now + inner.issuer.lifetime.as_secs() * 4 / 5;
        inner
            .cached
            .store(Some(Arc::new((value.clone(), refresh_at))));
        Ok(value)
    }
}

impl fmt::Debug for MintedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintedToken")
            .field("subject", &self.inner.subject)
            .field("roles", &self.inner.roles)
            .finish_non_exhaustive()
    }
}

impl TokenSource for MintedToken {
    type Future = Ready<Result<HeaderValue, BoxError>>;

    fn authorization(&self) -> Self::Future {
        ready(self.current())
    }
}

/// Any async function that returns a token: an OAuth client, a vault, a file that is
/// re-read... Wrap it with [`token_fn`].
#[derive(Clone)]
pub struct TokenFn<F>(F);

/// A [`TokenSource`] from an async function returning the token (without `Bearer `).
///
/// ```
/// use tower_zerotrust::sign::{AddBearerLayer, token_fn};
///
/// let layer = AddBearerLayer::new(token_fn(|| async {
///     Ok::<_, tower_zerotrust::BoxError>("token-from-somewhere".to_owned())
/// }));
/// ```
pub fn token_fn<F, Fut>(f: F) -> TokenFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, BoxError>> + Send + 'static,
{
    TokenFn(f)
}

impl<F> fmt::Debug for TokenFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenFn")
    }
}

impl<F, Fut> TokenSource for TokenFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, BoxError>> + Send + 'static,
{
    type Future = Pin<Box<dyn Future<Output = Result<HeaderValue, BoxError>> + Send>>;

    fn authorization(&self) -> Self::Future {
        let token = (self.0)();
        Box::pin(async move { Ok(bearer(&token.await?)?) })
    }
}

/// `Bearer <token>`, marked sensitive so HTTP/2 never indexes it.
fn bearer(token: &str) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn minted_tokens_are_reused_until_80_percent_of_their_life() {
        let clock = ManualClock::at(1_000_000_000);
        let issuer = TokenIssuer::hmac(Algorithm::HS256, &"k".repeat(32), "i", "a")
            .unwrap()
            .with_lifetime(Duration::from_secs(100))
            .with_clock(clock.clone());
        let source = MintedToken::new(issuer, "svc", ["r"]);
        let first = source.current().unwrap();
        clock.advance(Duration::from_secs(79));
        assert_eq!(source.current().unwrap(), first);
        clock.advance(Duration::from_secs(1));
        let second = source.current().unwrap();
        assert_ne!(second, first);
        assert!(second.is_sensitive());
    }

    #[test]
    fn issuers_refuse_weak_or_mismatched_keys_and_hide_them() {
        assert!(TokenIssuer::hmac(Algorithm::HS256, "short", "i", "a").is_err());
        assert!(TokenIssuer::hmac(Algorithm::RS256, &"k".repeat(32), "i", "a").is_err());
        assert!(TokenIssuer::from_pem(Algorithm::ES256, b"not a key", "i", "a").is_err());
        let issuer = TokenIssuer::hmac(Algorithm::HS256, &"s".repeat(40), "i", "a").unwrap();
        assert!(!format!("{issuer:?}").contains("sss"));
    }
}
