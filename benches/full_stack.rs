//! Every layer stacked, in process: audit ▸ authentication (HMAC or JWT) ▸ rate limit ▸
//! authorize, through `oneshot` on a service that does nothing, against that service alone and
//! the audit and JWT layers alone.
//! Also prints how many heap allocations each stack makes per request on the request's thread.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::fmt::Debug;
use std::io::sink;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use support::{SECRET, complete, hs256_bearer, hs256_config, in_chunks, steady_store};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_zerotrust::audit::{AuditLayer, JsonLinesSink, Overflow};
use tower_zerotrust::authz::{AuthorizeConfig, AuthorizeLayer, Policy, Require};
use tower_zerotrust::hmac::{HmacConfig, VerifyHmacLayer};
use tower_zerotrust::jwt::RequireJwtLayer;
use tower_zerotrust::rate_limit::{RateLimitConfig, RateLimitLayer, RateQuota};
use tower_zerotrust::sign::HmacSigner;

/// The system allocator, counting the allocations of each thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// Bytes allocated and not yet freed by this thread.
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        LIVE.with(|n| n.set(n.get() + layout.size() as i64));
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.with(|n| n.set(n.get() - layout.size() as i64));
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        LIVE.with(|n| n.set(n.get() + new_size as i64 - layout.size() as i64));
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap allocations made on this thread by `run`, per call, averaged over 1000 calls.
fn allocations_per_call(mut run: impl FnMut()) -> f64 {
    run();
    let before = ALLOCATIONS.with(Cell::get);
    for _ in 0..1000 {
        run();
    }
    (ALLOCATIONS.with(Cell::get) - before) as f64 / 1000.0
}

/// Heap bytes that `keep` leaves allocated (on this thread), per each of its `entries`.
fn bytes_per_entry(entries: usize, keep: impl FnOnce()) -> f64 {
    let before = LIVE.with(Cell::get);
    keep();
    (LIVE.with(Cell::get) - before) as f64 / entries as f64
}

/// What each kind of remembered state costs in memory, measured by the allocator.
fn memory() {
    use std::time::Duration;
    use tower_zerotrust::nonce::{MemoryNonceStore, NonceStore};
    use tower_zerotrust::{AuthMethod, Principal};

    const N: usize = 100_000;
    let store = MemoryNonceStore::new(2 * N);
    let nonces: Vec<String> = (0..N).map(|i| format!("{i:032x}")).collect();
    let per_nonce = bytes_per_entry(N, || {
        for nonce in &nonces {
            let _ = complete(store.check_and_record("gateway", nonce, Duration::from_secs(60)));
        }
    });
    let limits = RateLimitConfig::builder().build().unwrap();
    let principals: Vec<Principal> = (0..N)
        .map(|i| Principal::new(format!("service-{i}"), AuthMethod::Hmac))
        .collect();
    let per_key = bytes_per_entry(N, || {
        for principal in &principals {
            let _ = limits.check_principal(principal);
        }
    });
    let tokens: Vec<String> = (0..10_000)
        .map(|i| hs256_bearer(&format!("service-{i}"), &["developer"]))
        .collect();
    let jwt = ServiceBuilder::new()
        .layer(RequireJwtLayer::new(hs256_config()))
        .service(service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    let per_token = bytes_per_entry(tokens.len(), || {
        for token in &tokens {
            let request = Request::post("/models")
                .header("authorization", token)
                .body(())
                .unwrap();
            let response = complete(jwt.clone().oneshot(request)).unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
    });
    println!(
        "memory: {per_nonce:.0} B per nonce, {per_key:.0} B per rate-limit key, {per_token:.0} B \
         per remembered token (its claims included; a token of {} bytes)",
        tokens[0].len() - "Bearer ".len()
    );
    drop((store, limits, jwt));
}

fn policy() -> Policy {
    Policy::builder()
        .role("developer", ["models:read", "models:write"])
        .assign("gateway", ["developer"])
        .build()
        .unwrap()
}

fn authorize() -> AuthorizeLayer {
    AuthorizeLayer::new(
        AuthorizeConfig::builder(policy())
            .public(Method::GET, "/health")
            .route(Method::GET, "/models", Require::permission("models:read"))
            .route(Method::POST, "/models", Require::permission("models:write"))
            .build()
            .unwrap(),
    )
}

fn limits() -> RateLimitLayer {
    // A quota no request reaches: every check is an accepted one.
    RateLimitLayer::new(
        RateLimitConfig::builder()
            .quota(RateQuota::new(1_000_000_000, 1_000_000))
            .build()
            .unwrap(),
    )
}

fn full_stack(c: &mut Criterion) {
    // Responses have a (small) body, read to its end like a server does: the audit event is
    // recorded there.
    let noop = service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::from("ok")))
    });
    // Events are serialized and written (to nowhere) by the sink's own thread.
    let audit = JsonLinesSink::new(sink(), 1 << 16, Overflow::DropAndCount);

    let hmac = HmacConfig::builder()
        .secret(SECRET)
        .allow_callers(["gateway"])
        .build()
        .unwrap();
    let hmac_stack = ServiceBuilder::new()
        .layer(AuditLayer::new(audit.clone()))
        .layer(VerifyHmacLayer::with_nonce_store(hmac, steady_store(1000)))
        .layer(limits())
        .layer(authorize())
        .service(noop);
    let signer = HmacSigner::new("gateway", SECRET).unwrap();
    let signed = || {
        let mut req = Request::post("/models").body(()).unwrap();
        signer.sign_request(&mut req);
        req
    };

    let jwt = hs256_config();
    let jwt_stack = ServiceBuilder::new()
        .layer(AuditLayer::new(audit.clone()))
        .layer(RequireJwtLayer::new(jwt))
        .layer(limits())
        .layer(authorize())
        .service(noop);
    let bearer = hs256_bearer("gateway", &["developer"]);
    let with_token = || {
        Request::post("/models")
            .header("authorization", &bearer)
            .body(())
            .unwrap()
    };

    assert_eq!(
        complete(hmac_stack.clone().oneshot(signed()))
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        complete(jwt_stack.clone().oneshot(with_token()))
            .unwrap()
            .status(),
        StatusCode::OK
    );

    memory();
    // Requests are made outside the count: what is counted is what the layers allocate.
    let count = |name: &str, stack: &dyn Fn(Request<()>), make: &dyn Fn() -> Request<()>| {
        let requests: Vec<_> = (0..1001).map(|_| make()).collect();
        let mut requests = requests.into_iter();
        let per_request = allocations_per_call(|| stack(requests.next().unwrap()));
        println!("allocations per request, {name}: {per_request:.1}");
    };
    count(
        "the service alone",
        &|req| {
            drop(complete(
                complete(noop.oneshot(req)).unwrap().into_body().collect(),
            ))
        },
        &signed,
    );
    count(
        "audit ▸ HMAC ▸ rate limit ▸ authorize",
        &|req| {
            let response = complete(hmac_stack.clone().oneshot(req)).unwrap();
            drop(complete(response.into_body().collect()));
        },
        &signed,
    );
    let jwt_alone = ServiceBuilder::new()
        .layer(RequireJwtLayer::new(hs256_config()))
        .service(noop);
    count(
        "JWT alone",
        &|req| {
            let response = complete(jwt_alone.clone().oneshot(req)).unwrap();
            drop(complete(response.into_body().collect()));
        },
        &with_token,
    );
    let audit_alone = ServiceBuilder::new()
        .layer(AuditLayer::new(audit.clone()))
        .service(noop);
    count(
        "audit alone",
        &|req| {
            let response = complete(audit_alone.clone().oneshot(req)).unwrap();
            drop(complete(response.into_body().collect()));
        },
        &with_token,
    );
    count(
        "audit ▸ JWT ▸ rate limit ▸ authorize",
        &|req| {
            let response = complete(jwt_stack.clone().oneshot(req)).unwrap();
            drop(complete(response.into_body().collect()));
        },
        &with_token,
    );

    let mut group = c.benchmark_group("full_stack");
    timed(&mut group, "noop_service_alone", &noop, &signed);
    timed(&mut group, "audit_alone", &audit_alone, &with_token);
    timed(&mut group, "jwt_alone", &jwt_alone, &with_token);
    timed(
        &mut group,
        "hmac_ratelimit_authorize_audit",
        &hmac_stack,
        &signed,
    );
    timed(
        &mut group,
        "jwt_ratelimit_authorize_audit",
        &jwt_stack,
        &with_token,
    );
    group.finish();
    println!(
        "audit events dropped while benchmarking: {}",
        audit.dropped()
    );
}

/// Times `stack` on requests made by `make`: each is answered 200 and its body read to the end,
/// as a server does (the audit event is recorded there).
fn timed<S, B>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    stack: &S,
    make: &dyn Fn() -> Request<()>,
) where
    S: Service<Request<()>, Response = Response<B>> + Clone,
    S::Error: Debug,
    B: Body,
    B::Error: Debug,
{
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            in_chunks(iters, make, |req| {
                let response = complete(stack.clone().oneshot(req)).unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                complete(response.into_body().collect()).unwrap()
            })
        })
    });
}

criterion_group!(benches, full_stack);
criterion_main!(benches);
