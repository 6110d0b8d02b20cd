//! HTTP Message Signatures (RFC 9421): the verify layer against the `X-Signature` HMAC layer,
//! and Ed25519 verification through the layer's key against aws-lc's own verify.
//!
//! `cargo bench --bench httpsig`. Numbers and how to read them: `benches/README.md`.

mod support;

use std::convert::Infallible;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::Full;
use support::{SECRET, complete, in_chunks, steady_store};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_zerotrust::hmac::{HmacConfig, VerifyHmacLayer};
use tower_zerotrust::httpsig::{
    HttpSigConfig, HttpSigKey, HttpSigSigner, RequestBody, VerifyHttpSigLayer,
};
use tower_zerotrust::sign::HmacSigner;

const BODY: &[u8] = br#"{"name":"model-1","owner":"gateway"}"#;

fn layers(c: &mut Criterion) {
    let mut group = c.benchmark_group("httpsig");
    // The X-Signature scheme: method and path signed, no body.
    let hmac_noop = service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let hmac = ServiceBuilder::new()
        .layer(VerifyHmacLayer::with_nonce_store(
            HmacConfig::builder()
                .secret(SECRET)
                .allow_callers(["gateway"])
                .build()
                .unwrap(),
            steady_store(1000),
        ))
        .service(hmac_noop);
    let x_signer = HmacSigner::new("gateway", SECRET).unwrap();
    let x_signed = || {
        let mut req = Request::post("/models")
            .body(Full::new(Bytes::from_static(BODY)))
            .unwrap();
        x_signer.sign_request(&mut req);
        req
    };
    group.bench_function("x_signature_hmac_layer", |b| {
        b.iter_custom(|iters| {
            in_chunks(iters, x_signed, |req| {
                let response = complete(hmac.clone().oneshot(req)).unwrap();
                assert_eq!(response.status(), StatusCode::OK);
            })
        })
    });

    // RFC 9421 with hmac-sha256: method, authority, path, query and the body's digest signed;
    // the body read and its digest checked.
    let noop = service_fn(|_req: Request<RequestBody<Full<Bytes>>>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let (private_pem, public_pem) = ed25519_pems();
    let config = HttpSigConfig::builder()
        .key(
            "gw",
            HttpSigKey::hmac_sha256(SECRET.as_bytes()).unwrap(),
            "gateway",
        )
        .key(
            "router",
            HttpSigKey::public_key_pem("ed25519", public_pem.as_bytes()).unwrap(),
            "router",
        )
        .scheme("http")
        .build()
        .unwrap();
    let httpsig = ServiceBuilder::new()
        .layer(VerifyHttpSigLayer::with_nonce_store(
            config,
            steady_store(1000),
        ))
        .service(noop);
    let uri = Uri::from_static("http://api.example/models?v=1");
    let sign_with = |signer: &HttpSigSigner| {
        let mut req = Request::post(uri.clone())
            .body(Full::new(Bytes::from_static(BODY)))
            .unwrap();
        signer
            .sign(&Method::POST, &uri, req.headers_mut(), BODY)
            .unwrap();
        req
    };
    let hmac_signer = HttpSigSigner::hmac_sha256("gw", SECRET.as_bytes()).unwrap();
    let ed25519_signer = HttpSigSigner::ed25519_pem("router", private_pem.as_bytes()).unwrap();
    for (name, signer) in [
        ("rfc9421_hmac_sha256_layer", &hmac_signer),
        ("rfc9421_ed25519_layer", &ed25519_signer),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                in_chunks(
                    iters,
                    || sign_with(signer),
                    |req| {
                        let response = complete(httpsig.clone().oneshot(req)).unwrap();
                        assert_eq!(response.status(), StatusCode::OK);
                    },
                )
            })
        });
    }

    // The floor of Ed25519: aws-lc verifying a signature over a typical base.
    let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(&pkcs8_der(&private_pem)).unwrap();
    let base = br#""@method": POST
"@authority": api.example
"@path": /models
"@query": ?v=1
"content-digest": sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:
"@signature-params": ("@method" "@authority" "@path" "@query" "content-digest");created=1618884473;keyid="router";nonce="0f1e2d3c4b5a69788796a5b4c3d2e1f0";alg="ed25519""#;
    let signature = pair.sign(base);
    let public = aws_lc_rs::signature::KeyPair::public_key(&pair).as_ref();
    // aws-lc's fastest: the key parsed once, as the layer keeps it.
    let parsed =
        aws_lc_rs::signature::ParsedPublicKey::new(&aws_lc_rs::signature::ED25519, public).unwrap();
    group.bench_function("ed25519_verify_floor", |b| {
        b.iter(|| {
            parsed
                .verify_sig(black_box(base), black_box(signature.as_ref()))
                .is_ok()
        })
    });
    // The same, with a fresh signature made in the set-up of each request, as the layer's
    // bench does: the caches are as cold as the layer finds them.
    let mut n = 0u64;
    group.bench_function("ed25519_verify_floor_fresh", |b| {
        b.iter_custom(|iters| {
            in_chunks(
                iters,
                || {
                    n += 1;
                    let base = format!("{}{n}", String::from_utf8_lossy(base));
                    let signature = pair.sign(base.as_bytes());
                    (base, signature)
                },
                |(base, signature)| {
                    assert!(
                        parsed
                            .verify_sig(base.as_bytes(), signature.as_ref())
                            .is_ok()
                    );
                },
            )
        })
    });
    // The common way: the key parsed on each verification.
    let unparsed = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ED25519,
        public.to_vec(),
    );
    group.bench_function("ed25519_verify_unparsed_key", |b| {
        b.iter(|| {
            unparsed
                .verify(black_box(base), black_box(signature.as_ref()))
                .is_ok()
        })
    });
    // The floor of reading the two fields with the structured-field parser, every item
    // validated and nothing kept.
    let mut headers = http::HeaderMap::new();
    hmac_signer
        .sign(&Method::POST, &uri, &mut headers, BODY)
        .unwrap();
    let fields = [&headers["signature-input"], &headers["signature"]].map(|v| v.to_str().unwrap());
    group.bench_function("sfv_parse_floor", |b| {
        b.iter(|| {
            for field in black_box(fields) {
                sfv::Parser::new(field)
                    .parse_dictionary_with_visitor(&mut sfv::visitor::Ignored)
                    .unwrap();
            }
        })
    });
    group.finish();
}

/// An Ed25519 key pair as PEM: PKCS#8 private key, SubjectPublicKeyInfo public key.
fn ed25519_pems() -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    (key.serialize_pem(), key.public_key_pem())
}

fn pkcs8_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

criterion_group!(benches, layers);
criterion_main!(benches);
