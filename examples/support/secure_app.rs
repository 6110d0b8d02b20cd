//! The reference service's routes, shared by `secure_service`, `demo` and the tests, so the
//! public contract is exercised by exactly the code users run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::routing::{MethodRouter, delete, get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tower_zerotrust::authz::{AuthorizeConfig, AuthorizeLayer, Engine, Require, SharedPolicy};
use tower_zerotrust::decision::Enforcement;
use tower_zerotrust::hmac::{HmacConfigBuilder, VerifyHmacLayer};
use tower_zerotrust::jwt::{JwtConfigBuilder, RequireJwtLayer};
use tower_zerotrust::mtls::{MtlsPrincipalConfigBuilder, MtlsPrincipalLayer, PeerAddr};
use tower_zerotrust::nonce::NonceStore;
use tower_zerotrust::rate_limit::{RateLimitConfig, RateLimitLayer};
use tower_zerotrust::{ConfigError, Principal};

/// The client's address: plain HTTP records it as axum's `ConnectInfo`, HTTPS (serve_tls) as
/// `PeerAddr`.
pub fn peer_ip(extensions: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
        .or_else(|| extensions.get::<PeerAddr>().map(|p| p.0.ip()))
}

/// HTTP message signatures (RFC 9421), when the service accepts them: the verifier, and the
/// callers allowed on `POST /execute` (the same list as HMAC callers).
#[cfg(feature = "httpsig")]
pub struct HttpSig {
    pub config: tower_zerotrust::httpsig::HttpSigConfig,
    pub allowed_callers: Vec<String>,
}
/// Without the `httpsig` feature there is none to give.
#[cfg(not(feature = "httpsig"))]
pub type HttpSig = std::convert::Infallible;

/// Who may do what, and how often.
pub struct Access {
    pub policy: SharedPolicy,
    pub limits: RateLimitConfig,
    /// Decides `/models` and `/whoami` instead of the role rules (a Rego policy).
    pub engine: Option<Engine>,
    /// Decided beside the enforced rules on the same routes, never enforced: disagreements
    /// are recorded.
    pub candidate: Option<Engine>,
    /// Refuse, or only record what would be refused (authorization and rate limits).
    pub enforcement: Enforcement,
}

impl Access {
    /// The role rules (or `Rego`) and the given quotas, enforced.
    pub fn new(policy: SharedPolicy, limits: RateLimitConfig) -> Self {
        Self {
            policy,
            limits,
            engine: None,
            candidate: None,
            enforcement: Enforcement::Enforce,
        }
    }

    /// The authorize layer of a route that needs `require`, or whatever the policy engine
    /// decides when there is one.
    fn authorize(&self, require: Require) -> Result<AuthorizeLayer, ConfigError> {
        let require = match &self.engine {
            Some(engine) => Require::Engine(engine.clone()),
            None => require,
        };
        let mut config = AuthorizeConfig::builder(self.policy.clone())
            .otherwise(require)
            .enforcement(self.enforcement);
        if let Some(candidate) = &self.candidate {
            config = config.candidate(candidate.clone());
        }
        Ok(AuthorizeLayer::new(config.build()?))
    }
}

/// The routes of `secure_service`:
///
/// * `GET /health`: public, `{"status":"healthy"}`;
/// * `POST /execute`: signed by a caller in the allowed list, `{"caller":"<id>"}`;
/// * `GET /whoami`: any caller proven by HMAC, by a bearer token when `jwt` is given, or by a
///   client certificate when `mtls` is given, `{"id":..., "method":..., "roles":[...]}`;
/// * `GET /models` (`models:read`), `POST /models` (`models:write`, body `{"name":...}`, 201),
///   `DELETE /models/{id}` (`models:delete`, 204 or 404): any proven caller whose roles grant
///   the permission.
///
/// With a policy engine in `access`, it decides `/whoami` and the models instead of the role
/// rules; `/health` stays public and `/execute` keeps its caller list.
///
/// With `httpsig`, requests signed per RFC 9421 are accepted wherever HMAC-signed ones are
/// (`/execute` for the allowed callers, `/whoami`, the models).
///
/// Every route but `/health` is rate limited per principal. `nonces` is shared by every route:
/// a nonce used on one route is spent on all of them.
pub fn router<N: NonceStore + Clone>(
    hmac: HmacConfigBuilder,
    jwt: Option<JwtConfigBuilder>,
    mtls: Option<MtlsPrincipalConfigBuilder>,
    httpsig: Option<HttpSig>,
    access: Access,
    nonces: N,
) -> Result<Router, ConfigError> {
    let limit = RateLimitLayer::new(access.limits.clone());
    #[cfg(feature = "httpsig")]
    let signed = httpsig.map(|sig| {
        let layer = tower_zerotrust::httpsig::VerifyHttpSigLayer::with_nonce_store(
            sig.config,
            nonces.clone(),
        );
        (layer, sig.allowed_callers)
    });
    #[cfg(not(feature = "httpsig"))]
    let signed = httpsig;
    // `POST /execute`: the allowed callers only. With message signatures either proof will do:
    // the HMAC layer checks HMAC callers, the authorize layer the signature keys' principals.
    let mut execute_route = post(execute).route_layer(limit.clone());
    #[cfg_attr(not(feature = "httpsig"), allow(unused_mut))]
    let mut execute_hmac = hmac.clone();
    #[cfg(feature = "httpsig")]
    if let Some((_, callers)) = &signed {
        let allowed = AuthorizeConfig::builder(access.policy.clone())
            .allow_callers(callers.iter().cloned())
            .otherwise(Require::Authenticated)
            .enforcement(access.enforcement)
            .build()?;
        execute_route = execute_route.route_layer(AuthorizeLayer::new(allowed));
        execute_hmac = execute_hmac.optional();
    }
    execute_route = execute_route.route_layer(VerifyHmacLayer::with_nonce_store(
        execute_hmac.build()?,
        nonces.clone(),
    ));
    #[cfg(feature = "httpsig")]
    if let Some((layer, _)) = &signed {
        execute_route = execute_route.route_layer(layer.clone());
    }
    let any_caller = hmac.allow_any_caller();
    // Any one proof will do: with several, every layer lets anonymous requests through and
    // refuses bad credentials, and the `Principal` extractor (or the authorize layer) refuses
    // requests nobody proved.
    let only_hmac = jwt.is_none() && mtls.is_none() && signed.is_none();
    let hmac = VerifyHmacLayer::with_nonce_store(
        if only_hmac {
            any_caller
        } else {
            any_caller.optional()
        }
        .build()?,
        nonces,
    );
    let jwt = jwt
        .map(|j| j.optional().build())
        .transpose()?
        .map(RequireJwtLayer::new);
    let mtls = mtls
        .map(|m| m.optional().build())
        .transpose()?
        .map(MtlsPrincipalLayer::new);
    // Layers added later run first: authenticate, then rate limit, then authorize.
    let proven = |route: MethodRouter<Models>| {
        let mut route = route.route_layer(limit.clone()).route_layer(hmac.clone());
        if let Some(jwt) = &jwt {
            route = route.route_layer(jwt.clone());
        }
        if let Some(mtls) = &mtls {
            route = route.route_layer(mtls.clone());
        }
        #[cfg(feature = "httpsig")]
        if let Some((layer, _)) = &signed {
            route = route.route_layer(layer.clone());
        }
        route
    };
    let needs = |permission: &str| access.authorize(Require::permission(permission));
    // `/whoami` needs only a proven caller (the extractor refuses others), unless a policy
    // engine decides it or a candidate is compared on it.
    let mut whoami_route = get(whoami);
    if access.engine.is_some() || access.candidate.is_some() {
        whoami_route = whoami_route.route_layer(access.authorize(Require::Authenticated)?);
    }
    Ok(Router::new()
        .route("/health", get(health))
        .route("/execute", execute_route)
        .route("/whoami", proven(whoami_route))
        .route(
            "/models",
            proven(get(list_models).route_layer(needs("models:read")?)).merge(proven(
                post(create_model).route_layer(needs("models:write")?),
            )),
        )
        .route(
            "/models/{id}",
            proven(delete(delete_model).route_layer(needs("models:delete")?)),
        )
        .with_state(Models::default()))
}

/// The models the service knows, in memory.
#[derive(Clone, Default)]
struct Models {
    next: Arc<Mutex<(u64, BTreeMap<u64, Value>)>>,
}

async fn list_models(State(models): State<Models>) -> Json<Value> {
    let models = models.next.lock().unwrap();
    Json(json!({ "models": models.1.values().collect::<Vec<_>>() }))
}

#[derive(serde::Deserialize)]
struct NewModel {
    name: String,
}

async fn create_model(
    State(models): State<Models>,
    caller: Principal,
    Json(new): Json<NewModel>,
) -> (StatusCode, Json<Value>) {
    let mut models = models.next.lock().unwrap();
    models.0 += 1;
    let id = models.0;
    let model = json!({ "id": id.to_string(), "name": new.name, "owner": caller.id() });
    models.1.insert(id, model.clone());
    (StatusCode::CREATED, Json(model))
}

/// Any id is a name a model could have: one that was never issued is 404, whatever its form.
async fn delete_model(State(models): State<Models>, Path(id): Path<String>) -> StatusCode {
    let removed = id
        .parse::<u64>()
        .ok()
        .and_then(|id| models.next.lock().unwrap().1.remove(&id));
    match removed {
        Some(_) => StatusCode::NO_CONTENT,
        None => StatusCode::NOT_FOUND,
    }
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
