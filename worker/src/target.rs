//! The ping client's guard against notification endpoints that reach this network
//! (see `ciba_runtime::ping_target` for the policy). Names are resolved by [`GuardedResolver`],
//! which hands reqwest only the allowed addresses, so the address checked is the address
//! connected to (no window for DNS rebinding). reqwest does not resolve IP-literal hosts, so
//! [`check_endpoint`] checks those, and the scheme, before every delivery.

use ciba_runtime::config::WorkerSettings;
use ciba_runtime::ping_target::TargetPolicy;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A delivery refused by the policy: final, never retried.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refused target: {}", self.0)
    }
}

impl std::error::Error for Refused {}

/// Resolves with the system resolver (tokio's `lookup_host`) and drops every address the
/// policy refuses; fails with [`Refused`] when none is left.
pub struct GuardedResolver {
    policy: Arc<TargetPolicy>,
}

impl GuardedResolver {
    pub fn new(policy: Arc<TargetPolicy>) -> Self {
        Self { policy }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let (allowed, refused) = allowed_addrs(&policy, found);
            if allowed.is_empty() {
                let why = refused
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "no address".into());
                return Err(Box::new(Refused(format!(
                    "{host} resolves only to refused addresses ({why})"
                )))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Split resolved addresses into the allowed ones and the reasons for the others.
pub fn allowed_addrs(
    policy: &TargetPolicy,
    found: Vec<SocketAddr>,
) -> (Vec<SocketAddr>, Vec<String>) {
    let mut allowed = Vec::new();
    let mut refused = Vec::new();
    for a in found {
        match policy.check_ip(a.ip()) {
            Ok(()) => allowed.push(a),
            Err(why) => refused.push(why),
        }
    }
    (allowed, refused)
}

/// The scheme rule, and the address of an IP-literal host, for one delivery.
pub fn check_endpoint(policy: &TargetPolicy, endpoint: &str) -> Result<(), Refused> {
    policy.check_url(endpoint).map_err(Refused)
}

/// The [`Refused`] somewhere in a failed request's chain of causes.
pub fn refusal<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(r) = c.downcast_ref::<Refused>() {
            return Some(r);
        }
        cause = c.source();
    }
    None
}

/// The ping client: the shared outbound settings, no proxy (the address checked must be the
/// one connected to), and the guarded resolver.
pub fn ping_client(
    s: &WorkerSettings,
    policy: Arc<TargetPolicy>,
) -> Result<reqwest::Client, String> {
    ciba_runtime::outbound::builder(
        Duration::from_millis(s.ping_connect_timeout_ms),
        Duration::from_millis(s.ping_timeout_ms),
    )
    .no_proxy()
    .dns_resolver(GuardedResolver::new(policy))
    .build()
    .map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn strict() -> Arc<TargetPolicy> {
        Arc::new(TargetPolicy::default())
    }

    #[tokio::test]
    async fn names_of_loopback_are_refused_by_the_resolver() {
        let r = GuardedResolver::new(strict());
        let e = match r.resolve("localhost".parse().unwrap()).await {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e,
        };
        let refused = refusal(e.as_ref()).unwrap();
        assert!(refused.0.contains("localhost"), "{refused}");
        assert!(refused.0.contains("loopback"), "{refused}");
        // With the development flag, loopback is allowed.
        let dev = GuardedResolver::new(Arc::new(TargetPolicy::new(Vec::new(), true)));
        let addrs: Vec<SocketAddr> = dev
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()));
    }

    #[test]
    fn only_allowed_addresses_are_kept() {
        let found = vec![
            "127.0.0.1:0".parse().unwrap(),
            "8.8.8.8:0".parse().unwrap(),
            "[::ffff:169.254.169.254]:0".parse().unwrap(),
        ];
        let (allowed, refused) = allowed_addrs(&strict(), found);
        assert_eq!(allowed, vec!["8.8.8.8:0".parse::<SocketAddr>().unwrap()]);
        assert_eq!(refused.len(), 2);
    }

    #[tokio::test]
    async fn a_refusal_is_found_in_the_request_error() {
        // A name refused by the resolver: the request fails before any connection.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let s = ciba_runtime::config::Config::from_map(
            &[(
                "CIBA_KEY_ENCRYPTION_KEY".to_owned(),
                "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=".to_owned(),
            )]
            .into(),
        )
        .unwrap()
        .worker;
        let client = ping_client(&s, strict()).unwrap();
        let e = client
            .post(format!("http://localhost:{port}/cb"))
            .send()
            .await
            .unwrap_err();
        assert!(refusal(&e).is_some(), "{e:?}");
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "a refused target was connected to");
    }
}
