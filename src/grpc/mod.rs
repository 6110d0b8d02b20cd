//! tonic-native ergonomics (feature `tonic`): the checks of the layers as tonic
//! [`Interceptor`]s, and secure server and client builders.
//!
//! **Interceptors** attach per service (`FooServer::with_interceptor(svc, i)`) or per client
//! (`FooClient::with_interceptor(channel, i)`), and decide synchronously from the request's
//! metadata and extensions. They put the same [`Principal`](crate::Principal) into the
//! request's extensions as the layers, and refuse with the same reason codes (in the
//! [`zerotrust-reason`](crate::reject::REASON) metadata) as `tonic::Status`
//! UNAUTHENTICATED / PERMISSION_DENIED / UNAVAILABLE:
//!
//! | server | checks | the layer form |
//! |---|---|---|
//! | [`JwtInterceptor`] | bearer tokens (static keys, or keys a JWKS source already holds) | [`RequireJwtLayer`](crate::jwt::RequireJwtLayer) |
//! | [`MtlsInterceptor`] | the client certificate of tonic's TLS, parsed once and cached | [`MtlsPrincipalLayer`](crate::mtls::MtlsPrincipalLayer) |
//! | [`HmacInterceptor`] | HMAC signatures, nonces in memory | [`VerifyHmacLayer`](crate::hmac::VerifyHmacLayer) |
//! | [`AuthorizeInterceptor`] | rules per gRPC method, the policy | [`AuthorizeLayer`](crate::authz::AuthorizeLayer) |
//!
//! | client | adds | the layer form |
//! |---|---|---|
//! | [`SignHmacInterceptor`] | HMAC signature headers | [`SignHmacLayer`](crate::sign::SignHmacLayer) |
//! | [`BearerInterceptor`] | `Authorization: Bearer` | [`AddBearerLayer`](crate::sign::AddBearerLayer) |
//!
//! Checks that need I/O — a Redis nonce store, fetching a JWKS, an ACL source, shared rate
//! limits — cannot run in an interceptor: use the layers (`Server::builder().layer(..)`).
//! tonic does not tell interceptors the gRPC method; [`MethodPathLayer`] records it for the
//! interceptors that need it (HMAC, per-method authorization). [`chain`] runs several
//! interceptors as one.
//!
//! **Builders**: [`SecureGrpcServerBuilder`] and [`SecureGrpcClientBuilder`] make a secured tonic
//! service in a few lines: TLS and/or JWT, roles, a configured tonic `Server` and a ready
//! `Channel`.
//!
//! ```
//! use tonic::service::interceptor::InterceptedService;
//! use tower_zerotrust::authz::{AuthorizeConfig, Policy, Require};
//! use tower_zerotrust::grpc::{AuthorizeInterceptor, JwtInterceptor, MethodPathLayer, chain};
//! use tower_zerotrust::jwt::{Algorithm, JwtConfig, JwtKey};
//!
//! # fn main() -> Result<(), tower_zerotrust::ConfigError> {
//! let jwt = JwtConfig::builder()
//!     .key(JwtKey::hmac(Algorithm::HS256, "your-secret-key-of-at-least-32-bytes")?)
//!     .issuer("intellirouter")
//!     .audience("intellirouter-services")
//!     .build()?;
//! let rules = AuthorizeConfig::builder(Policy::example_roles())
//!     .grpc("/grpc.health.v1.Health/Check", Require::permission("models:read"))
//!     .build()?;
//! let (_, health) = tonic_health::server::health_reporter();
//! let guarded = InterceptedService::new(
//!     health,
//!     chain(JwtInterceptor::new(jwt), AuthorizeInterceptor::new(rules)),
//! );
//! let router = tonic::transport::Server::builder()
//!     .layer(MethodPathLayer)
//!     .add_service(guarded);
//! # let _ = router; Ok(()) }
//! ```

mod authorize;
mod certificate;
mod channel;
mod client;
mod hmac;
mod jwt;
mod method;
mod server;
mod status;

pub use authorize::AuthorizeInterceptor;
pub use certificate::MtlsInterceptor;
pub use channel::{ClientCredentials, SecureChannel, SecureGrpcClientBuilder};
pub use client::{BearerInterceptor, SignHmacInterceptor};
pub use hmac::HmacInterceptor;
pub use jwt::JwtInterceptor;
pub use method::{MethodPath, MethodPathLayer, RecordMethodPath};
pub use server::{SecureGrpcServerBuilder, SecureLayer, ServerGuard};

use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Why a secure builder could not make its server or channel: a configuration to fix, or a
/// connection that failed (which may succeed when retried).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecureGrpcError {
    /// The configuration is invalid or would not be secure (for example
    /// [`ConfigError::Insecure`](crate::ConfigError::Insecure) when neither TLS nor JWT is
    /// configured).
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    /// tonic refused the TLS material or the URL, or could not connect.
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
}

/// The refusal when neither TLS nor JWT is configured.
pub(crate) const NO_CREDENTIALS: crate::ConfigError =
    crate::ConfigError::Insecure("no credentials configured: add TLS, JWT or both");

/// Runs `first`, then `second` on what it let through: one interceptor for a service that
/// needs several (authenticate, then authorize). Nest it for more.
pub fn chain<A, B>(first: A, second: B) -> Chain<A, B>
where
    A: Interceptor,
    B: Interceptor,
{
    Chain { first, second }
}

/// Two interceptors in a row; see [`chain`].
#[derive(Debug, Clone)]
pub struct Chain<A, B> {
    first: A,
    second: B,
}

impl<A: Interceptor, B: Interceptor> Interceptor for Chain<A, B> {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let request = self.first.call(request)?;
        self.second.call(request)
    }
}
