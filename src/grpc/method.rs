//! tonic hands interceptors the request's metadata and extensions, but not its path: the gRPC
//! method. [`MethodPathLayer`] records it, for the interceptors whose decision depends on it
//! (HMAC signatures cover it; authorization rules are per method).

use std::task::{Context, Poll};

use http::Request;
use http::uri::PathAndQuery;
use tower_layer::Layer;
use tower_service::Service;

/// The gRPC method of a request, `/package.Service/Method`, in its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodPath(PathAndQuery);

impl MethodPath {
    /// The path, such as `/registry.ModelRegistry/GetModel`.
    pub fn as_str(&self) -> &str {
        self.0.path()
    }
}

/// Puts each request's [`MethodPath`] into its extensions, so that interceptors can read it.
/// Add it to the server (`Server::builder().layer(MethodPathLayer)`);
/// [`SecureGrpcServerBuilder`](super::SecureGrpcServerBuilder) adds it itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct MethodPathLayer;

impl<S> Layer<S> for MethodPathLayer {
    type Service = RecordMethodPath<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RecordMethodPath { inner }
    }
}

/// The service made by [`MethodPathLayer`].
#[derive(Debug, Clone)]
pub struct RecordMethodPath<S> {
    inner: S,
}

impl<S> RecordMethodPath<S> {
    inner_service_accessors!();
}

impl<S, B> Service<Request<B>> for RecordMethodPath<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(path) = req.uri().path_and_query().cloned() {
            req.extensions_mut().insert(MethodPath(path));
        }
        self.inner.call(req)
    }
}

/// The request's gRPC method path: recorded by [`MethodPathLayer`] on a server, or named by
/// generated client code (`tonic::GrpcMethod`) on a client.
pub(super) fn method_path(extensions: &http::Extensions) -> Option<std::borrow::Cow<'_, str>> {
    if let Some(path) = extensions.get::<MethodPath>() {
        return Some(path.as_str().into());
    }
    extensions
        .get::<tonic::GrpcMethod<'static>>()
        .map(|method| format!("/{}/{}", method.service(), method.method()).into())
}
