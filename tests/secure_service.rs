//! Byte-for-byte compatibility with the services our users run today (the `X-Service-ID` / `X-Signature` scheme), and the
//! `secure_service` example's public contract, tested against the real example binary.

mod support;

use std::process::Command;

use http::StatusCode;
use serde_json::json;
use support::service::SecureService;
use support::*;
use tower_zerotrust::hmac::string_to_sign;
use tower_zerotrust::sign::HmacSigner;
#[cfg(all(feature = "rego", feature = "httpsig"))]
use {base64::Engine as _, tower_zerotrust::httpsig::HttpSigSigner};

#[test]
fn signatures_computed_by_pythons_hmac_module_are_reproduced_exactly() {
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/hmac-python.json")).unwrap();
    for case in vectors["cases"].as_array().unwrap() {
        let text = |k: &str| case[k].as_str().unwrap();
        let timestamp = case["timestamp"].as_u64().unwrap();
        assert_eq!(
            string_to_sign(
                text("service_id"),
                timestamp,
                text("nonce"),
                text("method"),
                text("path")
            ),
            text("message")
        );
        let signer = HmacSigner::new(text("service_id"), text("secret")).unwrap();
        let signed = signer
            .sign_at(text("method"), text("path"), timestamp, text("nonce"))
            .unwrap();
        assert_eq!(signed.signature(), text("signature"));
        assert_eq!(
            formula_signature(text("secret"), text("message")),
            text("signature")
        );
    }
}

fn vault() -> SecureService {
    SecureService::start(&[
        ("SERVICE_ID", "vault"),
        ("SERVICE_SECRET", SECRET),
        (
            "ALLOWED_CALLERS",
            " gateway , rag-service,memory-service,heartbeat ",
        ),
    ])
}

#[tokio::test]
async fn secure_service_keeps_its_contract() {
    let service = vault();
    let addr = service.addr;

    let reply = send(request("GET", addr, "/health")).await;
    assert_eq!(
        (reply.status, reply.json()),
        (StatusCode::OK, json!({"status": "healthy"}))
    );

    let reply = send(formula_request(SECRET, "gateway", "POST", addr, "/execute")).await;
    assert_eq!(
        (reply.status, reply.json()),
        (StatusCode::OK, json!({"caller": "gateway"}))
    );
    // ALLOWED_CALLERS entries are trimmed.
    let reply = send(formula_request(
        SECRET,
        "heartbeat",
        "POST",
        addr,
        "/execute",
    ))
    .await;
    assert_eq!(reply.status, StatusCode::OK);

    let reply = send(formula_request(
        SECRET, "external", "POST", addr, "/execute",
    ))
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.detail(), "Service not authorized");

    // /whoami: any authenticated caller, allowed list or not.
    let reply = send(formula_request(SECRET, "external", "GET", addr, "/whoami")).await;
    assert_eq!(
        (reply.status, reply.json()),
        (
            StatusCode::OK,
            json!({"id": "external", "method": "hmac", "roles": []})
        )
    );
    let reply = send(request("GET", addr, "/whoami")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.detail(), "Missing authentication headers");

    // A nonce spent on one route is spent on every route.
    let first = formula_request(SECRET, "gateway", "GET", addr, "/whoami");
    let mut again = request("GET", addr, "/whoami");
    *again.headers_mut() = first.headers().clone();
    assert_eq!(send(first).await.status, StatusCode::OK);
    assert_eq!(send(again).await.detail(), "Replayed request");
}

#[tokio::test]
async fn secure_service_accepts_the_previous_secret_while_rotating() {
    let service = SecureService::start(&[
        ("SERVICE_SECRET", OTHER_SECRET),
        ("SERVICE_SECRET_PREVIOUS", SECRET),
        ("ALLOWED_CALLERS", "gateway"),
    ]);
    for secret in [SECRET, OTHER_SECRET] {
        let reply = send(formula_request(
            secret,
            "gateway",
            "POST",
            service.addr,
            "/execute",
        ))
        .await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let stranger = "a-third-secret-that-nobody-configured-here";
    let reply = send(formula_request(
        stranger,
        "gateway",
        "POST",
        service.addr,
        "/execute",
    ))
    .await;
    assert_eq!(reply.detail(), "Invalid signature");
}

#[test]
fn secure_service_refuses_to_start_without_a_strong_secret() {
    let (code, stderr) = SecureService::run_to_exit(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("SERVICE_SECRET is not set"), "{stderr}");

    let (code, stderr) = SecureService::run_to_exit(&[("SERVICE_SECRET", "too-short-secret")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("SERVICE_SECRET must be at least 32 bytes"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("too-short-secret"),
        "the secret leaked: {stderr}"
    );
}

/// A client written the way Python services using the scheme sign: stdlib `hmac`, `urllib`.
const PYTHON_CLIENT: &str = r#"
import hashlib, hmac, json, secrets, sys, time, urllib.error, urllib.request

base, secret = sys.argv[1], sys.argv[2]

def headers(service_id, method, path, timestamp=None, nonce=None):
    timestamp = int(time.time()) if timestamp is None else timestamp
    nonce = secrets.token_hex(16) if nonce is None else nonce
    message = f"{service_id}:{timestamp}:{nonce}:{method}:{path}"
    signature = hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    return {"X-Service-ID": service_id, "X-Timestamp": str(timestamp),
            "X-Nonce": nonce, "X-Signature": f"sha256={signature}"}

def call(name, method, path, hdrs):
    data = json.dumps({"command": "noop"}).encode() if method == "POST" else None
    request = urllib.request.Request(base + path, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(request) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    print(name, status, json.dumps(json.loads(body), sort_keys=True))

call("execute", "POST", "/execute", headers("gateway", "POST", "/execute"))
replayed = headers("gateway", "POST", "/execute")
call("first", "POST", "/execute", replayed)
call("replay", "POST", "/execute", replayed)
call("stale", "POST", "/execute", headers("gateway", "POST", "/execute", timestamp=int(time.time()) - 31))
call("whoami", "GET", "/whoami", headers("memory-service", "GET", "/whoami"))
call("health", "GET", "/health", {})
"#;

#[test]
fn a_python_client_signing_by_the_scheme_talks_to_secure_service_unchanged() {
    if Command::new("python3").arg("--version").output().is_err() {
        missing_tool("python3", "apt-get install python3");
        return;
    }
    let service = vault();
    let output = Command::new("python3")
        .args([
            "-c",
            PYTHON_CLIENT,
            &format!("http://{}", service.addr),
            SECRET,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let replies: Vec<(&str, u16, serde_json::Value)> = stdout
        .lines()
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            let name = parts.next().unwrap();
            let status = parts.next().unwrap().parse().unwrap();
            (
                name,
                status,
                serde_json::from_str(parts.next().unwrap()).unwrap(),
            )
        })
        .collect();
    let problem = |detail: &str, code: &str| json!({"type": "about:blank", "title": "Unauthorized", "status": 401, "detail": detail, "code": code});
    assert_eq!(
        replies,
        [
            ("execute", 200, json!({"caller": "gateway"})),
            ("first", 200, json!({"caller": "gateway"})),
            ("replay", 401, problem("Replayed request", "hmac.replayed")),
            (
                "stale",
                401,
                problem("Request timestamp expired", "hmac.timestamp_expired")
            ),
            (
                "whoami",
                200,
                json!({"id": "memory-service", "method": "hmac", "roles": []})
            ),
            ("health", 200, json!({"status": "healthy"})),
        ]
    );
}

fn fixture_path(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

const JWT_SECRET: &str = "a-jwt-secret-for-tests-that-is-long-enough";

/// The HMAC secret and a token issuer (`aegis`, audience `aegis-api`) signing with
/// [`JWT_SECRET`].
const AEGIS_TOKENS: [(&str, &str); 4] = [
    ("SERVICE_SECRET", SECRET),
    ("JWT_SECRET", JWT_SECRET),
    ("JWT_ISSUER", "aegis"),
    ("JWT_AUDIENCE", "aegis-api"),
];

/// `secure_service` with HMAC and bearer tokens (HS256 secret plus a PEM public key).
fn vault_with_jwt(public_key: &str) -> SecureService {
    SecureService::start(&[
        ("SERVICE_SECRET", SECRET),
        ("ALLOWED_CALLERS", "gateway"),
        ("JWT_SECRET", JWT_SECRET),
        ("JWT_PUBLIC_KEY_FILE", &fixture_path(public_key)),
        ("JWT_ISSUER", "intellirouter"),
        ("JWT_AUDIENCE", "intellirouter-services"),
    ])
}

#[tokio::test]
async fn secure_service_accepts_hmac_or_jwt_on_whoami_and_only_hmac_on_execute() {
    use tower_zerotrust::jwt::Algorithm;
    use tower_zerotrust::sign::TokenIssuer;

    let service = vault_with_jwt("rsa-public.pem");
    let addr = service.addr;
    let issuer = TokenIssuer::hmac(
        Algorithm::HS256,
        JWT_SECRET,
        "intellirouter",
        "intellirouter-services",
    )
    .unwrap();
    let token = issuer.mint("router_core", &["route_requests"]).unwrap();
    let with_token = |method: &str, path: &str| {
        let mut req = request(method, addr, path);
        set(&mut req, "authorization", &format!("Bearer {token}"));
        req
    };
    let reply = send(with_token("GET", "/whoami")).await;
    assert_eq!(
        (reply.status, reply.json()),
        (
            StatusCode::OK,
            json!({"id": "router_core", "method": "jwt", "roles": ["route_requests"]})
        )
    );
    let reply = send(formula_request(SECRET, "gateway", "GET", addr, "/whoami")).await;
    assert_eq!(reply.json()["method"], "hmac");
    let reply = send(with_token("POST", "/execute")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.detail(), "Missing authentication headers");
    // Nobody proven: the 401 names every scheme the service accepts (RFC 9110 §11.6.1), so a
    // bearer client finds `Bearer` and a signing client finds the HMAC scheme.
    for path in ["/whoami", "/models"] {
        let reply = send(request("GET", addr, path)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            reply.headers["www-authenticate"], "Bearer, HMAC-SHA256",
            "{path}"
        );
    }
    let mut bad = request("GET", addr, "/whoami");
    set(&mut bad, "authorization", "Bearer not.a.token");
    assert_eq!(send(bad).await.code(), "jwt.malformed");
}

#[test]
fn secure_service_refuses_a_jwt_key_without_issuer_and_audience() {
    let (code, stderr) =
        SecureService::run_to_exit(&[("SERVICE_SECRET", SECRET), ("JWT_SECRET", JWT_SECRET)]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("JWT_ISSUER is not set"), "{stderr}");
    assert!(!stderr.contains(JWT_SECRET), "the secret leaked: {stderr}");
}

/// Tokens minted by PyJWT, the library Python services use, including its attacks.
const PYJWT_CLIENT: &str = r#"
import json, sys, time, urllib.error, urllib.request
import jwt

base, secret, rsa_key, ec_key = sys.argv[1], sys.argv[2], open(sys.argv[3]).read(), open(sys.argv[4]).read()
now = int(time.time())
claims = {"sub": "py-service", "iss": "intellirouter", "aud": "intellirouter-services",
          "iat": now, "exp": now + 300, "roles": ["models:read"]}

def call(name, base, token):
    request = urllib.request.Request(base + "/whoami", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request) as response:
            status, body = response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        status, body = error.code, json.loads(error.read())
    print(name, status, body.get("method") or body.get("code"))

call("hs256", base[0], jwt.encode(claims, secret, algorithm="HS256"))
call("rs256", base[0], jwt.encode(claims, rsa_key, algorithm="RS256"))
call("es256", base[1], jwt.encode(claims, ec_key, algorithm="ES256"))
call("none", base[0], jwt.encode(claims, None, algorithm="none"))
call("expired", base[0], jwt.encode({**claims, "exp": now - 3600}, secret, algorithm="HS256"))
call("wrong_aud", base[0], jwt.encode({**claims, "aud": "other"}, secret, algorithm="HS256"))
call("no_iss", base[0], jwt.encode({k: v for k, v in claims.items() if k != "iss"}, secret, algorithm="HS256"))
call("confused", base[0], jwt.encode(claims, secret, algorithm="HS512"))
"#;

#[test]
fn tokens_minted_by_pyjwt_are_accepted_and_its_attacks_refused() {
    let has_pyjwt = Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_pyjwt {
        missing_tool(
            "python3 with PyJWT and cryptography",
            "python3 -m pip install pyjwt cryptography",
        );
        return;
    }
    let rsa = vault_with_jwt("rsa-public.pem");
    let ec = vault_with_jwt("ec256-public.pem");
    let script = PYJWT_CLIENT.replace(
        "base, secret",
        "base = [sys.argv[1], sys.argv[5]]\n_, secret",
    );
    let output = Command::new("python3")
        .args([
            "-c",
            &script,
            &format!("http://{}", rsa.addr),
            JWT_SECRET,
            &fixture_path("rsa-private.pem"),
            &fixture_path("ec256-private.pem"),
            &format!("http://{}", ec.addr),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "hs256 200 jwt",
            "rs256 200 jwt",
            "es256 200 jwt",
            "none 401 jwt.malformed",
            "expired 401 jwt.expired",
            "wrong_aud 401 jwt.invalid_audience",
            "no_iss 401 jwt.missing_claim",
            "confused 401 jwt.algorithm_not_allowed",
        ]
    );
}

#[cfg(feature = "jwks")]
#[tokio::test]
async fn secure_service_takes_keys_from_a_jwks_url() {
    use jsonwebtoken::jwk::{Jwk, JwkSet};
    use jsonwebtoken::{DecodingKey, EncodingKey, Header};

    let public = std::fs::read(fixture_path("ec256-public.pem")).unwrap();
    let private = std::fs::read(fixture_path("ec256-private.pem")).unwrap();
    let mut jwk = Jwk::from_decoding_key(
        &DecodingKey::from_ec_pem(&public).unwrap(),
        Some(jsonwebtoken::Algorithm::ES256),
    )
    .unwrap();
    jwk.common.key_id = Some("idp-1".into());
    let key_set = JwkSet { keys: vec![jwk] };
    let idp = serve(axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let key_set = key_set.clone();
            async move { axum::Json(key_set) }
        }),
    ))
    .await;

    let service = SecureService::start(&[
        ("SERVICE_SECRET", SECRET),
        ("JWT_JWKS_URL", &format!("http://{idp}/jwks.json")),
        ("JWT_ISSUER", "https://idp.example"),
        ("JWT_AUDIENCE", "models-api"),
        ("JWT_ROLES_CLAIM", "realm_access.roles"),
    ]);
    let mut header = Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("idp-1".into());
    let claims = json!({
        "sub": "alice", "iss": "https://idp.example", "aud": ["models-api", "account"],
        "exp": now() + 300, "realm_access": {"roles": ["developer"]},
    });
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_ec_pem(&private).unwrap(),
    )
    .unwrap();
    let mut req = request("GET", service.addr, "/whoami");
    set(&mut req, "authorization", &format!("Bearer {token}"));
    let reply = send(req).await;
    assert_eq!(
        (reply.status, reply.json()),
        (
            StatusCode::OK,
            json!({"id": "alice", "method": "jwt", "roles": ["developer"]})
        )
    );
}

#[tokio::test]
async fn secure_service_serves_mtls_and_a_client_certificate_alone_proves_the_caller() {
    use support::certs::{Ca, https_get, tls_files};

    let ca = Ca::new("Parallax CA");
    let dir = std::env::temp_dir().join(format!("zerotrust-tls-{}", std::process::id()));
    let [cert, key, ca_file] = tls_files(&ca, &dir);
    let service = SecureService::start(&[
        ("SERVICE_SECRET", SECRET),
        (cert.0, &cert.1),
        (key.0, &key.1),
        (ca_file.0, &ca_file.1),
    ]);
    let agent = ca.issue("agent-7", vec![], true);
    let (status, body) = https_get(service.addr, &ca, &agent).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"id": "agent-7", "method": "mtls", "roles": []})
    );
    let rogue = Ca::new("Parallax CA");
    let impostor = rogue.issue("agent-7", vec![], true);
    assert!(https_get(service.addr, &ca, &impostor).await.is_err());
    std::fs::remove_dir_all(&dir).ok();
}

/// X.509 v1 client certificates (OpenSSL 3's `x509 -req` without `-extfile`): refused unless `TLS_ALLOW_V1_CLIENT_CERTS=true`, and then
/// only when signed by the CA itself and not revoked.
#[tokio::test]
async fn secure_service_accepts_v1_client_certificates_only_when_told_to() {
    use support::certs::{Ca, client_config_presenting, https_get, https_get_with};

    let ca = Ca::new("Server CA");
    let server = ca.server();
    let dir = std::env::temp_dir().join(format!("zerotrust-v1-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    };
    let (cert, key) = (
        write("server.pem", &server.cert),
        write("server.key", &server.key),
    );
    let (client_ca, crl) = (fixture_path("v1/ca.pem"), fixture_path("v1/crl.pem"));
    let fixture =
        |name: &str| std::fs::read_to_string(fixture_path(&format!("v1/{name}"))).unwrap();
    let present = |name: &str| {
        client_config_presenting(
            &fixture(&format!("{name}.pem")),
            &fixture(&format!("{name}.key")),
            &ca.pem,
        )
    };
    let env = vec![
        ("SERVICE_SECRET", SECRET),
        ("TLS_CERT_FILE", cert.as_str()),
        ("TLS_KEY_FILE", key.as_str()),
        ("TLS_CA_FILE", client_ca.as_str()),
        ("TLS_CRL_FILE", crl.as_str()),
    ];

    let strict = SecureService::start(&env);
    assert!(
        https_get_with(present("client"), strict.addr)
            .await
            .is_err()
    );
    drop(strict);

    let mut relaxed_env = env.clone();
    relaxed_env.push(("TLS_ALLOW_V1_CLIENT_CERTS", "true"));
    let relaxed = SecureService::start(&relaxed_env);
    let (status, body) = https_get_with(present("client"), relaxed.addr)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"id": "intellirouter-client", "method": "mtls", "roles": []})
    );
    // Revoked by the CRL; signed by another CA of the same name: refused, v1 or v3.
    assert!(
        https_get_with(present("revoked"), relaxed.addr)
            .await
            .is_err()
    );
    assert!(
        https_get_with(present("other-client"), relaxed.addr)
            .await
            .is_err()
    );
    let rogue = Ca::new("IntelliRouter CA");
    let v3_impostor = rogue.issue("intellirouter-client", vec![], true);
    assert!(https_get(relaxed.addr, &ca, &v3_impostor).await.is_err());
    std::fs::remove_dir_all(&dir).ok();
}

/// `SIGHUP` makes secure_service read its TLS files again: new handshakes use the new CA and
/// certificate, and the old ones stop working for new connections.
#[cfg(unix)]
#[tokio::test]
async fn secure_service_reloads_its_certificates_on_sighup() {
    use support::certs::{Ca, https_get};

    let dir = std::env::temp_dir().join(format!("zerotrust-hup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let paths = ["server.pem", "server.key", "ca.pem"].map(|f| dir.join(f).display().to_string());
    let install = |ca: &Ca| {
        let server = ca.server();
        // Write beside, then rename: a reload never sees half a file.
        for (path, pem) in paths.iter().zip([&server.cert, &server.key, &ca.pem]) {
            std::fs::write(format!("{path}.new"), pem).unwrap();
            std::fs::rename(format!("{path}.new"), path).unwrap();
        }
    };
    let old = Ca::new("Old CA");
    install(&old);
    let service = SecureService::start(&[
        ("SERVICE_SECRET", SECRET),
        ("TLS_CERT_FILE", &paths[0]),
        ("TLS_KEY_FILE", &paths[1]),
        ("TLS_CA_FILE", &paths[2]),
    ]);
    let old_agent = old.issue("agent-7", vec![], true);
    assert_eq!(
        https_get(service.addr, &old, &old_agent).await.unwrap().0,
        StatusCode::OK
    );

    let new = Ca::new("New CA");
    let new_agent = new.issue("agent-8", vec![], true);
    install(&new);
    assert!(
        https_get(service.addr, &new, &new_agent).await.is_err(),
        "nothing changes before the signal"
    );
    service.hang_up();
    service.wait_for_log("TLS material reloaded");
    assert_eq!(
        https_get(service.addr, &new, &new_agent).await.unwrap().0,
        StatusCode::OK
    );
    assert!(https_get(service.addr, &old, &old_agent).await.is_err());

    // A broken file keeps what is served: checked once the service says it refused it.
    std::fs::write(&paths[0], "not a certificate").unwrap();
    service.hang_up();
    service.wait_for_log("TLS reload failed; keeping the current material");
    assert_eq!(
        https_get(service.addr, &new, &new_agent).await.unwrap().0,
        StatusCode::OK
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `/models` with the example roles (built in), a `ROLES_FILE` of the operator's own, and
/// `RATE_LIMIT_AVERAGE` / `RATE_LIMIT_BURST`.
#[tokio::test]
async fn secure_service_authorizes_models_by_role_and_limits_each_principal() {
    use tower_zerotrust::jwt::Algorithm;
    use tower_zerotrust::sign::TokenIssuer;

    let issuer = TokenIssuer::hmac(Algorithm::HS256, JWT_SECRET, "aegis", "aegis-api").unwrap();
    let jwt_env = AEGIS_TOKENS;
    let as_role = |addr, method: &str, path: &str, role: &str| {
        let mut req = request(method, addr, path);
        let token = issuer.mint(&format!("user-{role}"), &[role]).unwrap();
        set(&mut req, "authorization", &format!("Bearer {token}"));
        if method == "POST" {
            *req.body_mut() = Body::from(r#"{"name":"fraud-detector"}"#);
            set(&mut req, "content-type", "application/json");
        }
        send(req)
    };

    let service = SecureService::start(&jwt_env);
    let addr = service.addr;
    let created = as_role(addr, "POST", "/models", "developer").await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(
        created.json(),
        json!({"id": "1", "name": "fraud-detector", "owner": "user-developer"})
    );
    let listed = as_role(addr, "GET", "/models", "viewer").await;
    assert_eq!(listed.json()["models"][0]["name"], "fraud-detector");
    for (role, method, path, expected) in [
        ("viewer", "POST", "/models", StatusCode::FORBIDDEN),
        ("operator", "DELETE", "/models/1", StatusCode::FORBIDDEN),
        ("developer", "DELETE", "/models/1", StatusCode::FORBIDDEN),
        ("admin", "DELETE", "/models/1", StatusCode::NO_CONTENT),
        ("admin", "DELETE", "/models/1", StatusCode::NOT_FOUND),
        // Model ids are names: any form that names no model is 404, not 400.
        (
            "admin",
            "DELETE",
            "/models/fraud-detector",
            StatusCode::NOT_FOUND,
        ),
        (
            "admin",
            "DELETE",
            "/models/%C3%A9t%C3%A9",
            StatusCode::NOT_FOUND,
        ),
    ] {
        let reply = as_role(addr, method, path, role).await;
        assert_eq!(reply.status, expected, "{role} {method} {path}");
    }
    assert_eq!(
        send(request("GET", addr, "/models")).await.status,
        StatusCode::UNAUTHORIZED
    );
    // An HMAC-signed service has no roles unless the roles file gives it some.
    let reply = send(formula_request(SECRET, "gateway", "GET", addr, "/models")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    drop(service);

    let roles = std::env::temp_dir().join(format!("zt-roles-{}.yaml", std::process::id()));
    std::fs::write(
        &roles,
        "roles:\n  auditor:\n    description: \"Reads everything\"\n    permissions: [\"models:read\"]\nprincipals:\n  gateway: [auditor]\n  \"jwt:alice\": [auditor]\n",
    )
    .unwrap();
    let roles_file = roles.display().to_string();
    let mut env = jwt_env.to_vec();
    env.extend([
        ("ROLES_FILE", roles_file.as_str()),
        ("RATE_LIMIT_AVERAGE", "1"),
        ("RATE_LIMIT_BURST", "2"),
    ]);
    let service = SecureService::start(&env);
    let addr = service.addr;
    // The example roles are replaced by the file's.
    assert_eq!(
        as_role(addr, "GET", "/models", "viewer").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        as_role(addr, "GET", "/models", "auditor").await.status,
        StatusCode::OK
    );
    // A bare key names the service `gateway`, never a token whose subject is `gateway`;
    // `jwt:alice` names alice's tokens.
    let token_for = |subject: &str| {
        let mut req = request("GET", addr, "/models");
        let token = issuer.mint::<&str>(subject, &[]).unwrap();
        set(&mut req, "authorization", &format!("Bearer {token}"));
        send(req)
    };
    assert_eq!(token_for("gateway").await.status, StatusCode::FORBIDDEN);
    assert_eq!(token_for("alice").await.status, StatusCode::OK);
    let gateway = || send(formula_request(SECRET, "gateway", "GET", addr, "/models"));
    // A burst of two, then refused: one request a second comes back, so however slowly this
    // machine sends them, a few more calls reach the limit.
    assert_eq!(gateway().await.status, StatusCode::OK);
    assert_eq!(gateway().await.status, StatusCode::OK);
    let mut limited = gateway().await;
    for _ in 0..10 {
        if limited.status != StatusCode::OK {
            break;
        }
        limited = gateway().await;
    }
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers.contains_key("retry-after"));
    // Another principal still has its own quota.
    assert_eq!(
        as_role(addr, "GET", "/models", "auditor").await.status,
        StatusCode::OK
    );
    // SIGHUP reads the roles file again.
    std::fs::write(
        &roles,
        "roles:\n  viewer:\n    permissions: [\"models:read\"]\n",
    )
    .unwrap();
    service.hang_up();
    service.wait_for_log("policy reloaded");
    assert_eq!(
        as_role(addr, "GET", "/models", "viewer").await.status,
        StatusCode::OK
    );
    drop(service);

    // A broken roles file stops the service at start-up, saying why.
    std::fs::write(
        &roles,
        "roles:\n  auditor:\n    permissions: [\"mod*ls\"]\n",
    )
    .unwrap();
    let mut env = jwt_env.to_vec();
    env.push(("ROLES_FILE", roles_file.as_str()));
    let (code, stderr) = SecureService::run_to_exit(&env);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("may only end in"), "{stderr}");
    std::fs::remove_file(&roles).ok();
}

/// `AUDIT_LOG`: one JSON event per request, and all of them on disk after `SIGTERM`.
#[tokio::test]
async fn secure_service_writes_its_audit_trail_and_flushes_it_on_sigterm() {
    let path = std::env::temp_dir().join(format!("zt-audit-svc-{}.jsonl", std::process::id()));
    std::fs::remove_file(&path).ok();
    let audit_log = path.display().to_string();
    let mut service = SecureService::start(&[
        ("SERVICE_SECRET", SECRET),
        ("ALLOWED_CALLERS", "gateway"),
        ("AUDIT_LOG", &audit_log),
    ]);
    let addr = service.addr;
    let mut ok = formula_request(SECRET, "gateway", "POST", addr, "/execute");
    set(&mut ok, "user-agent", "Python/3.11");
    assert_eq!(send(ok).await.status, StatusCode::OK);
    let refused = send(formula_request(
        SECRET, "external", "POST", addr, "/execute",
    ))
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        send(request("GET", addr, "/health")).await.status,
        StatusCode::OK
    );

    service.terminate();
    let text = std::fs::read_to_string(&path).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3, "{text}");
    let keys: Vec<&str> = events[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in support::AUDIT_FIELDS {
        assert!(keys.contains(&key), "{key} missing from {}", events[0]);
    }
    assert_eq!(events[0]["principal"], "gateway");
    assert_eq!(events[0]["source_ip"], "127.0.0.1");
    assert_eq!(events[0]["user_agent"], "Python/3.11");
    assert_eq!(events[1]["metadata"]["reason"], "hmac.caller_not_allowed");
    assert_eq!(events[2]["resource"], "/health");
    assert!(!text.contains(SECRET));
    std::fs::remove_file(&path).ok();
}

/// A token of `team` for `sub` (HS256, the service's issuer and audience), with no roles.
#[cfg(feature = "rego")]
fn team_token(sub: &str, team: &str) -> String {
    let claims = json!({
        "sub": sub, "iss": "aegis", "aud": "aegis-api", "team": team,
        "exp": now() + 300, "iat": now(),
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

#[cfg(feature = "rego")]
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("zt-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Services named in the data are trusted; the `ml` team may read; anything else is refused
/// with the policy's reason.
#[cfg(feature = "rego")]
const REGISTRY_REGO: &str = r#"
package zerotrust.authz

default decision := {"allowed": false, "reason": "no rule of the registry policy allows this"}

decision := {"allowed": true} if input.principal.id in data.services

decision := {"allowed": true} if {
	input.principal.claims.team == "ml"
	input.request.method == "GET"
}

decision := {"allowed": true} if {
	input.principal.method in {"httpsig", "mtls"}
	input.principal.id != "agent-8"
}
"#;

/// With `AUTHZ_REGO_FILE`, the policy decides `/models` and `/whoami` for every kind of
/// principal (HMAC services, token subjects by their claims, RFC 9421 signers; certificates in
/// the next test), `/health` stays public; a
/// refusal carries the policy's reason into the audit trail; `SIGHUP` reloads policy and data,
/// and a policy that does not compile leaves the one in force.
#[cfg(all(feature = "rego", feature = "httpsig"))]
#[tokio::test]
async fn secure_service_decides_by_a_rego_policy_and_reloads_it_on_sighup() {
    let dir = scratch("rego");
    let (policy, data, audit) = (
        dir.join("registry.rego"),
        dir.join("data.json"),
        dir.join("audit.jsonl"),
    );
    std::fs::write(&policy, REGISTRY_REGO).unwrap();
    std::fs::write(&data, r#"{"services": ["gateway"]}"#).unwrap();
    let keys = dir.join("keys.json");
    let signing_secret = b"an RFC 9421 secret of at least 32 bytes";
    std::fs::write(
        &keys,
        json!({"keys": [{
            "keyid": "signer-1", "alg": "hmac-sha256", "principal": "signer",
            "secret_base64": base64::engine::general_purpose::STANDARD.encode(signing_secret),
        }]})
        .to_string(),
    )
    .unwrap();
    let mut service = SecureService::start(
        &[
            AEGIS_TOKENS.as_slice(),
            &[
                ("AUTHZ_REGO_FILE", policy.to_str().unwrap()),
                ("AUTHZ_REGO_DATA_FILE", data.to_str().unwrap()),
                ("AUTHZ_REGO_QUERY", "data.zerotrust.authz.decision"),
                ("AUDIT_LOG", audit.to_str().unwrap()),
                ("HTTPSIG_KEYS_FILE", keys.to_str().unwrap()),
            ],
        ]
        .concat(),
    );
    let addr = service.addr;
    let hmac = |caller: &str, method: &str, path: &str| {
        send(formula_request(SECRET, caller, method, addr, path))
    };
    let bearer = |token: String, method: &str, path: &str| {
        let mut req = request(method, addr, path);
        set(&mut req, "authorization", &format!("Bearer {token}"));
        if method == "POST" {
            *req.body_mut() = Body::from(r#"{"name":"m"}"#);
            set(&mut req, "content-type", "application/json");
        }
        send(req)
    };
    // `gateway` holds no role: the role rules alone refuse it (403); the policy trusts it.
    assert_eq!(
        hmac("gateway", "GET", "/models").await.status,
        StatusCode::OK
    );
    assert_eq!(
        hmac("gateway", "GET", "/whoami").await.status,
        StatusCode::OK
    );
    let refused = hmac("batch", "GET", "/models").await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::FORBIDDEN, "authz.policy_denied".into())
    );
    let ml = || team_token("alice", "ml");
    assert_eq!(bearer(ml(), "GET", "/models").await.status, StatusCode::OK);
    assert_eq!(
        bearer(ml(), "POST", "/models").await.status,
        StatusCode::FORBIDDEN
    );
    let ops = bearer(team_token("bob", "ops"), "GET", "/whoami").await;
    assert_eq!(ops.status, StatusCode::FORBIDDEN);
    // A caller proven by an RFC 9421 signature.
    let signer = HttpSigSigner::hmac_sha256("signer-1", signing_secret).unwrap();
    let uri: http::Uri = format!("http://{addr}/whoami").parse().unwrap();
    let mut signed = request("GET", addr, "/whoami");
    signer
        .sign(&http::Method::GET, &uri, signed.headers_mut(), b"")
        .unwrap();
    let reply = send(signed).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["method"], "httpsig");
    // Nobody proven: 401, so that a client knows to prove itself.
    let anonymous = send(request("GET", addr, "/models")).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        send(request("GET", addr, "/health")).await.status,
        StatusCode::OK
    );

    // New data on SIGHUP: `batch` is trusted now, `gateway` no longer.
    std::fs::write(&data, r#"{"services": ["batch"]}"#).unwrap();
    service.hang_up();
    service.wait_for_log("Rego policy reloaded");
    assert_eq!(hmac("batch", "GET", "/models").await.status, StatusCode::OK);
    assert_eq!(
        hmac("gateway", "GET", "/models").await.status,
        StatusCode::FORBIDDEN
    );
    // A policy that does not compile: refused, and the one in force keeps deciding.
    std::fs::write(&policy, "package zerotrust.authz\ndecision := {").unwrap();
    service.hang_up();
    service.wait_for_log("Rego policy not reloaded");
    assert_eq!(hmac("batch", "GET", "/models").await.status, StatusCode::OK);
    assert_eq!(
        hmac("gateway", "GET", "/models").await.status,
        StatusCode::FORBIDDEN
    );

    service.terminate();
    let events = events_in(&audit);
    let batch = events
        .iter()
        .find(|e| e["principal"] == "batch")
        .expect("an event for batch");
    assert_eq!(batch["metadata"]["reason"], "authz.policy_denied");
    assert_eq!(
        batch["metadata"]["explanation"]["reason"],
        "no rule of the registry policy allows this"
    );
    assert_eq!(
        batch["metadata"]["explanation"]["required"],
        "policy engine"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The audit events written to `path` so far (waiting up to 10 s for the file to settle).
#[cfg(feature = "rego")]
fn events_in(path: &std::path::Path) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.ends_with('\n') || std::time::Instant::now() > deadline {
            return text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `AUTHZ_MODE=shadow` lets every request through and records each refusal enforcement would
/// have made; `AUTHZ_SHADOW_REGO_FILE` runs a candidate beside the role rules and records each
/// disagreement with both decisions.
#[cfg(feature = "rego")]
#[tokio::test]
async fn secure_service_shadows_refusals_and_compares_a_candidate_policy() {
    use tower_zerotrust::jwt::Algorithm;
    use tower_zerotrust::sign::TokenIssuer;

    let dir = scratch("shadow");
    let (candidate, audit) = (dir.join("candidate.rego"), dir.join("audit.jsonl"));
    // The candidate: only services may touch the models.
    std::fs::write(
        &candidate,
        "package zerotrust.authz\ndefault allow := false\nallow if input.principal.method == \"hmac\"\n",
    )
    .unwrap();
    let mut service = SecureService::start(
        &[
            AEGIS_TOKENS.as_slice(),
            &[
                ("AUTHZ_MODE", "shadow"),
                ("AUTHZ_SHADOW_REGO_FILE", candidate.to_str().unwrap()),
                ("RATE_LIMIT_AVERAGE", "1"),
                ("RATE_LIMIT_BURST", "1"),
                ("AUDIT_LOG", audit.to_str().unwrap()),
            ],
        ]
        .concat(),
    );
    let addr = service.addr;
    let issuer = TokenIssuer::hmac(Algorithm::HS256, JWT_SECRET, "aegis", "aegis-api").unwrap();
    let viewer = issuer.mint("vera", &["viewer"]).unwrap();
    let mut post = request("POST", addr, "/models");
    set(&mut post, "authorization", &format!("Bearer {viewer}"));
    set(&mut post, "content-type", "application/json");
    *post.body_mut() = Body::from(r#"{"name":"m"}"#);
    // A viewer may not write: enforcement would refuse; shadow mode lets it through.
    assert_eq!(send(post).await.status, StatusCode::CREATED);
    // `gateway` holds no role: refused by the rules (shadowed), allowed by the candidate. Its
    // quota is 1 a second: of three requests in a row, at least one is over it (shadowed too)
    // however slow this machine is, unless each took over a second.
    for _ in 0..3 {
        let reply = send(formula_request(SECRET, "gateway", "GET", addr, "/models")).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    service.terminate();
    let events = events_in(&audit);
    assert_eq!(events.len(), 4, "{events:?}");
    let vera = &events[0]["metadata"];
    assert_eq!(events[0]["status"], "success");
    assert_eq!(
        vera["shadow_refusal"],
        json!({"layer": "authz", "code": "authz.permission_denied"})
    );
    assert_eq!(vera["explanation"]["required"], "permission models:write");
    assert_eq!(vera["explanation"]["roles"], json!(["viewer"]));
    // The rules (would) refuse vera, and so does the candidate: they agree.
    assert!(vera.get("shadow_disagreement").is_none(), "{vera}");
    for event in &events[1..] {
        assert_eq!(
            event["metadata"]["shadow_disagreement"],
            json!({"layer": "authz", "enforced": "authz.permission_denied", "candidate": "allow"})
        );
    }
    assert_eq!(
        events[1]["metadata"]["shadow_refusal"]["code"],
        "authz.permission_denied"
    );
    // Over quota is the first refusal a later request meets.
    let over_quota = json!({"layer": "rate_limit", "code": "rate_limit.exceeded"});
    assert!(
        events[2..]
            .iter()
            .any(|event| event["metadata"]["shadow_refusal"] == over_quota),
        "{events:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A certificate principal decided by the Rego policy: `agent-7` allowed, `agent-8` refused.
#[cfg(feature = "rego")]
#[tokio::test]
async fn secure_service_decides_certificate_principals_by_rego() {
    use support::certs::{Ca, https_get, tls_files};

    let dir = scratch("rego-mtls");
    let policy = dir.join("registry.rego");
    std::fs::write(&policy, REGISTRY_REGO).unwrap();
    let ca = Ca::new("Parallax CA");
    let [cert, key, ca_file] = tls_files(&ca, &dir);
    let service = SecureService::start(&[
        ("SERVICE_SECRET", SECRET),
        (cert.0, &cert.1),
        (key.0, &key.1),
        (ca_file.0, &ca_file.1),
        ("AUTHZ_REGO_FILE", policy.to_str().unwrap()),
        ("AUTHZ_REGO_QUERY", "data.zerotrust.authz.decision"),
    ]);
    let allowed = ca.issue("agent-7", vec![], true);
    let (status, body) = https_get(service.addr, &ca, &allowed).await.unwrap();
    assert_eq!(
        (status, body["method"].clone()),
        (StatusCode::OK, json!("mtls"))
    );
    let refused = ca.issue("agent-8", vec![], true);
    let (status, body) = https_get(service.addr, &ca, &refused).await.unwrap();
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::FORBIDDEN, json!("authz.policy_denied"))
    );
    std::fs::remove_dir_all(&dir).ok();
}
