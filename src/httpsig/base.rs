//! The signatures a request carries, what each covers, and the signature base it signs
//! (RFC 9421 §2 and §4).

use http::{HeaderMap, HeaderName, Method};
use sfv::{BareItem, Dictionary, FieldType, InnerList, ListEntry, Parser};

/// The fields of RFC 9421 and RFC 9530, parsed once.
pub(crate) static SIGNATURE_INPUT: HeaderName = HeaderName::from_static("signature-input");
pub(crate) static SIGNATURE: HeaderName = HeaderName::from_static("signature");
pub(crate) static CONTENT_DIGEST: HeaderName = HeaderName::from_static("content-digest");

/// Why a request's signatures cannot be read or their base made. Each is a refusal with a code
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
    /// A covered component this verifier does not know or support.
    #[error("unsupported covered component {0:?}")]
    Unsupported(String),
    /// A component is covered twice.
    #[error("component {0:?} is covered twice")]
    Duplicate(String),
    /// A covered header field is not in the message.
    #[error("covered field {0:?} is missing")]
    Missing(String),
}

/// A component a signature covers (§2.1, §2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Component {
    /// `@method`, `@target-uri`, ...
    Derived(Derived),
    /// A header field, by its lowercase name.
    Field(HeaderName),
}

/// The derived components of a request (§2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Derived {
    Method,
    TargetUri,
    Authority,
    Scheme,
    RequestTarget,
    Path,
    Query,
}

impl Derived {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "@method" => Self::Method,
            "@target-uri" => Self::TargetUri,
            "@authority" => Self::Authority,
            "@scheme" => Self::Scheme,
            "@request-target" => Self::RequestTarget,
            "@path" => Self::Path,
            "@query" => Self::Query,
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
        }
    }
}

impl Component {
    fn name(&self) -> &str {
        match self {
            Self::Derived(derived) => derived.name(),
            Self::Field(name) => name.as_str(),
        }
    }
}

/// One signature of a request: its label, what it covers, its parameters (`created`,
/// `expires`, `nonce`, `alg`, `keyid`, `tag`) and its bytes.
#[derive(Debug, Clone)]
pub(crate) struct Signature {
    pub(crate) label: String,
    pub(crate) covered: Vec<Component>,
    pub(crate) params: Params,
    /// The `@signature-params` value: the inner list as it is serialized into the base.
    pub(crate) params_line: String,
    pub(crate) bytes: Vec<u8>,
}

/// The signature parameters a verifier acts on (§2.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Params {
    pub(crate) created: Option<i64>,
    pub(crate) expires: Option<i64>,
    pub(crate) nonce: Option<String>,
    pub(crate) alg: Option<String>,
    pub(crate) keyid: Option<String>,
    pub(crate) tag: Option<String>,
}

/// Every signature of a request, from its `Signature-Input` and `Signature` field values. A
/// label present in one field and not the other, a component covered twice, or a component
/// this verifier does not support makes the whole field unusable.
pub(crate) fn signatures(input: &str, signature: &str) -> Result<Vec<Signature>, BaseError> {
    let inputs: Dictionary = Parser::new(input)
        .parse()
        .map_err(|_| BaseError::Malformed("Signature-Input is not a dictionary"))?;
    let signatures: Dictionary = Parser::new(signature)
        .parse()
        .map_err(|_| BaseError::Malformed("Signature is not a dictionary"))?;
    if let Some(label) = signatures.keys().find(|label| !inputs.contains_key(*label)) {
        return Err(BaseError::Unpaired(label.as_str().to_owned()));
    }
    inputs
        .iter()
        .map(|(label, entry)| {
            let ListEntry::InnerList(list) = entry else {
                return Err(BaseError::Malformed(
                    "a Signature-Input member is not an inner list",
                ));
            };
            let bytes = match signatures.get(label) {
                Some(ListEntry::Item(item)) => item
                    .bare_item
                    .as_byte_sequence()
                    .ok_or(BaseError::Malformed(
                        "a Signature member is not a byte sequence",
                    ))?
                    .to_vec(),
                Some(ListEntry::InnerList(_)) => {
                    return Err(BaseError::Malformed(
                        "a Signature member is not a byte sequence",
                    ));
                }
                None => return Err(BaseError::Unpaired(label.as_str().to_owned())),
            };
            Ok(Signature {
                label: label.as_str().to_owned(),
                covered: covered(list)?,
                params: params(list)?,
                params_line: {
                    // Serialized from the parsed member, not a copy of it.
                    let mut line = sfv::ListSerializer::new();
                    line.members([entry]);
                    line.finish()
                        .ok_or(BaseError::Malformed("empty signature parameters"))?
                },
                bytes,
            })
        })
        .collect()
}

impl Signature {
    /// Whether the signature covers the body's `Content-Digest`.
    pub(crate) fn covers_digest(&self) -> bool {
        self.covered
            .iter()
            .any(|c| matches!(c, Component::Field(name) if *name == CONTENT_DIGEST))
    }
}

/// The covered components, in order; each at most once.
fn covered(list: &InnerList) -> Result<Vec<Component>, BaseError> {
    let mut components: Vec<Component> = Vec::with_capacity(list.items.len());
    for item in &list.items {
        let name = item
            .bare_item
            .as_string()
            .ok_or(BaseError::Malformed(
                "a component identifier is not a string",
            ))?
            .as_str();
        if !item.params.is_empty() {
            // `sf`, `key`, `bs`, `req`, `tr`, `name`: not supported yet, so never ignored.
            return Err(BaseError::Unsupported(
                vec![ListEntry::Item(item.clone())]
                    .serialize()
                    .unwrap_or_default(),
            ));
        }
        let component = if name.starts_with('@') {
            Derived::from_name(name)
                .map(Component::Derived)
                .ok_or_else(|| BaseError::Unsupported(name.to_owned()))?
        } else if name.bytes().any(|b| b.is_ascii_uppercase()) {
            // Field names are covered in lowercase (§2.1).
            return Err(BaseError::Malformed(
                "a covered field name is not lowercase",
            ));
        } else {
            Component::Field(
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| BaseError::Malformed("a covered field name is invalid"))?,
            )
        };
        if components.contains(&component) {
            return Err(BaseError::Duplicate(name.to_owned()));
        }
        components.push(component);
    }
    Ok(components)
}

fn params(list: &InnerList) -> Result<Params, BaseError> {
    let mut params = Params::default();
    for (key, value) in &list.params {
        let integer = |value: &BareItem| {
            value
                .as_integer()
                .map(i64::from)
                .ok_or(BaseError::Malformed("created and expires are integers"))
        };
        let string = |value: &BareItem| {
            value
                .as_string()
                .map(|s| s.as_str().to_owned())
                .ok_or(BaseError::Malformed(
                    "nonce, alg, keyid and tag are strings",
                ))
        };
        match key.as_str() {
            "created" => params.created = Some(integer(value)?),
            "expires" => params.expires = Some(integer(value)?),
            "nonce" => params.nonce = Some(string(value)?),
            "alg" => params.alg = Some(string(value)?),
            "keyid" => params.keyid = Some(string(value)?),
            "tag" => params.tag = Some(string(value)?),
            // Unknown parameters are signed (they are in the base) and otherwise ignored (§2.3).
            _ => {}
        }
    }
    Ok(params)
}

/// What the signature base is made of: the request as the verifier sees it.
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
}

impl Message<'_> {
    fn value(&self, component: &Component) -> Result<String, BaseError> {
        Ok(match component {
            Component::Derived(derived) => match derived {
                Derived::Method => self.method.as_str().to_owned(),
                Derived::Scheme => self.scheme.to_ascii_lowercase(),
                Derived::Authority => self.normalized_authority(),
                Derived::Path => self.path_or_root().to_owned(),
                Derived::Query => format!("?{}", self.query.unwrap_or_default()),
                Derived::RequestTarget => match self.query {
                    Some(query) => format!("{}?{query}", self.path_or_root()),
                    None => self.path_or_root().to_owned(),
                },
                Derived::TargetUri => {
                    let mut uri = format!(
                        "{}://{}{}",
                        self.scheme.to_ascii_lowercase(),
                        self.normalized_authority(),
                        self.path_or_root()
                    );
                    if let Some(query) = self.query {
                        uri.push('?');
                        uri.push_str(query);
                    }
                    uri
                }
            },
            Component::Field(name) => self.field(name)?,
        })
    }

    fn path_or_root(&self) -> &str {
        if self.path.is_empty() { "/" } else { self.path }
    }

    /// The host in lowercase, and the port unless it is the scheme's default (§2.2.3).
    fn normalized_authority(&self) -> String {
        let authority = self.authority.to_ascii_lowercase();
        let default_port = match self.scheme.to_ascii_lowercase().as_str() {
            "https" => ":443",
            "http" => ":80",
            _ => return authority,
        };
        authority
            .strip_suffix(default_port)
            .map_or(authority.clone(), str::to_owned)
    }

    /// Every line of the field, trimmed and joined with `, ` (§2.1).
    fn field(&self, name: &HeaderName) -> Result<String, BaseError> {
        let mut lines = self.headers.get_all(name).iter().peekable();
        if lines.peek().is_none() {
            return Err(BaseError::Missing(name.as_str().to_owned()));
        }
        let mut value = String::new();
        for (i, line) in lines.enumerate() {
            let text = line
                .to_str()
                .map_err(|_| BaseError::Malformed("a covered field value is not visible ASCII"))?;
            if i > 0 {
                value.push_str(", ");
            }
            value.push_str(text.trim_matches([' ', '\t']));
        }
        Ok(value)
    }
}

/// The signature base of `signature` over `message` (§2.5): a line per covered component, then
/// the `@signature-params` line, without a final newline.
pub(crate) fn signature_base(
    message: &Message<'_>,
    signature: &Signature,
) -> Result<String, BaseError> {
    let mut base = String::new();
    for component in &signature.covered {
        let value = message.value(component)?;
        base.push('"');
        base.push_str(component.name());
        base.push_str("\": ");
        base.push_str(&value);
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(&signature.params_line);
    Ok(base)
}

#[cfg(test)]
pub(crate) mod tests {
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
        }
    }

    fn one(input: &str, signature: &str) -> Signature {
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
            message
                .value(&Component::Derived(Derived::from_name(name).unwrap()))
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
            message
                .value(&Component::Field(HeaderName::from_static("x-list")))
                .unwrap(),
            "a, b, c"
        );
        assert_eq!(
            message.value(&Component::Field(HeaderName::from_static("x-absent"))),
            Err(BaseError::Missing("x-absent".into()))
        );
    }

    #[test]
    fn unusable_signature_fields_are_refused() {
        let sig = "s=:AAAA:";
        let refused = |input: &str, signature: &str| signatures(input, signature).unwrap_err();
        assert!(matches!(
            refused("s=(\"@method\"", sig),
            BaseError::Malformed(_)
        ));
        assert!(matches!(
            refused("s=\"@method\"", sig),
            BaseError::Malformed(_)
        ));
        assert!(matches!(
            refused("s=(\"@method\")", "s=\"text\""),
            BaseError::Malformed(_)
        ));
        assert_eq!(
            refused("s=(\"@method\")", "t=:AAAA:"),
            BaseError::Unpaired("t".into())
        );
        assert_eq!(
            refused("s=(\"@method\"), t=()", sig),
            BaseError::Unpaired("t".into())
        );
        assert_eq!(
            refused("s=(\"@method\" \"@method\")", sig),
            BaseError::Duplicate("@method".into())
        );
        assert_eq!(
            refused("s=(\"@status\")", sig),
            BaseError::Unsupported("@status".into())
        );
        assert!(matches!(
            refused("s=(\"x\";sf)", sig),
            BaseError::Unsupported(_)
        ));
        assert!(matches!(
            refused("s=(\"Date\")", sig),
            BaseError::Malformed(_)
        ));
        assert!(matches!(
            refused("s=(@method)", sig),
            BaseError::Malformed(_)
        ));
        assert!(matches!(
            refused("s=(\"@method\");created=\"now\"", sig),
            BaseError::Malformed(_)
        ));
    }

    #[test]
    fn several_signatures_are_read_in_order() {
        let all = signatures(
            r#"a=("@method");nonce="n1";alg="hmac-sha256", b=("@path");expires=1700000000;tag="t""#,
            "a=:AAAA:, b=:AQID:",
        )
        .unwrap();
        assert_eq!(
            all.iter().map(|s| s.label.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(all[0].params.nonce.as_deref(), Some("n1"));
        assert_eq!(all[0].params.alg.as_deref(), Some("hmac-sha256"));
        assert_eq!(all[1].params.expires, Some(1_700_000_000));
        assert_eq!(all[1].params.tag.as_deref(), Some("t"));
        assert_eq!(all[1].bytes, [1, 2, 3]);
    }
}
