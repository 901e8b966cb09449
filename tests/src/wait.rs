//! One polling loop for every "wait until this holds" in the suites.

use std::time::Duration;

use anyhow::bail;

/// How often a condition is looked at again.
const POLL: Duration = Duration::from_millis(50);

/// Poll `done` until it answers `true`; fail after `timeout`, naming `what`.
pub async fn wait_until(
    what: &str,
    timeout: Duration,
    mut done: impl AsyncFnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if done().await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}
