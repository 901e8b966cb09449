//! Per-key rate limiting of the REST API: one token bucket per API key id.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Default `--api-rate-limit`: requests per second per API key.
pub const DEFAULT_RATE_LIMIT: u32 = 100;

/// Token buckets keyed by API key id; `per_second == 0` turns limiting off.
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// `per_second` requests per second per key, with bursts up to `burst` (at least 1).
    pub fn new(per_second: u32, burst: u32) -> Self {
        RateLimiter {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one token for `key`: `Ok` to proceed, `Err(seconds)` to wait that long first.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_second).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / self.per_second;
            Err((wait.ceil() as u64).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refuses_past_burst_and_says_how_long() {
        let rl = RateLimiter::new(1, 2);
        assert!(rl.check("a").is_ok());
        assert!(rl.check("a").is_ok());
        assert_eq!(rl.check("a"), Err(1));
        // Another key has its own bucket.
        assert!(rl.check("b").is_ok());
    }

    #[test]
    fn zero_is_off() {
        let rl = RateLimiter::new(0, 0);
        for _ in 0..1000 {
            assert!(rl.check("a").is_ok());
        }
    }
}
