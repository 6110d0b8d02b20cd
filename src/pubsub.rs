//! Redis pub/sub whose messages prove their sender: each message travels in an envelope signed
//! with the HMAC scheme of [`hmac`](crate::hmac) (sender id, timestamp, nonce, signature over
//! the channel and the payload's SHA-256), and a subscriber delivers only messages whose
//! signature, freshness (±30 s) and nonce (never seen before, in a [`NonceStore`]) check out,
//! with the sender's [`Principal`]. Anything else — unsigned, tampered, stale, replayed, from a
//! sender not allowed, not an envelope at all — is dropped, counted and logged with its reason,
//! and never delivered.
//!
//! The envelope is JSON: `{"sender","timestamp","nonce","signature","payload"}`, the payload in
//! standard base64.
//!
//! ```no_run
//! use tower_zerotrust::hmac::HmacConfig;
//! use tower_zerotrust::nonce::RedisNonceStore;
//! use tower_zerotrust::pubsub::{SignedPublisher, SignedSubscription};
//! use tower_zerotrust::redis::RedisConnection;
//! use tower_zerotrust::sign::HmacSigner;
//!
//! # #[tokio::main] async fn main() -> Result<(), tower_zerotrust::BoxError> {
//! let secret = "a-shared-secret-of-at-least-32-bytes!!";
//! let url = "redis://127.0.0.1:6379/";
//! let redis = RedisConnection::open(url)?;
//!
//! let verifier = HmacConfig::builder().secret(secret).allow_callers(["router"]).build()?;
//! let mut events =
//!     SignedSubscription::subscribe(url, "model-events", verifier, RedisNonceStore::new(redis.clone()))
//!         .await?;
//!
//! let publisher = SignedPublisher::new(redis, HmacSigner::new("router", secret)?);
//! publisher.publish("model-events", br#"{"model":"gpt-4","state":"ready"}"#).await?;
//!
//! if let Some(message) = events.next().await {
//!     println!("{} says {:?}", message.sender.id(), message.payload);
//! }
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::BoxError;
use crate::hmac::{HmacConfig, NONCE, SERVICE_ID, SIGNATURE, TIMESTAMP, Verdict, verify};
use crate::nonce::{NonceError, NonceStore};
use crate::principal::{AuthMethod, Principal};
use crate::redis::RedisConnection;
use crate::sign::HmacSigner;

/// What the signature covers in place of an HTTP method.
const METHOD: &str = "PUBLISH";
/// The largest envelope a subscriber reads; larger messages are dropped unread.
const MAX_ENVELOPE: usize = 1024 * 1024;

#[derive(Serialize, Deserialize)]
struct Envelope {
    sender: String,
    timestamp: String,
    nonce: String,
    signature: String,
    payload: String,
}

/// What the signature covers besides sender, timestamp and nonce: the channel, so a message
/// cannot be replayed onto another channel, and the payload's digest.
fn signed_path(channel: &str, payload: &[u8]) -> String {
    format!("{channel}/{}", hex::encode(Sha256::digest(payload)))
}

/// Publishes messages signed as this service.
#[derive(Debug, Clone)]
pub struct SignedPublisher {
    redis: RedisConnection,
    signer: HmacSigner,
}

impl SignedPublisher {
    /// Publishes on `redis`, signing with `signer`.
    pub fn new(redis: RedisConnection, signer: HmacSigner) -> Self {
        Self { redis, signer }
    }

    /// Signs `payload` for `channel` and publishes it; returns how many subscribers got it.
    ///
    /// # Errors
    ///
    /// Redis failed or did not answer in time.
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> Result<usize, BoxError> {
        let headers = self.signer.sign(METHOD, &signed_path(channel, payload));
        let envelope = serde_json::to_string(&Envelope {
            sender: headers.service_id().to_owned(),
            timestamp: headers.timestamp().to_owned(),
            nonce: headers.nonce().to_owned(),
            signature: headers.signature().to_owned(),
            payload: STANDARD.encode(payload),
        })?;
        let channel = channel.to_owned();
        self.redis
            .run(move |mut redis| async move {
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(envelope)
                    .query_async::<usize>(&mut redis)
                    .await
            })
            .await
    }
}

/// A verified message.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SignedMessage {
    /// Who signed it.
    pub sender: Principal,
    /// The channel it came on.
    pub channel: String,
    /// What was published.
    pub payload: Vec<u8>,
}

/// A subscription that yields only verified messages.
pub struct SignedSubscription<N> {
    messages: redis::aio::PubSubStream,
    config: HmacConfig,
    nonces: N,
    dropped: Arc<AtomicU64>,
}

impl<N: NonceStore> SignedSubscription<N> {
    /// Subscribes to `channel` on its own connection to `url`. Messages are verified with
    /// `config` (secrets, allowed senders, window) and their nonces recorded in `nonces` — a
    /// store shared by every subscriber that must not accept a message twice (a
    /// [`RedisNonceStore`](crate::nonce::RedisNonceStore) across replicas).
    ///
    /// # Errors
    ///
    /// The URL is unusable or Redis cannot be reached.
    pub async fn subscribe(
        url: &str,
        channel: &str,
        config: HmacConfig,
        nonces: N,
    ) -> Result<Self, BoxError> {
        let mut pubsub = redis::Client::open(url)?.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok(Self {
            messages: pubsub.into_on_message(),
            config,
            nonces,
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The next verified message; `None` when the connection ends. Messages that fail a check
    /// are dropped here, counted in [`dropped`](Self::dropped) and logged with the reason.
    pub async fn next(&mut self) -> Option<SignedMessage> {
        loop {
            let message = self.messages.next().await?;
            let channel = message.get_channel_name().to_owned();
            match self.check(&channel, message.get_payload_bytes()).await {
                Ok((sender, payload)) => {
                    return Some(SignedMessage {
                        sender,
                        channel,
                        payload,
                    });
                }
                Err(reason) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(target: "tower_zerotrust::pubsub", channel, reason, "message dropped");
                }
            }
        }
    }

    /// How many messages were dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The sender and payload of a good envelope, or the reason code of a bad one.
    async fn check(&self, channel: &str, raw: &[u8]) -> Result<(Principal, Vec<u8>), &'static str> {
        if raw.len() > MAX_ENVELOPE {
            return Err("pubsub.too_large");
        }
        let envelope: Envelope =
            serde_json::from_slice(raw).map_err(|_| "pubsub.not_an_envelope")?;
        let payload = STANDARD
            .decode(&envelope.payload)
            .map_err(|_| "pubsub.not_an_envelope")?;
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
        let settings = &self.config.inner;
        let path = signed_path(channel, &payload);
        let now = settings.clock.now_millis();
        let (id, nonce) = match verify(settings, now, METHOD, &path, &headers) {
            Ok(Verdict::Caller { id, nonce }) => (id, nonce),
            // An optional verifier lets unsigned requests through; never unsigned messages.
            Ok(Verdict::Anonymous) => return Err("hmac.missing_headers"),
            Err(rejection) => return Err(rejection.code()),
        };
        match self
            .nonces
            .check_and_record(id, nonce, settings.nonce_ttl)
            .await
        {
            Ok(()) => Ok((Principal::new(id, AuthMethod::Hmac), payload)),
            Err(NonceError::Replayed) => Err("hmac.replayed"),
            Err(_) => Err("nonce.store_unavailable"),
        }
    }
}

impl<N> std::fmt::Debug for SignedSubscription<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedSubscription")
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
