//! The Redis nonce store and shared rate limit against a local `redis-server` (started on a
//! random port), then against a local Redis Cluster (3 primaries, 3 replicas): latency of one
//! check, one at a time (p50/p99/p99.9), and throughput with many checks in flight on one
//! pipelined connection.
//!
//! ```text
//! cargo bench --features redis --bench redis     # CHECKS=20000 IN_FLIGHT=64 to change the load
//! ```

/// The test suite's Redis processes: a server, a cluster (the Sentinels are not measured).
#[path = "../tests/support/redis.rs"]
#[allow(dead_code)]
mod processes;
mod support;

use processes::{RedisCluster, RedisServer};
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
    let Some(server) = RedisServer::start() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    println!("redis-server on loopback, one connection:");
    runtime.block_on(measure(&server.url()));
    drop(server);
    // The same against a 3-primary, 3-replica cluster: each command goes to its slot's primary.
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    println!("Redis Cluster (3 primaries, 3 replicas) on loopback, one cluster connection:");
    runtime.block_on(measure(&cluster.url()));
    runtime.block_on(async {
        let store = RedisNonceStore::new(RedisConnection::open(&cluster.url()).unwrap())
            .acknowledged_by(1, Duration::from_millis(400));
        let checks = env_or("CHECKS", 20_000usize) / 4;
        let mut latencies = Vec::with_capacity(checks);
        for i in 0..checks {
            let nonce = format!("acknowledged-{i}");
            let started = Instant::now();
            store
                .check_and_record("gateway", &nonce, Duration::from_secs(60))
                .await
                .unwrap();
            latencies.push(started.elapsed());
        }
        report(
            "nonce check acknowledged by a replica (WAIT 1), one at a time",
            &mut latencies,
        );
    });
}

/// The nonce check one at a time and many in flight, and a request through the shared rate
/// limit, against the Redis at `url`.
async fn measure(url: &str) {
    let (checks, in_flight) = (env_or("CHECKS", 20_000usize), env_or("IN_FLIGHT", 64usize));
    let redis = RedisConnection::open(url).unwrap();
    let store = RedisNonceStore::new(redis.clone());
    let ttl = Duration::from_secs(60);
    let counter = AtomicU64::new(0);
    let nonce = || format!("{:032x}", counter.fetch_add(1, Ordering::Relaxed));

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
