//! Status writing: turn a [`DesiredStatus`] into a merge patch of the `/status` subresource,
//! only when something the operator owns changed. `lastTransitionTime` moves only when the
//! Ready status itself flips, so an unchanged object produces no patch and no GitOps diff.
//! The operator never writes `spec`: every request here goes to `/status`.

use hookmesh_api::resources::READY;
use hookmesh_api::{Endpoint, Source, Subscription};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

use crate::reconcile::{CrKind, DesiredStatus, ReadyStatus};
use crate::FIELD_MANAGER;

/// Longest condition message the API accepts.
const MAX_MESSAGE_BYTES: usize = 32 * 1024;

/// What an object's status says today, in the parts the operator owns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CurrentStatus {
    pub observed_generation: Option<i64>,
    pub conditions: Vec<Condition>,
    pub ingest_path: Option<String>,
    pub subscriptions: Option<i32>,
    pub public_key: Option<String>,
}

impl CurrentStatus {
    pub fn ready(&self) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == READY)
    }
}

/// The three custom resources, seen through the status fields the operator writes.
pub trait HasStatus:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
{
    const KIND: CrKind;
    fn current_status(&self) -> CurrentStatus;
}

impl HasStatus for Source {
    const KIND: CrKind = CrKind::Source;
    fn current_status(&self) -> CurrentStatus {
        let s = self.status.clone().unwrap_or_default();
        CurrentStatus {
            observed_generation: s.common.observed_generation,
            conditions: s.common.conditions,
            ingest_path: s.ingest_path,
            subscriptions: None,
            public_key: None,
        }
    }
}

impl HasStatus for Endpoint {
    const KIND: CrKind = CrKind::Endpoint;
    fn current_status(&self) -> CurrentStatus {
        let s = self.status.clone().unwrap_or_default();
        CurrentStatus {
            observed_generation: s.common.observed_generation,
            conditions: s.common.conditions,
            ingest_path: None,
            subscriptions: s.subscriptions,
            public_key: s.public_key,
        }
    }
}

impl HasStatus for Subscription {
    const KIND: CrKind = CrKind::Subscription;
    fn current_status(&self) -> CurrentStatus {
        let s = self.status.clone().unwrap_or_default();
        CurrentStatus {
            observed_generation: s.common.observed_generation,
            conditions: s.common.conditions,
            ingest_path: None,
            subscriptions: None,
            public_key: None,
        }
    }
}

/// `message` cut to at most `max_bytes`, on a character boundary.
pub fn truncate(message: &str, max_bytes: usize) -> String {
    if message.len() <= max_bytes {
        return message.to_string();
    }
    let mut end = max_bytes;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message[..end].to_string()
}

/// Does the current status already say what the desired one says?
pub fn up_to_date(current: &CurrentStatus, desired: &DesiredStatus) -> bool {
    let ready_same = current.ready().is_some_and(|c| {
        c.status == desired.ready.as_str()
            && c.reason == desired.reason
            && c.message == truncate(&desired.message, MAX_MESSAGE_BYTES)
            && c.observed_generation == desired.observed_generation
    });
    ready_same
        && current.observed_generation == desired.observed_generation
        && (desired.ingest_path.is_none() || current.ingest_path == desired.ingest_path)
        && (desired.subscriptions.is_none() || current.subscriptions == desired.subscriptions)
        && current.public_key == desired.public_key
}

/// The Ready condition for `desired`, keeping `lastTransitionTime` unless the status flips.
pub fn ready_condition(current: &CurrentStatus, desired: &DesiredStatus, now: &Time) -> Condition {
    let last_transition_time = match current.ready() {
        Some(c) if c.status == desired.ready.as_str() => c.last_transition_time.clone(),
        _ => now.clone(),
    };
    Condition {
        type_: READY.to_string(),
        status: desired.ready.as_str().to_string(),
        reason: desired.reason.clone(),
        message: truncate(&desired.message, MAX_MESSAGE_BYTES),
        observed_generation: desired.observed_generation,
        last_transition_time,
    }
}

/// The merge patch for `/status`, or `None` when nothing the operator owns would change.
/// Conditions of other types (written by someone else) are kept as they are.
pub fn status_patch(current: &CurrentStatus, desired: &DesiredStatus, now: &Time) -> Option<Value> {
    if up_to_date(current, desired) {
        return None;
    }
    let mut conditions: Vec<Condition> = current
        .conditions
        .iter()
        .filter(|c| c.type_ != READY)
        .cloned()
        .collect();
    conditions.push(ready_condition(current, desired, now));
    let mut status = Map::new();
    status.insert(
        "observedGeneration".into(),
        json!(desired.observed_generation),
    );
    status.insert("conditions".into(), json!(conditions));
    if let Some(p) = &desired.ingest_path {
        status.insert("ingestPath".into(), json!(p));
    }
    if let Some(n) = desired.subscriptions {
        status.insert("subscriptions".into(), json!(n));
    }
    // Null removes a key the Endpoint no longer has (a merge patch).
    if desired.public_key.is_some() || current.public_key.is_some() {
        status.insert("publicKey".into(), json!(desired.public_key));
    }
    Some(json!({ "status": status }))
}

/// Did this patch turn the object not-ready, or change why it is not ready?
pub fn newly_failing(current: &CurrentStatus, desired: &DesiredStatus) -> bool {
    desired.ready == ReadyStatus::False
        && current
            .ready()
            .is_none_or(|c| c.status != "False" || c.reason != desired.reason)
}

/// Did this patch bring a failing object back to ready?
pub fn recovered(current: &CurrentStatus, desired: &DesiredStatus) -> bool {
    desired.ready == ReadyStatus::True && current.ready().is_some_and(|c| c.status == "False")
}

/// Send a status merge patch to the object's `/status` subresource.
pub async fn patch_status<K: HasStatus>(
    client: kube::Client,
    obj: &K,
    patch: &Value,
) -> Result<(), kube::Error> {
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client, &ns);
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    api.patch_status(&obj.name_any(), &pp, &Patch::Merge(guarded(obj, patch)))
        .await?;
    Ok(())
}

/// `patch` with the resourceVersion `obj` was read at. The conditions list is written whole,
/// and both the Ready writer and the health loop write into it: so guarded, a write from a
/// stale cache is refused (and retried) instead of dropping the other writer's condition.
pub fn guarded<K: Resource>(obj: &K, patch: &Value) -> Value {
    let mut patch = patch.clone();
    if let (Some(rv), Some(map)) = (obj.resource_version(), patch.as_object_mut()) {
        map.insert("metadata".into(), json!({ "resourceVersion": rv }));
    }
    patch
}
