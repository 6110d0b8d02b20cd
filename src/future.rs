//! The tail every server layer's future ends in: call the inner service, or answer with a
//! rejection.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use crate::body::ResponseBody;
use crate::reject::Pending;

/// Polls `future` once, without a waker: for in-process work (an in-memory store, a cached
/// token) that answers at once, so a request need not be parked. A `Pending` future must be
/// polled again later with a real waker.
#[cfg(any(feature = "hmac", feature = "jwt"))]
pub(crate) fn poll_now<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(std::task::Waker::noop()))
}

pin_project! {
    /// The inner service's response (body wrapped), or a rejection's.
    #[project = RejectOrProj]
    pub(crate) enum RejectOr<F> {
        Call { #[pin] future: F },
        Reject { rejection: Option<Pending> },
    }
}

impl<F> RejectOr<F> {
    pub(crate) fn call(future: F) -> Self {
        Self::Call { future }
    }

    pub(crate) fn reject(rejection: Pending) -> Self {
        Self::Reject {
            rejection: Some(rejection),
        }
    }
}

impl<F, B, E> Future for RejectOr<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            RejectOrProj::Call { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(ResponseBody::new)))
            }
            RejectOrProj::Reject { rejection } => {
                let rejection = rejection.take().expect("polled after completion");
                Poll::Ready(Ok(rejection.into_response()))
            }
        }
    }
}
