//! Rate limiting over real HTTP: bursts, recovery, isolation between principals, addresses for
//! callers nobody proved, and proxies.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use http::StatusCode;
use support::{Reply, SECRET, request, send, set};
use tower_zerotrust::hmac::{HmacConfig, VerifyHmacLayer};
use tower_zerotrust::rate_limit::{
    RateLimitConfig, RateLimitConfigBuilder, RateLimitLayer, RateQuota,
};
use tower_zerotrust::sign::HmacSigner;

/// Serves `/` behind HMAC (optional: unsigned requests are counted by address) and the rate
/// limit, with axum's connection info so the address is known.
async fn start(limits: RateLimitConfigBuilder) -> SocketAddr {
    let limits = limits
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
    addr
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
    let addr = start(RateLimitConfig::builder().quota(RateQuota::new(2, 3))).await;
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
    tokio::time::sleep(Duration::from_millis(550)).await;
    assert_eq!(call_as(addr, Some("gateway")).await.status, StatusCode::OK);
    assert_eq!(
        call_as(addr, Some("gateway")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn one_principals_flood_does_not_limit_another() {
    let addr = start(
        RateLimitConfig::builder()
            .quota(RateQuota::new(1, 5))
            .principal_quota("heartbeat", RateQuota::new(1, 20))
            .role_quota("unused-role", RateQuota::new(1, 1)),
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
    let proxied = start(anonymous(true)).await;
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
    let direct = start(anonymous(false)).await;
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
