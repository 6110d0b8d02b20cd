//! What a client certificate says about its holder, parsed once per connection.

use std::net::IpAddr;

use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The identity in a verified client certificate: parsed once, when the TLS connection is
/// established, and shared by every request on that connection.
///
/// Only certificates that the TLS handshake has already verified should become a
/// `PeerIdentity`; this type parses, it does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    common_name: Option<String>,
    dns_names: Vec<String>,
    ip_addresses: Vec<IpAddr>,
    uris: Vec<String>,
    serial: String,
    not_after: i64,
    fingerprint: [u8; 32],
}

/// Why a certificate could not be read.
#[derive(Debug, thiserror::Error)]
#[error("unreadable certificate: {0}")]
pub struct CertificateError(String);

impl PeerIdentity {
    /// Parses the leaf certificate (DER) of a verified chain.
    ///
    /// # Errors
    ///
    /// DER that is not an X.509 certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, CertificateError> {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|e| CertificateError(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CertificateError("bytes after the certificate".into()));
        }
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        let (mut dns_names, mut ip_addresses, mut uris) = (Vec::new(), Vec::new(), Vec::new());
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                    GeneralName::URI(uri) => uris.push((*uri).to_owned()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            ip_addresses.push(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(Self {
            common_name,
            dns_names,
            ip_addresses,
            uris,
            serial: hex::encode(cert.raw_serial()),
            not_after: cert.validity().not_after.timestamp(),
            fingerprint: Sha256::digest(der).into(),
        })
    }

    /// The subject's common name (CN), if any.
    pub fn common_name(&self) -> Option<&str> {
        self.common_name.as_deref()
    }

    /// DNS names from the subject alternative names.
    pub fn dns_names(&self) -> &[String] {
        &self.dns_names
    }

    /// IP addresses from the subject alternative names.
    pub fn ip_addresses(&self) -> &[IpAddr] {
        &self.ip_addresses
    }

    /// URIs from the subject alternative names.
    pub fn uris(&self) -> &[String] {
        &self.uris
    }

    /// The SPIFFE ID (`spiffe://trust-domain/path`), if the certificate carries exactly one, as
    /// the SPIFFE X.509-SVID specification requires.
    pub fn spiffe_id(&self) -> Option<&str> {
        let mut ids = self.uris.iter().filter(|u| u.starts_with("spiffe://"));
        match (ids.next(), ids.next()) {
            (Some(id), None) => Some(id),
            _ => None,
        }
    }

    /// The trust domain of the SPIFFE ID (`spiffe://<this>/...`).
    pub fn spiffe_trust_domain(&self) -> Option<&str> {
        let rest = self.spiffe_id()?.strip_prefix("spiffe://")?;
        Some(rest.split('/').next().unwrap_or(rest))
    }

    /// The serial number, lowercase hex.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// When the certificate expires, in Unix seconds.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// The SHA-256 fingerprint of the certificate's DER (RFC 8705's `x5t#S256`, before base64).
    pub fn fingerprint_sha256(&self) -> &[u8; 32] {
        &self.fingerprint
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}
