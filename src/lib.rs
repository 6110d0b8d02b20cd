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
//!   extensions: HMAC-SHA256 signed requests with replay protection (`hmac`), bearer tokens
//!   (`jwt`), client certificates (`mtls`).
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
//! # Configuration
//!
//! Every layer takes a configuration made by a builder: `FooConfig::builder()`, setters that
//! never fail, and `build()`, which checks everything and returns [`ConfigError`], the crate's
//! one configuration error. A bad deployment stops at start-up with a message naming what to
//! fix, never later as refused requests.
//!
//! Builders that read environment variables do so in `from_env`, which never fails either: a
//! variable that is missing or unusable is reported by `build()` as
//! [`ConfigError::MissingEnv`] or [`ConfigError::InvalidEnv`], naming the variable (never its
//! value). Adjust the builder before building: `HmacConfigBuilder::from_env().public_path("/health").build()?`.
//! Where the environment can leave a concern off, `from_env` returns `Option`:
//!
//! | `from_env` | reads | `None` when |
//! |---|---|---|
//! | `HmacConfigBuilder::from_env()` | `SERVICE_SECRET`, `SERVICE_SECRET_PREVIOUS`, `ALLOWED_CALLERS` | — |
//! | `JwtConfigBuilder::from_env()` | `JWT_SECRET`, `JWT_PUBLIC_KEY_FILE`, `JWT_JWKS_URL`, `JWT_ISSUER`, `JWT_AUDIENCE`, `JWT_ROLES_CLAIM` | no key variable is set |
//! | `RateLimitConfigBuilder::from_env()` | `RATE_LIMIT_AVERAGE`, `RATE_LIMIT_BURST` | — |
//! | `TlsConfigBuilder::from_env(prefix, name)` | `{prefix}_TLS_*`, `{prefix}_CERTS_DIR` | `{prefix}_TLS_ENABLED` is off |
//!
//! `HmacSigner::from_env()` (`SERVICE_ID`, `SERVICE_SECRET`) returns the signer itself: it has
//! nothing to adjust.
//!
//! Each concept has one home:
//!
//! * **Who may call at all**: `allow_callers` / `allow_any_caller`, spelled the same on the
//!   HMAC verifier (the scheme's `ALLOWED_CALLERS`: which signers are accepted) and on
//!   `AuthorizeConfigBuilder` (which proven principals, by any proof, may call this service).
//! * **Paths without credentials**: `public_path` on each authentication layer (exact paths such
//!   as `/health`); authorization rules make a route public with `AuthorizeConfigBuilder::public`.
//! * **Roles**: carried by the credential (a token's roles claim), or assigned to a principal's
//!   [qualified id](Principal::qualified_id) by the authorization policy
//!   (`PolicyBuilder::assign`, `principals:` in a YAML policy). HMAC callers and certificate
//!   identities get roles only there.
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---------|---------|--------------|
//! | `hmac`  | yes     | [`hmac`] verify layer, [`sign`] client layer, [`nonce`] stores |
//! | `httpsig` | yes   | [`httpsig`]: HTTP Message Signatures (RFC 9421) verify layer and signer |
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
#[cfg(feature = "jwt")]
mod claims;
pub mod clock;
pub mod decision;
#[cfg(any(
    feature = "hmac",
    feature = "jwt",
    feature = "mtls",
    feature = "rate-limit"
))]
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
#[cfg(feature = "httpsig")]
pub mod httpsig;
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

/// The README's code blocks, compiled by `cargo test --doc` so that the code a user copies from
/// it builds. Doctest builds only: it is not part of the API.
#[cfg(all(
    doctest,
    feature = "hmac",
    feature = "httpsig",
    feature = "jwt",
    feature = "jwks",
    feature = "mtls",
    feature = "axum",
    feature = "authz",
    feature = "rego",
    feature = "rate-limit",
    feature = "audit",
    feature = "tonic"
))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// A boxed error, as `tower` uses them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub use principal::{AuthMethod, Principal};
pub use reject::{Origin, Rejection, RejectionKind};
