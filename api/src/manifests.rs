//! Reading CR and Secret YAML from a directory: standalone mode's replacement for the API server.
//!
//! A file that is not YAML fails the whole load (the caller keeps its last good config); a
//! document that is YAML but not a valid object becomes a [`Problem`] for that object only.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::compile::{Inputs, Kind, Problem, Reason, DEFAULT_NAMESPACE};
use crate::resources::{Endpoint, Source, Subscription};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: document {index}: not valid YAML: {message}")]
    Yaml {
        path: PathBuf,
        index: usize,
        message: String,
    },
}

/// What a directory declares, plus the documents that could not become objects.
#[derive(Debug, Default)]
pub struct Loaded {
    pub inputs: Inputs,
    pub problems: Vec<Problem>,
    /// Files read, in order (for logs and reload decisions).
    pub files: Vec<PathBuf>,
}

/// YAML files under `dir` (recursively), sorted by path so loads are deterministic.
pub fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    // Symlinked directories are followed (mounted config often arrives that way), each real
    // directory once: a link back up the tree would otherwise be walked forever.
    let mut seen = std::collections::HashSet::new();
    while let Some(d) = stack.pop() {
        let real = std::fs::canonicalize(&d).map_err(|source| LoadError::Io {
            path: d.clone(),
            source,
        })?;
        if !seen.insert(real) {
            continue;
        }
        let entries = std::fs::read_dir(&d).map_err(|source| LoadError::Io {
            path: d.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| LoadError::Io {
                path: d.clone(),
                source,
            })?;
            let path = entry.path();
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Load every YAML file under `dir`.
pub fn load_dir(dir: &Path) -> Result<Loaded, LoadError> {
    let mut loaded = Loaded::default();
    for path in manifest_files(dir)? {
        let text = std::fs::read_to_string(&path).map_err(|source| LoadError::Io {
            path: path.clone(),
            source,
        })?;
        load_str(&text, &path, &mut loaded)?;
        loaded.files.push(path);
    }
    Ok(loaded)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: MiniMeta,
}

#[derive(Deserialize, Default)]
struct MiniMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

/// Add the objects of one multi-document YAML text to `loaded`. Kinds other than hookmesh's
/// three and `v1/Secret` are skipped: example directories may carry other manifests.
pub fn load_str(text: &str, path: &Path, loaded: &mut Loaded) -> Result<(), LoadError> {
    for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| LoadError::Yaml {
            path: path.to_path_buf(),
            index,
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        let Ok(meta) = serde_yaml::from_value::<TypeMeta>(value.clone()) else {
            return Err(LoadError::Yaml {
                path: path.to_path_buf(),
                index,
                message: "not a Kubernetes object (apiVersion/kind/metadata)".into(),
            });
        };
        let ns = meta
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        let inputs = &mut loaded.inputs;
        let result = match (meta.api_version.as_str(), meta.kind.as_str()) {
            ("hookmesh.io/v1alpha1", "Source") => {
                typed(value, ns.as_str(), &mut inputs.sources).map_err(|e| (Kind::Source, e))
            }
            ("hookmesh.io/v1alpha1", "Endpoint") => {
                typed(value, ns.as_str(), &mut inputs.endpoints).map_err(|e| (Kind::Endpoint, e))
            }
            ("hookmesh.io/v1alpha1", "Subscription") => {
                typed(value, ns.as_str(), &mut inputs.subscriptions)
                    .map_err(|e| (Kind::Subscription, e))
            }
            ("v1", "Secret") => {
                typed(value, ns.as_str(), &mut inputs.secrets).map_err(|e| (Kind::Secret, e))
            }
            _ => Ok(()),
        };
        if let Err((kind, mut message)) = result {
            if kind == Kind::Secret {
                // serde's message quotes the offending value, which here is secret material.
                message = "not a valid v1 Secret: data values must be base64 strings and \
                           stringData values strings (details withheld: they may quote secret data)"
                    .into();
            }
            loaded.problems.push(Problem {
                kind,
                namespace: ns,
                name: meta.metadata.name,
                reason: Reason::InvalidSpec,
                message: format!("{}: document {index}: {message}", path.display()),
            });
        }
    }
    Ok(())
}

trait Namespaced {
    fn set_namespace(&mut self, ns: &str);
}

macro_rules! namespaced {
    ($($t:ty),*) => {$(
        impl Namespaced for $t {
            fn set_namespace(&mut self, ns: &str) {
                self.metadata.namespace = Some(ns.to_string());
            }
        }
    )*};
}
namespaced!(Source, Endpoint, Subscription, Secret);

fn typed<T: DeserializeOwned + Namespaced>(
    value: serde_yaml::Value,
    ns: &str,
    into: &mut Vec<T>,
) -> Result<(), String> {
    let mut obj: T = serde_yaml::from_value(value).map_err(|e| e.to_string())?;
    obj.set_namespace(ns);
    into.push(obj);
    Ok(())
}
