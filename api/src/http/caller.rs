//! Who is calling: the `Authorization` header and the source address that the abuse limits
//! count by (contract §10). Behind an ingress, the address comes from `X-Forwarded-For`, but
//! only when the direct peer is one of `CIBA_TRUSTED_PROXIES`; otherwise anyone could name
//! any address there and escape the limit.

use crate::http::tls::PeerCert;
use ciba_domain::audit::Origin;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use warp::http::HeaderMap;
use warp::{Filter, Rejection};

#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub authorization: Option<String>,
    /// The client's address as far as trusted hops tell; `None` when unknown (in-process
    /// requests), which no per-address limit counts.
    pub source: Option<IpAddr>,
    /// The client certificate of the connection, or from a trusted proxy (contract §11).
    pub cert: Option<PeerCert>,
    /// This request's id, as the audit trail records it.
    pub request_id: RequestId,
}

impl Caller {
    /// Where this request came from, for the audit trail.
    pub fn origin(&self) -> Origin {
        Origin {
            source: self.source.map(|s| s.to_string()),
            request_id: Some(self.request_id.get().to_owned()),
        }
    }
}

/// A request's id (UUID v7), made when first asked for: only a request that leaves an audit
/// event needs one, so a poll that does not costs no id.
#[derive(Debug, Clone, Default)]
pub struct RequestId(std::sync::OnceLock<String>);

impl RequestId {
    pub fn get(&self) -> &str {
        self.0.get_or_init(|| uuid::Uuid::now_v7().to_string())
    }
}

/// The client's address as the server loop worked it out ([`client_address`]).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

/// A header that is not text is rejected (400), as before this filter existed.
pub fn caller() -> impl Filter<Extract = (Caller,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and(warp::ext::optional::<ClientAddr>())
        .and(warp::ext::optional::<PeerCert>())
        .map(
            |authorization, source: Option<ClientAddr>, cert: Option<PeerCert>| Caller {
                authorization,
                source: source.map(|s| s.0),
                cert,
                request_id: RequestId::default(),
            },
        )
}

/// [`client_address`] of a request: every `X-Forwarded-For` line, in order, counts (a proxy
/// may add a line of its own rather than extend the client's).
pub fn of_request(peer: IpAddr, headers: &HeaderMap, proxies: &[IpNet]) -> IpAddr {
    let lines = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    client_address(peer, lines, proxies)
}

/// Is `ip` one of the proxies whose `X-Forwarded-For` is believed?
pub fn trusted(ip: IpAddr, proxies: &[IpNet]) -> bool {
    let ip = canonical(ip);
    proxies.iter().any(|n| n.contains(&ip))
}

/// IPv4-mapped IPv6 addresses (a dual-stack socket's view of IPv4 peers) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One `X-Forwarded-For` element: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(canonical)
}

/// The client's address: the direct peer, unless it is a trusted proxy; then the nearest
/// hop of `X-Forwarded-For` (its lines in order, each read from the right) that is not a
/// trusted proxy itself. The header is not looked at for any other peer.
pub fn client_address<'a>(
    peer: IpAddr,
    forwarded: impl IntoIterator<Item = &'a str>,
    proxies: &[IpNet],
) -> IpAddr {
    let peer = canonical(peer);
    if !trusted(peer, proxies) {
        return peer;
    }
    let hops: Vec<&str> = forwarded.into_iter().flat_map(|l| l.split(',')).collect();
    let mut nearest = peer;
    for hop in hops.into_iter().rev() {
        match parse_hop(hop) {
            Some(ip) if trusted(ip, proxies) => nearest = ip,
            Some(ip) => return ip,
            // A hop the proxy did not write well: stop at the last address we can believe.
            None => return nearest,
        }
    }
    nearest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn an_untrusted_peer_cannot_name_another_address() {
        let proxies = nets(&["10.0.0.0/8"]);
        // The attacker connects directly and claims to be someone else: ignored.
        assert_eq!(
            client_address(ip("203.0.113.9"), ["198.51.100.1"], &proxies),
            ip("203.0.113.9")
        );
        // No proxies configured: the header is never read.
        assert_eq!(
            client_address(ip("10.0.0.5"), ["198.51.100.1"], &[]),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn a_trusted_proxy_names_the_client() {
        let proxies = nets(&["10.0.0.0/8", "192.0.2.1/32"]);
        assert_eq!(
            client_address(ip("10.1.2.3"), ["198.51.100.7"], &proxies),
            ip("198.51.100.7")
        );
        // A spoofed element on the left, then two trusted hops: the first untrusted from
        // the right is the client the proxy saw.
        assert_eq!(
            client_address(
                ip("10.1.2.3"),
                ["6.6.6.6, 198.51.100.7, 192.0.2.1"],
                &proxies
            ),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_address(ip("10.1.2.3"), ["[2001:db8::1]:443"], &proxies),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_address(ip("::ffff:10.1.2.3"), ["198.51.100.8:1234"], &proxies),
            ip("198.51.100.8")
        );
        // Garbage from the proxy: the proxy itself is the best we know.
        assert_eq!(
            client_address(ip("10.1.2.3"), ["not-an-ip"], &proxies),
            ip("10.1.2.3")
        );
    }

    #[test]
    fn every_forwarded_line_counts() {
        let proxies = nets(&["10.0.0.0/8"]);
        // The attacker's own line first, the proxy's line (the real client) after it.
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "6.6.6.6".parse().unwrap());
        h.append("x-forwarded-for", "198.51.100.7".parse().unwrap());
        assert_eq!(of_request(ip("10.0.0.1"), &h, &proxies), ip("198.51.100.7"));
        assert_eq!(
            of_request(ip("203.0.113.1"), &h, &proxies),
            ip("203.0.113.1")
        );
        assert_eq!(
            of_request(ip("10.0.0.1"), &HeaderMap::new(), &proxies),
            ip("10.0.0.1")
        );
    }
}
