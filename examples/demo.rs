//! The main job, in one run: a secured service and real clients on loopback.
//!
//! ```text
//! cargo run --example demo
//! ```
//!
//! Starts `secure_service`'s routes on a random loopback port, then calls them over TCP with a
//! signing client and with hand-made bad requests, and prints what was accepted, what was
//! refused and why, followed by the service's rejection log. Exits non-zero if any outcome
//! differs from the expected one.

#[path = "support/captured.rs"]
mod captured;
#[path = "support/demo_ca.rs"]
mod demo_ca;
#[path = "support/secure_app.rs"]
mod secure_app;

use captured::Captured;
use demo_ca::DemoCa;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_zerotrust::audit::{AuditLayer, JsonLinesSink, Overflow};
use tower_zerotrust::authz::{Policy, RegoPolicy};
use tower_zerotrust::clock::{Clock, SystemClock};
use tower_zerotrust::decision::Enforcement;
use tower_zerotrust::hmac::HmacConfig;
use tower_zerotrust::httpsig::{HttpSigConfig, HttpSigKey, HttpSigSigner};
use tower_zerotrust::jwt::{Algorithm, JwtConfig, JwtKey};
use tower_zerotrust::mtls::{MtlsPrincipalConfig, TlsConfig, serve_tls};
use tower_zerotrust::nonce::MemoryNonceStore;
use tower_zerotrust::rate_limit::{RateLimitConfig, RateQuota};
use tower_zerotrust::sign::{
    AddBearerLayer, HmacSigner, MintedToken, SignHmacLayer, SignedHeaders, TokenIssuer,
};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

type Body = Full<Bytes>;

#[tokio::main]
async fn main() -> Result<(), tower_zerotrust::BoxError> {
    let log = Captured::default();
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(log.clone()),
        )
        .with(Targets::new().with_target("tower_zerotrust", LevelFilter::DEBUG))
        .init();

    // The service: "vault", which gateway and heartbeat may call.
    let secret = random_secret();
    let hmac = HmacConfig::builder()
        .secret(&secret)
        .allow_callers(["gateway", "heartbeat"])
        .public_path("/health");
    // ...and which accepts bearer tokens from the platform's token issuer on /whoami.
    let jwt_secret = random_secret();
    let jwt = JwtConfig::builder()
        .key(JwtKey::hmac(Algorithm::HS256, &jwt_secret)?)
        .issuer(ISSUER)
        .audience(AUDIENCE);
    // ...and HTTP message signatures (RFC 9421) from "router", whose Ed25519 key it knows.
    let router_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    let httpsig = secure_app::HttpSig {
        config: HttpSigConfig::builder()
            .key_with_roles(
                "router-2026",
                HttpSigKey::public_key_pem("ed25519", router_key.public_key_pem().as_bytes())?,
                "router",
                ["developer"],
            )
            .scheme("http")
            .public_path("/health")
            .optional()
            .build()?,
        allowed_callers: vec!["gateway".into(), "heartbeat".into()],
    };
    let router_signer =
        HttpSigSigner::ed25519_pem("router-2026", router_key.serialize_pem().as_bytes())?;
    let app = secure_app::router(
        hmac.clone(),
        Some(jwt.clone()),
        None,
        Some(httpsig),
        access()?,
        MemoryNonceStore::default(),
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    // Every request, accepted or not, leaves one audit event (JSON).
    let trail = Captured::default();
    let audit = JsonLinesSink::new(trail.clone(), 1024, Overflow::Wait);
    let app = app.layer(AuditLayer::new(audit.clone()).peer_addr(secure_app::peer_ip));
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = Client::builder(TokioExecutor::new()).build_http::<Body>();
    let gateway = HmacSigner::new("gateway", &secret)?;
    let mut signed_client = ServiceBuilder::new()
        .layer(SignHmacLayer::new(gateway.clone()))
        .service(client.clone());

    println!(
        "tower-zerotrust demo: service \"vault\" on {base}\n  HMAC callers allowed on /execute: gateway, heartbeat; bearer tokens from \"{ISSUER}\" accepted on /whoami and /models\n  roles: admin, operator, developer, viewer; quota per principal: average 100/s, burst 50\n"
    );
    println!(
        "  {:<48} {:<18} {:>6}  outcome",
        "case", "request", "status"
    );
    let mut table = Table::default();

    // Through the client-side layer, as a service would call another.
    let response = signed_client
        .ready()
        .await?
        .call(request("POST", &base, "/execute"))
        .await?;
    let case = "signed call from gateway (SignHmacLayer)";
    table
        .row(case, "POST /execute", Expect::Accepted, response)
        .await;

    // Hand-made requests, good and bad, sent in this order.
    let heartbeat = HmacSigner::new("heartbeat", &secret)?;
    let impostor = HmacSigner::new("gateway", &random_secret())?;
    let external = HmacSigner::new("external", &secret)?;
    let captured = gateway.sign("POST", "/execute");
    let signed = |signer: &HmacSigner, method: &str, path: &str| {
        let mut req = request(method, &base, path);
        signer.sign_request(&mut req);
        req
    };
    let with = |headers: &SignedHeaders, method: &str, path: &str| {
        let mut req = request(method, &base, path);
        headers.apply_to(req.headers_mut());
        req
    };
    let stale = gateway.sign_at("POST", "/execute", now() - 300, "stale-1")?;
    let cases = [
        (
            "any signed caller may ask who it is",
            signed(&heartbeat, "GET", "/whoami"),
            Expect::Accepted,
        ),
        (
            "public health check, no signature",
            request("GET", &base, "/health"),
            Expect::Accepted,
        ),
        (
            "captured request, first use",
            with(&captured, "POST", "/execute"),
            Expect::Accepted,
        ),
        (
            "replayed request (same nonce)",
            with(&captured, "POST", "/execute"),
            Expect::Refused(401, "hmac.replayed"),
        ),
        (
            "tampered: signed for /status, sent to /execute",
            with(&gateway.sign("POST", "/status"), "POST", "/execute"),
            Expect::Refused(401, "hmac.invalid_signature"),
        ),
        (
            "impostor: right id, wrong secret",
            signed(&impostor, "POST", "/execute"),
            Expect::Refused(401, "hmac.invalid_signature"),
        ),
        (
            "stale: signed 5 minutes ago",
            with(&stale, "POST", "/execute"),
            Expect::Refused(401, "hmac.timestamp_expired"),
        ),
        (
            "unknown caller \"external\" (valid signature)",
            signed(&external, "POST", "/execute"),
            Expect::Refused(403, "hmac.caller_not_allowed"),
        ),
        (
            "unsigned request (HMAC or RFC 9421 needed)",
            request("POST", &base, "/execute"),
            Expect::Refused(401, "authz.unauthenticated"),
        ),
    ];
    for (case, req, expect) in cases {
        let label = format!("{} {}", req.method(), req.uri().path());
        table
            .row(case, &label, expect, client.request(req).await?)
            .await;
    }

    // Bearer tokens: minted and attached by the client-side layer...
    let issuer = TokenIssuer::hmac(Algorithm::HS256, &jwt_secret, ISSUER, AUDIENCE)?;
    let minted = MintedToken::new(issuer.clone(), "router_core", ["route_requests"]);
    let mut bearer_client = ServiceBuilder::new()
        .layer(AddBearerLayer::new(minted))
        .service(client.clone());
    let response = bearer_client
        .ready()
        .await?
        .call(request("GET", &base, "/whoami"))
        .await?;
    let case = "service token (TokenIssuer + AddBearerLayer)";
    table
        .row(case, "GET /whoami", Expect::Accepted, response)
        .await;

    // ...and bad ones, sent by hand.
    let expired = issuer
        .clone()
        .with_clock(HoursAgo(2))
        .mint("router_core", &["route_requests"])?;
    let token = issuer.mint("router_core", &["route_requests"])?;
    let tampered = tamper(&token);
    let foreign = TokenIssuer::hmac(Algorithm::HS256, &random_secret(), ISSUER, AUDIENCE)?
        .mint("router_core", &["route_requests"])?;
    let with_bearer = |method: &str, path: &str, token: &str| {
        let mut req = request(method, &base, path);
        let value = format!("Bearer {token}")
            .parse()
            .expect("a token is a header value");
        req.headers_mut().insert(http::header::AUTHORIZATION, value);
        req
    };
    let cases = [
        (
            "expired token (minted 2 hours ago)",
            with_bearer("GET", "/whoami", &expired),
            Expect::Refused(401, "jwt.expired"),
        ),
        (
            "tampered token (roles edited)",
            with_bearer("GET", "/whoami", &tampered),
            Expect::Refused(401, "jwt.invalid_signature"),
        ),
        (
            "token signed with another key",
            with_bearer("GET", "/whoami", &foreign),
            Expect::Refused(401, "jwt.invalid_signature"),
        ),
        (
            "valid token on a route for signed requests only",
            with_bearer("POST", "/execute", &token),
            Expect::Refused(401, "authz.unauthenticated"),
        ),
        (
            "no credentials at all",
            request("GET", &base, "/whoami"),
            Expect::Refused(401, "principal.missing"),
        ),
    ];
    for (case, req, expect) in cases {
        let label = format!("{} {}", req.method(), req.uri().path());
        table
            .row(case, &label, expect, client.request(req).await?)
            .await;
    }

    // HTTP message signatures (RFC 9421): a request with a body, signed by router's key, and
    // the same signature over a body changed on the way.
    let body: &'static [u8] = br#"{"name":"signed-model"}"#;
    let signed_post = |sent: &'static [u8]| -> Result<Request<Body>, tower_zerotrust::BoxError> {
        let uri: http::Uri = format!("{base}/models").parse()?;
        let mut req = Request::post(uri.clone())
            .header("content-type", "application/json")
            .body(Body::from(sent))?;
        router_signer.sign(&http::Method::POST, &uri, req.headers_mut(), body)?;
        Ok(req)
    };
    for (case, sent, expected) in [
        (
            "RFC 9421 signature (Ed25519, Content-Digest)",
            body,
            Expect::Accepted,
        ),
        (
            "RFC 9421 signature, body changed after signing",
            &br#"{"name":"tampered-model"}"#[..],
            Expect::Refused(401, "httpsig.digest_mismatch"),
        ),
    ] {
        let response = client.request(signed_post(sent)?).await?;
        table.row(case, "POST /models", expected, response).await;
    }

    // Authorization (the example roles) and rate limiting, with tokens carrying roles.
    let developer = issuer.mint("dana", &["developer"])?;
    let viewer = issuer.mint("victor", &["viewer"])?;
    let batch = issuer.mint("batch-job", &["viewer"])?;
    let with_json = |token: &str, body: &'static str| {
        let mut req = with_bearer("POST", "/models", token);
        *req.body_mut() = Body::from(body);
        req.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        req
    };
    let cases = [
        (
            "developer creates a model (models:write)",
            with_json(&developer, r#"{"name":"fraud-detector"}"#),
            Expect::Accepted,
        ),
        (
            "viewer lists models (models:read)",
            with_bearer("GET", "/models", &viewer),
            Expect::Accepted,
        ),
        (
            "viewer deletes a model (needs models:delete)",
            with_bearer("DELETE", "/models/1", &viewer),
            Expect::Refused(403, "authz.permission_denied"),
        ),
        (
            "HMAC caller with no role lists models",
            signed(&heartbeat, "GET", "/models"),
            Expect::Refused(403, "authz.permission_denied"),
        ),
        (
            "batch-job (quota: burst 3), call 1 of 4",
            with_bearer("GET", "/models", &batch),
            Expect::Accepted,
        ),
        (
            "batch-job, call 2 of 4",
            with_bearer("GET", "/models", &batch),
            Expect::Accepted,
        ),
        (
            "batch-job, call 3 of 4",
            with_bearer("GET", "/models", &batch),
            Expect::Accepted,
        ),
        (
            "batch-job, call 4 of 4 in the same second",
            with_bearer("GET", "/models", &batch),
            Expect::Refused(429, "rate_limit.exceeded"),
        ),
    ];
    for (case, req, expect) in cases {
        let label = format!("{} {}", req.method(), req.uri().path());
        table
            .row(case, &label, expect, client.request(req).await?)
            .await;
    }

    // Policy as code: the same routes, decided by a Rego policy instead of the roles; then the
    // role rules in shadow mode, recording what they would refuse.
    let rego = RegoPolicy::builder()
        .policy(
            r#"
            package zerotrust.authz
            default decision := {"allowed": false, "reason": "only developers and admins use the registry"}
            decision := {"allowed": true} if {
                some role in input.principal.roles
                role in {"developer", "admin"}
            }
            "#,
        )
        .query("data.zerotrust.authz.decision")
        .build()?;
    let mut decided_by_rego = access()?;
    decided_by_rego.engine = Some(rego.into());
    let mut shadowed = access()?;
    shadowed.enforcement = Enforcement::Shadow;
    let mut bases = Vec::new();
    for access in [decided_by_rego, shadowed] {
        let app = secure_app::router(
            hmac.clone(),
            Some(jwt.clone()),
            None,
            None,
            access,
            MemoryNonceStore::default(),
        )?
        .layer(AuditLayer::new(audit.clone()).peer_addr(secure_app::peer_ip))
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        bases.push(format!("http://{}", listener.local_addr()?));
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    let bearer_to = |base: &str, method: &str, path: &str, token: &str| {
        let mut req = request(method, base, path);
        let value = format!("Bearer {token}").parse().expect("a header value");
        req.headers_mut().insert(http::header::AUTHORIZATION, value);
        req
    };
    let cases = [
        (
            "Rego policy: developer lists models",
            bearer_to(&bases[0], "GET", "/models", &developer),
            Expect::Accepted,
        ),
        (
            "Rego policy: viewer lists models",
            bearer_to(&bases[0], "GET", "/models", &viewer),
            Expect::Refused(403, "authz.policy_denied"),
        ),
        (
            "shadow mode: viewer creates a model (no write)",
            {
                let mut req = bearer_to(&bases[1], "POST", "/models", &viewer);
                *req.body_mut() = Body::from(r#"{"name":"shadowed"}"#);
                req.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                req
            },
            Expect::Accepted,
        ),
    ];
    for (case, req, expect) in cases {
        let label = format!("{} {}", req.method(), req.uri().path());
        table
            .row(case, &label, expect, client.request(req).await?)
            .await;
    }

    // Mutual TLS: the same routes served over TLS, where a client certificate signed by the
    // service's CA is enough to be known.
    let ca = DemoCa::new("vault CA");
    let server = ca.issue("vault", true);
    let tls = TlsConfig::from_pem(server.0.as_bytes(), server.1.as_bytes(), ca.pem.as_bytes())?;
    let mtls_app = secure_app::router(
        hmac,
        Some(jwt),
        Some(MtlsPrincipalConfig::builder()),
        None,
        access()?,
        MemoryNonceStore::default(),
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let tls_port = listener.local_addr()?.port();
    tokio::spawn(serve_tls(
        listener,
        tls.server_config()?,
        mtls_app.layer(AuditLayer::new(audit.clone()).peer_addr(secure_app::peer_ip)),
        std::future::pending(),
    ));
    let agent = ca.issue("agent-7", false);
    let call = |leaf: &(String, String)| {
        let client = TlsConfig::from_pem(leaf.0.as_bytes(), leaf.1.as_bytes(), ca.pem.as_bytes());
        https_whoami(client, tls_port)
    };
    let case = "client certificate from the vault's CA (mTLS)";
    table
        .row(case, "GET /whoami", Expect::Accepted, call(&agent).await?)
        .await;
    let rogue = DemoCa::new("vault CA").issue("agent-7", false);
    let case = "same name, certificate from another CA";
    table.handshake_refused(case, "GET /whoami", call(&rogue).await.is_err());

    audit.flush().await;
    println!("\naudit trail (one event per request; the first in full, then one line each):");
    let events: Vec<serde_json::Value> = trail
        .text()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    if let Some(first) = trail.text().lines().next() {
        println!("  {first}");
    }
    for e in &events {
        let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
        let metadata = &e["metadata"];
        // Why a refusal was made (or, in shadow mode, would have been).
        let mut why = String::new();
        if let Some(code) = metadata["shadow_refusal"]["code"].as_str() {
            why.push_str(&format!(" (shadow mode: would refuse {code})"));
        }
        let explanation = &metadata["explanation"];
        if let Some(reason) = explanation["reason"].as_str() {
            why.push_str(&format!(" (policy: {reason})"));
        } else if let Some(required) = explanation["required"].as_str() {
            let roles = explanation["roles"].to_string();
            why.push_str(&format!(
                " ({} needs {required}; roles held {roles})",
                text(&explanation["rule"])
            ));
        }
        println!(
            "  {} {:<14} {:<7} {:<12} {:<6} {:<10} {}{why}",
            text(&e["timestamp"]),
            text(&e["event_type"]),
            text(&e["status"]),
            text(&e["principal"]),
            text(&e["action"]),
            text(&e["resource"]),
            text(&metadata["reason"]),
        );
    }

    println!("\nrejection log (what the service recorded for each refusal):");
    for line in log.text().lines() {
        println!("  {line}");
    }
    if table.failures > 0 {
        eprintln!(
            "\n{} outcome(s) differed from the expected one",
            table.failures
        );
        std::process::exit(1);
    }
    println!("\nall {} outcomes as expected", table.rows);
    Ok(())
}

/// The example roles; the default quota (average 100, burst 50) for everyone but the token
/// subject "batch-job" (`jwt:batch-job`: a token's subject, not a service of that name), which
/// may make 3 calls at once and 1 per second after that.
fn access() -> Result<secure_app::Access, tower_zerotrust::ConfigError> {
    Ok(secure_app::Access::new(
        Policy::example_roles().into(),
        RateLimitConfig::builder()
            .principal_quota("jwt:batch-job", RateQuota::new(1, 3))
            .peer_addr(secure_app::peer_ip)
            .build()?,
    ))
}

fn request(method: &str, base: &str, path: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .body(Body::default())
        .expect("a valid request")
}

/// What a case should get: a 200, or a refusal with this status and reason code.
#[derive(Clone, Copy)]
enum Expect {
    Accepted,
    Refused(u16, &'static str),
}

#[derive(Default)]
struct Table {
    rows: usize,
    failures: usize,
}

impl Table {
    async fn row(
        &mut self,
        case: &str,
        request: &str,
        expected: Expect,
        response: http::Response<hyper::body::Incoming>,
    ) {
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let code = json.get("code").and_then(|c| c.as_str());
        let outcome = match json.get("detail").and_then(|d| d.as_str()) {
            Some(reason) => format!("rejected: {reason}"),
            None => format!("accepted: {}", String::from_utf8_lossy(&body)),
        };
        let as_expected = match expected {
            Expect::Accepted => status.is_success(),
            Expect::Refused(want, want_code) => status.as_u16() == want && code == Some(want_code),
        };
        let mark = if as_expected { "ok" } else { "UNEXPECTED" };
        self.rows += 1;
        self.failures += usize::from(!as_expected);
        println!(
            "  {case:<48} {request:<18} {:>6}  {outcome} [{mark}]",
            status.as_u16()
        );
    }
}

impl Table {
    /// A row for a connection the TLS handshake refused: no HTTP status at all.
    fn handshake_refused(&mut self, case: &str, request: &str, refused: bool) {
        let mark = if refused { "ok" } else { "UNEXPECTED" };
        self.rows += 1;
        self.failures += usize::from(!refused);
        println!(
            "  {case:<48} {request:<18} {:>6}  refused at the TLS handshake [{mark}]",
            "-"
        );
    }
}

/// GET /whoami over HTTPS with a client certificate.
async fn https_whoami(
    client: Result<TlsConfig, tower_zerotrust::ConfigError>,
    port: u16,
) -> Result<http::Response<hyper::body::Incoming>, tower_zerotrust::BoxError> {
    let mut config = (*client?.client_config()?).clone();
    config.alpn_protocols.clear();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    let client = Client::builder(TokioExecutor::new()).build::<_, Body>(connector);
    let uri = format!("https://localhost:{port}/whoami").parse()?;
    Ok(client.get(uri).await?)
}

const ISSUER: &str = "intellirouter";
const AUDIENCE: &str = "intellirouter-services";

/// A clock set some hours back, to mint a token that has already expired.
struct HoursAgo(u64);

impl Clock for HoursAgo {
    fn now_millis(&self) -> u64 {
        SystemClock.now_millis() - self.0 * 3_600_000
    }
}

/// The token with its payload's roles edited and the signature left as it was.
fn tamper(token: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    let payload = String::from_utf8(b64.decode(parts[1]).expect("base64")).expect("utf-8");
    let forged = payload.replace("route_requests", "admin");
    format!("{}.{}.{}", parts[0], b64.encode(forged), parts[2])
}

/// A 256-bit secret as hex, as `openssl rand -hex 32` makes one.
fn random_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}
