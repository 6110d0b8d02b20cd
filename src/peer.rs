//! Which address a request comes from: the connection's peer, or the client a trusted proxy
//! names in `X-Forwarded-For`.

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
#[cfg_attr(not(any(feature = "rate-limit", feature = "audit")), allow(dead_code))]
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

/// The client's address: the peer's, unless the peer is a trusted proxy, in which case the
/// right-most address of `X-Forwarded-For` that is not itself a trusted proxy. Entries further
/// left were written by the client and prove nothing.
#[cfg_attr(not(feature = "rate-limit"), allow(dead_code))]
pub(crate) fn client_ip(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted_proxies: &HashSet<IpAddr>,
) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted_proxies.contains(&peer) {
        return Some(peer);
    }
    let mut client = peer;
    // Several headers are one list, in order; walk it from the right.
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .rev()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.rsplit(','));
    for hop in hops {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !trusted_proxies.contains(&ip) {
                    break;
                }
            }
            // An unreadable hop ends what can be trusted: the last proxy we know of.
            Err(_) => break,
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies: HashSet<IpAddr> = [ip("10.0.0.1"), ip("10.0.0.2")].into();
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.7, 10.0.0.2"),
        );
        // Straight from a client: the header is the client's own claim, ignored.
        assert_eq!(
            client_ip(Some(ip("198.51.100.1")), &headers, &proxies),
            Some(ip("198.51.100.1"))
        );
        // Through two trusted proxies: the first untrusted hop from the right.
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), &headers, &proxies),
            Some(ip("203.0.113.7"))
        );
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("junk, 10.0.0.2"),
        );
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), &headers, &proxies),
            Some(ip("10.0.0.2"))
        );
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), &HeaderMap::new(), &proxies),
            Some(ip("10.0.0.1"))
        );
        assert_eq!(client_ip(None, &headers, &proxies), None);
    }
}
