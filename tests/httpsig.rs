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
use tower_zerotrust::httpsig::{HttpSigConfig, HttpSigKey, HttpSigSigner, VerifyHttpSigLayer};
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
    let config = HttpSigConfig::builder()
        .key("gw-1", HttpSigKey::hmac_sha256(SECRET).unwrap(), "gateway")
        .key(
            "router-1",
            HttpSigKey::public_key_pem("ed25519", public_pem.as_bytes()).unwrap(),
            "router",
        )
        .scheme("http")
        .max_body_size(1024)
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/models",
            post(|caller: Principal, body: String| async move {
                format!("{} ({}) sent {body}", caller.id(), caller.method())
            }),
        )
        .layer(VerifyHttpSigLayer::with_nonce_store(config, nonces));
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
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = Request::post(format!("http://{addr}/models?v=1"))
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    request.headers_mut().extend(headers.clone());
    let response = client.request(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
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
        let (status, _, text) = post_with(addr, &headers, body).await;
        assert_eq!(
            (status, code(&text)),
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
    let (status, _, text) = post_with(addr, &signed(&impostor, addr, body), body).await;
    assert_eq!(
        (status, code(&text)),
        (
            StatusCode::UNAUTHORIZED,
            "httpsig.algorithm_mismatch".into()
        )
    );
    // An unknown key id.
    let stranger = HttpSigSigner::hmac_sha256("gw-2", SECRET).unwrap();
    let (status, _, text) = post_with(addr, &signed(&stranger, addr, body), body).await;
    assert_eq!(
        (status, code(&text)),
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
    let (status, _, text) = post_with(addr, &signed(&signer, addr, big), big).await;
    assert_eq!(
        (status, code(&text)),
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
