use tower_layer::Layer;

use super::HmacConfig;
use super::service::VerifyHmac;
use crate::nonce::{MemoryNonceStore, NonceStore};

/// Verifies HMAC-signed requests and inserts the caller's [`Principal`](crate::Principal).
///
/// See the [module docs](super) for the scheme, the checks and an example.
#[derive(Debug)]
pub struct VerifyHmacLayer<N = MemoryNonceStore> {
    shared: std::sync::Arc<Shared<N>>,
}

#[derive(Debug)]
pub(crate) struct Shared<N> {
    pub(crate) config: HmacConfig,
    pub(crate) store: N,
}

impl VerifyHmacLayer {
    /// A layer with its own [`MemoryNonceStore`] of default capacity.
    ///
    /// Layers on several routes of one service should share a store: use
    /// [`with_nonce_store`](Self::with_nonce_store) with clones of one `MemoryNonceStore`.
    pub fn new(config: HmacConfig) -> Self {
        Self::with_nonce_store(config, MemoryNonceStore::default())
    }
}

impl<N: NonceStore> VerifyHmacLayer<N> {
    /// A layer that records nonces in `store`.
    pub fn with_nonce_store(config: HmacConfig, store: N) -> Self {
        Self {
            shared: std::sync::Arc::new(Shared { config, store }),
        }
    }
}

impl<N> Clone for VerifyHmacLayer<N> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<S, N> Layer<S> for VerifyHmacLayer<N> {
    type Service = VerifyHmac<S, N>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifyHmac::new(inner, self.shared.clone())
    }
}
