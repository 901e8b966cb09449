//! hookmesh-operator: reconciles Sources, Endpoints and Subscriptions into the data-plane config.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use hookmesh_operator::leader::{LeaderElector, LeaseConfig};
use hookmesh_operator::metrics::Metrics;
use hookmesh_operator::publish::SecretRef;
use hookmesh_operator::{controller, http, FIELD_MANAGER};
use kube::runtime::events::{Recorder, Reporter};
use tokio::sync::watch;
use tracing::{error, info, warn};

#[derive(Parser)]
#[command(
    name = "hookmesh-operator",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator (the default when no subcommand is given).
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions as YAML (committed in crds/).
    Crdgen,
}

#[derive(Args, Clone, Debug)]
struct RunArgs {
    /// Config Secret to publish, as NAMESPACE/NAME.
    #[arg(long, env = "HOOKMESH_CONFIG_SECRET", value_name = "NAMESPACE/NAME")]
    config_secret: Option<SecretRef>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:9090")]
    metrics_listen: SocketAddr,
    /// Hold a coordination Lease so only one replica writes.
    #[arg(long)]
    leader_election: bool,
    /// Name of the Lease.
    #[arg(long, default_value = "hookmesh-operator")]
    lease_name: String,
    /// Namespace of the Lease (default: $POD_NAMESPACE, else the config Secret's namespace).
    #[arg(long)]
    lease_namespace: Option<String>,
    #[command(flatten)]
    webhook: WebhookArgs,
    #[command(flatten)]
    health: HealthArgs,
}

/// Receiver health in Endpoint status (off unless --dataplane-url is given).
#[derive(Args, Clone, Debug)]
struct HealthArgs {
    /// Base URL (http) of the data-plane Service, whose pods report each endpoint's delivery
    /// health on `GET /internal/v1/endpoints`; the operator writes it into Endpoint status.
    #[arg(long, env = "HOOKMESH_DATAPLANE_URL")]
    dataplane_url: Option<String>,
    /// The data plane's peer token (its internal routes take nothing else).
    #[arg(long, env = "HOOKMESH_PEER_TOKEN", hide_env_values = true)]
    peer_token: Option<String>,
    /// How often the data plane is asked.
    #[arg(long, env = "HOOKMESH_HEALTH_INTERVAL", default_value = "10s", value_parser = duration)]
    health_interval: Duration,
    /// Least time between two status patches of one Endpoint (a flapping receiver shows its
    /// latest state at this pace, not every flap).
    #[arg(long, env = "HOOKMESH_HEALTH_MIN_INTERVAL", default_value = "30s", value_parser = duration)]
    health_min_interval: Duration,
    /// Least time between two refreshes of `status.delivery` while the condition holds.
    #[arg(long, env = "HOOKMESH_HEALTH_RESYNC", default_value = "5m", value_parser = duration)]
    health_resync: Duration,
}

fn duration(s: &str) -> Result<Duration, String> {
    hookmesh_api::duration::parse(s.trim())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} is not a duration such as 500ms, 30s or 5m"))
}

impl HealthArgs {
    fn settings(&self) -> anyhow::Result<Option<hookmesh_operator::health::Settings>> {
        let Some(url) = self.dataplane_url.clone().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        anyhow::ensure!(
            url.starts_with("http://"),
            "--dataplane-url {url:?}: the data plane's internal routes are plain http inside the cluster (http://host:port)"
        );
        let token = self
            .peer_token
            .clone()
            .filter(|t| !t.is_empty())
            .context("--dataplane-url needs --peer-token (HOOKMESH_PEER_TOKEN): the data plane's internal routes take only that")?;
        Ok(Some(hookmesh_operator::health::Settings {
            url,
            token,
            interval: self.health_interval,
            min_interval: self.health_min_interval,
            resync: self.health_resync,
        }))
    }
}

/// The sidecar-injection webhook (off unless --webhook-listen is given).
#[derive(Args, Clone, Debug)]
struct WebhookArgs {
    /// Serve the mutating admission webhook (HTTPS, `/mutate-pods`) on this address.
    #[arg(long, env = "HOOKMESH_WEBHOOK_LISTEN")]
    webhook_listen: Option<SocketAddr>,
    /// Secret (NAMESPACE/NAME) holding the webhook's CA and serving certificate; created when
    /// absent.
    #[arg(long, env = "HOOKMESH_WEBHOOK_SECRET", value_name = "NAMESPACE/NAME")]
    webhook_secret: Option<SecretRef>,
    /// Names the serving certificate is for (the webhook Service's DNS names, or an IP).
    #[arg(long, env = "HOOKMESH_WEBHOOK_HOSTS", value_delimiter = ',')]
    webhook_hosts: Vec<String>,
    /// MutatingWebhookConfiguration whose caBundle the operator keeps equal to its CA.
    #[arg(long, env = "HOOKMESH_WEBHOOK_CONFIG")]
    webhook_config: Option<String>,
    /// Image of the injected data-plane sidecar.
    #[arg(
        long,
        env = "HOOKMESH_SIDECAR_IMAGE",
        default_value = "hookmesh/hookmesh-dataplane:latest"
    )]
    sidecar_image: String,
    /// Name prefix of each workload's sidecar config objects: Secret, Role and RoleBinding
    /// `<prefix><namespace>.<workload>` in the config namespace.
    #[arg(
        long,
        env = "HOOKMESH_SIDECAR_SECRET_PREFIX",
        default_value = "hookmesh-sidecar-"
    )]
    sidecar_secret_prefix: String,
    /// Publish each workload's sidecar config (and the grants to read it) in this namespace.
    /// Default when the webhook is on: the config Secret's namespace. Neither: not published.
    #[arg(long, env = "HOOKMESH_SIDECAR_CONFIG_NAMESPACE")]
    sidecar_config_namespace: Option<String>,
    /// ClusterRole (events create) bound to injected Pods' ServiceAccounts in their own
    /// namespaces, so a sidecar can record an Event on its Pod when a drain leaves events behind.
    #[arg(long, env = "HOOKMESH_SIDECAR_EVENTS_ROLE")]
    sidecar_events_role: Option<String>,
}

impl WebhookArgs {
    /// Where sidecar configs are published, if they are.
    fn naming(&self, config_secret: &SecretRef) -> Option<hookmesh_operator::sidecars::Naming> {
        let config_namespace = self
            .sidecar_config_namespace
            .clone()
            .or_else(|| self.webhook_listen.map(|_| config_secret.namespace.clone()))?;
        Some(hookmesh_operator::sidecars::Naming {
            config_namespace,
            prefix: self.sidecar_secret_prefix.clone(),
            events_role: self.sidecar_events_role.clone().filter(|r| !r.is_empty()),
        })
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Crdgen) => {
            print!("{}", hookmesh_api::resources::crds_yaml()?);
            return Ok(());
        }
        Some(Command::Run(args)) => *args,
        None => cli.run,
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    tokio::runtime::Runtime::new()
        .context("cannot start the async runtime")?
        .block_on(run(args))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the operator");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn start_webhook(
    client: kube::Client,
    addr: SocketAddr,
    args: &WebhookArgs,
    config_namespace: String,
) -> anyhow::Result<()> {
    use hookmesh_operator::{inject::SidecarSettings, webhook};
    let secret = args
        .webhook_secret
        .clone()
        .context("--webhook-listen needs --webhook-secret NAMESPACE/NAME")?;
    anyhow::ensure!(
        !args.webhook_hosts.is_empty(),
        "--webhook-listen needs --webhook-hosts (the Service's DNS names)"
    );
    let bundle = webhook::load_or_create(
        client.clone(),
        &secret.namespace,
        &secret.name,
        &args.webhook_hosts,
    )
    .await
    .with_context(|| format!("the webhook certificate in Secret {secret}"))?;
    if let Some(config) = &args.webhook_config {
        webhook::keep_ca_bundle(
            client,
            config.clone(),
            bundle.ca.clone(),
            std::time::Duration::from_secs(60),
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    info!(%addr, "sidecar-injection webhook serving");
    let settings = SidecarSettings {
        image: args.sidecar_image.clone(),
        secret_prefix: args.sidecar_secret_prefix.clone(),
        config_namespace,
    };
    tokio::spawn(async move {
        if let Err(e) = webhook::serve(listener, &bundle, settings).await {
            error!(error = format!("{e:#}"), "webhook server stopped");
        }
    });
    Ok(())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let config_secret = args
        .config_secret
        .context("--config-secret NAMESPACE/NAME is required")?;
    let health = args.health.settings()?;
    let client = kube::Client::try_default()
        .await
        .context("cannot build a Kubernetes client (in-cluster config or KUBECONFIG)")?;
    let metrics = Arc::new(Metrics::default());
    let identity = std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "hookmesh-operator".into());
            format!("{host}-{}", std::process::id())
        });
    info!(%identity, secret = %config_secret, "starting hookmesh-operator");

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shutdown_tx = Arc::new(shutdown_tx);
    {
        let shutdown_tx = shutdown_tx.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            info!("shutdown requested");
            let _ = shutdown_tx.send(true);
        });
    }

    let http_task = {
        let mut rx = shutdown_rx.clone();
        let metrics = metrics.clone();
        let listener = tokio::net::TcpListener::bind(args.metrics_listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.metrics_listen))?;
        tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            http::serve(listener, metrics, stop).await
        })
    };

    // Every replica serves the webhook (the Service spreads the API server's calls), leader or
    // not: injection is stateless.
    let sidecars = args.webhook.naming(&config_secret);
    if let (Some(addr), Some(naming)) = (args.webhook.webhook_listen, &sidecars) {
        start_webhook(
            client.clone(),
            addr,
            &args.webhook,
            naming.config_namespace.clone(),
        )
        .await?;
    }

    let (leader_tx, mut leader_rx) = watch::channel(false);
    let elector_task = if args.leader_election {
        let namespace = args
            .lease_namespace
            .clone()
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| config_secret.namespace.clone());
        let cfg = LeaseConfig::new(namespace, args.lease_name.clone(), identity.clone());
        info!(lease = %format!("{}/{}", cfg.namespace, cfg.name), "leader election on");
        let elector = LeaderElector::new(client.clone(), cfg);
        Some(tokio::spawn(elector.run(leader_tx, shutdown_rx.clone())))
    } else {
        let _ = leader_tx.send(true);
        // Keep the sender alive for the whole run.
        let mut rx = shutdown_rx.clone();
        Some(tokio::spawn(async move {
            let _ = rx.wait_for(|s| *s).await;
            drop(leader_tx);
        }))
    };

    let mut shutdown = shutdown_rx.clone();
    let mut result = Ok(());
    'outer: loop {
        tokio::select! {
            r = leader_rx.wait_for(|l| *l) => {
                if r.is_err() { break 'outer; }
            }
            _ = shutdown.wait_for(|s| *s) => break 'outer,
        }
        info!("leading: starting controllers");
        metrics.is_leader.store(true, Ordering::Relaxed);
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: Some(identity.clone()),
            },
        );
        let mut work = tokio::spawn(controller::run(
            client.clone(),
            config_secret.clone(),
            metrics.clone(),
            recorder,
            sidecars.clone(),
            health.clone(),
        ));
        let stop = tokio::select! {
            _ = leader_rx.wait_for(|l| !*l) => { warn!("lost leadership: stopping controllers"); false }
            _ = shutdown.wait_for(|s| *s) => true,
            r = &mut work => {
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => { error!(error = %format!("{e:#}"), "controllers stopped"); result = Err(e); }
                    Err(e) => { error!(error = %e, "controller task failed"); result = Err(e.into()); }
                }
                true
            }
        };
        work.abort();
        let _ = work.await;
        metrics.is_leader.store(false, Ordering::Relaxed);
        metrics.synced.store(false, Ordering::Relaxed);
        if stop {
            break;
        }
    }
    // Stop the elector (it releases the Lease) and the HTTP server, whatever ended the loop.
    let _ = shutdown_tx.send(true);
    if let Some(t) = elector_task {
        let _ = t.await;
    }
    match http_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "HTTP server error"),
        Err(e) => warn!(error = %e, "HTTP server task failed"),
    }
    info!("stopped");
    result
}
