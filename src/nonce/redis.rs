//! Nonces in Redis, shared by every replica: a request accepted by one is a replay to all.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::{NonceError, NonceStore};
use crate::redis::RedisConnection;

const DEFAULT_PREFIX: &str = "zerotrust:nonce:";

/// A [`NonceStore`] in Redis: one `SET <prefix><len>:<caller>:<nonce> 1 NX PX <ttl>` per signed
/// request (the caller's length keeps every caller and nonce apart), atomic across replicas. Redis forgets each nonce when its TTL ends, so the store
/// needs no sweeping and its size is bounded by the request rate times the TTL.
///
/// Any Redis error or timeout is [`NonceError::Unavailable`]: the HMAC layer answers 503 and the
/// audit event names `nonce.store_unavailable`. Only requests whose signature has been verified
/// ever reach it.
///
/// ```no_run
/// use tower_zerotrust::hmac::{HmacConfig, VerifyHmacLayer};
/// use tower_zerotrust::nonce::RedisNonceStore;
/// use tower_zerotrust::redis::RedisConnection;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let redis = RedisConnection::open("redis://127.0.0.1:6379/")?;
/// let config = HmacConfig::builder()
///     .secret("a-shared-secret-of-at-least-32-bytes!!")
///     .allow_callers(["gateway"])
///     .build()?;
/// let layer = VerifyHmacLayer::with_nonce_store(config, RedisNonceStore::new(redis));
/// # Ok(()) }
/// ```
///
/// # What a failover can lose
///
/// Redis replicates asynchronously: a nonce a primary acknowledged, then lost in a crash
/// before its replica had it, is unknown to the promoted replica, and the same request could
/// be accepted once more within its window. [`acknowledged_by`](Self::acknowledged_by) closes
/// that gap: a nonce counts only once `WAIT` reports it on that many replicas (a request whose
/// nonce is not gets 503, and a client retries with a fresh nonce), at the price of a
/// replication round trip per request.
#[derive(Debug, Clone)]
pub struct RedisNonceStore {
    redis: RedisConnection,
    prefix: String,
    acknowledged: Option<(u32, Duration)>,
}

impl RedisNonceStore {
    /// A store on `redis`, with keys under `zerotrust:nonce:`.
    pub fn new(redis: RedisConnection) -> Self {
        Self {
            redis,
            prefix: DEFAULT_PREFIX.to_owned(),
            acknowledged: None,
        }
    }

    /// A nonce counts only once `replicas` replicas have it, waited for at most `timeout`
    /// (`WAIT`); fewer in time is [`NonceError::Unavailable`] (503). Keep `timeout` below the
    /// connection's [command timeout](RedisConnection::command_timeout).
    #[must_use]
    pub fn acknowledged_by(mut self, replicas: u32, timeout: Duration) -> Self {
        self.acknowledged = Some((replicas, timeout)).filter(|(n, _)| *n > 0);
        self
    }

    /// Keys under `prefix` instead (services sharing one Redis keep apart by prefix).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
}

impl NonceStore for RedisNonceStore {
    type Future = Pin<Box<dyn Future<Output = Result<(), NonceError>> + Send>>;

    fn check_and_record(&self, caller: &str, nonce: &str, ttl: Duration) -> Self::Future {
        let key = crate::redis::key(&self.prefix, &[caller, nonce]);
        let millis = crate::clock::millis(ttl).max(1);
        let acknowledged = self.acknowledged;
        let set = self.redis.run(move |mut redis| async move {
            let set = redis::cmd("SET")
                .arg(key)
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(millis)
                .query_async::<Option<String>>(&mut redis)
                .await?;
            let Some((replicas, timeout)) = acknowledged.filter(|_| set.is_some()) else {
                return Ok(set);
            };
            // The nonce was recorded on the primary: it counts once the replicas have it.
            let millis = crate::clock::millis(timeout).max(1);
            let copies = redis::cmd("WAIT")
                .arg(replicas)
                .arg(millis)
                .query_async::<u32>(&mut redis)
                .await?;
            if copies < replicas {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "the nonce did not reach enough replicas in time",
                )));
            }
            Ok(set)
        });
        Box::pin(async move {
            match set.await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err(NonceError::Replayed),
                Err(error) => Err(NonceError::Unavailable(error)),
            }
        })
    }
}
