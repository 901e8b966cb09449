//! When to try again: exponential backoff with full jitter, capped, and the receiver's own
//! `Retry-After` when it sends one with 429 or 503.
//!
//! Pure: the caller passes the clock and the random source, so every decision is reproducible
//! in a test with a seeded RNG.

use std::time::{Duration, SystemTime};

use hookmesh_api::config::RetryConfig;
use rand::Rng;

/// The longest `Retry-After` we agree to: a receiver asking for a day should not park a
/// delivery for a day without anyone noticing, but an hour is within what backoff reaches anyway.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The backoff ceiling before attempt `failed_attempt + 1`: `initial * multiplier^(n-1)`, capped
/// at `max_backoff`. `failed_attempt` counts from 1.
pub fn ceiling(cfg: &RetryConfig, failed_attempt: u32) -> Duration {
    let exp = failed_attempt.saturating_sub(1).min(1024);
    let multiplier = if cfg.multiplier.is_finite() && cfg.multiplier >= 1.0 {
        cfg.multiplier
    } else {
        1.0
    };
    let raw = cfg.initial_backoff_ms as f64 * multiplier.powi(exp as i32);
    let capped = if raw.is_finite() {
        raw.min(cfg.max_backoff_ms as f64)
    } else {
        cfg.max_backoff_ms as f64
    };
    Duration::from_millis(capped.max(0.0) as u64)
}

/// Delay before the next attempt. Full jitter (uniform in `[0, ceiling]`) spreads a burst of
/// failures so the receiver is not hit by all of them again at the same instant; a
/// `Retry-After` is a floor, since the receiver told us when it can take traffic again.
pub fn delay(
    cfg: &RetryConfig,
    failed_attempt: u32,
    retry_after: Option<Duration>,
    rng: &mut impl Rng,
) -> Duration {
    let ceiling_ms = ceiling(cfg, failed_attempt).as_millis() as u64;
    let jittered = Duration::from_millis(rng.random_range(0..=ceiling_ms));
    match retry_after {
        Some(ra) => jittered.max(ra.min(MAX_RETRY_AFTER)),
        None => jittered,
    }
}

/// Parse a `Retry-After` value: delay-seconds or an HTTP-date. A date in the past means "now".
/// `None` for anything else, which is then ignored rather than trusted.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than fit in u64 is still "a very long time".
        return Some(
            value
                .parse::<u64>()
                .map(Duration::from_secs)
                .unwrap_or(MAX_RETRY_AFTER),
        );
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn cfg() -> RetryConfig {
        RetryConfig {
            max_attempts: 8,
            initial_backoff_ms: 100,
            max_backoff_ms: 1_000,
            multiplier: 2.0,
        }
    }

    #[test]
    fn ceiling_grows_then_caps() {
        let c = cfg();
        let got: Vec<u64> = (1..=6).map(|n| ceiling(&c, n).as_millis() as u64).collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(ceiling(&c, u32::MAX), Duration::from_millis(1000));
        assert_eq!(ceiling(&c, 0), Duration::from_millis(100));
    }

    #[test]
    fn ceiling_survives_odd_multipliers() {
        let mut c = cfg();
        c.multiplier = f64::NAN;
        assert_eq!(ceiling(&c, 5), Duration::from_millis(100));
        c.multiplier = 10.0;
        assert_eq!(ceiling(&c, 400), Duration::from_millis(1000));
    }

    #[test]
    fn jitter_stays_within_the_ceiling_and_spreads() {
        let c = cfg();
        let mut rng = StdRng::seed_from_u64(7);
        let delays: Vec<u64> = (0..1000)
            .map(|_| delay(&c, 3, None, &mut rng).as_millis() as u64)
            .collect();
        assert!(delays.iter().all(|d| *d <= 400));
        let low = delays.iter().filter(|d| **d < 200).count();
        // Uniform on [0, 400]: about half below 200.
        assert!(
            (350..650).contains(&low),
            "{low} of 1000 below the midpoint"
        );
    }

    #[test]
    fn same_seed_same_delays() {
        let c = cfg();
        let a: Vec<Duration> = {
            let mut rng = StdRng::seed_from_u64(42);
            (1..=8).map(|n| delay(&c, n, None, &mut rng)).collect()
        };
        let b: Vec<Duration> = {
            let mut rng = StdRng::seed_from_u64(42);
            (1..=8).map(|n| delay(&c, n, None, &mut rng)).collect()
        };
        assert_eq!(a, b);
    }

    #[test]
    fn retry_after_is_a_floor_and_capped() {
        let c = cfg();
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            let d = delay(&c, 1, Some(Duration::from_secs(3)), &mut rng);
            assert_eq!(d, Duration::from_secs(3));
        }
        let d = delay(&c, 1, Some(Duration::from_secs(999_999)), &mut rng);
        assert_eq!(d, MAX_RETRY_AFTER);
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // 1994-11-06 08:49:37
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
    }
}
