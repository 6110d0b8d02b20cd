//! The HTTP form of a rejection: status, headers and an RFC 9457 problem body.

use std::fmt::Write;

use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};

use super::{Rejection, RejectionKind};
use crate::body::ResponseBody;

pub(super) fn status(kind: RejectionKind) -> StatusCode {
    match kind {
        RejectionKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        RejectionKind::Forbidden => StatusCode::FORBIDDEN,
        RejectionKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        RejectionKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        RejectionKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
    }
}

pub(super) fn response<B>(rejection: Rejection) -> Response<ResponseBody<B>> {
    let status = status(rejection.kind);
    // Written directly rather than through a JSON tree: rejections are the cheap path that
    // floods of bad traffic take.
    let title = status.canonical_reason().unwrap_or("Error");
    let mut body = String::with_capacity(96 + rejection.message().len());
    body.push_str(r#"{"type":"about:blank","title":"#);
    push_json_string(&mut body, title);
    body.push_str(r#","status":"#);
    body.push_str(status.as_str());
    body.push_str(r#","detail":"#);
    push_json_string(&mut body, rejection.message());
    body.push_str(r#","code":"#);
    push_json_string(&mut body, rejection.code);
    body.push('}');
    let mut response = Response::new(ResponseBody::full(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if status == StatusCode::UNAUTHORIZED {
        // RFC 9110 requires a challenge on every 401.
        let challenge = rejection.challenge.unwrap_or("Signature");
        headers.insert(WWW_AUTHENTICATE, super::header_value(challenge));
    }
    if let Some(after) = rejection.retry_after {
        // Round up: retrying early would only be refused again.
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        headers.insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    response.extensions_mut().insert(rejection);
    response
}

/// Appends `text` as a JSON string literal.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};

    use super::*;

    #[tokio::test]
    async fn problem_body_is_valid_json_with_escaping() {
        let rejection = Rejection::new(RejectionKind::Forbidden, "x.y", "quote \" and \\ é\n\u{1}");
        let response = response::<Empty<Bytes>>(rejection);
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
        assert!(response.headers().get(WWW_AUTHENTICATE).is_none());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "type": "about:blank",
                "title": "Forbidden",
                "status": 403,
                "detail": "quote \" and \\ é\n\u{1}",
                "code": "x.y",
            })
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let rejection = Rejection::new(RejectionKind::RateLimited, "rate.limited", "Too many")
            .with_retry_after(std::time::Duration::from_millis(1500));
        let response = response::<()>(rejection);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "2");
    }
}
