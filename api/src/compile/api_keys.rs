//! REST API keys: Secrets labelled `hookmesh.io/api-key=true`, each with a role and a scope.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use super::defaults::*;
use super::problem::{problem, Kind, Problem, Reason};
use super::secrets::secret_value;
use crate::config::*;

pub(super) fn compile_api_keys(
    secrets: &[Secret],
    problems: &mut Vec<Problem>,
) -> Vec<ApiKeyConfig> {
    let mut keys: Vec<ApiKeyConfig> = Vec::new();
    for s in secrets {
        let labelled = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(API_KEY_LABEL))
            .is_some_and(|v| v == "true");
        if !labelled {
            continue;
        }
        let (ns, name) = (namespace_of(s), s.name_any());
        let mut report = |reason, message: String| {
            problems.push(problem(Kind::Secret, &ns, &name, reason, message))
        };
        let Some(key) = secret_value(s, "key") else {
            report(
                Reason::SecretKeyNotFound,
                "API key Secret has no key \"key\"".into(),
            );
            continue;
        };
        if key.len() < 16 {
            report(
                Reason::InvalidSecret,
                "API keys must be at least 16 bytes".into(),
            );
            continue;
        }
        let role = match secret_value(s, "role").as_deref() {
            None | Some(b"read") => Role::Read,
            Some(b"write") => Role::Write,
            Some(_) => {
                report(Reason::InvalidSecret, "role must be read or write".into());
                continue;
            }
        };
        let namespace = secret_value(s, "namespace")
            .map(|n| String::from_utf8_lossy(&n).trim().to_string())
            .filter(|n| !n.is_empty());
        keys.push(ApiKeyConfig {
            id: format!("{ns}/{name}"),
            key: SecretBytes(key),
            role,
            namespace,
        });
    }
    keys.sort_by(|a, b| a.id.cmp(&b.id));
    keys.dedup_by(|a, b| a.id == b.id);
    keys
}
