//! Subscriptions: routing by source and event type, compiled filters, and what bad references, globs and matchers are refused with.

use super::*;

#[test]
fn subscription_without_sources_or_filter_matches_everything() {
    let c = valid();
    let s = &c.config.subscriptions[0];
    assert_eq!(
        (s.namespace.as_str(), s.name.as_str()),
        ("shop", "everything")
    );
    assert_eq!(s.endpoint, "orders");
    assert!(s.sources.is_empty());
    assert_eq!(s.filter, FilterConfig::default());
}

fn leaf(field: &str, test: Test) -> Leaf {
    Leaf {
        field: field.into(),
        test,
    }
}

#[test]
fn subscription_filters_compile_every_matcher() {
    let c = valid();
    let s = &c.config.subscriptions[1];
    assert_eq!(s.name, "paid-orders");
    assert_eq!(s.endpoint, "full");
    // Sorted and de-duplicated.
    assert_eq!(s.sources, ["github", "stripe"]);
    assert_eq!(s.filter.event_types, ["*", "invoice.?aid", "order.*"]);
    use Matcher::*;
    use Test::*;
    assert_eq!(
        s.filter.headers,
        [
            Leaf(leaf("x-tenant", Exact("acme".into()))),
            Leaf(leaf("user-agent", Prefix("GitHub-Hookshot/".into()))),
            Leaf(leaf("x-env", Suffix("-prod".into()))),
            Leaf(leaf("x-debug", Exists(false))),
            Any(vec![
                leaf("x-a", Exact("1".into())),
                leaf("x-b", Exists(true))
            ]),
            All(vec![
                leaf("x-c", Prefix("c".into())),
                leaf("x-d", Suffix("d".into()))
            ]),
            Not(leaf("x-skip", Exact("yes".into()))),
        ]
    );
    assert_eq!(
        s.filter.body,
        [
            Leaf(leaf("/data/object/status", Exact("paid".into()))),
            Leaf(leaf("/amount", Prefix("1".into()))),
            Any(vec![leaf("/a", Suffix("x".into()))]),
            All(vec![
                leaf("/b", Exists(true)),
                leaf("/c~1d", Exact(String::new()))
            ]),
            Not(leaf("/test", Exact("true".into()))),
        ]
    );
}

#[test]
fn bad_globs() {
    for glob in [
        "order.[a]",
        "order.**",
        "",
        "a b",
        "order.{a,b}",
        "x\\y",
        "é",
    ] {
        let c = refused(
            &subscription(
                "s1",
                &format!(
                    "{{endpointRef: {{name: orders}}, filter: {{eventTypes: ['ok.*', {glob:?}]}}}}"
                ),
            ),
            &[(Kind::Subscription, "s1", Reason::InvalidGlob)],
        );
        assert!(c.problems[0].message.contains("eventTypes"));
    }
}

#[test]
fn dangling_endpoint_ref() {
    refused(
        &subscription("s1", "{endpointRef: {name: nowhere}}"),
        &[(Kind::Subscription, "s1", Reason::EndpointNotFound)],
    );
    // An Endpoint of the same name in another namespace does not count.
    let c = compile(&valid_plus(&format!(
        "{}---\n{}---\n{}",
        secret("x-signing", "stringData: {secret: whsec_a2V5}").replace("shop", "other"),
        endpoint("x", "{url: 'https://e.example'}").replace("shop", "other"),
        subscription("s1", "{endpointRef: {name: x}}")
    )));
    assert!(c.config.endpoint("other", "x").is_some());
    assert_eq!(
        summary(&c.problems),
        [(
            Kind::Subscription,
            "shop".to_string(),
            "s1".to_string(),
            Reason::EndpointNotFound
        )]
    );
}

#[test]
fn cross_namespace_endpoint_ref() {
    refused(
        &subscription("s1", "{endpointRef: {name: orders, namespace: other}}"),
        &[(Kind::Subscription, "s1", Reason::CrossNamespaceRef)],
    );
    // An empty namespace means "mine".
    let c = compile(&valid_plus(&subscription(
        "s2",
        "{endpointRef: {name: orders, namespace: ''}}",
    )));
    assert!(c.problems.is_empty(), "{:?}", c.problems);
}

#[test]
fn unknown_source_in_subscription() {
    let c = refused(
        &subscription(
            "s1",
            "{endpointRef: {name: orders}, sources: [stripe, ghost]}",
        ),
        &[(Kind::Subscription, "s1", Reason::SourceNotFound)],
    );
    assert!(c.problems[0].message.contains("ghost"));
}

#[test]
fn subscription_to_an_invalid_endpoint_is_not_ready() {
    refused(
        &format!(
            "{}---\n{}",
            endpoint("broken", &ep_spec("timeoutSeconds: 0")),
            subscription("s1", "{endpointRef: {name: broken}}")
        ),
        &[
            (Kind::Endpoint, "broken", Reason::InvalidSpec),
            (Kind::Subscription, "s1", Reason::EndpointNotReady),
        ],
    );
}

#[test]
fn matcher_shape_rules() {
    for (list, m) in [
        ("headers", "{name: X-A}"),
        ("headers", "{name: X-A, exact: a, prefix: b}"),
        ("headers", "{name: X-A, any: [{name: X-B, exists: true}]}"),
        ("headers", "{any: []}"),
        ("headers", "{all: []}"),
        ("headers", "{any: [{name: X-B}]}"),
        ("headers", "{path: /a, exact: x}"),
        ("headers", "{exact: x}"),
        ("headers", "{not: {path: /a, exists: true}}"),
        ("headers", "{all: [{name: X-B, exact: a, suffix: b}]}"),
        ("body", "{name: X-A, exact: x}"),
        ("body", "{path: /a, name: X-A, exact: x}"),
        ("body", "{any: [{name: X-A, exists: true}]}"),
        (
            "body",
            "{any: [{path: /a, exists: true}], all: [{path: /b, exists: true}]}",
        ),
    ] {
        refused(
            &subscription(
                "s1",
                &format!("{{endpointRef: {{name: orders}}, filter: {{{list}: [{m}]}}}}"),
            ),
            &[(Kind::Subscription, "s1", Reason::InvalidFilter)],
        );
    }
}

#[test]
fn subscription_naming_an_invalid_but_declared_source_stays_ready() {
    // The Source reports its own problem; the Subscription routes once the Source is fixed.
    let c = compile(&valid_plus(&format!(
        "{}---\n{}",
        source(
            "s1",
            "{verification: {scheme: github, secretRef: {name: nope, key: k}}}"
        ),
        subscription("sub", "{endpointRef: {name: orders}, sources: [s1]}"),
    )));
    assert_eq!(
        summary(&c.problems),
        [(
            Kind::Source,
            "shop".to_string(),
            "s1".to_string(),
            Reason::SecretNotFound
        )]
    );
    assert!(c.problem_for(Kind::Subscription, "shop", "sub").is_none());
    assert_eq!(c.config.subscriptions.last().unwrap().sources, ["s1"]);
}

#[test]
fn dead_letter_sinks() {
    let c = compile(&valid_plus(&subscription(
        "s1",
        "{endpointRef: {name: orders}, deadLetter: {endpointRef: {name: full}}}",
    )));
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    let s = c
        .config
        .subscriptions
        .iter()
        .find(|s| s.name == "s1")
        .unwrap();
    assert_eq!(s.dead_letter.as_deref(), Some("full"));
    for (spec, reason) in [
        (
            "{endpointRef: {name: orders}, deadLetter: {endpointRef: {name: nowhere}}}",
            Reason::EndpointNotFound,
        ),
        (
            "{endpointRef: {name: orders}, deadLetter: {endpointRef: {name: orders}}}",
            Reason::InvalidSpec,
        ),
        (
            "{endpointRef: {name: orders}, deadLetter: {endpointRef: {name: full, namespace: other}}}",
            Reason::CrossNamespaceRef,
        ),
    ] {
        refused(
            &subscription("s1", spec),
            &[(Kind::Subscription, "s1", reason)],
        );
    }
}
