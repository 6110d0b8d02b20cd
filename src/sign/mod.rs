//! The client side: sign outgoing requests so that a [`VerifyHmacLayer`](crate::hmac::VerifyHmacLayer)
//! (or a service of the scheme it replaces) accepts them.
//!
//! * [`SignHmacLayer`] signs every request that passes through a `tower` client stack: a tonic
//!   `Channel`, a hyper-util `Client`, or any `Service<http::Request<B>>`.
//! * [`HmacSigner::sign`] returns the four headers for any other client (reqwest, curl, ...).
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

mod hmac;
mod layer;

pub use self::hmac::{HmacSigner, SignedHeaders};
pub use layer::{SignHmac, SignHmacLayer};
