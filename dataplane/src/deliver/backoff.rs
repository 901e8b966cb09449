//! When to try again: the endpoint's schedule (an explicit list of delays, or exponential growth
//! capped), each delay jittered to between 80% and 120% of itself, and the receiver's own
//! `Retry-After` (with 429 or 503) as a floor, up to the endpoint's cap.
//!
//! Pure: the caller passes the clock and the random source, so every decision is reproducible
//! in a test with a seeded RNG.

use std::time::{Duration, SystemTime};

use hookmesh_api::config::{RetryConfig, RetryDelays};
use rand::Rng;

/// What an unparseable-but-huge `Retry-After` means before the endpoint's cap applies.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Jitter bounds, in percent of the scheduled delay: never earlier than 80% of it, so a failing
/// receiver is not hit again almost at once; up to 120%, so a burst of failures spreads out.
pub const JITTER_MIN_PERCENT: u64 = 80;
pub const JITTER_MAX_PERCENT: u64 = 120;

/// The delay the schedule gives before attempt `failed_attempt + 1`, before jitter.
/// `failed_attempt` counts from 1.
pub fn scheduled(cfg: &RetryConfig, failed_attempt: u32) -> Duration {
    match &cfg.delays {
        RetryDelays::Schedule { delays_ms } => {
            let i = (failed_attempt.max(1) as usize - 1).min(delays_ms.len().saturating_sub(1));
            Duration::from_millis(delays_ms.get(i).copied().unwrap_or(0))
        }
        RetryDelays::Exponential {
            initial_ms,
            max_ms,
            multiplier,
        } => {
            let exp = failed_attempt.saturating_sub(1).min(1024);
            let multiplier = if multiplier.is_finite() && *multiplier >= 1.0 {
                *multiplier
            } else {
                1.0
            };
            let raw = *initial_ms as f64 * multiplier.powi(exp as i32);
            let capped = if raw.is_finite() {
                raw.min(*max_ms as f64)
            } else {
                *max_ms as f64
            };
            Duration::from_millis(capped.max(0.0) as u64)
        }
    }
}

/// Delay before the next attempt: the scheduled delay, jittered within
/// [`JITTER_MIN_PERCENT`]..=[`JITTER_MAX_PERCENT`]; a `Retry-After` is a floor (the receiver
/// said when it can take traffic again), capped at the endpoint's `max_retry_after`.
pub fn delay(
    cfg: &RetryConfig,
    failed_attempt: u32,
    retry_after: Option<Duration>,
    rng: &mut impl Rng,
) -> Duration {
    let base = scheduled(cfg, failed_attempt).as_millis() as u64;
    let low = base.saturating_mul(JITTER_MIN_PERCENT) / 100;
    let high = base.saturating_mul(JITTER_MAX_PERCENT) / 100;
    let jittered = Duration::from_millis(rng.random_range(low..=high));
    match retry_after {
        Some(ra) => jittered.max(ra.min(retry_after_cap(cfg))),
        None => jittered,
    }
}

/// The longest `Retry-After` this endpoint honours.
pub fn retry_after_cap(cfg: &RetryConfig) -> Duration {
    Duration::from_millis(cfg.max_retry_after_ms)
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

    fn exponential() -> RetryConfig {
        RetryConfig {
            max_attempts: 8,
            delays: RetryDelays::Exponential {
                initial_ms: 100,
                max_ms: 1_000,
                multiplier: 2.0,
            },
            max_age_ms: None,
            max_retry_after_ms: 3_600_000,
        }
    }

    fn schedule(ms: &[u64]) -> RetryConfig {
        RetryConfig {
            delays: RetryDelays::Schedule {
                delays_ms: ms.to_vec(),
            },
            ..exponential()
        }
    }

    #[test]
    fn exponential_grows_then_caps() {
        let c = exponential();
        let got: Vec<u64> = (1..=6)
            .map(|n| scheduled(&c, n).as_millis() as u64)
            .collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(scheduled(&c, u32::MAX), Duration::from_millis(1000));
        assert_eq!(scheduled(&c, 0), Duration::from_millis(100));
    }

    #[test]
    fn exponential_survives_odd_multipliers() {
        let odd = |m: f64| RetryConfig {
            delays: RetryDelays::Exponential {
                initial_ms: 100,
                max_ms: 1_000,
                multiplier: m,
            },
            ..exponential()
        };
        assert_eq!(scheduled(&odd(f64::NAN), 5), Duration::from_millis(100));
        assert_eq!(scheduled(&odd(10.0), 400), Duration::from_millis(1000));
    }

    #[test]
    fn a_schedule_is_followed_and_its_last_delay_repeats() {
        let c = schedule(&[5_000, 300_000, 1_800_000]);
        let got: Vec<u64> = (1..=5)
            .map(|n| scheduled(&c, n).as_millis() as u64)
            .collect();
        assert_eq!(got, vec![5_000, 300_000, 1_800_000, 1_800_000, 1_800_000]);
        assert_eq!(scheduled(&c, 0), Duration::from_millis(5_000));
    }

    #[test]
    fn jitter_never_comes_before_80_percent_and_spreads_up_to_120() {
        let mut rng = StdRng::seed_from_u64(7);
        for c in [exponential(), schedule(&[400, 400, 400])] {
            let delays: Vec<u64> = (0..10_000)
                .map(|_| delay(&c, 3, None, &mut rng).as_millis() as u64)
                .collect();
            let (min, max) = (
                delays.iter().copied().min().unwrap_or(0),
                delays.iter().copied().max().unwrap_or(0),
            );
            assert!(min >= 320, "{min} ms is earlier than 80% of 400 ms");
            assert!(max <= 480, "{max} ms is later than 120% of 400 ms");
            // Uniform on [320, 480]: about half below 400, and both ends reached.
            let low = delays.iter().filter(|d| **d < 400).count();
            assert!((4_500..5_500).contains(&low), "{low} of 10000 below 400");
            assert!(min < 330 && max > 470, "jitter spans only {min}..{max}");
        }
    }

    #[test]
    fn same_seed_same_delays() {
        let c = exponential();
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
    fn retry_after_is_a_floor_and_capped_by_the_endpoint() {
        let mut c = exponential();
        c.max_retry_after_ms = 60_000;
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            let d = delay(&c, 1, Some(Duration::from_secs(3)), &mut rng);
            assert_eq!(d, Duration::from_secs(3));
        }
        let d = delay(&c, 1, Some(Duration::from_secs(999_999)), &mut rng);
        assert_eq!(d, Duration::from_secs(60));
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
