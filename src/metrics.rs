//! Metrics through the [`metrics`](https://docs.rs/metrics) facade: whatever exporter the
//! service installs (Prometheus, StatsD, ...) receives them.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `zerotrust_requests_total` | counter | `outcome` (`accepted`/`rejected`), `method`, `reason` (a reason code, or `none`) |
//! | `zerotrust_request_duration_seconds` | histogram | `outcome` |
//! | `zerotrust_shadow_refusals_total` | counter | `layer` (`authz`/`rate_limit`), `reason`: refusals a layer in shadow mode did not make |
//! | `zerotrust_shadow_disagreements_total` | counter | `layer`, `enforced`, `candidate`: decisions a candidate policy would have made differently |
//! | `zerotrust_nonce_store_entries` | gauge | |
//! | `zerotrust_certificate_expiry_seconds` | gauge | time left on the served certificate |
//! | `zerotrust_audit_events_dropped` | gauge | audit events a `JsonLinesSink` dropped, its queue full |
//! | `zerotrust_audit_events_unwritten` | gauge | audit events a `JsonLinesSink` could not write |
//!
//! Requests are counted by [`MetricsSink`], an [`AuditSink`]: give it
//! to the [`AuditLayer`](crate::audit::AuditLayer), alone or paired with another sink
//! (`(JsonLinesSink, MetricsSink)`). The gauges are refreshed by [`Gauges::spawn`].
//!
//! ```no_run
//! use std::time::Duration;
//! use tower_zerotrust::audit::{AuditLayer, TracingSink};
//! use tower_zerotrust::metrics::{Gauges, MetricsSink};
//! use tower_zerotrust::nonce::MemoryNonceStore;
//!
//! # async fn run() {
//! let audit = AuditLayer::new((TracingSink, MetricsSink));
//! let nonces = MemoryNonceStore::default();
//! Gauges::new().nonce_store(nonces.clone()).spawn(Duration::from_secs(15));
//! # }
//! ```

use std::future::{Ready, ready};
use std::time::Duration;

use crate::audit::{AuditEvent, AuditSink, Status};

/// Counts every audited request (see the [module](self) table).
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsSink;

impl AuditSink for MetricsSink {
    type Future = Ready<()>;

    fn record(&self, event: AuditEvent) -> Self::Future {
        let outcome = match event.status {
            Status::Success => "accepted",
            Status::Failure => "rejected",
        };
        ::metrics::counter!(
            "zerotrust_requests_total",
            "outcome" => outcome,
            "method" => event.action.as_str().to_owned(),
            "reason" => event.metadata.reason.unwrap_or("none"),
        )
        .increment(1);
        ::metrics::histogram!("zerotrust_request_duration_seconds", "outcome" => outcome)
            .record(event.metadata.latency_ms / 1000.0);
        if let Some(refusal) = event.metadata.shadow_refusal {
            ::metrics::counter!(
                "zerotrust_shadow_refusals_total",
                "layer" => refusal.layer,
                "reason" => refusal.code,
            )
            .increment(1);
        }
        if let Some(disagreement) = event.metadata.shadow_disagreement {
            ::metrics::counter!(
                "zerotrust_shadow_disagreements_total",
                "layer" => disagreement.layer,
                "enforced" => disagreement.enforced,
                "candidate" => disagreement.candidate,
            )
            .increment(1);
        }
        ready(())
    }
}

/// The gauges, refreshed on a timer.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Gauges {
    #[cfg(feature = "hmac")]
    nonce_store: Option<crate::nonce::MemoryNonceStore>,
    #[cfg(feature = "mtls")]
    certificate: Option<crate::mtls::ReloadingServerConfig>,
    audit_file: Option<crate::audit::JsonLinesSink>,
}

impl Gauges {
    /// No gauges yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reports how many nonces the store holds.
    #[cfg(feature = "hmac")]
    pub fn nonce_store(mut self, store: crate::nonce::MemoryNonceStore) -> Self {
        self.nonce_store = Some(store);
        self
    }

    /// Reports the time left on the served certificate.
    #[cfg(feature = "mtls")]
    pub fn certificate(mut self, tls: crate::mtls::ReloadingServerConfig) -> Self {
        self.certificate = Some(tls);
        self
    }

    /// Reports the audit events a [`JsonLinesSink`](crate::audit::JsonLinesSink) dropped
    /// (its queue full, `Overflow::DropAndCount`) and could not write (its writer failing): an
    /// audit trail with gaps, worth an alert. The gauges hold a clone of the sink: its writer
    /// stays open while they do.
    pub fn audit_file(mut self, sink: crate::audit::JsonLinesSink) -> Self {
        self.audit_file = Some(sink);
        self
    }

    /// Sets every gauge now.
    pub fn report(&self) {
        if let Some(sink) = &self.audit_file {
            ::metrics::gauge!("zerotrust_audit_events_dropped").set(sink.dropped() as f64);
            ::metrics::gauge!("zerotrust_audit_events_unwritten").set(sink.unwritten() as f64);
        }
        #[cfg(feature = "hmac")]
        if let Some(store) = &self.nonce_store {
            ::metrics::gauge!("zerotrust_nonce_store_entries").set(store.len() as f64);
        }
        #[cfg(feature = "mtls")]
        if let Some(left) = self.certificate.as_ref().and_then(|c| c.time_to_expiry()) {
            ::metrics::gauge!("zerotrust_certificate_expiry_seconds").set(left.as_secs_f64());
        }
    }

    /// Reports every `interval` in a background task on the current tokio runtime, for as
    /// long as the returned handle is not aborted.
    pub fn spawn(self, interval: Duration) -> tokio::task::JoinHandle<()> {
        crate::periodic::every(interval, true, move || self.report())
    }
}
