//! Shared helpers: build compiler inputs from YAML without going through the manifest loader,
//! so compiler tests do not depend on it.
#![allow(dead_code)]

use hookmesh_api::compile::{Inputs, Kind, Problem, Reason};
use serde::Deserialize;

pub const VALID: &str = include_str!("../fixtures/valid.yaml");

/// Parse a multi-document YAML stream of hookmesh CRs and Secrets into compiler inputs.
pub fn inputs(yaml: &str) -> Inputs {
    let mut inputs = Inputs::default();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_yaml::Value::deserialize(doc).unwrap();
        if value.is_null() {
            continue;
        }
        match value["kind"].as_str().unwrap() {
            "Source" => inputs.sources.push(serde_yaml::from_value(value).unwrap()),
            "Endpoint" => inputs
                .endpoints
                .push(serde_yaml::from_value(value).unwrap()),
            "Subscription" => inputs
                .subscriptions
                .push(serde_yaml::from_value(value).unwrap()),
            "Secret" => inputs.secrets.push(serde_yaml::from_value(value).unwrap()),
            other => panic!("unexpected kind {other}"),
        }
    }
    inputs
}

/// The valid fixture plus extra documents.
pub fn valid_plus(extra: &str) -> Inputs {
    inputs(&format!("{VALID}\n---\n{extra}"))
}

/// (kind, namespace, name, reason) of each problem, for compact assertions.
pub fn summary(problems: &[Problem]) -> Vec<(Kind, String, String, Reason)> {
    problems
        .iter()
        .map(|p| (p.kind, p.namespace.clone(), p.name.clone(), p.reason))
        .collect()
}

/// Deterministic shuffle (xorshift), so test failures reproduce.
pub fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for i in (1..v.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let j = (s % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}
