//! Signing a client's requests per RFC 9421, for a
//! [`VerifyHttpSigLayer`](crate::httpsig::VerifyHttpSigLayer).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::Full;
use tower_layer::Layer;
use tower_service::Service;

use crate::BoxError;
use crate::body::read_bounded;
use crate::httpsig::HttpSigSigner;

/// Signs every request that passes through a client stack (a hyper-util `Client`, a tonic
/// `Channel`, or any `Service<http::Request<B>>` whose body type is a [`SignableBody`]) with an
/// [`HttpSigSigner`].
///
/// The body is buffered to compute its `Content-Digest` before the request is sent: up to
/// [`max_body_size`](Self::max_body_size) (1 MiB by default); a larger body fails the call
/// instead of being buffered without bound. Streaming calls (gRPC client or bidirectional
/// streams) therefore cannot be signed by this layer: their body has no end to digest.
///
/// The scheme and authority are signed, so the request's URI must be absolute, or the layer
/// must know the [`origin`](Self::origin) it sends to: tonic's generated clients send
/// path-only URIs and let the channel add its origin.
///
/// ```
/// use tonic::transport::Endpoint;
/// use tower_zerotrust::httpsig::HttpSigSigner;
/// use tower_zerotrust::sign::SignHttpLayer;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let endpoint = Endpoint::from_static("http://registry.internal:50051");
/// let signer = HttpSigSigner::hmac_sha256("gateway-key", b"a shared secret of at least 32 bytes!")?;
/// let channel = tower::ServiceBuilder::new()
///     .layer(SignHttpLayer::new(signer).origin(endpoint.uri().clone()))
///     .service(endpoint.connect().await?);
/// // `ModelRegistryClient::with_origin(channel, origin)` or `tonic::client::Grpc::new(channel)`.
/// # let _ = channel; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SignHttpLayer {
    signer: Arc<HttpSigSigner>,
    max_body: usize,
    origin: Option<Uri>,
}

impl SignHttpLayer {
    /// A layer signing with `signer`.
    pub fn new(signer: HttpSigSigner) -> Self {
        Self {
            signer: Arc::new(signer),
            max_body: 1024 * 1024,
            origin: None,
        }
    }

    /// The largest body buffered for its digest (default 1 MiB).
    #[must_use]
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// The scheme and authority of requests whose URI is a path only, as a tonic channel's
    /// are: they are signed, and sent, with this origin's.
    #[must_use]
    pub fn origin(mut self, origin: Uri) -> Self {
        self.origin = Some(origin);
        self
    }
}

impl<S> Layer<S> for SignHttpLayer {
    type Service = SignHttp<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SignHttp {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`SignHttpLayer`].
#[derive(Debug, Clone)]
pub struct SignHttp<S> {
    inner: S,
    layer: SignHttpLayer,
}

/// A request body type [`SignHttp`] can make again from the bytes it read and signed, so that
/// the inner service gets the body type it takes.
pub trait SignableBody: http_body::Body<Data = Bytes> + Sized {
    /// The body carrying `bytes`.
    fn from_signed(bytes: Bytes) -> Self;
}

impl SignableBody for Full<Bytes> {
    fn from_signed(bytes: Bytes) -> Self {
        Full::new(bytes)
    }
}

#[cfg(feature = "tonic")]
impl SignableBody for tonic::body::Body {
    fn from_signed(bytes: Bytes) -> Self {
        tonic::body::Body::new(Full::new(bytes))
    }
}

#[cfg(feature = "axum")]
impl SignableBody for axum_core::body::Body {
    fn from_signed(bytes: Bytes) -> Self {
        axum_core::body::Body::from(bytes)
    }
}

impl<S, B> Service<Request<B>> for SignHttp<S>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: SignableBody + Send + 'static,
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
        let layer = self.layer.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            if let (None, Some(origin)) = (parts.uri.authority(), &layer.origin) {
                let mut uri = origin.clone().into_parts();
                uri.path_and_query = parts.uri.path_and_query().cloned();
                parts.uri = Uri::from_parts(uri)?;
            }
            let body = read_bounded(body, layer.max_body).await?;
            layer
                .signer
                .sign(&parts.method, &parts.uri, &mut parts.headers, &body)?;
            inner
                .call(Request::from_parts(parts, B::from_signed(body)))
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
    use http_body_util::BodyExt;
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
