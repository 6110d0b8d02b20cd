//! One type for every refusal, and the responses it becomes.
//!
//! A layer that refuses a request builds a [`Rejection`]: a [`RejectionKind`] (which decides the
//! status), a stable machine-readable [`code`](Rejection::code) and a short message that is safe to
//! show the caller. The response depends on the request:
//!
//! | kind              | HTTP                                   | gRPC (`content-type: application/grpc*`) |
//! |-------------------|----------------------------------------|-------------------------------------------|
//! | `Unauthenticated` | 401 + `WWW-Authenticate`               | `grpc-status: 16` UNAUTHENTICATED         |
//! | `Forbidden`       | 403                                    | `grpc-status: 7` PERMISSION_DENIED        |
//! | `RateLimited`     | 429 + `Retry-After`                    | `grpc-status: 8` RESOURCE_EXHAUSTED       |
//! | `Unavailable`     | 503                                    | `grpc-status: 14` UNAVAILABLE             |
//!
//! HTTP bodies are `application/problem+json` (RFC 9457) with `type`, `title`, `status`,
//! `detail` (the message) and `code`. gRPC responses are trailers-only: HTTP 200 with
//! `grpc-status` and a percent-encoded `grpc-message` in the headers, exactly what a tonic client
//! turns into a `tonic::Status`.
//!
//! The [`Rejection`] is also put into the response's extensions, so outer layers (audit,
//! metrics) and tests can read what happened without parsing bodies.
//!
//! A service with an error contract of its own renders refusals its way with
//! [`RenderRejectionsLayer`]: the status, challenge, `Retry-After` and the `Rejection` stay.
//!
//! ```
//! use http::{HeaderMap, StatusCode};
//! use tower_zerotrust::{Rejection, RejectionKind};
//!
//! let rejection = Rejection::new(RejectionKind::Forbidden, "demo.forbidden", "Service not authorized");
//! let response = rejection.into_response_for::<()>(&HeaderMap::new());
//! assert_eq!(response.status(), StatusCode::FORBIDDEN);
//! assert_eq!(response.extensions().get::<Rejection>().unwrap().code(), "demo.forbidden");
//! ```

mod grpc;
mod http;
mod render;

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use ::http::{HeaderMap, Response};

use crate::body::ResponseBody;
#[cfg_attr(not(feature = "tonic"), allow(unused_imports))]
pub(crate) use grpc::code as grpc_code;

pub use render::{Render, RenderRejections, RenderRejectionsLayer, ResponseFuture};

/// The gRPC metadata key (a trailer of the trailers-only response) that carries a refusal's
/// reason code, as the `code` field of the HTTP problem body does.
pub const REASON: &str = "zerotrust-reason";

/// The class of a refusal; it decides the HTTP status and the gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// No credentials, or credentials that could not be verified (401 / UNAUTHENTICATED).
    Unauthenticated,
    /// A proven caller that may not do this (403 / PERMISSION_DENIED).
    Forbidden,
    /// Over quota (429 / RESOURCE_EXHAUSTED).
    RateLimited,
    /// A backing store failed, so the layer failed closed (503 / UNAVAILABLE).
    Unavailable,
    /// The request's body is larger than the layer reads to check it (413 /
    /// RESOURCE_EXHAUSTED).
    TooLarge,
}

/// Which layer refused a request: audit events and metrics classify refusals by it, never by
/// the text of a reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Origin {
    /// HMAC request signatures, and the nonce store behind them.
    Hmac,
    /// Bearer tokens, and the key set behind them.
    Jwt,
    /// Client certificates.
    Mtls,
    /// HTTP Message Signatures (RFC 9421).
    HttpSig,
    /// Authentication in general: no principal where one is required, or conflicting
    /// credentials.
    Authentication,
    /// Authorization: permissions, roles, allowed callers, ACLs.
    Authorization,
    /// Rate limits.
    RateLimit,
    /// A refusal made outside this crate's layers, with [`Rejection::new`].
    Custom,
}

impl Origin {
    /// The lower-case name used in audit events: `hmac`, `jwt`, `mtls`, `httpsig`, `authn`,
    /// `authz`, `rate_limit` or `custom`.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Hmac => "hmac",
            Origin::Jwt => "jwt",
            Origin::Mtls => "mtls",
            Origin::HttpSig => "httpsig",
            Origin::Authentication => "authn",
            Origin::Authorization => "authz",
            Origin::RateLimit => "rate_limit",
            Origin::Custom => "custom",
        }
    }
}

/// Why a request was refused: a kind, a stable code and a message safe to show the caller.
///
/// Messages name the class of failure ("Invalid signature") and never contain secrets,
/// expected signatures or internal error text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    kind: RejectionKind,
    origin: Origin,
    code: &'static str,
    message: Cow<'static, str>,
    challenge: Option<&'static str>,
    retry_after: Option<Duration>,
}

impl Rejection {
    /// A rejection of `kind` with a stable `code` (such as `hmac.invalid_signature`) and a
    /// caller-facing `message`, from a layer of your own ([`Origin::Custom`]).
    pub fn new(
        kind: RejectionKind,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::by(Origin::Custom, kind, code, message)
    }

    /// A rejection made by one of this crate's layers.
    pub(crate) fn by(
        origin: Origin,
        kind: RejectionKind,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            kind,
            origin,
            code,
            message: message.into(),
            challenge: None,
            retry_after: None,
        }
    }

    /// Sets the `WWW-Authenticate` challenge sent with a 401 (for example `Bearer`).
    #[must_use]
    pub fn with_challenge(mut self, challenge: &'static str) -> Self {
        self.challenge = Some(challenge);
        self
    }

    /// Sets how long the caller should wait before retrying (sent as `Retry-After`).
    #[must_use]
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// The class of refusal.
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The layer that refused.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// The stable reason code, for logs, metrics and tests.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The caller-facing message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The `WWW-Authenticate` challenge, if any.
    pub fn challenge(&self) -> Option<&'static str> {
        self.challenge
    }

    /// The suggested wait before a retry, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The response for a request with these headers: a trailers-only gRPC response when the
    /// request's `content-type` is `application/grpc*`, an HTTP problem response otherwise. The
    /// rejection itself is placed in the response's extensions.
    pub fn into_response_for<B>(self, request_headers: &HeaderMap) -> Response<ResponseBody<B>> {
        Pending::new(self, request_headers).into_response()
    }

    /// The HTTP problem response, ignoring gRPC (for frameworks' own error paths).
    pub fn into_http_response<B>(self) -> Response<ResponseBody<B>> {
        http::response(self)
    }
}

/// A rejection waiting to become a response, with the one fact it needs from the request.
/// Futures hold this rather than a response, so they need not name the body type.
#[derive(Debug)]
pub(crate) struct Pending {
    rejection: Rejection,
    grpc: bool,
}

impl Pending {
    pub(crate) fn new(rejection: Rejection, request_headers: &HeaderMap) -> Self {
        Self {
            rejection,
            grpc: grpc::is_grpc(request_headers),
        }
    }

    pub(crate) fn into_response<B>(self) -> Response<ResponseBody<B>> {
        if self.grpc {
            grpc::response(self.rejection)
        } else {
            http::response(self.rejection)
        }
    }
}

/// A header value for text that a user chose (a reason code, a challenge): the text itself
/// when it is printable ASCII, else percent-encoded, so that no input makes building a
/// response panic.
pub(crate) fn header_value(text: &'static str) -> ::http::HeaderValue {
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        ::http::HeaderValue::from_static(text)
    } else {
        // Percent-encoding leaves printable ASCII only, which every header value may hold.
        ::http::HeaderValue::try_from(grpc::percent_encode(text))
            .unwrap_or_else(|_| ::http::HeaderValue::from_static(""))
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for Rejection {}

#[cfg(test)]
mod tests {
    use ::http::header::CONTENT_TYPE;
    use ::http::{HeaderValue, StatusCode};

    use super::*;

    /// Codes and challenges are the user's to choose: text no header may hold is
    /// percent-encoded instead of panicking when the response is built.
    #[test]
    fn any_code_or_challenge_becomes_a_response() {
        let rejection = Rejection::new(RejectionKind::Unauthenticated, "café.refusé\n", "no")
            .with_challenge("Bearer realm=\"é\"");
        let http = rejection.clone().into_response_for::<()>(&HeaderMap::new());
        assert_eq!(http.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            http.headers()["www-authenticate"],
            "Bearer realm=\"%C3%A9\""
        );
        let mut grpc_request = HeaderMap::new();
        grpc_request.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        let grpc = rejection.into_response_for::<()>(&grpc_request);
        assert_eq!(grpc.headers()[REASON], "caf%C3%A9.refus%C3%A9%0A");
        assert_eq!(grpc.headers()["grpc-status"], "16");
    }
}
