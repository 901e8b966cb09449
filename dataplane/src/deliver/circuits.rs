//! The breakers' states as the REST API shows them. The scheduler owns the breakers (lock-free)
//! and copies their states here after each round; readers never touch the scheduler.

use std::collections::HashMap;
use std::sync::RwLock;

use super::breaker::State;
use super::EndpointKey;

#[derive(Default)]
pub struct CircuitBoard {
    states: RwLock<HashMap<EndpointKey, &'static str>>,
}

impl CircuitBoard {
    pub(super) fn publish<'a>(&self, breakers: impl Iterator<Item = (&'a EndpointKey, State)>) {
        let snapshot = breakers
            .map(|(k, st)| {
                let name = match st {
                    State::Closed { .. } => "closed",
                    State::Open { .. } => "open",
                    State::HalfOpen { .. } => "half_open",
                };
                (k.clone(), name)
            })
            .collect();
        if let Ok(mut states) = self.states.write() {
            *states = snapshot;
        }
    }

    /// `closed`, `open` or `half_open`; `None` when the engine has not met the endpoint yet.
    pub fn state(&self, namespace: &str, endpoint: &str) -> Option<&'static str> {
        let states = self.states.read().ok()?;
        states
            .get(&(namespace.to_string(), endpoint.to_string()))
            .copied()
    }
}
