//! Keys pinned to one algorithm each (RFC 9421 §3.3): the configuration chooses the algorithm,
//! never the message; an `alg` parameter that disagrees with the key is refused by the caller.

use aws_lc_rs::signature::{
    self as aws, ED25519, Ed25519KeyPair, ParsedPublicKey, VerificationAlgorithm,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::ConfigError;

/// A key that verifies signatures of one algorithm.
pub(crate) enum VerifyingKey {
    /// `hmac-sha256`: a shared secret.
    HmacSha256(Hmac<Sha256>),
    /// `ed25519`, `ecdsa-p256-sha256`, `ecdsa-p384-sha384`, `rsa-pss-sha512`,
    /// `rsa-v1_5-sha256`: a public key, parsed and checked once, with the algorithm's name.
    PublicKey(ParsedPublicKey, &'static str),
}

/// The public-key algorithms of RFC 9421 §3.3, by their registered names. ECDSA signatures are
/// the fixed-length `r || s` the RFC specifies, not DER.
const PUBLIC_KEY_ALGORITHMS: [(&str, &'static dyn VerificationAlgorithm); 5] = [
    ("ed25519", &ED25519),
    ("ecdsa-p256-sha256", &aws::ECDSA_P256_SHA256_FIXED),
    ("ecdsa-p384-sha384", &aws::ECDSA_P384_SHA384_FIXED),
    ("rsa-pss-sha512", &aws::RSA_PSS_2048_8192_SHA512),
    ("rsa-v1_5-sha256", &aws::RSA_PKCS1_2048_8192_SHA256),
];

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

    /// A public key for `algorithm` (`ed25519`, `ecdsa-p256-sha256`, `ecdsa-p384-sha384`,
    /// `rsa-pss-sha512`, `rsa-v1_5-sha256`) from its SubjectPublicKeyInfo (DER), as in a
    /// `PUBLIC KEY` PEM. A key of another type than the algorithm's is refused.
    pub(crate) fn public_key(algorithm: &str, spki: &[u8]) -> Result<Self, ConfigError> {
        let Some((name, verifier)) = PUBLIC_KEY_ALGORITHMS
            .into_iter()
            .find(|(name, _)| *name == algorithm)
        else {
            return Err(invalid("unknown algorithm"));
        };
        let key = ParsedPublicKey::new(verifier, spki_key(name, spki)?)
            .map_err(|_| invalid("the public key is not a valid key of its algorithm"))?;
        Ok(Self::PublicKey(key, name))
    }

    /// The algorithm's name in RFC 9421's registry.
    pub(crate) fn algorithm(&self) -> &'static str {
        match self {
            Self::HmacSha256(_) => "hmac-sha256",
            Self::PublicKey(_, name) => name,
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
            Self::PublicKey(key, _) => key.verify_sig(base, signature).is_ok(),
        }
    }
}

/// The key bytes each algorithm's verifier takes, out of a SubjectPublicKeyInfo: the raw key
/// for Ed25519, the uncompressed point for ECDSA, PKCS#1 `RSAPublicKey` for RSA. The
/// algorithm identifier must be the algorithm's own.
fn spki_key(algorithm: &str, spki: &[u8]) -> Result<Vec<u8>, ConfigError> {
    use x509_parser::prelude::FromDer;
    use x509_parser::x509::SubjectPublicKeyInfo;
    let (rest, info) = SubjectPublicKeyInfo::from_der(spki)
        .map_err(|_| invalid("not a SubjectPublicKeyInfo (PUBLIC KEY)"))?;
    if !rest.is_empty() {
        return Err(invalid("bytes after the public key"));
    }
    let oid = info.algorithm.algorithm.to_id_string();
    let curve = info
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|oid| oid.to_id_string());
    let expected = match algorithm {
        "ed25519" => oid == "1.3.101.112",
        "ecdsa-p256-sha256" => {
            oid == "1.2.840.10045.2.1" && curve.as_deref() == Some("1.2.840.10045.3.1.7")
        }
        "ecdsa-p384-sha384" => {
            oid == "1.2.840.10045.2.1" && curve.as_deref() == Some("1.3.132.0.34")
        }
        _ => oid == "1.2.840.113549.1.1.1",
    };
    if !expected {
        return Err(invalid("the public key is not of the configured algorithm"));
    }
    Ok(info.subject_public_key.data.to_vec())
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
            VerifyingKey::PublicKey(..) => Err(invalid("an HMAC key")),
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
    #[cfg(test)]
    pub(crate) fn verifying_key(&self) -> VerifyingKey {
        use aws_lc_rs::signature::KeyPair;
        match self {
            Self::HmacSha256(mac) => VerifyingKey::HmacSha256(mac.clone()),
            Self::Ed25519(pair) => VerifyingKey::PublicKey(
                ParsedPublicKey::new(&ED25519, pair.public_key().as_ref()).unwrap(),
                "ed25519",
            ),
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

    use super::super::base::tests::{B24_INPUT, message, response, test_request, test_response};
    use super::super::base::{Message, signature_base};
    use super::super::fields::signatures;
    use super::*;

    /// `test-shared-secret` of RFC 9421 Appendix B.1.5.
    const TEST_SHARED_SECRET: &str =
        "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";
    /// `test-key-ed25519` of RFC 9421 Appendix B.1.4 (public key, SubjectPublicKeyInfo).
    const TEST_KEY_ED25519: &str = "MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=";
    /// Its private key (PKCS#8).
    const TEST_KEY_ED25519_PRIVATE: &str =
        "MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF";
    /// `test-key-ecc-p256` of RFC 9421 Appendix B.1.3 (public key, SubjectPublicKeyInfo).
    const TEST_KEY_ECC_P256: &str = concat!(
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqIVYZVLCrPZHGHjP17CTW0/+D9Lf",
        "w0EkjqF7xB4FivAxzic30tMM4GF+hR6Dxh71Z50VGGdldkkDXZCnTNnoXQ==",
    );
    /// `test-key-rsa-pss` of RFC 9421 Appendix B.1.2 (public key, SubjectPublicKeyInfo).
    const TEST_KEY_RSA: &str = concat!(
        "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAr4tmm3r20Wd/PbqvP1s2",
        "+QEtvpuRaV8Yq40gjUR8y2Rjxa6dpG2GXHbPfvMs8ct+Lh1GH45x28Rw3Ry53mm+",
        "oAXjyQ86OnDkZ5N8lYbggD4O3w6M6pAvLkhk95AndTrifbIFPNU8PPMO7OyrFAHq",
        "gDsznjPFmTOtCEcN2Z1FpWgchwuYLPL+Wokqltd11nqqzi+bJ9cvSKADYdUAAN5W",
        "Utzdpiy6LbTgSxP7ociU4Tn0g5I6aDZJ7A8Lzo0KSyZYoA485mqcO0GVAdVw9lq4",
        "aOT9v6d+nb4bnNkQVklLQ3fVAvJm+xdDOp9LCNCN48V2pnDOkFV6+U9nV5oyc6XI",
        "2wIDAQAB",
    );

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

    /// Appendix B.2.6: the Ed25519 signature reproduced byte for byte with the RFC's private
    /// key, and verified with its public key.
    #[test]
    fn the_rfc_ed25519_signature() {
        let (base, signature) = base_of(
            r#"sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519""#,
            "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:",
        );
        let key = VerifyingKey::public_key("ed25519", &STANDARD.decode(TEST_KEY_ED25519).unwrap())
            .unwrap();
        assert_eq!(key.algorithm(), "ed25519");
        assert!(key.verify(&base, &signature));
        let private =
            SigningKey::ed25519_pkcs8(&STANDARD.decode(TEST_KEY_ED25519_PRIVATE).unwrap()).unwrap();
        assert_eq!(private.sign(&base), signature);
        let mut tampered = signature.clone();
        tampered[0] ^= 1;
        assert!(!key.verify(&base, &tampered));
    }

    /// Appendix B.2.3: the RSA-PSS signature over every covered component verified with the
    /// RFC's public key (RSA-PSS is randomized: verified, not reproduced).
    #[test]
    fn the_rfc_rsa_pss_signature() {
        let (base, signature) = base_of(
            r#"sig-b23=("date" "@method" "@path" "@query" "@authority" "content-type" "content-digest" "content-length");created=1618884473;keyid="test-key-rsa-pss""#,
            concat!(
                "sig-b23=:bbN8oArOxYoyylQQUU6QYwrTuaxLwjAC9fbY2F6SVWvh0yBiMIRGOnMYwZ/5MR6fb0Kh1rIRASVxFk",
                "eGt683+qRpRRU5p2voTp768ZrCUb38K0fUxN0O0iC59DzYx8DFll5GmydPxSmme9v6ULbMFkl+V5B1TP/yPViV7",
                "KsLNmvKiLJH1pFkh/aYA2HXXZzNBXmIkoQoLd7YfW91kE9o/CCoC1xMy7JA1ipwvKvfrs65ldmlu9bpG6A9Bmzhu",
                "zF8Eim5f8ui9eH8LZH896+QIF61ka39VBrohr9iyMUJpvRX2Zbhl5ZJzSRxpJyoEZAFL2FUo5fTIztsDZKEgM4cUA==:",
            ),
        );
        let spki = STANDARD.decode(TEST_KEY_RSA).unwrap();
        let key = VerifyingKey::public_key("rsa-pss-sha512", &spki).unwrap();
        assert!(key.verify(&base, &signature));
        assert!(!key.verify(&base[1..], &signature));
        // The same key pinned to RSA PKCS#1 v1.5 does not take a PSS signature.
        let v15 = VerifyingKey::public_key("rsa-v1_5-sha256", &spki).unwrap();
        assert!(!v15.verify(&base, &signature));
    }

    /// Appendix B.2.1 (nothing covered, a nonce) and B.2.2 (`@authority` and the digest): the
    /// bases as the RFC prints them, and the RFC's RSA-PSS signatures verified over them.
    #[test]
    fn the_rfc_minimal_and_selective_rsa_pss_signatures() {
        let spki = STANDARD.decode(TEST_KEY_RSA).unwrap();
        let key = VerifyingKey::public_key("rsa-pss-sha512", &spki).unwrap();
        for (input, signature, expected_base) in [
            (
                r#"sig-b21=();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd""#,
                concat!(
                    "sig-b21=:d2pmTvmbncD3xQm8E9ZV2828BjQWGgiwAaw5bAkgibUopemLJcWDy/lkbbHAve4cRAtx31",
                    "Iq786U7it++wgGxbtRxf8Udx7zFZsckzXaJMkA7ChG52eSkFxykJeNqsrWH5S+oxNFlD4dzVuwe8Dh",
                    "TSja8xxbR/Z2cOGdCbzR72rgFWhzx2VjBqJzsPLMIQKhO4DGezXehhWwE56YCE+O6c0mKZsfxVrog",
                    "UvA4HELjVKWmAvtl6UnCh8jYzuVG5WSb/QEVPnP5TmcAnLH1g+s++v6d4s8m0gCw1fV5/SITLq9mh",
                    "ho8K3+7EPYTU8IU1bLhdxO5Nyt8C8ssinQ98Xw9Q==:",
                ),
                r#""@signature-params": ();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd""#,
            ),
            (
                r#"sig-b22=("@authority" "content-digest");created=1618884473;keyid="test-key-rsa-pss""#,
                concat!(
                    "sig-b22=:Fee1uy9YGZq5UUwwYU6vz4dZNvfw3GYrFl1L6YlVIyUMuWswWDNSvql4dVtSeidYjYZUm7",
                    "SBCENIb5KYy2ByoC3bI+7gydd2i4OAT5lyDtmeapnAa8uP/b9xUpg+VSPElbBs6JWBIQsd+nMdHDe+",
                    "ls/IwVMwXktC37SqsnbNyhNp6kcvcWpevjzFcD2VqdZleUz4jN7P+W5A3wHiMGfIjIWn36KXNB+RK",
                    "yrlGnIS8yaBBrom5rcZWLrLbtg6VlrH1+/07RV+kgTh/l10h8qgpl9zQHu7mWbDKTq0tJ8K4ywcPoC",
                    "4s2I4rU88jzDKDGdTTQFZoTVZxZmuTM1FvHfzIw==:",
                ),
                concat!(
                    "\"@authority\": example.com\n",
                    "\"content-digest\": sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:\n",
                    "\"@signature-params\": (\"@authority\" \"content-digest\");created=1618884473;keyid=\"test-key-rsa-pss\"",
                ),
            ),
        ] {
            let (base, signature) = base_of(input, signature);
            assert_eq!(String::from_utf8(base.clone()).unwrap(), expected_base);
            assert!(key.verify(&base, &signature), "{input}");
        }
    }

    /// Appendix B.2.4: the ECDSA P-256 signature of a response verified with the RFC's public
    /// key (ECDSA is randomized: verified, not reproduced).
    #[test]
    fn the_rfc_ecdsa_response_signature() {
        let (method, headers) = test_response();
        let signature = signatures(
            B24_INPUT,
            "sig-b24=:wNmSUAhwb5LxtOtOpNa6W5xj067m5hFrj0XQ4fvpaCLx0NKocgPquLgyahnzDnDAUy5eCdlYUEkLIj+32oiasw==:",
        )
        .unwrap()
        .remove(0);
        let base = signature_base(&response(&method, &headers), &signature).unwrap();
        let spki = STANDARD.decode(TEST_KEY_ECC_P256).unwrap();
        let key = VerifyingKey::public_key("ecdsa-p256-sha256", &spki).unwrap();
        assert!(key.verify(base.as_bytes(), &signature.bytes));
        let other_status = signature_base(
            &Message {
                status: Some(201),
                ..response(&method, &headers)
            },
            &signature,
        )
        .unwrap();
        assert!(!key.verify(other_status.as_bytes(), &signature.bytes));
    }

    /// ECDSA signatures are `r || s` of fixed length (§3.3.4), as aws-lc makes them.
    #[test]
    fn ecdsa_keys_verify_fixed_length_signatures() {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let random = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &random).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let base = b"\"@method\": GET\n\"@signature-params\": (\"@method\")";
        let signature = pair.sign(&random, base).unwrap();
        assert_eq!(signature.as_ref().len(), 64);
        // The SubjectPublicKeyInfo of the point: the P-256 prefix, then the point.
        let mut spki = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        spki.extend_from_slice(pair.public_key().as_ref());
        let key = VerifyingKey::public_key("ecdsa-p256-sha256", &spki).unwrap();
        assert!(key.verify(base, signature.as_ref()));
        assert!(!key.verify(b"another base", signature.as_ref()));
        assert!(VerifyingKey::public_key("ecdsa-p384-sha384", &spki).is_err());
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
        assert!(VerifyingKey::public_key("ed25519", &[0; 44]).is_err());
        let ed25519 = STANDARD.decode(TEST_KEY_ED25519).unwrap();
        let rsa = STANDARD.decode(TEST_KEY_RSA).unwrap();
        // A key is taken for its own algorithm only.
        assert!(VerifyingKey::public_key("rsa-pss-sha512", &ed25519).is_err());
        assert!(VerifyingKey::public_key("ed25519", &rsa).is_err());
        assert!(VerifyingKey::public_key("ecdsa-p256-sha256", &rsa).is_err());
        assert!(VerifyingKey::public_key("rsa-v1_5-sha256", &rsa).is_ok());
        assert!(VerifyingKey::public_key("hs256", &rsa).is_err());
        assert!(SigningKey::ed25519_pkcs8(b"not a key").is_err());
    }
}
