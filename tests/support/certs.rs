//! Certificates made on the spot with rcgen: a private CA, server and client leaves.

#[cfg(feature = "mtls")]
use bytes::Bytes;
#[cfg(feature = "mtls")]
use http::StatusCode;
#[cfg(feature = "mtls")]
use http_body_util::{BodyExt, Full};
#[cfg(feature = "mtls")]
use hyper_util::client::legacy::Client;
#[cfg(feature = "mtls")]
use hyper_util::rt::TokioExecutor;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};
#[cfg(feature = "mtls")]
use std::net::SocketAddr;
#[cfg(feature = "mtls")]
use tower_zerotrust::mtls::TlsConfig;

/// A private CA that issues server and client certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

/// A certificate and its key, in PEM.
#[derive(Clone)]
pub struct Leaf {
    pub cert: String,
    pub key: String,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    pub fn issue(&self, common_name: &str, sans: Vec<SanType>, client: bool) -> Leaf {
        self.issue_with(common_name, sans, client, |_| {})
    }

    pub fn issue_with(
        &self,
        common_name: &str,
        sans: Vec<SanType>,
        client: bool,
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        adjust(&mut params);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A CA known only by its certificate, for clients that trust it (it cannot issue).
    pub fn from_pem_only(pem: String) -> Self {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(Vec::<String>::new()).unwrap();
        Self {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A certificate revocation list (PEM) from this CA revoking these serial numbers.
    pub fn crl(&self, revoked: &[u64]) -> String {
        self.crl_until(revoked, 2100)
    }

    /// The same, whose `nextUpdate` is on the first of January of `next_update_year`.
    pub fn crl_until(&self, revoked: &[u64], next_update_year: i32) -> String {
        use rcgen::{
            CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber,
            date_time_ymd,
        };
        CertificateRevocationListParams {
            this_update: date_time_ymd(2024, 1, 1),
            next_update: date_time_ymd(next_update_year, 1, 1),
            crl_number: SerialNumber::from(1),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from(*serial),
                    revocation_time: date_time_ymd(2024, 1, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer)
        .unwrap()
        .pem()
        .unwrap()
    }

    /// A client certificate with this serial number.
    pub fn issue_serial(&self, common_name: &str, serial: u64) -> Leaf {
        self.issue_with(common_name, vec![], true, |p| {
            p.serial_number = Some(rcgen::SerialNumber::from(serial));
        })
    }

    /// A server configuration for `localhost` whose clients must present a certificate from
    /// this CA.
    #[cfg(feature = "mtls")]
    pub fn server_config(&self) -> std::sync::Arc<rustls::ServerConfig> {
        let server = self.server();
        tower_zerotrust::mtls::TlsConfig::from_pem(
            server.cert.as_bytes(),
            server.key.as_bytes(),
            self.pem.as_bytes(),
        )
        .unwrap()
        .server_config()
        .unwrap()
    }

    pub fn server(&self) -> Leaf {
        self.issue(
            "secure-service",
            vec![
                SanType::DnsName("localhost".try_into().unwrap()),
                SanType::IpAddress("127.0.0.1".parse().unwrap()),
            ],
            false,
        )
    }
}

/// Writes a `localhost` server certificate from `ca`, its key and the CA under `dir`, and
/// returns them as `secure_service`'s `TLS_CERT_FILE`, `TLS_KEY_FILE` and `TLS_CA_FILE`.
pub fn tls_files(ca: &Ca, dir: &std::path::Path) -> [(&'static str, String); 3] {
    let server = ca.server();
    std::fs::create_dir_all(dir).unwrap();
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    };
    [
        ("TLS_CERT_FILE", write("server.pem", &server.cert)),
        ("TLS_KEY_FILE", write("server.key", &server.key)),
        ("TLS_CA_FILE", write("ca.pem", &ca.pem)),
    ]
}

/// The certificate the server at `addr` presents to a new connection from `client`.
#[cfg(feature = "mtls")]
pub async fn served_certificate(
    addr: std::net::SocketAddr,
    ca: &Ca,
    client: &Leaf,
) -> tower_zerotrust::mtls::PeerIdentity {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(client.client_config(ca))
        .connect(name, tcp)
        .await
        .unwrap();
    let leaf = &tls.get_ref().1.peer_certificates().unwrap()[0];
    tower_zerotrust::mtls::PeerIdentity::from_der(leaf).unwrap()
}

/// A server's certificate, key and CA in files of a directory of their own, the certificate
/// and key replaced by [`install`](Self::install) as a rotation would; removed when dropped.
pub struct ServerFiles {
    pub dir: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub ca: std::path::PathBuf,
}

impl ServerFiles {
    /// `ca`'s certificate and the server certificate `leaf`, under a directory named after
    /// `name`.
    pub fn new(name: &str, ca: &Ca, leaf: &Leaf) -> Self {
        let dir = std::env::temp_dir().join(format!("zt-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = Self {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            ca: dir.join("ca.pem"),
            dir,
        };
        std::fs::write(&files.ca, &ca.pem).unwrap();
        files.install(leaf);
        files
    }

    /// Replaces the certificate and key with `leaf`'s.
    pub fn install(&self, leaf: &Leaf) {
        std::fs::write(&self.cert, &leaf.cert).unwrap();
        std::fs::write(&self.key, &leaf.key).unwrap();
    }

    /// A configuration builder reading these files.
    #[cfg(feature = "mtls")]
    pub fn builder(&self) -> tower_zerotrust::mtls::TlsConfigBuilder {
        tower_zerotrust::mtls::TlsConfig::builder(&self.cert, &self.key, &self.ca)
    }
}

impl Drop for ServerFiles {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

impl Leaf {
    /// A client configuration presenting this certificate and trusting `ca`'s servers.
    #[cfg(feature = "mtls")]
    pub fn client_config(&self, ca: &Ca) -> std::sync::Arc<rustls::ClientConfig> {
        tower_zerotrust::mtls::TlsConfig::from_pem(
            self.cert.as_bytes(),
            self.key.as_bytes(),
            ca.pem.as_bytes(),
        )
        .unwrap()
        .client_config()
        .unwrap()
    }
}

pub fn spiffe(id: &str) -> SanType {
    SanType::URI(id.try_into().unwrap())
}

/// The DER inside a one-certificate PEM.
pub fn pem_to_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

/// GET /whoami over HTTPS, presenting `leaf` and trusting `server_ca`; `Err` when the TLS
/// handshake or the request fails.
#[cfg(feature = "mtls")]
pub async fn https_get(
    addr: SocketAddr,
    server_ca: &Ca,
    leaf: &Leaf,
) -> Result<(StatusCode, serde_json::Value), String> {
    let client_tls = TlsConfig::from_pem(
        leaf.cert.as_bytes(),
        leaf.key.as_bytes(),
        server_ca.pem.as_bytes(),
    )
    .unwrap()
    .client_config()
    .unwrap();
    https_get_with((*client_tls).clone(), addr).await
}

/// A client configuration presenting `cert_pem` as it is, even one that rustls would not load
/// itself (an X.509 v1 certificate), and trusting `server_ca_pem`.
#[cfg(feature = "mtls")]
pub fn client_config_presenting(
    cert_pem: &str,
    key_pem: &str,
    server_ca_pem: &str,
) -> rustls::ClientConfig {
    use rustls::client::ResolvesClientCert;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls::sign::CertifiedKey;
    use std::sync::Arc;

    #[derive(Debug)]
    struct Always(Arc<CertifiedKey>);
    impl ResolvesClientCert for Always {
        fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
        fn has_certs(&self) -> bool {
            true
        }
    }

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
    let key = provider
        .key_provider
        .load_private_key(PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap())
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(server_ca_pem.as_bytes()).unwrap())
        .unwrap();
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(Always(Arc::new(CertifiedKey::new(chain, key)))))
}

/// A client configuration trusting `ca` that presents no certificate.
#[cfg(feature = "mtls")]
pub fn no_certificate_config(ca: &Ca) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pem_to_der(&ca.pem).into()).unwrap();
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth()
}

/// GET /whoami over HTTPS with any client configuration (say, one without a certificate).
#[cfg(feature = "mtls")]
pub async fn https_get_with(
    config: rustls::ClientConfig,
    addr: SocketAddr,
) -> Result<(StatusCode, serde_json::Value), String> {
    https_get_with_headers(config, addr, &[]).await
}

/// Asserts that the server refused the connection during the TLS handshake with `alert` (the
/// alert's name as rustls reports it), rather than answering.
#[cfg(feature = "mtls")]
#[track_caller]
pub fn assert_alert<T: std::fmt::Debug>(result: Result<T, String>, alert: &str) {
    match result {
        Ok(answer) => panic!("answered instead of refusing with {alert}: {answer:?}"),
        Err(error) => assert!(
            error.contains(&format!("AlertReceived({alert})")),
            "expected the alert {alert}: {error}"
        ),
    }
}

/// The same with extra request headers.
#[cfg(feature = "mtls")]
pub async fn https_get_with_headers(
    config: rustls::ClientConfig,
    addr: SocketAddr,
    headers: &[(&str, &str)],
) -> Result<(StatusCode, serde_json::Value), String> {
    https_whoami(config, addr, headers)
        .await
        .map(|(status, _, body)| (status, body))
}

/// GET /whoami over HTTPS: the status, the response headers and the body as JSON.
#[cfg(feature = "mtls")]
pub async fn https_whoami(
    mut config: rustls::ClientConfig,
    addr: SocketAddr,
    headers: &[(&str, &str)],
) -> Result<(StatusCode, http::HeaderMap, serde_json::Value), String> {
    config.alpn_protocols.clear();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(connector);
    let mut request = http::Request::get(format!("https://localhost:{}/whoami", addr.port()));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(Full::default()).unwrap())
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let response_headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok((
        status,
        response_headers,
        serde_json::from_slice(&body).unwrap_or_default(),
    ))
}

/// `/whoami` (the principal as JSON) behind `MtlsPrincipalLayer`, served over TLS on loopback.
#[cfg(all(feature = "mtls", feature = "axum"))]
pub async fn serve_whoami(
    tls: impl tower_zerotrust::mtls::ServerConfigSource,
    config: tower_zerotrust::mtls::MtlsPrincipalConfig,
) -> SocketAddr {
    use tower_zerotrust::Principal;
    use tower_zerotrust::mtls::MtlsPrincipalLayer;
    let app = axum::Router::new()
        .fallback(|p: Principal| async move {
            axum::Json(serde_json::json!({
                "id": p.id(), "method": p.method().as_str(), "roles": p.roles(),
            }))
        })
        .layer(MtlsPrincipalLayer::new(config));
    serve_https(tls, app).await
}

/// Serves `app` over TLS (`serve_tls`) on a random loopback port, for as long as the test's
/// runtime lives.
#[cfg(feature = "mtls")]
pub async fn serve_https(
    tls: impl tower_zerotrust::mtls::ServerConfigSource,
    app: axum::Router,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tower_zerotrust::mtls::serve_tls(
        listener,
        tls,
        app,
        std::future::pending(),
    ));
    addr
}
