//! Certificate tooling for a private CA (feature `certgen`): the library side of
//! `zerotrust ca|server|client`, writing the `ca/`, `<name>/` directory layout that
//! `TlsConfigBuilder::from_env` reads.

use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::error::ConfigError;

fn failed(e: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        what: "certificate",
        reason: e.to_string(),
    }
}

/// A private certificate authority (ECDSA P-256).
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    certificate_pem: String,
    private_key_pem: String,
}

/// A certificate and its private key, in PEM.
#[derive(Clone)]
pub struct IssuedCertificate {
    certificate_pem: String,
    private_key_pem: String,
}

impl IssuedCertificate {
    /// The certificate, PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The private key, PKCS#8 PEM. Keep it secret.
    pub fn private_key_pem(&self) -> &str {
        &self.private_key_pem
    }
}

impl std::fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCertificate").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A new CA named `common_name`, valid for `validity`.
    ///
    /// # Errors
    ///
    /// Key generation or signing failed.
    pub fn generate(common_name: &str, validity: Duration) -> Result<Self, ConfigError> {
        let key = KeyPair::generate().map_err(failed)?;
        let mut params = params(common_name, validity)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let certificate_pem = params.self_signed(&key).map_err(failed)?.pem();
        let private_key_pem = key.serialize_pem();
        Ok(Self {
            issuer: Issuer::new(params, key),
            certificate_pem,
            private_key_pem,
        })
    }

    /// An existing CA from its certificate and private key (PEM).
    ///
    /// # Errors
    ///
    /// Unparsable PEM.
    pub fn from_pem(certificate_pem: &str, private_key_pem: &str) -> Result<Self, ConfigError> {
        let key = KeyPair::from_pem(private_key_pem).map_err(failed)?;
        let issuer = Issuer::from_ca_cert_pem(certificate_pem, key).map_err(failed)?;
        Ok(Self {
            issuer,
            certificate_pem: certificate_pem.to_owned(),
            private_key_pem: private_key_pem.to_owned(),
        })
    }

    /// The CA certificate, PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// A server certificate for these DNS names and IP addresses.
    ///
    /// # Errors
    ///
    /// Invalid names, or signing failed.
    pub fn issue_server(
        &self,
        common_name: &str,
        hosts: &[String],
        ips: &[IpAddr],
        validity: Duration,
    ) -> Result<IssuedCertificate, ConfigError> {
        let mut params = params(common_name, validity)?;
        for host in hosts {
            params
                .subject_alt_names
                .push(SanType::DnsName(host.as_str().try_into().map_err(failed)?));
        }
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A client certificate whose subject CN is `principal`, with an optional SPIFFE ID.
    ///
    /// # Errors
    ///
    /// An invalid SPIFFE URI, or signing failed.
    pub fn issue_client(
        &self,
        principal: &str,
        spiffe_id: Option<&str>,
        validity: Duration,
    ) -> Result<IssuedCertificate, ConfigError> {
        let mut params = params(principal, validity)?;
        if let Some(id) = spiffe_id {
            if !id.starts_with("spiffe://") {
                return Err(failed(format!("{id:?} is not a spiffe:// URI")));
            }
            params
                .subject_alt_names
                .push(SanType::URI(id.try_into().map_err(failed)?));
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Result<IssuedCertificate, ConfigError> {
        let key = KeyPair::generate().map_err(failed)?;
        let certificate = params.signed_by(&key, &self.issuer).map_err(failed)?;
        Ok(IssuedCertificate {
            certificate_pem: certificate.pem(),
            private_key_pem: key.serialize_pem(),
        })
    }

    /// Writes `ca/cert.pem` and `ca/key.pem` (mode 0600) under `dir`.
    ///
    /// # Errors
    ///
    /// The files could not be written.
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let ca = dir.join("ca");
        std::fs::create_dir_all(&ca)?;
        std::fs::write(ca.join("cert.pem"), &self.certificate_pem)?;
        write_private(&ca.join("key.pem"), &self.private_key_pem)
    }

    /// Writes `name/cert.pem`, `name/key.pem` (mode 0600) and `name/ca.pem` under `dir`: the
    /// directory layout that [`TlsConfigBuilder::from_env`](super::TlsConfigBuilder::from_env) reads.
    ///
    /// # Errors
    ///
    /// The files could not be written.
    pub fn write_issued(
        &self,
        dir: &Path,
        name: &str,
        issued: &IssuedCertificate,
    ) -> io::Result<()> {
        let own = dir.join(name);
        std::fs::create_dir_all(&own)?;
        std::fs::write(own.join("cert.pem"), &issued.certificate_pem)?;
        std::fs::write(own.join("ca.pem"), &self.certificate_pem)?;
        write_private(&own.join("key.pem"), &issued.private_key_pem)
    }
}

fn params(common_name: &str, validity: Duration) -> Result<CertificateParams, ConfigError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + validity;
    Ok(params)
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, pem: &str) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        use std::os::unix::fs::PermissionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        // `mode` applies to new files only: an existing key file is narrowed before the new
        // key goes into it.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.set_len(0)?;
        file.write_all(pem.as_bytes())
    }
    #[cfg(not(unix))]
    {
        std::fs::write(path, pem)
    }
}
