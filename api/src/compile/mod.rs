//! The one compiler: custom resources + Secrets in, [`GatewayConfig`] + problems out.
//!
//! Pure and deterministic: no I/O, no clock, no randomness; inputs are sorted first, so the same
//! objects in any order give the same bytes and the same hash. An invalid object never takes the
//! rest down: it is left out of the config and reported as a [`Problem`] (the operator writes it
//! into that object's `Ready=False` condition, standalone mode logs it).

//!
//! One file per kind of object, mirroring `resources/`: `source`, `endpoint`, `subscription`,
//! `api_keys` (labelled Secrets); `secrets` resolves references, `checks` holds the validations
//! they share, `problem` the error vocabulary, `defaults` the documented defaults; `audience`
//! cuts the inputs of the central gateway's config and of each workload's sidecar.

mod api_keys;
mod audience;
mod checks;
mod defaults;
mod endpoint;
mod problem;
mod secrets;
mod source;
mod subscription;

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use sha2::{Digest, Sha256};

use crate::config::*;
use crate::resources::{Endpoint, Source, Subscription};

pub use audience::Audience;
pub use checks::{check_glob, is_header_name, is_json_pointer};
pub use defaults::*;
pub use problem::{Kind, Problem, Reason};
pub use secrets::decode_whsec;

use api_keys::compile_api_keys;
use defaults::namespace_of;
use endpoint::compile_endpoint;
use problem::problem;
use secrets::SecretIndex;
use source::compile_source;
use subscription::compile_subscription;

/// Everything the compiler reads.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub sources: Vec<Source>,
    pub endpoints: Vec<Endpoint>,
    pub subscriptions: Vec<Subscription>,
    pub secrets: Vec<Secret>,
}

/// The compiler's answer: the config of every valid object and a problem per invalid one.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub config: GatewayConfig,
    pub problems: Vec<Problem>,
}

impl Compiled {
    /// The problem reported for one object, if any.
    pub fn problem_for(&self, kind: Kind, namespace: &str, name: &str) -> Option<&Problem> {
        self.problems
            .iter()
            .find(|p| p.kind == kind && p.namespace == namespace && p.name == name)
    }
}

/// Compile the inputs. Pure: same inputs (in any order), same output, same hash.
pub fn compile(inputs: &Inputs) -> Compiled {
    let mut problems = Vec::new();
    let secrets = SecretIndex::new(&inputs.secrets, &mut problems);

    let sources = dedup(Kind::Source, &inputs.sources, &mut problems);
    let endpoints = dedup(Kind::Endpoint, &inputs.endpoints, &mut problems);
    let subscriptions = dedup(Kind::Subscription, &inputs.subscriptions, &mut problems);

    let mut config = GatewayConfig::default();
    for (ns, name, src) in &sources {
        match compile_source(src, &secrets) {
            Ok(mut s) => {
                s.namespace = ns.clone();
                s.name = name.clone();
                config.sources.push(s);
            }
            Err((reason, message)) => {
                problems.push(problem(Kind::Source, ns, name, reason, message))
            }
        }
    }
    for (ns, name, ep) in &endpoints {
        match compile_endpoint(ns, name, ep, &secrets) {
            Ok(e) => config.endpoints.push(e),
            Err((reason, message)) => {
                problems.push(problem(Kind::Endpoint, ns, name, reason, message))
            }
        }
    }
    let source_names: BTreeSet<(&str, &str)> = sources
        .iter()
        .map(|(ns, name, _)| (ns.as_str(), name.as_str()))
        .collect();
    let endpoint_names: BTreeSet<(&str, &str)> = endpoints
        .iter()
        .map(|(ns, name, _)| (ns.as_str(), name.as_str()))
        .collect();
    for (ns, name, sub) in &subscriptions {
        let compiled = compile_subscription(ns, sub, &source_names, &endpoint_names, &config);
        match compiled {
            Ok(mut s) => {
                s.namespace = ns.clone();
                s.name = name.clone();
                config.subscriptions.push(s);
            }
            Err((reason, message)) => {
                problems.push(problem(Kind::Subscription, ns, name, reason, message))
            }
        }
    }
    config.api_keys = compile_api_keys(&inputs.secrets, &mut problems);

    problems.sort();
    config.hash = hash_of(&config);
    Compiled { config, problems }
}

/// `sha256:<hex>` of the canonical JSON of the config with an empty hash field.
pub fn hash_of(config: &GatewayConfig) -> String {
    let mut unhashed = config.clone();
    unhashed.hash = String::new();
    // Serializing plain structs, vectors and strings cannot fail.
    let bytes = serde_json::to_vec(&unhashed).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
}

/// Sort by (namespace, name) and report all but the first of any repeated pair.
fn dedup<'a, K: ResourceExt>(
    kind: Kind,
    objs: &'a [K],
    problems: &mut Vec<Problem>,
) -> Vec<(String, String, &'a K)> {
    let mut keyed: Vec<(String, String, &K)> = objs
        .iter()
        .map(|o| (namespace_of(o), o.name_any(), o))
        .collect();
    // Stable: among duplicates the first given wins, whatever the rest of the order.
    keyed.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let mut out: Vec<(String, String, &K)> = Vec::with_capacity(keyed.len());
    for entry in keyed {
        if entry.1.is_empty() {
            problems.push(problem(
                kind,
                &entry.0,
                "",
                Reason::InvalidSpec,
                "metadata.name is required".into(),
            ));
            continue;
        }
        if let Some(last) = out.last() {
            if last.0 == entry.0 && last.1 == entry.1 {
                problems.push(problem(
                    kind,
                    &entry.0,
                    &entry.1,
                    Reason::DuplicateObject,
                    format!("{kind} {}/{} is declared more than once", entry.0, entry.1),
                ));
                continue;
            }
        }
        out.push(entry);
    }
    out
}
