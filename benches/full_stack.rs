//! Every layer stacked, in process: audit ▸ authentication (HMAC or JWT) ▸ rate limit ▸
//! authorize, through `oneshot` on a service that does nothing, against that service alone.

mod support;

use std::convert::Infallible;
use std::io::sink;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use support::{SECRET, complete, hs256_bearer, hs256_config, in_chunks, steady_store};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_zerotrust::audit::{AuditLayer, JsonLinesSink, Overflow};
use tower_zerotrust::authz::{AuthorizeConfig, AuthorizeLayer, Policy, Require};
use tower_zerotrust::hmac::{HmacConfig, VerifyHmacLayer};
use tower_zerotrust::jwt::RequireJwtLayer;
use tower_zerotrust::rate_limit::{RateLimitConfig, RateLimitLayer, RateQuota};
use tower_zerotrust::sign::HmacSigner;

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

    let mut group = c.benchmark_group("full_stack");
    group.bench_function("noop_service_alone", |b| {
        b.iter_custom(|iters| {
            in_chunks(iters, signed, |req| {
                let response = complete(noop.oneshot(req)).unwrap();
                complete(response.into_body().collect()).unwrap()
            })
        })
    });
    group.bench_function("hmac_ratelimit_authorize_audit", |b| {
        b.iter_custom(|iters| {
            in_chunks(iters, signed, |req| {
                let response = complete(hmac_stack.clone().oneshot(req)).unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                complete(response.into_body().collect()).unwrap()
            })
        })
    });
    group.bench_function("jwt_ratelimit_authorize_audit", |b| {
        b.iter_custom(|iters| {
            in_chunks(iters, with_token, |req| {
                let response = complete(jwt_stack.clone().oneshot(req)).unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                complete(response.into_body().collect()).unwrap()
            })
        })
    });
    group.finish();
    println!(
        "audit events dropped while benchmarking: {}",
        audit.dropped()
    );
}

criterion_group!(benches, full_stack);
criterion_main!(benches);
