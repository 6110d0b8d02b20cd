//! The client side: credentials on outgoing requests, so that the server layers accept them.
//!
//! * [`SignHmacLayer`] signs every request that passes through a `tower` client stack (a tonic
//!   `Channel`, a hyper-util `Client`, or any `Service<http::Request<B>>`) for a
//!   [`VerifyHmacLayer`](crate::hmac::VerifyHmacLayer); [`HmacSigner::sign`] returns the four
//!   headers for any other client (reqwest, curl, ...). Feature `hmac`.
//! * [`AddBearerLayer`] attaches `Authorization: Bearer` from a [`TokenSource`]: a static token,
//!   tokens a [`TokenIssuer`] mints and [`MintedToken`] caches until 80 % of their lifetime, or
//!   any async function. Feature `jwt`.
//! * [`SignHttpLayer`] signs every request per RFC 9421 (HTTP Message Signatures) with an
//!   [`HttpSigSigner`](crate::httpsig::HttpSigSigner), the body's `Content-Digest` included, for
//!   a [`VerifyHttpSigLayer`](crate::httpsig::VerifyHttpSigLayer). Feature `httpsig`.
//!
//! # Example
//!
//! ```
//! use tower_zerotrust::sign::HmacSigner;
//!
//! # fn main() -> Result<(), tower_zerotrust::ConfigError> {
//! let signer = HmacSigner::new("gateway", "3f8a2c9d1e7b4f60a5c8d2e9f1b3a7c4")?;
//! let headers = signer.sign("POST", "/execute");
//! assert_eq!(headers.service_id(), "gateway");
//! assert!(headers.signature().starts_with("sha256="));
//! for (name, value) in headers.iter() {
//!     println!("{name}: {value}");
//! }
//! # Ok(()) }
//! ```
//!
//! On a tonic channel:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tower::ServiceBuilder;
//! use tower_zerotrust::sign::{HmacSigner, SignHmacLayer};
//!
//! let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051")
//!     .connect()
//!     .await?;
//! let channel = ServiceBuilder::new()
//!     .layer(SignHmacLayer::new(HmacSigner::from_env()?))
//!     .service(channel);
//! // let client = MyServiceClient::new(channel);
//! # Ok(()) }
//! ```

#[cfg(feature = "jwt")]
mod add_bearer;
#[cfg(feature = "jwt")]
mod bearer;
#[cfg(feature = "hmac")]
mod hmac;
#[cfg(feature = "httpsig")]
mod httpsig;
#[cfg(feature = "hmac")]
mod layer;

#[cfg(feature = "hmac")]
pub use self::hmac::{HmacSigner, SignedHeaders};
#[cfg(feature = "jwt")]
pub use add_bearer::{AddBearer, AddBearerLayer, BearerFuture};
#[cfg(feature = "jwt")]
pub use bearer::{
    MintError, MintedToken, StaticToken, TokenFn, TokenIssuer, TokenSource, token_fn,
};
#[cfg(feature = "httpsig")]
pub use httpsig::{SignHttp, SignHttpLayer, SignableBody};
#[cfg(feature = "hmac")]
pub use layer::{SignHmac, SignHmacLayer};
