//! The rate limit layer: one check per request, 429 over quota, the quota in the headers.

use std::task::{Context, Poll, ready};

use http::header::{HeaderName, HeaderValue};
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::config::RateLimitConfig;
use super::limiter::Decision;
use crate::body::ResponseBody;
use crate::future::RejectOr;
use crate::principal::Principal;
use crate::reject::{Pending, Rejection};

/// Limits each principal (or, for requests nobody has proven, each client address) to its
/// quota, with governor's GCRA: 429 `Too Many Requests` with `Retry-After` over quota
/// (gRPC: RESOURCE_EXHAUSTED). Every response carries `RateLimit-Limit` (the burst) and
/// `RateLimit-Remaining`.
///
/// Place it after authentication so it can key on the principal.
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_zerotrust::rate_limit::{RateLimitConfig, RateLimitLayer, RateQuota};
///
/// # fn main() -> Result<(), tower_zerotrust::ConfigError> {
/// let limits = RateLimitConfig::builder()
///     .quota(RateQuota::new(100, 50))                  // seed 004: average 100, burst 50
///     .role_quota("admin", RateQuota::new(1000, 500))
///     .build()?;
/// let app: Router = Router::new()
///     .route("/models", get(|| async { "[]" }))
///     .layer(RateLimitLayer::new(limits));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    config: RateLimitConfig,
}

impl RateLimitLayer {
    /// A layer with `config`.
    pub fn new(config: RateLimitConfig) -> Self {
        Self { config }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service made by [`RateLimitLayer`].
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    config: RateLimitConfig,
}

impl<S> RateLimit<S> {
    inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let decision = self.config.check(req.extensions(), req.headers());
        let quota = match decision {
            Decision::Allow { limit, remaining } => Some((limit, remaining)),
            Decision::Deny { limit, .. } => Some((limit, 0)),
            Decision::Saturated => None,
        };
        let inner = match decision.rejection() {
            None => RejectOr::call(self.inner.call(req)),
            Some(rejection) => refuse(rejection, &req),
        };
        ResponseFuture { inner, quota }
    }
}

/// Logs the refusal (seed 003: time, caller, endpoint, reason) and answers with it.
fn refuse<F, B>(rejection: Rejection, req: &Request<B>) -> RejectOr<F> {
    tracing::debug!(
        target: "tower_zerotrust::rate_limit",
        caller = req.extensions().get::<Principal>().map(Principal::id),
        method = %req.method(),
        path = req.uri().path(),
        code = rejection.code(),
        "request refused"
    );
    RejectOr::reject(Pending::new(rejection, req.headers()))
}

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");

pin_project! {
    /// The response future of [`RateLimit`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: RejectOr<F>,
        quota: Option<(u32, u32)>,
    }
}

impl<F, B, E> std::future::Future for ResponseFuture<F>
where
    F: std::future::Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if let Some((limit, remaining)) = *this.quota {
            let headers = response.headers_mut();
            headers.insert(RATELIMIT_LIMIT, HeaderValue::from(limit));
            headers.insert(RATELIMIT_REMAINING, HeaderValue::from(remaining));
        }
        Poll::Ready(Ok(response))
    }
}
