//! Envelopes carrying a JWT: `{"token","payload"}`. The token is minted for the one message
//! (its own `jti`, a lifetime of at most [`LIFETIME`]), typed as a message token, addressed to
//! the audience scoped to the channel, and names the `payload_sha256`: it proves who sent this
//! payload on this channel, and nothing else. It is no access token: HTTP and gRPC verifiers
//! refuse it, and this verifier refuses access tokens.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{NOT_AN_ENVELOPE, Opened, decode_payload, encode_payload, payload_digest};
use crate::BoxError;
use crate::jwt::{JwtConfig, Verdict, authenticate_message, key_not_found, refresh_future};
use crate::sign::TokenIssuer;

/// How long a message token is valid after it is minted.
const LIFETIME: Duration = Duration::from_secs(60);
/// How far a message's `iat` may be from the subscriber's clock, before leeway: the window of
/// the HMAC scheme.
const WINDOW_SECS: u64 = 30;
const DIGEST: &str = "payload_sha256";

#[derive(Serialize, Deserialize)]
struct Envelope {
    token: String,
    payload: String,
}

/// Who a JWT publisher says it is.
#[derive(Debug, Clone)]
pub(super) struct JwtSender {
    pub(super) issuer: TokenIssuer,
    pub(super) id: String,
    pub(super) roles: Vec<String>,
}

pub(super) fn seal(sender: &JwtSender, channel: &str, payload: &[u8]) -> Result<String, BoxError> {
    let mut claims = Map::new();
    claims.insert(DIGEST.into(), payload_digest(payload).into());
    let token = sender
        .issuer
        .mint_message(&sender.id, &sender.roles, channel, LIFETIME, claims)?;
    Ok(serde_json::to_string(&Envelope {
        token,
        payload: encode_payload(payload),
    })?)
}

pub(super) async fn open(
    config: &JwtConfig,
    channel: &str,
    raw: &[u8],
) -> Result<Opened, &'static str> {
    let envelope: Envelope = serde_json::from_slice(raw).map_err(|_| NOT_AN_ENVELOPE)?;
    let payload = decode_payload(&envelope.payload)?;
    let settings = &config.inner;
    let mut verdict = authenticate_message(settings, &envelope.token, channel);
    if matches!(verdict, Ok(Verdict::UnknownKey)) {
        // A key set may have gained the key since it was fetched.
        refresh_future(config).await;
        verdict = authenticate_message(settings, &envelope.token, channel);
    }
    let (sender, claims) = match verdict.map_err(|rejection| rejection.code())? {
        Verdict::Verified(sender, claims) => (sender, claims),
        Verdict::UnknownKey | Verdict::Anonymous | Verdict::Public => {
            return Err(key_not_found(settings).code());
        }
    };
    if claims.value(DIGEST).and_then(Value::as_str) != Some(payload_digest(&payload).as_str()) {
        return Err("pubsub.payload_mismatch");
    }
    let (Some(issued), Some(nonce)) = (
        claims.get::<u64>("iat"),
        claims.value("jti").and_then(Value::as_str),
    ) else {
        return Err("jwt.missing_claim");
    };
    let now = settings.clock.now_millis() / 1000;
    let window = WINDOW_SECS + settings.leeway_secs;
    if now.abs_diff(issued) > window {
        return Err("pubsub.stale");
    }
    Ok(Opened {
        nonce: nonce.to_owned(),
        // Remembered for as long as the message could still be accepted, by this subscriber
        // or another whose clock lags.
        nonce_ttl: Duration::from_secs(2 * window) + super::MAX_CLOCK_SKEW,
        sender,
        payload,
    })
}
