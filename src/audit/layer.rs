//! The audit layer: one event per request, whatever the outcome.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{HeaderMap, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::event::TraceId;
use super::record::{AuditRecord, Gathered, Outcome};
use super::sink::AuditSink;
use crate::peer::{PeerAddrFn, default_peer_addr};
use crate::principal::PrincipalSlot;
use crate::reject::Rejection;

/// Emits exactly one [`AuditEvent`](super::AuditEvent) per request to a sink, when the response body ends (or
/// when the request or its body is abandoned first): who was proven, what was asked, which
/// layer refused it and why (read from the [`Rejection`] every layer of this crate leaves in
/// the response's extensions), and the HTTP and gRPC status, trailers included.
///
/// Put it outermost, so that it sees every refusal.
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_zerotrust::audit::{AuditLayer, TracingSink};
///
/// let app: Router = Router::new()
///     .route("/models", get(|| async { "[]" }))
///     // ... authentication, rate limit and authorize layers ...
///     .layer(AuditLayer::new(TracingSink));
/// ```
#[derive(Debug, Clone)]
pub struct AuditLayer<K> {
    sink: K,
    peer_addr: PeerAddrFn,
}

impl<K: AuditSink + Clone> AuditLayer<K> {
    /// A layer recording into `sink`.
    pub fn new(sink: K) -> Self {
        Self {
            sink,
            peer_addr: default_peer_addr,
        }
    }

    /// Where the connection's peer address is (the default reads
    /// [`PeerAddr`](crate::peer::PeerAddr), which [`serve_tls`](crate::mtls::serve_tls)
    /// records; for `axum::serve` with connect info, read `ConnectInfo<SocketAddr>`).
    #[must_use]
    pub fn peer_addr(mut self, peer_addr: PeerAddrFn) -> Self {
        self.peer_addr = peer_addr;
        self
    }
}

impl<S, K: AuditSink + Clone> Layer<S> for AuditLayer<K> {
    type Service = Audit<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        Audit {
            inner,
            sink: self.sink.clone(),
            peer_addr: self.peer_addr,
        }
    }
}

/// The service made by [`AuditLayer`].
#[derive(Debug, Clone)]
pub struct Audit<S, K> {
    inner: S,
    sink: K,
    peer_addr: PeerAddrFn,
}

impl<S, K> Audit<S, K> {
    inner_service_accessors!();
}

impl<S, K, ReqBody, ResBody> Service<Request<ReqBody>> for Audit<S, K>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    K: AuditSink + Clone,
    ResBody: http_body::Body,
{
    type Response = Response<AuditBody<ResBody, K>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, K, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let gathered = Arc::new(Gathered::of(&req, (self.peer_addr)(req.extensions())));
        req.extensions_mut()
            .insert(PrincipalSlot::new(gathered.clone()));
        let started = Started(gathered);
        ResponseFuture {
            inner: self.inner.call(req),
            state: State::Running {
                started: Some(started),
            },
            sink: self.sink.clone(),
        }
    }
}

/// What is known of a request before it runs, and where its caller will be told.
struct Started(Arc<Gathered>);

impl Started {
    /// The record, from how the response went.
    fn finish(self, outcome: Outcome) -> AuditRecord {
        AuditRecord::finish(self.0, outcome)
    }
}

fn outcome_of<B>(response: &Response<B>) -> Outcome {
    Outcome {
        http_status: response.status().as_u16(),
        grpc_status: grpc_status(response.headers()),
        rejection: response
            .extensions()
            .get::<Rejection>()
            .map(|r| (r.kind(), r.origin(), r.code())),
        broken: false,
    }
}

/// Header names parsed once, not at every lookup.
static GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
static TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

fn grpc_status(headers: &HeaderMap) -> Option<u16> {
    headers.get(&GRPC_STATUS)?.to_str().ok()?.parse().ok()
}

/// The trace id of a valid W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), else a new one.
pub(crate) fn trace_id(headers: &HeaderMap) -> TraceId {
    headers
        .get(&TRACEPARENT)
        .and_then(|v| v.as_bytes().split(|b| *b == b'-').nth(1))
        .and_then(parse_trace_id)
        .unwrap_or_else(TraceId::random)
}

/// 32 lowercase hex digits, not all zero (W3C: an all-zero trace id is invalid).
fn parse_trace_id(hex: &[u8]) -> Option<TraceId> {
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    if hex.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    (bytes != [0; 16]).then_some(TraceId::from_bytes(bytes))
}

pin_project! {
    /// The response future of [`Audit`].
    pub struct ResponseFuture<F, K: AuditSink, E> {
        #[pin]
        inner: F,
        // Only the service's error is kept for later, never a response: the future stays
        // small, and futures are moved at every layer.
        state: State<E, K>,
        sink: K,
    }

    impl<F, K: AuditSink, E> PinnedDrop for ResponseFuture<F, K, E> {
        fn drop(this: Pin<&mut Self>) {
            // Abandoned before its response: still one event, as 499 (client closed request).
            let this = this.project();
            if let State::Running { started } = this.state
                && let Some(started) = started.take()
            {
                drop(this.sink.record_gathered(started.finish(Outcome::none(499))));
            }
        }
    }
}

enum State<E, K: AuditSink> {
    Running {
        started: Option<Started>,
    },
    /// The service failed: its error is returned once the event is taken.
    Recording {
        recording: K::Future,
        error: Option<E>,
    },
    Done,
}

impl<F, K, B, E> std::future::Future for ResponseFuture<F, K, E>
where
    F: std::future::Future<Output = Result<Response<B>, E>>,
    K: AuditSink + Clone,
    B: http_body::Body,
{
    type Output = Result<Response<AuditBody<B, K>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state {
                State::Running { started } => {
                    let output = ready!(this.inner.as_mut().poll(cx));
                    let started = started.take().expect("an event per request");
                    match output {
                        Ok(response) => {
                            // The event waits for the body's end: its trailers may carry the
                            // gRPC status.
                            *this.state = State::Done;
                            let outcome = outcome_of(&response);
                            return Poll::Ready(Ok(response.map(|inner| AuditBody {
                                inner,
                                ending: Some(Ending {
                                    sink: this.sink.clone(),
                                    started: Some(started),
                                    outcome,
                                    recording: None,
                                }),
                                held: None,
                            })));
                        }
                        Err(error) => {
                            *this.state = State::Recording {
                                recording: this
                                    .sink
                                    .record_gathered(started.finish(Outcome::none(500))),
                                error: Some(error),
                            };
                        }
                    }
                }
                State::Recording { recording, error } => {
                    ready!(Pin::new(recording).poll(cx));
                    let error = error.take().expect("polled after completion");
                    *this.state = State::Done;
                    return Poll::Ready(Err(error));
                }
                State::Done => panic!("polled after completion"),
            }
        }
    }
}

/// What the body still owes the audit: the event, recorded when the body ends.
struct Ending<K: AuditSink> {
    sink: K,
    started: Option<Started>,
    outcome: Outcome,
    recording: Option<K::Future>,
}

impl<K: AuditSink> Ending<K> {
    fn record(&mut self) {
        if let Some(started) = self.started.take() {
            self.recording = Some(self.sink.record_gathered(started.finish(self.outcome)));
        }
    }
}

pin_project! {
    /// The response body of [`Audit`]: the request's event is recorded when the body ends (so
    /// a gRPC status sent in trailers is in it), or when it is dropped before its end.
    pub struct AuditBody<B: http_body::Body, K: AuditSink> {
        #[pin]
        inner: B,
        ending: Option<Ending<K>>,
        // The last frame, returned once the event is taken.
        held: Option<Option<Result<http_body::Frame<B::Data>, B::Error>>>,
    }

    impl<B: http_body::Body, K: AuditSink> PinnedDrop for AuditBody<B, K> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(ending) = this.ending.as_mut()
                && ending.started.is_some()
            {
                ending.outcome.broken = true;
                ending.record();
                drop(ending.recording.take());
            }
        }
    }
}

impl<B: http_body::Body, K: AuditSink> http_body::Body for AuditBody<B, K> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        if this.held.is_none() {
            let frame = ready!(this.inner.as_mut().poll_frame(cx));
            let Some(ending) = this.ending.as_mut().filter(|e| e.started.is_some()) else {
                return Poll::Ready(frame);
            };
            let ended = match &frame {
                Some(Ok(frame)) => match frame.trailers_ref() {
                    Some(trailers) => {
                        ending.outcome.grpc_status =
                            grpc_status(trailers).or(ending.outcome.grpc_status);
                        true
                    }
                    None => this.inner.is_end_stream(),
                },
                Some(Err(_)) => {
                    ending.outcome.broken = true;
                    true
                }
                None => true,
            };
            if !ended {
                return Poll::Ready(frame);
            }
            ending.record();
            *this.held = Some(frame);
        }
        if let Some(recording) = this.ending.as_mut().and_then(|e| e.recording.as_mut()) {
            ready!(Pin::new(recording).poll(cx));
        }
        if let Some(ending) = this.ending.as_mut() {
            ending.recording = None;
        }
        Poll::Ready(this.held.take().flatten())
    }

    fn is_end_stream(&self) -> bool {
        // Not over until the event is recorded: one more poll does it.
        self.held.is_none()
            && self.ending.as_ref().is_none_or(|e| e.started.is_none())
            && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::super::event::EventType;
    use super::super::record::classify;
    use super::*;
    use crate::reject::{Origin, RejectionKind};

    #[test]
    fn trace_ids_come_from_valid_traceparents_only() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert("traceparent", HeaderValue::from_static(value));
            trace_id(&headers).to_string()
        };
        assert_eq!(
            with("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f35-00f067aa0ba902b7-01",
            "garbage",
        ] {
            let generated = with(bad);
            assert_eq!(generated.len(), 32, "{bad}");
            assert_ne!(generated, "4bf92f3577b34da6a3ce929d0e0e4736");
        }
        assert_ne!(trace_id(&HeaderMap::new()), trace_id(&HeaderMap::new()));
    }

    #[test]
    fn refusals_name_the_layer_and_the_kind_of_decision() {
        use Origin::*;
        use RejectionKind::*;
        let cases = [
            (Unauthenticated, Jwt, EventType::Authentication),
            (Unauthenticated, Authorization, EventType::Authentication),
            (Forbidden, Hmac, EventType::Authorization),
            (Forbidden, Authorization, EventType::Authorization),
            (RateLimited, RateLimit, EventType::RateLimit),
            (Unavailable, Hmac, EventType::Authentication),
            (Unavailable, Authorization, EventType::Authorization),
            (Unavailable, RateLimit, EventType::RateLimit),
            (RateLimited, Custom, EventType::RateLimit),
            (Unavailable, Custom, EventType::Authentication),
        ];
        for (kind, origin, expected) in cases {
            assert_eq!(
                classify(kind, origin),
                (expected, Some(origin.as_str())),
                "{kind:?} from {origin:?}"
            );
        }
    }

    /// Renaming a reason code changes nothing in the event: the origin decides.
    #[test]
    fn the_code_text_does_not_classify() {
        let renamed = Rejection::by(
            Origin::RateLimit,
            RejectionKind::Unavailable,
            "quota.backend_down",
            "Rate limiting unavailable",
        );
        assert_eq!(
            classify(renamed.kind(), renamed.origin()),
            (EventType::RateLimit, Some("rate_limit"))
        );
    }
}
