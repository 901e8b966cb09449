//! The real-cluster suite: the CRDs, their CEL rules and schema, the examples, the Helm chart,
//! and the real operator and data-plane binaries, all against a real API server.
//!
//! It needs `HOOKMESH_E2E_KUBECONFIG` (the admin kubeconfig of a throwaway cluster). Without it
//! every test is reported as *ignored*, never as passed. `tests/cluster/with-cluster` starts a
//! local control plane (etcd + kube-apiserver + kube-controller-manager from Go modules) and
//! sets it:
//!
//! ```text
//! tests/cluster/with-cluster cargo test -p hookmesh-tests --test e2e_cluster
//! HOOKMESH_E2E_KUBECONFIG=$HOME/.kube/config cargo test -p hookmesh-tests --test e2e_cluster
//! ```
//!
//! Each test works in namespaces of its own (`hookmesh-e2e-<random>-...`) and deletes them, and
//! the cluster-scoped objects it created, at the end. The CRDs are applied cluster-wide by
//! server-side apply (field manager `hookmesh-e2e`). The tests run one at a time: one of them
//! restarts the API server.

#![allow(clippy::unwrap_used)]

mod e2e_cluster {
    pub mod chart;
    pub mod checks;
    pub mod env;
    pub mod gateway;
    pub mod health;
    pub mod injection;
    pub mod kube_util;
    pub mod procs;
    pub mod registration;
    pub mod restart;
}

use std::process::ExitCode;
use std::sync::Arc;

use e2e_cluster::env::Env;
use libtest_mimic::{Arguments, Failed, Trial};

type Check = fn(&Env) -> anyhow::Result<()>;

/// Every test: name, whether it needs `HOOKMESH_E2E_RESTART`, body.
const TESTS: &[(&str, bool, Check)] = &[
    (
        "crds_apply_server_side_and_are_established_with_columns_and_category",
        false,
        e2e_cluster::checks::crds_with_kubectl,
    ),
    (
        "every_cel_rule_refuses_its_violation_with_its_message",
        false,
        e2e_cluster::checks::cel_rules,
    ),
    (
        "every_schema_constraint_is_enforced_and_defaults_apply",
        false,
        e2e_cluster::checks::schema_constraints,
    ),
    (
        "every_example_is_accepted",
        false,
        e2e_cluster::checks::examples,
    ),
    (
        "chart_default_values_are_accepted_dry_run_then_for_real",
        false,
        e2e_cluster::chart::default_values,
    ),
    (
        "chart_full_values_are_accepted_dry_run_then_for_real",
        false,
        e2e_cluster::chart::full_values,
    ),
    (
        "operator_and_dataplane_as_the_charts_service_accounts",
        false,
        e2e_cluster::gateway::operator_and_dataplane,
    ),
    (
        "registration_through_the_rest_api_creates_real_resources",
        false,
        e2e_cluster::registration::registration,
    ),
    (
        "endpoint_health_follows_a_receiver_that_fails_and_recovers",
        false,
        e2e_cluster::health::receiver_health,
    ),
    (
        "sidecar_mode_installed_by_the_chart_runs_the_readme_example",
        false,
        e2e_cluster::injection::sidecar_injection,
    ),
    (
        "operator_and_dataplane_recover_from_an_api_server_restart",
        true,
        e2e_cluster::restart::api_server_restart,
    ),
];

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    // One at a time: the tests share the cluster, and one of them restarts its API server.
    args.test_threads = Some(1);
    let env = Env::from_env().map(Arc::new);
    match &env {
        None => eprintln!(
            "e2e_cluster: HOOKMESH_E2E_KUBECONFIG is not set, so these tests are ignored \
             (tests/cluster/with-cluster runs them against a local API server)"
        ),
        Some(e) if e.restart.is_none() => eprintln!(
            "e2e_cluster: HOOKMESH_E2E_RESTART is not set, so the API-server restart test is ignored"
        ),
        Some(_) => {}
    }
    let trials = TESTS
        .iter()
        .map(|&(name, needs_restart, check)| {
            let runnable = env
                .as_ref()
                .is_some_and(|e| !needs_restart || e.restart.is_some());
            let env = env.clone();
            Trial::test(name, move || {
                // Reached without a cluster only under --ignored: that is a failure, not a pass.
                let env = env.ok_or_else(|| Failed::from("HOOKMESH_E2E_KUBECONFIG is not set"))?;
                if needs_restart && env.restart.is_none() {
                    return Err("HOOKMESH_E2E_RESTART is not set".into());
                }
                check(&env).map_err(|e| Failed::from(format!("{e:#}")))
            })
            .with_ignored_flag(!runnable)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}
