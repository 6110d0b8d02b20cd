//! The string to sign, shared by the verifier and the signer so that they can never disagree.
//!
//! `"{service_id}:{timestamp}:{nonce}:{METHOD}:{path}"`, keyed with the bytes of the secret
//! string, HMAC-SHA256, sent as `sha256=<lowercase hex>`: byte for byte what the Python services
//! of our users compute.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// The prefix of the `X-Signature` value.
pub(crate) const SIGNATURE_PREFIX: &str = "sha256=";
/// Longest accepted service id and nonce, in bytes.
pub(crate) const MAX_FIELD_LEN: usize = 128;
/// Longest accepted timestamp, in digits (u64 has 20).
pub(crate) const MAX_TIMESTAMP_LEN: usize = 20;

/// The fields a signature covers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields<'a> {
    pub(crate) service_id: &'a str,
    pub(crate) timestamp: &'a str,
    pub(crate) nonce: &'a str,
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
}

impl Fields<'_> {
    /// Feeds the string to sign into a keyed MAC. Typical messages are assembled on the
    /// stack and fed in one call, which is much cheaper than nine small updates; longer ones
    /// (long paths) are fed piece by piece.
    pub(crate) fn feed(&self, mac: &mut HmacSha256) {
        let parts = [
            self.service_id,
            self.timestamp,
            self.nonce,
            self.method,
            self.path,
        ];
        let mut buf = [0u8; 256];
        let len = parts.iter().map(|p| p.len()).sum::<usize>() + parts.len() - 1;
        if len <= buf.len() {
            let mut at = 0;
            for (i, part) in parts.into_iter().enumerate() {
                if i > 0 {
                    buf[at] = b':';
                    at += 1;
                }
                buf[at..at + part.len()].copy_from_slice(part.as_bytes());
                at += part.len();
            }
            mac.update(&buf[..len]);
        } else {
            for (i, part) in parts.into_iter().enumerate() {
                if i > 0 {
                    mac.update(b":");
                }
                mac.update(part.as_bytes());
            }
        }
    }

    /// The string to sign, as text.
    pub(crate) fn to_message(self) -> String {
        format!(
            "{}:{}:{}:{}:{}",
            self.service_id, self.timestamp, self.nonce, self.method, self.path
        )
    }
}

/// The string an HMAC signature covers: `"{service_id}:{timestamp}:{nonce}:{method}:{path}"`.
///
/// `path` is the request path exactly as sent on the wire: percent-encoding kept, no query
/// string, no normalisation. Useful to debug a client written in another language.
///
/// ```
/// assert_eq!(
///     tower_zerotrust::hmac::string_to_sign("gateway", 1708167234, "a3f9b2c1", "POST", "/execute"),
///     "gateway:1708167234:a3f9b2c1:POST:/execute",
/// );
/// ```
pub fn string_to_sign(
    service_id: &str,
    timestamp: u64,
    nonce: &str,
    method: &str,
    path: &str,
) -> String {
    Fields {
        service_id,
        timestamp: &timestamp.to_string(),
        nonce,
        method,
        path,
    }
    .to_message()
}

/// Whether a service id or nonce can be signed unambiguously: 1 to 128 bytes of visible ASCII
/// without `:`. With `:` banned from both (and the timestamp all digits, the method a token),
/// the string to sign splits back into its fields in exactly one way.
pub(crate) fn is_valid_field(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_FIELD_LEN
        && value.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

/// A keyed MAC for a secret string, its key schedule computed once.
pub(crate) fn keyed_mac(secret: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_4231_vectors_pin_the_primitive() {
        let vectors: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/rfc4231-hmac-sha256.json"
        ))
        .unwrap();
        for case in vectors["cases"].as_array().unwrap() {
            let bytes = |k: &str| hex::decode(case[k].as_str().unwrap()).unwrap();
            let mut mac = keyed_mac(&bytes("key_hex"));
            mac.update(&bytes("data_hex"));
            assert_eq!(
                mac.finalize().into_bytes()[..],
                bytes("hmac_sha256_hex")[..]
            );
        }
    }

    #[test]
    fn fields_with_colons_are_refused() {
        assert!(is_valid_field("gateway"));
        assert!(is_valid_field("rag-service"));
        assert!(!is_valid_field("evil:1"));
        assert!(!is_valid_field(""));
        assert!(!is_valid_field("with space"));
        assert!(!is_valid_field(&"x".repeat(MAX_FIELD_LEN + 1)));
    }

    #[test]
    fn fed_message_equals_text_message_short_and_long() {
        let long_path = format!("/{}", "p".repeat(400));
        for path in ["/execute", long_path.as_str()] {
            let fields = Fields {
                service_id: "gateway",
                timestamp: "1708167234",
                nonce: "a3f9b2c1",
                method: "POST",
                path,
            };
            let mut fed = keyed_mac(b"k");
            fields.feed(&mut fed);
            let mut whole = keyed_mac(b"k");
            whole.update(fields.to_message().as_bytes());
            assert_eq!(fed.finalize().into_bytes(), whole.finalize().into_bytes());
        }
    }
}
