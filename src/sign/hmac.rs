use std::fmt;

use hmac::Mac;
use http::{HeaderMap, HeaderName, HeaderValue, Request};

use crate::clock::{Clock, SystemClock};
use crate::env::{self, Env};
use crate::error::ConfigError;
use crate::hmac::{
    Fields, NONCE, SERVICE_ID, SIGNATURE, SIGNATURE_PREFIX, SigningKey, TIMESTAMP, is_valid_field,
};

/// Signs requests as one service, with one secret.
///
/// Cheap to clone. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct HmacSigner {
    service_id: String,
    key: SigningKey,
}

impl HmacSigner {
    /// A signer for `service_id` with `secret` (at least 32 bytes).
    ///
    /// # Errors
    ///
    /// A service id that is not 1 to 128 visible ASCII characters without `:`, or a secret
    /// shorter than 32 bytes.
    pub fn new(service_id: &str, secret: &str) -> Result<Self, ConfigError> {
        if !is_valid_field(service_id) {
            return Err(ConfigError::Invalid {
                what: "service id",
                reason: format!(
                    "{service_id:?}: 1 to 128 visible ASCII characters without ':' are required"
                ),
            });
        }
        Ok(Self {
            service_id: service_id.to_owned(),
            key: SigningKey::new("secret", secret)?,
        })
    }

    /// A signer from `SERVICE_ID` and `SERVICE_SECRET`, as services using this scheme configure it.
    ///
    /// # Errors
    ///
    /// A variable that is unset or invalid, as in [`new`](Self::new).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::read_env(&Env::process())
    }

    fn read_env(env: &Env) -> Result<Self, ConfigError> {
        let service_id = env.required("SERVICE_ID")?;
        let secret = env.required("SERVICE_SECRET")?;
        if !is_valid_field(&service_id) {
            return Err(env::invalid(
                "SERVICE_ID",
                "1 to 128 visible ASCII characters without ':' are required",
            ));
        }
        SigningKey::new("SERVICE_SECRET", &secret).map(|key| Self { service_id, key })
    }

    /// The id this signer signs as.
    pub fn service_id(&self) -> &str {
        &self.service_id
    }

    /// Signs `method` and `path` now, with a fresh 128-bit random nonce.
    ///
    /// `path` is the path as it will be sent: percent-encoded, without the query string.
    pub fn sign(&self, method: &str, path: &str) -> SignedHeaders {
        let timestamp = SystemClock.now_millis() / 1000;
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        self.sign_fields(method, path, timestamp, nonce)
    }

    /// Signs with a given timestamp and nonce: for test vectors and interoperability checks.
    ///
    /// # Errors
    ///
    /// A nonce that is not 1 to 128 visible ASCII characters without `:`.
    pub fn sign_at(
        &self,
        method: &str,
        path: &str,
        timestamp: u64,
        nonce: &str,
    ) -> Result<SignedHeaders, ConfigError> {
        if !is_valid_field(nonce) {
            return Err(ConfigError::Invalid {
                what: "nonce",
                reason: "1 to 128 visible ASCII characters without ':' are required".into(),
            });
        }
        Ok(self.sign_fields(method, path, timestamp, nonce.to_owned()))
    }

    /// Adds the four headers to `request`, replacing any already there.
    pub fn sign_request<B>(&self, request: &mut Request<B>) {
        let signed = self.sign(request.method().as_str(), request.uri().path());
        signed.apply_to(request.headers_mut());
    }

    fn sign_fields(
        &self,
        method: &str,
        path: &str,
        timestamp: u64,
        nonce: String,
    ) -> SignedHeaders {
        let timestamp = timestamp.to_string();
        let mut mac = self.key.mac();
        Fields {
            service_id: &self.service_id,
            timestamp: &timestamp,
            nonce: &nonce,
            method,
            path,
        }
        .feed(&mut mac);
        let signature = format!(
            "{SIGNATURE_PREFIX}{}",
            hex::encode(mac.finalize().into_bytes())
        );
        SignedHeaders {
            service_id: self.service_id.clone(),
            timestamp,
            nonce,
            signature,
        }
    }
}

impl fmt::Debug for HmacSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacSigner")
            .field("service_id", &self.service_id)
            .field("key", &self.key)
            .finish()
    }
}

/// The four headers of one signed request. Its `Debug` hides the signature, which is a
/// credential until its nonce is spent.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    service_id: String,
    timestamp: String,
    nonce: String,
    signature: String,
}

impl fmt::Debug for SignedHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedHeaders")
            .field("service_id", &self.service_id)
            .field("timestamp", &self.timestamp)
            .field("nonce", &self.nonce)
            .field("signature", &"<redacted>")
            .finish()
    }
}

impl SignedHeaders {
    /// `X-Service-ID`.
    pub fn service_id(&self) -> &str {
        &self.service_id
    }

    /// `X-Timestamp`.
    pub fn timestamp(&self) -> &str {
        &self.timestamp
    }

    /// `X-Nonce`.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// `X-Signature`: `sha256=<lowercase hex>`.
    pub fn signature(&self) -> &str {
        &self.signature
    }

    /// `(name, value)` pairs, for clients that do not use the `http` crate.
    pub fn iter(&self) -> impl Iterator<Item = (HeaderName, &str)> {
        [
            (SERVICE_ID, self.service_id.as_str()),
            (TIMESTAMP, self.timestamp.as_str()),
            (NONCE, self.nonce.as_str()),
            (SIGNATURE, self.signature.as_str()),
        ]
        .into_iter()
    }

    /// Inserts the headers, replacing any already there. The signature is marked sensitive,
    /// so HTTP/2 never indexes it.
    pub fn apply_to(&self, headers: &mut HeaderMap) {
        for (name, value) in self.iter() {
            // Every field was checked to be visible ASCII when it was made.
            if let Ok(mut value) = HeaderValue::from_str(value) {
                value.set_sensitive(name == SIGNATURE);
                headers.insert(name, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signer_names_the_variable_to_fix() {
        let secret = ("SERVICE_SECRET", "0123456789abcdef0123456789abcdef");
        let read = |pairs: &[(&str, &str)]| HmacSigner::read_env(&Env::from_pairs(pairs));
        assert!(
            matches!(read(&[secret]), Err(ConfigError::MissingEnv(name)) if name == "SERVICE_ID")
        );
        let bad_id = read(&[secret, ("SERVICE_ID", "a:b")]);
        assert!(
            matches!(bad_id, Err(ConfigError::InvalidEnv { name, .. }) if name == "SERVICE_ID")
        );
        assert_eq!(
            read(&[secret, ("SERVICE_ID", "gateway")])
                .unwrap()
                .service_id(),
            "gateway"
        );
    }
}
