//! The checks, in order: a bearer token is present and small; a key is chosen by the key's
//! rules, never the token's; the signature, issuer and audience; then time and claims.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::AUTHORIZATION;
use http::{Extensions, HeaderMap};
use jsonwebtoken::errors::ErrorKind;
use serde_json::{Map, Value};

use super::cache::{TokenCache, Verified};
use super::config::Settings;
use super::keys::{Algorithm, JwtKey};
use crate::claims::Claims;
use crate::principal::{AuthMethod, Principal};
use crate::reject::{Origin, Rejection, RejectionKind};

/// Longest `kid` looked up; anything longer is not a key id.
const MAX_KID_LEN: usize = 256;

#[derive(Debug)]
pub(crate) enum Verdict {
    /// A public path: nothing to check.
    Public,
    /// No bearer token, in optional mode.
    Anonymous,
    Verified(Principal, Claims),
    /// The token names a key the key set does not have (yet): refresh, then check again.
    #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
    UnknownKey,
}

/// The checks of a request for `path` (the gRPC method for interceptors; `None` where it is
/// unknown, which no public path matches).
pub(crate) fn authenticate(
    settings: &Settings,
    path: Option<&str>,
    headers: &HeaderMap,
    extensions: &Extensions,
) -> Result<Verdict, Rejection> {
    if path.is_some_and(|path| settings.public_paths.contains(path)) {
        return Ok(Verdict::Public);
    }
    let Some(token) = bearer_token(headers)? else {
        return if settings.optional {
            Ok(Verdict::Anonymous)
        } else {
            Err(Rejection::by(
                Origin::Jwt,
                RejectionKind::Unauthenticated,
                "jwt.missing_token",
                "Missing bearer token",
            )
            .with_challenge("Bearer"))
        };
    };
    if token.len() > settings.max_token_bytes {
        return Err(invalid("jwt.token_too_large", "Token too large"));
    }
    let now = settings.clock.now_millis() / 1000;
    let generation = settings.key_generation();
    let cache = settings
        .cache
        .as_ref()
        .map(|cache| (cache, TokenCache::key(token)));
    if let Some((cache, key)) = &cache
        && let Some(hit) = cache.get(key, generation)
    {
        return accept(&hit, now, settings.leeway_secs, extensions);
    }
    let Some(verified) = verify(settings, token, generation, TokenUse::Access)? else {
        return Ok(Verdict::UnknownKey);
    };
    let verdict = accept(&verified, now, settings.leeway_secs, extensions);
    // Expired or bound to another certificate, it is still verified: the next use is
    // refused without verifying it again.
    if let Some((cache, key)) = cache {
        cache.insert(key, verified);
    }
    verdict
}

/// A message token (a signed pub/sub message on `channel`), held to the same rules but kept
/// out of the token cache: each such token is used once.
#[cfg(feature = "redis")]
pub(crate) fn authenticate_message(
    settings: &Settings,
    token: &str,
    channel: &str,
) -> Result<Verdict, Rejection> {
    if token.len() > settings.max_token_bytes {
        return Err(invalid("jwt.token_too_large", "Token too large"));
    }
    let now = settings.clock.now_millis() / 1000;
    let token_use = TokenUse::Message { channel };
    match verify(settings, token, settings.key_generation(), token_use)? {
        Some(verified) => accept(&verified, now, settings.leeway_secs, &Extensions::new()),
        None => Ok(Verdict::UnknownKey),
    }
}

/// What a token is for. Tokens are typed (RFC 8725 §3.11): a token minted for one signed
/// message is never an access token, and an access token never signs a message.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TokenUse<'a> {
    /// An `Authorization: Bearer` access token: `typ` absent or one of the accepted types, and
    /// `aud` one of the configured audiences.
    Access,
    /// A signed pub/sub message on `channel`: `typ` is [`MESSAGE_TOKEN_TYPE`] and `aud` is a
    /// configured audience scoped to the channel ([`message_audience`]).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Message { channel: &'a str },
}

/// The `typ` of the tokens that sign pub/sub messages.
pub(crate) const MESSAGE_TOKEN_TYPE: &str = "zerotrust-message+jwt";

/// The audience of a message token: the verifier's audience, scoped to one channel, so that a
/// message token is refused by every HTTP endpoint even where `typ` went unchecked.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn message_audience(audience: &str, channel: &str) -> String {
    format!("{audience}/pubsub/{channel}")
}

/// The checks that give the same answer for a token every time: header, signature, issuer,
/// audience, claims. `None` when a key set may learn the token's key on refresh.
fn verify(
    settings: &Settings,
    token: &str,
    generation: u64,
    token_use: TokenUse<'_>,
) -> Result<Option<Verified>, Rejection> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| invalid("jwt.malformed", "Malformed token"))?;
    check_header(settings, &header, token_use)?;
    let claims = match settings.single_key() {
        Some(key) => verified_claims(key, header.alg, token)?,
        None => {
            let algorithm = Algorithm::from_jsonwebtoken(header.alg).ok_or_else(|| {
                invalid("jwt.algorithm_not_allowed", "Token algorithm not allowed")
            })?;
            let Some(key) = choose_key(settings, header.kid.as_deref(), algorithm)? else {
                return Ok(None);
            };
            verified_claims(&key, header.alg, token)?
        }
    };
    if ["iss", "aud", "sub"]
        .iter()
        .any(|c| !claims.contains_key(*c))
    {
        return Err(missing_claim());
    }
    let issuer_ok =
        matches!(claims.get("iss"), Some(Value::String(iss)) if settings.issuers.contains(iss));
    if !issuer_ok {
        return Err(invalid("jwt.invalid_issuer", "Invalid token issuer"));
    }
    let audience_ok = match token_use {
        TokenUse::Access => {
            audience_matches(&claims, |aud| settings.audiences.iter().any(|a| a == aud))
        }
        TokenUse::Message { channel } => audience_matches(&claims, |aud| {
            settings
                .audiences
                .iter()
                .any(|a| message_audience(a, channel) == aud)
        }),
    };
    if !audience_ok {
        return Err(invalid("jwt.invalid_audience", "Invalid token audience"));
    }
    let times = time_claims(&claims)?;
    for name in &settings.required_claims {
        if !claims.contains_key(name) {
            return Err(missing_claim());
        }
    }
    let subject = match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => sub.as_str(),
        _ => return Err(missing_claim()),
    };
    let bound_to = confirmation(&claims)?;
    let principal =
        Principal::new(subject, AuthMethod::Jwt).with_roles(settings.roles.roles(&claims));
    Ok(Some(Verified::new(
        principal,
        Claims::new(claims),
        times,
        bound_to,
        generation,
    )))
}

/// RFC 7515 §4.1.11: a `crit` header names extensions the verifier must understand; this one
/// understands none, so any `crit` is refused. RFC 8725 §3.11: the `typ` says what the token is
/// for, and a token of another kind is refused.
fn check_header(
    settings: &Settings,
    header: &jsonwebtoken::Header,
    token_use: TokenUse<'_>,
) -> Result<(), Rejection> {
    if header.crit.is_some() {
        return Err(invalid(
            "jwt.unsupported_critical_header",
            "Token requires header extensions this service does not support",
        ));
    }
    let accepted = match (token_use, header.typ.as_deref()) {
        (TokenUse::Access, None) => !settings.require_token_type,
        (TokenUse::Access, Some(typ)) => {
            !same_type(typ, MESSAGE_TOKEN_TYPE)
                && settings.token_types.iter().any(|t| same_type(typ, t))
        }
        (TokenUse::Message { .. }, typ) => typ.is_some_and(|t| same_type(t, MESSAGE_TOKEN_TYPE)),
    };
    if accepted {
        Ok(())
    } else {
        Err(invalid("jwt.wrong_token_type", "Token type not accepted"))
    }
}

/// Media types compare case-insensitively, and `typ` may leave out `application/`
/// (RFC 7515 §4.1.9).
pub(crate) fn same_type(a: &str, b: &str) -> bool {
    fn short(t: &str) -> &str {
        match t.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &t[12..],
            _ => t,
        }
    }
    short(a).eq_ignore_ascii_case(short(b))
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3); one of them must be accepted.
fn audience_matches(claims: &Map<String, Value>, accept: impl Fn(&str) -> bool) -> bool {
    match claims.get("aud") {
        Some(Value::String(aud)) => accept(aud),
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str().is_some_and(&accept)),
        _ => false,
    }
}

/// The checks that depend on the moment and the connection.
fn accept(
    verified: &Verified,
    now: u64,
    leeway: u64,
    extensions: &Extensions,
) -> Result<Verdict, Rejection> {
    check_time(verified.exp, verified.nbf, now, leeway)?;
    if let Some(bound) = verified.bound_to
        && presented_certificate(extensions) != Some(bound)
    {
        verified.principal.refused_after_proof(extensions);
        return Err(invalid(
            "jwt.certificate_mismatch",
            "Token is bound to another client certificate",
        ));
    }
    Ok(Verdict::Verified(
        verified.principal.clone(),
        verified.claims.clone(),
    ))
}

/// The token of `Authorization: Bearer <token>`; `None` when there is no such header or it
/// carries another scheme. The scheme is case-insensitive (RFC 7235).
fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, Rejection> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid("jwt.malformed", "Malformed authorization header"));
    }
    let value = value
        .to_str()
        .map_err(|_| invalid("jwt.malformed", "Malformed authorization header"))?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = rest.trim_matches(' ');
    if token.is_empty() {
        return Err(invalid("jwt.malformed", "Malformed token"));
    }
    Ok(Some(token))
}

/// The key for a token: by `kid` when it names one, else the static key of its algorithm.
/// `Ok(None)` when a key set may learn the key on refresh. Whatever the header says, the
/// chosen key's own algorithm is the only one `decode` will accept.
fn choose_key(
    settings: &Settings,
    kid: Option<&str>,
    algorithm: Algorithm,
) -> Result<Option<JwtKey>, Rejection> {
    let unknown = || invalid("jwt.unknown_key", "Unknown signing key");
    match kid {
        Some(kid) if kid.len() > MAX_KID_LEN => Err(unknown()),
        Some(kid) => {
            if let Some(key) = settings.keys.iter().find(|k| k.kid() == Some(kid)) {
                return Ok(Some(key.clone()));
            }
            #[cfg(feature = "jwks")]
            if let Some(jwks) = &settings.jwks {
                return Ok(jwks.key(kid));
            }
            Err(unknown())
        }
        None => settings
            .keys
            .iter()
            .find(|k| k.algorithm() == algorithm)
            .or_else(|| settings.keys.first())
            .cloned()
            .map(Some)
            .ok_or_else(unknown),
    }
}

/// The claims of a token whose signature `key` verifies.
fn verified_claims(
    key: &JwtKey,
    header_alg: jsonwebtoken::Algorithm,
    token: &str,
) -> Result<Map<String, Value>, Rejection> {
    let payload = verified_payload(key, header_alg, token)?;
    serde_json::from_slice(&payload).map_err(|_| invalid("jwt.malformed", "Malformed token"))
}

/// The payload of a compact JWS whose signature `key` verifies, with `key`'s algorithm: the
/// one the header names (`header_alg`) must be it, so `none` and an RSA public key used as an
/// HMAC secret fail here. Every token, and every test vector, goes through this one function.
pub(super) fn verified_payload(
    key: &JwtKey,
    header_alg: jsonwebtoken::Algorithm,
    token: &str,
) -> Result<Vec<u8>, Rejection> {
    let algorithm = key.algorithm().to_jsonwebtoken();
    if header_alg != algorithm {
        return Err(invalid(
            "jwt.algorithm_not_allowed",
            "Token algorithm not allowed",
        ));
    }
    let malformed = || invalid("jwt.malformed", "Malformed token");
    let (message, signature) = token.rsplit_once('.').ok_or_else(malformed)?;
    let payload = match message.split_once('.') {
        Some((_, payload)) if !payload.contains('.') => payload,
        _ => return Err(malformed()),
    };
    match jsonwebtoken::crypto::verify(signature, message.as_bytes(), key.decoding_key(), algorithm)
    {
        Ok(true) => {}
        Err(e) if matches!(e.kind(), ErrorKind::Base64(_)) => return Err(malformed()),
        Ok(false) | Err(_) => {
            return Err(invalid("jwt.invalid_signature", "Invalid token signature"));
        }
    }
    URL_SAFE_NO_PAD.decode(payload).map_err(|_| malformed())
}

/// `exp` (required) and `nbf`: NumericDates, seconds, possibly fractional.
fn time_claims(claims: &Map<String, Value>) -> Result<(u64, Option<u64>), Rejection> {
    let seconds = |name: &str| -> Result<Option<u64>, Rejection> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                .map(Some)
                .ok_or_else(|| invalid("jwt.malformed", "Malformed token")),
        }
    };
    let exp = seconds("exp")?.ok_or_else(missing_claim)?;
    Ok((exp, seconds("nbf")?))
}

fn check_time(exp: u64, nbf: Option<u64>, now: u64, leeway: u64) -> Result<(), Rejection> {
    if now > exp.saturating_add(leeway) {
        return Err(invalid("jwt.expired", "Token expired"));
    }
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(invalid("jwt.not_yet_valid", "Token not yet valid"));
    }
    Ok(())
}

/// RFC 8705 §3: a token whose `cnf` claim carries `x5t#S256` is bound to a client certificate
/// and is accepted only on a connection that presented that very certificate. A `cnf` this
/// layer cannot check (another confirmation method, such as DPoP's `jkt`) fails closed.
fn confirmation(claims: &Map<String, Value>) -> Result<Option<[u8; 32]>, Rejection> {
    let Some(cnf) = claims.get("cnf") else {
        return Ok(None);
    };
    let Some(Value::String(thumbprint)) = cnf.get("x5t#S256") else {
        return Err(invalid(
            "jwt.unsupported_confirmation",
            "Token confirmation method not supported",
        ));
    };
    let mut bound = [0u8; 32];
    match URL_SAFE_NO_PAD.decode_slice(thumbprint.trim_end_matches('='), &mut bound) {
        Ok(32) => Ok(Some(bound)),
        _ => Err(invalid("jwt.malformed", "Malformed token")),
    }
}

/// The SHA-256 thumbprint of the connection's client certificate, when there is one.
fn presented_certificate(extensions: &Extensions) -> Option<[u8; 32]> {
    #[cfg(feature = "mtls")]
    if let Some(peer) = extensions.get::<std::sync::Arc<crate::peer::PeerIdentity>>() {
        return Some(*peer.fingerprint_sha256());
    }
    let _ = extensions;
    None
}

fn missing_claim() -> Rejection {
    invalid("jwt.missing_claim", "Token is missing a required claim")
}

/// A present but unacceptable token: 401 with the RFC 6750 `invalid_token` challenge.
fn invalid(code: &'static str, message: &'static str) -> Rejection {
    Rejection::by(Origin::Jwt, RejectionKind::Unauthenticated, code, message)
        .with_challenge(r#"Bearer error="invalid_token""#)
}

/// After a refresh the key is still unknown: the token's fault, unless no key set has ever
/// loaded, in which case nothing could be verified and the layer fails closed with 503.
pub(crate) fn key_not_found(settings: &Settings) -> Rejection {
    #[cfg(feature = "jwks")]
    if settings.jwks.as_ref().is_some_and(|jwks| !jwks.is_loaded()) {
        return Rejection::by(
            Origin::Jwt,
            RejectionKind::Unavailable,
            "jwt.keys_unavailable",
            "Signing keys unavailable",
        );
    }
    let _ = settings;
    invalid("jwt.unknown_key", "Unknown signing key")
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn token_of(value: &str) -> Result<Option<String>, &'static str> {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        bearer_token(&headers)
            .map(|t| t.map(str::to_owned))
            .map_err(|r| r.code())
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_other_schemes_are_not_ours() {
        assert_eq!(token_of("Bearer abc"), Ok(Some("abc".into())));
        assert_eq!(token_of("bearer abc"), Ok(Some("abc".into())));
        assert_eq!(token_of("BEARER  abc "), Ok(Some("abc".into())));
        assert_eq!(token_of("Basic dXNlcjpwYXNz"), Ok(None));
        assert_eq!(token_of("Bearer"), Err("jwt.malformed"));
        assert_eq!(token_of("Bearer   "), Err("jwt.malformed"));
    }

    fn claims(v: serde_json::Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn time_claims_with_leeway() {
        let check = |v: serde_json::Value, now: u64, leeway: u64| {
            let (exp, nbf) = time_claims(&claims(v)).map_err(|r| r.code())?;
            check_time(exp, nbf, now, leeway).map_err(|r| r.code())
        };
        let now = 1_000;
        assert_eq!(check(serde_json::json!({"exp": 1_000}), now, 0), Ok(()));
        assert_eq!(
            check(serde_json::json!({"exp": 999}), now, 0),
            Err("jwt.expired")
        );
        assert_eq!(check(serde_json::json!({"exp": 990}), now, 10), Ok(()));
        assert_eq!(check(serde_json::json!({"exp": 1_500.5}), now, 0), Ok(()));
        assert_eq!(
            check(serde_json::json!({"exp": "2000"}), now, 0),
            Err("jwt.malformed")
        );
        assert_eq!(
            check(serde_json::json!({}), now, 0),
            Err("jwt.missing_claim")
        );
        let future = serde_json::json!({"exp": 2_000, "nbf": 1_011});
        assert_eq!(check(future.clone(), now, 10), Err("jwt.not_yet_valid"));
        assert_eq!(check(future, now, 11), Ok(()));
    }

    #[test]
    fn confirmation_claims_fail_closed() {
        let code = |v: serde_json::Value| confirmation(&claims(v)).map_err(|r| r.code());
        assert_eq!(code(serde_json::json!({})), Ok(None));
        assert_eq!(
            code(
                serde_json::json!({"cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}})
            ),
            Err("jwt.unsupported_confirmation")
        );
        assert_eq!(
            code(serde_json::json!({"cnf": "x"})),
            Err("jwt.unsupported_confirmation")
        );
        assert_eq!(
            code(serde_json::json!({"cnf": {"x5t#S256": "not base64!"}})),
            Err("jwt.malformed")
        );
        assert_eq!(
            code(serde_json::json!({"cnf": {"x5t#S256": "c2hvcnQ"}})),
            Err("jwt.malformed")
        );
        // Well formed, but no certificate on this connection.
        let bound = code(
            serde_json::json!({"cnf": {"x5t#S256": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}),
        )
        .unwrap();
        assert!(bound.is_some());
        let verified = Verified::new(
            Principal::new("svc", AuthMethod::Jwt),
            Claims::new(Map::new()),
            (u64::MAX, None),
            bound,
            0,
        );
        assert_eq!(
            accept(&verified, 0, 0, &Extensions::new())
                .map(|_| ())
                .map_err(|r| r.code()),
            Err("jwt.certificate_mismatch")
        );
    }
}
