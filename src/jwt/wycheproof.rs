//! Project Wycheproof's vectors through the crate's own verification path: every key is built
//! as a key set would build it ([`JwtKey::from_jwk`]) and every signature is checked by
//! [`verified_payload`] (compact JWS) or by the primitive it calls. Every `invalid` vector is
//! refused, every `valid` one accepted, none panics. `acceptable` vectors are counted, not
//! judged. Groups of algorithms the crate does not offer (ES512) must fail to build a key.
//!
//! Where this crate is stricter than the vectors require, `valid` vectors are refused on
//! purpose, and the test checks that they are: a JWS whose header names another algorithm than
//! its key's (RFC 7520's PS384 token for a key published as PS256), because the key, never the
//! token, decides the algorithm; a JWS with characters outside base64url (`?` inserted in a
//! part, which a lenient decoder skips); symmetric keys in a key set, which must not carry
//! secrets; and P-521 keys, a curve the crate does not offer. And the file marks one token both
//! `valid` (#357) and `invalid` (#367, #370: padding that was lost when the vector was made):
//! the same bytes under the same key can only have one answer, the `valid` one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::Jwk;
use serde_json::Value;

use super::keys::{Algorithm, JwtKey};
use super::validate::verified_payload;

fn vectors(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/wycheproof/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn tests(group: &Value) -> impl Iterator<Item = &Value> {
    group["tests"].as_array().unwrap().iter()
}

/// Checks one verdict against the vector; returns whether it was judged.
fn judge(file: &str, test: &Value, accepted: bool) -> bool {
    let id = &test["tcId"];
    match test["result"].as_str().unwrap() {
        "valid" => assert!(accepted, "{file} #{id} ({}) refused", test["comment"]),
        "invalid" => assert!(!accepted, "{file} #{id} ({}) accepted", test["comment"]),
        _ => return false,
    }
    true
}

/// A key from a vector's JWK, as a key set entry would be made; `None` when refused.
fn key_from_jwk(jwk: &Value) -> Option<JwtKey> {
    if jwk["kty"] == "oct" {
        let secret = URL_SAFE_NO_PAD.decode(jwk["k"].as_str()?).ok()?;
        let key = JwtKey::new(Algorithm::HS256, DecodingKey::from_secret(&secret));
        return Some(match jwk["kid"].as_str() {
            Some(kid) => key.with_kid(kid),
            None => key,
        });
    }
    let jwk: Jwk = serde_json::from_value(jwk.clone()).ok()?;
    JwtKey::from_jwk(&jwk).ok()
}

#[test]
fn json_web_signatures_and_keys() {
    let jws = json_web_signatures("json_web_signature_test.json");
    let jwk = json_web_signatures("json_web_key_test.json");
    assert!(jws > 380 && jwk > 15, "{jws}, {jwk}");
}

/// The keys of a group: one JWK (the JWS file: a configured key, HMAC secrets included), or a
/// key set (the JWK file: each entry as a key set builds it, which refuses symmetric keys).
fn group_keys(group: &Value) -> Vec<Option<JwtKey>> {
    let jwk = group.get("public").unwrap_or(&group["private"]);
    match jwk.get("keys").and_then(Value::as_array) {
        Some(set) => set
            .iter()
            .map(|jwk| {
                let jwk: Jwk = serde_json::from_value(jwk.clone()).ok()?;
                JwtKey::from_jwk(&jwk).ok()
            })
            .collect(),
        None => vec![key_from_jwk(jwk)],
    }
}

fn json_web_signatures(file: &str) -> usize {
    let (mut judged, mut stricter, mut contradictory) = (0, 0, 0);
    for group in vectors(file)["testGroups"].as_array().unwrap() {
        let keys = group_keys(group);
        let valid: Vec<&Value> = tests(group)
            .filter(|t| t["result"] == "valid")
            .map(|t| &t["jws"])
            .collect();
        for test in tests(group) {
            let jws = test["jws"].as_str().unwrap_or_default();
            if test["result"] == "invalid" && valid.contains(&&test["jws"]) {
                contradictory += 1;
                continue;
            }
            let header = jsonwebtoken::decode_header(jws).ok();
            // As `RequireJwtLayer` chooses: by `kid`, else the only key.
            let key = header.as_ref().and_then(|header| match &header.kid {
                Some(kid) => keys
                    .iter()
                    .flatten()
                    .find(|k| k.kid() == Some(kid.as_str())),
                None => keys.iter().flatten().next(),
            });
            let accepted = match (&header, key) {
                (Some(header), Some(key)) => {
                    header.crit.is_none() && verified_payload(key, header.alg, jws).is_ok()
                }
                _ => false,
            };
            let other_algorithm = matches!((&header, key),
                (Some(header), Some(key)) if header.alg != key.algorithm().to_jsonwebtoken());
            let not_base64url = !jws
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            // The key was refused (a curve the crate does not offer, a symmetric key in a key
            // set), so nothing signed for it can pass.
            let refused_key =
                keys.iter().all(Option::is_none) || (key.is_none() && header.is_some());
            if test["result"] == "valid" && (other_algorithm || not_base64url || refused_key) {
                assert!(!accepted, "{file} #{}: accepted", test["tcId"]);
                eprintln!("stricter: {file} #{} {}", test["tcId"], test["comment"]);
                stricter += 1;
                continue;
            }
            judged += usize::from(judge(file, test, accepted));
        }
    }
    eprintln!(
        "{file}: {judged} judged, {stricter} valid ones refused by stricter rules, \
         {contradictory} contradictory"
    );
    judged
}

/// A raw signature over `msg` (hex) checked with `key` by the primitive `verified_payload` uses.
fn signature_accepted(key: &JwtKey, test: &Value) -> bool {
    let bytes = |field: &str| hex::decode(test[field].as_str().unwrap()).unwrap();
    let signature = URL_SAFE_NO_PAD.encode(bytes("sig"));
    jsonwebtoken::crypto::verify(
        &signature,
        &bytes("msg"),
        key.decoding_key(),
        key.algorithm().to_jsonwebtoken(),
    )
    .unwrap_or(false)
}

/// Every group's key from its JWK (as a key set would) or, where the vectors give none, from
/// its PEM (as `JwtKey::from_pem` would).
fn raw_signatures(file: &str, jwk_field: &str, alg: Algorithm) -> usize {
    let (mut judged, mut total) = (0, 0);
    for group in vectors(file)["testGroups"].as_array().unwrap() {
        let key = match group.get(jwk_field) {
            Some(jwk) => {
                let mut jwk = jwk.clone();
                jwk["alg"] = format!("{:?}", alg.to_jsonwebtoken()).into();
                key_from_jwk(&jwk)
            }
            None => JwtKey::from_pem(alg, group["publicKeyPem"].as_str().unwrap().as_bytes()).ok(),
        };
        for test in tests(group) {
            let accepted = key
                .as_ref()
                .is_some_and(|key| signature_accepted(key, test));
            judged += usize::from(judge(file, test, accepted));
            total += 1;
        }
    }
    eprintln!("{file}: {judged} of {total} judged (the rest `acceptable`)");
    judged
}

#[test]
fn ecdsa_p256_and_p384_in_jws_form() {
    let p256 = raw_signatures(
        "ecdsa_secp256r1_sha256_p1363_test.json",
        "publicKeyJwk",
        Algorithm::ES256,
    );
    let p384 = raw_signatures(
        "ecdsa_secp384r1_sha384_p1363_test.json",
        "publicKeyJwk",
        Algorithm::ES384,
    );
    assert!(p256 > 200 && p384 > 200, "{p256}, {p384}");
}

#[test]
fn ed25519() {
    assert!(raw_signatures("ed25519_test.json", "publicKeyJwk", Algorithm::EdDSA) > 100);
}

#[test]
fn rsa_pkcs1_and_pss() {
    let pkcs1 = raw_signatures(
        "rsa_signature_2048_sha256_test.json",
        "keyJwk",
        Algorithm::RS256,
    );
    let pss = raw_signatures(
        "rsa_pss_2048_sha256_mgf1_32_test.json",
        "publicKeyJwk",
        Algorithm::PS256,
    );
    assert!(pkcs1 > 200 && pss > 80, "{pkcs1}, {pss}");
}
