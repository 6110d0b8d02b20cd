//! The reference service's routes, shared by `secure_service`, `demo` and the tests, so the
//! public contract is exercised by exactly the code users run.

use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tower_zerotrust::hmac::{HmacConfigBuilder, VerifyHmacLayer};
use tower_zerotrust::jwt::{JwtConfigBuilder, RequireJwtLayer};
use tower_zerotrust::nonce::MemoryNonceStore;
use tower_zerotrust::{ConfigError, Principal};

/// The routes of `secure_service`:
///
/// * `GET /health`: public, `{"status":"healthy"}`;
/// * `POST /execute`: signed by a caller in the allowed list, `{"caller":"<id>"}`;
/// * `GET /whoami`: any caller proven by HMAC, or by a bearer token when `jwt` is given,
///   `{"id":..., "method":..., "roles":[...]}`.
pub fn router(
    hmac: HmacConfigBuilder,
    jwt: Option<JwtConfigBuilder>,
) -> Result<Router, ConfigError> {
    // One nonce store for every route: a nonce used on one route is spent on all of them.
    let nonces = MemoryNonceStore::default();
    let allowed_callers = VerifyHmacLayer::with_nonce_store(hmac.clone().build()?, nonces.clone());
    let any_caller = hmac.allow_any_caller();
    let whoami = match jwt {
        None => get(whoami).route_layer(VerifyHmacLayer::with_nonce_store(
            any_caller.build()?,
            nonces,
        )),
        // Either proof will do: both layers let anonymous requests through, refuse bad
        // credentials, and the `Principal` extractor refuses requests nobody proved.
        Some(jwt) => get(whoami)
            .route_layer(VerifyHmacLayer::with_nonce_store(
                any_caller.optional().build()?,
                nonces,
            ))
            .route_layer(RequireJwtLayer::new(jwt.optional().build()?)),
    };
    Ok(Router::new()
        .route("/health", get(health))
        .route("/execute", post(execute).route_layer(allowed_callers))
        .route("/whoami", whoami))
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "healthy" }))
}

async fn execute(caller: Principal) -> Json<Value> {
    Json(json!({ "caller": caller.id() }))
}

async fn whoami(caller: Principal) -> Json<Value> {
    Json(json!({
        "id": caller.id(),
        "method": caller.method().as_str(),
        "roles": caller.roles(),
    }))
}
