//! Keys from a JSON Web Key Set URL (and OIDC discovery), cached and refreshed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
use sha2::Digest;

use super::JwtKey;
use crate::error::ConfigError;

const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// The shortest scheduled refresh interval.
const MIN_TTL: Duration = Duration::from_millis(100);
/// Requests waiting for one fetch at most; more are refused at once.
const MAX_WAITERS: usize = 1024;
const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(10);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BODY_BYTES: usize = 1024 * 1024;
const MAX_KEYS: usize = 100;

/// Why a key set (or an OIDC discovery document) could not be used.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The issuer's URL is unusable: not absolute, or plain `http` to a host other than
    /// loopback.
    #[error(transparent)]
    Config(#[from] ConfigError),
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
/// * on a schedule, whatever the traffic: every [`ttl`](JwksSourceBuilder::ttl) (5 min by
///   default), or as the response's `Cache-Control: max-age` says, kept between
///   [`min_refresh_interval`](JwksSourceBuilder::min_refresh_interval) and the TTL. A key the
///   provider withdraws stops verifying at the next refresh, and tokens remembered as verified
///   are verified again;
/// * when a token names an unknown `kid`, at most once per `min_refresh_interval` (10 s by
///   default, counted from the end of the last fetch). One fetch is in flight at a time and
///   every request waiting for a key shares its result, so a flood of bogus `kid`s cannot storm
///   the key server and a hanging key server holds each request up for one fetch timeout at
///   most. While fetches fail, unknown `kid`s are refused at once, and at most 1024 requests
///   wait for a fetch (more are refused at once);
/// * if the key server is down, the cached keys keep working; until a set has been fetched at
///   least once, tokens are refused with 503. A set that the provider publishes empty is
///   honoured: every token is refused, and an error is logged.
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
    fetch: Mutex<FetchState>,
    /// Counts finished fetches; waiters watch it.
    finished: tokio::sync::watch::Sender<u64>,
    waiters: AtomicUsize,
    scheduled: AtomicBool,
    fetches: AtomicU64,
    /// Changes whenever the stored key set changes.
    generation: AtomicU64,
}

/// The one fetch in flight, and how the last one went.
#[derive(Default)]
struct FetchState {
    in_flight: bool,
    last_finished: Option<Instant>,
    last: Option<Result<usize, JwksError>>,
    /// How long the last successful response said it may be kept.
    max_age: Option<Duration>,
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, JwtKey>,
    fetched_at: Option<Instant>,
    /// SHA-256 of the document the keys came from: an unchanged set keeps remembered tokens.
    digest: [u8; 32],
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
    /// How often the set is fetched again, whatever the traffic (default 5 min, at least
    /// 100 ms); a shorter `Cache-Control: max-age` from the key server wins, down to
    /// [`min_refresh_interval`](Self::min_refresh_interval).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The shortest time between the end of a fetch and a fetch caused by an unknown `kid`
    /// (default 10 s).
    pub fn min_refresh_interval(mut self, interval: Duration) -> Self {
        self.min_refresh_interval = interval;
        self
    }

    /// How long one fetch may take (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the URL and builds the source. Nothing is fetched yet; the scheduled refresh
    /// starts with the first use inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// A URL that is not absolute ([`ConfigError::Invalid`]), or plain `http` to a host other
    /// than loopback ([`ConfigError::Insecure`]).
    pub fn build(self) -> Result<JwksSource, ConfigError> {
        let url = checked_url(&self.url)?;
        Ok(JwksSource {
            inner: Arc::new(Inner {
                url,
                client: http_client()?,
                keys: ArcSwap::default(),
                ttl: self.ttl.max(MIN_TTL),
                min_refresh_interval: self.min_refresh_interval,
                timeout: self.timeout,
                fetch: Mutex::default(),
                finished: tokio::sync::watch::Sender::new(0),
                waiters: AtomicUsize::new(0),
                scheduled: AtomicBool::new(false),
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
        let (body, _) = get(&http_client()?, &uri, DEFAULT_TIMEOUT).await?;
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
        JwksSource::builder(jwks_uri)
            .build()
            .map_err(|e| document(&format!("its `jwks_uri` is unusable: {e}")))
    }

    /// Fetches the set now (or waits for the fetch already in flight), replacing the cached
    /// keys on success. Returns how many usable keys it holds.
    ///
    /// # Errors
    ///
    /// The fetch failed; the cached keys are kept.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        self.schedule();
        self.await_fetch(|_| true).await;
        self.inner
            .lock()
            .last
            .clone()
            .unwrap_or(Ok(self.inner.keys.load().by_kid.len()))
    }

    /// How many fetches this source has made (for metrics and tests).
    pub fn fetch_count(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// Changes whenever the stored key set changes.
    pub(crate) fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// Whether a set has been fetched successfully at least once.
    pub fn is_loaded(&self) -> bool {
        self.inner.keys.load().fetched_at.is_some()
    }

    /// The key with this id from the cached set.
    pub(crate) fn key(&self, kid: &str) -> Option<JwtKey> {
        self.schedule();
        self.inner.keys.load().by_kid.get(kid).cloned()
    }

    /// Called when a token names a `kid` the cache lacks: wait for the fetch in flight, or
    /// start one unless the last one ended less than `min_refresh_interval` ago. Returns at
    /// once while fetches fail or too many requests wait.
    pub(crate) async fn refresh_unknown_key(self) {
        let min_interval = self.inner.min_refresh_interval;
        self.await_fetch(|state| {
            state
                .last_finished
                .is_none_or(|at| at.elapsed() >= min_interval)
        })
        .await;
    }

    /// Waits for the fetch in flight or, when `may_start` allows, for one started now. Returns
    /// at once when there is none, or when too many requests wait already; waits at most the
    /// fetch timeout (and a second), which only a fetch task that never reports would reach.
    async fn await_fetch(&self, may_start: impl FnOnce(&FetchState) -> bool) {
        let inner = &*self.inner;
        let mut finished = inner.finished.subscribe();
        let seen = *finished.borrow_and_update();
        let fetching = {
            let mut state = inner.lock();
            state.in_flight || (may_start(&state) && self.start_fetch(&mut state))
        };
        if !fetching {
            return;
        }
        // Counted out again however the wait ends, a request dropped midway included.
        let _waiting = Waiting::enter(&inner.waiters);
        if inner.waiters.load(Ordering::Acquire) > MAX_WAITERS {
            return;
        }
        let _ = tokio::time::timeout(
            inner.timeout + Duration::from_secs(1),
            finished.wait_for(|n| *n != seen),
        )
        .await;
    }

    /// Spawns the fetch, in its own task so that no request that gives up cancels it.
    /// `false` outside a Tokio runtime.
    fn start_fetch(&self, state: &mut FetchState) -> bool {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        state.in_flight = true;
        let source = self.clone();
        runtime.spawn(async move { source.run_fetch().await });
        true
    }

    /// Fetches, records the outcome and wakes every waiter. `start_fetch` has set `in_flight`.
    async fn run_fetch(&self) {
        let mut done = FetchDone {
            inner: &self.inner,
            outcome: None,
        };
        done.outcome = Some(self.fetch().await);
    }

    /// Starts the scheduled refresh once, inside a runtime. It holds the source weakly and
    /// ends when the last clone is dropped.
    fn schedule(&self) {
        if self.inner.scheduled.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.inner.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        let mut finished = self.inner.finished.subscribe();
        runtime.spawn(async move {
            // A runtime that ends takes the task with it: the next use schedules again.
            let _unschedule = Unschedule(weak.clone());
            // Counted from the end of the last fetch, whatever caused it.
            let _ = finished.wait_for(|n| *n > 0).await;
            loop {
                let Some(due) = weak.upgrade().and_then(|inner| inner.next_refresh_at()) else {
                    return;
                };
                if Instant::now() < due {
                    tokio::time::sleep_until(due.into()).await;
                    continue;
                }
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let _ = JwksSource { inner }.refresh().await;
            }
        });
    }

    async fn fetch(&self) -> Result<(usize, Option<Duration>), JwksError> {
        let inner = &*self.inner;
        inner.fetches.fetch_add(1, Ordering::Relaxed);
        let result = async {
            let (body, max_age) = get(&inner.client, &inner.url, inner.timeout).await?;
            let by_kid = parse_key_set(&body).map_err(|reason| JwksError::Document {
                url: inner.url.to_string(),
                reason,
            })?;
            Ok((by_kid, sha2::Sha256::digest(&body).into(), max_age))
        }
        .await;
        match result {
            Ok((by_kid, digest, max_age)) => {
                let count = by_kid.len();
                let changed = inner.keys.load().digest != digest;
                inner.keys.store(Arc::new(Keys {
                    by_kid,
                    fetched_at: Some(Instant::now()),
                    digest,
                }));
                if changed {
                    inner.generation.fetch_add(1, Ordering::AcqRel);
                }
                if count == 0 {
                    tracing::error!(target: "tower_zerotrust::jwt", url = %inner.url, "the key set is empty: every token is refused until it holds a usable signing key");
                } else {
                    tracing::debug!(target: "tower_zerotrust::jwt", url = %inner.url, keys = count, "key set refreshed");
                }
                Ok((count, max_age))
            }
            Err(error) => {
                tracing::warn!(target: "tower_zerotrust::jwt", %error, "key set refresh failed; keeping cached keys");
                Err(error)
            }
        }
    }
}

/// Ends a fetch however its task ends (done, cancelled with its runtime, panicked): clears
/// `in_flight`, records the outcome and wakes the waiters, so that a lost task never blocks
/// later fetches.
struct FetchDone<'a> {
    inner: &'a Inner,
    outcome: Option<Result<(usize, Option<Duration>), JwksError>>,
}

impl Drop for FetchDone<'_> {
    fn drop(&mut self) {
        let outcome = self.outcome.take().unwrap_or_else(|| {
            Err(JwksError::Fetch {
                url: self.inner.url.to_string(),
                reason: "the fetch did not finish".into(),
            })
        });
        {
            let mut state = self.inner.lock();
            state.in_flight = false;
            state.last_finished = Some(Instant::now());
            if let Ok((_, max_age)) = &outcome {
                state.max_age = *max_age;
            }
            state.last = Some(outcome.map(|(count, _)| count));
        }
        self.inner.finished.send_modify(|n| *n += 1);
    }
}

/// One request waiting for a fetch, counted while it waits.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Lets the next use start the scheduled refresh again once its task is gone.
struct Unschedule(std::sync::Weak<Inner>);

impl Drop for Unschedule {
    fn drop(&mut self) {
        if let Some(inner) = self.0.upgrade() {
            inner.scheduled.store(false, Ordering::Release);
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, FetchState> {
        self.fetch.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the set is due again: the end of the last fetch plus the key server's `max-age`
    /// within bounds, or the TTL.
    fn next_refresh_at(&self) -> Option<Instant> {
        let state = self.lock();
        let interval = match state.max_age {
            Some(max_age) => max_age
                .max(self.min_refresh_interval)
                .max(MIN_TTL)
                .min(self.ttl),
            None => self.ttl,
        };
        Some(state.last_finished? + interval)
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
    Ok(by_kid)
}

fn checked_url(url: &str) -> Result<Uri, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        what: "key set URL",
        reason: format!("{url}: {reason}"),
    };
    let uri: Uri = url.parse().map_err(|_| invalid("not a URL"))?;
    let host = uri.host().ok_or_else(|| invalid("no host"))?;
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if crate::peer::is_loopback_host(host) => Ok(uri),
        Some("http") => Err(ConfigError::Insecure(
            "key sets are fetched over plain http only from loopback: use https",
        )),
        _ => Err(invalid("https is required")),
    }
}

fn http_client() -> Result<Client<HttpsConnector<HttpConnector>, Empty<Bytes>>, ConfigError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .map_err(|e| ConfigError::Invalid {
            what: "key set client",
            reason: format!("TLS setup failed: {e}"),
        })?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// GETs a small JSON document, bounded in time and size, with its `Cache-Control: max-age`.
async fn get(
    client: &Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    url: &Uri,
    timeout: Duration,
) -> Result<(Bytes, Option<Duration>), JwksError> {
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
        let max_age = max_age(response.headers());
        Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map(|body| (body.to_bytes(), max_age))
            .map_err(|e| failed(e.to_string()))
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| failed("timed out".into()))?
}

/// `Cache-Control: max-age=<seconds>`, if the response says so.
fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|directive| {
            let (name, seconds) = directive.trim().split_once('=')?;
            name.eq_ignore_ascii_case("max-age")
                .then(|| seconds.trim_matches('"').parse().ok())
                .flatten()
                .map(Duration::from_secs)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        let headers = |value: &'static str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::CACHE_CONTROL, value.parse().unwrap());
            headers
        };
        assert_eq!(
            max_age(&headers("public, max-age=600")),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age(&headers("no-cache")), None);
        assert_eq!(max_age(&headers("max-age=soon")), None);
        assert_eq!(max_age(&http::HeaderMap::new()), None);
    }
}
