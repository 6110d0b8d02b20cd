use tower_layer::Layer;

use super::JwtConfig;
use super::service::RequireJwt;

/// Validates `Authorization: Bearer` tokens and inserts the caller's
/// [`Principal`](crate::Principal) and [`Claims`](super::Claims).
///
/// See the [module docs](super) for the checks and an example.
#[derive(Debug, Clone)]
pub struct RequireJwtLayer {
    config: JwtConfig,
}

impl RequireJwtLayer {
    /// A layer that validates with `config`.
    pub fn new(config: JwtConfig) -> Self {
        Self { config }
    }
}

impl<S> Layer<S> for RequireJwtLayer {
    type Service = RequireJwt<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireJwt::new(inner, self.config.clone())
    }
}
