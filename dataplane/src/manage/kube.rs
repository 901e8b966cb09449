//! In cluster: registrations as Endpoint and Subscription resources, created through the
//! Kubernetes API as the data plane's ServiceAccount and labelled as the API's. The API server
//! checks them first (a dry run: the CRD schema and its CEL rules), the operator compiles them
//! like any other, and the call waits for the config it publishes to carry them, or for the
//! operator's `Ready=False` reason, in which case what was created is deleted again. An
//! Endpoint is created without `secretRef`: the operator makes its signing Secret, owned by the
//! Endpoint, so deleting the Endpoint removes it and the data plane never writes Secrets.

use std::time::{Duration, Instant};

use hookmesh_api::resources::{CommonStatus, READY};
use hookmesh_api::{Endpoint, GatewayConfig, Subscription};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde::de::DeserializeOwned;

use super::objects::{self, NewEndpoint, NewSubscription};
use super::{ManageError, MANAGED_BY_API, MANAGED_BY_LABEL};
use crate::config::LiveConfig;

/// The operator compiles and publishes, then this pod's watch sees it: longer than a file.
const CLUSTER_LIVE_TIMEOUT: Duration = Duration::from_secs(30);
const FIELD_MANAGER: &str = "hookmesh-dataplane";
/// Reasons the operator gives while it is still making an Endpoint's signing Secret.
const TRANSIENT: &[&str] = &["SecretNotFound", "SecretKeyNotFound", "EndpointNotReady"];

/// The two kinds the API registers, seen through the status the operator writes.
trait Registered:
    kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + DeserializeOwned
    + serde::Serialize
    + std::fmt::Debug
{
    fn common_status(&self) -> Option<&CommonStatus>;
}

impl Registered for Endpoint {
    fn common_status(&self) -> Option<&CommonStatus> {
        self.status.as_ref().map(|s| &s.common)
    }
}

impl Registered for Subscription {
    fn common_status(&self) -> Option<&CommonStatus> {
        self.status.as_ref().map(|s| &s.common)
    }
}

pub struct Kube {
    client: Client,
    live: LiveConfig,
}

fn kube_error(e: kube::Error) -> ManageError {
    match e {
        kube::Error::Api(r) if r.code == 403 => ManageError::NotPermitted(r.message),
        kube::Error::Api(r) if r.code == 422 || r.code == 400 => ManageError::Rejected {
            reason: r.reason,
            message: r.message,
        },
        other => ManageError::Kube(other.to_string()),
    }
}

fn managed<K: ResourceExt>(obj: &K) -> bool {
    obj.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_API)
}

/// The operator's `Ready=False` reason and message for `obj`'s current generation, unless it
/// is one it gives only on the way to ready.
fn refusal(
    generation: Option<i64>,
    status: Option<&hookmesh_api::resources::CommonStatus>,
) -> Option<(String, String)> {
    let s = status?;
    if s.observed_generation != generation {
        return None;
    }
    let ready = s.conditions.iter().find(|c| c.type_ == READY)?;
    (ready.status == "False" && !TRANSIENT.contains(&ready.reason.as_str()))
        .then(|| (ready.reason.clone(), ready.message.clone()))
}

impl Kube {
    pub fn new(client: Client, live: LiveConfig) -> Self {
        Kube { client, live }
    }

    fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    pub async fn create_endpoint(&self, e: &NewEndpoint) -> Result<(), ManageError> {
        if self.live.load().endpoint(&e.namespace, &e.name).is_some() {
            return Err(ManageError::exists("endpoint", &e.namespace, &e.name));
        }
        let obj: Endpoint = decode(objects::endpoint_resource(e))?;
        let (ns, name) = (e.namespace.as_str(), e.name.as_str());
        self.create_live(obj, "endpoint", ns, name, |c| {
            c.endpoint(ns, name).is_some()
        })
        .await
    }

    pub async fn delete_endpoint(&self, namespace: &str, name: &str) -> Result<(), ManageError> {
        let api: Api<Endpoint> = self.api(namespace);
        let obj = api.get_opt(name).await.map_err(kube_error)?;
        match obj {
            None => return Err(ManageError::not_found("endpoint", namespace, name)),
            Some(o) if !managed(&o) => {
                return Err(ManageError::declared("endpoint", namespace, name))
            }
            Some(_) => {}
        }
        let subs: Api<Subscription> = self.api(namespace);
        let targeting: Vec<Subscription> = subs
            .list(&ListParams::default())
            .await
            .map_err(kube_error)?
            .items
            .into_iter()
            .filter(|s| s.spec.endpoint_ref.name == name)
            .collect();
        let declared: Vec<String> = targeting
            .iter()
            .filter(|s| !managed(*s))
            .map(ResourceExt::name_any)
            .collect();
        if !declared.is_empty() {
            return Err(ManageError::InUse {
                namespace: namespace.into(),
                name: name.into(),
                subscriptions: declared.join(", "),
            });
        }
        for s in &targeting {
            delete(&subs, &s.name_any()).await?;
        }
        delete(&api, name).await?;
        self.wait(|c| c.endpoint(namespace, name).is_none(), || async { None })
            .await
    }

    pub async fn create_subscription(&self, s: &NewSubscription) -> Result<(), ManageError> {
        let obj: Subscription = decode(objects::subscription_manifest(s))?;
        let (ns, name) = (s.namespace.as_str(), s.name.as_str());
        self.create_live(obj, "subscription", ns, name, |c| {
            c.subscriptions
                .iter()
                .any(|x| x.namespace == ns && x.name == name)
        })
        .await
    }

    pub async fn delete_subscription(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<(), ManageError> {
        let api: Api<Subscription> = self.api(namespace);
        match api.get_opt(name).await.map_err(kube_error)? {
            None => return Err(ManageError::not_found("subscription", namespace, name)),
            Some(o) if !managed(&o) => {
                return Err(ManageError::declared("subscription", namespace, name))
            }
            Some(_) => {}
        }
        delete(&api, name).await?;
        self.wait(
            |c| {
                !c.subscriptions
                    .iter()
                    .any(|x| x.namespace == namespace && x.name == name)
            },
            || async { None },
        )
        .await
    }

    /// Create `obj` and wait until the live config says `done`; if the operator refuses it or
    /// it does not go live, delete it again.
    async fn create_live<K: Registered>(
        &self,
        obj: K,
        kind: &'static str,
        namespace: &str,
        name: &str,
        done: impl Fn(&GatewayConfig) -> bool,
    ) -> Result<(), ManageError> {
        let api: Api<K> = self.api(namespace);
        self.create(&api, &obj, kind, namespace, name).await?;
        let outcome = self
            .wait(done, || async {
                let o = api.get_opt(name).await.ok().flatten()?;
                refusal(o.meta().generation, o.common_status())
            })
            .await;
        if outcome.is_err() {
            let _ = api.delete(name, &DeleteParams::background()).await;
        }
        outcome
    }

    /// A dry run first (the API server's schema and CEL rules), then the object itself.
    async fn create<K>(
        &self,
        api: &Api<K>,
        obj: &K,
        kind: &'static str,
        namespace: &str,
        name: &str,
    ) -> Result<(), ManageError>
    where
        K: kube::Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
    {
        for dry_run in [true, false] {
            let pp = PostParams {
                dry_run,
                field_manager: Some(FIELD_MANAGER.to_string()),
            };
            match api.create(&pp, obj).await {
                Ok(_) => {}
                Err(kube::Error::Api(r)) if r.code == 409 => {
                    return Err(ManageError::exists(kind, namespace, name))
                }
                Err(e) => return Err(kube_error(e)),
            }
        }
        Ok(())
    }

    /// Until the live config says `done`, or `refused` finds the operator's reason.
    async fn wait<F, Fut>(
        &self,
        done: impl Fn(&GatewayConfig) -> bool,
        refused: F,
    ) -> Result<(), ManageError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Option<(String, String)>>,
    {
        let deadline = Instant::now() + CLUSTER_LIVE_TIMEOUT;
        let mut checks = 0u32;
        loop {
            if done(&self.live.load().config) {
                return Ok(());
            }
            // The status only every fifth turn: the config is local, the status a request.
            if checks % 5 == 4 {
                if let Some((reason, message)) = refused().await {
                    return Err(ManageError::Rejected { reason, message });
                }
            }
            if Instant::now() >= deadline {
                return Err(ManageError::NotLive(CLUSTER_LIVE_TIMEOUT));
            }
            checks += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn delete<K>(api: &Api<K>, name: &str) -> Result<(), ManageError>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(r)) if r.code == 404 => Ok(()),
        Err(e) => Err(kube_error(e)),
    }
}

fn decode<K: DeserializeOwned>(v: serde_json::Value) -> Result<K, ManageError> {
    serde_json::from_value(v).map_err(|e| ManageError::Kube(format!("building the object: {e}")))
}

#[cfg(test)]
#[path = "kube_tests.rs"]
mod tests;
