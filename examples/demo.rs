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

#[path = "support/secure_app.rs"]
mod secure_app;

use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_zerotrust::hmac::HmacConfig;
use tower_zerotrust::sign::{HmacSigner, SignHmacLayer};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

type Body = Full<Bytes>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let log = LogBuffer::default();
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(log.clone()),
        )
        .with(Targets::new().with_target("tower_zerotrust", LevelFilter::DEBUG))
        .init();

    // The service: seed 003's "vault", which gateway and heartbeat may call.
    let secret = random_secret();
    let hmac = HmacConfig::builder()
        .secret(&secret)
        .allow_callers(["gateway", "heartbeat"])
        .public_path("/health");
    let app = secure_app::router(hmac)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = Client::builder(TokioExecutor::new()).build_http::<Body>();
    let gateway = HmacSigner::new("gateway", &secret)?;
    let mut signed_client = ServiceBuilder::new()
        .layer(SignHmacLayer::new(gateway.clone()))
        .service(client.clone());

    println!(
        "tower-zerotrust demo: service \"vault\" on {base}, allowed callers: gateway, heartbeat\n"
    );
    println!(
        "  {:<48} {:<14} {:>6}  outcome",
        "case", "request", "status"
    );
    let mut table = Table::default();

    // Accepted.
    let response = signed_client
        .ready()
        .await?
        .call(request("POST", &base, "/execute"))
        .await?;
    table
        .row(
            "signed call from gateway (SignHmacLayer)",
            "POST /execute",
            StatusCode::OK,
            response,
        )
        .await;
    let heartbeat = HmacSigner::new("heartbeat", &secret)?;
    let mut req = request("GET", &base, "/whoami");
    heartbeat.sign_request(&mut req);
    table
        .row(
            "any signed caller may ask who it is",
            "GET /whoami",
            StatusCode::OK,
            client.request(req).await?,
        )
        .await;
    table
        .row(
            "public health check, no signature",
            "GET /health",
            StatusCode::OK,
            client.request(request("GET", &base, "/health")).await?,
        )
        .await;

    // Rejected.
    let captured = gateway.sign("POST", "/execute");
    let mut first = request("POST", &base, "/execute");
    captured.apply_to(first.headers_mut());
    let mut replay = request("POST", &base, "/execute");
    captured.apply_to(replay.headers_mut());
    client.request(first).await?;
    table
        .row(
            "replayed request (same nonce)",
            "POST /execute",
            StatusCode::UNAUTHORIZED,
            client.request(replay).await?,
        )
        .await;

    let mut tampered = request("POST", &base, "/execute");
    gateway
        .sign("POST", "/status")
        .apply_to(tampered.headers_mut());
    table
        .row(
            "tampered: signed for /status, sent to /execute",
            "POST /execute",
            StatusCode::UNAUTHORIZED,
            client.request(tampered).await?,
        )
        .await;

    let impostor = HmacSigner::new("gateway", &random_secret())?;
    let mut req = request("POST", &base, "/execute");
    impostor.sign_request(&mut req);
    table
        .row(
            "impostor: right id, wrong secret",
            "POST /execute",
            StatusCode::UNAUTHORIZED,
            client.request(req).await?,
        )
        .await;

    let stale_time = now() - 300;
    let mut stale = request("POST", &base, "/execute");
    gateway
        .sign_at("POST", "/execute", stale_time, "stale-1")?
        .apply_to(stale.headers_mut());
    table
        .row(
            "stale: signed 5 minutes ago",
            "POST /execute",
            StatusCode::UNAUTHORIZED,
            client.request(stale).await?,
        )
        .await;

    let external = HmacSigner::new("external", &secret)?;
    let mut req = request("POST", &base, "/execute");
    external.sign_request(&mut req);
    table
        .row(
            "unknown caller \"external\" (valid signature)",
            "POST /execute",
            StatusCode::FORBIDDEN,
            client.request(req).await?,
        )
        .await;

    table
        .row(
            "unsigned request",
            "POST /execute",
            StatusCode::UNAUTHORIZED,
            client.request(request("POST", &base, "/execute")).await?,
        )
        .await;

    println!("\nrejection log (what the service recorded for each refusal):");
    for line in log.text().lines() {
        println!("  {line}");
    }
    if table.failures > 0 {
        eprintln!(
            "\n{} outcome(s) differed from the expected status",
            table.failures
        );
        std::process::exit(1);
    }
    println!("\nall {} outcomes as expected", table.rows);
    Ok(())
}

fn request(method: &str, base: &str, path: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .body(Body::default())
        .expect("a valid request")
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
        expected: StatusCode,
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
        let outcome = match json.get("detail").and_then(|d| d.as_str()) {
            Some(reason) => format!("rejected: {reason}"),
            None => format!("accepted: {}", String::from_utf8_lossy(&body)),
        };
        let mark = if status == expected {
            "ok"
        } else {
            "UNEXPECTED"
        };
        self.rows += 1;
        self.failures += usize::from(status != expected);
        println!(
            "  {case:<48} {request:<14} {:>6}  {outcome} [{mark}]",
            status.as_u16()
        );
    }
}

/// Collects the service's log lines so they print after the table instead of inside it.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A 256-bit secret as hex, as seed 003's setup step makes one.
fn random_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}
