//! HTTP Message Signatures (RFC 9421) over real TCP: what `HttpSigSigner` signs,
//! `VerifyHttpSigLayer` accepts once, with the body it signed; tampering, replays across
//! replicas that share a nonce store, and keys of the wrong algorithm are refused.

mod support;

use std::net::SocketAddr;

use axum::Router;
use axum::routing::post;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower_zerotrust::Principal;
use tower_zerotrust::clock::{Clock, SystemClock};
use tower_zerotrust::httpsig::{
    HttpSigConfig, HttpSigConfigBuilder, HttpSigKey, HttpSigSigner, VerifyHttpSigLayer,
};
use tower_zerotrust::nonce::MemoryNonceStore;

const SECRET: &[u8] = b"a shared secret of at least 32 bytes!";

/// An Ed25519 key pair: the private key as PKCS#8 PEM, the public key as SPKI PEM.
fn ed25519_pems() -> (String, String) {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let mut spki = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    spki.extend_from_slice(pair.public_key().as_ref());
    let pem = |label: &str, der: &[u8]| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n")
    };
    (pem("PRIVATE KEY", pkcs8.as_ref()), pem("PUBLIC KEY", &spki))
}

/// A service accepting `gateway`'s HMAC key and `router`'s Ed25519 key, remembering nonces in
/// `nonces`.
async fn serve(public_pem: &str, nonces: MemoryNonceStore) -> SocketAddr {
    serve_with(public_pem, nonces, |config| config).await
}

/// The same service, its configuration adjusted by `adjust`.
async fn serve_with(
    public_pem: &str,
    nonces: MemoryNonceStore,
    adjust: impl FnOnce(HttpSigConfigBuilder) -> HttpSigConfigBuilder,
) -> SocketAddr {
    let config = HttpSigConfig::builder()
        .key("gw-1", HttpSigKey::hmac_sha256(SECRET).unwrap(), "gateway")
        .key(
            "router-1",
            HttpSigKey::public_key_pem("ed25519", public_pem.as_bytes()).unwrap(),
            "router",
        )
        .scheme("http")
        .max_body_size(1024);
    let app = Router::new()
        .route(
            "/models",
            post(|caller: Principal, body: String| async move {
                format!("{} ({}) sent {body}", caller.id(), caller.method())
            }),
        )
        .layer(VerifyHttpSigLayer::with_nonce_store(
            adjust(config).build().unwrap(),
            nonces,
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn signed(signer: &HttpSigSigner, addr: SocketAddr, body: &[u8]) -> HeaderMap {
    let uri: Uri = format!("http://{addr}/models?v=1").parse().unwrap();
    let mut headers = HeaderMap::new();
    signer
        .sign(&Method::POST, &uri, &mut headers, body)
        .unwrap();
    headers
}

async fn post_with(
    addr: SocketAddr,
    headers: &HeaderMap,
    body: &'static [u8],
) -> (StatusCode, HeaderMap, String) {
    send(addr, Method::POST, "/models?v=1", headers, body).await
}

async fn send(
    addr: SocketAddr,
    method: Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &'static [u8],
) -> (StatusCode, HeaderMap, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path_and_query}"))
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    request.headers_mut().extend(headers.clone());
    let response = client.request(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// The status and the reason code of a `POST` with `headers` and `body`.
async fn outcome(
    addr: SocketAddr,
    headers: &HeaderMap,
    body: &'static [u8],
) -> (StatusCode, String) {
    let (status, _, text) = post_with(addr, headers, body).await;
    (status, code(&text))
}

fn code(body: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    json["code"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn signed_requests_prove_their_key_s_caller_once() {
    let (private_pem, public_pem) = ed25519_pems();
    let addr = serve(&public_pem, MemoryNonceStore::default()).await;
    let hmac = HttpSigSigner::hmac_sha256("gw-1", SECRET).unwrap();
    let ed25519 = HttpSigSigner::ed25519_pem("router-1", private_pem.as_bytes()).unwrap();
    let body: &'static [u8] = b"{\"name\":\"m1\"}";
    for (signer, expected) in [(&hmac, "gateway (httpsig)"), (&ed25519, "router (httpsig)")] {
        let headers = signed(signer, addr, body);
        let (status, _, text) = post_with(addr, &headers, body).await;
        assert_eq!(
            (status, text),
            (
                StatusCode::OK,
                format!("{expected} sent {{\"name\":\"m1\"}}")
            )
        );
        assert_eq!(
            outcome(addr, &headers, body).await,
            (StatusCode::UNAUTHORIZED, "httpsig.replayed".into())
        );
    }
}

#[tokio::test]
async fn a_replay_to_another_replica_sharing_the_store_is_refused() {
    let (_, public_pem) = ed25519_pems();
    let shared = MemoryNonceStore::default();
    let replicas = [
        serve(&public_pem, shared.clone()).await,
        serve(&public_pem, shared).await,
    ];
    let signer = HttpSigSigner::hmac_sha256("gw-1", SECRET).unwrap();
    let body: &'static [u8] = b"{}";
    // Both replicas serve `api.example` behind a load balancer: one signature fits both.
    let uri: Uri = "http://api.example/models?v=1".parse().unwrap();
    let mut headers = HeaderMap::new();
    signer
        .sign(&Method::POST, &uri, &mut headers, body)
        .unwrap();
    headers.insert("host", "api.example".parse().unwrap());
    assert_eq!(
        post_with(replicas[0], &headers, body).await.0,
        StatusCode::OK
    );
    let (status, _, text) = post_with(replicas[1], &headers, body).await;
    assert_eq!(
        (status, code(&text)),
        (StatusCode::UNAUTHORIZED, "httpsig.replayed".into())
    );
}

#[tokio::test]
async fn tampering_and_wrong_keys_are_refused_with_their_codes() {
    let (private_pem, public_pem) = ed25519_pems();
    let addr = serve(&public_pem, MemoryNonceStore::default()).await;
    let signer = HttpSigSigner::hmac_sha256("gw-1", SECRET).unwrap();
    let body: &'static [u8] = b"{\"name\":\"m1\"}";
    let (status, _, text) =
        post_with(addr, &signed(&signer, addr, body), b"{\"name\":\"m2\"}").await;
    assert_eq!(
        (status, code(&text)),
        (StatusCode::UNAUTHORIZED, "httpsig.digest_mismatch".into())
    );
    // An Ed25519 signature presented under the HMAC key's id: the key pins its algorithm.
    let impostor = HttpSigSigner::ed25519_pem("gw-1", private_pem.as_bytes()).unwrap();
    assert_eq!(
        outcome(addr, &signed(&impostor, addr, body), body).await,
        (
            StatusCode::UNAUTHORIZED,
            "httpsig.algorithm_mismatch".into()
        )
    );
    // An unknown key id.
    let stranger = HttpSigSigner::hmac_sha256("gw-2", SECRET).unwrap();
    assert_eq!(
        outcome(addr, &signed(&stranger, addr, body), body).await,
        (StatusCode::UNAUTHORIZED, "httpsig.unknown_key".into())
    );
    // Nothing signed: the challenge names the scheme.
    let (status, headers, text) = post_with(addr, &HeaderMap::new(), body).await;
    assert_eq!(
        (status, code(&text)),
        (StatusCode::UNAUTHORIZED, "httpsig.missing".into())
    );
    assert_eq!(headers["www-authenticate"], "Signature");
    // More than the layer reads: 413.
    let big: &'static [u8] = &[b'x'; 2048];
    assert_eq!(
        outcome(addr, &signed(&signer, addr, big), big).await,
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "httpsig.body_too_large".into()
        )
    );
}

#[test]
fn keys_are_checked_when_configured() {
    let (private_pem, public_pem) = ed25519_pems();
    assert!(HttpSigKey::hmac_sha256(b"short").is_err());
    assert!(HttpSigKey::public_key_pem("rsa-pss-sha512", public_pem.as_bytes()).is_err());
    assert!(HttpSigKey::public_key_pem("ed25519", private_pem.as_bytes()).is_err());
    assert!(HttpSigConfig::builder().build().is_err(), "no key");
    let key = || HttpSigKey::hmac_sha256(SECRET).unwrap();
    assert!(
        HttpSigConfig::builder()
            .key("k", key(), "jwt:alice")
            .build()
            .is_err()
    );
    assert!(
        HttpSigConfig::builder()
            .key("k", key(), "svc")
            .scheme("ftp")
            .build()
            .is_err()
    );
    assert!(HttpSigSigner::ed25519_pem("k", public_pem.as_bytes()).is_err());
}

/// In optional mode unsigned requests pass without a principal (another layer may prove
/// them), and the 401 for nobody proven names `Signature`; public paths need nothing. A bad
/// signature is refused all the same.
#[tokio::test]
async fn optional_mode_and_public_paths_let_unsigned_requests_through() {
    let config = HttpSigConfig::builder()
        .key("gw-1", HttpSigKey::hmac_sha256(SECRET).unwrap(), "gateway")
        .scheme("http")
        .public_path("/health")
        .optional()
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/models",
            post(|caller: Option<Principal>| async move {
                caller.map_or("anonymous".to_owned(), |c| c.id().to_owned())
            }),
        )
        .route(
            "/whoami",
            post(|caller: Principal| async move { caller.id().to_owned() }),
        )
        .route(
            "/health",
            post(|body: String| async move { format!("healthy: {body}") }),
        )
        .layer(VerifyHttpSigLayer::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (status, _, text) = post_with(addr, &HeaderMap::new(), b"{}").await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "anonymous"));
    let signer = HttpSigSigner::hmac_sha256("gw-1", SECRET).unwrap();
    let (status, _, text) = post_with(addr, &signed(&signer, addr, b"{}"), b"{}").await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "gateway"));
    let (status, _, text) = post_with(addr, &signed(&signer, addr, b"{}"), b"{...}").await;
    assert_eq!(
        (status, code(&text)),
        (StatusCode::UNAUTHORIZED, "httpsig.digest_mismatch".into())
    );

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    for (path, expected_status) in [
        ("/whoami", StatusCode::UNAUTHORIZED),
        ("/health", StatusCode::OK),
    ] {
        let request = Request::post(format!("http://{addr}{path}"))
            .body(Full::new(Bytes::from_static(b"ping")))
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), expected_status, "{path}");
        if expected_status == StatusCode::UNAUTHORIZED {
            assert_eq!(response.headers()["www-authenticate"], "Signature");
        } else {
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, "healthy: ping");
        }
    }
}

/// `secure_service` with `HTTPSIG_KEYS_FILE`: message signatures are accepted wherever HMAC
/// ones are, `/execute` keeps its allowed callers, replays and tampered bodies are refused.
#[tokio::test]
async fn secure_service_accepts_message_signatures_where_it_accepts_hmac() {
    use tower_zerotrust::sign::HmacSigner;

    let (private_pem, public_pem) = ed25519_pems();
    let dir = std::env::temp_dir().join(format!("zt-httpsig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("router.pub.pem"), &public_pem).unwrap();
    let secret = base64::engine::general_purpose::STANDARD.encode(SECRET);
    let keys = serde_json::json!({"keys": [
        {"keyid": "gw-1", "alg": "hmac-sha256", "secret_base64": secret, "principal": "gateway", "roles": ["developer"]},
        {"keyid": "router-1", "alg": "ed25519", "public_key_pem_file": "router.pub.pem", "principal": "router"},
    ]});
    std::fs::write(dir.join("keys.json"), keys.to_string()).unwrap();
    let keys_file = dir.join("keys.json").display().to_string();
    let service = support::service::SecureService::start(&[
        ("SERVICE_SECRET", "0123456789abcdef0123456789abcdef"),
        ("ALLOWED_CALLERS", "gateway"),
        ("HTTPSIG_KEYS_FILE", &keys_file),
    ]);
    let addr = service.addr;
    let gateway = HttpSigSigner::hmac_sha256("gw-1", SECRET).unwrap();
    let router = HttpSigSigner::ed25519_pem("router-1", private_pem.as_bytes()).unwrap();
    let send = |method: Method, path: &str, headers: HeaderMap, body: &'static [u8]| {
        let uri = format!("http://{addr}{path}");
        async move {
            let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
            let mut request = Request::builder()
                .method(method)
                .uri(uri)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(body)))
                .unwrap();
            request.headers_mut().extend(headers);
            let response = client.request(request).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            (status, json)
        }
    };
    let sign = |signer: &HttpSigSigner, method: &Method, path: &str, body: &[u8]| {
        let uri: Uri = format!("http://{addr}{path}").parse().unwrap();
        let mut headers = HeaderMap::new();
        signer.sign(method, &uri, &mut headers, body).unwrap();
        headers
    };

    // /execute: an allowed caller by message signature, and by HMAC as before.
    let signed = sign(&gateway, &Method::POST, "/execute", b"");
    let (status, json) = send(Method::POST, "/execute", signed.clone(), b"").await;
    assert_eq!(
        (status, json["caller"].as_str()),
        (StatusCode::OK, Some("gateway"))
    );
    let (status, json) = send(Method::POST, "/execute", signed, b"").await;
    assert_eq!(
        (status, json["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("httpsig.replayed"))
    );
    let mut hmac = Request::post("/execute").body(()).unwrap();
    HmacSigner::new("gateway", "0123456789abcdef0123456789abcdef")
        .unwrap()
        .sign_request(&mut hmac);
    let (status, _) = send(Method::POST, "/execute", hmac.headers().clone(), b"").await;
    assert_eq!(status, StatusCode::OK);
    // A caller outside ALLOWED_CALLERS, proven by its signature: 403.
    let (status, json) = send(
        Method::POST,
        "/execute",
        sign(&router, &Method::POST, "/execute", b""),
        b"",
    )
    .await;
    assert_eq!(
        (status, json["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("authz.caller_not_allowed"))
    );

    // /whoami names the proof; the key file's roles come with the signature.
    let (status, json) = send(
        Method::GET,
        "/whoami",
        sign(&router, &Method::GET, "/whoami", b""),
        b"",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (json["id"].as_str(), json["method"].as_str()),
        (Some("router"), Some("httpsig"))
    );
    let (_, json) = send(
        Method::GET,
        "/whoami",
        sign(&gateway, &Method::GET, "/whoami", b""),
        b"",
    )
    .await;
    assert_eq!(json["roles"], serde_json::json!(["developer"]));

    // /models: the developer role writes; a body changed after signing is refused.
    let body: &'static [u8] = b"{\"name\":\"m1\"}";
    let (status, json) = send(
        Method::POST,
        "/models",
        sign(&gateway, &Method::POST, "/models", body),
        body,
    )
    .await;
    assert_eq!(
        (status, json["owner"].as_str()),
        (StatusCode::CREATED, Some("gateway"))
    );
    let tampered = sign(&gateway, &Method::POST, "/models", body);
    let (status, json) = send(Method::POST, "/models", tampered, b"{\"name\":\"m2\"}").await;
    assert_eq!(
        (status, json["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("httpsig.digest_mismatch"))
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// The system clock, `offset` seconds ahead (or behind).
struct Shifted(i64);

impl Clock for Shifted {
    fn now_millis(&self) -> u64 {
        SystemClock
            .now_millis()
            .saturating_add_signed(self.0 * 1000)
    }
}

fn now() -> u64 {
    SystemClock.now_millis() / 1000
}

/// A signature made by hand (not by `HttpSigSigner`), as a client that chose its own coverage
/// and parameters would: HMAC-SHA256 with `secret` over the base of `covered` components of
/// `POST /models?v=1` to `addr` with `body`.
fn hand_signed(
    addr: SocketAddr,
    covered: &[&str],
    params: &str,
    secret: &[u8],
    body: &[u8],
) -> HeaderMap {
    use hmac::Mac;
    use sha2::Digest;
    let digest = format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(body))
    );
    let mut base = String::new();
    for component in covered {
        let value = match *component {
            "@method" => "POST".to_owned(),
            "@authority" => addr.to_string(),
            "@path" => "/models".to_owned(),
            "@query" => "?v=1".to_owned(),
            "content-digest" => digest.clone(),
            other => panic!("no value for {other}"),
        };
        base.push_str(&format!("\"{component}\": {value}\n"));
    }
    let list: Vec<String> = covered.iter().map(|c| format!("\"{c}\"")).collect();
    let input = format!("({}){params}", list.join(" "));
    base.push_str(&format!("\"@signature-params\": {input}"));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(base.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let mut headers = HeaderMap::new();
    headers.insert("content-digest", digest.parse().unwrap());
    headers.insert("signature-input", format!("sig1={input}").parse().unwrap());
    headers.insert("signature", format!("sig1=:{signature}:").parse().unwrap());
    headers
}

const ALL: [&str; 5] = ["@method", "@authority", "@path", "@query", "content-digest"];

/// Each part the signature covers, changed after signing, is refused; the untouched request
/// is accepted (the control).
#[tokio::test]
async fn every_covered_part_changed_after_signing_is_refused() {
    let (_, public_pem) = ed25519_pems();
    let addr = serve(&public_pem, MemoryNonceStore::default()).await;
    let signer = HttpSigSigner::hmac_sha256("gw-1", SECRET).unwrap();
    let body: &'static [u8] = b"{\"name\":\"m1\"}";
    let other: &'static [u8] = b"{\"name\":\"m2\"}";
    let invalid = (
        StatusCode::UNAUTHORIZED,
        "httpsig.invalid_signature".to_owned(),
    );
    let refused = |(status, _, text): (StatusCode, HeaderMap, String)| (status, code(&text));

    let headers = signed(&signer, addr, body);
    let query = send(addr, Method::POST, "/models?v=2", &headers, body).await;
    assert_eq!(refused(query), invalid, "query");
    let headers = signed(&signer, addr, body);
    let method = send(addr, Method::PUT, "/models?v=1", &headers, body).await;
    assert_eq!(refused(method), invalid, "method");
    let mut authority = signed(&signer, addr, body);
    authority.insert("host", "registry.example".parse().unwrap());
    assert_eq!(
        refused(post_with(addr, &authority, body).await),
        invalid,
        "authority"
    );
    // The body and its digest both replaced: the digest matches, the signature does not.
    let mut digest = signed(&signer, addr, body);
    let swapped = signed(&signer, addr, other)["content-digest"].clone();
    digest.insert("content-digest", swapped);
    assert_eq!(
        refused(post_with(addr, &digest, other).await),
        invalid,
        "covered field"
    );
    let control = post_with(addr, &signed(&signer, addr, body), body).await;
    assert_eq!(control.0, StatusCode::OK);
}

#[tokio::test]
async fn stale_and_future_signatures_are_refused() {
    let (_, public_pem) = ed25519_pems();
    let signer = HttpSigSigner::hmac_sha256("gw-1", SECRET).unwrap();
    let body: &'static [u8] = b"{}";
    // The server's clock 40 s ahead: the signature was created too long ago. Behind: it was
    // created in the future. Within the window (±30 s and the skew margin): accepted.
    for (offset, expected) in [
        (40, StatusCode::UNAUTHORIZED),
        (-40, StatusCode::UNAUTHORIZED),
        (20, StatusCode::OK),
        (-20, StatusCode::OK),
    ] {
        let addr = serve_with(&public_pem, MemoryNonceStore::default(), |config| {
            config
                .clock(Shifted(offset))
                .max_clock_skew(std::time::Duration::ZERO)
        })
        .await;
        let (status, _, text) = post_with(addr, &signed(&signer, addr, body), body).await;
        assert_eq!(status, expected, "clock {offset:+} s: {text}");
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(code(&text), "httpsig.expired");
        }
    }
}

/// A signature that leaves the query or the body's digest out is refused even though it
/// verifies; covering everything, the same hand-made signature is accepted.
#[tokio::test]
async fn a_signature_covering_too_little_is_refused() {
    let (_, public_pem) = ed25519_pems();
    let addr = serve(&public_pem, MemoryNonceStore::default()).await;
    let body: &'static [u8] = b"{}";
    let params = |nonce: &str| format!(";created={};keyid=\"gw-1\";nonce=\"{nonce}\"", now());
    for (covered, nonce) in [
        (
            &["@method", "@authority", "@path", "content-digest"][..],
            "n1",
        ),
        (&["@method", "@authority", "@path", "@query"][..], "n2"),
        (
            &["@authority", "@path", "@query", "content-digest"][..],
            "n3",
        ),
    ] {
        let headers = hand_signed(addr, covered, &params(nonce), SECRET, body);
        assert_eq!(
            outcome(addr, &headers, body).await,
            (StatusCode::UNAUTHORIZED, "httpsig.coverage".into()),
            "{covered:?}"
        );
    }
    let complete = hand_signed(addr, &ALL, &params("n4"), SECRET, body);
    assert_eq!(post_with(addr, &complete, body).await.0, StatusCode::OK);
}

/// The Ed25519 key's public half used as an HMAC secret (the classic confusion): refused
/// whether the signature names `hmac-sha256` or names no algorithm. The reverse (an Ed25519
/// signature under the HMAC key's id) is in `tampering_and_wrong_keys_are_refused_with_their_codes`.
#[tokio::test]
async fn a_public_key_used_as_an_hmac_secret_is_refused() {
    let (_, public_pem) = ed25519_pems();
    let addr = serve(&public_pem, MemoryNonceStore::default()).await;
    let body: &'static [u8] = b"{}";
    let forger = HttpSigSigner::hmac_sha256("router-1", public_pem.as_bytes()).unwrap();
    assert_eq!(
        outcome(addr, &signed(&forger, addr, body), body).await,
        (
            StatusCode::UNAUTHORIZED,
            "httpsig.algorithm_mismatch".into()
        )
    );
    let params = format!(";created={};keyid=\"router-1\";nonce=\"n1\"", now());
    let unnamed = hand_signed(addr, &ALL, &params, public_pem.as_bytes(), body);
    assert_eq!(
        outcome(addr, &unnamed, body).await,
        (StatusCode::UNAUTHORIZED, "httpsig.invalid_signature".into())
    );
    // The same hand-made signature with the real secret and key id: accepted (the control).
    let params = format!(";created={};keyid=\"gw-1\";nonce=\"n2\"", now());
    let genuine = hand_signed(addr, &ALL, &params, SECRET, body);
    assert_eq!(post_with(addr, &genuine, body).await.0, StatusCode::OK);
}

/// A second `Signature-Input` line (or `Signature` line) is part of the field, not ignored: a
/// label given twice, however the lines split, is ambiguous; so are two signatures when the
/// configuration names none.
#[tokio::test]
async fn duplicate_or_conflicting_signature_entries_are_refused() {
    let (_, public_pem) = ed25519_pems();
    let addr = serve(&public_pem, MemoryNonceStore::default()).await;
    let signer = HttpSigSigner::hmac_sha256("gw-1", SECRET).unwrap();
    let body: &'static [u8] = b"{}";
    let ambiguous = (StatusCode::UNAUTHORIZED, "httpsig.ambiguous".to_owned());

    // A conflicting second line for the same label, after a valid first line.
    let mut second_line = signed(&signer, addr, body);
    let weaker = format!(
        r#"sig1=("@method");created={};keyid="gw-1";nonce="x""#,
        now()
    );
    second_line.append("signature-input", weaker.parse().unwrap());
    assert_eq!(outcome(addr, &second_line, body).await, ambiguous);
    // The signature repeated on a second `Signature` line.
    let mut twice = signed(&signer, addr, body);
    let signature = twice["signature"].clone();
    twice.append("signature", signature);
    assert_eq!(outcome(addr, &twice, body).await, ambiguous);
    // Two labels, nothing configured to choose between them.
    let mut two = signed(&signer, addr, body);
    let input = two["signature-input"].to_str().unwrap().to_owned();
    let signature = two["signature"].to_str().unwrap().to_owned();
    let copy = |field: &str| format!("{field}, {}", field.replacen("sig1=", "sig2=", 1));
    two.insert("signature-input", copy(&input).parse().unwrap());
    two.insert("signature", copy(&signature).parse().unwrap());
    assert_eq!(outcome(addr, &two, body).await, ambiguous);
    // The control: the same request with one line each.
    let control = post_with(addr, &signed(&signer, addr, body), body).await;
    assert_eq!(control.0, StatusCode::OK);
}
