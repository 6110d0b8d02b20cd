//! Redis pub/sub whose messages prove their sender. Each message travels in an envelope signed
//! as its publisher — with the HMAC scheme of [`hmac`](crate::hmac), or with a JWT minted for
//! that one message — naming the sender, the moment, a nonce, the channel and the payload's
//! SHA-256. A subscriber delivers only messages whose signature, freshness (±30 s) and nonce
//! (never seen before, in a [`NonceStore`]) check out, with the sender's [`Principal`]. Anything
//! else — unsigned, tampered, stale, replayed, moved to another channel, from a sender not
//! allowed, not an envelope at all — is dropped, counted and logged with its reason code, and
//! never delivered.
//!
//! Envelopes are JSON with the payload in standard base64: `{"sender","timestamp","nonce",
//! "signature","payload"}` for HMAC, `{"token","payload"}` for JWT (the token's `sub`, `roles`,
//! `iat`, `jti`, `channel` and `payload_sha256` claims).
//!
//! A subscription outlives Redis restarts: when its connection drops it subscribes again, with
//! backoff, by itself. Redis pub/sub delivers at most once: what is published while no
//! connection is up is lost.
//!
//! With HMAC (allowed senders are checked by the verifier):
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
//! let message = events.next().await;
//! println!("{} says {:?}", message.sender.id(), message.payload);
//! # Ok(()) }
//! ```
//!
//! With JWTs, as a `SecureRedisClientBuilder::with_jwt(authenticator, "router_core",
//! roles)` (the sender's roles travel in the token; check them on the received
//! [`Principal`]):
//!
//! ```no_run
//! # #[cfg(feature = "jwt")]
//! # #[tokio::main] async fn main() -> Result<(), tower_zerotrust::BoxError> {
//! use tower_zerotrust::jwt::{Algorithm, JwtConfig, JwtKey};
//! use tower_zerotrust::nonce::RedisNonceStore;
//! use tower_zerotrust::pubsub::{MessageSigner, SignedPublisher, SignedSubscription};
//! use tower_zerotrust::redis::RedisConnection;
//! use tower_zerotrust::sign::TokenIssuer;
//!
//! let secret = "your-secret-key-of-at-least-32-bytes";
//! let url = "redis://127.0.0.1:6379/";
//! let redis = RedisConnection::open(url)?;
//!
//! let verifier = JwtConfig::builder()
//!     .key(JwtKey::hmac(Algorithm::HS256, secret)?)
//!     .issuer("intellirouter")
//!     .audience("intellirouter-services")
//!     .build()?;
//! let mut events =
//!     SignedSubscription::subscribe(url, "routes", verifier, RedisNonceStore::new(redis.clone()))
//!         .await?;
//!
//! let issuer =
//!     TokenIssuer::hmac(Algorithm::HS256, secret, "intellirouter", "intellirouter-services")?;
//! let publisher =
//!     SignedPublisher::new(redis, MessageSigner::jwt(issuer, "router_core", ["route_requests"]));
//! publisher.publish("routes", b"message").await?;
//!
//! let message = events.next().await;
//! assert!(message.sender.has_role("route_requests"));
//! # Ok(()) }
//! # #[cfg(not(feature = "jwt"))] fn main() {}
//! ```

mod hmac;
#[cfg(feature = "jwt")]
mod jwt;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};

use crate::BoxError;
use crate::hmac::HmacConfig;
use crate::nonce::{NonceError, NonceStore};
use crate::principal::Principal;
use crate::redis::{RedisConnection, Target};
use crate::sign::HmacSigner;

/// The largest envelope a subscriber reads; larger messages are dropped unread.
const MAX_ENVELOPE: usize = 1024 * 1024;
const NOT_AN_ENVELOPE: &str = "pubsub.not_an_envelope";
/// Each attempt to subscribe again gives up after this long.
const RESUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);
/// How far apart subscribers' clocks may be: a message token's nonce is kept this much longer.
#[cfg(feature = "jwt")]
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5);

/// How a publisher signs its messages: made from an [`HmacSigner`], or with
/// [`MessageSigner::jwt`].
#[derive(Debug, Clone)]
pub struct MessageSigner(Signer);

#[derive(Debug, Clone)]
enum Signer {
    Hmac(HmacSigner),
    // Boxed: a token issuer holds its encoding key inline.
    #[cfg(feature = "jwt")]
    Jwt(Box<jwt::JwtSender>),
}

impl MessageSigner {
    /// Each message carries a token minted by `issuer` for `sender` with `roles`, valid for
    /// that message only (its own `jti`, at most 60 s).
    #[cfg(feature = "jwt")]
    pub fn jwt<R: Into<String>>(
        issuer: crate::sign::TokenIssuer,
        sender: impl Into<String>,
        roles: impl IntoIterator<Item = R>,
    ) -> Self {
        Self(Signer::Jwt(Box::new(jwt::JwtSender {
            issuer,
            id: sender.into(),
            roles: roles.into_iter().map(Into::into).collect(),
        })))
    }

    fn seal(&self, channel: &str, payload: &[u8]) -> Result<String, BoxError> {
        match &self.0 {
            Signer::Hmac(signer) => hmac::seal(signer, channel, payload),
            #[cfg(feature = "jwt")]
            Signer::Jwt(sender) => jwt::seal(sender, channel, payload),
        }
    }
}

impl From<HmacSigner> for MessageSigner {
    fn from(signer: HmacSigner) -> Self {
        Self(Signer::Hmac(signer))
    }
}

/// How a subscriber checks messages: made from an [`HmacConfig`] (secrets, allowed senders,
/// window) or a [`JwtConfig`](crate::jwt::JwtConfig) (keys, issuer, audience, leeway).
#[derive(Debug, Clone)]
pub struct MessageVerifier(Verifier);

#[derive(Debug, Clone)]
enum Verifier {
    Hmac(HmacConfig),
    #[cfg(feature = "jwt")]
    Jwt(crate::jwt::JwtConfig),
}

impl MessageVerifier {
    async fn open(&self, channel: &str, raw: &[u8]) -> Result<Opened, &'static str> {
        if raw.len() > MAX_ENVELOPE {
            return Err("pubsub.too_large");
        }
        match &self.0 {
            Verifier::Hmac(config) => hmac::open(config, channel, raw),
            #[cfg(feature = "jwt")]
            Verifier::Jwt(config) => jwt::open(config, channel, raw).await,
        }
    }
}

impl From<HmacConfig> for MessageVerifier {
    fn from(config: HmacConfig) -> Self {
        Self(Verifier::Hmac(config))
    }
}

#[cfg(feature = "jwt")]
impl From<crate::jwt::JwtConfig> for MessageVerifier {
    fn from(config: crate::jwt::JwtConfig) -> Self {
        Self(Verifier::Jwt(config))
    }
}

/// A verified envelope whose nonce is still to be recorded.
struct Opened {
    sender: Principal,
    nonce: String,
    nonce_ttl: Duration,
    payload: Vec<u8>,
}

/// What both envelopes sign in place of the payload.
fn payload_digest(payload: &[u8]) -> String {
    hex::encode(Sha256::digest(payload))
}

fn encode_payload(payload: &[u8]) -> String {
    STANDARD.encode(payload)
}

fn decode_payload(encoded: &str) -> Result<Vec<u8>, &'static str> {
    STANDARD.decode(encoded).map_err(|_| NOT_AN_ENVELOPE)
}

/// Publishes messages signed as this service.
#[derive(Debug, Clone)]
pub struct SignedPublisher {
    redis: RedisConnection,
    signer: MessageSigner,
}

impl SignedPublisher {
    /// Publishes on `redis`, signing with `signer` (an [`HmacSigner`] or a
    /// [`MessageSigner`]).
    pub fn new(redis: RedisConnection, signer: impl Into<MessageSigner>) -> Self {
        Self {
            redis,
            signer: signer.into(),
        }
    }

    /// Signs `payload` for `channel` and publishes it; returns how many subscribers got it.
    ///
    /// # Errors
    ///
    /// Signing failed, or Redis failed or did not answer in time.
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> Result<usize, BoxError> {
        let envelope = self.signer.seal(channel, payload)?;
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
    /// Who signed it, with the roles its token carried (JWT).
    pub sender: Principal,
    /// The channel it came on.
    pub channel: String,
    /// What was published.
    pub payload: Vec<u8>,
}

/// A subscription that yields only verified messages, and subscribes again by itself when its
/// connection drops.
pub struct SignedSubscription<N> {
    source: Source,
    channel: String,
    messages: redis::aio::PubSubStream,
    verifier: MessageVerifier,
    nonces: N,
    dropped: Arc<AtomicU64>,
}

impl<N: NonceStore> SignedSubscription<N> {
    /// Subscribes to `channel` on its own connection to `url` (any URL
    /// [`RedisConnection::open`] takes: on a Redis Cluster, classic `SUBSCRIBE` on one of the
    /// nodes, since a `PUBLISH` reaches them all; behind Sentinels, the primary they name,
    /// found again when the subscription is lost). Messages are checked by
    /// `verifier` (an [`HmacConfig`] or a [`JwtConfig`](crate::jwt::JwtConfig)) and their
    /// nonces recorded in `nonces` — a store shared by every subscriber that must not accept a
    /// message twice (a [`RedisNonceStore`](crate::nonce::RedisNonceStore) across replicas).
    ///
    /// # Errors
    ///
    /// The URL is unusable or Redis cannot be reached.
    pub async fn subscribe(
        url: &str,
        channel: &str,
        verifier: impl Into<MessageVerifier>,
        nonces: N,
    ) -> Result<Self, BoxError> {
        let source = Source::of(url)?;
        let messages = source.connect(channel).await?;
        Ok(Self {
            source,
            channel: channel.to_owned(),
            messages,
            verifier: verifier.into(),
            nonces,
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The next verified message. Messages that fail a check are dropped here, counted in
    /// [`dropped`](Self::dropped) and logged with the reason; while Redis is unreachable this
    /// waits, subscribing again with backoff.
    pub async fn next(&mut self) -> SignedMessage {
        loop {
            let Some(message) = self.messages.next().await else {
                self.resubscribe().await;
                continue;
            };
            let channel = message.get_channel_name().to_owned();
            match self.check(&channel, message.get_payload_bytes()).await {
                Ok((sender, payload)) => {
                    return SignedMessage {
                        sender,
                        channel,
                        payload,
                    };
                }
                Err(reason) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(target: "tower_zerotrust::pubsub", channel, reason, "message dropped");
                }
            }
        }
    }

    /// The verified messages as a [`Stream`] (it never ends; drop it to unsubscribe).
    pub fn into_stream(self) -> impl Stream<Item = SignedMessage> + Send
    where
        N: Send,
    {
        futures_util::stream::unfold(self, |mut subscription| async move {
            let message = subscription.next().await;
            Some((message, subscription))
        })
    }

    /// How many messages were dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The sender and payload of a good, unreplayed envelope, or the reason code of a bad one.
    async fn check(&self, channel: &str, raw: &[u8]) -> Result<(Principal, Vec<u8>), &'static str> {
        let opened = self.verifier.open(channel, raw).await?;
        match self
            .nonces
            .check_and_record(opened.sender.id(), &opened.nonce, opened.nonce_ttl)
            .await
        {
            Ok(()) => Ok((opened.sender, opened.payload)),
            Err(NonceError::Replayed) => Err("pubsub.replayed"),
            Err(_) => Err("nonce.store_unavailable"),
        }
    }

    async fn resubscribe(&mut self) {
        tracing::warn!(target: "tower_zerotrust::pubsub", channel = self.channel, "subscription lost; subscribing again");
        let mut delay = FIRST_RETRY;
        loop {
            tokio::time::sleep(delay).await;
            match tokio::time::timeout(RESUBSCRIBE_TIMEOUT, self.source.connect(&self.channel))
                .await
            {
                Ok(Ok(messages)) => {
                    self.messages = messages;
                    tracing::info!(target: "tower_zerotrust::pubsub", channel = self.channel, "subscribed again");
                    return;
                }
                Ok(Err(error)) => {
                    tracing::debug!(target: "tower_zerotrust::pubsub", %error, "subscribing again failed");
                }
                Err(_) => {
                    tracing::debug!(target: "tower_zerotrust::pubsub", "subscribing again timed out");
                }
            }
            delay = (delay * 2).min(LAST_RETRY);
        }
    }
}

/// Where a subscription listens. Classic `SUBSCRIBE`: on a Redis Cluster a `PUBLISH` reaches
/// every node, so any one node will do (the nodes given are tried in turn); behind Sentinels, the
/// primary they name at each (re)subscription.
enum Source {
    Nodes(Vec<redis::Client>),
    Sentinel(Box<tokio::sync::Mutex<redis::sentinel::SentinelClient>>),
}

impl Source {
    fn of(url: &str) -> Result<Self, BoxError> {
        Ok(match Target::of(url)? {
            Target::Node(url) => Self::Nodes(vec![redis::Client::open(url)?]),
            Target::Cluster(nodes) => Self::Nodes(
                nodes
                    .into_iter()
                    .map(redis::Client::open)
                    .collect::<Result<_, _>>()?,
            ),
            Target::Sentinel(sentinels, service) => Self::Sentinel(Box::new(
                tokio::sync::Mutex::new(crate::redis::sentinel_client(&sentinels, &service)?),
            )),
        })
    }

    async fn connect(&self, channel: &str) -> Result<redis::aio::PubSubStream, redis::RedisError> {
        let subscribe = |client: redis::Client| async move {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, redis::RedisError>(pubsub.into_on_message())
        };
        match self {
            Self::Nodes(clients) => {
                let mut last = None;
                for client in clients {
                    match subscribe(client.clone()).await {
                        Ok(messages) => return Ok(messages),
                        Err(error) => last = Some(error),
                    }
                }
                Err(last.unwrap_or_else(|| {
                    redis::RedisError::from((redis::ErrorKind::Client, "no node to subscribe to"))
                }))
            }
            Self::Sentinel(sentinel) => {
                let client = sentinel.lock().await.async_get_client().await?;
                subscribe(client).await
            }
        }
    }
}

impl<N> std::fmt::Debug for SignedSubscription<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedSubscription")
            .field("channel", &self.channel)
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn verifiers() -> Vec<MessageVerifier> {
        let secret = "a shared secret of at least thirty-two bytes";
        let hmac = HmacConfig::builder()
            .secret(secret)
            .allow_any_caller()
            .build()
            .unwrap();
        #[cfg_attr(not(feature = "jwt"), allow(unused_mut))]
        let mut verifiers = vec![MessageVerifier::from(hmac)];
        #[cfg(feature = "jwt")]
        verifiers.push(
            crate::jwt::JwtConfig::builder()
                .key(crate::jwt::JwtKey::hmac(crate::jwt::Algorithm::HS256, secret).unwrap())
                .issuer("idp")
                .audience("api")
                .build()
                .unwrap()
                .into(),
        );
        verifiers
    }

    proptest! {
        #![proptest_config(crate::fuzz::config())]

        /// Envelopes from Redis are input like any other: arbitrary bytes and arbitrary JSON
        /// envelopes are refused by both verifiers, without panicking.
        #[test]
        fn arbitrary_envelopes_are_refused(
            raw in proptest::collection::vec(any::<u8>(), 0..400),
            token in "[ -~]{0,200}",
            payload in "[A-Za-z0-9+/=]{0,60}",
            fields in proptest::collection::btree_map("[a-z_]{1,10}", "[ -~]{0,40}", 0..6),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let envelope = serde_json::json!({"token": token, "payload": payload}).to_string();
            let object = serde_json::to_string(&fields).unwrap();
            for verifier in verifiers() {
                for input in [&raw[..], envelope.as_bytes(), object.as_bytes()] {
                    prop_assert!(rt.block_on(verifier.open("routes", input)).is_err());
                }
            }
        }
    }
}
