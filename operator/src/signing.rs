//! Endpoint signing Secrets: an Endpoint without `secretRef` signs with `<endpoint>-signing`
//! (key `secret`). The operator creates it when absent, with a fresh `whsec_` key (`whsk_` for
//! an Ed25519 Endpoint): `create` either makes it or gets 409 AlreadyExists. It changes one
//! only when asked, by the Endpoint's `hookmesh.io/rotate-signing-secret` annotation, and only
//! one it generated itself: a rotation writes a fresh key, keeps the replaced one as `previous`
//! until `previousExpiresAt`, and records the annotation's value on the Secret.

use std::collections::BTreeMap;

use base64::Engine as _;
use hookmesh_api::compile::DEFAULT_SIGNING_SECRET_KEY;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::ByteString;
use kube::api::PostParams;
use kube::Api;
use rand::RngCore as _;

use crate::reconcile::MissingSigningSecret;
use crate::FIELD_MANAGER;

/// Label on generated signing Secrets.
pub const GENERATED_LABEL: &str = "hookmesh.io/generated";

/// `whsec_` + base64 of 32 random bytes (Standard Webhooks secret format), or `whsk_` + the
/// base64 of a random 32-byte Ed25519 seed.
pub fn generate_secret_value(ed25519: bool) -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let prefix = if ed25519 { "whsk_" } else { "whsec_" };
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// The merge patch of one rotation at `now_ms`: the new key, the replaced one and its expiry,
/// the token done, and the resourceVersion it was computed from (a conflict if it changed).
pub fn rotation_patch(
    r: &crate::reconcile::Rotation,
    new_value: &str,
    now_ms: u64,
) -> serde_json::Value {
    use hookmesh_api::compile::{PREVIOUS_EXPIRES_AT_KEY, PREVIOUS_SIGNING_SECRET_KEY};
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let expires = k8s_openapi::jiff::Timestamp::from_millisecond(
        i64::try_from(now_ms.saturating_add(r.grace_ms)).unwrap_or(i64::MAX),
    )
    .map(|t| t.to_string())
    .unwrap_or_default();
    serde_json::json!({
        "metadata": {
            "resourceVersion": r.resource_version,
            "annotations": {crate::reconcile::ROTATED_FOR_ANNOTATION: r.token},
        },
        "data": {
            DEFAULT_SIGNING_SECRET_KEY: b64(new_value.as_bytes()),
            PREVIOUS_SIGNING_SECRET_KEY: b64(&r.current),
            PREVIOUS_EXPIRES_AT_KEY: b64(expires.as_bytes()),
        },
    })
}

/// Rotate one generated signing Secret. Returns the Secret as written.
pub async fn rotate(
    client: kube::Client,
    r: &crate::reconcile::Rotation,
    now_ms: u64,
) -> Result<Secret, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client, &r.namespace);
    let patch = rotation_patch(r, &generate_secret_value(r.ed25519), now_ms);
    let pp = kube::api::PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..kube::api::PatchParams::default()
    };
    api.patch(&r.secret_name, &pp, &kube::api::Patch::Merge(&patch))
        .await
}

/// The Secret to create for `missing`, owned by its Endpoint so deleting the Endpoint
/// garbage-collects it.
pub fn signing_secret(missing: &MissingSigningSecret, value: String) -> Secret {
    let owner = missing.endpoint_uid.as_ref().map(|uid| {
        vec![OwnerReference {
            api_version: format!("{}/{}", hookmesh_api::GROUP, hookmesh_api::VERSION),
            kind: "Endpoint".to_string(),
            name: missing.endpoint.clone(),
            uid: uid.clone(),
            controller: Some(false),
            block_owner_deletion: Some(false),
        }]
    });
    Secret {
        metadata: ObjectMeta {
            name: Some(missing.secret_name.clone()),
            namespace: Some(missing.namespace.clone()),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    FIELD_MANAGER.to_string(),
                ),
                (GENERATED_LABEL.to_string(), "signing-secret".to_string()),
            ])),
            owner_references: owner,
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_string()),
        data: Some(BTreeMap::from([(
            DEFAULT_SIGNING_SECRET_KEY.to_string(),
            ByteString(value.into_bytes()),
        )])),
        ..Secret::default()
    }
}

/// Create the signing Secret if it does not exist. `Ok(Some)` is the created object,
/// `Ok(None)` means one already existed (and was left alone).
pub async fn create_if_absent(
    client: kube::Client,
    missing: &MissingSigningSecret,
) -> Result<Option<Secret>, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client, &missing.namespace);
    let secret = signing_secret(missing, generate_secret_value(missing.ed25519));
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    match api.create(&pp, &secret).await {
        Ok(created) => Ok(Some(created)),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
        Err(e) => Err(e),
    }
}
