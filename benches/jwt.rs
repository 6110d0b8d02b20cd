//! JWT validation cost: the raw `jsonwebtoken::decode` (the floor) against the layer end to end,
//! for HS256, ES256 and RS256.
//!
//! `cargo bench --bench jwt`. Numbers: `benches/README.md`.

mod support;

use std::convert::Infallible;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, StatusCode};
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value, json};
use support::{complete, in_chunks};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_zerotrust::jwt::{Algorithm, JwtConfig, JwtKey, RequireJwtLayer};

const ISS: &str = "intellirouter";
const AUD: &str = "intellirouter-services";
const SECRET: &str = "a-jwt-secret-for-benches-that-is-long-enough";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

struct Case {
    name: &'static str,
    token: String,
    decoding: DecodingKey,
    algorithm: jsonwebtoken::Algorithm,
    key: JwtKey,
}

fn cases() -> Vec<Case> {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({
        "sub": "router_core", "iss": ISS, "aud": AUD, "iat": now, "exp": now + 3600,
        "roles": ["route_requests", "read_models"],
    });
    let token =
        |alg, key: &EncodingKey| jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap();
    let rsa = fixture("rsa-private.pem");
    let ec = fixture("ec256-private.pem");
    vec![
        Case {
            name: "hs256",
            token: token(
                jsonwebtoken::Algorithm::HS256,
                &EncodingKey::from_secret(SECRET.as_bytes()),
            ),
            decoding: DecodingKey::from_secret(SECRET.as_bytes()),
            algorithm: jsonwebtoken::Algorithm::HS256,
            key: JwtKey::hmac(Algorithm::HS256, SECRET).unwrap(),
        },
        Case {
            name: "es256",
            token: token(
                jsonwebtoken::Algorithm::ES256,
                &EncodingKey::from_ec_pem(&ec).unwrap(),
            ),
            decoding: DecodingKey::from_ec_pem(&fixture("ec256-public.pem")).unwrap(),
            algorithm: jsonwebtoken::Algorithm::ES256,
            key: JwtKey::from_pem(Algorithm::ES256, &fixture("ec256-public.pem")).unwrap(),
        },
        Case {
            name: "rs256",
            token: token(
                jsonwebtoken::Algorithm::RS256,
                &EncodingKey::from_rsa_pem(&rsa).unwrap(),
            ),
            decoding: DecodingKey::from_rsa_pem(&fixture("rsa-public.pem")).unwrap(),
            algorithm: jsonwebtoken::Algorithm::RS256,
            key: JwtKey::from_pem(Algorithm::RS256, &fixture("rsa-public.pem")).unwrap(),
        },
    ]
}

fn jwt(c: &mut Criterion) {
    let mut group = c.benchmark_group("jwt");
    for case in cases() {
        // The floor: what a hand-rolled validator calls, with the same checks configured.
        let mut validation = Validation::new(case.algorithm);
        validation.set_issuer(&[ISS]);
        validation.set_audience(&[AUD]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        group.bench_function(format!("{}_decode_floor", case.name), |b| {
            b.iter(|| {
                jsonwebtoken::decode::<Map<String, Value>>(
                    black_box(&case.token),
                    &case.decoding,
                    &validation,
                )
                .unwrap()
            })
        });

        let noop = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
        let layered = |cache_capacity: usize| {
            let config = JwtConfig::builder()
                .key(case.key.clone())
                .issuer(ISS)
                .audience(AUD)
                .cache_capacity(cache_capacity)
                .build()
                .unwrap();
            ServiceBuilder::new()
                .layer(RequireJwtLayer::new(config))
                .service(noop)
        };
        let request = || {
            Request::get("/")
                .header("authorization", format!("Bearer {}", case.token))
                .body(())
                .unwrap()
        };
        group.bench_function(format!("{}_noop_service_alone", case.name), |b| {
            b.iter_custom(|iters| in_chunks(iters, request, |req| complete(noop.oneshot(req))))
        });
        // Every token verified in full (a token seen for the first time), then the default: a
        // token the layer has verified before.
        for (variant, capacity) in [("verified", 0), ("remembered", 4096)] {
            let layered = layered(capacity);
            assert_eq!(
                complete(layered.clone().oneshot(request()))
                    .unwrap()
                    .status(),
                StatusCode::OK
            );
            group.bench_function(format!("{}_require_jwt_layer_{variant}", case.name), |b| {
                b.iter_custom(|iters| {
                    in_chunks(iters, request, |req| complete(layered.clone().oneshot(req)))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, jwt);
criterion_main!(benches);
