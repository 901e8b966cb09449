//! Circuit breaker, one per endpoint.
//!
//! Closed: everything goes. After `threshold` consecutive failures (timeouts, connection errors,
//! 5xx, 408, 429) it opens: due deliveries of the endpoint are pushed back to the end of the
//! cool-down without an attempt, so a dead receiver does not burn every delivery's attempts.
//! After the cool-down one delivery goes through as a probe (half-open); its success closes the
//! breaker, its failure opens it for another cool-down. A 4xx other than 408/429 counts as a
//! sign of life: the receiver answered, it just refused that payload.

use crate::store::Millis;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed { failures: u32 },
    Open { until: Millis },
    HalfOpen { probing: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Send it.
    Yes,
    /// Send it as the half-open probe.
    Probe,
    /// Open: push the delivery back to this time.
    RequeueAt(Millis),
    /// A probe is out: leave the delivery where it is until the probe answers.
    Wait,
}

#[derive(Clone, Debug)]
pub struct Breaker {
    state: State,
    threshold: u32,
    cooldown_ms: u64,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown_ms: u64) -> Self {
        Breaker {
            state: State::Closed { failures: 0 },
            threshold: threshold.max(1),
            cooldown_ms,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Closed { .. })
    }

    pub fn admit(&mut self, now: Millis) -> Admit {
        match self.state {
            State::Closed { .. } => Admit::Yes,
            State::Open { until } if now < until => Admit::RequeueAt(until),
            State::Open { .. } | State::HalfOpen { probing: false } => {
                self.state = State::HalfOpen { probing: true };
                Admit::Probe
            }
            State::HalfOpen { probing: true } => Admit::Wait,
        }
    }

    /// An attempt got an answer the breaker counts as healthy. Returns true when this closed it.
    pub fn on_success(&mut self) -> bool {
        let was_open = self.is_open();
        self.state = State::Closed { failures: 0 };
        was_open
    }

    /// An attempt failed. Returns true when this opened the breaker.
    pub fn on_failure(&mut self, now: Millis, was_probe: bool) -> bool {
        match self.state {
            State::Closed { failures } => {
                let failures = failures.saturating_add(1);
                if failures >= self.threshold {
                    self.state = State::Open {
                        until: now.saturating_add(self.cooldown_ms),
                    };
                    true
                } else {
                    self.state = State::Closed { failures };
                    false
                }
            }
            State::HalfOpen { .. } if was_probe => {
                self.state = State::Open {
                    until: now.saturating_add(self.cooldown_ms),
                };
                true
            }
            // A request that started before the breaker opened and failed late adds nothing.
            State::HalfOpen { .. } | State::Open { .. } => false,
        }
    }

    /// A probe that ended without telling us anything (its payload was gone): let another go.
    pub fn on_probe_abandoned(&mut self) {
        if self.state == (State::HalfOpen { probing: true }) {
            self.state = State::HalfOpen { probing: false };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let mut b = Breaker::new(3, 1000);
        assert!(!b.on_failure(0, false));
        assert!(!b.on_failure(0, false));
        assert!(!b.on_success());
        assert!(!b.on_failure(0, false));
        assert!(!b.on_failure(0, false));
        assert!(b.on_failure(10, false));
        assert_eq!(b.state(), State::Open { until: 1010 });
        assert_eq!(b.admit(500), Admit::RequeueAt(1010));
    }

    #[test]
    fn half_open_sends_one_probe_and_closes_on_success() {
        let mut b = Breaker::new(1, 1000);
        assert!(b.on_failure(0, false));
        assert_eq!(b.admit(1000), Admit::Probe);
        assert_eq!(b.admit(1001), Admit::Wait);
        assert!(b.on_success());
        assert_eq!(b.admit(1002), Admit::Yes);
    }

    #[test]
    fn failed_probe_reopens_for_another_cooldown() {
        let mut b = Breaker::new(1, 1000);
        b.on_failure(0, false);
        assert_eq!(b.admit(1500), Admit::Probe);
        assert!(b.on_failure(1600, true));
        assert_eq!(b.admit(1700), Admit::RequeueAt(2600));
    }

    #[test]
    fn late_failures_do_not_extend_or_reopen() {
        let mut b = Breaker::new(1, 1000);
        b.on_failure(0, false);
        assert!(!b.on_failure(500, false));
        assert_eq!(b.state(), State::Open { until: 1000 });
        assert_eq!(b.admit(1000), Admit::Probe);
        assert!(!b.on_failure(1001, false));
        assert_eq!(b.state(), State::HalfOpen { probing: true });
    }

    #[test]
    fn abandoned_probe_lets_the_next_one_through() {
        let mut b = Breaker::new(1, 10);
        b.on_failure(0, false);
        assert_eq!(b.admit(10), Admit::Probe);
        b.on_probe_abandoned();
        assert_eq!(b.admit(11), Admit::Probe);
    }
}
