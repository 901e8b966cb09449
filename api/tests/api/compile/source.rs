//! Sources: each verification scheme and its defaults, event type and idempotency rules, and what a bad source spec is refused with.

use super::*;

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
