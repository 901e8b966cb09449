//! Per-endpoint rate limit: a token bucket refilled at `perSecond`, holding at most one
//! second's worth, so an endpoint that was idle gets a short burst and then the steady rate.
//! (The in-flight cap is a plain counter kept by the scheduler next to this.)

use crate::store::Millis;

#[derive(Clone, Debug)]
pub struct TokenBucket {
    tokens: f64,
    last: Millis,
}

impl TokenBucket {
    pub fn new(now: Millis, per_second: u32) -> Self {
        TokenBucket {
            tokens: f64::from(per_second.max(1)),
            last: now,
        }
    }

    fn refill(&mut self, now: Millis, per_second: u32) {
        let rate = f64::from(per_second.max(1));
        let elapsed = now.saturating_sub(self.last) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.last = now;
    }

    /// Take one token, or say when the next one will be there.
    pub fn try_take(&mut self, now: Millis, per_second: u32) -> Result<(), Millis> {
        self.refill(now, per_second);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let rate = f64::from(per_second.max(1));
            let wait_ms = ((1.0 - self.tokens) / rate * 1000.0).ceil() as u64;
            Err(now.saturating_add(wait_ms.max(1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let mut b = TokenBucket::new(0, 5);
        for _ in 0..5 {
            assert!(b.try_take(0, 5).is_ok());
        }
        assert_eq!(b.try_take(0, 5), Err(200));
        assert!(b.try_take(200, 5).is_ok());
        assert!(b.try_take(200, 5).is_err());
        // A long idle period refills only up to one second's worth.
        let taken = (0..100).filter(|_| b.try_take(60_000, 5).is_ok()).count();
        assert_eq!(taken, 5);
    }

    #[test]
    fn a_rate_change_applies_at_once() {
        let mut b = TokenBucket::new(0, 100);
        for _ in 0..100 {
            assert!(b.try_take(0, 100).is_ok());
        }
        // Lowered to 1/s: the bucket never holds more than one token.
        assert_eq!(b.try_take(0, 1), Err(1000));
        assert!(b.try_take(1000, 1).is_ok());
    }
}
