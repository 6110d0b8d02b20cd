//! Signing a client's requests per RFC 9421, for a
//! [`VerifyHttpSigLayer`](crate::httpsig::VerifyHttpSigLayer).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full, Limited};
use tower_layer::Layer;
use tower_service::Service;

use crate::BoxError;
use crate::httpsig::HttpSigSigner;

/// Signs every request that passes through a client stack (a hyper-util `Client`, or any
/// `Service<http::Request<Full<Bytes>>>`) with an [`HttpSigSigner`].
///
/// The body is buffered to compute its `Content-Digest` before the request is sent: up to
/// [`max_body_size`](Self::max_body_size) (1 MiB by default); a larger body fails the call
/// instead of being buffered without bound. The request's URI must be absolute: its scheme and
/// authority are signed.
#[derive(Debug, Clone)]
pub struct SignHttpLayer {
    signer: Arc<HttpSigSigner>,
    max_body: usize,
}

impl SignHttpLayer {
    /// A layer signing with `signer`.
    pub fn new(signer: HttpSigSigner) -> Self {
        Self {
            signer: Arc::new(signer),
            max_body: 1024 * 1024,
        }
    }

    /// The largest body buffered for its digest (default 1 MiB).
    #[must_use]
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }
}

impl<S> Layer<S> for SignHttpLayer {
    type Service = SignHttp<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SignHttp {
            inner,
            signer: self.signer.clone(),
            max_body: self.max_body,
        }
    }
}

/// The service made by [`SignHttpLayer`].
#[derive(Debug, Clone)]
pub struct SignHttp<S> {
    inner: S,
    signer: Arc<HttpSigSigner>,
    max_body: usize,
}

impl<S, B> Service<Request<B>> for SignHttp<S>
where
    S: Service<Request<Full<Bytes>>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (signer, max_body) = (self.signer.clone(), self.max_body);
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let body = Limited::new(body, max_body).collect().await?.to_bytes();
            signer.sign(&parts.method, &parts.uri, &mut parts.headers, &body)?;
            inner
                .call(Request::from_parts(parts, Full::new(body)))
                .await
                .map_err(Into::into)
        })
    }
}

#[cfg(all(test, feature = "axum"))]
mod tests {
    use axum::Router;
    use axum::routing::post;
    use http::StatusCode;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use tower::{ServiceBuilder, ServiceExt};

    use super::*;
    use crate::Principal;
    use crate::httpsig::{HttpSigConfig, HttpSigKey, VerifyHttpSigLayer};

    const SECRET: &[u8] = b"a shared secret of at least 32 bytes!";

    /// Through the layer, a plain client's requests are accepted by the verify layer, body and
    /// all; a body over the bound fails the call and is never sent.
    #[tokio::test]
    async fn a_signing_client_is_accepted_by_the_verifier() {
        let config = HttpSigConfig::builder()
            .key("gw-1", HttpSigKey::hmac_sha256(SECRET).unwrap(), "gateway")
            .scheme("http")
            .build()
            .unwrap();
        let app = Router::new()
            .route(
                "/models",
                post(|caller: Principal, body: String| async move {
                    format!("{}: {body}", caller.id())
                }),
            )
            .layer(VerifyHttpSigLayer::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let client = ServiceBuilder::new()
            .layer(
                SignHttpLayer::new(HttpSigSigner::hmac_sha256("gw-1", SECRET).unwrap())
                    .max_body_size(64),
            )
            .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
        let post = |body: &'static str| {
            Request::post(format!("http://{addr}/models?v=1"))
                .body(Full::new(Bytes::from_static(body.as_bytes())))
                .unwrap()
        };
        let response = client
            .clone()
            .oneshot(post("{\"name\":\"m1\"}"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(text, "gateway: {\"name\":\"m1\"}");
        let too_big = client
            .oneshot(post(Box::leak("x".repeat(100).into_boxed_str())))
            .await;
        assert!(too_big.is_err());
    }
}
