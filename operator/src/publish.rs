//! Publishing the compiled config: one Secret (it holds key material), written by server-side
//! apply with the field manager `hookmesh-operator`, data key `config.json`. The data plane
//! watches exactly this Secret.

use std::collections::BTreeMap;

use hookmesh_api::config::CONFIG_SECRET_KEY;
use hookmesh_api::GatewayConfig;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams};
use kube::Api;

use crate::FIELD_MANAGER;

/// Annotation carrying the config hash, so `kubectl get secret -o yaml` shows what is live.
pub const HASH_ANNOTATION: &str = "hookmesh.io/config-hash";

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot encode the gateway config: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("server-side apply of config Secret {namespace}/{name} failed: {source}")]
    Apply {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Where the config Secret lives (`--config-secret NAMESPACE/NAME`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    pub namespace: String,
    pub name: String,
}

impl std::str::FromStr for SecretRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(SecretRef {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                })
            }
            _ => Err(format!("{s:?} is not NAMESPACE/NAME")),
        }
    }
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The config Secret exactly as the operator applies it: only the fields it owns.
pub fn config_secret(at: &SecretRef, config: &GatewayConfig) -> Result<Secret, PublishError> {
    let json = serde_json::to_vec(config)?;
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(at.name.clone()),
            namespace: Some(at.namespace.clone()),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    FIELD_MANAGER.to_string(),
                ),
                (
                    "app.kubernetes.io/component".to_string(),
                    "config".to_string(),
                ),
            ])),
            annotations: Some(BTreeMap::from([(
                HASH_ANNOTATION.to_string(),
                config.hash.clone(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_string()),
        data: Some(BTreeMap::from([(
            CONFIG_SECRET_KEY.to_string(),
            ByteString(json),
        )])),
        ..Secret::default()
    })
}

/// The config hash a published Secret carries, read from its data (the annotation is only a
/// convenience for people).
pub fn published_hash(secret: &Secret) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(CONFIG_SECRET_KEY)?;
    let config: GatewayConfig = serde_json::from_slice(&bytes.0).ok()?;
    Some(config.hash)
}

/// Server-side apply the config Secret (force: the operator owns these fields).
pub async fn apply_config(
    client: kube::Client,
    at: &SecretRef,
    config: &GatewayConfig,
) -> Result<(), PublishError> {
    let secret = config_secret(at, config)?;
    let api: Api<Secret> = Api::namespaced(client, &at.namespace);
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&at.name, &pp, &Patch::Apply(&secret))
        .await
        .map_err(|source| PublishError::Apply {
            namespace: at.namespace.clone(),
            name: at.name.clone(),
            source,
        })?;
    Ok(())
}
