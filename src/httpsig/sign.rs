//! The client side: the fields that sign a request per RFC 9421, with `created`, `nonce`,
//! `keyid`, `alg` and, when there is a body, a `Content-Digest` the signature covers.

use http::{HeaderMap, HeaderValue, Method, Uri};
use sfv::{BareItem, FieldType, InnerList, Item, Key, ListEntry, Parameters};

use super::algorithm::SigningKey;
use super::base::{BaseError, CONTENT_DIGEST, Message, signature_base};
use super::digest;
use super::fields::signatures;

/// Signs requests with one key, as one label, covering what the verify layer requires.
pub(crate) struct Signer {
    pub(crate) keyid: String,
    pub(crate) key: SigningKey,
    pub(crate) algorithm: &'static str,
    pub(crate) label: String,
}

/// Components every signature covers; `content-digest` joins them when there is a body.
const COVERED: [&str; 4] = ["@method", "@authority", "@path", "@query"];

impl Signer {
    /// Adds `Content-Digest` (for a non-empty body), `Signature-Input` and `Signature` to
    /// `headers` for a request to `uri` (absolute: its scheme and authority are signed).
    pub(crate) fn sign(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &mut HeaderMap,
        body: &[u8],
        created: i64,
        nonce: &str,
    ) -> Result<(), BaseError> {
        let Some(authority) = uri.authority() else {
            return Err(BaseError::Malformed(
                "the request URI is not absolute: its scheme and authority are signed",
            ));
        };
        let mut covered: Vec<&str> = COVERED.to_vec();
        if !body.is_empty() {
            let field = digest::sha256_field(body);
            headers.insert(CONTENT_DIGEST.clone(), header_value(field)?);
            covered.push("content-digest");
        }
        let input = self.input(&covered, created, nonce)?;
        let message = Message {
            method,
            scheme: uri.scheme_str().unwrap_or("https"),
            authority: authority.as_str(),
            path: uri.path(),
            query: uri.query(),
            headers,
            status: None,
        };
        let placeholder = format!("{}=:AAAA:", self.label);
        let signature = signatures(&input, &placeholder)?.remove(0);
        let base = signature_base(&message, &signature)?;
        let bytes = self.key.sign(base.as_bytes());
        let signature = vec![ListEntry::Item(Item::new(BareItem::ByteSequence(bytes)))]
            .serialize()
            .ok_or(BaseError::Malformed("empty signature"))?;
        headers.insert("signature-input", header_value(input)?);
        headers.insert(
            "signature",
            header_value(format!("{}={signature}", self.label))?,
        );
        Ok(())
    }

    /// `label=("@method" ...);created=..;keyid="..";nonce="..";alg=".."`, serialized as a
    /// structured field (strings escaped).
    fn input(&self, covered: &[&str], created: i64, nonce: &str) -> Result<String, BaseError> {
        let bad =
            |_| BaseError::Malformed("keyid, nonce and label must be structured-field strings");
        let string = |text: &str| -> Result<BareItem, BaseError> {
            Ok(BareItem::String(
                sfv::String::from_string(text.to_owned()).map_err(|(e, _)| bad(e))?,
            ))
        };
        let key = |name: &str| Key::from_string(name.to_owned()).map_err(|(e, _)| bad(e));
        let mut params = Parameters::new();
        params.insert(
            key("created")?,
            BareItem::Integer(sfv::Integer::try_from(created).map_err(bad)?),
        );
        params.insert(key("keyid")?, string(&self.keyid)?);
        params.insert(key("nonce")?, string(nonce)?);
        params.insert(key("alg")?, string(self.algorithm)?);
        let items = covered
            .iter()
            .map(|name| string(name).map(Item::new))
            .collect::<Result<Vec<_>, _>>()?;
        let list = vec![ListEntry::InnerList(InnerList::with_params(items, params))]
            .serialize()
            .ok_or(BaseError::Malformed("empty signature input"))?;
        key(&self.label)?;
        Ok(format!("{}={list}", self.label))
    }
}

fn header_value(text: String) -> Result<HeaderValue, BaseError> {
    HeaderValue::try_from(text).map_err(|_| BaseError::Malformed("not a header value"))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::process::{Command, Stdio};

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::super::algorithm::VerifyingKey;
    use super::super::verify::tests::one_key;
    use super::super::verify::{Settings, verify};
    use super::*;
    use crate::clock::{Clock, SystemClock};

    const SECRET: [u8; 32] = [5; 32];

    fn now() -> i64 {
        i64::try_from(SystemClock.now_millis() / 1000).unwrap()
    }

    fn settings(key: VerifyingKey) -> Settings {
        one_key("client-key", key, "client", &[])
    }

    fn message<'a>(method: &'a Method, uri: &'a Uri, headers: &'a HeaderMap) -> Message<'a> {
        Message {
            method,
            scheme: uri.scheme_str().unwrap(),
            authority: uri.authority().unwrap().as_str(),
            path: uri.path(),
            query: uri.query(),
            headers,
            status: None,
        }
    }

    /// A signer as `client-key`, label `sig1`.
    fn client_signer(key: SigningKey, algorithm: &'static str) -> Signer {
        Signer {
            keyid: "client-key".into(),
            key,
            algorithm,
            label: "sig1".into(),
        }
    }

    /// The request every test signs (the Python scripts sign it too).
    fn models_request() -> (Method, Uri) {
        (
            Method::POST,
            Uri::from_static("https://api.example/models?x=1"),
        )
    }

    /// Header fields as a script printed them (names in any case).
    fn header_map(fields: Vec<(String, String)>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in fields {
            headers.insert(
                http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        headers
    }

    #[test]
    fn what_the_signer_signs_the_verifier_accepts() {
        let signer = client_signer(SigningKey::hmac_sha256(&SECRET).unwrap(), "hmac-sha256");
        let (method, uri) = models_request();
        let mut headers = HeaderMap::new();
        signer
            .sign(&method, &uri, &mut headers, b"{}", now(), "n-1")
            .unwrap();
        let input = headers["signature-input"].to_str().unwrap();
        assert!(
            input.starts_with(
                r#"sig1=("@method" "@authority" "@path" "@query" "content-digest");created="#
            ),
            "{input}"
        );
        assert!(
            input.ends_with(r#";keyid="client-key";nonce="n-1";alg="hmac-sha256""#),
            "{input}"
        );
        let settings = settings(VerifyingKey::hmac_sha256(&SECRET).unwrap());
        let verified = verify(&settings, &message(&method, &uri, &headers), true).unwrap();
        assert_eq!(verified.principal.id(), "client");
        assert!(verified.covers_digest);
        // Without a body there is no digest to cover.
        let mut headers = HeaderMap::new();
        signer
            .sign(&Method::GET, &uri, &mut headers, b"", now(), "n-2")
            .unwrap();
        assert!(!headers.contains_key("content-digest"));
        assert!(verify(&settings, &message(&Method::GET, &uri, &headers), false).is_ok());
        // A nonce that is no structured-field string is refused, not smuggled.
        let mut headers = HeaderMap::new();
        let smuggled = signer.sign(&method, &uri, &mut headers, b"", now(), "a\"b\u{1}");
        assert!(smuggled.is_err());
        // A relative URI leaves the authority unsigned: refused, not signed as empty.
        let relative = Uri::from_static("/models?x=1");
        let refused = signer.sign(&method, &relative, &mut HeaderMap::new(), b"", now(), "n-3");
        assert!(matches!(refused, Err(BaseError::Malformed(_))));
    }

    /// Python's `http-message-signatures` (3.x) verifies what we sign, and we verify what it
    /// signs, with HMAC-SHA256 and Ed25519.
    #[test]
    fn python_http_message_signatures_interoperates() {
        if !python_available() {
            return;
        }
        let pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .unwrap();
        let ed25519 = SigningKey::ed25519_pkcs8(pkcs8.as_ref()).unwrap();
        let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        // The SubjectPublicKeyInfo of an Ed25519 key: a fixed prefix, then the key (RFC 8410).
        let mut spki = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        spki.extend_from_slice(aws_lc_rs::signature::KeyPair::public_key(&pair).as_ref());
        for (algorithm, key, verifier, python_key) in [
            (
                "hmac-sha256",
                SigningKey::hmac_sha256(&SECRET).unwrap(),
                VerifyingKey::hmac_sha256(&SECRET).unwrap(),
                format!("base64.b64decode('{}')", STANDARD.encode(SECRET)),
            ),
            (
                "ed25519",
                ed25519,
                VerifyingKey::public_key("ed25519", &spki).unwrap(),
                format!(
                    "Ed25519PrivateKey.from_private_bytes(base64.b64decode('{}')[16:48])",
                    STANDARD.encode(pkcs8.as_ref())
                ),
            ),
        ] {
            let signer = client_signer(key, algorithm);
            let (method, uri) = models_request();
            let mut headers = HeaderMap::new();
            signer
                .sign(&method, &uri, &mut headers, b"{\"a\":1}", now(), "n-py")
                .unwrap();
            let ours: Vec<(String, String)> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
                .collect();
            let output = python(
                algorithm,
                &python_key,
                &serde_json::to_string(&ours).unwrap(),
            );
            assert!(
                output.status.success(),
                "{algorithm}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            // What Python signed, verified by us.
            let headers = header_map(serde_json::from_slice(&output.stdout).unwrap());
            let settings = settings(verifier);
            let verified = verify(&settings, &message(&method, &uri, &headers), true);
            assert!(
                verified.is_ok(),
                "{algorithm}: {:?} {headers:?}",
                verified.err()
            );
            let digest = headers["content-digest"].to_str().unwrap();
            assert_eq!(digest::check(digest, b"{\"a\":1}"), Ok(()), "{digest}");
        }
    }

    /// Python's `http-message-signatures` signs with ECDSA P-256 and P-384, RSA-PSS and RSA
    /// PKCS#1 v1.5, keys it makes itself: we verify each with its public key (PEM) alone. (Our
    /// signer makes HMAC and Ed25519 signatures: the test above covers those both ways.)
    #[test]
    fn python_public_key_signatures_verify() {
        if !python_available() {
            return;
        }
        let script = r#"
import datetime, json
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms
out = []
for alg, key in [
    (algorithms.ECDSA_P256_SHA256, ec.generate_private_key(ec.SECP256R1())),
    (algorithms.ECDSA_P384_SHA384, ec.generate_private_key(ec.SECP384R1())),
    (algorithms.RSA_PSS_SHA512, rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    (algorithms.RSA_V1_5_SHA256, rsa.generate_private_key(public_exponent=65537, key_size=2048)),
]:
    class Keys(HTTPSignatureKeyResolver):
        def resolve_private_key(self, key_id):
            return key
    request = requests.Request("POST", "https://api.example/models?x=1", data=b'{"a":1}').prepare()
    HTTPMessageSigner(signature_algorithm=alg, key_resolver=Keys()).sign(
        request, key_id="client-key", label="py", nonce="n-" + alg.algorithm_id, body=b'{"a":1}',
        created=datetime.datetime.now(),
        covered_component_ids=("@method", "@authority", "@path", "@query", "content-digest"))
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    headers = [[k, v] for k, v in request.headers.items() if k.lower() in ("signature", "signature-input", "content-digest")]
    out.append([alg.algorithm_id, pem.decode(), headers])
print(json.dumps(out))
"#;
        let output = Command::new("python3")
            .args(["-c", script])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        /// An algorithm, its public key (PEM), the signed request's fields.
        type Signed = (String, String, Vec<(String, String)>);
        let signed: Vec<Signed> = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(signed.len(), 4);
        let (method, uri) = models_request();
        for (algorithm, pem, fields) in signed {
            use rustls_pki_types::pem::PemObject;
            let spki =
                rustls_pki_types::SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes()).unwrap();
            let key = VerifyingKey::public_key(&algorithm, spki.as_ref()).unwrap();
            let headers = header_map(fields);
            let settings = settings(key);
            let verified = verify(&settings, &message(&method, &uri, &headers), true);
            assert!(verified.is_ok(), "{algorithm}: {:?}", verified.err());
            // The same signature over another path does not verify.
            let other = Uri::from_static("https://api.example/other?x=1");
            let refused = verify(&settings, &message(&method, &other, &headers), true);
            assert_eq!(
                refused.unwrap_err().code(),
                "httpsig.invalid_signature",
                "{algorithm}"
            );
        }
    }

    fn python_available() -> bool {
        let available = Command::new("python3")
            .args(["-c", "import http_message_signatures, requests"])
            .status()
            .is_ok_and(|s| s.success());
        let install = "python3 -m pip install http-message-signatures requests";
        // In CI (`CI` set) every tool is installed: a skip there would hide a test.
        assert!(
            available || std::env::var_os("CI").is_none(),
            "python3 with http-message-signatures is missing, and CI must run every test: {install}"
        );
        if !available {
            eprintln!("SKIPPED: python3 with http-message-signatures is not installed ({install})");
        }
        available
    }

    /// Verifies our request (headers as JSON on stdin) with Python's verifier, then signs the
    /// same request with Python's signer and prints its headers.
    fn python(algorithm: &str, key: &str, headers: &str) -> std::process::Output {
        let constant = if algorithm == "ed25519" {
            "ED25519"
        } else {
            "HMAC_SHA256"
        };
        let script = format!(
            r#"
import base64, datetime, json, sys
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, HTTPMessageVerifier, HTTPSignatureKeyResolver, algorithms
KEY = {key}
class Keys(HTTPSignatureKeyResolver):
    def resolve_public_key(self, key_id):
        return KEY.public_key() if hasattr(KEY, "public_key") else KEY
    def resolve_private_key(self, key_id):
        return KEY
request = requests.Request("POST", "https://api.example/models?x=1", data=b'{{"a":1}}').prepare()
for name, value in json.load(sys.stdin):
    request.headers[name] = value
HTTPMessageVerifier(signature_algorithm=algorithms.{constant}, key_resolver=Keys()).verify(request)
fresh = requests.Request("POST", "https://api.example/models?x=1", data=b'{{"a":1}}').prepare()
HTTPMessageSigner(signature_algorithm=algorithms.{constant}, key_resolver=Keys()).sign(
    fresh, key_id="client-key", label="py", nonce="n-from-python", body=b'{{"a":1}}',
    created=datetime.datetime.now(),
    covered_component_ids=("@method", "@authority", "@path", "@query", "content-digest"))
print(json.dumps([[k, v] for k, v in fresh.headers.items() if k.lower() in ("signature", "signature-input", "content-digest")]))
"#
        );
        let mut child = Command::new("python3")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(headers.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}
