//! Policy engines: code that decides whole requests, picked per route
//! ([`Require::engine`](super::Require::engine)) or for a whole service, and run beside the
//! enforced policy as a candidate ([`AuthorizeConfigBuilder::candidate`](super::AuthorizeConfigBuilder::candidate)).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use http::{Extensions, HeaderMap, Method, Uri};

use crate::peer::default_peer_addr;
use crate::principal::Principal;

/// A policy that decides a request from what it can see of it.
///
/// [`RegoPolicy`](super::RegoPolicy) (feature `rego`) is one; implement it for anything
/// else that decides in process. Decisions must not block: they run on the request's task.
pub trait PolicyEngine: Send + Sync + 'static {
    /// Decides `request`.
    fn decide(&self, request: &DecisionRequest<'_>) -> EngineDecision;
}

/// What an engine decides: allow, or deny with a reason code and, if the engine gave one, its
/// reason (which goes into the audit event and the debug log, never to the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineDecision {
    /// The request may go on.
    Allow,
    /// The request is refused.
    Deny {
        /// The refusal's reason code (`authz.policy_denied`, `authz.policy_undefined`, ...).
        code: &'static str,
        /// Why, in the engine's words.
        reason: Option<String>,
    },
}

impl EngineDecision {
    /// `allow`, or the reason code.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny { code, .. } => code,
        }
    }
}

/// The request as an engine sees it: method, URI, headers and extensions (the principal, the
/// token's claims, the connection's peer).
#[derive(Debug, Clone, Copy)]
pub struct DecisionRequest<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    extensions: &'a Extensions,
}

impl<'a> DecisionRequest<'a> {
    /// The request with these parts.
    pub fn new(
        method: &'a Method,
        uri: &'a Uri,
        headers: &'a HeaderMap,
        extensions: &'a Extensions,
    ) -> Self {
        Self {
            method,
            uri,
            headers,
            extensions,
        }
    }

    /// The HTTP method (`POST` for gRPC).
    pub fn method(&self) -> &'a Method {
        self.method
    }

    /// The URI; its path is the gRPC method (`/pkg.Service/Method`) for gRPC.
    pub fn uri(&self) -> &'a Uri {
        self.uri
    }

    /// The headers, credentials included: engines that pass them on must leave those out.
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The request's extensions.
    pub fn extensions(&self) -> &'a Extensions {
        self.extensions
    }

    /// The proven caller, if any.
    pub fn principal(&self) -> Option<&'a Principal> {
        self.extensions.get::<Principal>()
    }

    /// The connection's peer address, when the server recorded it
    /// ([`PeerAddr`](crate::peer::PeerAddr)).
    pub fn source_ip(&self) -> Option<IpAddr> {
        default_peer_addr(self.extensions)
    }
}

/// A shared [`PolicyEngine`], as rules and configurations hold it. Cheap to clone.
#[derive(Clone)]
pub struct Engine(Arc<dyn PolicyEngine>);

impl Engine {
    /// Shares `engine`.
    pub fn new(engine: impl PolicyEngine) -> Self {
        Self(Arc::new(engine))
    }

    pub(crate) fn decide(&self, request: &DecisionRequest<'_>) -> EngineDecision {
        self.0.decide(request)
    }
}

impl PartialEq for Engine {
    /// The same engine (not merely one that decides alike).
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Engine {}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Engine")
    }
}
