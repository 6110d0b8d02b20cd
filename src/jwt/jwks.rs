//! Keys from a JSON Web Key Set URL (and OIDC discovery), cached and refreshed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::ACCEPT;
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::JwkSet;

use super::JwtKey;

const DEFAULT_TTL: Duration = Duration::from_secs(300);
const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(10);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BODY_BYTES: usize = 1024 * 1024;
const MAX_KEYS: usize = 100;

/// Why a key set (or an OIDC discovery document) could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The URL is unusable: not absolute, or plain `http` to a host other than loopback.
    #[error("invalid key set URL: {0}")]
    InvalidUrl(String),
    /// The request failed or timed out.
    #[error("fetching {url} failed: {reason}")]
    Fetch {
        /// What was fetched.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// The document was not what was expected.
    #[error("{url} returned an unusable document: {reason}")]
    Document {
        /// What was fetched.
        url: String,
        /// What was wrong.
        reason: String,
    },
}

/// A JSON Web Key Set fetched from a URL, selected by `kid`, cached and refreshed:
///
/// * on first use, and whenever a token names an unknown `kid`, but at most once per
///   [`min_refresh_interval`](JwksSourceBuilder::min_refresh_interval) (10 s by default) and one
///   fetch at a time, so a flood of bogus `kid`s cannot storm the key server;
/// * in the background once the cached set is older than its
///   [`ttl`](JwksSourceBuilder::ttl) (5 min by default), without holding up requests;
/// * if the key server is down, the cached keys keep working; until a set has been fetched at
///   least once, tokens are refused with 503.
///
/// Keys without a `kid`, symmetric keys and encryption keys in the set are ignored. Plain
/// `http` is accepted only to loopback hosts, so keys cannot be swapped in transit.
///
/// Clones share the cache.
#[derive(Clone)]
pub struct JwksSource {
    inner: Arc<Inner>,
}

struct Inner {
    url: Uri,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    keys: ArcSwap<Keys>,
    ttl: Duration,
    min_refresh_interval: Duration,
    timeout: Duration,
    /// One fetch at a time; waiters re-check the cache when it is their turn.
    fetching: tokio::sync::Mutex<()>,
    last_attempt: Mutex<Option<Instant>>,
    background: AtomicBool,
    fetches: AtomicU64,
    /// Counts the key sets stored.
    generation: AtomicU64,
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, JwtKey>,
    fetched_at: Option<Instant>,
}

/// Builds a [`JwksSource`].
#[derive(Debug, Clone)]
#[must_use]
pub struct JwksSourceBuilder {
    url: String,
    ttl: Duration,
    min_refresh_interval: Duration,
    timeout: Duration,
}

impl JwksSourceBuilder {
    /// How long a fetched set is fresh (default 5 min); older sets are refreshed in the
    /// background.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The shortest time between two fetches caused by unknown `kid`s (default 10 s).
    pub fn min_refresh_interval(mut self, interval: Duration) -> Self {
        self.min_refresh_interval = interval;
        self
    }

    /// How long one fetch may take (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the URL and builds the source. Nothing is fetched yet.
    ///
    /// # Errors
    ///
    /// [`JwksError::InvalidUrl`].
    pub fn build(self) -> Result<JwksSource, JwksError> {
        let url = checked_url(&self.url)?;
        Ok(JwksSource {
            inner: Arc::new(Inner {
                url,
                client: http_client()?,
                keys: ArcSwap::default(),
                ttl: self.ttl,
                min_refresh_interval: self.min_refresh_interval,
                timeout: self.timeout,
                fetching: tokio::sync::Mutex::new(()),
                last_attempt: Mutex::new(None),
                background: AtomicBool::new(false),
                fetches: AtomicU64::new(0),
                generation: AtomicU64::new(0),
            }),
        })
    }
}

impl JwksSource {
    /// A builder for the key set at `url`.
    pub fn builder(url: impl Into<String>) -> JwksSourceBuilder {
        JwksSourceBuilder {
            url: url.into(),
            ttl: DEFAULT_TTL,
            min_refresh_interval: DEFAULT_MIN_REFRESH,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// OIDC discovery: reads `{issuer}/.well-known/openid-configuration`, checks that it names
    /// the same issuer, and returns the source for its `jwks_uri` (keys fetched on first use).
    ///
    /// # Errors
    ///
    /// An unreachable or unusable discovery document, or an issuer mismatch.
    pub async fn discover(issuer: &str) -> Result<JwksSource, JwksError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let uri = checked_url(&url)?;
        let body = get(&http_client()?, &uri, DEFAULT_TIMEOUT).await?;
        let document = |reason: &str| JwksError::Document {
            url: url.clone(),
            reason: reason.to_owned(),
        };
        let json: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| document("not JSON"))?;
        if json.get("issuer").and_then(|v| v.as_str()) != Some(issuer) {
            return Err(document("its `issuer` differs from the one asked for"));
        }
        let jwks_uri = json
            .get("jwks_uri")
            .and_then(|v| v.as_str())
            .ok_or_else(|| document("no `jwks_uri`"))?;
        JwksSource::builder(jwks_uri).build()
    }

    /// Fetches the set now, replacing the cached keys on success. Returns how many usable keys
    /// it holds.
    ///
    /// # Errors
    ///
    /// The fetch failed or the set holds no usable key; the cached keys are kept.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let _one_at_a_time = self.inner.fetching.lock().await;
        self.fetch().await
    }

    /// How many fetches this source has made (for metrics and tests).
    pub fn fetch_count(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// Changes with every key set stored.
    pub(crate) fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// Whether a set has been fetched successfully at least once.
    pub fn is_loaded(&self) -> bool {
        self.inner.keys.load().fetched_at.is_some()
    }

    /// The key with this id from the cached set; starts a background refresh when the set is
    /// older than its TTL.
    pub(crate) fn key(&self, kid: &str) -> Option<JwtKey> {
        let keys = self.inner.keys.load();
        if keys
            .fetched_at
            .is_some_and(|at| at.elapsed() >= self.inner.ttl)
        {
            self.refresh_in_background();
        }
        keys.by_kid.get(kid).cloned()
    }

    /// Called when a token names a `kid` the cache lacks: fetch, unless one just happened.
    pub(crate) async fn refresh_unknown_key(self) {
        let _one_at_a_time = self.inner.fetching.lock().await;
        let recent = self
            .last_attempt()
            .is_some_and(|at| at.elapsed() < self.inner.min_refresh_interval);
        if !recent {
            let _ = self.fetch().await;
        }
    }

    fn refresh_in_background(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.inner.background.swap(true, Ordering::AcqRel) {
            return;
        }
        let source = self.clone();
        runtime.spawn(async move {
            let _ = source.refresh().await;
            source.inner.background.store(false, Ordering::Release);
        });
    }

    fn last_attempt(&self) -> Option<Instant> {
        *self
            .inner
            .last_attempt
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    async fn fetch(&self) -> Result<usize, JwksError> {
        let inner = &*self.inner;
        inner.fetches.fetch_add(1, Ordering::Relaxed);
        *inner
            .last_attempt
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        let result = async {
            let body = get(&inner.client, &inner.url, inner.timeout).await?;
            parse_key_set(&body).map_err(|reason| JwksError::Document {
                url: inner.url.to_string(),
                reason,
            })
        }
        .await;
        match result {
            Ok(by_kid) => {
                let count = by_kid.len();
                inner.keys.store(Arc::new(Keys {
                    by_kid,
                    fetched_at: Some(Instant::now()),
                }));
                inner.generation.fetch_add(1, Ordering::AcqRel);
                tracing::debug!(target: "tower_zerotrust::jwt", url = %inner.url, keys = count, "key set refreshed");
                Ok(count)
            }
            Err(error) => {
                tracing::warn!(target: "tower_zerotrust::jwt", %error, "key set refresh failed; keeping cached keys");
                Err(error)
            }
        }
    }
}

impl std::fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksSource")
            .field("url", &self.inner.url)
            .field("keys", &self.inner.keys.load().by_kid.len())
            .finish_non_exhaustive()
    }
}

fn parse_key_set(body: &[u8]) -> Result<HashMap<String, JwtKey>, String> {
    let set: JwkSet = serde_json::from_slice(body).map_err(|_| "not a JWK set".to_owned())?;
    let by_kid: HashMap<String, JwtKey> = set
        .keys
        .iter()
        .take(MAX_KEYS)
        .filter_map(|jwk| JwtKey::from_jwk(jwk).ok())
        .filter_map(|key| Some((key.kid()?.to_owned(), key)))
        .collect();
    if by_kid.is_empty() {
        return Err("no usable signing key with a `kid`".to_owned());
    }
    Ok(by_kid)
}

fn checked_url(url: &str) -> Result<Uri, JwksError> {
    let invalid = |reason: &str| JwksError::InvalidUrl(format!("{url}: {reason}"));
    let uri: Uri = url.parse().map_err(|_| invalid("not a URL"))?;
    let host = uri.host().ok_or_else(|| invalid("no host"))?;
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if crate::peer::is_loopback_host(host) => Ok(uri),
        Some("http") => Err(invalid("plain http is accepted only to loopback")),
        _ => Err(invalid("https is required")),
    }
}

fn http_client() -> Result<Client<HttpsConnector<HttpConnector>, Empty<Bytes>>, JwksError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .map_err(|e| JwksError::InvalidUrl(format!("TLS setup failed: {e}")))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// GETs a small JSON document, bounded in time and size.
async fn get(
    client: &Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    url: &Uri,
    timeout: Duration,
) -> Result<Bytes, JwksError> {
    let failed = |reason: String| JwksError::Fetch {
        url: url.to_string(),
        reason,
    };
    let request = Request::get(url.clone())
        .header(ACCEPT, "application/json")
        .body(Empty::new())
        .map_err(|e| failed(e.to_string()))?;
    let fetch = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| failed(e.to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("status {}", response.status())));
        }
        Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map(|body| body.to_bytes())
            .map_err(|e| failed(e.to_string()))
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| failed("timed out".into()))?
}
