//! The reference secured service: what a team replaces its hand-rolled auth module with.
//!
//! ```text
//! SERVICE_SECRET=$(openssl rand -hex 32) SERVICE_ID=vault ALLOWED_CALLERS=gateway,rag-service \
//!     cargo run --example secure_service
//! ```
//!
//! Environment (names as in the services it replaces):
//!
//! | variable          | meaning                                                        |
//! |-------------------|----------------------------------------------------------------|
//! | `BIND`            | address to listen on (default `127.0.0.1:8080`)                |
//! | `SERVICE_ID`      | this service's id (default `secure-service`), used in logs     |
//! | `SERVICE_SECRET`  | shared HMAC secret, at least 32 bytes (required)               |
//! | `SERVICE_SECRET_PREVIOUS` | a second accepted secret while rotating (optional)     |
//! | `ALLOWED_CALLERS` | comma-separated callers allowed on `POST /execute`             |
//! | `JWT_SECRET`      | HS256 secret for bearer tokens on `/whoami` (at least 32 bytes) |
//! | `JWT_PUBLIC_KEY_FILE` | PEM public key for bearer tokens (RS256/ES256/ES384/EdDSA by key type) |
//! | `JWT_JWKS_URL`    | JSON Web Key Set URL for bearer tokens (build with `--features jwks`) |
//! | `JWT_ISSUER`, `JWT_AUDIENCE` | accepted `iss` and `aud` (required with any JWT key) |
//! | `JWT_ROLES_CLAIM` | where the roles are in the token (default `roles`)            |
//! | `TLS_CERT_FILE`, `TLS_KEY_FILE`, `TLS_CA_FILE` | serve HTTPS and require client certificates signed by the CA; a certificate alone proves the caller (its CN) on `/whoami`. `SIGHUP` reloads the files |
//! | `TLS_CRL_FILE`    | PEM certificate revocation list(s): revoked client certificates are refused |
//! | `TLS_ALLOW_V1_CLIENT_CERTS` | `true` accepts X.509 v1 client certificates signed directly by the CA (OpenSSL 3's `x509 -req` without `-extfile`) |
//! | `ROLES_FILE`      | roles → permissions in YAML (`Policy::EXAMPLE_ROLES_YAML` shows the format; default: those example roles, `admin`, `operator`, `developer`, `viewer`); an optional `principals:` map gives roles to callers whose credentials carry none: a bare key names a service (an HMAC caller id or a certificate identity), `jwt:<sub>` a token subject. `SIGHUP` reloads it |
//! | `RATE_LIMIT_AVERAGE`, `RATE_LIMIT_BURST` | requests per second per principal, and burst (default 100 and 50) |
//! | `AUDIT_LOG`       | file that receives one JSON audit event per request (`timestamp`, `event_type`, `status`, `principal`, ...); default: stdout |
//! | `NONCE_STORE`     | where HMAC nonces are remembered: `memory` (default) or a `redis://` URL shared by every replica, so a request accepted by one is a replay to all (build with `--features redis`); `redis-cluster://host:port,host:port,...` for a Redis Cluster, `redis-sentinel://host:port,host:port/<service-name>` for the primary Sentinels watch |
//! | `HTTPSIG_KEYS_FILE` | JSON keys for HTTP message signatures (RFC 9421, build with `--features httpsig`): `{"keys": [{"keyid", "alg", "secret_base64" (hmac-sha256) or "public_key_pem_file" (ed25519, ecdsa-p256-sha256, ecdsa-p384-sha384, rsa-pss-sha512, rsa-v1_5-sha256; relative to the file), "principal", "roles"}]}`. Signed requests are then accepted wherever HMAC-signed ones are (`/execute` for `ALLOWED_CALLERS`, `/whoami` with `"method": "httpsig"`, the models); they cover `@method`, `@authority`, `@path`, `@query` and, with a body, `content-digest`, with `created` within ±30 s and a `nonce` (replays refused through `NONCE_STORE`) |
//! | `RATE_LIMIT_STORE` | where quotas are counted: `memory` (default, per replica) or a Redis URL as for `NONCE_STORE`, shared by every replica |
//! | `AUTHZ_REGO_FILE` | a Rego policy (`.rego`, build with `--features rego`) that decides `/whoami` and the `/models` routes instead of the role rules (`/health` stays public, `POST /execute` keeps its callers); its input is described in `RegoPolicy`'s docs. `SIGHUP` reloads it; a policy that does not compile is refused and the previous one stays |
//! | `AUTHZ_REGO_DATA_FILE` | its data document (JSON object, `data.*`), reloaded with it |
//! | `AUTHZ_REGO_QUERY` | the rule that decides (default `data.zerotrust.authz.allow`): `true`/`false` or `{"allowed": bool, "reason": string}` |
//! | `AUTHZ_MODE`      | `enforce` (default) or `shadow`: authorization and rate limits let every request through and record what they would have refused (audit `metadata.shadow_refusal`) |
//! | `AUTHZ_SHADOW_REGO_FILE` | a candidate Rego policy decided beside the enforced rules on the same routes, never enforced: each disagreement is recorded (audit `metadata.shadow_disagreement`, with both decisions). `AUTHZ_SHADOW_REGO_DATA_FILE` is its data |
//!
//! With Redis, an outage fails closed: signed requests and rate-limited routes get 503 until
//! Redis answers again, and the service recovers by itself.
//!
//! `SIGTERM` or Ctrl-C stops it gracefully: open requests finish and every audit event is
//! written before it exits.
//!
//! Routes: `GET /health` (public), `POST /execute` (allowed callers, HMAC only), `GET /whoami`
//! (any caller proven by HMAC, by a bearer token when a JWT key is configured, or by its client
//! certificate when TLS is on), `GET /models` (`models:read`), `POST /models` (`models:write`),
//! `DELETE /models/{id}` (`models:delete`): any proven caller whose roles grant the
//! permission; 403 otherwise. Every route but `/health` is rate limited per principal (429). Prints `listening on http://ADDR` (or `https://`) to stderr when
//! ready. Rejections are logged to stderr with the caller, path and reason.

#[path = "support/secure_app.rs"]
mod secure_app;

use std::net::SocketAddr;
use std::process::ExitCode;

use tower_zerotrust::BoxError;
use tower_zerotrust::audit::{AuditLayer, JsonLinesSink, Overflow};
use tower_zerotrust::authz::{Policy, SharedPolicy};
use tower_zerotrust::decision::Enforcement;
use tower_zerotrust::hmac::HmacConfigBuilder;
use tower_zerotrust::jwt::JwtConfigBuilder;
use tower_zerotrust::mtls::{MtlsPrincipalConfig, ReloadingServerConfig, TlsConfig, serve_tls};
use tower_zerotrust::nonce::MemoryNonceStore;
#[cfg(feature = "redis")]
use tower_zerotrust::nonce::RedisNonceStore;
use tower_zerotrust::rate_limit::RateLimitConfigBuilder;
#[cfg(feature = "redis")]
use tower_zerotrust::rate_limit::{RedisRateLimits, WhenUnavailable};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(
            Targets::new()
                .with_target("tower_zerotrust", LevelFilter::DEBUG)
                .with_default(LevelFilter::INFO),
        )
        .init();

    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let service_id = std::env::var("SERVICE_ID").unwrap_or_else(|_| "secure-service".into());
    let (app, tls, reloadable) = match configure() {
        Ok(configured) => configured,
        Err(error) => {
            eprintln!("configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(&bind).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on {bind}: {error}");
            return ExitCode::from(1);
        }
    };
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    tracing::info!(service_id, "started");
    // SIGHUP also reads ROLES_FILE and the Rego policies again; a broken file keeps what is in
    // force.
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hangups) => {
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    reloadable.reload();
                }
            });
        }
        Err(error) => {
            eprintln!("cannot watch SIGHUP: {error}");
            return ExitCode::from(1);
        }
    }
    // Ctrl-C or SIGTERM (what container runtimes send): stop accepting, finish what is open.
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                eprintln!("cannot watch SIGTERM: {error}");
                return ExitCode::from(1);
            }
        };
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    let audit = match std::env::var("AUDIT_LOG").ok().filter(|v| !v.is_empty()) {
        Some(path) => match JsonLinesSink::append_to(&path, 4096, Overflow::Wait) {
            Ok(sink) => sink,
            Err(error) => {
                eprintln!("cannot open AUDIT_LOG {path}: {error}");
                return ExitCode::from(2);
            }
        },
        None => JsonLinesSink::new(std::io::stdout(), 4096, Overflow::Wait),
    };
    let app = app.layer(AuditLayer::new(audit.clone()).peer_addr(secure_app::peer_ip));
    let served = match tls {
        Some(tls) => {
            if let Err(error) = tls.reload_on_signal(tokio::signal::unix::SignalKind::hangup()) {
                eprintln!("cannot watch SIGHUP: {error}");
                return ExitCode::from(1);
            }
            eprintln!("listening on https://{addr}");
            serve_tls(listener, tls, app, shutdown).await
        }
        None => {
            eprintln!("listening on http://{addr}");
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    };
    // Every request has finished: write out the last audit events.
    audit.flush().await;
    if let Err(error) = served {
        eprintln!("server error: {error}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

type Configured = (axum::Router, Option<ReloadingServerConfig>, Reloadable);

/// What `SIGHUP` reads again.
struct Reloadable {
    roles: SharedPolicy,
    #[cfg(feature = "rego")]
    rego: Vec<tower_zerotrust::authz::RegoPolicy>,
}

impl Reloadable {
    fn reload(&self) {
        let _ = self.roles.reload();
        #[cfg(feature = "rego")]
        for policy in &self.rego {
            let _ = policy.reload();
        }
    }
}

/// The routes, the TLS configuration when `TLS_CERT_FILE` is set, and what reloads.
fn configure() -> Result<Configured, BoxError> {
    let hmac = HmacConfigBuilder::from_env().public_path("/health");
    let jwt = JwtConfigBuilder::from_env();
    let tls = match std::env::var("TLS_CERT_FILE")
        .ok()
        .filter(|v| !v.is_empty())
    {
        None => None,
        Some(cert) => {
            let required = |name: &str| {
                std::env::var(name)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| format!("{name} is required with TLS_CERT_FILE"))
            };
            let mut tls =
                TlsConfig::builder(cert, required("TLS_KEY_FILE")?, required("TLS_CA_FILE")?);
            if let Some(crl) = std::env::var("TLS_CRL_FILE").ok().filter(|v| !v.is_empty()) {
                tls = tls.crl_file(crl);
            }
            if std::env::var("TLS_ALLOW_V1_CLIENT_CERTS").is_ok_and(|v| v == "true") {
                tls = tls.allow_v1_client_certificates();
            }
            // Read again on SIGHUP: new handshakes get the new files, open connections go on.
            Some(ReloadingServerConfig::new(tls)?)
        }
    };
    // With TLS, a client certificate alone proves who is calling (its subject CN).
    let mtls = tls.is_some().then(MtlsPrincipalConfig::builder);
    let (access, reloadable) = access(store("RATE_LIMIT_STORE")?)?;
    let httpsig = httpsig_keys(tls.is_some())?;
    let app = match store("NONCE_STORE")? {
        None => secure_app::router(
            hmac,
            jwt,
            mtls,
            httpsig,
            access,
            MemoryNonceStore::default(),
        )?,
        #[cfg(feature = "redis")]
        Some(redis) => {
            let nonces = RedisNonceStore::new(redis);
            secure_app::router(hmac, jwt, mtls, httpsig, access, nonces)?
        }
        #[cfg(not(feature = "redis"))]
        Some(never) => match never {},
    };
    Ok((app, tls, reloadable))
}

/// `HTTPSIG_KEYS_FILE`: the keys whose RFC 9421 signatures the service accepts, as JSON
/// (`{"keys": [{"keyid", "alg", "secret_base64" | "public_key_pem_file", "principal",
/// "roles"}]}`, paths relative to the file).
#[cfg(feature = "httpsig")]
fn httpsig_keys(tls: bool) -> Result<Option<secure_app::HttpSig>, BoxError> {
    use base64::Engine;
    use tower_zerotrust::httpsig::{HttpSigConfig, HttpSigKey};

    #[derive(serde::Deserialize)]
    struct File {
        keys: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        keyid: String,
        alg: String,
        principal: String,
        #[serde(default)]
        roles: Vec<String>,
        secret_base64: Option<String>,
        public_key_pem_file: Option<String>,
    }
    let Some(path) = std::env::var("HTTPSIG_KEYS_FILE")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    let path = std::path::PathBuf::from(path);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("HTTPSIG_KEYS_FILE: cannot read {}: {e}", path.display()))?;
    let file: File = serde_json::from_str(&text).map_err(|e| format!("HTTPSIG_KEYS_FILE: {e}"))?;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let mut config = HttpSigConfig::builder()
        .scheme(if tls { "https" } else { "http" })
        .public_path("/health")
        .optional();
    for entry in file.keys {
        let key = match (
            entry.alg.as_str(),
            entry.secret_base64,
            entry.public_key_pem_file,
        ) {
            ("hmac-sha256", Some(secret), None) => HttpSigKey::hmac_sha256(
                &base64::engine::general_purpose::STANDARD
                    .decode(secret.trim())
                    .map_err(|_| {
                        format!(
                            "HTTPSIG_KEYS_FILE: {}: secret_base64 is not base64",
                            entry.keyid
                        )
                    })?,
            )?,
            (alg, None, Some(pem)) => {
                let pem = std::fs::read(dir.join(&pem)).map_err(|e| {
                    format!("HTTPSIG_KEYS_FILE: {}: cannot read {pem}: {e}", entry.keyid)
                })?;
                HttpSigKey::public_key_pem(alg, &pem)?
            }
            _ => {
                return Err(format!(
                    "HTTPSIG_KEYS_FILE: {}: give secret_base64 for hmac-sha256, public_key_pem_file otherwise",
                    entry.keyid
                )
                .into());
            }
        };
        config = config.key_with_roles(entry.keyid, key, entry.principal, entry.roles);
    }
    let allowed_callers = std::env::var("ALLOWED_CALLERS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(Some(secure_app::HttpSig {
        config: config.build()?,
        allowed_callers,
    }))
}

/// Without the `httpsig` feature, `HTTPSIG_KEYS_FILE` cannot be honoured.
#[cfg(not(feature = "httpsig"))]
fn httpsig_keys(_tls: bool) -> Result<Option<secure_app::HttpSig>, BoxError> {
    match std::env::var("HTTPSIG_KEYS_FILE")
        .ok()
        .filter(|v| !v.is_empty())
    {
        None => Ok(None),
        Some(_) => Err(
            "HTTPSIG_KEYS_FILE: this build has no HTTP message signatures (--features httpsig)"
                .into(),
        ),
    }
}

#[cfg(feature = "redis")]
type Redis = tower_zerotrust::redis::RedisConnection;
#[cfg(not(feature = "redis"))]
type Redis = std::convert::Infallible;

/// `NONCE_STORE` or `RATE_LIMIT_STORE`: `memory` (the default, `None`) or a Redis URL.
fn store(name: &str) -> Result<Option<Redis>, BoxError> {
    match std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .as_deref()
    {
        None | Some("memory") => Ok(None),
        Some(url)
            if [
                "redis://",
                "rediss://",
                "redis-cluster://",
                "redis-sentinel://",
            ]
            .iter()
            .any(|scheme| url.starts_with(scheme)) =>
        {
            #[cfg(feature = "redis")]
            return Ok(Some(Redis::open(url)?));
            #[cfg(not(feature = "redis"))]
            return Err(
                format!("{name}: this build has no Redis support (--features redis)").into(),
            );
        }
        Some(_) => Err(format!(
            "{name} must be `memory`, a redis:// URL, redis-cluster://host:port,... or \
             redis-sentinel://host:port,.../<service>"
        )
        .into()),
    }
}

/// `ROLES_FILE` (YAML; the four example roles when unset), `RATE_LIMIT_AVERAGE` and
/// `RATE_LIMIT_BURST` (100 and 50), counted in `shared` Redis when given; the Rego policies
/// and `AUTHZ_MODE`.
fn access(shared: Option<Redis>) -> Result<(secure_app::Access, Reloadable), BoxError> {
    let policy = match std::env::var("ROLES_FILE").ok().filter(|v| !v.is_empty()) {
        Some(file) => SharedPolicy::from_yaml_file(file)?,
        None => Policy::example_roles().into(),
    };
    let enforcement = match std::env::var("AUTHZ_MODE").ok().filter(|v| !v.is_empty()) {
        None => Enforcement::Enforce,
        Some(mode) if mode == "enforce" => Enforcement::Enforce,
        Some(mode) if mode == "shadow" => Enforcement::Shadow,
        Some(_) => return Err("AUTHZ_MODE must be `enforce` or `shadow`".into()),
    };
    let limits = RateLimitConfigBuilder::from_env()
        .peer_addr(secure_app::peer_ip)
        .enforcement(enforcement);
    let limits = match shared {
        None => limits,
        #[cfg(feature = "redis")]
        Some(redis) => limits.shared(RedisRateLimits::new(redis, WhenUnavailable::FailClosed)),
        #[cfg(not(feature = "redis"))]
        Some(never) => match never {},
    }
    .build()?;
    let mut access = secure_app::Access::new(policy.clone(), limits);
    access.enforcement = enforcement;
    #[cfg_attr(not(feature = "rego"), allow(unused_mut))]
    let mut reloadable = Reloadable {
        roles: policy,
        #[cfg(feature = "rego")]
        rego: Vec::new(),
    };
    let enforced = rego("AUTHZ_REGO_FILE", "AUTHZ_REGO_DATA_FILE")?;
    let candidate = rego("AUTHZ_SHADOW_REGO_FILE", "AUTHZ_SHADOW_REGO_DATA_FILE")?;
    #[cfg(feature = "rego")]
    {
        access.engine = enforced.clone().map(Into::into);
        access.candidate = candidate.clone().map(Into::into);
        reloadable
            .rego
            .extend(enforced.into_iter().chain(candidate));
    }
    #[cfg(not(feature = "rego"))]
    let _ = (enforced, candidate);
    Ok((access, reloadable))
}

/// The Rego policy in `file` (and its data in `data`), deciding `AUTHZ_REGO_QUERY`.
#[cfg(feature = "rego")]
fn rego(file: &str, data: &str) -> Result<Option<tower_zerotrust::authz::RegoPolicy>, BoxError> {
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    let Some(path) = var(file) else {
        return Ok(None);
    };
    let mut builder = tower_zerotrust::authz::RegoPolicy::builder().policy_file(path);
    if let Some(data) = var(data) {
        builder = builder.data_file(data);
    }
    if let Some(query) = var("AUTHZ_REGO_QUERY") {
        builder = builder.query(query);
    }
    Ok(Some(builder.build().map_err(|e| format!("{file}: {e}"))?))
}

/// Without the `rego` feature a Rego policy is refused, not ignored.
#[cfg(not(feature = "rego"))]
fn rego(file: &str, _: &str) -> Result<Option<std::convert::Infallible>, BoxError> {
    match std::env::var(file).ok().filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(_) => Err(format!("{file}: this build has no Rego support (--features rego)").into()),
    }
}
