//! Each workload's sidecar config, and the grants that let only that workload read it.
//!
//! For every workload that some Source or Endpoint names (`spec.workload`) or that has injected
//! Pods, the operator keeps, in the config namespace (`--sidecar-config-namespace`, the
//! release namespace):
//! - a Secret `{prefix}{namespace}.{workload}` holding that workload's slice of the config (the
//!   same compiler as the gateway's, cut by [`Inputs::for_audience`]);
//! - a Role of the same name granting get/list/watch on that one Secret, and a RoleBinding of
//!   the same name to the ServiceAccounts its injected Pods run as (learnt from the Pods
//!   themselves, so a Deployment that changes its ServiceAccount is followed);
//!
//! and, in the workload's own namespace, a RoleBinding `{prefix}{workload}` of the same
//! ServiceAccounts to the events ClusterRole (`--sidecar-events-role`), so a sidecar can
//! record an Event on its own Pod when a drain leaves events undelivered.
//!
//! Slices live in the config namespace so that the operator never deletes Secrets in other
//! namespaces (there it only creates signing Secrets, and patches them to rotate on request). Binding a Pod's ServiceAccount grants nothing its creator did not have:
//! anyone who can create that Pod can mount the namespace's Secrets, and a slice holds only
//! Secrets of its own namespace.
//!
//! [`Inputs::for_audience`]: hookmesh_api::compile::Inputs::for_audience

use std::collections::{BTreeMap, BTreeSet};

use hookmesh_api::config::CONFIG_SECRET_KEY;
use hookmesh_api::GatewayConfig;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};

use crate::inject;
use crate::publish::HASH_ANNOTATION;
use crate::FIELD_MANAGER;

/// `app.kubernetes.io/component` of everything this module writes.
pub const COMPONENT: &str = "sidecar-config";
/// Labels naming the workload a slice object is for.
pub const WORKLOAD_NAMESPACE_LABEL: &str = "hookmesh.io/workload-namespace";
pub const WORKLOAD_LABEL: &str = "hookmesh.io/workload";

/// Where slices go and what they are called (the operator's flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Naming {
    /// Namespace of the slice Secrets and their Roles.
    pub config_namespace: String,
    /// Name prefix of every object (`hookmesh-sidecar-`).
    pub prefix: String,
    /// ClusterRole bound in workload namespaces so sidecars can record Events; none: no binding.
    pub events_role: Option<String>,
}

impl Naming {
    /// The slice Secret (and its Role and RoleBinding) of workload `name` in `namespace`.
    pub fn slice_name(&self, namespace: &str, name: &str) -> String {
        slice_name(&self.prefix, namespace, name)
    }

    /// The events RoleBinding in the workload's namespace.
    pub fn events_binding_name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

/// `{prefix}{namespace}.{workload}`: both parts are DNS labels, so the dot cannot be ambiguous
/// and the name is a valid Secret, Role and RoleBinding name.
pub fn slice_name(prefix: &str, namespace: &str, workload: &str) -> String {
    format!("{prefix}{namespace}.{workload}")
}

/// What one injected Pod says about its workload.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SidecarPod {
    pub namespace: String,
    pub workload: String,
    pub service_account: String,
}

/// The workload and ServiceAccount of a Pod labelled for injection; `None` for any other Pod
/// (and for a labelled Pod the webhook would have refused for its workload name).
pub fn sidecar_pod(pod: &Pod) -> Option<SidecarPod> {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    if labels.get(inject::INJECT_LABEL).map(String::as_str) != Some("true") {
        return None;
    }
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let workload = inject::workload(&labels, &annotations).ok()?;
    let service_account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".to_string());
    Some(SidecarPod {
        namespace: pod.namespace()?,
        workload,
        service_account,
    })
}

/// One workload's slice and who may read it.
#[derive(Clone, Debug, PartialEq)]
pub struct Slice {
    pub namespace: String,
    pub workload: String,
    pub config: GatewayConfig,
    pub service_accounts: BTreeSet<String>,
}

impl Slice {
    /// `(namespace, workload)`.
    pub fn key(&self) -> (String, String) {
        (self.namespace.clone(), self.workload.clone())
    }
}

/// Group injected Pods' ServiceAccounts by workload.
pub fn accounts_by_workload(
    pods: &BTreeSet<SidecarPod>,
) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for p in pods {
        out.entry((p.namespace.clone(), p.workload.clone()))
            .or_default()
            .insert(p.service_account.clone());
    }
    out
}

fn labels(s: &Slice) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_string(),
            FIELD_MANAGER.to_string(),
        ),
        (
            "app.kubernetes.io/component".to_string(),
            COMPONENT.to_string(),
        ),
        (WORKLOAD_NAMESPACE_LABEL.to_string(), s.namespace.clone()),
        (WORKLOAD_LABEL.to_string(), s.workload.clone()),
    ])
}

/// Whether a cached Secret is a slice this module wrote, and for which workload.
pub fn slice_of(secret: &Secret, naming: &Naming) -> Option<(String, String)> {
    if secret.namespace().as_deref() != Some(naming.config_namespace.as_str()) {
        return None;
    }
    let l = secret.labels();
    if l.get("app.kubernetes.io/component").map(String::as_str) != Some(COMPONENT)
        || l.get("app.kubernetes.io/managed-by").map(String::as_str) != Some(FIELD_MANAGER)
    {
        return None;
    }
    Some((
        l.get(WORKLOAD_NAMESPACE_LABEL)?.clone(),
        l.get(WORKLOAD_LABEL)?.clone(),
    ))
}

fn meta(name: String, namespace: &str, s: &Slice) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.to_string()),
        labels: Some(labels(s)),
        ..ObjectMeta::default()
    }
}

fn subjects(s: &Slice) -> Vec<Subject> {
    s.service_accounts
        .iter()
        .map(|sa| Subject {
            kind: "ServiceAccount".into(),
            name: sa.clone(),
            namespace: Some(s.namespace.clone()),
            ..Subject::default()
        })
        .collect()
}

/// The slice Secret, as applied.
pub fn secret(naming: &Naming, s: &Slice) -> Result<Secret, serde_json::Error> {
    let mut metadata = meta(
        naming.slice_name(&s.namespace, &s.workload),
        &naming.config_namespace,
        s,
    );
    metadata.annotations = Some(BTreeMap::from([(
        HASH_ANNOTATION.to_string(),
        s.config.hash.clone(),
    )]));
    Ok(Secret {
        metadata,
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            CONFIG_SECRET_KEY.to_string(),
            ByteString(serde_json::to_vec(&s.config)?),
        )])),
        ..Secret::default()
    })
}

/// Read access to exactly the slice Secret (list and watch are authorized by name when the
/// data plane's watch carries `fieldSelector=metadata.name=...`, which it does).
pub fn role(naming: &Naming, s: &Slice) -> Role {
    let name = naming.slice_name(&s.namespace, &s.workload);
    Role {
        metadata: meta(name.clone(), &naming.config_namespace, s),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into()]),
            resource_names: Some(vec![name]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..PolicyRule::default()
        }]),
    }
}

/// The slice Role bound to the workload's ServiceAccounts.
pub fn role_binding(naming: &Naming, s: &Slice) -> RoleBinding {
    let name = naming.slice_name(&s.namespace, &s.workload);
    RoleBinding {
        metadata: meta(name.clone(), &naming.config_namespace, s),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name,
        },
        subjects: Some(subjects(s)),
    }
}

/// The events ClusterRole bound to the workload's ServiceAccounts in its own namespace.
pub fn events_binding(naming: &Naming, s: &Slice) -> Option<RoleBinding> {
    let role = naming.events_role.clone()?;
    Some(RoleBinding {
        metadata: meta(naming.events_binding_name(&s.workload), &s.namespace, s),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: role,
        },
        subjects: Some(subjects(s)),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum SliceError {
    #[error("cannot encode the sidecar config of {namespace}/{workload}: {source}")]
    Encode {
        namespace: String,
        workload: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write {what} for the sidecar of {namespace}/{workload}: {source}")]
    Kube {
        what: String,
        namespace: String,
        workload: String,
        #[source]
        source: kube::Error,
    },
}

/// Server-side apply one slice: its Secret, Role and RoleBinding, and the events binding.
pub async fn apply(client: &kube::Client, naming: &Naming, s: &Slice) -> Result<(), SliceError> {
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let err = |what: String| {
        let (namespace, workload) = (s.namespace.clone(), s.workload.clone());
        move |source| SliceError::Kube {
            what,
            namespace,
            workload,
            source,
        }
    };
    let name = naming.slice_name(&s.namespace, &s.workload);
    let ns = &naming.config_namespace;
    let secret = secret(naming, s).map_err(|source| SliceError::Encode {
        namespace: s.namespace.clone(),
        workload: s.workload.clone(),
        source,
    })?;
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(&name, &pp, &Patch::Apply(&secret))
        .await
        .map_err(err(format!("Secret {ns}/{name}")))?;
    Api::<Role>::namespaced(client.clone(), ns)
        .patch(&name, &pp, &Patch::Apply(&role(naming, s)))
        .await
        .map_err(err(format!("Role {ns}/{name}")))?;
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .patch(&name, &pp, &Patch::Apply(&role_binding(naming, s)))
        .await
        .map_err(err(format!("RoleBinding {ns}/{name}")))?;
    if let Some(b) = events_binding(naming, s) {
        let bname = naming.events_binding_name(&s.workload);
        Api::<RoleBinding>::namespaced(client.clone(), &s.namespace)
            .patch(&bname, &pp, &Patch::Apply(&b))
            .await
            .map_err(err(format!("RoleBinding {}/{bname}", s.namespace)))?;
    }
    Ok(())
}

/// Delete everything [`apply`] wrote for a workload that has no objects and no Pods left.
/// Absent objects are fine (a previous attempt got further).
pub async fn remove(
    client: &kube::Client,
    naming: &Naming,
    namespace: &str,
    workload: &str,
) -> Result<(), SliceError> {
    let err = |what: String| {
        let (namespace, workload) = (namespace.to_string(), workload.to_string());
        move |source| SliceError::Kube {
            what,
            namespace,
            workload,
            source,
        }
    };
    let name = naming.slice_name(namespace, workload);
    let ns = &naming.config_namespace;
    if naming.events_role.is_some() {
        let bname = naming.events_binding_name(workload);
        delete_if_present(
            Api::<RoleBinding>::namespaced(client.clone(), namespace),
            &bname,
        )
        .await
        .map_err(err(format!("RoleBinding {namespace}/{bname}")))?;
    }
    delete_if_present(Api::<RoleBinding>::namespaced(client.clone(), ns), &name)
        .await
        .map_err(err(format!("RoleBinding {ns}/{name}")))?;
    delete_if_present(Api::<Role>::namespaced(client.clone(), ns), &name)
        .await
        .map_err(err(format!("Role {ns}/{name}")))?;
    // The Secret last: while it exists, the next compile still sees the workload as stale.
    delete_if_present(Api::<Secret>::namespaced(client.clone(), ns), &name)
        .await
        .map_err(err(format!("Secret {ns}/{name}")))?;
    Ok(())
}

/// Delete `name`; one that is already gone is fine.
async fn delete_if_present<K>(api: Api<K>, name: &str) -> Result<(), kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn naming() -> Naming {
        Naming {
            config_namespace: "hookmesh-system".into(),
            prefix: "hookmesh-sidecar-".into(),
            events_role: Some("hookmesh-sidecar".into()),
        }
    }

    fn pod(ns: &str, labels: &[(&str, &str)], sa: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some(ns.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                service_account_name: sa.map(Into::into),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    fn slice() -> Slice {
        Slice {
            namespace: "shop".into(),
            workload: "payments".into(),
            config: GatewayConfig::default(),
            service_accounts: BTreeSet::from(["payments".to_string(), "default".to_string()]),
        }
    }

    #[test]
    fn only_labelled_pods_with_a_workload_count_and_default_is_the_default_account() {
        let labelled = pod(
            "shop",
            &[(inject::INJECT_LABEL, "true"), ("app", "payments")],
            None,
        );
        assert_eq!(
            sidecar_pod(&labelled),
            Some(SidecarPod {
                namespace: "shop".into(),
                workload: "payments".into(),
                service_account: "default".into(),
            })
        );
        let with_sa = pod(
            "shop",
            &[(inject::INJECT_LABEL, "true"), ("app", "payments")],
            Some("pay"),
        );
        assert_eq!(
            sidecar_pod(&with_sa).map(|p| p.service_account),
            Some("pay".into())
        );
        assert_eq!(
            sidecar_pod(&pod("shop", &[("app", "payments")], None)),
            None
        );
        assert_eq!(
            sidecar_pod(&pod("shop", &[(inject::INJECT_LABEL, "true")], None)),
            None,
            "no workload name: the webhook refuses such a Pod, and nothing is granted"
        );
    }

    #[test]
    fn the_role_grants_reading_exactly_the_slice_to_exactly_the_workloads_accounts() {
        let (n, s) = (naming(), slice());
        let role = role(&n, &s);
        assert_eq!(role.metadata.namespace.as_deref(), Some("hookmesh-system"));
        let rules = role.rules.unwrap_or_default();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules[0].resource_names.as_deref(),
            Some(&["hookmesh-sidecar-shop.payments".to_string()][..])
        );
        assert_eq!(rules[0].verbs, vec!["get", "list", "watch"]);
        let binding = role_binding(&n, &s);
        let subjects: Vec<(String, Option<String>)> = binding
            .subjects
            .unwrap_or_default()
            .into_iter()
            .map(|s| (s.name, s.namespace))
            .collect();
        assert_eq!(
            subjects,
            vec![
                ("default".to_string(), Some("shop".to_string())),
                ("payments".to_string(), Some("shop".to_string()))
            ]
        );
        let events = events_binding(&n, &s).expect("an events role is configured");
        assert_eq!(events.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(events.role_ref.kind, "ClusterRole");
        let none = Naming {
            events_role: None,
            ..n.clone()
        };
        assert!(events_binding(&none, &s).is_none());
    }

    #[test]
    fn a_slice_secret_is_recognised_by_its_labels_in_the_config_namespace_only() {
        let (n, s) = (naming(), slice());
        let sec = secret(&n, &s).expect("encodes");
        assert_eq!(slice_of(&sec, &n), Some(("shop".into(), "payments".into())));
        let mut elsewhere = sec.clone();
        elsewhere.metadata.namespace = Some("shop".into());
        assert_eq!(slice_of(&elsewhere, &n), None);
        let mut foreign = sec;
        foreign.labels_mut().remove("app.kubernetes.io/managed-by");
        assert_eq!(slice_of(&foreign, &n), None);
    }
}
