//! What can go wrong in the store, as callers see it.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("record encoding error: {0}")]
    Codec(String),
    /// Writing or flushing an ingest group failed: none of its events were acknowledged.
    #[error("writing to disk failed: {0}")]
    Flush(String),
    /// An earlier flush failed, so records of unacknowledged events may sit in the trees; a later
    /// flush would make them durable as if accepted. Every write is refused until the process is
    /// restarted and the next open has repaired the last group.
    #[error(
        "the store refuses writes since a flush failed ({0}); restart once the cause is fixed"
    )]
    WritesRefused(String),
    /// The data directory was written by a newer hookmesh whose layout this one cannot read.
    #[error(
        "the store under this data directory has layout {found}; this hookmesh reads layouts up to {supported}. Run the hookmesh version that wrote it (or newer), or start on an empty --data-dir"
    )]
    NewerLayout { found: u8, supported: u8 },
    #[error("the store is shutting down")]
    Closed,
}
