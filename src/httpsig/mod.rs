//! HTTP Message Signatures (RFC 9421) with `Content-Digest` (RFC 9530): a signed request
//! proves the principal of the key that signed it, as an HMAC-signed one does.
//!
//! * [`VerifyHttpSigLayer`] verifies the one signature the configuration selects (the only
//!   one, or by label or `tag`; never an ambiguous choice), made with a key configured by
//!   `keyid` ([`HttpSigKey`]: `hmac-sha256`, `ed25519`, `ecdsa-p256-sha256`,
//!   `ecdsa-p384-sha384`, `rsa-pss-sha512`, `rsa-v1_5-sha256`; the key pins the algorithm, an
//!   `alg` parameter that disagrees is refused). The signature must cover `@method`,
//!   `@authority`, `@path`, `@query` (or `@target-uri`) and, with a body, `content-digest`;
//!   `created` must be within the window and a `nonce` is required. The headers are checked
//!   before the body is read; the body is read up to a bound, checked against its digest and
//!   handed on as the same bytes; the nonce is recorded per key once all of that verified.
//! * [`HttpSigSigner`] adds `Content-Digest`, `Signature-Input` and `Signature` to a request;
//!   [`SignHttpLayer`](crate::sign::SignHttpLayer) signs every request of a hyper client or a
//!   tonic channel with it.
//!
//! Both fields are read whole (every line of each: a label given twice, however the lines
//! split, is refused as ambiguous). Derived components follow RFC 9421 §2.2, `@query-param`
//! included; component parameters other than `name` (`sf`, `key`, `bs`, `req`, `tr`) are
//! refused rather than ignored.
//!
//! ```
//! use axum::{Router, routing::post};
//! use tower_zerotrust::httpsig::{HttpSigConfig, HttpSigKey, VerifyHttpSigLayer};
//!
//! # fn main() -> Result<(), tower_zerotrust::ConfigError> {
//! let config = HttpSigConfig::builder()
//!     .key("gateway-2024", HttpSigKey::hmac_sha256(b"a secret of at least thirty-two bytes")?, "gateway")
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/models", post(|| async { "created" }))
//!     .layer(VerifyHttpSigLayer::new(config));
//! # Ok(()) }
//! ```

pub(crate) mod algorithm;
pub(crate) mod base;
mod config;
pub(crate) mod digest;
pub(crate) mod fields;
pub(crate) mod layer;
pub(crate) mod sign;
pub(crate) mod verify;

pub use config::{HttpSigConfig, HttpSigConfigBuilder, HttpSigKey, HttpSigSigner};
pub use layer::{RequestBody, ResponseFuture, VerifyHttpSig, VerifyHttpSigLayer};
