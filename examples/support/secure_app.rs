//! The reference service's routes, shared by `secure_service`, `demo` and the tests, so the
//! public contract is exercised by exactly the code users run.

use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tower_zerotrust::hmac::{HmacConfigBuilder, VerifyHmacLayer};
use tower_zerotrust::jwt::{JwtConfigBuilder, RequireJwtLayer};
use tower_zerotrust::mtls::{MtlsPrincipalConfigBuilder, MtlsPrincipalLayer};
use tower_zerotrust::nonce::MemoryNonceStore;
use tower_zerotrust::{ConfigError, Principal};

/// The routes of `secure_service`:
///
/// * `GET /health`: public, `{"status":"healthy"}`;
/// * `POST /execute`: signed by a caller in the allowed list, `{"caller":"<id>"}`;
/// * `GET /whoami`: any caller proven by HMAC, by a bearer token when `jwt` is given, or by a
///   client certificate when `mtls` is given, `{"id":..., "method":..., "roles":[...]}`.
pub fn router(
    hmac: HmacConfigBuilder,
    jwt: Option<JwtConfigBuilder>,
    mtls: Option<MtlsPrincipalConfigBuilder>,
) -> Result<Router, ConfigError> {
    // One nonce store for every route: a nonce used on one route is spent on all of them.
    let nonces = MemoryNonceStore::default();
    let allowed_callers = VerifyHmacLayer::with_nonce_store(hmac.clone().build()?, nonces.clone());
    let any_caller = hmac.allow_any_caller();
    let whoami = if jwt.is_none() && mtls.is_none() {
        get(whoami).route_layer(VerifyHmacLayer::with_nonce_store(
            any_caller.build()?,
            nonces,
        ))
    } else {
        // Any one proof will do: every layer lets anonymous requests through and refuses bad
        // credentials, and the `Principal` extractor refuses requests nobody proved.
        let hmac = VerifyHmacLayer::with_nonce_store(any_caller.optional().build()?, nonces);
        let mut whoami = get(whoami).route_layer(hmac);
        if let Some(jwt) = jwt {
            whoami = whoami.route_layer(RequireJwtLayer::new(jwt.optional().build()?));
        }
        if let Some(mtls) = mtls {
            whoami = whoami.route_layer(MtlsPrincipalLayer::new(mtls.optional().build()?));
        }
        whoami
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
