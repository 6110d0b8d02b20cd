//! The client certificate's principal, from tonic's own TLS.

use std::sync::Arc;

use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};
use tonic::service::Interceptor;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Request, Status};

use crate::mtls::{MtlsPrincipalConfig, PeerIdentity};
use crate::principal::{Offered, Scheme};
use crate::reject::{Origin, Rejection, RejectionKind};

const DEFAULT_CAPACITY: usize = 1024;

/// [`MtlsPrincipalLayer`](crate::mtls::MtlsPrincipalLayer) as a tonic interceptor, for servers
/// that use tonic's TLS (`Server::builder().tls_config(..)`): the verified client
/// certificate (tonic's `TlsConnectInfo`) becomes a [`Principal`](crate::Principal) by the
/// config's rule and roles.
///
/// Each certificate is parsed once and remembered by its SHA-256 fingerprint (1024
/// certificates by default), so the requests of a connection cost a hash and a lookup. The
/// parsed [`PeerIdentity`] goes into the request too, which lets a
/// [`JwtInterceptor`](super::JwtInterceptor) after it check certificate-bound tokens. Behind
/// [`serve_tls`](crate::mtls::serve_tls), the identity it already attached is used as is.
#[derive(Clone)]
pub struct MtlsInterceptor {
    config: MtlsPrincipalConfig,
    identities: Arc<Cache<[u8; 32], Arc<PeerIdentity>>>,
}

impl MtlsInterceptor {
    /// Principals by `config`.
    pub fn new(config: MtlsPrincipalConfig) -> Self {
        Self {
            config,
            identities: Arc::new(Cache::new(DEFAULT_CAPACITY)),
        }
    }

    /// How many parsed certificates to remember (at least 1).
    #[must_use]
    pub fn cache_capacity(mut self, certificates: usize) -> Self {
        self.identities = Arc::new(Cache::new(certificates.max(1)));
        self
    }

    /// The connection's identity, now also in the request's extensions; `None` without a
    /// client certificate.
    pub(super) fn identify(
        &self,
        request: &mut Request<()>,
    ) -> Result<Option<Arc<PeerIdentity>>, Rejection> {
        if let Some(peer) = request.extensions().get::<Arc<PeerIdentity>>() {
            return Ok(Some(peer.clone()));
        }
        let certificates = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs);
        let Some(leaf) = certificates.as_deref().and_then(|chain| chain.first()) else {
            return Ok(None);
        };
        let fingerprint: [u8; 32] = Sha256::digest(leaf).into();
        let peer = self
            .identities
            .get_or_insert_with(&fingerprint, || PeerIdentity::from_der(leaf).map(Arc::new))
            .map_err(|error| {
                tracing::debug!(target: "tower_zerotrust::mtls", %error, "unusable client certificate");
                Rejection::by(Origin::Mtls,
                    RejectionKind::Unauthenticated,
                    "mtls.bad_certificate",
                    "Client certificate unusable",
                )
            })?;
        request.extensions_mut().insert(peer.clone());
        Ok(Some(peer))
    }
}

impl std::fmt::Debug for MtlsInterceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtlsInterceptor")
            .field("config", &self.config)
            .field("remembered", &self.identities.len())
            .finish()
    }
}

impl Interceptor for MtlsInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let peer = self.identify(&mut request)?;
        match self
            .config
            .principal(peer.as_deref(), request.extensions())?
        {
            Some(principal) => principal.attach(request.extensions_mut())?,
            None => Offered::record(request.extensions_mut(), Scheme::MutualTls),
        }
        Ok(request)
    }
}
