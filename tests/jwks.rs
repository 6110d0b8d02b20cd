//! Key sets from a real key server on loopback: rotation, outages, `kid` storms, OIDC discovery.

mod support;

use std::future::ready;
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
    /// Requests answered 503 while down.
    refused: Arc<AtomicUsize>,
    /// Accepts requests for the key set and never answers.
    hanging: Arc<AtomicBool>,
    /// Requests left hanging.
    hung: Arc<AtomicUsize>,
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
            refused: Arc::default(),
            hanging: Arc::default(),
            hung: Arc::default(),
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
        server.hung.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<()>().await;
    }
    if server.down.load(Ordering::SeqCst) {
        server.refused.fetch_add(1, Ordering::SeqCst);
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
    // Two refreshes fail during the outage (the key server refused them)...
    eventually("two refreshes refused", || {
        ready(idp.refused.load(Ordering::SeqCst) >= 2)
    })
    .await;
    // ...and the keys fetched before it still verify.
    for _ in 0..3 {
        assert_eq!(
            bearer(addr, &k1.token(&idp.issuer())).await.status,
            StatusCode::OK
        );
    }
    assert!(source.is_loaded());
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
    eventually("the key set fetched again", || {
        ready(idp.fetches() > fetched)
    })
    .await;
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
    eventually("the key set fetched again", || {
        ready(idp.fetches() > fetched)
    })
    .await;
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
    eventually("the key set fetched again", || ready(idp.fetches() >= 4)).await;
}

/// A key server that accepts connections and never answers: requests for unknown keys share
/// one fetch and are refused once it times out; while fetches fail, unknown keys are refused
/// at once; known keys are never held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hanging_key_server_holds_nobody_up_longer_than_one_fetch() {
    const TIMEOUT: Duration = Duration::from_secs(5);
    let k1 = signer("k1", "ec256");
    let idp = KeyServer::start(vec![k1.jwk.clone()]).await;
    let source = JwksSource::builder(idp.url())
        .timeout(TIMEOUT)
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
    eventually("the storm's fetch reached the key server", || {
        ready(idp.hung.load(Ordering::SeqCst) > 0)
    })
    .await;
    // Known keys are served from the cache meanwhile: answered while the fetch still hangs.
    for _ in 0..5 {
        assert_eq!(call(k1.token(&idp.issuer())).await.0, None);
    }
    assert!(
        storm.iter().all(|request| !request.is_finished()),
        "the fetch ended before its timeout: the test cannot tell"
    );
    for request in storm {
        let (code, took) = request.await.unwrap();
        assert_eq!(code, Some("jwt.unknown_key"));
        assert!(took < 2 * TIMEOUT, "an unknown kid waited {took:?}");
    }
    assert_eq!(
        idp.hung.load(Ordering::SeqCst),
        1,
        "the storm shared one fetch"
    );
    // The fetch failed: the next unknown kid is refused without waiting for another.
    let (code, took) = call(k1.token_with_kid(&idp.issuer(), "newer")).await;
    assert_eq!(code, Some("jwt.unknown_key"));
    assert!(took < TIMEOUT, "waited {took:?} on a failing key server");
    assert_eq!(idp.hung.load(Ordering::SeqCst), 1, "no fetch was made");
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
    let service = in_process(source.clone(), &idp.issuer());
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
    // Waits for the hung fetch to time out (500 ms); a waiter too many would return at once,
    // with the last outcome, the first fetch's success.
    let hung = source.refresh().await;
    assert!(hung.is_err(), "{hung:?}");
    // The provider recovers with a new key.
    idp.set_keys(vec![k1.jwk.clone(), k2.jwk.clone()]);
    idp.hanging.store(false, Ordering::SeqCst);
    // The first request for the new key waits for the fetch it starts: had the quitters not
    // been counted out, it would be refused at once, as one too many waiting.
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

/// The scheduled refresh (every `ttl`) brings in a key the provider adds, with no unknown `kid`
/// able to cause a fetch (the minimum refresh interval is an hour): a token signed with the new
/// key is refused before the provider publishes it and accepted once the timer has fetched it.
#[tokio::test]
async fn a_key_added_by_the_provider_is_accepted_after_the_scheduled_refresh() {
    let (k1, k2) = (signer("k1", "ec256"), signer("k2", "ed25519"));
    let idp = KeyServer::start(vec![k1.jwk.clone()]).await;
    let source = JwksSource::builder(idp.url())
        .ttl(Duration::from_millis(200))
        .min_refresh_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let addr = protected(source.clone(), &idp.issuer()).await;
    assert_eq!(
        bearer(addr, &k1.token(&idp.issuer())).await.status,
        StatusCode::OK
    );
    let new_key_token = k2.token(&idp.issuer());
    let fetched = idp.fetches();
    let reply = bearer(addr, &new_key_token).await;
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (StatusCode::UNAUTHORIZED, "jwt.unknown_key")
    );

    idp.set_keys(vec![k1.jwk.clone(), k2.jwk.clone()]);
    let accepted = eventually_some("the new key fetched on schedule", || async {
        let reply = bearer(addr, &new_key_token).await;
        if reply.status != StatusCode::OK {
            assert_eq!(reply.code(), "jwt.unknown_key");
        }
        Some(reply).filter(|reply| reply.status == StatusCode::OK)
    })
    .await;
    assert_eq!(accepted.body, "svc");
    assert!(idp.fetches() > fetched, "the schedule fetched the set");
    assert_eq!(
        bearer(addr, &k1.token(&idp.issuer())).await.status,
        StatusCode::OK,
        "the key kept in the set still verifies"
    );
}

/// Keys the set publishes without a `kid`, symmetric keys (`kty: oct`) and encryption keys
/// (`use: enc`) are left out of the usable keys; the one usable key in the same set verifies.
#[tokio::test]
async fn keys_without_kid_symmetric_and_encryption_keys_are_ignored_and_the_rest_work() {
    use base64::Engine;
    use jsonwebtoken::jwk::PublicKeyUse;

    const SHARED: &[u8] = b"a-shared-secret-of-at-least-32-bytes!!";
    let (k1, k2, k3) = (
        signer("k1", "ec256"),
        signer("k2", "ed25519"),
        signer("k3", "ec256"),
    );
    let mut no_kid = k1.jwk.clone();
    no_kid.common.key_id = None;
    let symmetric: Jwk = serde_json::from_value(json!({
        "kty": "oct",
        "kid": "shared",
        "alg": "HS256",
        "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SHARED),
    }))
    .unwrap();
    let mut encryption = k3.jwk.clone();
    encryption.common.key_algorithm = None;
    encryption.common.public_key_use = Some(PublicKeyUse::Encryption);
    let idp = KeyServer::start(vec![no_kid, symmetric, encryption, k2.jwk.clone()]).await;
    let source = JwksSource::builder(idp.url()).build().unwrap();
    assert_eq!(source.refresh().await.unwrap(), 1, "one usable key of four");
    let addr = protected(source, &idp.issuer()).await;

    let reply = bearer(addr, &k2.token(&idp.issuer())).await;
    assert_eq!(
        (reply.status, &reply.body[..]),
        (StatusCode::OK, &b"svc"[..])
    );

    // The key without a kid: neither by its would-be kid nor with no kid at all.
    let claims = json!({"sub": "svc", "iss": idp.issuer(), "aud": AUD, "exp": now() + 600});
    let no_kid_token = jsonwebtoken::encode(&Header::new(k1.alg), &claims, &k1.private).unwrap();
    let symmetric_token = {
        let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("shared".to_owned());
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(SHARED)).unwrap()
    };
    for (what, token) in [
        (
            "kid of a key published without one",
            k1.token(&idp.issuer()),
        ),
        ("no kid", no_kid_token),
        ("symmetric key", symmetric_token),
        ("encryption key", k3.token(&idp.issuer())),
    ] {
        let reply = bearer(addr, &token).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(reply.code(), "jwt.unknown_key", "{what}");
    }
}

/// A key server that accepts the request and never answers: the fetch fails once the
/// configured timeout has passed (`JwksError::Fetch`, "timed out") instead of hanging; until a
/// set has loaded, tokens get 503 `jwt.keys_unavailable`; once the server answers, the same
/// source loads and verifies.
#[tokio::test]
async fn a_fetch_from_a_silent_key_server_fails_with_its_timeout() {
    use tower_zerotrust::jwt::JwksError;

    let k1 = signer("k1", "ec256");
    let idp = KeyServer::start(vec![k1.jwk.clone()]).await;
    idp.hanging.store(true, Ordering::SeqCst);
    let timeout = Duration::from_millis(300);
    let source = JwksSource::builder(idp.url())
        .timeout(timeout)
        .min_refresh_interval(Duration::ZERO)
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let failed = tokio::time::timeout(Duration::from_secs(10), source.refresh())
        .await
        .expect("the fetch hung past its timeout");
    let took = started.elapsed();
    match &failed {
        Err(JwksError::Fetch { url, reason }) => {
            assert_eq!(url, &idp.url());
            assert_eq!(reason, "timed out");
        }
        other => panic!("expected a fetch error, got {other:?}"),
    }
    assert_eq!(
        failed.unwrap_err().to_string(),
        format!("fetching {} failed: timed out", idp.url())
    );
    assert!(
        took >= timeout,
        "gave up after {took:?}, before the timeout"
    );
    assert!(!source.is_loaded());

    let service = in_process(source.clone(), &idp.issuer());
    let (code, _) = tokio::time::timeout(
        Duration::from_secs(10),
        refusal(service.clone(), k1.token(&idp.issuer())),
    )
    .await
    .expect("a request waited past the fetch timeout");
    assert_eq!(code, Some("jwt.keys_unavailable"));

    idp.hanging.store(false, Ordering::SeqCst);
    let loaded = tokio::time::timeout(Duration::from_secs(10), source.refresh())
        .await
        .expect("refresh hung");
    assert_eq!(loaded.unwrap(), 1);
    let (code, _) = refusal(service, k1.token(&idp.issuer())).await;
    assert_eq!(code, None);
}
