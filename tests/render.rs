//! A service's own error contract over real HTTP: refusals rendered by `RenderRejectionsLayer`
//! keep their status, challenge, `Retry-After`, gRPC status and reason; other responses pass.

mod support;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use support::{SECRET, request, send, set};
use tower_zerotrust::Rejection;
use tower_zerotrust::hmac::VerifyHmacLayer;
use tower_zerotrust::rate_limit::{RateLimitConfig, RateLimitLayer, RateQuota};
use tower_zerotrust::reject::{Render, RenderRejectionsLayer};
use tower_zerotrust::sign::HmacSigner;

/// The API's error shape: `{"error": {"code", "message"}}`, and short gRPC messages.
#[derive(Clone)]
struct ApiErrors;

impl Render for ApiErrors {
    fn http(&self, rejection: &Rejection) -> Option<(HeaderValue, Bytes)> {
        let body = serde_json::json!({
            "error": {"code": rejection.code(), "message": rejection.message()}
        });
        Some((
            HeaderValue::from_static("application/vnd.api+json"),
            Bytes::from(body.to_string()),
        ))
    }

    fn grpc_message(&self, rejection: &Rejection) -> Option<String> {
        Some(format!("denied ({})", rejection.code()))
    }
}

#[tokio::test]
async fn refusals_follow_the_service_contract_and_keep_their_metadata() {
    let hmac = support::any_caller();
    let limits = RateLimitConfig::builder()
        .principal_quota("batch", RateQuota::new(1, 1))
        // Time stands still: no request comes back while the test runs.
        .clock(support::ManualClock::at(1_000_000))
        .build()
        .unwrap();
    let app = Router::new()
        .route("/models", get(|| async { "[]" }))
        .layer(RateLimitLayer::new(limits))
        .layer(VerifyHmacLayer::new(hmac))
        .layer(RenderRejectionsLayer::new(ApiErrors));
    let addr = support::serve(app).await;
    let signed = |caller: &str| {
        let mut req = request("GET", addr, "/models");
        HmacSigner::new(caller, SECRET)
            .unwrap()
            .sign_request(&mut req);
        req
    };

    let reply = send(request("GET", addr, "/models")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.headers["content-type"], "application/vnd.api+json");
    assert_eq!(reply.headers["www-authenticate"], "HMAC-SHA256");
    assert_eq!(
        reply.json(),
        serde_json::json!({"error": {
            "code": "hmac.missing_headers", "message": "Missing authentication headers"
        }})
    );

    // Accepted responses are untouched; a 429 keeps its Retry-After.
    let ok = send(signed("batch")).await;
    assert_eq!((ok.status, &ok.body[..]), (StatusCode::OK, &b"[]"[..]));
    let limited = send(signed("batch")).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers.contains_key("retry-after"));
    assert_eq!(limited.json()["error"]["code"], "rate_limit.exceeded");

    // gRPC: still trailers-only with its status and reason, in the service's words.
    let mut grpc = request("POST", addr, "/models");
    set(&mut grpc, "content-type", "application/grpc");
    let reply = send(grpc).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["grpc-status"], "16");
    assert_eq!(reply.headers["zerotrust-reason"], "hmac.missing_headers");
    assert_eq!(
        reply.headers["grpc-message"],
        "denied (hmac.missing_headers)"
    );
}
