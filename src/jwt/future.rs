use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::JwtConfig;
use super::validate::{Verdict, authenticate, key_not_found};
use crate::body::ResponseBody;
use crate::future::RejectOr;
use crate::reject::Pending;

type Refresh = Pin<Box<dyn Future<Output = ()> + Send>>;

pin_project! {
    /// The response future of [`RequireJwt`](super::RequireJwt).
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
        // The token names a key the key set may have gained: refresh it, then check again.
        // Boxed: rare, and the common path's future stays small (futures are moved at every
        // layer).
        Refreshing {
            refresh: Refresh,
            call: Option<Box<(JwtConfig, S, Request<ReqBody>)>>,
        },
        Done {
            #[pin]
            outcome: RejectOr<S::Future>,
        },
    }
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    pub(crate) fn call(future: S::Future) -> Self {
        Self::done(RejectOr::call(future))
    }

    pub(crate) fn reject(rejection: Pending) -> Self {
        Self::done(RejectOr::reject(rejection))
    }

    fn done(outcome: RejectOr<S::Future>) -> Self {
        Self {
            state: State::Done { outcome },
        }
    }

    pub(crate) fn refresh(config: JwtConfig, inner: S, request: Request<ReqBody>) -> Self {
        Self {
            state: State::Refreshing {
                refresh: refresh_future(&config),
                call: Some(Box::new((config, inner, request))),
            },
        }
    }
}

#[cfg(feature = "jwks")]
pub(crate) fn refresh_future(config: &JwtConfig) -> Refresh {
    match &config.inner.jwks {
        Some(jwks) => Box::pin(jwks.clone().refresh_unknown_key()),
        None => Box::pin(std::future::ready(())),
    }
}

#[cfg(not(feature = "jwks"))]
pub(crate) fn refresh_future(_config: &JwtConfig) -> Refresh {
    Box::pin(std::future::ready(()))
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Refreshing { refresh, call } => {
                    ready!(refresh.as_mut().poll(cx));
                    let (config, mut inner, mut request) =
                        *call.take().expect("polled after completion");
                    let outcome = match authenticate(
                        &config.inner,
                        Some(request.uri().path()),
                        request.headers(),
                        request.extensions(),
                    ) {
                        Ok(Verdict::Verified(principal, claims)) => {
                            match principal.attach(request.extensions_mut()) {
                                Ok(()) => {
                                    request.extensions_mut().insert(claims);
                                    RejectOr::call(inner.call(request))
                                }
                                Err(conflict) => {
                                    RejectOr::reject(Pending::new(conflict, request.headers()))
                                }
                            }
                        }
                        Ok(Verdict::Public | Verdict::Anonymous) => {
                            RejectOr::call(inner.call(request))
                        }
                        outcome => {
                            let rejection = outcome
                                .err()
                                .unwrap_or_else(|| key_not_found(&config.inner));
                            super::log_rejection(&rejection, &request);
                            RejectOr::reject(Pending::new(rejection, request.headers()))
                        }
                    };
                    this.state.set(State::Done { outcome });
                }
                StateProj::Done { outcome } => return outcome.poll(cx),
            }
        }
    }
}
