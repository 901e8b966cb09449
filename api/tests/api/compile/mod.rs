//! The compiler: valid configs compile to the expected values, each kind of invalid object is
//! reported on its own while the rest keeps working, and output is deterministic.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is a failure with its cause

// One file per kind of object, mirroring the compiler's own layout.
mod api_keys;
mod audience;
mod endpoint;
mod secrets;
mod source;
mod subscription;

use crate::common::{inputs, shuffle, summary, valid_plus, VALID};
use base64::Engine as _;
use hookmesh_api::compile::{compile, hash_of, Compiled, Inputs, Kind, Reason};
use hookmesh_api::config::*;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn valid() -> Compiled {
    let c = compile(&inputs(VALID));
    assert!(c.problems.is_empty(), "{:#?}", c.problems);
    c
}

#[test]
fn valid_fixture_compiles_every_object() {
    let c = valid();
    let names = |v: Vec<(&str, &str)>| {
        v.into_iter()
            .map(|(a, b)| format!("{a}/{b}"))
            .collect::<Vec<_>>()
    };
    let cfg = &c.config;
    assert_eq!(
        names(
            cfg.sources
                .iter()
                .map(|s| (s.namespace.as_str(), s.name.as_str()))
                .collect()
        ),
        [
            "shop/generic",
            "shop/github",
            "shop/open",
            "shop/shopify",
            "shop/slack",
            "shop/stripe",
            "shop/sw"
        ]
    );
    assert_eq!(
        names(
            cfg.endpoints
                .iter()
                .map(|s| (s.namespace.as_str(), s.name.as_str()))
                .collect()
        ),
        ["shop/full", "shop/orders"]
    );
    assert_eq!(
        names(
            cfg.subscriptions
                .iter()
                .map(|s| (s.namespace.as_str(), s.name.as_str()))
                .collect()
        ),
        ["shop/everything", "shop/paid-orders"]
    );
    assert!(cfg.hash.starts_with("sha256:"));
    assert_eq!(cfg.hash.len(), "sha256:".len() + 64);
    assert_eq!(cfg.hash, hash_of(cfg));
}

#[test]
fn objects_without_namespace_land_in_default() {
    let c = compile(&inputs(&format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: ep-signing}}
stringData: {{secret: whsec_{}}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Endpoint
metadata: {{name: ep}}
spec: {{url: "https://x.example"}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {{name: src}}
spec: {{verification: {{scheme: none}}}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Subscription
metadata: {{name: sub}}
spec: {{endpointRef: {{name: ep, namespace: default}}, sources: [src]}}
"#,
        b64("k")
    )));
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    assert!(c.config.source("default", "src").is_some());
    assert_eq!(
        c.config.endpoint("default", "ep").unwrap().url,
        "https://x.example/"
    );
    assert_eq!(c.config.subscriptions[0].namespace, "default");
}

#[test]
fn empty_inputs_compile_to_an_empty_config() {
    let c = compile(&Inputs::default());
    assert!(c.problems.is_empty());
    assert!(c.config.sources.is_empty() && c.config.endpoints.is_empty());
    assert_eq!(c.config.hash, hash_of(&c.config));
}

#[test]
fn config_round_trips_through_json() {
    let c = valid();
    let json = serde_json::to_string(&c.config).unwrap();
    let back: GatewayConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, c.config);
    assert_eq!(hash_of(&back), c.config.hash);
}

type Expected<'a> = &'a [(Kind, &'a str, Reason)];

/// Compile the valid fixture plus `extra`; the problems must be exactly `expected` (all in
/// namespace `shop`) and the config must be exactly the valid fixture's, hash included.
fn refused(extra: &str, expected: Expected<'_>) -> Compiled {
    let base = valid();
    let c = compile(&valid_plus(extra));
    let mut want: Vec<_> = expected
        .iter()
        .map(|(k, name, r)| (*k, "shop".to_string(), name.to_string(), *r))
        .collect();
    want.sort();
    assert_eq!(summary(&c.problems), want, "{extra}\n{:#?}", c.problems);
    assert_eq!(
        c.config, base.config,
        "the valid rest changed for:\n{extra}"
    );
    for p in &c.problems {
        assert!(!p.message.is_empty());
        let shown = p.to_string();
        assert!(shown.contains(&p.name) && shown.contains(&p.reason.to_string()));
    }
    c
}

fn source(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: hookmesh.io/v1alpha1\nkind: Source\nmetadata: {{name: {name}, namespace: shop}}\nspec: {spec}\n"
    )
}

fn endpoint(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: hookmesh.io/v1alpha1\nkind: Endpoint\nmetadata: {{name: {name}, namespace: shop}}\nspec: {spec}\n"
    )
}

fn subscription(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: hookmesh.io/v1alpha1\nkind: Subscription\nmetadata: {{name: {name}, namespace: shop}}\nspec: {spec}\n"
    )
}

fn secret(name: &str, body: &str) -> String {
    format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: shop}}\n{body}\n")
}

/// An endpoint spec signing with the fixture's `full-ep-secret`, so only `rest` can be wrong.
fn ep_spec(rest: &str) -> String {
    format!("{{url: 'https://e.example', secretRef: {{name: full-ep-secret, key: sig}}, {rest}}}")
}

fn gh(rest: &str) -> String {
    format!("{{verification: {{scheme: github, secretRef: {{name: gh, key: secret}}}}, {rest}}}")
}

#[test]
fn duplicate_objects_are_reported_and_the_first_kept() {
    let c = refused(
        &format!(
            "{}---\n{}---\n{}",
            source("sw", "{verification: {scheme: none}}"),
            endpoint("orders", "{url: 'https://other.example'}"),
            subscription("everything", "{endpointRef: {name: full}}"),
        ),
        &[
            (Kind::Source, "sw", Reason::DuplicateObject),
            (Kind::Endpoint, "orders", Reason::DuplicateObject),
            (Kind::Subscription, "everything", Reason::DuplicateObject),
        ],
    );
    assert!(c
        .problems
        .iter()
        .all(|p| p.message.contains("more than once")));
}

#[test]
fn objects_without_a_name_are_refused() {
    let extra = "apiVersion: hookmesh.io/v1alpha1\nkind: Source\nmetadata: {namespace: shop}\nspec: {verification: {scheme: none}}\n";
    refused(extra, &[(Kind::Source, "", Reason::InvalidSpec)]);
}

#[test]
fn many_invalid_objects_at_once_each_get_their_own_problem() {
    let extra = [
        source(
            "s1",
            "{verification: {scheme: github, secretRef: {name: nope, key: k}}}",
        ),
        endpoint("e1", &ep_spec("timeoutSeconds: 0")),
        endpoint(
            "e2",
            "{url: 'ftp://x.example', secretRef: {name: full-ep-secret, key: sig}}",
        ),
        subscription("sub1", "{endpointRef: {name: e1}}"),
        subscription(
            "sub2",
            "{endpointRef: {name: orders}, filter: {eventTypes: ['**']}}",
        ),
        subscription("sub3", "{endpointRef: {name: orders, namespace: x}}"),
    ]
    .join("---\n");
    let c = refused(
        &extra,
        &[
            (Kind::Source, "s1", Reason::SecretNotFound),
            (Kind::Endpoint, "e1", Reason::InvalidSpec),
            (Kind::Endpoint, "e2", Reason::InvalidUrl),
            (Kind::Subscription, "sub1", Reason::EndpointNotReady),
            (Kind::Subscription, "sub2", Reason::InvalidGlob),
            (Kind::Subscription, "sub3", Reason::CrossNamespaceRef),
        ],
    );
    assert_eq!(
        c.problem_for(Kind::Endpoint, "shop", "e2").unwrap().reason,
        Reason::InvalidUrl
    );
}

/// The valid fixture plus a few invalid objects, so problems take part in the comparison.
fn mixed_inputs() -> Inputs {
    valid_plus(
        &[
            source(
                "s1",
                "{verification: {scheme: github, secretRef: {name: nope, key: k}}}",
            ),
            endpoint("e1", &ep_spec("timeoutSeconds: 0")),
            subscription("sub1", "{endpointRef: {name: e1}}"),
            subscription(
                "sub2",
                "{endpointRef: {name: orders}, filter: {eventTypes: ['**']}}",
            ),
            source(
                "sw",
                "{verification: {scheme: standard-webhooks, secretRef: {name: sw, key: secret}}}",
            ),
        ]
        .join("---\n"),
    )
}

#[test]
fn shuffled_inputs_give_identical_bytes_hash_and_problems() {
    let reference = compile(&mixed_inputs());
    let ref_bytes = serde_json::to_vec(&reference.config).unwrap();
    assert_eq!(reference.problems.len(), 5, "{:#?}", reference.problems);
    let mut sorted = reference.problems.clone();
    sorted.sort();
    assert_eq!(reference.problems, sorted, "problems are sorted");
    for seed in 1..=12u64 {
        let mut i = mixed_inputs();
        shuffle(&mut i.sources, seed);
        shuffle(&mut i.endpoints, seed + 100);
        shuffle(&mut i.subscriptions, seed + 200);
        shuffle(&mut i.secrets, seed + 300);
        let c = compile(&i);
        assert_eq!(
            serde_json::to_vec(&c.config).unwrap(),
            ref_bytes,
            "seed {seed}"
        );
        assert_eq!(c.config.hash, reference.config.hash, "seed {seed}");
        assert_eq!(c.problems, reference.problems, "seed {seed}");
    }
    // Reversed, too.
    let mut i = mixed_inputs();
    i.sources.reverse();
    i.endpoints.reverse();
    i.subscriptions.reverse();
    i.secrets.reverse();
    let c = compile(&i);
    assert_eq!(serde_json::to_vec(&c.config).unwrap(), ref_bytes);
    assert_eq!(c.problems, reference.problems);
}

#[test]
fn compiling_twice_gives_the_same_hash() {
    assert_eq!(
        compile(&inputs(VALID)).config.hash,
        compile(&inputs(VALID)).config.hash
    );
}

/// Replace the first occurrence of `from` in the fixture and return the new hash.
fn hash_with(from: &str, to: &str) -> String {
    assert!(VALID.contains(from), "{from}");
    let c = compile(&inputs(&VALID.replacen(from, to, 1)));
    assert!(c.problems.is_empty(), "{from} -> {to}: {:?}", c.problems);
    c.config.hash
}

#[test]
fn changing_any_spec_value_changes_the_hash() {
    let base = valid().config.hash;
    for (from, to) in [
        ("toleranceSeconds: 60", "toleranceSeconds: 61"),
        ("multiplier: 1.5", "multiplier: 1.6"),
        ("X-Tenant: acme", "X-Tenant: acmf"),
        (
            "{name: X-Debug, exists: false}",
            "{name: X-Debug, exists: true}",
        ),
        ("mode: audit", "mode: enforce"),
    ] {
        assert_ne!(hash_with(from, to), base, "{from} -> {to}");
    }
}
