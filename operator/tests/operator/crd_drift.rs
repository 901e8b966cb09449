//! The committed CRD manifests must be exactly what `hookmesh-operator crdgen` prints, both in
//! `crds/` and in the Helm chart. Regenerate with:
//! `cargo run -p hookmesh-operator -- crdgen > crds/hookmesh.io.yaml && cp crds/hookmesh.io.yaml charts/hookmesh/crds/`

use std::path::Path;

fn committed(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn committed_crds_match_the_generated_ones() {
    let generated = hookmesh_api::resources::crds_yaml().expect("CRDs serialize");
    for rel in [
        "crds/hookmesh.io.yaml",
        "charts/hookmesh/crds/hookmesh.io.yaml",
    ] {
        assert!(
            committed(rel) == generated,
            "{rel} is stale: regenerate it with `cargo run -p hookmesh-operator -- crdgen`"
        );
    }
}

#[test]
fn crdgen_binary_prints_the_same_yaml() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookmesh-operator"))
        .arg("crdgen")
        .output()
        .expect("run hookmesh-operator crdgen");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        committed("crds/hookmesh.io.yaml")
    );
}
