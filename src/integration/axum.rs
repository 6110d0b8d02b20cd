//! axum: `Principal` as an extractor, `Rejection` as a response.

use axum_core::body::Body;
use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;

use crate::principal::Principal;
use crate::reject::{Origin, Rejection};

/// Extracts the [`Principal`] put there by an authentication layer; answers 401 when there is
/// none, so a handler that takes a `Principal` is never reached anonymously.
///
/// Take `Option<Principal>` to accept anonymous requests too.
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
            crate::principal::unauthenticated(
                &parts.extensions,
                Origin::Authentication,
                "principal.missing",
            )
        })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Principal>().cloned())
    }
}

/// Extracts the verified [`Claims`](crate::jwt::Claims) of a bearer token; 401 when the request
/// was not authenticated by a token.
#[cfg(feature = "jwt")]
impl<S: Send + Sync> FromRequestParts<S> for crate::jwt::Claims {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            Rejection::by(
                Origin::Authentication,
                crate::reject::RejectionKind::Unauthenticated,
                "jwt.missing_token",
                "Missing bearer token",
            )
            .with_challenge("Bearer")
        })
    }
}

#[cfg(feature = "jwt")]
impl<S: Send + Sync> OptionalFromRequestParts<S> for crate::jwt::Claims {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}

/// The HTTP problem response (axum's error paths do not see the request, so no gRPC form).
impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        self.into_http_response::<Body>().map(Body::new)
    }
}
