//! The audit trail over real HTTP: one event per request whatever happened, the layer and
//! reason of every refusal, no secrets, nothing lost at shutdown.

mod support;

use std::io::Write;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http::{Method, StatusCode};
use serde_json::Value;
use support::captured::Captured;
use support::{SECRET, request, send, set};
use tower_zerotrust::audit::{AuditLayer, JsonLinesSink, Overflow};
use tower_zerotrust::authz::{AuthorizeConfig, AuthorizeLayer, Policy, Require};
use tower_zerotrust::decision::Enforcement;
use tower_zerotrust::hmac::{HmacConfig, VerifyHmacLayer};
use tower_zerotrust::rate_limit::{RateLimitConfig, RateLimitLayer, RateQuota};
use tower_zerotrust::sign::HmacSigner;

/// The events written, one JSON value per line.
fn events(lines: &Captured) -> Vec<Value> {
    lines
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The whole stack: audit ▸ HMAC ▸ rate limit ▸ authorize ▸ handler.
fn stack(sink: JsonLinesSink) -> Router {
    stack_with(sink, Enforcement::Enforce)
}

/// The same, rate limit and authorization in `enforcement` mode.
fn stack_with(sink: JsonLinesSink, enforcement: Enforcement) -> Router {
    let hmac = HmacConfig::builder()
        .secret(SECRET)
        .allow_any_caller()
        .public_path("/health")
        .build()
        .unwrap();
    let policy = Policy::builder()
        .role("reader", ["models:read"])
        .assign("gateway", ["reader"])
        .assign("batch", ["reader"])
        .build()
        .unwrap();
    let authorize = AuthorizeConfig::builder(policy)
        .public(Method::GET, "/health")
        .route(Method::GET, "/models", Require::permission("models:read"))
        .enforcement(enforcement)
        .build()
        .unwrap();
    let limits = RateLimitConfig::builder()
        .principal_quota("batch", RateQuota::new(1, 1))
        .enforcement(enforcement)
        .build()
        .unwrap();
    Router::new()
        .route("/models", get(|| async { "[]" }))
        .route("/health", get(|| async { "ok" }))
        .layer(AuthorizeLayer::new(authorize))
        .layer(RateLimitLayer::new(limits))
        .layer(VerifyHmacLayer::new(hmac))
        .layer(AuditLayer::new(sink))
}

#[tokio::test]
async fn every_request_gives_one_event_naming_who_what_and_why() {
    let lines = Captured::default();
    let sink = JsonLinesSink::new(lines.clone(), 1024, Overflow::Wait);
    let addr = support::serve(stack(sink.clone())).await;
    let signed = |caller: &str, path: &str| {
        let mut req = request("GET", addr, path);
        HmacSigner::new(caller, SECRET)
            .unwrap()
            .sign_request(&mut req);
        req
    };

    let mut ok = signed("gateway", "/models");
    set(&mut ok, "user-agent", "Python/3.11");
    set(
        &mut ok,
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    );
    set(&mut ok, "cookie", "session=cookie-secret-value");
    let replay = ok.headers().clone();
    assert_eq!(send(ok).await.status, StatusCode::OK);
    let mut again = request("GET", addr, "/models");
    *again.headers_mut() = replay.clone();
    assert_eq!(send(again).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        send(signed("heartbeat", "/models")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(signed("batch", "/models")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(signed("batch", "/models")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        send(request("GET", addr, "/health")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(signed("gateway", "/nowhere")).await.status,
        StatusCode::FORBIDDEN
    );
    sink.flush().await;

    let events = events(&lines);
    assert_eq!(events.len(), 7, "{}", lines.text());
    let summary: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e["event_type"].as_str().unwrap(),
                e["status"].as_str().unwrap(),
                e["principal"].as_str(),
                e["metadata"]["reason"].as_str(),
                e["metadata"]["http_status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("access", "success", Some("gateway"), None, 200),
            (
                "authentication",
                "failure",
                None,
                Some("hmac.replayed"),
                401
            ),
            (
                "authorization",
                "failure",
                Some("heartbeat"),
                Some("authz.permission_denied"),
                403
            ),
            ("access", "success", Some("batch"), None, 200),
            (
                "rate_limit",
                "failure",
                Some("batch"),
                Some("rate_limit.exceeded"),
                429
            ),
            ("access", "success", None, None, 200),
            (
                "authorization",
                "failure",
                Some("gateway"),
                Some("authz.no_rule"),
                403
            ),
        ]
    );
    let first = &events[0];
    assert_eq!(first["resource"], "/models");
    assert_eq!(first["action"], "GET");
    assert_eq!(first["user_agent"], "Python/3.11");
    assert_eq!(first["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(first["metadata"]["auth_method"], "hmac");
    assert_eq!(first["metadata"]["roles"], serde_json::json!([]));
    assert!(first["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(events[1]["metadata"]["layer"], "hmac");
    assert_eq!(events[4]["metadata"]["layer"], "rate_limit");
    assert_ne!(
        events[1]["trace_id"], events[2]["trace_id"],
        "a new trace id each"
    );

    // No credential of any kind reached the trail.
    let text = lines.text();
    for header in ["x-signature", "x-nonce", "cookie"] {
        let value = replay[header].to_str().unwrap();
        let value = value.strip_prefix("sha256=").unwrap_or(value);
        assert!(
            !text.contains(value),
            "{header} leaked into the audit trail"
        );
    }
    assert!(!text.contains(SECRET));
}

/// A writer that takes its time, to fill the queue.
struct Slow(Captured);

impl Write for Slow {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::thread::sleep(Duration::from_millis(5));
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_waits_or_drops_and_counts_as_configured() {
    for overflow in [Overflow::Wait, Overflow::DropAndCount] {
        let lines = Captured::default();
        let sink = JsonLinesSink::new(Slow(lines.clone()), 2, overflow);
        let addr = support::serve(stack(sink.clone())).await;
        let calls = (0..40).map(|_| tokio::spawn(send(request("GET", addr, "/health"))));
        for call in calls.collect::<Vec<_>>() {
            assert_eq!(call.await.unwrap().status, StatusCode::OK);
        }
        sink.flush().await;
        let written = events(&lines).len() as u64;
        match overflow {
            Overflow::Wait => {
                assert_eq!(written, 40, "waiting loses nothing");
                assert_eq!(sink.dropped(), 0);
            }
            _ => {
                assert!(
                    sink.dropped() > 0,
                    "nothing was dropped: the test cannot tell"
                );
                assert_eq!(
                    written + sink.dropped(),
                    40,
                    "every event written or counted"
                );
            }
        }
    }
}

/// After a graceful shutdown, a flush leaves every event on disk.
#[tokio::test]
async fn events_are_flushed_to_the_file_on_graceful_shutdown() {
    let path = std::env::temp_dir().join(format!("zt-audit-{}.jsonl", std::process::id()));
    std::fs::remove_file(&path).ok();
    let sink = JsonLinesSink::append_to(&path, 64, Overflow::Wait).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, stack(sink.clone()))
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .into_future(),
    );
    for _ in 0..25 {
        send(request("GET", addr, "/health")).await;
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    sink.flush().await;
    let written = std::fs::read_to_string(&path).unwrap();
    assert_eq!(written.lines().count(), 25);
    std::fs::remove_file(&path).ok();
}

/// A caller that proves itself and is then refused (a valid signature from a caller outside the
/// allowed list) is named in the audit event, whose status is `failure`.
#[tokio::test]
async fn a_caller_refused_after_proving_itself_is_named() {
    let lines = Captured::default();
    let sink = JsonLinesSink::new(lines.clone(), 64, Overflow::Wait);
    let hmac = HmacConfig::builder()
        .secret(SECRET)
        .allow_callers(["gateway"])
        .build()
        .unwrap();
    let app = Router::new()
        .route("/execute", axum::routing::post(|| async { "ok" }))
        .layer(VerifyHmacLayer::new(hmac))
        .layer(AuditLayer::new(sink.clone()));
    let addr = support::serve(app).await;
    let signed = |caller: &str, secret: &str| {
        let mut req = request("POST", addr, "/execute");
        HmacSigner::new(caller, secret)
            .unwrap()
            .sign_request(&mut req);
        req
    };
    let reply = send(signed("external", SECRET)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    // Not proven (another secret): nobody is named.
    let reply = send(signed("external", support::OTHER_SECRET)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    sink.flush().await;
    let events = events(&lines);
    assert_eq!(events.len(), 2, "{}", lines.text());
    assert_eq!(events[0]["principal"], "external");
    assert_eq!(events[0]["status"], "failure");
    assert_eq!(events[0]["metadata"]["auth_method"], "hmac");
    assert_eq!(events[0]["metadata"]["reason"], "hmac.caller_not_allowed");
    assert_eq!(events[1]["principal"], Value::Null);
}

/// Shadow mode lets every request through and records, in each event, the refusal enforce mode
/// gives the same traffic: the same layer and reason code, event by event. Authorization
/// refusals explain themselves in both modes.
#[tokio::test]
async fn shadow_mode_records_exactly_the_refusals_enforce_mode_makes() {
    let mut runs = Vec::new();
    for enforcement in [Enforcement::Enforce, Enforcement::Shadow] {
        let lines = Captured::default();
        let sink = JsonLinesSink::new(lines.clone(), 64, Overflow::Wait);
        let addr = support::serve(stack_with(sink.clone(), enforcement)).await;
        let mut statuses = Vec::new();
        // Allowed; no permission; within quota; over quota; not proven at all.
        for (caller, secret) in [
            ("gateway", SECRET),
            ("intruder", SECRET),
            ("batch", SECRET),
            ("batch", SECRET),
            ("gateway", support::OTHER_SECRET),
        ] {
            let mut req = request("GET", addr, "/models");
            HmacSigner::new(caller, secret)
                .unwrap()
                .sign_request(&mut req);
            statuses.push(send(req).await.status);
        }
        sink.flush().await;
        runs.push((statuses, events(&lines)));
    }
    let (enforced, enforced_events) = &runs[0];
    let (shadowed, shadow_events) = &runs[1];
    use StatusCode as S;
    assert_eq!(
        enforced,
        &[
            S::OK,
            S::FORBIDDEN,
            S::OK,
            S::TOO_MANY_REQUESTS,
            S::UNAUTHORIZED
        ]
    );
    // Authentication is never shadowed: only authorization and rate limits are.
    assert_eq!(shadowed, &[S::OK, S::OK, S::OK, S::OK, S::UNAUTHORIZED]);
    for (i, (enforced, shadow)) in enforced_events.iter().zip(shadow_events).enumerate() {
        let metadata = &enforced["metadata"];
        let would = &shadow["metadata"]["shadow_refusal"];
        match metadata["layer"].as_str() {
            Some(layer @ ("authz" | "rate_limit")) => {
                assert_eq!(would["layer"], layer, "request {i}");
                assert_eq!(would["code"], metadata["reason"], "request {i}");
                // The real outcome stays the event's status.
                assert_eq!(shadow["status"], "success", "request {i}");
            }
            _ => assert_eq!(*would, Value::Null, "request {i}: {shadow}"),
        }
        assert!(enforced["metadata"].get("shadow_refusal").is_none());
    }
    // The refused `intruder` request names the rule, the permission and the roles held.
    for events in [enforced_events, shadow_events] {
        let explanation = &events[1]["metadata"]["explanation"];
        assert_eq!(explanation["rule"], "GET /models");
        assert_eq!(explanation["required"], "permission models:read");
        assert_eq!(explanation["roles"], serde_json::json!([]));
        assert!(events[0]["metadata"].get("explanation").is_none());
    }
}
