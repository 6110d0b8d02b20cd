//! The load test users read: our layers and the peers they would pick instead, each behind the
//! same axum route, loaded over loopback TCP side by side in one run.
//!
//! ```text
//! cargo bench --bench loopback          # ROUNDS=5 LOAD_SECONDS=2 CONNECTIONS=64 to change it
//! cargo bench --bench loopback -- JWT   # only the stacks whose name contains "JWT"
//! NO_BARE=1 cargo bench --bench loopback -- "audit ▸ JWT"   # one stack alone (to profile it)
//! ```
//!
//! The server (one tokio worker, plus whatever threads a stack starts: the audit writer, the
//! log appender) is pinned to core 0; `wrk -t1 -c64` (from Debian's `wrk` package) is pinned to
//! core 1 and sends keep-alive `POST /models`. Bearer stacks get the same HS256 token on every
//! request; HMAC stacks a fresh signature and nonce per request (whole requests signed before the
//! run, sent as they are by wrk's Lua script). Each round runs every stack once, 1 s of warm-up then the measured
//! load; the table reports medians over the rounds: requests per second, the server's CPU time
//! per request (every thread of this process, from `/proc/self/task/*/schedstat`), and the
//! ratio to bare axum measured in the same round with the same credentials.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{Method, StatusCode};
use support::{SECRET, env_or, hs256_bearer, hs256_config};
use tower::ServiceBuilder;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;
use tower_zerotrust::audit::{
    AuditEvent, AuditLayer, AuditRecord, AuditSink, JsonLinesSink, Overflow,
};
use tower_zerotrust::authz::{AuthorizeConfig, AuthorizeLayer, Policy, Require};
use tower_zerotrust::hmac::{HmacConfig, VerifyHmacLayer};
use tower_zerotrust::jwt::RequireJwtLayer;
use tower_zerotrust::rate_limit::{RateLimitConfig, RateLimitLayer, RateQuota};
use tower_zerotrust::sign::HmacSigner;

/// How the load generator proves itself.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Credentials {
    /// The same bearer token on every request.
    Bearer,
    /// A fresh HMAC signature and nonce per request.
    Hmac,
}

/// One stack under load.
struct Stack {
    name: &'static str,
    credentials: Credentials,
    /// Builds the app; the audit file, when the stack writes one, is under `dir`.
    app: fn(&Path) -> Router,
}

fn stacks() -> Vec<Stack> {
    use Credentials::{Bearer, Hmac};
    let stack = |name, credentials, app| Stack {
        name,
        credentials,
        app,
    };
    vec![
        stack("bare axum (JWT client)", Bearer, |_| bare()),
        stack("RequireJwtLayer alone", Bearer, |_| {
            bare().layer(RequireJwtLayer::new(hs256_config()))
        }),
        stack("ours: JWT ▸ rate limit ▸ authorize", Bearer, |_| {
            ours(None, Bearer)
        }),
        stack(
            "ours: audit ▸ JWT ▸ rate limit ▸ authorize",
            Bearer,
            |dir| ours(Some(dir), Bearer),
        ),
        stack("AuditLayer alone, JSON lines to a file", Bearer, |dir| {
            bare().layer(AuditLayer::new(
                JsonLinesSink::append_to(dir.join("audit.jsonl"), 1 << 16, Overflow::Wait).unwrap(),
            ))
        }),
        stack("AuditLayer alone, events discarded", Bearer, |_| {
            bare().layer(AuditLayer::new(Discard))
        }),
        stack("tower_governor alone", Bearer, |_| governed(bare())),
        stack("TraceLayer, JSON logs to a file, alone", Bearer, |dir| {
            traced(bare(), dir)
        }),
        stack(
            "peers: TraceLayer ▸ jsonwebtoken ▸ tower_governor ▸ RBAC",
            Bearer,
            peers,
        ),
        stack("bare axum (HMAC client)", Hmac, |_| bare()),
        stack("VerifyHmacLayer alone", Hmac, |_| {
            bare().layer(VerifyHmacLayer::new(hmac_config()))
        }),
        stack(
            "ours: audit ▸ HMAC ▸ rate limit ▸ authorize",
            Hmac,
            |dir| ours(Some(dir), Hmac),
        ),
    ]
}

fn bare() -> Router {
    Router::new().route("/models", post(|| async { "created" }))
}

fn hmac_config() -> HmacConfig {
    HmacConfig::builder()
        .secret(SECRET)
        .allow_callers(["gateway"])
        .build()
        .unwrap()
}

/// Our stack, applied as one `ServiceBuilder` (as axum recommends for several middleware).
fn ours(audit_dir: Option<&Path>, credentials: Credentials) -> Router {
    let policy = Policy::builder()
        .role("developer", ["models:write"])
        .assign("gateway", ["developer"])
        .build()
        .unwrap();
    let authorize = AuthorizeConfig::builder(policy)
        .route(Method::POST, "/models", Require::permission("models:write"))
        .build()
        .unwrap();
    let limits = RateLimitConfig::builder()
        .quota(RateQuota::new(1_000_000_000, 1_000_000))
        .build()
        .unwrap();
    let audit = audit_dir.map(|dir| {
        let file = dir.join("audit.jsonl");
        AuditLayer::new(JsonLinesSink::append_to(file, 1 << 16, Overflow::Wait).unwrap())
    });
    // One `Router::layer` of a `ServiceBuilder` per stack: axum then adapts the bodies once.
    macro_rules! layered {
        ($authenticate:expr) => {{
            let checks = ServiceBuilder::new()
                .layer($authenticate)
                .layer(RateLimitLayer::new(limits))
                .layer(AuthorizeLayer::new(authorize));
            match audit {
                Some(audit) => bare().layer(ServiceBuilder::new().layer(audit).layer(checks)),
                None => bare().layer(checks),
            }
        }};
    }
    match credentials {
        Credentials::Bearer => layered!(RequireJwtLayer::new(hs256_config())),
        Credentials::Hmac => layered!(VerifyHmacLayer::new(hmac_config())),
    }
}

/// A sink that takes every record and keeps nothing: what the audit costs on the request path
/// alone, without formatting or writing.
#[derive(Clone)]
struct Discard;

impl AuditSink for Discard {
    type Future = std::future::Ready<()>;

    fn record(&self, _: AuditEvent) -> Self::Future {
        std::future::ready(())
    }

    fn record_gathered(&self, _: AuditRecord) -> Self::Future {
        std::future::ready(())
    }
}

/// The claims a hand-rolled JWT middleware keeps.
#[derive(Clone, serde::Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
}

/// Keys tower_governor's buckets by the token's subject when a middleware has put the claims
/// in the request, or by the `Authorization` header otherwise.
#[derive(Clone)]
struct Caller;

impl KeyExtractor for Caller {
    type Key = String;

    fn extract<T>(
        &self,
        request: &http::Request<T>,
    ) -> Result<String, tower_governor::GovernorError> {
        if let Some(claims) = request.extensions().get::<Claims>() {
            return Ok(claims.sub.clone());
        }
        let header = request.headers().get(http::header::AUTHORIZATION);
        Ok(header
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned())
    }
}

fn governed(app: Router) -> Router {
    let config = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(1_000_000)
        .key_extractor(Caller)
        .finish()
        .unwrap();
    app.layer(GovernorLayer::new(config))
}

/// tower-http's `TraceLayer` logging one JSON line per response (INFO) through
/// tracing-appender's non-blocking writer to a file, the way services log requests.
fn traced(app: Router, dir: &Path) -> Router {
    use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
    use tracing::Level;
    let (writer, guard) =
        tracing_appender::non_blocking(std::fs::File::create(dir.join("requests.jsonl")).unwrap());
    // The appender stops with its guard: keep it for the process's life (a bench).
    std::mem::forget(guard);
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(Level::INFO)
        .with_writer(writer)
        .finish();
    let dispatch = tracing::Dispatch::new(subscriber);
    TRACE_DISPATCH.with(|slot| *slot.borrow_mut() = Some(dispatch));
    app.layer(
        TraceLayer::new_for_http()
            .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
            .on_response(DefaultOnResponse::new().level(Level::INFO)),
    )
}

thread_local! {
    /// The subscriber the next server's worker thread logs to (set by [`traced`]).
    static TRACE_DISPATCH: std::cell::RefCell<Option<tracing::Dispatch>> =
        const { std::cell::RefCell::new(None) };
}

/// What a team assembles from the peers: request logs as JSON, a JWT check with
/// `jsonwebtoken` in a middleware, tower_governor per subject, and a role check.
fn peers(dir: &Path) -> Router {
    async fn authenticate(mut request: Request, next: Next) -> Response {
        use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
        static KEY: std::sync::LazyLock<(DecodingKey, Validation)> =
            std::sync::LazyLock::new(|| {
                let mut validation = Validation::new(Algorithm::HS256);
                validation.set_issuer(&["intellirouter"]);
                validation.set_audience(&["intellirouter-services"]);
                (DecodingKey::from_secret(SECRET.as_bytes()), validation)
            });
        let token = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match token.map(|t| decode::<Claims>(t, &KEY.0, &KEY.1)) {
            Some(Ok(data)) => {
                request.extensions_mut().insert(data.claims);
                next.run(request).await
            }
            _ => StatusCode::UNAUTHORIZED.into_response(),
        }
    }
    async fn authorize(request: Request, next: Next) -> Response {
        static GRANTS: std::sync::LazyLock<std::collections::HashMap<&str, Vec<&str>>> =
            std::sync::LazyLock::new(|| [("developer", vec!["models:write"])].into());
        let allowed = request.extensions().get::<Claims>().is_some_and(|claims| {
            claims.roles.iter().any(|role| {
                GRANTS
                    .get(role.as_str())
                    .is_some_and(|grants| grants.contains(&"models:write"))
            })
        });
        if allowed {
            next.run(request).await
        } else {
            StatusCode::FORBIDDEN.into_response()
        }
    }
    let app = governed(bare().layer(middleware::from_fn(authorize)))
        .layer(middleware::from_fn(authenticate));
    traced(app, dir)
}

/// Serves `app` on a one-worker runtime; keep the runtime alive while it is loaded.
fn serve(app: Router) -> (tokio::runtime::Runtime, SocketAddr) {
    let dispatch = TRACE_DISPATCH.with(|slot| slot.borrow_mut().take());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .on_thread_start(move || {
            if let Some(dispatch) = &dispatch {
                // For the life of the thread, which ends with the runtime.
                std::mem::forget(tracing::dispatcher::set_default(dispatch));
            }
        })
        .build()
        .unwrap();
    let addr = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    });
    (runtime, addr)
}

/// What one load run measured.
#[derive(Clone, Copy)]
struct Run {
    per_second: f64,
    server_micros: f64,
}

/// The Lua script wrk runs: a fixed bearer request, or signed requests read from a file.
const SCRIPT: &str = r#"
local requests, i = {}, 0
function init(args)
  if args[1] == "bearer" then
    requests[1] = wrk.format("POST", "/models", {["Authorization"] = args[2]})
  else
    -- Whole requests, one after the other; each ends with an empty line.
    local data = io.open(args[2], "rb"):read("*a")
    local from = 1
    while true do
      local at = data:find("\r\n\r\n", from, true)
      if not at then break end
      requests[#requests + 1] = data:sub(from, at + 3)
      from = at + 4
    end
  end
end
function request()
  i = i % #requests + 1
  return requests[i]
end
"#;

/// Runs wrk against `addr` for `seconds`; the server's CPU time is read around it.
fn load(addr: SocketAddr, credentials: Credentials, seconds: u64, dir: &Path) -> Run {
    let connections = env_or("CONNECTIONS", 64usize);
    let script = dir.join("load.lua");
    std::fs::write(&script, SCRIPT).unwrap();
    let args = match credentials {
        Credentials::Bearer => vec!["bearer".to_owned(), hs256_bearer("gateway", &["developer"])],
        Credentials::Hmac => {
            // More signed requests than any run can send: none is replayed.
            let file = dir.join("signed.http");
            let signer = HmacSigner::new("gateway", SECRET).unwrap();
            let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
            for _ in 0..300_000 * seconds {
                let h = signer.sign("POST", "/models");
                write!(
                    out,
                    "POST /models HTTP/1.1\r\nHost: {addr}\r\nX-Service-ID: {}\r\n\
                     X-Timestamp: {}\r\nX-Nonce: {}\r\nX-Signature: {}\r\n\r\n",
                    h.service_id(),
                    h.timestamp(),
                    h.nonce(),
                    h.signature()
                )
                .unwrap();
            }
            out.flush().unwrap();
            vec!["hmac".to_owned(), file.display().to_string()]
        }
    };
    let cpu_before = server_cpu();
    let output = Command::new("taskset")
        .args(["-c", "1", "wrk", "-t1"])
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg("-s")
        .arg(&script)
        .arg(format!("http://{addr}/models"))
        .arg("--")
        .args(&args)
        .output()
        .expect("wrk runs (apt-get install wrk)");
    let cpu = server_cpu() - cpu_before;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "wrk failed: {text}");
    assert!(
        !text.contains("Non-2xx"),
        "some requests were refused:\n{text}"
    );
    let requests: f64 = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's output:\n{text}"));
    let per_second: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rate in wrk's output:\n{text}"));
    Run {
        per_second,
        server_micros: cpu.as_secs_f64() * 1e6 / requests,
    }
}

/// CPU time used so far by every thread of this process (the server's; wrk is another
/// process), from the scheduler's nanosecond counters.
fn server_cpu() -> Duration {
    let nanos: u64 = std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // `cargo bench -- <filter>`: the stacks whose name contains it, beside their bare axum.
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-') && !"loopback".contains(a.as_str()));
    if Command::new("wrk").arg("--version").output().is_err() {
        println!("SKIP loopback: wrk is not installed (apt-get install wrk)");
        return;
    }
    // Everything this process starts from now on runs on core 0; wrk runs on core 1.
    assert!(
        core_affinity::set_for_current(core_affinity::CoreId { id: 0 }),
        "cannot pin the server to core 0"
    );
    let (rounds, seconds) = (env_or("ROUNDS", 5usize), env_or("LOAD_SECONDS", 2u64));
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("loopback");
    std::fs::create_dir_all(&dir).unwrap();
    let stacks: Vec<Stack> = stacks()
        .into_iter()
        .filter(|s| {
            let bare = s.name.starts_with("bare axum") && std::env::var_os("NO_BARE").is_none();
            bare || filter.as_deref().is_none_or(|f| s.name.contains(f))
        })
        .collect();
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); stacks.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); stacks.len()];
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        let mut bare = [None, None];
        for (i, stack) in stacks.iter().enumerate() {
            let _ = std::fs::remove_file(dir.join("audit.jsonl"));
            let (runtime, addr) = serve((stack.app)(&dir));
            load(addr, stack.credentials, 1, &dir);
            let run = load(addr, stack.credentials, seconds, &dir);
            drop(runtime);
            let group = usize::from(stack.credentials == Credentials::Hmac);
            if stack.name.starts_with("bare axum") {
                bare[group] = Some(run);
            }
            runs[i].push(run);
            let bare = bare[group].map_or(f64::NAN, |bare| bare.per_second);
            ratios[i].push(run.per_second / bare);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "\nloopback: server pinned to core 0 (one tokio worker), wrk -t1 -c{} pinned to core 1, \
         median of {rounds} rounds of {seconds} s\n",
        env_or("CONNECTIONS", 64usize)
    );
    println!("| stack | req/s | server CPU per request | vs bare axum |");
    println!("|---|---|---|---|");
    for (i, stack) in stacks.iter().enumerate() {
        println!(
            "| {} | {:.1} k | {:.1} µs | {:.2} |",
            stack.name,
            median(runs[i].iter().map(|r| r.per_second).collect()) / 1000.0,
            median(runs[i].iter().map(|r| r.server_micros).collect()),
            median(ratios[i].clone()),
        );
    }
}
