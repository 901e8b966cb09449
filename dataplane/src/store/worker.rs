//! A store thread fed through a channel (the group committer, the compactor). It holds the
//! trees, and with them the database's file lock, so dropping its handle closes the channel and
//! waits for it: a `Store` dropped is a database released, ready to be reopened.

use std::thread::{self, JoinHandle};

pub(super) struct Worker<S> {
    tx: Option<S>,
    thread: Option<JoinHandle<()>>,
}

impl<S> Worker<S> {
    /// Run `body` on a thread named `name`, fed through the channel whose sending half is `tx`
    /// (`body` returns once every sender is gone). Without a thread, `sender` still answers and
    /// what is sent goes nowhere: `what` says, once, what stops working.
    pub fn spawn(name: &str, what: &str, tx: S, body: impl FnOnce() + Send + 'static) -> Self {
        let thread = match thread::Builder::new().name(name.into()).spawn(body) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(error = %e, thread = name, "cannot start a store thread: {what}");
                None
            }
        };
        Worker {
            tx: Some(tx),
            thread,
        }
    }

    pub fn sender(&self) -> Option<&S> {
        self.tx.as_ref()
    }
}

impl<S> Drop for Worker<S> {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
