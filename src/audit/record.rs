//! One request's audit data as the layer gathers it: cheap to make on the request path, turned
//! into an [`AuditEvent`] or a JSON line only by the sink that needs it.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderValue, Method};

use super::event::{AuditEvent, EventType, Metadata, NO_ROLES, Status, TraceId};
use super::json::Fields;
use crate::decision::{Disagreement, Explanation, Note, ShadowRefusal};
use crate::principal::{HearsPrincipal, Principal};
use crate::reject::{Origin, RejectionKind};

/// Longest `User-Agent` kept in an event.
const MAX_USER_AGENT: usize = 256;

/// What is known of a request when it arrives, copied out of it (the request, and the
/// connection's read buffer its fields point into, are not kept alive by the audit), and the
/// caller proven while it runs. One allocation per request, shared with the principal slot
/// that authentication layers tell.
pub(crate) struct Gathered {
    pub(crate) at: SystemTime,
    pub(crate) clock: Instant,
    pub(crate) resource: String,
    pub(crate) method: Method,
    pub(crate) source_ip: Option<IpAddr>,
    pub(crate) user_agent: Option<String>,
    pub(crate) trace_id: TraceId,
    pub(crate) heard: Mutex<Heard>,
}

/// What layers told while the request ran.
#[derive(Debug, Clone, Default)]
pub(crate) struct Heard {
    pub(crate) principal: Option<Principal>,
    /// The first refusal a layer in shadow mode did not make (the one enforcement would give).
    pub(crate) shadow_refusal: Option<ShadowRefusal>,
    pub(crate) disagreement: Option<Disagreement>,
    pub(crate) explanation: Option<Explanation>,
}

impl HearsPrincipal for Gathered {
    fn hear(&self, principal: Principal) {
        self.heard().principal = Some(principal);
    }

    fn note(&self, note: Note) {
        let mut heard = self.heard();
        match note {
            Note::Shadow(refusal) => {
                heard.shadow_refusal.get_or_insert(refusal);
            }
            Note::Disagreement(disagreement) => {
                heard.disagreement.get_or_insert(disagreement);
            }
            Note::Explanation(explanation) => heard.explanation = Some(explanation),
        }
    }
}

impl Gathered {
    pub(crate) fn of<B>(request: &http::Request<B>, source_ip: Option<IpAddr>) -> Self {
        Self {
            at: SystemTime::now(),
            clock: Instant::now(),
            resource: request.uri().path().to_owned(),
            method: request.method().clone(),
            source_ip,
            user_agent: request
                .headers()
                .get(http::header::USER_AGENT)
                .and_then(user_agent)
                .map(str::to_owned),
            trace_id: super::layer::trace_id(request.headers()),
            heard: Mutex::new(Heard::default()),
        }
    }

    fn heard(&self) -> std::sync::MutexGuard<'_, Heard> {
        self.heard.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How a response went, as far as the audit is concerned.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    pub(crate) http_status: u16,
    /// From the headers (trailers-only responses) or, later, the trailers.
    pub(crate) grpc_status: Option<u16>,
    pub(crate) rejection: Option<(RejectionKind, Origin, &'static str)>,
    /// The body failed or was abandoned before its end.
    pub(crate) broken: bool,
}

impl Outcome {
    /// No response at all: the service failed (500) or the client left first (499).
    pub(crate) fn none(http_status: u16) -> Self {
        Self {
            http_status,
            grpc_status: None,
            rejection: None,
            broken: false,
        }
    }

    fn status(&self) -> Status {
        let failed = self.rejection.is_some()
            || self.broken
            || self.http_status >= 400
            || self.grpc_status.is_some_and(|s| s != 0);
        if failed {
            Status::Failure
        } else {
            Status::Success
        }
    }

    fn event_type_and_layer(&self) -> (EventType, Option<&'static str>) {
        match self.rejection {
            Some((kind, origin, _)) => classify(kind, origin),
            None => (EventType::Access, None),
        }
    }
}

/// The event type and the `layer` field of a refusal, from the layer that made it: nobody
/// proven is an authentication failure wherever it was noticed, a proven caller refused is an
/// authorization one.
pub(crate) fn classify(kind: RejectionKind, origin: Origin) -> (EventType, Option<&'static str>) {
    let event_type = match (origin, kind) {
        (_, RejectionKind::Unauthenticated) => EventType::Authentication,
        (Origin::RateLimit, _) | (_, RejectionKind::RateLimited) => EventType::RateLimit,
        (Origin::Authorization, _) | (_, RejectionKind::Forbidden) => EventType::Authorization,
        _ => EventType::Authentication,
    };
    (event_type, Some(origin.as_str()))
}

/// One request's audit data as gathered, handed to
/// [`AuditSink::record_gathered`](super::AuditSink::record_gathered) when the response ends.
///
/// [`to_event`](Self::to_event) makes the [`AuditEvent`] (allocating its strings); a sink
/// that only writes the event can skip that, as [`JsonLinesSink`](super::JsonLinesSink) does.
#[derive(Clone)]
pub struct AuditRecord {
    gathered: Arc<Gathered>,
    heard: Heard,
    outcome: Outcome,
    latency: Duration,
}

impl AuditRecord {
    /// The record of a request that ended with `outcome` now.
    pub(crate) fn finish(gathered: Arc<Gathered>, outcome: Outcome) -> Self {
        let heard = std::mem::take(&mut *gathered.heard());
        Self {
            latency: gathered.clock.elapsed(),
            gathered,
            heard,
            outcome,
        }
    }

    /// The event this record describes.
    pub fn to_event(&self) -> AuditEvent {
        self.fields().to_event()
    }

    /// Appends the event as one line of JSON, newline included.
    pub(crate) fn write_json_line(&self, out: &mut Vec<u8>) {
        self.fields().write_json(out);
        out.push(b'\n');
    }

    fn fields(&self) -> Fields<'_> {
        let (gathered, outcome) = (&*self.gathered, &self.outcome);
        let heard = &self.heard;
        let principal = heard.principal.as_ref();
        let (event_type, layer) = outcome.event_type_and_layer();
        Fields {
            timestamp: gathered.at,
            event_type,
            status: outcome.status(),
            principal: principal.map(|p| p.id()),
            shared_principal: principal.map(|p| p.shared_id()),
            resource: &gathered.resource,
            action: gathered.method.as_str(),
            source_ip: gathered.source_ip,
            user_agent: gathered.user_agent.as_deref(),
            trace_id: gathered.trace_id,
            roles: principal
                .and_then(|p| p.shared_roles())
                .unwrap_or(&NO_ROLES),
            auth_method: principal.map(|p| p.method().as_str()),
            layer,
            reason: outcome.rejection.map(|(_, _, code)| code),
            http_status: outcome.http_status,
            grpc_status: outcome.grpc_status,
            latency_ms: self.latency.as_secs_f64() * 1000.0,
            shadow_refusal: heard.shadow_refusal,
            shadow_disagreement: heard.disagreement,
            explanation: heard.explanation.as_ref(),
        }
    }
}

impl std::fmt::Debug for AuditRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditRecord")
            .field("resource", &self.gathered.resource)
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

/// The `User-Agent` as text, at most [`MAX_USER_AGENT`] characters; a header value that is
/// not visible ASCII is left out.
fn user_agent(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?;
    Some(&text[..text.len().min(MAX_USER_AGENT)])
}

impl Fields<'_> {
    fn to_event(&self) -> AuditEvent {
        AuditEvent {
            timestamp: self.timestamp,
            event_type: self.event_type,
            status: self.status,
            principal: self.shared_principal.cloned(),
            resource: self.resource.to_owned(),
            action: Method::from_bytes(self.action.as_bytes()).unwrap_or(Method::GET),
            source_ip: self.source_ip,
            user_agent: self.user_agent.map(str::to_owned),
            trace_id: self.trace_id,
            metadata: Metadata {
                roles: self.roles.clone(),
                auth_method: self.auth_method,
                layer: self.layer,
                reason: self.reason,
                http_status: self.http_status,
                grpc_status: self.grpc_status,
                latency_ms: self.latency_ms,
                shadow_refusal: self.shadow_refusal,
                shadow_disagreement: self.shadow_disagreement,
                explanation: self.explanation.cloned(),
            },
        }
    }
}
