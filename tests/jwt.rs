//! The JWT layer over real TCP: keys of every family, and every attack the issue lists.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use base64::Engine;
use http::StatusCode;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use support::*;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_zerotrust::jwt::{
    Algorithm, Claims, JwtConfig, JwtConfigBuilder, JwtKey, RequireJwtLayer,
};
use tower_zerotrust::sign::{AddBearerLayer, MintedToken, TokenIssuer, token_fn};
use tower_zerotrust::{BoxError, Principal};

const ISS: &str = "intellirouter";
const AUD: &str = "intellirouter-services";
const HS_SECRET: &str = "your-secret-key-of-at-least-32-bytes!";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn builder(key: JwtKey) -> JwtConfigBuilder {
    JwtConfig::builder().key(key).issuer(ISS).audience(AUD)
}

fn hs256() -> JwtKey {
    JwtKey::hmac(Algorithm::HS256, HS_SECRET).unwrap()
}

/// A service behind the layer answering who called, with one custom claim.
async fn server(config: JwtConfig) -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new()
        .fallback(
            move |principal: Option<Principal>, claims: Option<Claims>| {
                counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    let mut body = json!({
                        "id": principal.as_ref().map(|p| p.id().to_owned()),
                        "method": principal.as_ref().map(|p| p.method().as_str()),
                        "roles": principal.as_ref().map(|p| p.roles().to_vec()),
                        "email": claims.as_ref().and_then(|c| c.get::<String>("email")),
                    });
                    // Minted tokens carry one; the test tokens do not.
                    if let Some(jti) = claims.and_then(|c| c.get::<String>("jti")) {
                        body["jti"] = jti.into();
                    }
                    axum::Json(body)
                }
            },
        )
        .layer(RequireJwtLayer::new(config));
    (serve(app).await, hits)
}

fn claims(overrides: Value) -> Value {
    let mut claims = json!({
        "sub": "router_core",
        "iss": ISS,
        "aud": AUD,
        "iat": now(),
        "exp": now() + 600,
        "roles": ["route_requests"],
    });
    for (k, v) in overrides.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

fn sign(
    alg: jsonwebtoken::Algorithm,
    key: &EncodingKey,
    claims: &Value,
    kid: Option<&str>,
) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn hs(claims: &Value) -> String {
    sign(
        jsonwebtoken::Algorithm::HS256,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
        claims,
        None,
    )
}

async fn call(addr: SocketAddr, authorization: Option<&str>) -> Reply {
    let mut req = request("GET", addr, "/whoami");
    if let Some(value) = authorization {
        set(&mut req, "authorization", value);
    }
    send(req).await
}

async fn bearer(addr: SocketAddr, token: &str) -> Reply {
    call(addr, Some(&format!("Bearer {token}"))).await
}

fn assert_invalid(reply: &Reply, code: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    assert_eq!(reply.code(), code, "{reply:?}");
    assert_eq!(
        reply.headers["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn tokens_of_every_key_family_are_accepted_with_their_roles() {
    let cases: [(Algorithm, jsonwebtoken::Algorithm, &str, &str); 6] = [
        (
            Algorithm::RS256,
            jsonwebtoken::Algorithm::RS256,
            "rsa",
            "rsa",
        ),
        (
            Algorithm::PS256,
            jsonwebtoken::Algorithm::PS256,
            "rsa",
            "rsa",
        ),
        (
            Algorithm::RS512,
            jsonwebtoken::Algorithm::RS512,
            "rsa",
            "rsa",
        ),
        (
            Algorithm::ES256,
            jsonwebtoken::Algorithm::ES256,
            "ec256",
            "ec",
        ),
        (
            Algorithm::ES384,
            jsonwebtoken::Algorithm::ES384,
            "ec384",
            "ec",
        ),
        (
            Algorithm::EdDSA,
            jsonwebtoken::Algorithm::EdDSA,
            "ed25519",
            "ed",
        ),
    ];
    for (alg, jwt_alg, name, family) in cases {
        let public = fixture(&format!("{name}-public.pem"));
        let private = fixture(&format!("{name}-private.pem"));
        let key = EncodingKey::from_ec_pem(&private)
            .or_else(|_| EncodingKey::from_rsa_pem(&private))
            .or_else(|_| EncodingKey::from_ed_pem(&private))
            .unwrap();
        let (addr, _) = server(
            builder(JwtKey::from_pem(alg, &public).unwrap())
                .build()
                .unwrap(),
        )
        .await;
        let reply = bearer(addr, &sign(jwt_alg, &key, &claims(json!({})), None)).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{alg:?} ({family}): {reply:?}"
        );
        assert_eq!(
            reply.json(),
            json!({"id": "router_core", "method": "jwt", "roles": ["route_requests"], "email": null})
        );
    }
    let (addr, _) = server(builder(hs256()).build().unwrap()).await;
    let reply = bearer(addr, &hs(&claims(json!({"email": "core@example.com"})))).await;
    assert_eq!(reply.json()["email"], "core@example.com");
}

#[test]
fn public_pem_keys_name_their_algorithm() {
    for (name, alg) in [
        ("rsa", Algorithm::RS256),
        ("ec256", Algorithm::ES256),
        ("ec384", Algorithm::ES384),
        ("ed25519", Algorithm::EdDSA),
    ] {
        let key = JwtKey::from_public_pem(&fixture(&format!("{name}-public.pem"))).unwrap();
        assert_eq!(key.algorithm(), alg, "{name}");
    }
    assert!(
        JwtKey::from_public_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
            .is_err()
    );
    assert!(JwtKey::from_pem(Algorithm::ES256, &fixture("rsa-public.pem")).is_err());
}

#[tokio::test]
async fn missing_tokens_get_the_bare_bearer_challenge() {
    let (addr, hits) = server(builder(hs256()).build().unwrap()).await;
    for authorization in [None, Some("Basic dXNlcjpwYXNz")] {
        let reply = call(addr, authorization).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.code(), "jwt.missing_token");
        assert_eq!(reply.detail(), "Missing bearer token");
        assert_eq!(reply.headers["www-authenticate"], "Bearer");
    }
    assert_invalid(&call(addr, Some("Bearer")).await, "jwt.malformed");
    assert_invalid(&call(addr, Some("Bearer    ")).await, "jwt.malformed");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_scheme_is_case_insensitive() {
    let (addr, _) = server(builder(hs256()).build().unwrap()).await;
    let token = hs(&claims(json!({})));
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let reply = call(addr, Some(&format!("{scheme} {token}"))).await;
        assert_eq!(reply.status, StatusCode::OK, "{scheme}");
    }
}

#[tokio::test]
async fn alg_none_and_key_confusion_are_refused() {
    let rsa_public = fixture("rsa-public.pem");
    let key = JwtKey::from_pem(Algorithm::RS256, &rsa_public).unwrap();
    let (addr, hits) = server(builder(key).build().unwrap()).await;
    let payload = b64(claims(json!({})).to_string().as_bytes());
    for header in [
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"alg":"None"}"#,
        r#"{"alg":"HS256"}"#,
    ] {
        let token = format!("{}.{payload}.", b64(header.as_bytes()));
        let reply = bearer(addr, &token).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{header}");
    }
    // HS256 keyed with the RSA public key: the classic confusion attack.
    let confused = sign(
        jsonwebtoken::Algorithm::HS256,
        &EncodingKey::from_secret(&rsa_public),
        &claims(json!({})),
        None,
    );
    assert_invalid(&bearer(addr, &confused).await, "jwt.algorithm_not_allowed");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn unknown_and_hostile_kids_are_refused() {
    let key = hs256().with_kid("k1");
    let (addr, _) = server(builder(key).build().unwrap()).await;
    let secret = EncodingKey::from_secret(HS_SECRET.as_bytes());
    let good = sign(
        jsonwebtoken::Algorithm::HS256,
        &secret,
        &claims(json!({})),
        Some("k1"),
    );
    assert_eq!(bearer(addr, &good).await.status, StatusCode::OK);
    let long = "k".repeat(5000);
    for kid in ["k2", "../../etc/passwd", "' OR 1=1 --", "k1\u{0}", &long] {
        let token = sign(
            jsonwebtoken::Algorithm::HS256,
            &secret,
            &claims(json!({})),
            Some(kid),
        );
        assert_invalid(&bearer(addr, &token).await, "jwt.unknown_key");
    }
}

#[tokio::test]
async fn time_claims_are_enforced_with_leeway() {
    let (addr, _) = server(builder(hs256()).build().unwrap()).await;
    let now = now();
    assert_invalid(
        &bearer(addr, &hs(&claims(json!({"exp": now - 120})))).await,
        "jwt.expired",
    );
    assert_eq!(
        bearer(addr, &hs(&claims(json!({"exp": now - 10}))))
            .await
            .status,
        StatusCode::OK
    );
    assert_invalid(
        &bearer(addr, &hs(&claims(json!({"nbf": now + 120})))).await,
        "jwt.not_yet_valid",
    );
    assert_eq!(
        bearer(addr, &hs(&claims(json!({"nbf": now + 10}))))
            .await
            .status,
        StatusCode::OK
    );
    assert_invalid(
        &bearer(addr, &hs(&claims(json!({"exp": "tomorrow"})))).await,
        "jwt.malformed",
    );
}

#[tokio::test]
async fn a_remembered_token_still_expires_and_its_forgeries_are_not_remembered() {
    let clock = ManualClock::at(now() * 1000);
    let config = builder(hs256()).clock(clock.clone()).build().unwrap();
    let (addr, hits) = server(config).await;
    let token = hs(&claims(json!({"exp": now() + 60})));
    for _ in 0..3 {
        assert_eq!(bearer(addr, &token).await.status, StatusCode::OK);
    }
    // Same header and payload, another signature: not the remembered token.
    let (signed, _) = token.rsplit_once('.').unwrap();
    let forged = format!("{signed}.{}", b64(&[0u8; 32]));
    assert_invalid(&bearer(addr, &forged).await, "jwt.invalid_signature");
    assert_invalid(
        &bearer(addr, &format!("{token}x")).await,
        "jwt.invalid_signature",
    );
    // Past `exp` and the 30 s leeway, the remembered token is refused like any other.
    clock.advance(91_000);
    assert_invalid(&bearer(addr, &token).await, "jwt.expired");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn the_cache_can_be_turned_off() {
    let token = hs(&claims(json!({})));
    // On (the default): the token is verified once and remembered, however often it comes.
    let remembering = builder(hs256()).build().unwrap();
    let (addr, _) = server(remembering.clone()).await;
    for _ in 0..3 {
        assert_eq!(bearer(addr, &token).await.status, StatusCode::OK);
    }
    assert_eq!(remembering.remembered_tokens(), 1);
    // Off: nothing is remembered, so every request is verified again, and still accepted.
    let forgetting = builder(hs256()).cache_capacity(0).build().unwrap();
    let (addr, hits) = server(forgetting.clone()).await;
    for _ in 0..3 {
        let reply = bearer(addr, &token).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.json()["id"], "router_core");
    }
    assert_eq!(forgetting.remembered_tokens(), 0);
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn issuer_and_audience_must_match_and_be_present() {
    let (addr, _) = server(builder(hs256()).build().unwrap()).await;
    assert_invalid(
        &bearer(addr, &hs(&claims(json!({"iss": "evil"})))).await,
        "jwt.invalid_issuer",
    );
    assert_invalid(
        &bearer(addr, &hs(&claims(json!({"aud": "other-api"})))).await,
        "jwt.invalid_audience",
    );
    let several = hs(&claims(json!({"aud": ["other-api", AUD]})));
    assert_eq!(bearer(addr, &several).await.status, StatusCode::OK);
    let none_of_them = hs(&claims(json!({"aud": ["a", "b"]})));
    assert_invalid(&bearer(addr, &none_of_them).await, "jwt.invalid_audience");
    for missing in ["iss", "aud", "exp", "sub"] {
        let token = hs(&claims(json!({ missing: null })));
        assert_invalid(&bearer(addr, &token).await, "jwt.missing_claim");
    }
}

#[tokio::test]
async fn required_claims_are_enforced() {
    let (addr, _) = server(builder(hs256()).require_claim("email").build().unwrap()).await;
    assert_invalid(
        &bearer(addr, &hs(&claims(json!({})))).await,
        "jwt.missing_claim",
    );
    let with = hs(&claims(json!({"email": "a@b"})));
    assert_eq!(bearer(addr, &with).await.status, StatusCode::OK);
}

#[tokio::test]
async fn tampered_truncated_and_garbage_tokens_are_refused() {
    let (addr, hits) = server(builder(hs256()).build().unwrap()).await;
    let token = hs(&claims(json!({})));
    let parts: Vec<&str> = token.split('.').collect();
    let forged_payload = b64(claims(json!({"sub": "admin"})).to_string().as_bytes());
    let tampered_payload = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    assert_invalid(
        &bearer(addr, &tampered_payload).await,
        "jwt.invalid_signature",
    );
    let mut signature = parts[2].to_owned();
    let flipped = if signature.ends_with('A') { 'B' } else { 'A' };
    signature.pop();
    signature.push(flipped);
    let tampered_signature = format!("{}.{}.{signature}", parts[0], parts[1]);
    assert_eq!(
        bearer(addr, &tampered_signature).await.status,
        StatusCode::UNAUTHORIZED
    );
    for garbage in [
        format!("{}.{}", parts[0], parts[1]),
        "abc".to_owned(),
        "!!!.!!!.!!!".to_owned(),
        format!("{}.{}.{}", b64(b"hello"), parts[1], parts[2]),
        format!("{}.{}.{}", parts[0], b64(b"[1,2,3]"), parts[2]),
        "a.b.c.d.e".to_owned(),
    ] {
        assert_eq!(
            bearer(addr, &garbage).await.status,
            StatusCode::UNAUTHORIZED,
            "{garbage}"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn oversized_tokens_are_refused_before_parsing() {
    let (addr, _) = server(builder(hs256()).build().unwrap()).await;
    let big = format!("{}.{}.sig", "a".repeat(8 * 1024), "b".repeat(8 * 1024));
    assert_invalid(&bearer(addr, &big).await, "jwt.token_too_large");
    // A 1 MB header never reaches the layer over HTTP/1 (hyper refuses it first); the server
    // stays up, and the layer itself refuses such a token cleanly.
    let huge = "a".repeat(1024 * 1024);
    let reply = bearer(addr, &huge).await;
    assert!(reply.status.is_client_error(), "{reply:?}");
    assert_eq!(
        bearer(addr, &hs(&claims(json!({})))).await.status,
        StatusCode::OK
    );
    let svc = ServiceBuilder::new()
        .layer(RequireJwtLayer::new(builder(hs256()).build().unwrap()))
        .service_fn(|_req: http::Request<String>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        });
    let req = http::Request::get("/")
        .header("authorization", format!("Bearer {huge}"))
        .body(String::new())
        .unwrap();
    let response = svc.oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let rejection = response
        .extensions()
        .get::<tower_zerotrust::Rejection>()
        .unwrap();
    assert_eq!(rejection.code(), "jwt.token_too_large");
}

#[tokio::test]
async fn roles_come_from_the_configured_claim() {
    let config = builder(hs256())
        .roles_claim("realm_access.roles")
        .build()
        .unwrap();
    let (addr, _) = server(config).await;
    let token = hs(&claims(
        json!({"realm_access": {"roles": ["admin", "viewer"]}}),
    ));
    assert_eq!(
        bearer(addr, &token).await.json()["roles"],
        json!(["admin", "viewer"])
    );
    let config = builder(hs256()).roles_claim("scope").build().unwrap();
    let (addr, _) = server(config).await;
    let token = hs(&claims(json!({"scope": "models:read models:write"})));
    assert_eq!(
        bearer(addr, &token).await.json()["roles"],
        json!(["models:read", "models:write"])
    );
}

#[tokio::test]
async fn optional_mode_passes_anonymous_requests_but_not_bad_tokens() {
    let (addr, _) = server(builder(hs256()).optional().build().unwrap()).await;
    let reply = call(addr, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["id"], Value::Null);
    assert_invalid(&bearer(addr, "not-a-token").await, "jwt.malformed");
}

#[tokio::test]
async fn grpc_requests_get_unauthenticated() {
    let (addr, _) = server(builder(hs256()).build().unwrap()).await;
    let mut req = request("POST", addr, "/pkg.Svc/Method");
    set(&mut req, "content-type", "application/grpc");
    set(&mut req, "authorization", "Bearer garbage");
    let reply = send(req).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["grpc-status"], "16");
    assert_eq!(reply.headers["grpc-message"], "Malformed token");
}

#[tokio::test]
async fn the_client_layer_mints_caches_and_attaches_tokens() {
    let (addr, hits) = server(builder(hs256()).build().unwrap()).await;
    let issuer = TokenIssuer::hmac(Algorithm::HS256, HS_SECRET, ISS, AUD).unwrap();
    let mut minted = ServiceBuilder::new()
        .layer(AddBearerLayer::new(MintedToken::new(
            issuer,
            "router_core",
            ["route_requests"],
        )))
        .service(client());
    // One token minted (a fresh `jti` each time one is), then reused for every call.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..3 {
        let response = minted
            .ready()
            .await
            .unwrap()
            .call(request("GET", addr, "/whoami"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = Reply::read(response).await.json();
        assert_eq!(body["id"], "router_core");
        seen.insert(
            body["jti"]
                .as_str()
                .expect("a minted token has a jti")
                .to_owned(),
        );
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    // Any async source.
    let token = hs(&claims(json!({"sub": "from-vault"})));
    let mut from_fn = ServiceBuilder::new()
        .layer(AddBearerLayer::new(token_fn(move || {
            let token = token.clone();
            async move {
                tokio::task::yield_now().await;
                Ok::<_, BoxError>(token)
            }
        })))
        .service(client());
    let response = from_fn
        .ready()
        .await
        .unwrap()
        .call(request("GET", addr, "/"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // A failing source fails the call before anything is sent.
    let before = hits.load(Ordering::SeqCst);
    let mut failing = ServiceBuilder::new()
        .layer(AddBearerLayer::new(token_fn(|| async {
            Err::<String, BoxError>("vault sealed".into())
        })))
        .service(client());
    let error = failing
        .ready()
        .await
        .unwrap()
        .call(request("GET", addr, "/"))
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "vault sealed");
    assert_eq!(hits.load(Ordering::SeqCst), before);
}

/// RFC 7515 §4.1.11: a `crit` header names extensions the verifier must understand; the layer
/// understands none, so a correctly signed token with `crit` is refused.
#[tokio::test]
async fn critical_header_extensions_are_refused() {
    let (addr, hits) = server(builder(hs256()).build().unwrap()).await;
    let key = EncodingKey::from_secret(HS_SECRET.as_bytes());
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    let plain = jsonwebtoken::encode(&header, &claims(json!({})), &key).unwrap();
    assert_eq!(bearer(addr, &plain).await.status, StatusCode::OK);
    header.crit = Some(vec!["https://example.com/must-understand".to_owned()]);
    let critical = jsonwebtoken::encode(&header, &claims(json!({})), &key).unwrap();
    assert_invalid(
        &bearer(addr, &critical).await,
        "jwt.unsupported_critical_header",
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

/// RFC 8725 §3.11: access tokens are typed `JWT` or `at+jwt` (or untyped); other types, and
/// the type of the tokens that sign pub/sub messages, are refused; the list is configurable.
#[tokio::test]
async fn only_access_token_types_are_accepted() {
    let key = EncodingKey::from_secret(HS_SECRET.as_bytes());
    let typed = |typ: Option<&str>| {
        let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
        header.typ = typ.map(str::to_owned);
        jsonwebtoken::encode(&header, &claims(json!({})), &key).unwrap()
    };
    let (addr, _) = server(builder(hs256()).build().unwrap()).await;
    for typ in [
        None,
        Some("JWT"),
        Some("at+jwt"),
        Some("application/AT+JWT"),
    ] {
        assert_eq!(
            bearer(addr, &typed(typ)).await.status,
            StatusCode::OK,
            "{typ:?}"
        );
    }
    for typ in ["dpop+jwt", "logout+jwt", "zerotrust-message+jwt", ""] {
        assert_invalid(
            &bearer(addr, &typed(Some(typ))).await,
            "jwt.wrong_token_type",
        );
    }
    let strict = builder(hs256())
        .token_types(["at+jwt"])
        .require_token_type()
        .build()
        .unwrap();
    let (addr, _) = server(strict).await;
    assert_eq!(
        bearer(addr, &typed(Some("at+jwt"))).await.status,
        StatusCode::OK
    );
    for typ in [None, Some("JWT")] {
        assert_invalid(&bearer(addr, &typed(typ)).await, "jwt.wrong_token_type");
    }
    // The message token type cannot be made an access token type.
    assert!(
        builder(hs256())
            .token_types(["application/zerotrust-message+jwt"])
            .build()
            .is_err()
    );
}
