//! One request names one caller, over real TLS: a request credential (signature or token)
//! names it, a client certificate only when the request carries neither, two request
//! credentials are refused; the handler, authorization and the audit event agree.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use http::StatusCode;
use serde_json::{Value, json};
use support::captured::Captured;
use support::certs::{Ca, https_get_with_headers, serve_https};
use support::{SECRET, formula_headers, now};
use tower::ServiceBuilder;
use tower_zerotrust::Principal;
use tower_zerotrust::audit::{AuditLayer, JsonLinesSink, Overflow};
use tower_zerotrust::hmac::{HmacConfig, VerifyHmacLayer};
use tower_zerotrust::jwt::{Algorithm, JwtConfig, JwtKey, RequireJwtLayer};
use tower_zerotrust::mtls::{MtlsPrincipalConfig, MtlsPrincipalLayer};
use tower_zerotrust::sign::TokenIssuer;

const JWT_SECRET: &str = "a-jwt-secret-of-at-least-32-bytes!!";

struct Server {
    addr: SocketAddr,
    ca: Ca,
    runs: Arc<AtomicUsize>,
    audit: JsonLinesSink,
    lines: Captured,
}

impl Server {
    /// Audit ▸ the three proofs in `order` ▸ `/whoami`.
    async fn start(certificate_first: bool) -> Self {
        let ca = Ca::new("Test CA");
        let tls = ca.server_config();
        let lines = Captured::default();
        let audit = JsonLinesSink::new(lines.clone(), 64, Overflow::Wait);
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = runs.clone();
        let hmac = VerifyHmacLayer::new(
            HmacConfig::builder()
                .secret(SECRET)
                .allow_any_caller()
                .optional()
                .build()
                .unwrap(),
        );
        let jwt = RequireJwtLayer::new(
            JwtConfig::builder()
                .key(JwtKey::hmac(Algorithm::HS256, JWT_SECRET).unwrap())
                .issuer("idp")
                .audience("api")
                .optional()
                .build()
                .unwrap(),
        );
        let mtls = MtlsPrincipalLayer::new(MtlsPrincipalConfig::builder().build().unwrap());
        let whoami = Router::new().fallback(move |p: Principal| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move { axum::Json(json!({"id": p.id(), "method": p.method().as_str()})) }
        });
        let app = if certificate_first {
            whoami.layer(ServiceBuilder::new().layer(mtls).layer(hmac).layer(jwt))
        } else {
            whoami.layer(ServiceBuilder::new().layer(hmac).layer(jwt).layer(mtls))
        }
        .layer(AuditLayer::new(audit.clone()));
        let addr = serve_https(tls, app).await;
        Self {
            addr,
            ca,
            runs,
            audit,
            lines,
        }
    }

    async fn get(&self, headers: &[(&str, &str)]) -> (StatusCode, Value) {
        let config = self
            .ca
            .issue("workload-7", vec![], true)
            .client_config(&self.ca);
        https_get_with_headers((*config).clone(), self.addr, headers)
            .await
            .unwrap()
    }

    async fn last_event(&self) -> Value {
        self.audit.flush().await;
        serde_json::from_str(self.lines.text().lines().last().unwrap()).unwrap()
    }
}

fn signed() -> Vec<(&'static str, String)> {
    let nonce = format!("{:032x}", rand_nonce());
    formula_headers(SECRET, "gateway", now(), &nonce, "GET", "/whoami").to_vec()
}

fn rand_nonce() -> u128 {
    use std::time::{SystemTime, UNIX_EPOCH};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        + NEXT.fetch_add(1, Ordering::SeqCst) as u128
}

fn token(subject: &str) -> String {
    let token = TokenIssuer::hmac(Algorithm::HS256, JWT_SECRET, "idp", "api")
        .unwrap()
        .mint(subject, &["reader"])
        .unwrap();
    format!("Bearer {token}")
}

#[tokio::test]
async fn one_request_names_one_caller_whatever_the_layer_order() {
    for certificate_first in [true, false] {
        let server = Server::start(certificate_first).await;
        let order = if certificate_first {
            "certificate first"
        } else {
            "certificate last"
        };

        // The certificate alone names the caller.
        let (status, body) = server.get(&[]).await;
        assert_eq!(status, StatusCode::OK, "{order}");
        assert_eq!(
            body,
            json!({"id": "workload-7", "method": "mtls"}),
            "{order}"
        );

        // A token on the same connection names the caller instead, for the handler and the
        // audit trail alike.
        let bearer = token("alice");
        let (status, body) = server.get(&[("authorization", &bearer)]).await;
        assert_eq!(status, StatusCode::OK, "{order}");
        assert_eq!(body, json!({"id": "alice", "method": "jwt"}), "{order}");
        let event = server.last_event().await;
        assert_eq!(event["principal"], "alice", "{order}");
        assert_eq!(event["metadata"]["auth_method"], "jwt", "{order}");

        // So does a signature.
        let headers = signed();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body) = server.get(&headers).await;
        assert_eq!(
            (status, &body["id"]),
            (StatusCode::OK, &json!("gateway")),
            "{order}"
        );
        assert_eq!(server.last_event().await["principal"], "gateway", "{order}");

        // A signature and a token naming two callers: refused, the handler never runs.
        let runs = server.runs.load(Ordering::SeqCst);
        let signed = signed();
        let mut headers: Vec<(&str, &str)> = signed.iter().map(|(k, v)| (*k, v.as_str())).collect();
        headers.push(("authorization", &bearer));
        let (status, body) = server.get(&headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{order}");
        assert_eq!(body["code"], "auth.multiple_credentials", "{order}");
        assert_eq!(server.runs.load(Ordering::SeqCst), runs, "{order}");
        let event = server.last_event().await;
        assert_eq!(event["status"], "failure", "{order}");
        assert_eq!(
            event["metadata"]["reason"], "auth.multiple_credentials",
            "{order}"
        );
    }
}

/// A token whose `sub` names a service is not that service: role assignments, allowed
/// callers and per-principal quotas written for the service `gateway` never apply to it; the
/// same entries written `jwt:<sub>` apply to token subjects.
#[tokio::test]
async fn token_subjects_and_service_identities_live_in_different_namespaces() {
    use axum::routing::get;
    use http::Method;
    use support::{request, send, set};
    use tower_zerotrust::authz::{AuthorizeConfig, AuthorizeLayer, Policy, Require};
    use tower_zerotrust::rate_limit::{RateLimitConfig, RateLimitLayer, RateQuota};

    let policy = Policy::builder()
        .role("reader", ["models:read"])
        .assign("gateway", ["reader"])
        .assign("jwt:alice", ["reader"])
        .build()
        .unwrap();
    let authorize = AuthorizeConfig::builder(policy)
        .allow_callers(["gateway", "jwt:alice", "jwt:gateway-token"])
        .route(Method::GET, "/models", Require::permission("models:read"))
        .otherwise(Require::Authenticated)
        .build()
        .unwrap();
    let limits = RateLimitConfig::builder()
        .principal_quota("gateway", RateQuota::new(1, 1))
        // Time stands still: no request comes back while the test runs.
        .clock(support::ManualClock::at(1_000_000))
        .build()
        .unwrap();
    let hmac = HmacConfig::builder()
        .secret(SECRET)
        .allow_any_caller()
        .optional()
        .build()
        .unwrap();
    let jwt = JwtConfig::builder()
        .key(JwtKey::hmac(Algorithm::HS256, JWT_SECRET).unwrap())
        .issuer("idp")
        .audience("api")
        .optional()
        .build()
        .unwrap();
    let app = Router::new()
        .route("/models", get(|| async { "[]" }))
        .route("/ping", get(|| async { "pong" }))
        .layer(AuthorizeLayer::new(authorize))
        .layer(RateLimitLayer::new(limits))
        .layer(RequireJwtLayer::new(jwt))
        .layer(VerifyHmacLayer::new(hmac));
    let addr = support::serve(app).await;
    let as_token = |subject: &str, path: &str| {
        let mut req = request("GET", addr, path);
        set(&mut req, "authorization", &token_without_roles(subject));
        req
    };
    let as_service = |path: &str| {
        let mut req = request("GET", addr, path);
        let nonce = format!("{:032x}", rand_nonce());
        for (name, value) in formula_headers(SECRET, "gateway", now(), &nonce, "GET", path) {
            set(&mut req, name, &value);
        }
        req
    };

    // Allowed callers: the service is, a token with its name is not.
    assert_eq!(send(as_service("/ping")).await.status, StatusCode::OK);
    let reply = send(as_token("gateway", "/ping")).await;
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (StatusCode::FORBIDDEN, "authz.caller_not_allowed")
    );
    assert_eq!(
        send(as_token("alice", "/ping")).await.status,
        StatusCode::OK
    );

    // Role assignments: `jwt:alice` gives alice's tokens the role; the service's assignment
    // gives nothing to a token naming it.
    assert_eq!(
        send(as_token("alice", "/models")).await.status,
        StatusCode::OK
    );
    let reply = send(as_token("gateway-token", "/models")).await;
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (StatusCode::FORBIDDEN, "authz.permission_denied")
    );

    // Quotas: the service's quota (1, burst 1) is its own; the service has used its one
    // request above, tokens are counted apart on the default quota.
    let reply = send(as_service("/ping")).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    for _ in 0..3 {
        assert_eq!(
            send(as_token("alice", "/ping")).await.status,
            StatusCode::OK
        );
    }
}

fn token_without_roles(subject: &str) -> String {
    let token = TokenIssuer::hmac(Algorithm::HS256, JWT_SECRET, "idp", "api")
        .unwrap()
        .mint::<&str>(subject, &[])
        .unwrap();
    format!("Bearer {token}")
}
