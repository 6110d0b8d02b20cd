//! Serving any `tower` HTTP service over TLS, with the peer's identity on every request.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

use super::{PeerIdentity, ServerConfigSource};
use crate::BoxError;
use crate::peer::PeerAddr;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers, and an idle HTTP/1 connection may
/// wait for its next request.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once; more are closed as they arrive.
const MAX_CONNECTIONS: usize = 10_000;
/// How long accepting pauses after the process ran out of file descriptors (or memory), so
/// that open connections can finish and free theirs.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// The HTTP/2 connection preface: until this many bytes have arrived the protocol is not known
/// yet, and the header-read deadline guards the wait.
const PREFACE_LEN: usize = 24;

/// Serves `service` (an axum `Router`, a tonic `Routes`, any `tower` HTTP service) over TLS on
/// `listener`, HTTP/1.1 and HTTP/2, until `shutdown` completes; then stops accepting and waits
/// for open connections to finish their requests. `tls` is an `Arc<rustls::ServerConfig>` or a
/// [`ReloadingServerConfig`](super::ReloadingServerConfig) for rotation without downtime.
///
/// Each connection's client certificate is parsed once, after the handshake, and every
/// request on it carries `Arc<`[`PeerIdentity`]`>` (when a certificate was presented) and
/// [`PeerAddr`] in its extensions.
///
/// Hostile or broken clients cannot stop it, and silent or slow ones cannot hold a connection
/// for long, with [`TlsServer`]'s defaults: at most 10 000 connections at once (more are closed
/// as they arrive), 10 s to finish the handshake, 30 s to send a request's headers (and for an
/// idle HTTP/1 connection to send its next request). An accept error never stops the server:
/// running out of file descriptors pauses accepting for 100 ms and is logged at error level.
/// Connections a client keeps busy (HTTP/2 connections that answer pings, request bodies sent
/// slowly) hold their slots: bound what one address may hold with
/// [`TlsServer::max_connections_per_peer`], and request bodies with your framework's limits.
///
/// # Errors
///
/// None: the `Result` matches `axum::serve`'s, and accept errors are logged and survived.
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
    TlsServer::new(tls).serve(listener, service, shutdown).await
}

/// [`serve_tls`] with its limits set: connections at once, handshake and header-read timeouts.
///
/// ```no_run
/// # async fn run(tls: std::sync::Arc<rustls::ServerConfig>, app: axum::Router) -> std::io::Result<()> {
/// use std::time::Duration;
/// use tower_zerotrust::mtls::TlsServer;
///
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
/// TlsServer::new(tls)
///     .max_connections(2_000)
///     .header_read_timeout(Duration::from_secs(5))
///     .serve(listener, app, async { let _ = tokio::signal::ctrl_c().await; })
///     .await
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct TlsServer<T> {
    tls: T,
    max_connections: usize,
    max_per_peer: Option<usize>,
    handshake_timeout: Duration,
    header_read_timeout: Duration,
}

impl<T: ServerConfigSource> TlsServer<T> {
    /// A server with `tls` and the default limits.
    pub fn new(tls: T) -> Self {
        Self {
            tls,
            max_connections: MAX_CONNECTIONS,
            max_per_peer: None,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            header_read_timeout: HEADER_READ_TIMEOUT,
        }
    }

    /// How many connections are served at once (default 10 000, at least 1). A connection
    /// arriving when all are taken is closed at once, before its handshake.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// How many connections one client address may hold at once (default: no bound of its
    /// own, only [`max_connections`](Self::max_connections)). Without it one client can hold
    /// every slot with connections it keeps busy; with it, behind a load balancer or NAT that
    /// shows many clients as one address, that address is bounded too: size it accordingly.
    pub fn max_connections_per_peer(mut self, connections: usize) -> Self {
        self.max_per_peer = Some(connections.max(1));
        self
    }

    /// How long a client may take to finish the TLS handshake (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// How long a client may take to send a request's headers after the handshake, and an
    /// idle HTTP/1 connection may wait for its next request (default 30 s). HTTP/2 connections
    /// must send their preface within it, and are pinged to find dead peers.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Serves `service` on `listener` until `shutdown` completes, as [`serve_tls`] does.
    ///
    /// # Errors
    ///
    /// None: accept errors are logged and survived.
    pub async fn serve<S, B>(
        self,
        listener: TcpListener,
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
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let per_peer = PeerCounts::default();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(self.header_read_timeout)
            .keep_alive_timeout(self.header_read_timeout);
        let builder = Arc::new(builder);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (tcp, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        survive_accept_error(&error).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::debug!(target: "tower_zerotrust::mtls", %remote, "connection limit reached; closing the new connection");
                continue;
            };
            let Some(peer_slot) = PeerSlot::take(&per_peer, remote.ip(), self.max_per_peer) else {
                tracing::debug!(target: "tower_zerotrust::mtls", %remote, "connection limit of this address reached; closing the new connection");
                continue;
            };
            // Each connection takes the configuration current when it arrives, so reloaded
            // material applies to new handshakes while open connections keep theirs.
            let acceptor = TlsAcceptor::from(self.tls.current());
            // As axum::serve does: small TLS records and responses go out at once, not after
            // the peer's delayed ACK (40 ms on Linux).
            let _ = tcp.set_nodelay(true);
            let service = service.clone();
            let watcher = graceful.watcher();
            let builder = builder.clone();
            let (handshake_timeout, header_timeout) =
                (self.handshake_timeout, self.header_read_timeout);
            tokio::spawn(async move {
                let _slots = (slot, peer_slot);
                let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp))
                    .await
                {
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
                let io = FirstBytesDeadline::new(stream, header_timeout);
                let connection = builder
                    .serve_connection_with_upgrades(
                        TokioIo::new(io),
                        TowerToHyperService::new(service),
                    )
                    .into_owned();
                if let Err(error) = watcher.watch(connection).await {
                    tracing::debug!(target: "tower_zerotrust::mtls", %remote, %error, "connection closed");
                }
            });
        }
        graceful.shutdown().await;
        Ok(())
    }
}

/// Open connections per client address, for [`TlsServer::max_connections_per_peer`]. Holds an
/// entry only while its address has a connection open, so it never outgrows the connection cap.
type PeerCounts = Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>;

/// One connection counted against its address; counted out when dropped.
struct PeerSlot {
    counts: PeerCounts,
    ip: std::net::IpAddr,
}

impl PeerSlot {
    /// A slot for `ip`, or `None` when it holds `max` connections already. Without a bound
    /// nothing is counted.
    fn take(counts: &PeerCounts, ip: std::net::IpAddr, max: Option<usize>) -> Option<Option<Self>> {
        let Some(max) = max else {
            return Some(None);
        };
        let mut map = counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let open = map.entry(ip).or_default();
        if *open >= max {
            return None;
        }
        *open += 1;
        Some(Some(Self {
            counts: counts.clone(),
            ip,
        }))
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(open) = map.get_mut(&self.ip) {
            *open -= 1;
            if *open == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// An accept error concerns one connection (reset before it was accepted: go on) or the process
/// (out of file descriptors or memory: pause, so that open connections can finish and free
/// theirs). Neither stops the server.
async fn survive_accept_error(error: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted
    ) {
        return;
    }
    tracing::error!(target: "tower_zerotrust::mtls", %error, "accepting a connection failed; pausing before the next accept");
    tokio::time::sleep(ACCEPT_BACKOFF).await;
}

pin_project_lite::pin_project! {
    /// Refuses to wait past a deadline for the first bytes of a connection: until the protocol
    /// is known (the length of the HTTP/2 preface), a client that sends nothing, or trickles,
    /// is cut off. After that, HTTP/1's header-read timeout and HTTP/2's pings take over.
    struct FirstBytesDeadline<IO> {
        #[pin]
        io: IO,
        deadline: Option<Pin<Box<tokio::time::Sleep>>>,
        awaited: usize,
    }
}

impl<IO> FirstBytesDeadline<IO> {
    fn new(io: IO, timeout: Duration) -> Self {
        Self {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            awaited: PREFACE_LEN,
        }
    }
}

impl<IO: AsyncRead> AsyncRead for FirstBytesDeadline<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.io.poll_read(cx, buf);
        if let Some(deadline) = this.deadline {
            *this.awaited = this.awaited.saturating_sub(buf.filled().len() - before);
            if *this.awaited == 0 {
                *this.deadline = None;
            } else if polled.is_pending() && deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
            }
        }
        polled
    }
}

impl<IO: AsyncWrite> AsyncWrite for FirstBytesDeadline<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
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
