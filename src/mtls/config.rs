//! rustls server and client configurations from PEM: mutual TLS with a private CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::v1::V1TolerantVerifier;

/// Why TLS material could not be used. Messages name files, never key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No certificate in a PEM that should hold some.
    #[error("no certificate found in {0}")]
    NoCertificate(String),
    /// No certificate revocation list in a PEM that should hold one.
    #[error("no certificate revocation list found in {0}")]
    NoCrl(String),
    /// No usable private key (PKCS#8, PKCS#1 or SEC1) in the key PEM.
    #[error("no usable private key found in {0}")]
    NoPrivateKey(String),
    /// A trusted root is not a CA certificate.
    #[error("{0} is not a CA certificate (basicConstraints CA:TRUE is required for a root)")]
    NotCa(String),
    /// rustls refused the material (for example, a key that does not match the certificate).
    #[error("TLS configuration refused: {0}")]
    Rustls(String),
}

/// A certificate chain, its private key and the CA that peers must be signed by: the three
/// files of `TlsConfig::new(cert, key, ca)`.
///
/// [`server_config`](Self::server_config) requires client certificates signed by the CA
/// (mutual TLS); [`client_config`](Self::client_config) presents the certificate and trusts
/// only the CA. Both use TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1`, and the aws-lc-rs
/// provider passed explicitly (no process-wide default is relied on).
#[derive(Clone)]
pub struct TlsConfig {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    roots: Vec<CertificateDer<'static>>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    revocation: Revocation,
    client_certificates_optional: bool,
    allow_v1_client_certificates: bool,
}

/// How strictly CRLs are applied; every field is a named relaxation of the strict default.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Revocation {
    /// Check only the client's own certificate, not its intermediates.
    pub(crate) end_entity_only: bool,
    /// Accept a certificate whose issuer published no CRL here.
    pub(crate) allow_unknown_status: bool,
    /// Use a CRL past its `nextUpdate`.
    pub(crate) allow_expired_lists: bool,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("chain", &self.chain.len())
            .field("roots", &self.roots.len())
            .field("crls", &self.crls.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl TlsConfig {
    /// Reads the certificate chain, private key and CA certificate(s) from PEM files.
    ///
    /// # Errors
    ///
    /// Unreadable files, missing certificates or key, or a CA file whose certificates are not
    /// CAs.
    pub fn new(
        cert_file: impl AsRef<Path>,
        key_file: impl AsRef<Path>,
        ca_file: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        let (cert, key, ca) = (cert_file.as_ref(), key_file.as_ref(), ca_file.as_ref());
        if readable_by_others(key) {
            tracing::warn!(
                target: "tower_zerotrust::mtls",
                file = %key.display(),
                "private key file is readable by other users; restrict it with `chmod 600`"
            );
        }
        Self::from_pem_named(
            (&read(cert)?, &cert.display().to_string()),
            (&read(key)?, &key.display().to_string()),
            (&read(ca)?, &ca.display().to_string()),
        )
    }

    /// The same from PEM bytes.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8], ca_pem: &[u8]) -> Result<Self, TlsError> {
        Self::from_pem_named((cert_pem, "certificate"), (key_pem, "key"), (ca_pem, "CA"))
    }

    fn from_pem_named(
        (cert_pem, cert_name): (&[u8], &str),
        (key_pem, key_name): (&[u8], &str),
        (ca_pem, ca_name): (&[u8], &str),
    ) -> Result<Self, TlsError> {
        let chain = certificates(cert_pem, cert_name)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|_| TlsError::NoPrivateKey(key_name.to_owned()))?;
        let roots = certificates(ca_pem, ca_name)?;
        for root in &roots {
            let is_ca = X509Certificate::from_der(root).is_ok_and(|(_, cert)| cert.is_ca());
            if !is_ca {
                return Err(TlsError::NotCa(ca_name.to_owned()));
            }
        }
        Ok(Self {
            chain,
            key: Arc::new(key),
            roots,
            crls: Vec::new(),
            revocation: Revocation::default(),
            client_certificates_optional: false,
            allow_v1_client_certificates: false,
        })
    }

    /// Reads the `{PREFIX}_TLS_*` variables for the service `name`, with `prefix` such as `PARALLAX`:
    ///
    /// | variable | meaning | default |
    /// |---|---|---|
    /// | `{prefix}_TLS_ENABLED` | use TLS at all | `false` (returns `Ok(None)`) |
    /// | `{prefix}_CERTS_DIR` | the certificate directory | `./certs` |
    /// | `{prefix}_TLS_CERT_FILE` | the certificate chain | `{dir}/{name}/cert.pem` |
    /// | `{prefix}_TLS_KEY_FILE` | its private key | `{dir}/{name}/key.pem` |
    /// | `{prefix}_TLS_CA_FILE` | the CA | `{dir}/{name}/ca.pem`, else `{dir}/ca/cert.pem` |
    /// | `{prefix}_TLS_VERIFY_CLIENT` | require client certificates | `false`: verified when presented |
    /// | `{prefix}_TLS_ALLOW_INSECURE` | serve without TLS when the files are missing | `false` |
    /// | `{prefix}_TLS_CRL_FILE` | revoked client certificates, PEM CRLs ([`with_crl_file`](Self::with_crl_file)) | none |
    /// | `{prefix}_TLS_ALLOW_V1_CLIENT_CERTS` | [`allow_v1_client_certificates`](Self::allow_v1_client_certificates) | `false` |
    ///
    /// # Errors
    ///
    /// TLS is enabled and the material is unusable (and insecure fallback is not allowed).
    pub fn from_env(prefix: &str, name: &str) -> Result<Option<Self>, TlsError> {
        Self::from_lookup(prefix, name, |key| std::env::var(key).ok())
    }

    fn from_lookup(
        prefix: &str,
        name: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, TlsError> {
        let var = |suffix: &str| lookup(&format!("{prefix}_{suffix}")).filter(|v| !v.is_empty());
        let flag = |suffix: &str| {
            var(suffix)
                .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
        };
        if !flag("TLS_ENABLED") {
            return Ok(None);
        }
        let dir = PathBuf::from(var("CERTS_DIR").unwrap_or_else(|| "./certs".to_owned()));
        let own = dir.join(name);
        let cert = var("TLS_CERT_FILE").map_or_else(|| own.join("cert.pem"), PathBuf::from);
        let key = var("TLS_KEY_FILE").map_or_else(|| own.join("key.pem"), PathBuf::from);
        let ca = var("TLS_CA_FILE").map_or_else(
            || {
                let beside = own.join("ca.pem");
                if beside.exists() {
                    beside
                } else {
                    dir.join("ca").join("cert.pem")
                }
            },
            PathBuf::from,
        );
        let mut loaded = Self::new(&cert, &key, &ca);
        if let (Ok(config), Some(crl)) = (&mut loaded, var("TLS_CRL_FILE")) {
            config.add_crls(&read(Path::new(&crl))?, &crl)?;
        }
        match loaded {
            Ok(mut config) => {
                config.client_certificates_optional = !flag("TLS_VERIFY_CLIENT");
                config.allow_v1_client_certificates = flag("TLS_ALLOW_V1_CLIENT_CERTS");
                Ok(Some(config))
            }
            Err(error) if flag("TLS_ALLOW_INSECURE") => {
                tracing::error!(target: "tower_zerotrust::mtls", %error, "TLS material unusable; serving WITHOUT TLS because {prefix}_TLS_ALLOW_INSECURE is set");
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// Lets clients connect without a certificate; one that is presented is still verified.
    /// Layers then see no [`PeerIdentity`](super::PeerIdentity) for those clients.
    #[must_use]
    pub fn client_certificates_optional(mut self) -> Self {
        self.client_certificates_optional = true;
        self
    }

    /// Refuses client certificates on these certificate revocation lists (PEM, one or more).
    ///
    /// With CRLs configured, a client certificate whose issuer has published no CRL here is
    /// refused too (its revocation status is unknown), so give one CRL per issuing CA; every
    /// certificate of the client's chain is checked; and a CRL past its `nextUpdate` no longer
    /// vouches for anyone: certificates it covers are refused until a fresh CRL is loaded
    /// (reload it on `SIGHUP`, see [`ReloadingServerConfig`](super::ReloadingServerConfig)).
    /// Each of these can be relaxed by name:
    /// [`check_revocation_of_end_entity_only`](Self::check_revocation_of_end_entity_only),
    /// [`allow_unknown_revocation_status`](Self::allow_unknown_revocation_status),
    /// [`allow_expired_revocation_lists`](Self::allow_expired_revocation_lists).
    ///
    /// # Errors
    ///
    /// The PEM holds no CRL.
    pub fn with_crl_pem(mut self, pem: &[u8]) -> Result<Self, TlsError> {
        self.add_crls(pem, "CRL")?;
        Ok(self)
    }

    /// The same, read from a file.
    ///
    /// # Errors
    ///
    /// The file is unreadable or holds no CRL.
    pub fn with_crl_file(mut self, path: impl AsRef<Path>) -> Result<Self, TlsError> {
        let path = path.as_ref();
        self.add_crls(&read(path)?, &path.display().to_string())?;
        Ok(self)
    }

    /// Relaxation: checks CRLs for the client's own certificate only, not its intermediates.
    #[must_use]
    pub fn check_revocation_of_end_entity_only(mut self) -> Self {
        self.revocation.end_entity_only = true;
        self
    }

    /// Relaxation: accepts client certificates whose issuer published no CRL here.
    #[must_use]
    pub fn allow_unknown_revocation_status(mut self) -> Self {
        self.revocation.allow_unknown_status = true;
        self
    }

    /// Relaxation: keeps using CRLs past their `nextUpdate`. Without it an outdated CRL makes
    /// the certificates it covers unacceptable, so that a revocation published since cannot be
    /// missed.
    #[must_use]
    pub fn allow_expired_revocation_lists(mut self) -> Self {
        self.revocation.allow_expired_lists = true;
        self
    }

    fn add_crls(&mut self, pem: &[u8], name: &str) -> Result<(), TlsError> {
        let crls: Vec<_> = CertificateRevocationListDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|_| TlsError::NoCrl(name.to_owned()))?;
        if crls.is_empty() {
            return Err(TlsError::NoCrl(name.to_owned()));
        }
        self.crls.extend(crls);
        Ok(())
    }

    /// The named relaxation for X.509 **v1** client certificates, which OpenSSL 3 writes for
    /// `openssl x509 -req` without `-extfile` and which are otherwise refused.
    ///
    /// A v1 client certificate is then accepted only when it is signed directly by one of the
    /// trusted CAs (no intermediates), is within its validity period and is not revoked by a
    /// configured CRL; it can never act as an issuer. v3 certificates are verified exactly as
    /// before. Prefer re-issuing the certificates as v3 (`zerotrust client`, or `openssl x509
    /// -req ... -extfile` with `basicConstraints=CA:FALSE`); use this while migrating.
    #[must_use]
    pub fn allow_v1_client_certificates(mut self) -> Self {
        self.allow_v1_client_certificates = true;
        self
    }

    /// A server configuration that requires a client certificate signed by the CA (unless
    /// [`client_certificates_optional`](Self::client_certificates_optional) was called).
    ///
    /// # Errors
    ///
    /// Material rustls refuses, such as a key that does not match the certificate.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = provider();
        let mut verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(self.root_store()?),
            provider.clone(),
        )
        .with_crls(self.crls.iter().cloned());
        if self.revocation.end_entity_only {
            verifier = verifier.only_check_end_entity_revocation();
        }
        if self.revocation.allow_unknown_status {
            verifier = verifier.allow_unknown_revocation_status();
        }
        if !self.revocation.allow_expired_lists {
            verifier = verifier.enforce_revocation_expiration();
        }
        if self.client_certificates_optional {
            verifier = verifier.allow_unauthenticated();
        }
        let mut verifier = verifier.build().map_err(rustls_error)?;
        if self.allow_v1_client_certificates {
            verifier = Arc::new(V1TolerantVerifier::new(
                verifier,
                self.roots.clone(),
                self.crls.iter().map(|crl| crl.to_vec()).collect(),
                self.revocation,
                provider.signature_verification_algorithms,
            ));
        }
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(rustls_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(rustls_error)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// A client configuration that presents this certificate and trusts only the CA.
    ///
    /// # Errors
    ///
    /// Material rustls refuses.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(rustls_error)?
            .with_root_certificates(self.root_store()?)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(rustls_error)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The material as PEM, for TLS stacks that take only PEM (tonic's). `Err` names what
    /// such a stack would silently drop: revocation lists, v1 client certificates.
    #[cfg(feature = "tonic")]
    pub(crate) fn to_pem(&self) -> Result<PemMaterial, &'static str> {
        if !self.crls.is_empty() {
            return Err("tonic's TLS cannot check revocation lists: serve with mtls::serve_tls");
        }
        if self.allow_v1_client_certificates {
            return Err("tonic's TLS refuses v1 client certificates: serve with mtls::serve_tls");
        }
        let label = match &*self.key {
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        let certificates = |list: &[CertificateDer<'_>]| {
            list.iter()
                .map(|der| pem("CERTIFICATE", der))
                .collect::<String>()
        };
        Ok(PemMaterial {
            chain: certificates(&self.chain),
            key: pem(label, self.key.secret_der()),
            roots: certificates(&self.roots),
            client_certificates_optional: self.client_certificates_optional,
        })
    }

    /// When the leaf certificate expires, in Unix seconds.
    pub(crate) fn leaf_not_after(&self) -> Option<i64> {
        let leaf = self.chain.first()?;
        X509Certificate::from_der(leaf)
            .ok()
            .map(|(_, cert)| cert.validity().not_after.timestamp())
    }

    fn root_store(&self) -> Result<RootCertStore, TlsError> {
        let mut store = RootCertStore::empty();
        for root in &self.roots {
            store.add(root.clone()).map_err(rustls_error)?;
        }
        Ok(store)
    }
}

/// A [`TlsConfig`] as PEM text.
#[cfg(feature = "tonic")]
pub(crate) struct PemMaterial {
    pub(crate) chain: String,
    pub(crate) key: String,
    pub(crate) roots: String,
    pub(crate) client_certificates_optional: bool,
}

#[cfg(feature = "tonic")]
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Whether the file's permissions let group or others read it (Unix only).
fn readable_by_others(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn rustls_error(e: impl std::fmt::Display) -> TlsError {
    TlsError::Rustls(e.to_string())
}

fn certificates(pem: &[u8], name: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::NoCertificate(name.to_owned()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(name.to_owned()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    use super::*;

    /// Writes the layout: `ca/cert.pem`, `{name}/cert.pem key.pem ca.pem`.
    fn layout(dir: &Path, name: &str) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "Parallax Root CA");
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["control-plane.parallax.local".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        std::fs::create_dir_all(dir.join("ca")).unwrap();
        std::fs::create_dir_all(dir.join(name)).unwrap();
        std::fs::write(dir.join("ca/cert.pem"), &ca_pem).unwrap();
        std::fs::write(dir.join(name).join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.join(name).join("key.pem"), key.serialize_pem()).unwrap();
    }

    fn lookup(vars: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        move |key| vars.get(key).cloned()
    }

    #[cfg(unix)]
    #[test]
    fn private_keys_readable_by_others_are_noticed() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("zt-key-mode-{}", std::process::id()));
        std::fs::write(&path, "key").unwrap();
        for (mode, exposed) in [(0o600, false), (0o400, false), (0o640, true), (0o604, true)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(readable_by_others(&path), exposed, "mode {mode:o}");
        }
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn tls_variables_and_layout() {
        let dir = std::env::temp_dir().join(format!("zt-env-{}", std::process::id()));
        layout(&dir, "control-plane");
        let d = dir.display().to_string();
        let off = TlsConfig::from_lookup("PARALLAX", "control-plane", lookup(&[])).unwrap();
        assert!(off.is_none());
        let on = [
            ("PARALLAX_TLS_ENABLED", "true".to_owned()),
            ("PARALLAX_CERTS_DIR", d.clone()),
        ];
        let config = TlsConfig::from_lookup("PARALLAX", "control-plane", lookup(&on))
            .unwrap()
            .unwrap();
        assert!(
            config.client_certificates_optional,
            "VERIFY_CLIENT defaults to false"
        );
        assert!(config.server_config().is_ok());
        let verify = [
            on[0].clone(),
            on[1].clone(),
            ("PARALLAX_TLS_VERIFY_CLIENT", "true".to_owned()),
        ];
        let config = TlsConfig::from_lookup("PARALLAX", "control-plane", lookup(&verify))
            .unwrap()
            .unwrap();
        assert!(!config.client_certificates_optional);
        // Missing material: an error, unless insecure fallback is allowed.
        let missing = TlsConfig::from_lookup("PARALLAX", "agent-9", lookup(&on));
        assert!(matches!(missing, Err(TlsError::Read { .. })));
        let insecure = [
            on[0].clone(),
            on[1].clone(),
            ("PARALLAX_TLS_ALLOW_INSECURE", "true".to_owned()),
        ];
        // Serving without TLS is said at error level, each time it happens.
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..2 {
                assert!(
                    TlsConfig::from_lookup("PARALLAX", "agent-9", lookup(&insecure))
                        .unwrap()
                        .is_none()
                );
            }
        });
        let logs = logs.text();
        assert_eq!(logs.matches("ERROR").count(), 2, "{logs}");
        assert!(logs.contains("serving WITHOUT TLS"), "{logs}");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Log lines written by a test's subscriber.
    #[derive(Clone, Default)]
    struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

    impl Logs {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    impl std::io::Write for Logs {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
        type Writer = Logs;
        fn make_writer(&'a self) -> Logs {
            self.clone()
        }
    }
}
