//! Serving any `tower` HTTP service over TLS, with the peer's identity on every request.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

use super::{PeerIdentity, ServerConfigSource};
use crate::BoxError;
use crate::peer::PeerAddr;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `service` (an axum `Router`, a tonic `Routes`, any `tower` HTTP service) over TLS on
/// `listener`, HTTP/1.1 and HTTP/2, until `shutdown` completes; then stops accepting and waits
/// for open connections to finish their requests. `tls` is an `Arc<rustls::ServerConfig>` or a
/// [`ReloadingServerConfig`](super::ReloadingServerConfig) for rotation without downtime.
///
/// Each connection's client certificate is parsed once, after the handshake, and every
/// request on it carries `Arc<`[`PeerIdentity`]`>` (when a certificate was presented) and
/// [`PeerAddr`] in its extensions. A handshake that takes longer than 10 s is dropped, so slow
/// or stuck clients cannot hold up others.
///
/// # Errors
///
/// Accepting from the listener failed.
pub async fn serve_tls<S, B>(
    listener: TcpListener,
    tls: impl ServerConfigSource,
    service: S,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => break,
        };
        // Each connection takes the configuration current when it arrives, so reloaded
        // material applies to new handshakes while open connections keep theirs.
        let acceptor = TlsAcceptor::from(tls.current());
        // As axum::serve does: small TLS records and responses go out at once, not after the
        // peer's delayed ACK (40 ms on Linux).
        let _ = tcp.set_nodelay(true);
        let service = service.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => return log_handshake_failure(remote, &error),
                Err(_) => {
                    tracing::debug!(target: "tower_zerotrust::mtls", %remote, "TLS handshake timed out");
                    return;
                }
            };
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| PeerIdentity::from_der(leaf).ok())
                .map(Arc::new);
            let service = WithPeer {
                inner: service,
                peer,
                addr: PeerAddr(remote),
            };
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder
                .serve_connection_with_upgrades(
                    TokioIo::new(stream),
                    TowerToHyperService::new(service),
                )
                .into_owned();
            let _ = watcher.watch(connection).await;
        });
    }
    graceful.shutdown().await;
    Ok(())
}

/// Says why a handshake failed, and how to fix the one cause operators keep meeting: OpenSSL 3's
/// `openssl x509 -req` without `-extfile` writes X.509 v1 certificates, which are refused.
fn log_handshake_failure(remote: SocketAddr, error: &std::io::Error) {
    let reason = error.to_string();
    if reason.contains("UnsupportedCertVersion") {
        tracing::warn!(
            target: "tower_zerotrust::mtls",
            %remote,
            "client certificate refused: it is an X.509 v1 certificate; re-issue it as v3 \
             (for example with `zerotrust client`, or `openssl x509 -req ... -extfile` with \
             `basicConstraints=CA:FALSE`), or allow v1 client certificates while migrating \
             (`TlsConfig::allow_v1_client_certificates`)"
        );
    } else {
        tracing::debug!(target: "tower_zerotrust::mtls", %remote, %reason, "TLS handshake failed");
    }
}

/// Adds the connection's identity and address to each of its requests.
#[derive(Clone)]
struct WithPeer<S> {
    inner: S,
    peer: Option<Arc<PeerIdentity>>,
    addr: PeerAddr,
}

impl<S, B> Service<Request<B>> for WithPeer<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if let Some(peer) = &self.peer {
            request.extensions_mut().insert(peer.clone());
        }
        request.extensions_mut().insert(self.addr);
        self.inner.call(request)
    }
}
