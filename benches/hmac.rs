//! HMAC verification cost, against the floor of the primitive itself.
//!
//! `cargo bench --bench hmac`. Numbers and how to read them: `benches/README.md`.

mod support;

use std::cell::Cell;
use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use http::{Request, Response, StatusCode};
use sha2::Sha256;
use support::{SECRET, complete, in_chunks, steady_store};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_zerotrust::hmac::{HmacConfig, VerifyHmacLayer};
use tower_zerotrust::nonce::NonceStore;
use tower_zerotrust::sign::HmacSigner;

const MESSAGE: &str = "gateway:1708167234:0f1e2d3c4b5a69788796a5b4c3d2e1f0:POST:/execute";
const TTL: Duration = Duration::from_secs(60);

/// Nonce-store time running `factor` times faster than real time, so that the 60 s TTL
/// passes quickly and the store reaches the steady state of a long-running service (whole
/// generations dropped as new ones fill) instead of growing for the whole run.
fn floor(c: &mut Criterion) {
    let mut group = c.benchmark_group("floor");
    group.bench_function("hmac_sha256_with_key_schedule", |b| {
        b.iter(|| {
            let mut mac = Hmac::<Sha256>::new_from_slice(black_box(SECRET.as_bytes())).unwrap();
            mac.update(black_box(MESSAGE.as_bytes()));
            mac.finalize().into_bytes()
        })
    });
    let keyed = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    group.bench_function("hmac_sha256_precomputed_key", |b| {
        b.iter(|| {
            let mut mac = keyed.clone();
            mac.update(black_box(MESSAGE.as_bytes()));
            mac.finalize().into_bytes()
        })
    });
    group.finish();
}

fn layer(c: &mut Criterion) {
    let noop = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let signer = HmacSigner::new("gateway", SECRET).unwrap();
    let signed = || {
        let mut req = Request::post("/execute").body(()).unwrap();
        signer.sign_request(&mut req);
        req
    };
    let config = HmacConfig::builder()
        .secret(SECRET)
        .allow_callers(["gateway"])
        .build()
        .unwrap();
    // Generations of 60 ms: at the layer's rate the store holds some 10⁴–10⁵ nonces.
    let store = steady_store(1000);
    let verify = ServiceBuilder::new()
        .layer(VerifyHmacLayer::with_nonce_store(config, store.clone()))
        .service(noop);

    let mut group = c.benchmark_group("layer");
    group.bench_function("noop_service_alone", |b| {
        b.iter_custom(|iters| in_chunks(iters, signed, |req| complete(noop.oneshot(req))))
    });
    let check = complete(verify.clone().oneshot(signed())).unwrap();
    assert_eq!(check.status(), StatusCode::OK);
    let refused = Cell::new(0u64);
    group.bench_function("verify_hmac_accept", |b| {
        b.iter_custom(|iters| {
            in_chunks(iters, signed, |req| {
                let response = complete(verify.clone().oneshot(req)).unwrap();
                refused.set(refused.get() + u64::from(response.status() != StatusCode::OK));
                response
            })
        })
    });
    assert_eq!(
        refused.get(),
        0,
        "some signed requests were refused: results are invalid"
    );
    group.bench_function("verify_hmac_reject_unsigned", |b| {
        b.iter_custom(|iters| {
            in_chunks(
                iters,
                || Request::post("/execute").body(()).unwrap(),
                |req| complete(verify.clone().oneshot(req)),
            )
        })
    });
    group.finish();
}

fn nonce_store(c: &mut Criterion) {
    let mut next = 0u64;
    let mut fresh = |n: u64| -> Vec<String> {
        (0..n)
            .map(|_| {
                next += 1;
                format!("{next:032x}")
            })
            .collect()
    };
    let mut group = c.benchmark_group("nonce_store");
    group.throughput(Throughput::Elements(1));
    // (name, warp factor): generations of 60 ms hold ~10⁵ nonces and stay in cache; generations
    // of 150 ms hold 0.5–1 M at these rates, the size a service at ~10 k req/s keeps, and
    // every check goes to main memory.
    for (name, factor) in [("cache_resident", 1000), ("holding_1m", 400)] {
        let store = steady_store(factor);
        group.bench_function(format!("insert_one_thread_{name}"), |b| {
            b.iter_custom(|iters| {
                let nonces = fresh(iters);
                let start = Instant::now();
                for nonce in &nonces {
                    complete(store.check_and_record("gateway", nonce, TTL)).unwrap();
                }
                start.elapsed()
            })
        });
        let store = steady_store(factor);
        group.bench_function(format!("insert_two_threads_{name}"), |b| {
            b.iter_custom(|iters| {
                let nonces = fresh(iters);
                let start = Instant::now();
                std::thread::scope(|scope| {
                    for half in nonces.chunks(nonces.len().div_ceil(2).max(1)) {
                        let store = &store;
                        scope.spawn(move || {
                            for nonce in half {
                                complete(store.check_and_record("gateway", nonce, TTL)).unwrap();
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, floor, layer, nonce_store);
criterion_main!(benches);
