//! Verification keys. Each key carries the one algorithm it accepts: the key decides the
//! algorithm, never the token's header.

use std::fmt;

use base64::Engine;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::Jwk;

use crate::error::ConfigError;

/// Shortest HMAC secret accepted: 256 bits.
const MIN_SECRET_LEN: usize = 32;

/// A JWS signature algorithm (RFC 7518). `none` does not exist here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// HMAC with SHA-256.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA with P-256 and SHA-256.
    ES256,
    /// ECDSA with P-384 and SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

impl Algorithm {
    pub(crate) fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as A;
        match self {
            Self::HS256 => A::HS256,
            Self::HS384 => A::HS384,
            Self::HS512 => A::HS512,
            Self::RS256 => A::RS256,
            Self::RS384 => A::RS384,
            Self::RS512 => A::RS512,
            Self::PS256 => A::PS256,
            Self::PS384 => A::PS384,
            Self::PS512 => A::PS512,
            Self::ES256 => A::ES256,
            Self::ES384 => A::ES384,
            Self::EdDSA => A::EdDSA,
        }
    }

    pub(crate) fn from_jsonwebtoken(alg: jsonwebtoken::Algorithm) -> Option<Self> {
        use jsonwebtoken::Algorithm as A;
        Some(match alg {
            A::HS256 => Self::HS256,
            A::HS384 => Self::HS384,
            A::HS512 => Self::HS512,
            A::RS256 => Self::RS256,
            A::RS384 => Self::RS384,
            A::RS512 => Self::RS512,
            A::PS256 => Self::PS256,
            A::PS384 => Self::PS384,
            A::PS512 => Self::PS512,
            A::ES256 => Self::ES256,
            A::ES384 => Self::ES384,
            A::EdDSA => Self::EdDSA,
            _ => return None,
        })
    }

    fn is_hmac(self) -> bool {
        matches!(self, Self::HS256 | Self::HS384 | Self::HS512)
    }
}

/// A key that verifies tokens, with the one algorithm it accepts and an optional key id.
///
/// ```
/// use tower_zerotrust::jwt::{Algorithm, JwtKey};
///
/// let key = JwtKey::hmac(Algorithm::HS256, "a shared secret of at least 32 bytes")
///     .unwrap()
///     .with_kid("2026-11");
/// assert_eq!(key.algorithm(), Algorithm::HS256);
/// assert_eq!(key.kid(), Some("2026-11"));
/// assert!(JwtKey::hmac(Algorithm::HS256, "short").is_err());
/// ```
#[derive(Clone)]
pub struct JwtKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

impl JwtKey {
    /// An HMAC key (HS256/384/512) from a shared secret of at least 32 bytes.
    ///
    /// # Errors
    ///
    /// A non-HMAC algorithm or a secret shorter than 32 bytes.
    pub fn hmac(algorithm: Algorithm, secret: &str) -> Result<Self, ConfigError> {
        if !algorithm.is_hmac() {
            return Err(invalid("an HMAC key needs HS256, HS384 or HS512"));
        }
        if secret.len() < MIN_SECRET_LEN {
            return Err(ConfigError::SecretTooShort {
                what: "JWT secret",
                min: MIN_SECRET_LEN,
                actual: secret.len(),
            });
        }
        Ok(Self::new(
            algorithm,
            DecodingKey::from_secret(secret.as_bytes()),
        ))
    }

    /// A public key in PEM (`BEGIN PUBLIC KEY`, or `BEGIN RSA PUBLIC KEY`, or a certificate's key),
    /// for the given asymmetric algorithm.
    ///
    /// # Errors
    ///
    /// An HMAC algorithm, or a PEM that is not a key of the algorithm's family.
    pub fn from_pem(algorithm: Algorithm, pem: &[u8]) -> Result<Self, ConfigError> {
        use Algorithm::*;
        let key = match algorithm {
            HS256 | HS384 | HS512 => return Err(invalid("HMAC keys are secrets, not PEM")),
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => DecodingKey::from_rsa_pem(pem),
            ES256 | ES384 => DecodingKey::from_ec_pem(pem),
            EdDSA => DecodingKey::from_ed_pem(pem),
        }
        .map_err(|e| invalid(&format!("not a {algorithm:?} public key: {e}")))?;
        Ok(Self::new(algorithm, key))
    }

    /// A public key in PEM whose algorithm follows from the key itself: RSA → RS256 (use
    /// [`from_pem`](Self::from_pem) for RS384/512 or PS*), P-256 → ES256, P-384 → ES384,
    /// Ed25519 → EdDSA.
    ///
    /// # Errors
    ///
    /// A PEM that holds none of these.
    pub fn from_public_pem(pem: &[u8]) -> Result<Self, ConfigError> {
        Self::from_pem(infer_algorithm(pem)?, pem)
    }

    /// A key from a JSON Web Key. Its `alg` decides the algorithm; without one, the key type
    /// does (RSA → RS256, P-256 → ES256, P-384 → ES384, Ed25519 → EdDSA). Symmetric (`oct`) JWKs
    /// are refused: a published key set must not carry secrets. So are keys published for
    /// encryption (`use: enc`, `key_ops` without `verify`, an `alg` such as `RSA-OAEP`) and keys
    /// whose `alg` does not fit their type.
    ///
    /// # Errors
    ///
    /// A key that cannot be used for verification.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, ConfigError> {
        use jsonwebtoken::jwk::{
            AlgorithmParameters, EllipticCurve, KeyAlgorithm, KeyOperations, PublicKeyUse,
        };
        // A key published for encryption never verifies a signature (RFC 7517 §4.2, §4.3).
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return Err(invalid(
                "an encryption key (`use: enc`) verifies no signature",
            ));
        }
        if let Some(ops) = &jwk.common.key_operations
            && !ops.iter().any(|op| matches!(op, KeyOperations::Verify))
        {
            return Err(invalid("the key's `key_ops` do not include `verify`"));
        }
        // What the key's type allows; RSA keys sign with PKCS#1 v1.5 or PSS.
        let (by_type, family): (Algorithm, &[Algorithm]) = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => (
                Algorithm::RS256,
                &[
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ],
            ),
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                (Algorithm::ES256, &[Algorithm::ES256])
            }
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => {
                (Algorithm::ES384, &[Algorithm::ES384])
            }
            AlgorithmParameters::OctetKeyPair(_) => (Algorithm::EdDSA, &[Algorithm::EdDSA]),
            AlgorithmParameters::OctetKey(_) => {
                return Err(invalid("symmetric keys in a key set are refused"));
            }
            _ => return Err(invalid("unsupported JWK key type or curve")),
        };
        let algorithm = match jwk.common.key_algorithm {
            None => by_type,
            Some(alg) => {
                let alg = match alg {
                    KeyAlgorithm::RS256 => Algorithm::RS256,
                    KeyAlgorithm::RS384 => Algorithm::RS384,
                    KeyAlgorithm::RS512 => Algorithm::RS512,
                    KeyAlgorithm::PS256 => Algorithm::PS256,
                    KeyAlgorithm::PS384 => Algorithm::PS384,
                    KeyAlgorithm::PS512 => Algorithm::PS512,
                    KeyAlgorithm::ES256 => Algorithm::ES256,
                    KeyAlgorithm::ES384 => Algorithm::ES384,
                    KeyAlgorithm::EdDSA => Algorithm::EdDSA,
                    // Encryption algorithms (RSA-OAEP, ...) and HMAC: not for this key.
                    _ => return Err(invalid("the key's `alg` is not a signature algorithm")),
                };
                if !family.contains(&alg) {
                    return Err(invalid("the key's `alg` does not fit its key type"));
                }
                alg
            }
        };
        if let AlgorithmParameters::RSA(rsa) = &jwk.algorithm {
            check_rsa_modulus(&rsa.n)?;
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| invalid(&format!("unusable JWK: {e}")))?;
        let mut key = Self::new(algorithm, key);
        key.kid = jwk.common.key_id.clone();
        Ok(key)
    }

    pub(super) fn new(algorithm: Algorithm, key: DecodingKey) -> Self {
        Self {
            kid: None,
            algorithm,
            key,
        }
    }

    /// Sets the key id that tokens name in their `kid` header.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The key id, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The one algorithm this key accepts.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }
}

/// Refuses RSA moduli under 2048 bits, and moduli with the fingerprint of the keys that
/// Infineon's RSALib generated (ROCA, CVE-2017-15361), whose private key can be computed from
/// the public one: for each small prime `p`, `n mod p` lies in the subgroup that 65537
/// generates modulo `p`.
fn check_rsa_modulus(n_base64url: &str) -> Result<(), ConfigError> {
    use base64::Engine;
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(n_base64url)
        .map_err(|_| invalid("the RSA modulus is not base64url"))?;
    let bits = n.iter().position(|&b| b != 0).map_or(0, |first| {
        (n.len() - first) * 8 - n[first].leading_zeros() as usize
    });
    if bits < 2048 {
        return Err(invalid("RSA keys shorter than 2048 bits are refused"));
    }
    const PRIMES: [u32; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
        97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];
    let fingerprinted = PRIMES.iter().all(|&p| {
        let residue = n.iter().fold(0u32, |r, &b| ((r << 8) | u32::from(b)) % p);
        // The powers of 65537 modulo p.
        let generator = 65_537 % p;
        let mut power = 1;
        loop {
            if power == residue {
                return true;
            }
            power = power * generator % p;
            if power == 1 {
                return false;
            }
        }
    });
    if fingerprinted {
        return Err(invalid(
            "the RSA key has the ROCA fingerprint (CVE-2017-15361): its private key can be computed",
        ));
    }
    Ok(())
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("key", &"<redacted>")
            .finish()
    }
}

fn invalid(reason: &str) -> ConfigError {
    ConfigError::Invalid {
        what: "JWT key",
        reason: reason.to_owned(),
    }
}

/// The algorithm of a public key, from the object identifiers inside its DER.
fn infer_algorithm(pem: &[u8]) -> Result<Algorithm, ConfigError> {
    // DER encodings of the OIDs that name each key type or curve.
    const RSA: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];
    const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
    const ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
    let text = std::str::from_utf8(pem).map_err(|_| invalid("PEM is not text"))?;
    if text.contains("BEGIN RSA PUBLIC KEY") {
        return Ok(Algorithm::RS256);
    }
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.trim().chars())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| invalid("PEM body is not base64"))?;
    let has = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
    [
        (RSA, Algorithm::RS256),
        (P256, Algorithm::ES256),
        (P384, Algorithm::ES384),
        (ED25519, Algorithm::EdDSA),
    ]
    .into_iter()
    .find(|(oid, _)| has(oid))
    .map(|(_, alg)| alg)
    .ok_or_else(|| invalid("not an RSA, P-256, P-384 or Ed25519 public key"))
}
