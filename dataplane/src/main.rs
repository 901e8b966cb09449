//! hookmesh-dataplane: the webhook gateway's data plane, standalone or in a cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use hookmesh_dataplane::retention::RetentionOptions;
use hookmesh_dataplane::server::{self, ConfigFrom, Options};

/// sled allocates and frees a node copy on every write, and requests are built on tokio workers
/// but freed on the commit thread; glibc's malloc spends a fifth of the ingest CPU on exactly
/// that pattern, mimalloc a fraction of it (see BENCHMARKS.md). Built without transparent huge
/// pages, which would otherwise put 60 MiB in the idle RSS instead of 14.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "hookmesh-dataplane", version, about)]
struct Cli {
    /// Standalone mode: directory of Source/Endpoint/Subscription/Secret YAML (reloaded on change).
    #[arg(
        long,
        env = "HOOKMESH_MANIFESTS",
        required_unless_present = "config_secret",
        conflicts_with = "config_secret"
    )]
    manifests: Option<PathBuf>,
    /// Cluster mode: NAMESPACE/NAME of the config Secret the operator publishes.
    #[arg(long, env = "HOOKMESH_CONFIG_SECRET")]
    config_secret: Option<String>,
    /// Where sled keeps its files.
    #[arg(long, env = "HOOKMESH_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Address for ingest, the REST API, /metrics and probes.
    #[arg(long, env = "HOOKMESH_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Headless Service DNS name of the sibling pods (cluster mode).
    #[arg(long, env = "HOOKMESH_PEERS_DNS")]
    peers_dns: Option<String>,
    /// Log format: text or json.
    #[arg(long, env = "HOOKMESH_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// REST API requests per second per API key (bursts up to twice that); 0 turns limiting off.
    #[arg(long, env = "HOOKMESH_API_RATE_LIMIT", default_value_t = hookmesh_dataplane::rest::DEFAULT_RATE_LIMIT)]
    api_rate_limit: u32,
    /// How long payloads are kept (then GET .../payload answers 410 PAYLOAD_EXPIRED).
    #[arg(long, env = "HOOKMESH_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    retention: Duration,
    /// How long event metadata, deliveries and attempts are kept (at least --retention).
    #[arg(long, env = "HOOKMESH_METADATA_RETENTION", default_value = "30d", value_parser = humantime::parse_duration)]
    metadata_retention: Duration,
    /// How often the retention sweep runs.
    #[arg(long, env = "HOOKMESH_RETENTION_INTERVAL", default_value = "1m", value_parser = humantime::parse_duration)]
    retention_interval: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sled=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if cli.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    let config = match (cli.manifests, cli.config_secret) {
        (Some(dir), _) => ConfigFrom::Manifests(dir),
        (None, Some(secret)) => {
            let (namespace, name) = secret
                .split_once('/')
                .filter(|(ns, n)| !ns.is_empty() && !n.is_empty())
                .context("--config-secret must be NAMESPACE/NAME")?;
            ConfigFrom::Secret {
                namespace: namespace.to_string(),
                name: name.to_string(),
            }
        }
        (None, None) => {
            anyhow::bail!("give --manifests DIR (standalone) or --config-secret NAMESPACE/NAME")
        }
    };
    let _ = cli.peers_dns;
    server::run(Options {
        config,
        data_dir: cli.data_dir,
        listen: cli.listen,
        api_rate_limit: cli.api_rate_limit,
        retention: RetentionOptions {
            payloads: cli.retention,
            metadata: cli.metadata_retention,
            interval: cli.retention_interval.max(Duration::from_millis(100)),
        },
    })
    .await
}
