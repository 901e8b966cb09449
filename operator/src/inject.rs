//! Sidecar injection, the pure part: given a Pod the API server is about to create, the JSON
//! patch that adds the data plane beside its containers as a native sidecar (an init container
//! with `restartPolicy: Always`, Kubernetes 1.29+), or nothing.
//!
//! Only Pods labelled `hookmesh.io/inject: "true"` are touched (the webhook's objectSelector
//! already says so; this checks again). A Pod that has the sidecar already (a reinvocation)
//! gets no patch. Annotations choose the rest:
//!
//! | annotation | default | what |
//! |---|---|---|
//! | `hookmesh.io/workload` | label `app.kubernetes.io/name`, else `app` | whose config slice the sidecar reads |
//! | `hookmesh.io/port` | `8090` | the sidecar's port: ingest, REST API, probes |
//! | `hookmesh.io/storage` | `emptyDir` | `emptyDir`, or `volume:NAME` to keep the store on one of the Pod's volumes (a PVC) |
//! | `hookmesh.io/cpu`, `hookmesh.io/memory` | `50m`, `64Mi` | requests; the memory request is also the limit |

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, Pod, Probe, ResourceRequirements, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};

pub const INJECT_LABEL: &str = "hookmesh.io/inject";
pub const WORKLOAD: &str = "hookmesh.io/workload";
pub const PORT: &str = "hookmesh.io/port";
pub const STORAGE: &str = "hookmesh.io/storage";
pub const CPU: &str = "hookmesh.io/cpu";
pub const MEMORY: &str = "hookmesh.io/memory";
/// The injected container's name; its presence means "injected already".
pub const CONTAINER: &str = "hookmesh-sidecar";
const DATA_VOLUME: &str = "hookmesh-data";
const DATA_DIR: &str = "/var/lib/hookmesh";
const DEFAULT_PORT: u16 = 8090;
/// Kubernetes' default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE_SECONDS: i64 = 30;
/// Of the grace period, what the drain leaves for the rest of shutdown (flush, the Event).
const DRAIN_MARGIN_SECONDS: i64 = 5;

/// What the operator was started with.
#[derive(Clone, Debug)]
pub struct SidecarSettings {
    pub image: String,
    /// The config Secret of workload W in namespace N is `{config_namespace}/{prefix}N.W`
    /// (see [`crate::sidecars`]).
    pub secret_prefix: String,
    pub config_namespace: String,
}

/// Why a labelled Pod cannot get a sidecar (the Pod is refused with this reason).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InjectError {
    #[error("no workload name: set the hookmesh.io/workload annotation or an app.kubernetes.io/name label")]
    NoWorkload,
    #[error("hookmesh.io/workload {0:?} is not a valid Kubernetes name")]
    BadWorkload(String),
    #[error("hookmesh.io/port {0:?} is not a port from 1 to 65535")]
    BadPort(String),
    #[error("hookmesh.io/port {0} is already used by container {1}")]
    PortTaken(u16, String),
    #[error("hookmesh.io/storage {0:?}: give emptyDir or volume:NAME of a volume of this Pod")]
    BadStorage(String),
    #[error("hookmesh.io/{0} {1:?} is not a Kubernetes quantity")]
    BadQuantity(&'static str, String),
}

/// The workload a Pod belongs to, as its config slice is named.
pub fn workload(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Result<String, InjectError> {
    let name = annotations
        .get(WORKLOAD)
        .or_else(|| labels.get("app.kubernetes.io/name"))
        .or_else(|| labels.get("app"))
        .ok_or(InjectError::NoWorkload)?;
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(name.clone())
    } else {
        Err(InjectError::BadWorkload(name.clone()))
    }
}

fn quantity(
    field: &'static str,
    v: Option<&String>,
    default: &str,
) -> Result<Quantity, InjectError> {
    let v = v.map(String::as_str).unwrap_or(default);
    let ok = !v.is_empty()
        && v.chars().next().is_some_and(|c| c.is_ascii_digit())
        && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '.');
    if ok {
        Ok(Quantity(v.to_string()))
    } else {
        Err(InjectError::BadQuantity(field, v.to_string()))
    }
}

/// The JSON patch for `pod` (in `namespace`), or `None` when it needs none.
pub fn patch(
    pod: &Pod,
    namespace: &str,
    s: &SidecarSettings,
) -> Result<Option<Value>, InjectError> {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    if labels.get(INJECT_LABEL).map(String::as_str) != Some("true") {
        return Ok(None);
    }
    let Some(spec) = &pod.spec else {
        return Ok(None);
    };
    let init = spec.init_containers.clone().unwrap_or_default();
    if init
        .iter()
        .chain(&spec.containers)
        .any(|c| c.name == CONTAINER)
    {
        return Ok(None);
    }
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let workload = workload(&labels, &annotations)?;
    let port = match annotations.get(PORT) {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| InjectError::BadPort(p.clone()))?,
    };
    for c in init.iter().chain(&spec.containers) {
        let taken = c
            .ports
            .iter()
            .flatten()
            .any(|p| p.container_port == i32::from(port));
        if taken {
            return Err(InjectError::PortTaken(port, c.name.clone()));
        }
    }
    let volumes = spec.volumes.clone().unwrap_or_default();
    let (volume_name, new_volume, on_empty_dir) = match annotations.get(STORAGE).map(String::as_str)
    {
        None | Some("emptyDir") => (
            DATA_VOLUME.to_string(),
            Some(Volume {
                name: DATA_VOLUME.into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            }),
            true,
        ),
        Some(other) => match other.strip_prefix("volume:") {
            Some(name) if volumes.iter().any(|v| v.name == name) => {
                let empty = volumes
                    .iter()
                    .any(|v| v.name == name && v.empty_dir.is_some());
                (name.to_string(), None, empty)
            }
            _ => return Err(InjectError::BadStorage(other.to_string())),
        },
    };
    let cpu = quantity("cpu", annotations.get(CPU), "50m")?;
    let memory = quantity("memory", annotations.get(MEMORY), "64Mi")?;
    let field = |path: &str| EnvVarSource {
        field_ref: Some(ObjectFieldSelector {
            field_path: path.into(),
            ..ObjectFieldSelector::default()
        }),
        ..EnvVarSource::default()
    };
    let probe = |path: &str, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(i32::from(port)),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(5),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    let mut args = vec![
        format!(
            "--config-secret={}/{}",
            s.config_namespace,
            crate::sidecars::slice_name(&s.secret_prefix, namespace, &workload)
        ),
        format!("--data-dir={DATA_DIR}"),
        format!("--listen=0.0.0.0:{port}"),
        "--node-id=0".into(),
        // A sidecar delivers to its own Pod's containers on loopback, which the egress guard
        // refuses by default.
        "--egress-allow=127.0.0.0/8,::1/128".into(),
    ];
    // An emptyDir dies with the Pod: deliver what is queued before going, within the grace
    // period. On a volume that outlives the Pod the queue waits for the next one instead.
    if on_empty_dir {
        let grace = spec
            .termination_grace_period_seconds
            .unwrap_or(DEFAULT_GRACE_SECONDS);
        args.push("--drain-on-shutdown=true".into());
        args.push(format!(
            "--drain-timeout={}s",
            (grace - DRAIN_MARGIN_SECONDS).max(1)
        ));
    }
    let sidecar = Container {
        name: CONTAINER.into(),
        image: Some(s.image.clone()),
        restart_policy: Some("Always".into()),
        args: Some(args),
        env: Some(vec![
            EnvVar {
                name: "POD_NAME".into(),
                value_from: Some(field("metadata.name")),
                ..EnvVar::default()
            },
            EnvVar {
                name: "POD_NAMESPACE".into(),
                value_from: Some(field("metadata.namespace")),
                ..EnvVar::default()
            },
            EnvVar {
                name: "POD_UID".into(),
                value_from: Some(field("metadata.uid")),
                ..EnvVar::default()
            },
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("hookmesh".into()),
            container_port: i32::from(port),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        startup_probe: Some(probe("/healthz", 60)),
        liveness_probe: Some(probe("/healthz", 3)),
        readiness_probe: Some(probe("/readyz", 3)),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), cpu),
                ("memory".to_string(), memory.clone()),
            ])),
            limits: Some(BTreeMap::from([("memory".to_string(), memory)])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: volume_name,
            mount_path: DATA_DIR.into(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    let mut ops = Vec::new();
    // First among the init containers: a native sidecar starts before the ones after it, and
    // the app's own init containers may already want to reach it.
    if spec.init_containers.is_none() {
        ops.push(json!({"op": "add", "path": "/spec/initContainers", "value": [sidecar]}));
    } else {
        ops.push(json!({"op": "add", "path": "/spec/initContainers/0", "value": sidecar}));
    }
    if let Some(v) = new_volume {
        if spec.volumes.is_none() {
            ops.push(json!({"op": "add", "path": "/spec/volumes", "value": [v]}));
        } else {
            ops.push(json!({"op": "add", "path": "/spec/volumes/-", "value": v}));
        }
    }
    Ok(Some(Value::Array(ops)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn settings() -> SidecarSettings {
        SidecarSettings {
            image: "hookmesh/hookmesh-dataplane:test".into(),
            secret_prefix: "hookmesh-sidecar-".into(),
            config_namespace: "hookmesh-system".into(),
        }
    }

    fn pod(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Pod {
        let map = |kv: &[(&str, &str)]| {
            Some(
                kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        Pod {
            metadata: ObjectMeta {
                labels: map(labels),
                annotations: map(annotations),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    ports: Some(vec![ContainerPort {
                        container_port: 8080,
                        ..ContainerPort::default()
                    }]),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    /// Apply a patch the way the API server does.
    fn applied(p: &Pod, patch: Value) -> Pod {
        let mut doc = serde_json::to_value(p).expect("pod json");
        let patch: json_patch::Patch = serde_json::from_value(patch).expect("a JSON patch");
        json_patch::patch(&mut doc, &patch).expect("applies");
        serde_json::from_value(doc).expect("still a pod")
    }

    #[test]
    fn a_labelled_pod_gets_a_native_sidecar_once() {
        let p = pod(&[(INJECT_LABEL, "true"), ("app", "shop")], &[]);
        let ops = patch(&p, "payments", &settings())
            .expect("ok")
            .expect("a patch");
        let out = applied(&p, ops);
        let spec = out.spec.clone().expect("spec");
        let init = spec.init_containers.clone().expect("init containers");
        assert_eq!(init.len(), 1);
        let side = &init[0];
        assert_eq!(side.name, CONTAINER);
        assert_eq!(side.restart_policy.as_deref(), Some("Always"));
        let args = side.args.clone().unwrap_or_default();
        assert!(
            args.contains(
                &"--config-secret=hookmesh-system/hookmesh-sidecar-payments.shop".to_string()
            ),
            "{args:?}"
        );
        assert!(args.contains(&"--listen=0.0.0.0:8090".to_string()));
        assert!(args.contains(&"--egress-allow=127.0.0.0/8,::1/128".to_string()));
        // On the emptyDir: drain within the default 30 s grace period, minus the margin.
        assert!(
            args.contains(&"--drain-on-shutdown=true".to_string()),
            "{args:?}"
        );
        assert!(
            args.contains(&"--drain-timeout=25s".to_string()),
            "{args:?}"
        );
        assert_eq!(spec.volumes.expect("volumes")[0].name, DATA_VOLUME);
        assert_eq!(spec.containers.len(), 1, "the app is untouched");
        // Reinvoked on its own output: nothing more.
        assert_eq!(patch(&out, "payments", &settings()), Ok(None));
    }

    #[test]
    fn unlabelled_pods_are_left_alone() {
        assert_eq!(
            patch(&pod(&[("app", "shop")], &[]), "ns", &settings()),
            Ok(None)
        );
        assert_eq!(
            patch(
                &pod(&[(INJECT_LABEL, "false"), ("app", "shop")], &[]),
                "ns",
                &settings()
            ),
            Ok(None)
        );
    }

    #[test]
    fn annotations_choose_port_storage_and_resources_and_bad_ones_are_refused() {
        let mut p = pod(
            &[(INJECT_LABEL, "true")],
            &[
                (WORKLOAD, "billing"),
                (PORT, "9100"),
                (STORAGE, "volume:data"),
                (MEMORY, "128Mi"),
            ],
        );
        if let Some(spec) = p.spec.as_mut() {
            spec.volumes = Some(vec![Volume {
                name: "data".into(),
                ..Volume::default()
            }]);
            spec.init_containers = Some(vec![Container {
                name: "migrate".into(),
                ..Container::default()
            }]);
        }
        let out = applied(
            &p,
            patch(&p, "ns", &settings()).expect("ok").expect("patch"),
        );
        let spec = out.spec.expect("spec");
        let init = spec.init_containers.expect("init");
        assert_eq!(
            init[0].name, CONTAINER,
            "first, before the app's own init containers"
        );
        assert_eq!(init[1].name, "migrate");
        assert_eq!(spec.volumes.expect("volumes").len(), 1, "no emptyDir added");
        let side = &init[0];
        assert_eq!(side.volume_mounts.clone().expect("mounts")[0].name, "data");
        assert!(
            !side
                .args
                .clone()
                .unwrap_or_default()
                .contains(&"--drain-on-shutdown=true".to_string()),
            "a volume that outlives the Pod keeps the queue for the next one"
        );
        assert!(side
            .args
            .clone()
            .unwrap_or_default()
            .contains(&"--listen=0.0.0.0:9100".to_string()));
        let mem = side
            .resources
            .clone()
            .and_then(|r| r.limits)
            .and_then(|l| l.get("memory").cloned());
        assert_eq!(mem, Some(Quantity("128Mi".into())));

        let bad = |ann: &[(&str, &str)]| {
            let mut all = vec![(WORKLOAD, "w")];
            all.extend_from_slice(ann);
            patch(&pod(&[(INJECT_LABEL, "true")], &all), "ns", &settings())
        };
        assert_eq!(bad(&[(PORT, "0")]), Err(InjectError::BadPort("0".into())));
        assert_eq!(
            bad(&[(PORT, "8080")]),
            Err(InjectError::PortTaken(8080, "app".into()))
        );
        assert_eq!(
            bad(&[(STORAGE, "volume:nope")]),
            Err(InjectError::BadStorage("volume:nope".into()))
        );
        assert_eq!(
            bad(&[(MEMORY, "lots")]),
            Err(InjectError::BadQuantity("memory", "lots".into()))
        );
        assert_eq!(
            patch(&pod(&[(INJECT_LABEL, "true")], &[]), "ns", &settings()),
            Err(InjectError::NoWorkload)
        );
        assert_eq!(
            patch(
                &pod(&[(INJECT_LABEL, "true")], &[(WORKLOAD, "Bad_Name")]),
                "ns",
                &settings()
            ),
            Err(InjectError::BadWorkload("Bad_Name".into()))
        );
    }
}
