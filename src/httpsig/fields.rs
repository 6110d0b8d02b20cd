//! The signatures a message carries: `Signature-Input` and `Signature` read together
//! (RFC 9421 §4), each signature with what it covers and its parameters.
//!
//! Both fields are read with `sfv`'s visitors: labels, component names and parameters are
//! borrowed from the field values, and the `@signature-params` line is serialized while the
//! member is parsed, so that reading a signature costs a few allocations, not one per item.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use sfv::visitor::{
    DictionaryVisitor, EntryVisitor, Ignored, InnerListVisitor, ItemVisitor, Never,
    ParameterVisitor,
};
use sfv::{BareItemFromInput, ItemSerializer, KeyRef, Parser};

use super::base::{BaseError, CONTENT_DIGEST, Component, Derived};

/// One signature of a message: its label, what it covers, its parameters (`created`,
/// `expires`, `nonce`, `alg`, `keyid`, `tag`) and its bytes.
#[derive(Debug, Clone)]
pub(crate) struct Signature<'a> {
    pub(crate) label: &'a str,
    pub(crate) covered: Vec<Component<'a>>,
    pub(crate) params: Params<'a>,
    /// The `@signature-params` value: the member serialized again from what was parsed.
    pub(crate) params_line: String,
    pub(crate) bytes: Vec<u8>,
}

/// The signature parameters a verifier acts on (§2.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Params<'a> {
    pub(crate) created: Option<i64>,
    pub(crate) expires: Option<i64>,
    pub(crate) nonce: Option<Cow<'a, str>>,
    pub(crate) alg: Option<Cow<'a, str>>,
    pub(crate) keyid: Option<Cow<'a, str>>,
    pub(crate) tag: Option<Cow<'a, str>>,
}

impl Signature<'_> {
    /// Whether the signature covers the body's `Content-Digest`.
    pub(crate) fn covers_digest(&self) -> bool {
        self.covered
            .contains(&Component::Field(CONTENT_DIGEST.as_str()))
    }
}

/// Every signature of a message, from its `Signature-Input` and `Signature` field values. A
/// label present in one field and not the other or twice in one, a component covered twice,
/// or a component this verifier does not support makes the whole field unusable.
pub(crate) fn signatures<'a>(
    input: &'a str,
    signature: &'a str,
) -> Result<Vec<Signature<'a>>, BaseError> {
    let mut inputs = Inputs::default();
    parse(input, &mut inputs, "Signature-Input is not a dictionary")?;
    let mut values = Values {
        signatures: inputs.signatures,
        failure: None,
    };
    parse(signature, &mut values, "Signature is not a dictionary")?;
    let signatures = values.signatures;
    if let Some(unpaired) = signatures.iter().find(|s| s.bytes.is_empty()) {
        return Err(BaseError::Unpaired(unpaired.label.to_owned()));
    }
    Ok(signatures)
}

/// Parses a dictionary field with `visitor`; the visitor's own refusal, if it made one, is
/// the error, else the field's syntax is.
fn parse<'a, V: DictionaryVisitor<'a> + Refuses>(
    field: &'a str,
    visitor: &mut V,
    syntax: &'static str,
) -> Result<(), BaseError> {
    match Parser::new(field).parse_dictionary_with_visitor(visitor) {
        Ok(()) => Ok(()),
        Err(_) => Err(visitor.refusal().unwrap_or(BaseError::Malformed(syntax))),
    }
}

/// A visitor that may stop parsing with a refusal of its own.
trait Refuses {
    fn refusal(&mut self) -> Option<BaseError>;
}

/// What a visitor returns to stop the parse; the reason is kept beside it.
#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("signature field refused")
    }
}

impl std::error::Error for Stop {}

fn stop<T>(slot: &mut Option<BaseError>, error: BaseError) -> Result<T, Stop> {
    *slot = Some(error);
    Err(Stop)
}

/// Reads `Signature-Input`.
#[derive(Default)]
struct Inputs<'a> {
    signatures: Vec<Signature<'a>>,
    failure: Option<BaseError>,
}

impl Refuses for Inputs<'_> {
    fn refusal(&mut self) -> Option<BaseError> {
        self.failure.take()
    }
}

impl<'a> DictionaryVisitor<'a> for Inputs<'a> {
    type Error = Stop;

    fn entry(&mut self, key: &'a KeyRef) -> Result<impl EntryVisitor<'a>, Stop> {
        let label = key.as_str();
        if self.signatures.iter().any(|s| s.label == label) {
            return stop(
                &mut self.failure,
                BaseError::DuplicateLabel(label.to_owned()),
            );
        }
        let at = self.signatures.len();
        self.signatures.push(Signature {
            label,
            covered: Vec::with_capacity(8),
            params: Params::default(),
            params_line: String::with_capacity(160),
            bytes: Vec::new(),
        });
        Ok(Member {
            signature: &mut self.signatures[at],
            failure: &mut self.failure,
            unknown_params: Vec::new(),
        })
    }
}

/// One `Signature-Input` member: an inner list of component identifiers, then parameters.
struct Member<'v, 'a> {
    signature: &'v mut Signature<'a>,
    failure: &'v mut Option<BaseError>,
    /// Parameters other than the six of §2.3, kept to refuse a repeated one.
    unknown_params: Vec<&'a str>,
}

impl<'a> ItemVisitor<'a> for Member<'_, 'a> {
    type Error = Stop;

    fn bare_item(self, _: BareItemFromInput<'a>) -> Result<impl ParameterVisitor<'a>, Stop> {
        stop::<Never>(
            self.failure,
            BaseError::Malformed("a Signature-Input member is not an inner list"),
        )
    }
}

impl<'a> EntryVisitor<'a> for Member<'_, 'a> {
    fn inner_list(self) -> Result<impl InnerListVisitor<'a>, Stop> {
        self.signature.params_line.push('(');
        Ok(self)
    }
}

impl<'a> InnerListVisitor<'a> for Member<'_, 'a> {
    type Error = Stop;

    fn item(&mut self) -> Result<impl ItemVisitor<'a>, Stop> {
        Ok(ComponentName { member: self })
    }

    fn finish(self) -> Result<impl ParameterVisitor<'a>, Stop> {
        self.signature.params_line.push(')');
        Ok(self)
    }
}

impl<'a> ParameterVisitor<'a> for Member<'_, 'a> {
    type Error = Stop;

    fn parameter(&mut self, key: &'a KeyRef, value: BareItemFromInput<'a>) -> Result<(), Stop> {
        let params = &mut self.signature.params;
        let repeated = match key.as_str() {
            "created" | "expires" => {
                let Some(number) = value.as_integer().map(i64::from) else {
                    return stop(
                        self.failure,
                        BaseError::Malformed("created and expires are integers"),
                    );
                };
                let slot = if key.as_str() == "created" {
                    &mut params.created
                } else {
                    &mut params.expires
                };
                slot.replace(number).is_some()
            }
            name @ ("nonce" | "alg" | "keyid" | "tag") => {
                let BareItemFromInput::String(text) = &value else {
                    return stop(
                        self.failure,
                        BaseError::Malformed("nonce, alg, keyid and tag are strings"),
                    );
                };
                let text = match text {
                    Cow::Borrowed(text) => Cow::Borrowed(text.as_str()),
                    Cow::Owned(text) => Cow::Owned(text.as_str().to_owned()),
                };
                let slot = match name {
                    "nonce" => &mut params.nonce,
                    "alg" => &mut params.alg,
                    "keyid" => &mut params.keyid,
                    _ => &mut params.tag,
                };
                slot.replace(text).is_some()
            }
            // Other parameters are signed (they are in the base) and otherwise ignored (§2.3).
            other => {
                let repeated = self.unknown_params.contains(&other);
                self.unknown_params.push(other);
                repeated
            }
        };
        if repeated {
            // The dictionary rules would keep the last: a signer never repeats one, so a
            // repeated parameter is a forgery's attempt to be read two ways.
            return stop(
                self.failure,
                BaseError::Malformed("a signature parameter is repeated"),
            );
        }
        let line = &mut self.signature.params_line;
        line.push(';');
        line.push_str(key.as_str());
        match &value {
            BareItemFromInput::Boolean(true) => {}
            // The common values written as they are: a string read without escapes needs
            // none, an integer and a token are their own serialization.
            BareItemFromInput::String(Cow::Borrowed(text)) => {
                line.push_str("=\"");
                line.push_str(text.as_str());
                line.push('"');
            }
            BareItemFromInput::Integer(number) => {
                let _ = write!(line, "={}", i64::from(*number));
            }
            BareItemFromInput::Token(token) => {
                line.push('=');
                line.push_str(token.as_str());
            }
            _ => {
                line.push('=');
                let _ = ItemSerializer::with_buffer(line).bare_item(&value).finish();
            }
        }
        Ok(())
    }
}

/// One component identifier of a member's inner list.
struct ComponentName<'m, 'v, 'a> {
    member: &'m mut Member<'v, 'a>,
}

impl<'a> ItemVisitor<'a> for ComponentName<'_, '_, 'a> {
    type Error = Stop;

    fn bare_item(self, item: BareItemFromInput<'a>) -> Result<impl ParameterVisitor<'a>, Stop> {
        let Member {
            signature, failure, ..
        } = &mut *self.member;
        let name = match item {
            BareItemFromInput::String(Cow::Borrowed(name)) => name.as_str(),
            // Escapes (`\"`, `\\`) name nothing a message has.
            BareItemFromInput::String(Cow::Owned(_)) => {
                return stop(failure, BaseError::Malformed("a covered name is invalid"));
            }
            _ => {
                return stop(
                    failure,
                    BaseError::Malformed("a component identifier is not a string"),
                );
            }
        };
        let component = if name == "@query-param" {
            // Completed by its `name` parameter.
            Component::QueryParam("")
        } else if name.starts_with('@') {
            match Derived::from_name(name) {
                Some(derived) => Component::Derived(derived),
                None => return stop(failure, BaseError::Unsupported(name.to_owned())),
            }
        } else if name.bytes().any(|b| b.is_ascii_uppercase()) {
            // Field names are covered in lowercase (§2.1).
            return stop(
                failure,
                BaseError::Malformed("a covered field name is not lowercase"),
            );
        } else if is_token(name) {
            Component::Field(name)
        } else {
            return stop(
                failure,
                BaseError::Malformed("a covered field name is invalid"),
            );
        };
        signature.covered.push(component);
        Ok(ComponentParams {
            member: self.member,
            name,
        })
    }
}

/// The parameters of a component identifier: `name` of `@query-param`; any other (`sf`,
/// `key`, `bs`, `req`, `tr`) is not supported, so never ignored.
struct ComponentParams<'m, 'v, 'a> {
    member: &'m mut Member<'v, 'a>,
    name: &'a str,
}

impl<'a> ParameterVisitor<'a> for ComponentParams<'_, '_, 'a> {
    type Error = Stop;

    fn parameter(&mut self, key: &'a KeyRef, value: BareItemFromInput<'a>) -> Result<(), Stop> {
        let Member {
            signature, failure, ..
        } = &mut *self.member;
        let last = signature.covered.last_mut();
        match (last, key.as_str(), value) {
            (
                Some(Component::QueryParam(name @ "")),
                "name",
                BareItemFromInput::String(Cow::Borrowed(wanted)),
            ) if !wanted.as_str().is_empty() && !wanted.as_str().contains(['"', '\\']) => {
                *name = wanted.as_str();
                Ok(())
            }
            _ => stop(
                failure,
                BaseError::Unsupported(format!("{};{}", self.name, key.as_str())),
            ),
        }
    }

    fn finish(self) -> Result<(), Stop> {
        let Member {
            signature, failure, ..
        } = self.member;
        let Some(component) = signature.covered.last().copied() else {
            return Ok(());
        };
        if component == Component::QueryParam("") {
            return stop(
                failure,
                BaseError::Malformed("@query-param without its name"),
            );
        }
        let covered = signature.covered.len();
        if signature.covered[..covered - 1].contains(&component) {
            return stop(failure, BaseError::Duplicate(self.name.to_owned()));
        }
        let line = &mut signature.params_line;
        if !line.ends_with('(') {
            line.push(' ');
        }
        component.write_identifier(line);
        Ok(())
    }
}

/// An HTTP token (RFC 9110 §5.6.2): what a field name is made of.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Reads `Signature` into the signatures read from `Signature-Input`: each member a byte
/// sequence (its parameters are not signed, so ignored) whose label has an input.
struct Values<'a> {
    signatures: Vec<Signature<'a>>,
    failure: Option<BaseError>,
}

impl Refuses for Values<'_> {
    fn refusal(&mut self) -> Option<BaseError> {
        self.failure.take()
    }
}

impl<'a> DictionaryVisitor<'a> for Values<'a> {
    type Error = Stop;

    fn entry(&mut self, key: &'a KeyRef) -> Result<impl EntryVisitor<'a>, Stop> {
        let label = key.as_str();
        match self.signatures.iter_mut().find(|s| s.label == label) {
            Some(signature) if signature.bytes.is_empty() => Ok(Value {
                bytes: &mut signature.bytes,
                failure: &mut self.failure,
            }),
            Some(_) => stop(
                &mut self.failure,
                BaseError::DuplicateLabel(label.to_owned()),
            ),
            None => stop(&mut self.failure, BaseError::Unpaired(label.to_owned())),
        }
    }
}

struct Value<'v> {
    bytes: &'v mut Vec<u8>,
    failure: &'v mut Option<BaseError>,
}

impl<'a> ItemVisitor<'a> for Value<'_> {
    type Error = Stop;

    fn bare_item(self, item: BareItemFromInput<'a>) -> Result<impl ParameterVisitor<'a>, Stop> {
        match item {
            BareItemFromInput::ByteSequence(bytes) if !bytes.is_empty() => {
                *self.bytes = bytes;
                Ok(Ignored)
            }
            _ => stop(
                self.failure,
                BaseError::Malformed("a Signature member is not a byte sequence"),
            ),
        }
    }
}

impl<'a> EntryVisitor<'a> for Value<'_> {
    fn inner_list(self) -> Result<impl InnerListVisitor<'a>, Stop> {
        stop::<Never>(
            self.failure,
            BaseError::Malformed("a Signature member is not a byte sequence"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one<'a>(input: &'a str, signature: &'a str) -> Signature<'a> {
        let mut all = signatures(input, signature).unwrap();
        assert_eq!(all.len(), 1);
        all.remove(0)
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
            refused("s=(\"@unknown\")", sig),
            BaseError::Unsupported("@unknown".into())
        );
        // A label twice, in one field or across its lines (joined before parsing).
        assert_eq!(
            refused("s=(\"@method\"), s=(\"@path\")", sig),
            BaseError::DuplicateLabel("s".into())
        );
        assert_eq!(
            refused("s=(\"@method\")", "s=:AAAA:, s=:AQID:"),
            BaseError::DuplicateLabel("s".into())
        );
        // A parameter twice: the dictionary rules would keep the last, a signer never repeats.
        for repeated in [
            ";created=1;created=2",
            ";keyid=\"a\";keyid=\"b\"",
            ";x;x=?0",
        ] {
            assert!(matches!(
                refused(&format!("s=(\"@method\"){repeated}"), sig),
                BaseError::Malformed(_)
            ));
        }
        // Component parameters other than `name` of `@query-param` are not ignored.
        assert!(matches!(
            refused("s=(\"@query-param\";name=\"a\";sf)", sig),
            BaseError::Unsupported(_)
        ));
        assert!(matches!(
            refused("s=(\"@method\";name=\"a\")", sig),
            BaseError::Unsupported(_)
        ));
        assert!(matches!(
            refused("s=(\"@query-param\")", sig),
            BaseError::Malformed(_)
        ));
        assert_eq!(
            refused(
                "s=(\"@query-param\";name=\"a\" \"@query-param\";name=\"a\")",
                sig
            ),
            BaseError::Duplicate("@query-param".into())
        );
        assert!(matches!(
            refused("s=(\"@method\")", "s=::"),
            BaseError::Malformed(_)
        ));
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

    /// `@signature-params` is the member serialized again, not the bytes received: spacing
    /// and boolean parameters take their canonical form, other parameters are kept in order.
    #[test]
    fn the_signature_params_line_is_canonical() {
        let signature = one(
            "s=(  \"@method\"   \"@query-param\";name=\"a\"  );  created=1; v=?1;w=?0;t=tok;d=1.50;b=:AQ==:",
            "s=:AAAA:",
        );
        assert_eq!(
            signature.params_line,
            "(\"@method\" \"@query-param\";name=\"a\");created=1;v;w=?0;t=tok;d=1.5;b=:AQ==:"
        );
        assert_eq!(
            signature.covered,
            [
                Component::Derived(Derived::Method),
                Component::QueryParam("a")
            ]
        );
        // An escaped string parameter is unescaped in `params`, escaped again in the line.
        let escaped = one(r#"s=();nonce="a\"b""#, "s=:AAAA:");
        assert_eq!(escaped.params.nonce.as_deref(), Some("a\"b"));
        assert_eq!(escaped.params_line, r#"();nonce="a\"b""#);
    }

    #[test]
    fn several_signatures_are_read_in_order() {
        let all = signatures(
            r#"a=("@method");nonce="n1";alg="hmac-sha256", b=("@path");expires=1700000000;tag="t""#,
            "a=:AAAA:, b=:AQID:",
        )
        .unwrap();
        assert_eq!(all.iter().map(|s| s.label).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(all[0].params.nonce.as_deref(), Some("n1"));
        assert_eq!(all[0].params.alg.as_deref(), Some("hmac-sha256"));
        assert_eq!(all[1].params.expires, Some(1_700_000_000));
        assert_eq!(all[1].params.tag.as_deref(), Some("t"));
        assert_eq!(all[1].bytes, [1, 2, 3]);
    }
}
