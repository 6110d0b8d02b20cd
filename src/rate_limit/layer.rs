//! The rate limit layer: one check per request, 429 over quota, the quota in the headers.

use std::task::{Context, Poll, ready};

use http::header::{HeaderName, HeaderValue};
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::config::{Check, RateLimitConfig};
use super::limiter::{Decision, PendingDecision};
use crate::body::ResponseBody;
use crate::decision::{Enforcement, Note, ShadowRefusal, tell};
use crate::future::RejectOr;
use crate::principal::Principal;
use crate::reject::{Origin, Pending};

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
///     .quota(RateQuota::new(100, 50))                  // average 100, burst 50
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
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let enforcement = self.config.inner.enforcement;
        match self.config.check(req.extensions(), req.headers()) {
            Check::Now(decision) => {
                ResponseFuture::decided(decide(decision, enforcement, &mut self.inner, req))
            }
            #[cfg(feature = "redis")]
            Check::Shared(decision) => {
                // The shared store answers later: take the inner service that is ready and
                // leave a clone in its place.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture {
                    state: State::Deciding {
                        decision,
                        call: Some(Box::new((inner, req, enforcement))),
                    },
                }
            }
        }
    }
}

/// Calls the inner service, or refuses, as `decision` says; in shadow mode a refusal is
/// recorded and the request goes through.
fn decide<S, ReqBody, ResBody>(
    decision: Decision,
    enforcement: Enforcement,
    inner: &mut S,
    req: Request<ReqBody>,
) -> (RejectOr<S::Future>, Option<(u32, u32)>)
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    let outcome = match decision.rejection() {
        None => RejectOr::call(inner.call(req)),
        Some(rejection) => {
            tracing::debug!(
                target: "tower_zerotrust::rate_limit",
                caller = req.extensions().get::<Principal>().map(Principal::id),
                method = %req.method(),
                path = req.uri().path(),
                code = rejection.code(),
                mode = enforcement.as_str(),
                "request refused"
            );
            match enforcement {
                Enforcement::Enforce => RejectOr::reject(Pending::new(rejection, req.headers())),
                Enforcement::Shadow => {
                    let refusal = ShadowRefusal {
                        layer: Origin::RateLimit.as_str(),
                        code: rejection.code(),
                    };
                    tell(req.extensions(), Note::Shadow(refusal));
                    RejectOr::call(inner.call(req))
                }
            }
        }
    };
    (outcome, decision.quota_headers())
}

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");

pin_project! {
    /// The response future of [`RateLimit`].
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        // The shared store is deciding; the request waits with the service that will take it.
        // Boxed: the wait is a network round trip, and every future of the in-process path
        // stays small (futures are moved at each layer, and boxed by axum).
        Deciding {
            decision: PendingDecision,
            call: Option<Box<(S, Request<ReqBody>, Enforcement)>>,
        },
        Decided {
            #[pin]
            outcome: RejectOr<S::Future>,
            quota: Option<(u32, u32)>,
        },
    }
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn decided((outcome, quota): (RejectOr<S::Future>, Option<(u32, u32)>)) -> Self {
        Self {
            state: State::Decided { outcome, quota },
        }
    }
}

impl<S, ReqBody, ResBody> std::future::Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Deciding { decision, call } => {
                    let decision = ready!(decision.as_mut().poll(cx));
                    let (mut inner, req, enforcement) =
                        *call.take().expect("polled after completion");
                    let (outcome, quota) = decide(decision, enforcement, &mut inner, req);
                    this.state.set(State::Decided { outcome, quota });
                }
                StateProj::Decided { outcome, quota } => {
                    let mut response = ready!(outcome.poll(cx))?;
                    if let Some((limit, remaining)) = *quota {
                        let headers = response.headers_mut();
                        headers.insert(RATELIMIT_LIMIT, number(limit));
                        headers.insert(RATELIMIT_REMAINING, number(remaining));
                    }
                    return Poll::Ready(Ok(response));
                }
            }
        }
    }
}

/// `n` as a header value. Quotas and what is left of them are small numbers: those below
/// 10 000 are slices of one static string, so adding the two headers to every response
/// allocates nothing.
fn number(n: u32) -> HeaderValue {
    let (start, len) = match n {
        0..10 => (n, 1),
        10..100 => (10 + (n - 10) * 2, 2),
        100..1000 => (190 + (n - 100) * 3, 3),
        1000..10_000 => (2890 + (n - 1000) * 4, 4),
        _ => return HeaderValue::from(n),
    };
    let (start, end) = (start as usize, (start + len) as usize);
    HeaderValue::from_maybe_shared(bytes::Bytes::from_static(&NUMBERS[start..end]))
        .unwrap_or_else(|_| HeaderValue::from(n))
}

/// "0123…9101112…9999": every number below 10 000, written one after the other.
static NUMBERS: [u8; 38_890] = {
    let mut out = [0u8; 38_890];
    let (mut n, mut at) = (0u32, 0usize);
    while n < 10_000 {
        let len = if n < 10 {
            1
        } else if n < 100 {
            2
        } else if n < 1000 {
            3
        } else {
            4
        };
        let (mut rest, mut i) = (n, len);
        while i > 0 {
            i -= 1;
            out[at + i] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        at += len;
        n += 1;
    }
    out
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_as_they_read() {
        for n in [
            0,
            7,
            9,
            10,
            42,
            99,
            100,
            555,
            999,
            1000,
            4096,
            9999,
            10_000,
            65_535,
            u32::MAX,
        ] {
            assert_eq!(number(n).to_str().unwrap(), n.to_string(), "{n}");
        }
    }
}
