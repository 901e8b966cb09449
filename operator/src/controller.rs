//! Wiring to the API server.
//!
//! - One reflector (watch + cache) per input kind: Source, Endpoint, Subscription, Secret.
//!   Every watch event wakes the compile loop.
//! - The compile loop debounces (a burst of `kubectl apply` compiles once), snapshots the
//!   caches, skips the work when the compile inputs did not change (status writes do not bump
//!   `generation`), generates missing Endpoint signing Secrets, compiles ([`reconcile::plan`]),
//!   server-side-applies the config Secret when its hash changed, and publishes the plan.
//! - One kube-rs `Controller` per kind, fed by the same watch streams, reconciles each object's
//!   status against the latest plan. Every new plan re-triggers all three controllers
//!   (`reconcile_all_on`); that is how a change to a Secret (or to an Endpoint a Subscription
//!   routes to) reaches the status of every object that depends on it. Deleted objects leave the
//!   caches, so the next compile drops their routes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use hookmesh_api::{Endpoint, Source, Subscription};
use k8s_openapi::api::core::v1::{Pod, PodSpec, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tracing::{debug, error, info, info_span, warn, Instrument};

use crate::health;
use crate::metrics::Metrics;
use crate::publish::{self, SecretRef};
use crate::reconcile::{self, DesiredStatus, Plan, Snapshot};
use crate::sidecars::{self, Naming, Slice};
use crate::signing;
use crate::status::{self, HasStatus};

/// Quiet time that ends a burst of changes.
const DEBOUNCE_QUIET: Duration = Duration::from_millis(200);
/// Longest a continuous stream of changes may delay a compile.
const DEBOUNCE_MAX: Duration = Duration::from_secs(1);
/// Retry delay after a failed publish or signing-Secret create.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Periodic status re-check even without changes.
const RESYNC: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("status patch failed: {0}")]
    Kube(#[from] kube::Error),
}

/// Shared by the compile loop and the three controllers.
pub struct Ctx {
    pub client: Client,
    pub config_secret: SecretRef,
    pub plan: watch::Receiver<Option<Arc<Plan>>>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Where workloads' sidecar configs are published; `None`: not at all.
    pub sidecars: Option<Naming>,
}

/// The reflector caches the compile loop reads.
#[derive(Clone)]
pub struct Stores {
    pub sources: Store<Source>,
    pub endpoints: Store<Endpoint>,
    pub subscriptions: Store<Subscription>,
    pub secrets: Store<Secret>,
    /// Injected Pods (cached only when sidecar configs are published).
    pub pods: Option<Store<Pod>>,
}

impl Stores {
    /// Everything cached now, minus the config Secret the operator writes itself.
    pub fn snapshot(&self, config_secret: &SecretRef, sidecars: Option<&Naming>) -> Snapshot {
        let own = |s: &Secret| {
            (s.namespace().as_deref() == Some(config_secret.namespace.as_str())
                && s.name_any() == config_secret.name)
                || sidecars.is_some_and(|n| sidecars::slice_of(s, n).is_some())
        };
        Snapshot {
            sources: self.sources.state().iter().map(|o| (**o).clone()).collect(),
            endpoints: self
                .endpoints
                .state()
                .iter()
                .map(|o| (**o).clone())
                .collect(),
            subscriptions: self
                .subscriptions
                .state()
                .iter()
                .map(|o| (**o).clone())
                .collect(),
            secrets: self
                .secrets
                .state()
                .iter()
                .filter(|s| !own(s))
                .map(|o| (**o).clone())
                .collect(),
            sidecar_pods: self
                .pods
                .iter()
                .flat_map(|p| p.state())
                .filter_map(|p| sidecars::sidecar_pod(&p))
                .collect(),
        }
    }

    /// The workloads whose slice Secrets exist now.
    fn published_slices(&self, naming: &Naming) -> Vec<(String, String)> {
        self.secrets
            .state()
            .iter()
            .filter_map(|s| sidecars::slice_of(s, naming))
            .collect()
    }

    async fn wait_until_ready(&self) -> anyhow::Result<()> {
        self.sources.wait_until_ready().await?;
        self.endpoints.wait_until_ready().await?;
        self.subscriptions.wait_until_ready().await?;
        self.secrets.wait_until_ready().await?;
        if let Some(pods) = &self.pods {
            pods.wait_until_ready().await?;
        }
        Ok(())
    }
}

/// Run the operator's work (as leader) until the future is dropped or a watch ends.
pub async fn run(
    client: Client,
    config_secret: SecretRef,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    sidecars: Option<Naming>,
    health: Option<health::Settings>,
) -> anyhow::Result<()> {
    let changed = Arc::new(Notify::new());
    let (plan_tx, plan_rx) = watch::channel::<Option<Arc<Plan>>>(None);
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        config_secret: config_secret.clone(),
        plan: plan_rx.clone(),
        recorder,
        metrics: metrics.clone(),
        sidecars: sidecars.clone(),
    });
    let wc = watcher::Config::default();

    let (sources, sources_w) = reflector::store::<Source>();
    let (endpoints, endpoints_w) = reflector::store::<Endpoint>();
    let (subscriptions, subscriptions_w) = reflector::store::<Subscription>();
    let (secrets, secrets_w) = reflector::store::<Secret>();
    let (pods, pods_w) = reflector::store::<Pod>();
    let stores = Stores {
        sources: sources.clone(),
        endpoints: endpoints.clone(),
        subscriptions: subscriptions.clone(),
        secrets,
        pods: sidecars.is_some().then_some(pods),
    };

    let source_ctl = controller_for(
        watched(
            Api::<Source>::all(client.clone()),
            wc.clone(),
            sources_w,
            changed.clone(),
        ),
        sources,
        plan_rx.clone(),
        ctx.clone(),
    );
    let endpoint_ctl = controller_for(
        watched(
            Api::<Endpoint>::all(client.clone()),
            wc.clone(),
            endpoints_w,
            changed.clone(),
        ),
        endpoints,
        plan_rx.clone(),
        ctx.clone(),
    );
    let subscription_ctl = controller_for(
        watched(
            Api::<Subscription>::all(client.clone()),
            wc.clone(),
            subscriptions_w,
            changed.clone(),
        ),
        subscriptions,
        plan_rx,
        ctx.clone(),
    );
    let secret_watch = {
        let changed = changed.clone();
        watcher(Api::<Secret>::all(client.clone()), wc)
            .default_backoff()
            .modify(|s: &mut Secret| s.managed_fields_mut().clear())
            .reflect(secrets_w)
            .for_each(move |ev| {
                match ev {
                    Ok(_) => changed.notify_one(),
                    Err(e) => warn!(error = %e, "Secret watch error; retrying"),
                }
                std::future::ready(())
            })
    };
    let pod_watch = {
        let changed = changed.clone();
        let client = client.clone();
        let on = sidecars.is_some();
        async move {
            if !on {
                return std::future::pending::<()>().await;
            }
            // Only injected Pods, and only what says whose they are: the cache stays small.
            let wc =
                watcher::Config::default().labels(&format!("{}=true", crate::inject::INJECT_LABEL));
            watcher(Api::<Pod>::all(client.clone()), wc)
                .default_backoff()
                .modify(|p: &mut Pod| {
                    p.managed_fields_mut().clear();
                    p.status = None;
                    let account = p.spec.as_ref().and_then(|s| s.service_account_name.clone());
                    p.spec = Some(PodSpec {
                        service_account_name: account,
                        ..PodSpec::default()
                    });
                })
                .reflect(pods_w)
                .for_each(move |ev| {
                    match ev {
                        Ok(_) => changed.notify_one(),
                        Err(e) => warn!(error = %e, "Pod watch error; retrying"),
                    }
                    std::future::ready(())
                })
                .await
        }
    };
    let health_loop = {
        let (client, store, recorder, metrics) = (
            client.clone(),
            stores.endpoints.clone(),
            ctx.recorder.clone(),
            metrics.clone(),
        );
        async move {
            match health {
                Some(s) => {
                    store.wait_until_ready().await.ok();
                    health::run(client, store, recorder, metrics, s).await
                }
                None => std::future::pending::<()>().await,
            }
        }
    };
    let compile = compile_loop(ctx.clone(), stores, changed, plan_tx);

    tokio::select! {
        _ = source_ctl => anyhow::bail!("Source controller stopped"),
        _ = endpoint_ctl => anyhow::bail!("Endpoint controller stopped"),
        _ = subscription_ctl => anyhow::bail!("Subscription controller stopped"),
        _ = secret_watch => anyhow::bail!("Secret watch stopped"),
        _ = pod_watch => anyhow::bail!("Pod watch stopped"),
        _ = health_loop => anyhow::bail!("endpoint health loop stopped"),
        r = compile => r,
    }
}

/// A cached watch of one kind whose events also wake the compile loop.
fn watched<K>(
    api: Api<K>,
    wc: watcher::Config,
    writer: reflector::store::Writer<K>,
    changed: Arc<Notify>,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    watcher(api, wc)
        .default_backoff()
        .modify(|o: &mut K| o.managed_fields_mut().clear())
        .reflect(writer)
        .inspect(move |ev| match ev {
            Ok(_) => changed.notify_one(),
            Err(e) => warn!(error = %e, kind = %K::kind(&()), "watch error; retrying"),
        })
        .applied_objects()
}

/// One item per new plan.
fn plan_updates(rx: watch::Receiver<Option<Arc<Plan>>>) -> impl Stream<Item = ()> + Send {
    futures::stream::unfold(rx, |mut r| async move {
        r.changed().await.ok()?;
        Some(((), r))
    })
}

fn controller_for<K>(
    stream: impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    store: Store<K>,
    plan_rx: watch::Receiver<Option<Arc<Plan>>>,
    ctx: Arc<Ctx>,
) -> impl std::future::Future<Output = ()> + Send
where
    K: HasStatus + Send + Sync + 'static,
{
    Controller::for_stream(stream, store)
        .with_config(ControllerConfig::default().debounce(Duration::from_millis(100)))
        .reconcile_all_on(plan_updates(plan_rx))
        .run(reconcile_object::<K>, error_policy::<K>, ctx)
        .for_each(|res| {
            if let Err(e) = res {
                debug!(error = %e, "reconcile did not complete");
            }
            std::future::ready(())
        })
}

fn error_policy<K: HasStatus>(obj: Arc<K>, err: &ReconcileError, ctx: Arc<Ctx>) -> Action {
    Metrics::inc(&ctx.metrics.status_patch_errors);
    warn!(kind = %K::kind(&()), object = %obj.name_any(), error = %err, "reconcile failed; retrying");
    Action::requeue(RETRY_AFTER)
}

/// Bring one object's status in line with the latest plan. Writes only `/status`, only on
/// change; records an Event when the object starts failing or recovers.
pub async fn reconcile_object<K: HasStatus>(
    obj: Arc<K>,
    ctx: Arc<Ctx>,
) -> Result<Action, ReconcileError> {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let span = info_span!("reconcile", kind = %K::kind(&()), namespace = %ns, name = %name);
    async move {
        Metrics::inc(&ctx.metrics.reconciles);
        let key = (K::KIND, ns.clone(), name.clone());
        let generation = obj.meta().generation;
        let current = obj.current_status();
        let plan = ctx.plan.borrow().clone();
        let desired = match plan.as_ref().and_then(|p| p.desired_for(&key, generation)) {
            Some(d) => d.clone(),
            // Not compiled yet: say so (kstatus / Argo CD read Unknown as progressing).
            None if current.ready().is_none() => {
                DesiredStatus::first_sight(K::KIND, &ns, &name, generation)
            }
            // The next plan re-triggers this reconcile.
            None => return Ok(Action::await_change()),
        };
        let now = Time(Timestamp::now());
        if let Some(patch) = status::status_patch(&current, &desired, &now) {
            status::patch_status(ctx.client.clone(), obj.as_ref(), &patch).await?;
            Metrics::inc(&ctx.metrics.status_patches);
            info!(ready = desired.ready.as_str(), reason = %desired.reason, "status updated");
            let event = if status::newly_failing(&current, &desired) {
                Some(Event {
                    type_: EventType::Warning,
                    reason: desired.reason.clone(),
                    note: Some(desired.message.clone()),
                    action: "Compile".into(),
                    secondary: None,
                })
            } else if status::recovered(&current, &desired) {
                Some(Event {
                    type_: EventType::Normal,
                    reason: "Ready".into(),
                    note: Some("compiled into the gateway config".into()),
                    action: "Compile".into(),
                    secondary: None,
                })
            } else {
                None
            };
            if let Some(ev) = event {
                if let Err(e) = ctx.recorder.publish(&ev, &obj.object_ref(&())).await {
                    debug!(error = %e, "could not record an Event");
                }
            }
        }
        Ok(Action::requeue(RESYNC))
    }
    .instrument(span)
    .await
}

/// Wait for a change, then for the burst to end.
async fn debounce(changed: &Notify, retry_at: Option<Instant>) {
    match retry_at {
        Some(at) => {
            tokio::select! {
                _ = changed.notified() => {}
                _ = tokio::time::sleep_until(at) => return,
            }
        }
        None => changed.notified().await,
    }
    let start = Instant::now();
    loop {
        let quiet = tokio::time::sleep(DEBOUNCE_QUIET);
        tokio::select! {
            _ = changed.notified() => {
                if start.elapsed() >= DEBOUNCE_MAX {
                    return;
                }
            }
            _ = quiet => return,
        }
    }
}

async fn compile_loop(
    ctx: Arc<Ctx>,
    stores: Stores,
    changed: Arc<Notify>,
    plan_tx: watch::Sender<Option<Arc<Plan>>>,
) -> anyhow::Result<()> {
    stores.wait_until_ready().await?;
    info!("caches synced");
    let mut last_fingerprint = None;
    let mut last_hash: Option<String> = None;
    let mut retry_at: Option<Instant> = None;
    let mut first = true;
    // What each workload's slice objects were last applied with (config hash, accounts).
    let mut slices_applied: BTreeMap<(String, String), (String, BTreeSet<String>)> =
        BTreeMap::new();
    loop {
        if !first {
            debounce(&changed, retry_at).await;
        }
        first = false;
        let mut snap = stores.snapshot(&ctx.config_secret, ctx.sidecars.as_ref());
        let fingerprint = reconcile::fingerprint(&snap);
        // Same inputs and the config Secret still says what was published: nothing to do.
        // (Someone editing or deleting the config Secret gets it re-applied.)
        if retry_at.is_none()
            && last_fingerprint.as_ref() == Some(&fingerprint)
            && published_hash(&stores, &ctx.config_secret) == last_hash
        {
            continue;
        }
        retry_at = None;
        let span = info_span!("compile");
        let ok = async {
            let mut ok = true;
            for missing in reconcile::missing_signing_secrets(&snap) {
                match signing::create_if_absent(ctx.client.clone(), &missing).await {
                    Ok(Some(created)) => {
                        Metrics::inc(&ctx.metrics.signing_secrets_created);
                        info!(namespace = %missing.namespace, secret = %missing.secret_name, endpoint = %missing.endpoint, "generated Endpoint signing Secret");
                        snap.secrets.push(created);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        ok = false;
                        warn!(namespace = %missing.namespace, secret = %missing.secret_name, error = %e, "cannot create Endpoint signing Secret");
                    }
                }
            }
            for r in reconcile::rotations(&snap) {
                let now = u64::try_from(Timestamp::now().as_millisecond()).unwrap_or(0);
                match signing::rotate(ctx.client.clone(), &r, now).await {
                    Ok(written) => {
                        info!(namespace = %r.namespace, secret = %r.secret_name, endpoint = %r.endpoint,
                            grace_ms = r.grace_ms, "rotated the Endpoint's signing Secret; the old key signs too until the grace period ends");
                        snap.secrets.retain(|s| !(s.namespace().as_deref() == Some(r.namespace.as_str()) && s.name_any() == r.secret_name));
                        snap.secrets.push(written);
                    }
                    Err(e) => {
                        ok = false;
                        warn!(namespace = %r.namespace, secret = %r.secret_name, error = %e, "cannot rotate the Endpoint's signing Secret");
                    }
                }
            }
            let started = std::time::Instant::now();
            let plan = reconcile::plan(&snap);
            record_compile(&ctx.metrics, &plan, started.elapsed());
            for p in reconcile::secret_problems(&plan.compiled) {
                warn!(problem = %p, "API key Secret left out of the config");
            }
            let published = published_hash(&stores, &ctx.config_secret);
            let hash = plan.config().hash.clone();
            if published.as_deref() != Some(hash.as_str()) {
                match publish::apply_config(ctx.client.clone(), &ctx.config_secret, plan.config()).await {
                    Ok(()) => {
                        Metrics::inc(&ctx.metrics.publishes);
                        ctx.metrics.set_hash(&hash);
                        info!(%hash, secret = %ctx.config_secret, problems = plan.compiled.problems.len(), "published gateway config");
                    }
                    Err(e) => {
                        ok = false;
                        Metrics::inc(&ctx.metrics.publish_errors);
                        error!(error = %e, "cannot publish the gateway config");
                    }
                }
            } else {
                ctx.metrics.set_hash(&hash);
            }
            if let Some(naming) = &ctx.sidecars {
                ok &= publish_slices(&ctx.client, naming, &plan, &stores, &mut slices_applied).await;
            }
            // Statuses follow the compile even when publishing failed: they describe the objects.
            plan_tx.send_replace(Some(Arc::new(plan)));
            ctx.metrics.synced.store(true, std::sync::atomic::Ordering::Relaxed);
            (ok, hash)
        }
        .instrument(span)
        .await;
        let (ok, hash) = ok;
        if ok {
            last_fingerprint = Some(fingerprint);
            last_hash = Some(hash);
        } else {
            retry_at = Some(Instant::now() + RETRY_AFTER);
        }
    }
}

/// Apply every slice whose config or accounts changed since it was last applied, and remove the
/// slices of workloads that no object and no Pod names any more. `false` if any write failed
/// (the loop retries; what failed is applied again then).
async fn publish_slices(
    client: &Client,
    naming: &Naming,
    plan: &Plan,
    stores: &Stores,
    applied: &mut BTreeMap<(String, String), (String, BTreeSet<String>)>,
) -> bool {
    let mut ok = true;
    let published: BTreeSet<(String, String)> =
        stores.published_slices(naming).into_iter().collect();
    for s in &plan.sidecars {
        let want = (s.config.hash.clone(), s.service_accounts.clone());
        if published.contains(&s.key()) && applied.get(&s.key()) == Some(&want) {
            continue;
        }
        match sidecars::apply(client, naming, s).await {
            Ok(()) => {
                info!(namespace = %s.namespace, workload = %s.workload, hash = %s.config.hash,
                    accounts = ?s.service_accounts, "published sidecar config");
                applied.insert(s.key(), want);
            }
            Err(e) => {
                ok = false;
                applied.remove(&s.key());
                error!(error = %e, "cannot publish a sidecar config");
            }
        }
    }
    let desired: BTreeSet<(String, String)> = plan.sidecars.iter().map(Slice::key).collect();
    let stale: BTreeSet<(String, String)> = published
        .into_iter()
        .chain(applied.keys().cloned())
        .filter(|k| !desired.contains(k))
        .collect();
    for (ns, w) in stale {
        match sidecars::remove(client, naming, &ns, &w).await {
            Ok(()) => {
                info!(namespace = %ns, workload = %w, "removed the sidecar config of a workload nothing names");
                applied.remove(&(ns, w));
            }
            Err(e) => {
                ok = false;
                error!(error = %e, "cannot remove a stale sidecar config");
            }
        }
    }
    ok
}

fn published_hash(stores: &Stores, at: &SecretRef) -> Option<String> {
    stores
        .secrets
        .get(&ObjectRef::new(&at.name).within(&at.namespace))
        .and_then(|s| publish::published_hash(&s))
}

fn record_compile(m: &Metrics, plan: &Plan, took: Duration) {
    use std::sync::atomic::Ordering::Relaxed;
    Metrics::inc(&m.compiles);
    m.compile_seconds_micros
        .fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
    m.problems
        .store(plan.compiled.problems.len() as u64, Relaxed);
    let c = plan.config();
    m.sources.store(c.sources.len() as u64, Relaxed);
    m.endpoints.store(c.endpoints.len() as u64, Relaxed);
    m.subscriptions.store(c.subscriptions.len() as u64, Relaxed);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A burst of changes ends in one compile, after the burst has been quiet for a moment.
    #[tokio::test]
    async fn a_burst_of_changes_is_debounced_into_one_wakeup() {
        let changed = Arc::new(Notify::new());
        let start = Instant::now();
        let burst = {
            let changed = changed.clone();
            tokio::spawn(async move {
                for _ in 0..6 {
                    changed.notify_one();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        debounce(&changed, None).await;
        let took = start.elapsed();
        burst.await.unwrap();
        assert!(
            took >= Duration::from_millis(250 + 150),
            "returned mid-burst after {took:?}"
        );
        assert!(
            took < DEBOUNCE_MAX + Duration::from_millis(500),
            "took {took:?}"
        );
    }

    /// An endless stream of changes still compiles at least every DEBOUNCE_MAX.
    #[tokio::test]
    async fn a_steady_stream_of_changes_cannot_starve_the_compile() {
        let changed = Arc::new(Notify::new());
        let noise = {
            let changed = changed.clone();
            tokio::spawn(async move {
                loop {
                    changed.notify_one();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let start = Instant::now();
        debounce(&changed, None).await;
        noise.abort();
        assert!(start.elapsed() < DEBOUNCE_MAX + Duration::from_millis(300));
    }

    /// A pending retry wakes the loop without any change.
    #[tokio::test]
    async fn a_retry_deadline_wakes_the_loop() {
        let changed = Notify::new();
        let start = Instant::now();
        debounce(&changed, Some(Instant::now() + Duration::from_millis(100))).await;
        assert!(start.elapsed() < Duration::from_millis(500));
    }
}
