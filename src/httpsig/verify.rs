//! Which signature of a request counts, and whether it proves a caller (RFC 9421 §3.2): the
//! decision the verify layer makes before it records the nonce and checks the body's digest.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use super::algorithm::VerifyingKey;
use super::base::{
    BaseError, Component, Derived, Message, SIGNATURE, SIGNATURE_INPUT, field_value, signature_base,
};
use super::fields::{Signature, signatures};
use crate::clock::SharedClock;
use crate::principal::{AuthMethod, Principal};
use crate::reject::{Origin, Rejection, RejectionKind};

/// The challenge of a refusal: the scheme clients of RFC 9421 sign with.
pub(crate) const CHALLENGE: &str = "Signature";

/// A configured key: what it verifies, and who a signature made with it proves.
pub(crate) struct Key {
    pub(crate) key: VerifyingKey,
    pub(crate) principal: Arc<str>,
    pub(crate) roles: Vec<String>,
}

/// Which of a request's signatures is verified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Selection {
    /// The request carries exactly one signature.
    #[default]
    Only,
    /// The signature with this label.
    Label(String),
    /// The signature whose `tag` parameter is this (exactly one must have it).
    Tag(String),
}

/// What the verifier accepts.
pub(crate) struct Settings {
    pub(crate) keys: HashMap<String, Key>,
    pub(crate) selection: Selection,
    /// Components every accepted signature covers, besides `@query` or `@target-uri` and,
    /// for requests with a body, `content-digest`.
    pub(crate) required: Vec<Derived>,
    /// How far `created` may be from now, either way.
    pub(crate) window: Duration,
    pub(crate) require_nonce: bool,
    pub(crate) clock: SharedClock,
}

/// A verified signature: the caller it proves, and what must still be done with the request.
#[derive(Debug)]
pub(crate) struct Verified<'c> {
    pub(crate) principal: Principal,
    /// The key's id as configured (the nonce store's scope).
    pub(crate) keyid: &'c str,
    pub(crate) nonce: Option<String>,
    /// The signature covers `content-digest`: the body must match it.
    pub(crate) covers_digest: bool,
}

/// Verifies the request's selected signature over `message`.
pub(crate) fn verify<'c>(
    settings: &'c Settings,
    message: &Message<'_>,
    has_body: bool,
) -> Result<Verified<'c>, Rejection> {
    // Every line of each field: a second line is part of the field, never ignored.
    let field = |name: &HeaderName| field_value(message.headers, name);
    let (input, signature) = (
        field(&SIGNATURE_INPUT).map_err(base_refusal)?,
        field(&SIGNATURE).map_err(base_refusal)?,
    );
    let (Some(input), Some(signature)) = (input, signature) else {
        return Err(refusal("httpsig.missing", "Missing message signature"));
    };
    let all = signatures(&input, &signature).map_err(base_refusal)?;
    let signature = select(&settings.selection, all)?;
    let keyid = signature.params.keyid.as_deref().unwrap_or_default();
    let Some((keyid, key)) = settings.keys.get_key_value(keyid) else {
        return Err(refusal("httpsig.unknown_key", "Unknown signing key"));
    };
    if signature
        .params
        .alg
        .as_deref()
        .is_some_and(|alg| alg != key.key.algorithm())
    {
        return Err(refusal(
            "httpsig.algorithm_mismatch",
            "Signature algorithm does not match the key",
        ));
    }
    let covers_digest = signature.covers_digest();
    check_coverage(settings, &signature, covers_digest || !has_body)?;
    check_freshness(settings, &signature)?;
    if settings.require_nonce && signature.params.nonce.is_none() {
        return Err(refusal(
            "httpsig.nonce_required",
            "Signature nonce required",
        ));
    }
    let base = signature_base(message, &signature).map_err(base_refusal)?;
    if !key.key.verify(base.as_bytes(), &signature.bytes) {
        return Err(refusal(
            "httpsig.invalid_signature",
            "Invalid message signature",
        ));
    }
    Ok(Verified {
        principal: Principal::new(key.principal.clone(), AuthMethod::HttpSig)
            .with_roles(key.roles.iter().cloned()),
        keyid,
        nonce: signature.params.nonce.map(Cow::into_owned),
        covers_digest,
    })
}

/// The one signature the configuration selects; several candidates are ambiguous.
fn select<'a>(selection: &Selection, all: Vec<Signature<'a>>) -> Result<Signature<'a>, Rejection> {
    let mut candidates = all.into_iter().filter(|s| match selection {
        Selection::Only => true,
        Selection::Label(label) => s.label == label,
        Selection::Tag(tag) => s.params.tag.as_deref() == Some(tag.as_str()),
    });
    match (candidates.next(), candidates.next()) {
        (Some(one), None) => Ok(one),
        (None, _) => Err(refusal("httpsig.missing", "Missing message signature")),
        (Some(_), Some(_)) => Err(refusal(
            "httpsig.ambiguous",
            "Several message signatures, none selected",
        )),
    }
}

/// `body_covered`: the body's digest is covered, or there is no body.
fn check_coverage(
    settings: &Settings,
    signature: &Signature<'_>,
    body_covered: bool,
) -> Result<(), Rejection> {
    let covers = |wanted: Derived| signature.covered.contains(&Component::Derived(wanted));
    let covers_query = covers(Derived::Query) || covers(Derived::TargetUri);
    let complete = settings.required.iter().all(|d| covers(*d)) && covers_query && body_covered;
    if complete {
        Ok(())
    } else {
        Err(refusal(
            "httpsig.coverage",
            "Message signature does not cover enough of the request",
        ))
    }
}

/// `created` is required and within the window; `expires`, when given, has not passed.
fn check_freshness(settings: &Settings, signature: &Signature<'_>) -> Result<(), Rejection> {
    let now = i64::try_from(settings.clock.now_millis() / 1000).unwrap_or(i64::MAX);
    let window = i64::try_from(settings.window.as_secs()).unwrap_or(i64::MAX);
    let Some(created) = signature.params.created else {
        return Err(refusal(
            "httpsig.created_required",
            "Signature creation time required",
        ));
    };
    let expired = signature
        .params
        .expires
        .is_some_and(|expires| now > expires);
    if created.abs_diff(now) > window.unsigned_abs() || expired {
        return Err(refusal(
            "httpsig.expired",
            "Message signature expired or not yet valid",
        ));
    }
    Ok(())
}

fn base_refusal(error: BaseError) -> Rejection {
    match error {
        BaseError::Unsupported(_) => refusal(
            "httpsig.unsupported_component",
            "Message signature covers an unsupported component",
        ),
        BaseError::DuplicateLabel(_) => refusal(
            "httpsig.ambiguous",
            "A message signature label is given twice",
        ),
        BaseError::Missing(_) => refusal(
            "httpsig.missing_component",
            "Message signature covers a missing field",
        ),
        _ => refusal("httpsig.malformed", "Malformed message signature"),
    }
}

/// A 401 of this layer, with its challenge.
pub(crate) fn refusal(code: &'static str, message: &'static str) -> Rejection {
    Rejection::by(
        Origin::HttpSig,
        RejectionKind::Unauthenticated,
        code,
        message,
    )
    .with_challenge(CHALLENGE)
}

#[cfg(test)]
pub(crate) mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use http::{HeaderMap, Method};

    use super::super::algorithm::SigningKey;
    use super::super::base::tests::{message, test_request};
    use super::*;
    use crate::clock::Clock;

    const SECRET: [u8; 32] = [42; 32];
    const NOW: u64 = 1_700_000_000;

    struct Fixed;
    impl Clock for Fixed {
        fn now_millis(&self) -> u64 {
            NOW * 1000
        }
    }

    /// The defaults (±30 s, nonce required, the system clock) with one key.
    pub(crate) fn one_key(
        keyid: &str,
        key: VerifyingKey,
        principal: &str,
        roles: &[&str],
    ) -> Settings {
        let key = Key {
            key,
            principal: Arc::from(principal),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        };
        Settings {
            keys: HashMap::from([(keyid.to_owned(), key)]),
            selection: Selection::Only,
            required: vec![Derived::Method, Derived::Authority, Derived::Path],
            window: Duration::from_secs(30),
            require_nonce: true,
            clock: SharedClock::default(),
        }
    }

    fn settings() -> Settings {
        let key = VerifyingKey::hmac_sha256(&SECRET).unwrap();
        Settings {
            clock: SharedClock::new(Fixed),
            ..one_key("gateway-key", key, "gateway", &["developer"])
        }
    }

    /// Signs the RFC's test request as a client would, with `params` after the covered list.
    fn signed(label: &str, covered: &str, params: &str) -> HeaderMap {
        let (method, mut headers) = test_request();
        let input = format!("{label}=({covered}){params}");
        // Sign with the base the verifier will make.
        headers.insert("signature-input", input.parse().unwrap());
        let placeholder = format!("{label}=:AAAA:");
        headers.insert("signature", placeholder.parse().unwrap());
        let signature = signatures(&input, &placeholder).unwrap().remove(0);
        let base = signature_base(&message(&method, &headers), &signature).unwrap();
        let bytes = SigningKey::hmac_sha256(&SECRET)
            .unwrap()
            .sign(base.as_bytes());
        headers.insert(
            "signature",
            format!("{label}=:{}:", STANDARD.encode(bytes))
                .parse()
                .unwrap(),
        );
        headers
    }

    const FULL: &str = r#""@method" "@authority" "@path" "@query" "content-digest""#;

    fn params(created: u64) -> String {
        format!(r#";created={created};keyid="gateway-key";nonce="n-1";alg="hmac-sha256""#)
    }

    fn check<'c>(
        headers: &HeaderMap,
        settings: &'c Settings,
    ) -> Result<Verified<'c>, &'static str> {
        let method = Method::POST;
        verify(settings, &message(&method, headers), true).map_err(|r| r.code())
    }

    #[test]
    fn a_complete_fresh_signature_proves_its_key_s_principal() {
        let settings = settings();
        let verified = check(&signed("sig", FULL, &params(NOW)), &settings).unwrap();
        assert_eq!(verified.principal.id(), "gateway");
        assert_eq!(verified.principal.method(), AuthMethod::HttpSig);
        assert_eq!(verified.principal.roles(), ["developer"]);
        assert_eq!(
            (verified.keyid, verified.nonce.as_deref()),
            ("gateway-key", Some("n-1"))
        );
        assert!(verified.covers_digest);
        // @target-uri stands for @query.
        let target = r#""@method" "@authority" "@path" "@target-uri" "content-digest""#;
        assert!(check(&signed("sig", target, &params(NOW)), &settings).is_ok());
    }

    #[test]
    fn each_failure_has_its_code() {
        let settings = settings();
        let refused = |headers: HeaderMap| check(&headers, &settings).unwrap_err();
        assert_eq!(refused(test_request().1), "httpsig.missing");
        let mut garbled = signed("sig", FULL, &params(NOW));
        garbled.insert("signature-input", "sig=(".parse().unwrap());
        assert_eq!(refused(garbled), "httpsig.malformed");
        let unknown = params(NOW).replace("gateway-key", "other-key");
        assert_eq!(
            refused(signed("sig", FULL, &unknown)),
            "httpsig.unknown_key"
        );
        let no_keyid = format!(";created={NOW};nonce=\"n-1\"");
        assert_eq!(
            refused(signed("sig", FULL, &no_keyid)),
            "httpsig.unknown_key"
        );
        let ed25519 = params(NOW).replace("hmac-sha256", "ed25519");
        assert_eq!(
            refused(signed("sig", FULL, &ed25519)),
            "httpsig.algorithm_mismatch"
        );
        let no_query = r#""@method" "@authority" "@path" "content-digest""#;
        assert_eq!(
            refused(signed("sig", no_query, &params(NOW))),
            "httpsig.coverage"
        );
        let no_digest = r#""@method" "@authority" "@path" "@query""#;
        assert_eq!(
            refused(signed("sig", no_digest, &params(NOW))),
            "httpsig.coverage"
        );
        let no_method = r#""@authority" "@path" "@query" "content-digest""#;
        assert_eq!(
            refused(signed("sig", no_method, &params(NOW))),
            "httpsig.coverage"
        );
        assert_eq!(
            refused(signed("sig", FULL, &params(NOW - 31))),
            "httpsig.expired"
        );
        assert_eq!(
            refused(signed("sig", FULL, &params(NOW + 31))),
            "httpsig.expired"
        );
        let expired = format!("{};expires={}", params(NOW), NOW - 1);
        assert_eq!(refused(signed("sig", FULL, &expired)), "httpsig.expired");
        let no_created = r#";keyid="gateway-key";nonce="n-1""#;
        assert_eq!(
            refused(signed("sig", FULL, no_created)),
            "httpsig.created_required"
        );
        let no_nonce = format!(r#";created={NOW};keyid="gateway-key""#);
        assert_eq!(
            refused(signed("sig", FULL, &no_nonce)),
            "httpsig.nonce_required"
        );
        // Coverage the signer cannot have signed here: the input is replaced after signing.
        let covering = |covered: &str| {
            let mut headers = signed("sig", FULL, &params(NOW));
            let input = format!("sig=({FULL} {covered}){}", params(NOW));
            headers.insert("signature-input", input.parse().unwrap());
            headers
        };
        assert_eq!(
            refused(covering(r#""@status""#)),
            "httpsig.unsupported_component"
        );
        let with_absent = covering(r#""x-absent""#);
        assert_eq!(refused(with_absent), "httpsig.missing_component");
    }

    /// Whatever part of the request changes after signing, the signature no longer verifies.
    #[test]
    fn tampering_is_refused() {
        let settings = settings();
        let headers = signed("sig", FULL, &params(NOW));
        let method = Method::POST;
        let good = message(&method, &headers);
        assert!(verify(&settings, &good, true).is_ok());
        let put = Method::PUT;
        let mut digest = headers.clone();
        digest.insert("content-digest", "sha-256=:AAAA:".parse().unwrap());
        for (what, tampered) in [
            (
                "method",
                Message {
                    method: &put,
                    ..good
                },
            ),
            (
                "authority",
                Message {
                    authority: "evil.example",
                    ..good
                },
            ),
            (
                "path",
                Message {
                    path: "/bar",
                    ..good
                },
            ),
            (
                "query",
                Message {
                    query: Some("param=Value&Pet=cat"),
                    ..good
                },
            ),
            (
                "covered field",
                Message {
                    headers: &digest,
                    ..good
                },
            ),
        ] {
            let refused = verify(&settings, &tampered, true).unwrap_err();
            assert_eq!(refused.code(), "httpsig.invalid_signature", "{what}");
            assert_eq!(refused.kind(), RejectionKind::Unauthenticated);
        }
    }

    #[test]
    fn the_configured_signature_is_the_one_verified() {
        let mut headers = signed("mine", FULL, &(params(NOW) + r#";tag="app""#));
        let theirs = headers["signature-input"]
            .to_str()
            .unwrap()
            .replace("mine=", "theirs=");
        let two_inputs = format!("{}, {theirs}", headers["signature-input"].to_str().unwrap());
        let theirs_sig = headers["signature"]
            .to_str()
            .unwrap()
            .replace("mine=", "theirs=");
        let two_sigs = format!("{}, {theirs_sig}", headers["signature"].to_str().unwrap());
        headers.insert("signature-input", two_inputs.parse().unwrap());
        headers.insert("signature", two_sigs.parse().unwrap());
        // Two signatures and nothing to choose between them: ambiguous.
        assert_eq!(
            check(&headers, &settings()).unwrap_err(),
            "httpsig.ambiguous"
        );
        let mut by_label = settings();
        by_label.selection = Selection::Label("mine".into());
        assert!(check(&headers, &by_label).is_ok());
        // Both carry the tag (the second is a copy): still ambiguous.
        let mut by_tag = settings();
        by_tag.selection = Selection::Tag("app".into());
        assert_eq!(check(&headers, &by_tag).unwrap_err(), "httpsig.ambiguous");
        by_tag.selection = Selection::Tag("other".into());
        assert_eq!(check(&headers, &by_tag).unwrap_err(), "httpsig.missing");
    }
}
