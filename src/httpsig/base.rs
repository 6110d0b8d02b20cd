//! What a signature covers and the signature base it signs (RFC 9421 §2): components, their
//! values in a message, and the base made of them.

use std::borrow::Cow;
use std::fmt::Write as _;

use http::{HeaderMap, HeaderName, Method};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::fields::Signature;

/// The fields of RFC 9421 and RFC 9530.
pub(crate) static SIGNATURE_INPUT: HeaderName = HeaderName::from_static("signature-input");
pub(crate) static SIGNATURE: HeaderName = HeaderName::from_static("signature");
pub(crate) static CONTENT_DIGEST: HeaderName = HeaderName::from_static("content-digest");

/// Why a message's signatures cannot be read or their base made. Each is a refusal with a code
/// of its own; messages name no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BaseError {
    /// `Signature-Input` or `Signature` is not a valid structured-field dictionary, or a member
    /// has the wrong shape.
    #[error("malformed signature fields: {0}")]
    Malformed(&'static str),
    /// A label in `Signature-Input` has no signature in `Signature`, or the reverse.
    #[error("signature label {0:?} is in one signature field only")]
    Unpaired(String),
    /// A label appears twice in one field (in one line or across lines): which one counts is
    /// a question an attacker could answer differently for two readers, so neither counts.
    #[error("signature label {0:?} is given twice")]
    DuplicateLabel(String),
    /// A covered component this verifier does not know or support.
    #[error("unsupported covered component {0:?}")]
    Unsupported(String),
    /// A component is covered twice, or a covered query parameter occurs twice in the query.
    #[error("component {0:?} is covered or present twice")]
    Duplicate(String),
    /// A covered header field or query parameter is not in the message.
    #[error("covered component {0:?} is missing")]
    Missing(String),
}

/// A component a signature covers (§2.1, §2.2), borrowed from `Signature-Input`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Component<'a> {
    /// `@method`, `@target-uri`, ...
    Derived(Derived),
    /// `@query-param` with its `name` parameter, as the name is encoded (§2.2.8).
    QueryParam(&'a str),
    /// A header field, by its lowercase name.
    Field(&'a str),
}

/// The derived components (§2.2). `@status` belongs to responses only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Derived {
    Method,
    TargetUri,
    Authority,
    Scheme,
    RequestTarget,
    Path,
    Query,
    Status,
}

impl Derived {
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "@method" => Self::Method,
            "@target-uri" => Self::TargetUri,
            "@authority" => Self::Authority,
            "@scheme" => Self::Scheme,
            "@request-target" => Self::RequestTarget,
            "@path" => Self::Path,
            "@query" => Self::Query,
            "@status" => Self::Status,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Method => "@method",
            Self::TargetUri => "@target-uri",
            Self::Authority => "@authority",
            Self::Scheme => "@scheme",
            Self::RequestTarget => "@request-target",
            Self::Path => "@path",
            Self::Query => "@query",
            Self::Status => "@status",
        }
    }
}

impl Component<'_> {
    /// The component identifier as it is serialized in the base and in `@signature-params`.
    /// Names are checked when read, so none needs escaping.
    pub(crate) fn write_identifier(&self, out: &mut String) {
        out.push('"');
        match self {
            Self::Derived(derived) => out.push_str(derived.name()),
            Self::QueryParam(name) => {
                out.push_str("@query-param\";name=\"");
                out.push_str(name);
            }
            Self::Field(name) => out.push_str(name),
        }
        out.push('"');
    }
}

/// What the signature base is made of: the message as the verifier sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Message<'a> {
    pub(crate) method: &'a Method,
    /// `http` or `https`, from the connection or a trusted proxy.
    pub(crate) scheme: &'a str,
    /// The request's authority (`Host`, or the URI's in HTTP/2), as received.
    pub(crate) authority: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    pub(crate) headers: &'a HeaderMap,
    /// A response's status; `None` for a request, where `@status` has no value.
    pub(crate) status: Option<u16>,
}

/// Characters `@query-param` names and values keep as they are (§2.2.8: the
/// `application/x-www-form-urlencoded` percent-encode set, spaces as `%20`).
const QUERY_PARAM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

impl Message<'_> {
    /// Appends the component's value to the base.
    fn write_value(&self, component: &Component<'_>, out: &mut String) -> Result<(), BaseError> {
        match component {
            Component::Derived(derived) => match derived {
                Derived::Method => out.push_str(self.method.as_str()),
                Derived::Scheme => push_lowercase(out, self.scheme),
                Derived::Authority => self.write_authority(out),
                Derived::Path => out.push_str(self.path_or_root()),
                Derived::Query => {
                    out.push('?');
                    out.push_str(self.query.unwrap_or_default());
                }
                Derived::RequestTarget => {
                    out.push_str(self.path_or_root());
                    self.write_query(out);
                }
                Derived::TargetUri => {
                    push_lowercase(out, self.scheme);
                    out.push_str("://");
                    self.write_authority(out);
                    out.push_str(self.path_or_root());
                    self.write_query(out);
                }
                Derived::Status => {
                    let status = self
                        .status
                        .ok_or_else(|| BaseError::Unsupported("@status".into()))?;
                    let _ = write!(out, "{status}");
                }
            },
            Component::QueryParam(name) => self.write_query_param(name, out)?,
            Component::Field(name) => {
                let value = field_value(self.headers, *name)?
                    .ok_or_else(|| BaseError::Missing((*name).to_owned()))?;
                out.push_str(&value);
            }
        }
        Ok(())
    }

    fn path_or_root(&self) -> &str {
        if self.path.is_empty() { "/" } else { self.path }
    }

    fn write_query(&self, out: &mut String) {
        if let Some(query) = self.query {
            out.push('?');
            out.push_str(query);
        }
    }

    /// The host in lowercase, and the port unless it is the scheme's default (§2.2.3).
    fn write_authority(&self, out: &mut String) {
        let default_port = if self.scheme.eq_ignore_ascii_case("https") {
            ":443"
        } else if self.scheme.eq_ignore_ascii_case("http") {
            ":80"
        } else {
            ""
        };
        let authority = match self.authority.len().checked_sub(default_port.len()) {
            Some(end) if !default_port.is_empty() && self.authority.ends_with(default_port) => {
                &self.authority[..end]
            }
            _ => self.authority,
        };
        push_lowercase(out, authority);
    }

    /// The value of the one query parameter whose encoded name is `name`, decoded and encoded
    /// again (§2.2.8). A parameter given twice is refused: which one was signed is unclear.
    fn write_query_param(&self, name: &str, out: &mut String) -> Result<(), BaseError> {
        let query = self.query.unwrap_or_default().as_bytes();
        let mut found = None;
        for (key, value) in form_urlencoded::parse(query) {
            if encoded_eq(&key, name) {
                if found.is_some() {
                    return Err(BaseError::Duplicate(format!("@query-param;name={name}")));
                }
                found = Some(value);
            }
        }
        let value = found.ok_or_else(|| BaseError::Missing(format!("@query-param;name={name}")))?;
        out.extend(utf8_percent_encode(&value, QUERY_PARAM));
        Ok(())
    }
}

/// Whether `decoded`, percent-encoded for `@query-param`, is `encoded`.
fn encoded_eq(decoded: &str, encoded: &str) -> bool {
    let mut rest = encoded;
    for piece in utf8_percent_encode(decoded, QUERY_PARAM) {
        match rest.strip_prefix(piece) {
            Some(after) => rest = after,
            None => return false,
        }
    }
    rest.is_empty()
}

fn push_lowercase(out: &mut String, text: &str) {
    out.extend(text.chars().map(|c| c.to_ascii_lowercase()));
}

/// A field's lines, each trimmed, joined with `, ` (§2.1); borrowed when there is one line.
/// `None` when the message has no such field.
pub(crate) fn field_value<'h>(
    headers: &'h HeaderMap,
    name: impl http::header::AsHeaderName,
) -> Result<Option<Cow<'h, str>>, BaseError> {
    let not_text = |_| BaseError::Malformed("a covered field value is not visible ASCII");
    let mut lines = headers.get_all(name).iter();
    let Some(first) = lines.next() else {
        return Ok(None);
    };
    let first = first.to_str().map_err(not_text)?.trim_matches([' ', '\t']);
    let mut value = Cow::Borrowed(first);
    for line in lines {
        let value = value.to_mut();
        value.push_str(", ");
        value.push_str(line.to_str().map_err(not_text)?.trim_matches([' ', '\t']));
    }
    Ok(Some(value))
}

/// The signature base of `signature` over `message` (§2.5): a line per covered component, then
/// the `@signature-params` line, without a final newline.
pub(crate) fn signature_base(
    message: &Message<'_>,
    signature: &Signature<'_>,
) -> Result<String, BaseError> {
    let mut base = String::with_capacity(256 + signature.params_line.len());
    for component in &signature.covered {
        component.write_identifier(&mut base);
        base.push_str(": ");
        message.write_value(component, &mut base)?;
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(&signature.params_line);
    Ok(base)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::fields::signatures;
    use super::*;

    /// The request of RFC 9421 Appendix B.2.
    pub(crate) fn test_request() -> (Method, HeaderMap) {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("host", "example.com"),
            ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
            ("content-type", "application/json"),
            (
                "content-digest",
                "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
            ),
            ("content-length", "18"),
        ] {
            headers.insert(name, value.parse().unwrap());
        }
        (Method::POST, headers)
    }

    pub(crate) fn message<'a>(method: &'a Method, headers: &'a HeaderMap) -> Message<'a> {
        Message {
            method,
            scheme: "https",
            authority: "example.com",
            path: "/foo",
            query: Some("param=Value&Pet=dog"),
            headers,
            status: None,
        }
    }

    /// The `Signature-Input` of Appendix B.2.4.
    pub(crate) const B24_INPUT: &str = r#"sig-b24=("@status" "content-type" "content-digest" "content-length");created=1618884473;keyid="test-key-ecc-p256""#;

    /// The response of RFC 9421 Appendix B.2.4 (the request's method is irrelevant to it).
    pub(crate) fn test_response() -> (Method, HeaderMap) {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("date", "Tue, 20 Apr 2021 02:07:56 GMT"),
            ("content-type", "application/json"),
            (
                "content-digest",
                "sha-512=:mEWXIS7MaLRuGgxOBdODa3xqM1XdEvxoYhvlCFJ41QJgJc4GTsPp29l5oGX69wWdXymyU0rjJuahq4l5aGgfLQ==:",
            ),
            ("content-length", "23"),
        ] {
            headers.insert(name, value.parse().unwrap());
        }
        (Method::POST, headers)
    }

    pub(crate) fn response<'a>(method: &'a Method, headers: &'a HeaderMap) -> Message<'a> {
        Message {
            status: Some(200),
            ..message(method, headers)
        }
    }

    /// A component's value in the base.
    fn value(message: &Message<'_>, component: Component<'_>) -> Result<String, BaseError> {
        let mut out = String::new();
        message.write_value(&component, &mut out).map(|()| out)
    }

    fn one<'a>(input: &'a str, signature: &'a str) -> Signature<'a> {
        let mut all = signatures(input, signature).unwrap();
        assert_eq!(all.len(), 1);
        all.remove(0)
    }

    /// Appendix B.2.5's signature base, byte for byte.
    #[test]
    fn the_rfc_hmac_example_base() {
        let (method, headers) = test_request();
        let signature = one(
            r#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#,
            "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:",
        );
        assert_eq!(signature.label, "sig-b25");
        assert_eq!(signature.params.created, Some(1_618_884_473));
        assert_eq!(
            signature.params.keyid.as_deref(),
            Some("test-shared-secret")
        );
        assert_eq!(
            signature_base(&message(&method, &headers), &signature).unwrap(),
            "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\
             \"@authority\": example.com\n\
             \"content-type\": application/json\n\
             \"@signature-params\": (\"date\" \"@authority\" \"content-type\");created=1618884473;keyid=\"test-shared-secret\""
        );
    }

    /// Appendix B.2.6's signature base, byte for byte.
    #[test]
    fn the_rfc_ed25519_example_base() {
        let (method, headers) = test_request();
        let signature = one(
            r#"sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519""#,
            "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:",
        );
        assert_eq!(
            signature_base(&message(&method, &headers), &signature).unwrap(),
            "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\
             \"@method\": POST\n\
             \"@path\": /foo\n\
             \"@authority\": example.com\n\
             \"content-type\": application/json\n\
             \"content-length\": 18\n\
             \"@signature-params\": (\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\""
        );
    }

    #[test]
    fn derived_components_follow_the_rfc() {
        let (method, headers) = test_request();
        let mut message = message(&method, &headers);
        let value = |message: &Message<'_>, name| {
            value(
                message,
                Component::Derived(Derived::from_name(name).unwrap()),
            )
            .unwrap()
        };
        assert_eq!(
            value(&message, "@target-uri"),
            "https://example.com/foo?param=Value&Pet=dog"
        );
        assert_eq!(
            value(&message, "@request-target"),
            "/foo?param=Value&Pet=dog"
        );
        assert_eq!(value(&message, "@query"), "?param=Value&Pet=dog");
        assert_eq!(value(&message, "@scheme"), "https");
        message.authority = "Example.COM:443";
        message.query = None;
        assert_eq!(value(&message, "@authority"), "example.com");
        assert_eq!(value(&message, "@query"), "?");
        message.authority = "example.com:8443";
        assert_eq!(
            value(&message, "@target-uri"),
            "https://example.com:8443/foo"
        );
    }

    #[test]
    fn field_lines_are_trimmed_and_joined() {
        let mut headers = HeaderMap::new();
        headers.append("x-list", " a, b ".parse().unwrap());
        headers.append("x-list", "c\t".parse().unwrap());
        let method = Method::GET;
        let message = message(&method, &headers);
        assert_eq!(
            value(&message, Component::Field("x-list")).unwrap(),
            "a, b, c"
        );
        assert_eq!(
            value(&message, Component::Field("x-absent")),
            Err(BaseError::Missing("x-absent".into()))
        );
    }

    /// §2.2.8's examples: names and values decoded, then encoded again with `%20` for spaces.
    #[test]
    fn query_parameters_follow_the_rfc() {
        let headers = HeaderMap::new();
        let method = Method::GET;
        let mut message = message(&method, &headers);
        message.query = Some("param=value&foo=bar&baz=batman&qux=");
        let param = |message: &Message<'_>, name| value(message, Component::QueryParam(name));
        assert_eq!(param(&message, "baz").unwrap(), "batman");
        assert_eq!(param(&message, "qux").unwrap(), "");
        message.query = Some(
            "var=this%20is%20a%20big%0Avalue&bar=with+plus+whitespace&fa%C3%A7ade%22%3A%20=something",
        );
        assert_eq!(
            param(&message, "var").unwrap(),
            "this%20is%20a%20big%0Avalue"
        );
        assert_eq!(param(&message, "bar").unwrap(), "with%20plus%20whitespace");
        assert_eq!(
            param(&message, "fa%C3%A7ade%22%3A%20").unwrap(),
            "something"
        );
        assert_eq!(
            param(&message, "var2"),
            Err(BaseError::Missing("@query-param;name=var2".into()))
        );
        // The same parameter twice: which one was signed is unclear.
        message.query = Some("a=1&a=2");
        assert!(matches!(param(&message, "a"), Err(BaseError::Duplicate(_))));
        // A request has no status.
        assert_eq!(
            value(&message, Component::Derived(Derived::Status)),
            Err(BaseError::Unsupported("@status".into()))
        );
    }

    /// Appendix B.2.4 signs a response: its base, byte for byte.
    #[test]
    fn the_rfc_response_example_base() {
        let (method, headers) = test_response();
        let signature = one(B24_INPUT, "sig-b24=:AAAA:");
        assert_eq!(
            signature_base(&response(&method, &headers), &signature).unwrap(),
            "\"@status\": 200\n\
             \"content-type\": application/json\n\
             \"content-digest\": sha-512=:mEWXIS7MaLRuGgxOBdODa3xqM1XdEvxoYhvlCFJ41QJgJc4GTsPp29l5oGX69wWdXymyU0rjJuahq4l5aGgfLQ==:\n\
             \"content-length\": 23\n\
             \"@signature-params\": (\"@status\" \"content-type\" \"content-digest\" \"content-length\");created=1618884473;keyid=\"test-key-ecc-p256\""
        );
    }
}
