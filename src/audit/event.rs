//! The audit event: one JSON object per request (`timestamp`, `event_type`, `status`, ...).

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use http::Method;
use serde::{Serialize, Serializer};

use super::json::{Fields, hex, rfc3339};
use crate::decision::{Disagreement, Explanation, ShadowRefusal};

/// What a request was, who made it and how it ended, in this JSON format:
///
/// ```json
/// {"timestamp":"2024-01-15T10:30:00.000Z","event_type":"authentication","status":"failure",
///  "principal":null,"resource":"/api/v1/models","action":"GET","source_ip":"10.0.1.50",
///  "user_agent":"Python/3.11","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736",
///  "metadata":{"roles":[],"auth_method":null,"layer":"jwt","reason":"jwt.expired",
///  "http_status":401,"grpc_status":null,"latency_ms":0.21}}
/// ```
///
/// No header values but `User-Agent` are ever read into an event, so credentials
/// (`Authorization`, `X-Signature`, cookies, tokens) cannot leak through it.
///
/// Its fields are kept as they were found (times, addresses, the method, shared ids) and
/// turned into text only when the event is written, off the request path for
/// [`JsonLinesSink`](super::JsonLinesSink).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AuditEvent {
    /// When the request arrived; written as RFC 3339, UTC, milliseconds.
    #[serde(serialize_with = "as_rfc3339")]
    pub timestamp: SystemTime,
    /// `authentication`, `authorization`, `rate_limit` (the layer that refused), or `access`.
    pub event_type: EventType,
    /// `success` or `failure`.
    pub status: Status,
    /// Who was proven, if anyone.
    pub principal: Option<Arc<str>>,
    /// The path, or the gRPC method (`/pkg.Service/Method`).
    pub resource: String,
    /// The HTTP method.
    #[serde(serialize_with = "as_method")]
    pub action: Method,
    /// The client address, when the connection's is known.
    pub source_ip: Option<IpAddr>,
    /// The `User-Agent` header, at most 256 characters.
    pub user_agent: Option<String>,
    /// From the W3C `traceparent` header, or generated.
    pub trace_id: TraceId,
    /// The rest.
    pub metadata: Metadata,
}

/// Details of an [`AuditEvent`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Metadata {
    /// The principal's roles.
    pub roles: Arc<[String]>,
    /// How the principal was proven (`hmac`, `jwt`, `mtls`).
    pub auth_method: Option<&'static str>,
    /// The layer that refused (`hmac`, `jwt`, `mtls`, `authz`, `rate_limit`, ...).
    pub layer: Option<&'static str>,
    /// The refusal's reason code (`jwt.expired`, `authz.permission_denied`, ...).
    pub reason: Option<&'static str>,
    /// The HTTP status of the response (500 when the service failed, 499 when the client went
    /// away first).
    pub http_status: u16,
    /// The gRPC status, from the response's headers (refusals) or trailers.
    pub grpc_status: Option<u16>,
    /// From the request to the end of the response body, in milliseconds.
    pub latency_ms: f64,
    /// The refusal a layer in shadow mode did not make (written only when there was one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_refusal: Option<ShadowRefusal>,
    /// The enforced policy and the candidate beside it disagreed (written only then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_disagreement: Option<Disagreement>,
    /// Why authorization refused, or would have in shadow mode (written only then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Explanation>,
}

/// Which decision an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventType {
    /// Credentials were refused.
    Authentication,
    /// A proven principal was refused.
    Authorization,
    /// Over quota.
    RateLimit,
    /// The request reached the service.
    Access,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Accepted and answered below 400.
    Success,
    /// Refused, or answered with an error.
    Failure,
}

/// A W3C trace id: 16 bytes, written as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 16]);

impl TraceId {
    /// The trace id with these bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// A random trace id (from a per-thread generator seeded by the operating system's: trace
    /// ids must not collide, they need not be secret).
    pub fn random() -> Self {
        use rand::RngExt;
        thread_local! {
            static RNG: std::cell::RefCell<rand::rngs::SmallRng> =
                std::cell::RefCell::new(rand::make_rng());
        }
        // One 128-bit draw is two 64-bit steps of the generator; an array of bytes would be
        // sixteen.
        let draw: u128 = RNG.with(|rng| rng.borrow_mut().random());
        Self(draw.to_le_bytes())
    }

    /// Its bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl TraceId {
    /// The 32 lowercase hex digits.
    pub(crate) fn to_hex(self) -> [u8; 32] {
        hex(&self.0)
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.to_hex()).unwrap_or_default())
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl Serialize for TraceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(std::str::from_utf8(&self.to_hex()).unwrap_or_default())
    }
}

/// The roles of an event without a principal, shared.
pub(crate) static NO_ROLES: LazyLock<Arc<[String]>> = LazyLock::new(|| Arc::from(Vec::new()));

impl AuditEvent {
    /// The event as one line of JSON (no newline).
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(512);
        self.fields().write_json(&mut out);
        String::from_utf8(out).expect("the JSON writer writes UTF-8")
    }

    fn fields(&self) -> Fields<'_> {
        let metadata = &self.metadata;
        Fields {
            timestamp: self.timestamp,
            event_type: self.event_type,
            status: self.status,
            principal: self.principal.as_deref(),
            shared_principal: self.principal.as_ref(),
            resource: &self.resource,
            action: self.action.as_str(),
            source_ip: self.source_ip,
            user_agent: self.user_agent.as_deref(),
            trace_id: self.trace_id,
            roles: &metadata.roles,
            auth_method: metadata.auth_method,
            layer: metadata.layer,
            reason: metadata.reason,
            http_status: metadata.http_status,
            grpc_status: metadata.grpc_status,
            latency_ms: metadata.latency_ms,
            shadow_refusal: metadata.shadow_refusal,
            shadow_disagreement: metadata.shadow_disagreement,
            explanation: metadata.explanation.as_ref(),
        }
    }
}

impl EventType {
    /// As written in events: `authentication`, `authorization`, `rate_limit`, `access`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authentication => "authentication",
            Self::Authorization => "authorization",
            Self::RateLimit => "rate_limit",
            Self::Access => "access",
        }
    }
}

impl Status {
    /// As written in events: `success` or `failure`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

fn as_method<S: Serializer>(method: &Method, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(method.as_str())
}

fn as_rfc3339<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    let text = rfc3339(*time);
    serializer.serialize_str(std::str::from_utf8(&text).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::{Duration, UNIX_EPOCH};

    use proptest::prelude::*;

    use super::*;

    fn event() -> impl Strategy<Value = AuditEvent> {
        let text = || proptest::option::of(any::<String>());
        let ip = prop_oneof![
            Just(None),
            any::<u32>().prop_map(|v| Some(IpAddr::V4(Ipv4Addr::from(v)))),
            any::<u128>().prop_map(|v| Some(IpAddr::V6(Ipv6Addr::from(v)))),
        ];
        (
            (
                0u64..4_102_444_800_000,
                any::<bool>(),
                text(),
                any::<String>(),
                ip,
                text(),
            ),
            (
                any::<[u8; 16]>(),
                proptest::collection::vec(any::<String>(), 0..3),
            ),
            (
                any::<u16>(),
                proptest::option::of(any::<u16>()),
                0.0f64..1e6,
                any::<bool>(),
            ),
            (
                any::<(bool, bool)>(),
                proptest::option::of((
                    text(),
                    text(),
                    proptest::collection::vec(any::<String>(), 0..3),
                    text(),
                )),
            ),
        )
            .prop_map(
                |(
                    (millis, ok, principal, resource, source_ip, user_agent),
                    (trace, roles),
                    (http, grpc, latency, refused),
                    ((shadowed, disagreed), explained),
                )| AuditEvent {
                    timestamp: UNIX_EPOCH + Duration::from_millis(millis),
                    event_type: if refused {
                        EventType::Authorization
                    } else {
                        EventType::Access
                    },
                    status: if ok { Status::Success } else { Status::Failure },
                    principal: principal.map(Arc::from),
                    resource,
                    action: Method::PATCH,
                    source_ip,
                    user_agent,
                    trace_id: TraceId::from_bytes(trace),
                    metadata: Metadata {
                        roles: roles.into(),
                        auth_method: refused.then_some("jwt"),
                        layer: refused.then_some("authz"),
                        reason: refused.then_some("authz.permission_denied"),
                        http_status: http,
                        grpc_status: grpc,
                        latency_ms: latency,
                        shadow_refusal: shadowed.then_some(ShadowRefusal {
                            layer: "rate_limit",
                            code: "rate_limit.exceeded",
                        }),
                        shadow_disagreement: disagreed.then_some(Disagreement {
                            layer: "authz",
                            enforced: "allow",
                            candidate: "authz.rego_denied",
                        }),
                        explanation: explained.map(|(rule, required, roles, reason)| Explanation {
                            rule,
                            required,
                            roles,
                            reason,
                        }),
                    },
                },
            )
    }

    proptest! {
        #![proptest_config(crate::fuzz::config())]

        /// The JSON written on the audit path is byte for byte what `serde_json` makes of the
        /// event: one format, whichever way an event is written.
        #[test]
        fn the_fast_json_is_serde_json(event in event()) {
            prop_assert_eq!(event.to_json(), serde_json::to_string(&event).unwrap());
        }
    }
}
