//! gRPC end to end: a tonic model registry behind every layer, served over TLS with mTLS, and
//! tonic clients proving themselves by client certificate, HMAC signature or bearer token.
//!
//! ```text
//! cargo run --example grpc_service
//! ```
//!
//! The service (`registry.ModelRegistry`, see `support/registry.rs` for its proto):
//! `GetModel` and the server-streaming `WatchModels` need `models:read`, `CreateModel` needs
//! `models:write`. The stack, outermost first: audit ▸ mTLS principal / HMAC / bearer token
//! (any one proof) ▸ rate limit ▸ authorize per gRPC method. Refusals reach tonic clients as
//! UNAUTHENTICATED, PERMISSION_DENIED and RESOURCE_EXHAUSTED, and every call leaves one audit
//! event (printed at the end). Exits non-zero if any outcome differs from the expected one.
//!
//! On the client side the layers go on the `Channel`:
//!
//! ```ignore
//! let signed = ServiceBuilder::new()
//!     .layer(SignHmacLayer::new(HmacSigner::new("gateway", &secret)?))
//!     .service(channel.clone());
//! let with_token = ServiceBuilder::new()
//!     .layer(AddBearerLayer::new(MintedToken::new(issuer, "release-bot", ["developer"])))
//!     .service(channel);
//! ```
//!
//! With the `tonic` feature, the same can be had tonic's way. Interceptors per service or
//! client (`tower_zerotrust::grpc`; `MethodPathLayer` tells them the method):
//!
//! ```ignore
//! let guarded = InterceptedService::new(
//!     registry,
//!     chain(JwtInterceptor::new(jwt_config), AuthorizeInterceptor::new(rules)),
//! );
//! Server::builder().layer(MethodPathLayer).add_service(guarded).serve(addr).await?;
//! let signed = InterceptedService::new(channel, SignHmacInterceptor::new(signer));
//! ```
//!
//! And the secure builders, in the shape hand-written ones take (`tests/grpc_interceptors.rs` runs
//! them with JWT only, mTLS only and both):
//!
//! ```ignore
//! // Secure gRPC server with JWT and mTLS: callers need a client certificate signed by the
//! // CA and a token holding `read_models` or `write_models`.
//! let mut server = SecureGrpcServerBuilder::new()
//!     .with_tls(TlsConfig::new("registry.crt", "registry.key", "ca.crt")?)
//!     .with_jwt(jwt_config, ["read_models", "write_models"])
//!     .build()?;
//! let router = server.add_service(ModelRegistry::default());
//! router.serve("[::1]:50051".parse()?).await?;
//!
//! // Secure gRPC client with JWT and mTLS.
//! let channel = SecureGrpcClientBuilder::new("intellirouter.local")
//!     .with_tls(TlsConfig::new("router.crt", "router.key", "ca.crt")?)
//!     .with_jwt(token_issuer, "router_core", ["read_models"])
//!     .build("https://localhost:50051")
//!     .await?;
//! let model = client::get_model(channel, "1").await?;
//! ```

#[path = "support/captured.rs"]
mod captured;
#[path = "support/demo_ca.rs"]
mod demo_ca;
#[path = "support/registry.rs"]
mod registry;

use std::sync::Arc;

use captured::Captured;
use demo_ca::DemoCa;
use registry::{client, secured};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tonic::Code;
use tower::ServiceBuilder;
use tower_zerotrust::audit::{JsonLinesSink, Overflow};
use tower_zerotrust::jwt::Algorithm;
use tower_zerotrust::mtls::TlsConfig;
use tower_zerotrust::rate_limit::{RateLimitConfig, RateQuota};
use tower_zerotrust::sign::{AddBearerLayer, HmacSigner, MintedToken, SignHmacLayer, TokenIssuer};

#[tokio::main]
async fn main() -> Result<(), tower_zerotrust::BoxError> {
    let hmac_secret = random_secret();
    let jwt_secret = random_secret();
    let ca = DemoCa::new("registry CA");
    let (cert, key) = ca.issue("registry", true);
    let tls = TlsConfig::builder_from_pem(cert.as_bytes(), key.as_bytes(), ca.pem.as_bytes())
        .client_certificates_optional()
        .build()?
        .server_config()?;
    let limits = RateLimitConfig::builder()
        .principal_quota("batch-job", RateQuota::new(1, 2))
        .build()?;
    let trail = Captured::default();
    let audit = JsonLinesSink::new(trail.clone(), 1024, Overflow::Wait);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = secured::spawn(
        listener,
        tls,
        &hmac_secret,
        &jwt_secret,
        limits,
        audit.clone(),
    )?;
    println!(
        "registry.ModelRegistry on https://{addr} (mTLS optional; HMAC and bearer tokens accepted)\n"
    );

    // Channels: with a client certificate, or server-authenticated TLS only.
    let with_certificate = |name: &str| {
        let (cert, key) = ca.issue(name, false);
        TlsConfig::from_pem(cert.as_bytes(), key.as_bytes(), ca.pem.as_bytes())
            .and_then(|tls| tls.client_config())
    };
    let anonymous_tls = {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
            roots.add(cert?)?;
        }
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
        )
    };
    let ci = secured::channel(addr, with_certificate("ci-pipeline")?).await?;
    let dashboard = secured::channel(addr, with_certificate("dashboard")?).await?;
    let plain = secured::channel(addr, anonymous_tls).await?;
    let signed = |caller: &str| -> Result<_, tower_zerotrust::ConfigError> {
        Ok(ServiceBuilder::new()
            .layer(SignHmacLayer::new(HmacSigner::new(caller, &hmac_secret)?))
            .service(plain.clone()))
    };
    let issuer = TokenIssuer::hmac(
        Algorithm::HS256,
        &jwt_secret,
        secured::ISSUER,
        secured::AUDIENCE,
    )?;
    let bearer = ServiceBuilder::new()
        .layer(AddBearerLayer::new(MintedToken::new(
            issuer,
            "release-bot",
            ["developer"],
        )))
        .service(plain.clone());

    let mut table = Table::default();
    table.row(
        "ci-pipeline (client certificate) creates a model",
        "CreateModel",
        None,
        client::create_model(ci.clone(), "fraud-detector").await,
    );
    table.row(
        "release-bot (bearer token, developer) creates one",
        "CreateModel",
        None,
        client::create_model(bearer.clone(), "churn-predictor").await,
    );
    table.row(
        "dashboard (client certificate, viewer) reads it",
        "GetModel",
        None,
        client::get_model(dashboard.clone(), "1").await,
    );
    table.row(
        "gateway (HMAC-signed, viewer) watches all models",
        "WatchModels",
        None,
        client::watch_models(signed("gateway")?)
            .await
            .map(|m| m.len()),
    );
    table.row(
        "dashboard (viewer) tries to create one",
        "CreateModel",
        Some(Code::PermissionDenied),
        client::create_model(dashboard, "rogue").await,
    );
    table.row(
        "no credentials at all",
        "GetModel",
        Some(Code::Unauthenticated),
        client::get_model(plain.clone(), "1").await,
    );
    table.row(
        "signed with the wrong secret",
        "GetModel",
        Some(Code::Unauthenticated),
        client::get_model(
            ServiceBuilder::new()
                .layer(SignHmacLayer::new(HmacSigner::new(
                    "gateway",
                    &random_secret(),
                )?))
                .service(plain.clone()),
            "1",
        )
        .await,
    );
    for (n, expected) in [(1, None), (2, None), (3, Some(Code::ResourceExhausted))] {
        table.row(
            &format!("batch-job (quota: burst 2), call {n} of 3"),
            "GetModel",
            expected,
            client::get_model(signed("batch-job")?, "1").await,
        );
    }

    audit.flush().await;
    println!("\naudit trail (one event per call):");
    for line in trail.text().lines() {
        let e: serde_json::Value = serde_json::from_str(line)?;
        let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
        println!(
            "  {:<14} {:<7} {:<12} {:<38} grpc-status {:<4} {}",
            text(&e["event_type"]),
            text(&e["status"]),
            text(&e["principal"]),
            text(&e["resource"]),
            e["metadata"]["grpc_status"],
            text(&e["metadata"]["reason"]),
        );
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

#[derive(Default)]
struct Table {
    rows: usize,
    failures: usize,
}

impl Table {
    fn row<T: std::fmt::Debug>(
        &mut self,
        case: &str,
        method: &str,
        expected: Option<Code>,
        outcome: Result<T, tonic::Status>,
    ) {
        let (text, as_expected) = match (&outcome, expected) {
            (Ok(value), None) => (format!("OK {value:?}"), true),
            (Err(status), Some(code)) => (
                format!("{:?}: {}", status.code(), status.message()),
                status.code() == code,
            ),
            (Ok(value), Some(_)) => (format!("OK {value:?}"), false),
            (Err(status), None) => (format!("{:?}: {}", status.code(), status.message()), false),
        };
        self.rows += 1;
        self.failures += usize::from(!as_expected);
        let mark = if as_expected { "ok" } else { "UNEXPECTED" };
        println!("  {case:<52} {method:<12} {text} [{mark}]");
    }
}

fn random_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}
