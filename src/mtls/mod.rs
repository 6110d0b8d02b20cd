//! Mutual TLS: the client's certificate is its identity.
//!
//! * [`TlsConfig`] builds rustls server and client configurations from PEM (a chain, its key,
//!   the private CA): clients must present a certificate signed by the CA.
//! * [`serve_tls`] serves any `tower` HTTP service over TLS and puts the connection's
//!   [`PeerIdentity`] (subject CN, DNS/IP/URI SANs, SPIFFE ID, serial, expiry, SHA-256
//!   fingerprint) into every request, parsed **once per connection**. It survives hostile
//!   clients: accept errors never stop it, connections are capped, handshakes and header reads
//!   time out ([`TlsServer`] sets the limits).
//! * [`MtlsPrincipalLayer`] turns that identity into a [`Principal`](crate::Principal) by a
//!   rule (CN, SPIFFE ID, first DNS SAN), optionally within one SPIFFE trust domain, with roles
//!   from a name → roles map.
//!
//! # Security considerations
//!
//! * Identity comes from the handshake, so it is only as good as the CA: keep the CA private
//!   and its key offline, and issue short-lived certificates.
//! * Behind a TLS-terminating proxy there is no client certificate here; do not trust headers
//!   such as `X-Client-Cert` unless the proxy strips them from clients.

#[cfg(feature = "certgen")]
mod certgen;
mod config;
mod principal;
mod reload;
mod serve;
mod v1;

pub use crate::peer::PeerAddr;
pub use crate::peer::{CertificateError, PeerIdentity};
#[cfg(feature = "certgen")]
pub use certgen::{CertificateAuthority, IssuedCertificate};
pub use config::{TlsConfig, TlsConfigBuilder};
pub use principal::{
    IdentityRule, MtlsPrincipal, MtlsPrincipalConfig, MtlsPrincipalConfigBuilder,
    MtlsPrincipalLayer, ResponseFuture,
};
pub use reload::{ReloadingServerConfig, ServerConfigSource};
pub use serve::{TlsServer, serve_tls};
