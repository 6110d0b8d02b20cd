//! The audit trail over real HTTP: one event per request whatever happened, the layer and
//! reason of every refusal, no secrets, nothing lost at shutdown.

mod support;

use axum::Router;
use axum::routing::get;
use http::{Method, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::captured::Captured;

use support::{SECRET, Stalled, eventually, request, send, set};
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
        // Time stands still: no request comes back while the test runs.
        .clock(support::ManualClock::at(1_000_000))
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

/// With the writer stuck, `capacity` events wait to be written; beyond them, `Overflow::Wait`
/// holds requests until there is room and loses nothing, `Overflow::DropAndCount` answers at
/// once and counts each event it drops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_waits_or_drops_and_counts_as_configured() {
    const CAPACITY: usize = 3;
    // The event being written still counts until it is written.
    const ROOM: usize = CAPACITY - 1;
    for overflow in [Overflow::Wait, Overflow::DropAndCount] {
        let writer = Stalled::default();
        let sink = JsonLinesSink::new(writer.clone(), CAPACITY, overflow);
        let addr = support::serve(stack(sink.clone())).await;
        let first = send(request("GET", addr, "/health")).await;
        assert_eq!(first.status, StatusCode::OK);
        eventually("the writer stuck writing the first event", || {
            std::future::ready(writer.stalled.load(Ordering::SeqCst))
        })
        .await;
        let answered = Arc::new(AtomicUsize::new(0));
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let answered = answered.clone();
                tokio::spawn(async move {
                    let reply = send(request("GET", addr, "/health")).await;
                    answered.fetch_add(1, Ordering::SeqCst);
                    reply
                })
            })
            .collect();
        let answered_now = |n: usize| {
            let answered = answered.clone();
            eventually("requests answered", move || {
                std::future::ready(answered.load(Ordering::SeqCst) >= n)
            })
        };
        match overflow {
            Overflow::Wait => {
                answered_now(ROOM).await;
                assert_eq!(sink.dropped(), 0);
            }
            _ => {
                answered_now(20).await;
                assert_eq!(sink.dropped(), (20 - ROOM) as u64);
            }
        }
        // Only as many requests as there is room for got their answer.
        let expected = if overflow == Overflow::Wait { ROOM } else { 20 };
        assert_eq!(answered.load(Ordering::SeqCst), expected);
        writer.release();
        for call in calls {
            assert_eq!(call.await.unwrap().status, StatusCode::OK);
        }
        sink.flush().await;
        let written = events(&writer.lines).len() as u64;
        assert_eq!(
            written + sink.dropped(),
            21,
            "every event written or counted"
        );
        if overflow == Overflow::Wait {
            assert_eq!(written, 21, "waiting loses nothing");
        }
    }
}

/// A server with graceful shutdown on `stop`, auditing to `sink`: `GET /fast` answers at once,
/// `GET /slow` once `gate` lets it.
async fn gated_server(
    sink: JsonLinesSink,
    gate: Arc<Gate>,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let app = Router::new()
        .route("/fast", get(|| async { "fast" }))
        .route(
            "/slow",
            get(move || async move {
                gate.waiting.fetch_add(1, Ordering::SeqCst);
                gate.open.acquire().await.unwrap().forget();
                "slow"
            }),
        )
        .layer(AuditLayer::new(sink));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .into_future(),
    );
    (addr, stop, server)
}

/// Holds requests in a handler until opened.
struct Gate {
    open: tokio::sync::Semaphore,
    waiting: AtomicUsize,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            open: tokio::sync::Semaphore::new(0),
            waiting: AtomicUsize::new(0),
        }
    }
}

fn audit_file(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("zt-audit-{name}-{}.jsonl", std::process::id()));
    std::fs::remove_file(&path).ok();
    path
}

fn lines_of(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Whether a new connection to `addr` is refused: the server stopped listening.
async fn stopped_listening(addr: std::net::SocketAddr) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_err()
}

/// Requests still running when a graceful shutdown begins are finished and audited: once the
/// server has stopped, `flush` leaves every event in the file, theirs included.
#[tokio::test]
async fn requests_in_flight_at_shutdown_are_in_the_file_after_flush() {
    let path = audit_file("shutdown");
    let sink = JsonLinesSink::append_to(&path, 64, Overflow::Wait).unwrap();
    let gate = Arc::new(Gate::default());
    let (addr, stop, server) = gated_server(sink.clone(), gate.clone()).await;
    for _ in 0..20 {
        assert_eq!(
            send(request("GET", addr, "/fast")).await.status,
            StatusCode::OK
        );
    }
    let in_flight: Vec<_> = (0..5)
        .map(|_| tokio::spawn(send(request("GET", addr, "/slow"))))
        .collect();
    // Shutdown begins while all five are held in the handler.
    eventually("five requests waiting in the handler", || {
        std::future::ready(gate.waiting.load(Ordering::SeqCst) == 5)
    })
    .await;
    stop.send(()).unwrap();
    eventually("the server stopped listening", || stopped_listening(addr)).await;
    gate.open.add_permits(5);
    for reply in in_flight {
        assert_eq!(reply.await.unwrap().status, StatusCode::OK);
    }
    server.await.unwrap().unwrap();
    sink.flush().await;
    let events = lines_of(&path);
    assert_eq!(events.len(), 25);
    let slow = events.iter().filter(|e| e["resource"] == "/slow").count();
    assert_eq!(slow, 5);
    std::fs::remove_file(&path).ok();
}

/// Without `flush`, dropping the last sink (here, with the server that held it) while events
/// still wait to be written: the writer writes every one of them, then stops.
#[tokio::test]
async fn every_event_is_written_once_the_last_sink_is_dropped() {
    let writer = Stalled::default();
    let sink = JsonLinesSink::new(writer.clone(), 64, Overflow::Wait);
    let (addr, stop, server) = gated_server(sink, Arc::default()).await;
    for _ in 0..30 {
        assert_eq!(
            send(request("GET", addr, "/fast")).await.status,
            StatusCode::OK
        );
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    // Every sink is gone; the writer is still stuck: nothing written yet.
    assert_eq!(events(&writer.lines).len(), 0);
    writer.release();
    // The writer thread drops its writer when it stops: only the test's clone is left.
    eventually("the writer thread stopped", || {
        std::future::ready(Arc::strong_count(&writer.stalled) == 1)
    })
    .await;
    assert_eq!(events(&writer.lines).len(), 30);
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

/// Every `tracing` event of this test binary at INFO level and above, as JSON lines. One
/// subscriber for the whole binary, installed by the first test that asks: the JSON-lines
/// writer logs from a thread of its own, which a subscriber scoped to one test would miss.
fn traced() -> &'static Captured {
    static TRACED: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    TRACED.get_or_init(|| {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(captured.clone())
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this test binary");
        captured
    })
}

/// The traced events (`{"level", "target", "fields", ...}`) that `keep` selects, once there
/// are at least `count` of them: polled.
async fn traced_events(count: usize, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
    support::eventually_some(&format!("{count} traced events"), || {
        let kept: Vec<Value> = traced()
            .text()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .filter(|line| keep(line))
            .collect();
        std::future::ready((kept.len() >= count).then_some(kept))
    })
    .await
}

/// `TracingSink`: one `tracing` event per request, target `audit`, level INFO, the audit
/// event's JSON in its `event` field with the documented fields, for an accepted request and
/// a refused one.
#[tokio::test]
async fn the_tracing_sink_emits_each_event_with_target_audit_and_the_documented_fields() {
    use tower_zerotrust::audit::TracingSink;

    traced();
    const PATH: &str = "/traced-by-the-tracing-sink";
    let hmac = support::any_caller();
    let app = Router::new()
        .route(PATH, get(|| async { "ok" }))
        .layer(VerifyHmacLayer::new(hmac))
        .layer(AuditLayer::new(TracingSink));
    let addr = support::serve(app).await;
    let mut accepted = request("GET", addr, PATH);
    set(&mut accepted, "user-agent", "tracing-sink-test/1");
    HmacSigner::new("gateway", SECRET)
        .unwrap()
        .sign_request(&mut accepted);
    let signature = accepted.headers()["x-signature"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(send(accepted).await.status, StatusCode::OK);
    let mut unsigned = request("GET", addr, PATH);
    set(&mut unsigned, "user-agent", "tracing-sink-test/1");
    let refused = send(unsigned).await;
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (StatusCode::UNAUTHORIZED, "hmac.missing_headers")
    );

    let audit_event = |line: &Value| -> Value {
        serde_json::from_str(line["fields"]["event"].as_str().unwrap_or("null")).unwrap()
    };
    let lines = traced_events(2, |line| {
        line["target"] == "audit" && audit_event(line)["resource"] == PATH
    })
    .await;
    assert_eq!(lines.len(), 2, "one event per request: {lines:?}");
    for line in &lines {
        assert_eq!(line["level"], "INFO");
        assert!(!line.to_string().contains(&signature[7..]), "{line}");
    }
    let (ok, refused) = (audit_event(&lines[0]), audit_event(&lines[1]));
    for event in [&ok, &refused] {
        for field in support::AUDIT_FIELDS {
            assert!(event.get(field).is_some(), "no `{field}` in {event}");
        }
        assert_eq!(event["action"], "GET");
        assert_eq!(event["user_agent"], "tracing-sink-test/1");
        assert!(
            event["timestamp"].as_str().unwrap().ends_with('Z'),
            "{event}"
        );
    }
    assert_eq!(
        (&ok["event_type"], &ok["status"], &ok["principal"]),
        (&"access".into(), &"success".into(), &"gateway".into())
    );
    assert_eq!(ok["metadata"]["auth_method"], "hmac");
    assert_eq!(ok["metadata"]["http_status"], 200);
    assert_eq!(
        (
            &refused["event_type"],
            &refused["status"],
            &refused["principal"]
        ),
        (&"authentication".into(), &"failure".into(), &Value::Null)
    );
    assert_eq!(refused["metadata"]["reason"], "hmac.missing_headers");
    assert_eq!(refused["metadata"]["layer"], "hmac");
    assert_eq!(refused["metadata"]["http_status"], 401);
}

/// A `JsonLinesSink` whose writes fail (a full disk: `/dev/full`) reports it with one
/// error-level log (target `tower_zerotrust::audit`) and counts every event lost in
/// `unwritten` (`dropped` counts only events refused for want of room); requests keep being
/// answered, allowed or refused, well past the sink's capacity, and `flush` still returns.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_json_lines_sink_on_a_full_disk_logs_the_error_and_the_service_keeps_answering() {
    traced();
    let sink = JsonLinesSink::append_to("/dev/full", 4, Overflow::Wait).unwrap();
    let addr = support::serve(stack(sink.clone())).await;
    let bounded = |req| async move {
        tokio::time::timeout(Duration::from_secs(10), send(req))
            .await
            .expect("a request waited 10 s for the audit sink")
    };
    for i in 0..12 {
        let mut req = request("GET", addr, "/models");
        HmacSigner::new("gateway", SECRET)
            .unwrap()
            .sign_request(&mut req);
        assert_eq!(bounded(req).await.status, StatusCode::OK, "request {i}");
    }
    let refused = bounded(request("GET", addr, "/models")).await;
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (StatusCode::UNAUTHORIZED, "hmac.missing_headers")
    );
    tokio::time::timeout(Duration::from_secs(10), sink.flush())
        .await
        .expect("flush hung on a failing writer");

    let is_disk_full = |line: &Value| {
        line["target"] == "tower_zerotrust::audit"
            && line["fields"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("No space left on device"))
    };
    let errors = traced_events(1, is_disk_full).await;
    assert_eq!(errors.len(), 1, "logged once, not per event: {errors:?}");
    assert_eq!(errors[0]["level"], "ERROR");
    assert_eq!(errors[0]["fields"]["message"], "cannot write audit events");
    assert_eq!(sink.dropped(), 0);
    assert_eq!(sink.unwritten(), 13, "every event lost is counted");
}
