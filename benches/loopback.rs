//! A load test over loopback TCP: many concurrent keep-alive HTTP/1.1 connections against bare
//! axum, then against the same route behind every layer (audit ▸ HMAC or JWT ▸ rate limit ▸
//! authorize). Prints requests per second for each and the ratio to bare.
//!
//! ```text
//! cargo bench --bench loopback   # CONNECTIONS=64 LOAD_SECONDS=2 ROUNDS=7 to change the load
//! ```
//!
//! The server runs on one tokio worker thread and the client on another, so each side has a
//! core of this 2-core machine. The client sends the same credentials to bare axum (which
//! ignores them) as to the secured stack, so it works as hard in every run: a fresh HMAC
//! signature per request, or a bearer token.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use support::{SECRET, env_or, filtered_out, hs256_bearer, hs256_config};
use tower::ServiceBuilder;
use tower_zerotrust::audit::{AuditLayer, JsonLinesSink, Overflow};
use tower_zerotrust::authz::{AuthorizeConfig, AuthorizeLayer, Policy, Require};
use tower_zerotrust::hmac::{HmacConfig, VerifyHmacLayer};
use tower_zerotrust::jwt::RequireJwtLayer;
use tower_zerotrust::rate_limit::{RateLimitConfig, RateLimitLayer, RateQuota};
use tower_zerotrust::sign::HmacSigner;

fn bare() -> Router {
    Router::new().route("/models", post(|| async { "created" }))
}

/// How callers prove themselves.
#[derive(Clone, Copy)]
enum Proof {
    Hmac,
    Jwt,
}

fn secured(audit: JsonLinesSink, proof: Proof) -> Router {
    let policy = Policy::builder()
        .role("developer", ["models:write"])
        .assign("gateway", ["developer"])
        .build()
        .unwrap();
    let authorize = AuthorizeConfig::builder(policy)
        .route(Method::POST, "/models", Require::permission("models:write"))
        .build()
        .unwrap();
    let limits = RateLimitConfig::builder()
        .quota(RateQuota::new(1_000_000_000, 1_000_000))
        .build()
        .unwrap();
    let jwt = hs256_config();
    let hmac = HmacConfig::builder()
        .secret(SECRET)
        .allow_callers(["gateway"])
        .build()
        .unwrap();
    // One `Router::layer` of a `ServiceBuilder`, as axum recommends for several middleware:
    // axum then adapts the stack's request and response bodies once, not at every layer.
    let stack = ServiceBuilder::new().layer(AuditLayer::new(audit));
    match proof {
        Proof::Hmac => bare().layer(
            stack
                .layer(VerifyHmacLayer::new(hmac))
                .layer(RateLimitLayer::new(limits))
                .layer(AuthorizeLayer::new(authorize)),
        ),
        Proof::Jwt => bare().layer(
            stack
                .layer(RequireJwtLayer::new(jwt))
                .layer(RateLimitLayer::new(limits))
                .layer(AuthorizeLayer::new(authorize)),
        ),
    }
}

/// Serves `app` on its own one-thread runtime; returns the runtime (keep it alive) and port.
fn start(app: Router) -> (tokio::runtime::Runtime, std::net::SocketAddr) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let addr = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    });
    (runtime, addr)
}

/// Requests per second over `connections` keep-alive connections for `seconds`, after half a
/// second of warm-up.
fn load(addr: std::net::SocketAddr, proof: Proof, connections: usize, seconds: u64) -> Run {
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bearer = Arc::new(hs256_bearer("release-bot", &["developer"]));
    let signer = Arc::new(HmacSigner::new("gateway", SECRET).unwrap());
    client.block_on(async {
        let counting = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let (counting, stop, done, bearer, signer) = (
                counting.clone(),
                stop.clone(),
                done.clone(),
                bearer.clone(),
                signer.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                tcp.set_nodelay(true).unwrap();
                let (mut sender, connection) = http1::handshake(TokioIo::new(tcp)).await.unwrap();
                tokio::spawn(connection);
                while !stop.load(Ordering::Relaxed) {
                    let mut request = http::Request::post("/models")
                        .header("host", "localhost")
                        .body(Empty::<Bytes>::new())
                        .unwrap();
                    match proof {
                        Proof::Hmac => signer.sign_request(&mut request),
                        Proof::Jwt => {
                            let value = bearer.parse().unwrap();
                            request.headers_mut().insert("authorization", value);
                        }
                    }
                    let response = sender.send_request(request).await.unwrap();
                    assert!(response.status().is_success(), "{}", response.status());
                    response.into_body().collect().await.unwrap();
                    if counting.load(Ordering::Relaxed) {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        counting.store(true, Ordering::Relaxed);
        let (start, cpu_before) = (Instant::now(), server_cpu());
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let counted = done.load(Ordering::Relaxed);
        let (elapsed, cpu) = (start.elapsed(), server_cpu() - cpu_before);
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.unwrap();
        }
        Run {
            per_second: counted as f64 / elapsed.as_secs_f64(),
            server_micros: cpu.as_secs_f64() * 1e6 / counted as f64,
        }
    })
}

/// Throughput, and the server's CPU time per request.
struct Run {
    per_second: f64,
    server_micros: f64,
}

/// CPU time used so far by the server's side of this process: the runtime's worker and the
/// audit writer (Linux, from `/proc`; 10 ms ticks, plenty over a run of ~10⁵ requests).
fn server_cpu() -> Duration {
    let ticks: u64 = std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .filter(|stat| stat.contains("(tokio-rt-worker)") || stat.contains("(zerotrust-audit)"))
        .filter_map(|stat| {
            // Fields after the `(comm)`: state is the 3rd field, utime and stime the 14th/15th.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum();
    Duration::from_millis(ticks * 10)
}

fn main() {
    if filtered_out("loopback") {
        return;
    }
    let (connections, seconds, rounds) = (
        env_or("CONNECTIONS", 64usize),
        env_or("LOAD_SECONDS", 2u64),
        env_or("ROUNDS", 7usize),
    );
    let audit = JsonLinesSink::new(std::io::sink(), 1 << 16, Overflow::DropAndCount);
    println!(
        "loopback, {connections} keep-alive connections, {rounds} rounds of {seconds} s per stack:"
    );
    let median = |mut runs: Vec<f64>| {
        runs.sort_by(f64::total_cmp);
        runs[runs.len() / 2]
    };
    for (name, proof) in [("HMAC", Proof::Hmac), ("JWT", Proof::Jwt)] {
        // This VM's speed drifts by tens of percent within a minute: each round runs bare and
        // secured back to back, and the ratio reported is the median of the rounds' ratios.
        let (mut bare_runs, mut full_runs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        let (mut bare_cpu, mut full_cpu) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (server, addr) = start(bare());
            let bare = load(addr, proof, connections, seconds);
            drop(server);
            let (server, addr) = start(secured(audit.clone(), proof));
            let full = load(addr, proof, connections, seconds);
            drop(server);
            ratios.push(full.per_second / bare.per_second);
            bare_runs.push(bare.per_second);
            full_runs.push(full.per_second);
            bare_cpu.push(bare.server_micros);
            full_cpu.push(full.server_micros);
        }
        println!(
            "  {name:<4}: bare axum {:>7.0} req/s; audit ▸ {name} ▸ rate limit ▸ authorize {:>7.0} req/s; ratio {:.1} % (rounds {})",
            median(bare_runs),
            median(full_runs),
            100.0 * median(ratios.clone()),
            ratios
                .iter()
                .map(|r| format!("{:.0}", 100.0 * r))
                .collect::<Vec<_>>()
                .join(" "),
        );
        println!(
            "        server CPU per request: bare {:.1} µs, secured {:.1} µs",
            median(bare_cpu),
            median(full_cpu)
        );
    }
    println!("  audit events dropped (queue full): {}", audit.dropped());
}
