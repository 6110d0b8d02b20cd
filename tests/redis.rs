//! State shared by replicas, against a real `redis-server` on a random port: the nonce store,
//! distributed rate limits, and two `secure_service` processes sharing one Redis.
#![cfg(feature = "redis")]

mod support;

use std::time::Duration;

use http::StatusCode;
use support::redis::{RedisCluster, RedisSentinels, RedisServer};
use support::service::SecureService;
use support::*;
use tower_zerotrust::nonce::{NonceError, NonceStore, RedisNonceStore};

/// The tests that start a cluster or a Sentinel set (six or five Redis processes) run one at
/// a time: together, on two cores, they starve each other and the nodes time out.
static PROCESS_HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
use tower_zerotrust::redis::RedisConnection;

const TTL: Duration = Duration::from_secs(60);

fn store(redis: &RedisServer) -> RedisNonceStore {
    RedisNonceStore::new(RedisConnection::open(&redis.url()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_is_accepted_once_even_when_raced() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let store = store(&redis);
    assert!(store.check_and_record("gateway", "n-1", TTL).await.is_ok());
    assert!(matches!(
        store.check_and_record("gateway", "n-1", TTL).await,
        Err(NonceError::Replayed)
    ));
    // The same nonce from another caller is another pair.
    assert!(
        store
            .check_and_record("rag-service", "n-1", TTL)
            .await
            .is_ok()
    );
    // Callers and nonces with `:` in them (token subjects, message ids) stay apart too.
    assert!(store.check_and_record("jwt:a:b", "c", TTL).await.is_ok());
    assert!(store.check_and_record("jwt:a", "b:c", TTL).await.is_ok());

    let racers: Vec<_> = (0..64)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.check_and_record("gateway", "raced", TTL).await })
        })
        .collect();
    let mut accepted = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Ok(()) => accepted += 1,
            Err(NonceError::Replayed) => {}
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(accepted, 1);
}

#[tokio::test]
async fn nonces_expire_with_their_ttl_and_prefixes_keep_services_apart() {
    let Some(redis) = support::redis::tools_installed()
        .then(RedisServer::start)
        .flatten()
    else {
        return;
    };
    let store = store(&redis);
    let replayed = |result: Result<(), NonceError>| matches!(result, Err(NonceError::Replayed));
    assert!(store.check_and_record("gateway", "n", TTL).await.is_ok());
    assert!(replayed(store.check_and_record("gateway", "n", TTL).await));
    // The one key Redis holds expires with the nonce's TTL.
    let keys = redis.cli(&["keys", "*"]);
    let key = keys.trim();
    assert!(!key.is_empty() && !key.contains('\n'), "{keys:?}");
    let pttl: i64 = redis.cli(&["pttl", key]).trim().parse().unwrap();
    assert!(0 < pttl && pttl <= 60_000, "{pttl}");
    // A nonce with a short TTL is accepted again once Redis has expired it.
    let short = Duration::from_millis(100);
    assert!(store.check_and_record("gateway", "m", short).await.is_ok());
    eventually("the nonce expired", || async {
        store.check_and_record("gateway", "m", short).await.is_ok()
    })
    .await;
    // Another prefix is another service: the same nonce is new there, still a replay here.
    let other = store.clone().prefix("other-service:nonce:");
    assert!(other.check_and_record("gateway", "n", TTL).await.is_ok());
    assert!(replayed(store.check_and_record("gateway", "n", TTL).await));
}

#[tokio::test]
async fn an_unreachable_redis_is_unavailable_within_the_timeout() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    redis.stop();
    let store = RedisNonceStore::new(
        RedisConnection::open(&url)
            .unwrap()
            .command_timeout(Duration::from_millis(200)),
    );
    let started = std::time::Instant::now();
    assert!(matches!(
        store.check_and_record("gateway", "n", TTL).await,
        Err(NonceError::Unavailable(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn bad_urls_are_configuration_errors_that_do_not_repeat_the_password() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _entered = runtime.enter();
    let error = RedisConnection::open("http://user:hunter2@example.com/")
        .unwrap_err()
        .to_string();
    assert!(!error.contains("hunter2"), "{error}");
}

/// Two replicas of `secure_service` sharing one Redis for nonces and quotas.
fn replicas(redis: &RedisServer, extra: &[(&str, &str)]) -> (SecureService, SecureService) {
    let url = redis.url();
    let mut env = vec![
        ("SERVICE_ID", "vault"),
        ("SERVICE_SECRET", SECRET),
        ("ALLOWED_CALLERS", "gateway"),
        ("NONCE_STORE", url.as_str()),
        ("RATE_LIMIT_STORE", url.as_str()),
    ];
    env.extend_from_slice(extra);
    (SecureService::start(&env), SecureService::start(&env))
}

/// The same signed request, sent to `addr`.
fn replay(
    original: &http::Request<Body>,
    addr: std::net::SocketAddr,
    path: &str,
) -> http::Request<Body> {
    let mut req = request(original.method().as_str(), addr, path);
    for (name, value) in original.headers() {
        if name.as_str().starts_with("x-") {
            req.headers_mut().insert(name.clone(), value.clone());
        }
    }
    req
}

/// Two replicas share Redis; one's clock lags 1 s. A request that the first records at the
/// edge of its window is still inside the lagging replica's window once twice the window has
/// passed, so the nonce must outlive it: it is kept for the allowed clock skew (5 s) more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_clock_lags_cannot_be_sent_a_replay() {
    use tower_zerotrust::hmac::{HmacConfig, VerifyHmacLayer};

    let Some(redis) = RedisServer::start() else {
        return;
    };
    let start = 2_000_000_000_000u64;
    // Redis expires nonces in real time; the replicas read the time the test gives them.
    let time = ManualClock::at(start);
    let replica = |lag_ms: i64| {
        let config = HmacConfig::builder()
            .secret(SECRET)
            .allow_callers(["gateway"])
            .timestamp_window(Duration::from_secs(1))
            .nonce_ttl(Duration::from_secs(2))
            .clock(time.shifted(-lag_ms))
            .build()
            .unwrap();
        let app = axum::Router::new()
            .fallback(|| async { "ok" })
            .layer(VerifyHmacLayer::with_nonce_store(config, store(&redis)));
        serve(app)
    };
    let (first, lagging) = (replica(0).await, replica(1_000).await);
    // Signed 1 s ahead of the first replica's clock: the edge of its window.
    let headers = formula_headers(SECRET, "gateway", start / 1000 + 1, "n-edge", "GET", "/x");
    let send_to = |addr| {
        let mut req = request("GET", addr, "/x");
        for (name, value) in &headers {
            req.headers_mut().insert(*name, value.parse().unwrap());
        }
        send(req)
    };
    assert_eq!(send_to(first).await.status, StatusCode::OK);
    // Twice the window (the nonce TTL) passes. The lagging replica now reads start + 1.5 s:
    // the timestamp is 0.5 s off, inside its window.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    time.advance(2_500);
    let reply = send_to(lagging).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.code(), "hmac.replayed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_accepted_by_one_replica_is_a_replay_to_the_other() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b) = replicas(&redis, &[]);
    let original = formula_request(SECRET, "gateway", "POST", a.addr, "/execute");
    let replayed = replay(&original, b.addr, "/execute");
    assert_eq!(send(original).await.status, StatusCode::OK);
    let reply = send(replayed).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.code(), "hmac.replayed");
    // Fresh requests go through on both.
    for addr in [a.addr, b.addr] {
        let reply = send(formula_request(SECRET, "gateway", "GET", addr, "/whoami")).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_is_shared_by_the_replicas() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b) = replicas(
        &redis,
        &[("RATE_LIMIT_AVERAGE", "1"), ("RATE_LIMIT_BURST", "3")],
    );
    let mut remaining = Vec::new();
    for addr in [a.addr, b.addr, a.addr] {
        let reply = send(formula_request(SECRET, "gateway", "GET", addr, "/whoami")).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.headers["ratelimit-limit"], "3");
        remaining.push(
            reply.headers["ratelimit-remaining"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let reply = send(formula_request(SECRET, "gateway", "GET", b.addr, "/whoami")).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.code(), "rate_limit.exceeded");
    let retry_after: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    // Another principal has its own quota.
    let reply = send(formula_request(
        SECRET,
        "rag-service",
        "GET",
        a.addr,
        "/whoami",
    ))
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    // One interval later, one more request is allowed.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reply = send(formula_request(SECRET, "gateway", "GET", b.addr, "/whoami")).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_closed_and_the_service_recovers_by_itself() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let (a, _b) = replicas(&redis, &[]);
    let signed = || formula_request(SECRET, "gateway", "POST", a.addr, "/execute");
    assert_eq!(send(signed()).await.status, StatusCode::OK);

    redis.stop();
    for _ in 0..3 {
        let reply = send(signed()).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
        assert!(
            ["nonce.store_unavailable", "rate_limit.store_unavailable"].contains(&&*reply.code()),
            "{reply:?}"
        );
    }
    // Unsigned requests are refused before any store is asked.
    let reply = send(request("POST", a.addr, "/execute")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    // The public route never needed Redis.
    assert_eq!(
        send(request("GET", a.addr, "/health")).await.status,
        StatusCode::OK
    );

    redis.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = send(signed()).await.status;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(std::time::Instant::now() < deadline, "no recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_that_fails_open_lets_requests_through_while_redis_is_away() {
    use axum::Router;
    use axum::routing::get;
    use tower_zerotrust::Principal;
    use tower_zerotrust::hmac::VerifyHmacLayer;
    use tower_zerotrust::nonce::MemoryNonceStore;
    use tower_zerotrust::rate_limit::{
        RateLimitConfig, RateLimitLayer, RateQuota, RedisRateLimits, WhenUnavailable,
    };

    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let app = |policy| {
        let connection = RedisConnection::open(&redis.url())
            .unwrap()
            .command_timeout(Duration::from_millis(200));
        let limits = RateLimitConfig::builder()
            .quota(RateQuota::new(1, 1))
            .shared(RedisRateLimits::new(connection, policy).prefix("fail-open-test:"))
            .build()
            .unwrap();
        let hmac = support::any_caller();
        Router::new()
            .route("/", get(|p: Principal| async move { p.id().to_owned() }))
            .layer(RateLimitLayer::new(limits))
            .layer(VerifyHmacLayer::with_nonce_store(
                hmac,
                MemoryNonceStore::default(),
            ))
    };
    let open = serve(app(WhenUnavailable::FailOpen)).await;
    let closed = serve(app(WhenUnavailable::FailClosed)).await;
    let call = |addr| send(formula_request(SECRET, "gateway", "GET", addr, "/"));
    assert_eq!(call(open).await.status, StatusCode::OK);
    assert_eq!(call(open).await.status, StatusCode::TOO_MANY_REQUESTS);
    redis.stop();
    let reply = call(open).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(!reply.headers.contains_key("ratelimit-remaining"));
    let reply = call(closed).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.code(), "rate_limit.store_unavailable");
}

mod pubsub {
    use super::*;
    use tower_zerotrust::hmac::HmacConfig;
    use tower_zerotrust::pubsub::{SignedPublisher, SignedSubscription};
    use tower_zerotrust::sign::HmacSigner;

    async fn raw_publish(redis: &RedisServer, channel: &str, message: &str) {
        let client = ::redis::Client::open(redis.url()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        ::redis::cmd("PUBLISH")
            .arg(channel)
            .arg(message)
            .query_async::<usize>(&mut connection)
            .await
            .unwrap();
    }

    fn only_router() -> HmacConfig {
        HmacConfig::builder()
            .secret(SECRET)
            .allow_callers(["router"])
            .build()
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_signed_fresh_unreplayed_messages_are_delivered() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let connection = RedisConnection::open(&redis.url()).unwrap();
        let mut events = SignedSubscription::subscribe(
            &redis.url(),
            "model-events",
            only_router(),
            RedisNonceStore::new(connection.clone()),
        )
        .await
        .unwrap();
        let router = SignedPublisher::new(
            connection.clone(),
            HmacSigner::new("router", SECRET).unwrap(),
        );

        // A good message, captured on another channel to replay and tamper with.
        let mut spy = SignedSubscription::subscribe(
            &redis.url(),
            "spy",
            support::any_caller(),
            tower_zerotrust::nonce::MemoryNonceStore::default(),
        )
        .await
        .unwrap();
        let client = ::redis::Client::open(redis.url()).unwrap();
        let mut raw = client.get_async_pubsub().await.unwrap();
        raw.subscribe("model-events").await.unwrap();
        let mut raw = raw.into_on_message();

        assert_eq!(
            router.publish("model-events", b"ready").await.unwrap(),
            2 // the subscription and the raw listener
        );
        let first = events.next().await;
        assert_eq!(first.sender.id(), "router");
        assert_eq!(first.channel, "model-events");
        assert_eq!(first.payload, b"ready");
        use futures_util::StreamExt;
        let captured: String = raw.next().await.unwrap().get_payload().unwrap();

        // Replayed as is; tampered payload; tampered sender; onto another channel; unsigned;
        // not JSON; signed with another secret; from a sender not allowed.
        raw_publish(&redis, "model-events", &captured).await;
        let mut envelope: serde_json::Value = serde_json::from_str(&captured).unwrap();
        envelope["payload"] = "ZHJhaW5lZA==".into();
        raw_publish(&redis, "model-events", &envelope.to_string()).await;
        let mut envelope: serde_json::Value = serde_json::from_str(&captured).unwrap();
        envelope["sender"] = "admin".into();
        raw_publish(&redis, "model-events", &envelope.to_string()).await;
        raw_publish(&redis, "spy", &captured).await;
        raw_publish(&redis, "model-events", r#"{"payload":"cmVhZHk="}"#).await;
        raw_publish(&redis, "model-events", "ready").await;
        SignedPublisher::new(
            connection.clone(),
            HmacSigner::new("router", OTHER_SECRET).unwrap(),
        )
        .publish("model-events", b"forged")
        .await
        .unwrap();
        SignedPublisher::new(
            connection.clone(),
            HmacSigner::new("intruder", SECRET).unwrap(),
        )
        .publish("model-events", b"hello")
        .await
        .unwrap();
        // Then a good one: the only other message delivered.
        router.publish("model-events", b"done").await.unwrap();
        let next = events.next().await;
        assert_eq!(next.payload, b"done");
        assert_eq!(events.dropped(), 7);

        // On the spy channel, the captured message is refused too: the channel is signed.
        router.publish("spy", b"spied").await.unwrap();
        assert_eq!(spy.next().await.payload, b"spied");
        assert_eq!(spy.dropped(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_subscription_subscribes_again_after_redis_restarts() {
        let Some(mut redis) = RedisServer::start() else {
            return;
        };
        let connection = RedisConnection::open(&redis.url()).unwrap();
        let events = SignedSubscription::subscribe(
            &redis.url(),
            "model-events",
            only_router(),
            tower_zerotrust::nonce::MemoryNonceStore::default(),
        )
        .await
        .unwrap();
        let mut events = Box::pin(events.into_stream());
        let router = SignedPublisher::new(connection, HmacSigner::new("router", SECRET).unwrap());
        router.publish("model-events", b"before").await.unwrap();
        use futures_util::StreamExt;
        assert_eq!(events.next().await.unwrap().payload, b"before");

        redis.restart();
        // The stream is polled meanwhile, so it notices the lost connection and subscribes
        // again; once a publish reaches a subscriber, the message comes out of the stream.
        let receiver = tokio::spawn(async move { events.next().await.unwrap() });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(1) = router.publish("model-events", b"after").await {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the subscription did not come back"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let message = tokio::time::timeout(Duration::from_secs(5), receiver)
            .await
            .expect("delivered")
            .unwrap();
        assert_eq!(message.payload, b"after");
        assert_eq!(message.sender.id(), "router");
    }

    #[cfg(feature = "jwt")]
    mod jwt {
        use super::*;
        use support::Shifted;
        use tower_zerotrust::jwt::{Algorithm, JwtConfig, JwtKey};
        use tower_zerotrust::nonce::MemoryNonceStore;
        use tower_zerotrust::pubsub::MessageSigner;
        use tower_zerotrust::sign::TokenIssuer;

        const JWT_SECRET: &str = "your-secret-key-of-at-least-32-bytes";
        const ISSUER: &str = "intellirouter";
        const AUDIENCE: &str = "intellirouter-services";

        fn issuer(secret: &str, audience: &str) -> TokenIssuer {
            TokenIssuer::hmac(Algorithm::HS256, secret, ISSUER, audience).unwrap()
        }

        fn verifier() -> JwtConfig {
            JwtConfig::builder()
                .key(JwtKey::hmac(Algorithm::HS256, JWT_SECRET).unwrap())
                .issuer(ISSUER)
                .audience(AUDIENCE)
                .build()
                .unwrap()
        }

        fn publisher(redis: &RedisServer, issuer: TokenIssuer) -> SignedPublisher {
            let connection = RedisConnection::open(&redis.url()).unwrap();
            SignedPublisher::new(
                connection,
                MessageSigner::jwt(issuer, "router_core", ["route_requests"]),
            )
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn only_messages_with_a_fresh_token_for_this_payload_and_channel_are_delivered() {
            let Some(redis) = RedisServer::start() else {
                return;
            };
            let connection = RedisConnection::open(&redis.url()).unwrap();
            let mut events = SignedSubscription::subscribe(
                &redis.url(),
                "routes",
                verifier(),
                RedisNonceStore::new(connection.clone()),
            )
            .await
            .unwrap();
            let mut other = SignedSubscription::subscribe(
                &redis.url(),
                "other",
                verifier(),
                MemoryNonceStore::default(),
            )
            .await
            .unwrap();
            let client = ::redis::Client::open(redis.url()).unwrap();
            let mut raw = client.get_async_pubsub().await.unwrap();
            raw.subscribe("routes").await.unwrap();
            let mut raw = raw.into_on_message();
            let router = publisher(&redis, issuer(JWT_SECRET, AUDIENCE));

            router.publish("routes", b"message").await.unwrap();
            let first = events.next().await;
            assert_eq!(first.sender.id(), "router_core");
            assert!(first.sender.has_role("route_requests"));
            assert_eq!(first.payload, b"message");
            use futures_util::StreamExt;
            let captured: String = raw.next().await.unwrap().get_payload().unwrap();
            let envelope: serde_json::Value = serde_json::from_str(&captured).unwrap();

            // Each bad message is dropped: the good one published after it is the next one
            // delivered, and the count goes up by one.
            let mut expected_drops = 0;
            let mut bad: Vec<String> = Vec::new();
            // Replayed as is.
            bad.push(captured.clone());
            // The payload changed under the token.
            let mut tampered = envelope.clone();
            tampered["payload"] = "ZHJhaW5lZA==".into();
            bad.push(tampered.to_string());
            let bearer = TokenIssuer::hmac(Algorithm::HS256, JWT_SECRET, ISSUER, AUDIENCE)
                .unwrap()
                .mint("router_core", &["route_requests"])
                .unwrap();
            // An ordinary bearer token, which names no channel or payload.
            bad.push(
                serde_json::json!({"token": bearer, "payload": envelope["payload"]}).to_string(),
            );
            // No token; not JSON; an HMAC envelope.
            bad.push(serde_json::json!({"payload": envelope["payload"]}).to_string());
            bad.push("message".to_owned());
            bad.push(
                serde_json::json!({"sender":"router_core","timestamp":"1","nonce":"n",
                    "signature":"v1=AAAA","payload": envelope["payload"]})
                .to_string(),
            );
            // A token whose signature was changed.
            let mut forged = envelope.clone();
            let token = envelope["token"].as_str().unwrap();
            forged["token"] = format!("{}AA", &token[..token.len() - 2]).into();
            bad.push(forged.to_string());
            for message in &bad {
                raw_publish(&redis, "routes", message).await;
                router.publish("routes", b"good").await.unwrap();
                assert_eq!(events.next().await.payload, b"good", "after {message}");
                expected_drops += 1;
                assert_eq!(events.dropped(), expected_drops, "{message}");
            }

            // Signed by publishers the subscriber must not believe: another secret, another
            // audience, a clock two minutes behind (expired) or ahead (not yet valid).
            for liar in [
                publisher(
                    &redis,
                    issuer("another-secret-key-of-at-least-32-bytes", AUDIENCE),
                ),
                publisher(&redis, issuer(JWT_SECRET, "another-audience")),
                publisher(
                    &redis,
                    issuer(JWT_SECRET, AUDIENCE).with_clock(Shifted(-120)),
                ),
                publisher(
                    &redis,
                    issuer(JWT_SECRET, AUDIENCE).with_clock(Shifted(120)),
                ),
            ] {
                liar.publish("routes", b"lie").await.unwrap();
                router.publish("routes", b"good").await.unwrap();
                assert_eq!(events.next().await.payload, b"good");
                expected_drops += 1;
                assert_eq!(events.dropped(), expected_drops);
            }

            // Moved to another channel: refused there, though that subscriber never saw it.
            raw_publish(&redis, "other", &captured).await;
            router.publish("other", b"mine").await.unwrap();
            assert_eq!(other.next().await.payload, b"mine");
            assert_eq!(other.dropped(), 1);
        }

        /// Message tokens and access tokens are typed apart: whoever reads a message on Redis
        /// cannot use its token as a bearer token, and an access token that names the channel
        /// and payload is no message signature.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn message_tokens_are_not_access_tokens_and_access_tokens_sign_no_message() {
            use axum::routing::get;
            use tower_zerotrust::Principal;
            use tower_zerotrust::jwt::RequireJwtLayer;

            let Some(redis) = RedisServer::start() else {
                return;
            };
            let client = ::redis::Client::open(redis.url()).unwrap();
            let mut raw = client.get_async_pubsub().await.unwrap();
            raw.subscribe("routes").await.unwrap();
            let mut raw = raw.into_on_message();
            publisher(&redis, issuer(JWT_SECRET, AUDIENCE))
                .publish("routes", b"message")
                .await
                .unwrap();
            use futures_util::StreamExt;
            let captured: String = raw.next().await.unwrap().get_payload().unwrap();
            let envelope: serde_json::Value = serde_json::from_str(&captured).unwrap();
            let message_token = envelope["token"].as_str().unwrap().to_owned();

            // The HTTP verifier the documentation pairs with the subscriber.
            let app = axum::Router::new()
                .route(
                    "/whoami",
                    get(|p: Principal| async move { p.id().to_owned() }),
                )
                .layer(RequireJwtLayer::new(verifier()));
            let addr = serve(app).await;
            let bearer = |token: &str| {
                let mut req = request("GET", addr, "/whoami");
                set(&mut req, "authorization", &format!("Bearer {token}"));
                req
            };
            let reply = send(bearer(&message_token)).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
            assert_eq!(reply.code(), "jwt.wrong_token_type");
            let access = issuer(JWT_SECRET, AUDIENCE)
                .mint("router_core", &["route_requests"])
                .unwrap();
            assert_eq!(send(bearer(&access)).await.status, StatusCode::OK);

            // An access token carrying the message's claims, signed with the publisher's key.
            let now = support::now();
            let claims = serde_json::json!({
                "sub": "router_core", "iss": ISSUER, "aud": AUDIENCE, "iat": now,
                "exp": now + 60, "jti": "forged-1", "channel": "routes",
                "payload_sha256": message_token_claim(&message_token, "payload_sha256"),
            });
            let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes());
            let as_access = jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                &claims,
                &key,
            )
            .unwrap();
            // The message type, but the unscoped audience of access tokens.
            let mut typed = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            typed.typ = Some(message_token_header(&message_token));
            let mut claims = claims;
            claims["jti"] = "forged-2".into();
            let unscoped = jsonwebtoken::encode(&typed, &claims, &key).unwrap();
            let mut events = SignedSubscription::subscribe(
                &redis.url(),
                "routes",
                verifier(),
                MemoryNonceStore::default(),
            )
            .await
            .unwrap();
            let router = publisher(&redis, issuer(JWT_SECRET, AUDIENCE));
            for (n, token) in [as_access, unscoped].into_iter().enumerate() {
                let forged = serde_json::json!({"token": token, "payload": envelope["payload"]});
                raw_publish(&redis, "routes", &forged.to_string()).await;
                router.publish("routes", b"good").await.unwrap();
                assert_eq!(events.next().await.payload, b"good");
                assert_eq!(events.dropped(), n as u64 + 1);
            }
        }

        fn token_part(token: &str, part: usize) -> serde_json::Value {
            use base64::Engine;
            let segment = token.split('.').nth(part).unwrap();
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(segment)
                .unwrap();
            serde_json::from_slice(&bytes).unwrap()
        }

        fn message_token_claim(token: &str, name: &str) -> serde_json::Value {
            token_part(token, 1)[name].clone()
        }

        fn message_token_header(token: &str) -> String {
            token_part(token, 0)["typ"].as_str().unwrap().to_owned()
        }
    }

    /// On a Redis Cluster: classic `PUBLISH` reaches every node, so a subscriber on the
    /// cluster (its nodes given in the URL) receives a message published through any node,
    /// verified and recorded in the cluster-backed nonce store; the replayed envelope is dropped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn signed_messages_cross_a_redis_cluster() {
        let _one_at_a_time = PROCESS_HEAVY.lock().await;
        let Some(cluster) = RedisCluster::start() else {
            return;
        };
        a_message_crosses(&cluster.url()).await;
    }

    /// A message published through `url` reaches a subscription on `url`, verified.
    async fn a_message_crosses(url: &str) {
        let connection = RedisConnection::open(url).unwrap();
        let mut events = SignedSubscription::subscribe(
            url,
            "model-events",
            only_router(),
            RedisNonceStore::new(connection.clone()),
        )
        .await
        .unwrap();
        let router = SignedPublisher::new(connection, HmacSigner::new("router", SECRET).unwrap());
        assert!(router.publish("model-events", b"ready").await.unwrap() >= 1);
        let message = events.next().await;
        assert_eq!(
            (message.sender.id(), message.payload.as_slice()),
            ("router", &b"ready"[..])
        );
        assert_eq!(events.dropped(), 0);
    }

    /// Behind Sentinels: the subscription and the publisher both find the primary they name.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn signed_messages_go_through_the_primary_sentinels_name() {
        let _one_at_a_time = PROCESS_HEAVY.lock().await;
        let Some(set) = RedisSentinels::start() else {
            return;
        };
        a_message_crosses(&set.url()).await;
    }
}

/// Two `secure_service` replicas share Redis and accept RFC 9421 signatures: a signed request
/// accepted by one is a replay to the other.
#[cfg(feature = "httpsig")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_signature_accepted_by_one_replica_is_a_replay_to_the_other() {
    use base64::Engine;
    use tower_zerotrust::httpsig::HttpSigSigner;

    let Some(redis) = RedisServer::start() else {
        return;
    };
    let secret = [7u8; 32];
    let dir = std::env::temp_dir().join(format!("zt-httpsig-redis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let keys = serde_json::json!({"keys": [{
        "keyid": "gw-1", "alg": "hmac-sha256", "principal": "gateway",
        "secret_base64": base64::engine::general_purpose::STANDARD.encode(secret),
    }]});
    std::fs::write(dir.join("keys.json"), keys.to_string()).unwrap();
    let keys_file = dir.join("keys.json").display().to_string();
    let (first, second) = replicas(&redis, &[("HTTPSIG_KEYS_FILE", keys_file.as_str())]);
    // Both replicas answer as one authority (behind a load balancer): one signature fits both.
    let signer = HttpSigSigner::hmac_sha256("gw-1", &secret).unwrap();
    let uri: http::Uri = "http://vault.internal/whoami".parse().unwrap();
    let mut headers = http::HeaderMap::new();
    signer
        .sign(&http::Method::GET, &uri, &mut headers, b"")
        .unwrap();
    headers.insert("host", "vault.internal".parse().unwrap());
    let to = |addr: std::net::SocketAddr| {
        let mut req = request("GET", addr, "/whoami");
        req.headers_mut().extend(headers.clone());
        req
    };
    let accepted = send(to(first.addr)).await;
    assert_eq!(accepted.status, StatusCode::OK, "{:?}", accepted.body);
    assert_eq!(accepted.json()["method"], "httpsig");
    let replayed = send(to(second.addr)).await;
    assert_eq!(
        (replayed.status, replayed.code().as_str()),
        (StatusCode::UNAUTHORIZED, "httpsig.replayed")
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Two replicas of `secure_service` sharing a 3-primary, 3-replica Redis Cluster: a request
/// accepted by one is a replay to the other, the quota is shared, and nonces land on every
/// primary (the keys spread over the slots).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_nonces_and_quotas_through_a_redis_cluster() {
    let _one_at_a_time = PROCESS_HEAVY.lock().await;
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let url = cluster.url();
    let env = [
        ("SERVICE_SECRET", SECRET),
        ("ALLOWED_CALLERS", "gateway"),
        ("NONCE_STORE", url.as_str()),
        ("RATE_LIMIT_STORE", url.as_str()),
        ("RATE_LIMIT_AVERAGE", "1"),
        ("RATE_LIMIT_BURST", "40"),
    ];
    let (a, b) = (SecureService::start(&env), SecureService::start(&env));
    let original = formula_request(SECRET, "gateway", "POST", a.addr, "/execute");
    let replayed = replay(&original, b.addr, "/execute");
    assert_eq!(send(original).await.status, StatusCode::OK);
    let reply = send(replayed).await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::UNAUTHORIZED, "hmac.replayed".into())
    );
    // 38 more calls by gateway, alternating replicas: within the shared burst of 40 (with the
    // one above)...
    for i in 0..38 {
        let addr = if i % 2 == 0 { a.addr } else { b.addr };
        let reply = send(formula_request(SECRET, "gateway", "POST", addr, "/execute")).await;
        assert_eq!(reply.status, StatusCode::OK, "call {i}");
    }
    // ...then over it, whichever replica is asked (one token may have come back meanwhile).
    let mut refused = 0;
    for addr in [a.addr, b.addr, a.addr, b.addr, a.addr] {
        let reply = send(formula_request(SECRET, "gateway", "POST", addr, "/execute")).await;
        refused += usize::from(reply.status == StatusCode::TOO_MANY_REQUESTS);
    }
    assert!(refused >= 2, "{refused} refusals");
    let primaries = cluster.primaries();
    assert_eq!(primaries.len(), 3);
    for port in primaries {
        assert!(
            cluster.keys_on(port) > 0,
            "no nonce on the primary at {port}"
        );
    }
}

/// `secure_service` keeping its nonces at `url`, with a quota no test reaches.
fn service_with_nonces_at(url: &str) -> SecureService {
    SecureService::start(&[
        ("SERVICE_SECRET", SECRET),
        ("ALLOWED_CALLERS", "gateway"),
        ("NONCE_STORE", url),
        ("RATE_LIMIT_AVERAGE", "100000"),
        ("RATE_LIMIT_BURST", "100000"),
    ])
}

/// Sends fresh signed requests to `addr` until `streak` in a row are accepted (within 40 s):
/// each must be accepted or refused with 503. How many were refused, and when the last was
/// (after `since`).
async fn send_until_served(
    addr: std::net::SocketAddr,
    since: std::time::Instant,
    streak: usize,
) -> (usize, Option<Duration>) {
    let (mut refusals, mut last_refusal, mut served) = (0, None, 0);
    while served < streak {
        assert!(since.elapsed() < Duration::from_secs(40), "no recovery");
        let reply = send(formula_request(SECRET, "gateway", "POST", addr, "/execute")).await;
        match reply.status {
            StatusCode::OK => served += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                (refusals, last_refusal, served) = (refusals + 1, Some(since.elapsed()), 0);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => panic!("{other} during the failover: {}", reply.code()),
        }
    }
    (refusals, last_refusal)
}

/// A primary of the cluster dies while a client keeps sending fresh signed requests: each is
/// either accepted or refused with 503 while its slot has no primary, never anything else;
/// once the replica is promoted every request succeeds again without a restart, and every
/// request accepted before the failure is still a replay (it had reached the replica).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_failover_is_503_until_the_replica_takes_over_and_replays_stay_refused() {
    let _one_at_a_time = PROCESS_HEAVY.lock().await;
    let Some(mut cluster) = RedisCluster::start() else {
        return;
    };
    let service = service_with_nonces_at(&cluster.url());
    let addr = service.addr;
    let mut accepted = Vec::new();
    for _ in 0..30 {
        let request = formula_request(SECRET, "gateway", "POST", addr, "/execute");
        let copy = replay(&request, addr, "/execute");
        assert_eq!(send(request).await.status, StatusCode::OK);
        accepted.push(copy);
    }
    let primaries = cluster.primaries();
    for primary in &primaries {
        cluster.wait_for_replication(*primary);
    }
    let victim = primaries[0];
    cluster.kill(victim);
    let (refusals, last_refusal) = send_until_served(addr, std::time::Instant::now(), 60).await;
    eprintln!(
        "failover: {refusals} requests refused with 503, the last {:?} after the kill",
        last_refusal
    );
    assert!(
        refusals > 0,
        "a third of the slots had no primary for a while"
    );
    cluster.wait_until_ok();
    // Never a 2xx for a replay: refused as one, or 503 while the client still learns the new
    // slot map (then asked again).
    for request in accepted {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let reply = send(replay(&request, addr, "/execute")).await;
            match (reply.status, reply.code().as_str()) {
                (StatusCode::UNAUTHORIZED, "hmac.replayed") => break,
                (StatusCode::SERVICE_UNAVAILABLE, _) => {
                    assert!(std::time::Instant::now() < deadline, "never recovered");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => panic!("a replay got {other:?}"),
            }
        }
    }
}

/// A primary watched by three Sentinels dies: signed requests get 503 until the Sentinels
/// promote its replica, then the service follows the new primary by itself; a request accepted
/// before the failure is still a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_follows_the_primary_sentinels_promote() {
    let _one_at_a_time = PROCESS_HEAVY.lock().await;
    let Some(mut set) = RedisSentinels::start() else {
        return;
    };
    let service = service_with_nonces_at(&set.url());
    let addr = service.addr;
    let before = formula_request(SECRET, "gateway", "POST", addr, "/execute");
    let replayed = replay(&before, addr, "/execute");
    assert_eq!(send(before).await.status, StatusCode::OK);
    assert_eq!(set.named_primary(), Some(set.primary_port));
    // Let the replica have the nonce before the primary goes.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(
        &std::process::Command::new("redis-cli")
            .args(["-p", &set.replica_port.to_string(), "dbsize"])
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .starts_with('1')
    {
        assert!(std::time::Instant::now() < deadline, "never replicated");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    set.kill_primary();
    let (refusals, last_refusal) = send_until_served(addr, std::time::Instant::now(), 20).await;
    eprintln!(
        "sentinel failover: {refusals} requests refused with 503, the last {last_refusal:?} after the kill"
    );
    assert!(refusals > 0);
    // Every Sentinel learns the new primary in time (the one asked may lag the one that led).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while set.named_primary() != Some(set.replica_port) {
        assert!(
            std::time::Instant::now() < deadline,
            "the replica was never named"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply = send(replayed).await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::UNAUTHORIZED, "hmac.replayed".into())
    );
}

/// With `acknowledged_by`, a nonce counts only once a replica has it: accepted where the
/// primary has a replica (here a Sentinel set's; the cluster case is measured by the `redis`
/// bench), unavailable (never silently accepted) where there is none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonces_can_wait_for_a_replica_to_have_them() {
    let _one_at_a_time = PROCESS_HEAVY.lock().await;
    let (Some(single), Some(set)) = (RedisServer::start(), RedisSentinels::start()) else {
        return;
    };
    let ttl = Duration::from_secs(60);
    let waiting = |url: &str| {
        let redis = RedisConnection::open(url)
            .unwrap()
            .command_timeout(Duration::from_secs(2));
        RedisNonceStore::new(redis).acknowledged_by(1, Duration::from_secs(1))
    };
    for url in [set.url()] {
        let store = waiting(&url);
        for i in 0..20 {
            let nonce = format!("n{i}");
            let recorded = store.check_and_record("gateway", &nonce, ttl).await;
            assert!(recorded.is_ok(), "{url}: {recorded:?}");
            assert!(matches!(
                store.check_and_record("gateway", &nonce, ttl).await,
                Err(NonceError::Replayed)
            ));
        }
    }
    // Fewer copies than asked, once `WAIT` has waited its whole timeout (longer than a
    // connection's default wait for an answer, which once cut it short as "timed out"): the
    // nonce is unavailable, saying why.
    let short_of_replicas = |url: &str, replicas| {
        let redis = RedisConnection::open(url)
            .unwrap()
            .command_timeout(Duration::from_secs(3));
        RedisNonceStore::new(redis).acknowledged_by(replicas, Duration::from_millis(800))
    };
    for (store, nonce) in [
        (short_of_replicas(&single.url(), 1), "alone"),
        (short_of_replicas(&set.url(), 2), "one-replica"),
    ] {
        match store.check_and_record("gateway", nonce, ttl).await {
            Err(NonceError::Unavailable(error)) => assert!(
                error.to_string().contains("did not reach enough replicas"),
                "{error}"
            ),
            other => panic!("{nonce}: {other:?}"),
        }
    }
}
