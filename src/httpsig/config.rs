//! The public face of the verifier and the signer: keys, the configuration builder, the
//! signer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method, Uri};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};

use super::algorithm::{SigningKey, VerifyingKey};
use super::base::Derived;
use super::layer::Config;
use super::sign::Signer;
use super::verify::{Key, Selection, Settings};
use crate::clock::{Clock, SharedClock, SystemClock};
use crate::error::{ConfigError, FirstError};
use crate::public::PublicPaths;

/// A key that verifies one algorithm's signatures: the algorithm comes from the key, never
/// from the message (an `alg` parameter that disagrees is refused).
pub struct HttpSigKey(VerifyingKey);

impl HttpSigKey {
    /// An `hmac-sha256` shared secret (at least 32 bytes).
    ///
    /// # Errors
    ///
    /// A shorter secret.
    pub fn hmac_sha256(secret: &[u8]) -> Result<Self, ConfigError> {
        VerifyingKey::hmac_sha256(secret).map(Self)
    }

    /// A public key in PEM (`-----BEGIN PUBLIC KEY-----`) for `algorithm`: `ed25519`,
    /// `ecdsa-p256-sha256`, `ecdsa-p384-sha384`, `rsa-pss-sha512` or `rsa-v1_5-sha256`.
    ///
    /// # Errors
    ///
    /// An unknown algorithm, or a key that is not of that algorithm's type.
    pub fn public_key_pem(algorithm: &str, pem: &[u8]) -> Result<Self, ConfigError> {
        let der =
            SubjectPublicKeyInfoDer::from_pem_slice(pem).map_err(|_| ConfigError::Invalid {
                what: "HTTP message signature key",
                reason: "no PUBLIC KEY in the PEM".into(),
            })?;
        VerifyingKey::public_key(algorithm, der.as_ref()).map(Self)
    }

    /// The algorithm's name in RFC 9421's registry.
    pub fn algorithm(&self) -> &'static str {
        self.0.algorithm()
    }
}

impl std::fmt::Debug for HttpSigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HttpSigKey")
            .field(&self.algorithm())
            .finish()
    }
}

/// What [`VerifyHttpSigLayer`](super::VerifyHttpSigLayer) accepts. Cheap to clone.
#[derive(Clone)]
pub struct HttpSigConfig {
    pub(crate) inner: Arc<Config>,
}

impl std::fmt::Debug for HttpSigConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSigConfig")
            .field("keys", &self.inner.settings.keys.len())
            .finish_non_exhaustive()
    }
}

impl HttpSigConfig {
    /// A builder with the defaults: `created` within ±30 s (plus 5 s of clock skew), a nonce
    /// required, bodies read up to 1 MiB, the scheme `https`, exactly one signature per
    /// request. Add at least one key.
    pub fn builder() -> HttpSigConfigBuilder {
        HttpSigConfigBuilder::default()
    }
}

/// Builds an [`HttpSigConfig`]; [`build`](Self::build) checks it.
#[must_use]
pub struct HttpSigConfigBuilder {
    keys: HashMap<String, Key>,
    selection: Selection,
    window: Duration,
    max_clock_skew: Duration,
    require_nonce: bool,
    scheme: &'static str,
    max_body: usize,
    clock: SharedClock,
    public_paths: PublicPaths,
    optional: bool,
    error: FirstError,
}

impl Default for HttpSigConfigBuilder {
    fn default() -> Self {
        Self {
            keys: HashMap::new(),
            selection: Selection::Only,
            window: Duration::from_secs(30),
            max_clock_skew: Duration::from_secs(5),
            require_nonce: true,
            scheme: "https",
            max_body: 1024 * 1024,
            clock: SharedClock::default(),
            public_paths: PublicPaths::default(),
            optional: false,
            error: FirstError::default(),
        }
    }
}

impl std::fmt::Debug for HttpSigConfigBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSigConfigBuilder")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl HttpSigConfigBuilder {
    /// Accepts signatures made with `key` under `keyid`; they prove `principal` (a service
    /// identity, like an HMAC caller: give it roles in the authorization policy).
    pub fn key(
        mut self,
        keyid: impl Into<String>,
        key: HttpSigKey,
        principal: impl Into<String>,
    ) -> Self {
        let (keyid, principal) = (keyid.into(), principal.into());
        let valid = |text: &str| {
            !text.is_empty() && text.len() <= 128 && text.bytes().all(|b| b.is_ascii_graphic())
        };
        if !valid(&keyid)
            || !valid(&principal)
            || principal.starts_with(crate::principal::TOKEN_SUBJECT_PREFIX)
        {
            self.error.keep(Err(ConfigError::Invalid {
                what: "HTTP message signature key",
                reason: "key ids and principals are 1 to 128 visible ASCII characters, and a principal is not a token subject (jwt:...)".into(),
            }));
            return self;
        }
        self.keys.insert(
            keyid,
            Key {
                key: key.0,
                principal: Arc::from(principal),
                roles: Vec::new(),
            },
        );
        self
    }

    /// The same, and the signature also carries these roles (as a token's roles claim does);
    /// the authorization policy may give the principal more.
    pub fn key_with_roles<I, R>(
        self,
        keyid: impl Into<String>,
        key: HttpSigKey,
        principal: impl Into<String>,
        roles: I,
    ) -> Self
    where
        I: IntoIterator<Item = R>,
        R: Into<String>,
    {
        let keyid = keyid.into();
        let mut this = self.key(keyid.clone(), key, principal);
        if let Some(entry) = this.keys.get_mut(&keyid) {
            entry.roles = roles.into_iter().map(Into::into).collect();
        }
        this
    }

    /// Verifies the signature with this label (others are ignored).
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.selection = Selection::Label(label.into());
        self
    }

    /// Verifies the one signature whose `tag` parameter is `tag` (others are ignored).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.selection = Selection::Tag(tag.into());
        self
    }

    /// How far `created` may be from now, either way (default 30 s).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How far apart the clocks of signers and replicas may be (default 5 s): added to the
    /// window and to how long nonces are remembered.
    pub fn max_clock_skew(mut self, skew: Duration) -> Self {
        self.max_clock_skew = skew;
        self
    }

    /// Relaxation: accepts signatures without a `nonce` (a captured request can then be
    /// replayed within the window).
    pub fn allow_missing_nonce(mut self) -> Self {
        self.require_nonce = false;
        self
    }

    /// How clients reach this service, `https` (the default) or `http`: signed as `@scheme`
    /// and in `@target-uri`.
    pub fn scheme(mut self, scheme: &'static str) -> Self {
        self.scheme = scheme;
        self
    }

    /// The longest body read to check its digest (default 1 MiB; 413 beyond).
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// A path (exact match, such as `/health`) that passes without a signature; its body is
    /// passed on unread.
    pub fn public_path(mut self, path: impl Into<String>) -> Self {
        let inserted = self.public_paths.insert(path.into());
        self.error.keep(inserted);
        self
    }

    /// Lets requests without signature fields through without a principal (their body unread),
    /// so that another authentication layer can prove them; a 401 for nobody proven then names
    /// `Signature` among the schemes. A signature that is present but bad is still refused.
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
    /// An invalid key id or principal given earlier, no key, a scheme other than `http` or
    /// `https`, a window over 1 h or a skew over 1 h.
    pub fn build(self) -> Result<HttpSigConfig, ConfigError> {
        self.error.check()?;
        if self.keys.is_empty() {
            return Err(ConfigError::NoKeys);
        }
        let invalid = |reason: &str| ConfigError::Invalid {
            what: "HTTP message signatures",
            reason: reason.to_owned(),
        };
        if !matches!(self.scheme, "http" | "https") {
            return Err(invalid("the scheme is http or https"));
        }
        let hour = Duration::from_secs(3600);
        if self.window.is_zero() || self.window > hour || self.max_clock_skew > hour {
            return Err(invalid(
                "the window is 1 s to 1 h, the clock skew at most 1 h",
            ));
        }
        let window = self.window + self.max_clock_skew;
        Ok(HttpSigConfig {
            inner: Arc::new(Config {
                settings: Settings {
                    keys: self.keys,
                    selection: self.selection,
                    required: vec![Derived::Method, Derived::Authority, Derived::Path],
                    window,
                    require_nonce: self.require_nonce,
                    clock: self.clock,
                },
                max_body: self.max_body,
                scheme: self.scheme,
                // A request is acceptable until `created + window`, recorded as early as
                // `created - window`: its nonce is remembered for twice the window.
                nonce_ttl: window * 2,
                public_paths: self.public_paths,
                optional: self.optional,
            }),
        })
    }
}

/// Signs requests per RFC 9421 with one key: `Signature-Input`, `Signature`, and for a body
/// its `Content-Digest`, covering `@method`, `@authority`, `@path`, `@query` and the digest,
/// with `created` (now), a random `nonce`, `keyid` and `alg`.
pub struct HttpSigSigner(Signer);

impl HttpSigSigner {
    /// An `hmac-sha256` signer.
    ///
    /// # Errors
    ///
    /// A secret shorter than 32 bytes.
    pub fn hmac_sha256(keyid: impl Into<String>, secret: &[u8]) -> Result<Self, ConfigError> {
        Ok(Self::with_key(
            keyid,
            SigningKey::hmac_sha256(secret)?,
            "hmac-sha256",
        ))
    }

    /// An `ed25519` signer from a PKCS#8 private key in PEM (`-----BEGIN PRIVATE KEY-----`).
    ///
    /// # Errors
    ///
    /// No Ed25519 private key in the PEM.
    pub fn ed25519_pem(keyid: impl Into<String>, pem: &[u8]) -> Result<Self, ConfigError> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem).map_err(|_| ConfigError::Invalid {
            what: "HTTP message signature key",
            reason: "no PRIVATE KEY (PKCS#8) in the PEM".into(),
        })?;
        Ok(Self::with_key(
            keyid,
            SigningKey::ed25519_pkcs8(der.secret_pkcs8_der())?,
            "ed25519",
        ))
    }

    fn with_key(keyid: impl Into<String>, key: SigningKey, algorithm: &'static str) -> Self {
        Self(Signer {
            keyid: keyid.into(),
            key,
            algorithm,
            label: "sig1".to_owned(),
        })
    }

    /// Signs as `label` (default `sig1`).
    #[must_use]
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.0.label = label.into();
        self
    }

    /// Adds the signature fields (and `Content-Digest` for a non-empty `body`) to `headers`
    /// for a request to `uri`, which must be absolute: its scheme and authority are signed.
    ///
    /// # Errors
    ///
    /// A key id or label that is not a structured-field string or key.
    pub fn sign(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &mut HeaderMap,
        body: &[u8],
    ) -> Result<(), ConfigError> {
        let created = i64::try_from(SystemClock.now_millis() / 1000).unwrap_or(i64::MAX);
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        self.0
            .sign(method, uri, headers, body, created, &nonce)
            .map_err(|error| ConfigError::Invalid {
                what: "HTTP message signature",
                reason: error.to_string(),
            })
    }
}

impl std::fmt::Debug for HttpSigSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSigSigner")
            .field("keyid", &self.0.keyid)
            .field("algorithm", &self.0.algorithm)
            .finish_non_exhaustive()
    }
}
