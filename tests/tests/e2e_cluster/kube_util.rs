//! Talking to the e2e cluster with real API-server semantics: server-side apply with a field
//! manager, merge patches, status read from the status subresource's fields, conditions
//! checked against `metadata.generation`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use base64::Engine as _;
use k8s_openapi::api::core::v1::{Namespace, Secret};
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
    pub async fn connect(kubeconfig: PathBuf) -> anyhow::Result<Self> {
        let kc = Kubeconfig::read_from(&kubeconfig)
            .with_context(|| format!("read {}", kubeconfig.display()))?;
        let config =
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
        let client = Client::try_from(config)?;
        Ok(Cluster { client, kubeconfig })
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
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
            wait(Duration::from_secs(60), || async {
                let crd = api.get(&name).await?;
                let established = crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                anyhow::ensure!(established, "CRD {name} not established");
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    pub async fn create_namespace(&self, ns: &str) -> anyhow::Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let obj: Namespace = serde_json::from_value(json!({
            "metadata": {"name": ns, "labels": {"app.kubernetes.io/part-of": "hookmesh-e2e"}}
        }))?;
        api.create(&PostParams::default(), &obj).await?;
        Ok(())
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

    pub async fn has_event(&self, ns: &str, regarding: &str, reason: &str) -> anyhow::Result<bool> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
        let list = api.list(&ListParams::default()).await?;
        Ok(list.items.iter().any(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding)
        }))
    }
}

async fn wait<F, Fut>(timeout: Duration, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(()) => return Ok(()),
            Err(e) if start.elapsed() > timeout => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

#[allow(dead_code)]
pub fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}
