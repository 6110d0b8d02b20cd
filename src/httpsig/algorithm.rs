//! Keys pinned to one algorithm each (RFC 9421 §3.3): the configuration chooses the algorithm,
//! never the message; an `alg` parameter that disagrees with the key is refused by the caller.

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::ConfigError;

/// A key that verifies signatures of one algorithm.
pub(crate) enum VerifyingKey {
    /// `hmac-sha256`: a shared secret.
    HmacSha256(Hmac<Sha256>),
    /// `ed25519`: a public key.
    Ed25519(UnparsedPublicKey<Vec<u8>>),
}

/// Shared secrets shorter than this are refused, as everywhere in this crate.
const MIN_SECRET_LEN: usize = 32;

impl VerifyingKey {
    /// An `hmac-sha256` key.
    pub(crate) fn hmac_sha256(secret: &[u8]) -> Result<Self, ConfigError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(ConfigError::SecretTooShort {
                what: "hmac-sha256 secret",
                min: MIN_SECRET_LEN,
                actual: secret.len(),
            });
        }
        Hmac::new_from_slice(secret)
            .map(Self::HmacSha256)
            .map_err(|_| invalid("an HMAC key of any length is accepted"))
    }

    /// An `ed25519` key from its SubjectPublicKeyInfo (DER), as in a `PUBLIC KEY` PEM.
    pub(crate) fn ed25519_spki(der: &[u8]) -> Result<Self, ConfigError> {
        // SubjectPublicKeyInfo for Ed25519 (RFC 8410): a fixed 12-byte prefix, then the key.
        const PREFIX: [u8; 12] = [
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        match der.strip_prefix(&PREFIX) {
            Some(key) if key.len() == 32 => Ok(Self::Ed25519(UnparsedPublicKey::new(
                &ED25519,
                key.to_vec(),
            ))),
            _ => Err(invalid("not an Ed25519 public key (SubjectPublicKeyInfo)")),
        }
    }

    /// The algorithm's name in RFC 9421's registry.
    pub(crate) fn algorithm(&self) -> &'static str {
        match self {
            Self::HmacSha256(_) => "hmac-sha256",
            Self::Ed25519(_) => "ed25519",
        }
    }

    /// Whether `signature` is this key's over `base`; MACs are compared in constant time.
    pub(crate) fn verify(&self, base: &[u8], signature: &[u8]) -> bool {
        match self {
            Self::HmacSha256(key) => {
                let mut mac = key.clone();
                mac.update(base);
                mac.verify_slice(signature).is_ok()
            }
            Self::Ed25519(key) => key.verify(base, signature).is_ok(),
        }
    }
}

/// A key that signs with one algorithm.
pub(crate) enum SigningKey {
    HmacSha256(Hmac<Sha256>),
    Ed25519(Ed25519KeyPair),
}

impl SigningKey {
    /// An `hmac-sha256` key.
    pub(crate) fn hmac_sha256(secret: &[u8]) -> Result<Self, ConfigError> {
        match VerifyingKey::hmac_sha256(secret)? {
            VerifyingKey::HmacSha256(mac) => Ok(Self::HmacSha256(mac)),
            VerifyingKey::Ed25519(_) => Err(invalid("an HMAC key")),
        }
    }

    /// An `ed25519` key from a PKCS#8 private key (DER).
    pub(crate) fn ed25519_pkcs8(der: &[u8]) -> Result<Self, ConfigError> {
        Ed25519KeyPair::from_pkcs8(der)
            .map(Self::Ed25519)
            .map_err(|_| invalid("not an Ed25519 private key (PKCS#8)"))
    }

    /// The signature over `base` (Ed25519 is deterministic, so is this).
    pub(crate) fn sign(&self, base: &[u8]) -> Vec<u8> {
        match self {
            Self::HmacSha256(key) => {
                let mut mac = key.clone();
                mac.update(base);
                mac.finalize().into_bytes().to_vec()
            }
            Self::Ed25519(pair) => pair.sign(base).as_ref().to_vec(),
        }
    }

    /// The key that verifies what this one signs.
    pub(crate) fn verifying_key(&self) -> VerifyingKey {
        match self {
            Self::HmacSha256(mac) => VerifyingKey::HmacSha256(mac.clone()),
            Self::Ed25519(pair) => VerifyingKey::Ed25519(UnparsedPublicKey::new(
                &ED25519,
                pair.public_key().as_ref().to_vec(),
            )),
        }
    }
}

fn invalid(reason: &str) -> ConfigError {
    ConfigError::Invalid {
        what: "HTTP message signature key",
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::super::base::tests::{message, test_request};
    use super::super::base::{signature_base, signatures};
    use super::*;

    /// `test-shared-secret` of RFC 9421 Appendix B.1.5.
    const TEST_SHARED_SECRET: &str =
        "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";
    /// `test-key-ed25519` of RFC 9421 Appendix B.1.4 (public key, SubjectPublicKeyInfo).
    const TEST_KEY_ED25519: &str = "MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=";

    fn base_of(input: &str, signature: &str) -> (Vec<u8>, Vec<u8>) {
        let (method, headers) = test_request();
        let signature = signatures(input, signature).unwrap().remove(0);
        let base = signature_base(&message(&method, &headers), &signature).unwrap();
        (base.into_bytes(), signature.bytes)
    }

    /// Appendix B.2.5: the HMAC signature reproduced byte for byte, and verified.
    #[test]
    fn the_rfc_hmac_signature() {
        let (base, signature) = base_of(
            r#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#,
            "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:",
        );
        let secret = STANDARD.decode(TEST_SHARED_SECRET).unwrap();
        let key = SigningKey::hmac_sha256(&secret).unwrap();
        assert_eq!(key.sign(&base), signature);
        let verifier = key.verifying_key();
        assert!(verifier.verify(&base, &signature));
        let mut tampered = base.clone();
        tampered[1] ^= 1;
        assert!(!verifier.verify(&tampered, &signature));
        assert!(!verifier.verify(&base, &signature[..31]));
    }

    /// Appendix B.2.6: the Ed25519 signature verified with the RFC's public key.
    #[test]
    fn the_rfc_ed25519_signature() {
        let (base, signature) = base_of(
            r#"sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519""#,
            "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:",
        );
        let key = VerifyingKey::ed25519_spki(&STANDARD.decode(TEST_KEY_ED25519).unwrap()).unwrap();
        assert_eq!(key.algorithm(), "ed25519");
        assert!(key.verify(&base, &signature));
        let mut tampered = signature.clone();
        tampered[0] ^= 1;
        assert!(!key.verify(&base, &tampered));
    }

    /// A key verifies its own algorithm only: an HMAC over the base is no Ed25519 signature,
    /// and an Ed25519 signature is no HMAC.
    #[test]
    fn keys_do_not_cross_algorithms() {
        let base = b"\"@method\": POST\n\"@signature-params\": (\"@method\")";
        let hmac = SigningKey::hmac_sha256(&[7; 32]).unwrap();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
        let ed25519 = SigningKey::ed25519_pkcs8(pkcs8.as_ref()).unwrap();
        let (mac, signature) = (hmac.sign(base), ed25519.sign(base));
        assert!(hmac.verifying_key().verify(base, &mac));
        assert!(ed25519.verifying_key().verify(base, &signature));
        assert!(!ed25519.verifying_key().verify(base, &mac));
        assert!(!hmac.verifying_key().verify(base, &signature));
        assert_eq!(ed25519.sign(base), signature, "Ed25519 is deterministic");
    }

    #[test]
    fn weak_or_wrong_keys_are_refused() {
        assert!(matches!(
            VerifyingKey::hmac_sha256(&[1; 31]),
            Err(ConfigError::SecretTooShort { .. })
        ));
        assert!(VerifyingKey::ed25519_spki(&[0; 44]).is_err());
        assert!(SigningKey::ed25519_pkcs8(b"not a key").is_err());
    }
}
