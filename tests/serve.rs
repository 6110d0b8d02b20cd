//! TLS serving survives hostile connections, over real sockets: running out of file
//! descriptors, clients that send nothing or trickle their headers, more connections than the
//! cap. A legitimate client is served throughout.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::StatusCode;
use support::certs::{Ca, https_get, tls_files};
use support::service::SecureService;
use support::{SECRET, eventually_some};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_zerotrust::mtls::{MtlsPrincipalConfig, TlsServer};

/// More idle connections than the process has file descriptors make `accept` fail; the
/// server pauses, keeps serving, and answers an mTLS request once they are gone.
#[tokio::test]
async fn running_out_of_file_descriptors_does_not_stop_the_server() {
    let ca = Ca::new("Test CA");
    let dir = std::env::temp_dir().join(format!("zerotrust-emfile-{}", std::process::id()));
    let files = tls_files(&ca, &dir);
    let mut env: Vec<(&str, &str)> = files.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("SERVICE_SECRET", SECRET));
    let mut service = SecureService::start_with_open_file_limit(256, &env);
    let client = ca.issue("agent-7", vec![], true);
    let (status, _) = https_get(service.addr, &ca, &client).await.unwrap();
    assert_eq!(status, StatusCode::OK);

    let mut idle = Vec::new();
    for _ in 0..400 {
        match TcpStream::connect(service.addr).await {
            Ok(stream) => idle.push(stream),
            Err(_) => break,
        }
    }
    // The server ran out of descriptors (it says so), and did not exit.
    service.wait_for_log("accepting a connection failed; pausing before the next accept");
    assert!(
        service.child.try_wait().unwrap().is_none(),
        "the server exited while its file descriptors were exhausted"
    );
    drop(idle);
    let (status, body) = eventually_some("answered again", || async {
        https_get(service.addr, &ca, &client).await.ok()
    })
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], "agent-7");
    assert!(service.child.try_wait().unwrap().is_none());
    std::fs::remove_dir_all(&dir).ok();
}

struct Served {
    addr: SocketAddr,
    ca: Ca,
}

/// `/whoami` over TLS with a 1 s header-read timeout and at most `max` connections.
async fn serve(max: usize) -> Served {
    let ca = Ca::new("Test CA");
    let tls = ca.server_config();
    let app = axum::Router::new()
        .fallback(|p: tower_zerotrust::Principal| async move { p.id().to_owned() })
        .layer(tower_zerotrust::mtls::MtlsPrincipalLayer::new(
            MtlsPrincipalConfig::builder().build().unwrap(),
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        TlsServer::new(tls)
            .header_read_timeout(Duration::from_secs(1))
            .max_connections(max)
            .serve(listener, app, std::future::pending()),
    );
    Served { addr, ca }
}

/// A TLS connection that presents a client certificate, handshake done.
async fn tls_connection(served: &Served) -> tokio_rustls::client::TlsStream<TcpStream> {
    let config = served
        .ca
        .issue("slowpoke", vec![], true)
        .client_config(&served.ca);
    let tcp = TcpStream::connect(served.addr).await.unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// Reads until the server closes the connection; how long that took.
async fn closed_after(stream: &mut tokio_rustls::client::TlsStream<TcpStream>) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(15), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the server kept the connection open for 15 s"),
        }
    }
}

#[tokio::test]
async fn silent_and_trickling_clients_are_cut_off_while_others_are_served() {
    let served = serve(100).await;
    let client = served.ca.issue("agent-7", vec![], true);

    // Sends nothing after the handshake.
    let mut silent = tls_connection(&served).await;
    // Sends a request line, then a header byte every 200 ms, forever.
    let mut trickler = tls_connection(&served).await;
    trickler
        .write_all(b"GET /whoami HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        let started = Instant::now();
        for _ in 0..75 {
            if trickler.write_all(b"x").await.is_err() || trickler.flush().await.is_err() {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut probe = [0u8; 64];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(1), trickler.read(&mut probe)).await
            {
                return started.elapsed();
            }
        }
        panic!("the trickling client was still connected after 15 s");
    });

    // Meanwhile a normal client is served.
    let (status, _) = https_get(served.addr, &served.ca, &client).await.unwrap();
    assert_eq!(status, StatusCode::OK);

    assert!(closed_after(&mut silent).await < Duration::from_secs(10));
    assert!(trickle.await.unwrap() < Duration::from_secs(10));
    let (status, _) = https_get(served.addr, &served.ca, &client).await.unwrap();
    assert_eq!(status, StatusCode::OK);
}

/// Connections beyond the cap are closed as they arrive, and the server serves again once
/// the connections holding the slots are gone.
#[tokio::test]
async fn connections_beyond_the_cap_are_closed_not_queued() {
    two_held_a_third_closed_then_served(&serve(2).await).await;
}

/// With two connections held open, a third is closed before any handshake; once the two
/// close, a request is served.
async fn two_held_a_third_closed_then_served(served: &Served) {
    let client = served.ca.issue("agent-7", vec![], true);
    let held = [tls_connection(served).await, tls_connection(served).await];
    let refused = https_get(served.addr, &served.ca, &client)
        .await
        .unwrap_err();
    assert!(
        refused.contains("Error(Connect,") && !refused.contains("AlertReceived"),
        "not closed before the handshake: {refused}"
    );
    drop(held);
    let (status, _) = eventually_some("answered again", || async {
        https_get(served.addr, &served.ca, &client).await.ok()
    })
    .await;
    assert_eq!(status, StatusCode::OK);
}

/// The server's resident memory, from `/proc`.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A hostile client floods `secure_service` over TLS (idle connections, trickled headers,
/// oversized headers, distinct nonces with bad signatures, tokens naming distinct unknown keys,
/// made-up client addresses) while a legitimate client keeps calling: every legitimate request
/// succeeds, and the server's memory after the flood stays within a generous bound of before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_client_does_not_stop_a_legitimate_one() {
    use support::formula_headers;

    let ca = Ca::new("Test CA");
    let dir = std::env::temp_dir().join(format!("zerotrust-hostile-{}", std::process::id()));
    let files = tls_files(&ca, &dir);
    let mut env: Vec<(&str, &str)> = files.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend([
        ("SERVICE_SECRET", SECRET),
        ("JWT_SECRET", "a-jwt-secret-of-at-least-32-bytes!!"),
        ("JWT_ISSUER", "idp"),
        ("JWT_AUDIENCE", "api"),
        ("AUDIT_LOG", "/dev/null"),
    ]);
    let service = SecureService::start(&env);
    let addr = service.addr;
    let pid = service.child.id();
    let legit_config = ca.issue("agent-7", vec![], true).client_config(&ca);
    let call = || support::certs::https_get_with((*legit_config).clone(), addr);
    for _ in 0..20 {
        assert_eq!(call().await.unwrap().0, StatusCode::OK);
    }
    let before = rss_kib(pid);

    let attacker_config = ca.issue("mallory", vec![], true).client_config(&ca);
    let until = Instant::now() + Duration::from_secs(6);
    let mut floods = Vec::new();
    // Idle connections, never a byte.
    floods.push(tokio::spawn(async move {
        let mut idle = Vec::new();
        while Instant::now() < until && idle.len() < 300 {
            if let Ok(tcp) = TcpStream::connect(addr).await {
                idle.push(tcp);
            }
        }
        tokio::time::sleep_until(until.into()).await;
    }));
    // Trickled headers, over TLS.
    for _ in 0..10 {
        let config = attacker_config.clone();
        floods.push(tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let Ok(mut tls) = tokio_rustls::TlsConnector::from(config)
                .connect("localhost".try_into().unwrap(), tcp)
                .await
            else {
                return;
            };
            let _ = tls.write_all(b"GET /whoami HTTP/1.1\r\nHost: x\r\n").await;
            while Instant::now() < until {
                if tls.write_all(b"y").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }
    // Requests: oversized headers, bad signatures with distinct nonces, tokens naming
    // distinct unknown keys, made-up client addresses.
    for worker in 0..2 {
        let config = attacker_config.clone();
        floods.push(tokio::spawn(async move {
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config({
                    let mut config = (*config).clone();
                    config.alpn_protocols.clear();
                    config
                })
                .https_only()
                .enable_http1()
                .build();
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build::<_, http_body_util::Full<bytes::Bytes>>(connector);
            let mut n = 0u64;
            while Instant::now() < until {
                n += 1;
                let mut request =
                    http::Request::get(format!("https://localhost:{}/whoami", addr.port()));
                let nonce = format!("{worker}-{n}");
                match n % 4 {
                    0 => request = request.header("x-padding", "p".repeat(64 * 1024)),
                    1 => {
                        for (name, value) in formula_headers(
                            "not-the-secret-but-just-as-long-as-the-real-one!!",
                            "gateway",
                            support::now(),
                            &nonce,
                            "GET",
                            "/whoami",
                        ) {
                            request = request.header(name, value);
                        }
                    }
                    2 => {
                        let header = format!(r#"{{"alg":"HS256","kid":"k-{nonce}"}}"#);
                        let token = format!("{}.e30.c2ln", base64_url(header.as_bytes()));
                        request = request.header("authorization", format!("Bearer {token}"));
                    }
                    _ => {
                        request = request.header(
                            "x-forwarded-for",
                            format!("198.18.{}.{}", n % 250, worker + 1),
                        )
                    }
                }
                let request = request.body(Default::default()).unwrap();
                let _ = tokio::time::timeout(Duration::from_secs(2), client.request(request)).await;
            }
        }));
    }
    // Meanwhile, the legitimate client, until the floods end: every one of its requests is
    // answered. How many it makes is a speed, reported rather than asserted.
    let mut served = 0;
    loop {
        let (status, body) = call().await.expect("a legitimate request failed");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["id"], "agent-7");
        served += 1;
        if Instant::now() >= until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for flood in floods {
        let _ = flood.await;
    }
    assert_eq!(call().await.unwrap().0, StatusCode::OK);
    let after = rss_kib(pid);
    assert!(
        after < before + 64 * 1024,
        "resident memory grew from {before} KiB to {after} KiB"
    );
    eprintln!(
        "hostile flood: {served} legitimate requests served; RSS {before} KiB -> {after} KiB"
    );
    std::fs::remove_dir_all(&dir).ok();
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// One address holds at most its share of connections: past it, its new connections are closed
/// while the server still has room for others.
#[tokio::test]
async fn one_address_holds_at_most_its_share_of_connections() {
    let ca = Ca::new("Test CA");
    let app = axum::Router::new().fallback(|| async { "ok" });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        TlsServer::new(ca.server_config())
            .max_connections(100)
            .max_connections_per_peer(2)
            .serve(listener, app, std::future::pending()),
    );
    two_held_a_third_closed_then_served(&Served { addr, ca }).await;
}
