//! Wiring: open the store, load the config, start the stages, serve HTTP until told to stop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::app::router;
use crate::config::{self, LiveConfig};
use crate::deliver;
use crate::http_refusals;
use crate::metrics::Metrics;
use crate::peers::drain::{self, Lifecycle};
use crate::peers::{discovery, PeerSettings, Peers};
use crate::ratelimit::RateLimiter;
use crate::state::{AppState, Shared};
use crate::store::Store;

/// Where the config comes from.
#[derive(Clone, Debug)]
pub enum ConfigFrom {
    /// Standalone: a directory of CR and Secret YAML, recompiled on change.
    Manifests(PathBuf),
    /// In cluster: the Secret the operator publishes (`namespace`, `name`).
    Secret { namespace: String, name: String },
}

#[derive(Clone, Debug)]
pub struct Options {
    pub config: ConfigFrom,
    pub data_dir: PathBuf,
    /// sled's page cache, in MiB.
    pub store_cache_mb: u64,
    pub listen: SocketAddr,
    /// REST API requests per second per API key (0: unlimited).
    pub api_rate_limit: u32,
    pub retention: crate::retention::RetentionOptions,
    pub delivery: deliver::Settings,
    pub peers: PeerSettings,
    /// Largest body `POST /api/v1/events` reads.
    pub publish_max_body: u64,
    /// Standalone: which objects of the manifests this process serves.
    pub slice: config::Slice,
    /// In cluster: register endpoints and subscriptions through the REST API, as resources.
    pub registration: bool,
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    std::fs::create_dir_all(&opts.data_dir)
        .with_context(|| format!("creating the data directory {}", opts.data_dir.display()))?;
    let store = Store::open_with(&opts.data_dir.join("sled"), opts.store_cache_mb << 20)
        .with_context(|| format!("opening the store under {}", opts.data_dir.display()))?;
    let mut manage = None;
    let (live, kube_client) = match &opts.config {
        ConfigFrom::Manifests(dir) => {
            let live = LiveConfig::new(config::initial_standalone(dir, &opts.slice)?);
            config::watch_standalone(dir.clone(), opts.slice.clone(), live.clone())?;
            // A sidecar serves one workload's slice of the directory; registering is the
            // gateway's.
            if opts.slice == config::Slice::Gateway {
                manage = Some(Arc::new(crate::manage::Manager::Files(
                    crate::manage::Files::new(dir.clone(), opts.slice.clone(), live.clone()),
                )));
            }
            (live, None)
        }
        ConfigFrom::Secret { namespace, name } => {
            // Not ready (empty hash) until the operator's config arrives.
            let live = LiveConfig::new(hookmesh_api::GatewayConfig::default());
            let client = kube::Client::try_default()
                .await
                .context("connecting to the Kubernetes API (in-cluster config or KUBECONFIG)")?;
            let target = live.clone();
            let (ns, n) = (namespace.clone(), name.clone());
            let watch_client = client.clone();
            tokio::spawn(async move {
                if let Err(e) =
                    crate::cluster::watch_config_secret(watch_client, ns, n, move |cfg| {
                        target.store(cfg);
                    })
                    .await
                {
                    tracing::error!(error = format!("{e:#}"), "config Secret watch ended");
                }
            });
            if opts.registration {
                manage = Some(Arc::new(crate::manage::Manager::Kube(
                    crate::manage::Kube::new(client.clone(), live.clone()),
                )));
            }
            (live, Some(client))
        }
    };
    tracing::info!(hash = %live.load().hash(), "config loaded");
    let metrics = Arc::new(Metrics::new());
    crate::retention::spawn(store.clone(), opts.retention);
    let engine =
        deliver::Engine::start(store.clone(), live.clone(), metrics.clone(), opts.delivery)
            .context("starting the delivery engine")?;
    // Pauses (410 Gone) outlive restarts; so does their gauge.
    match store.paused_endpoints() {
        Ok(paused) => {
            for (ns, name, _) in paused {
                metrics.endpoint_paused(&ns, &name, true);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot list paused endpoints"),
    }
    // Every id this process creates carries its node number from here on.
    crate::store::set_node(opts.peers.node);
    let drain_on_shutdown = opts.peers.drain_on_shutdown;
    let peers = Arc::new(Peers::new(opts.peers).context("setting up the peer client")?);
    let rate = opts.api_rate_limit;
    let state = AppState::new(Shared {
        live,
        store: store.clone(),
        metrics: metrics.clone(),
        limiter: Arc::new(RateLimiter::new(rate, rate.saturating_mul(2))),
        health: engine.health(),
        peers: peers.clone(),
        lifecycle: Arc::new(Lifecycle::new(Some(engine))),
        publish_max_body: opts.publish_max_body,
        manage,
    });
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("binding {}", opts.listen))?;
    tracing::info!(listen = %opts.listen, node = peers.node(), "hookmesh data plane serving");
    // Bound first, so this pod's own address answers the first probe.
    discovery::spawn(peers.clone(), metrics.clone());
    let lifecycle = state.lifecycle.clone();
    let stopping = {
        let (lifecycle, peers, store, metrics) = (
            lifecycle.clone(),
            peers.clone(),
            store.clone(),
            metrics.clone(),
        );
        async move {
            shutdown_signal().await;
            if drain_on_shutdown {
                // Serving goes on meanwhile: reads, and peers' calls about this pod's objects.
                let timeout = peers.settings.drain_timeout;
                let report = drain::drain(&lifecycle, &peers, &store, &metrics, timeout).await;
                if let Some(client) = kube_client {
                    crate::pod_event::record_drain(client, &report).await;
                }
            }
        }
    };
    axum::serve(http_refusals::JsonRefusals(listener), router(state))
        .with_graceful_shutdown(stopping)
        .await
        .context("serving HTTP")?;
    // Ingest has stopped, so nothing new becomes due; let attempts in flight finish.
    if let Some(engine) = lifecycle.take_engine().await {
        engine.shutdown().await;
    }
    store.flush().context("flushing the store at shutdown")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
