//! The authorize layer: route rules, the caller trust list and the policy, decided before the
//! request reaches the service.

use std::collections::HashSet;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::acl::AclCache;
use super::engine::{DecisionRequest, Engine, EngineDecision};
use super::policy::{Policy, SharedPolicy};
use super::rules::{Require, Rule};
use crate::body::ResponseBody;
use crate::decision::{Disagreement, Enforcement, Explanation, Note, ShadowRefusal, tell};
use crate::error::ConfigError;
use crate::future::RejectOr;
use crate::principal::Principal;
use crate::reject::{Origin, Pending, Rejection, RejectionKind};

/// The validated configuration of an [`AuthorizeLayer`].
#[derive(Debug, Clone)]
pub struct AuthorizeConfig {
    inner: Arc<Settings>,
}

#[derive(Debug)]
struct Settings {
    policy: SharedPolicy,
    rules: Vec<Rule>,
    fallback: Option<Require>,
    callers: Option<HashSet<Box<str>>>,
    acl: Option<AclCache>,
    enforcement: Enforcement,
    candidate: Option<Engine>,
}

/// Builds an [`AuthorizeConfig`]: a policy, then rules matched in the order they are added.
#[derive(Debug)]
#[must_use]
pub struct AuthorizeConfigBuilder {
    policy: SharedPolicy,
    rules: Vec<(Option<Method>, String, Require)>,
    fallback: Option<Require>,
    callers: Option<Vec<String>>,
    acl: Option<AclCache>,
    enforcement: Enforcement,
    candidate: Option<Engine>,
}

impl AuthorizeConfig {
    /// A builder deciding with `policy` (a [`Policy`], or a [`SharedPolicy`] to reload while
    /// serving). With no rules, every request is denied.
    pub fn builder(policy: impl Into<SharedPolicy>) -> AuthorizeConfigBuilder {
        AuthorizeConfigBuilder {
            policy: policy.into(),
            rules: Vec::new(),
            fallback: None,
            callers: None,
            acl: None,
            enforcement: Enforcement::Enforce,
            candidate: None,
        }
    }

    /// One requirement for every request: the form for a layer on a single axum route or a
    /// single tonic service.
    ///
    /// # Errors
    ///
    /// A malformed permission or role name.
    pub fn require(policy: impl Into<SharedPolicy>, require: Require) -> Result<Self, ConfigError> {
        Self::builder(policy).otherwise(require).build()
    }

    /// The handle for decisions inside handlers.
    pub fn authorizer(&self) -> Authorizer {
        Authorizer {
            policy: self.inner.policy.clone(),
            acl: self.inner.acl.clone(),
        }
    }
}

impl AuthorizeConfigBuilder {
    /// Requests with this method whose path matches `pattern` need `require`. Patterns use
    /// axum's syntax: `/models/{id}`, `/files/{*rest}`; see also [`grpc`](Self::grpc).
    pub fn route(mut self, method: Method, pattern: impl Into<String>, require: Require) -> Self {
        self.rules.push((Some(method), pattern.into(), require));
        self
    }

    /// Requests with any method whose path matches `pattern` need `require`.
    pub fn any_method(mut self, pattern: impl Into<String>, require: Require) -> Self {
        self.rules.push((None, pattern.into(), require));
        self
    }

    /// Calls of a gRPC method, `/package.Service/Method` (or `/package.Service/*` for all of a
    /// service's methods), need `require`.
    pub fn grpc(self, method: impl Into<String>, require: Require) -> Self {
        self.any_method(method, require)
    }

    /// `method pattern` needs nobody to be proven.
    pub fn public(self, method: Method, pattern: impl Into<String>) -> Self {
        self.route(method, pattern, Require::Public)
    }

    /// What requests that match no rule need; without it they are denied (403).
    pub fn otherwise(mut self, require: Require) -> Self {
        self.fallback = Some(require);
        self
    }

    /// Only these principals may call at all (this service's row of a
    /// [`TrustMatrix`](super::TrustMatrix), its `ALLOWED_CALLERS`); others get 403 before any
    /// rule is read. Public routes stay public. Callers are named by
    /// [qualified id](crate::Principal::qualified_id): a bare name is a service identity (HMAC
    /// or certificate), `jwt:<sub>` a token subject.
    pub fn allow_callers<I, C>(mut self, callers: I) -> Self
    where
        I: IntoIterator<Item = C>,
        C: Into<String>,
    {
        self.callers = Some(callers.into_iter().map(Into::into).collect());
        self
    }

    /// The ACL cache that handlers consult through [`Authorizer::check_acl`].
    pub fn acl(mut self, acl: AclCache) -> Self {
        self.acl = Some(acl);
        self
    }

    /// Refuse (the default), or in [`Enforcement::Shadow`] let every request through and
    /// record the refusals that would have been made (audit `metadata.shadow_refusal`,
    /// `zerotrust_shadow_refusals_total`, the debug log).
    pub fn enforcement(mut self, enforcement: Enforcement) -> Self {
        self.enforcement = enforcement;
        self
    }

    /// A candidate policy decided beside the enforced one on every request, never enforced:
    /// each disagreement is recorded with both decisions (audit
    /// `metadata.shadow_disagreement`, `zerotrust_shadow_disagreements_total`, the debug log).
    /// How to move from role rules to a Rego policy with evidence instead of hope.
    pub fn candidate(mut self, engine: impl Into<Engine>) -> Self {
        self.candidate = Some(engine.into());
        self
    }

    /// Checks the rules.
    ///
    /// # Errors
    ///
    /// A malformed path pattern, permission or role name.
    pub fn build(self) -> Result<AuthorizeConfig, ConfigError> {
        let rules = self
            .rules
            .into_iter()
            .map(|(method, pattern, require)| Rule::new(method, &pattern, require))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(fallback) = &self.fallback {
            fallback.check()?;
        }
        Ok(AuthorizeConfig {
            inner: Arc::new(Settings {
                policy: self.policy,
                rules,
                fallback: self.fallback,
                callers: self
                    .callers
                    .map(|c| c.into_iter().map(String::into_boxed_str).collect()),
                acl: self.acl,
                enforcement: self.enforcement,
                candidate: self.candidate,
            }),
        })
    }
}

impl AuthorizeConfig {
    /// The decision for a gRPC `path` (`None` when it is unknown: only a configuration without
    /// per-method rules can decide then).
    #[cfg(feature = "tonic")]
    pub(crate) fn decide_grpc(
        &self,
        path: Option<&str>,
        extensions: &http::Extensions,
    ) -> Option<Result<(), Rejection>> {
        let settings = &self.inner;
        let path = match path {
            Some(path) => path,
            None if settings.rules.is_empty() => "",
            None => return None,
        };
        let uri = http::Uri::try_from(path).unwrap_or_default();
        let headers = http::HeaderMap::new();
        let request = DecisionRequest::new(&Method::POST, &uri, &headers, extensions);
        Some(settings.judge(&request))
    }
}

/// A refusal, with what it was decided by.
struct Refused<'a> {
    rejection: Rejection,
    /// The rule that matched (`None`: the fallback, or no rule at all).
    rule: Option<&'a Rule>,
    require: Option<&'a Require>,
    /// A policy engine's reason.
    reason: Option<String>,
}

impl Settings {
    /// The decision, explained to the audit and the debug log when it refuses, compared with
    /// the candidate's; in shadow mode a refusal is recorded and the request goes through.
    fn judge(&self, request: &DecisionRequest<'_>) -> Result<(), Rejection> {
        let decision = self.decide(request);
        if let Some(candidate) = &self.candidate {
            self.compare(request, &decision, &candidate.decide(request));
        }
        let Err(refused) = decision else {
            return Ok(());
        };
        let principal = request.principal();
        let policy = self.policy.load();
        let explanation = Explanation {
            rule: Some(refused.rule.map_or_else(
                || {
                    if self.fallback.is_some() {
                        "otherwise"
                    } else {
                        "none"
                    }
                    .to_owned()
                },
                |rule| rule.description.to_string(),
            )),
            required: refused.require.map(ToString::to_string),
            roles: principal
                .map(|p| policy.roles_of(p).map(str::to_owned).collect())
                .unwrap_or_default(),
            reason: refused.reason,
        };
        let code = refused.rejection.code();
        tracing::debug!(
            target: "tower_zerotrust::authz",
            caller = principal.map(Principal::id),
            method = %request.method(),
            path = request.uri().path(),
            code,
            rule = explanation.rule.as_deref(),
            required = explanation.required.as_deref(),
            roles = ?explanation.roles,
            reason = explanation.reason.as_deref(),
            mode = self.enforcement.as_str(),
            "request refused"
        );
        tell(request.extensions(), Note::Explanation(explanation));
        match self.enforcement {
            Enforcement::Enforce => Err(refused.rejection),
            Enforcement::Shadow => {
                let refusal = ShadowRefusal {
                    layer: Origin::Authorization.as_str(),
                    code,
                };
                tell(request.extensions(), Note::Shadow(refusal));
                Ok(())
            }
        }
    }

    /// Records a disagreement between the enforced decision and the candidate's.
    fn compare(
        &self,
        request: &DecisionRequest<'_>,
        enforced: &Result<(), Refused<'_>>,
        candidate: &EngineDecision,
    ) {
        let enforced = match enforced {
            Ok(()) => "allow",
            Err(refused) => refused.rejection.code(),
        };
        if (enforced == "allow") == (*candidate == EngineDecision::Allow) {
            return;
        }
        let disagreement = Disagreement {
            layer: Origin::Authorization.as_str(),
            enforced,
            candidate: candidate.as_str(),
        };
        tracing::debug!(
            target: "tower_zerotrust::authz",
            caller = request.principal().map(Principal::id),
            method = %request.method(),
            path = request.uri().path(),
            enforced,
            candidate = disagreement.candidate,
            reason = ?candidate,
            "the candidate policy disagrees"
        );
        tell(request.extensions(), Note::Disagreement(disagreement));
    }

    /// The decision for `request` (its principal, and the schemes offered should nobody be
    /// proven, are in its extensions).
    fn decide(&self, request: &DecisionRequest<'_>) -> Result<(), Refused<'_>> {
        let (method, path) = (request.method(), request.uri().path());
        let principal = request.principal();
        let rule = self.rules.iter().find(|rule| rule.matches(method, path));
        let require = rule.map(|rule| &rule.require).or(self.fallback.as_ref());
        let refused = |rejection, reason| Refused {
            rejection,
            rule,
            require,
            reason,
        };
        if require == Some(&Require::Public) {
            return Ok(());
        }
        if let (Some(principal), Some(callers)) = (principal, &self.callers)
            && !callers.contains(principal.qualified_id())
        {
            let rejection = forbidden("authz.caller_not_allowed", "Caller not allowed");
            return Err(refused(rejection, None));
        }
        if let Some(Require::Engine(engine)) = require {
            return match engine.decide(request) {
                EngineDecision::Allow => Ok(()),
                // Nobody proven: proving who you are may change the answer.
                EngineDecision::Deny { reason, .. } if principal.is_none() => {
                    Err(refused(unauthenticated(request.extensions()), reason))
                }
                EngineDecision::Deny { code, reason } => {
                    Err(refused(forbidden(code, "Permission denied"), reason))
                }
            };
        }
        let Some(principal) = principal else {
            return Err(refused(unauthenticated(request.extensions()), None));
        };
        let Some(require) = require else {
            return Err(refused(forbidden("authz.no_rule", "Access denied"), None));
        };
        if permits(&self.policy.load(), principal, require) {
            Ok(())
        } else {
            Err(refused(permission_denied(), None))
        }
    }
}

/// No proven principal where one is required; the challenge names the schemes offered.
pub(crate) fn unauthenticated(extensions: &http::Extensions) -> Rejection {
    crate::principal::unauthenticated(extensions, Origin::Authorization, "authz.unauthenticated")
}

/// The principal lacks what the rule requires.
pub(crate) fn permission_denied() -> Rejection {
    forbidden("authz.permission_denied", "Permission denied")
}

fn permits(policy: &Policy, principal: &Principal, require: &Require) -> bool {
    match require {
        Require::Public | Require::Authenticated => true,
        Require::Permission(p) => policy.allows(principal, p),
        Require::AllPermissions(ps) => ps.iter().all(|p| policy.allows(principal, p)),
        Require::Role(r) => policy.has_role(principal, r),
        // Decided before the principal is needed.
        Require::Engine(_) => false,
    }
}

fn forbidden(code: &'static str, message: &'static str) -> Rejection {
    Rejection::by(
        Origin::Authorization,
        RejectionKind::Forbidden,
        code,
        message,
    )
}

/// Decisions inside handlers, for checks that depend on the resource: "may this principal do
/// X (on resource Y)". Get it from [`AuthorizeConfig::authorizer`] and keep it in your state.
///
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Authorizer {
    policy: SharedPolicy,
    acl: Option<AclCache>,
}

impl Authorizer {
    /// Whether the principal's roles grant `permission`, under the policy in force.
    pub fn permits(&self, principal: &Principal, permission: &str) -> bool {
        self.policy.load().allows(principal, permission)
    }

    /// [`permits`](Self::permits), or the 403 to answer with.
    ///
    /// # Errors
    ///
    /// `authz.permission_denied`.
    pub fn require(&self, principal: &Principal, permission: &str) -> Result<(), Rejection> {
        if self.permits(principal, permission) {
            Ok(())
        } else {
            Err(permission_denied())
        }
    }

    /// Asks the ACL cache whether the principal may do `permission` on `resource`.
    ///
    /// # Errors
    ///
    /// 403 `authz.acl_denied` when it may not; 503 `authz.acl_unavailable` when the source
    /// failed and nothing is cached, or no ACL cache was configured (fail closed).
    pub async fn check_acl(
        &self,
        principal: &Principal,
        resource: &str,
        permission: &str,
    ) -> Result<(), Rejection> {
        let unavailable = || {
            Rejection::by(
                Origin::Authorization,
                RejectionKind::Unavailable,
                "authz.acl_unavailable",
                "Authorization unavailable",
            )
        };
        let Some(acl) = &self.acl else {
            return Err(unavailable());
        };
        match acl
            .is_allowed(principal.qualified_id(), resource, permission)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(forbidden("authz.acl_denied", "Permission denied")),
            Err(error) => {
                tracing::warn!(target: "tower_zerotrust::authz", %error, "ACL source failed; refusing");
                Err(unavailable())
            }
        }
    }
}

/// Authorizes each request before it reaches the service: public routes pass; otherwise a
/// [`Principal`] must be in the request (put there by an authentication layer that runs
/// before this one), be an allowed caller, and satisfy the first rule that matches the method
/// and path.
///
/// | outcome | HTTP | gRPC | code |
/// |---|---|---|---|
/// | no principal | 401 | UNAUTHENTICATED | `authz.unauthenticated` |
/// | caller not in the allowed callers | 403 | PERMISSION_DENIED | `authz.caller_not_allowed` |
/// | no rule matches and no fallback | 403 | PERMISSION_DENIED | `authz.no_rule` |
/// | the rule's permission or role is not held | 403 | PERMISSION_DENIED | `authz.permission_denied` |
///
/// ```
/// use axum::{Router, routing::get};
/// use http::Method;
/// use tower_zerotrust::authz::{AuthorizeConfig, AuthorizeLayer, Policy, Require};
///
/// # fn main() -> Result<(), tower_zerotrust::ConfigError> {
/// let config = AuthorizeConfig::builder(Policy::example_roles())
///     .public(Method::GET, "/health")
///     .route(Method::GET, "/models", Require::permission("models:read"))
///     .route(Method::DELETE, "/models/{id}", Require::permission("models:delete"))
///     .grpc("/registry.Models/*", Require::Authenticated)
///     .build()?;
/// let app: Router = Router::new()
///     .route("/models", get(|| async { "[]" }))
///     .layer(AuthorizeLayer::new(config));
/// // ...then an authentication layer outside it: `.layer(VerifyHmacLayer::new(...))`.
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AuthorizeLayer {
    config: AuthorizeConfig,
}

impl AuthorizeLayer {
    /// A layer with `config`.
    pub fn new(config: AuthorizeConfig) -> Self {
        Self { config }
    }
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorize {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service made by [`AuthorizeLayer`].
#[derive(Debug, Clone)]
pub struct Authorize<S> {
    inner: S,
    config: AuthorizeConfig,
}

impl<S> Authorize<S> {
    inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Authorize<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let request =
            DecisionRequest::new(req.method(), req.uri(), req.headers(), req.extensions());
        let decision = self.config.inner.judge(&request);
        let inner = match decision {
            Ok(()) => RejectOr::call(self.inner.call(req)),
            Err(rejection) => RejectOr::reject(Pending::new(rejection, req.headers())),
        };
        ResponseFuture { inner }
    }
}

reject_or_response_future!("Authorize");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::AuthMethod;

    fn settings() -> AuthorizeConfig {
        AuthorizeConfig::builder(Policy::example_roles())
            .public(Method::GET, "/health")
            .route(Method::GET, "/models", Require::permission("models:read"))
            .route(
                Method::DELETE,
                "/models/{id}",
                Require::permission("models:delete"),
            )
            .any_method("/whoami", Require::Authenticated)
            .build()
            .unwrap()
    }

    fn code(
        config: &AuthorizeConfig,
        method: Method,
        path: &str,
        roles: Option<&[&str]>,
    ) -> Result<(), &'static str> {
        let mut extensions = http::Extensions::new();
        if let Some(roles) = roles {
            extensions
                .insert(Principal::new("p", AuthMethod::Jwt).with_roles(roles.iter().copied()));
        }
        let uri = http::Uri::try_from(path).unwrap();
        let headers = http::HeaderMap::new();
        config
            .inner
            .decide(&DecisionRequest::new(&method, &uri, &headers, &extensions))
            .map_err(|r| r.rejection.code())
    }

    #[test]
    fn decisions() {
        let c = settings();
        assert_eq!(code(&c, Method::GET, "/health", None), Ok(()));
        assert_eq!(
            code(&c, Method::GET, "/models", None),
            Err("authz.unauthenticated")
        );
        assert_eq!(code(&c, Method::GET, "/models", Some(&["viewer"])), Ok(()));
        assert_eq!(
            code(&c, Method::DELETE, "/models/1", Some(&["viewer"])),
            Err("authz.permission_denied")
        );
        assert_eq!(
            code(&c, Method::DELETE, "/models/1", Some(&["admin"])),
            Ok(())
        );
        assert_eq!(
            code(&c, Method::POST, "/models", Some(&["admin"])),
            Err("authz.no_rule")
        );
        assert_eq!(code(&c, Method::PUT, "/whoami", Some(&[])), Ok(()));
        // Unmatched routes need a principal before they are denied: 401, not 403.
        assert_eq!(
            code(&c, Method::GET, "/elsewhere", None),
            Err("authz.unauthenticated")
        );
    }
}
