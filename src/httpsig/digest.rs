//! `Content-Digest` (RFC 9530): the body's digest, so that a signature covering the field
//! covers the body.

use sfv::{Dictionary, ListEntry, Parser};
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
    let digests: Dictionary = Parser::new(field)
        .parse()
        .map_err(|_| DigestError::Malformed)?;
    let mut checked = false;
    for (algorithm, entry) in &digests {
        let ListEntry::Item(item) = entry else {
            return Err(DigestError::Malformed);
        };
        let actual: Vec<u8> = match algorithm.as_str() {
            "sha-256" => Sha256::digest(body).to_vec(),
            "sha-512" => Sha512::digest(body).to_vec(),
            _ => continue,
        };
        let claimed = item
            .bare_item
            .as_byte_sequence()
            .ok_or(DigestError::Malformed)?;
        if !bool::from(claimed.ct_eq(&actual)) {
            return Err(DigestError::Mismatch);
        }
        checked = true;
    }
    if checked {
        Ok(())
    } else {
        Err(DigestError::NoSupportedAlgorithm)
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
