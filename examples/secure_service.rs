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
//!
//! Routes: `GET /health` (public), `POST /execute` (allowed callers), `GET /whoami` (any
//! authenticated caller). Rejections are logged to stderr with the caller, path and reason.

#[path = "support/secure_app.rs"]
mod secure_app;

use std::process::ExitCode;

use tower_zerotrust::hmac::HmacConfigBuilder;
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
    let app = match HmacConfigBuilder::from_env()
        .map(|hmac| hmac.public_path("/health"))
        .and_then(secure_app::router)
    {
        Ok(app) => app,
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
    eprintln!("listening on http://{addr}");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        eprintln!("server error: {error}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
