//! The Redis nonce store and shared rate limit against a local `redis-server` (started on a
//! random port): latency of one check, one at a time (p50/p99/p99.9), and throughput with many
//! checks in flight on one pipelined connection.
//!
//! ```text
//! cargo bench --features redis --bench redis     # CHECKS=20000 IN_FLIGHT=64 to change the load
//! ```

mod support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::convert::Infallible;

use http::{Request, Response};
use support::{env_or, filtered_out};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_zerotrust::nonce::{NonceStore, RedisNonceStore};
use tower_zerotrust::rate_limit::{
    RateLimitConfig, RateLimitLayer, RateQuota, RedisRateLimits, WhenUnavailable,
};
use tower_zerotrust::redis::RedisConnection;
use tower_zerotrust::{AuthMethod, Principal};

fn main() {
    if filtered_out("redis") {
        return;
    }
    let (checks, in_flight) = (env_or("CHECKS", 20_000usize), env_or("IN_FLIGHT", 64usize));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let Ok(mut server) = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
    else {
        println!("SKIPPED: redis-server is not installed");
        return;
    };
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let redis = RedisConnection::open(&format!("redis://127.0.0.1:{port}/")).unwrap();
        let store = RedisNonceStore::new(redis.clone());
        let ttl = Duration::from_secs(60);
        let counter = AtomicU64::new(0);
        let nonce = || format!("{:032x}", counter.fetch_add(1, Ordering::Relaxed));
        println!("redis-server on loopback, one connection:");

        // One at a time: the latency a request waits for its nonce.
        for _ in 0..1000 {
            store
                .check_and_record("gateway", &nonce(), ttl)
                .await
                .unwrap();
        }
        let mut latencies = Vec::with_capacity(checks);
        for _ in 0..checks {
            let n = nonce();
            let started = Instant::now();
            store.check_and_record("gateway", &n, ttl).await.unwrap();
            latencies.push(started.elapsed());
        }
        report("nonce check, one at a time", &mut latencies);

        // Many in flight: the store's throughput under concurrent requests.
        let store = Arc::new(store);
        let started = Instant::now();
        let tasks: Vec<_> = (0..in_flight)
            .map(|task| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..checks / in_flight {
                        let n = format!("t{task}-{i}");
                        store.check_and_record("gateway", &n, ttl).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let done = (checks / in_flight * in_flight) as f64;
        println!(
            "  nonce checks, {in_flight} in flight: {:.0} checks/s",
            done / started.elapsed().as_secs_f64()
        );

        // The shared rate limit through its layer: one GCRA script per request.
        let limits = RateLimitConfig::builder()
            .quota(RateQuota::new(1_000_000, 1_000_000))
            .shared(RedisRateLimits::new(redis, WhenUnavailable::FailClosed))
            .build()
            .unwrap();
        let noop = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
        let limited = ServiceBuilder::new()
            .layer(RateLimitLayer::new(limits))
            .service(noop);
        let principals: Vec<Principal> = (0..100)
            .map(|i| Principal::new(format!("service-{i}"), AuthMethod::Hmac))
            .collect();
        let mut latencies = Vec::with_capacity(checks);
        for i in 0..checks {
            let mut request = Request::new(());
            request.extensions_mut().insert(principals[i % 100].clone());
            let started = Instant::now();
            let response = limited.clone().oneshot(request).await.unwrap();
            latencies.push(started.elapsed());
            assert_eq!(response.status(), 200);
        }
        report(
            "request through the shared rate limit (Lua GCRA), one at a time",
            &mut latencies,
        );
    });
    let _ = server.kill();
    let _ = server.wait();
}

fn report(what: &str, latencies: &mut [Duration]) {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "  {what}: p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs ({} checks)",
        at(0.50).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        at(0.999).as_secs_f64() * 1e6,
        latencies.len()
    );
}
