//! HMAC-SHA256 signed service-to-service requests, verified on the server.
//!
//! The scheme is the one many teams already run between their services (the
//! `X-Service-ID` / `X-Signature` scheme), byte for byte:
//!
//! | header         | value                                                         |
//! |----------------|---------------------------------------------------------------|
//! | `X-Service-ID` | the caller's id, such as `gateway`                            |
//! | `X-Timestamp`  | Unix time in whole seconds                                    |
//! | `X-Nonce`      | a value the caller never reuses (ours: 128 random bits, hex)  |
//! | `X-Signature`  | `sha256=` + lowercase hex HMAC-SHA256 of the string to sign   |
//!
//! The string to sign is `"{service_id}:{timestamp}:{nonce}:{METHOD}:{path}"` (see
//! [`string_to_sign`]), and the key is the UTF-8 bytes of the secret string.
//!
//! [`VerifyHmacLayer`] checks, in this order, so that no unsigned request can ever write to the
//! nonce store:
//!
//! | check                                            | refusal                                    | code                      |
//! |--------------------------------------------------|--------------------------------------------|---------------------------|
//! | all four headers present                         | 401 "Missing authentication headers"       | `hmac.missing_headers`    |
//! | one value each, visible ASCII, id/nonce ≤ 128 B, no `:` | 401 "Malformed authentication headers" | `hmac.malformed_headers` |
//! | timestamp is digits and within the window (±30 s)| 401 "Request timestamp expired"            | `hmac.timestamp_expired`  |
//! | signature matches a secret the caller may use (constant time) | 401 "Invalid signature"       | `hmac.invalid_signature`  |
//! | caller is in the allowed list, if there is one   | 403 "Service not authorized"               | `hmac.caller_not_allowed` |
//! | nonce not seen for this caller within its TTL    | 401 "Replayed request"                     | `hmac.replayed`           |
//! | nonce store has room and answers                 | 503 "Replay protection unavailable"        | `nonce.store_full`, `nonce.store_unavailable` |
//!
//! A request that passes gets a [`Principal`](crate::Principal) with the caller's id and
//! [`AuthMethod::Hmac`](crate::AuthMethod::Hmac) in its extensions. gRPC requests get the same
//! refusals as gRPC statuses (see [`reject`](crate::reject)).
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_zerotrust::hmac::{HmacConfig, VerifyHmacLayer};
//! use tower_zerotrust::sign::HmacSigner;
//! use tower_zerotrust::Principal;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let secret = "3f8a2c9d1e7b4f60a5c8d2e9f1b3a7c4";
//! let config = HmacConfig::builder()
//!     .secret(secret)
//!     .allow_callers(["gateway"])
//!     .public_path("/health")
//!     .build()?;
//! let service = ServiceBuilder::new()
//!     .layer(VerifyHmacLayer::new(config))
//!     .service_fn(|req: Request<String>| async move {
//!         let caller = req.extensions().get::<Principal>().map(|p| p.id().to_owned());
//!         Ok::<_, Infallible>(Response::new(caller.unwrap_or_default()))
//!     });
//!
//! // A signed request from an allowed caller is accepted...
//! let signer = HmacSigner::new("gateway", secret)?;
//! let mut request = Request::post("/execute").body(String::new())?;
//! signer.sign_request(&mut request);
//! let response = service.clone().oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! // ...and an unsigned one is refused.
//! let response = service.oneshot(Request::post("/execute").body(String::new())?).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! # Ok(()) }
//! ```
//!
//! # Security considerations
//!
//! * **Paths are signed as sent.** The verifier signs `request.uri().path()`: the path exactly
//!   as it appears on the wire, percent-encoding kept (`/a%20b` stays `/a%20b`), no query
//!   string, no normalisation. Clients must sign the path they send, encoded the same way.
//!   A proxy that rewrites or decodes paths between them breaks signatures. In axum, apply
//!   the layer with `Router::layer`/`route_layer` on the outer router: a nested router sees a
//!   stripped path.
//! * **What is not signed**: the query string and the body, as in the scheme this replaces.
//!   Do not let them carry decisions that an attacker able to capture one request must not
//!   change; use TLS underneath.
//! * **Clocks**: callers' clocks must be within the window of the server's. Widening the window
//!   requires a longer nonce TTL (checked at build time).
//! * **Replicas**: the in-memory nonce store protects one process. Several replicas behind a
//!   load balancer need a shared store, or a request accepted by one can be replayed to another.
//! * **Secret rotation**: add the new secret next to the old one (`secret` twice, or
//!   `caller_secret` twice), move the signers over, then drop the old one.

mod canonical;
mod config;
mod future;
mod keys;
mod layer;
mod service;
mod verify;

use http::HeaderName;

pub use canonical::string_to_sign;
pub use config::{HmacConfig, HmacConfigBuilder};
pub use future::ResponseFuture;
pub use layer::VerifyHmacLayer;
pub use service::VerifyHmac;

pub(crate) use canonical::{Fields, SIGNATURE_PREFIX, is_valid_field};
pub(crate) use keys::SigningKey;
#[cfg(feature = "tonic")]
pub(crate) use verify::nonce_rejection;
#[cfg(any(feature = "redis", feature = "tonic"))]
pub(crate) use verify::{Verdict, verify};

/// Records a refusal the way the services this replaces did: caller, endpoint and reason.
/// `proven` says whether the caller id was verified or merely claimed by the request.
fn log_rejection<B>(
    rejection: &crate::Rejection,
    caller: Option<&str>,
    proven: bool,
    request: &http::Request<B>,
) {
    tracing::debug!(
        target: "tower_zerotrust::hmac",
        caller,
        proven,
        method = request.method().as_str(),
        path = request.uri().path(),
        code = rejection.code(),
        reason = rejection.message(),
        "request rejected"
    );
}

/// `X-Service-ID`: the caller's id.
pub const SERVICE_ID: HeaderName = HeaderName::from_static("x-service-id");
/// `X-Timestamp`: Unix seconds when the request was signed.
pub const TIMESTAMP: HeaderName = HeaderName::from_static("x-timestamp");
/// `X-Nonce`: a value never reused by the caller.
pub const NONCE: HeaderName = HeaderName::from_static("x-nonce");
/// `X-Signature`: `sha256=<lowercase hex>`.
pub const SIGNATURE: HeaderName = HeaderName::from_static("x-signature");
