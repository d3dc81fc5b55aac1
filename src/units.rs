//! Parsing the units people type on a command line: sizes (`64K`, `16M`) and durations
//! (`5s`, `250ms`, `2m`; a bare number is seconds).
//!
//! Shared by both binaries' CLIs; kept apart so each rule is tested once.

use std::time::Duration;

/// Parses a byte size: a number with an optional `K`, `M` or `G` suffix (binary multiples,
/// case-insensitive, an optional trailing `B` or `iB`): `64`, `1K`, `64KiB`, `16M`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    let unitless = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (digits, multiplier) = match unitless.char_indices().last() {
        Some((at, 'k')) => (&unitless[..at], 1usize << 10),
        Some((at, 'm')) => (&unitless[..at], 1 << 20),
        Some((at, 'g')) => (&unitless[..at], 1 << 30),
        _ => (unitless, 1),
    };
    let number: usize = digits
        .parse()
        .map_err(|_| format!("'{trimmed}' is not a size (examples: 64, 1K, 16M)"))?;
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("'{trimmed}' is too large"))
}

/// Parses a duration: a number (fractions allowed) with an optional `ms`, `s`, `m` or `h`
/// suffix; a bare number is seconds: `5`, `2.5s`, `250ms`, `1m`. Several parts with units
/// add up, largest unit first as people write them: `1m30s`, `1h2m3s`, `1s500ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let bad = || format!("'{trimmed}' is not a duration (examples: 5s, 250ms, 1m30s)");
    let mut rest = trimmed;
    let mut seconds = 0.0;
    let mut previous_unit = f64::INFINITY;
    loop {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(split);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let value: f64 = number.parse().map_err(|_| bad())?;
        let scale = match unit {
            // A bare number is seconds, but only on its own: "1m30" is a typo, not 90 s.
            "" if rest.len() == trimmed.len() => 1.0,
            "s" | "sec" | "secs" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        // Each part strictly smaller than the one before: refuses "30s1m" and "1s1s".
        if scale >= previous_unit {
            return Err(bad());
        }
        previous_unit = scale;
        seconds += value * scale;
        if tail.is_empty() {
            break;
        }
        rest = tail;
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_and_without_suffixes() {
        assert_eq!(parse_size("64"), Ok(64));
        assert_eq!(parse_size("1K"), Ok(1024));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("10MB"), Ok(10 << 20));
        assert_eq!(parse_size("4KB"), Ok(4096));
        assert_eq!(parse_size("64B"), Ok(64));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("K").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn durations_with_and_without_units() {
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn compound_durations_add_up_largest_unit_first() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h2m3s"), Ok(Duration::from_secs(3723)));
        assert_eq!(parse_duration("1s500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m0.5s"), Ok(Duration::from_millis(120_500)));
        assert!(parse_duration("30s1m").is_err(), "units must shrink");
        assert!(parse_duration("1s1s").is_err(), "no unit twice");
        assert!(parse_duration("1m30").is_err(), "a bare number only alone");
        assert!(parse_duration("1m 30s").is_err());
        assert!(parse_duration("1mm").is_err());
    }
}
