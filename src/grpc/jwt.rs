//! Bearer tokens checked by an interceptor.

use tonic::service::Interceptor;
use tonic::{Request, Status};

use super::method::method_path;
use crate::jwt::{Claims, JwtConfig, Verdict, authenticate, key_not_found};
use crate::principal::{Offered, Scheme};

/// [`RequireJwtLayer`](crate::jwt::RequireJwtLayer) as a tonic interceptor: the same checks and
/// reason codes, the [`Principal`](crate::Principal) and [`Claims`] in the request's
/// extensions.
///
/// It decides from what it has: static keys, or the keys a [`JwksSource`](crate::jwt::JwksSource)
/// already holds. A token naming a key the set does not have yet is refused
/// (`jwt.unknown_key`) while the set is refreshed in the background, so a retry succeeds; the
/// layer instead waits for the refresh. `public_path`s do not apply: tonic does not tell
/// interceptors the method.
///
/// ```
/// use tower_zerotrust::grpc::JwtInterceptor;
/// use tower_zerotrust::jwt::{Algorithm, JwtConfig, JwtKey};
///
/// # fn main() -> Result<(), tower_zerotrust::ConfigError> {
/// let config = JwtConfig::builder()
///     .key(JwtKey::hmac(Algorithm::HS256, "your-secret-key-of-at-least-32-bytes")?)
///     .issuer("intellirouter")
///     .audience("intellirouter-services")
///     .build()?;
/// let interceptor = JwtInterceptor::new(config);
/// // ModelRegistryServer::with_interceptor(registry, interceptor)
/// # let _ = interceptor; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct JwtInterceptor {
    config: JwtConfig,
}

impl JwtInterceptor {
    /// Checks tokens against `config`.
    pub fn new(config: JwtConfig) -> Self {
        Self { config }
    }
}

impl Interceptor for JwtInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let settings = &*self.config.inner;
        let path = method_path(request.extensions());
        match authenticate(
            settings,
            path.as_deref(),
            request.metadata().as_ref(),
            request.extensions(),
        ) {
            Ok(Verdict::Public) => Ok(request),
            Ok(Verdict::Anonymous) => {
                Offered::record(request.extensions_mut(), Scheme::Bearer);
                Ok(request)
            }
            Ok(Verdict::Verified(principal, claims)) => {
                let extensions = request.extensions_mut();
                principal.attach(extensions).map_err(refused)?;
                extensions.insert::<Claims>(claims);
                Ok(request)
            }
            Ok(Verdict::UnknownKey) => {
                #[cfg(feature = "jwks")]
                if settings.jwks.is_some()
                    && let Ok(runtime) = tokio::runtime::Handle::try_current()
                {
                    // Outside a runtime there is nowhere to fetch: the token is refused all
                    // the same, and the next call from inside one refreshes.
                    runtime.spawn(crate::jwt::refresh_future(&self.config));
                }
                Err(refused(key_not_found(settings)))
            }
            Err(rejection) => Err(refused(rejection)),
        }
    }
}

fn refused(rejection: crate::Rejection) -> Status {
    tracing::debug!(target: "tower_zerotrust::jwt", code = rejection.code(), "gRPC request rejected");
    rejection.into()
}
