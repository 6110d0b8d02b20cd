//! Quotas shared by every replica: the same GCRA as the local buckets (governor's), computed
//! atomically in Redis by a Lua script, on Redis's clock so replicas' clocks need not agree.

use std::sync::LazyLock;
use std::time::Duration;

use super::limiter::{Decision, PendingDecision, RateQuota};
use crate::redis::RedisConnection;

const DEFAULT_PREFIX: &str = "zerotrust:ratelimit:";

/// GCRA as governor computes it, in microseconds: a key holds its theoretical arrival time
/// (TAT); a request at `now` is refused while `now < TAT - tau`, else TAT becomes
/// `max(TAT, now) + interval`. `tau = interval * (burst - 1)`. The key expires when its
/// bucket would be full again, so idle keys cost nothing.
/// Returns `{1, remaining}` or `{0, retry_after_micros}`.
const GCRA: &str = r"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local tau = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if now < tat - tau then
  return {0, tat - tau - now}
end
local next_tat = math.max(tat, now) + interval
local ttl = math.ceil((next_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', ttl)
return {1, math.floor(math.min(now + tau + interval - next_tat, tau + interval) / interval)}
";

static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(GCRA));

/// What a rate limit in Redis does when Redis cannot answer. There is no default: whether an
/// outage should stop traffic or lift the limit is a decision for each service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WhenUnavailable {
    /// Refuse the request: 503 `rate_limit.store_unavailable` (gRPC UNAVAILABLE).
    FailClosed,
    /// Let the request through unlimited (and log a warning).
    FailOpen,
}

/// Rate limits kept in Redis, so that every replica of a service draws on one quota per
/// principal: give it to [`RateLimitConfigBuilder::shared`](super::RateLimitConfigBuilder::shared).
/// Quotas, overrides and keys are the same as in process; only where the buckets live changes.
///
/// ```no_run
/// use tower_zerotrust::rate_limit::{RateLimitConfig, RedisRateLimits, WhenUnavailable};
/// use tower_zerotrust::redis::RedisConnection;
///
/// # #[tokio::main] async fn main() -> Result<(), tower_zerotrust::ConfigError> {
/// let redis = RedisConnection::open("redis://127.0.0.1:6379/")?;
/// let limits = RateLimitConfig::builder()
///     .shared(RedisRateLimits::new(redis, WhenUnavailable::FailClosed))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedisRateLimits {
    redis: RedisConnection,
    prefix: String,
    when_unavailable: WhenUnavailable,
}

impl RedisRateLimits {
    /// Buckets in `redis` under `zerotrust:ratelimit:`, with the outage policy spelled out.
    pub fn new(redis: RedisConnection, when_unavailable: WhenUnavailable) -> Self {
        Self {
            redis,
            prefix: DEFAULT_PREFIX.to_owned(),
            when_unavailable,
        }
    }

    /// Keys under `prefix` instead.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Takes one request from `key`'s bucket of `quota`.
    pub(crate) fn check(&self, bucket: &str, key: &str, quota: RateQuota) -> PendingDecision {
        let redis_key = crate::redis::key(&self.prefix, &[bucket, key]);
        let interval = 1_000_000.0 / f64::from(quota.average);
        let taken = self.redis.run(move |mut redis| async move {
            SCRIPT
                .key(redis_key)
                .arg(interval)
                .arg(quota.burst)
                .invoke_async::<(i64, i64)>(&mut redis)
                .await
        });
        let when_unavailable = self.when_unavailable;
        Box::pin(async move {
            match taken.await {
                Ok((1, remaining)) => Decision::Allow {
                    limit: quota.burst,
                    remaining: u32::try_from(remaining).unwrap_or(0),
                },
                Ok((_, retry_after)) => Decision::Deny {
                    limit: quota.burst,
                    retry_after: Duration::from_micros(u64::try_from(retry_after).unwrap_or(0)),
                },
                Err(error) => {
                    tracing::warn!(target: "tower_zerotrust::rate_limit", %error, policy = ?when_unavailable, "shared rate limits unavailable");
                    match when_unavailable {
                        WhenUnavailable::FailClosed => Decision::Unavailable,
                        WhenUnavailable::FailOpen => Decision::Unchecked,
                    }
                }
            }
        })
    }
}
