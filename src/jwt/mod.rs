//! JSON Web Tokens: validate `Authorization: Bearer` tokens on the server.
//!
//! [`RequireJwtLayer`] accepts tokens signed by configured keys ([`JwtKey`]: HMAC secrets,
//! RSA/ECDSA/Ed25519 public keys) or by a key set fetched from a URL ([`JwksSource`], feature
//! `jwks`, with OIDC discovery). A verified token gives the request a
//! [`Principal`](crate::Principal) (`sub`, [`AuthMethod::Jwt`](crate::AuthMethod::Jwt), roles
//! from a configurable claim) and its [`Claims`].
//!
//! The checks, in order:
//!
//! | check | refusal (401) | code |
//! |---|---|---|
//! | an `Authorization: Bearer` token is present (scheme case-insensitive) | "Missing bearer token", `WWW-Authenticate: Bearer` | `jwt.missing_token` |
//! | one header, a token, at most 8 KiB | "Malformed token" / "Token too large" | `jwt.malformed`, `jwt.token_too_large` |
//! | the `kid` names a known key (or a key of the token's algorithm when there is no `kid`) | "Unknown signing key" | `jwt.unknown_key` |
//! | no `crit` header (no extension is understood); `typ` absent, `JWT` or `at+jwt` (configurable), never a message token's | "Token requires header extensions this service does not support" / "Token type not accepted" | `jwt.unsupported_critical_header`, `jwt.wrong_token_type` |
//! | the header's `alg` is the key's algorithm (`none`, and HS256 signed with an RSA public key, fail here) | "Token algorithm not allowed" | `jwt.algorithm_not_allowed` |
//! | the signature | "Invalid token signature" | `jwt.invalid_signature` |
//! | `iss` and `aud` present and accepted; `sub`, `exp` and required claims present | "Invalid token issuer" / "Invalid token audience" / "Token is missing a required claim" | `jwt.invalid_issuer`, `jwt.invalid_audience`, `jwt.missing_claim` |
//! | `exp` and `nbf`, with leeway (30 s) | "Token expired" / "Token not yet valid" | `jwt.expired`, `jwt.not_yet_valid` |
//! | a `cnf` claim (RFC 8705): `x5t#S256` is the SHA-256 of the connection's client certificate ([`serve_tls`](crate::mtls::serve_tls)); other confirmation methods fail closed | "Token is bound to another client certificate" / "Token confirmation method not supported" | `jwt.certificate_mismatch`, `jwt.unsupported_confirmation` |
//!
//! Every refusal but the first carries `WWW-Authenticate: Bearer error="invalid_token"`
//! (RFC 6750); gRPC requests get `UNAUTHENTICATED`. A key set that has never loaded gives 503.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_zerotrust::jwt::{Algorithm, JwtConfig, JwtKey, RequireJwtLayer};
//! use tower_zerotrust::sign::TokenIssuer;
//! use tower_zerotrust::Principal;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let secret = "a shared secret of at least 32 bytes";
//! let config = JwtConfig::builder()
//!     .key(JwtKey::hmac(Algorithm::HS256, secret)?)
//!     .issuer("intellirouter")
//!     .audience("intellirouter-services")
//!     .build()?;
//! let service = ServiceBuilder::new()
//!     .layer(RequireJwtLayer::new(config))
//!     .service_fn(|req: Request<String>| async move {
//!         let p = req.extensions().get::<Principal>().unwrap();
//!         Ok::<_, Infallible>(Response::new(format!("{} {:?}", p.id(), p.roles())))
//!     });
//!
//! // A token minted for the right issuer and audience is accepted...
//! let issuer = TokenIssuer::hmac(Algorithm::HS256, secret, "intellirouter", "intellirouter-services")?;
//! let token = issuer.mint("router_core", &["route_requests"])?;
//! let request = Request::get("/").header("authorization", format!("Bearer {token}")).body(String::new())?;
//! let response = service.clone().oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! // ...and a request without one is refused.
//! let response = service.oneshot(Request::get("/").body(String::new())?).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(response.headers()["www-authenticate"], "Bearer");
//! # Ok(()) }
//! ```
//!
//! # Security considerations
//!
//! * The key decides the algorithm. A token cannot choose `none`, or make an RSA public key
//!   act as an HMAC secret.
//! * `iss` and `aud` are required in the configuration and in every token; `exp` and `sub`
//!   in every token.
//! * Tokens are bearer credentials: anyone holding one can use it until it expires. Keep
//!   lifetimes short and use TLS; bind tokens to client certificates where mTLS is available.

mod cache;
mod claims;
mod config;
mod future;
#[cfg(feature = "jwks")]
mod jwks;
mod keys;
mod layer;
mod service;
mod validate;
#[cfg(test)]
mod wycheproof;

pub use crate::claims::Claims;
pub use config::{JwtConfig, JwtConfigBuilder};
pub use future::ResponseFuture;
#[cfg(feature = "jwks")]
pub use jwks::{JwksError, JwksSource, JwksSourceBuilder};
pub use keys::{Algorithm, JwtKey};
pub use layer::RequireJwtLayer;
pub use service::RequireJwt;

#[cfg(any(feature = "redis", all(feature = "tonic", feature = "jwks")))]
pub(crate) use future::refresh_future;
#[cfg(feature = "tonic")]
pub(crate) use validate::authenticate;
#[cfg(feature = "redis")]
pub(crate) use validate::{MESSAGE_TOKEN_TYPE, authenticate_message, message_audience};
#[cfg(any(feature = "redis", feature = "tonic"))]
pub(crate) use validate::{Verdict, key_not_found};

/// Records a refusal: path, reason, never the token.
fn log_rejection<B>(rejection: &crate::Rejection, request: &http::Request<B>) {
    tracing::debug!(
        target: "tower_zerotrust::jwt",
        method = request.method().as_str(),
        path = request.uri().path(),
        code = rejection.code(),
        reason = rejection.message(),
        "request rejected"
    );
}
