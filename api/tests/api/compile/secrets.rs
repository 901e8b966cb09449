//! Secret references: missing Secrets and keys, bad values, data vs stringData, and that no secret byte ever leaves the compiler in a message or debug output.

use super::*;

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
