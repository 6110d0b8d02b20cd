//! The named relaxation for X.509 v1 client certificates.
//!
//! OpenSSL 3's `openssl x509 -req` without `-extfile` writes v1 certificates, and webpki refuses
//! them outright. With [`TlsConfig::allow_v1_client_certificates`](super::TlsConfig) a v1
//! *client leaf* is accepted when it is signed directly by a trusted (v3, CA) root, is within
//! its validity period and, when CRLs are configured, is not revoked. A v1 certificate is never
//! an issuer: intermediates are not used on this path and roots must be v3 CAs. Everything else
//! (v3 leaves) goes through webpki unchanged.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use x509_parser::prelude::{FromDer, X509Certificate, X509Version};
use x509_parser::revocation_list::CertificateRevocationList;

use super::config::Revocation;

/// Wraps webpki's client verifier; only v1 leaves take the path below.
#[derive(Debug)]
pub(crate) struct V1TolerantVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    roots: Vec<CertificateDer<'static>>,
    crls: Vec<Vec<u8>>,
    revocation: Revocation,
    algorithms: WebPkiSupportedAlgorithms,
}

impl V1TolerantVerifier {
    pub(crate) fn new(
        inner: Arc<dyn ClientCertVerifier>,
        roots: Vec<CertificateDer<'static>>,
        crls: Vec<Vec<u8>>,
        revocation: Revocation,
        algorithms: WebPkiSupportedAlgorithms,
    ) -> Self {
        Self {
            inner,
            roots,
            crls,
            revocation,
            algorithms,
        }
    }

    fn verify_v1(
        &self,
        leaf_der: &[u8],
        leaf: &X509Certificate<'_>,
        now: UnixTime,
    ) -> Result<(), Error> {
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let validity = leaf.validity();
        if now > validity.not_after.timestamp() {
            return Err(Error::InvalidCertificate(CertificateError::Expired));
        }
        if now < validity.not_before.timestamp() {
            return Err(Error::InvalidCertificate(CertificateError::NotValidYet));
        }
        let issuer = leaf.issuer().as_raw();
        let mut named_issuer = false;
        for root_der in &self.roots {
            let Ok((_, root)) = X509Certificate::from_der(root_der) else {
                continue;
            };
            if root.subject().as_raw() != issuer {
                continue;
            }
            named_issuer = true;
            if signed_by(leaf_der, root.public_key().raw, self.algorithms.all) {
                return self.check_revocation(leaf, &root, now);
            }
        }
        Err(Error::InvalidCertificate(if named_issuer {
            CertificateError::BadSignature
        } else {
            CertificateError::UnknownIssuer
        }))
    }

    /// With CRLs configured, the leaf's issuer must have published one (signed by that issuer,
    /// not past its `nextUpdate`) and the leaf's serial must not be on it, as the policy of v3
    /// leaves demands, with the same relaxations.
    fn check_revocation(
        &self,
        leaf: &X509Certificate<'_>,
        root: &X509Certificate<'_>,
        now: i64,
    ) -> Result<(), Error> {
        if self.crls.is_empty() {
            return Ok(());
        }
        let mut known = false;
        for crl_der in &self.crls {
            let Ok((_, crl)) = CertificateRevocationList::from_der(crl_der) else {
                continue;
            };
            if crl.issuer().as_raw() != root.subject().as_raw()
                || !signed_by(crl_der, root.public_key().raw, self.algorithms.all)
            {
                continue;
            }
            if !self.revocation.allow_expired_lists
                && crl.next_update().is_some_and(|next| now > next.timestamp())
            {
                return Err(Error::InvalidCertificate(
                    CertificateError::ExpiredRevocationList,
                ));
            }
            known = true;
            if crl
                .iter_revoked_certificates()
                .any(|revoked| revoked.raw_serial() == leaf.raw_serial())
            {
                return Err(Error::InvalidCertificate(CertificateError::Revoked));
            }
        }
        if known || self.revocation.allow_unknown_status {
            Ok(())
        } else {
            Err(Error::InvalidCertificate(
                CertificateError::UnknownRevocationStatus,
            ))
        }
    }

    fn verify_handshake(
        &self,
        message: &[u8],
        leaf: &X509Certificate<'_>,
        dss: &DigitallySignedStruct,
        tls13: bool,
    ) -> Result<HandshakeSignatureValid, Error> {
        let bad = || Error::InvalidCertificate(CertificateError::BadSignature);
        let spki = SubjectPublicKey::parse(leaf.public_key().raw).ok_or_else(bad)?;
        let candidates = self
            .algorithms
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == dss.scheme)
            .map(|(_, algs)| *algs)
            .ok_or_else(bad)?;
        // TLS 1.3 pins one algorithm per scheme (the curve too) and has no PKCS#1 signatures.
        let candidates = if tls13 {
            if is_pkcs1(dss.scheme) {
                return Err(bad());
            }
            &candidates[..candidates.len().min(1)]
        } else {
            candidates
        };
        candidates
            .iter()
            .any(|alg| spki.verify(*alg, message, dss.signature()))
            .then(HandshakeSignatureValid::assertion)
            .ok_or_else(bad)
    }
}

impl ClientCertVerifier for V1TolerantVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        match parse_v1(end_entity) {
            Some(leaf) => {
                // Only a trusted root may have signed a v1 leaf: whatever else the client sent
                // (clients such as openssl's often add the root itself) is never used.
                self.verify_v1(end_entity, &leaf, now)?;
                Ok(ClientCertVerified::assertion())
            }
            None => self
                .inner
                .verify_client_cert(end_entity, intermediates, now),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        match parse_v1(cert) {
            Some(leaf) => self.verify_handshake(message, &leaf, dss, false),
            None => self.inner.verify_tls12_signature(message, cert, dss),
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        match parse_v1(cert) {
            Some(leaf) => self.verify_handshake(message, &leaf, dss, true),
            None => self.inner.verify_tls13_signature(message, cert, dss),
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The certificate, if it is a well-formed X.509 v1 certificate and nothing else: bytes after
/// the certificate would give the same certificate another fingerprint, so such input is left
/// to webpki, which refuses it.
fn parse_v1<'a>(der: &'a CertificateDer<'_>) -> Option<X509Certificate<'a>> {
    let (rest, cert) = X509Certificate::from_der(der).ok()?;
    (rest.is_empty() && cert.version() == X509Version::V1).then_some(cert)
}

fn is_pkcs1(scheme: SignatureScheme) -> bool {
    matches!(
        scheme,
        SignatureScheme::RSA_PKCS1_SHA1
            | SignatureScheme::RSA_PKCS1_SHA256
            | SignatureScheme::RSA_PKCS1_SHA384
            | SignatureScheme::RSA_PKCS1_SHA512
            | SignatureScheme::ECDSA_SHA1_Legacy
    )
}

/// Whether a signed object (certificate or CRL: `SEQUENCE { tbs, algorithm, BIT STRING }`) was
/// signed by the key in `issuer_spki`, with an algorithm the provider supports.
fn signed_by(
    signed_der: &[u8],
    issuer_spki: &[u8],
    algorithms: &[&dyn SignatureVerificationAlgorithm],
) -> bool {
    let Some(key) = SubjectPublicKey::parse(issuer_spki) else {
        return false;
    };
    let Some((tbs, algorithm, signature)) = signed_parts(signed_der) else {
        return false;
    };
    algorithms
        .iter()
        .filter(|alg| alg.signature_alg_id().as_ref() == algorithm)
        .any(|alg| key.verify(*alg, tbs, signature))
}

/// The three parts of a signed object: the whole TBS element, the algorithm identifier's
/// contents and the signature's bits.
fn signed_parts(der: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (outer, _) = element(der, SEQUENCE)?;
    let tbs_len = outer.len() - element(outer, SEQUENCE)?.1.len();
    let (tbs, rest) = outer.split_at(tbs_len);
    let (algorithm, rest) = element(rest, SEQUENCE)?;
    let (signature, _) = element(rest, BIT_STRING)?;
    Some((tbs, algorithm, bits(signature)?))
}

/// A subject public key: its algorithm identifier's contents and the key bits.
struct SubjectPublicKey<'a> {
    algorithm: &'a [u8],
    key: &'a [u8],
}

impl<'a> SubjectPublicKey<'a> {
    fn parse(spki: &'a [u8]) -> Option<Self> {
        let (inner, _) = element(spki, SEQUENCE)?;
        let (algorithm, rest) = element(inner, SEQUENCE)?;
        let (key, _) = element(rest, BIT_STRING)?;
        Some(Self {
            algorithm,
            key: bits(key)?,
        })
    }

    fn verify(&self, alg: &dyn SignatureVerificationAlgorithm, message: &[u8], sig: &[u8]) -> bool {
        alg.public_key_alg_id().as_ref() == self.algorithm
            && alg.verify_signature(self.key, message, sig).is_ok()
    }
}

const SEQUENCE: u8 = 0x30;
const BIT_STRING: u8 = 0x03;

/// One DER element with the expected tag: its contents and what follows it.
fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&len_byte, rest) = rest.split_first()?;
    let (len, rest) = if len_byte < 0x80 {
        (usize::from(len_byte), rest)
    } else {
        let count = usize::from(len_byte & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(count);
        let len = len_bytes
            .iter()
            .fold(0usize, |len, b| (len << 8) | usize::from(*b));
        (len, rest)
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// A BIT STRING's bits, which must be whole bytes for keys and signatures.
fn bits(contents: &[u8]) -> Option<&[u8]> {
    match contents.split_first()? {
        (0, bits) => Some(bits),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::CertificateRevocationListDer;
    use rustls::pki_types::pem::PemObject;

    use super::*;

    // v1 leaves made by `openssl x509 -req` without `-extfile`: `tests/fixtures/v1/make.sh`. Both CAs are
    // named "IntelliRouter CA"; `revoked.pem` (serial 4097) is on the first CA's CRL.
    const CA: &str = include_str!("../../tests/fixtures/v1/ca.pem");
    const OTHER_CA: &str = include_str!("../../tests/fixtures/v1/other-ca.pem");
    const CLIENT: &str = include_str!("../../tests/fixtures/v1/client.pem");
    const REVOKED: &str = include_str!("../../tests/fixtures/v1/revoked.pem");
    const OTHER_CLIENT: &str = include_str!("../../tests/fixtures/v1/other-client.pem");
    const CRL: &str = include_str!("../../tests/fixtures/v1/crl.pem");

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    fn crl() -> Vec<u8> {
        CertificateRevocationListDer::from_pem_slice(CRL.as_bytes())
            .unwrap()
            .to_vec()
    }

    fn verifier(roots: &[&str], crls: Vec<Vec<u8>>) -> V1TolerantVerifier {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let roots: Vec<_> = roots.iter().map(|pem| der(pem)).collect();
        let mut store = rustls::RootCertStore::empty();
        for root in &roots {
            store.add(root.clone()).unwrap();
        }
        let inner = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(store),
            Arc::new(provider.clone()),
        )
        .build()
        .unwrap();
        V1TolerantVerifier::new(
            inner,
            roots,
            crls,
            Revocation::default(),
            provider.signature_verification_algorithms,
        )
    }

    fn verify(v: &V1TolerantVerifier, leaf: &str, now: UnixTime) -> Result<(), Error> {
        v.verify_client_cert(&der(leaf), &[], now).map(|_| ())
    }

    fn at(secs: u64) -> UnixTime {
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs))
    }

    fn refused(reason: CertificateError) -> Result<(), Error> {
        Err(Error::InvalidCertificate(reason))
    }

    #[test]
    fn accepts_a_v1_leaf_signed_by_a_trusted_root() {
        assert!(parse_v1(&der(CLIENT)).is_some());
        assert!(parse_v1(&der(CA)).is_none(), "the CA is v3");
        assert_eq!(
            verify(&verifier(&[CA], vec![]), CLIENT, UnixTime::now()),
            Ok(())
        );
    }

    #[test]
    fn refuses_another_issuer_with_the_same_name_and_expiry() {
        let now = UnixTime::now();
        assert_eq!(
            verify(&verifier(&[OTHER_CA], vec![]), CLIENT, now),
            refused(CertificateError::BadSignature)
        );
        let v = verifier(&[CA], vec![]);
        assert_eq!(
            verify(&v, OTHER_CLIENT, now),
            refused(CertificateError::BadSignature)
        );
        assert_eq!(
            verify(&v, CLIENT, at(4_102_444_800 * 2)),
            refused(CertificateError::Expired)
        );
        assert_eq!(
            verify(&v, CLIENT, at(1)),
            refused(CertificateError::NotValidYet)
        );
        // Extra certificates sent along change nothing: the signer must be a trusted root.
        let with_root = v.verify_client_cert(&der(CLIENT), &[der(CA)], now);
        assert_eq!(with_root.map(|_| ()), Ok(()));
        let with_other = v.verify_client_cert(&der(OTHER_CLIENT), &[der(OTHER_CA)], now);
        assert_eq!(
            with_other.map(|_| ()),
            refused(CertificateError::BadSignature)
        );
    }

    #[test]
    fn revoked_leaves_and_unknown_revocation_status_are_refused() {
        let now = UnixTime::now();
        let v = verifier(&[CA], vec![crl()]);
        assert_eq!(verify(&v, REVOKED, now), refused(CertificateError::Revoked));
        assert_eq!(verify(&v, CLIENT, now), Ok(()));
        // The CRL is the first CA's; it says nothing about the other CA's leaves.
        let both = verifier(&[CA, OTHER_CA], vec![crl()]);
        assert_eq!(
            verify(&both, OTHER_CLIENT, now),
            refused(CertificateError::UnknownRevocationStatus)
        );
    }

    #[test]
    fn der_reader_refuses_truncated_input() {
        let client = der(CLIENT);
        assert!(signed_parts(&client).is_some());
        for cut in [0, 1, 2, 10, client.len() - 1] {
            assert!(signed_parts(&client[..cut]).is_none(), "cut at {cut}");
        }
        assert!(element(&[0x30, 0x85, 1, 1, 1, 1, 1], SEQUENCE).is_none());
    }
}
