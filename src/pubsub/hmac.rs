//! Envelopes signed with the HMAC scheme of [`hmac`](crate::hmac):
//! `{"sender","timestamp","nonce","signature","payload"}`. The signature covers `PUBLISH` and
//! `<channel>/<sha256(payload)>` besides sender, timestamp and nonce, so a message can be
//! neither changed nor moved to another channel.

use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

use super::{NOT_AN_ENVELOPE, Opened, decode_payload, encode_payload, payload_digest};
use crate::BoxError;
use crate::hmac::{HmacConfig, NONCE, SERVICE_ID, SIGNATURE, TIMESTAMP, Verdict, verify};
use crate::principal::{AuthMethod, Principal};
use crate::sign::HmacSigner;

/// What the signature covers in place of an HTTP method.
const METHOD: &str = "PUBLISH";

#[derive(Serialize, Deserialize)]
struct Envelope {
    sender: String,
    timestamp: String,
    nonce: String,
    signature: String,
    payload: String,
}

fn signed_path(channel: &str, payload: &[u8]) -> String {
    format!("{channel}/{}", payload_digest(payload))
}

pub(super) fn seal(signer: &HmacSigner, channel: &str, payload: &[u8]) -> Result<String, BoxError> {
    let headers = signer.sign(METHOD, &signed_path(channel, payload));
    Ok(serde_json::to_string(&Envelope {
        sender: headers.service_id().to_owned(),
        timestamp: headers.timestamp().to_owned(),
        nonce: headers.nonce().to_owned(),
        signature: headers.signature().to_owned(),
        payload: encode_payload(payload),
    })?)
}

pub(super) fn open(config: &HmacConfig, channel: &str, raw: &[u8]) -> Result<Opened, &'static str> {
    let envelope: Envelope = serde_json::from_slice(raw).map_err(|_| NOT_AN_ENVELOPE)?;
    let payload = decode_payload(&envelope.payload)?;
    let mut headers = HeaderMap::with_capacity(4);
    for (name, value) in [
        (SERVICE_ID, &envelope.sender),
        (TIMESTAMP, &envelope.timestamp),
        (NONCE, &envelope.nonce),
        (SIGNATURE, &envelope.signature),
    ] {
        let value = HeaderValue::from_str(value).map_err(|_| "hmac.malformed_headers")?;
        headers.insert(name, value);
    }
    let settings = &config.inner;
    let now = settings.clock.now_millis();
    match verify(
        settings,
        now,
        METHOD,
        &signed_path(channel, &payload),
        &headers,
    ) {
        Ok(Verdict::Caller { id, nonce }) => Ok(Opened {
            sender: Principal::new(id, AuthMethod::Hmac),
            nonce: nonce.to_owned(),
            nonce_ttl: settings.nonce_ttl,
            payload,
        }),
        // An optional verifier lets unsigned requests through; never unsigned messages.
        Ok(Verdict::Anonymous | Verdict::Public) => Err("hmac.missing_headers"),
        Err(rejection) => Err(rejection.code()),
    }
}
