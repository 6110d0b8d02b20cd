//! Helpers shared by the benches (each uses some of them).
#![allow(dead_code)]

use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// The shared secret of the benches' HMAC signatures and HS256 tokens.
pub const SECRET: &str = "3f8a2c9d1e7b4f60a5c8d2e9f1b3a7c4d6e8f0a2b4c6d8e0f2a4b6c8d0e2f4a6";

/// A JWT config accepting HS256 tokens signed with [`SECRET`] for the benches' issuer and
/// audience.
#[cfg(feature = "jwt")]
pub fn hs256_config() -> tower_zerotrust::jwt::JwtConfig {
    use tower_zerotrust::jwt::{Algorithm, JwtConfig, JwtKey};
    JwtConfig::builder()
        .key(JwtKey::hmac(Algorithm::HS256, SECRET).unwrap())
        .issuer("intellirouter")
        .audience("intellirouter-services")
        .build()
        .unwrap()
}

/// `Bearer <token>` for `subject` with `roles`, accepted by [`hs256_config`].
#[cfg(feature = "jwt")]
pub fn hs256_bearer(subject: &str, roles: &[&str]) -> String {
    use tower_zerotrust::jwt::Algorithm;
    let issuer = tower_zerotrust::sign::TokenIssuer::hmac(
        Algorithm::HS256,
        SECRET,
        "intellirouter",
        "intellirouter-services",
    )
    .unwrap();
    format!("Bearer {}", issuer.mint(subject, roles).unwrap())
}

/// Polls a future that completes without waiting (everything measured here does), so the
/// numbers carry no executor overhead.
pub fn complete<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("benchmarked futures complete at once"),
    }
}

/// Times `routine` over `iters` inputs made by `setup`, 64 at a time: the inputs are made
/// untimed just before they are used, so they are in cache, as a request a server has just
/// parsed is. Outputs are dropped untimed.
pub fn in_chunks<I, O>(
    iters: u64,
    mut setup: impl FnMut() -> I,
    mut routine: impl FnMut(I) -> O,
) -> Duration {
    let mut total = Duration::ZERO;
    let mut outputs = Vec::with_capacity(64);
    let mut left = iters;
    while left > 0 {
        let n = left.min(64);
        let inputs: Vec<I> = (0..n).map(|_| setup()).collect();
        let start = Instant::now();
        for input in inputs {
            outputs.push(routine(input));
        }
        total += start.elapsed();
        outputs.clear();
        left -= n;
    }
    total
}

/// A clock running `factor` times faster than real time.
#[cfg(feature = "hmac")]
struct Warp {
    start: Instant,
    base: u64,
    factor: u64,
}

#[cfg(feature = "hmac")]
impl tower_zerotrust::clock::Clock for Warp {
    fn now_millis(&self) -> u64 {
        self.base + self.start.elapsed().as_millis() as u64 * self.factor
    }
}

/// A store in steady state whose generations last `60 s / factor` of real time; large enough
/// never to fill at the rates measured here.
///
/// The clock runs fast so that a benchmark reaches the steady state of a long-running service
/// (whole generations expiring as new ones fill) instead of filling the store.
#[cfg(feature = "hmac")]
pub fn steady_store(factor: u64) -> tower_zerotrust::nonce::MemoryNonceStore {
    let clock = Warp {
        start: Instant::now(),
        base: tower_zerotrust::clock::Clock::now_millis(&tower_zerotrust::clock::SystemClock),
        factor,
    };
    tower_zerotrust::nonce::MemoryNonceStore::with_clock(8_000_000, clock)
}

/// For benches with their own `main`: whether the filter `cargo bench` passes on leaves out
/// the bench called `name`.
pub fn filtered_out(name: &str) -> bool {
    std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .is_some_and(|filter| !name.contains(&filter))
}

/// The environment variable `name` as a `T`, or `default` when unset or unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
