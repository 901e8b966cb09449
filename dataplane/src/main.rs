//! hookmesh-dataplane: the webhook gateway's data plane, standalone or in a cluster.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use hookmesh_dataplane::server::{self, ConfigFrom, Options};

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
    })
    .await
}
