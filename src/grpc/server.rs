//! `SecureGrpcServerBuilder`: a tonic `Server` that admits only proven callers.

use std::sync::Arc;

use tonic::service::{Interceptor, InterceptorLayer};
use tonic::transport::server::ServerTlsConfig;
use tonic::transport::{Certificate, Identity, Server};
use tonic::{Request, Status};
use tower_layer::{Identity as NoLayer, Stack};

use super::status::misconfigured;
use super::{JwtInterceptor, MethodPathLayer, MtlsInterceptor, NO_CREDENTIALS, SecureGrpcError};
use crate::Principal;
use crate::authz::{permission_denied, unauthenticated};
use crate::jwt::JwtConfig;
use crate::mtls::{MtlsPrincipalConfig, TlsConfig};

/// The layers of a server made by [`SecureGrpcServerBuilder`]: the method path recorded, then
/// the [`ServerGuard`].
pub type SecureLayer = Stack<InterceptorLayer<ServerGuard>, Stack<MethodPathLayer, NoLayer>>;

/// Builds a tonic [`Server`] whose every call must prove its caller, as hand-written secure
/// gRPC server builders do: TLS with client certificates (mTLS), JWT bearer tokens, or
/// both, and optionally roles of which the caller must hold at least one.
///
/// * TLS only: the client certificate, verified against the CA, is the caller
///   ([`with_certificate_principals`](Self::with_certificate_principals) picks the rule and
///   roles; the certificate's common name by default).
/// * JWT only: the token's subject and roles are the caller (plaintext HTTP/2: use it behind
///   a TLS-terminating mesh, or add TLS).
/// * Both: the connection must be mTLS and the call must carry a token; the token names the
///   caller, and a token bound to a certificate (`cnf`) must come over that certificate.
///
/// Refusals are UNAUTHENTICATED or PERMISSION_DENIED with the layers' reason codes in the
/// `zerotrust-reason` metadata. Every service added to the server sits behind the checks.
///
/// ```no_run
/// use tower_zerotrust::grpc::SecureGrpcServerBuilder;
/// use tower_zerotrust::jwt::{Algorithm, JwtConfig, JwtKey};
/// use tower_zerotrust::mtls::TlsConfig;
///
/// # async fn run() -> Result<(), tower_zerotrust::BoxError> {
/// # let (_, registry) = tonic_health::server::health_reporter();
/// let tls_config = TlsConfig::new("server.crt", "server.key", "ca.crt")?;
/// let jwt_config = JwtConfig::builder()
///     .key(JwtKey::hmac(Algorithm::HS256, "your-secret-key-of-at-least-32-bytes")?)
///     .issuer("intellirouter")
///     .audience("intellirouter-services")
///     .build()?;
///
/// let mut server = SecureGrpcServerBuilder::new()
///     .with_tls(tls_config)
///     .with_jwt(jwt_config, ["read_models", "write_models"])
///     .build()?;
/// let router = server.add_service(registry);
///
/// let addr = "[::1]:50051".parse()?;
/// router.serve(addr).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Default, Clone)]
#[must_use]
pub struct SecureGrpcServerBuilder {
    tls: Option<TlsConfig>,
    certificates: Option<MtlsPrincipalConfig>,
    jwt: Option<JwtConfig>,
    roles: Vec<String>,
}

impl SecureGrpcServerBuilder {
    /// A builder with no credentials yet: add TLS, JWT or both.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves over TLS with this certificate, requiring client certificates signed by the CA
    /// (unless the config makes them optional). Revocation lists and v1 client certificates
    /// need [`serve_tls`](crate::mtls::serve_tls): tonic's TLS cannot apply them, so
    /// [`build`](Self::build) refuses such a config rather than drop them.
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// How client certificates become principals when there is no JWT.
    pub fn with_certificate_principals(mut self, config: MtlsPrincipalConfig) -> Self {
        self.certificates = Some(config);
        self
    }

    /// Requires a bearer token valid under `config`, whose principal holds at least one of
    /// `roles` (any principal when empty).
    pub fn with_jwt<R: Into<String>>(
        mut self,
        config: JwtConfig,
        roles: impl IntoIterator<Item = R>,
    ) -> Self {
        self.jwt = Some(config);
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// The configured server; add services to it and serve.
    ///
    /// # Errors
    ///
    /// Neither TLS nor JWT was configured, the TLS config needs what tonic's TLS lacks, or
    /// tonic refused the TLS material.
    pub fn build(self) -> Result<Server<SecureLayer>, SecureGrpcError> {
        if self.tls.is_none() && self.jwt.is_none() {
            return Err(NO_CREDENTIALS.into());
        }
        let mut server = Server::builder();
        let mut certificates = None;
        if let Some(tls) = &self.tls {
            let pem = tls.to_pem()?;
            let config = ServerTlsConfig::new()
                .identity(Identity::from_pem(pem.chain, pem.key))
                .client_ca_root(Certificate::from_pem(pem.roots))
                .client_auth_optional(pem.client_certificates_optional);
            server = server.tls_config(config)?;
            let principals = match self.certificates {
                Some(config) => config,
                None => MtlsPrincipalConfig::builder().build()?,
            };
            certificates = Some(MtlsInterceptor::new(principals));
        }
        let guard = ServerGuard {
            certificates,
            jwt: self.jwt.map(JwtInterceptor::new),
            roles: self.roles.into(),
        };
        Ok(server
            .layer(MethodPathLayer)
            .layer(InterceptorLayer::new(guard)))
    }
}

/// The checks of a [`SecureGrpcServerBuilder`] server, as one interceptor.
#[derive(Debug, Clone)]
pub struct ServerGuard {
    certificates: Option<MtlsInterceptor>,
    jwt: Option<JwtInterceptor>,
    roles: Arc<[String]>,
}

impl Interceptor for ServerGuard {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request = match (&mut self.certificates, &mut self.jwt) {
            (certificates, Some(jwt)) => {
                if let Some(certificates) = certificates {
                    // The token names the caller; the certificate is checked against its binding.
                    certificates.identify(&mut request)?;
                }
                jwt.call(request)?
            }
            (Some(certificates), None) => certificates.call(request)?,
            (None, None) => return Err(misconfigured("no credentials configured")),
        };
        let Some(principal) = request.extensions().get::<Principal>() else {
            return Err(unauthenticated(request.extensions()).into());
        };
        if !self.roles.is_empty() && !self.roles.iter().any(|role| principal.has_role(role)) {
            return Err(permission_denied().into());
        }
        Ok(request)
    }
}
