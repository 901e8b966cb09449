//! Every knob of the data plane, in one place: the command line, each flag also settable by a
//! `HOOKMESH_*` variable and listed by `--help`. The chart's `dataplane.settings` values map onto
//! these one to one. Parsed once at start and handed down as typed settings; no stage reads the
//! environment itself.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;

use crate::config::Slice;
use crate::deliver;
use crate::peers::PeerSettings;
use crate::ratelimit::DEFAULT_RATE_LIMIT;
use crate::retention::RetentionOptions;
use crate::server::{ConfigFrom, Options};

#[derive(Parser, Debug)]
#[command(name = "hookmesh-dataplane", version, about)]
pub struct Cli {
    /// Standalone mode: directory of Source/Endpoint/Subscription/Secret YAML (reloaded on change).
    #[arg(
        long,
        env = "HOOKMESH_MANIFESTS",
        required_unless_present = "config_secret",
        conflicts_with = "config_secret"
    )]
    pub manifests: Option<PathBuf>,
    /// Cluster mode: NAMESPACE/NAME of the config Secret the operator publishes.
    #[arg(long, env = "HOOKMESH_CONFIG_SECRET")]
    pub config_secret: Option<String>,
    /// Where sled keeps its files.
    #[arg(long, env = "HOOKMESH_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// sled's page cache in MiB: what the store keeps in memory beyond the records in use. The
    /// largest share of the process's memory under load; more helps listings over old events.
    #[arg(long, env = "HOOKMESH_STORE_CACHE_MB", default_value_t = crate::store::DEFAULT_CACHE_MB,
        value_parser = clap::value_parser!(u64).range(8..=1_048_576))]
    pub store_cache_mb: u64,
    /// Address for ingest, the REST API, /metrics and probes.
    #[arg(long, env = "HOOKMESH_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Log format: text or json.
    #[arg(long, env = "HOOKMESH_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// REST API requests per second per API key (bursts up to twice that); 0 turns limiting off.
    #[arg(long, env = "HOOKMESH_API_RATE_LIMIT", default_value_t = DEFAULT_RATE_LIMIT)]
    pub api_rate_limit: u32,
    /// How long payloads are kept (then GET .../payload answers 410 PAYLOAD_EXPIRED).
    #[arg(long, env = "HOOKMESH_RETENTION", default_value = "7d", value_parser = duration)]
    pub retention: Duration,
    /// How long event metadata, deliveries and attempts are kept (at least --retention).
    #[arg(long, env = "HOOKMESH_METADATA_RETENTION", default_value = "30d", value_parser = duration)]
    pub metadata_retention: Duration,
    /// How often the retention sweep runs (at least 100ms).
    #[arg(long, env = "HOOKMESH_RETENTION_INTERVAL", default_value = "1m", value_parser = duration)]
    pub retention_interval: Duration,
    /// Consecutive failed attempts that open an endpoint's circuit breaker.
    #[arg(long, env = "HOOKMESH_BREAKER_THRESHOLD", default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub breaker_threshold: u32,
    /// How long an open circuit stays open before one probe attempt.
    #[arg(long, env = "HOOKMESH_BREAKER_COOLDOWN", default_value = "30s", value_parser = duration)]
    pub breaker_cooldown: Duration,
    /// Delivery attempts in flight at once, across all endpoints.
    #[arg(long, env = "HOOKMESH_DELIVERY_CONCURRENCY", default_value_t = 512,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub delivery_concurrency: u32,
    /// How long shutdown waits for delivery attempts in flight (the rest are due again at the
    /// next start).
    #[arg(long, env = "HOOKMESH_SHUTDOWN_GRACE", default_value = "10s", value_parser = duration)]
    pub shutdown_grace: Duration,
    /// This pod's node number (0-65535), carried by every event and delivery id it creates so
    /// any pod can tell which one holds an object. Default: the ordinal that the pod name
    /// ($POD_NAME, else $HOSTNAME) ends with, as in a StatefulSet; else 0. Unique per pod.
    #[arg(long, env = "HOOKMESH_NODE_ID")]
    pub node_id: Option<u16>,
    /// The other pods, as a fixed comma-separated list of base URLs (http://host:port); this
    /// pod's own URL may be in it. For a set of processes without Kubernetes.
    #[arg(long, env = "HOOKMESH_PEERS", value_delimiter = ',', value_parser = peer_url)]
    pub peers: Vec<String>,
    /// The other pods, as the addresses of a headless Service: NAME or NAME:PORT (default
    /// port: this pod's own), resolved again every --peer-refresh.
    #[arg(long, env = "HOOKMESH_PEERS_DNS")]
    pub peers_dns: Option<String>,
    /// How often the peers are resolved and probed.
    #[arg(long, env = "HOOKMESH_PEER_REFRESH", default_value = "5s", value_parser = duration)]
    pub peer_refresh: Duration,
    /// Bound on each call to a peer; a peer slower than this is reported missing.
    #[arg(long, env = "HOOKMESH_PEER_TIMEOUT", default_value = "2s", value_parser = duration)]
    pub peer_timeout: Duration,
    /// Shared secret for the routes pods call on each other (handoff, drain). Without it a
    /// drain cannot hand events to peers, and this pod takes none.
    #[arg(long, env = "HOOKMESH_PEER_TOKEN", hide_env_values = true)]
    pub peer_token: Option<String>,
    /// On SIGTERM, drain before stopping: refuse ingest, finish attempts in flight, hand every
    /// unfinished event to a peer. For scale-down; a plain restart on the same volume needs none.
    #[arg(long, env = "HOOKMESH_DRAIN_ON_SHUTDOWN", default_value_t = false,
        action = clap::ArgAction::Set)]
    pub drain_on_shutdown: bool,
    /// Bound on a whole drain (what is not handed off by then stays on this pod).
    #[arg(long, env = "HOOKMESH_DRAIN_TIMEOUT", default_value = "60s", value_parser = duration)]
    pub drain_timeout: Duration,
    /// Largest body `POST /api/v1/events` accepts, in bytes (webhooks have each Source's own
    /// spec.maxBodyBytes).
    #[arg(long, env = "HOOKMESH_PUBLISH_MAX_BODY",
        default_value_t = hookmesh_api::compile::DEFAULT_MAX_BODY_BYTES,
        value_parser = clap::value_parser!(u64).range(1..=MAX_PUBLISH_BODY))]
    pub publish_max_body: u64,
    /// In cluster: register endpoints and subscriptions through `POST /api/v1/endpoints` and
    /// `/subscriptions` as Endpoint and Subscription resources (the ServiceAccount needs to
    /// create, get, list and delete them: the chart sets this when
    /// `dataplane.registration.namespaces` lists namespaces, with a Role in each).
    /// Standalone always registers, as files under the manifests directory.
    #[arg(long, env = "HOOKMESH_REGISTRATION", default_value_t = false,
        action = clap::ArgAction::Set)]
    pub registration: bool,
    /// Standalone sidecar: serve only the Sources and Endpoints of workload NAMESPACE/NAME (their
    /// `workload` field), with the Subscriptions to its Endpoints. Without it a standalone
    /// process is a gateway: it serves every object bound to no workload.
    #[arg(
        long,
        env = "HOOKMESH_WORKLOAD",
        value_name = "NAMESPACE/NAME",
        requires = "manifests"
    )]
    pub workload: Option<String>,
    /// Address ranges deliveries may not connect to, besides the defaults (link-local and
    /// cloud metadata, loopback, the unspecified address, the Kubernetes API server).
    #[arg(
        long,
        env = "HOOKMESH_EGRESS_DENY",
        value_delimiter = ',',
        value_name = "CIDR,..."
    )]
    pub egress_deny: Vec<ipnet::IpNet>,
    /// Address ranges deliveries may connect to even when denied (e.g. `127.0.0.0/8` for a
    /// receiver on this machine). A sidecar (`--workload`) allows loopback by itself.
    #[arg(
        long,
        env = "HOOKMESH_EGRESS_ALLOW",
        value_delimiter = ',',
        value_name = "CIDR,..."
    )]
    pub egress_allow: Vec<ipnet::IpNet>,
}

/// Ceiling of --publish-max-body: a publish body is read into memory whole.
const MAX_PUBLISH_BODY: u64 = 64 * 1024 * 1024;

/// A `NAMESPACE/NAME` flag value, both parts non-empty.
fn namespace_name(flag: &str, v: &str) -> anyhow::Result<(String, String)> {
    v.split_once('/')
        .filter(|(ns, n)| !ns.is_empty() && !n.is_empty())
        .map(|(ns, n)| (ns.to_string(), n.to_string()))
        .with_context(|| format!("{flag} must be NAMESPACE/NAME"))
}

/// A peer's base URL: http://host:port, without a path.
fn peer_url(s: &str) -> Result<String, String> {
    let s = s.trim().trim_end_matches('/');
    let ok = s.parse::<http::Uri>().ok().filter(|u| {
        u.scheme_str() == Some("http")
            && u.authority().is_some_and(|a| !a.host().is_empty())
            && matches!(u.path(), "" | "/")
            && u.query().is_none()
    });
    match ok {
        Some(_) => Ok(s.to_string()),
        None => Err(format!(
            "{s:?} is not a peer URL such as http://10.0.0.7:8080"
        )),
    }
}

/// The node number a pod name ends with, if it is a StatefulSet pod.
fn default_node_id() -> u16 {
    ["POD_NAME", "HOSTNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find_map(|name| crate::peers::ordinal(&name))
        .unwrap_or(0)
}

/// A duration as manifests write them: `500ms`, `30s`, `5m`, `24h`, `7d`, or several, `1h30m`.
fn duration(s: &str) -> Result<Duration, String> {
    hookmesh_api::duration::parse(s.trim())
        .ok_or_else(|| format!("{s:?} is not a duration such as 500ms, 30s, 5m, 24h or 7d"))
}

impl Cli {
    /// The egress guard: the defaults, `--egress-deny` added, `--egress-allow` excepted; a
    /// standalone sidecar (`--workload`) delivers to its own Pod, so it allows loopback.
    pub fn egress_policy(&self) -> deliver::egress::EgressPolicy {
        let mut allow = self.egress_allow.clone();
        if self.workload.is_some() {
            allow.extend(
                deliver::egress::LOOPBACK
                    .iter()
                    .filter_map(|s| s.parse::<ipnet::IpNet>().ok()),
            );
        }
        deliver::egress::EgressPolicy::new(&self.egress_deny, &allow)
    }

    /// The server's options. Fails only on a `--config-secret` that is not NAMESPACE/NAME.
    pub fn options(&self) -> anyhow::Result<Options> {
        let config = match (&self.manifests, &self.config_secret) {
            (Some(dir), _) => ConfigFrom::Manifests(dir.clone()),
            (None, Some(secret)) => {
                let (namespace, name) = namespace_name("--config-secret", secret)?;
                ConfigFrom::Secret { namespace, name }
            }
            (None, None) => {
                anyhow::bail!("give --manifests DIR (standalone) or --config-secret NAMESPACE/NAME")
            }
        };
        Ok(Options {
            config,
            data_dir: self.data_dir.clone(),
            store_cache_mb: self.store_cache_mb,
            listen: self.listen,
            api_rate_limit: self.api_rate_limit,
            retention: RetentionOptions {
                payloads: self.retention,
                metadata: self.metadata_retention,
                interval: self.retention_interval.max(Duration::from_millis(100)),
            },
            delivery: deliver::Settings {
                breaker_threshold: self.breaker_threshold,
                breaker_cooldown: self.breaker_cooldown,
                max_in_flight: self.delivery_concurrency as usize,
                shutdown_grace: self.shutdown_grace,
                egress: std::sync::Arc::new(self.egress_policy()),
            },
            peers: PeerSettings {
                node: self.node_id.unwrap_or_else(default_node_id),
                static_peers: self.peers.clone(),
                dns: self
                    .peers_dns
                    .as_ref()
                    .map(|name| match name.contains(':') {
                        true => name.clone(),
                        false => format!("{name}:{}", self.listen.port()),
                    }),
                refresh: self.peer_refresh.max(Duration::from_millis(100)),
                timeout: self.peer_timeout.max(Duration::from_millis(10)),
                token: self.peer_token.clone().filter(|t| !t.is_empty()),
                drain_on_shutdown: self.drain_on_shutdown,
                drain_timeout: self.drain_timeout,
            },
            publish_max_body: self.publish_max_body,
            registration: self.registration,
            slice: match &self.workload {
                None => Slice::Gateway,
                Some(w) => {
                    let (namespace, name) = namespace_name("--workload", w)?;
                    Slice::Workload { namespace, name }
                }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("hookmesh-dataplane").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_match_the_engine_defaults() {
        let cli = parse(&["--manifests", "examples"]).expect("parses");
        let opts = cli.options().expect("options");
        let d = deliver::Settings::default();
        assert_eq!(opts.delivery.breaker_threshold, d.breaker_threshold);
        assert_eq!(opts.delivery.breaker_cooldown, d.breaker_cooldown);
        assert_eq!(opts.delivery.max_in_flight, d.max_in_flight);
        assert_eq!(opts.delivery.shutdown_grace, d.shutdown_grace);
        assert_eq!(opts.retention.payloads, Duration::from_secs(7 * 86_400));
    }

    #[test]
    fn engine_knobs_are_flags() {
        let cli = parse(&[
            "--manifests=m",
            "--breaker-threshold=2",
            "--breaker-cooldown=750ms",
            "--delivery-concurrency=64",
            "--shutdown-grace=3s",
        ])
        .expect("parses");
        let s = cli.options().expect("options").delivery;
        assert_eq!(s.breaker_threshold, 2);
        assert_eq!(s.breaker_cooldown, Duration::from_millis(750));
        assert_eq!(s.max_in_flight, 64);
        assert_eq!(s.shutdown_grace, Duration::from_secs(3));
    }

    #[test]
    fn peer_flags() {
        let cli = parse(&[
            "--manifests=m",
            "--listen=127.0.0.1:9000",
            "--node-id=3",
            "--peers=http://127.0.0.1:9001/,http://127.0.0.1:9002",
            "--peers-dns=hm-peers.ns.svc",
            "--drain-on-shutdown=true",
        ])
        .expect("parses");
        let p = cli.options().expect("options").peers;
        assert_eq!(p.node, 3);
        assert_eq!(
            p.static_peers,
            vec!["http://127.0.0.1:9001", "http://127.0.0.1:9002"]
        );
        assert_eq!(p.dns.as_deref(), Some("hm-peers.ns.svc:9000"));
        assert!(p.drain_on_shutdown);
        assert!(p.token.is_none());
        for bad in [
            "--peers=ftp://x:1",
            "--peers=http://x:1/path",
            "--node-id=70000",
            "--peer-timeout=2",
        ] {
            let err = parse(&["--manifests=m", bad]).expect_err(bad);
            let flag = bad.split('=').next().unwrap_or(bad);
            assert!(err.to_string().contains(flag), "{bad}: {err}");
        }
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        for bad in [
            "--breaker-threshold=0",
            "--breaker-threshold=many",
            "--breaker-cooldown=30",
            "--delivery-concurrency=0",
            "--retention=forever",
        ] {
            let err = parse(&["--manifests=m", bad]).expect_err(bad);
            let flag = bad.split('=').next().unwrap_or(bad);
            assert!(err.to_string().contains(flag), "{bad}: {err}");
        }
        let cli = parse(&["--config-secret=no-slash"]).expect("parses");
        assert!(cli.options().is_err());
    }

    /// The chart sets every flag from `dataplane.settings` (camelCase of the flag), except the
    /// ones it derives itself; each of those values names a flag that exists.
    #[test]
    fn the_charts_settings_map_onto_the_flags_one_to_one() {
        use clap::CommandFactory as _;
        let values =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/hookmesh/values.yaml");
        let text = std::fs::read_to_string(&values).expect("chart values");
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("values parse");
        let settings = doc["dataplane"]["settings"]
            .as_mapping()
            .expect("dataplane.settings");
        let mut from_chart: Vec<String> = settings
            .keys()
            .filter_map(|k| k.as_str())
            .map(|k| {
                k.chars()
                    .flat_map(|c| match c.is_ascii_uppercase() {
                        true => vec!['-', c.to_ascii_lowercase()],
                        false => vec![c],
                    })
                    .collect()
            })
            .collect();
        from_chart.sort();
        // Set by the chart from the pod's own layout, not from settings.
        let derived = [
            "manifests",
            "config-secret",
            "data-dir",
            "listen",
            "node-id",
            "peers",
            "peers-dns",
            "peer-token",
            "workload",
            // From `dataplane.registration.namespaces`, which also renders the Roles it needs.
            "registration",
        ];
        let mut flags: Vec<String> = Cli::command()
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string))
            .filter(|f| !derived.contains(&f.as_str()))
            .collect();
        flags.sort();
        assert_eq!(from_chart, flags);
    }
}
