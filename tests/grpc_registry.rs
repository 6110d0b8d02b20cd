//! tonic end to end: the model registry of `examples/grpc_service.rs` behind every layer, over
//! TLS, called by real tonic clients: OK, UNAUTHENTICATED, PERMISSION_DENIED,
//! RESOURCE_EXHAUSTED, a server stream through the layers, and the audit event of each call.

#[path = "../examples/support/registry.rs"]
mod registry;
mod support;

use std::sync::Arc;

use registry::{client, secured};
use support::captured::Captured;
use support::certs::{Ca, no_certificate_config};
use tonic::Code;
use tower::ServiceBuilder;
use tower_zerotrust::audit::{JsonLinesSink, Overflow};
use tower_zerotrust::jwt::Algorithm;
use tower_zerotrust::mtls::TlsConfig;
use tower_zerotrust::rate_limit::{RateLimitConfig, RateQuota};
use tower_zerotrust::sign::{AddBearerLayer, HmacSigner, SignHmacLayer, StaticToken, TokenIssuer};

const HMAC_SECRET: &str = support::SECRET;
const JWT_SECRET: &str = "a-jwt-secret-of-at-least-32-bytes!!";

#[tokio::test]
async fn tonic_clients_get_the_statuses_they_expect_through_every_layer() {
    let ca = Ca::new("Registry CA");
    let server = ca.server();
    let tls = TlsConfig::builder_from_pem(
        server.cert.as_bytes(),
        server.key.as_bytes(),
        ca.pem.as_bytes(),
    )
    .client_certificates_optional()
    .build()
    .unwrap()
    .server_config()
    .unwrap();
    let limits = RateLimitConfig::builder()
        .principal_quota("batch-job", RateQuota::new(1, 1))
        // Time stands still: no request comes back while the test runs.
        .clock(support::ManualClock::at(1_000_000))
        .build()
        .unwrap();
    let trail = Captured::default();
    let audit = JsonLinesSink::new(trail.clone(), 256, Overflow::Wait);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = secured::spawn(
        listener,
        tls,
        HMAC_SECRET,
        JWT_SECRET,
        limits,
        audit.clone(),
    )
    .unwrap();

    let certificate = |name: &str| {
        let leaf = ca.issue(name, vec![], true);
        TlsConfig::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes(), ca.pem.as_bytes())
            .unwrap()
            .client_config()
            .unwrap()
    };
    let ci = secured::channel(addr, certificate("ci-pipeline"))
        .await
        .unwrap();
    let dashboard = secured::channel(addr, certificate("dashboard"))
        .await
        .unwrap();
    let mut no_cert = no_certificate_config(&ca);
    no_cert.alpn_protocols = vec![b"h2".to_vec()];
    let plain = secured::channel(addr, Arc::new(no_cert)).await.unwrap();

    // mTLS: write, read, and a server stream through every layer.
    let created = client::create_model(ci.clone(), "fraud-detector")
        .await
        .unwrap();
    assert_eq!(
        (created.id.as_str(), created.owner.as_str()),
        ("1", "ci-pipeline")
    );
    client::create_model(ci.clone(), "churn-predictor")
        .await
        .unwrap();
    assert_eq!(
        client::get_model(dashboard.clone(), "1")
            .await
            .unwrap()
            .name,
        "fraud-detector"
    );
    let watched = client::watch_models(dashboard.clone()).await.unwrap();
    let names: Vec<_> = watched.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["fraud-detector", "churn-predictor"]);

    // Bearer tokens and HMAC signatures on a channel without a certificate.
    let issuer = TokenIssuer::hmac(
        Algorithm::HS256,
        JWT_SECRET,
        secured::ISSUER,
        secured::AUDIENCE,
    )
    .unwrap();
    let token = issuer.mint("release-bot", &["viewer"]).unwrap();
    let bearer = ServiceBuilder::new()
        .layer(AddBearerLayer::new(StaticToken::new(&token).unwrap()))
        .service(plain.clone());
    assert!(client::get_model(bearer.clone(), "2").await.is_ok());
    let signed = |caller: &str, secret: &str| {
        ServiceBuilder::new()
            .layer(SignHmacLayer::new(HmacSigner::new(caller, secret).unwrap()))
            .service(plain.clone())
    };
    assert_eq!(
        client::watch_models(signed("gateway", HMAC_SECRET))
            .await
            .unwrap()
            .len(),
        2
    );

    // Refusals, as tonic statuses.
    let code = |result: Result<registry::Model, tonic::Status>| result.unwrap_err().code();
    assert_eq!(
        code(client::create_model(dashboard.clone(), "x").await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(client::create_model(bearer, "x").await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(client::get_model(plain.clone(), "1").await),
        Code::Unauthenticated
    );
    let forged = signed("gateway", support::OTHER_SECRET);
    assert_eq!(
        code(client::get_model(forged, "1").await),
        Code::Unauthenticated
    );
    let stream_refused = client::watch_models(plain.clone()).await.unwrap_err();
    assert_eq!(stream_refused.code(), Code::Unauthenticated);
    assert!(
        client::get_model(signed("batch-job", HMAC_SECRET), "1")
            .await
            .is_ok()
    );
    let exhausted = client::get_model(signed("batch-job", HMAC_SECRET), "1")
        .await
        .unwrap_err();
    assert_eq!(exhausted.code(), Code::ResourceExhausted);
    // The handler's own errors pass through untouched.
    assert_eq!(code(client::get_model(ci, "99").await), Code::NotFound);

    // One audit event per call, with the gRPC method as the resource.
    audit.flush().await;
    let text = trail.text();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 14, "{text}");
    let exhausted = &events[12];
    assert_eq!(exhausted["event_type"], "rate_limit");
    assert_eq!(exhausted["resource"], registry::GET_MODEL);
    assert_eq!(exhausted["metadata"]["grpc_status"], 8);
    assert_eq!(events[2]["metadata"]["auth_method"], "mtls");
    // Statuses the handler sends in trailers are in the events too.
    assert_eq!(events[0]["metadata"]["grpc_status"], 0);
    assert_eq!(events[0]["status"], "success");
    let not_found = &events[13];
    assert_eq!(not_found["metadata"]["grpc_status"], 5);
    assert_eq!(
        (
            not_found["event_type"].as_str(),
            not_found["status"].as_str()
        ),
        (Some("access"), Some("failure"))
    );
    assert!(
        !text.contains(&token),
        "a bearer token reached the audit trail"
    );
}
