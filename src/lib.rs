//! Zero-trust service-to-service security as composable [`tower`](https://docs.rs/tower) layers
//! for axum routers, tonic services and any other `tower` HTTP service.
//!
//! "Never trust, always verify": every request proves who sent it before it reaches your code.
//!
//! ```text
//! request ─▶ Audit ─▶ RateLimit ─▶ Authorize ─▶ authenticate (HMAC | JWT | mTLS) ─▶ your service
//!                         ▲            ▲                     │
//!                         │            └──── reads Principal ┤ (request extensions)
//!                         └───────────────── reads Principal ┘
//! ```
//!
//! * **Authentication layers** turn credentials into a [`Principal`] in the request's
//!   extensions. Today: [`hmac::VerifyHmacLayer`] (HMAC-SHA256 signed requests with replay
//!   protection).
//! * **Rejections** ([`Rejection`]) become 401/403/429/503 `application/problem+json` responses,
//!   or trailers-only gRPC statuses when the request is gRPC, so the same layer serves axum and
//!   tonic.
//! * **Client side** ([`sign`]): layers that sign outgoing requests, for a tonic `Channel`, a
//!   hyper-util client or anything else.
//! * **Shared state** ([`nonce`]) sits behind a trait, with a bounded in-memory default.
//!
//! # Quick start (axum)
//!
//! ```
//! use axum::{Router, routing::{get, post}};
//! use tower_zerotrust::Principal;
//! use tower_zerotrust::hmac::{HmacConfig, VerifyHmacLayer};
//!
//! # fn main() -> Result<(), tower_zerotrust::ConfigError> {
//! let config = HmacConfig::builder()
//!     .secret("a secret of at least thirty-two bytes")
//!     .allow_callers(["gateway", "heartbeat"])
//!     .public_path("/health")
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/execute", post(|caller: Principal| async move { caller.id().to_owned() }))
//!     .route("/health", get(|| async { "ok" }))
//!     .layer(VerifyHmacLayer::new(config));
//! # Ok(()) }
//! ```
//!
//! With tonic, put the same layer on the server (`Server::builder().layer(...)`) and read the
//! caller in a handler with `request.extensions().get::<Principal>()`.
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---------|---------|--------------|
//! | `hmac`  | yes     | [`hmac`] verify layer, [`sign`] client layer, [`nonce`] stores |
//! | `jwt`   | yes     | [`jwt`] validation layer, token issuer and bearer client layer |
//! | `jwks`  | no      | key sets by URL and OIDC discovery for [`jwt`] |
//! | `mtls`  | yes     | [`mtls`]: rustls configs, TLS serving, certificate principals |
//! | `axum`  | yes     | `Principal` extractor, `IntoResponse` for `Rejection` |
//! | `authz` | yes     | [`authz`]: RBAC policy, route rules, trust matrix, cached ACLs |
//! | `rate-limit` | yes | [`rate_limit`]: keyed GCRA quotas (governor) |
//! | `audit` | yes     | [`audit`]: one JSON event per request, `tracing` and JSON-lines sinks |
//! | `metrics` | no    | [`metrics`]: request counters and gauges through the `metrics` facade |
//! | `tonic` | no      | [`grpc`]: tonic interceptors, and secure gRPC server and client builders |
//! | `redis` | no      | [`redis`]: state shared by replicas — the Redis nonce store, distributed rate limits, signed pub/sub |
//! | `full`  | no      | everything |

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

#[macro_use]
mod macros;

pub mod body;
pub mod clock;
#[cfg(any(feature = "hmac", feature = "jwt"))]
mod env;
mod error;
#[cfg(any(
    feature = "hmac",
    feature = "jwt",
    feature = "mtls",
    feature = "authz",
    feature = "rate-limit"
))]
mod future;
mod integration;
pub mod peer;
#[cfg(any(feature = "authz", feature = "mtls", feature = "metrics"))]
mod periodic;
mod principal;
#[cfg(any(feature = "hmac", feature = "jwt"))]
mod public;
pub mod reject;

#[cfg(feature = "audit")]
pub mod audit;
#[cfg(feature = "authz")]
pub mod authz;
#[cfg(test)]
mod fuzz;
#[cfg(feature = "tonic")]
pub mod grpc;
#[cfg(feature = "hmac")]
pub mod hmac;
#[cfg(feature = "jwt")]
pub mod jwt;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "mtls")]
pub mod mtls;
#[cfg(feature = "hmac")]
pub mod nonce;
#[cfg(feature = "redis")]
pub mod pubsub;
#[cfg(feature = "rate-limit")]
pub mod rate_limit;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(any(feature = "hmac", feature = "jwt"))]
pub mod sign;

pub use error::ConfigError;

/// A boxed error, as `tower` uses them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub use principal::{AuthMethod, Principal};
pub use reject::{Origin, Rejection, RejectionKind};
