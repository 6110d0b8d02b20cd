//! The synchronous checks, in order: cheap ones, then the signature, then the caller list.
//! The nonce is recorded afterwards, by the service, only for requests that pass all of them.

use hmac::Mac;
use http::{HeaderMap, HeaderName, Request};

use super::canonical::{Fields, MAX_TIMESTAMP_LEN, SIGNATURE_PREFIX, is_valid_field};
use super::config::Settings;
use super::{NONCE, SERVICE_ID, SIGNATURE, TIMESTAMP};
use crate::nonce::NonceError;
use crate::reject::{Origin, Pending, Rejection, RejectionKind};

/// What the checks found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict<'a> {
    /// A public path: nothing to check.
    Public,
    /// No HMAC header at all, in optional mode.
    Anonymous,
    /// A verified, allowed caller; its nonce is still to be recorded.
    Caller { id: &'a str, nonce: &'a str },
}

pub(crate) fn verify<'a>(
    settings: &Settings,
    now_millis: u64,
    method: &str,
    path: &str,
    headers: &'a HeaderMap,
) -> Result<Verdict<'a>, Rejection> {
    if settings.public_paths.contains(path) {
        return Ok(Verdict::Public);
    }
    let [service_id, timestamp, nonce, signature] = signed_headers(headers)?;
    let (service_id, timestamp, nonce, signature) = match (service_id, timestamp, nonce, signature)
    {
        (Some(s), Some(t), Some(n), Some(sig)) => (s, t, n, sig),
        (None, None, None, None) if settings.optional => return Ok(Verdict::Anonymous),
        _ => return Err(missing_headers()),
    };
    if !is_valid_field(service_id) || !is_valid_field(nonce) {
        return Err(malformed_headers());
    }
    if !within_window(timestamp, now_millis, settings.window_millis) {
        return Err(timestamp_expired());
    }
    let signature = decode_signature(signature).ok_or_else(invalid_signature)?;
    let fields = Fields {
        service_id,
        timestamp,
        nonce,
        method,
        path,
    };
    // Constant-time comparison inside `verify_slice`; trying each valid key is what lets a
    // secret rotate. Which key matched may leak through timing, never the key itself.
    let signed = settings.keys.keys_for(service_id).iter().any(|key| {
        let mut mac = key.mac();
        fields.feed(&mut mac);
        mac.verify_slice(&signature).is_ok()
    });
    if !signed {
        return Err(invalid_signature());
    }
    if let Some(allowed) = &settings.allowed_callers
        && !allowed.contains(service_id)
    {
        return Err(caller_not_allowed());
    }
    Ok(Verdict::Caller {
        id: service_id,
        nonce,
    })
}

/// The four signed headers' values as text, in one pass over the request's headers (several
/// times cheaper than four lookups). `None` where absent; an error where repeated (which value
/// was signed?) or not visible ASCII (header values may carry any byte; ours may not).
fn signed_headers(headers: &HeaderMap) -> Result<[Option<&str>; 4], Rejection> {
    const NAMES: [HeaderName; 4] = [SERVICE_ID, TIMESTAMP, NONCE, SIGNATURE];
    let mut found = [None; 4];
    for (name, value) in headers {
        let Some(slot) = NAMES.iter().position(|n| n == name) else {
            continue;
        };
        if found[slot].is_some() {
            return Err(malformed_headers());
        }
        found[slot] = Some(value.to_str().map_err(|_| malformed_headers())?);
    }
    Ok(found)
}

/// Whether `timestamp` (Unix seconds, digits only) is within `window` of now. Compared in
/// milliseconds so that a fractional "now" cannot stretch the window past the nonce TTL.
fn within_window(timestamp: &str, now_millis: u64, window_millis: u64) -> bool {
    if timestamp.is_empty()
        || timestamp.len() > MAX_TIMESTAMP_LEN
        || !timestamp.bytes().all(|b| b.is_ascii_digit())
    {
        return false;
    }
    let Ok(seconds) = timestamp.parse::<u64>() else {
        return false;
    };
    seconds.saturating_mul(1000).abs_diff(now_millis) <= window_millis
}

/// `sha256=<64 lowercase hex digits>` → 32 bytes. Lowercase only, as the scheme specifies and
/// as Python's `hmac.compare_digest` of the header strings enforces. Hand-rolled and branch-free: it runs on every
/// request, and random hex digits defeat a branch predictor.
fn decode_signature(value: &str) -> Option<[u8; 32]> {
    let hex = value.strip_prefix(SIGNATURE_PREFIX)?.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    let mut invalid = 0u8;
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let (high, low) = (HEX[usize::from(pair[0])], HEX[usize::from(pair[1])]);
        invalid |= (high | low) & INVALID;
        *byte = (high << 4) | (low & 0x0f);
    }
    (invalid == 0).then_some(out)
}

const INVALID: u8 = 0x80;

/// Hex digit → value; `INVALID` for anything else.
static HEX: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

fn unauthenticated(code: &'static str, message: &'static str) -> Rejection {
    Rejection::by(Origin::Hmac, RejectionKind::Unauthenticated, code, message)
        .with_challenge("HMAC-SHA256")
}

fn missing_headers() -> Rejection {
    unauthenticated("hmac.missing_headers", "Missing authentication headers")
}

fn malformed_headers() -> Rejection {
    unauthenticated("hmac.malformed_headers", "Malformed authentication headers")
}

fn timestamp_expired() -> Rejection {
    unauthenticated("hmac.timestamp_expired", "Request timestamp expired")
}

fn invalid_signature() -> Rejection {
    unauthenticated("hmac.invalid_signature", "Invalid signature")
}

fn caller_not_allowed() -> Rejection {
    Rejection::by(
        Origin::Hmac,
        RejectionKind::Forbidden,
        "hmac.caller_not_allowed",
        "Service not authorized",
    )
}

/// The refusal for a nonce the store would not record, logged.
pub(crate) fn nonce_refusal<B>(error: &NonceError, caller: &str, request: &Request<B>) -> Pending {
    let rejection = nonce_rejection(error);
    super::log_rejection(&rejection, Some(caller), true, request);
    Pending::new(rejection, request.headers())
}

/// Why a verified request is refused when its nonce cannot be recorded.
pub(crate) fn nonce_rejection(error: &NonceError) -> Rejection {
    match error {
        NonceError::Replayed => unauthenticated("hmac.replayed", "Replayed request"),
        NonceError::Full => store_failed("nonce.store_full"),
        _ => {
            tracing::warn!(target: "tower_zerotrust::hmac", %error, source = ?std::error::Error::source(error), "nonce store unavailable: refusing signed requests");
            store_failed("nonce.store_unavailable")
        }
    }
}

fn store_failed(code: &'static str) -> Rejection {
    Rejection::by(
        Origin::Hmac,
        RejectionKind::Unavailable,
        code,
        "Replay protection unavailable",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_inclusive_and_symmetric() {
        let now = 1_000_000_000;
        assert!(within_window("1000030", now, 30_000));
        assert!(within_window("999970", now, 30_000));
        assert!(!within_window("1000031", now, 30_000));
        assert!(!within_window("999969", now, 30_000));
    }

    #[test]
    fn timestamps_must_be_plain_digits() {
        for bad in [
            "",
            "-5",
            "+5",
            "1.5",
            "1e9",
            " 12",
            "99999999999999999999999",
        ] {
            assert!(!within_window(bad, 0, u64::MAX), "{bad:?}");
        }
    }

    /// Project Wycheproof's HMAC-SHA256 vectors through the signature header's decoder and the
    /// constant-time comparison: full-length tags are judged as the vectors say; truncated tags
    /// (valid for HMAC in general) are refused, since the scheme sends all 32 bytes.
    #[test]
    fn wycheproof_hmac_sha256() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/wycheproof/hmac_sha256_test.json"
        );
        let vectors: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let (mut full, mut truncated) = (0, 0);
        for group in vectors["testGroups"].as_array().unwrap() {
            let full_length = group["tagSize"] == 256;
            for test in group["tests"].as_array().unwrap() {
                let bytes = |k: &str| hex::decode(test[k].as_str().unwrap()).unwrap();
                let header = format!("sha256={}", test["tag"].as_str().unwrap());
                let accepted = decode_signature(&header).is_some_and(|tag| {
                    let mut mac = crate::hmac::canonical::keyed_mac(&bytes("key"));
                    mac.update(&bytes("msg"));
                    mac.verify_slice(&tag).is_ok()
                });
                let expected = full_length && test["result"] == "valid";
                assert_eq!(accepted, expected, "#{} {}", test["tcId"], test["comment"]);
                if full_length {
                    full += 1;
                } else {
                    truncated += 1;
                }
            }
        }
        assert!(
            full > 50 && truncated > 50,
            "{full} full, {truncated} truncated"
        );
    }

    #[test]
    fn signature_format_is_strict() {
        let good = format!("sha256={}", &"0123456789abcdef".repeat(4));
        let decoded = decode_signature(&good).unwrap();
        assert_eq!(hex::encode(decoded), good[7..]);
        for bad in [
            "ab".repeat(32),
            format!("sha1={}", "ab".repeat(32)),
            format!("sha256={}", "ab".repeat(31)),
            format!("sha256={}", "zz".repeat(32)),
            format!("sha256={}0", "ab".repeat(32)),
            format!("sha256={}", "AB".repeat(32)),
        ] {
            assert!(decode_signature(&bad).is_none(), "{bad}");
        }
    }
}
