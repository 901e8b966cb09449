//! Endpoints: defaults and every field, and what bad URLs, durations, numbers and headers are refused with.

use super::*;

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
            // Svix's schedule: 5s, 5m, 30m, 2h, 5h, 10h, 10h.
            delays: RetryDelays::Schedule {
                delays_ms: vec![
                    5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000
                ]
            },
            max_age_ms: None,
            max_retry_after_ms: 3_600_000,
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
            delays: RetryDelays::Exponential {
                initial_ms: 500,
                max_ms: 120_000,
                multiplier: 1.5
            },
            max_age_ms: None,
            max_retry_after_ms: 3_600_000,
        }
    );
    assert_eq!(e.per_second, Some(20));
    assert_eq!(e.max_in_flight, Some(4));
    assert!(e.disabled);
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
        "{schedule: []}",
        "{schedule: [5s, soon]}",
        "{schedule: [5s], initialBackoff: 1s}",
        "{schedule: [5s], multiplier: 2}",
        "{maxAge: forever}",
        "{maxRetryAfter: 1.5h}",
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
fn retry_forms_compile_to_their_schedules() {
    let compiled = |retry: &str| {
        let c = compile(&valid_plus(&endpoint(
            "e1",
            &ep_spec(&format!("retry: {retry}")),
        )));
        assert!(c.problems.is_empty(), "{retry}: {:?}", c.problems);
        c.config.endpoint("shop", "e1").unwrap().retry.clone()
    };
    // A schedule: one attempt more than its delays, unless maxAttempts says otherwise.
    let r = compiled("{schedule: [10s, 1m, 1h], maxAge: 3d, maxRetryAfter: 10m}");
    assert_eq!(
        r.delays,
        RetryDelays::Schedule {
            delays_ms: vec![10_000, 60_000, 3_600_000]
        }
    );
    assert_eq!(r.max_attempts, 4);
    assert_eq!(r.max_age_ms, Some(3 * 86_400_000));
    assert_eq!(r.max_retry_after_ms, 600_000);
    assert_eq!(
        compiled("{schedule: [1s], maxAttempts: 20}").max_attempts,
        20
    );
    // Only maxAttempts: the default schedule, cut or extended by its last delay.
    let r = compiled("{maxAttempts: 3}");
    assert_eq!(r.max_attempts, 3);
    assert!(matches!(r.delays, RetryDelays::Schedule { ref delays_ms } if delays_ms.len() == 7));
    // Any exponential field picks the exponential form, with the others defaulted.
    let r = compiled("{initialBackoff: 2s}");
    assert_eq!(
        r.delays,
        RetryDelays::Exponential {
            initial_ms: 2_000,
            max_ms: 3_600_000,
            multiplier: 2.0
        }
    );
    assert_eq!(r.max_attempts, 8);
}

/// RFC 8032, section 7.1, TEST 1: the seed and its public key.
const RFC8032_SEED_WHSK: &str = "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
const RFC8032_PUBLIC_WHPK: &str = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

#[test]
fn ed25519_signing_derives_the_public_key_from_a_whsk_secret() {
    let with = |secret: &str| {
        compile(&valid_plus(&format!(
            "{}---\n{}",
            secret_yaml("ed-key", secret),
            endpoint(
                "ed",
                "{url: 'https://e.example', secretRef: {name: ed-key, key: secret}, signing: {profile: standard-webhooks, algorithm: ed25519}}"
            )
        )))
    };
    for secret in [
        RFC8032_SEED_WHSK,
        // libsodium's 64-byte form: the seed, then the public key.
        "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2DXWpgBgrEKt9VL/tPJZAc6DuFy89qmIyWvAhpo9wdRGg==",
    ] {
        let c = with(secret);
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        let e = c.config.endpoint("shop", "ed").unwrap();
        assert_eq!(
            e.signing,
            SigningConfig::StandardWebhooks {
                svix_names: false,
                ed25519: Some(Ed25519Public {
                    public_key: RFC8032_PUBLIC_WHPK.into()
                })
            }
        );
        assert_eq!(e.signing_key.expose().len(), 32);
    }
    // A whsec_ secret, a seed of the wrong length, a 64-byte form whose halves disagree.
    for bad in [
        "whsec_c2lnbmluZy1rZXk=",
        "whsk_AAAA",
        "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",
    ] {
        let c = with(bad);
        assert_eq!(
            summary(&c.problems),
            [(
                Kind::Endpoint,
                "shop".to_string(),
                "ed".to_string(),
                Reason::InvalidSecret
            )],
            "{bad}"
        );
    }
}

fn secret_yaml(name: &str, value: &str) -> String {
    secret(name, &format!("stringData: {{secret: \"{value}\"}}"))
}

#[test]
fn a_rotated_generated_secret_signs_with_its_previous_key_until_it_expires() {
    let c = compile(&valid_plus(&format!(
        "{}---\n{}",
        secret(
            "rot-signing",
            "stringData: {secret: whsec_bmV3LWtleQ==, previous: whsec_b2xkLWtleQ==, previousExpiresAt: '2027-01-01T00:00:00Z'}"
        ),
        endpoint("rot", "{url: 'https://e.example'}")
    )));
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    let e = c.config.endpoint("shop", "rot").unwrap();
    assert_eq!(e.signing_key.expose(), b"new-key");
    assert_eq!(e.previous_keys.len(), 1);
    assert_eq!(e.previous_keys[0].key.expose(), b"old-key");
    assert_eq!(e.previous_keys[0].expires_at_ms, 1_798_761_600_000);
    // A bad expiry is the Endpoint's problem, not a silent key.
    refused(
        &format!(
            "{}---\n{}",
            secret(
                "rot-signing",
                "stringData: {secret: whsec_bmV3LWtleQ==, previous: whsec_b2xkLWtleQ==, previousExpiresAt: soon}"
            ),
            endpoint("rot", "{url: 'https://e.example'}")
        ),
        &[(Kind::Endpoint, "rot", Reason::InvalidSpec)],
    );
}
