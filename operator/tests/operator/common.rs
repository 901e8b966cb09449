//! Fixtures shared by the operator's tests: objects as the API server would return them.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;

use hookmesh_api::{Endpoint, Source, Subscription};
use hookmesh_operator::reconcile::Snapshot;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use serde::de::DeserializeOwned;

pub const SIGNING: &str = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

pub fn obj<T: DeserializeOwned>(yaml: &str) -> T {
    serde_yaml::from_str(yaml).unwrap()
}

pub fn secret(ns: &str, name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            resource_version: Some("1".into()),
            uid: Some(format!("uid-secret-{name}")),
            ..ObjectMeta::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect::<BTreeMap<_, _>>(),
        ),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

pub fn source() -> Source {
    obj(r#"
apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {name: gh, namespace: shop, generation: 3, uid: uid-src, resourceVersion: "100"}
spec:
  verification: {scheme: github, secretRef: {name: gh-webhook, key: secret}}
"#)
}

pub fn endpoint() -> Endpoint {
    obj(r#"
apiVersion: hookmesh.io/v1alpha1
kind: Endpoint
metadata: {name: ci, namespace: shop, generation: 1, uid: uid-ep, resourceVersion: "101"}
spec:
  url: http://ci.shop.svc:8080/hook
"#)
}

pub fn subscription() -> Subscription {
    obj(r#"
apiVersion: hookmesh.io/v1alpha1
kind: Subscription
metadata: {name: gh-to-ci, namespace: shop, generation: 2, uid: uid-sub, resourceVersion: "102"}
spec:
  endpointRef: {name: ci}
  sources: [gh]
  filter: {eventTypes: [push, "pull_request*"]}
"#)
}

/// One valid Source -> Subscription -> Endpoint chain, with its Secrets.
pub fn valid() -> Snapshot {
    Snapshot {
        sources: vec![source()],
        endpoints: vec![endpoint()],
        subscriptions: vec![subscription()],
        secrets: vec![
            secret(
                "shop",
                "gh-webhook",
                &[("secret", "It's a Secret to Everybody")],
            ),
            secret("shop", "ci-signing", &[("secret", SIGNING)]),
        ],
        sidecar_pods: Default::default(),
    }
}
