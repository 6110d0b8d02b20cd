//! The audit event's JSON, written straight into a buffer: the same bytes `serde_json` makes
//! of an [`AuditEvent`](super::AuditEvent) (a test holds them equal), at a fraction of the cost,
//! since the audit writer formats one event per request.

use std::cell::Cell;
use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::event::{EventType, Status, TraceId};
use crate::decision::{Disagreement, Explanation, ShadowRefusal};

/// An event's fields, borrowed from an [`AuditEvent`](super::AuditEvent) or an
/// [`AuditRecord`](super::AuditRecord).
pub(crate) struct Fields<'a> {
    pub(crate) timestamp: SystemTime,
    pub(crate) event_type: EventType,
    pub(crate) status: Status,
    pub(crate) principal: Option<&'a str>,
    /// The same, shared, for making an [`AuditEvent`](super::AuditEvent) without a copy.
    pub(crate) shared_principal: Option<&'a Arc<str>>,
    pub(crate) resource: &'a str,
    pub(crate) action: &'a str,
    pub(crate) source_ip: Option<IpAddr>,
    pub(crate) user_agent: Option<&'a str>,
    pub(crate) trace_id: TraceId,
    pub(crate) roles: &'a Arc<[String]>,
    pub(crate) auth_method: Option<&'static str>,
    pub(crate) layer: Option<&'static str>,
    pub(crate) reason: Option<&'static str>,
    pub(crate) http_status: u16,
    pub(crate) grpc_status: Option<u16>,
    pub(crate) latency_ms: f64,
    pub(crate) shadow_refusal: Option<ShadowRefusal>,
    pub(crate) shadow_disagreement: Option<Disagreement>,
    pub(crate) explanation: Option<&'a Explanation>,
}

impl Fields<'_> {
    /// Appends the event as one JSON object (no newline).
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"timestamp\":\"");
        out.extend_from_slice(&rfc3339(self.timestamp));
        out.extend_from_slice(b"\",\"event_type\":\"");
        out.extend_from_slice(self.event_type.as_str().as_bytes());
        out.extend_from_slice(b"\",\"status\":\"");
        out.extend_from_slice(self.status.as_str().as_bytes());
        out.extend_from_slice(b"\",\"principal\":");
        optional_string(out, self.principal);
        out.extend_from_slice(b",\"resource\":");
        string(out, self.resource);
        out.extend_from_slice(b",\"action\":");
        string(out, self.action);
        out.extend_from_slice(b",\"source_ip\":");
        match self.source_ip {
            None => out.extend_from_slice(b"null"),
            Some(IpAddr::V4(ip)) => {
                out.push(b'"');
                for (i, octet) in ip.octets().into_iter().enumerate() {
                    if i > 0 {
                        out.push(b'.');
                    }
                    out.extend_from_slice(itoa::Buffer::new().format(octet).as_bytes());
                }
                out.push(b'"');
            }
            // Never fails: the buffer grows.
            Some(ip @ IpAddr::V6(_)) => drop(write!(out, "\"{ip}\"")),
        }
        out.extend_from_slice(b",\"user_agent\":");
        optional_string(out, self.user_agent);
        out.extend_from_slice(b",\"trace_id\":\"");
        out.extend_from_slice(&self.trace_id.to_hex());
        out.extend_from_slice(b"\",\"metadata\":{\"roles\":");
        strings(out, self.roles);
        out.extend_from_slice(b",\"auth_method\":");
        optional_string(out, self.auth_method);
        out.extend_from_slice(b",\"layer\":");
        optional_string(out, self.layer);
        out.extend_from_slice(b",\"reason\":");
        optional_string(out, self.reason);
        out.extend_from_slice(b",\"http_status\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.http_status).as_bytes());
        out.extend_from_slice(b",\"grpc_status\":");
        match self.grpc_status {
            None => out.extend_from_slice(b"null"),
            Some(status) => out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes()),
        }
        out.extend_from_slice(b",\"latency_ms\":");
        if self.latency_ms.is_finite() {
            out.extend_from_slice(ryu::Buffer::new().format_finite(self.latency_ms).as_bytes());
        } else {
            out.extend_from_slice(b"null");
        }
        if let Some(refusal) = self.shadow_refusal {
            out.extend_from_slice(b",\"shadow_refusal\":{\"layer\":");
            string(out, refusal.layer);
            out.extend_from_slice(b",\"code\":");
            string(out, refusal.code);
            out.push(b'}');
        }
        if let Some(disagreement) = self.shadow_disagreement {
            out.extend_from_slice(b",\"shadow_disagreement\":{\"layer\":");
            string(out, disagreement.layer);
            out.extend_from_slice(b",\"enforced\":");
            string(out, disagreement.enforced);
            out.extend_from_slice(b",\"candidate\":");
            string(out, disagreement.candidate);
            out.push(b'}');
        }
        if let Some(explanation) = self.explanation {
            out.extend_from_slice(b",\"explanation\":{\"rule\":");
            optional_string(out, explanation.rule.as_deref());
            out.extend_from_slice(b",\"required\":");
            optional_string(out, explanation.required.as_deref());
            out.extend_from_slice(b",\"roles\":");
            strings(out, &explanation.roles);
            out.extend_from_slice(b",\"reason\":");
            optional_string(out, explanation.reason.as_deref());
            out.push(b'}');
        }
        out.extend_from_slice(b"}}");
    }
}

fn strings(out: &mut Vec<u8>, values: &[String]) {
    out.push(b'[');
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, value);
    }
    out.push(b']');
}

fn optional_string(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => out.extend_from_slice(b"null"),
        Some(value) => string(out, value),
    }
}

/// A JSON string: quotes, backslashes and control characters escaped as `serde_json` does.
fn string(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    // Ids, paths and role names rarely hold a character to escape: copy them whole.
    if !bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\') {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    out.push(b'"');
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(b"\\u00");
                out.extend_from_slice(&[HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `bytes` as lowercase hex.
pub(crate) fn hex<const N: usize, const M: usize>(bytes: &[u8; N]) -> [u8; M] {
    debug_assert_eq!(M, 2 * N);
    let mut out = [0u8; M];
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
    out
}

/// `2024-01-15T10:30:00.123Z`: RFC 3339, UTC, milliseconds.
pub(crate) fn rfc3339(time: SystemTime) -> [u8; 24] {
    // Events come many to a second: each thread works the date and time out once a second.
    thread_local! {
        static LAST: Cell<Option<(u64, [u8; 24])>> = const { Cell::new(None) };
    }
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let mut out = LAST.with(|last| match last.get() {
        Some((at, text)) if at == secs => text,
        _ => {
            let text = whole_seconds(secs);
            last.set(Some((secs, text)));
            text
        }
    });
    put_digits(&mut out, 20, 3, u64::from(since.subsec_millis()));
    out
}

/// The timestamp of `secs` after the epoch, with `.000` milliseconds.
fn whole_seconds(secs: u64) -> [u8; 24] {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = *b"0000-00-00T00:00:00.000Z";
    put_digits(&mut out, 0, 4, year.min(9999));
    put_digits(&mut out, 5, 2, month);
    put_digits(&mut out, 8, 2, day);
    put_digits(&mut out, 11, 2, rest / 3600);
    put_digits(&mut out, 14, 2, rest / 60 % 60);
    put_digits(&mut out, 17, 2, rest % 60);
    out
}

/// Writes the last `width` decimal digits of `value` at `out[at..]`.
fn put_digits(out: &mut [u8; 24], at: usize, width: usize, mut value: u64) {
    for i in (at..at + width).rev() {
        out[i] = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let (era, doe) = (z / 146_097, z % 146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = |secs: u64, millis: u64| {
            let time = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis);
            String::from_utf8(rfc3339(time).to_vec()).unwrap()
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(1_705_314_600, 123), "2024-01-15T10:30:00.123Z");
        assert_eq!(at(951_782_400, 999), "2000-02-29T00:00:00.999Z");
        assert_eq!(at(4_102_444_799, 1), "2099-12-31T23:59:59.001Z");
        // The same second again (the thread's remembered date), the next, one before (a
        // stepped clock), and across midnight.
        assert_eq!(at(1_705_314_600, 1), "2024-01-15T10:30:00.001Z");
        assert_eq!(at(1_705_314_600, 999), "2024-01-15T10:30:00.999Z");
        assert_eq!(at(1_705_314_601, 0), "2024-01-15T10:30:01.000Z");
        assert_eq!(at(1_705_314_600, 500), "2024-01-15T10:30:00.500Z");
        assert_eq!(at(1_705_363_199, 999), "2024-01-15T23:59:59.999Z");
        assert_eq!(at(1_705_363_200, 0), "2024-01-16T00:00:00.000Z");
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for text in [
            "",
            "plain",
            "q\"uote",
            "back\\slash",
            "\n\r\t\u{8}\u{c}",
            "\u{1}\u{1f}\u{7f}",
            "é 漢 🦀",
        ] {
            let mut out = Vec::new();
            string(&mut out, text);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(text).unwrap()
            );
        }
    }
}
