//! The compiler: valid configs compile to the expected values, each kind of invalid object is
//! reported on its own while the rest keeps working, and output is deterministic.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is a failure with its cause

mod common;

use base64::Engine as _;
use common::{inputs, shuffle, summary, valid_plus, VALID};
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

// ---------------------------------------------------------------------------------------------
// Valid configs
// ---------------------------------------------------------------------------------------------

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
fn standard_webhooks_source_gets_scheme_defaults() {
    let c = valid();
    let s = c.config.source("shop", "sw").unwrap();
    // The whsec_ prefix is stripped and the rest base64-decoded.
    assert_eq!(
        s.verification,
        Verifier::StandardWebhooks {
            key: SecretBytes(b"standard-key-0001".to_vec())
        }
    );
    assert_eq!(s.verification.scheme_name(), "standard-webhooks");
    assert_eq!(s.mode, VerifyMode::Enforce);
    assert_eq!(s.tolerance_seconds, 300);
    assert_eq!(s.max_body_bytes, 1024 * 1024);
    assert_eq!(s.api_key, None);
    assert_eq!(s.event_type, Some(FieldRule::JsonPointer("/type".into())));
    assert_eq!(
        s.idempotency,
        Some(IdempotencyRule {
            key: FieldRule::Header("webhook-id".into()),
            window_seconds: 24 * 3600
        })
    );
}

#[test]
fn stripe_source_keeps_raw_secret_from_data() {
    let c = valid();
    let s = c.config.source("shop", "stripe").unwrap();
    // Stripe signs with the whole `whsec_...` string as the key, not its decoded form.
    assert_eq!(
        s.verification,
        Verifier::Stripe {
            key: SecretBytes(b"whsec_stripe_raw_secret".to_vec())
        }
    );
    assert_eq!(s.event_type, Some(FieldRule::JsonPointer("/type".into())));
    assert_eq!(
        s.idempotency,
        Some(IdempotencyRule {
            key: FieldRule::JsonPointer("/id".into()),
            window_seconds: 86_400
        })
    );
}

#[test]
fn github_source_with_every_source_field_set() {
    let c = valid();
    let s = c.config.source("shop", "github").unwrap();
    assert_eq!(
        s.verification,
        Verifier::Github {
            key: SecretBytes(b"gh-secret".to_vec())
        }
    );
    assert_eq!(s.mode, VerifyMode::Audit);
    assert_eq!(s.tolerance_seconds, 60);
    assert_eq!(s.max_body_bytes, 2048);
    assert_eq!(
        s.api_key.as_ref().map(SecretBytes::expose),
        Some(&b"ingest-api-key-123456"[..])
    );
    assert_eq!(
        s.event_type,
        Some(FieldRule::Header("x-github-event".into()))
    );
    assert_eq!(
        s.idempotency.as_ref().map(|i| &i.key),
        Some(&FieldRule::Header("x-github-delivery".into()))
    );
}

#[test]
fn shopify_and_slack_sources_use_string_data_and_provider_defaults() {
    let c = valid();
    let shopify = c.config.source("shop", "shopify").unwrap();
    assert_eq!(
        shopify.verification,
        Verifier::Shopify {
            key: SecretBytes(b"shpss_abc".to_vec())
        }
    );
    assert_eq!(
        shopify.event_type,
        Some(FieldRule::Header("x-shopify-topic".into()))
    );
    assert_eq!(
        shopify.idempotency.as_ref().map(|i| &i.key),
        Some(&FieldRule::Header("x-shopify-webhook-id".into()))
    );
    let slack = c.config.source("shop", "slack").unwrap();
    assert_eq!(
        slack.verification,
        Verifier::Slack {
            key: SecretBytes(b"slack-signing-secret".to_vec())
        }
    );
    assert_eq!(
        slack.event_type,
        Some(FieldRule::JsonPointer("/event/type".into()))
    );
    assert_eq!(
        slack.idempotency.as_ref().map(|i| &i.key),
        Some(&FieldRule::JsonPointer("/event_id".into()))
    );
}

#[test]
fn generic_hmac_source_compiles_template_and_lowercases_headers() {
    let c = valid();
    let s = c.config.source("shop", "generic").unwrap();
    let Verifier::Hmac(h) = &s.verification else {
        panic!("{:?}", s.verification)
    };
    assert_eq!(h.key.expose(), b"hmac-key");
    assert_eq!(h.header, "x-sig");
    assert_eq!(h.encoding, SignatureEncoding::Base64);
    assert_eq!(h.prefix, "sha512=");
    assert_eq!(h.algorithm, HmacAlgorithm::Sha512);
    assert_eq!(h.timestamp_header.as_deref(), Some("x-timestamp"));
    assert_eq!(
        h.signed_content,
        [
            TemplatePart::Timestamp,
            TemplatePart::Literal(".".into()),
            TemplatePart::Body
        ]
    );
    assert_eq!(s.event_type, Some(FieldRule::Header("x-event-type".into())));
    assert_eq!(
        s.idempotency,
        Some(IdempotencyRule {
            key: FieldRule::JsonPointer("/id".into()),
            window_seconds: 3600
        })
    );
}

#[test]
fn generic_hmac_defaults_sign_the_body_as_hex_sha256() {
    let c = compile(&inputs(
        r#"
apiVersion: v1
kind: Secret
metadata: {name: k, namespace: a}
stringData: {k: key}
---
apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {name: plain, namespace: a}
spec:
  verification:
    scheme: hmac
    secretRef: {name: k, key: k}
    hmac: {header: X-Signature}
"#,
    ));
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    let s = c.config.source("a", "plain").unwrap();
    let Verifier::Hmac(h) = &s.verification else {
        panic!()
    };
    assert_eq!(h.encoding, SignatureEncoding::Hex);
    assert_eq!(h.algorithm, HmacAlgorithm::Sha256);
    assert_eq!(h.prefix, "");
    assert_eq!(h.timestamp_header, None);
    assert_eq!(h.signed_content, [TemplatePart::Body]);
    // The generic scheme has no provider defaults.
    assert_eq!(s.event_type, None);
    assert_eq!(s.idempotency, None);
}

#[test]
fn none_source_has_no_key_and_takes_explicit_rules() {
    let c = valid();
    let s = c.config.source("shop", "open").unwrap();
    assert_eq!(s.verification, Verifier::None);
    assert_eq!(s.event_type, Some(FieldRule::JsonPointer("/kind".into())));
    assert_eq!(
        s.idempotency,
        Some(IdempotencyRule {
            key: FieldRule::Header("x-request-id".into()),
            window_seconds: 86_400
        })
    );
}

#[test]
fn disabled_idempotency_turns_off_the_provider_default() {
    let c = compile(&valid_plus(
        r#"
apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {name: gh2, namespace: shop}
spec:
  verification: {scheme: github, secretRef: {name: gh, key: secret}}
  idempotency: {disabled: true}
"#,
    ));
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    assert_eq!(c.config.source("shop", "gh2").unwrap().idempotency, None);
}

#[test]
fn idempotency_window_only_keeps_the_provider_key() {
    let c = compile(&valid_plus(
        r#"
apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {name: gh2, namespace: shop}
spec:
  verification: {scheme: github, secretRef: {name: gh, key: secret}}
  idempotency: {window: 1500ms}
"#,
    ));
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    assert_eq!(
        c.config.source("shop", "gh2").unwrap().idempotency,
        Some(IdempotencyRule {
            key: FieldRule::Header("x-github-delivery".into()),
            window_seconds: 2 // rounded up, never down to 0
        })
    );
}

#[test]
fn endpoint_defaults() {
    let c = valid();
    let e = c.config.endpoint("shop", "orders").unwrap();
    assert_eq!(e.url, "https://orders.example.com/hook");
    // No secretRef: the Secret `<name>-signing`, key `secret`, whsec_-decoded.
    assert_eq!(e.signing_key.expose(), b"orders-signing-key");
    assert!(e.headers.is_empty());
    assert_eq!(e.timeout_ms, 30_000);
    assert_eq!(
        e.retry,
        RetryConfig {
            max_attempts: 8,
            initial_backoff_ms: 1_000,
            max_backoff_ms: 3_600_000,
            multiplier: 2.0
        }
    );
    assert_eq!(e.per_second, None);
    assert_eq!(e.max_in_flight, None);
    assert!(!e.disabled);
}

#[test]
fn endpoint_with_every_field_set() {
    let c = valid();
    let e = c.config.endpoint("shop", "full").unwrap();
    assert_eq!(e.url, "http://full.example.com:8080/in?x=1");
    assert_eq!(e.signing_key.expose(), b"full-signing-key-02");
    assert_eq!(
        e.headers,
        [
            (
                "authorization".to_string(),
                "Bearer downstream-token".to_string()
            ),
            ("x-tenant".to_string(), "acme".to_string())
        ]
    );
    assert_eq!(e.timeout_ms, 10_000);
    assert_eq!(
        e.retry,
        RetryConfig {
            max_attempts: 3,
            initial_backoff_ms: 500,
            max_backoff_ms: 120_000,
            multiplier: 1.5
        }
    );
    assert_eq!(e.per_second, Some(20));
    assert_eq!(e.max_in_flight, Some(4));
    assert!(e.disabled);
}

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
fn api_keys_from_labelled_secrets() {
    let c = valid();
    assert_eq!(
        c.config.api_keys,
        [
            ApiKeyConfig {
                id: "ops/reader-key".into(),
                key: SecretBytes(b"reader-api-key-0123456789".to_vec()),
                role: Role::Read,
                namespace: None,
            },
            ApiKeyConfig {
                id: "shop/admin-key".into(),
                key: SecretBytes(b"admin-api-key-0123456789".to_vec()),
                role: Role::Write,
                namespace: Some("shop".into()),
            },
        ]
    );
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
fn string_data_wins_over_data_for_the_same_key() {
    let c = compile(&inputs(&format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: s, namespace: a}}
data: {{k: {}}}
stringData: {{k: from-string-data}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {{name: src, namespace: a}}
spec: {{verification: {{scheme: github, secretRef: {{name: s, key: k}}}}}}
"#,
        b64("from-data")
    )));
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    assert_eq!(
        c.config.source("a", "src").unwrap().verification,
        Verifier::Github {
            key: SecretBytes(b"from-string-data".to_vec())
        }
    );
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

// ---------------------------------------------------------------------------------------------
// Invalid objects: each is reported alone, with its reason, and the valid rest is untouched
// ---------------------------------------------------------------------------------------------

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
fn missing_secret() {
    let c = refused(
        &source(
            "s1",
            "{verification: {scheme: github, secretRef: {name: nope, key: secret}}}",
        ),
        &[(Kind::Source, "s1", Reason::SecretNotFound)],
    );
    assert!(c.problems[0].message.contains("shop/nope"));
    // An Endpoint whose default `<name>-signing` Secret does not exist.
    let c = refused(
        &endpoint("lonely", "{url: 'https://e.example'}"),
        &[(Kind::Endpoint, "lonely", Reason::SecretNotFound)],
    );
    assert!(
        c.problems[0].message.contains("lonely-signing"),
        "{}",
        c.problems[0].message
    );
    // Secrets are looked up in the object's own namespace only.
    refused(
        &source(
            "s2",
            "{verification: {scheme: github, secretRef: {name: reader-key, key: key}}}",
        ),
        &[(Kind::Source, "s2", Reason::SecretNotFound)],
    );
    refused(
        &source("s3", &gh("auth: {apiKeySecretRef: {name: nope, key: key}}")),
        &[(Kind::Source, "s3", Reason::SecretNotFound)],
    );
}

#[test]
fn missing_key_in_secret() {
    refused(
        &source(
            "s1",
            "{verification: {scheme: stripe, secretRef: {name: gh, key: nope}}}",
        ),
        &[(Kind::Source, "s1", Reason::SecretKeyNotFound)],
    );
    refused(
        &endpoint(
            "e1",
            "{url: 'https://e.example', secretRef: {name: full-ep-secret, key: nope}}",
        ),
        &[(Kind::Endpoint, "e1", Reason::SecretKeyNotFound)],
    );
    refused(
        &source("s2", &gh("auth: {apiKeySecretRef: {name: gh, key: nope}}")),
        &[(Kind::Source, "s2", Reason::SecretKeyNotFound)],
    );
}

#[test]
fn bad_or_empty_secret_values() {
    for (i, value) in ["not-a-whsec", "whsec_", "whsec_!!notbase64!!", "c2VjcmV0"]
        .iter()
        .enumerate()
    {
        let extra = format!(
            "{}---\n{}---\n{}",
            secret(&format!("bad{i}"), &format!("stringData: {{secret: '{value}'}}")),
            source(
                &format!("sw{i}"),
                &format!(
                    "{{verification: {{scheme: standard-webhooks, secretRef: {{name: bad{i}, key: secret}}}}}}"
                )
            ),
            endpoint(
                &format!("ep{i}"),
                &format!("{{url: 'https://e.example', secretRef: {{name: bad{i}, key: secret}}}}")
            ),
        );
        let c = refused(
            &extra,
            &[
                (Kind::Source, &format!("sw{i}"), Reason::InvalidSecret),
                (Kind::Endpoint, &format!("ep{i}"), Reason::InvalidSecret),
            ],
        );
        for p in &c.problems {
            assert!(
                value.len() < 7 || !p.message.contains(value),
                "secret value in message: {}",
                p.message
            );
        }
    }
    // An empty value is refused for every scheme, not used as an empty HMAC key.
    refused(
        &format!(
            "{}---\n{}",
            secret("empty", "stringData: {k: ''}"),
            source(
                "s1",
                "{verification: {scheme: slack, secretRef: {name: empty, key: k}}}"
            )
        ),
        &[(Kind::Source, "s1", Reason::InvalidSecret)],
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
fn bad_urls() {
    for url in [
        "ftp://files.example.com/in",
        "http://",
        "https://user:hunter2@e.example/",
        "https://:hunter2@e.example/",
        "garbage",
        "/relative/path",
        "https://exa mple.com/",
        "mailto:someone@example.com",
        "http://[::1/",
    ] {
        let c = refused(
            &endpoint(
                "e1",
                &format!("{{url: {url:?}, secretRef: {{name: full-ep-secret, key: sig}}}}"),
            ),
            &[(Kind::Endpoint, "e1", Reason::InvalidUrl)],
        );
        assert!(
            !c.problems[0].message.contains("hunter2"),
            "credentials leaked into the message: {}",
            c.problems[0].message
        );
    }
}

#[test]
fn url_credentials_never_reach_a_message_whatever_else_is_wrong() {
    for url in [
        "ftp://user:hunter2@files.example.com/in",
        "gopher://hunter2@e.example/",
        "http://user:hunter2@/nohost",
        "http://user:hunter2@exa mple.com/",
    ] {
        let c = refused(
            &endpoint(
                "e1",
                &format!("{{url: {url:?}, secretRef: {{name: full-ep-secret, key: sig}}}}"),
            ),
            &[(Kind::Endpoint, "e1", Reason::InvalidUrl)],
        );
        assert!(
            !c.problems[0].message.contains("hunter2"),
            "credentials leaked into the message: {}",
            c.problems[0].message
        );
    }
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
fn bad_durations_and_backoffs() {
    for retry in [
        "{initialBackoff: 1x}",
        "{maxBackoff: '5'}",
        "{initialBackoff: 1.5s}",
        "{maxBackoff: ''}",
        "{initialBackoff: 2h}",
        "{initialBackoff: 10s, maxBackoff: 5s}",
        "{maxAttempts: 0}",
        "{maxAttempts: 101}",
        "{multiplier: 0.5}",
        "{multiplier: 11}",
    ] {
        refused(
            &endpoint("e1", &ep_spec(&format!("retry: {retry}"))),
            &[(Kind::Endpoint, "e1", Reason::InvalidSpec)],
        );
    }
    refused(
        &source("s1", &gh("idempotency: {window: soon}")),
        &[(Kind::Source, "s1", Reason::InvalidSpec)],
    );
}

#[test]
fn out_of_range_numbers() {
    for rest in [
        "timeoutSeconds: 0",
        "timeoutSeconds: 301",
        "rateLimit: {perSecond: 0}",
        "rateLimit: {maxInFlight: 0}",
    ] {
        refused(
            &endpoint("e1", &ep_spec(rest)),
            &[(Kind::Endpoint, "e1", Reason::InvalidSpec)],
        );
    }
    for spec in [
        "{verification: {scheme: none, toleranceSeconds: 0}}",
        "{verification: {scheme: none, toleranceSeconds: 86401}}",
        "{verification: {scheme: none}, maxBodyBytes: 0}",
        "{verification: {scheme: none}, maxBodyBytes: 67108865}",
    ] {
        refused(
            &source("s1", spec),
            &[(Kind::Source, "s1", Reason::InvalidSpec)],
        );
    }
}

#[test]
fn bad_json_pointers() {
    for rest in [
        "eventType: {jsonPointer: type}",
        "eventType: {jsonPointer: '/a~2b'}",
        "eventType: {jsonPointer: '/a~'}",
        "idempotency: {jsonPointer: id}",
    ] {
        refused(
            &source("s1", &gh(rest)),
            &[(Kind::Source, "s1", Reason::InvalidSpec)],
        );
    }
    for body in [
        "[{path: a/b, exact: x}]",
        "[{any: [{path: '/~', exists: true}]}]",
    ] {
        refused(
            &subscription(
                "s1",
                &format!("{{endpointRef: {{name: orders}}, filter: {{body: {body}}}}}"),
            ),
            &[(Kind::Subscription, "s1", Reason::InvalidFilter)],
        );
    }
}

#[test]
fn bad_header_names() {
    for rest in [
        "eventType: {header: 'X Event'}",
        "eventType: {header: ''}",
        "idempotency: {header: 'x:y'}",
    ] {
        refused(
            &source("s1", &gh(rest)),
            &[(Kind::Source, "s1", Reason::InvalidSpec)],
        );
    }
    for hmac in [
        "{header: 'X Sig'}",
        "{header: X-Sig, timestampHeader: 'a(b)'}",
    ] {
        refused(
            &source(
                "s1",
                &format!("{{verification: {{scheme: hmac, secretRef: {{name: hmac, key: k}}, hmac: {hmac}}}}}"),
            ),
            &[(Kind::Source, "s1", Reason::InvalidSpec)],
        );
    }
    refused(
        &endpoint("e1", &ep_spec("headers: {'Bad Header': x}")),
        &[(Kind::Endpoint, "e1", Reason::InvalidSpec)],
    );
    refused(
        &endpoint("e1", &ep_spec("headers: {X-Ok: \"a\\r\\nInjected: yes\"}")),
        &[(Kind::Endpoint, "e1", Reason::InvalidSpec)],
    );
    for headers in [
        "[{name: 'x y', exact: a}]",
        "[{not: {name: 'a/b', exists: true}}]",
    ] {
        refused(
            &subscription(
                "s1",
                &format!("{{endpointRef: {{name: orders}}, filter: {{headers: {headers}}}}}"),
            ),
            &[(Kind::Subscription, "s1", Reason::InvalidFilter)],
        );
    }
}

#[test]
fn reserved_headers_cannot_be_overridden() {
    for name in [
        "Content-Type",
        "content-length",
        "Host",
        "User-Agent",
        "Transfer-Encoding",
        "Connection",
        "Webhook-Id",
        "webhook-signature",
        "Hookmesh-Source",
    ] {
        let c = refused(
            &endpoint("e1", &ep_spec(&format!("headers: {{{name}: x}}"))),
            &[(Kind::Endpoint, "e1", Reason::InvalidSpec)],
        );
        assert!(
            c.problems[0].message.contains(name),
            "{}",
            c.problems[0].message
        );
    }
}

#[test]
fn source_spec_rules() {
    for spec in [
        // secretRef required unless none
        "{verification: {scheme: github}}".to_string(),
        // hmac settings only with scheme hmac, and required there
        "{verification: {scheme: github, secretRef: {name: gh, key: secret}, hmac: {header: X-Sig}}}".into(),
        "{verification: {scheme: none, hmac: {header: X-Sig}}}".into(),
        "{verification: {scheme: hmac, secretRef: {name: hmac, key: k}}}".into(),
        // signed content: {body} required, {timestamp} needs a header, no unknown placeholders
        "{verification: {scheme: hmac, secretRef: {name: hmac, key: k}, hmac: {header: X-Sig, signedContent: 'v0:{timestamp}'}}}".into(),
        "{verification: {scheme: hmac, secretRef: {name: hmac, key: k}, hmac: {header: X-Sig, signedContent: '{timestamp}.{body}'}}}".into(),
        "{verification: {scheme: hmac, secretRef: {name: hmac, key: k}, hmac: {header: X-Sig, signedContent: '{id}.{body}'}}}".into(),
        "{verification: {scheme: hmac, secretRef: {name: hmac, key: k}, hmac: {header: X-Sig, signedContent: '{body'}}}".into(),
        // exactly one of header/jsonPointer
        gh("eventType: {}"),
        gh("eventType: {header: X-Type, jsonPointer: /type}"),
        gh("idempotency: {header: X-Id, jsonPointer: /id}"),
        gh("idempotency: {disabled: true, header: X-Id}"),
    ] {
        refused(&source("s1", &spec), &[(Kind::Source, "s1", Reason::InvalidSpec)]);
    }
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
fn a_duplicate_secret_is_reported_and_the_first_kept() {
    let c = refused(
        &secret("gh", "stringData: {secret: another-value}"),
        &[(Kind::Secret, "gh", Reason::DuplicateObject)],
    );
    assert_eq!(
        c.config.hash,
        valid().config.hash,
        "the first Secret's value is used"
    );
    assert!(!c.problems[0].message.contains("another-value"));
}

#[test]
fn objects_without_a_name_are_refused() {
    let extra = "apiVersion: hookmesh.io/v1alpha1\nkind: Source\nmetadata: {namespace: shop}\nspec: {verification: {scheme: none}}\n";
    refused(extra, &[(Kind::Source, "", Reason::InvalidSpec)]);
}

#[test]
fn bad_api_key_secrets() {
    let labelled = |name: &str, data: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: shop, labels: {{hookmesh.io/api-key: 'true'}}}}\nstringData: {data}\n"
        )
    };
    refused(
        &labelled("k1", "{token: some-long-api-key-value}"),
        &[(Kind::Secret, "k1", Reason::SecretKeyNotFound)],
    );
    let c = refused(
        &labelled("k2", "{key: short-hunter2}"),
        &[(Kind::Secret, "k2", Reason::InvalidSecret)],
    );
    assert!(!c.problems[0].message.contains("hunter2"));
    refused(
        &labelled("k3", "{key: some-long-api-key-value, role: admin}"),
        &[(Kind::Secret, "k3", Reason::InvalidSecret)],
    );
    // Only the label value "true" makes an API key; other Secrets are never checked.
    let c = compile(&valid_plus(&format!(
        "{}---\n{}",
        labelled("k4", "{key: x}").replace("'true'", "'false'"),
        secret("k5", "stringData: {key: x}")
    )));
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    assert_eq!(c.config, valid().config);
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

// ---------------------------------------------------------------------------------------------
// Determinism and secrecy
// ---------------------------------------------------------------------------------------------

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
fn changing_one_secret_byte_changes_the_hash() {
    let base = valid().config.hash;
    for (from, to) in [
        // standard-webhooks source key (decoded bytes change)
        (
            "whsec_c3RhbmRhcmQta2V5LTAwMDE=",
            "whsec_c3RhbmRhcmQta2V5LTAwMDI=",
        ),
        // stripe key in `data`
        (
            "d2hzZWNfc3RyaXBlX3Jhd19zZWNyZXQ=",
            "d2hzZWNfc3RyaXBlX3Jhd19zZWNyZXU=",
        ),
        // github key in `data`: "gh-secret" -> "gh-secreu"
        ("Z2gtc2VjcmV0", "Z2gtc2VjcmV1"),
        ("token: shpss_abc", "token: shpss_abd"),
        (
            "signing: slack-signing-secret",
            "signing: slack-signing-secreu",
        ),
        ("aG1hYy1rZXk=", "aG1hYy1rZXo="),
        ("key: ingest-api-key-123456", "key: ingest-api-key-123457"),
        (
            "whsec_b3JkZXJzLXNpZ25pbmcta2V5",
            "whsec_b3JkZXJzLXNpZ25pbmcta2V6",
        ),
        (
            "sig: d2hzZWNfWm5Wc2JDMXphV2R1YVc1bkxXdGxlUzB3TWc9PQ==",
            "sig: d2hzZWNfWm5Wc2JDMXphV2R1YVc1bkxXdGxlUzB3TXc9PQ==",
        ),
        (
            "key: admin-api-key-0123456789",
            "key: admin-api-key-0123456788",
        ),
        (
            "cmVhZGVyLWFwaS1rZXktMDEyMzQ1Njc4OQ==",
            "cmVhZGVyLWFwaS1rZXktMDEyMzQ1Njc4OA==",
        ),
    ] {
        assert_ne!(hash_with(from, to), base, "{from} -> {to}");
    }
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

/// Every secret value of the fixture, as text, and (for whsec_ secrets) the decoded key.
const SECRET_VALUES: &[&str] = &[
    "standard-key-0001",
    "c3RhbmRhcmQta2V5LTAwMDE",
    "whsec_stripe_raw_secret",
    "gh-secret",
    "shpss_abc",
    "slack-signing-secret",
    "hmac-key",
    "ingest-api-key-123456",
    "orders-signing-key",
    "full-signing-key-02",
    "admin-api-key-0123456789",
    "reader-api-key-0123456789",
];

#[test]
fn secrets_never_appear_in_debug_output() {
    let c = valid();
    for shown in [format!("{:?}", c.config), format!("{:#?}", c)] {
        for s in SECRET_VALUES {
            assert!(!shown.contains(s), "{s} in Debug output");
        }
        assert!(shown.contains("redacted"));
    }
    let key = SecretBytes(b"hunter2".to_vec());
    assert_eq!(format!("{key:?}"), "SecretBytes(<7 bytes redacted>)");
    // The serialized config (which goes into a Secret) does carry the keys, base64-encoded.
    let json = serde_json::to_string(&c.config).unwrap();
    assert!(json.contains(&b64("gh-secret")));
}

#[test]
fn secrets_never_appear_in_problem_messages() {
    // Break every object of the fixture that references a Secret in a way that makes the
    // compiler look at the Secret's value, and check no message quotes it.
    let broken = VALID
        .replace(
            "scheme: standard-webhooks",
            "scheme: standard-webhooks\n    toleranceSeconds: 0",
        )
        .replace("maxBodyBytes: 2048", "maxBodyBytes: 0")
        .replace("role: write", "role: superuser-standard-key-0001")
        .replace(
            "key: cmVhZGVyLWFwaS1rZXktMDEyMzQ1Njc4OQ==",
            "key: Z2gtc2VjcmV0",
        )
        .replace("sig: d2hzZWNf", "sig: d2hzZWNg")
        .replace(
            "secret: whsec_b3JkZXJzLXNpZ25pbmcta2V5",
            "secret: b3JkZXJzLXNpZ25pbmcta2V5",
        );
    let c = compile(&inputs(&broken));
    assert!(c.problems.len() >= 6, "{:#?}", c.problems);
    for p in &c.problems {
        for s in SECRET_VALUES
            .iter()
            .chain(&["b3JkZXJzLXNpZ25pbmcta2V5", "superuser"])
        {
            assert!(!p.to_string().contains(s), "{s} in {p}");
        }
    }
}
