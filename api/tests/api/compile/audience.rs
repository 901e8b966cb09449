//! Config slices: the central gateway's config leaves out what is bound to a workload; a
//! workload's sidecar config holds exactly its own objects, the Subscriptions that target its
//! Endpoints, and no secret of anyone else.

use super::*;
use hookmesh_api::compile::Audience;

const SLICED: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: stripe, namespace: pay}
stringData: {secret: "whsec_c3RyaXBlLXNpZGVjYXItc2VjcmV0LTAwMDAwMDAw"}
---
apiVersion: v1
kind: Secret
metadata: {name: other, namespace: pay}
stringData: {secret: "other-workloads-secret-value"}
---
apiVersion: v1
kind: Secret
metadata: {name: elsewhere, namespace: shop}
stringData: {secret: "a-secret-of-another-namespace"}
---
apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {name: stripe, namespace: pay}
spec:
  workload: checkout
  verification: {scheme: stripe, secretRef: {name: stripe, key: secret}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Endpoint
metadata: {name: app, namespace: pay}
spec:
  workload: checkout
  url: http://localhost:8080/webhooks/stripe
  secretRef: {name: stripe, key: secret}
---
apiVersion: hookmesh.io/v1alpha1
kind: Subscription
metadata: {name: to-app, namespace: pay}
spec:
  endpointRef: {name: app}
  sources: [stripe]
---
apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {name: github, namespace: pay}
spec:
  workload: ledger
  verification: {scheme: github, secretRef: {name: other, key: secret}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Endpoint
metadata: {name: central, namespace: pay}
spec:
  url: https://central.example/hook
  secretRef: {name: stripe, key: secret}
---
apiVersion: hookmesh.io/v1alpha1
kind: Subscription
metadata: {name: to-central, namespace: pay}
spec:
  endpointRef: {name: central}
"#;

fn names(c: &Compiled) -> (Vec<String>, Vec<String>, Vec<String>) {
    (
        c.config
            .sources
            .iter()
            .map(|s| format!("{}/{}", s.namespace, s.name))
            .collect(),
        c.config
            .endpoints
            .iter()
            .map(|e| format!("{}/{}", e.namespace, e.name))
            .collect(),
        c.config
            .subscriptions
            .iter()
            .map(|s| format!("{}/{}", s.namespace, s.name))
            .collect(),
    )
}

#[test]
fn the_workloads_are_the_ones_objects_name() {
    let i = inputs(SLICED);
    let w: Vec<(String, String)> = i.workloads().into_iter().collect();
    assert_eq!(
        w,
        [
            ("pay".into(), "checkout".into()),
            ("pay".into(), "ledger".into())
        ]
    );
}

#[test]
fn a_workloads_slice_holds_its_objects_and_only_its_namespaces_secrets() {
    let i = inputs(SLICED);
    let slice = compile(&i.for_audience(Audience::Workload {
        namespace: "pay",
        name: "checkout",
    }));
    assert!(slice.problems.is_empty(), "{:#?}", slice.problems);
    assert_eq!(
        names(&slice),
        (
            vec!["pay/stripe".into()],
            vec!["pay/app".into()],
            vec!["pay/to-app".into()]
        )
    );
    let json = serde_json::to_string(&slice.config).unwrap();
    for foreign in [
        "other-workloads-secret-value",
        "a-secret-of-another-namespace",
    ] {
        assert!(
            !json.contains(&b64(foreign)) && !json.contains(foreign),
            "{foreign} leaked"
        );
    }
    // Another workload's slice: its own Source, nothing routed.
    let ledger = compile(&i.for_audience(Audience::Workload {
        namespace: "pay",
        name: "ledger",
    }));
    assert_eq!(names(&ledger).0, vec!["pay/github".to_string()]);
    assert!(ledger.config.endpoints.is_empty());
    // No such workload: an empty config.
    let none = compile(&i.for_audience(Audience::Workload {
        namespace: "shop",
        name: "checkout",
    }));
    assert_eq!(names(&none), (vec![], vec![], vec![]));
}

#[test]
fn the_gateway_config_leaves_out_what_sidecars_serve() {
    let i = inputs(SLICED);
    let central = compile(&i.for_audience(Audience::Gateway));
    assert!(central.problems.is_empty(), "{:#?}", central.problems);
    assert_eq!(
        names(&central),
        (
            vec![],
            vec!["pay/central".into()],
            vec!["pay/to-central".into()]
        )
    );
    // Everything together is what status is computed from: every object compiles.
    assert!(compile(&i).problems.is_empty());
}
