//! The verify layer: a request signed per RFC 9421 proves its key's principal; its body is
//! read (bounded), checked against the covered `Content-Digest`, and passed on as the same
//! bytes; its nonce is recorded once the signature and digest are verified.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};
use tower_layer::Layer;
use tower_service::Service;

use super::base::{CONTENT_DIGEST, Message, SIGNATURE, SIGNATURE_INPUT, field_value};
use super::config::HttpSigConfig;
use super::digest::{self, DigestError};
use super::verify::{Settings, refusal, verify};
use crate::BoxError;
use crate::body::{ReadError, ResponseBody, read_bounded};
use crate::nonce::{MemoryNonceStore, NonceError, NonceStore};
use crate::principal::{Offered, Scheme};
use crate::public::PublicPaths;
use crate::reject::{Origin, Pending, Rejection, RejectionKind};

/// What the layer needs beside the verifier's settings.
pub(crate) struct Config {
    pub(crate) settings: Settings,
    /// The longest body read and checked (413 beyond).
    pub(crate) max_body: usize,
    /// `http` or `https`: how clients reach this service (`@scheme`, `@target-uri`).
    pub(crate) scheme: &'static str,
    /// How long nonces are remembered: twice the `created` window, and the clock skew.
    pub(crate) nonce_ttl: Duration,
    pub(crate) public_paths: PublicPaths,
    /// Requests without signature fields pass without a principal.
    pub(crate) optional: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("keys", &self.settings.keys.len())
            .field("max_body", &self.max_body)
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

/// Verifies RFC 9421 signatures and puts the proven [`Principal`](crate::Principal) into the
/// request; the inner service gets the body as the same bytes, read and checked.
///
/// Refusals are 401 (`WWW-Authenticate: Signature`) with a reason code per failure
/// (`httpsig.missing`, `.malformed`, `.ambiguous`, `.unknown_key`, `.algorithm_mismatch`,
/// `.coverage`, `.created_required`, `.expired`, `.nonce_required`, `.invalid_signature`,
/// `.digest_mismatch`, `.replayed`), 413 `httpsig.body_too_large`, and 503 when the nonce
/// store cannot answer; gRPC requests get the matching gRPC status.
#[derive(Debug, Clone)]
pub struct VerifyHttpSigLayer<N = MemoryNonceStore> {
    config: Arc<Config>,
    nonces: N,
}

impl VerifyHttpSigLayer<MemoryNonceStore> {
    /// A layer remembering nonces in this process (one store for every service it makes).
    pub fn new(config: HttpSigConfig) -> Self {
        Self::with_nonce_store(config, MemoryNonceStore::default())
    }
}

impl<N: NonceStore + Clone> VerifyHttpSigLayer<N> {
    /// A layer remembering nonces in `nonces` (per key id), shared by every replica when it
    /// is a Redis store.
    pub fn with_nonce_store(config: HttpSigConfig, nonces: N) -> Self {
        Self {
            config: config.inner,
            nonces,
        }
    }
}

impl<S, N: Clone> Layer<S> for VerifyHttpSigLayer<N> {
    type Service = VerifyHttpSig<S, N>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifyHttpSig {
            inner,
            config: self.config.clone(),
            nonces: self.nonces.clone(),
        }
    }
}

/// The service made by [`VerifyHttpSigLayer`].
#[derive(Debug, Clone)]
pub struct VerifyHttpSig<S, N> {
    inner: S,
    config: Arc<Config>,
    nonces: N,
}

/// The response future of [`VerifyHttpSig`]: boxed, since reading the body and asking the
/// nonce store both wait.
pub type ResponseFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The request body the inner service gets: the body as it came when nothing was verified
/// (public paths, optional mode), or the bytes that were read and checked.
pub type RequestBody<B> = Either<B, Full<Bytes>>;

impl<S, N, B, ResBody> Service<Request<B>> for VerifyHttpSig<S, N>
where
    S: Service<Request<RequestBody<B>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    N: NonceStore + Clone,
    N::Future: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResBody: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The ready service takes the request; a clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (config, nonces) = (self.config.clone(), self.nonces.clone());
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let unsigned = !parts.headers.contains_key(&SIGNATURE_INPUT)
                && !parts.headers.contains_key(&SIGNATURE);
            if config.public_paths.contains(parts.uri.path()) || (config.optional && unsigned) {
                if !config.public_paths.contains(parts.uri.path()) {
                    Offered::record(&mut parts.extensions, Scheme::HttpSig);
                }
                let request = Request::from_parts(parts, Either::Left(body));
                return Ok(inner.call(request).await?.map(ResponseBody::new));
            }
            let refuse = |rejection: Rejection, parts: &http::request::Parts| {
                tracing::debug!(target: "tower_zerotrust::httpsig", path = parts.uri.path(), code = rejection.code(), "request rejected");
                Ok(Pending::new(rejection, &parts.headers).into_response())
            };
            let authority = parts
                .headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .or_else(|| parts.uri.authority().map(http::uri::Authority::as_str))
                .unwrap_or_default();
            let has_body = !body.is_end_stream();
            let message = Message {
                method: &parts.method,
                scheme: config.scheme,
                authority,
                path: parts.uri.path(),
                query: parts.uri.query(),
                headers: &parts.headers,
                status: None,
            };
            // Headers first: a request that proves nothing costs no body read.
            let verified = match verify(&config.settings, &message, has_body) {
                Ok(verified) => verified,
                Err(rejection) => return refuse(rejection, &parts),
            };
            let bytes = match read_bounded(body, config.max_body).await {
                Ok(bytes) => bytes,
                Err(ReadError::TooLarge(_)) => return refuse(too_large(), &parts),
                Err(ReadError::Unreadable(_)) => {
                    return refuse(
                        refusal("httpsig.body_unreadable", "Request body could not be read"),
                        &parts,
                    );
                }
            };
            if verified.covers_digest {
                let field = field_value(&parts.headers, &CONTENT_DIGEST)
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                if let Err(error) = digest::check(&field, &bytes) {
                    let code = match error {
                        DigestError::Mismatch => "httpsig.digest_mismatch",
                        _ => "httpsig.digest_malformed",
                    };
                    return refuse(
                        refusal(code, "Content-Digest does not vouch for the body"),
                        &parts,
                    );
                }
            }
            if let Some(nonce) = &verified.nonce {
                let recorded = nonces
                    .check_and_record(verified.keyid, nonce, config.nonce_ttl)
                    .await;
                if let Err(error) = recorded {
                    return refuse(nonce_rejection(&error), &parts);
                }
            }
            if let Err(conflict) = verified.principal.attach(&mut parts.extensions) {
                return refuse(conflict, &parts);
            }
            let response = inner
                .call(Request::from_parts(parts, Either::Right(Full::new(bytes))))
                .await?;
            Ok(response.map(ResponseBody::new))
        })
    }
}

fn too_large() -> Rejection {
    Rejection::by(
        Origin::HttpSig,
        RejectionKind::TooLarge,
        "httpsig.body_too_large",
        "Request body too large",
    )
}

fn nonce_rejection(error: &NonceError) -> Rejection {
    match error {
        NonceError::Replayed => refusal("httpsig.replayed", "Replayed request"),
        _ => Rejection::by(
            Origin::HttpSig,
            RejectionKind::Unavailable,
            if matches!(error, NonceError::Full) {
                "nonce.store_full"
            } else {
                "nonce.store_unavailable"
            },
            "Replay protection unavailable",
        ),
    }
}

#[cfg(all(test, feature = "axum"))]
mod tests {
    use std::net::SocketAddr;

    use axum::Router;
    use axum::routing::post;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use http::{HeaderMap, Method, StatusCode};
    use http_body_util::BodyExt;
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    use super::super::algorithm::{SigningKey, VerifyingKey};
    use super::super::base::{Message, signature_base};
    use super::super::fields::signatures;
    use super::super::verify::tests::one_key;
    use super::*;
    use crate::Principal;

    const SECRET: [u8; 32] = [9; 32];

    fn config() -> Config {
        let key = VerifyingKey::hmac_sha256(&SECRET).unwrap();
        Config {
            settings: one_key("gw", key, "gateway", &[]),
            max_body: 64,
            scheme: "http",
            nonce_ttl: Duration::from_secs(65),
            public_paths: PublicPaths::default(),
            optional: false,
        }
    }

    async fn serve() -> SocketAddr {
        let app = Router::new()
            .route(
                "/models",
                post(|principal: Principal, body: String| async move {
                    format!("{} sent {body}", principal.id())
                }),
            )
            .layer(VerifyHttpSigLayer::new(HttpSigConfig {
                inner: Arc::new(config()),
            }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    /// The headers a client adds to sign `POST /models?v=1` with `body` for `addr`.
    fn sign(addr: SocketAddr, body: &[u8], nonce: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("host", addr.to_string().parse().unwrap());
        headers.insert(
            "content-digest",
            digest::sha256_field(body).parse().unwrap(),
        );
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let input = format!(
            r#"sig=("@method" "@authority" "@path" "@query" "content-digest");created={created};keyid="gw";nonce="{nonce}""#
        );
        let signature = signatures(&input, "sig=:AAAA:").unwrap().remove(0);
        let authority = addr.to_string();
        let message = Message {
            method: &Method::POST,
            scheme: "http",
            authority: &authority,
            path: "/models",
            query: Some("v=1"),
            headers: &headers,
            status: None,
        };
        let base = signature_base(&message, &signature).unwrap();
        let mac = SigningKey::hmac_sha256(&SECRET)
            .unwrap()
            .sign(base.as_bytes());
        headers.insert("signature-input", input.parse().unwrap());
        headers.insert(
            "signature",
            format!("sig=:{}:", STANDARD.encode(mac)).parse().unwrap(),
        );
        headers
    }

    async fn send(
        addr: SocketAddr,
        headers: &HeaderMap,
        body: &'static [u8],
    ) -> (StatusCode, String) {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut request = Request::post(format!("http://{addr}/models?v=1"))
            .body(Full::new(Bytes::from_static(body)))
            .unwrap();
        for (name, value) in headers {
            if name != http::header::HOST {
                request.headers_mut().insert(name, value.clone());
            }
        }
        let response = client.request(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn code(body: &str) -> String {
        serde_json::from_str::<serde_json::Value>(body).unwrap()["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    #[tokio::test]
    async fn a_signed_request_reaches_the_service_once_with_its_body() {
        let addr = serve().await;
        let body: &'static [u8] = b"{\"name\":\"m1\"}";
        let headers = sign(addr, body, "n-1");
        let (status, text) = send(addr, &headers, body).await;
        assert_eq!(
            (status, text.as_str()),
            (StatusCode::OK, "gateway sent {\"name\":\"m1\"}")
        );
        // The same request again is a replay.
        let (status, text) = send(addr, &headers, body).await;
        assert_eq!(
            (status, code(&text).as_str()),
            (StatusCode::UNAUTHORIZED, "httpsig.replayed")
        );
    }

    /// A gRPC request is refused with a gRPC status (trailers-only), not problem+json.
    #[tokio::test]
    async fn grpc_requests_get_grpc_statuses() {
        use tower::ServiceExt;
        let noop = tower::service_fn(|_req: Request<RequestBody<Full<Bytes>>>| async {
            Ok::<_, std::convert::Infallible>(Response::new(String::new()))
        });
        let service = VerifyHttpSigLayer::new(HttpSigConfig {
            inner: Arc::new(config()),
        })
        .layer(noop);
        let request = Request::post("http://registry.example/registry.ModelRegistry/CreateModel")
            .header("content-type", "application/grpc")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "16");
        assert_eq!(response.headers()["zerotrust-reason"], "httpsig.missing");
    }

    #[tokio::test]
    async fn tampered_oversized_and_unsigned_requests_are_refused() {
        let addr = serve().await;
        let body: &'static [u8] = b"{\"name\":\"m1\"}";
        // The body changed after signing: its digest no longer matches.
        let (status, text) = send(addr, &sign(addr, body, "n-2"), b"{\"name\":\"m2\"}").await;
        assert_eq!(
            (status, code(&text).as_str()),
            (StatusCode::UNAUTHORIZED, "httpsig.digest_mismatch")
        );
        // The covered digest changed too: the signature no longer verifies.
        let mut headers = sign(addr, body, "n-3");
        headers.insert(
            "content-digest",
            digest::sha256_field(b"other").parse().unwrap(),
        );
        let (status, text) = send(addr, &headers, b"other").await;
        assert_eq!(
            (status, code(&text).as_str()),
            (StatusCode::UNAUTHORIZED, "httpsig.invalid_signature")
        );
        // Larger than the layer reads.
        let big: &'static [u8] = &[b'x'; 100];
        let (status, text) = send(addr, &sign(addr, big, "n-4"), big).await;
        assert_eq!(
            (status, code(&text).as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, "httpsig.body_too_large")
        );
        // Nothing signed: 401 with the scheme's challenge.
        let (status, text) = send(addr, &HeaderMap::new(), body).await;
        assert_eq!(
            (status, code(&text).as_str()),
            (StatusCode::UNAUTHORIZED, "httpsig.missing")
        );
        // A refused body-mismatch never recorded its nonce: signed properly, it gets in.
        let (status, _) = send(addr, &sign(addr, body, "n-2"), body).await;
        assert_eq!(status, StatusCode::OK);
    }
}
