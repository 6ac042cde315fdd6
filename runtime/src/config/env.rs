//! Reading variables: whole numbers in a range, lists, rates, networks, flags, addresses;
//! every refusal names its variable.

use ciba_domain::rate::Rate;
use std::collections::HashMap;
use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
#[error("configuration error in {var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

pub(super) fn err(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        message: message.into(),
    }
}

pub(super) struct Env<'a>(pub(super) &'a HashMap<String, String>);

impl Env<'_> {
    pub(super) fn get(&self, var: &str) -> Option<&str> {
        self.0
            .get(var)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    pub(super) fn int(
        &self,
        var: &'static str,
        default: i64,
        min: i64,
        max: i64,
    ) -> Result<i64, ConfigError> {
        let Some(raw) = self.get(var) else {
            return Ok(default);
        };
        let v: i64 = raw
            .trim()
            .parse()
            .map_err(|_| err(var, format!("expected a whole number, got {raw:?}")))?;
        if !(min..=max).contains(&v) {
            return Err(err(
                var,
                format!("must be between {min} and {max}, got {v}"),
            ));
        }
        Ok(v)
    }

    /// A comma-separated list (empty when unset).
    pub(super) fn list(&self, var: &str) -> Vec<String> {
        self.get(var)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A rate `N/SECONDS` (or `0`: off).
    pub(super) fn rate(&self, var: &'static str, default: Rate) -> Result<Rate, ConfigError> {
        self.get(var)
            .map_or(Ok(default), |raw| Rate::parse(raw).map_err(|m| err(var, m)))
    }

    /// A comma-separated list of CIDR blocks or single addresses (empty when unset).
    pub(super) fn networks(&self, var: &'static str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        parse_networks(self.get(var).unwrap_or("")).map_err(|m| err(var, m))
    }

    /// `true` or `false` (`default` when unset).
    pub(super) fn flag(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        self.get(var)
            .map_or(Ok(default), |raw| parse_flag(raw).map_err(|m| err(var, m)))
    }

    pub(super) fn addr(&self, var: &'static str) -> Result<Option<SocketAddr>, ConfigError> {
        self.get(var)
            .map(|raw| {
                listen_addr(raw)
                    .map(|(addr, _)| addr)
                    .map_err(|m| err(var, m))
            })
            .transpose()
    }
}

/// `HOST:PORT`, where HOST is an address (`[::1]` for IPv6) or a name such as `localhost`
/// (its first IPv4 address, else its first address). Also returns the host as written.
pub fn listen_addr(raw: &str) -> Result<(SocketAddr, String), String> {
    use std::net::ToSocketAddrs;
    let raw = raw.trim();
    let bad =
        || format!("expected HOST:PORT such as 127.0.0.1:8080 or localhost:8080, got {raw:?}");
    if let Ok(addr) = raw.parse::<SocketAddr>() {
        let host = raw.rsplit_once(':').map(|(h, _)| h).unwrap_or(raw);
        return Ok((addr, host.to_owned()));
    }
    let (host, port) = raw.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let valid_name = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !valid_name {
        return Err(bad());
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .collect();
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("{host:?} has no address"))?;
    Ok((addr, host.to_owned()))
}

/// `true`/`1`/`yes` or `false`/`0`/`no`, in any case.
pub fn parse_flag(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("expected true or false, got {raw:?}")),
    }
}

/// Comma-separated CIDR blocks (a bare address is one host), e.g. `10.1.0.0/16, 192.0.2.7`.
pub fn parse_networks(raw: &str) -> Result<Vec<ipnet::IpNet>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| format!("expected comma-separated CIDRs like 10.1.0.0/16, got {s:?}"))
        })
        .collect()
}
