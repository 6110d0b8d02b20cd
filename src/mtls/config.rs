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
use crate::env::Env;
use crate::error::{ConfigError, FirstError};

/// A certificate chain, its private key and the CA that peers must be signed by, checked and
/// ready for rustls.
///
/// [`server_config`](Self::server_config) requires client certificates signed by the CA
/// (mutual TLS); [`client_config`](Self::client_config) presents the certificate and trusts
/// only the CA. Both use TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1`, and the aws-lc-rs
/// provider passed explicitly (no process-wide default is relied on).
///
/// [`TlsConfig::new`] reads three PEM files; [`TlsConfig::builder`] adds revocation lists and
/// named relaxations, and [`TlsConfigBuilder::from_env`] reads `{PREFIX}_TLS_*` variables.
///
/// ```no_run
/// use tower_zerotrust::mtls::TlsConfig;
///
/// # fn main() -> Result<(), tower_zerotrust::ConfigError> {
/// let tls = TlsConfig::builder("certs/svc/cert.pem", "certs/svc/key.pem", "certs/ca/cert.pem")
///     .crl_file("certs/ca/crl.pem")
///     .build()?;
/// let server = tls.server_config()?;
/// # Ok(()) }
/// ```
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

/// PEM text, given or read from a file when the configuration is built.
#[derive(Clone)]
enum Pem {
    File(PathBuf),
    Bytes(Arc<[u8]>, &'static str),
}

impl Pem {
    fn read(&self) -> Result<(std::borrow::Cow<'_, [u8]>, String), ConfigError> {
        match self {
            Self::File(path) => Ok((read(path)?.into(), path.display().to_string())),
            Self::Bytes(bytes, name) => Ok((bytes[..].into(), (*name).to_owned())),
        }
    }
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => path.fmt(f),
            Self::Bytes(_, name) => write!(f, "<{name} PEM>"),
        }
    }
}

impl TlsConfig {
    /// Reads the certificate chain, private key and CA certificate(s) from PEM files: the
    /// same as `TlsConfig::builder(cert_file, key_file, ca_file).build()`.
    ///
    /// # Errors
    ///
    /// As [`TlsConfigBuilder::build`].
    pub fn new(
        cert_file: impl AsRef<Path>,
        key_file: impl AsRef<Path>,
        ca_file: impl AsRef<Path>,
    ) -> Result<Self, ConfigError> {
        Self::builder(cert_file, key_file, ca_file).build()
    }

    /// The same from PEM bytes.
    ///
    /// # Errors
    ///
    /// As [`TlsConfigBuilder::build`].
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8], ca_pem: &[u8]) -> Result<Self, ConfigError> {
        Self::builder_from_pem(cert_pem, key_pem, ca_pem).build()
    }

    /// A builder reading these PEM files when it is built, and again at each build: a
    /// [`ReloadingServerConfig`](super::ReloadingServerConfig) made from it reads fresh files
    /// on every reload.
    pub fn builder(
        cert_file: impl AsRef<Path>,
        key_file: impl AsRef<Path>,
        ca_file: impl AsRef<Path>,
    ) -> TlsConfigBuilder {
        let file = |path: &Path| Pem::File(path.to_owned());
        TlsConfigBuilder::new(
            file(cert_file.as_ref()),
            file(key_file.as_ref()),
            file(ca_file.as_ref()),
        )
    }

    /// A builder from PEM bytes.
    pub fn builder_from_pem(cert_pem: &[u8], key_pem: &[u8], ca_pem: &[u8]) -> TlsConfigBuilder {
        TlsConfigBuilder::new(
            Pem::Bytes(cert_pem.into(), "certificate"),
            Pem::Bytes(key_pem.into(), "key"),
            Pem::Bytes(ca_pem.into(), "CA"),
        )
    }
}

/// Builds a [`TlsConfig`]: the material, revocation lists and named relaxations.
/// [`build`](Self::build) reads and checks everything.
#[derive(Debug, Clone)]
#[must_use]
pub struct TlsConfigBuilder {
    cert: Pem,
    key: Pem,
    ca: Pem,
    crls: Vec<Pem>,
    revocation: Revocation,
    client_certificates_optional: bool,
    allow_v1_client_certificates: bool,
    error: FirstError,
}

impl TlsConfigBuilder {
    fn new(cert: Pem, key: Pem, ca: Pem) -> Self {
        Self {
            cert,
            key,
            ca,
            crls: Vec::new(),
            revocation: Revocation::default(),
            client_certificates_optional: false,
            allow_v1_client_certificates: false,
            error: FirstError::default(),
        }
    }

    /// A builder from the `{PREFIX}_TLS_*` variables for the service `name`, with `prefix` such
    /// as `PARALLAX`, or `None` when the environment leaves TLS off:
    ///
    /// | variable | meaning | default |
    /// |---|---|---|
    /// | `{prefix}_TLS_ENABLED` | use TLS at all | `false` (returns `None`) |
    /// | `{prefix}_CERTS_DIR` | the certificate directory | `./certs` |
    /// | `{prefix}_TLS_CERT_FILE` | the certificate chain | `{dir}/{name}/cert.pem` |
    /// | `{prefix}_TLS_KEY_FILE` | its private key | `{dir}/{name}/key.pem` |
    /// | `{prefix}_TLS_CA_FILE` | the CA | `{dir}/{name}/ca.pem`, else `{dir}/ca/cert.pem` |
    /// | `{prefix}_TLS_VERIFY_CLIENT` | require client certificates | `false`: verified when presented |
    /// | `{prefix}_TLS_ALLOW_INSECURE` | serve without TLS (`None`) when the material is unusable, logged at error level | `false` |
    /// | `{prefix}_TLS_CRL_FILE` | revoked client certificates, PEM CRLs ([`crl_file`](Self::crl_file)) | none |
    /// | `{prefix}_TLS_ALLOW_V1_CLIENT_CERTS` | [`allow_v1_client_certificates`](Self::allow_v1_client_certificates) | `false` |
    ///
    /// Switches take `true`/`1`/`yes` or `false`/`0`/`no`; anything else, and unusable
    /// material, is reported by [`build`](Self::build).
    pub fn from_env(prefix: &str, name: &str) -> Option<Self> {
        Self::read_env(&Env::process(), prefix, name)
    }

    fn read_env(env: &Env, prefix: &str, name: &str) -> Option<Self> {
        let flag = |suffix: &str| env.flag(&format!("{prefix}_{suffix}"));
        let switches = flag("TLS_ENABLED").and_then(|on| Ok((on, flag("TLS_ALLOW_INSECURE")?)));
        let builder = match switches {
            Ok((false, _)) => return None,
            Ok((true, false)) => Self::from_layout(env, prefix, name),
            Ok((true, true)) => {
                let builder = Self::from_layout(env, prefix, name);
                if let Err(error) = builder.clone().build() {
                    tracing::error!(target: "tower_zerotrust::mtls", %error, "TLS material unusable; serving WITHOUT TLS because {prefix}_TLS_ALLOW_INSECURE is set");
                    return None;
                }
                builder
            }
            Err(error) => Self::failed(error),
        };
        Some(builder)
    }

    /// The files named by the variables, or found in the certificate directory's layout, and
    /// the options the variables set.
    fn from_layout(env: &Env, prefix: &str, name: &str) -> Self {
        let var = |suffix: &str| env.var(&format!("{prefix}_{suffix}"));
        let flag = |suffix: &str| env.flag(&format!("{prefix}_{suffix}"));
        let read = || -> Result<Self, ConfigError> {
            let dir = PathBuf::from(var("CERTS_DIR")?.unwrap_or_else(|| "./certs".to_owned()));
            let own = dir.join(name);
            let cert = var("TLS_CERT_FILE")?.map_or_else(|| own.join("cert.pem"), PathBuf::from);
            let key = var("TLS_KEY_FILE")?.map_or_else(|| own.join("key.pem"), PathBuf::from);
            let ca = var("TLS_CA_FILE")?.map_or_else(
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
            let mut builder = TlsConfig::builder(cert, key, ca);
            builder.client_certificates_optional = !flag("TLS_VERIFY_CLIENT")?;
            builder.allow_v1_client_certificates = flag("TLS_ALLOW_V1_CLIENT_CERTS")?;
            if let Some(crl) = var("TLS_CRL_FILE")? {
                builder = builder.crl_file(crl);
            }
            Ok(builder)
        };
        read().unwrap_or_else(Self::failed)
    }

    /// A builder whose `build()` reports `error`.
    fn failed(error: ConfigError) -> Self {
        let mut failed = TlsConfig::builder("", "", "");
        failed.error.keep(Err(error));
        failed
    }

    /// Lets clients connect without a certificate; one that is presented is still verified.
    /// Layers then see no [`PeerIdentity`](super::PeerIdentity) for those clients.
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
    pub fn crl_pem(mut self, pem: &[u8]) -> Self {
        self.crls.push(Pem::Bytes(pem.into(), "CRL"));
        self
    }

    /// The same, read from a file when the configuration is built.
    pub fn crl_file(mut self, path: impl AsRef<Path>) -> Self {
        self.crls.push(Pem::File(path.as_ref().to_owned()));
        self
    }

    /// Relaxation: checks CRLs for the client's own certificate only, not its intermediates.
    pub fn check_revocation_of_end_entity_only(mut self) -> Self {
        self.revocation.end_entity_only = true;
        self
    }

    /// Relaxation: accepts client certificates whose issuer published no CRL here.
    pub fn allow_unknown_revocation_status(mut self) -> Self {
        self.revocation.allow_unknown_status = true;
        self
    }

    /// Relaxation: keeps using CRLs past their `nextUpdate`. Without it an outdated CRL makes
    /// the certificates it covers unacceptable, so that a revocation published since cannot be
    /// missed.
    pub fn allow_expired_revocation_lists(mut self) -> Self {
        self.revocation.allow_expired_lists = true;
        self
    }

    /// The named relaxation for X.509 **v1** client certificates, which OpenSSL 3 writes for
    /// `openssl x509 -req` without `-extfile` and which are otherwise refused.
    ///
    /// A v1 client certificate is then accepted only when it is signed directly by one of the
    /// trusted CAs (no intermediates), is within its validity period and is not revoked by a
    /// configured CRL; it can never act as an issuer. v3 certificates are verified exactly as
    /// before. Prefer re-issuing the certificates as v3 (`zerotrust client`, or `openssl x509
    /// -req ... -extfile` with `basicConstraints=CA:FALSE`); use this while migrating.
    pub fn allow_v1_client_certificates(mut self) -> Self {
        self.allow_v1_client_certificates = true;
        self
    }

    /// Reads the material and checks it, including that the private key is the certificate's,
    /// so that a mismatch is reported now rather than at the first handshake.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Read`] for an unreadable file; [`ConfigError::Invalid`] for PEM without
    /// a certificate, key or CRL where one is needed, a CA file holding a certificate that is
    /// not a CA, or material rustls refuses (a key that does not match the certificate); an
    /// unusable variable read by [`from_env`](Self::from_env).
    pub fn build(self) -> Result<TlsConfig, ConfigError> {
        self.error.check()?;
        let private_key_is_exposed = matches!(&self.key, Pem::File(key) if readable_by_others(key));
        if private_key_is_exposed {
            tracing::warn!(
                target: "tower_zerotrust::mtls",
                key = ?self.key,
                "private key file is readable by other users; restrict it with `chmod 600`"
            );
        }
        let (cert_pem, cert_name) = self.cert.read()?;
        let chain = certificates(&cert_pem, &cert_name)?;
        let (key_pem, key_name) = self.key.read()?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
            invalid(
                "private key",
                format!("no usable private key found in {key_name}"),
            )
        })?;
        let (ca_pem, ca_name) = self.ca.read()?;
        let roots = certificates(&ca_pem, &ca_name)?;
        for root in &roots {
            let is_ca = X509Certificate::from_der(root).is_ok_and(|(_, cert)| cert.is_ca());
            if !is_ca {
                return Err(invalid(
                    "CA certificate",
                    format!(
                        "{ca_name} is not a CA certificate (basicConstraints CA:TRUE is required for a root)"
                    ),
                ));
            }
        }
        let mut crls = Vec::new();
        for source in &self.crls {
            let (pem, name) = source.read()?;
            let found: Vec<_> = CertificateRevocationListDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .unwrap_or_default();
            if found.is_empty() {
                return Err(invalid(
                    "certificate revocation list",
                    format!("no certificate revocation list found in {name}"),
                ));
            }
            crls.extend(found);
        }
        let config = TlsConfig {
            chain,
            key: Arc::new(key),
            roots,
            crls,
            revocation: self.revocation,
            client_certificates_optional: self.client_certificates_optional,
            allow_v1_client_certificates: self.allow_v1_client_certificates,
        };
        config.check_key_matches_certificate()?;
        Ok(config)
    }
}

impl TlsConfig {
    /// A server configuration that requires a client certificate signed by the CA (unless
    /// [`client_certificates_optional`](TlsConfigBuilder::client_certificates_optional) was called).
    ///
    /// # Errors
    ///
    /// Material rustls refuses, such as a key that does not match the certificate.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, ConfigError> {
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
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, ConfigError> {
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
    pub(crate) fn to_pem(&self) -> Result<PemMaterial, ConfigError> {
        let unsupported = |reason: &str| {
            invalid(
                "TLS configuration for tonic",
                format!("{reason}: serve with mtls::serve_tls"),
            )
        };
        if !self.crls.is_empty() {
            return Err(unsupported("tonic's TLS cannot check revocation lists"));
        }
        if self.allow_v1_client_certificates {
            return Err(unsupported("tonic's TLS refuses v1 client certificates"));
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

    fn check_key_matches_certificate(&self) -> Result<(), ConfigError> {
        let key = provider()
            .key_provider
            .load_private_key(self.key.clone_key())
            .map_err(rustls_error)?;
        // Only a proven mismatch is refused here: a certificate rustls cannot read for this
        // check (an X.509 v1 client certificate) is judged where it is used.
        match rustls::sign::CertifiedKey::new(self.chain.clone(), key).keys_match() {
            Err(error @ rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                Err(rustls_error(error))
            }
            _ => Ok(()),
        }
    }

    /// When the leaf certificate expires, in Unix seconds.
    pub(crate) fn leaf_not_after(&self) -> Option<i64> {
        let leaf = self.chain.first()?;
        X509Certificate::from_der(leaf)
            .ok()
            .map(|(_, cert)| cert.validity().not_after.timestamp())
    }

    fn root_store(&self) -> Result<RootCertStore, ConfigError> {
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

fn read(path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::Read {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn invalid(what: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { what, reason }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn rustls_error(e: impl std::fmt::Display) -> ConfigError {
    invalid("TLS configuration", format!("refused by rustls: {e}"))
}

fn certificates(pem: &[u8], name: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    if certs.is_empty() {
        return Err(invalid(
            "certificate",
            format!("no certificate found in {name}"),
        ));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
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
        let read = |vars: &[(&str, &str)], name: &str| {
            TlsConfigBuilder::read_env(&Env::from_pairs(vars), "PARALLAX", name)
        };
        assert!(read(&[], "control-plane").is_none());
        assert!(read(&[("PARALLAX_TLS_ENABLED", "no")], "control-plane").is_none());
        let on = [("PARALLAX_TLS_ENABLED", "true"), ("PARALLAX_CERTS_DIR", &d)];
        let config = read(&on, "control-plane").unwrap().build().unwrap();
        assert!(
            config.client_certificates_optional,
            "VERIFY_CLIENT defaults to false"
        );
        assert!(config.server_config().is_ok());
        let verify = [on[0], on[1], ("PARALLAX_TLS_VERIFY_CLIENT", "true")];
        let config = read(&verify, "control-plane").unwrap().build().unwrap();
        assert!(!config.client_certificates_optional);
        // A switch that is not understood is an error, never "off".
        let typo = [on[0], on[1], ("PARALLAX_TLS_VERIFY_CLIENT", "ture")];
        let typo = read(&typo, "control-plane").unwrap().build();
        assert!(
            matches!(&typo, Err(ConfigError::InvalidEnv { name, .. }) if name == "PARALLAX_TLS_VERIFY_CLIENT"),
            "{typo:?}"
        );
        // Missing material: an error, unless insecure fallback is allowed.
        let missing = read(&on, "agent-9").unwrap().build();
        assert!(
            matches!(missing, Err(ConfigError::Read { .. })),
            "{missing:?}"
        );
        let insecure = [on[0], on[1], ("PARALLAX_TLS_ALLOW_INSECURE", "true")];
        // Serving without TLS is said at error level, each time it happens.
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..2 {
                assert!(read(&insecure, "agent-9").is_none());
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
