//! API keys: labelled Secrets with a role and a scope, and the ones refused.

use super::*;

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
