//! Rate limiting over real HTTP: bursts, recovery, isolation between principals, addresses for
//! callers nobody proved, and proxies.

mod support;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use http::StatusCode;
use support::{ManualClock, Reply, SECRET, request, send, set};
use tower_zerotrust::hmac::{HmacConfig, VerifyHmacLayer};
use tower_zerotrust::rate_limit::{
    RateLimitConfig, RateLimitConfigBuilder, RateLimitLayer, RateQuota,
};
use tower_zerotrust::sign::HmacSigner;

/// Serves `/` behind HMAC (optional: unsigned requests are counted by address) and the rate
/// limit, with axum's connection info so the address is known. The quotas' time stands still
/// unless the test moves the clock returned.
async fn start(limits: RateLimitConfigBuilder) -> (SocketAddr, ManualClock) {
    let clock = ManualClock::at(1_000_000);
    let limits = limits
        .clock(clock.clone())
        .peer_addr(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
        .build()
        .unwrap();
    let hmac = HmacConfig::builder()
        .secret(SECRET)
        .allow_any_caller()
        .optional()
        .build()
        .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new(limits))
        .layer(VerifyHmacLayer::new(hmac));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    (addr, clock)
}

async fn call_as(addr: SocketAddr, caller: Option<&str>) -> Reply {
    let mut req = request("GET", addr, "/");
    if let Some(caller) = caller {
        HmacSigner::new(caller, SECRET)
            .unwrap()
            .sign_request(&mut req);
    }
    send(req).await
}

fn header(reply: &Reply, name: &str) -> String {
    reply.headers[name].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_burst_then_429_then_recovery() {
    let (addr, clock) = start(RateLimitConfig::builder().quota(RateQuota::new(2, 3))).await;
    for remaining in ["2", "1", "0"] {
        let reply = call_as(addr, Some("gateway")).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(header(&reply, "ratelimit-limit"), "3");
        assert_eq!(header(&reply, "ratelimit-remaining"), remaining);
    }
    let refused = call_as(addr, Some("gateway")).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.code(), "rate_limit.exceeded");
    assert_eq!(
        header(&refused, "retry-after"),
        "1",
        "500 ms, rounded up to a second"
    );
    assert_eq!(header(&refused, "ratelimit-remaining"), "0");
    // One request comes back every 500 ms.
    clock.advance(499);
    assert_eq!(
        call_as(addr, Some("gateway")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    clock.advance(1);
    assert_eq!(call_as(addr, Some("gateway")).await.status, StatusCode::OK);
    assert_eq!(
        call_as(addr, Some("gateway")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn one_principals_flood_does_not_limit_another() {
    let (addr, _) = start(
        RateLimitConfig::builder()
            .quota(RateQuota::new(1, 5))
            .principal_quota("heartbeat", RateQuota::new(1, 20)),
    )
    .await;
    let mut accepted = 0;
    for _ in 0..30 {
        if call_as(addr, Some("rag-service")).await.status == StatusCode::OK {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 5, "the flood gets its burst and no more");
    for _ in 0..5 {
        assert_eq!(call_as(addr, Some("gateway")).await.status, StatusCode::OK);
    }
    // heartbeat's own override.
    let heartbeat = call_as(addr, Some("heartbeat")).await;
    assert_eq!(header(&heartbeat, "ratelimit-limit"), "20");
    // Unsigned callers are counted by address, apart from every principal.
    assert_eq!(call_as(addr, None).await.status, StatusCode::OK);
}

/// Behind a trusted proxy, each client named in `X-Forwarded-For` has its own quota; from
/// anyone else the header is ignored.
#[tokio::test]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    let anonymous = |trusted: bool| {
        let builder = RateLimitConfig::builder().quota(RateQuota::new(1, 2));
        if trusted {
            builder.trusted_proxies(["127.0.0.1".parse().unwrap()])
        } else {
            builder
        }
    };
    let forwarded = |addr, client: &str| {
        let mut req = request("GET", addr, "/");
        set(&mut req, "x-forwarded-for", client);
        send(req)
    };
    let (proxied, _) = start(anonymous(true)).await;
    for client in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        for _ in 0..2 {
            assert_eq!(
                forwarded(proxied, client).await.status,
                StatusCode::OK,
                "{client}"
            );
        }
        assert_eq!(
            forwarded(proxied, client).await.status,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    let (direct, _) = start(anonymous(false)).await;
    assert_eq!(
        forwarded(direct, "203.0.113.1").await.status,
        StatusCode::OK
    );
    assert_eq!(
        forwarded(direct, "203.0.113.2").await.status,
        StatusCode::OK
    );
    // A made-up header does not buy a new quota: all of these are 127.0.0.1.
    let refused = forwarded(direct, "203.0.113.3").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
}

/// Behind a trusted proxy: addresses with ports are read, each IPv6 client is its /64, a proxy
/// configured as a mapped IPv4 address is recognised, RFC 7239 `Forwarded` is read when chosen.
#[tokio::test]
async fn client_addresses_are_read_as_proxies_write_them() {
    use tower_zerotrust::rate_limit::ForwardedHeader;

    let one_each = || RateLimitConfig::builder().quota(RateQuota::new(1, 1));
    let via = |addr, header: &'static str, client: &str| {
        let mut req = request("GET", addr, "/");
        set(&mut req, header, client);
        send(req)
    };
    // The proxy (this test, at 127.0.0.1) configured in its IPv4-mapped IPv6 form.
    let (proxied, _) =
        start(one_each().trusted_proxies(["::ffff:127.0.0.1".parse().unwrap()])).await;
    for client in ["203.0.113.7:5678", "[2001:db8::1]:443", "198.51.100.9"] {
        let first = via(proxied, "x-forwarded-for", client).await;
        assert_eq!(first.status, StatusCode::OK, "{client}");
        let second = via(proxied, "x-forwarded-for", client).await;
        assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS, "{client}");
    }
    // Another address in the same /64 is the same client; another /64 is not.
    let same_subscriber = via(proxied, "x-forwarded-for", "2001:db8::ffff:2").await;
    assert_eq!(same_subscriber.status, StatusCode::TOO_MANY_REQUESTS);
    let other = via(proxied, "x-forwarded-for", "2001:db8:0:1::1").await;
    assert_eq!(other.status, StatusCode::OK);

    let (rfc7239, _) = start(
        one_each()
            .trusted_proxies(["127.0.0.1".parse().unwrap()])
            .forwarded_header(ForwardedHeader::Forwarded),
    )
    .await;
    for client in [
        "for=\"[2001:db8:cafe::17]:4711\";proto=https",
        "for=192.0.2.60;proto=http;by=127.0.0.1",
    ] {
        assert_eq!(
            via(rfc7239, "forwarded", client).await.status,
            StatusCode::OK
        );
        assert_eq!(
            via(rfc7239, "forwarded", client).await.status,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    assert!(
        RateLimitConfig::builder()
            .ipv6_client_prefix(16)
            .build()
            .is_err()
    );
}

/// A flood of distinct busy clients fills the key table: it starts afresh instead of refusing
/// every new client.
#[tokio::test]
async fn a_full_key_table_refuses_nobody_for_want_of_room() {
    let (flooded, _) = start(
        RateLimitConfig::builder()
            .quota(RateQuota::new(1, 1))
            .trusted_proxies(["127.0.0.1".parse().unwrap()])
            .max_keys(100),
    )
    .await;
    let via = |client: String| {
        let mut req = request("GET", flooded, "/");
        set(&mut req, "x-forwarded-for", &client);
        send(req)
    };
    for i in 0..1_100u32 {
        let client = format!("198.18.{}.{}", i / 250, i % 250 + 1);
        assert_eq!(via(client).await.status, StatusCode::OK, "client {i}");
    }
    assert_eq!(via("203.0.113.50".into()).await.status, StatusCode::OK);
}

#[test]
fn quotas_must_be_positive() {
    assert!(
        RateLimitConfig::builder()
            .quota(RateQuota::new(0, 5))
            .build()
            .is_err()
    );
    assert!(
        RateLimitConfig::builder()
            .role_quota("admin", RateQuota::new(5, 0))
            .build()
            .is_err()
    );
    assert!(RateLimitConfig::builder().max_keys(0).build().is_err());
}

/// `role_quota`: a principal whose token carries the role gets the role's quota (the most
/// generous of its roles' quotas), one without it gets the default; over real HTTP, roles from
/// the token's `roles` claim. Time stands still: each principal is refused right after its
/// own burst.
#[cfg(feature = "jwt")]
#[tokio::test]
async fn a_role_quota_applies_to_principals_holding_the_role_and_the_default_to_others() {
    use tower_zerotrust::jwt::{Algorithm, JwtConfig, JwtKey, RequireJwtLayer};
    use tower_zerotrust::sign::TokenIssuer;

    const JWT_SECRET: &str = "a-jwt-secret-of-at-least-32-bytes!!";
    let limits = RateLimitConfig::builder()
        .quota(RateQuota::new(1, 2))
        .role_quota("batch", RateQuota::new(1, 3))
        .role_quota("admin", RateQuota::new(1, 5))
        .clock(ManualClock::at(1_000_000))
        .build()
        .unwrap();
    let jwt = JwtConfig::builder()
        .key(JwtKey::hmac(Algorithm::HS256, JWT_SECRET).unwrap())
        .issuer("aegis")
        .audience("aegis-api")
        .build()
        .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new(limits))
        .layer(RequireJwtLayer::new(jwt));
    let addr = support::serve(app).await;
    let issuer = TokenIssuer::hmac(Algorithm::HS256, JWT_SECRET, "aegis", "aegis-api").unwrap();
    let call = |token: String| {
        let mut req = request("GET", addr, "/");
        set(&mut req, "authorization", &format!("Bearer {token}"));
        send(req)
    };
    // Each principal: its burst is accepted, each answer naming the quota applied; the next
    // call is refused, naming the same quota.
    for (subject, roles, burst) in [
        ("alice", &["admin"][..], "5"),
        ("bob", &["viewer"][..], "2"),
        ("carol", &[][..], "2"),
        ("dave", &["batch", "admin"][..], "5"),
        ("erin", &["batch"][..], "3"),
    ] {
        let token = issuer.mint(subject, roles).unwrap();
        let burst_size: usize = burst.parse().unwrap();
        for i in 0..burst_size {
            let reply = call(token.clone()).await;
            assert_eq!(reply.status, StatusCode::OK, "{subject}, call {i}");
            assert_eq!(header(&reply, "ratelimit-limit"), burst, "{subject}");
        }
        let refused = call(token.clone()).await;
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{subject}");
        assert_eq!(refused.code(), "rate_limit.exceeded", "{subject}");
        assert_eq!(header(&refused, "ratelimit-limit"), burst, "{subject}");
    }
}
