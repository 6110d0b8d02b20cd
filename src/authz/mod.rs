//! Authorization: who may do what, decided after authentication and before your service.
//!
//! * [`Policy`]: roles → permissions (YAML, or code) with wildcards (`models:*`, `*`), plus
//!   roles assigned to principals by id.
//!   [`SharedPolicy`] reloads it while serving.
//! * [`AuthorizeLayer`]: route rules ((method, path pattern) or gRPC method → [`Require`]),
//!   public routes, an allowed-callers list (a row of a [`TrustMatrix`]), default deny.
//!   401 without a principal, 403 without the permission (gRPC: UNAUTHENTICATED /
//!   PERMISSION_DENIED).
//! * [`Authorizer`]: the same decisions inside handlers, and resource-level checks against an
//!   [`AclCache`] over your [`AclSource`].
//!
//! Place the layer so that authentication runs first: in a `ServiceBuilder`, list the
//! authentication layer before `AuthorizeLayer`; with `Router::layer` calls, add
//! `AuthorizeLayer` first and the authentication layer after it.

mod acl;
mod engine;
mod layer;
mod permission;
mod policy;
#[cfg(feature = "rego")]
mod rego;
mod rules;
mod trust;

pub use acl::{AclCache, AclCacheBuilder, AclError, AclSource};
pub use engine::{DecisionRequest, Engine, EngineDecision, PolicyEngine};
pub use layer::{
    Authorize, AuthorizeConfig, AuthorizeConfigBuilder, AuthorizeLayer, Authorizer, ResponseFuture,
};
pub use policy::{Policy, PolicyBuilder, SharedPolicy};
#[cfg(feature = "rego")]
pub use rego::{DEFAULT_QUERY, RegoPolicy, RegoPolicyBuilder};
pub use rules::Require;
pub use trust::{TrustMatrix, TrustMatrixBuilder};

#[cfg(feature = "tonic")]
pub(crate) use layer::{permission_denied, unauthenticated};
