//! Talking to the e2e cluster with real API-server semantics: server-side apply with a field
//! manager, merge patches, status read from the status subresource's fields, conditions
//! checked against `metadata.generation`.

use hookmesh_tests::wait;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde_json::{json, Value};

pub const MANAGER: &str = "hookmesh-e2e";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
}

impl ObjRef {
    pub fn new(api_version: &str, kind: &str, name: &str) -> Self {
        ObjRef {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
        }
    }
    pub fn hookmesh(kind: &str, name: &str) -> Self {
        Self::new("hookmesh.io/v1alpha1", kind, name)
    }
    pub fn core(kind: &str, name: &str) -> Self {
        Self::new("v1", kind, name)
    }
    fn resource(&self) -> ApiResource {
        let (group, version) = self
            .api_version
            .split_once('/')
            .unwrap_or(("", self.api_version.as_str()));
        ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &self.kind))
    }
}

pub struct Cluster {
    client: Client,
    kubeconfig: PathBuf,
}

impl Cluster {
    /// The admin client, for typed calls.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub async fn connect(kubeconfig: PathBuf) -> anyhow::Result<Self> {
        let kc = Kubeconfig::read_from(&kubeconfig)
            .with_context(|| format!("read {}", kubeconfig.display()))?;
        let config =
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
        let client = Client::try_from(config)?;
        Ok(Cluster { client, kubeconfig })
    }

    /// A kubeconfig that authenticates as ServiceAccount `ns/sa` with a bound token from the
    /// TokenRequest API (what a Pod's projected token is), against the admin kubeconfig's
    /// cluster. Whatever the SA's RBAC does not grant is then refused as it would be in a Pod.
    pub async fn service_account_kubeconfig(
        &self,
        ns: &str,
        sa: &str,
        out: &Path,
    ) -> anyhow::Result<PathBuf> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
        let req = TokenRequest {
            spec: TokenRequestSpec {
                audiences: Vec::new(),
                expiration_seconds: Some(2 * 3600),
                ..Default::default()
            },
            ..Default::default()
        };
        let token = api
            .create_token_request(sa, &PostParams::default(), &req)
            .await
            .with_context(|| format!("TokenRequest for ServiceAccount {ns}/{sa}"))?
            .status
            .context("TokenRequest without status")?
            .token;
        let admin: serde_yaml::Value = serde_yaml::from_str(
            &std::fs::read_to_string(&self.kubeconfig)
                .with_context(|| format!("read {}", self.kubeconfig.display()))?,
        )?;
        let context_name = admin["current-context"].as_str().unwrap_or_default();
        let context = admin["contexts"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|c| c["name"].as_str() == Some(context_name))
            .with_context(|| format!("no context {context_name:?} in the admin kubeconfig"))?;
        let cluster_name = context["context"]["cluster"].as_str().unwrap_or_default();
        let cluster = admin["clusters"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|c| c["name"].as_str() == Some(cluster_name))
            .with_context(|| format!("no cluster {cluster_name:?} in the admin kubeconfig"))?;
        let user = format!("system:serviceaccount:{ns}:{sa}");
        let kc = json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "e2e", "cluster": serde_json::to_value(&cluster["cluster"])?}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": user}}],
            "current-context": "e2e",
        });
        std::fs::write(out, serde_yaml::to_string(&kc)?)
            .with_context(|| format!("write {}", out.display()))?;
        Ok(out.to_path_buf())
    }

    /// Server-side apply dry run (every admission and validation step, nothing stored): Ok, or
    /// the server's refusal as text.
    pub async fn apply_dry_run(
        &self,
        ns: &str,
        manifest: &Value,
    ) -> anyhow::Result<Result<(), String>> {
        let mut manifest = manifest.clone();
        manifest["metadata"]["namespace"] = json!(ns);
        let o = ObjRef::new(
            manifest["apiVersion"].as_str().context("apiVersion")?,
            manifest["kind"].as_str().context("kind")?,
            manifest["metadata"]["name"]
                .as_str()
                .context("metadata.name")?,
        );
        let obj: DynamicObject = serde_json::from_value(manifest)?;
        let mut pp = PatchParams::apply(MANAGER).force();
        pp.dry_run = true;
        match self
            .api(ns, &o)
            .patch(&o.name, &pp, &Patch::Apply(&obj))
            .await
        {
            Ok(_) => Ok(Ok(())),
            Err(kube::Error::Api(status)) => Ok(Err(status.message.clone())),
            Err(e) => Err(e).with_context(|| format!("dry-run apply {} {}", o.kind, o.name)),
        }
    }

    /// Events (events.k8s.io/v1) in `ns` about object `regarding`.
    pub async fn events_about(&self, ns: &str, regarding: &str) -> anyhow::Result<Vec<Event>> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
        let list = api.list(&ListParams::default()).await?;
        Ok(list
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding))
            .collect())
    }

    /// A watch of one object, from its current version on.
    async fn watch_from_now(
        &self,
        ns: &str,
        o: &ObjRef,
    ) -> anyhow::Result<
        impl futures::Stream<Item = kube::Result<kube::api::WatchEvent<DynamicObject>>> + use<>,
    > {
        let api = self.api(ns, o);
        let fields = format!("metadata.name={}", o.name);
        let list = api.list(&ListParams::default().fields(&fields)).await?;
        let from = list.metadata.resource_version.unwrap_or_default();
        Ok(api
            .watch(&kube::api::WatchParams::default().fields(&fields), &from)
            .await?)
    }

    /// Watch one object from now on and return, once the watch is open, a task that yields the
    /// Ready condition (with the object's generation and the status's observedGeneration) of
    /// every version written, until Ready=True for the current generation or `timeout`.
    pub async fn ready_history(
        &self,
        ns: &str,
        o: &ObjRef,
        timeout: Duration,
    ) -> anyhow::Result<tokio::task::JoinHandle<Vec<Value>>> {
        use futures::StreamExt as _;
        let stream = self.watch_from_now(ns, o).await?;
        Ok(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut stream = stream.boxed();
            let deadline = tokio::time::Instant::now() + timeout;
            while let Ok(Some(Ok(ev))) = tokio::time::timeout_at(deadline, stream.next()).await {
                let obj = match ev {
                    kube::api::WatchEvent::Added(o) | kube::api::WatchEvent::Modified(o) => o,
                    _ => continue,
                };
                let obj = serde_json::to_value(obj).unwrap_or_default();
                let ready = obj["status"]["conditions"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                    .cloned()
                    .unwrap_or(Value::Null);
                let entry = json!({
                    "generation": obj["metadata"]["generation"],
                    "observedGeneration": obj["status"]["observedGeneration"],
                    "ready": ready,
                });
                let done = entry["ready"]["status"] == "True"
                    && entry["observedGeneration"] == entry["generation"];
                seen.push(entry);
                if done {
                    break;
                }
            }
            seen
        }))
    }

    /// Watch one object from now on: every version written (whole objects) until `stop` is
    /// sent, or `timeout`.
    pub async fn versions(
        &self,
        ns: &str,
        o: &ObjRef,
        timeout: Duration,
    ) -> anyhow::Result<(
        tokio::task::JoinHandle<Vec<Value>>,
        tokio::sync::oneshot::Sender<()>,
    )> {
        use futures::StreamExt as _;
        let stream = self.watch_from_now(ns, o).await?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut stream = stream.boxed();
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            loop {
                let ev = tokio::select! {
                    _ = &mut stopped => break,
                    _ = &mut deadline => break,
                    ev = stream.next() => ev,
                };
                match ev {
                    Some(Ok(
                        kube::api::WatchEvent::Added(o) | kube::api::WatchEvent::Modified(o),
                    )) => seen.push(serde_json::to_value(o).unwrap_or_default()),
                    Some(Ok(_)) => {}
                    _ => break,
                }
            }
            seen
        });
        Ok((task, stop))
    }

    /// The object's `metadata.resourceVersion`.
    pub async fn resource_version(&self, ns: &str, o: &ObjRef) -> anyhow::Result<String> {
        let obj = self.get(ns, o).await?;
        Ok(obj["metadata"]["resourceVersion"]
            .as_str()
            .context("no resourceVersion")?
            .to_string())
    }

    fn api(&self, ns: &str, o: &ObjRef) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), ns, &o.resource())
    }

    /// Server-side apply every CRD in the file, then wait until each is Established.
    pub async fn apply_crds(&self, file: &Path) -> anyhow::Result<()> {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let mut names = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(doc)?;
            if value.is_null() {
                continue;
            }
            let crd: CustomResourceDefinition = serde_json::from_value(value)?;
            let name = crd.metadata.name.clone().context("CRD without a name")?;
            api.patch(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&crd),
            )
            .await?;
            names.push(name);
        }
        for name in names {
            wait::retry(
                "the CRDs to be Established",
                Duration::from_secs(60),
                || async {
                    let crd = api.get(&name).await?;
                    let established = crd
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True");
                    anyhow::ensure!(established, "CRD {name} not established");
                    Ok(())
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Create the namespace unless it exists; true when this call created it.
    pub async fn create_namespace(&self, ns: &str) -> anyhow::Result<bool> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        if api.get_opt(ns).await?.is_some() {
            return Ok(false);
        }
        let obj: Namespace = serde_json::from_value(json!({
            "metadata": {"name": ns, "labels": {"app.kubernetes.io/part-of": "hookmesh-e2e"}}
        }))?;
        api.create(&PostParams::default(), &obj).await?;
        Ok(true)
    }

    pub async fn delete_namespace(&self, ns: &str) -> anyhow::Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        api.delete(ns, &DeleteParams::background()).await?;
        Ok(())
    }

    /// Server-side apply one object (namespace forced to `ns`).
    pub async fn apply(&self, ns: &str, manifest: &Value) -> anyhow::Result<ObjRef> {
        let mut manifest = manifest.clone();
        manifest["metadata"]["namespace"] = json!(ns);
        let o = ObjRef::new(
            manifest["apiVersion"].as_str().context("apiVersion")?,
            manifest["kind"].as_str().context("kind")?,
            manifest["metadata"]["name"]
                .as_str()
                .context("metadata.name")?,
        );
        let obj: DynamicObject = serde_json::from_value(manifest)?;
        self.api(ns, &o)
            .patch(
                &o.name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&obj),
            )
            .await
            .with_context(|| format!("apply {} {}", o.kind, o.name))?;
        Ok(o)
    }

    /// Apply every Secret and hookmesh object of the YAML files in `dir`, moved into `ns`.
    /// Returns the hookmesh objects applied.
    pub async fn apply_dir(&self, dir: &Path, ns: &str) -> anyhow::Result<Vec<ObjRef>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("read {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        files.sort();
        let mut out = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file)?;
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let value: Value = serde::Deserialize::deserialize(doc)?;
                if value.is_null() {
                    continue;
                }
                let api_version = value["apiVersion"].as_str().unwrap_or_default();
                let kind = value["kind"].as_str().unwrap_or_default();
                let ours = api_version == "hookmesh.io/v1alpha1";
                if !(ours || (api_version == "v1" && kind == "Secret")) {
                    continue;
                }
                let o = self
                    .apply(ns, &value)
                    .await
                    .with_context(|| format!("{}", file.display()))?;
                if ours {
                    out.push(o);
                }
            }
        }
        Ok(out)
    }

    pub async fn get(&self, ns: &str, o: &ObjRef) -> anyhow::Result<Value> {
        let obj = self
            .api(ns, o)
            .get(&o.name)
            .await
            .with_context(|| format!("get {} {}", o.kind, o.name))?;
        Ok(serde_json::to_value(obj)?)
    }

    pub async fn merge_patch(&self, ns: &str, o: &ObjRef, patch: &Value) -> anyhow::Result<()> {
        self.api(ns, o)
            .patch(&o.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .with_context(|| format!("patch {} {}", o.kind, o.name))?;
        Ok(())
    }

    /// Merge patch of the status subresource (what a controller writes).
    pub async fn patch_status(&self, ns: &str, o: &ObjRef, patch: &Value) -> anyhow::Result<()> {
        self.api(ns, o)
            .patch_status(&o.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .with_context(|| format!("patch status of {} {}", o.kind, o.name))?;
        Ok(())
    }

    pub async fn delete(&self, ns: &str, o: &ObjRef) -> anyhow::Result<()> {
        self.api(ns, o)
            .delete(&o.name, &DeleteParams::default())
            .await?;
        Ok(())
    }

    /// Wait until the object's Ready condition has `status` (and `reason`, if given) for the
    /// object's current generation.
    pub async fn wait_ready(
        &self,
        ns: &str,
        o: &ObjRef,
        status: &str,
        reason: Option<&str>,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let mut last = Value::Null;
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(obj) = self.get(ns, o).await {
                let generation = &obj["metadata"]["generation"];
                let ready = obj["status"]["conditions"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                    .cloned()
                    .unwrap_or(Value::Null);
                let current = obj["status"]["observedGeneration"] == *generation;
                if current
                    && ready["status"] == status
                    && reason.is_none_or(|r| ready["reason"] == r)
                {
                    return Ok(obj);
                }
                last = obj["status"].clone();
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        bail!("timed out; last status: {last}")
    }

    pub async fn secret_value(&self, ns: &str, name: &str, key: &str) -> anyhow::Result<String> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let s = api
            .get(name)
            .await
            .with_context(|| format!("Secret {name}"))?;
        let bytes = s
            .data
            .and_then(|d| d.get(key).cloned())
            .with_context(|| format!("{name} has no {key}"))?;
        Ok(String::from_utf8(bytes.0)?)
    }

    /// The published config (decoded `config.json` of the config Secret).
    pub async fn config(&self, ns: &str, name: &str) -> anyhow::Result<Value> {
        let text = self.secret_value(ns, name, "config.json").await?;
        Ok(serde_json::from_str(&text)?)
    }

    pub async fn config_hash(&self, ns: &str, name: &str) -> anyhow::Result<String> {
        let c = self.config(ns, name).await?;
        Ok(c["hash"]
            .as_str()
            .context("config without hash")?
            .to_string())
    }
}

/// The non-empty documents of a YAML stream.
pub fn yaml_docs(text: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(doc)?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}
