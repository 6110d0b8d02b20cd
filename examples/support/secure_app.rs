//! The reference service's routes, shared by `secure_service`, `demo` and the tests, so the
//! public contract is exercised by exactly the code users run.

use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tower_zerotrust::hmac::{HmacConfigBuilder, VerifyHmacLayer};
use tower_zerotrust::nonce::MemoryNonceStore;
use tower_zerotrust::{ConfigError, Principal};

/// The routes of `secure_service`:
///
/// * `GET /health`: public, `{"status":"healthy"}`;
/// * `POST /execute`: signed by a caller in the allowed list, `{"caller":"<id>"}`;
/// * `GET /whoami`: any authenticated caller, `{"id":..., "method":..., "roles":[...]}`.
pub fn router(hmac: HmacConfigBuilder) -> Result<Router, ConfigError> {
    // One nonce store for every route: a nonce used on one route is spent on all of them.
    let nonces = MemoryNonceStore::default();
    let allowed_callers = VerifyHmacLayer::with_nonce_store(hmac.clone().build()?, nonces.clone());
    let any_caller = VerifyHmacLayer::with_nonce_store(hmac.allow_any_caller().build()?, nonces);
    Ok(Router::new()
        .route("/health", get(health))
        .route("/execute", post(execute).route_layer(allowed_callers))
        .route("/whoami", get(whoami).route_layer(any_caller)))
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
