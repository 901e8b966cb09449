//! The egress guard: which addresses a delivery may connect to.
//!
//! A webhook gateway POSTs to URLs its users give it, so a URL is also a way to make it reach
//! what only it can reach: the cloud metadata service, the Kubernetes API server, its own
//! loopback. The guard refuses those by default and is checked on the address actually
//! connected to, after DNS resolution (the connector's resolver is this module), so a name
//! cannot resolve to a public address when checked and a private one when used. IP literals in
//! URLs never reach a resolver; [`EgressPolicy::check_uri`] covers them before sending.
//!
//! Refused by default: `169.254.0.0/16` and `fe80::/10` (link-local, where cloud metadata
//! lives), `fd00:ec2::254/128` (AWS's IPv6 metadata), `127.0.0.0/8` and `::1/128` (loopback),
//! `0.0.0.0/8` and `::/128`, and the Kubernetes API server's Service address
//! (`$KUBERNETES_SERVICE_HOST`) when running in a cluster. `--egress-deny` adds ranges,
//! `--egress-allow` makes exceptions (an allowed range wins over a denied one).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;
use ipnet::IpNet;

/// The ranges refused unless allowed.
pub const DEFAULT_DENY: &[&str] = &[
    "169.254.0.0/16",
    "fe80::/10",
    "fd00:ec2::254/128",
    "127.0.0.0/8",
    "::1/128",
    "0.0.0.0/8",
    "::/128",
];

/// Loopback, which a sidecar delivers to (its own Pod's containers).
pub const LOOPBACK: &[&str] = &["127.0.0.0/8", "::1/128"];

/// Why a delivery may not connect.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("egress refused: {host} resolves only to addresses the egress guard refuses ({addrs}); allow them with --egress-allow")]
pub struct EgressRefused {
    pub host: String,
    pub addrs: String,
}

/// Which destination addresses are allowed.
#[derive(Clone, Debug, Default)]
pub struct EgressPolicy {
    deny: Vec<IpNet>,
    allow: Vec<IpNet>,
}

impl EgressPolicy {
    /// The default ranges, the API server's address when in a cluster, then `deny` added and
    /// `allow` excepted.
    pub fn new(deny: &[IpNet], allow: &[IpNet]) -> Self {
        let api_server = std::env::var("KUBERNETES_SERVICE_HOST")
            .ok()
            .and_then(|h| h.parse::<IpAddr>().ok());
        Self::with_api_server(deny, allow, api_server)
    }

    /// [`EgressPolicy::new`] with the API server's address given rather than read.
    pub fn with_api_server(deny: &[IpNet], allow: &[IpNet], api_server: Option<IpAddr>) -> Self {
        let mut d: Vec<IpNet> = DEFAULT_DENY.iter().filter_map(|s| s.parse().ok()).collect();
        d.extend(api_server.map(IpNet::from));
        d.extend_from_slice(deny);
        EgressPolicy {
            deny: d,
            allow: allow.to_vec(),
        }
    }

    /// Everything allowed (tests of other things, and the bench).
    pub fn allow_all() -> Self {
        EgressPolicy::default()
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        // An IPv4-mapped IPv6 address is the IPv4 address it maps.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.allow.iter().any(|n| n.contains(&ip)) || !self.deny.iter().any(|n| n.contains(&ip))
    }

    /// A URL whose host is an IP literal, checked before sending (names are checked when
    /// resolved).
    pub fn check_uri(&self, uri: &http::Uri) -> Result<(), EgressRefused> {
        let Some(host) = uri.host() else {
            return Ok(());
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) if !self.allows(ip) => Err(EgressRefused {
                host: host.to_string(),
                addrs: ip.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// The resolved addresses the guard lets through; refused when none is left.
    pub fn filter(
        &self,
        host: &str,
        addrs: Vec<SocketAddr>,
    ) -> Result<Vec<SocketAddr>, EgressRefused> {
        let (ok, refused): (Vec<_>, Vec<_>) = addrs.into_iter().partition(|a| self.allows(a.ip()));
        if ok.is_empty() && !refused.is_empty() {
            return Err(EgressRefused {
                host: host.to_string(),
                addrs: refused
                    .iter()
                    .map(|a| a.ip().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(ok)
    }
}

/// The connector's resolver: the system's, through tokio, then the guard.
#[derive(Clone)]
pub struct GuardedResolver {
    policy: Arc<EgressPolicy>,
}

impl GuardedResolver {
    pub fn new(policy: Arc<EgressPolicy>) -> Self {
        GuardedResolver { policy }
    }
}

type Resolving = Pin<
    Box<
        dyn Future<
                Output = Result<
                    std::vec::IntoIter<SocketAddr>,
                    Box<dyn std::error::Error + Send + Sync>,
                >,
            > + Send,
    >,
>;

impl tower::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Resolving;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept = policy.filter(&host, addrs)?;
            Ok(kept.into_iter())
        })
    }
}

/// Whether an error (anywhere in its chain) is the guard's refusal.
pub fn refusal_in(e: &(dyn std::error::Error + 'static)) -> Option<EgressRefused> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<EgressRefused>() {
            return Some(r.clone());
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(deny: &[&str], allow: &[&str]) -> EgressPolicy {
        let p = |v: &[&str]| v.iter().map(|s| s.parse().unwrap()).collect::<Vec<IpNet>>();
        EgressPolicy::new(&p(deny), &p(allow))
    }

    #[test]
    fn the_default_ranges_are_refused_and_the_rest_allowed() {
        let g = policy(&[], &[]);
        for refused in [
            "169.254.169.254",
            "169.254.0.1",
            "fd00:ec2::254",
            "fe80::1",
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "0.0.0.0",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!g.allows(refused.parse().unwrap()), "{refused} allowed");
        }
        for allowed in [
            "93.184.216.34",
            "10.0.0.5",
            "2606:4700::1111",
            "192.168.1.1",
        ] {
            assert!(g.allows(allowed.parse().unwrap()), "{allowed} refused");
        }
    }

    #[test]
    fn the_api_servers_service_address_is_refused_in_a_cluster() {
        let api: IpAddr = "10.96.0.1".parse().unwrap();
        let g = EgressPolicy::with_api_server(&[], &[], Some(api));
        assert!(!g.allows(api));
        assert!(g.allows("10.96.0.2".parse().unwrap()));
        assert!(EgressPolicy::with_api_server(&[], &[], None).allows(api));
    }

    #[test]
    fn allow_wins_over_deny_and_deny_adds_ranges() {
        let g = policy(&["10.0.0.0/8"], &["127.0.0.0/8"]);
        assert!(g.allows("127.0.0.1".parse().unwrap()));
        assert!(!g.allows("10.1.2.3".parse().unwrap()));
        assert!(
            !g.allows("::1".parse().unwrap()),
            "only IPv4 loopback was allowed"
        );
    }

    #[test]
    fn ip_literal_urls_are_checked_before_sending() {
        let g = policy(&[], &[]);
        let uri = |s: &str| s.parse::<http::Uri>().unwrap();
        assert!(g
            .check_uri(&uri("http://169.254.169.254/latest/meta-data"))
            .is_err());
        assert!(g.check_uri(&uri("http://[::1]:8080/x")).is_err());
        assert!(g.check_uri(&uri("https://93.184.216.34/")).is_ok());
        assert!(
            g.check_uri(&uri("https://example.com/")).is_ok(),
            "names are the resolver's"
        );
    }

    #[test]
    fn a_name_is_refused_only_when_every_address_is() {
        let g = policy(&[], &[]);
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let mixed = g
            .filter("h", vec![a("127.0.0.1:0"), a("93.184.216.34:0")])
            .unwrap();
        assert_eq!(mixed, vec![a("93.184.216.34:0")]);
        let e = g.filter("meta", vec![a("169.254.169.254:0")]).unwrap_err();
        assert_eq!(e.addrs, "169.254.169.254");
        assert!(e.to_string().contains("--egress-allow"));
    }
}
