//! Retention: payloads expire first (the event stays, `payload_expired`, its payload answers
//! 410 `PAYLOAD_EXPIRED`), metadata later (the event, its deliveries and attempts are deleted).
//! Idempotency keys whose window closed are forgotten too.
//!
//! A sweep runs every `interval` in small batches on a blocking thread, one event's lock at a
//! time, with a pause between batches, so ingest and delivery are never held up for long.

use std::time::Duration;

use crate::store::{now_ms, Store, StoreError};

/// Records per batch.
const BATCH: usize = 256;
/// Pause between batches, to leave the store to ingest.
const PAUSE: Duration = Duration::from_millis(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionOptions {
    /// Payloads older than this are removed (default 7 days).
    pub payloads: Duration,
    /// Events older than this are removed entirely (default 30 days; never before `payloads`).
    pub metadata: Duration,
    /// How often a sweep starts.
    pub interval: Duration,
}

impl Default for RetentionOptions {
    fn default() -> Self {
        RetentionOptions {
            payloads: Duration::from_secs(7 * 24 * 3600),
            metadata: Duration::from_secs(30 * 24 * 3600),
            interval: Duration::from_secs(60),
        }
    }
}

/// What one sweep removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub payloads: usize,
    pub events: usize,
    pub idempotency_keys: usize,
}

/// Run sweeps forever (until the runtime stops).
pub fn spawn(store: Store, opts: RetentionOptions) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(opts.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match sweep(&store, opts).await {
                Ok(s) if s != Swept::default() => tracing::info!(
                    payloads = s.payloads,
                    events = s.events,
                    idempotency_keys = s.idempotency_keys,
                    "retention sweep"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "retention sweep failed; retrying next interval")
                }
            }
        }
    })
}

/// One sweep: expired payloads, then expired events, then closed idempotency windows.
pub async fn sweep(store: &Store, opts: RetentionOptions) -> Result<Swept, StoreError> {
    let now = now_ms();
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let payload_cutoff = now.saturating_sub(ms(opts.payloads));
    let metadata_cutoff = now.saturating_sub(ms(opts.metadata.max(opts.payloads)));
    let mut swept = Swept::default();
    loop {
        let n = on_blocking(store, move |s| s.expire_payloads(payload_cutoff, BATCH)).await?;
        swept.payloads += n;
        if n < BATCH {
            break;
        }
        tokio::time::sleep(PAUSE).await;
    }
    loop {
        let n = on_blocking(store, move |s| s.expire_events(metadata_cutoff, BATCH)).await?;
        swept.events += n;
        if n < BATCH {
            break;
        }
        tokio::time::sleep(PAUSE).await;
    }
    let mut after = None;
    loop {
        let (n, resume) =
            on_blocking(store, move |s| s.expire_idempotency(now, after, BATCH)).await?;
        swept.idempotency_keys += n;
        match resume {
            Some(r) => after = Some(r),
            None => break,
        }
        tokio::time::sleep(PAUSE).await;
    }
    Ok(swept)
}

async fn on_blocking<T: Send + 'static>(
    store: &Store,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|_| StoreError::Closed)?
}
