//! The live config: what this pod routes by, swapped atomically on reload.
//!
//! Standalone mode compiles a manifests directory with the same `api::compile` the operator uses
//! and recompiles when a file changes. A reload that fails (unreadable YAML, or any object the
//! compiler refuses) leaves the last good config serving and logs each problem with its object;
//! only the very first load serves the valid rest of a partly invalid directory, since there is
//! nothing older to keep.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use hookmesh_api::config::{EndpointConfig, SourceConfig, SubscriptionConfig};
use hookmesh_api::manifests;
use hookmesh_api::{compile, GatewayConfig};
use notify::Watcher as _;
use wildmatch::WildMatch;

/// A config plus the lookups routing needs, built once per reload instead of per request.
pub struct Live {
    pub config: GatewayConfig,
    sources: HashMap<(String, String), usize>,
    endpoints: HashMap<(String, String), usize>,
    /// Subscriptions per namespace, with their event-type globs compiled.
    pub(crate) subscriptions: HashMap<String, Vec<CompiledSubscription>>,
}

pub(crate) struct CompiledSubscription {
    pub index: usize,
    pub event_types: Vec<WildMatch>,
}

impl Live {
    pub fn new(config: GatewayConfig) -> Self {
        let sources = config
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| ((s.namespace.clone(), s.name.clone()), i))
            .collect();
        let endpoints = config
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| ((e.namespace.clone(), e.name.clone()), i))
            .collect();
        let mut subscriptions: HashMap<String, Vec<CompiledSubscription>> = HashMap::new();
        for (index, s) in config.subscriptions.iter().enumerate() {
            subscriptions
                .entry(s.namespace.clone())
                .or_default()
                .push(CompiledSubscription {
                    index,
                    event_types: s
                        .filter
                        .event_types
                        .iter()
                        .map(|g| WildMatch::new(g))
                        .collect(),
                });
        }
        Live {
            config,
            sources,
            endpoints,
            subscriptions,
        }
    }

    pub fn hash(&self) -> &str {
        &self.config.hash
    }

    pub fn source(&self, namespace: &str, name: &str) -> Option<&SourceConfig> {
        self.sources
            .get(&(namespace.to_string(), name.to_string()))
            .map(|i| &self.config.sources[*i])
    }

    pub fn endpoint(&self, namespace: &str, name: &str) -> Option<&EndpointConfig> {
        self.endpoints
            .get(&(namespace.to_string(), name.to_string()))
            .map(|i| &self.config.endpoints[*i])
    }

    pub(crate) fn subscription(&self, index: usize) -> &SubscriptionConfig {
        &self.config.subscriptions[index]
    }
}

/// The config in force, readable without locks from every request.
#[derive(Clone)]
pub struct LiveConfig {
    current: Arc<ArcSwap<Live>>,
}

impl LiveConfig {
    pub fn new(config: GatewayConfig) -> Self {
        LiveConfig {
            current: Arc::new(ArcSwap::from_pointee(Live::new(config))),
        }
    }

    pub fn load(&self) -> Arc<Live> {
        self.current.load_full()
    }

    /// Swap in a new config; a no-op when its hash is the one already live.
    pub fn store(&self, config: GatewayConfig) -> bool {
        if config.hash == self.current.load().config.hash {
            return false;
        }
        tracing::info!(hash = %config.hash, sources = config.sources.len(), endpoints = config.endpoints.len(),
            subscriptions = config.subscriptions.len(), "config live");
        self.current.store(Arc::new(Live::new(config)));
        true
    }
}

/// Which slice of a manifests directory a standalone process serves: the gateway's (every
/// object bound to no workload), or one workload's, as its sidecar.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Slice {
    #[default]
    Gateway,
    Workload {
        namespace: String,
        name: String,
    },
}

impl Slice {
    fn audience(&self) -> compile::Audience<'_> {
        match self {
            Slice::Gateway => compile::Audience::Gateway,
            Slice::Workload { namespace, name } => compile::Audience::Workload { namespace, name },
        }
    }
}

/// Compile a manifests directory. `Err` when it cannot be read or parsed at all; otherwise the
/// compiled config of `slice` and every problem (loader and compiler) found.
pub fn compile_dir(dir: &Path, slice: &Slice) -> anyhow::Result<compile::Compiled> {
    compile_dir_with(dir, slice, None)
}

/// [`compile_dir`] as if the file `extra` (path, text) were there too: a dry run of a write.
pub fn compile_dir_with(
    dir: &Path,
    slice: &Slice,
    extra: Option<(&Path, &str)>,
) -> anyhow::Result<compile::Compiled> {
    let mut loaded = manifests::load_dir(dir)
        .with_context(|| format!("loading manifests from {}", dir.display()))?;
    if let Some((path, text)) = extra {
        manifests::load_str(text, path, &mut loaded)
            .with_context(|| format!("loading {}", path.display()))?;
    }
    let mut compiled = compile(&loaded.inputs.for_audience(slice.audience()));
    compiled.problems.extend(loaded.problems);
    compiled.problems.sort();
    Ok(compiled)
}

/// First load of a standalone directory: the valid rest serves, problems are logged.
pub fn initial_standalone(dir: &Path, slice: &Slice) -> anyhow::Result<GatewayConfig> {
    let compiled = compile_dir(dir, slice)?;
    for p in &compiled.problems {
        tracing::warn!(kind = %p.kind, namespace = %p.namespace, name = %p.name, reason = %p.reason, "{}", p.message);
    }
    Ok(compiled.config)
}

/// Reload one standalone directory into `live`; returns whether a new config went live.
pub fn reload_standalone(dir: &Path, slice: &Slice, live: &LiveConfig) -> bool {
    match compile_dir(dir, slice) {
        Err(e) => {
            tracing::error!(
                error = format!("{e:#}"),
                "manifests unreadable; the last good config keeps serving"
            );
            false
        }
        Ok(compiled) if !compiled.problems.is_empty() => {
            for p in &compiled.problems {
                tracing::error!(kind = %p.kind, namespace = %p.namespace, name = %p.name, reason = %p.reason,
                    "{}; the last good config keeps serving", p.message);
            }
            false
        }
        Ok(compiled) => live.store(compiled.config),
    }
}

/// Watch `dir` and reload on change, debounced so an editor's burst of writes is one reload.
pub fn watch_standalone(dir: PathBuf, slice: Slice, live: LiveConfig) -> anyhow::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // Reading the files ourselves produces access events; only changes matter.
        if let Ok(ev) = res {
            if ev.kind.is_create() || ev.kind.is_modify() || ev.kind.is_remove() {
                let _ = tx.send(());
            }
        }
    })
    .context("starting the manifests watcher")?;
    watcher
        .watch(&dir, notify::RecursiveMode::Recursive)
        .with_context(|| format!("watching {}", dir.display()))?;
    tokio::spawn(async move {
        // Owning the watcher here keeps it alive for as long as the task runs.
        let _watcher = watcher;
        while rx.recv().await.is_some() {
            tokio::time::sleep(Duration::from_millis(150)).await;
            while rx.try_recv().is_ok() {}
            let (dir, slice, live) = (dir.clone(), slice.clone(), live.clone());
            let _ =
                tokio::task::spawn_blocking(move || reload_standalone(&dir, &slice, &live)).await;
        }
    });
    Ok(())
}
