//! Endpoint signing Secrets: an Endpoint without `secretRef` signs with `<endpoint>-signing`
//! (key `secret`). The operator creates it when absent, with a fresh `whsec_` key, and never
//! overwrites or updates an existing one: `create` either makes it or gets 409 AlreadyExists.

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

/// `whsec_` + base64 of 32 random bytes (Standard Webhooks secret format).
pub fn generate_secret_value() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
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
    let secret = signing_secret(missing, generate_secret_value());
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
