//! Audit: exactly one structured event per request, whatever the outcome, as JSON.
//!
//! [`AuditLayer`] (outermost) records who was proven (the authentication layers report the
//! principal into the request's audit context), what was asked, and which layer refused the
//! request and why (the [`Rejection`](crate::Rejection) every layer leaves in the response's
//! extensions). Events go to an [`AuditSink`]: [`TracingSink`] (target `audit`),
//! [`JsonLinesSink`] (a file or stdout, written by a thread of its own from bounded buffers), or
//! your own.
//!
//! Events never contain credentials: no header but `User-Agent` is read.

mod event;
mod json;
mod jsonl;
mod layer;
mod record;
mod sink;

pub use event::{AuditEvent, EventType, Metadata, Status, TraceId};
pub use jsonl::{JsonLinesSink, Overflow, Recording};
pub use layer::{Audit, AuditBody, AuditLayer, ResponseFuture};
pub use record::AuditRecord;
pub use sink::{AuditSink, Both, TracingSink};
