//! Where audit events go: `tracing`, a JSON-lines writer, or your own sink.

use std::future::{Future, Ready, ready};

use super::{AuditEvent, AuditRecord};

/// Takes audit events. Called once per request, when its response ends.
///
/// `record` must not block: a sink that can fall behind returns a future that waits for room
/// (the request's response waits with it) or drops the event and counts it.
pub trait AuditSink: Send + Sync + 'static {
    /// Completes when the event has been taken. `Unpin`, so the layer polls it in place: sinks
    /// that take events at once cost no extra step.
    type Future: Future<Output = ()> + Send + Unpin + 'static;

    /// Takes one event.
    fn record(&self, event: AuditEvent) -> Self::Future;

    /// Takes one request's record as the audit layer gathered it; this is what the layer
    /// calls. The default makes the [`AuditEvent`] and passes it to [`record`](Self::record).
    /// Override it to skip that work: [`JsonLinesSink`](super::JsonLinesSink) writes the
    /// record's JSON line directly, without making the event's strings.
    fn record_gathered(&self, record: AuditRecord) -> Self::Future {
        self.record(record.to_event())
    }
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

    fn record_gathered(&self, record: AuditRecord) -> Self::Future {
        (**self).record_gathered(record)
    }
}

/// Both sinks get every event: `(JsonLinesSink, MetricsSink)`.
impl<A: AuditSink, B: AuditSink> AuditSink for (A, B) {
    type Future = Both<A::Future, B::Future>;

    fn record(&self, event: AuditEvent) -> Self::Future {
        let first = self.0.record(event.clone());
        Both(Some(first), Some(self.1.record(event)))
    }

    fn record_gathered(&self, record: AuditRecord) -> Self::Future {
        let first = self.0.record_gathered(record.clone());
        Both(Some(first), Some(self.1.record_gathered(record)))
    }
}

/// The future of a pair of sinks: done when both are.
#[derive(Debug)]
pub struct Both<A, B>(Option<A>, Option<B>);

impl<A, B> Future for Both<A, B>
where
    A: Future<Output = ()> + Unpin,
    B: Future<Output = ()> + Unpin,
{
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if let Some(a) = &mut self.0
            && std::pin::Pin::new(a).poll(cx).is_ready()
        {
            self.0 = None;
        }
        if let Some(b) = &mut self.1
            && std::pin::Pin::new(b).poll(cx).is_ready()
        {
            self.1 = None;
        }
        if self.0.is_none() && self.1.is_none() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    }
}
