//! The API server goes away mid-run and comes back (the control plane stopped and started on the
//! same data dir, `HOOKMESH_E2E_RESTART`): the operator and the data plane, never restarted
//! themselves, resume their watches and pick up changes made after it.

use hookmesh_tests::wait;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use base64::Engine as _;
use serde_json::json;

use super::checks::setup;
use super::env::Env;
use super::gateway::{self, apply_github_chain, live_hash, send_push, subscription, with_install};
use super::kube_util::ObjRef;
use super::procs::block_on;
use hookmesh_tests::receiver::Receiver;

pub fn api_server_restart(env: &Env) -> anyhow::Result<()> {
    let restart = env
        .restart
        .clone()
        .context("HOOKMESH_E2E_RESTART is not set")?;
    block_on(async {
        let cluster = &setup(env).await?;
        let restart = &restart;
        with_install(env, cluster, |install, ns| async move {
            let receiver = Receiver::start().await?;
            let objects = apply_github_chain(cluster, &ns, &receiver).await?;
            let (mut op, _) = install.spawn_operator("operator-0")?;
            for o in &objects {
                cluster
                    .wait_ready(&ns, o, "True", None, Duration::from_secs(90))
                    .await
                    .with_context(|| op.log_tail())?;
            }
            let (mut dp, dp_url) = install.spawn_dataplane("dataplane-0")?;
            let before = gateway::wait_live(cluster, &install, &dp_url, Duration::from_secs(30))
                .await
                .with_context(|| dp.log_tail())?;

            let started = Instant::now();
            let out = Command::new("sh").args(["-c", restart]).output()?;
            ensure!(
                out.status.success(),
                "{restart}: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            println!(
                "API server stopped and started again in {:.1} s",
                started.elapsed().as_secs_f64()
            );

            // A change made after the restart reaches the config and the data plane (both
            // operator watches and the data plane's watch came back)...
            let after = Instant::now();
            wait::retry(
                "the apiserver to take an apply after its restart",
                Duration::from_secs(30),
                || async {
                    cluster
                        .apply(&ns, &subscription(&["push", "after-restart"]))
                        .await?;
                    Ok(())
                },
            )
            .await
            .context("apply after the restart")?;
            wait::retry(
                "the config to be recompiled after the restart",
                Duration::from_secs(90),
                || async {
                    let published = install.config_hash(cluster).await?;
                    ensure!(published != before, "config not recompiled yet");
                    ensure!(
                        live_hash(&dp_url).await?.as_deref() == Some(published.as_str()),
                        "data plane not on {published} yet"
                    );
                    Ok(())
                },
            )
            .await
            .with_context(|| format!("{}\n{}", op.log_tail(), dp.log_tail()))?;
            println!(
                "after the restart: an edit went live in {:.1} s",
                after.elapsed().as_secs_f64()
            );

            // ...status is still written (the Secret watch is back)...
            let gh = ObjRef::hookmesh("Source", "gh");
            let secret = ObjRef::core("Secret", "gh-webhook");
            cluster
                .merge_patch(
                    &ns,
                    &secret,
                    &json!({"data": {"secret": null, "other": "eA=="}}),
                )
                .await?;
            cluster
                .wait_ready(
                    &ns,
                    &gh,
                    "False",
                    Some("SecretKeyNotFound"),
                    Duration::from_secs(60),
                )
                .await
                .with_context(|| op.log_tail())?;
            let b64 = base64::engine::general_purpose::STANDARD.encode(gateway::GITHUB_SECRET);
            cluster
                .merge_patch(
                    &ns,
                    &secret,
                    &json!({"data": {"secret": b64, "other": null}}),
                )
                .await?;
            cluster
                .wait_ready(&ns, &gh, "True", None, Duration::from_secs(60))
                .await
                .with_context(|| op.log_tail())?;

            // ...and signed webhooks still go through to the receiver.
            gateway::wait_live(cluster, &install, &dp_url, Duration::from_secs(30)).await?;
            let id = send_push(&dp_url, &ns, br#"{"after":"restart"}"#).await?;
            let got = receiver
                .next(Duration::from_secs(30))
                .await
                .with_context(|| dp.log_tail())?;
            ensure!(
                got.header("webhook-id") == Some(id.as_str()),
                "delivered {:?}",
                got.header("webhook-id")
            );

            ensure!(op.is_running(), "the operator exited\n{}", op.log_tail());
            ensure!(dp.is_running(), "the data plane exited\n{}", dp.log_tail());
            println!("operator and data plane recovered without a restart of their own");
            let s = op.terminate(Duration::from_secs(15))?;
            ensure!(s.success(), "operator exit status {s}\n{}", op.log_tail());
            let s = dp.terminate(Duration::from_secs(15))?;
            ensure!(s.success(), "data plane exit status {s}\n{}", dp.log_tail());
            Ok(())
        })
        .await
    })
}
