//! Certificate identity → `Principal`: which name counts, and which trust domain.
//!
//! Roles for certificate identities are given where every principal's are: by the
//! authorization policy (`PolicyBuilder::assign`, or `principals:` in a YAML policy).

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::PeerIdentity;
use crate::body::ResponseBody;
use crate::error::ConfigError;
use crate::future::RejectOr;
use crate::principal::{AuthMethod, Offered, Principal, Scheme};
use crate::reject::{Origin, Pending, Rejection, RejectionKind};

/// Which name in the certificate is the principal's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityRule {
    /// The subject's common name, as message brokers and most private-CA setups use.
    CommonName,
    /// The SPIFFE ID in the URI SAN (`spiffe://trust-domain/path`).
    SpiffeId,
    /// The first DNS SAN.
    FirstDnsName,
}

/// The validated configuration of an [`MtlsPrincipalLayer`].
#[derive(Debug, Clone)]
pub struct MtlsPrincipalConfig {
    inner: Arc<Settings>,
}

#[derive(Debug)]
struct Settings {
    rule: IdentityRule,
    trust_domain: Option<String>,
    optional: bool,
}

/// Builds an [`MtlsPrincipalConfig`].
#[derive(Debug, Clone)]
#[must_use]
pub struct MtlsPrincipalConfigBuilder {
    rule: IdentityRule,
    trust_domain: Option<String>,
    optional: bool,
}

impl MtlsPrincipalConfig {
    /// A builder: the principal is the subject CN unless [`rule`](MtlsPrincipalConfigBuilder::rule)
    /// says otherwise.
    pub fn builder() -> MtlsPrincipalConfigBuilder {
        MtlsPrincipalConfigBuilder {
            rule: IdentityRule::CommonName,
            trust_domain: None,
            optional: false,
        }
    }
}

impl MtlsPrincipalConfigBuilder {
    /// Which certificate name is the principal's id.
    pub fn rule(mut self, rule: IdentityRule) -> Self {
        self.rule = rule;
        self
    }

    /// Accepts only certificates whose SPIFFE ID is in this trust domain (403 otherwise).
    pub fn trust_domain(mut self, domain: impl Into<String>) -> Self {
        self.trust_domain = Some(domain.into());
        self
    }

    /// Lets requests without a client certificate through without a principal.
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// An empty trust domain.
    pub fn build(self) -> Result<MtlsPrincipalConfig, ConfigError> {
        if self.trust_domain.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::Invalid {
                what: "trust domain",
                reason: "must not be empty".into(),
            });
        }
        Ok(MtlsPrincipalConfig {
            inner: Arc::new(Settings {
                rule: self.rule,
                trust_domain: self.trust_domain,
                optional: self.optional,
            }),
        })
    }
}

impl MtlsPrincipalConfig {
    /// The principal of a connection's certificate, or why there is none.
    #[cfg(feature = "tonic")]
    pub(crate) fn principal(
        &self,
        peer: Option<&PeerIdentity>,
        extensions: &http::Extensions,
    ) -> Result<Option<Principal>, Rejection> {
        self.inner.principal(peer, extensions)
    }
}

impl Settings {
    /// The certificate's identity by the configured rule. A name in the token subjects'
    /// namespace (`jwt:...`) is no certificate identity: it would take a token subject's
    /// roles and quotas.
    fn identity<'a>(&self, peer: &'a PeerIdentity) -> Option<&'a str> {
        let id = match self.rule {
            IdentityRule::CommonName => peer.common_name(),
            IdentityRule::SpiffeId => peer.spiffe_id(),
            IdentityRule::FirstDnsName => peer.dns_names().first().map(String::as_str),
        };
        id.filter(|id| !id.is_empty() && !id.starts_with(crate::principal::TOKEN_SUBJECT_PREFIX))
    }

    /// The principal of `peer`; a certificate refused after it proved an identity (another
    /// trust domain) is told to the audit layer through `extensions`.
    fn principal(
        &self,
        peer: Option<&PeerIdentity>,
        extensions: &http::Extensions,
    ) -> Result<Option<Principal>, Rejection> {
        let Some(peer) = peer else {
            return if self.optional {
                Ok(None)
            } else {
                Err(Rejection::by(
                    Origin::Mtls,
                    RejectionKind::Unauthenticated,
                    "mtls.missing_certificate",
                    "Client certificate required",
                )
                .with_challenge("Mutual-TLS"))
            };
        };
        if let Some(domain) = &self.trust_domain
            && peer.spiffe_trust_domain() != Some(domain.as_str())
        {
            if let Some(proven) = self.identity(peer) {
                Principal::new(proven, AuthMethod::Mtls).refused_after_proof(extensions);
            }
            return Err(Rejection::by(
                Origin::Mtls,
                RejectionKind::Forbidden,
                "mtls.trust_domain",
                "Certificate trust domain not allowed",
            ));
        }
        let id = self.identity(peer).ok_or_else(|| {
            Rejection::by(
                Origin::Mtls,
                RejectionKind::Unauthenticated,
                "mtls.no_identity",
                "Client certificate has no usable identity",
            )
            .with_challenge("Mutual-TLS")
        })?;
        Ok(Some(Principal::new(id, AuthMethod::Mtls)))
    }
}

/// Turns the verified client certificate of the connection ([`PeerIdentity`] in the request's
/// extensions, put there by [`serve_tls`](super::serve_tls) or your own acceptor) into a
/// [`Principal`]. Nothing is parsed per request.
#[derive(Debug, Clone)]
pub struct MtlsPrincipalLayer {
    config: MtlsPrincipalConfig,
}

impl MtlsPrincipalLayer {
    /// A layer with `config`.
    pub fn new(config: MtlsPrincipalConfig) -> Self {
        Self { config }
    }
}

impl<S> Layer<S> for MtlsPrincipalLayer {
    type Service = MtlsPrincipal<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MtlsPrincipal {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service made by [`MtlsPrincipalLayer`].
#[derive(Debug, Clone)]
pub struct MtlsPrincipal<S> {
    inner: S,
    config: MtlsPrincipalConfig,
}

impl<S> MtlsPrincipal<S> {
    inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for MtlsPrincipal<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let peer = req.extensions().get::<Arc<PeerIdentity>>().map(Arc::as_ref);
        let attached = self
            .config
            .inner
            .principal(peer, req.extensions())
            .and_then(|principal| match principal {
                Some(principal) => principal.attach(req.extensions_mut()),
                None => {
                    Offered::record(req.extensions_mut(), Scheme::MutualTls);
                    Ok(())
                }
            });
        let inner = match attached {
            Ok(()) => RejectOr::call(self.inner.call(req)),
            Err(rejection) => RejectOr::reject(Pending::new(rejection, req.headers())),
        };
        ResponseFuture { inner }
    }
}

reject_or_response_future!("MtlsPrincipal");
