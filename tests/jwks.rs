//! Key sets from a real key server on loopback: rotation, outages, `kid` storms, OIDC discovery.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use http::StatusCode;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{DecodingKey, EncodingKey, Header};
use serde_json::{Value, json};
use support::*;
use tower::{ServiceBuilder, ServiceExt};
use tower_zerotrust::Rejection;
use tower_zerotrust::jwt::{JwksSource, JwtConfig, RequireJwtLayer};

const AUD: &str = "models-api";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Signing material for one `kid`: ES256 (`ec256`) or EdDSA (`ed25519`).
struct Signer {
    kid: &'static str,
    alg: jsonwebtoken::Algorithm,
    private: EncodingKey,
    jwk: Jwk,
}

fn signer(kid: &'static str, name: &str) -> Signer {
    let public = fixture(&format!("{name}-public.pem"));
    let private = fixture(&format!("{name}-private.pem"));
    let (alg, decoding, private) = if name.starts_with("ec") {
        (
            jsonwebtoken::Algorithm::ES256,
            DecodingKey::from_ec_pem(&public).unwrap(),
            EncodingKey::from_ec_pem(&private).unwrap(),
        )
    } else {
        (
            jsonwebtoken::Algorithm::EdDSA,
            DecodingKey::from_ed_pem(&public).unwrap(),
            EncodingKey::from_ed_pem(&private).unwrap(),
        )
    };
    let mut jwk = Jwk::from_decoding_key(&decoding, Some(alg)).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    Signer {
        kid,
        alg,
        private,
        jwk,
    }
}

impl Signer {
    fn token(&self, issuer: &str) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.to_owned());
        let claims = json!({
            "sub": "svc", "iss": issuer, "aud": AUD, "exp": now() + 600, "roles": ["models:read"],
        });
        jsonwebtoken::encode(&header, &claims, &self.private).unwrap()
    }

    fn token_with_kid(&self, issuer: &str, kid: &str) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.to_owned());
        let claims = json!({"sub": "svc", "iss": issuer, "aud": AUD, "exp": now() + 600});
        jsonwebtoken::encode(&header, &claims, &self.private).unwrap()
    }
}

/// An identity provider on loopback: a key set that tests can change or take down, and an
/// OIDC discovery document.
#[derive(Clone)]
struct KeyServer {
    addr: SocketAddr,
    keys: Arc<Mutex<Vec<Jwk>>>,
    fetches: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
    /// Accepts requests for the key set and never answers.
    hanging: Arc<AtomicBool>,
    /// Sent as `Cache-Control`.
    cache_control: Arc<Mutex<Option<&'static str>>>,
}

impl KeyServer {
    async fn start(keys: Vec<Jwk>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = KeyServer {
            addr: listener.local_addr().unwrap(),
            keys: Arc::new(Mutex::new(keys)),
            fetches: Arc::default(),
            down: Arc::default(),
            hanging: Arc::default(),
            cache_control: Arc::default(),
        };
        let app = Router::new()
            .route("/jwks.json", get(jwks))
            .route("/.well-known/openid-configuration", get(discovery))
            .with_state(server.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        server
    }

    fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    fn set_keys(&self, keys: Vec<Jwk>) {
        *self.keys.lock().unwrap() = keys;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

async fn jwks(State(server): State<KeyServer>) -> axum::response::Response {
    use axum::response::IntoResponse;
    if server.hanging.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    if server.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    server.fetches.fetch_add(1, Ordering::SeqCst);
    let keys = server.keys.lock().unwrap().clone();
    let mut response = axum::Json(JwkSet { keys }).into_response();
    if let Some(value) = *server.cache_control.lock().unwrap() {
        response
            .headers_mut()
            .insert("cache-control", value.parse().unwrap());
    }
    response
}

async fn discovery(State(server): State<KeyServer>) -> axum::Json<Value> {
    axum::Json(json!({
        "issuer": server.issuer(),
        "jwks_uri": server.url(),
        "id_token_signing_alg_values_supported": ["ES256", "EdDSA"],
    }))
}

async fn protected(source: JwksSource, issuer: &str) -> SocketAddr {
    let config = JwtConfig::builder()
        .jwks(source)
        .issuer(issuer)
        .audience(AUD)
        .build()
        .unwrap();
    let app = Router::new()
        .fallback(|p: tower_zerotrust::Principal| async move { p.id().to_owned() })
        .layer(RequireJwtLayer::new(config));
    serve(app).await
}

type InProcess = tower::util::BoxCloneService<
    http::Request<String>,
    http::Response<tower_zerotrust::body::ResponseBody<String>>,
    std::convert::Infallible,
>;

/// The layer over a service that answers 200, called in process.
fn in_process(source: JwksSource, issuer: &str) -> InProcess {
    let config = JwtConfig::builder()
        .jwks(source)
        .issuer(issuer)
        .audience(AUD)
        .build()
        .unwrap();
    InProcess::new(
        ServiceBuilder::new()
            .layer(RequireJwtLayer::new(config))
            .service_fn(|_req: http::Request<String>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
            }),
    )
}

/// The refusal's code for `token` (`None` when accepted), and how long the answer took.
async fn refusal(service: InProcess, token: String) -> (Option<&'static str>, Duration) {
    let req = http::Request::get("/")
        .header("authorization", format!("Bearer {token}"))
        .body(String::new())
        .unwrap();
    let started = std::time::Instant::now();
    let response = service.oneshot(req).await.unwrap();
    let code = response.extensions().get::<Rejection>().map(|r| r.code());
    (code, started.elapsed())
}

async fn bearer(addr: SocketAddr, token: &str) -> Reply {
    let mut req = request("GET", addr, "/");
    set(&mut req, "authorization", &format!("Bearer {token}"));
    send(req).await
}

#[tokio::test]
async fn rotation_new_kid_accepted_after_refresh_removed_kid_refused() {
    let (k1, k2) = (signer("k1", "ec256"), signer("k2", "ed25519"));
    let idp = KeyServer::start(vec![k1.jwk.clone()]).await;
    let source = JwksSource::builder(idp.url())
        .min_refresh_interval(Duration::ZERO)
        .build()
        .unwrap();
    let addr = protected(source.clone(), &idp.issuer()).await;

    // First use loads the set.
    let remembered = k1.token(&idp.issuer());
    assert_eq!(bearer(addr, &remembered).await.status, StatusCode::OK);
    assert_eq!(idp.fetches(), 1);
    // Known keys are served from the cache.
    assert_eq!(
        bearer(addr, &k1.token(&idp.issuer())).await.status,
        StatusCode::OK
    );
    assert_eq!(bearer(addr, &remembered).await.status, StatusCode::OK);
    assert_eq!(idp.fetches(), 1);

    // The provider rotates: k2 in, k1 out.
    idp.set_keys(vec![k2.jwk.clone()]);
    assert_eq!(
        bearer(addr, &k2.token(&idp.issuer())).await.status,
        StatusCode::OK
    );
    assert_eq!(idp.fetches(), 2);
    let reply = bearer(addr, &k1.token(&idp.issuer())).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.code(), "jwt.unknown_key");
    // A token verified before the rotation is not accepted from memory: its key is gone.
    let reply = bearer(addr, &remembered).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.code(), "jwt.unknown_key");
}

#[tokio::test]
async fn cached_keys_keep_working_while_the_key_server_is_down() {
    let k1 = signer("k1", "ec256");
    let idp = KeyServer::start(vec![k1.jwk.clone()]).await;
    // Refreshed every 100 ms on schedule.
    let source = JwksSource::builder(idp.url())
        .ttl(Duration::from_millis(100))
        .build()
        .unwrap();
    let addr = protected(source.clone(), &idp.issuer()).await;
    assert_eq!(
        bearer(addr, &k1.token(&idp.issuer())).await.status,
        StatusCode::OK
    );

    idp.down.store(true, Ordering::SeqCst);
    // Two refreshes fail during the outage...
    let failed_from = source.fetch_count();
    eventually(|| source.fetch_count() >= failed_from + 2).await;
    // ...and the keys fetched before it still verify.
    for _ in 0..3 {
        assert_eq!(
            bearer(addr, &k1.token(&idp.issuer())).await.status,
            StatusCode::OK
        );
    }
    assert!(source.is_loaded());
}

/// Waits up to 10 s for `condition`.
async fn eventually(condition: impl Fn() -> bool) {
    for _ in 0..200 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not met within 10 s");
}

/// The set is refreshed on schedule, without any request asking for a key: a withdrawn key
/// stops verifying even the tokens remembered as verified, and an empty set is honoured.
#[tokio::test]
async fn withdrawn_keys_stop_verifying_without_traffic_and_an_empty_set_refuses_all() {
    let (k1, k2) = (signer("k1", "ec256"), signer("k2", "ed25519"));
    let idp = KeyServer::start(vec![k1.jwk.clone(), k2.jwk.clone()]).await;
    let source = JwksSource::builder(idp.url())
        .ttl(Duration::from_millis(200))
        .build()
        .unwrap();
    let addr = protected(source.clone(), &idp.issuer()).await;
    let remembered = k1.token(&idp.issuer());
    assert_eq!(bearer(addr, &remembered).await.status, StatusCode::OK);
    assert_eq!(bearer(addr, &remembered).await.status, StatusCode::OK);

    // The provider withdraws k1; nothing but the schedule refreshes the set.
    let fetched = idp.fetches();
    idp.set_keys(vec![k2.jwk.clone()]);
    eventually(|| idp.fetches() > fetched).await;
    let reply = bearer(addr, &remembered).await;
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (StatusCode::UNAUTHORIZED, "jwt.unknown_key")
    );
    assert_eq!(
        bearer(addr, &k2.token(&idp.issuer())).await.status,
        StatusCode::OK
    );

    // The provider publishes an empty set: every token is refused.
    let fetched = idp.fetches();
    idp.set_keys(vec![]);
    eventually(|| idp.fetches() > fetched).await;
    let reply = bearer(addr, &k2.token(&idp.issuer())).await;
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (StatusCode::UNAUTHORIZED, "jwt.unknown_key")
    );
}

/// A key server's `Cache-Control: max-age` shortens the schedule, down to the minimum refresh
/// interval.
#[tokio::test]
async fn the_key_servers_max_age_sets_the_schedule() {
    let k1 = signer("k1", "ec256");
    let idp = KeyServer::start(vec![k1.jwk.clone()]).await;
    *idp.cache_control.lock().unwrap() = Some("public, max-age=0");
    let source = JwksSource::builder(idp.url())
        .ttl(Duration::from_secs(3600))
        .min_refresh_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    source.refresh().await.unwrap();
    // With the one-hour TTL alone there would be no second fetch for an hour.
    eventually(|| idp.fetches() >= 4).await;
}

/// A key server that accepts connections and never answers: requests for unknown keys share
/// one fetch and are refused within about one fetch timeout; while fetches fail, unknown keys
/// are refused at once; known keys are never held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hanging_key_server_holds_nobody_up_longer_than_one_fetch() {
    let k1 = signer("k1", "ec256");
    let idp = KeyServer::start(vec![k1.jwk.clone()]).await;
    let source = JwksSource::builder(idp.url())
        .timeout(Duration::from_secs(1))
        .min_refresh_interval(Duration::from_secs(3))
        .build()
        .unwrap();
    source.refresh().await.unwrap();
    let service = in_process(source, &idp.issuer());
    let call = |token: String| refusal(service.clone(), token);
    // Let the minimum interval pass since the load, then hang.
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    idp.hanging.store(true, Ordering::SeqCst);
    let storm: Vec<_> = (0..50)
        .map(|i| tokio::spawn(call(k1.token_with_kid(&idp.issuer(), &format!("new-{i}")))))
        .collect();
    // Known keys are served from the cache meanwhile.
    for _ in 0..5 {
        let (code, took) = call(k1.token(&idp.issuer())).await;
        assert_eq!(code, None);
        assert!(
            took < Duration::from_millis(500),
            "a known key waited {took:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for request in storm {
        let (code, took) = tokio::time::timeout(Duration::from_secs(20), request)
            .await
            .expect("an unknown-kid request waited 20 s")
            .unwrap();
        assert_eq!(code, Some("jwt.unknown_key"));
        assert!(
            took < Duration::from_secs(3),
            "an unknown kid waited {took:?}"
        );
    }
    // The fetch failed: the next unknown kid is refused without waiting for another.
    let (code, took) = call(k1.token_with_kid(&idp.issuer(), "newer")).await;
    assert_eq!(code, Some("jwt.unknown_key"));
    assert!(
        took < Duration::from_millis(500),
        "waited {took:?} on a failing key server"
    );
}

#[tokio::test]
async fn a_key_set_that_never_loaded_fails_closed_with_503() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", closed.local_addr().unwrap());
    drop(closed);
    let source = JwksSource::builder(url)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let addr = protected(source, "https://idp.example").await;
    let reply = bearer(addr, &signer("k1", "ec256").token("https://idp.example")).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.code(), "jwt.keys_unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_of_unknown_kids_causes_at_most_a_handful_of_fetches() {
    let k1 = signer("k1", "ec256");
    let idp = KeyServer::start(vec![k1.jwk.clone()]).await;
    let source = JwksSource::builder(idp.url()).build().unwrap();
    source.refresh().await.unwrap();
    let service = in_process(source, &idp.issuer());
    let before = idp.fetches();
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let token = k1.token_with_kid(&idp.issuer(), &format!("bogus-{i}"));
            tokio::spawn(refusal(service.clone(), token))
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().0, Some("jwt.unknown_key"));
    }
    let storm_fetches = idp.fetches() - before;
    assert!(
        storm_fetches <= 2,
        "{storm_fetches} fetches for 1000 bogus kids"
    );
}

#[tokio::test]
async fn oidc_discovery_finds_the_key_set() {
    let k1 = signer("k1", "ec256");
    let idp = KeyServer::start(vec![k1.jwk.clone()]).await;
    let source = JwksSource::discover(&idp.issuer()).await.unwrap();
    let addr = protected(source, &idp.issuer()).await;
    let reply = bearer(addr, &k1.token(&idp.issuer())).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "svc");
    // A discovery document for another issuer is refused.
    let other = format!("{}/", idp.issuer()) + "realms/other";
    assert!(JwksSource::discover(&other).await.is_err());
}

#[test]
fn key_set_urls_must_be_https_or_loopback() {
    assert!(
        JwksSource::builder("https://idp.example/jwks")
            .build()
            .is_ok()
    );
    assert!(
        JwksSource::builder("http://127.0.0.1:9/jwks")
            .build()
            .is_ok()
    );
    assert!(
        JwksSource::builder("http://localhost:9/jwks")
            .build()
            .is_ok()
    );
    assert!(
        JwksSource::builder("http://idp.example/jwks")
            .build()
            .is_err()
    );
    assert!(
        JwksSource::builder("ftp://idp.example/jwks")
            .build()
            .is_err()
    );
    assert!(JwksSource::builder("not a url").build().is_err());
}

/// Keys published for encryption (`alg: RSA-OAEP`, `use: enc`, or `key_ops` without
/// `verify`) never verify a signature, though the same RSA key signed the token; the same key
/// published for signing does.
#[tokio::test]
async fn encryption_keys_in_the_set_verify_nothing() {
    use jsonwebtoken::jwk::{KeyAlgorithm, KeyOperations, PublicKeyUse};

    let public = DecodingKey::from_rsa_pem(&fixture("rsa-public.pem")).unwrap();
    let private = EncodingKey::from_rsa_pem(&fixture("rsa-private.pem")).unwrap();
    let published = |kid: &str, adjust: &dyn Fn(&mut Jwk)| {
        let mut jwk =
            Jwk::from_decoding_key(&public, Some(jsonwebtoken::Algorithm::RS256)).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        adjust(&mut jwk);
        jwk
    };
    let keys = vec![
        published("signing", &|_| {}),
        published("oaep", &|jwk| {
            jwk.common.key_algorithm = Some(KeyAlgorithm::RSA_OAEP)
        }),
        published("enc", &|jwk| {
            jwk.common.key_algorithm = None;
            jwk.common.public_key_use = Some(PublicKeyUse::Encryption);
        }),
        published("wrap", &|jwk| {
            jwk.common.key_operations = Some(vec![KeyOperations::Encrypt, KeyOperations::WrapKey])
        }),
        published("mismatched", &|jwk| {
            jwk.common.key_algorithm = Some(KeyAlgorithm::ES256)
        }),
    ];
    let idp = KeyServer::start(keys).await;
    let source = JwksSource::builder(idp.url()).build().unwrap();
    let addr = protected(source, &idp.issuer()).await;
    let token = |kid: &str| {
        let mut header = Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        let claims = json!({"sub": "svc", "iss": idp.issuer(), "aud": AUD, "exp": now() + 600});
        jsonwebtoken::encode(&header, &claims, &private).unwrap()
    };
    assert_eq!(bearer(addr, &token("signing")).await.status, StatusCode::OK);
    for kid in ["oaep", "enc", "wrap", "mismatched"] {
        let reply = bearer(addr, &token(kid)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{kid}");
        assert_eq!(reply.code(), "jwt.unknown_key", "{kid}");
    }
}

/// Requests that give up while waiting for a fetch (an HTTP/2 reset, a client timeout) are
/// counted out: after a thousand and more of them, a request for a new key still waits for
/// the fetch that brings it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_give_up_waiting_are_counted_out() {
    let (k1, k2) = (signer("k1", "ec256"), signer("k2", "ed25519"));
    let idp = KeyServer::start(vec![k1.jwk.clone()]).await;
    let source = JwksSource::builder(idp.url())
        .timeout(Duration::from_millis(500))
        .min_refresh_interval(Duration::ZERO)
        .build()
        .unwrap();
    source.refresh().await.unwrap();
    let service = in_process(source, &idp.issuer());
    idp.hanging.store(true, Ordering::SeqCst);
    let quitters: Vec<_> = (0..1100)
        .map(|i| {
            let token = k1.token_with_kid(&idp.issuer(), &format!("gone-{i}"));
            let call = refusal(service.clone(), token);
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_millis(50), call).await;
            })
        })
        .collect();
    for quitter in quitters {
        quitter.await.unwrap();
    }
    // The provider recovers with a new key; the hung fetch times out.
    idp.set_keys(vec![k1.jwk.clone(), k2.jwk.clone()]);
    idp.hanging.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (code, _) = refusal(service, k2.token(&idp.issuer())).await;
    assert_eq!(
        code, None,
        "a new key was refused without waiting for its fetch"
    );
}

/// A fetch whose task dies with its runtime does not leave the source waiting forever: the
/// next refresh, on another runtime, fetches.
#[test]
fn a_fetch_lost_with_its_runtime_blocks_nothing() {
    let main = tokio::runtime::Runtime::new().unwrap();
    let _in_main = main.enter();
    let k1 = signer("k1", "ec256");
    let idp = main.block_on(KeyServer::start(vec![k1.jwk.clone()]));
    idp.hanging.store(true, Ordering::SeqCst);
    let source = JwksSource::builder(idp.url())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    {
        let doomed = tokio::runtime::Runtime::new().unwrap();
        let lost = source.clone();
        doomed.block_on(async move {
            let _ = tokio::time::timeout(Duration::from_millis(200), lost.refresh()).await;
        });
        // Dropping the runtime cancels the fetch task it was running.
    }
    idp.hanging.store(false, Ordering::SeqCst);
    let refreshed = main.block_on(tokio::time::timeout(
        Duration::from_secs(10),
        source.refresh(),
    ));
    assert_eq!(refreshed.expect("refresh hung").unwrap(), 1);
}
