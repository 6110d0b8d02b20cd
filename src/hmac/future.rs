use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::verify::nonce_refusal;
use crate::body::ResponseBody;
use crate::future::RejectOr;
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
        // The request waits boxed: only stores that answer later (over the network) get here,
        // and the common path's future stays small.
        Checking {
            #[pin]
            check: N::Future,
            call: Option<Box<(S, Request<ReqBody>, Principal)>>,
        },
        Done {
            #[pin]
            outcome: RejectOr<S::Future>,
        },
    }
}

impl<S, N, ReqBody> ResponseFuture<S, N, ReqBody>
where
    S: Service<Request<ReqBody>>,
    N: NonceStore,
{
    pub(crate) fn call(future: S::Future) -> Self {
        Self::done(RejectOr::call(future))
    }

    fn done(outcome: RejectOr<S::Future>) -> Self {
        Self {
            state: State::Done { outcome },
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
                call: Some(Box::new((inner, request, principal))),
            },
        }
    }

    pub(crate) fn reject(rejection: Pending) -> Self {
        Self::done(RejectOr::reject(rejection))
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
                        *call.take().expect("polled after completion");
                    let outcome = match checked {
                        Ok(()) => match principal.attach(request.extensions_mut()) {
                            Ok(()) => RejectOr::call(inner.call(request)),
                            Err(conflict) => {
                                RejectOr::reject(Pending::new(conflict, request.headers()))
                            }
                        },
                        Err(error) => {
                            RejectOr::reject(nonce_refusal(&error, principal.id(), &request))
                        }
                    };
                    this.state.set(State::Done { outcome });
                }
                StateProj::Done { outcome } => return outcome.poll(cx),
            }
        }
    }
}
