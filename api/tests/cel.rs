//! The CRDs' CEL rules (`x-kubernetes-validations`), evaluated offline with kube's `cel`
//! feature, and the shape of the generated CRD schemas.
//!
//! Every rule accepts a valid object and refuses the invalid one it exists for. A rule the
//! offline evaluator cannot run fails with an error kind other than `ValidationFailure`; the
//! helpers below report that precisely instead of counting it as a refusal.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is a failure with its cause

use hookmesh_api::resources::{Endpoint, Source, Subscription};
use kube::core::cel::{validate_cel, ErrorKind, ValidationError};
use kube::CustomResourceExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

fn object<K: DeserializeOwned>(kind: &str, spec: &str) -> K {
    serde_yaml::from_str(&format!(
        "apiVersion: hookmesh.io/v1alpha1\nkind: {kind}\nmetadata: {{name: x, namespace: ns}}\nspec: {spec}\n"
    ))
    .unwrap_or_else(|e| panic!("{kind} {spec}: {e}"))
}

fn errors<K: CustomResourceExt + Serialize>(obj: &K) -> Vec<ValidationError> {
    match validate_cel(obj) {
        Ok(()) => Vec::new(),
        Err(e) => e.into_vec(),
    }
}

/// The spec passes every CEL rule, and no rule failed to evaluate.
fn accepts<K: CustomResourceExt + Serialize + DeserializeOwned>(kind: &str, spec: &str) {
    let errs = errors(&object::<K>(kind, spec));
    assert!(errs.is_empty(), "{kind} {spec} refused: {errs:#?}");
}

/// The spec is refused by exactly the rule whose message contains `message`, and that rule
/// evaluated (a clean `false`, not an evaluation error).
fn refuses<K: CustomResourceExt + Serialize + DeserializeOwned>(
    kind: &str,
    spec: &str,
    message: &str,
) {
    let errs = errors(&object::<K>(kind, spec));
    assert!(
        !errs.is_empty(),
        "{kind} {spec} was accepted; expected: {message}"
    );
    for e in &errs {
        assert_eq!(
            e.kind,
            ErrorKind::ValidationFailure,
            "{kind} {spec}: rule did not evaluate: {e:#?}"
        );
    }
    assert!(
        errs.iter().any(|e| e.message.contains(message)),
        "{kind} {spec}: expected {message:?}, got {errs:#?}"
    );
}

fn src_ok(spec: &str) {
    accepts::<Source>("Source", spec)
}
fn src_bad(spec: &str, message: &str) {
    refuses::<Source>("Source", spec, message)
}
fn ep_ok(spec: &str) {
    accepts::<Endpoint>("Endpoint", spec)
}
fn ep_bad(spec: &str, message: &str) {
    refuses::<Endpoint>("Endpoint", spec, message)
}
fn sub_ok(filter: &str) {
    accepts::<Subscription>(
        "Subscription",
        &format!("{{endpointRef: {{name: e}}, filter: {filter}}}"),
    )
}
fn sub_bad(filter: &str, message: &str) {
    refuses::<Subscription>(
        "Subscription",
        &format!("{{endpointRef: {{name: e}}, filter: {filter}}}"),
        message,
    )
}

const GH: &str = "verification: {scheme: github, secretRef: {name: s, key: k}}";

// ---------------------------------------------------------------------------------------------
// Source
// ---------------------------------------------------------------------------------------------

#[test]
fn secret_ref_is_required_unless_scheme_none() {
    src_ok("{verification: {scheme: none}}");
    src_ok(&format!("{{{GH}}}"));
    for scheme in ["standard-webhooks", "stripe", "github", "shopify", "slack"] {
        src_bad(
            &format!("{{verification: {{scheme: {scheme}}}}}"),
            "secretRef is required",
        );
    }
    src_bad(
        "{verification: {scheme: hmac, hmac: {header: X-Sig}}}",
        "secretRef is required",
    );
}

#[test]
fn hmac_settings_iff_scheme_hmac() {
    src_ok("{verification: {scheme: hmac, secretRef: {name: s, key: k}, hmac: {header: X-Sig}}}");
    src_bad(
        "{verification: {scheme: hmac, secretRef: {name: s, key: k}}}",
        "hmac settings are required",
    );
    src_bad(
        "{verification: {scheme: github, secretRef: {name: s, key: k}, hmac: {header: X-Sig}}}",
        "hmac settings are required",
    );
    src_bad(
        "{verification: {scheme: none, hmac: {header: X-Sig}}}",
        "hmac settings are required",
    );
}

fn hmac(settings: &str) -> String {
    format!("{{verification: {{scheme: hmac, secretRef: {{name: s, key: k}}, hmac: {settings}}}}}")
}

#[test]
fn signed_content_must_contain_body() {
    src_ok(&hmac("{header: X-Sig, signedContent: 'v0:{body}'}"));
    src_bad(
        &hmac("{header: X-Sig, signedContent: 'v0:{bod}'}"),
        "signedContent must contain {body}",
    );
}

#[test]
fn timestamp_placeholder_needs_timestamp_header() {
    src_ok(&hmac(
        "{header: X-Sig, timestampHeader: X-Ts, signedContent: '{timestamp}.{body}'}",
    ));
    // A timestamp header without the placeholder is allowed (checked against the tolerance).
    src_ok(&hmac("{header: X-Sig, timestampHeader: X-Ts}"));
    src_bad(
        &hmac("{header: X-Sig, signedContent: '{timestamp}.{body}'}"),
        "timestampHeader is not set",
    );
}

#[test]
fn event_type_takes_exactly_one_of_header_and_json_pointer() {
    src_ok(&format!("{{{GH}, eventType: {{header: X-Type}}}}"));
    src_ok(&format!("{{{GH}, eventType: {{jsonPointer: /type}}}}"));
    src_bad(
        &format!("{{{GH}, eventType: {{}}}}"),
        "set exactly one of header and jsonPointer",
    );
    src_bad(
        &format!("{{{GH}, eventType: {{header: X-Type, jsonPointer: /type}}}}"),
        "set exactly one of header and jsonPointer",
    );
}

#[test]
fn idempotency_rules() {
    src_ok(&format!("{{{GH}, idempotency: {{}}}}"));
    src_ok(&format!("{{{GH}, idempotency: {{window: 1h}}}}"));
    src_ok(&format!("{{{GH}, idempotency: {{disabled: true}}}}"));
    src_ok(&format!(
        "{{{GH}, idempotency: {{disabled: false, header: X-Id}}}}"
    ));
    src_bad(
        &format!("{{{GH}, idempotency: {{header: X-Id, jsonPointer: /id}}}}"),
        "set at most one of header and jsonPointer",
    );
    src_bad(
        &format!("{{{GH}, idempotency: {{disabled: true, header: X-Id}}}}"),
        "a disabled idempotency check takes no header or jsonPointer",
    );
    src_bad(
        &format!("{{{GH}, idempotency: {{disabled: true, jsonPointer: /id}}}}"),
        "a disabled idempotency check takes no header or jsonPointer",
    );
}

#[test]
fn idempotency_with_only_a_header_or_pointer_passes_every_rule() {
    // `disabled` is left out of serialized objects when false: the rules must not read it
    // without `has()`, or the API server refuses the object with "no such key".
    src_ok(&format!("{{{GH}, idempotency: {{header: X-Id}}}}"));
    src_ok(&format!(
        "{{{GH}, idempotency: {{jsonPointer: /id, window: 5m}}}}"
    ));
}

// ---------------------------------------------------------------------------------------------
// Endpoint
// ---------------------------------------------------------------------------------------------

#[test]
fn endpoint_header_names() {
    ep_ok("{url: 'https://e.example'}");
    ep_ok("{url: 'https://e.example', headers: {X-Tenant: a, Authorization: b, \"x!#$%&'*+.^_`|~\": c}}");
    for bad in [
        "Webhook-Id",
        "webhook-signature",
        "WEBHOOK-X",
        "Bad Header",
        "a:b",
        "x/y",
        "é",
    ] {
        ep_bad(
            &format!("{{url: 'https://e.example', headers: {{{bad:?}: x}}}}"),
            "header names must be HTTP tokens",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Subscription filters
// ---------------------------------------------------------------------------------------------

#[test]
fn match_expr_takes_exactly_one_test() {
    for m in [
        "{name: X-A, exact: a}",
        "{name: X-A, exact: ''}",
        "{name: X-A, prefix: a}",
        "{name: X-A, suffix: a}",
        "{name: X-A, exists: false}",
        "{any: [{name: X-A, exists: true}]}",
        "{all: [{name: X-A, exists: true}]}",
        "{not: {name: X-A, exists: true}}",
    ] {
        sub_ok(&format!("{{headers: [{m}]}}"));
    }
    for m in [
        "{name: X-A}",
        "{name: X-A, exact: a, prefix: b}",
        "{name: X-A, suffix: a, exists: true}",
        "{any: [{name: X-A, exists: true}], not: {name: X-B, exists: true}}",
        "{name: X-A, exact: a, all: [{name: X-A, exists: true}]}",
    ] {
        sub_bad(
            &format!("{{headers: [{m}]}}"),
            "set exactly one of exact, prefix, suffix, exists, any, all, not",
        );
    }
}

#[test]
fn match_expr_name_and_path_rules() {
    sub_ok("{body: [{path: /a, exact: x}]}");
    sub_ok("{body: [{path: '', exists: true}]}");
    for m in [
        "{exact: a}",
        "{name: X-A, path: /a, exact: a}",
        "{name: X-A, any: [{name: X-B, exists: true}]}",
        "{path: /a, not: {path: /b, exists: true}}",
    ] {
        let list = if m.contains("path") {
            "body"
        } else {
            "headers"
        };
        sub_bad(
            &format!("{{{list}: [{m}]}}"),
            "a leaf names exactly one of name (header) or path (body)",
        );
    }
}

#[test]
fn match_leaf_rules() {
    sub_bad(
        "{headers: [{any: [{name: X-A}]}]}",
        "set exactly one of exact, prefix, suffix, exists",
    );
    sub_bad(
        "{headers: [{all: [{name: X-A, exact: a, prefix: b}]}]}",
        "set exactly one of exact, prefix, suffix, exists",
    );
    sub_bad(
        "{headers: [{not: {exact: a}}]}",
        "set exactly one of name (header) or path (body)",
    );
    sub_bad(
        "{body: [{not: {name: X-A, path: /a, exact: a}}]}",
        "set exactly one of name (header) or path (body)",
    );
}

#[test]
fn filter_headers_use_name_and_body_uses_path() {
    sub_ok("{headers: [{name: X-A, exists: true}, {any: [{name: X-B, exact: b}]}], body: [{path: /a, exists: true}, {all: [{path: /b, exact: b}]}]}");
    for m in [
        "{path: /a, exact: x}",
        "{any: [{path: /a, exists: true}]}",
        "{all: [{name: X-A, exists: true}, {path: /a, exists: true}]}",
        "{not: {path: /a, exists: true}}",
    ] {
        sub_bad(
            &format!("{{headers: [{m}]}}"),
            "header matchers name a header (name)",
        );
    }
    for m in [
        "{name: X-A, exact: x}",
        "{any: [{name: X-A, exists: true}]}",
        "{all: [{path: /a, exists: true}, {name: X-A, exists: true}]}",
        "{not: {name: X-A, exists: true}}",
    ] {
        sub_bad(
            &format!("{{body: [{m}]}}"),
            "body matchers name a JSON pointer (path)",
        );
    }
}

#[test]
fn a_full_subscription_passes() {
    accepts::<Subscription>(
        "Subscription",
        "{endpointRef: {name: e}, sources: [a, b], filter: {eventTypes: ['order.*']}}",
    );
    accepts::<Subscription>("Subscription", "{endpointRef: {name: e}}");
}

// ---------------------------------------------------------------------------------------------
// Generated CRD schemas
// ---------------------------------------------------------------------------------------------

fn crd_json<K: CustomResourceExt>() -> Value {
    serde_json::to_value(K::crd()).unwrap()
}

fn schema<K: CustomResourceExt>() -> Value {
    crd_json::<K>()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn names_categories_and_scope() {
    for (crd, plural, short) in [
        (crd_json::<Source>(), "sources", "hmsrc"),
        (crd_json::<Endpoint>(), "endpoints", "hmep"),
        (crd_json::<Subscription>(), "subscriptions", "hmsub"),
    ] {
        let spec = &crd["spec"];
        assert_eq!(crd["metadata"]["name"], format!("{plural}.hookmesh.io"));
        assert_eq!(spec["group"], "hookmesh.io");
        assert_eq!(spec["scope"], "Namespaced");
        assert_eq!(spec["names"]["categories"], serde_json::json!(["hookmesh"]));
        assert_eq!(spec["names"]["shortNames"], serde_json::json!([short]));
        let versions = spec["versions"].as_array().unwrap();
        assert_eq!(versions.len(), 1);
        assert_eq!(versions[0]["name"], "v1alpha1");
        assert_eq!(versions[0]["served"], true);
        assert_eq!(versions[0]["storage"], true);
        assert_eq!(versions[0]["subresources"]["status"], serde_json::json!({}));
    }
}

#[test]
fn short_names_do_not_collide_with_core_kinds() {
    // `kubectl api-resources` short names of built-in kinds.
    let core = [
        "cm", "ep", "ev", "limits", "ns", "no", "pvc", "pv", "po", "rc", "quota", "sa", "svc",
        "ds", "deploy", "rs", "sts", "hpa", "cj", "csr", "ing", "netpol", "pdb", "pc", "sc", "crd",
        "crds", "eps",
    ];
    for crd in [
        crd_json::<Source>(),
        crd_json::<Endpoint>(),
        crd_json::<Subscription>(),
    ] {
        for s in crd["spec"]["names"]["shortNames"].as_array().unwrap() {
            assert!(!core.contains(&s.as_str().unwrap()), "{s}");
        }
    }
}

#[test]
fn printer_columns() {
    for (crd, extra) in [
        (crd_json::<Source>(), vec!["Scheme", "Path"]),
        (crd_json::<Endpoint>(), vec!["URL", "Subscriptions"]),
        (crd_json::<Subscription>(), vec!["Endpoint"]),
    ] {
        let cols = crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .clone();
        let col = |name: &str| {
            cols.iter()
                .find(|c| c["name"] == name)
                .unwrap_or_else(|| panic!("no column {name}"))
                .clone()
        };
        assert_eq!(
            col("Ready")["jsonPath"],
            ".status.conditions[?(@.type==\"Ready\")].status"
        );
        assert_eq!(
            col("Reason")["jsonPath"],
            ".status.conditions[?(@.type==\"Ready\")].reason"
        );
        assert_eq!(col("Age")["jsonPath"], ".metadata.creationTimestamp");
        assert_eq!(col("Age")["type"], "date");
        for name in extra {
            col(name);
        }
    }
}

#[test]
fn status_has_conditions_as_a_list_map_keyed_by_type_and_observed_generation() {
    for s in [
        schema::<Source>(),
        schema::<Endpoint>(),
        schema::<Subscription>(),
    ] {
        let status = &s["properties"]["status"]["properties"];
        let conditions = &status["conditions"];
        assert_eq!(conditions["type"], "array");
        assert_eq!(conditions["x-kubernetes-list-type"], "map");
        assert_eq!(
            conditions["x-kubernetes-list-map-keys"],
            serde_json::json!(["type"])
        );
        let item = &conditions["items"];
        for f in ["type", "status", "reason", "message", "lastTransitionTime"] {
            assert_eq!(item["properties"][f]["type"], "string", "{f}");
        }
        let required: Vec<&str> = item["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(
            required.contains(&"type"),
            "a list-map key must be required"
        );
        assert_eq!(status["observedGeneration"]["type"], "integer");
    }
    let s = schema::<Source>();
    assert_eq!(
        s["properties"]["status"]["properties"]["ingestPath"]["type"],
        "string"
    );
    let e = schema::<Endpoint>();
    assert_eq!(
        e["properties"]["status"]["properties"]["subscriptions"]["type"],
        "integer"
    );
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x.as_str().map(String::from))
        .collect()
}

#[test]
fn enums_for_scheme_mode_encoding_and_algorithm() {
    let v = &schema::<Source>()["properties"]["spec"]["properties"]["verification"]["properties"];
    assert_eq!(
        strings(&v["scheme"]["enum"]),
        [
            "standard-webhooks",
            "stripe",
            "github",
            "shopify",
            "slack",
            "hmac",
            "none"
        ]
    );
    assert_eq!(strings(&v["mode"]["enum"]), ["enforce", "audit"]);
    let h = &v["hmac"]["properties"];
    assert_eq!(strings(&h["encoding"]["enum"]), ["hex", "base64"]);
    assert_eq!(strings(&h["algorithm"]["enum"]), ["sha256", "sha512"]);
}

/// The CRD's `pattern` for a field, matched with CEL's `matches` (RE2 syntax, as the API
/// server would; the api crate has no regex dependency of its own).
struct Pattern(String);

impl Pattern {
    fn is_match(&self, s: &str) -> bool {
        use kube::core::cel::cel::{Context, Program, Value as CelValue};
        let program = Program::compile("s.matches(p)").unwrap();
        let mut ctx = Context::default();
        ctx.add_variable_from_value("s", s);
        ctx.add_variable_from_value("p", self.0.as_str());
        match program.execute(&ctx).unwrap() {
            CelValue::Bool(b) => b,
            other => panic!("{other:?}"),
        }
    }
}

fn pattern(node: &Value) -> Pattern {
    Pattern(node["pattern"].as_str().expect("a pattern").to_string())
}

#[test]
fn url_pattern_admits_http_and_https_only() {
    let url = &schema::<Endpoint>()["properties"]["spec"]["properties"]["url"];
    let re = pattern(url);
    for ok in [
        "https://e.example",
        "http://e.example:8080/x?y=1#z",
        "https://[::1]/",
    ] {
        assert!(re.is_match(ok), "{ok}");
    }
    for bad in [
        "ftp://e.example",
        "https://",
        "e.example",
        "https:// e.example",
        "file:///etc/passwd",
        "HTTPS//x",
    ] {
        assert!(!re.is_match(bad), "{bad}");
    }
    assert_eq!(url["minLength"], 8);
    assert_eq!(url["maxLength"], 2048);
}

#[test]
fn duration_pattern_matches_the_parser() {
    let retry = &schema::<Endpoint>()["properties"]["spec"]["properties"]["retry"]["properties"];
    let re = pattern(&retry["initialBackoff"]);
    for s in [
        "500ms", "30s", "5m", "24h", "7d", "1h30m", "", "5", "1.5s", "-1s", "1w", "1 s", "ms",
    ] {
        assert_eq!(
            re.is_match(s),
            hookmesh_api::duration::parse(s).is_some(),
            "{s:?}: pattern and parser disagree"
        );
    }
}

#[test]
fn header_and_pointer_patterns_match_the_compiler() {
    let ev = &schema::<Source>()["properties"]["spec"]["properties"]["eventType"]["properties"];
    let header = pattern(&ev["header"]);
    for s in ["X-Type", "x!#$%&'*+.^_`|~", "a b", "a:b", "é", "a/b"] {
        assert_eq!(
            header.is_match(s),
            hookmesh_api::compile::is_header_name(s),
            "{s:?}"
        );
    }
    let pointer = pattern(&ev["jsonPointer"]);
    for s in ["", "/", "/a/b", "/a~0b~1c", "a", "/a~2", "/a~", "//"] {
        assert_eq!(
            pointer.is_match(s),
            hookmesh_api::compile::is_json_pointer(s),
            "{s:?}"
        );
    }
}

/// Walk every schema node: each one has a type (or is an `x-kubernetes-int-or-string` /
/// `x-kubernetes-preserve-unknown-fields` node, of which there must be none here), and no node
/// mixes `properties` with `additionalProperties`.
fn check_structural(path: &str, node: &Value, problems: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        problems.push(format!("{path}: not an object"));
        return;
    };
    if obj.contains_key("x-kubernetes-preserve-unknown-fields") {
        problems.push(format!("{path}: preserve-unknown-fields"));
    }
    if !obj.contains_key("type") {
        problems.push(format!("{path}: no type"));
    }
    for forbidden in ["$ref", "anyOf", "oneOf", "allOf", "not"] {
        if obj.contains_key(forbidden) {
            problems.push(format!("{path}: uses {forbidden}"));
        }
    }
    if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
        problems.push(format!("{path}: both properties and additionalProperties"));
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            check_structural(&format!("{path}.{k}"), v, problems);
        }
    }
    if let Some(items) = obj.get("items") {
        check_structural(&format!("{path}[]"), items, problems);
    }
    if let Some(ap) = obj.get("additionalProperties") {
        if ap.is_object() {
            check_structural(&format!("{path}{{}}"), ap, problems);
        }
    }
}

#[test]
fn schemas_are_structural() {
    let mut problems = Vec::new();
    for (name, s) in [
        ("Source", schema::<Source>()),
        ("Endpoint", schema::<Endpoint>()),
        ("Subscription", schema::<Subscription>()),
    ] {
        check_structural(name, &s, &mut problems);
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn every_cel_rule_compiles_and_has_a_message() {
    fn walk(path: &str, node: &Value, out: &mut Vec<(String, String, String)>) {
        if let Some(rules) = node
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
        {
            for r in rules {
                out.push((
                    path.to_string(),
                    r["rule"].as_str().unwrap().to_string(),
                    r["message"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                walk(&format!("{path}.{k}"), v, out);
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(v) = node.get(key).filter(|v| v.is_object()) {
                walk(&format!("{path}.{key}"), v, out);
            }
        }
    }
    let mut rules = Vec::new();
    for s in [
        schema::<Source>(),
        schema::<Endpoint>(),
        schema::<Subscription>(),
    ] {
        walk("", &s, &mut rules);
    }
    // 2 verification + 2 hmac + 1 eventType + 2 idempotency + 1 endpoint headers
    // + 2 filter + 2 (MatchExpr in headers) + 2 (MatchExpr in body) + 2 per MatchLeaf site (6).
    assert!(rules.len() >= 14, "{rules:#?}");
    for (path, rule, message) in &rules {
        assert!(!message.is_empty(), "{path}: rule {rule} has no message");
        let program = kube::core::cel::cel::Program::compile(rule);
        assert!(
            program.is_ok(),
            "{path}: {rule} does not compile: {:?}",
            program.err()
        );
    }
}
