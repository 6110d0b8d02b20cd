//! `Content-Digest` (RFC 9530): the body's digest, so that a signature covering the field
//! covers the body.

use sfv::visitor::{
    DictionaryVisitor, EntryVisitor, Ignored, InnerListVisitor, ItemVisitor, Never,
    ParameterVisitor,
};
use sfv::{BareItemFromInput, KeyRef, Parser};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Why a `Content-Digest` does not vouch for a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DigestError {
    /// Not a structured-field dictionary of byte sequences.
    #[error("malformed Content-Digest")]
    Malformed,
    /// No `sha-256` or `sha-512` digest in it.
    #[error("Content-Digest has no sha-256 or sha-512 digest")]
    NoSupportedAlgorithm,
    /// A supported digest does not match the body.
    #[error("Content-Digest does not match the body")]
    Mismatch,
}

/// Checks every `sha-256` and `sha-512` digest in `field` against `body` (other algorithms are
/// ignored, as RFC 9530 allows); at least one must be there.
pub(crate) fn check(field: &str, body: &[u8]) -> Result<(), DigestError> {
    let mut claims = Claims {
        body,
        checked: false,
        mismatch: false,
    };
    Parser::new(field)
        .parse_dictionary_with_visitor(&mut claims)
        .map_err(|_| DigestError::Malformed)?;
    match claims {
        Claims { mismatch: true, .. } => Err(DigestError::Mismatch),
        Claims { checked: false, .. } => Err(DigestError::NoSupportedAlgorithm),
        _ => Ok(()),
    }
}

/// Compares each supported digest the field claims with the body's, as it is read (the
/// outcome counts only if the whole field parses).
struct Claims<'b> {
    body: &'b [u8],
    checked: bool,
    mismatch: bool,
}

#[derive(Debug, Clone, Copy)]
enum Algorithm {
    Sha256,
    Sha512,
}

/// The visitors' refusal: the field is malformed.
#[derive(Debug, thiserror::Error)]
#[error("malformed Content-Digest")]
struct NotADigest;

impl<'a> DictionaryVisitor<'a> for Claims<'_> {
    type Error = NotADigest;

    fn entry(&mut self, key: &'a KeyRef) -> Result<impl EntryVisitor<'a>, NotADigest> {
        let algorithm = match key.as_str() {
            "sha-256" => Algorithm::Sha256,
            "sha-512" => Algorithm::Sha512,
            _ => return Ok(None),
        };
        Ok(Some(Claim {
            claims: self,
            algorithm,
        }))
    }
}

struct Claim<'c, 'b> {
    claims: &'c mut Claims<'b>,
    algorithm: Algorithm,
}

impl<'a> ItemVisitor<'a> for Claim<'_, '_> {
    type Error = NotADigest;

    fn bare_item(
        self,
        item: BareItemFromInput<'a>,
    ) -> Result<impl ParameterVisitor<'a>, NotADigest> {
        let BareItemFromInput::ByteSequence(claimed) = item else {
            return Err(NotADigest);
        };
        let body = self.claims.body;
        let matches = match self.algorithm {
            Algorithm::Sha256 => claimed.ct_eq(&Sha256::digest(body)),
            Algorithm::Sha512 => claimed.ct_eq(&Sha512::digest(body)),
        };
        self.claims.checked = true;
        self.claims.mismatch |= !bool::from(matches);
        Ok(Ignored)
    }
}

impl<'a> EntryVisitor<'a> for Claim<'_, '_> {
    fn inner_list(self) -> Result<impl InnerListVisitor<'a>, NotADigest> {
        Err::<Never, _>(NotADigest)
    }
}

/// The `Content-Digest` value for `body`, with SHA-256.
pub(crate) fn sha256_field(body: &[u8]) -> String {
    use base64::Engine;
    let digest = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body));
    format!("sha-256=:{digest}:")
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"hello": "world"}"#;

    /// The request of RFC 9421 Appendix B.2 carries this digest of its body.
    #[test]
    fn the_rfc_example_digest() {
        let field = "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";
        assert_eq!(check(field, BODY), Ok(()));
        assert_eq!(
            check(field, b"{\"hello\": \"world!\"}"),
            Err(DigestError::Mismatch)
        );
    }

    #[test]
    fn made_digests_check_and_every_supported_one_must_match() {
        let field = sha256_field(BODY);
        assert_eq!(check(&field, BODY), Ok(()));
        assert_eq!(check(&format!("md5=:AAAA:, {field}"), BODY), Ok(()));
        let wrong_sha512 = "sha-512=:AAAA:";
        assert_eq!(
            check(&format!("{field}, {wrong_sha512}"), BODY),
            Err(DigestError::Mismatch)
        );
        assert_eq!(
            check("md5=:AAAA:", BODY),
            Err(DigestError::NoSupportedAlgorithm)
        );
        assert_eq!(check("sha-256=\"text\"", BODY), Err(DigestError::Malformed));
        assert_eq!(check("sha-256=(:AAAA:)", BODY), Err(DigestError::Malformed));
        assert_eq!(check("sha-256=:", BODY), Err(DigestError::Malformed));
    }
}
