//! A load test over loopback TCP: many concurrent keep-alive HTTP/1.1 connections against bare
//! axum, then against the same route behind every layer (audit ▸ HMAC or JWT ▸ rate limit ▸
//! authorize). Prints requests per second for each and the ratio to bare.
//!
//! ```text
//! cargo bench --bench loopback            # CONNECTIONS=64 LOAD_SECONDS=5 to change the load
//! ```
//!
//! The server runs on one tokio worker thread and the client on another, so each side has a
//! core of this 2-core machine. The client sends the same credentials to bare axum (which
//! ignores them) as to the secured stack, so it works as hard in every run: a fresh HMAC
//! signature per request, or a bearer token.

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
use tower_zerotrust::audit::{AuditLayer, JsonLinesSink, Overflow};
use tower_zerotrust::authz::{AuthorizeConfig, AuthorizeLayer, Policy, Require};
use tower_zerotrust::hmac::{HmacConfig, VerifyHmacLayer};
use tower_zerotrust::jwt::{Algorithm, JwtConfig, JwtKey, RequireJwtLayer};
use tower_zerotrust::rate_limit::{RateLimitConfig, RateLimitLayer, RateQuota};
use tower_zerotrust::sign::{HmacSigner, TokenIssuer};

const SECRET: &str = "3f8a2c9d1e7b4f60a5c8d2e9f1b3a7c4d6e8f0a2b4c6d8e0f2a4b6c8d0e2f4a6";

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
    let jwt = JwtConfig::builder()
        .key(JwtKey::hmac(Algorithm::HS256, SECRET).unwrap())
        .issuer("intellirouter")
        .audience("intellirouter-services")
        .build()
        .unwrap();
    let hmac = HmacConfig::builder()
        .secret(SECRET)
        .allow_callers(["gateway"])
        .build()
        .unwrap();
    let app = bare()
        .layer(AuthorizeLayer::new(authorize))
        .layer(RateLimitLayer::new(limits));
    let app = match proof {
        Proof::Hmac => app.layer(VerifyHmacLayer::new(hmac)),
        Proof::Jwt => app.layer(RequireJwtLayer::new(jwt)),
    };
    app.layer(AuditLayer::new(audit))
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

/// Requests per second over `connections` keep-alive connections for `seconds`, after a
/// second of warm-up.
fn load(addr: std::net::SocketAddr, proof: Proof, connections: usize, seconds: u64) -> f64 {
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let token = TokenIssuer::hmac(
        Algorithm::HS256,
        SECRET,
        "intellirouter",
        "intellirouter-services",
    )
    .unwrap()
    .mint("release-bot", &["developer"])
    .unwrap();
    let bearer = Arc::new(format!("Bearer {token}"));
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
        tokio::time::sleep(Duration::from_secs(1)).await;
        counting.store(true, Ordering::Relaxed);
        let start = Instant::now();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let counted = done.load(Ordering::Relaxed);
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.unwrap();
        }
        counted as f64 / elapsed.as_secs_f64()
    })
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that does not match skips the run.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter.is_some_and(|f| !"loopback".contains(&f)) {
        return;
    }
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (connections, seconds) = (env("CONNECTIONS", 64) as usize, env("LOAD_SECONDS", 5));
    let audit = JsonLinesSink::new(std::io::sink(), 1 << 16, Overflow::DropAndCount);
    println!("loopback, {connections} keep-alive connections, {seconds} s per run, median of 3:");
    for (name, proof) in [("HMAC", Proof::Hmac), ("JWT", Proof::Jwt)] {
        // Alternate, three rounds each, and keep the medians: this VM's speed drifts.
        let (mut bare_runs, mut full_runs) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let (server, addr) = start(bare());
            bare_runs.push(load(addr, proof, connections, seconds));
            drop(server);
            let (server, addr) = start(secured(audit.clone(), proof));
            full_runs.push(load(addr, proof, connections, seconds));
            drop(server);
        }
        bare_runs.sort_by(f64::total_cmp);
        full_runs.sort_by(f64::total_cmp);
        let (bare, full) = (bare_runs[1], full_runs[1]);
        println!(
            "  {name:<4}: bare axum {bare:>7.0} req/s; audit ▸ {name} ▸ rate limit ▸ authorize {full:>7.0} req/s = {:.1} % of bare",
            100.0 * full / bare
        );
    }
    println!("  audit events dropped (queue full): {}", audit.dropped());
}
