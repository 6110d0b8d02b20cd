use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::verify::nonce_refusal;
use crate::body::ResponseBody;
use crate::nonce::NonceStore;
use crate::principal::Principal;
use crate::reject::Pending;

pin_project! {
    /// The response future of [`VerifyHmac`](super::VerifyHmac).
    pub struct ResponseFuture<S, N, ReqBody>
    where
        S: Service<Request<ReqBody>>,
        N: NonceStore,
    {
        #[pin]
        state: State<S, N, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, N, ReqBody>
    where
        S: Service<Request<ReqBody>>,
        N: NonceStore,
    {
        // Signature verified; waiting for the nonce store before calling the inner service.
        Checking {
            #[pin]
            check: N::Future,
            call: Option<(S, Request<ReqBody>, Principal)>,
        },
        Calling {
            #[pin]
            future: S::Future,
        },
        Rejected {
            rejection: Option<Pending>,
        },
    }
}

impl<S, N, ReqBody> ResponseFuture<S, N, ReqBody>
where
    S: Service<Request<ReqBody>>,
    N: NonceStore,
{
    pub(crate) fn call(future: S::Future) -> Self {
        Self {
            state: State::Calling { future },
        }
    }

    pub(crate) fn check(
        check: N::Future,
        inner: S,
        request: Request<ReqBody>,
        principal: Principal,
    ) -> Self {
        Self {
            state: State::Checking {
                check,
                call: Some((inner, request, principal)),
            },
        }
    }

    pub(crate) fn reject(rejection: Pending) -> Self {
        Self {
            state: State::Rejected {
                rejection: Some(rejection),
            },
        }
    }
}

impl<S, N, ReqBody, ResBody> Future for ResponseFuture<S, N, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    N: NonceStore,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Checking { check, call } => {
                    let checked = ready!(check.poll(cx));
                    let (mut inner, mut request, principal) =
                        call.take().expect("polled after completion");
                    let next = match checked {
                        Ok(()) => {
                            request.extensions_mut().insert(principal);
                            State::Calling {
                                future: inner.call(request),
                            }
                        }
                        Err(error) => State::Rejected {
                            rejection: Some(nonce_refusal(&error, principal.id(), &request)),
                        },
                    };
                    this.state.set(next);
                }
                StateProj::Calling { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::new)));
                }
                StateProj::Rejected { rejection } => {
                    let rejection = rejection.take().expect("polled after completion");
                    return Poll::Ready(Ok(rejection.into_response()));
                }
            }
        }
    }
}
