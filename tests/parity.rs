//! One check, two front doors: the same requests through each layer and through its tonic
//! interceptor give the same outcome and the same reason code.

mod support;

use std::convert::Infallible;

use http::{Request, Response};
use support::{SECRET, formula_headers, now};
use tonic::service::interceptor::InterceptedService;
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt};
use tower_zerotrust::grpc::{HmacInterceptor, JwtInterceptor, MethodPathLayer};
use tower_zerotrust::hmac::{HmacConfig, VerifyHmacLayer};
use tower_zerotrust::jwt::{Algorithm, JwtConfig, JwtKey, RequireJwtLayer};
use tower_zerotrust::reject::REASON;
use tower_zerotrust::sign::TokenIssuer;

const METHOD: &str = "/registry.ModelRegistry/GetModel";
const PUBLIC: &str = "/grpc.health.v1.Health/Check";
const JWT_SECRET: &str = "a-jwt-secret-of-at-least-32-bytes!!";

type Door = BoxCloneService<Request<String>, Response<String>, Infallible>;
type Answer = std::future::Ready<Result<Response<String>, Infallible>>;
type Inner = tower::util::ServiceFn<fn(Request<String>) -> Answer>;
/// A case: its name, the request's headers, its path, the reason code expected (if refused).
type Row<'a> = (&'a str, Vec<(&'a str, String)>, &'a str, Option<&'a str>);

/// The service behind either door: answers every call.
fn inner() -> Inner {
    fn ok(_: Request<String>) -> Answer {
        std::future::ready(Ok(Response::new(String::new())))
    }
    tower::service_fn(ok as fn(_) -> _)
}

/// A door made of a layer: its responses, bodies read into strings.
fn layer_door<L>(layer: L) -> Door
where
    L: tower::Layer<Inner>,
    L::Service: tower::Service<
            Request<String>,
            Response = Response<tower_zerotrust::body::ResponseBody<String>>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    <L::Service as tower::Service<Request<String>>>::Future: Send,
{
    BoxCloneService::new(
        ServiceBuilder::new()
            .map_response(|response: Response<_>| response.map(|_| String::new()))
            .layer(layer)
            .service(inner()),
    )
}

/// A door made of an interceptor, as a tonic server runs it.
fn interceptor_door<I>(interceptor: I) -> Door
where
    I: tonic::service::Interceptor + Clone + Send + 'static,
{
    BoxCloneService::new(
        ServiceBuilder::new()
            .map_response(|response: Response<_>| response.map(|_| String::new()))
            .layer(MethodPathLayer)
            .service(InterceptedService::new(inner(), interceptor)),
    )
}

/// `None` when the call went through, else the reason code (with its gRPC status).
async fn outcome(door: &Door, headers: &[(&str, String)], path: &str) -> Option<(String, String)> {
    let mut request = Request::post(path)
        .header("content-type", "application/grpc")
        .body(String::new())
        .unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let response = door.clone().oneshot(request).await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    Some((header(REASON)?, header("grpc-status")?))
}

/// Runs the table through both doors, in order (nonces are spent as they go), and compares.
async fn same_outcomes(layer: Door, interceptor: Door, table: &[Row<'_>]) {
    for (case, headers, path, expected) in table {
        let through_layer = outcome(&layer, headers, path).await;
        let through_interceptor = outcome(&interceptor, headers, path).await;
        assert_eq!(through_layer, through_interceptor, "{case}");
        assert_eq!(
            through_layer.as_ref().map(|(code, _)| code.as_str()),
            *expected,
            "{case}"
        );
    }
}

fn signed(caller: &str, secret: &str, timestamp: u64, nonce: &str) -> Vec<(&'static str, String)> {
    formula_headers(secret, caller, timestamp, nonce, "POST", METHOD).to_vec()
}

#[tokio::test]
async fn hmac_layer_and_interceptor_agree() {
    let config = || {
        HmacConfig::builder()
            .secret(SECRET)
            .allow_callers(["gateway"])
            .public_path(PUBLIC)
            .build()
            .unwrap()
    };
    let valid = signed("gateway", SECRET, now(), "n-valid");
    let table = [
        ("valid", valid.clone(), METHOD, None),
        ("missing", vec![], METHOD, Some("hmac.missing_headers")),
        (
            "malformed",
            signed("gateway", SECRET, now(), "bad:nonce"),
            METHOD,
            Some("hmac.malformed_headers"),
        ),
        (
            "expired",
            signed("gateway", SECRET, now() - 120, "n-old"),
            METHOD,
            Some("hmac.timestamp_expired"),
        ),
        ("replayed", valid, METHOD, Some("hmac.replayed")),
        (
            "wrong secret",
            signed("gateway", support::OTHER_SECRET, now(), "n-forged"),
            METHOD,
            Some("hmac.invalid_signature"),
        ),
        (
            "wrong caller",
            signed("intruder", SECRET, now(), "n-intruder"),
            METHOD,
            Some("hmac.caller_not_allowed"),
        ),
        ("public path", vec![], PUBLIC, None),
    ];
    same_outcomes(
        layer_door(VerifyHmacLayer::new(config())),
        interceptor_door(HmacInterceptor::new(config())),
        &table,
    )
    .await;
}

#[tokio::test]
async fn jwt_layer_and_interceptor_agree() {
    let config = || {
        JwtConfig::builder()
            .key(JwtKey::hmac(Algorithm::HS256, JWT_SECRET).unwrap())
            .issuer("idp")
            .audience("api")
            .public_path(PUBLIC)
            .build()
            .unwrap()
    };
    let bearer = |issuer: TokenIssuer| {
        let token = issuer.mint("svc", &["reader"]).unwrap();
        vec![("authorization", format!("Bearer {token}"))]
    };
    let issuer =
        |audience: &str| TokenIssuer::hmac(Algorithm::HS256, JWT_SECRET, "idp", audience).unwrap();
    let table = [
        ("valid", bearer(issuer("api")), METHOD, None),
        ("missing", vec![], METHOD, Some("jwt.missing_token")),
        (
            "malformed",
            vec![("authorization", "Bearer not.a.token".to_owned())],
            METHOD,
            Some("jwt.malformed"),
        ),
        (
            "expired",
            bearer(issuer("api").with_clock(support::Shifted(-7200))),
            METHOD,
            Some("jwt.expired"),
        ),
        (
            "wrong audience",
            bearer(issuer("another-api")),
            METHOD,
            Some("jwt.invalid_audience"),
        ),
        ("public path", vec![], PUBLIC, None),
    ];
    same_outcomes(
        layer_door(RequireJwtLayer::new(config())),
        interceptor_door(JwtInterceptor::new(config())),
        &table,
    )
    .await;
}
