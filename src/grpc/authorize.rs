//! Authorization by gRPC method, in an interceptor.

use tonic::service::Interceptor;
use tonic::{Request, Status};

use super::method::method_path;
use super::status::misconfigured;
use crate::authz::AuthorizeConfig;

/// [`AuthorizeLayer`](crate::authz::AuthorizeLayer) as a tonic interceptor: the first rule
/// matching the gRPC method (`AuthorizeConfigBuilder::grpc`), allowed callers, the policy, and
/// the same reason codes. Put it after an authentication interceptor (see
/// [`chain`](super::chain)).
///
/// Per-method rules need the method, which tonic does not give interceptors: serve with
/// [`MethodPathLayer`](super::MethodPathLayer). A configuration with only a fallback
/// (`otherwise`) — one requirement for the whole service — works without it. ACL checks need
/// I/O: use the [`Authorizer`](crate::authz::Authorizer) in handlers.
#[derive(Debug, Clone)]
pub struct AuthorizeInterceptor {
    config: AuthorizeConfig,
}

impl AuthorizeInterceptor {
    /// Decides by `config`.
    pub fn new(config: AuthorizeConfig) -> Self {
        Self { config }
    }
}

impl Interceptor for AuthorizeInterceptor {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let path = method_path(request.extensions());
        match self
            .config
            .decide_grpc(path.as_deref(), request.extensions())
        {
            Some(Ok(())) => Ok(request),
            Some(Err(rejection)) => Err(rejection.into()),
            None => Err(misconfigured(
                "gRPC method unknown: serve with MethodPathLayer",
            )),
        }
    }
}
