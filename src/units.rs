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
/// suffix; a bare number is seconds: `5`, `2.5s`, `250ms`, `1m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let bad = || format!("'{trimmed}' is not a duration (examples: 5s, 250ms, 1m)");
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1000.0,
        "us" | "µs" => value / 1_000_000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(bad()),
    };
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
}
