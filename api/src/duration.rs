//! Human durations in manifests (`500ms`, `30s`, `5m`, `24h`, `7d`).
//!
//! The schema pattern [`PATTERN`] admits exactly what [`parse`] accepts, so `kubectl apply`
//! and standalone mode refuse the same strings.

use std::time::Duration;

/// One or more `<digits><unit>` groups, as `1h30m`; units ms, s, m, h, d.
pub const PATTERN: &str = r"^([0-9]+(ms|s|m|h|d))+$";

/// Parses a manifest duration; `None` for anything [`PATTERN`] would refuse or that overflows.
pub fn parse(s: &str) -> Option<Duration> {
    if s.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let value: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit_ms, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else if rest.starts_with('d') {
            (86_400_000, 1)
        } else {
            return None;
        };
        rest = &rest[len..];
        total = total.checked_add(value.checked_mul(unit_ms)?)?;
    }
    Some(Duration::from_millis(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse("24h"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse("7d"), Some(Duration::from_secs(604_800)));
        assert_eq!(parse("1h30m"), Some(Duration::from_secs(5_400)));
    }

    #[test]
    fn refuses_what_the_pattern_refuses() {
        for bad in [
            "",
            "5",
            "s",
            "1.5s",
            "-1s",
            "1w",
            "1 s",
            "99999999999999999999d",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
