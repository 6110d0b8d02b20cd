//! Shared by the integration tests: real servers on loopback, a real HTTP client, and a signer
//! that follows the scheme's formula without using the crate's own signer.
#![allow(dead_code, unreachable_pub)]

#[path = "../../examples/support/captured.rs"]
pub mod captured;
pub mod certs;
pub mod redis;
pub mod service;

/// Skips a test for want of a tool, or fails it in CI (defined beside the Redis processes,
/// which the `redis` bench shares).
#[allow(unused_imports)]
pub use redis::missing_tool;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;
use tower_zerotrust::nonce::{NonceError, NonceStore};

/// A 64-character secret, as `secrets.token_hex(32)` makes.
pub const SECRET: &str = "3f8a2c9d1e7b4f60a5c8d2e9f1b3a7c4d6e8f0a2b4c6d8e0f2a4b6c8d0e2f4a6";
pub const OTHER_SECRET: &str = "0000000000000000000000000000000000000000000000000000000000000001";

pub type Body = Full<Bytes>;

/// An audit writer stuck in its first write until released, like a stalled disk; what it
/// writes afterwards is in `lines`.
#[derive(Clone, Default)]
pub struct Stalled {
    pub lines: captured::Captured,
    released: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    /// Set once a write is stuck.
    pub stalled: Arc<std::sync::atomic::AtomicBool>,
}

impl Stalled {
    pub fn release(&self) {
        *self.released.0.lock().unwrap() = true;
        self.released.1.notify_all();
    }
}

impl std::io::Write for Stalled {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stalled.store(true, Ordering::SeqCst);
        let (released, wake) = &*self.released;
        drop(wake.wait_while(released.lock().unwrap(), |released| !*released));
        self.lines.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The HMAC verifier most tests put in front: [`SECRET`], any caller.
#[cfg(feature = "hmac")]
pub fn any_caller() -> tower_zerotrust::hmac::HmacConfig {
    tower_zerotrust::hmac::HmacConfig::builder()
        .secret(SECRET)
        .allow_any_caller()
        .build()
        .unwrap()
}

/// Serves `app` on a random loopback port; the server lives as long as the test's runtime.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

pub fn client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The problem details' `detail`, for rejections.
    pub fn detail(&self) -> String {
        self.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }
}

pub async fn send(request: Request<Body>) -> Reply {
    Reply::read(client().request(request).await.expect("request failed")).await
}

impl Reply {
    /// Reads a response whole.
    pub async fn read<B>(response: http::Response<B>) -> Self
    where
        B: http_body::Body,
        B::Error: std::fmt::Debug,
    {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }
}

/// The fields of every audit event, as the JSON-lines and tracing sinks write them.
pub const AUDIT_FIELDS: [&str; 10] = [
    "timestamp",
    "event_type",
    "status",
    "principal",
    "resource",
    "action",
    "source_ip",
    "user_agent",
    "trace_id",
    "metadata",
];

/// How long a test waits for an effect it polls for: generous, so that a loaded CI machine
/// is slow rather than wrong.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);

/// Waits until `check` holds, asking every 20 ms, or panics naming `what` after [`PATIENCE`].
pub async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    eventually_some(what, || {
        let holds = check();
        async move { holds.await.then_some(()) }
    })
    .await;
}

/// Waits until `check` gives a value, asking every 20 ms, or panics naming `what` after
/// [`PATIENCE`].
pub async fn eventually_some<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {PATIENCE:?}: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

pub fn request(method: &str, addr: SocketAddr, path: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .body(Body::default())
        .unwrap()
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The scheme's Python, transcribed: `hmac.new(secret.encode(), message.encode(), sha256)`.
pub fn formula_signature(secret: &str, message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The four headers as a client of the scheme sends them, signed by the formula.
pub fn formula_headers(
    secret: &str,
    service_id: &str,
    timestamp: u64,
    nonce: &str,
    method: &str,
    path: &str,
) -> [(&'static str, String); 4] {
    let message = format!("{service_id}:{timestamp}:{nonce}:{method}:{path}");
    [
        ("X-Service-ID", service_id.to_owned()),
        ("X-Timestamp", timestamp.to_string()),
        ("X-Nonce", nonce.to_owned()),
        ("X-Signature", formula_signature(secret, &message)),
    ]
}

/// A request signed by the formula, with a fresh nonce.
pub fn formula_request(
    secret: &str,
    service_id: &str,
    method: &str,
    addr: SocketAddr,
    path: &str,
) -> Request<Body> {
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let mut req = request(method, addr, path);
    for (name, value) in formula_headers(secret, service_id, now(), &nonce, method, path) {
        req.headers_mut().insert(name, value.parse().unwrap());
    }
    req
}

/// Sets or replaces one header.
pub fn set(req: &mut Request<Body>, name: &'static str, value: &str) {
    req.headers_mut().insert(name, value.parse().unwrap());
}

/// A store that counts calls and can be told to fail.
#[derive(Clone, Default)]
pub struct ProbeStore {
    pub calls: Arc<AtomicUsize>,
    pub broken: bool,
}

impl NonceStore for ProbeStore {
    type Future = std::future::Ready<Result<(), NonceError>>;

    fn check_and_record(&self, _: &str, _: &str, _: std::time::Duration) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(if self.broken {
            Err(NonceError::Unavailable("connection refused".into()))
        } else {
            Ok(())
        })
    }
}

/// The system clock, moved by so many seconds (a peer whose clock is off).
pub struct Shifted(pub i64);

impl tower_zerotrust::clock::Clock for Shifted {
    fn now_millis(&self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        (now.as_millis() as i64 + 1000 * self.0) as u64
    }
}

/// A clock the test moves, shared by its clones; [`shifted`](Self::shifted) gives a view of
/// the same time off by so many milliseconds (a replica whose clock lags).
#[derive(Clone, Default)]
pub struct ManualClock {
    millis: Arc<std::sync::atomic::AtomicU64>,
    offset_ms: i64,
}

impl ManualClock {
    /// A clock that reads `millis` until moved.
    pub fn at(millis: u64) -> Self {
        let clock = Self::default();
        clock.millis.store(millis, Ordering::SeqCst);
        clock
    }

    pub fn advance(&self, millis: u64) {
        self.millis.fetch_add(millis, Ordering::SeqCst);
    }

    /// The same clock, read `offset_ms` later (earlier when negative).
    pub fn shifted(&self, offset_ms: i64) -> Self {
        Self {
            millis: self.millis.clone(),
            offset_ms,
        }
    }
}

impl tower_zerotrust::clock::Clock for ManualClock {
    fn now_millis(&self) -> u64 {
        (self.millis.load(Ordering::SeqCst) as i64 + self.offset_ms) as u64
    }
}
