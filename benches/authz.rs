//! Authorization and rate limiting: a cached RBAC decision, a cached ACL answer, a rate-limit
//! check among 10 000 active principals, and both layers on a service that does nothing.

mod support;

use std::cell::Cell;
use std::convert::Infallible;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, Request, Response, StatusCode};
use support::{complete, in_chunks};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_zerotrust::authz::{
    AclCache, AclSource, AuthorizeConfig, AuthorizeLayer, Policy, Require,
};
use tower_zerotrust::rate_limit::{RateLimitConfig, RateLimitLayer, RateQuota};
use tower_zerotrust::{AuthMethod, BoxError, Principal};

/// Allows everything; never asked once the answer is cached.
struct Everything;

impl AclSource for Everything {
    async fn is_allowed(&self, _: &str, _: &str, _: &str) -> Result<bool, BoxError> {
        Ok(true)
    }
}

fn developer() -> Principal {
    Principal::new("dana", AuthMethod::Jwt).with_roles(["developer"])
}

fn decisions(c: &mut Criterion) {
    let policy = Policy::example_roles();
    let principal = developer();
    let mut group = c.benchmark_group("decision");
    group.bench_function("rbac_policy_allows", |b| {
        b.iter(|| policy.allows(black_box(&principal), black_box("models:write")))
    });
    let multi = Principal::new("ops", AuthMethod::Jwt).with_roles(["viewer", "operator"]);
    group.bench_function("rbac_policy_allows_second_role", |b| {
        b.iter(|| policy.allows(black_box(&multi), black_box("logs:read")))
    });
    let authorizer = AuthorizeConfig::builder(policy.clone())
        .acl(AclCache::builder(Everything).build().unwrap())
        .build()
        .unwrap()
        .authorizer();
    group.bench_function("authorizer_permits_shared_policy", |b| {
        b.iter(|| authorizer.permits(black_box(&principal), black_box("models:write")))
    });
    assert!(complete(authorizer.check_acl(&principal, "payments", "write")).is_ok());
    group.bench_function("acl_cached_answer", |b| {
        b.iter(|| complete(authorizer.check_acl(black_box(&principal), "payments", "write")))
    });
    group.finish();
}

fn layers(c: &mut Criterion) {
    let noop = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let principals: Vec<Principal> = (0..10_000)
        .map(|i| Principal::new(format!("service-{i}"), AuthMethod::Hmac).with_roles(["developer"]))
        .collect();
    let next = Cell::new(0usize);
    // A request as an authentication layer leaves it: the principal in its extensions. The
    // principals take turns, so the rate limiter holds 10 000 active keys.
    let request = || {
        let i = next.get();
        next.set((i + 1) % principals.len());
        let mut req = Request::builder()
            .method(Method::POST)
            .uri("/models")
            .body(())
            .unwrap();
        req.extensions_mut().insert(principals[i].clone());
        req
    };
    let authorize = ServiceBuilder::new()
        .layer(AuthorizeLayer::new(
            AuthorizeConfig::builder(Policy::example_roles())
                .public(Method::GET, "/health")
                .route(Method::GET, "/models", Require::permission("models:read"))
                .route(Method::POST, "/models", Require::permission("models:write"))
                .route(
                    Method::DELETE,
                    "/models/{id}",
                    Require::permission("models:delete"),
                )
                .build()
                .unwrap(),
        ))
        .service(noop);
    // A quota no request reaches: every check is an accepted one.
    let limits = RateLimitConfig::builder()
        .quota(RateQuota::new(1_000_000_000, 1_000_000))
        .build()
        .unwrap();
    let limit = ServiceBuilder::new()
        .layer(RateLimitLayer::new(limits.clone()))
        .service(noop);
    for _ in 0..principals.len() {
        assert_eq!(
            complete(limit.clone().oneshot(request())).unwrap().status(),
            StatusCode::OK
        );
    }

    let mut group = c.benchmark_group("decision");
    let turn = Cell::new(0usize);
    group.bench_function("rate_limit_check_10k_active_keys", |b| {
        b.iter(|| {
            let i = turn.get();
            turn.set((i + 1) % principals.len());
            limits.check_principal(black_box(&principals[i]))
        })
    });
    group.finish();

    let mut group = c.benchmark_group("layer");
    group.bench_function("noop_service_alone", |b| {
        b.iter_custom(|iters| in_chunks(iters, request, |req| complete(noop.oneshot(req))))
    });
    let refused = Cell::new(0u64);
    let count = |response: &Response<_>| {
        refused.set(refused.get() + u64::from(response.status() != StatusCode::OK));
    };
    group.bench_function("authorize_rbac_rule", |b| {
        b.iter_custom(|iters| {
            in_chunks(iters, request, |req| {
                let response = complete(authorize.clone().oneshot(req)).unwrap();
                count(&response);
                response
            })
        })
    });
    group.bench_function("rate_limit_10k_active_keys", |b| {
        b.iter_custom(|iters| {
            in_chunks(iters, request, |req| {
                let response = complete(limit.clone().oneshot(req)).unwrap();
                count(&response);
                response
            })
        })
    });
    group.finish();
    assert_eq!(refused.get(), 0, "a benchmarked request was refused");
}

/// A typical role-and-path Rego policy: roles to permissions as data, the permission a method
/// needs, a path prefix; decided alone and through `AuthorizeLayer`.
#[cfg(feature = "rego")]
fn rego(c: &mut Criterion) {
    use tower_zerotrust::authz::{DecisionRequest, EngineDecision, PolicyEngine, RegoPolicy};
    let rego = RegoPolicy::builder()
        .policy(
            r#"
            package zerotrust.authz
            default allow := false
            permissions := {
                "viewer": ["models:read"],
                "developer": ["models:read", "models:write"],
                "admin": ["*"],
            }
            required := "models:read" if input.request.method == "GET"
            required := "models:write" if input.request.method == "POST"
            allow if {
                startswith(input.request.path, "/models")
                some role in input.principal.roles
                some granted in permissions[role]
                granted in {required, "*"}
            }
            "#,
        )
        .build()
        .unwrap();
    let mut extensions = http::Extensions::new();
    extensions.insert(developer());
    let (method, uri, headers) = (
        Method::POST,
        http::Uri::from_static("/models?team=ml"),
        http::HeaderMap::new(),
    );
    let request = DecisionRequest::new(&method, &uri, &headers, &extensions);
    let mut group = c.benchmark_group("decision");
    group.bench_function("rego_role_and_path_policy", |b| {
        b.iter(|| {
            let decision = rego.decide(black_box(&request));
            assert_eq!(decision, EngineDecision::Allow);
        })
    });
    group.finish();
    let noop = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let authorize = ServiceBuilder::new()
        .layer(AuthorizeLayer::new(
            AuthorizeConfig::builder(Policy::example_roles())
                .otherwise(Require::engine(rego))
                .build()
                .unwrap(),
        ))
        .service(noop);
    let request = || {
        let mut req = Request::post("/models?team=ml").body(()).unwrap();
        req.extensions_mut().insert(developer());
        req
    };
    let mut group = c.benchmark_group("layer");
    group.bench_function("authorize_rego_policy", |b| {
        b.iter_custom(|iters| {
            in_chunks(iters, request, |req| {
                let response = complete(authorize.clone().oneshot(req)).unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                response
            })
        })
    });
    group.finish();
}

#[cfg(not(feature = "rego"))]
fn rego(_: &mut Criterion) {}

criterion_group!(benches, decisions, layers, rego);
criterion_main!(benches);
