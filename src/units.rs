//! Parsing the units people type on a command line: sizes (`64K`, `16M`) and durations
//! (`5s`, `250ms`, `2m`; a bare number is seconds).
//!
//! Shared by both binaries' CLIs; kept apart so each rule is tested once.
//!
//! Neither parser returns a value that can overflow later: sizes that do not fit a `usize`
//! are refused, and durations are capped at [`MAX_DURATION`], so any `Instant + duration` the
//! programs compute stays far inside what the clock can represent.

use std::time::Duration;

/// The longest duration the parsers return: 100 years (of 365.25 days). Longer values, and
/// `forever`/`never`, are taken as this: "never" for any process, and still safe to add to a
/// clock reading (adding `u64::MAX` seconds to an `Instant` panics). For timeouts that can
/// be turned off, callers map it to "off".
pub const MAX_DURATION: Duration = Duration::from_secs(36_525 * 86_400);

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
    let too_large = || format!("'{trimmed}' is too large (at most {} bytes)", usize::MAX);
    let number: usize = digits.parse().map_err(|_| {
        let all_digits = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        match all_digits {
            true => too_large(),
            false => format!("'{trimmed}' is not a size (examples: 64, 1K, 16M)"),
        }
    })?;
    number.checked_mul(multiplier).ok_or_else(too_large)
}

/// Parses a duration: a number (fractions allowed) with an optional `us`, `ms`, `s`, `m`, `h`
/// or `d` suffix; a bare number is seconds: `5`, `2.5s`, `250ms`, `1m`. Several parts with
/// units add up, largest unit first as people write them: `1m30s`, `1h2m3s`, `1s500ms`.
/// Anything longer than [`MAX_DURATION`], and the words `forever` and `never`, give
/// `MAX_DURATION`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if matches!(trimmed, "forever" | "never") {
        return Ok(MAX_DURATION);
    }
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
            "d" => 86_400.0,
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
    // Compare as floats first: `try_from_secs_f64` refuses values beyond `u64::MAX` seconds
    // (and infinity, which a long enough string of digits parses to), and those mean forever.
    if seconds >= MAX_DURATION.as_secs_f64() {
        return Ok(MAX_DURATION);
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
        assert!(parse_duration("1e3").is_err());
        assert!(parse_duration(".").is_err());
    }

    #[test]
    fn durations_are_capped_at_the_maximum() {
        assert_eq!(MAX_DURATION, Duration::from_secs(3_155_760_000));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(2 * 86_400)));
        assert_eq!(
            parse_duration("36524d"),
            Ok(Duration::from_secs(36_524 * 86_400))
        );
        for huge in [
            "10000000000000000000",
            "18446744073709551615s",
            "99999999999999999999999999h",
            &"9".repeat(400),
            "36525d",
            "forever",
            "never",
        ] {
            assert_eq!(parse_duration(huge), Ok(MAX_DURATION), "{huge}");
        }
        // What the cap buys: any clock reading plus the longest duration is representable.
        let now = std::time::Instant::now();
        assert!(now.checked_add(MAX_DURATION * 10).is_some());
    }

    #[test]
    fn sizes_beyond_usize_are_refused_not_wrapped() {
        assert_eq!(parse_size(&usize::MAX.to_string()), Ok(usize::MAX));
        assert!(parse_size("18446744073709551616").is_err());
        assert!(parse_size("17179869184G").is_err(), "2^34 G = 2^64 bytes");
        assert_eq!(parse_size("17179869183G"), Ok(17_179_869_183 << 30));
        let message = parse_size("99999999999999999999G").unwrap_err();
        assert!(message.contains("too large"), "{message}");
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
