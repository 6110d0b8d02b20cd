use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use super::HmacSigner;

/// Signs every outgoing request with an [`HmacSigner`].
///
/// Sits on any `Service<http::Request<B>>`: a tonic `Channel`, a hyper-util `Client`, ...
/// The signature covers the request's method and `uri().path()`.
#[derive(Debug, Clone)]
pub struct SignHmacLayer {
    signer: Arc<HmacSigner>,
}

impl SignHmacLayer {
    /// A layer that signs with `signer`.
    pub fn new(signer: HmacSigner) -> Self {
        Self {
            signer: Arc::new(signer),
        }
    }
}

impl<S> Layer<S> for SignHmacLayer {
    type Service = SignHmac<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SignHmac {
            inner,
            signer: self.signer.clone(),
        }
    }
}

/// The service made by [`SignHmacLayer`].
#[derive(Debug, Clone)]
pub struct SignHmac<S> {
    inner: S,
    signer: Arc<HmacSigner>,
}

impl<S> SignHmac<S> {
    inner_service_accessors!();
}

impl<S, B> Service<Request<B>> for SignHmac<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        self.signer.sign_request(&mut request);
        self.inner.call(request)
    }
}
