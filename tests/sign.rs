//! The client side: `SignHmacLayer` on a real hyper-util client against the verify layer.

mod support;

use axum::Router;
use axum::routing::any;
use http::StatusCode;
use http_body_util::BodyExt;
use support::*;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_zerotrust::Principal;
use tower_zerotrust::hmac::VerifyHmacLayer;
use tower_zerotrust::sign::{HmacSigner, SignHmacLayer};

async fn server() -> std::net::SocketAddr {
    let config = support::any_caller();
    let app = Router::new()
        .route(
            "/{*path}",
            any(|p: Principal| async move { p.id().to_owned() }),
        )
        .layer(VerifyHmacLayer::new(config));
    serve(app).await
}

#[tokio::test]
async fn a_hyper_client_with_the_sign_layer_is_accepted_on_every_call() {
    let addr = server().await;
    let signer = HmacSigner::new("gateway", SECRET).unwrap();
    let mut client = ServiceBuilder::new()
        .layer(SignHmacLayer::new(signer))
        .service(client());
    for (method, path) in [
        ("GET", "/a"),
        ("POST", "/b/c?x=1"),
        ("DELETE", "/models/42"),
        ("GET", "/a"),
    ] {
        let response = client
            .ready()
            .await
            .unwrap()
            .call(request(method, addr, path))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{method} {path}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "gateway");
    }
}

#[tokio::test]
async fn signing_replaces_headers_a_caller_put_there() {
    let addr = server().await;
    let signer = HmacSigner::new("gateway", SECRET).unwrap();
    let mut req = request("GET", addr, "/a");
    set(&mut req, "X-Service-ID", "admin");
    set(&mut req, "X-Signature", "sha256=00");
    signer.sign_request(&mut req);
    assert_eq!(req.headers()["X-Service-ID"], "gateway");
    assert!(req.headers()["X-Signature"].is_sensitive());
    assert_eq!(req.headers().get_all("X-Signature").iter().count(), 1);
    assert_eq!(send(req).await.status, StatusCode::OK);
}

#[tokio::test]
async fn headers_for_other_clients_are_accepted() {
    let addr = server().await;
    let signer = HmacSigner::new("gateway", SECRET).unwrap();
    let signed = signer.sign("PUT", "/models/7");
    let mut req = request("PUT", addr, "/models/7");
    for (name, value) in signed.iter() {
        req.headers_mut().insert(name, value.parse().unwrap());
    }
    assert_eq!(send(req).await.status, StatusCode::OK);
}

#[test]
fn signers_refuse_bad_ids_and_weak_secrets_and_never_print_secrets() {
    assert!(HmacSigner::new("gateway", "short").is_err());
    assert!(HmacSigner::new("gate:way", SECRET).is_err());
    assert!(HmacSigner::new("", SECRET).is_err());
    let signer = HmacSigner::new("gateway", SECRET).unwrap();
    assert!(signer.sign_at("GET", "/", 1, "bad:nonce").is_err());
    let debug = format!("{signer:?}");
    assert!(
        !debug.contains(SECRET) && debug.contains("<redacted>"),
        "{debug}"
    );
}

#[test]
fn nonces_are_fresh_128_bit_hex() {
    let signer = HmacSigner::new("gateway", SECRET).unwrap();
    let nonces: std::collections::HashSet<String> = (0..1000)
        .map(|_| signer.sign("GET", "/").nonce().to_owned())
        .collect();
    assert_eq!(nonces.len(), 1000);
    assert!(
        nonces
            .iter()
            .all(|n| n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit()))
    );
}
