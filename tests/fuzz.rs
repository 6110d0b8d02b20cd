//! Property tests as fuzzers for every parser that reads request or network input: arbitrary
//! and mutated-valid inputs, through the public API. Nothing panics, each input is decided in
//! bounded time, and malformed or tampered input is refused.
//!
//! `ZEROTRUST_FUZZ_CASES` sets the cases per property (default 2000); raise it locally for a
//! longer run, e.g. `ZEROTRUST_FUZZ_CASES=100000 cargo test --all-features --test fuzz`.

mod support;

use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response, StatusCode};
use proptest::prelude::*;
use support::SECRET;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_zerotrust::authz::Policy;
use tower_zerotrust::hmac::VerifyHmacLayer;
use tower_zerotrust::jwt::{Algorithm, JwtConfig, JwtKey, RequireJwtLayer};
use tower_zerotrust::mtls::{PeerIdentity, TlsConfig};
use tower_zerotrust::sign::{HmacSigner, TokenIssuer};

const JWT_SECRET: &str = "a-jwt-secret-of-at-least-32-bytes!!";
/// Far more than any decision takes: only a pathological case (a blow-up on some input) fails it.
const BOUND: Duration = Duration::from_secs(1);

fn config() -> ProptestConfig {
    let cases = std::env::var("ZEROTRUST_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Runs `check` and fails if it took longer than [`BOUND`].
fn bounded<T>(check: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = check();
    assert!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
    result
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The status a service behind `layer` gives `request`.
fn status_through<L, S>(
    rt: &tokio::runtime::Runtime,
    layer: L,
    request: Request<String>,
) -> StatusCode
where
    L: tower::Layer<
            tower::util::ServiceFn<
                fn(
                    Request<String>,
                )
                    -> std::future::Ready<Result<Response<String>, std::convert::Infallible>>,
            >,
            Service = S,
        >,
    S: Service<
            Request<String>,
            Response = Response<tower_zerotrust::body::ResponseBody<String>>,
            Error = std::convert::Infallible,
        >,
{
    fn ok(
        _: Request<String>,
    ) -> std::future::Ready<Result<Response<String>, std::convert::Infallible>> {
        std::future::ready(Ok(Response::new(String::new())))
    }
    let service = ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(ok as fn(_) -> _));
    bounded(|| rt.block_on(service.oneshot(request)).unwrap().status())
}

/// A header value from arbitrary text, when it can be one.
fn header_value(text: &str) -> Option<HeaderValue> {
    HeaderValue::from_bytes(text.as_bytes()).ok()
}

/// `text` with the character at `at` (modulo its length) replaced by `with`.
fn mutate(text: &str, at: usize, with: char) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return with.to_string();
    }
    let at = at % chars.len();
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| if i == at { with } else { *c })
        .collect()
}

fn hmac_layer() -> VerifyHmacLayer {
    VerifyHmacLayer::new(support::any_caller())
}

fn jwt_layer() -> RequireJwtLayer {
    RequireJwtLayer::new(
        JwtConfig::builder()
            .key(JwtKey::hmac(Algorithm::HS256, JWT_SECRET).unwrap())
            .issuer("idp")
            .audience("api")
            .build()
            .unwrap(),
    )
}

proptest! {
    #![proptest_config(config())]

    /// Any values in the four HMAC headers, present or not: refused, never a panic.
    #[test]
    fn hmac_headers_arbitrary(
        values in proptest::collection::vec(proptest::option::of(".{0,300}"), 4),
        path in "/[ -~]{0,64}",
    ) {
        let rt = runtime();
        let mut request = Request::get("/").body(String::new()).unwrap();
        if let Ok(uri) = path.parse() {
            *request.uri_mut() = uri;
        }
        for (name, value) in ["x-service-id", "x-timestamp", "x-nonce", "x-signature"].iter().zip(&values) {
            if let Some(value) = value.as_deref().and_then(header_value) {
                request.headers_mut().insert(*name, value);
            }
        }
        let status = status_through(&rt, hmac_layer(), request);
        prop_assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    /// A correctly signed request with one character of one header changed: refused.
    #[test]
    fn hmac_headers_mutated(field in 0usize..4, at in any::<usize>(), with in any::<char>()) {
        let rt = runtime();
        let signed = HmacSigner::new("gateway", SECRET).unwrap().sign("GET", "/models");
        let values = [
            "gateway".to_owned(),
            signed.timestamp().to_owned(),
            signed.nonce().to_owned(),
            signed.signature().to_owned(),
        ];
        let mutated = mutate(&values[field], at, with);
        prop_assume!(mutated != values[field]);
        let mut request = Request::get("/models").body(String::new()).unwrap();
        for (i, name) in ["x-service-id", "x-timestamp", "x-nonce", "x-signature"].iter().enumerate() {
            let value = if i == field { &mutated } else { &values[i] };
            match header_value(value) {
                Some(value) => { request.headers_mut().insert(*name, value); }
                None => return Ok(()),
            }
        }
        let status = status_through(&rt, hmac_layer(), request);
        prop_assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    /// Arbitrary `Authorization` values and tokens built from arbitrary JOSE headers: refused.
    #[test]
    fn bearer_tokens_arbitrary(
        raw in ".{0,400}",
        jose in "\\{[ -~]{0,120}\\}",
        claims in "\\{[ -~]{0,120}\\}",
        signature in "[A-Za-z0-9_-]{0,90}",
    ) {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let rt = runtime();
        for value in [raw.clone(), format!("Bearer {raw}"), format!("Bearer {}.{}.{signature}", b64(&jose), b64(&claims))] {
            let Some(value) = header_value(&value) else { continue };
            let request = Request::get("/").header("authorization", value).body(String::new()).unwrap();
            let status = status_through(&rt, jwt_layer(), request);
            prop_assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
    }

    /// A valid token with one character changed: refused (or, where the change is invisible
    /// to base64, the same token).
    #[test]
    fn bearer_tokens_mutated(at in any::<usize>(), with in "[A-Za-z0-9_.=+/ -]") {
        let rt = runtime();
        let token = TokenIssuer::hmac(Algorithm::HS256, JWT_SECRET, "idp", "api")
            .unwrap()
            .mint("svc", &["reader"])
            .unwrap();
        let mutated = mutate(&token, at, with.chars().next().unwrap());
        prop_assume!(mutated != token);
        let request = Request::get("/")
            .header("authorization", format!("Bearer {mutated}"))
            .body(String::new())
            .unwrap();
        let status = status_through(&rt, jwt_layer(), request);
        prop_assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    /// Policy files: arbitrary text and a valid file with one character changed parse or are
    /// refused, never panic.
    #[test]
    fn policy_yaml(raw in ".{0,400}", at in any::<usize>(), with in any::<char>()) {
        let valid = "roles:\n  viewer:\n    permissions: [\"models:read\"]\nprincipals:\n  gateway: [viewer]\n  \"jwt:alice\": [viewer]\n";
        prop_assert!(Policy::from_yaml(valid).is_ok());
        bounded(|| Policy::from_yaml(&raw).err());
        bounded(|| Policy::from_yaml(&mutate(valid, at, with)).err());
    }

    /// Certificates and PEM: arbitrary bytes and a real certificate with one byte changed are
    /// parsed or refused, never panic.
    #[test]
    fn certificates(raw in proptest::collection::vec(any::<u8>(), 0..600), at in any::<usize>(), byte in any::<u8>()) {
        let der = certificate_der();
        let mut mutated = der.clone();
        let at = at % mutated.len();
        mutated[at] ^= byte | 1;
        bounded(|| PeerIdentity::from_der(&raw).err());
        bounded(|| PeerIdentity::from_der(&mutated).err());
        bounded(|| TlsConfig::from_pem(&raw, &raw, &raw).err());
    }
}

/// One certificate made once for every case.
fn certificate_der() -> Vec<u8> {
    static DER: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DER.get_or_init(|| {
        let ca = support::certs::Ca::new("Fuzz CA");
        support::certs::pem_to_der(
            &ca.issue(
                "svc",
                vec![support::certs::spiffe("spiffe://fuzz.local/svc")],
                true,
            )
            .cert,
        )
    })
    .clone()
}

/// gRPC metadata reaches the interceptors as it came: arbitrary credentials are refused.
#[cfg(feature = "tonic")]
mod grpc_metadata {
    use proptest::prelude::*;
    use tonic::service::Interceptor;
    use tower_zerotrust::grpc::{HmacInterceptor, JwtInterceptor};

    use super::*;

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn arbitrary_metadata_is_refused(
            values in proptest::collection::vec(".{0,200}", 5),
        ) {
            let jwt = JwtConfig::builder()
                .key(JwtKey::hmac(Algorithm::HS256, JWT_SECRET).unwrap())
                .issuer("idp")
                .audience("api")
                .build()
                .unwrap();
            let hmac = support::any_caller();
            let names = ["authorization", "x-service-id", "x-timestamp", "x-nonce", "x-signature"];
            let request = || {
                let mut request = tonic::Request::new(());
                for (name, value) in names.iter().zip(&values) {
                    if let Ok(value) = value.parse() {
                        request.metadata_mut().insert(*name, value);
                    }
                }
                request
            };
            let has_bearer = request().metadata().contains_key("authorization");
            let verdict = bounded(|| JwtInterceptor::new(jwt).call(request()));
            // Without any bearer token the JWT interceptor refuses too (it is required).
            prop_assert!(verdict.is_err(), "bearer {has_bearer}");
            prop_assert!(bounded(|| HmacInterceptor::new(hmac).call(request())).is_err());
        }
    }
}
