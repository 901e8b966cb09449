//! The pure heart of the operator: a snapshot of the cluster's hookmesh objects and Secrets in,
//! a [`Plan`] out (the compiled config, the status every object should carry, the signing
//! Secrets to generate). No I/O, no clock: everything here is tested without a cluster.

use std::collections::{BTreeMap, BTreeSet};

use hookmesh_api::compile::{
    self, default_signing_secret_name, Compiled, Inputs, Kind, Problem, API_KEY_LABEL,
    DEFAULT_NAMESPACE,
};
use hookmesh_api::config::SigningConfig;
use hookmesh_api::{Endpoint, GatewayConfig, Source, Subscription};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use crate::sidecars::{self, SidecarPod, Slice};

/// Condition reason when an object is live in the config.
pub const REASON_READY: &str = "Ready";
/// Condition reason written on first sight, before the first compile that includes the object.
pub const REASON_RECONCILING: &str = "Reconciling";

/// Which kind of custom resource a status belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CrKind {
    Source,
    Endpoint,
    Subscription,
}

impl CrKind {
    fn api_kind(self) -> Kind {
        match self {
            CrKind::Source => Kind::Source,
            CrKind::Endpoint => Kind::Endpoint,
            CrKind::Subscription => Kind::Subscription,
        }
    }
}

/// `(kind, namespace, name)` of one custom resource.
pub type ObjKey = (CrKind, String, String);

/// Ready condition value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyStatus {
    True,
    False,
    Unknown,
}

impl ReadyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadyStatus::True => "True",
            ReadyStatus::False => "False",
            ReadyStatus::Unknown => "Unknown",
        }
    }
}

/// The status one object should carry (the parts the operator owns).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredStatus {
    pub observed_generation: Option<i64>,
    pub ready: ReadyStatus,
    pub reason: String,
    pub message: String,
    /// Sources: `/e/{namespace}/{name}`.
    pub ingest_path: Option<String>,
    /// Endpoints: number of ready Subscriptions routing to it.
    pub subscriptions: Option<i32>,
    /// Endpoints signing with Ed25519: the public key receivers verify with.
    pub public_key: Option<String>,
}

impl DesiredStatus {
    /// `Ready=Unknown` for an object the operator has seen but not compiled yet.
    pub fn first_sight(kind: CrKind, namespace: &str, name: &str, generation: Option<i64>) -> Self {
        DesiredStatus {
            observed_generation: generation,
            ready: ReadyStatus::Unknown,
            reason: REASON_RECONCILING.into(),
            message: "hookmesh-operator has seen this object and is compiling it".into(),
            ingest_path: (kind == CrKind::Source).then(|| ingest_path(namespace, name)),
            subscriptions: None,
            public_key: None,
        }
    }
}

/// Where a Source receives webhooks on every data-plane pod.
pub fn ingest_path(namespace: &str, name: &str) -> String {
    format!("/e/{namespace}/{name}")
}

/// Everything the operator read from the API (its reflector stores), at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub sources: Vec<Source>,
    pub endpoints: Vec<Endpoint>,
    pub subscriptions: Vec<Subscription>,
    /// Every Secret the operator can see (it filters them down to the referenced ones).
    pub secrets: Vec<Secret>,
    /// Injected Pods' workloads and ServiceAccounts (empty unless sidecar configs are on).
    pub sidecar_pods: BTreeSet<SidecarPod>,
}

/// What one compile decided.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Every object compiled together: what status is decided from.
    pub compiled: Compiled,
    /// The central gateway's config: the objects bound to no workload (a workload's objects
    /// are its sidecar's).
    pub gateway: GatewayConfig,
    /// Every workload's sidecar config: for each workload some object names or some injected
    /// Pod belongs to (one with Pods but no objects gets an empty config, so its sidecar starts).
    pub sidecars: Vec<Slice>,
    /// Desired status by object, for every object in the snapshot.
    pub statuses: BTreeMap<ObjKey, DesiredStatus>,
    /// The `metadata.generation` of every object this plan was compiled from: a reconcile for a
    /// newer generation must wait for the next plan.
    pub generations: BTreeMap<ObjKey, Option<i64>>,
}

impl Plan {
    /// What the config Secret publishes.
    pub fn config(&self) -> &GatewayConfig {
        &self.gateway
    }

    /// The desired status of one object, if this plan was compiled from its current generation.
    pub fn desired_for(&self, key: &ObjKey, generation: Option<i64>) -> Option<&DesiredStatus> {
        match self.generations.get(key) {
            Some(g) if *g == generation => self.statuses.get(key),
            _ => None,
        }
    }
}

fn ns_of<K: ResourceExt>(obj: &K) -> String {
    obj.namespace()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string())
}

fn is_api_key_secret(s: &Secret) -> bool {
    s.labels().get(API_KEY_LABEL).is_some_and(|v| v == "true")
}

/// `(namespace, name)` of every Secret some hookmesh object reads: verification and API-key
/// refs of Sources, Endpoint signing Secrets (explicit or the generated default).
pub fn referenced_secrets(snap: &Snapshot) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for s in &snap.sources {
        let ns = ns_of(s);
        if let Some(r) = &s.spec.verification.secret_ref {
            out.insert((ns.clone(), r.name.clone()));
        }
        if let Some(a) = &s.spec.auth {
            out.insert((ns.clone(), a.api_key_secret_ref.name.clone()));
        }
    }
    for e in &snap.endpoints {
        let name = match &e.spec.secret_ref {
            Some(r) => r.name.clone(),
            None => default_signing_secret_name(&e.name_any()),
        };
        out.insert((ns_of(e), name));
    }
    out
}

/// The Secrets the compiler needs: referenced ones and labelled API keys. Anything else in the
/// cluster is left out so that unrelated Secret churn never causes a recompile.
pub fn relevant_secrets(snap: &Snapshot) -> Vec<Secret> {
    let referenced = referenced_secrets(snap);
    snap.secrets
        .iter()
        .filter(|s| is_api_key_secret(s) || referenced.contains(&(ns_of(*s), s.name_any())))
        .cloned()
        .collect()
}

/// An Endpoint whose default signing Secret does not exist yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingSigningSecret {
    pub namespace: String,
    pub endpoint: String,
    pub endpoint_uid: Option<String>,
    pub secret_name: String,
    /// The Endpoint signs with Ed25519: the key is a `whsk_` seed, not a `whsec_` secret.
    pub ed25519: bool,
}

/// Annotation on an Endpoint: a new value rotates its generated signing Secret.
pub const ROTATE_ANNOTATION: &str = "hookmesh.io/rotate-signing-secret";
/// Annotation on an Endpoint: how long the replaced key keeps signing (default 24h).
pub const ROTATION_GRACE_ANNOTATION: &str = "hookmesh.io/rotation-grace";
/// Annotation on a generated signing Secret: the rotate value it was last rotated for.
pub const ROTATED_FOR_ANNOTATION: &str = "hookmesh.io/rotated-for";
pub const DEFAULT_ROTATION_GRACE_MS: u64 = 24 * 3600 * 1000;

/// A generated signing Secret to rotate: a fresh key in `secret`, the current one moved to
/// `previous` until `now + grace_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    pub namespace: String,
    pub endpoint: String,
    pub secret_name: String,
    /// The Endpoint's rotate annotation, recorded on the Secret once done.
    pub token: String,
    pub grace_ms: u64,
    /// The key being replaced.
    pub current: Vec<u8>,
    /// The Secret's resourceVersion: the write is refused if it changed meanwhile.
    pub resource_version: Option<String>,
    pub ed25519: bool,
}

fn is_ed25519(e: &Endpoint) -> bool {
    e.spec.signing.as_ref().and_then(|s| s.algorithm)
        == Some(hookmesh_api::resources::StandardWebhooksAlgorithm::Ed25519)
}

/// Endpoints without `secretRef` whose rotate annotation differs from what their generated
/// Secret was last rotated for. Secrets the operator did not generate are never rotated.
pub fn rotations(snap: &Snapshot) -> Vec<Rotation> {
    let mut out = Vec::new();
    for e in snap
        .endpoints
        .iter()
        .filter(|e| e.spec.secret_ref.is_none())
    {
        let Some(token) = e
            .annotations()
            .get(ROTATE_ANNOTATION)
            .filter(|t| !t.is_empty())
        else {
            continue;
        };
        let ns = ns_of(e);
        let secret_name = default_signing_secret_name(&e.name_any());
        let Some(secret) = snap
            .secrets
            .iter()
            .find(|s| ns_of(*s) == ns && s.name_any() == secret_name)
        else {
            continue;
        };
        let generated = secret
            .labels()
            .contains_key(crate::signing::GENERATED_LABEL);
        let done = secret.annotations().get(ROTATED_FOR_ANNOTATION) == Some(token);
        let current = secret
            .data
            .as_ref()
            .and_then(|d| d.get(hookmesh_api::compile::DEFAULT_SIGNING_SECRET_KEY))
            .map(|b| b.0.clone());
        let (true, false, Some(current)) = (generated, done, current) else {
            continue;
        };
        let grace_ms = e
            .annotations()
            .get(ROTATION_GRACE_ANNOTATION)
            .and_then(|g| hookmesh_api::duration::parse(g))
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(DEFAULT_ROTATION_GRACE_MS);
        out.push(Rotation {
            namespace: ns,
            endpoint: e.name_any(),
            secret_name,
            token: token.clone(),
            grace_ms,
            current,
            resource_version: secret.resource_version(),
            ed25519: is_ed25519(e),
        });
    }
    out
}

/// Endpoints without `secretRef` whose `<name>-signing` Secret is absent. A Secret that exists
/// but is wrong is never touched: the compiler reports it instead.
pub fn missing_signing_secrets(snap: &Snapshot) -> Vec<MissingSigningSecret> {
    let existing: BTreeSet<(String, String)> = snap
        .secrets
        .iter()
        .map(|s| (ns_of(s), s.name_any()))
        .collect();
    let mut out: Vec<MissingSigningSecret> = snap
        .endpoints
        .iter()
        .filter(|e| e.spec.secret_ref.is_none())
        .filter_map(|e| {
            let ns = ns_of(e);
            let secret_name = default_signing_secret_name(&e.name_any());
            (!existing.contains(&(ns.clone(), secret_name.clone()))).then(|| MissingSigningSecret {
                namespace: ns,
                endpoint: e.name_any(),
                endpoint_uid: e.uid(),
                secret_name,
                ed25519: is_ed25519(e),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.secret_name).cmp(&(&b.namespace, &b.secret_name)));
    out.dedup();
    out
}

/// What decides whether a recompile can change anything: every object's generation (status
/// writes do not bump it) and the resourceVersion of every relevant Secret. Equal fingerprints
/// mean equal compile inputs.
pub fn fingerprint(snap: &Snapshot) -> BTreeMap<(u8, String, String), String> {
    let mut out = BTreeMap::new();
    let gen = |g: Option<i64>| g.map(|g| g.to_string()).unwrap_or_default();
    for s in &snap.sources {
        out.insert((0, ns_of(s), s.name_any()), gen(s.metadata.generation));
    }
    for e in &snap.endpoints {
        // The rotate annotation is metadata (no new generation) but asks for work.
        let rotate = e
            .annotations()
            .get(ROTATE_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        out.insert(
            (1, ns_of(e), e.name_any()),
            format!("{}/{rotate}", gen(e.metadata.generation)),
        );
    }
    for s in &snap.subscriptions {
        out.insert((2, ns_of(s), s.name_any()), gen(s.metadata.generation));
    }
    for s in relevant_secrets(snap) {
        out.insert(
            (3, ns_of(&s), s.name_any()),
            s.resource_version().unwrap_or_default(),
        );
    }
    for p in &snap.sidecar_pods {
        out.insert(
            (
                4,
                p.namespace.clone(),
                format!("{}/{}", p.workload, p.service_account),
            ),
            String::new(),
        );
    }
    out
}

/// Compile the snapshot and decide every object's status.
pub fn plan(snap: &Snapshot) -> Plan {
    let inputs = Inputs {
        sources: snap.sources.clone(),
        endpoints: snap.endpoints.clone(),
        subscriptions: snap.subscriptions.clone(),
        secrets: relevant_secrets(snap),
    };
    let compiled = compile::compile(&inputs);
    let gateway = compile::compile(&inputs.for_audience(compile::Audience::Gateway)).config;
    let sidecars = sidecar_slices(&inputs, &snap.sidecar_pods);

    let mut sub_counts: BTreeMap<(&str, &str), i32> = BTreeMap::new();
    for s in &compiled.config.subscriptions {
        *sub_counts
            .entry((s.namespace.as_str(), s.endpoint.as_str()))
            .or_default() += 1;
    }

    let mut statuses = BTreeMap::new();
    let mut generations = BTreeMap::new();
    let mut add = |kind: CrKind, ns: String, name: String, gen: Option<i64>, extra: Extra| {
        let problem = compiled.problem_for(kind.api_kind(), &ns, &name);
        let mut d = desired(problem, gen);
        match extra {
            Extra::None => {}
            Extra::IngestPath => d.ingest_path = Some(ingest_path(&ns, &name)),
            Extra::Subscriptions => {
                d.subscriptions = Some(
                    sub_counts
                        .get(&(ns.as_str(), name.as_str()))
                        .copied()
                        .unwrap_or(0),
                );
                d.public_key =
                    compiled
                        .config
                        .endpoint(&ns, &name)
                        .and_then(|e| match &e.signing {
                            SigningConfig::StandardWebhooks {
                                ed25519: Some(p), ..
                            } => Some(p.public_key.clone()),
                            _ => None,
                        });
            }
        }
        let key = (kind, ns, name);
        generations.insert(key.clone(), gen);
        statuses.insert(key, d);
    };
    for s in &snap.sources {
        add(
            CrKind::Source,
            ns_of(s),
            s.name_any(),
            s.metadata.generation,
            Extra::IngestPath,
        );
    }
    for e in &snap.endpoints {
        add(
            CrKind::Endpoint,
            ns_of(e),
            e.name_any(),
            e.metadata.generation,
            Extra::Subscriptions,
        );
    }
    for s in &snap.subscriptions {
        add(
            CrKind::Subscription,
            ns_of(s),
            s.name_any(),
            s.metadata.generation,
            Extra::None,
        );
    }
    // A workload's objects compile like any other but are served by its sidecar: say so.
    let bound = snap
        .sources
        .iter()
        .map(|s| {
            (
                CrKind::Source,
                ns_of(s),
                s.name_any(),
                s.spec.workload.clone(),
            )
        })
        .chain(snap.endpoints.iter().map(|e| {
            (
                CrKind::Endpoint,
                ns_of(e),
                e.name_any(),
                e.spec.workload.clone(),
            )
        }));
    for (kind, ns, name, workload) in bound {
        let Some(w) = workload else { continue };
        if let Some(d) = statuses.get_mut(&(kind, ns, name)) {
            if d.ready == ReadyStatus::True {
                d.message = format!("compiled into the sidecar config of workload {w}");
            }
        }
    }
    Plan {
        compiled,
        gateway,
        sidecars,
        statuses,
        generations,
    }
}

/// One slice per workload named by an object or an injected Pod, each compiled from its own
/// audience's inputs.
fn sidecar_slices(inputs: &Inputs, pods: &BTreeSet<SidecarPod>) -> Vec<Slice> {
    let accounts = sidecars::accounts_by_workload(pods);
    let workloads: BTreeSet<(String, String)> = inputs
        .workloads()
        .into_iter()
        .chain(accounts.keys().cloned())
        .collect();
    workloads
        .into_iter()
        .map(|(namespace, workload)| {
            let audience = compile::Audience::Workload {
                namespace: &namespace,
                name: &workload,
            };
            let config = compile::compile(&inputs.for_audience(audience)).config;
            let service_accounts = accounts
                .get(&(namespace.clone(), workload.clone()))
                .cloned()
                .unwrap_or_default();
            Slice {
                namespace,
                workload,
                config,
                service_accounts,
            }
        })
        .collect()
}

enum Extra {
    None,
    IngestPath,
    Subscriptions,
}

fn desired(problem: Option<&Problem>, generation: Option<i64>) -> DesiredStatus {
    let (ready, reason, message) = match problem {
        None => (
            ReadyStatus::True,
            REASON_READY.to_string(),
            "compiled into the gateway config".to_string(),
        ),
        Some(p) => (ReadyStatus::False, p.reason.to_string(), p.message.clone()),
    };
    DesiredStatus {
        observed_generation: generation,
        ready,
        reason,
        message,
        ingest_path: None,
        subscriptions: None,
        public_key: None,
    }
}

/// Problems the compiler reported about Secrets themselves (API-key Secrets): they have no
/// status to carry them, so the operator logs them and records Events.
pub fn secret_problems(compiled: &Compiled) -> impl Iterator<Item = &Problem> {
    compiled.problems.iter().filter(|p| p.kind == Kind::Secret)
}
