//! The tonic interceptor forms against the equivalent layers, on the same gRPC request through
//! `oneshot` on a service that does nothing: JWT, JWT then authorization by method, and HMAC.

mod support;

use std::convert::Infallible;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use support::{SECRET, complete, hs256_bearer, hs256_config, in_chunks, steady_store};
use tonic::service::interceptor::InterceptedService;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_zerotrust::authz::{AuthorizeConfig, AuthorizeLayer, Policy, Require};
use tower_zerotrust::grpc::{
    AuthorizeInterceptor, HmacInterceptor, JwtInterceptor, MethodPathLayer, chain,
};
use tower_zerotrust::hmac::{HmacConfig, VerifyHmacLayer};
use tower_zerotrust::jwt::RequireJwtLayer;
use tower_zerotrust::sign::HmacSigner;

const CREATE: &str = "/registry.ModelRegistry/CreateModel";

fn grpc_request() -> Request<()> {
    Request::post(CREATE)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap()
}

/// Times `service` on requests made by `request`, each answered 200 with `grpc-status` unset.
fn bench<S, B>(c: &mut Criterion, name: &str, service: S, request: impl FnMut() -> Request<()>)
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible> + Clone,
{
    let mut request = request;
    let response = complete(service.clone().oneshot(request())).unwrap();
    assert!(
        response.headers().get("grpc-status").is_none(),
        "{name}: refused"
    );
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            in_chunks(iters, &mut request, |req| {
                complete(service.clone().oneshot(req)).unwrap()
            })
        })
    });
}

fn interceptors(c: &mut Criterion) {
    let noop =
        service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
    let jwt = hs256_config();
    let bearer = hs256_bearer("router_core", &["developer"]);
    let with_token = || {
        let mut req = grpc_request();
        req.headers_mut()
            .insert("authorization", bearer.parse().unwrap());
        req
    };
    let rules = AuthorizeConfig::builder(Policy::example_roles())
        .grpc(CREATE, Require::permission("models:write"))
        .build()
        .unwrap();

    bench(c, "grpc/noop_service_alone", noop, with_token);
    bench(
        c,
        "grpc/jwt/layer",
        RequireJwtLayer::new(jwt.clone()).layer(noop),
        with_token,
    );
    bench(
        c,
        "grpc/jwt/interceptor",
        InterceptedService::new(noop, JwtInterceptor::new(jwt.clone())),
        with_token,
    );
    bench(
        c,
        "grpc/jwt_authorize/layers",
        ServiceBuilder::new()
            .layer(RequireJwtLayer::new(jwt.clone()))
            .layer(AuthorizeLayer::new(rules.clone()))
            .service(noop),
        with_token,
    );
    bench(
        c,
        "grpc/jwt_authorize/interceptors",
        MethodPathLayer.layer(InterceptedService::new(
            noop,
            chain(JwtInterceptor::new(jwt), AuthorizeInterceptor::new(rules)),
        )),
        with_token,
    );

    let hmac = HmacConfig::builder()
        .secret(SECRET)
        .allow_callers(["router_core"])
        .build()
        .unwrap();
    let signer = HmacSigner::new("router_core", SECRET).unwrap();
    let signed = || {
        let mut req = grpc_request();
        signer.sign_request(&mut req);
        req
    };
    bench(
        c,
        "grpc/hmac/layer",
        VerifyHmacLayer::with_nonce_store(hmac.clone(), steady_store(1000)).layer(noop),
        signed,
    );
    bench(
        c,
        "grpc/hmac/interceptor",
        MethodPathLayer.layer(InterceptedService::new(
            noop,
            HmacInterceptor::with_store(hmac, steady_store(1000)),
        )),
        signed,
    );
}

criterion_group!(benches, interceptors);
criterion_main!(benches);
