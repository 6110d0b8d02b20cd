//! Metrics through the `metrics` facade, read back from a recorder installed for this test
//! binary: requests counted by outcome, method and reason; the gauges.

mod support;

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use support::{SECRET, request, send};
use tower_zerotrust::audit::{AuditLayer, TracingSink};
use tower_zerotrust::authz::{
    AuthorizeConfig, AuthorizeLayer, DecisionRequest, Engine, EngineDecision, Policy, PolicyEngine,
    Require,
};
use tower_zerotrust::decision::Enforcement;
use tower_zerotrust::hmac::{HmacConfig, VerifyHmacLayer};
use tower_zerotrust::metrics::{Gauges, MetricsSink};
use tower_zerotrust::nonce::MemoryNonceStore;
use tower_zerotrust::sign::HmacSigner;

/// A candidate policy that allows everything.
struct AllowAll;

impl PolicyEngine for AllowAll {
    fn decide(&self, _: &DecisionRequest<'_>) -> EngineDecision {
        EngineDecision::Allow
    }
}

#[tokio::test]
async fn requests_are_counted_by_outcome_and_reason_and_gauges_reported() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let nonces = MemoryNonceStore::default();
    let hmac = HmacConfig::builder()
        .secret(SECRET)
        .allow_callers(["gateway"])
        .build()
        .unwrap();
    // A route whose rule nobody meets, in shadow mode, with a candidate that allows all.
    let shadowed = AuthorizeConfig::builder(Policy::example_roles())
        .otherwise(Require::role("admin"))
        .enforcement(Enforcement::Shadow)
        .candidate(Engine::new(AllowAll))
        .build()
        .unwrap();
    let app = Router::new()
        .route("/execute", get(|| async { "ok" }))
        .route(
            "/shadowed",
            post(|| async { "ok" }).route_layer(AuthorizeLayer::new(shadowed)),
        )
        .layer(VerifyHmacLayer::with_nonce_store(hmac, nonces.clone()))
        .layer(AuditLayer::new((TracingSink, MetricsSink)));
    let addr = support::serve(app).await;
    for _ in 0..3 {
        let mut req = request("GET", addr, "/execute");
        HmacSigner::new("gateway", SECRET)
            .unwrap()
            .sign_request(&mut req);
        send(req).await;
    }
    send(request("GET", addr, "/execute")).await;
    let mut shadowed = request("POST", addr, "/shadowed");
    HmacSigner::new("gateway", SECRET)
        .unwrap()
        .sign_request(&mut shadowed);
    assert_eq!(send(shadowed).await.status, http::StatusCode::OK);
    let mut outsider = request("GET", addr, "/execute");
    HmacSigner::new("external", SECRET)
        .unwrap()
        .sign_request(&mut outsider);
    send(outsider).await;
    let gauges = Gauges::new().nonce_store(nonces.clone());
    let reporter = gauges.spawn(Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_millis(50)).await;
    reporter.abort();

    let snapshot = snapshotter.snapshot().into_vec();
    let counter = |outcome: &str, reason: &str| {
        snapshot
            .iter()
            .find(|(key, _, _, _)| {
                let key = key.key();
                key.name() == "zerotrust_requests_total"
                    && key
                        .labels()
                        .any(|l| l.key() == "outcome" && l.value() == outcome)
                    && key
                        .labels()
                        .any(|l| l.key() == "reason" && l.value() == reason)
                    && key
                        .labels()
                        .any(|l| l.key() == "method" && l.value() == "GET")
            })
            .map(|(_, _, _, value)| value)
    };
    assert_eq!(counter("accepted", "none"), Some(&DebugValue::Counter(3)));
    assert_eq!(
        counter("rejected", "hmac.missing_headers"),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        counter("rejected", "hmac.caller_not_allowed"),
        Some(&DebugValue::Counter(1))
    );
    // The shadowed refusal, and the candidate's disagreement with it.
    let counted = |name: &str, labels: &[(&str, &str)]| {
        snapshot
            .iter()
            .find(|(key, _, _, _)| {
                let key = key.key();
                key.name() == name
                    && labels
                        .iter()
                        .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
            })
            .map(|(_, _, _, value)| value)
    };
    assert_eq!(
        counted(
            "zerotrust_shadow_refusals_total",
            &[("layer", "authz"), ("reason", "authz.permission_denied")]
        ),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        counted(
            "zerotrust_shadow_disagreements_total",
            &[
                ("layer", "authz"),
                ("enforced", "authz.permission_denied"),
                ("candidate", "allow")
            ]
        ),
        Some(&DebugValue::Counter(1))
    );
    let gauge = snapshot
        .iter()
        .find(|(key, _, _, _)| key.key().name() == "zerotrust_nonce_store_entries")
        .map(|(_, _, _, value)| value);
    // The nonces of the three accepted calls and of the shadowed one.
    assert_eq!(gauge, Some(&DebugValue::Gauge(4.0.into())));
    assert!(
        snapshot
            .iter()
            .any(|(key, _, _, _)| key.key().name() == "zerotrust_request_duration_seconds")
    );
}
