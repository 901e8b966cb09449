//! One polling loop for every "wait until this holds" in the suites.

use std::time::Duration;

use anyhow::{anyhow, Context as _};

/// How often a condition is looked at again.
const POLL: Duration = Duration::from_millis(50);

/// Run `attempt` until it succeeds, and return what it returned; after `timeout`, fail with its
/// last error, naming `what`.
pub async fn retry<T>(
    what: &str,
    timeout: Duration,
    mut attempt: impl AsyncFnMut() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(e)
                    .with_context(|| format!("timed out after {timeout:?} waiting for {what}"))
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Poll `done` until it answers `true`; fail after `timeout`, naming `what`.
pub async fn wait_until(
    what: &str,
    timeout: Duration,
    mut done: impl AsyncFnMut() -> bool,
) -> anyhow::Result<()> {
    retry(what, timeout, async || match done().await {
        true => Ok(()),
        false => Err(anyhow!("not yet")),
    })
    .await
}
