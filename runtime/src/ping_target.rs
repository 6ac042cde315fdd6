//! Where ping notifications may go: the rule a notification endpoint must follow, checked
//! when a client is registered (`ciba-api admin clients create`) and again by the worker at
//! delivery, on the URL and on every address it is about to connect to.
//!
//! * `https` only. Plain `http` is allowed only to a loopback host, and only with
//!   `CIBA_ALLOW_INSECURE_CALLBACKS=true` (development).
//! * No address that reaches this network instead of a merchant's: private, loopback,
//!   link-local (169.254.169.254, the cloud metadata service, among them), unspecified,
//!   broadcast, multicast, shared (CGNAT), reserved, and the IPv6 forms that embed such an
//!   IPv4 address. `CIBA_PING_ALLOWED_NETWORKS` lists networks allowed anyway; the insecure
//!   flag allows loopback.

use crate::config::WorkerSettings;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What a refused address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    Loopback,
    Private,
    LinkLocal,
    Unspecified,
    Broadcast,
    Multicast,
    SharedCgnat,
    Reserved,
}

impl Special {
    pub fn as_str(self) -> &'static str {
        match self {
            Special::Loopback => "loopback",
            Special::Private => "private",
            Special::LinkLocal => "link-local",
            Special::Unspecified => "unspecified",
            Special::Broadcast => "broadcast",
            Special::Multicast => "multicast",
            Special::SharedCgnat => "shared (CGNAT)",
            Special::Reserved => "reserved",
        }
    }
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

const fn v6(hi: u16, second: u16, len: u8) -> Ipv6Net {
    Ipv6Net::new_assert(Ipv6Addr::new(hi, second, 0, 0, 0, 0, 0, 0), len)
}

const V4: [(Ipv4Net, Special); 13] = [
    (v4(0, 0, 0, 0, 8), Special::Unspecified),
    (v4(10, 0, 0, 0, 8), Special::Private),
    (v4(100, 64, 0, 0, 10), Special::SharedCgnat),
    (v4(127, 0, 0, 0, 8), Special::Loopback),
    (v4(169, 254, 0, 0, 16), Special::LinkLocal),
    (v4(172, 16, 0, 0, 12), Special::Private),
    (v4(192, 0, 0, 0, 24), Special::Reserved),
    (v4(192, 168, 0, 0, 16), Special::Private),
    (v4(198, 18, 0, 0, 15), Special::Reserved),
    (v4(224, 0, 0, 0, 4), Special::Multicast),
    (v4(255, 255, 255, 255, 32), Special::Broadcast),
    (v4(240, 0, 0, 0, 4), Special::Reserved),
    (v4(192, 88, 99, 0, 24), Special::Reserved),
];

const V6: [(Ipv6Net, Special); 8] = [
    (
        Ipv6Net::new_assert(Ipv6Addr::UNSPECIFIED, 128),
        Special::Unspecified,
    ),
    (
        Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128),
        Special::Loopback,
    ),
    // Discard-only, and local-use NAT64 (whatever it translates to is on this network).
    (v6(0x0100, 0, 64), Special::Reserved),
    (
        Ipv6Net::new_assert(Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48),
        Special::Reserved,
    ),
    (v6(0xfc00, 0, 7), Special::Private),
    (v6(0xfe80, 0, 10), Special::LinkLocal),
    (v6(0xfec0, 0, 10), Special::Private),
    (v6(0xff00, 0, 8), Special::Multicast),
];

/// The IPv4 address an IPv6 address stands for, where it embeds one: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), well-known NAT64 (`64:ff9b::a.b.c.d`)
/// and 6to4 (`2002:aabb:ccdd::`).
pub fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let o = ip.octets();
    let low = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if let Some(mapped) = ip.to_ipv4_mapped() {
        return Some(mapped);
    }
    if s[..6] == [0; 6] && !(ip.is_unspecified() || ip.is_loopback()) {
        return Some(low);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(low);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

/// The special use of `ip`, or `None` for an ordinary public address.
pub fn special_use(ip: IpAddr) -> Option<Special> {
    match ip {
        IpAddr::V4(a) => V4.iter().find(|(n, _)| n.contains(&a)).map(|(_, s)| *s),
        IpAddr::V6(a) => match embedded_v4(a) {
            Some(inner) => special_use(IpAddr::V4(inner)),
            None => V6.iter().find(|(n, _)| n.contains(&a)).map(|(_, s)| *s),
        },
    }
}

/// The delivery policy for notification endpoints, from the worker settings.
#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    allowed: Vec<IpNet>,
    allow_insecure: bool,
}

impl TargetPolicy {
    pub fn new(allowed: Vec<IpNet>, allow_insecure: bool) -> Self {
        Self {
            allowed,
            allow_insecure,
        }
    }

    pub fn from_settings(s: &WorkerSettings) -> Self {
        Self::new(s.ping_allowed_networks.clone(), s.allow_insecure_callbacks)
    }

    /// Whether a notification may be sent to `ip`; the reason when not.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        let inner = match ip {
            IpAddr::V6(a) => embedded_v4(a).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let listed = |a: IpAddr| self.allowed.iter().any(|n| n.contains(&a));
        if listed(ip) || inner.is_some_and(listed) {
            return Ok(());
        }
        match special_use(ip) {
            None => Ok(()),
            Some(Special::Loopback) if self.allow_insecure => Ok(()),
            Some(kind) => Err(format!(
                "{ip} is a {} address (not in CIBA_PING_ALLOWED_NETWORKS)",
                kind.as_str()
            )),
        }
    }

    /// Check a notification endpoint: the scheme rule, and the address when the host is an
    /// IP literal (names are checked on the addresses they resolve to, at delivery).
    pub fn check_url(&self, raw: &str) -> Result<(), String> {
        let url = url::Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
        let host = url.host().ok_or("the URL has no host")?;
        if url.fragment().is_some() {
            return Err("the URL must not have a fragment".into());
        }
        let ip = match host {
            url::Host::Ipv4(a) => Some(IpAddr::V4(a)),
            url::Host::Ipv6(a) => Some(IpAddr::V6(a)),
            url::Host::Domain(_) => None,
        };
        match url.scheme() {
            "https" => {}
            "http" if !self.allow_insecure => {
                return Err("must be an https URL (plain http only to a loopback host, \
                            with CIBA_ALLOW_INSECURE_CALLBACKS=true)"
                    .into())
            }
            "http" => {
                let loopback = match ip {
                    Some(a) => special_use(a) == Some(Special::Loopback),
                    None => url.host_str() == Some("localhost"),
                };
                if !loopback {
                    return Err("plain http is allowed only to a loopback host; use https".into());
                }
            }
            _ => return Err("must be an https URL".into()),
        }
        match ip {
            Some(a) => self.check_ip(a),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::{parse_flag, parse_networks};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn strict() -> TargetPolicy {
        TargetPolicy::default()
    }

    #[test]
    fn internal_addresses_are_refused() {
        for (a, kind) in [
            ("127.0.0.1", Special::Loopback),
            ("127.8.9.10", Special::Loopback),
            ("::1", Special::Loopback),
            ("::ffff:127.0.0.1", Special::Loopback),
            ("10.1.2.3", Special::Private),
            ("172.16.0.1", Special::Private),
            ("172.31.255.255", Special::Private),
            ("192.168.1.1", Special::Private),
            ("fc00::1", Special::Private),
            ("fd12:3456::1", Special::Private),
            ("::ffff:10.0.0.1", Special::Private),
            ("169.254.169.254", Special::LinkLocal),
            ("::ffff:169.254.169.254", Special::LinkLocal),
            ("fe80::1", Special::LinkLocal),
            ("0.0.0.0", Special::Unspecified),
            ("::", Special::Unspecified),
            ("255.255.255.255", Special::Broadcast),
            ("224.0.0.1", Special::Multicast),
            ("ff02::1", Special::Multicast),
            ("100.64.0.1", Special::SharedCgnat),
            ("100.127.255.254", Special::SharedCgnat),
            // Other ways to spell an internal IPv4 address in IPv6.
            ("::127.0.0.1", Special::Loopback),
            ("64:ff9b::a9fe:a9fe", Special::LinkLocal),
            ("2002:7f00:1::", Special::Loopback),
            ("64:ff9b:1::a00:1", Special::Reserved),
        ] {
            assert_eq!(special_use(ip(a)), Some(kind), "{a}");
            let why = strict().check_ip(ip(a)).unwrap_err();
            assert!(why.contains(kind.as_str()), "{a}: {why}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for a in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2001:4860::8888",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(special_use(ip(a)), None, "{a}");
            assert!(strict().check_ip(ip(a)).is_ok(), "{a}");
        }
    }

    #[test]
    fn allowed_networks_and_the_insecure_flag() {
        let allowed = parse_networks("10.20.0.0/16, fd00::/8,192.168.1.7").unwrap();
        let p = TargetPolicy::new(allowed, false);
        assert!(p.check_ip(ip("10.20.3.4")).is_ok());
        assert!(p.check_ip(ip("::ffff:10.20.3.4")).is_ok());
        assert!(p.check_ip(ip("fd00::5")).is_ok());
        assert!(p.check_ip(ip("192.168.1.7")).is_ok());
        assert!(p.check_ip(ip("192.168.1.8")).is_err());
        assert!(p.check_ip(ip("10.21.0.1")).is_err());
        assert!(p.check_ip(ip("127.0.0.1")).is_err());
        assert!(p.check_ip(ip("169.254.169.254")).is_err());
        // The flag allows loopback, and nothing else.
        let dev = TargetPolicy::new(Vec::new(), true);
        assert!(dev.check_ip(ip("127.0.0.1")).is_ok());
        assert!(dev.check_ip(ip("::1")).is_ok());
        assert!(dev.check_ip(ip("::ffff:127.0.0.1")).is_ok());
        assert!(dev.check_ip(ip("10.0.0.1")).is_err());
        assert!(dev.check_ip(ip("169.254.169.254")).is_err());
        // Allowing the metadata address is possible, but only by listing it.
        let listed = TargetPolicy::new(parse_networks("169.254.169.254/32").unwrap(), false);
        assert!(listed.check_ip(ip("169.254.169.254")).is_ok());
    }

    #[test]
    fn urls_must_be_https_unless_loopback_in_development() {
        let p = strict();
        assert!(p.check_url("https://merchant.example/ping").is_ok());
        assert!(p.check_url("https://8.8.8.8/ping").is_ok());
        for bad in [
            "http://merchant.example/ping",
            "http://127.0.0.1:9000/ping",
            "http://localhost/ping",
            "https://127.0.0.1/ping",
            "https://[::1]/ping",
            "https://[::ffff:7f00:1]/ping",
            "https://169.254.169.254/latest/meta-data",
            "https://0x7f.1/ping",
            "https://10.0.0.1/ping",
            "ftp://merchant.example/ping",
            "https://merchant.example/ping#x",
            "not a url",
        ] {
            assert!(p.check_url(bad).is_err(), "{bad}");
        }
        let dev = TargetPolicy::new(Vec::new(), true);
        for ok in [
            "http://127.0.0.1:9000/ping",
            "http://[::1]:9000/ping",
            "http://localhost:9000/ping",
            "https://localhost/ping",
        ] {
            assert!(dev.check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://merchant.example/ping",
            "http://10.0.0.1/ping",
            "http://169.254.169.254/",
            "http://localhost.merchant.example/ping",
        ] {
            assert!(dev.check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parsing() {
        assert_eq!(parse_networks("").unwrap(), Vec::<IpNet>::new());
        assert_eq!(
            parse_networks("10.1.2.3/16").unwrap(),
            vec!["10.1.0.0/16".parse::<IpNet>().unwrap()]
        );
        assert!(parse_networks("10.0.0.0/33").is_err());
        assert!(parse_networks("intranet").is_err());
        assert!(parse_flag(" TRUE ").unwrap());
        assert!(!parse_flag("false").unwrap());
        assert!(parse_flag("maybe").is_err());
    }
}
