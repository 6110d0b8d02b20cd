//! Metrics through the `metrics` facade, read back from a recorder installed for this test
//! binary: requests counted by outcome, method and reason; the gauges.

mod support;

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use support::{SECRET, eventually, request, send};
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
    // The reporter's first round comes at once (the next in an hour).
    let reporter = Gauges::new()
        .nonce_store(nonces.clone())
        .spawn(Duration::from_secs(3600));
    let reported = std::cell::Cell::new(None);
    eventually("the gauges reported", || {
        let snapshot = snapshotter.snapshot().into_vec();
        reported.set(snapshot.iter().find_map(|(key, _, _, value)| {
            match (key.key().name(), value) {
                ("zerotrust_nonce_store_entries", DebugValue::Gauge(entries)) => Some(entries.0),
                _ => None,
            }
        }));
        std::future::ready(reported.get().is_some())
    })
    .await;
    reporter.abort();
    // The nonces of the three accepted calls and of the shadowed one.
    assert_eq!(reported.get(), Some(4.0));
    assert!(
        snapshot
            .iter()
            .any(|(key, _, _, _)| key.key().name() == "zerotrust_request_duration_seconds")
    );
}

/// `zerotrust_certificate_expiry_seconds` is the time left on the certificate the server
/// presents, read from the certificate a real TLS client receives, and follows a reload to the
/// new certificate.
#[cfg(feature = "mtls")]
#[tokio::test]
async fn the_certificate_expiry_gauge_is_the_time_left_on_the_served_certificate() {
    use support::certs::{Ca, Leaf, ServerFiles, serve_https, served_certificate};
    use tower_zerotrust::mtls::ReloadingServerConfig;

    /// The `notAfter` (Unix seconds) of the certificate the server presents to a new client.
    async fn served_not_after(addr: std::net::SocketAddr, ca: &Ca, client: &Leaf) -> i64 {
        served_certificate(addr, ca, client).await.not_after()
    }
    /// The gauge as `Gauges::report` sets it, read from a recorder of this thread's own.
    fn reported(gauges: &Gauges) -> f64 {
        gauge(gauges, "zerotrust_certificate_expiry_seconds")
    }
    fn unix_now() -> i64 {
        support::now() as i64
    }

    let ca = Ca::new("Test CA");
    let expiring = |year| {
        ca.issue_with(
            "secure-service",
            vec![rcgen::SanType::DnsName("localhost".try_into().unwrap())],
            false,
            |params| params.not_after = rcgen::date_time_ymd(year, 1, 1),
        )
    };
    let files = ServerFiles::new("expiry-gauge", &ca, &expiring(2090));
    let tls = ReloadingServerConfig::new(files.builder()).unwrap();
    let addr = serve_https(
        tls.clone(),
        Router::new().route("/", get(|| async { "ok" })),
    )
    .await;
    let client = ca.issue("model-registry", vec![], true);
    let gauges = Gauges::new().certificate(tls.clone());

    // The gauge lies between the time left after and before it was read (whole seconds).
    let check = |not_after: i64, before: i64, gauge: f64, after: i64| {
        assert!(
            ((not_after - after) as f64..=(not_after - before) as f64).contains(&gauge),
            "gauge {gauge}, certificate ends at {not_after}, read between {before} and {after}"
        );
    };
    let first = served_not_after(addr, &ca, &client).await;
    let before = unix_now();
    let gauge = reported(&gauges);
    check(first, before, gauge, unix_now());
    assert!(gauge > 50.0 * 365.0 * 86_400.0, "{gauge}");

    files.install(&expiring(2080));
    tls.reload().unwrap();
    let second = served_not_after(addr, &ca, &client).await;
    assert!(second < first, "the server presents the new certificate");
    let before = unix_now();
    let gauge = reported(&gauges);
    check(second, before, gauge, unix_now());
}

/// The gauge `name` as `gauges` report it now (to a recorder of this thread only).
fn gauge(gauges: &Gauges, name: &str) -> f64 {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || gauges.report());
    let values: Vec<f64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, _, _, _)| key.key().name() == name)
        .map(|(_, _, _, value)| match value {
            DebugValue::Gauge(value) => value.into_inner(),
            other => panic!("not a gauge: {other:?}"),
        })
        .collect();
    assert_eq!(values.len(), 1, "one gauge {name}: {values:?}");
    values[0]
}

/// The audit gauges: the events a `JsonLinesSink` could not write because its writer fails,
/// and the events it dropped because its queue was full.
#[tokio::test]
async fn the_audit_gauges_count_the_events_a_json_lines_sink_lost() {
    use tower_zerotrust::audit::{JsonLinesSink, Overflow};

    struct FullDisk;
    impl std::io::Write for FullDisk {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::StorageFull.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Five requests answered by a service audited to `sink`.
    async fn five_requests(sink: &JsonLinesSink) {
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(AuditLayer::new(sink.clone()));
        let addr = support::serve(app).await;
        for _ in 0..5 {
            assert_eq!(
                send(request("GET", addr, "/")).await.status,
                http::StatusCode::OK
            );
        }
    }

    let sink = JsonLinesSink::new(FullDisk, 8, Overflow::Wait);
    let gauges = Gauges::new().audit_file(sink.clone());
    assert_eq!(gauge(&gauges, "zerotrust_audit_events_unwritten"), 0.0);
    five_requests(&sink).await;
    sink.flush().await;
    assert_eq!(gauge(&gauges, "zerotrust_audit_events_unwritten"), 5.0);
    assert_eq!(gauge(&gauges, "zerotrust_audit_events_dropped"), 0.0);

    // A writer that never finishes its first write, room for one event, drops and counts:
    // the first event waits, the four after it are dropped.
    let stuck = JsonLinesSink::new(support::Stalled::default(), 1, Overflow::DropAndCount);
    five_requests(&stuck).await;
    let gauges = Gauges::new().audit_file(stuck.clone());
    assert_eq!(stuck.dropped(), 4);
    assert_eq!(gauge(&gauges, "zerotrust_audit_events_dropped"), 4.0);
    assert_eq!(gauge(&gauges, "zerotrust_audit_events_unwritten"), 0.0);
}
