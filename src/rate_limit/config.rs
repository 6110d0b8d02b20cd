//! Quotas: the default one, overrides per role and per principal, and the one for callers
//! nobody has proven, keyed by address.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use http::{Extensions, HeaderMap};

#[cfg(feature = "redis")]
use super::limiter::PendingDecision;
use super::limiter::{Bucket, Decision, LimiterClock, RateQuota};
#[cfg(feature = "redis")]
use super::shared::RedisRateLimits;
use crate::clock::{Clock, SharedClock};
use crate::decision::Enforcement;
use crate::env::Env;
use crate::error::{ConfigError, FirstError};
use crate::peer::{
    ForwardedHeader, PeerAddrFn, canonical, client_ip, client_key, default_peer_addr,
};
use crate::principal::Principal;
use crate::reject::Rejection;

/// The validated configuration of a [`RateLimitLayer`](super::RateLimitLayer).
///
/// Cheap to clone; clones share the buckets, so every layer made from one configuration shares
/// its quotas.
#[derive(Clone)]
pub struct RateLimitConfig {
    pub(crate) inner: Arc<Limits>,
}

pub(crate) struct Limits {
    default: Bucket<Arc<str>>,
    principals: HashMap<Box<str>, Bucket<Arc<str>>>,
    /// By role; a principal with several gets the most generous.
    roles: Vec<(Box<str>, RateQuota, Bucket<Arc<str>>)>,
    anonymous: Bucket<IpAddr>,
    trusted_proxies: HashSet<IpAddr>,
    forwarded_header: ForwardedHeader,
    ipv6_prefix: u8,
    peer_addr: PeerAddrFn,
    #[cfg(feature = "redis")]
    shared: Option<RedisRateLimits>,
    pub(crate) enforcement: Enforcement,
}

/// A decision now (in-process buckets), or one the shared store is computing.
pub(crate) enum Check {
    Now(Decision),
    #[cfg(feature = "redis")]
    Shared(PendingDecision),
}

/// Builds a [`RateLimitConfig`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RateLimitConfigBuilder {
    default: RateQuota,
    principals: Vec<(String, RateQuota)>,
    roles: Vec<(String, RateQuota)>,
    anonymous: Option<RateQuota>,
    trusted_proxies: Vec<IpAddr>,
    forwarded_header: ForwardedHeader,
    ipv6_prefix: u8,
    peer_addr: PeerAddrFn,
    max_keys: usize,
    #[cfg(feature = "redis")]
    shared: Option<RedisRateLimits>,
    enforcement: Enforcement,
    clock: LimiterClock,
    error: FirstError,
}

impl RateLimitConfig {
    /// A builder with the default quota: 100 requests per second on average, bursts of 50, per
    /// principal.
    pub fn builder() -> RateLimitConfigBuilder {
        RateLimitConfigBuilder {
            default: RateQuota::new(100, 50),
            principals: Vec::new(),
            roles: Vec::new(),
            anonymous: None,
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::default(),
            ipv6_prefix: 64,
            peer_addr: default_peer_addr,
            max_keys: 100_000,
            #[cfg(feature = "redis")]
            shared: None,
            enforcement: Enforcement::Enforce,
            clock: LimiterClock::default(),
            error: FirstError::default(),
        }
    }

    /// Takes one unit of `principal`'s quota outside the layer: for work the layer does not
    /// see, such as each message of a long-lived stream. It draws on this process's buckets,
    /// also when the layer's quotas are [shared](RateLimitConfigBuilder::shared).
    ///
    /// # Errors
    ///
    /// The 429 to answer with (its `retry_after` says when to try again).
    pub fn check_principal(&self, principal: &Principal) -> Result<(), Rejection> {
        let decision = self
            .inner
            .bucket_for(principal)
            .check(principal.shared_qualified_id());
        decision.rejection().map_or(Ok(()), Err)
    }

    /// The decision for one request.
    pub(crate) fn check(&self, extensions: &Extensions, headers: &HeaderMap) -> Check {
        let limits = &*self.inner;
        if let Some(principal) = extensions.get::<Principal>() {
            let bucket = limits.bucket_for(principal);
            #[cfg(feature = "redis")]
            if let Some(shared) = &limits.shared {
                return Check::Shared(shared.check(
                    bucket.label(),
                    principal.qualified_id(),
                    bucket.quota(),
                ));
            }
            return Check::Now(bucket.check(principal.shared_qualified_id()));
        }
        let ip = client_ip(
            (limits.peer_addr)(extensions),
            headers,
            &limits.trusted_proxies,
            limits.forwarded_header,
        )
        .map_or(
            // Nobody can tell these apart: they share one bucket.
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            |ip| client_key(ip, limits.ipv6_prefix),
        );
        #[cfg(feature = "redis")]
        if let Some(shared) = &limits.shared {
            let bucket = &limits.anonymous;
            return Check::Shared(shared.check(bucket.label(), &ip.to_string(), bucket.quota()));
        }
        Check::Now(limits.anonymous.check(&ip))
    }
}

impl Limits {
    fn bucket_for(&self, principal: &Principal) -> &Bucket<Arc<str>> {
        if let Some(bucket) = self.principals.get(principal.qualified_id()) {
            return bucket;
        }
        self.roles
            .iter()
            .filter(|(role, _, _)| principal.has_role(role))
            .max_by_key(|(_, quota, _)| (quota.average, quota.burst))
            .map_or(&self.default, |(_, _, bucket)| bucket)
    }
}

impl RateLimitConfigBuilder {
    /// A builder whose quota is read from `RATE_LIMIT_AVERAGE` and `RATE_LIMIT_BURST`
    /// (requests per second and burst, defaults 100 and 50). A value that is not a positive
    /// integer is reported by [`build`](Self::build), as [`ConfigError::InvalidEnv`].
    pub fn from_env() -> Self {
        Self::read_env(&Env::process())
    }

    fn read_env(env: &Env) -> Self {
        let mut builder = RateLimitConfig::builder();
        match env
            .positive("RATE_LIMIT_AVERAGE", 100)
            .and_then(|average| Ok((average, env.positive("RATE_LIMIT_BURST", 50)?)))
        {
            Ok((average, burst)) => builder.default = RateQuota::new(average, burst),
            Err(error) => builder.error.keep(Err(error)),
        }
        builder
    }

    /// The quota for each principal without an override.
    pub fn quota(mut self, quota: RateQuota) -> Self {
        self.default = quota;
        self
    }

    /// The principal with this [qualified id](crate::Principal::qualified_id) gets `quota`: a
    /// service id (HMAC caller, certificate identity), or `jwt:<sub>` for a token subject.
    pub fn principal_quota(mut self, principal: impl Into<String>, quota: RateQuota) -> Self {
        self.principals.push((principal.into(), quota));
        self
    }

    /// Principals holding `role` get `quota` (the most generous, when they hold several).
    ///
    /// The roles are those the credential carries (a token's roles claim): the limit runs
    /// before authorization, so roles a [`Policy`](crate::authz::Policy) assigns to a service
    /// by name are not seen here; give such a service its quota with
    /// [`principal_quota`](Self::principal_quota).
    pub fn role_quota(mut self, role: impl Into<String>, quota: RateQuota) -> Self {
        self.roles.push((role.into(), quota));
        self
    }

    /// The quota for requests without a principal, per client address (default: the same as
    /// principals').
    pub fn anonymous_quota(mut self, quota: RateQuota) -> Self {
        self.anonymous = Some(quota);
        self
    }

    /// Proxies whose forwarding header ([`X-Forwarded-For`](ForwardedHeader::XForwardedFor)
    /// by default) is believed when they are the connection's peer. IPv4-mapped IPv6 forms
    /// (`::ffff:10.0.0.1`) and plain IPv4 name the same proxy.
    pub fn trusted_proxies<I: IntoIterator<Item = IpAddr>>(mut self, proxies: I) -> Self {
        self.trusted_proxies.extend(proxies);
        self
    }

    /// The header the trusted proxies write: `X-Forwarded-For` (the default) or RFC 7239
    /// `Forwarded`. Only that one is read: the other may be the client's own invention.
    pub fn forwarded_header(mut self, header: ForwardedHeader) -> Self {
        self.forwarded_header = header;
        self
    }

    /// How many leading bits of an IPv6 address make one anonymous client (default 64: a
    /// subscriber gets a whole /64, so counting /128s would let one client be millions).
    /// From 32 to 128.
    pub fn ipv6_client_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = bits;
        self
    }

    /// Where the connection's peer address is in the request's extensions. The default reads
    /// the address [`serve_tls`](crate::mtls::serve_tls) records; with `axum::serve` and
    /// `into_make_service_with_connect_info::<SocketAddr>()`, pass
    /// `|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())`.
    pub fn peer_addr(mut self, peer_addr: PeerAddrFn) -> Self {
        self.peer_addr = peer_addr;
        self
    }

    /// How many keys each quota tracks at most (default 100 000). Keys idle long enough to be
    /// back to a full burst are purged. If a flood of distinct busy keys still fills a quota,
    /// its table starts afresh (logged at warn level): memory stays bounded and nobody is
    /// refused for want of room, at the price of a new burst for each client. Size it above
    /// the number of clients you expect within one burst's refill time.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Refuse over quota (the default), or in [`Enforcement::Shadow`] let every request
    /// through and record the refusals that would have been made (audit
    /// `metadata.shadow_refusal`, `zerotrust_shadow_refusals_total`, the debug log).
    pub fn enforcement(mut self, enforcement: Enforcement) -> Self {
        self.enforcement = enforcement;
        self
    }

    /// Keeps the buckets in Redis, shared by every replica, instead of in this process.
    #[cfg(feature = "redis")]
    pub fn shared(mut self, store: RedisRateLimits) -> Self {
        self.shared = Some(store);
        self
    }

    /// The clock quotas are measured with: a monotonic clock by default. Give one (read to the
    /// millisecond) to move time in tests and simulations instead of waiting for it; it must
    /// not go back, and a wall clock stepped forward refills every bucket at once.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = LimiterClock::Given(SharedClock::new(clock));
        self
    }

    /// Checks the quotas.
    ///
    /// # Errors
    ///
    /// A quota with a zero average or burst, `max_keys` of zero, or an unusable variable read
    /// by [`from_env`](Self::from_env).
    pub fn build(self) -> Result<RateLimitConfig, ConfigError> {
        self.error.check()?;
        let invalid = |reason: String| ConfigError::Invalid {
            what: "rate limit",
            reason,
        };
        if !(32..=128).contains(&self.ipv6_prefix) {
            return Err(invalid(
                "the IPv6 client prefix must be 32 to 128 bits".into(),
            ));
        }
        if self.max_keys == 0 {
            return Err(invalid("max_keys must be at least 1".into()));
        }
        fn bucket<K: std::hash::Hash + Eq + Clone>(
            (name, label, quota): (&str, &str, RateQuota),
            (max_keys, clock): (usize, &LimiterClock),
        ) -> Result<Bucket<K>, ConfigError> {
            Bucket::new(quota, label, max_keys, clock.clone()).ok_or_else(|| ConfigError::Invalid {
                what: "rate limit",
                reason: format!("{name}: average and burst must both be at least 1"),
            })
        }
        let keys = (self.max_keys, &self.clock);
        let mut principals = HashMap::new();
        for (id, quota) in &self.principals {
            principals.insert(
                id.clone().into_boxed_str(),
                bucket((id, "principal", *quota), keys)?,
            );
        }
        let mut roles = Vec::new();
        for (role, quota) in &self.roles {
            roles.push((
                role.clone().into_boxed_str(),
                *quota,
                bucket((role, &format!("role:{role}"), *quota), keys)?,
            ));
        }
        Ok(RateLimitConfig {
            inner: Arc::new(Limits {
                default: bucket(("quota", "default", self.default), keys)?,
                principals,
                roles,
                anonymous: bucket(
                    (
                        "anonymous quota",
                        "anonymous",
                        self.anonymous.unwrap_or(self.default),
                    ),
                    keys,
                )?,
                trusted_proxies: self.trusted_proxies.into_iter().map(canonical).collect(),
                forwarded_header: self.forwarded_header,
                ipv6_prefix: self.ipv6_prefix,
                peer_addr: self.peer_addr,
                #[cfg(feature = "redis")]
                shared: self.shared,
                enforcement: self.enforcement,
            }),
        })
    }
}

impl std::fmt::Debug for RateLimitConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitConfig")
            .field("principal_overrides", &self.inner.principals.len())
            .field("role_overrides", &self.inner.roles.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_from_the_environment_are_checked_by_build() {
        let read =
            |pairs: &[(&str, &str)]| RateLimitConfigBuilder::read_env(&Env::from_pairs(pairs));
        assert_eq!(read(&[]).default, RateQuota::new(100, 50));
        let set = read(&[("RATE_LIMIT_AVERAGE", "7"), ("RATE_LIMIT_BURST", "3")]);
        assert_eq!(set.default, RateQuota::new(7, 3));
        let zero = read(&[("RATE_LIMIT_BURST", "0")]).build();
        assert!(
            matches!(&zero, Err(ConfigError::InvalidEnv { name, .. }) if name == "RATE_LIMIT_BURST"),
            "{zero:?}"
        );
    }
}
