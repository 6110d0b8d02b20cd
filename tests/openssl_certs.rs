//! Certificates made by the usual openssl commands of hand-run private CAs (RSA 4096 CA, RSA
//! 2048/4096 leaves, PKCS#8 and PKCS#1 keys) work; the usual client command, which writes an
//! X.509 v1 certificate on OpenSSL 3, is refused unless v1 client certificates are allowed.

mod support;

use std::path::Path;
use std::process::Command;

use http::StatusCode;
use support::certs::https_get_with;
use tower_zerotrust::mtls::{MtlsPrincipalConfig, TlsConfig};

/// Runs a bash script in `dir`.
fn sh(dir: &Path, script: &str) {
    let output = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

const OPENSSL_SETUP: &str = r#"
mkdir -p ca service client
openssl genrsa -out ca/key.pem 4096
openssl req -new -x509 -days 3650 -key ca/key.pem -out ca/cert.pem \
  -subj "/C=US/ST=CA/L=San Francisco/O=Parallax/CN=Parallax Root CA"
openssl genrsa -out service/key.pem 2048
openssl req -new -key service/key.pem -out service/csr.pem \
  -subj "/C=US/ST=CA/L=San Francisco/O=Parallax/CN=control-plane.parallax.local"
openssl x509 -req -in service/csr.pem -CA ca/cert.pem -CAkey ca/key.pem \
  -CAcreateserial -out service/cert.pem -days 365 \
  -extensions v3_req -extfile <(cat <<EOF
[v3_req]
subjectAltName = @alt_names
[alt_names]
DNS.1 = control-plane.parallax.local
DNS.2 = localhost
IP.1 = 127.0.0.1
EOF
)
# A v3 client with a PKCS#1 ("BEGIN RSA PRIVATE KEY") 4096-bit key.
openssl genrsa -traditional -out client/key.pem 4096
openssl req -new -key client/key.pem -out client/csr.pem -subj "/CN=agent-1"
openssl x509 -req -in client/csr.pem -CA ca/cert.pem -CAkey ca/key.pem -CAcreateserial \
  -out client/cert.pem -days 365 -sha256 \
  -extfile <(printf "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
# The usual client command, verbatim but for paths: no -extfile, so OpenSSL 3 writes v1.
openssl genrsa -out client/v1.key 4096
openssl req -new -key client/v1.key -out client/v1.csr -subj "/CN=intellirouter-client"
openssl x509 -req -in client/v1.csr -CA ca/cert.pem -CAkey ca/key.pem -CAcreateserial -out client/v1.crt -days 365 -sha256
"#;

// Multi-threaded: the test blocks on openssl processes while the server answers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_certificates_serve_mtls_and_v1_clients_are_refused() {
    if Command::new("openssl").arg("version").output().is_err() {
        support::missing_tool("openssl", "apt-get install openssl");
        return;
    }
    let dir = std::env::temp_dir().join(format!("zt-openssl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    sh(&dir, OPENSSL_SETUP);
    let client_key = std::fs::read_to_string(dir.join("client/key.pem")).unwrap();
    assert!(client_key.contains("BEGIN RSA PRIVATE KEY"));

    let service = dir.join("service");
    let tls = TlsConfig::new(
        service.join("cert.pem"),
        service.join("key.pem"),
        dir.join("ca/cert.pem"),
    )
    .unwrap()
    .server_config()
    .unwrap();
    let addr =
        support::certs::serve_whoami(tls, MtlsPrincipalConfig::builder().build().unwrap()).await;

    let client = |cert: &str, key: &str| {
        TlsConfig::new(dir.join(cert), dir.join(key), dir.join("ca/cert.pem"))
            .unwrap()
            .client_config()
            .unwrap()
    };
    let v3 = client("client/cert.pem", "client/key.pem");
    let (status, _) = https_get_with((*v3).clone(), addr).await.unwrap();
    assert_eq!(status, StatusCode::OK);

    // rustls will not even load a v1 certificate as a client certificate...
    let v1 = TlsConfig::new(
        dir.join("client/v1.crt"),
        dir.join("client/v1.key"),
        dir.join("ca/cert.pem"),
    )
    .unwrap()
    .client_config()
    .unwrap_err();
    assert!(v1.to_string().contains("UnsupportedCertVersion"), "{v1}");
    // ...and a client that sends one anyway (openssl itself) gets no HTTP answer, while the
    // same request with the v3 certificate is answered, so the first check can fail.
    let s_client = |addr: std::net::SocketAddr, cert: &str, key: &str| {
        let script = format!(
            "printf 'GET /whoami HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' \
             | timeout 10 openssl s_client -quiet -connect {addr} -servername localhost \
             -cert {cert} -key {key} -CAfile ca/cert.pem 2>&1"
        );
        let output = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(&dir)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let v1 = s_client(addr, "client/v1.crt", "client/v1.key");
    assert!(
        !v1.contains("HTTP/1.1"),
        "the server answered a v1 client: {v1}"
    );
    let v3 = s_client(addr, "client/cert.pem", "client/key.pem");
    assert!(v3.contains("HTTP/1.1 200"), "{v3}");

    // With the named relaxation, openssl's own v1 client certificate gets in.
    let relaxed = TlsConfig::builder(
        service.join("cert.pem"),
        service.join("key.pem"),
        dir.join("ca/cert.pem"),
    )
    .allow_v1_client_certificates()
    .build()
    .unwrap()
    .server_config()
    .unwrap();
    let relaxed =
        support::certs::serve_whoami(relaxed, MtlsPrincipalConfig::builder().build().unwrap())
            .await;
    let v1 = s_client(relaxed, "client/v1.crt", "client/v1.key");
    assert!(v1.contains("HTTP/1.1 200"), "{v1}");
    assert!(v1.contains(r#""id":"intellirouter-client""#), "{v1}");
    std::fs::remove_dir_all(&dir).ok();
}
