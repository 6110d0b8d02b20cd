//! Who is calling: the one contract shared by every layer.
//!
//! Authentication layers (HMAC today; JWT and mTLS next) insert exactly one [`Principal`] into the
//! request's extensions. Authorization, rate limiting, audit and your handlers read it from there:
//! in axum with the `Principal` extractor (feature `axum`), in tonic with
//! `request.extensions().get::<Principal>()`, anywhere else with
//! `http::Request::extensions`.

use std::fmt;
use std::sync::Arc;

use crate::decision::Note;
use crate::reject::{Origin, Rejection, RejectionKind};

/// How a [`Principal`] proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMethod {
    /// An HMAC-signed request (`X-Service-ID`, `X-Signature`, ...).
    Hmac,
    /// A verified JSON Web Token.
    Jwt,
    /// A client certificate verified during the TLS handshake.
    Mtls,
    /// An HTTP message signature (RFC 9421) made with a configured key: a service identity,
    /// like an HMAC caller.
    HttpSig,
}

impl AuthMethod {
    /// The lower-case name used in JSON and logs: `hmac`, `jwt`, `mtls` or `httpsig`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Hmac => "hmac",
            AuthMethod::Jwt => "jwt",
            AuthMethod::Mtls => "mtls",
            AuthMethod::HttpSig => "httpsig",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A proven caller: its id, how it was proven, and its roles.
///
/// Cheap to clone (the id and roles are shared), so extractors and layers copy it freely.
///
/// # Identity is (proof, id)
///
/// Services prove themselves with an HMAC key or a client certificate; people and workloads
/// with a token from an identity provider. The two live in different namespaces: a token whose
/// `sub` is `gateway` is not the service `gateway`. Configuration that names principals (role
/// assignments, allowed callers and trust-matrix rows, per-principal quotas, ACL lookups) uses
/// the [`qualified_id`](Self::qualified_id): the bare id for a service identity (HMAC caller or
/// certificate), `jwt:<sub>` for a token subject.
///
/// ```
/// use tower_zerotrust::{AuthMethod, Principal};
///
/// let p = Principal::new("gateway", AuthMethod::Hmac).with_roles(["orchestrator"]);
/// assert_eq!(p.id(), "gateway");
/// assert_eq!(p.method(), AuthMethod::Hmac);
/// assert!(p.has_role("orchestrator"));
///
/// // A token subject of the same name is another principal.
/// let token = Principal::new("gateway", AuthMethod::Jwt);
/// assert_eq!(token.qualified_id(), "jwt:gateway");
/// assert_eq!(p.qualified_id(), "gateway");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    id: Arc<str>,
    method: AuthMethod,
    /// `None` for no roles, so that a principal without roles costs one allocation.
    roles: Option<Arc<[String]>>,
    /// `jwt:<id>` for token subjects; service identities use their id.
    qualified: Option<Arc<str>>,
}

/// How configuration names token subjects: `jwt:<sub>`.
pub(crate) const TOKEN_SUBJECT_PREFIX: &str = "jwt:";

impl Principal {
    /// A principal with no roles.
    pub fn new(id: impl Into<Arc<str>>, method: AuthMethod) -> Self {
        let id = id.into();
        let qualified =
            (method == AuthMethod::Jwt).then(|| Arc::from(format!("{TOKEN_SUBJECT_PREFIX}{id}")));
        Self {
            id,
            method,
            roles: None,
            qualified,
        }
    }

    /// Replaces the roles.
    #[must_use]
    pub fn with_roles<I, R>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = R>,
        R: Into<String>,
    {
        let roles: Arc<[String]> = roles.into_iter().map(Into::into).collect();
        self.roles = (!roles.is_empty()).then_some(roles);
        self
    }

    /// The caller's identity: a service id, a token subject, a certificate name.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The name configuration knows this principal by: the id of a service identity (proven
    /// by HMAC or a certificate), `jwt:<sub>` for a token subject. See
    /// [Identity is (proof, id)](Self#identity-is-proof-id).
    pub fn qualified_id(&self) -> &str {
        self.qualified.as_deref().unwrap_or(&self.id)
    }

    /// The id, shared: what audit events name.
    #[cfg_attr(not(feature = "audit"), allow(dead_code))]
    pub(crate) fn shared_id(&self) -> &Arc<str> {
        &self.id
    }

    /// The qualified id, shared: a key that costs no allocation and keeps namespaces apart.
    #[cfg_attr(not(feature = "rate-limit"), allow(dead_code))]
    pub(crate) fn shared_qualified_id(&self) -> &Arc<str> {
        self.qualified.as_ref().unwrap_or(&self.id)
    }

    /// Puts the principal into a request's extensions, and tells the audit layer, if the
    /// request is audited.
    ///
    /// One request names one caller. A request credential (an HMAC signature, a bearer token)
    /// names it; a client certificate names it only when the request carries neither, so a
    /// certificate's principal gives way to a request credential's and never replaces one.
    /// Two request credentials naming different callers are refused.
    #[cfg_attr(
        not(any(feature = "hmac", feature = "jwt", feature = "mtls")),
        allow(dead_code)
    )]
    pub(crate) fn attach(self, extensions: &mut http::Extensions) -> Result<(), Rejection> {
        if let Some(existing) = extensions.get::<Principal>() {
            match (existing.method, self.method) {
                (_, AuthMethod::Mtls) => return Ok(()),
                (AuthMethod::Mtls, _) => {}
                _ if *existing == self => return Ok(()),
                _ => {
                    return Err(Rejection::by(
                        Origin::Authentication,
                        RejectionKind::Unauthenticated,
                        "auth.multiple_credentials",
                        "Request carries credentials of more than one caller",
                    ));
                }
            }
        }
        if let Some(slot) = extensions.get::<PrincipalSlot>() {
            slot.set(self.clone());
        }
        extensions.insert(self);
        Ok(())
    }

    /// Tells an outer layer that listens (the audit layer) who proved itself, when the
    /// request is refused after the proof: a caller outside an allowed list, a certificate from
    /// another trust domain. The principal does not go into the request.
    #[cfg_attr(not(any(feature = "hmac", feature = "mtls")), allow(dead_code))]
    pub(crate) fn refused_after_proof(&self, extensions: &http::Extensions) {
        if let Some(slot) = extensions.get::<PrincipalSlot>() {
            slot.set(self.clone());
        }
    }

    #[cfg(feature = "audit")]
    pub(crate) fn shared_roles(&self) -> Option<&Arc<[String]>> {
        self.roles.as_ref()
    }

    /// How the caller was proven.
    pub fn method(&self) -> AuthMethod {
        self.method
    }

    /// The caller's roles, in the order they were given.
    pub fn roles(&self) -> &[String] {
        self.roles.as_deref().unwrap_or_default()
    }

    /// Whether the caller holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles().iter().any(|r| r == role)
    }
}

/// Where an outer layer learns who a request named: put into the request's extensions by that
/// layer (the audit layer), told by authentication layers when they prove a caller.
#[derive(Clone)]
#[cfg_attr(not(feature = "audit"), allow(dead_code))]
pub(crate) struct PrincipalSlot(Arc<dyn HearsPrincipal>);

/// What listens at a [`PrincipalSlot`]: the outer layer's own per-request state, so that the
/// slot costs that layer no allocation of its own.
#[cfg_attr(not(feature = "audit"), allow(dead_code))]
pub(crate) trait HearsPrincipal: Send + Sync + 'static {
    /// `principal` was proven (the last one told is the request's).
    fn hear(&self, principal: Principal);

    /// A layer decided something worth recording besides its outcome.
    fn note(&self, note: Note);
}

#[cfg_attr(not(feature = "audit"), allow(dead_code))]
impl PrincipalSlot {
    pub(crate) fn new(listener: Arc<dyn HearsPrincipal>) -> Self {
        Self(listener)
    }

    fn set(&self, principal: Principal) {
        self.0.hear(principal);
    }

    pub(crate) fn note(&self, note: Note) {
        self.0.note(note);
    }
}

/// An authentication scheme a service accepts, named in `WWW-Authenticate`. Each variant is
/// used by the feature of its layer, so builds without some of them leave variants unused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)]
pub(crate) enum Scheme {
    /// `Bearer` (RFC 6750).
    Bearer = 1,
    /// `HMAC-SHA256`: the signed-request headers.
    Hmac = 2,
    /// `Mutual-TLS`: a client certificate.
    MutualTls = 4,
    /// `Signature`: an HTTP message signature (RFC 9421).
    HttpSig = 8,
}

/// The schemes of the authentication layers a request went through without offering their
/// credentials (optional mode). When nobody is proven and someone must be, the 401 names each
/// of them, so a client library finds the scheme it speaks (RFC 9110 §11.6.1).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Offered(u8);

impl Offered {
    /// Notes that the layer of `scheme` let the request through without a proof.
    #[cfg_attr(
        not(any(feature = "hmac", feature = "jwt", feature = "mtls")),
        allow(dead_code)
    )]
    pub(crate) fn record(extensions: &mut http::Extensions, scheme: Scheme) {
        let offered = extensions.get::<Offered>().map_or(0, |o| o.0);
        extensions.insert(Offered(offered | scheme as u8));
    }

    /// The challenge for a request nobody proved: every scheme offered, or `default`.
    pub(crate) fn challenge(extensions: &http::Extensions, default: &'static str) -> &'static str {
        const CHALLENGES: [&str; 16] = [
            "",
            "Bearer",
            "HMAC-SHA256",
            "Bearer, HMAC-SHA256",
            "Mutual-TLS",
            "Bearer, Mutual-TLS",
            "HMAC-SHA256, Mutual-TLS",
            "Bearer, HMAC-SHA256, Mutual-TLS",
            "Signature",
            "Bearer, Signature",
            "HMAC-SHA256, Signature",
            "Bearer, HMAC-SHA256, Signature",
            "Mutual-TLS, Signature",
            "Bearer, Mutual-TLS, Signature",
            "HMAC-SHA256, Mutual-TLS, Signature",
            "Bearer, HMAC-SHA256, Mutual-TLS, Signature",
        ];
        match extensions.get::<Offered>() {
            Some(offered) if offered.0 != 0 => CHALLENGES[usize::from(offered.0 & 15)],
            _ => default,
        }
    }
}

/// The 401 for a request that reached a place needing a principal without one: it names the
/// schemes the service's authentication layers accept.
#[cfg_attr(not(any(feature = "axum", feature = "authz")), allow(dead_code))]
pub(crate) fn unauthenticated(
    extensions: &http::Extensions,
    origin: crate::reject::Origin,
    code: &'static str,
) -> Rejection {
    Rejection::by(
        origin,
        RejectionKind::Unauthenticated,
        code,
        "Authentication required",
    )
    .with_challenge(Offered::challenge(extensions, "Signature"))
}
