//! Mutual TLS over real TCP with certificates made in the test: who gets in, and what their
//! certificate says about them.

mod support;

use axum::Router;
use http::StatusCode;
use rcgen::SanType;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use support::certs::{
    Ca, Leaf, ServerFiles, assert_alert, https_get, https_get_with, no_certificate_config,
    pem_to_der, serve_https, serve_whoami, served_certificate, spiffe,
};
use support::eventually;
use tower_zerotrust::mtls::{
    IdentityRule, MtlsPrincipalConfig, PeerIdentity, TlsConfig, TlsConfigBuilder,
};

/// The server's TLS material: a `localhost` certificate from `ca`.
fn server_tls(ca: &Ca) -> TlsConfigBuilder {
    let server = ca.server();
    TlsConfig::builder_from_pem(
        server.cert.as_bytes(),
        server.key.as_bytes(),
        ca.pem.as_bytes(),
    )
}

async fn start(ca: &Ca, config: MtlsPrincipalConfig) -> SocketAddr {
    serve_whoami(
        server_tls(ca).build().unwrap().server_config().unwrap(),
        config,
    )
    .await
}

fn cn_config() -> MtlsPrincipalConfig {
    MtlsPrincipalConfig::builder().build().unwrap()
}

#[tokio::test]
async fn a_client_certificate_from_the_ca_is_the_principal() {
    let ca = Ca::new("Test CA");
    let addr = start(&ca, cn_config()).await;
    let client = ca.issue("model-registry", vec![], true);
    let (status, body) = https_get(addr, &ca, &client).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"id": "model-registry", "method": "mtls", "roles": []})
    );
}

#[tokio::test]
async fn certificates_from_another_ca_even_with_the_same_name_are_refused_at_the_handshake() {
    let ca = Ca::new("Test CA");
    let addr = start(&ca, cn_config()).await;
    let rogue = Ca::new("Test CA");
    let impostor = rogue.issue("model-registry", vec![], true);
    // The issuer's name matches, its key does not: the signature fails to verify.
    assert_alert(https_get(addr, &ca, &impostor).await, "DecryptError");
    let genuine = ca.issue("model-registry", vec![], true);
    assert_eq!(
        https_get(addr, &ca, &genuine).await.unwrap().0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_expired_client_certificate_is_refused() {
    let ca = Ca::new("Test CA");
    let addr = start(&ca, cn_config()).await;
    let expired = ca.issue_with("model-registry", vec![], true, |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    assert_alert(https_get(addr, &ca, &expired).await, "CertificateExpired");
    let current = ca.issue("model-registry", vec![], true);
    assert_eq!(
        https_get(addr, &ca, &current).await.unwrap().0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_revoked_client_certificate_is_refused_and_others_still_get_in() {
    let ca = Ca::new("Test CA");
    let tls = server_tls(&ca)
        .crl_pem(ca.crl(&[7, 9]).as_bytes())
        .build()
        .unwrap();
    let addr = serve_whoami(tls.server_config().unwrap(), cn_config()).await;
    let revoked = ca.issue_serial("model-registry", 9);
    assert_alert(https_get(addr, &ca, &revoked).await, "CertificateRevoked");
    let good = ca.issue_serial("model-registry", 8);
    assert_eq!(https_get(addr, &ca, &good).await.unwrap().0, StatusCode::OK);

    // With CRLs on, a CA that published none leaves its leaves' status unknown: refused.
    let second = Ca::new("Second CA");
    let server = ca.server();
    let both = TlsConfig::builder_from_pem(
        server.cert.as_bytes(),
        server.key.as_bytes(),
        format!("{}{}", ca.pem, second.pem).as_bytes(),
    )
    .crl_pem(ca.crl(&[]).as_bytes())
    .build()
    .unwrap();
    let addr = serve_whoami(both.server_config().unwrap(), cn_config()).await;
    let unknown = second.issue_serial("model-registry", 8);
    assert_alert(https_get(addr, &ca, &unknown).await, "UnknownCA");
    assert_eq!(https_get(addr, &ca, &good).await.unwrap().0, StatusCode::OK);

    let no_crl = server_tls(&ca).crl_pem(b"not a crl").build();
    assert!(
        no_crl
            .unwrap_err()
            .to_string()
            .contains("no certificate revocation list")
    );
}

#[tokio::test]
async fn the_client_refuses_a_server_whose_name_does_not_match() {
    let ca = Ca::new("Test CA");
    let server = ca.issue(
        "elsewhere",
        vec![SanType::DnsName("elsewhere.example".try_into().unwrap())],
        false,
    );
    let tls = TlsConfig::from_pem(
        server.cert.as_bytes(),
        server.key.as_bytes(),
        ca.pem.as_bytes(),
    )
    .unwrap()
    .server_config()
    .unwrap();
    let addr = serve_https(tls, Router::new().fallback(|| async { "hello" })).await;
    let client = ca.issue("model-registry", vec![], true);
    let error = https_get(addr, &ca, &client).await.unwrap_err();
    assert!(
        error.contains("NotValidForName") || error.contains("certificate"),
        "{error}"
    );
}

#[tokio::test]
async fn spiffe_ids_and_trust_domains() {
    let ca = Ca::new("Test CA");
    let config = MtlsPrincipalConfig::builder()
        .rule(IdentityRule::SpiffeId)
        .trust_domain("prod.example")
        .build()
        .unwrap();
    let addr = start(&ca, config).await;
    let good = ca.issue(
        "whatever",
        vec![spiffe("spiffe://prod.example/ns/models/sa/registry")],
        true,
    );
    let (status, body) = https_get(addr, &ca, &good).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], "spiffe://prod.example/ns/models/sa/registry");
    let other = ca.issue(
        "whatever",
        vec![spiffe("spiffe://staging.example/ns/models/sa/registry")],
        true,
    );
    let (status, body) = https_get(addr, &ca, &other).await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], "mtls.trust_domain");
    let none = ca.issue("no-spiffe", vec![], true);
    let (status, body) = https_get(addr, &ca, &none).await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

#[test]
fn peer_identity_reads_every_name() {
    let ca = Ca::new("Test CA");
    let leaf = ca.issue(
        "model-registry",
        vec![
            SanType::DnsName("registry.internal".try_into().unwrap()),
            SanType::DnsName("registry".try_into().unwrap()),
            SanType::IpAddress("10.1.2.3".parse().unwrap()),
            spiffe("spiffe://prod.example/registry"),
        ],
        true,
    );
    let der = pem_to_der(&leaf.cert);
    let id = PeerIdentity::from_der(&der).unwrap();
    assert_eq!(id.common_name(), Some("model-registry"));
    assert_eq!(id.dns_names(), ["registry.internal", "registry"]);
    assert_eq!(
        id.ip_addresses(),
        ["10.1.2.3".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(id.spiffe_id(), Some("spiffe://prod.example/registry"));
    assert_eq!(id.spiffe_trust_domain(), Some("prod.example"));
    assert!(id.not_after() > 1_700_000_000);
    assert!(!id.serial().is_empty());
    use sha2::Digest;
    assert_eq!(id.fingerprint_sha256()[..], sha2::Sha256::digest(&der)[..]);
    assert!(PeerIdentity::from_der(b"not a certificate").is_err());
}

#[test]
fn tls_config_errors_are_clear() {
    let ca = Ca::new("Test CA");
    let leaf = ca.server();
    let no_certificate = TlsConfig::from_pem(b"", leaf.key.as_bytes(), ca.pem.as_bytes())
        .unwrap_err()
        .to_string();
    let no_key = TlsConfig::from_pem(leaf.cert.as_bytes(), b"", ca.pem.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(
        no_certificate.contains("no certificate found"),
        "{no_certificate}"
    );
    assert!(no_key.contains("no usable private key"), "{no_key}");
    // A leaf is not a CA.
    let err = TlsConfig::from_pem(
        leaf.cert.as_bytes(),
        leaf.key.as_bytes(),
        leaf.cert.as_bytes(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not a CA"), "{err}");
    // A key that does not match the certificate: refused when the configuration is built,
    // not at the first handshake.
    let other = ca.server();
    let mismatched = TlsConfig::from_pem(
        leaf.cert.as_bytes(),
        other.key.as_bytes(),
        ca.pem.as_bytes(),
    )
    .unwrap_err();
    assert!(
        mismatched.to_string().contains("KeyMismatch"),
        "{mismatched}"
    );
    let missing = TlsConfig::new(
        "/nonexistent/cert.pem",
        "/nonexistent/key.pem",
        "/nonexistent/ca.pem",
    )
    .unwrap_err();
    assert!(
        missing.to_string().contains("/nonexistent/cert.pem"),
        "{missing}"
    );
}

/// The server's TLS configuration with client certificates optional: the layers decide.
fn optional_certificates(ca: &Ca) -> std::sync::Arc<rustls::ServerConfig> {
    server_tls(ca)
        .client_certificates_optional()
        .build()
        .unwrap()
        .server_config()
        .unwrap()
}

/// GET /whoami over HTTPS without a client certificate.
async fn get_without_certificate(addr: SocketAddr, ca: &Ca) -> Result<StatusCode, String> {
    https_get_with(no_certificate_config(ca), addr)
        .await
        .map(|(status, _)| status)
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused_at_the_handshake() {
    let ca = Ca::new("Test CA");
    let addr = start(&ca, cn_config()).await;
    assert_alert(
        get_without_certificate(addr, &ca).await,
        "CertificateRequired",
    );
    let client = ca.issue("model-registry", vec![], true);
    assert_eq!(
        https_get(addr, &ca, &client).await.unwrap().0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn with_optional_client_certificates_the_layer_decides() {
    let ca = Ca::new("Test CA");
    let addr = serve_whoami(optional_certificates(&ca), cn_config()).await;
    // No certificate: the handshake succeeds, the layer answers 401.
    assert_eq!(
        get_without_certificate(addr, &ca).await.unwrap(),
        StatusCode::UNAUTHORIZED
    );
    // A certificate from another CA is still refused at the handshake.
    let rogue = Ca::new("Test CA").issue("model-registry", vec![], true);
    assert_alert(https_get(addr, &ca, &rogue).await, "DecryptError");
}

/// The serial of the certificate the server presents to a new connection.
async fn served_serial(addr: SocketAddr, ca: &Ca, client: &Leaf) -> String {
    served_certificate(addr, ca, client)
        .await
        .serial()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_under_load_without_a_single_failed_request() {
    use tower_zerotrust::mtls::ReloadingServerConfig;

    let ca = Ca::new("Test CA");
    let files = ServerFiles::new("rotate", &ca, &ca.server());
    let tls = ReloadingServerConfig::new(files.builder()).unwrap();
    assert!(tls.time_to_expiry().unwrap() > std::time::Duration::from_secs(86_400));

    let addr = serve_whoami(tls.clone(), cn_config()).await;
    let client = ca.issue("model-registry", vec![], true);
    let before = served_serial(addr, &ca, &client).await;

    // Continuous load from four clients, each request on a new connection (a new handshake),
    // until told to stop.
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (ca, client) = (Ca::from_pem_only(ca.pem.clone()), client.clone());
            let (served, failed, stop) = (served.clone(), failed.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    match https_get(addr, &ca, &client).await {
                        Ok((StatusCode::OK, _)) => served.fetch_add(1, Ordering::SeqCst),
                        _ => failed.fetch_add(1, Ordering::SeqCst),
                    };
                }
            })
        })
        .collect();
    // Each step happens while requests keep coming: 50 more are served between steps.
    let fifty_more = || {
        let target = served.load(Ordering::SeqCst) + 50;
        let served = served.clone();
        async move {
            eventually("50 more requests served", || {
                std::future::ready(served.load(Ordering::SeqCst) >= target)
            })
            .await
        }
    };
    fifty_more().await;
    files.install(&ca.server());
    tls.reload().unwrap();
    fifty_more().await;
    // A broken file is refused and changes nothing.
    std::fs::write(
        &files.cert,
        "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    assert!(tls.reload().is_err());
    fifty_more().await;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "requests failed during rotation"
    );
    let after = served_serial(addr, &ca, &client).await;
    assert_ne!(before, after, "new handshakes use the new certificate");
}

/// RFC 8705: a token bound to one certificate is refused on a connection that presents another
/// one, or none.
#[cfg(feature = "jwt")]
#[tokio::test]
async fn a_certificate_bound_token_works_only_with_its_certificate() {
    use support::certs::https_get_with_headers;
    use tower_zerotrust::jwt::{Algorithm, JwtConfig, JwtKey, RequireJwtLayer};
    use tower_zerotrust::sign::TokenIssuer;

    const SECRET: &str = "a-jwt-secret-of-at-least-32-bytes!!";
    let ca = Ca::new("Test CA");
    let jwt = JwtConfig::builder()
        .key(JwtKey::hmac(Algorithm::HS256, SECRET).unwrap())
        .issuer("intellirouter")
        .audience("intellirouter-services")
        .build()
        .unwrap();
    let app = Router::new()
        .fallback(|p: tower_zerotrust::Principal| async move {
            axum::Json(json!({"id": p.id(), "method": p.method().as_str()}))
        })
        .layer(RequireJwtLayer::new(jwt));
    let addr = serve_https(optional_certificates(&ca), app).await;

    let issuer = TokenIssuer::hmac(
        Algorithm::HS256,
        SECRET,
        "intellirouter",
        "intellirouter-services",
    )
    .unwrap();
    let holder = ca.issue("router-core", vec![], true);
    let thief = ca.issue("router-core", vec![], true);
    let bound = issuer
        .clone()
        .bound_to_certificate(&pem_to_der(&holder.cert))
        .mint("router-core", &["route_requests"])
        .unwrap();
    let bearer = format!("Bearer {bound}");
    let call = |leaf: Option<&Leaf>, bearer: String| {
        let config = match leaf {
            Some(leaf) => {
                (*TlsConfig::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes(), ca.pem.as_bytes())
                    .unwrap()
                    .client_config()
                    .unwrap())
                .clone()
            }
            None => no_certificate_config(&ca),
        };
        async move { https_get_with_headers(config, addr, &[("authorization", &bearer)]).await }
    };

    let (status, body) = call(Some(&holder), bearer.clone()).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"id": "router-core", "method": "jwt"}));
    for leaf in [Some(&thief), None] {
        let (status, body) = call(leaf, bearer.clone()).await.unwrap();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["code"], "jwt.certificate_mismatch");
    }
    // An unbound token still works from any connection.
    let unbound = format!("Bearer {}", issuer.mint("router-core", &["r"]).unwrap());
    assert_eq!(call(Some(&thief), unbound).await.unwrap().0, StatusCode::OK);
}

/// Under the v1 relaxation, a v1 client certificate with bytes after its DER would be the
/// same certificate under another fingerprint: it is refused, while the certificate as issued
/// gets in.
#[tokio::test]
async fn a_v1_client_certificate_with_trailing_bytes_is_refused() {
    use base64::Engine;
    use support::certs::client_config_presenting;

    let fixture = |name: &str| {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/v1/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let ca = Ca::new("Server CA");
    let server = ca.server();
    let tls = TlsConfig::builder_from_pem(
        server.cert.as_bytes(),
        server.key.as_bytes(),
        fixture("ca.pem").as_bytes(),
    )
    .allow_v1_client_certificates()
    .build()
    .unwrap();
    let addr = serve_whoami(tls.server_config().unwrap(), cn_config()).await;
    let (cert, key) = (fixture("client.pem"), fixture("client.key"));
    let (status, body) = https_get_with(client_config_presenting(&cert, &key, &ca.pem), addr)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], "intellirouter-client");

    let mut der = pem_to_der(&cert);
    der.extend_from_slice(&[0, 0]);
    let padded = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        base64::engine::general_purpose::STANDARD.encode(&der)
    );
    let refused = https_get_with(client_config_presenting(&padded, &key, &ca.pem), addr).await;
    assert_alert(refused, "BadCertificate");
}

#[test]
fn peer_identity_refuses_bytes_after_the_certificate() {
    let ca = Ca::new("Test CA");
    let mut der = pem_to_der(&ca.issue("svc", vec![], true).cert);
    assert!(PeerIdentity::from_der(&der).is_ok());
    der.push(0);
    assert!(PeerIdentity::from_der(&der).is_err());
}

/// A CRL past its `nextUpdate` vouches for nobody: the certificates it covers are refused until
/// a fresh one is loaded, unless the relaxation is named.
#[tokio::test]
async fn an_outdated_revocation_list_is_not_trusted() {
    let ca = Ca::new("Test CA");
    let good = ca.issue_serial("model-registry", 8);
    let outdated = ca.crl_until(&[9], 2025);
    let strict = server_tls(&ca)
        .crl_pem(outdated.as_bytes())
        .build()
        .unwrap();
    let addr = serve_whoami(strict.server_config().unwrap(), cn_config()).await;
    // Refused at the handshake (the client only sees the alert).
    assert_alert(https_get(addr, &ca, &good).await, "UnknownCA");

    let relaxed = server_tls(&ca)
        .crl_pem(outdated.as_bytes())
        .allow_expired_revocation_lists()
        .build()
        .unwrap();
    let addr = serve_whoami(relaxed.server_config().unwrap(), cn_config()).await;
    assert_eq!(https_get(addr, &ca, &good).await.unwrap().0, StatusCode::OK);
    let revoked = ca.issue_serial("model-registry", 9);
    assert_alert(https_get(addr, &ca, &revoked).await, "CertificateRevoked");

    // A fresh list: accepted without any relaxation.
    let fresh = server_tls(&ca)
        .crl_pem(ca.crl(&[9]).as_bytes())
        .build()
        .unwrap();
    let addr = serve_whoami(fresh.server_config().unwrap(), cn_config()).await;
    assert_eq!(https_get(addr, &ca, &good).await.unwrap().0, StatusCode::OK);
}

/// With revocation lists from one CA only, the other CA's clients have no known status: refused
/// by default, accepted under the named relaxation.
#[tokio::test]
async fn unknown_revocation_status_is_refused_unless_allowed() {
    let (ca, second) = (Ca::new("Test CA"), Ca::new("Second CA"));
    let server = ca.server();
    let config = || {
        TlsConfig::builder_from_pem(
            server.cert.as_bytes(),
            server.key.as_bytes(),
            format!("{}{}", ca.pem, second.pem).as_bytes(),
        )
        .crl_pem(ca.crl(&[]).as_bytes())
    };
    let unknown = second.issue_serial("model-registry", 8);
    let addr = serve_whoami(
        config().build().unwrap().server_config().unwrap(),
        cn_config(),
    )
    .await;
    assert_alert(https_get(addr, &ca, &unknown).await, "UnknownCA");
    let relaxed = config().allow_unknown_revocation_status().build().unwrap();
    let addr = serve_whoami(relaxed.server_config().unwrap(), cn_config()).await;
    assert_eq!(
        https_get(addr, &ca, &unknown).await.unwrap().0,
        StatusCode::OK
    );
}

/// With client certificates optional and a bearer layer beside the certificate layer, a request
/// with neither gets a 401 naming both schemes.
#[tokio::test]
async fn a_401_names_every_scheme_the_service_accepts() {
    use tower::ServiceBuilder;
    use tower_zerotrust::jwt::{Algorithm, JwtConfig, JwtKey, RequireJwtLayer};
    use tower_zerotrust::mtls::MtlsPrincipalLayer;

    let ca = Ca::new("Test CA");
    let jwt = JwtConfig::builder()
        .key(JwtKey::hmac(Algorithm::HS256, "a-jwt-secret-of-at-least-32-bytes!!").unwrap())
        .issuer("idp")
        .audience("api")
        .optional()
        .build()
        .unwrap();
    let app = Router::new()
        .fallback(|p: tower_zerotrust::Principal| async move { p.id().to_owned() })
        .layer(
            ServiceBuilder::new()
                .layer(MtlsPrincipalLayer::new(
                    MtlsPrincipalConfig::builder().optional().build().unwrap(),
                ))
                .layer(RequireJwtLayer::new(jwt)),
        );
    let addr = serve_https(optional_certificates(&ca), app).await;
    let (status, headers, _) = support::certs::https_whoami(no_certificate_config(&ca), addr, &[])
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer, Mutual-TLS");
}

/// A certificate may not name itself into the token subjects' namespace (`jwt:<sub>`), where it
/// would take a token subject's roles, quotas and allowed-caller entries.
#[tokio::test]
async fn a_certificate_named_like_a_token_subject_is_no_identity() {
    let ca = Ca::new("Test CA");
    let addr = start(&ca, cn_config()).await;
    let (status, body) = https_get(addr, &ca, &ca.issue("jwt:alice", vec![], true))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "mtls.no_identity");
    let (status, _) = https_get(addr, &ca, &ca.issue("alice", vec![], true))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
}

/// Roles are given to certificate identities where every principal's are: by the authorization
/// policy, keyed by the identity the certificate proves.
#[tokio::test]
async fn certificate_identities_get_their_roles_from_the_policy() {
    use http::Method;
    use tower::ServiceBuilder;
    use tower_zerotrust::authz::{AuthorizeConfig, AuthorizeLayer, Policy, Require};
    use tower_zerotrust::mtls::MtlsPrincipalLayer;

    let ca = Ca::new("Test CA");
    let policy = Policy::builder()
        .role("reader", ["models:read"])
        .assign("model-registry", ["reader"])
        .build()
        .unwrap();
    let rules = AuthorizeConfig::builder(policy)
        .route(Method::GET, "/whoami", Require::permission("models:read"))
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/whoami",
            axum::routing::get(|p: tower_zerotrust::Principal| async move {
                axum::Json(json!({"id": p.id()}))
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(MtlsPrincipalLayer::new(cn_config()))
                .layer(AuthorizeLayer::new(rules)),
        );
    let tls = server_tls(&ca).build().unwrap().server_config().unwrap();
    let addr = serve_https(tls, app).await;

    let assigned = ca.issue("model-registry", vec![], true);
    let (status, body) = https_get(addr, &ca, &assigned).await.unwrap();
    assert_eq!(
        (status, &body["id"]),
        (StatusCode::OK, &json!("model-registry"))
    );
    let unassigned = ca.issue("batch-job", vec![], true);
    let (status, body) = https_get(addr, &ca, &unassigned).await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], "authz.permission_denied");
}

/// `IdentityRule::FirstDnsName`: the principal is the certificate's first DNS SAN (not its CN,
/// not its URI SAN). A certificate with only a DNS SAN (no subject CN) is a principal under
/// this rule and none under the CN rule; one without a DNS SAN is the reverse.
#[tokio::test]
async fn the_dns_san_rule_takes_the_first_dns_name_and_refuses_certificates_without_one() {
    let ca = Ca::new("Test CA");
    let by_dns = start(
        &ca,
        MtlsPrincipalConfig::builder()
            .rule(IdentityRule::FirstDnsName)
            .build()
            .unwrap(),
    )
    .await;
    let by_cn = start(&ca, cn_config()).await;
    let dns = |name: &str| SanType::DnsName(name.try_into().unwrap());

    let named = ca.issue(
        "registry-cn",
        vec![
            spiffe("spiffe://prod.example/registry"),
            dns("registry.internal"),
            dns("registry"),
        ],
        true,
    );
    let (status, body) = https_get(by_dns, &ca, &named).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"id": "registry.internal", "method": "mtls", "roles": []})
    );

    let only_dns = ca.issue_with("unused", vec![dns("batch.internal")], true, |params| {
        params.distinguished_name = rcgen::DistinguishedName::new();
    });
    assert_eq!(
        PeerIdentity::from_der(&pem_to_der(&only_dns.cert))
            .unwrap()
            .common_name(),
        None,
        "the certificate has no subject CN"
    );
    let (status, body) = https_get(by_dns, &ca, &only_dns).await.unwrap();
    assert_eq!(
        (status, &body["id"]),
        (StatusCode::OK, &json!("batch.internal"))
    );
    let (status, body) = https_get(by_cn, &ca, &only_dns).await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "mtls.no_identity");

    let cn_only = ca.issue("model-registry", vec![], true);
    let (status, body) = https_get(by_dns, &ca, &cn_only).await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "mtls.no_identity");
    let (status, body) = https_get(by_cn, &ca, &cn_only).await.unwrap();
    assert_eq!(
        (status, &body["id"]),
        (StatusCode::OK, &json!("model-registry"))
    );
}

/// `ReloadingServerConfig::reload_every`: certificate files replaced on disk reach new
/// handshakes by the timer alone (nobody calls `reload`), and a broken file read by a timed
/// reload changes nothing.
#[tokio::test]
async fn a_timed_reload_serves_the_new_certificate_and_ignores_a_broken_file() {
    use std::time::Duration;
    use tower_zerotrust::mtls::ReloadingServerConfig;

    let ca = Ca::new("Test CA");
    let first = ca.server();
    let files = Arc::new(ServerFiles::new("timed-reload", &ca, &first));
    // The files as `ReloadingServerConfig::new` reads them, counting the loads that finished.
    let loads = Arc::new(AtomicUsize::new(0));
    let tls = {
        let (files, loads) = (files.clone(), loads.clone());
        ReloadingServerConfig::from_loader(move || {
            let built = files.builder().build();
            loads.fetch_add(1, Ordering::SeqCst);
            built
        })
        .unwrap()
    };
    let addr = serve_whoami(tls.clone(), cn_config()).await;
    let client = ca.issue("model-registry", vec![], true);
    let serial = |leaf: &Leaf| {
        PeerIdentity::from_der(&pem_to_der(&leaf.cert))
            .unwrap()
            .serial()
            .to_owned()
    };
    assert_eq!(served_serial(addr, &ca, &client).await, serial(&first));

    let reloader = tls.reload_every(Duration::from_millis(50));
    let second = ca.server();
    files.install(&second);
    eventually("the new certificate served", || async {
        served_serial(addr, &ca, &client).await == serial(&second)
    })
    .await;

    std::fs::write(
        &files.cert,
        "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    // Two more loads: the second of them started after the first ended, so after the write.
    let seen = loads.load(Ordering::SeqCst);
    eventually("two timed reloads", || async {
        loads.load(Ordering::SeqCst) >= seen + 2
    })
    .await;
    assert_eq!(
        served_serial(addr, &ca, &client).await,
        serial(&second),
        "a broken file changes nothing"
    );
    assert!(tls.reload().is_err(), "the file on disk is the broken one");
    let (status, body) = https_get(addr, &ca, &client).await.unwrap();
    assert_eq!(
        (status, &body["id"]),
        (StatusCode::OK, &json!("model-registry"))
    );
    reloader.abort();
}

/// HTTP/2 over mutual TLS: `serve_tls` offers `h2` by ALPN, and a real HTTP/2 client presenting
/// a certificate gets its principal over HTTP/2; without a certificate (the server leaves the
/// decision to the layer) it gets the layer's 401 over HTTP/2; a client that offers only
/// HTTP/1.1 is still served.
#[tokio::test]
async fn http2_clients_are_served_over_mtls_by_alpn_and_http1_clients_still_are() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tower_zerotrust::Principal;
    use tower_zerotrust::mtls::MtlsPrincipalLayer;

    /// One request on a new connection: the protocol ALPN chose, and the answer.
    async fn whoami(
        config: rustls::ClientConfig,
        addr: SocketAddr,
    ) -> (
        Option<Vec<u8>>,
        StatusCode,
        http::Version,
        serde_json::Value,
    ) {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let io = TokioIo::new(tls);
        let uri = format!("https://localhost:{}/whoami", addr.port());
        let response = if alpn.as_deref() == Some(b"h2") {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(connection);
            let request = http::Request::get(uri)
                .body(Full::<Bytes>::default())
                .unwrap();
            sender.send_request(request).await.unwrap()
        } else {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(connection);
            let request = http::Request::get("/whoami")
                .header("host", format!("localhost:{}", addr.port()))
                .body(Full::<Bytes>::default())
                .unwrap();
            sender.send_request(request).await.unwrap()
        };
        let (status, version) = (response.status(), response.version());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            alpn,
            status,
            version,
            serde_json::from_slice(&body).unwrap_or_default(),
        )
    }

    let ca = Ca::new("Test CA");
    let app = Router::new()
        .fallback(|version: http::Version, p: Principal| async move {
            axum::Json(json!({"id": p.id(), "version": format!("{version:?}")}))
        })
        .layer(MtlsPrincipalLayer::new(cn_config()));
    let addr = serve_https(optional_certificates(&ca), app).await;
    let client = ca.issue("model-registry", vec![], true);

    // Offering h2 and http/1.1, as the crate's client configuration does: h2.
    let both = (*client.client_config(&ca)).clone();
    assert_eq!(both.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    let (alpn, status, version, body) = whoami(both, addr).await;
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!((status, version), (StatusCode::OK, http::Version::HTTP_2));
    assert_eq!(body, json!({"id": "model-registry", "version": "HTTP/2.0"}));

    // HTTP/2 without a certificate: the layer's refusal, over HTTP/2.
    let mut anonymous = no_certificate_config(&ca);
    anonymous.alpn_protocols = vec![b"h2".to_vec()];
    let (alpn, status, version, body) = whoami(anonymous, addr).await;
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(
        (status, version),
        (StatusCode::UNAUTHORIZED, http::Version::HTTP_2)
    );
    assert_eq!(body["code"], "mtls.missing_certificate");

    // Offering only HTTP/1.1: HTTP/1.1, same principal.
    let mut http1 = (*client.client_config(&ca)).clone();
    http1.alpn_protocols = vec![b"http/1.1".to_vec()];
    let (alpn, status, version, body) = whoami(http1, addr).await;
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!((status, version), (StatusCode::OK, http::Version::HTTP_11));
    assert_eq!(body, json!({"id": "model-registry", "version": "HTTP/1.1"}));
}
