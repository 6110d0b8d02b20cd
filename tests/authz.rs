//! Authorization over real HTTP: the example roles against every route, a trust matrix
//! exactly, policy reload while serving, and the ACL cache.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::{delete, get, post};
use http::{Method, StatusCode};
use support::{SECRET, request, send, serve};
use tower_zerotrust::authz::{
    AclCache, AclSource, AuthorizeConfig, AuthorizeLayer, Authorizer, Policy, Require,
    SharedPolicy, TrustMatrix,
};
use tower_zerotrust::hmac::VerifyHmacLayer;
use tower_zerotrust::jwt::{Algorithm, JwtConfig, JwtKey, RequireJwtLayer};
use tower_zerotrust::sign::{HmacSigner, TokenIssuer};
use tower_zerotrust::{BoxError, Principal};

const JWT_SECRET: &str = "a-jwt-secret-of-at-least-32-bytes!!";

fn issuer() -> TokenIssuer {
    TokenIssuer::hmac(Algorithm::HS256, JWT_SECRET, "aegis", "aegis-api").unwrap()
}

fn jwt_layer() -> RequireJwtLayer {
    RequireJwtLayer::new(
        JwtConfig::builder()
            .key(JwtKey::hmac(Algorithm::HS256, JWT_SECRET).unwrap())
            .issuer("aegis")
            .audience("aegis-api")
            .optional()
            .build()
            .unwrap(),
    )
}

/// The reference service's routes: one per permission its roles mention.
const ROUTES: [(&str, &str, &str); 8] = [
    ("GET", "/models", "models:read"),
    ("POST", "/models", "models:write"),
    ("DELETE", "/models/7", "models:delete"),
    ("POST", "/training", "training:start"),
    ("DELETE", "/training/3", "training:stop"),
    ("GET", "/training/3", "training:read"),
    ("GET", "/metrics", "metrics:read"),
    ("GET", "/logs", "logs:read"),
];

/// The example role table, written out again here so that the test does not trust the crate's
/// built-in copy.
fn example_grants(role: &str) -> &'static [&'static str] {
    match role {
        "admin" => &[
            "models:read",
            "models:write",
            "models:delete",
            "training:start",
            "training:stop",
            "users:manage",
        ],
        "operator" => &["models:read", "training:read", "metrics:read", "logs:read"],
        "developer" => &[
            "models:read",
            "models:write",
            "training:start",
            "training:read",
        ],
        "viewer" => &["models:read", "metrics:read"],
        _ => &[],
    }
}

fn example_app(policy: impl Into<SharedPolicy>) -> Router {
    let mut config = AuthorizeConfig::builder(policy).public(Method::GET, "/health");
    for (method, path, permission) in ROUTES {
        let pattern = path.replace("/7", "/{id}").replace("/3", "/{id}");
        config = config.route(
            method.parse().unwrap(),
            pattern,
            Require::permission(permission),
        );
    }
    config = config.route(Method::POST, "/users", Require::permission("users:manage"));
    let ok = || async { "ok" };
    Router::new()
        .route("/health", get(ok))
        .route("/models", get(ok).post(ok))
        .route("/models/{id}", delete(ok))
        .route("/training", post(ok))
        .route("/training/{id}", get(ok).delete(ok))
        .route("/metrics", get(ok))
        .route("/logs", get(ok))
        .route("/users", post(ok))
        .layer(AuthorizeLayer::new(config.build().unwrap()))
        .layer(jwt_layer())
}

fn with_token(
    method: &str,
    addr: std::net::SocketAddr,
    path: &str,
    token: &str,
) -> http::Request<support::Body> {
    let mut req = request(method, addr, path);
    support::set(&mut req, "authorization", &format!("Bearer {token}"));
    req
}

#[tokio::test]
async fn every_example_role_against_every_route() {
    let addr = serve(example_app(Policy::example_roles())).await;
    let issuer = issuer();
    let mut routes: Vec<_> = ROUTES.to_vec();
    routes.push(("POST", "/users", "users:manage"));
    for role in ["admin", "operator", "developer", "viewer", "no-such-role"] {
        let token = issuer.mint("someone", &[role]).unwrap();
        for (method, path, permission) in &routes {
            let reply = send(with_token(method, addr, path, &token)).await;
            let granted = example_grants(role).contains(permission);
            let expected = if granted {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(reply.status, expected, "{role} {method} {path}");
            if !granted {
                assert_eq!(reply.code(), "authz.permission_denied");
            }
        }
    }
    // Nobody proven: 401 everywhere but the public route; a route with no rule: 403.
    for (method, path, _) in &routes {
        let reply = send(request(method, addr, path)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(reply.code(), "authz.unauthenticated");
    }
    assert_eq!(
        send(request("GET", addr, "/health")).await.status,
        StatusCode::OK
    );
    let admin = issuer.mint("root", &["admin"]).unwrap();
    let reply = send(with_token("PUT", addr, "/models", &admin)).await;
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (StatusCode::FORBIDDEN, "authz.no_rule")
    );
}

/// A "who can call whom" table, row by row, served by five services over HMAC.
#[tokio::test]
async fn a_trust_matrix_exactly() {
    let can_call: [(&str, &[&str]); 6] = [
        ("gateway", &["vault", "memory-service", "rag-service"]),
        ("vault", &[]),
        ("memory-service", &["rag-service"]),
        ("rag-service", &["memory-service"]),
        ("heartbeat", &["gateway", "memory-service", "rag-service"]),
        ("external", &[]),
    ];
    let mut builder = TrustMatrix::builder();
    for (caller, targets) in can_call {
        builder = builder.caller(caller, targets.iter().copied());
    }
    let matrix = builder.build().unwrap();
    let services = [
        "gateway",
        "vault",
        "memory-service",
        "rag-service",
        "heartbeat",
    ];
    for target in services {
        let config = AuthorizeConfig::builder(Policy::default())
            .allow_callers(matrix.callers_of(target))
            .otherwise(Require::Authenticated)
            .build()
            .unwrap();
        let hmac = support::any_caller();
        let app = Router::new()
            .route(
                "/execute",
                post(|p: Principal| async move { p.id().to_owned() }),
            )
            .layer(AuthorizeLayer::new(config))
            .layer(VerifyHmacLayer::new(hmac));
        let addr = serve(app).await;
        for (caller, targets) in can_call {
            let mut req = request("POST", addr, "/execute");
            HmacSigner::new(caller, SECRET)
                .unwrap()
                .sign_request(&mut req);
            let reply = send(req).await;
            if targets.contains(&target) {
                assert_eq!(reply.status, StatusCode::OK, "{caller} -> {target}");
            } else {
                assert_eq!(reply.status, StatusCode::FORBIDDEN, "{caller} -> {target}");
                assert_eq!(reply.code(), "authz.caller_not_allowed");
            }
        }
    }
    // Service configurations list their callers the other way round.
    assert_eq!(
        matrix.callers_of("rag-service"),
        ["gateway", "heartbeat", "memory-service"]
    );
    assert!(matrix.callers_of("vault").contains(&"gateway".to_owned()));
}

#[tokio::test]
async fn a_policy_file_reloads_while_serving_and_a_broken_one_changes_nothing() {
    let file = std::env::temp_dir().join(format!("zt-roles-{}.yaml", std::process::id()));
    std::fs::write(
        &file,
        "roles:\n  viewer:\n    permissions: [\"models:read\"]\n",
    )
    .unwrap();
    let policy = SharedPolicy::from_yaml_file(&file).unwrap();
    let addr = serve(example_app(policy.clone())).await;
    let token = issuer().mint("victor", &["viewer"]).unwrap();
    let delete = || send(with_token("DELETE", addr, "/models/7", &token));
    assert_eq!(delete().await.status, StatusCode::FORBIDDEN);

    std::fs::write(
        &file,
        "roles:\n  viewer:\n    permissions: [\"models:*\"]\n",
    )
    .unwrap();
    policy.reload().unwrap();
    assert_eq!(delete().await.status, StatusCode::OK);

    std::fs::write(&file, "roles:\n  viewer:\n    permissions: [\"mod*ls\"]\n").unwrap();
    assert!(policy.reload().is_err());
    std::fs::write(&file, "roles: [").unwrap();
    assert!(policy.reload().is_err());
    assert_eq!(
        delete().await.status,
        StatusCode::OK,
        "the last good policy stays"
    );
    std::fs::remove_file(&file).ok();
}

/// Counts its calls; answers after a pause, from a fixed table, or fails.
#[derive(Clone, Default)]
struct Controller {
    calls: Arc<AtomicUsize>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl AclSource for Controller {
    async fn is_allowed(
        &self,
        principal: &str,
        resource: &str,
        permission: &str,
    ) -> Result<bool, BoxError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        if self.down.load(Ordering::SeqCst) {
            return Err("controller unreachable".into());
        }
        Ok((principal, resource, permission) == ("payment-service-producer", "payments", "write"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_misses_make_one_source_call() {
    let controller = Controller::default();
    let cache = AclCache::builder(controller.clone()).build().unwrap();
    let checks = (0..1000).map(|_| {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .is_allowed("payment-service-producer", "payments", "write")
                .await
        })
    });
    for check in checks.collect::<Vec<_>>() {
        assert!(check.await.unwrap().unwrap());
    }
    assert_eq!(controller.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn acl_answers_expire_denials_are_cached_and_a_failing_source_fails_closed() {
    let controller = Controller::default();
    let clock = support::ManualClock::at(1_000_000);
    let cache = AclCache::builder(controller.clone())
        .ttl(Duration::from_secs(60))
        .negative_ttl(Duration::from_secs(10))
        .clock(clock.clone())
        .build()
        .unwrap();
    let calls = || controller.calls.load(Ordering::SeqCst);
    let producer = || cache.is_allowed("payment-service-producer", "payments", "write");
    let analytics = || cache.is_allowed("analytics", "payments", "write");
    assert!(producer().await.unwrap());
    assert!(!analytics().await.unwrap());
    assert!(producer().await.unwrap());
    assert!(!analytics().await.unwrap());
    assert_eq!(
        calls(),
        2,
        "both answers, the denial too, came from the cache"
    );
    // A denial is kept for its own, shorter TTL: then asked again; the grant is still cached.
    clock.advance(10_000);
    assert!(!analytics().await.unwrap());
    assert!(producer().await.unwrap());
    assert_eq!(calls(), 3);

    // The source goes down: cached answers still hold, others fail closed.
    controller.down.store(true, Ordering::SeqCst);
    clock.advance(49_999);
    assert!(producer().await.unwrap());
    assert!(
        cache
            .is_allowed("billing", "payments", "read")
            .await
            .is_err()
    );
    // After the TTL the cached answer is gone too.
    clock.advance(1);
    assert!(producer().await.is_err());
    // The source comes back: answers are fetched again and refreshed.
    controller.down.store(false, Ordering::SeqCst);
    let before = calls();
    assert!(producer().await.unwrap());
    assert_eq!(calls(), before + 1);
}

/// A handler asks the ACL about the resource it was given: 200, 403, or 503 when the source is
/// down for an answer it never cached.
#[tokio::test]
async fn handlers_check_resources_through_the_authorizer() {
    let controller = Controller::default();
    let authorizer = AuthorizeConfig::builder(Policy::default())
        .otherwise(Require::Authenticated)
        .acl(AclCache::builder(controller.clone()).build().unwrap())
        .build()
        .unwrap()
        .authorizer();
    async fn produce(
        axum::extract::State(authz): axum::extract::State<Authorizer>,
        axum::extract::Path(topic): axum::extract::Path<String>,
        caller: Principal,
    ) -> Result<&'static str, tower_zerotrust::Rejection> {
        authz.check_acl(&caller, &topic, "write").await?;
        Ok("produced")
    }
    let hmac = support::any_caller();
    let app = Router::new()
        .route("/topics/{topic}", post(produce))
        .with_state(authorizer)
        .layer(VerifyHmacLayer::new(hmac));
    let addr = serve(app).await;
    let produce_as = |caller: &str, topic: &str| {
        let mut req = request("POST", addr, &format!("/topics/{topic}"));
        HmacSigner::new(caller, SECRET)
            .unwrap()
            .sign_request(&mut req);
        send(req)
    };
    assert_eq!(
        produce_as("payment-service-producer", "payments")
            .await
            .status,
        StatusCode::OK
    );
    let denied = produce_as("analytics", "payments").await;
    assert_eq!(
        (denied.status, denied.code().as_str()),
        (StatusCode::FORBIDDEN, "authz.acl_denied")
    );
    controller.down.store(true, Ordering::SeqCst);
    let down = produce_as("payment-service-producer", "audit-log").await;
    assert_eq!(
        (down.status, down.code().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "authz.acl_unavailable")
    );
}

/// `RoleConfig::add_role(service, role)` and "the server requires roles".
#[tokio::test]
async fn roles_assigned_to_services_by_name() {
    let policy = Policy::builder()
        .assign("model_registry", ["read_models", "write_models"])
        .assign("router_core", ["route_requests"])
        .build()
        .unwrap();
    let config = AuthorizeConfig::require(policy, Require::role("read_models")).unwrap();
    let addr = models_behind_hmac(config).await;
    for (caller, expected) in [
        ("model_registry", StatusCode::OK),
        ("router_core", StatusCode::FORBIDDEN),
    ] {
        assert_eq!(signed_get(addr, caller).await.status, expected, "{caller}");
    }
}

/// `GET /models` behind any HMAC caller and `authorize`.
async fn models_behind_hmac(authorize: AuthorizeConfig) -> std::net::SocketAddr {
    let hmac = support::any_caller();
    let app = Router::new()
        .route("/models", get(|| async { "[]" }))
        .layer(AuthorizeLayer::new(authorize))
        .layer(VerifyHmacLayer::new(hmac));
    serve(app).await
}

/// `GET /models`, signed by `caller`.
async fn signed_get(addr: std::net::SocketAddr, caller: &str) -> support::Reply {
    let mut req = request("GET", addr, "/models");
    HmacSigner::new(caller, SECRET)
        .unwrap()
        .sign_request(&mut req);
    send(req).await
}

/// axum answers `HEAD` with the `GET` handler, so a `GET` rule must hold for `HEAD` too: a
/// caller without the permission is refused before the handler runs.
#[tokio::test]
async fn a_get_rule_covers_head() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = {
        let runs = runs.clone();
        move || async move {
            runs.fetch_add(1, Ordering::SeqCst);
            "models"
        }
    };
    let config = AuthorizeConfig::builder(Policy::example_roles())
        .route(Method::GET, "/models", Require::permission("models:read"))
        .otherwise(Require::Authenticated)
        .build()
        .unwrap();
    let app = Router::new()
        .route("/models", get(counted))
        .layer(AuthorizeLayer::new(config))
        .layer(jwt_layer());
    let addr = serve(app).await;
    let issuer = issuer();
    let nobody = issuer.mint("mallory", &["no-such-role"]).unwrap();
    let reply = send(with_token("HEAD", addr, "/models", &nobody)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(runs.load(Ordering::SeqCst), 0, "the handler must not run");
    // The same caller on GET, and a viewer on HEAD: the rule decides both ways.
    let reply = send(with_token("GET", addr, "/models", &nobody)).await;
    assert_eq!(reply.code(), "authz.permission_denied");
    let viewer = issuer.mint("vera", &["viewer"]).unwrap();
    let reply = send(with_token("HEAD", addr, "/models", &viewer)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// Over TCP, behind the HMAC layer: a policy written for OPA's Envoy plugin
/// (`input.attributes.request.http`, `input.parsed_path`, `input.parsed_query`) decides, and a
/// policy that hands its whole input back as the reason shows no credential in it.
#[cfg(all(feature = "rego", feature = "audit"))]
#[tokio::test]
async fn rego_policies_see_the_envoy_input_and_never_the_credentials() {
    use tower_zerotrust::audit::{AuditLayer, JsonLinesSink, Overflow};
    use tower_zerotrust::authz::RegoPolicy;

    let envoy = RegoPolicy::builder()
        .policy(
            r#"
            package envoy.authz
            default allow := false
            http := input.attributes.request.http
            allow if {
                http.method == "GET"
                input.parsed_path == ["models", "fraud detector"]
                input.parsed_query.stage == ["prod"]
                http.headers["x-team"] == "ml"
            }
            "#,
        )
        .query("data.envoy.authz.allow")
        .build()
        .unwrap();
    let dump = RegoPolicy::builder()
        .policy(
            "package zerotrust.authz\nallow := {\"allowed\": false, \"reason\": json.marshal(input)}",
        )
        .build()
        .unwrap();
    let hmac = support::any_caller();
    let app = |policy: RegoPolicy| {
        let config = AuthorizeConfig::builder(Policy::example_roles())
            .otherwise(Require::engine(policy))
            .build()
            .unwrap();
        Router::new()
            .route("/models/{name}", get(|| async { "model" }))
            .layer(AuthorizeLayer::new(config))
            .layer(VerifyHmacLayer::new(hmac.clone()))
    };
    let lines = support::captured::Captured::default();
    let audit = JsonLinesSink::new(lines.clone(), 64, Overflow::Wait);
    let envoy_addr = serve(app(envoy)).await;
    let dump_addr = serve(app(dump).layer(AuditLayer::new(audit.clone()))).await;
    let signed = |addr, path: &str, team: &str| {
        let mut req = request("GET", addr, path);
        req.headers_mut().insert("x-team", team.parse().unwrap());
        req.headers_mut()
            .insert("cookie", "session=a-session-secret".parse().unwrap());
        HmacSigner::new("gateway", SECRET)
            .unwrap()
            .sign_request(&mut req);
        req
    };
    let path = "/models/fraud%20detector?stage=prod";
    assert_eq!(
        send(signed(envoy_addr, path, "ml")).await.status,
        StatusCode::OK
    );
    let other_team = send(signed(envoy_addr, path, "ops")).await;
    assert_eq!(
        (other_team.status, other_team.code()),
        (StatusCode::FORBIDDEN, "authz.policy_denied".into())
    );
    // The dump policy's reason (its whole input) goes to the audit trail, never to the client;
    // it holds the request's harmless headers and none of its credentials.
    let reply = send(signed(dump_addr, path, "ml")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(!reply.detail().contains("x-team"), "{}", reply.detail());
    audit.flush().await;
    let event: serde_json::Value =
        serde_json::from_str(lines.text().lines().last().unwrap()).unwrap();
    let input = event["metadata"]["explanation"]["reason"].as_str().unwrap();
    assert!(input.contains(r#""x-team":"ml""#), "{input}");
    assert!(input.contains(r#""x-service-id":"gateway""#), "{input}");
    for secret in ["a-session-secret", "cookie", "x-signature", "sha256="] {
        assert!(!input.contains(secret), "{secret} in {input}");
    }
}

/// Waits for the answer to `call` to have `status`, polling; returns that answer.
async fn until_status<F>(status: StatusCode, call: impl Fn() -> F) -> support::Reply
where
    F: std::future::Future<Output = support::Reply>,
{
    let what = format!("an answer with status {status}");
    support::eventually_some(&what, || {
        let reply = call();
        async move { Some(reply.await).filter(|reply| reply.status == status) }
    })
    .await
}

/// `SharedPolicy::reload_every`: a roles file changed on disk decides requests after the next
/// timed reload, with nobody calling `reload`.
#[tokio::test]
async fn a_policy_file_is_reloaded_on_a_timer() {
    let file = std::env::temp_dir().join(format!("zt-roles-timed-{}.yaml", std::process::id()));
    std::fs::write(
        &file,
        "roles:\n  viewer:\n    permissions: [\"models:read\"]\n",
    )
    .unwrap();
    let policy = SharedPolicy::from_yaml_file(&file).unwrap();
    let reloader = policy.reload_every(Duration::from_millis(50));
    let addr = serve(example_app(policy.clone())).await;
    let token = issuer().mint("victor", &["viewer"]).unwrap();
    let delete = || send(with_token("DELETE", addr, "/models/7", &token));
    let read = || send(with_token("GET", addr, "/models", &token));
    let refused = delete().await;
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (StatusCode::FORBIDDEN, "authz.permission_denied")
    );
    assert_eq!(read().await.status, StatusCode::OK);

    std::fs::write(
        &file,
        "roles:\n  viewer:\n    permissions: [\"models:delete\"]\n",
    )
    .unwrap();
    until_status(StatusCode::OK, delete).await;
    let refused = read().await;
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (StatusCode::FORBIDDEN, "authz.permission_denied"),
        "the new file replaced the old one"
    );
    reloader.abort();
    std::fs::remove_file(&file).ok();
}

/// `RegoPolicy::reload_every`: a `.rego` file (and its data file) changed on disk decides
/// requests after the next timed reload.
#[cfg(feature = "rego")]
#[tokio::test]
async fn a_rego_policy_file_is_reloaded_on_a_timer() {
    use tower_zerotrust::authz::RegoPolicy;

    let dir = std::env::temp_dir().join(format!("zt-rego-timed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (rego, data) = (dir.join("authz.rego"), dir.join("data.json"));
    std::fs::write(
        &rego,
        "package zerotrust.authz\n\
         default allow := false\n\
         allow if input.principal.id in data.callers\n",
    )
    .unwrap();
    std::fs::write(&data, r#"{"callers": ["gateway"]}"#).unwrap();
    let policy = RegoPolicy::builder()
        .policy_file(&rego)
        .data_file(&data)
        .build()
        .unwrap();
    let reloader = policy.reload_every(Duration::from_millis(50));
    let config = AuthorizeConfig::builder(Policy::default())
        .otherwise(Require::engine(policy))
        .build()
        .unwrap();
    let addr = models_behind_hmac(config).await;
    let call = |caller: &'static str| signed_get(addr, caller);
    assert_eq!(call("gateway").await.status, StatusCode::OK);
    let refused = call("batch").await;
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (StatusCode::FORBIDDEN, "authz.policy_denied")
    );

    // The data changes: batch in, gateway out.
    std::fs::write(&data, r#"{"callers": ["batch"]}"#).unwrap();
    until_status(StatusCode::OK, || call("batch")).await;
    let refused = call("gateway").await;
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (StatusCode::FORBIDDEN, "authz.policy_denied")
    );
    // The policy changes: everyone in.
    std::fs::write(&rego, "package zerotrust.authz\nallow := true\n").unwrap();
    until_status(StatusCode::OK, || call("gateway")).await;
    reloader.abort();
    std::fs::remove_dir_all(&dir).ok();
}
