//! The HMAC layers on a real tonic server and client over TCP: statuses a tonic client
//! understands, and the principal readable in a tonic handler.

mod support;

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::pin::Pin;

use http::uri::PathAndQuery;
use support::{OTHER_SECRET, ProbeStore, SECRET, formula_headers, now};
use tonic::body::Body;
use tonic::server::{NamedService, UnaryService};
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;
use tower::ServiceBuilder;
use tower_zerotrust::Principal;
use tower_zerotrust::hmac::{HmacConfig, VerifyHmacLayer};
use tower_zerotrust::nonce::{MemoryNonceStore, NonceStore};
use tower_zerotrust::sign::{HmacSigner, SignHmac, SignHmacLayer};

/// `test.Who/AmI`: answers the caller's principal id, read from the tonic request's extensions.
#[derive(Clone)]
struct WhoServer;

impl NamedService for WhoServer {
    const NAME: &'static str = "test.Who";
}

struct AmI;

impl UnaryService<()> for AmI {
    type Response = String;
    type Future = Ready<Result<tonic::Response<String>, Status>>;

    fn call(&mut self, request: tonic::Request<()>) -> Self::Future {
        let answer = match request.extensions().get::<Principal>() {
            Some(p) => Ok(tonic::Response::new(format!(
                "{} via {}",
                p.id(),
                p.method()
            ))),
            None => Err(Status::internal("no principal")),
        };
        ready(answer)
    }
}

impl tower::Service<http::Request<Body>> for WhoServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<String, ()>::default());
            Ok(grpc.unary(AmI, request).await)
        })
    }
}

/// Serves `WhoServer` behind `$layer` on a random loopback port: the endpoint to reach it.
macro_rules! serve_who {
    ($layer:expr) => {{
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            Server::builder()
                .layer($layer)
                .add_service(WhoServer)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        Endpoint::from_shared(format!("http://{addr}")).unwrap()
    }};
}

async fn start() -> Channel {
    start_with(MemoryNonceStore::default()).await
}

async fn start_with(store: impl NonceStore) -> Channel {
    let config = HmacConfig::builder()
        .secret(SECRET)
        .allow_callers(["gateway"])
        .build()
        .unwrap();
    serve_who!(VerifyHmacLayer::with_nonce_store(config, store))
        .connect()
        .await
        .unwrap()
}

async fn who_am_i<S>(channel: S) -> Result<String, Status>
where
    S: tonic::client::GrpcService<Body>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <S::ResponseBody as http_body::Body>::Error:
        Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    call(channel, tonic::Request::new(())).await
}

/// A call carrying the four headers as metadata, signed by the scheme's formula.
fn formula_call(timestamp: u64, nonce: &str) -> tonic::Request<()> {
    let mut request = tonic::Request::new(());
    for (name, value) in
        formula_headers(SECRET, "gateway", timestamp, nonce, "POST", "/test.Who/AmI")
    {
        request.metadata_mut().insert(
            name.to_ascii_lowercase()
                .parse::<tonic::metadata::MetadataKey<_>>()
                .unwrap(),
            value.parse().unwrap(),
        );
    }
    request
}

async fn call<S>(channel: S, request: tonic::Request<()>) -> Result<String, Status>
where
    S: tonic::client::GrpcService<Body>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <S::ResponseBody as http_body::Body>::Error:
        Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(e.into().to_string()))?;
    grpc.unary(
        request,
        PathAndQuery::from_static("/test.Who/AmI"),
        ProstCodec::<(), String>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

fn signed(channel: Channel, service_id: &str, secret: &str) -> SignHmac<Channel> {
    ServiceBuilder::new()
        .layer(SignHmacLayer::new(
            HmacSigner::new(service_id, secret).unwrap(),
        ))
        .service(channel)
}

#[tokio::test]
async fn a_signed_tonic_channel_is_accepted_and_the_handler_sees_the_principal() {
    let channel = start().await;
    let signed = signed(channel, "gateway", SECRET);
    // Each call is signed afresh: repeated calls are not replays.
    for _ in 0..3 {
        assert_eq!(who_am_i(signed.clone()).await.unwrap(), "gateway via hmac");
    }
}

#[tokio::test]
async fn an_unsigned_call_is_unauthenticated() {
    let status = who_am_i(start().await).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "Missing authentication headers");
}

#[tokio::test]
async fn a_wrong_secret_is_unauthenticated() {
    let status = who_am_i(signed(start().await, "gateway", OTHER_SECRET))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "Invalid signature");
}

#[tokio::test]
async fn a_caller_outside_the_list_is_permission_denied() {
    let status = who_am_i(signed(start().await, "external", SECRET))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "Service not authorized");
}

#[tokio::test]
async fn metadata_signed_by_the_scheme_formula_is_accepted_once_then_replay_is_unauthenticated() {
    let channel = start().await;
    let first = formula_call(now(), "grpc-nonce-1");
    let replay = formula_call(now(), "grpc-nonce-1");
    assert_eq!(
        call(channel.clone(), first).await.unwrap(),
        "gateway via hmac"
    );
    let status = call(channel, replay).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "Replayed request");
}

#[tokio::test]
async fn a_stale_call_is_unauthenticated() {
    let status = call(start().await, formula_call(now() - 120, "stale"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "Request timestamp expired");
}

#[tokio::test]
async fn a_failing_nonce_store_is_unavailable() {
    let store = ProbeStore {
        broken: true,
        ..ProbeStore::default()
    };
    let status = who_am_i(signed(start_with(store).await, "gateway", SECRET))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "Replay protection unavailable");
}

/// Bearer tokens on a tonic channel: `AddBearerLayer` on the client, `RequireJwtLayer` on the
/// server.
#[tokio::test]
async fn a_tonic_channel_with_minted_bearer_tokens_is_accepted() {
    use tower_zerotrust::jwt::{Algorithm, JwtConfig, JwtKey, RequireJwtLayer};
    use tower_zerotrust::sign::{AddBearerLayer, MintedToken, TokenIssuer};

    let secret = "a-jwt-secret-for-grpc-tests-long-enough";
    let config = JwtConfig::builder()
        .key(JwtKey::hmac(Algorithm::HS256, secret).unwrap())
        .issuer("intellirouter")
        .audience("intellirouter-services")
        .build()
        .unwrap();
    let channel = serve_who!(RequireJwtLayer::new(config))
        .connect()
        .await
        .unwrap();
    let issuer = TokenIssuer::hmac(
        Algorithm::HS256,
        secret,
        "intellirouter",
        "intellirouter-services",
    )
    .unwrap();
    let with_token = ServiceBuilder::new()
        .layer(AddBearerLayer::new(MintedToken::new(
            issuer,
            "router_core",
            ["route_requests"],
        )))
        .service(channel.clone());
    assert_eq!(who_am_i(with_token).await.unwrap(), "router_core via jwt");
    let status = who_am_i(channel).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "Missing bearer token");
}

/// A tonic service served by `serve_tls`: the client certificate is the principal in the
/// handler, and a client from another CA never gets a call through.
#[cfg(feature = "mtls")]
#[tokio::test]
async fn tonic_over_mutual_tls_sees_the_certificate_principal() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use support::certs::Ca;
    use tower_zerotrust::mtls::{MtlsPrincipalConfig, MtlsPrincipalLayer, TlsConfig, serve_tls};

    let ca = Ca::new("Test CA");
    let server = ca.server();
    let tls = TlsConfig::from_pem(
        server.cert.as_bytes(),
        server.key.as_bytes(),
        ca.pem.as_bytes(),
    )
    .unwrap()
    .server_config()
    .unwrap();
    let routes = ServiceBuilder::new()
        .layer(MtlsPrincipalLayer::new(
            MtlsPrincipalConfig::builder().build().unwrap(),
        ))
        .service(tonic::service::Routes::new(WhoServer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_tls(listener, tls, routes, std::future::pending()));

    // A tonic channel over rustls: TCP, then the handshake with this client's certificate.
    let connections = Arc::new(AtomicUsize::new(0));
    let connect = |issuer: &Ca, name: &str| {
        let leaf = issuer.issue(name, vec![], true);
        let connections = connections.clone();
        let config =
            TlsConfig::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes(), ca.pem.as_bytes())
                .unwrap()
                .client_config()
                .unwrap();
        let connector = tower::service_fn(move |_: http::Uri| {
            let config = config.clone();
            connections.fetch_add(1, Ordering::SeqCst);
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect("localhost".try_into().unwrap(), tcp)
                    .await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        });
        async move {
            Endpoint::from_static("http://localhost")
                .connect_with_connector(connector)
                .await
        }
    };
    let channel = connect(&ca, "model-registry").await.unwrap();
    for _ in 0..3 {
        assert_eq!(
            who_am_i(channel.clone()).await.unwrap(),
            "model-registry via mtls"
        );
    }
    // Three calls, one connection: the identity read at its handshake names every call on it.
    assert_eq!(connections.load(Ordering::SeqCst), 1);
    // Same issuer name, another key: the handshake refuses the certificate.
    let rogue = Ca::new("Test CA");
    let refusal = match connect(&rogue, "model-registry").await {
        Err(error) => format!("{error:?}"),
        Ok(channel) => format!("{:?}", who_am_i(channel).await.expect_err("refused")),
    };
    assert!(refusal.contains("DecryptError"), "{refusal}");
}

/// Authorization per gRPC method and rate limiting on a tonic server: the statuses a tonic
/// client sees.
#[cfg(all(feature = "authz", feature = "rate-limit"))]
#[tokio::test]
async fn authorize_and_rate_limit_give_tonic_statuses() {
    use tower_zerotrust::authz::{AuthorizeConfig, AuthorizeLayer, Policy, Require};
    use tower_zerotrust::rate_limit::{RateLimitConfig, RateLimitLayer, RateQuota};

    let hmac = HmacConfig::builder()
        .secret(SECRET)
        .allow_any_caller()
        .optional()
        .build()
        .unwrap();
    let policy = Policy::builder()
        .role("reader", ["who:read"])
        .assign("gateway", ["reader"])
        .build()
        .unwrap();
    let authorize = AuthorizeConfig::builder(policy)
        .grpc("/test.Who/AmI", Require::permission("who:read"))
        .build()
        .unwrap();
    let limits = RateLimitConfig::builder()
        .quota(RateQuota::new(1, 2))
        // Time stands still: no request comes back while the test runs.
        .clock(support::ManualClock::at(1_000_000))
        .build()
        .unwrap();
    let stack = ServiceBuilder::new()
        .layer(VerifyHmacLayer::new(hmac))
        .layer(RateLimitLayer::new(limits))
        .layer(AuthorizeLayer::new(authorize))
        .into_inner();
    let channel = serve_who!(stack).connect().await.unwrap();
    let gateway = signed(channel.clone(), "gateway", SECRET);
    assert_eq!(who_am_i(gateway.clone()).await.unwrap(), "gateway via hmac");
    let denied = who_am_i(signed(channel.clone(), "heartbeat", SECRET))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let anonymous = who_am_i(channel.clone()).await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    assert!(who_am_i(gateway.clone()).await.is_ok());
    let exhausted = who_am_i(gateway).await.unwrap_err();
    assert_eq!(exhausted.code(), Code::ResourceExhausted);
    assert_eq!(exhausted.message(), "Too many requests");
}

/// RFC 9421 on gRPC: a tonic channel signed by `SignHttpLayer` (the body's digest included),
/// verified by `VerifyHttpSigLayer` on a tonic server; a call signed with another key is
/// unauthenticated with the layer's reason.
#[cfg(all(feature = "httpsig", feature = "tonic"))]
#[tokio::test]
async fn a_tonic_channel_signed_per_rfc_9421_is_accepted() {
    use tower_zerotrust::httpsig::{HttpSigConfig, HttpSigKey, HttpSigSigner, VerifyHttpSigLayer};
    use tower_zerotrust::sign::SignHttpLayer;

    let key = b"a shared secret of at least 32 bytes!";
    let config = HttpSigConfig::builder()
        .key("gw-1", HttpSigKey::hmac_sha256(key).unwrap(), "gateway")
        .scheme("http")
        .build()
        .unwrap();
    let endpoint = serve_who!(VerifyHttpSigLayer::new(config));
    let channel = endpoint.connect().await.unwrap();
    let signing = |keyid: &str| {
        ServiceBuilder::new()
            .layer(
                SignHttpLayer::new(HttpSigSigner::hmac_sha256(keyid, key).unwrap())
                    .origin(endpoint.uri().clone()),
            )
            .service(channel.clone())
    };
    for _ in 0..2 {
        assert_eq!(
            who_am_i(signing("gw-1")).await.unwrap(),
            "gateway via httpsig"
        );
    }
    let status = who_am_i(signing("gw-2")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(
        status.metadata().get("zerotrust-reason").unwrap(),
        "httpsig.unknown_key"
    );
    let status = who_am_i(channel).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(
        status.metadata().get("zerotrust-reason").unwrap(),
        "httpsig.missing"
    );
}
