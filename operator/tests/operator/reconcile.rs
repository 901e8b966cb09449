//! The pure reconcile logic: snapshot in, plan (config + desired statuses + Secrets to
//! generate) out.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use hookmesh_api::resources::{EndpointRef, SecretKeyRef};
use hookmesh_operator::reconcile::{self, CrKind, DesiredStatus, ObjKey, ReadyStatus};

fn key(kind: CrKind, name: &str) -> ObjKey {
    (kind, "shop".to_string(), name.to_string())
}

fn status_of(snap: &reconcile::Snapshot, kind: CrKind, name: &str) -> DesiredStatus {
    reconcile::plan(snap)
        .statuses
        .get(&key(kind, name))
        .cloned()
        .unwrap()
}

#[test]
fn valid_objects_are_ready_and_compiled() {
    let plan = reconcile::plan(&valid());
    let c = plan.config();
    assert_eq!(
        (c.sources.len(), c.endpoints.len(), c.subscriptions.len()),
        (1, 1, 1)
    );
    assert!(
        plan.compiled.problems.is_empty(),
        "{:?}",
        plan.compiled.problems
    );
    assert!(c.hash.starts_with("sha256:"));
    for (kind, name, gen) in [
        (CrKind::Source, "gh", 3),
        (CrKind::Endpoint, "ci", 1),
        (CrKind::Subscription, "gh-to-ci", 2),
    ] {
        let d = plan.statuses.get(&key(kind, name)).unwrap();
        assert_eq!(d.ready, ReadyStatus::True, "{kind:?}");
        assert_eq!(d.reason, "Ready");
        assert_eq!(
            d.observed_generation,
            Some(gen),
            "observedGeneration is the object's generation"
        );
    }
}

#[test]
fn sources_carry_their_ingest_path() {
    let d = status_of(&valid(), CrKind::Source, "gh");
    assert_eq!(d.ingest_path.as_deref(), Some("/e/shop/gh"));
    assert_eq!(d.subscriptions, None);
    // Also when the Source is not ready: the path is where it will receive.
    let mut snap = valid();
    snap.secrets
        .retain(|s| s.metadata.name.as_deref() != Some("gh-webhook"));
    let d = status_of(&snap, CrKind::Source, "gh");
    assert_eq!(d.ready, ReadyStatus::False);
    assert_eq!(d.ingest_path.as_deref(), Some("/e/shop/gh"));
}

#[test]
fn endpoints_count_their_ready_subscriptions() {
    let mut snap = valid();
    let mut second = subscription();
    second.metadata.name = Some("all-to-ci".into());
    second.spec.sources.clear();
    let mut broken = subscription();
    broken.metadata.name = Some("broken-to-ci".into());
    broken.spec.filter.event_types = vec!["bad[glob".into()];
    let mut elsewhere = subscription();
    elsewhere.metadata.namespace = Some("other".into());
    snap.subscriptions.extend([second, broken, elsewhere]);
    let d = status_of(&snap, CrKind::Endpoint, "ci");
    assert_eq!(
        d.subscriptions,
        Some(2),
        "only ready Subscriptions of this namespace count"
    );

    let mut none = valid();
    none.subscriptions.clear();
    assert_eq!(
        status_of(&none, CrKind::Endpoint, "ci").subscriptions,
        Some(0)
    );
}

/// Every kind of compile problem lands in that object's Ready=False with that reason.
#[test]
fn each_problem_kind_becomes_ready_false_with_its_reason() {
    type Mutate = fn(&mut reconcile::Snapshot);
    let cases: Vec<(&str, CrKind, &str, Mutate)> = vec![
        ("SecretNotFound", CrKind::Source, "gh", |s| {
            s.secrets
                .retain(|x| x.metadata.name.as_deref() != Some("gh-webhook"))
        }),
        ("SecretKeyNotFound", CrKind::Source, "gh", |s| {
            s.sources[0].spec.verification.secret_ref = Some(SecretKeyRef {
                name: "gh-webhook".into(),
                key: "nope".into(),
            })
        }),
        ("InvalidSecret", CrKind::Endpoint, "ci", |s| {
            s.secrets[1] = secret("shop", "ci-signing", &[("secret", "not-a-whsec")])
        }),
        ("InvalidUrl", CrKind::Endpoint, "ci", |s| {
            s.endpoints[0].spec.url = "ftp://ci.shop.svc/hook".into()
        }),
        ("InvalidSpec", CrKind::Source, "gh", |s| {
            s.sources[0].spec.verification.tolerance_seconds = Some(0)
        }),
        ("InvalidGlob", CrKind::Subscription, "gh-to-ci", |s| {
            s.subscriptions[0].spec.filter.event_types = vec!["push[0]".into()]
        }),
        ("InvalidFilter", CrKind::Subscription, "gh-to-ci", |s| {
            s.subscriptions[0].spec.filter.body = vec![obj("{path: /a, exact: x, prefix: y}")]
        }),
        ("EndpointNotFound", CrKind::Subscription, "gh-to-ci", |s| {
            s.subscriptions[0].spec.endpoint_ref = EndpointRef {
                name: "nope".into(),
                namespace: None,
            }
        }),
        ("EndpointNotReady", CrKind::Subscription, "gh-to-ci", |s| {
            s.endpoints[0].spec.url = "ftp://broken".into()
        }),
        ("SourceNotFound", CrKind::Subscription, "gh-to-ci", |s| {
            s.subscriptions[0].spec.sources = vec!["nope".into()]
        }),
        ("CrossNamespaceRef", CrKind::Subscription, "gh-to-ci", |s| {
            s.subscriptions[0].spec.endpoint_ref.namespace = Some("elsewhere".into())
        }),
        ("DuplicateObject", CrKind::Source, "gh", |s| {
            s.sources.push(source())
        }),
    ];
    for (reason, kind, name, mutate) in cases {
        let mut snap = valid();
        mutate(&mut snap);
        let plan = reconcile::plan(&snap);
        let d = plan.statuses.get(&key(kind, name)).unwrap();
        assert_eq!(d.ready, ReadyStatus::False, "{reason}");
        assert_eq!(d.reason, reason, "{reason}: {}", d.message);
        assert!(
            !d.message.is_empty(),
            "{reason}: a message names the problem"
        );
        for secret in ["It's a Secret", "whsec_MDEy", "not-a-whsec"] {
            assert!(
                !d.message.contains(secret),
                "{reason}: secret material in {:?}",
                d.message
            );
        }
        // The rest keeps working: objects without problems stay ready.
        let others_ready = plan
            .statuses
            .iter()
            .filter(|(k, _)| {
                plan.compiled
                    .problem_for(api_kind(k.0), &k.1, &k.2)
                    .is_none()
            })
            .all(|(_, d)| d.ready == ReadyStatus::True);
        assert!(others_ready, "{reason}");
    }
}

fn api_kind(k: CrKind) -> hookmesh_api::compile::Kind {
    match k {
        CrKind::Source => hookmesh_api::compile::Kind::Source,
        CrKind::Endpoint => hookmesh_api::compile::Kind::Endpoint,
        CrKind::Subscription => hookmesh_api::compile::Kind::Subscription,
    }
}

#[test]
fn first_sight_is_unknown() {
    let d = DesiredStatus::first_sight(CrKind::Source, "shop", "gh", Some(3));
    assert_eq!(d.ready, ReadyStatus::Unknown);
    assert_eq!(d.reason, "Reconciling");
    assert_eq!(d.observed_generation, Some(3));
    assert_eq!(d.ingest_path.as_deref(), Some("/e/shop/gh"));
    let d = DesiredStatus::first_sight(CrKind::Endpoint, "shop", "ci", Some(1));
    assert_eq!((d.ready, d.ingest_path), (ReadyStatus::Unknown, None));
}

#[test]
fn a_plan_only_answers_for_the_generation_it_compiled() {
    let plan = reconcile::plan(&valid());
    let k = key(CrKind::Source, "gh");
    assert!(plan.desired_for(&k, Some(3)).is_some());
    assert!(
        plan.desired_for(&k, Some(4)).is_none(),
        "newer spec: wait for the next compile"
    );
    assert!(plan
        .desired_for(&key(CrKind::Source, "new"), Some(1))
        .is_none());
}

#[test]
fn same_inputs_in_any_order_compile_to_the_same_hash() {
    let a = reconcile::plan(&valid());
    let mut snap = valid();
    snap.secrets.reverse();
    snap.secrets
        .push(secret("shop", "unrelated", &[("x", "y")]));
    let b = reconcile::plan(&snap);
    assert_eq!(a.config().hash, b.config().hash);
    assert_eq!(a.statuses, b.statuses);
}

#[test]
fn deleting_an_object_removes_its_routes() {
    let mut snap = valid();
    snap.subscriptions.clear();
    let plan = reconcile::plan(&snap);
    assert!(plan.config().subscriptions.is_empty());
    assert_ne!(plan.config().hash, reconcile::plan(&valid()).config().hash);
    assert!(!plan
        .statuses
        .contains_key(&key(CrKind::Subscription, "gh-to-ci")));
}

#[test]
fn signing_secret_is_generated_only_when_absent() {
    // Present: nothing to generate.
    assert!(reconcile::missing_signing_secrets(&valid()).is_empty());
    // Absent: exactly one, named <endpoint>-signing, owned by the Endpoint.
    let mut snap = valid();
    snap.secrets
        .retain(|s| s.metadata.name.as_deref() != Some("ci-signing"));
    let missing = reconcile::missing_signing_secrets(&snap);
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].secret_name, "ci-signing");
    assert_eq!(missing[0].namespace, "shop");
    assert_eq!(missing[0].endpoint_uid.as_deref(), Some("uid-ep"));
    // Present but wrong: never overwritten (the compiler reports it instead).
    let mut snap = valid();
    snap.secrets[1] = secret("shop", "ci-signing", &[("other-key", "x")]);
    assert!(reconcile::missing_signing_secrets(&snap).is_empty());
    assert_eq!(
        status_of(&snap, CrKind::Endpoint, "ci").reason,
        "SecretKeyNotFound"
    );
    // An explicit secretRef is the user's: never generated.
    let mut snap = valid();
    snap.secrets.clear();
    snap.endpoints[0].spec.secret_ref = Some(SecretKeyRef {
        name: "mine".into(),
        key: "k".into(),
    });
    assert!(reconcile::missing_signing_secrets(&snap).is_empty());
}

#[test]
fn only_referenced_and_api_key_secrets_reach_the_compiler() {
    let mut snap = valid();
    snap.secrets
        .push(secret("shop", "unrelated", &[("x", "y")]));
    let mut key = secret("ops", "reader", &[("key", "0123456789abcdef0123")]);
    key.metadata.labels = Some([("hookmesh.io/api-key".to_string(), "true".to_string())].into());
    snap.secrets.push(key);
    let names: Vec<String> = reconcile::relevant_secrets(&snap)
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["gh-webhook", "ci-signing", "reader"]);
    assert_eq!(reconcile::plan(&snap).config().api_keys.len(), 1);
}

#[test]
fn fingerprint_ignores_status_writes_and_unrelated_secrets() {
    let base = reconcile::fingerprint(&valid());
    // A status write changes resourceVersion, not generation.
    let mut snap = valid();
    snap.sources[0].metadata.resource_version = Some("999".into());
    snap.secrets
        .push(secret("shop", "unrelated", &[("x", "y")]));
    assert_eq!(reconcile::fingerprint(&snap), base);
    // A spec change or a referenced Secret change does count.
    let mut snap = valid();
    snap.sources[0].metadata.generation = Some(4);
    assert_ne!(reconcile::fingerprint(&snap), base);
    let mut snap = valid();
    snap.secrets[0].metadata.resource_version = Some("2".into());
    assert_ne!(reconcile::fingerprint(&snap), base);
}

#[test]
fn objects_bound_to_a_workload_are_left_out_of_the_gateways_config_yet_get_a_status() {
    let mut snap = valid();
    snap.endpoints[0].spec.workload = Some("ci-runner".into());
    let plan = reconcile::plan(&snap);
    let c = plan.config();
    assert!(
        c.endpoints.is_empty(),
        "the sidecar's Endpoint is not the gateway's"
    );
    assert!(
        c.subscriptions.is_empty(),
        "nor the Subscription that targets it"
    );
    assert_eq!(c.sources.len(), 1, "the unbound Source stays");
    assert_eq!(
        status_of(&snap, CrKind::Endpoint, "ci").ready,
        ReadyStatus::True
    );
    assert_eq!(
        plan.compiled.config.endpoints.len(),
        1,
        "status comes from everything"
    );
}

#[test]
fn every_named_or_injected_workload_gets_a_slice_with_the_accounts_of_its_pods() {
    use hookmesh_operator::sidecars::SidecarPod;
    let mut snap = valid();
    snap.sources[0].spec.workload = Some("ci-runner".into());
    snap.endpoints[0].spec.workload = Some("ci-runner".into());
    let pod = |w: &str, sa: &str| SidecarPod {
        namespace: "shop".into(),
        workload: w.into(),
        service_account: sa.into(),
    };
    snap.sidecar_pods = [
        pod("ci-runner", "runner"),
        pod("ci-runner", "default"),
        pod("idle", "default"),
    ]
    .into();
    let plan = reconcile::plan(&snap);
    let keys: Vec<(String, String)> = plan.sidecars.iter().map(|s| s.key()).collect();
    assert_eq!(
        keys,
        vec![
            ("shop".to_string(), "ci-runner".to_string()),
            ("shop".to_string(), "idle".to_string())
        ]
    );
    let runner = &plan.sidecars[0];
    assert_eq!(runner.config.sources.len(), 1, "its Source");
    assert_eq!(runner.config.endpoints.len(), 1, "its Endpoint");
    assert_eq!(
        runner.config.subscriptions.len(),
        1,
        "and the Subscription between them"
    );
    assert!(
        plan.config().sources.is_empty(),
        "none of it is the gateway's"
    );
    assert_eq!(
        runner
            .service_accounts
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["default", "runner"]
    );
    let idle = &plan.sidecars[1];
    assert!(
        idle.config.endpoints.is_empty() && idle.config.sources.is_empty(),
        "Pods but no objects: an empty config, so the sidecar still starts"
    );
    assert!(!idle.config.hash.is_empty());

    // A Pod's ServiceAccount is a compile input: changing it must recompile.
    let before = reconcile::fingerprint(&snap);
    snap.sidecar_pods = [pod("ci-runner", "other")].into();
    assert_ne!(reconcile::fingerprint(&snap), before);
}

#[test]
fn an_ed25519_endpoint_shows_its_public_key_in_status() {
    use hookmesh_api::resources::{Signing, SigningProfile, StandardWebhooksAlgorithm};
    let mut snap = valid();
    snap.endpoints[0].spec.signing = Some(Signing {
        profile: SigningProfile::StandardWebhooks,
        algorithm: Some(StandardWebhooksAlgorithm::Ed25519),
        header_names: None,
        hmac: None,
    });
    // RFC 8032, section 7.1, TEST 1.
    snap.secrets[1] = secret(
        "shop",
        "ci-signing",
        &[(
            "secret",
            "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=",
        )],
    );
    let d = status_of(&snap, CrKind::Endpoint, "ci");
    assert_eq!(d.ready, ReadyStatus::True, "{}", d.message);
    assert_eq!(
        d.public_key.as_deref(),
        Some("whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
    );
    assert_eq!(status_of(&valid(), CrKind::Endpoint, "ci").public_key, None);
}

#[test]
fn a_rotate_annotation_rotates_a_generated_signing_secret_once() {
    use hookmesh_operator::reconcile::{rotations, ROTATED_FOR_ANNOTATION, ROTATE_ANNOTATION};
    use hookmesh_operator::signing::{rotation_patch, GENERATED_LABEL};
    let mut snap = valid();
    snap.endpoints[0].spec.secret_ref = None;
    let mut generated = secret("shop", "ci-signing", &[("secret", SIGNING)]);
    generated.metadata.labels =
        Some([(GENERATED_LABEL.to_string(), "signing-secret".to_string())].into());
    generated.metadata.resource_version = Some("41".into());
    snap.secrets[1] = generated;
    assert!(rotations(&snap).is_empty(), "no annotation, no rotation");
    let before = reconcile::fingerprint(&snap);
    snap.endpoints[0]
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(ROTATE_ANNOTATION.into(), "2026-12-01".into());
    assert_ne!(
        reconcile::fingerprint(&snap),
        before,
        "the annotation must wake the compile"
    );
    let r = rotations(&snap);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].secret_name, "ci-signing");
    assert_eq!(r[0].current, SIGNING.as_bytes());
    assert_eq!(r[0].grace_ms, 24 * 3600 * 1000);
    let p = rotation_patch(&r[0], "whsec_bmV3", 1_700_000_000_000);
    assert_eq!(p["metadata"]["resourceVersion"], "41");
    assert_eq!(
        p["metadata"]["annotations"][ROTATED_FOR_ANNOTATION],
        "2026-12-01"
    );
    let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
    assert_eq!(p["data"]["secret"], b64("whsec_bmV3"));
    assert_eq!(p["data"]["previous"], b64(SIGNING));
    assert_eq!(p["data"]["previousExpiresAt"], b64("2023-11-15T22:13:20Z"));
    // Done once: the Secret records the value it was rotated for.
    snap.secrets[1]
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(ROTATED_FOR_ANNOTATION.into(), "2026-12-01".into());
    assert!(rotations(&snap).is_empty());
    // A Secret the operator did not generate is never rotated.
    snap.secrets[1].metadata.labels = None;
    snap.secrets[1].metadata.annotations = None;
    assert!(rotations(&snap).is_empty());
}
