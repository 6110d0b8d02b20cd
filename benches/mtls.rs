//! Mutual TLS: what the certificate principal costs per request on a keep-alive connection
//! (nothing should be left once the handshake is done), and what a full handshake costs.
//!
//! Everything runs over real loopback TCP with `serve_tls`, rcgen ECDSA P-256 certificates and
//! TLS 1.3, the server on a tokio runtime of its own (one worker) and the client on another.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tower_zerotrust::Principal;
use tower_zerotrust::mtls::{MtlsPrincipalConfig, MtlsPrincipalLayer, TlsConfig, serve_tls};

/// Concurrent requests in flight on one HTTP/2 connection.
const H2_BATCH: usize = 64;

struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "Bench CA");
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |names: Vec<String>, cn: &str, usage| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        server: leaf(
            vec!["localhost".into()],
            "bench-server",
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        client: leaf(
            vec![],
            "model-registry",
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
        ca: ca_pem,
    }
}

/// Serves `/` on a runtime of its own: with client certificates and the principal layer
/// (`mtls`), or server-authenticated TLS only.
fn start_server(pki: &Pki, mtls: bool) -> (Runtime, SocketAddr) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut tls = TlsConfig::builder_from_pem(
        pki.server.0.as_bytes(),
        pki.server.1.as_bytes(),
        pki.ca.as_bytes(),
    );
    if !mtls {
        tls = tls.client_certificates_optional();
    }
    let config = tls.build().unwrap().server_config().unwrap();
    let addr = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = if mtls {
            Router::new()
                .route("/", get(|p: Principal| async move { p.id().to_owned() }))
                .layer(MtlsPrincipalLayer::new(
                    MtlsPrincipalConfig::builder().build().unwrap(),
                ))
        } else {
            Router::new().route("/", get(|| async { "model-registry" }))
        };
        tokio::spawn(serve_tls(listener, config, app, std::future::pending()));
        addr
    });
    (runtime, addr)
}

fn client_config(pki: &Pki, mtls: bool, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut config = if mtls {
        let tls = TlsConfig::from_pem(
            pki.client.0.as_bytes(),
            pki.client.1.as_bytes(),
            pki.ca.as_bytes(),
        )
        .unwrap();
        (*tls.client_config().unwrap()).clone()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(pem_der(&pki.ca)))
            .unwrap();
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    // Every handshake measured is a full one.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

fn pem_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

async fn connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    TlsConnector::from(config)
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

fn request() -> http::Request<Empty<Bytes>> {
    http::Request::get("https://localhost/")
        .body(Empty::new())
        .unwrap()
}

fn bench_keep_alive(c: &mut Criterion) {
    let pki = pki();
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("keep_alive");
    for (name, mtls) in [("tls", false), ("mtls_principal", true)] {
        let (_server, addr) = start_server(&pki, mtls);

        // HTTP/1.1: one request at a time on one connection.
        let mut sender = client.block_on(async {
            let stream = connect(addr, client_config(&pki, mtls, b"http/1.1")).await;
            let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
            tokio::spawn(connection);
            sender
        });
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("http1_sequential/{name}"), |b| {
            b.iter(|| {
                client.block_on(async {
                    let response = sender.send_request(request()).await.unwrap();
                    assert!(response.status().is_success());
                    response.into_body().collect().await.unwrap()
                })
            });
        });

        // HTTP/2: 64 requests in flight on one connection.
        let sender = client.block_on(async {
            let stream = connect(addr, client_config(&pki, mtls, b"h2")).await;
            let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(connection);
            sender
        });
        group.throughput(Throughput::Elements(H2_BATCH as u64));
        group.bench_function(format!("h2_{H2_BATCH}_concurrent/{name}"), |b| {
            b.iter(|| {
                client.block_on(async {
                    let calls = (0..H2_BATCH).map(|_| {
                        let mut sender = sender.clone();
                        tokio::spawn(async move {
                            let response = sender.send_request(request()).await.unwrap();
                            assert!(response.status().is_success());
                            response.into_body().collect().await.unwrap()
                        })
                    });
                    for call in calls.collect::<Vec<_>>() {
                        call.await.unwrap();
                    }
                })
            });
        });
    }
    group.finish();
}

fn bench_handshake(c: &mut Criterion) {
    let pki = pki();
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("handshake");
    for (name, mtls) in [("tls", false), ("mtls", true)] {
        let (_server, addr) = start_server(&pki, mtls);
        let config = client_config(&pki, mtls, b"http/1.1");
        // A new connection, its full TLS 1.3 handshake (no resumption) and one request.
        group.bench_function(format!("connect_and_first_request/{name}"), |b| {
            b.iter(|| {
                client.block_on(async {
                    let stream = connect(addr, config.clone()).await;
                    let (mut sender, connection) =
                        http1::handshake(TokioIo::new(stream)).await.unwrap();
                    tokio::spawn(connection);
                    let response = sender.send_request(request()).await.unwrap();
                    assert!(response.status().is_success());
                    response.into_body().collect().await.unwrap()
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_keep_alive, bench_handshake);
criterion_main!(benches);
