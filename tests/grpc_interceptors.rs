//! tonic-native forms, against a real tonic server and client over TCP (and tonic's own TLS
//! where certificates are involved): each interceptor accepts a good call and refuses each bad
//! input with the right code and reason; the secure builders talk to each other with JWT only,
//! mTLS only and both, and refuse callers without credentials.

#[path = "../examples/support/registry.rs"]
mod registry;
mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use registry::{ModelRegistry, client};
use support::Shifted;
use support::certs::{Ca, Leaf, spiffe};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig,
};
use tonic::{Code, Status};
use tower_zerotrust::ConfigError;
use tower_zerotrust::authz::{AuthorizeConfig, Policy, Require};
use tower_zerotrust::grpc::{
    AuthorizeInterceptor, BearerInterceptor, HmacInterceptor, JwtInterceptor, MethodPathLayer,
    MtlsInterceptor, SecureGrpcClientBuilder, SecureGrpcError, SecureGrpcServerBuilder,
    SignHmacInterceptor, chain,
};
use tower_zerotrust::hmac::HmacConfig;
use tower_zerotrust::jwt::{Algorithm, JwtConfig, JwtKey};
use tower_zerotrust::mtls::{IdentityRule, MtlsPrincipalConfig, PeerIdentity, TlsConfig};
use tower_zerotrust::reject::REASON;
use tower_zerotrust::sign::{HmacSigner, MintedToken, StaticToken, TokenIssuer};

const SECRET: &str = support::SECRET;
const JWT_SECRET: &str = "your-secret-key-of-at-least-32-bytes";
const ISSUER: &str = "intellirouter";
const AUDIENCE: &str = "intellirouter-services";

fn jwt_config() -> JwtConfig {
    JwtConfig::builder()
        .key(JwtKey::hmac(Algorithm::HS256, JWT_SECRET).unwrap())
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap()
}

fn issuer() -> TokenIssuer {
    TokenIssuer::hmac(Algorithm::HS256, JWT_SECRET, ISSUER, AUDIENCE).unwrap()
}

fn bearer(issuer: TokenIssuer, subject: &str, roles: &[&str]) -> BearerInterceptor {
    BearerInterceptor::new(MintedToken::new(issuer, subject, roles.iter().copied()))
}

fn fixed(token: &str) -> BearerInterceptor {
    BearerInterceptor::new(StaticToken::new(token).unwrap())
}

async fn bind() -> (tokio::net::TcpListener, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

async fn plain_channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn tls_endpoint(addr: SocketAddr, ca: &Ca, client: Option<&Leaf>) -> Endpoint {
    let mut tls = ClientTlsConfig::new()
        .domain_name("localhost")
        .ca_certificate(Certificate::from_pem(&ca.pem));
    if let Some(leaf) = client {
        tls = tls.identity(Identity::from_pem(&leaf.cert, &leaf.key));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
}

fn tls_config(leaf: &Leaf, ca: &Ca) -> TlsConfig {
    TlsConfig::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes(), ca.pem.as_bytes()).unwrap()
}

/// Serves the registry with the server `builder` makes, on a random port.
async fn serve_registry(builder: SecureGrpcServerBuilder) -> SocketAddr {
    let (listener, addr) = bind().await;
    let mut server = builder.build().unwrap();
    let router = server.add_service(ModelRegistry::default());
    tokio::spawn(router.serve_with_incoming(TcpIncoming::from(listener)));
    addr
}

/// Creates a model through `channel`: the owner is the caller the server saw.
async fn create<S>(channel: S) -> Result<String, Status>
where
    S: tonic::client::GrpcService<tonic::body::Body>,
    S::Error: Into<tower_zerotrust::BoxError>,
    S::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <S::ResponseBody as http_body::Body>::Error: Into<tower_zerotrust::BoxError> + Send,
{
    client::create_model(channel, "gpt-4")
        .await
        .map(|model| model.owner)
}

/// The code and reason of a refusal.
#[track_caller]
fn refusal(result: Result<String, Status>) -> (Code, String) {
    let status = result.expect_err("refused");
    let reason = status
        .metadata()
        .get(REASON)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status.code(), reason)
}

fn unauthenticated(reason: &str) -> (Code, String) {
    (Code::Unauthenticated, reason.to_owned())
}

fn denied(reason: &str) -> (Code, String) {
    (Code::PermissionDenied, reason.to_owned())
}

#[tokio::test]
async fn the_jwt_interceptor_admits_good_tokens_only() {
    let (listener, addr) = bind().await;
    let service =
        InterceptedService::new(ModelRegistry::default(), JwtInterceptor::new(jwt_config()));
    tokio::spawn(
        Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    let channel = plain_channel(addr).await;
    let with =
        |interceptor: BearerInterceptor| InterceptedService::new(channel.clone(), interceptor);

    // A token is minted on first use, then reused by every call (and every clone).
    let good = bearer(issuer(), "router_core", &["route_requests"]);
    let attached = |mut interceptor: BearerInterceptor| {
        let request = interceptor.call(tonic::Request::new(())).unwrap();
        request.metadata().get("authorization").unwrap().clone()
    };
    let first = attached(good.clone());
    assert_eq!(create(with(good.clone())).await.unwrap(), "router_core");
    assert_eq!(create(with(good.clone())).await.unwrap(), "router_core");
    assert_eq!(attached(good), first, "the first token is reused");

    let token = issuer().mint("router_core", &["route_requests"]).unwrap();
    let tampered = format!("{}AA", &token[..token.len() - 2]);
    let other_key = TokenIssuer::hmac(
        Algorithm::HS256,
        "another-secret-of-at-least-32-bytes!",
        ISSUER,
        AUDIENCE,
    )
    .unwrap();
    let other_audience =
        TokenIssuer::hmac(Algorithm::HS256, JWT_SECRET, ISSUER, "elsewhere").unwrap();
    let expired = issuer().with_clock(Shifted(-7200));
    let cases = [
        (None, unauthenticated("jwt.missing_token")),
        (Some(fixed("not-a-token")), unauthenticated("jwt.malformed")),
        (
            Some(fixed(&"a".repeat(9000))),
            unauthenticated("jwt.token_too_large"),
        ),
        (
            Some(fixed(&tampered)),
            unauthenticated("jwt.invalid_signature"),
        ),
        (
            Some(bearer(other_key, "router_core", &[])),
            unauthenticated("jwt.invalid_signature"),
        ),
        (
            Some(bearer(other_audience, "router_core", &[])),
            unauthenticated("jwt.invalid_audience"),
        ),
        (
            Some(bearer(expired, "router_core", &[])),
            unauthenticated("jwt.expired"),
        ),
    ];
    for (interceptor, expected) in cases {
        let result = match interceptor {
            Some(interceptor) => create(with(interceptor)).await,
            None => create(channel.clone()).await,
        };
        assert_eq!(refusal(result), expected);
    }
}

#[tokio::test]
async fn the_certificate_interceptor_reads_tonic_tls_client_certificates() {
    let ca = Ca::new("Registry CA");
    let server = ca.server();
    let (listener, addr) = bind().await;
    let principals = MtlsPrincipalConfig::builder()
        .rule(IdentityRule::SpiffeId)
        .trust_domain("prod.example")
        .build()
        .unwrap();
    // Records which parsed identity each call was given.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = {
        let seen = seen.clone();
        move |request: tonic::Request<()>| {
            let peer = request.extensions().get::<Arc<PeerIdentity>>();
            seen.lock()
                .unwrap()
                .push(peer.map(|p| Arc::as_ptr(p) as usize));
            Ok(request)
        }
    };
    let service = InterceptedService::new(
        ModelRegistry::default(),
        chain(MtlsInterceptor::new(principals), record),
    );
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(&server.cert, &server.key))
        .client_ca_root(Certificate::from_pem(&ca.pem))
        .client_auth_optional(true);
    tokio::spawn(
        Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(service)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );

    let router = ca.issue("router", vec![spiffe("spiffe://prod.example/router")], true);
    let channel = tls_endpoint(addr, &ca, Some(&router))
        .connect()
        .await
        .unwrap();
    assert_eq!(
        create(channel.clone()).await.unwrap(),
        "spiffe://prod.example/router"
    );
    assert_eq!(
        create(channel).await.unwrap(),
        "spiffe://prod.example/router",
        "remembered"
    );
    // A new connection with the same certificate: still the identity parsed the first time.
    let again = tls_endpoint(addr, &ca, Some(&router))
        .connect()
        .await
        .unwrap();
    create(again).await.unwrap();
    let parsed = seen.lock().unwrap().clone();
    assert_eq!(parsed.len(), 3);
    assert!(
        parsed[0].is_some() && parsed.iter().all(|p| *p == parsed[0]),
        "{parsed:?}"
    );

    let anonymous = tls_endpoint(addr, &ca, None).connect().await.unwrap();
    assert_eq!(
        refusal(create(anonymous).await),
        unauthenticated("mtls.missing_certificate")
    );
    let outsider = ca.issue(
        "outsider",
        vec![spiffe("spiffe://dev.example/router")],
        true,
    );
    let outsider = tls_endpoint(addr, &ca, Some(&outsider))
        .connect()
        .await
        .unwrap();
    assert_eq!(refusal(create(outsider).await), denied("mtls.trust_domain"));
    // Without a SPIFFE ID a certificate is in no trust domain.
    let nameless = ca.issue("no-spiffe-id", vec![], true);
    let nameless = tls_endpoint(addr, &ca, Some(&nameless))
        .connect()
        .await
        .unwrap();
    assert_eq!(refusal(create(nameless).await), denied("mtls.trust_domain"));
    // A certificate from another CA never gets past the handshake.
    let stranger =
        Ca::new("Other CA").issue("router", vec![spiffe("spiffe://prod.example/router")], true);
    let refused = handshake_refusal(tls_endpoint(addr, &ca, Some(&stranger))).await;
    assert!(refused.contains("fatal alert: UnknownCA"), "{refused}");
}

/// Why a call over `endpoint` failed before any check could run: the TLS handshake's error.
async fn handshake_refusal(endpoint: Endpoint) -> String {
    match endpoint.connect().await {
        Err(error) => format!("{error:?}"),
        Ok(channel) => {
            let status = create(channel).await.expect_err("refused");
            assert!(
                status.metadata().get(REASON).is_none(),
                "refused by a check, not by the handshake: {status:?}"
            );
            format!("{status:?}")
        }
    }
}

/// Sends the same headers on every call: a captured, replayed request.
#[derive(Clone)]
struct Replay(http::HeaderMap);

impl Interceptor for Replay {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        request.metadata_mut().as_mut().extend(self.0.clone());
        Ok(request)
    }
}

fn signed(signer: &HmacSigner, path: &str, timestamp: u64) -> Replay {
    let mut headers = http::HeaderMap::new();
    signer
        .sign_at(
            "POST",
            path,
            timestamp,
            &format!("nonce-{timestamp}-{path}"),
        )
        .unwrap()
        .apply_to(&mut headers);
    Replay(headers)
}

#[tokio::test]
async fn the_hmac_interceptor_verifies_signatures_over_the_method() {
    let config = HmacConfig::builder()
        .secret(SECRET)
        .allow_callers(["gateway"])
        .build()
        .unwrap();
    let (listener, addr) = bind().await;
    let service = InterceptedService::new(
        ModelRegistry::default(),
        HmacInterceptor::new(config.clone()),
    );
    tokio::spawn(
        Server::builder()
            .layer(MethodPathLayer)
            .add_service(service)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    let channel = plain_channel(addr).await;
    let signing = |id: &str, secret: &str| {
        InterceptedService::new(
            channel.clone(),
            SignHmacInterceptor::new(HmacSigner::new(id, secret).unwrap()),
        )
    };
    assert_eq!(create(signing("gateway", SECRET)).await.unwrap(), "gateway");

    let gateway = HmacSigner::new("gateway", SECRET).unwrap();
    let now = support::now();
    let captured = signed(&gateway, registry::CREATE_MODEL, now);
    assert_eq!(
        create(InterceptedService::new(channel.clone(), captured.clone()))
            .await
            .unwrap(),
        "gateway"
    );
    assert_eq!(
        refusal(create(InterceptedService::new(channel.clone(), captured)).await),
        unauthenticated("hmac.replayed")
    );
    let for_another_method = signed(&gateway, registry::GET_MODEL, now + 1);
    assert_eq!(
        refusal(create(InterceptedService::new(channel.clone(), for_another_method)).await),
        unauthenticated("hmac.invalid_signature")
    );
    let stale = signed(&gateway, registry::CREATE_MODEL, now - 120);
    assert_eq!(
        refusal(create(InterceptedService::new(channel.clone(), stale)).await),
        unauthenticated("hmac.timestamp_expired")
    );
    assert_eq!(
        refusal(create(channel.clone()).await),
        unauthenticated("hmac.missing_headers")
    );
    assert_eq!(
        refusal(create(signing("gateway", support::OTHER_SECRET)).await),
        unauthenticated("hmac.invalid_signature")
    );
    assert_eq!(
        refusal(create(signing("intruder", SECRET)).await),
        denied("hmac.caller_not_allowed")
    );

    // Without MethodPathLayer the signature cannot be checked: refused, never let through.
    let (bare, addr) = bind().await;
    let service = InterceptedService::new(ModelRegistry::default(), HmacInterceptor::new(config));
    tokio::spawn(
        Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpIncoming::from(bare)),
    );
    let channel = plain_channel(addr).await;
    let status = create(InterceptedService::new(
        channel,
        SignHmacInterceptor::new(gateway),
    ))
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Internal);
}

#[tokio::test]
async fn the_authorize_interceptor_decides_per_method() {
    let rules = AuthorizeConfig::builder(Policy::example_roles())
        .grpc(registry::GET_MODEL, Require::permission("models:read"))
        .grpc(registry::CREATE_MODEL, Require::permission("models:write"))
        .build()
        .unwrap();
    let optional = JwtConfig::builder()
        .key(JwtKey::hmac(Algorithm::HS256, JWT_SECRET).unwrap())
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .optional()
        .build()
        .unwrap();
    let (listener, addr) = bind().await;
    let guard = chain(
        JwtInterceptor::new(optional),
        AuthorizeInterceptor::new(rules),
    );
    let service = InterceptedService::new(ModelRegistry::default(), guard);
    tokio::spawn(
        Server::builder()
            .layer(MethodPathLayer)
            .add_service(service)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    let channel = plain_channel(addr).await;
    let developer =
        InterceptedService::new(channel.clone(), bearer(issuer(), "dev-1", &["developer"]));
    let viewer =
        InterceptedService::new(channel.clone(), bearer(issuer(), "viewer-1", &["viewer"]));

    assert_eq!(create(developer).await.unwrap(), "dev-1");
    let model = client::get_model(viewer.clone(), "1").await.unwrap();
    assert_eq!(model.owner, "dev-1");
    assert_eq!(
        refusal(create(viewer).await),
        denied("authz.permission_denied")
    );
    assert_eq!(
        refusal(create(channel).await),
        unauthenticated("authz.unauthenticated")
    );
}

#[tokio::test]
async fn the_builders_talk_with_jwt_only() {
    let addr = serve_registry(
        SecureGrpcServerBuilder::new().with_jwt(jwt_config(), ["read_models", "write_models"]),
    )
    .await;
    let url = format!("http://{addr}");

    let admin = SecureGrpcClientBuilder::new("intellirouter.local")
        .with_jwt(issuer(), "model_admin", ["write_models"])
        .build(&url)
        .await
        .unwrap();
    assert_eq!(create(admin).await.unwrap(), "model_admin");
    let router_core = SecureGrpcClientBuilder::new("intellirouter.local")
        .with_jwt(issuer(), "router_core", ["route_requests"])
        .build(&url)
        .await
        .unwrap();
    assert_eq!(
        refusal(create(router_core).await),
        denied("authz.permission_denied")
    );
    assert_eq!(
        refusal(create(plain_channel(addr).await).await),
        unauthenticated("jwt.missing_token")
    );
}

#[tokio::test]
async fn the_builders_talk_with_mtls_only() {
    let ca = Ca::new("Registry CA");
    let addr =
        serve_registry(SecureGrpcServerBuilder::new().with_tls(tls_config(&ca.server(), &ca)))
            .await;
    let url = format!("https://{addr}");

    let router_core = ca.issue("router_core", vec![], true);
    let channel = SecureGrpcClientBuilder::new("localhost")
        .with_tls(tls_config(&router_core, &ca))
        .build(&url)
        .await
        .unwrap();
    assert_eq!(create(channel).await.unwrap(), "router_core");
    // No client certificate: the handshake itself is refused.
    let refused = handshake_refusal(tls_endpoint(addr, &ca, None)).await;
    assert!(
        refused.contains("fatal alert: CertificateRequired"),
        "{refused}"
    );
}

#[tokio::test]
async fn the_builders_talk_with_mtls_and_jwt() {
    let ca = Ca::new("Registry CA");
    let addr = serve_registry(
        SecureGrpcServerBuilder::new()
            .with_tls(tls_config(&ca.server(), &ca))
            .with_jwt(jwt_config(), ["route_requests"]),
    )
    .await;
    let url = format!("https://{addr}");
    let certificate = ca.issue("router-host", vec![], true);

    let both = SecureGrpcClientBuilder::new("localhost")
        .with_tls(tls_config(&certificate, &ca))
        .with_jwt(issuer(), "router_core", ["route_requests"])
        .build(&url)
        .await
        .unwrap();
    assert_eq!(
        create(both).await.unwrap(),
        "router_core",
        "the token names the caller"
    );
    let certificate_only = SecureGrpcClientBuilder::new("localhost")
        .with_tls(tls_config(&certificate, &ca))
        .build(&url)
        .await
        .unwrap();
    assert_eq!(
        refusal(create(certificate_only).await),
        unauthenticated("jwt.missing_token")
    );
    // A token over plaintext never reaches a TLS server.
    let token_only = SecureGrpcClientBuilder::new("localhost")
        .with_jwt(issuer(), "router_core", ["route_requests"])
        .build_lazy(&format!("http://{addr}"))
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), create(token_only))
        .await
        .expect("answered")
        .unwrap_err();
    assert!(
        status.metadata().get(REASON).is_none(),
        "refused by the transport, not by a check: {status:?}"
    );
}

#[tokio::test]
async fn builders_refuse_configurations_that_would_not_be_secure() {
    /// The reason of an insecure-configuration refusal.
    fn insecure<T>(result: Result<T, SecureGrpcError>) -> &'static str {
        match result {
            Err(SecureGrpcError::Config(ConfigError::Insecure(reason))) => reason,
            Err(other) => panic!("another error: {other}"),
            Ok(_) => panic!("accepted"),
        }
    }
    assert!(insecure(SecureGrpcServerBuilder::new().build()).contains("no credentials"));
    let client = SecureGrpcClientBuilder::new("localhost");
    assert!(insecure(client.build_lazy("http://127.0.0.1:1")).contains("no credentials"));
    let ca = Ca::new("Registry CA");
    let leaf = ca.server();
    let tls_over_http = SecureGrpcClientBuilder::new("localhost")
        .with_tls(tls_config(&leaf, &ca))
        .build_lazy("http://127.0.0.1:1");
    assert!(insecure(tls_over_http).contains("not https://"));
    // Tokens in plaintext: to loopback yes, across the network only when named as a danger.
    let token_only = || SecureGrpcClientBuilder::new("registry").with_jwt(issuer(), "ci", ["ci"]);
    for loopback in ["http://127.0.0.1:1", "http://localhost:1", "http://[::1]:1"] {
        assert!(token_only().build_lazy(loopback).is_ok(), "{loopback}");
    }
    for remote in [
        "http://registry.example:50051",
        "http://registry.internal:50051",
    ] {
        let refused = insecure(token_only().build_lazy(remote));
        assert!(
            refused.contains("danger_allow_plaintext_tokens"),
            "{remote}"
        );
    }
    assert!(
        token_only()
            .danger_allow_plaintext_tokens()
            .build_lazy("http://registry.internal:50051")
            .is_ok()
    );
    // What tonic's TLS cannot do is refused, naming the server that can.
    let with_crl =
        TlsConfig::builder_from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes(), ca.pem.as_bytes())
            .crl_pem(ca.crl(&[7]).as_bytes())
            .build()
            .unwrap();
    let error = SecureGrpcServerBuilder::new()
        .with_tls(with_crl)
        .build()
        .unwrap_err();
    assert!(
        matches!(error, SecureGrpcError::Config(ConfigError::Invalid { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("serve_tls"));
}

/// A rejection's code becomes `zerotrust-reason` metadata whatever text it holds.
#[test]
fn any_reason_code_becomes_a_status() {
    use tower_zerotrust::{Rejection, RejectionKind};
    let status = Status::from(Rejection::new(
        RejectionKind::Forbidden,
        "refusé",
        "Not allowed",
    ));
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.metadata().get(REASON).unwrap(), "refus%C3%A9");
}

/// With a key set, a token naming an unknown key makes the interceptor refresh the set in
/// the background; called outside a Tokio runtime, it refuses the token without panicking.
#[cfg(feature = "jwks")]
#[test]
fn the_jwt_interceptor_works_outside_a_runtime() {
    use tower_zerotrust::jwt::JwksSource;
    let config = JwtConfig::builder()
        .jwks(
            JwksSource::builder("http://127.0.0.1:9/jwks.json")
                .build()
                .unwrap(),
        )
        .issuer("intellirouter")
        .audience("intellirouter-services")
        .build()
        .unwrap();
    let token = TokenIssuer::hmac(
        Algorithm::HS256,
        "your-secret-key-of-at-least-32-bytes",
        "intellirouter",
        "intellirouter-services",
    )
    .unwrap()
    .with_kid("unknown")
    .mint("router_core", &["route_requests"])
    .unwrap();
    let mut request = tonic::Request::new(());
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let refused = JwtInterceptor::new(config).call(request).unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert_eq!(
        refused.metadata().get(REASON).unwrap(),
        "jwt.keys_unavailable"
    );
}
