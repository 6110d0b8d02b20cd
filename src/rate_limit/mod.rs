//! Rate limiting keyed by principal, falling back to the client address.
//!
//! [`RateLimitLayer`] gives each principal (from any authentication layer) its quota, in
//! Traefik's terms: an `average` per second and a `burst` ([`RateQuota`]), with overrides per
//! role and per principal. Requests nobody has proven are keyed by the connection's address,
//! or by the client a trusted proxy names in `X-Forwarded-For` (or RFC 7239 `Forwarded`); an
//! IPv6 client is its /64. Over quota: 429 with
//! `Retry-After` (gRPC: RESOURCE_EXHAUSTED); every response carries `RateLimit-Limit` and
//! `RateLimit-Remaining`. Idle keys are purged and each quota tracks a bounded number of keys,
//! so a flood of distinct addresses cannot exhaust memory.
//!
//! With the `redis` feature, [`RateLimitConfigBuilder::shared`] keeps the buckets in Redis
//! (`RedisRateLimits`), so every replica of a service draws on one quota per principal.

mod config;
mod layer;
mod limiter;
#[cfg(feature = "redis")]
mod shared;

pub use crate::peer::{ForwardedHeader, PeerAddrFn};
pub use config::{RateLimitConfig, RateLimitConfigBuilder};
pub use layer::{RateLimit, RateLimitLayer, ResponseFuture};
pub use limiter::RateQuota;
#[cfg(feature = "redis")]
pub use shared::{RedisRateLimits, WhenUnavailable};
