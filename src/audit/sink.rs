//! Where audit events go: `tracing`, a JSON-lines writer, or your own sink.

use std::future::{Future, Ready, ready};

use super::AuditEvent;

/// Takes audit events. Called once per request, when its response head is ready.
///
/// `record` must not block: a sink that can fall behind returns a future that waits for room
/// (the request's response waits with it) or drops the event and counts it.
pub trait AuditSink: Send + Sync + 'static {
    /// Completes when the event has been taken. `Unpin`, so the layer polls it in place: sinks
    /// that take events at once cost no extra step.
    type Future: Future<Output = ()> + Send + Unpin + 'static;

    /// Takes one event.
    fn record(&self, event: AuditEvent) -> Self::Future;
}

/// Emits each event as a `tracing` event with target `audit` at INFO level, the event's JSON
/// in the `event` field, for whatever subscriber the service already has.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingSink;

impl AuditSink for TracingSink {
    type Future = Ready<()>;

    fn record(&self, event: AuditEvent) -> Self::Future {
        tracing::info!(target: "audit", event = %event.to_json());
        ready(())
    }
}

impl<S: AuditSink> AuditSink for std::sync::Arc<S> {
    type Future = S::Future;

    fn record(&self, event: AuditEvent) -> Self::Future {
        (**self).record(event)
    }
}
