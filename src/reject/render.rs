//! Refusals in a service's own error contract: [`RenderRejectionsLayer`] replaces the body of
//! every refusal made by the layers inside it, and keeps what clients and outer layers rely on.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::Rejection;
use crate::body::ResponseBody;

/// How a service shows its refusals.
///
/// For HTTP, [`http`](Self::http) gives the content type and body that replace the default
/// `application/problem+json`; for gRPC, [`grpc_message`](Self::grpc_message) gives the
/// `grpc-message`. Either may return `None` to keep the default. Closures
/// `Fn(&Rejection) -> (HeaderValue, Bytes)` render HTTP bodies.
pub trait Render: Clone + Send + Sync + 'static {
    /// The content type and body of an HTTP refusal.
    fn http(&self, rejection: &Rejection) -> Option<(HeaderValue, Bytes)>;

    /// The `grpc-message` of a gRPC refusal (percent-encoded for you).
    fn grpc_message(&self, rejection: &Rejection) -> Option<String> {
        let _ = rejection;
        None
    }
}

impl<F> Render for F
where
    F: Fn(&Rejection) -> (HeaderValue, Bytes) + Clone + Send + Sync + 'static,
{
    fn http(&self, rejection: &Rejection) -> Option<(HeaderValue, Bytes)> {
        Some(self(rejection))
    }
}

/// Renders the refusals of the layers inside it with a [`Render`]: the status, the
/// `WWW-Authenticate` challenge, `Retry-After`, the gRPC status and reason, and the
/// [`Rejection`] in the response's extensions stay as the refusing layer made them; only the
/// body (HTTP) or the `grpc-message` (gRPC) change. Responses that are no refusal pass as they
/// are.
///
/// ```
/// use bytes::Bytes;
/// use http::{HeaderValue, Request, Response, StatusCode};
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_zerotrust::Rejection;
/// use tower_zerotrust::hmac::{HmacConfig, VerifyHmacLayer};
/// use tower_zerotrust::reject::RenderRejectionsLayer;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // This API's errors are `{"error": {"code": ..., "message": ...}}`.
/// let render = |rejection: &Rejection| {
///     let body = serde_json::json!({
///         "error": {"code": rejection.code(), "message": rejection.message()}
///     });
///     (HeaderValue::from_static("application/json"), Bytes::from(body.to_string()))
/// };
/// let config = HmacConfig::builder()
///     .secret("a secret of at least thirty-two bytes")
///     .allow_any_caller()
///     .build()?;
/// let service = ServiceBuilder::new()
///     .layer(RenderRejectionsLayer::new(render))
///     .layer(VerifyHmacLayer::new(config))
///     .service_fn(|_req: Request<String>| async {
///         Ok::<_, std::convert::Infallible>(Response::new(String::new()))
///     });
///
/// let response = service.oneshot(Request::new(String::new())).await?;
/// assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
/// assert_eq!(response.headers()["content-type"], "application/json");
/// assert!(response.headers().contains_key("www-authenticate"));
/// assert_eq!(response.extensions().get::<Rejection>().unwrap().code(), "hmac.missing_headers");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RenderRejectionsLayer<R> {
    render: R,
}

impl<R: Render> RenderRejectionsLayer<R> {
    /// Renders refusals with `render`.
    pub fn new(render: R) -> Self {
        Self { render }
    }
}

impl<S, R: Clone> Layer<S> for RenderRejectionsLayer<R> {
    type Service = RenderRejections<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RenderRejections {
            inner,
            render: self.render.clone(),
        }
    }
}

/// The service made by [`RenderRejectionsLayer`].
#[derive(Debug, Clone)]
pub struct RenderRejections<S, R> {
    inner: S,
    render: R,
}

impl<S, R> RenderRejections<S, R> {
    inner_service_accessors!();
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for RenderRejections<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: Render,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(req),
            render: self.render.clone(),
        }
    }
}

pin_project! {
    /// The response future of [`RenderRejections`].
    pub struct ResponseFuture<F, R> {
        #[pin]
        inner: F,
        render: R,
    }
}

impl<F, R, ResBody, E> Future for ResponseFuture<F, R>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    R: Render,
{
    type Output = Result<Response<ResponseBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let Some(rejection) = response.extensions().get::<Rejection>() else {
            return Poll::Ready(Ok(response.map(ResponseBody::new)));
        };
        if response.headers().contains_key("grpc-status") {
            // A trailers-only gRPC refusal: only the message can change.
            let message = this.render.grpc_message(rejection);
            let mut response = response.map(ResponseBody::new);
            if let Some(value) =
                message.and_then(|m| HeaderValue::try_from(super::grpc::percent_encode(&m)).ok())
            {
                response.headers_mut().insert("grpc-message", value);
            }
            return Poll::Ready(Ok(response));
        }
        let Some((content_type, body)) = this.render.http(rejection) else {
            return Poll::Ready(Ok(response.map(ResponseBody::new)));
        };
        let (mut parts, _) = response.into_parts();
        parts.headers.insert(CONTENT_TYPE, content_type);
        parts.headers.remove(http::header::CONTENT_LENGTH);
        Poll::Ready(Ok(Response::from_parts(parts, ResponseBody::full(body))))
    }
}
