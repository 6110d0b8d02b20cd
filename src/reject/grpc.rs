//! The gRPC form of a rejection: a trailers-only response, as `tonic::Status::into_http` makes.

use std::fmt::Write;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Response};

use super::{Rejection, RejectionKind};
use crate::body::ResponseBody;

/// Whether the request speaks gRPC (`application/grpc`, `application/grpc+proto`, ...).
/// gRPC-Web (`application/grpc-web*`) is not: its responses differ, so it gets HTTP ones.
pub(super) fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes()
            .strip_prefix(b"application/grpc")
            .is_some_and(|rest| matches!(rest.first(), None | Some(b'+' | b';')))
    })
}

/// The gRPC status code for a kind.
pub(crate) fn code(kind: RejectionKind) -> u16 {
    match kind {
        RejectionKind::Unauthenticated => 16,
        RejectionKind::Forbidden => 7,
        RejectionKind::RateLimited => 8,
        RejectionKind::Unavailable => 14,
        RejectionKind::TooLarge => 8,
    }
}

pub(super) fn response<B>(rejection: Rejection) -> Response<ResponseBody<B>> {
    let mut response = Response::new(ResponseBody::empty());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(code(rejection.kind)));
    headers.insert(super::REASON, super::header_value(rejection.code));
    let message = percent_encode(rejection.message());
    // Percent-encoding leaves only visible ASCII, so this cannot fail.
    if let Ok(value) = HeaderValue::from_str(&message) {
        headers.insert("grpc-message", value);
    }
    response.extensions_mut().insert(rejection);
    response
}

/// Percent-encodes a `grpc-message` as the gRPC HTTP/2 spec requires: every byte outside
/// printable ASCII, and `%` itself, becomes `%XX`.
pub(super) fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for &byte in message.as_bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encodes_non_ascii_and_percent() {
        assert_eq!(percent_encode("Invalid signature"), "Invalid signature");
        assert_eq!(percent_encode("100% é\n"), "100%25 %C3%A9%0A");
    }

    #[test]
    fn detects_grpc_content_types() {
        let mut headers = HeaderMap::new();
        assert!(!is_grpc(&headers));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(!is_grpc(&headers));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        assert!(is_grpc(&headers));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        assert!(is_grpc(&headers));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/grpc-web+proto"),
        );
        assert!(!is_grpc(&headers));
    }

    #[test]
    fn every_kind_has_its_grpc_code() {
        assert_eq!(code(RejectionKind::Unauthenticated), 16);
        assert_eq!(code(RejectionKind::Forbidden), 7);
        assert_eq!(code(RejectionKind::RateLimited), 8);
        assert_eq!(code(RejectionKind::Unavailable), 14);
    }
}
