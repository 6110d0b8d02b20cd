use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::TokenSource;
use crate::BoxError;
use crate::future::poll_now;

/// Attaches `Authorization: Bearer <token>` to every outgoing request, from a
/// [`TokenSource`]: a [`StaticToken`](super::StaticToken), tokens a
/// [`MintedToken`](super::MintedToken) mints and caches, or any async function
/// ([`token_fn`](super::token_fn)).
///
/// Sits on any `Service<http::Request<B>>`: a tonic `Channel`, a hyper-util `Client`, ... A
/// source that fails makes the call fail with its error, before anything is sent.
#[derive(Debug, Clone)]
pub struct AddBearerLayer<T> {
    source: std::sync::Arc<T>,
}

impl<T: TokenSource> AddBearerLayer<T> {
    /// A layer that takes tokens from `source`.
    pub fn new(source: T) -> Self {
        Self {
            source: std::sync::Arc::new(source),
        }
    }
}

impl<S, T> Layer<S> for AddBearerLayer<T> {
    type Service = AddBearer<S, T>;

    fn layer(&self, inner: S) -> Self::Service {
        AddBearer {
            inner,
            source: self.source.clone(),
        }
    }
}

/// The service made by [`AddBearerLayer`].
#[derive(Debug)]
pub struct AddBearer<S, T> {
    inner: S,
    source: std::sync::Arc<T>,
}

impl<S: Clone, T> Clone for AddBearer<S, T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            source: self.source.clone(),
        }
    }
}

impl<S, T> AddBearer<S, T> {
    inner_service_accessors!();
}

impl<S, T, B> Service<Request<B>> for AddBearer<S, T>
where
    S: Service<Request<B>> + Clone,
    S::Error: Into<BoxError>,
    T: TokenSource,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BearerFuture<S, T, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let mut token = self.source.authorization();
        // Cached and static tokens are ready at once: send without parking the request.
        match poll_now(&mut token) {
            Poll::Ready(Ok(value)) => {
                request.headers_mut().insert(AUTHORIZATION, value);
                BearerFuture::calling(self.inner.call(request))
            }
            Poll::Ready(Err(error)) => BearerFuture::failed(error),
            Poll::Pending => {
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                BearerFuture::waiting(token, inner, request)
            }
        }
    }
}

pin_project! {
    /// The response future of [`AddBearer`].
    pub struct BearerFuture<S, T, B>
    where
        S: Service<Request<B>>,
        T: TokenSource,
    {
        #[pin]
        state: State<S, T, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, T, B>
    where
        S: Service<Request<B>>,
        T: TokenSource,
    {
        Waiting { token: T::Future, call: Option<(S, Request<B>)> },
        Calling { #[pin] future: S::Future },
        Failed { error: Option<BoxError> },
    }
}

impl<S, T, B> BearerFuture<S, T, B>
where
    S: Service<Request<B>>,
    T: TokenSource,
{
    fn calling(future: S::Future) -> Self {
        Self {
            state: State::Calling { future },
        }
    }

    fn failed(error: BoxError) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
        }
    }

    fn waiting(token: T::Future, inner: S, request: Request<B>) -> Self {
        Self {
            state: State::Waiting {
                token,
                call: Some((inner, request)),
            },
        }
    }
}

impl<S, T, B> Future for BearerFuture<S, T, B>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
    T: TokenSource,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Waiting { token, call } => {
                    let value: HeaderValue = match ready!(Pin::new(token).poll(cx)) {
                        Ok(value) => value,
                        Err(error) => return Poll::Ready(Err(error)),
                    };
                    let (mut inner, mut request) = call.take().expect("polled after completion");
                    request.headers_mut().insert(AUTHORIZATION, value);
                    let future = inner.call(request);
                    this.state.set(State::Calling { future });
                }
                StateProj::Calling { future } => return future.poll(cx).map_err(Into::into),
                StateProj::Failed { error } => {
                    return Poll::Ready(Err(error.take().expect("polled after completion")));
                }
            }
        }
    }
}
