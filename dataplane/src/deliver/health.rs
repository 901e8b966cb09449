//! What an endpoint's recent attempts say about its receiver: the circuit, the run of failures,
//! the last error, the success rate over the last few minutes. The REST API shows it, and the
//! operator turns it into the Endpoint's `Healthy` condition.
//!
//! The scheduler owns a [`Tracker`] per endpoint beside its breaker (no lock on the attempt
//! path) and copies them here when they changed; readers never touch the scheduler. Rates are
//! computed when read, so an idle endpoint's window empties without anyone writing.

use std::collections::HashMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::breaker::State;
use super::EndpointKey;
use crate::store::Millis;

/// How far back the success rate looks.
pub const WINDOW_MS: u64 = 5 * 60_000;
const BUCKET_MS: u64 = 60_000;
const BUCKETS: usize = (WINDOW_MS / BUCKET_MS) as usize;
/// Longest last error kept (the receiver's answer is in the attempt record; this is a line).
const MAX_ERROR_CHARS: usize = 300;

/// One endpoint's attempt history on this pod.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tracker {
    consecutive_failures: u32,
    last_error: Option<(Millis, String)>,
    last_success_at: Option<Millis>,
    /// `(minute, succeeded, failed)`, one slot per minute of the window.
    buckets: [(u64, u64, u64); BUCKETS],
    circuit_opened: u64,
}

impl Tracker {
    fn bucket(&mut self, now: Millis) -> &mut (u64, u64, u64) {
        let minute = now / BUCKET_MS;
        let slot = &mut self.buckets[(minute % BUCKETS as u64) as usize];
        if slot.0 != minute {
            *slot = (minute, 0, 0);
        }
        slot
    }

    /// A 2xx.
    pub fn succeeded(&mut self, now: Millis) {
        self.consecutive_failures = 0;
        self.last_success_at = Some(now);
        self.bucket(now).1 += 1;
    }

    /// Anything else that got as far as a request: a refusal, a 5xx, a timeout, no connection.
    pub fn failed(&mut self, now: Millis, error: &str) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.last_error = Some((now, error.chars().take(MAX_ERROR_CHARS).collect()));
        self.bucket(now).2 += 1;
    }

    /// The breaker opened (counted so that a reader polling now and then sees every opening).
    pub fn circuit_opened(&mut self) {
        self.circuit_opened += 1;
    }

    /// `(succeeded, failed)` over the window ending at `now`.
    fn window(&self, now: Millis) -> (u64, u64) {
        let minute = now / BUCKET_MS;
        self.buckets
            .iter()
            .filter(|(m, _, _)| *m + (BUCKETS as u64) > minute && *m <= minute)
            .fold((0, 0), |(s, f), (_, ok, bad)| (s + ok, f + bad))
    }
}

/// The receiver's state in one word, worst first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// No attempt since this pod started.
    Unknown,
    /// The last attempts got 2xx (or too few failed in a row to say otherwise).
    Healthy,
    /// Attempts are failing in a row; the circuit opens if it goes on.
    Failing,
    /// The circuit is open or probing: deliveries wait for the receiver.
    CircuitOpen,
    /// The receiver answered 410 Gone; nothing goes until someone resumes the endpoint.
    Paused,
}

/// What a reader sees of one endpoint on one pod.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EndpointHealth {
    pub state: HealthState,
    pub consecutive_failures: u32,
    /// Attempts in the last five minutes.
    pub succeeded_in_window: u64,
    pub failed_in_window: u64,
    /// Of those, the share that got a 2xx; none without attempts.
    pub success_rate_percent: Option<u8>,
    pub last_error: Option<String>,
    /// Unix milliseconds.
    pub last_error_at: Option<u64>,
    pub last_success_at: Option<u64>,
    /// Times the circuit opened since this pod started.
    pub circuit_opened: u64,
}

impl EndpointHealth {
    /// An endpoint this pod has not attempted yet.
    pub fn unknown() -> Self {
        EndpointHealth {
            state: HealthState::Unknown,
            consecutive_failures: 0,
            succeeded_in_window: 0,
            failed_in_window: 0,
            success_rate_percent: None,
            last_error: None,
            last_error_at: None,
            last_success_at: None,
            circuit_opened: 0,
        }
    }

    /// Two pods' views as one: the worst state, the longest run of failures, the windows and
    /// openings added up, the latest error and success.
    pub fn combine(&self, other: &EndpointHealth) -> EndpointHealth {
        let succeeded = self.succeeded_in_window + other.succeeded_in_window;
        let failed = self.failed_in_window + other.failed_in_window;
        let (last_error, last_error_at) = match (self.last_error_at, other.last_error_at) {
            (Some(a), Some(b)) if b > a => (other.last_error.clone(), other.last_error_at),
            (None, Some(_)) => (other.last_error.clone(), other.last_error_at),
            _ => (self.last_error.clone(), self.last_error_at),
        };
        EndpointHealth {
            state: self.state.max(other.state),
            consecutive_failures: self.consecutive_failures.max(other.consecutive_failures),
            succeeded_in_window: succeeded,
            failed_in_window: failed,
            success_rate_percent: success_rate(succeeded, failed),
            last_error,
            last_error_at,
            last_success_at: self.last_success_at.max(other.last_success_at),
            circuit_opened: self.circuit_opened + other.circuit_opened,
        }
    }
}

/// The share of `succeeded` in the whole, rounded down so that 99.6% is not shown as 100.
pub fn success_rate(succeeded: u64, failed: u64) -> Option<u8> {
    let total = succeeded.checked_add(failed).filter(|t| *t > 0)?;
    Some((succeeded.saturating_mul(100) / total) as u8)
}

#[derive(Clone)]
struct Published {
    circuit: State,
    tracker: Tracker,
}

/// The scheduler's trackers and breaker states, as last published.
pub struct HealthBoard {
    entries: RwLock<HashMap<EndpointKey, Published>>,
    /// Failures in a row that make an endpoint `failing` before its breaker opens.
    failing_after: u32,
}

impl HealthBoard {
    pub(super) fn new(breaker_threshold: u32) -> Self {
        HealthBoard {
            entries: RwLock::default(),
            // Halfway to the breaker: one stray 503 is not news, a run that will open it is.
            failing_after: breaker_threshold.div_ceil(2).max(1),
        }
    }

    pub(super) fn publish<'a>(
        &self,
        endpoints: impl Iterator<Item = (&'a EndpointKey, State, &'a Tracker)>,
    ) {
        let snapshot = endpoints
            .map(|(k, circuit, tracker)| {
                (
                    k.clone(),
                    Published {
                        circuit,
                        tracker: tracker.clone(),
                    },
                )
            })
            .collect();
        if let Ok(mut entries) = self.entries.write() {
            *entries = snapshot;
        }
    }

    /// `closed`, `open` or `half_open`; `None` when the engine has not met the endpoint yet.
    pub fn circuit(&self, namespace: &str, endpoint: &str) -> Option<&'static str> {
        let entries = self.entries.read().ok()?;
        let p = entries.get(&(namespace.to_string(), endpoint.to_string()))?;
        Some(match p.circuit {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half_open",
        })
    }

    /// The endpoint's health at `now` (without the pause, which the store holds).
    pub fn health(&self, namespace: &str, endpoint: &str, now: Millis) -> EndpointHealth {
        let Ok(entries) = self.entries.read() else {
            return EndpointHealth::unknown();
        };
        let Some(p) = entries.get(&(namespace.to_string(), endpoint.to_string())) else {
            return EndpointHealth::unknown();
        };
        let t = &p.tracker;
        let (succeeded, failed) = t.window(now);
        let state = match p.circuit {
            State::Open { .. } | State::HalfOpen { .. } => HealthState::CircuitOpen,
            _ if t.consecutive_failures >= self.failing_after => HealthState::Failing,
            _ if t.last_success_at.is_none() && t.last_error.is_none() => HealthState::Unknown,
            _ => HealthState::Healthy,
        };
        EndpointHealth {
            state,
            consecutive_failures: t.consecutive_failures,
            succeeded_in_window: succeeded,
            failed_in_window: failed,
            success_rate_percent: success_rate(succeeded, failed),
            last_error: t.last_error.as_ref().map(|(_, e)| e.clone()),
            last_error_at: t.last_error.as_ref().map(|(at, _)| *at),
            last_success_at: t.last_success_at,
            circuit_opened: t.circuit_opened,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board(threshold: u32, circuit: State, t: &Tracker) -> HealthBoard {
        let b = HealthBoard::new(threshold);
        let key = ("ns".to_string(), "ep".to_string());
        b.publish(std::iter::once((&key, circuit, t)));
        b
    }

    const CLOSED: State = State::Closed { failures: 0 };

    #[test]
    fn a_run_of_failures_halfway_to_the_breaker_is_failing_and_a_success_ends_it() {
        let mut t = Tracker::default();
        t.failed(1_000, "HTTP 503");
        t.failed(2_000, "HTTP 503");
        assert_eq!(
            board(5, CLOSED, &t).health("ns", "ep", 3_000).state,
            HealthState::Healthy
        );
        t.failed(3_000, "connection refused");
        let h = board(5, CLOSED, &t).health("ns", "ep", 3_000);
        assert_eq!(h.state, HealthState::Failing);
        assert_eq!(h.consecutive_failures, 3);
        assert_eq!(h.last_error.as_deref(), Some("connection refused"));
        assert_eq!(h.last_error_at, Some(3_000));
        t.succeeded(4_000);
        let h = board(5, CLOSED, &t).health("ns", "ep", 4_000);
        assert_eq!(h.state, HealthState::Healthy);
        assert_eq!((h.succeeded_in_window, h.failed_in_window), (1, 3));
        assert_eq!(h.success_rate_percent, Some(25));
        // The last error stays visible after the recovery.
        assert_eq!(h.last_error.as_deref(), Some("connection refused"));
    }

    #[test]
    fn an_open_or_probing_circuit_outranks_everything_else() {
        let t = Tracker::default();
        for circuit in [State::Open { until: 9 }, State::HalfOpen { probing: true }] {
            assert_eq!(
                board(5, circuit, &t).health("ns", "ep", 0).state,
                HealthState::CircuitOpen
            );
        }
    }

    #[test]
    fn the_window_forgets_attempts_older_than_five_minutes() {
        let mut t = Tracker::default();
        t.failed(0, "HTTP 500");
        t.succeeded(61_000);
        let b = board(5, CLOSED, &t);
        let h = b.health("ns", "ep", 61_000);
        assert_eq!((h.succeeded_in_window, h.failed_in_window), (1, 1));
        let h = b.health("ns", "ep", WINDOW_MS + 1_000);
        assert_eq!((h.succeeded_in_window, h.failed_in_window), (1, 0));
        let h = b.health("ns", "ep", 2 * WINDOW_MS);
        assert_eq!(
            (
                h.succeeded_in_window,
                h.failed_in_window,
                h.success_rate_percent
            ),
            (0, 0, None)
        );
        // A slot reused a window later starts from zero.
        t.succeeded(WINDOW_MS);
        assert_eq!(
            board(5, CLOSED, &t)
                .health("ns", "ep", WINDOW_MS)
                .succeeded_in_window,
            2
        );
    }

    #[test]
    fn unknown_until_the_first_attempt_and_rates_round_down() {
        let b = board(5, CLOSED, &Tracker::default());
        assert_eq!(b.health("ns", "ep", 0).state, HealthState::Unknown);
        assert_eq!(b.health("ns", "other", 0), EndpointHealth::unknown());
        assert_eq!(success_rate(199, 1), Some(99));
        assert_eq!(success_rate(0, 0), None);
        assert_eq!(success_rate(0, 4), Some(0));
    }

    #[test]
    fn two_pods_combine_into_the_worst_state_and_the_latest_error() {
        let mut a = EndpointHealth::unknown();
        a.state = HealthState::Healthy;
        a.succeeded_in_window = 9;
        a.last_success_at = Some(50);
        a.last_error = Some("HTTP 500".into());
        a.last_error_at = Some(10);
        let mut b = EndpointHealth::unknown();
        b.state = HealthState::CircuitOpen;
        b.consecutive_failures = 5;
        b.failed_in_window = 1;
        b.last_error = Some("timeout".into());
        b.last_error_at = Some(40);
        b.circuit_opened = 2;
        for c in [a.combine(&b), b.combine(&a)] {
            assert_eq!(c.state, HealthState::CircuitOpen);
            assert_eq!(c.consecutive_failures, 5);
            assert_eq!((c.succeeded_in_window, c.failed_in_window), (9, 1));
            assert_eq!(c.success_rate_percent, Some(90));
            assert_eq!(c.last_error.as_deref(), Some("timeout"));
            assert_eq!(c.last_success_at, Some(50));
            assert_eq!(c.circuit_opened, 2);
        }
        // Unknown is the least news of all.
        assert_eq!(
            EndpointHealth::unknown().combine(&a).state,
            HealthState::Healthy
        );
    }

    #[test]
    fn with_a_threshold_of_one_the_open_circuit_is_what_shows() {
        let mut t = Tracker::default();
        t.failed(0, "HTTP 503");
        assert_eq!(
            board(1, CLOSED, &t).health("ns", "ep", 0).state,
            HealthState::Failing
        );
        assert_eq!(
            board(1, State::Open { until: 5 }, &t)
                .health("ns", "ep", 0)
                .state,
            HealthState::CircuitOpen
        );
    }
}
