//! Group commit: one writer thread takes every ingest waiting at that moment, writes them in one
//! transaction, fsyncs once, then answers each caller. Under load the fsync cost is shared by
//! the whole group; with one request in flight it is one write and one flush, as before.

use std::thread;

use sled::transaction::Transactional;
use tokio::sync::{mpsc, oneshot};

use super::*;

/// Most ingests written by one transaction and one flush.
const MAX_GROUP: usize = 512;
const QUEUE_DEPTH: usize = 8192;

/// Duplicate detection for one event: the key, and how long it counts.
#[derive(Clone, Debug)]
pub struct IdempotencyClaim {
    pub key: String,
    pub window_ms: u64,
}

/// Everything one accepted request writes, as one unit.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub event: EventRecord,
    pub payload: Payload,
    pub deliveries: Vec<DeliveryRecord>,
    pub idempotency: Option<IdempotencyClaim>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Written and flushed.
    Stored(EventId),
    /// The idempotency key was seen within its window: nothing written, the original id.
    Duplicate(EventId),
}

struct Job {
    new: NewEvent,
    reply: oneshot::Sender<Result<IngestOutcome, StoreError>>,
}

pub(super) struct Committer {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for Committer {
    /// Close the queue and wait for the thread, so that when a `Store` is dropped the sled
    /// database (and its file lock) is released before anyone reopens it.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Committer {
    pub fn start(db: sled::Db, trees: Trees) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let spawned = thread::Builder::new()
            .name("hookmesh-commit".into())
            .spawn(move || run(db, trees, rx));
        let thread = match spawned {
            Ok(t) => Some(t),
            Err(e) => {
                // Without the thread every submit answers Closed; say why once.
                tracing::error!(error = %e, "cannot start the commit thread");
                None
            }
        };
        Committer {
            tx: Some(tx),
            thread,
        }
    }

    pub async fn submit(&self, new: NewEvent) -> Result<IngestOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(StoreError::Closed)?;
        tx.send(Job { new, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

fn run(db: sled::Db, trees: Trees, mut rx: mpsc::Receiver<Job>) {
    let mut group: Vec<Job> = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let news: Vec<&NewEvent> = group.iter().map(|j| &j.new).collect();
        let result = write_group(&trees, &news).and_then(|outcomes| {
            db.flush()?;
            Ok(outcomes)
        });
        match result {
            Ok(outcomes) => {
                for (job, outcome) in group.drain(..).zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = group.len(), "group commit failed");
                let message = e.to_string();
                for job in group.drain(..) {
                    let _ = job.reply.send(Err(StoreError::Codec(message.clone())));
                }
            }
        }
    }
}

fn write_group(t: &Trees, news: &[&NewEvent]) -> Result<Vec<IngestOutcome>, StoreError> {
    let trees = (
        &t.events,
        &t.payloads,
        &t.deliveries,
        &t.due,
        &t.idempotency,
        &t.idx_source,
        &t.idx_status,
        &t.idx_endpoint,
    );
    let outcomes = trees.transaction(
        |(events, payloads, deliveries, due, idem, idx_source, idx_status, idx_endpoint)| {
            let mut outcomes = Vec::with_capacity(news.len());
            for new in news {
                let e = &new.event;
                let id = e.id.to_key();
                if let Some(claim) = &new.idempotency {
                    let key =
                        concat(&[&name_prefix(&e.namespace, &e.source), claim.key.as_bytes()]);
                    if let Some(existing) = idem.get(&key)? {
                        let expires = existing
                            .get(16..24)
                            .and_then(|b| b.try_into().ok())
                            .map(u64::from_be_bytes)
                            .unwrap_or(0);
                        if let (Some(orig), true) =
                            (EventId::from_key(&existing), expires > e.received_at)
                        {
                            outcomes.push(IngestOutcome::Duplicate(orig));
                            continue;
                        }
                    }
                    let expires = e.received_at.saturating_add(claim.window_ms);
                    idem.insert(key, concat(&[&id, &expires.to_be_bytes()]))?;
                }
                tx_put(events, &id, e)?;
                tx_put(payloads, &id, &new.payload)?;
                idx_source.insert(concat(&[&name_prefix(&e.namespace, &e.source), &id]), &[])?;
                idx_status.insert(status_key(e.status, e.id), &[])?;
                for d in &new.deliveries {
                    let did = d.id.to_key();
                    tx_put(deliveries, &did, d)?;
                    idx_endpoint.insert(
                        concat(&[&name_prefix(&d.namespace, &d.endpoint), &did]),
                        &id,
                    )?;
                    if let Some(at) = d.next_attempt_at {
                        due.insert(due_key(at, d.id), &[])?;
                    }
                }
                outcomes.push(IngestOutcome::Stored(e.id));
            }
            Ok(outcomes)
        },
    )?;
    Ok(outcomes)
}
