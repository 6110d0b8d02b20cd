//! `SecureGrpcClientBuilder`: a tonic `Channel` that proves this service on every
//! call.

use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use super::{BearerInterceptor, NO_CREDENTIALS, SecureGrpcError};
use crate::error::ConfigError;
use crate::mtls::TlsConfig;
use crate::sign::{MintedToken, TokenIssuer};

/// A channel made by [`SecureGrpcClientBuilder`]: give it to a generated client,
/// `ModelRegistryClient::new(channel)`.
pub type SecureChannel = InterceptedService<Channel, ClientCredentials>;

/// Builds a tonic channel that presents this service's credentials, as hand-written secure
/// gRPC client builders do: a client certificate (mTLS) and/or a JWT minted for this
/// service with its roles (cached, re-minted when 80 % of its lifetime has passed).
///
/// ```no_run
/// use tower_zerotrust::grpc::SecureGrpcClientBuilder;
/// use tower_zerotrust::jwt::Algorithm;
/// use tower_zerotrust::mtls::TlsConfig;
/// use tower_zerotrust::sign::TokenIssuer;
///
/// # async fn run() -> Result<(), tower_zerotrust::BoxError> {
/// let tls_config = TlsConfig::new("router.crt", "router.key", "ca.crt")?;
/// // what a `JwtConfig { secret, issuer, audience, expiration_seconds }` holds:
/// let jwt_authenticator = TokenIssuer::hmac(
///     Algorithm::HS256,
///     "your-secret-key-of-at-least-32-bytes",
///     "intellirouter",
///     "intellirouter-services",
/// )?
/// .with_lifetime(std::time::Duration::from_secs(3600));
///
/// let channel = SecureGrpcClientBuilder::new("intellirouter.local")
///     .with_tls(tls_config)
///     .with_jwt(jwt_authenticator, "router_core", ["route_requests"])
///     .build("https://localhost:50051")
///     .await?;
/// // let client = ModelRegistryClient::new(channel);
/// # let _ = channel; Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct SecureGrpcClientBuilder {
    domain_name: String,
    tls: Option<TlsConfig>,
    token: Option<MintedToken>,
    plaintext_tokens: bool,
}

impl SecureGrpcClientBuilder {
    /// A builder for a server whose certificate names `domain_name`.
    pub fn new(domain_name: impl Into<String>) -> Self {
        Self {
            domain_name: domain_name.into(),
            tls: None,
            token: None,
            plaintext_tokens: false,
        }
    }

    /// Connects over TLS, trusting only the config's CA and presenting its certificate.
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sends a token minted by `issuer` for `service_id` with `roles` on every call.
    pub fn with_jwt<R: Into<String>>(
        mut self,
        issuer: TokenIssuer,
        service_id: impl Into<String>,
        roles: impl IntoIterator<Item = R>,
    ) -> Self {
        self.token = Some(MintedToken::new(issuer, service_id, roles));
        self
    }

    /// Lets bearer tokens go to a host other than loopback over plain `http://` (refused
    /// otherwise: anyone on the path could replay them). Only for networks that encrypt and
    /// authenticate every hop themselves, such as a service mesh; logged at warn level.
    pub fn danger_allow_plaintext_tokens(mut self) -> Self {
        self.plaintext_tokens = true;
        self
    }

    /// Connects to `url` (`https://` with TLS) now.
    ///
    /// # Errors
    ///
    /// No credentials configured, TLS with a plaintext URL, bearer tokens without TLS to a host
    /// other than loopback, a bad URL or TLS material, or the connection failed.
    pub async fn build(self, url: &str) -> Result<SecureChannel, SecureGrpcError> {
        let (endpoint, credentials) = self.endpoint(url)?;
        Ok(InterceptedService::new(
            endpoint.connect().await?,
            credentials,
        ))
    }

    /// As [`build`](Self::build), connecting on first use.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build), but for the connection itself.
    pub fn build_lazy(self, url: &str) -> Result<SecureChannel, SecureGrpcError> {
        let (endpoint, credentials) = self.endpoint(url)?;
        Ok(InterceptedService::new(
            endpoint.connect_lazy(),
            credentials,
        ))
    }

    fn endpoint(self, url: &str) -> Result<(Endpoint, ClientCredentials), SecureGrpcError> {
        if self.tls.is_none() && self.token.is_none() {
            return Err(NO_CREDENTIALS.into());
        }
        let mut endpoint = Endpoint::from_shared(url.to_owned())?;
        let plaintext = endpoint.uri().scheme_str() != Some("https");
        let remote = !endpoint
            .uri()
            .host()
            .is_some_and(crate::peer::is_loopback_host);
        if self.token.is_some() && self.tls.is_none() && plaintext && remote {
            if !self.plaintext_tokens {
                return Err(ConfigError::Insecure(
                    "bearer tokens would be sent in plaintext to a host other than loopback: use \
                     TLS, or SecureGrpcClientBuilder::danger_allow_plaintext_tokens behind a \
                     network that encrypts",
                )
                .into());
            }
            tracing::warn!(target: "tower_zerotrust::grpc", %url, "sending bearer tokens in plaintext, as danger_allow_plaintext_tokens allows");
        }
        if let Some(tls) = &self.tls {
            if endpoint.uri().scheme_str() != Some("https") {
                return Err(
                    ConfigError::Insecure("TLS is configured but the URL is not https://").into(),
                );
            }
            let pem = tls.to_pem()?;
            endpoint = endpoint.tls_config(
                ClientTlsConfig::new()
                    .domain_name(self.domain_name)
                    .ca_certificate(Certificate::from_pem(pem.roots))
                    .identity(Identity::from_pem(pem.chain, pem.key)),
            )?;
        }
        let credentials = ClientCredentials {
            bearer: self.token.map(BearerInterceptor::from),
        };
        Ok((endpoint, credentials))
    }
}

/// What a [`SecureChannel`] adds to each call: the bearer token, when there is one (the
/// certificate goes with the connection).
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    bearer: Option<BearerInterceptor>,
}

impl Interceptor for ClientCredentials {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        match &mut self.bearer {
            Some(bearer) => bearer.call(request),
            None => Ok(request),
        }
    }
}
