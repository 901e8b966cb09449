//! The CRDs' CEL rules (`x-kubernetes-validations`), evaluated offline with kube's `cel`
//! feature, and the shape of the generated CRD schemas.
//!
//! Every rule accepts a valid object and refuses the invalid one it exists for; the cases are
//! in `fixtures/validation-cases.yaml`, which the real-API-server suite applies too. A rule the
//! offline evaluator cannot run fails with an error kind other than `ValidationFailure`; the
//! helpers below report that precisely instead of counting it as a refusal.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is a failure with its cause

use std::collections::BTreeMap;

use hookmesh_api::resources::{Endpoint, Source, Subscription};
use kube::core::cel::{validate_cel, ErrorKind, ValidationError};
use kube::CustomResourceExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The cases, shared with the real-API-server suite (tests/tests/e2e_cluster), which applies
/// the same objects and expects the same refusals.
const CASES: &str = include_str!("../fixtures/validation-cases.yaml");

#[derive(Deserialize)]
struct Case {
    kind: String,
    spec: Value,
    /// Refused by the rule whose message contains this; absent: accepted.
    refused: Option<String>,
}

#[derive(Deserialize)]
struct Cases {
    cel: BTreeMap<String, Vec<Case>>,
}

fn cases() -> Cases {
    serde_yaml::from_str(CASES).unwrap()
}

fn object<K: DeserializeOwned>(kind: &str, spec: &Value) -> K {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "hookmesh.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "ns"},
        "spec": spec,
    }))
    .unwrap_or_else(|e| panic!("{kind} {spec}: {e}"))
}

fn errors<K: CustomResourceExt + Serialize>(obj: &K) -> Vec<ValidationError> {
    match validate_cel(obj) {
        Ok(()) => Vec::new(),
        Err(e) => e.into_vec(),
    }
}

/// The spec passes every CEL rule, and no rule failed to evaluate.
fn accepts<K: CustomResourceExt + Serialize + DeserializeOwned>(kind: &str, spec: &Value) {
    let errs = errors(&object::<K>(kind, spec));
    assert!(errs.is_empty(), "{kind} {spec} refused: {errs:#?}");
}

/// The spec is refused by exactly the rule whose message contains `message`, and that rule
/// evaluated (a clean `false`, not an evaluation error).
fn refuses<K: CustomResourceExt + Serialize + DeserializeOwned>(
    kind: &str,
    spec: &Value,
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

fn check<K: CustomResourceExt + Serialize + DeserializeOwned>(case: &Case) {
    match &case.refused {
        None => accepts::<K>(&case.kind, &case.spec),
        Some(message) => refuses::<K>(&case.kind, &case.spec, message),
    }
}

/// Run every case of one group of the fixture.
fn run(group: &str) {
    let all = cases();
    let group_cases = all
        .cel
        .get(group)
        .unwrap_or_else(|| panic!("no group {group} in fixtures/validation-cases.yaml"));
    assert!(!group_cases.is_empty(), "group {group} is empty");
    for case in group_cases {
        match case.kind.as_str() {
            "Source" => check::<Source>(case),
            "Endpoint" => check::<Endpoint>(case),
            "Subscription" => check::<Subscription>(case),
            other => panic!("{group}: unknown kind {other}"),
        }
    }
}

/// Each group of the fixture is run by the test of the same name below.
const GROUPS: &[&str] = &[
    "secret_ref_is_required_unless_scheme_none",
    "hmac_settings_iff_scheme_hmac",
    "signed_content_must_contain_body",
    "timestamp_placeholder_needs_timestamp_header",
    "event_type_takes_exactly_one_of_header_and_json_pointer",
    "idempotency_rules",
    "idempotency_with_only_a_header_or_pointer_passes_every_rule",
    "endpoint_header_names",
    "match_expr_takes_exactly_one_test",
    "match_expr_name_and_path_rules",
    "match_leaf_rules",
    "filter_headers_use_name_and_body_uses_path",
    "a_full_subscription_passes",
    "retry_takes_one_form",
    "endpoint_signing_profiles",
];

#[test]
fn every_case_group_is_run_by_a_test() {
    let all = cases();
    let names: Vec<&str> = all.cel.keys().map(String::as_str).collect();
    let mut expected = GROUPS.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected);
}

#[test]
fn secret_ref_is_required_unless_scheme_none() {
    run("secret_ref_is_required_unless_scheme_none");
}

#[test]
fn hmac_settings_iff_scheme_hmac() {
    run("hmac_settings_iff_scheme_hmac");
}

#[test]
fn signed_content_must_contain_body() {
    run("signed_content_must_contain_body");
}

#[test]
fn timestamp_placeholder_needs_timestamp_header() {
    run("timestamp_placeholder_needs_timestamp_header");
}

#[test]
fn event_type_takes_exactly_one_of_header_and_json_pointer() {
    run("event_type_takes_exactly_one_of_header_and_json_pointer");
}

#[test]
fn idempotency_rules() {
    run("idempotency_rules");
}

#[test]
fn idempotency_with_only_a_header_or_pointer_passes_every_rule() {
    run("idempotency_with_only_a_header_or_pointer_passes_every_rule");
}

#[test]
fn endpoint_header_names() {
    run("endpoint_header_names");
}

#[test]
fn retry_takes_one_form() {
    run("retry_takes_one_form");
}

#[test]
fn endpoint_signing_profiles() {
    run("endpoint_signing_profiles");
}

#[test]
fn match_expr_takes_exactly_one_test() {
    run("match_expr_takes_exactly_one_test");
}

#[test]
fn match_expr_name_and_path_rules() {
    run("match_expr_name_and_path_rules");
}

#[test]
fn match_leaf_rules() {
    run("match_leaf_rules");
}

#[test]
fn filter_headers_use_name_and_body_uses_path() {
    run("filter_headers_use_name_and_body_uses_path");
}

#[test]
fn a_full_subscription_passes() {
    run("a_full_subscription_passes");
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
    // Exactly these: a `null` entry (what schemars emits for an `Option<Enum>`) is listed by
    // the API server as supported, yet refused. A default makes an explicit null mean unset.
    assert_eq!(v["mode"]["enum"], serde_json::json!(["enforce", "audit"]));
    assert_eq!(v["mode"]["default"], "enforce");
    assert!(v["mode"].get("nullable").is_none(), "{}", v["mode"]);
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
