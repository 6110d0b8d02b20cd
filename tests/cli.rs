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
