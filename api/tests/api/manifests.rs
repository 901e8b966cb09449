//! The standalone loader: multi-document YAML files under a directory become compiler inputs.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is a failure with its cause

use std::path::{Path, PathBuf};

use hookmesh_api::compile::{compile, Kind, Reason};
use hookmesh_api::manifests::{load_dir, load_str, manifest_files, LoadError, Loaded};
use kube::ResourceExt;

fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

const SOURCES: &str = r#"
# leading comment, then an empty document
---
---
apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {name: github, namespace: shop}
spec:
  verification: {scheme: github, secretRef: {name: gh, key: secret}}
---
apiVersion: v1
kind: Secret
metadata: {name: gh, namespace: shop}
data:
  secret: Z2gtc2VjcmV0
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: unrelated, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: x}}
  template: {metadata: {labels: {app: x}}, spec: {containers: [{name: x, image: x}]}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: unrelated}
data: {a: b}
---
apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {name: open}
spec:
  verification: {scheme: none}
---
"#;

const ENDPOINTS: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: orders-signing, namespace: shop}
stringData:
  secret: whsec_b3JkZXJzLXNpZ25pbmcta2V5
---
apiVersion: hookmesh.io/v1alpha1
kind: Endpoint
metadata: {name: orders, namespace: shop}
spec: {url: "https://orders.example.com/hook"}
---
apiVersion: hookmesh.io/v1alpha1
kind: Subscription
metadata: {name: all, namespace: shop}
spec: {endpointRef: {name: orders}, sources: [github]}
"#;

fn fixture_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "10-sources.yaml", SOURCES);
    write(dir.path(), "nested/deeper/20-endpoints.yml", ENDPOINTS);
    // Ignored: hidden files and directories (editor swap files, .git, ConfigMap ..data),
    // and files that are not .yaml/.yml.
    write(dir.path(), ".hidden.yaml", "{{{ not yaml");
    write(dir.path(), ".git/config.yaml", "{{{ not yaml");
    write(dir.path(), "nested/.cache/x.yaml", "{{{ not yaml");
    write(dir.path(), "README.md", "# not yaml: [");
    write(dir.path(), "notes.txt", "{{{");
    write(dir.path(), "20-empty.yaml", "");
    dir
}

#[test]
fn manifest_files_are_yaml_only_recursive_sorted_and_skip_hidden() {
    let dir = fixture_dir();
    let files = manifest_files(dir.path()).unwrap();
    let rel: Vec<_> = files
        .iter()
        .map(|f| {
            f.strip_prefix(dir.path())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        rel,
        [
            "10-sources.yaml",
            "20-empty.yaml",
            "nested/deeper/20-endpoints.yml"
        ]
    );
}

#[cfg(unix)]
#[test]
fn symlinked_directories_are_followed_once_even_in_a_loop() {
    let dir = fixture_dir();
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "linked.yaml", SOURCES);
    std::os::unix::fs::symlink(outside.path(), dir.path().join("mounted")).unwrap();
    // A link back up the tree, as a careless mount can make: it must not be walked forever.
    std::os::unix::fs::symlink(dir.path(), dir.path().join("nested/loop")).unwrap();
    let files = manifest_files(dir.path()).unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.iter().filter(|n| *n == "10-sources.yaml").count(), 1);
    assert_eq!(names.iter().filter(|n| *n == "linked.yaml").count(), 1);
    assert_eq!(files.len(), 4, "{files:?}");
}

#[test]
fn load_dir_reads_crs_and_secrets_and_skips_other_kinds() {
    let dir = fixture_dir();
    let loaded = load_dir(dir.path()).unwrap();
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    assert_eq!(loaded.files.len(), 3);
    let i = &loaded.inputs;
    let names = |v: Vec<(Option<String>, String)>| v;
    assert_eq!(
        names(
            i.sources
                .iter()
                .map(|s| (s.namespace(), s.name_any()))
                .collect()
        ),
        [
            (Some("shop".into()), "github".into()),
            // No namespace in the manifest: "default", as kubectl apply would do.
            (Some("default".into()), "open".into())
        ]
    );
    assert_eq!(i.endpoints.len(), 1);
    assert_eq!(i.subscriptions.len(), 1);
    assert_eq!(i.secrets.len(), 2);
    assert!(i
        .secrets
        .iter()
        .all(|s| s.namespace().as_deref() == Some("shop")));
    // `data` is base64-decoded, `stringData` kept as text.
    let gh = i.secrets.iter().find(|s| s.name_any() == "gh").unwrap();
    assert_eq!(gh.data.as_ref().unwrap()["secret"].0, b"gh-secret");
    let signing = i
        .secrets
        .iter()
        .find(|s| s.name_any() == "orders-signing")
        .unwrap();
    assert_eq!(
        signing.string_data.as_ref().unwrap()["secret"],
        "whsec_b3JkZXJzLXNpZ25pbmcta2V5"
    );

    // And the whole directory compiles cleanly.
    let c = compile(&loaded.inputs);
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    assert!(c.config.source("default", "open").is_some());
    assert_eq!(
        c.config
            .endpoint("shop", "orders")
            .unwrap()
            .signing_key
            .expose(),
        b"orders-signing-key"
    );
    assert_eq!(c.config.subscriptions[0].sources, ["github"]);
}

#[test]
fn loading_is_deterministic() {
    let dir = fixture_dir();
    let a = compile(&load_dir(dir.path()).unwrap().inputs);
    let b = compile(&load_dir(dir.path()).unwrap().inputs);
    assert_eq!(a.config.hash, b.config.hash);
}

#[test]
fn typed_but_invalid_documents_become_problems_naming_file_and_index() {
    let dir = fixture_dir();
    let bad = write(
        dir.path(),
        "30-bad.yaml",
        r#"apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {name: fine, namespace: shop}
spec: {verification: {scheme: none}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {name: bogus, namespace: shop}
spec: {verification: {scheme: rot13}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Endpoint
metadata: {name: nourl}
spec: {timeoutSeconds: 5}
---
apiVersion: hookmesh.io/v1alpha1
kind: Subscription
metadata: {name: wrongtype, namespace: shop}
spec: {endpointRef: {name: orders}, sources: "github"}
"#,
    );
    let loaded = load_dir(dir.path()).unwrap();
    let got: Vec<_> = loaded
        .problems
        .iter()
        .map(|p| (p.kind, p.namespace.as_str(), p.name.as_str(), p.reason))
        .collect();
    assert_eq!(
        got,
        [
            (Kind::Source, "shop", "bogus", Reason::InvalidSpec),
            (Kind::Endpoint, "default", "nourl", Reason::InvalidSpec),
            (Kind::Subscription, "shop", "wrongtype", Reason::InvalidSpec),
        ]
    );
    for (p, index) in loaded.problems.iter().zip([1, 2, 3]) {
        assert!(
            p.message.contains(&bad.display().to_string()),
            "{}",
            p.message
        );
        assert!(
            p.message.contains(&format!("document {index}")),
            "{}",
            p.message
        );
    }
    // The valid documents, including the one in the same file, still load.
    assert!(loaded.inputs.sources.iter().any(|s| s.name_any() == "fine"));
    assert_eq!(loaded.inputs.sources.len(), 3);
}

#[test]
fn invalid_secret_documents_do_not_quote_secret_values() {
    let mut loaded = Loaded::default();
    load_str(
        r#"apiVersion: v1
kind: Secret
metadata: {name: a, namespace: shop}
data: {k: "hunter2-not-base64!"}
---
apiVersion: v1
kind: Secret
metadata: {name: b, namespace: shop}
stringData: {k: 31415926535897932}
---
apiVersion: v1
kind: Secret
metadata: {name: c, namespace: shop}
stringData: {k: [hunter3, x]}
"#,
        Path::new("secrets.yaml"),
        &mut loaded,
    )
    .unwrap();
    let got: Vec<_> = loaded
        .problems
        .iter()
        .map(|p| (p.kind, p.name.as_str(), p.reason))
        .collect();
    assert_eq!(
        got,
        [
            (Kind::Secret, "a", Reason::InvalidSpec),
            (Kind::Secret, "b", Reason::InvalidSpec),
            (Kind::Secret, "c", Reason::InvalidSpec),
        ]
    );
    for p in &loaded.problems {
        for s in ["hunter2", "31415926535897932", "hunter3"] {
            assert!(!p.message.contains(s), "secret value in: {}", p.message);
        }
        assert!(p.message.contains("secrets.yaml"));
    }
}

#[test]
fn a_file_that_is_not_yaml_fails_the_whole_load() {
    let dir = fixture_dir();
    let bad = write(
        dir.path(),
        "nested/broken.yaml",
        "apiVersion: v1\nkind: [unclosed\n",
    );
    match load_dir(dir.path()) {
        Err(LoadError::Yaml {
            path,
            index,
            message,
        }) => {
            assert_eq!(path, bad);
            assert_eq!(index, 0);
            assert!(!message.is_empty());
        }
        other => panic!("expected a YAML error, got {other:?}"),
    }
    // A YAML error in a later document names that document.
    let mut loaded = Loaded::default();
    let err = load_str(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nkey: [x\n",
        Path::new("two.yaml"),
        &mut loaded,
    )
    .unwrap_err();
    assert!(matches!(err, LoadError::Yaml { index: 1, .. }), "{err:?}");
    assert!(err.to_string().contains("two.yaml"), "{err}");
}

#[test]
fn a_yaml_document_that_is_not_an_object_fails_the_load() {
    for text in ["- a\n- b\n", "just a string\n", "42\n"] {
        let mut loaded = Loaded::default();
        let err = load_str(text, Path::new("x.yaml"), &mut loaded).unwrap_err();
        assert!(
            matches!(err, LoadError::Yaml { index: 0, .. }),
            "{text:?}: {err:?}"
        );
    }
}

#[test]
fn a_missing_directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_dir(&dir.path().join("nope")).unwrap_err();
    assert!(matches!(err, LoadError::Io { .. }), "{err:?}");
}

#[test]
fn empty_directory_loads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = load_dir(dir.path()).unwrap();
    assert!(loaded.files.is_empty() && loaded.problems.is_empty());
    assert!(loaded.inputs.sources.is_empty() && loaded.inputs.secrets.is_empty());
}

#[test]
fn the_examples_directory_loads_and_compiles_cleanly_if_present() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    if !examples.is_dir() {
        eprintln!("no examples/ yet: skipped");
        return;
    }
    let loaded = load_dir(&examples).unwrap();
    assert!(loaded.problems.is_empty(), "{:#?}", loaded.problems);
    let c = compile(&loaded.inputs);
    assert!(
        c.problems.is_empty(),
        "examples/ must compile cleanly: {:#?}",
        c.problems
    );
}
