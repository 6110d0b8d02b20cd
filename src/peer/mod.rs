//! Who is at the other end of the connection: its address (or the client a trusted proxy
//! names in `X-Forwarded-For` / `Forwarded`) and, with mutual TLS, the identity in its
//! certificate. Connection facts shared by every layer: serving code records them, producers
//! (certificate principals, certificate-bound tokens) and consumers (rate limits, audit) read
//! them.

#[cfg(feature = "mtls")]
mod identity;

#[cfg(feature = "mtls")]
pub use identity::{CertificateError, PeerIdentity};

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use http::{Extensions, HeaderMap};

/// The TCP peer of a connection, in every request's extensions (put there by
/// [`serve_tls`](crate::mtls::serve_tls)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Reads the connection's peer address from a request's extensions.
pub type PeerAddrFn = fn(&Extensions) -> Option<IpAddr>;

/// The default [`PeerAddrFn`]: the [`PeerAddr`] extension.
#[cfg_attr(
    not(any(feature = "rate-limit", feature = "audit", feature = "authz")),
    allow(dead_code)
)]
pub(crate) fn default_peer_addr(extensions: &Extensions) -> Option<IpAddr> {
    extensions.get::<PeerAddr>().map(|peer| peer.0.ip())
}

/// Whether a URL's host is this machine (`localhost`, `127.0.0.0/8`, `::1`): the only place
/// credentials may travel in plaintext.
#[cfg_attr(not(any(feature = "jwks", feature = "tonic")), allow(dead_code))]
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Where trusted proxies write the address of the client they forward for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: <client>, <proxy>, ...` (the default).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=<client>, for=<proxy>, ...`.
    Forwarded,
}

/// The address as one client: IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) are the IPv4
/// addresses they carry.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The client's address: the peer's, unless the peer is a trusted proxy, in which case the
/// right-most address of the forwarding header that is not itself a trusted proxy. Entries
/// further left were written by the client and prove nothing. Addresses are
/// [canonical](canonical); `trusted_proxies` must hold canonical addresses.
#[cfg_attr(not(feature = "rate-limit"), allow(dead_code))]
pub(crate) fn client_ip(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted_proxies: &HashSet<IpAddr>,
    header: ForwardedHeader,
) -> Option<IpAddr> {
    let peer = canonical(peer?);
    if !trusted_proxies.contains(&peer) {
        return Some(peer);
    }
    let name = match header {
        ForwardedHeader::XForwardedFor => "x-forwarded-for",
        ForwardedHeader::Forwarded => "forwarded",
    };
    let mut client = peer;
    // Several headers are one list, in order; walk it from the right.
    let hops = headers
        .get_all(name)
        .iter()
        .rev()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.rsplit(','));
    for hop in hops {
        let address = match header {
            ForwardedHeader::XForwardedFor => Some(hop),
            ForwardedHeader::Forwarded => forwarded_for(hop),
        };
        match address.and_then(hop_address) {
            Some(ip) => {
                client = ip;
                if !trusted_proxies.contains(&ip) {
                    break;
                }
            }
            // An unreadable hop ends what can be trusted: the last proxy we know of.
            None => break,
        }
    }
    Some(client)
}

/// The `for=` parameter of one `Forwarded` element (`for=192.0.2.60;proto=http`).
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim())
    })
}

/// One hop's address, with or without a port: `192.0.2.1`, `192.0.2.1:8080`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:443`, quoted or not. `None` for anything else (`unknown`,
/// obfuscated identifiers, garbage).
fn hop_address(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim().trim_matches('"');
    let ip = hop
        .parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|a| a.ip()))
        .or_else(|_| {
            hop.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(hop)
                .parse::<IpAddr>()
        })
        .ok()?;
    Some(canonical(ip))
}

/// The key a client's requests are counted under: its IPv4 address, or its IPv6 address cut to
/// the first `v6_prefix` bits (a /64 is what one subscriber gets, so one client).
#[cfg_attr(not(feature = "rate-limit"), allow(dead_code))]
pub(crate) fn client_key(ip: IpAddr, v6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = u128::MAX
                .checked_shl(128 - u32::from(v6_prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6((bits & mask).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies: HashSet<IpAddr> = [ip("10.0.0.1"), ip("10.0.0.2")].into();
        let client = |peer: &str, headers: &HeaderMap| {
            client_ip(
                Some(ip(peer)),
                headers,
                &proxies,
                ForwardedHeader::XForwardedFor,
            )
        };
        let headers = xff("6.6.6.6, 203.0.113.7, 10.0.0.2");
        // Straight from a client: the header is the client's own claim, ignored.
        assert_eq!(client("198.51.100.1", &headers), Some(ip("198.51.100.1")));
        // Through two trusted proxies: the first untrusted hop from the right.
        assert_eq!(client("10.0.0.1", &headers), Some(ip("203.0.113.7")));
        assert_eq!(
            client("10.0.0.1", &xff("junk, 10.0.0.2")),
            Some(ip("10.0.0.2"))
        );
        assert_eq!(client("10.0.0.1", &HeaderMap::new()), Some(ip("10.0.0.1")));
        assert_eq!(
            client_ip(None, &headers, &proxies, ForwardedHeader::XForwardedFor),
            None
        );
        // A proxy seen over IPv6 as a mapped IPv4 address is the same proxy.
        assert_eq!(client("::ffff:10.0.0.1", &headers), Some(ip("203.0.113.7")));
    }

    #[test]
    fn hops_with_ports_brackets_and_quotes_are_read() {
        for (hop, expected) in [
            ("203.0.113.7", "203.0.113.7"),
            ("203.0.113.7:5678", "203.0.113.7"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("\"[2001:db8::1]:443\"", "2001:db8::1"),
            ("::ffff:198.51.100.4", "198.51.100.4"),
        ] {
            assert_eq!(hop_address(hop), Some(ip(expected)), "{hop}");
        }
        for hop in ["unknown", "_hidden", "", "1.2.3", "[::1", "1.2.3.4:port"] {
            assert_eq!(hop_address(hop), None, "{hop}");
        }
    }

    #[test]
    fn rfc_7239_forwarded_is_read_when_chosen() {
        let proxies: HashSet<IpAddr> = [ip("10.0.0.1")].into();
        let mut headers = HeaderMap::new();
        headers.insert(
            "forwarded",
            HeaderValue::from_static(
                "for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\";proto=https;by=10.0.0.1",
            ),
        );
        let client = |headers: &HeaderMap, header| {
            client_ip(Some(ip("10.0.0.1")), headers, &proxies, header)
        };
        assert_eq!(
            client(&headers, ForwardedHeader::Forwarded),
            Some(ip("2001:db8:cafe::17"))
        );
        // Not the header the proxies write: ignored.
        assert_eq!(
            client(&headers, ForwardedHeader::XForwardedFor),
            Some(ip("10.0.0.1"))
        );
        headers.insert("forwarded", HeaderValue::from_static("for=unknown"));
        assert_eq!(
            client(&headers, ForwardedHeader::Forwarded),
            Some(ip("10.0.0.1"))
        );
    }

    proptest::proptest! {
        #![proptest_config(crate::fuzz::config())]

        /// Forwarding headers are the client's text: whatever they hold, the answer is the peer
        /// or an address a hop names, and an untrusted peer is always itself.
        #[test]
        fn any_forwarding_header(
            xff in "[ -~]{0,120}",
            forwarded in "[ -~]{0,120}",
            hops in proptest::collection::vec("[0-9a-f:.\\[\\]]{1,45}", 0..6),
        ) {
            let proxies: HashSet<IpAddr> = [ip("10.0.0.1")].into();
            let mut headers = HeaderMap::new();
            for (name, value) in [
                ("x-forwarded-for", xff.clone()),
                ("forwarded", forwarded),
                ("x-forwarded-for", hops.join(", ")),
            ] {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.append(name, value);
                }
            }
            for header in [ForwardedHeader::XForwardedFor, ForwardedHeader::Forwarded] {
                let client = client_ip(Some(ip("10.0.0.1")), &headers, &proxies, header);
                proptest::prop_assert!(client.is_some());
                let direct = client_ip(Some(ip("192.0.2.1")), &headers, &proxies, header);
                proptest::prop_assert_eq!(direct, Some(ip("192.0.2.1")));
            }
        }
    }

    #[test]
    fn ipv6_clients_are_keyed_by_prefix() {
        assert_eq!(client_key(ip("2001:db8::1"), 64), ip("2001:db8::"));
        assert_eq!(
            client_key(ip("2001:db8::1"), 64),
            client_key(ip("2001:db8::ffff:1"), 64)
        );
        assert_ne!(
            client_key(ip("2001:db8::1"), 64),
            client_key(ip("2001:db8:0:1::1"), 64)
        );
        assert_eq!(client_key(ip("2001:db8::1"), 128), ip("2001:db8::1"));
        assert_eq!(client_key(ip("2001:db8::1"), 0), ip("::"));
        assert_eq!(client_key(ip("198.51.100.4"), 64), ip("198.51.100.4"));
    }
}
