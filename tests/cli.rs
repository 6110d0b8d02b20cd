//! The `zerotrust` command, run as an operator would.

mod support;

use std::process::Command;

use http::StatusCode;
use support::*;
use tower_zerotrust::hmac::{HmacConfig, VerifyHmacLayer};

fn zerotrust(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_zerotrust"))
        .args(args)
        .env_remove("SERVICE_ID")
        .env_remove("SERVICE_SECRET")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn secret_prints_256_random_bits_in_hex() {
    let (code, first, _) = zerotrust(&["secret"], &[]);
    let (_, second, _) = zerotrust(&["secret"], &[]);
    assert_eq!(code, Some(0));
    let first = first.trim();
    assert_eq!(first.len(), 64);
    assert!(
        first
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_ne!(first, second.trim());
}

#[tokio::test]
async fn sign_prints_headers_a_verifier_accepts() {
    let config = HmacConfig::builder()
        .secret(SECRET)
        .allow_callers(["gateway"])
        .build()
        .unwrap();
    let app = axum::Router::new()
        .fallback(|| async { "ok" })
        .layer(VerifyHmacLayer::new(config));
    let addr = serve(app).await;
    let env = [("SERVICE_ID", "gateway"), ("SERVICE_SECRET", SECRET)];
    let (code, stdout, stderr) = zerotrust(&["sign", "post", "/execute"], &env);
    assert_eq!(code, Some(0), "{stderr}");
    let mut req = request("POST", addr, "/execute");
    for line in stdout.lines() {
        let header = line
            .strip_prefix("-H '")
            .unwrap()
            .strip_suffix('\'')
            .unwrap();
        let (name, value) = header.split_once(": ").unwrap();
        req.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    assert_eq!(send(req).await.status, StatusCode::OK);
}

#[test]
fn bad_usage_and_missing_configuration_are_reported() {
    let (code, _, stderr) = zerotrust(&["sign", "GET", "/x"], &[]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("SERVICE_ID is not set"), "{stderr}");
    let (code, _, stderr) = zerotrust(&["frobnicate"], &[]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("usage:"), "{stderr}");
}

#[cfg(unix)]
#[tokio::test]
async fn ca_server_and_client_certificates_work_together() {
    use std::os::unix::fs::PermissionsExt;
    use tower_zerotrust::mtls::{MtlsPrincipalConfig, TlsConfig};

    let dir = std::env::temp_dir().join(format!("zt-cli-{}", std::process::id()));
    let d = dir.display().to_string();
    for args in [
        vec!["ca", "--dir", &d, "--cn", "Parallax Root CA"],
        vec![
            "server",
            "--dir",
            &d,
            "--name",
            "control-plane",
            "--host",
            "localhost",
            "--ip",
            "127.0.0.1",
        ],
        vec![
            "client",
            "--dir",
            &d,
            "--principal",
            "agent-1",
            "--spiffe",
            "spiffe://parallax.local/agent-1",
        ],
    ] {
        let (code, _, stderr) = zerotrust(&args, &[]);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
    }
    for key in ["ca/key.pem", "control-plane/key.pem", "agent-1/key.pem"] {
        let mode = std::fs::metadata(dir.join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    // The `ca/`, `<name>/` layout serves, and the client certificate is the principal.
    let server = dir.join("control-plane");
    let tls = TlsConfig::new(
        server.join("cert.pem"),
        server.join("key.pem"),
        server.join("ca.pem"),
    )
    .unwrap()
    .server_config()
    .unwrap();
    let addr =
        support::certs::serve_whoami(tls, MtlsPrincipalConfig::builder().build().unwrap()).await;
    let client = dir.join("agent-1");
    let client = TlsConfig::new(
        client.join("cert.pem"),
        client.join("key.pem"),
        client.join("ca.pem"),
    )
    .unwrap()
    .client_config()
    .unwrap();
    let (status, _) = support::certs::https_get_with((*client).clone(), addr)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let (code, _, stderr) = zerotrust(&["server", "--dir", &d], &[]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--name is required"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Keys are readable by their owner only, also when a key file was already there with wider
/// permissions (a certificate re-issued over an old one).
#[cfg(unix)]
#[test]
fn key_files_are_owner_only_even_when_overwritten() {
    use std::os::unix::fs::PermissionsExt;

    let dir = std::env::temp_dir().join(format!("zt-cli-overwrite-{}", std::process::id()));
    let d = dir.display().to_string();
    std::fs::create_dir_all(dir.join("ca")).unwrap();
    std::fs::create_dir_all(dir.join("agent-1")).unwrap();
    for key in ["ca/key.pem", "agent-1/key.pem"] {
        std::fs::write(dir.join(key), "old key").unwrap();
        std::fs::set_permissions(dir.join(key), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    for args in [
        vec!["ca", "--dir", &d, "--cn", "Parallax Root CA"],
        vec!["client", "--dir", &d, "--principal", "agent-1"],
    ] {
        let (code, _, stderr) = zerotrust(&args, &[]);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
    }
    for key in ["ca/key.pem", "agent-1/key.pem"] {
        let path = dir.join(key);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
        let pem = std::fs::read_to_string(&path).unwrap();
        assert!(
            pem.starts_with("-----BEGIN PRIVATE KEY-----"),
            "{key}: {pem}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
