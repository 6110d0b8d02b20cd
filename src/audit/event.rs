//! The audit event: one JSON object per request (`timestamp`, `event_type`, `status`, ...).

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Method;
use serde::{Serialize, Serializer};

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

    /// A random trace id.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// Its bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl Serialize for TraceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The roles of an event without a principal, shared.
pub(crate) static NO_ROLES: LazyLock<Arc<[String]>> = LazyLock::new(|| Arc::from(Vec::new()));

impl AuditEvent {
    /// The event as one line of JSON (no newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an audit event is always serializable")
    }
}

fn as_method<S: Serializer>(method: &Method, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(method.as_str())
}

fn as_rfc3339<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&Rfc3339(*time))
}

/// Writes `2024-01-15T10:30:00.123Z`.
struct Rfc3339(SystemTime);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let since = self.0.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let secs = since.as_secs();
        let (days, rest) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil_from_days(days as i64);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            rest / 3600,
            rest / 60 % 60,
            rest % 60,
            since.subsec_millis()
        )
    }
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = |secs: u64, millis: u64| {
            Rfc3339(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
                .to_string()
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(1_705_314_600, 0), "2024-01-15T10:30:00.000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.007Z");
        assert_eq!(at(4_102_444_799, 999), "2099-12-31T23:59:59.999Z");
    }
}
