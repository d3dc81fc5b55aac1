//! `--start-at TIME`: several generators (processes, pods, machines) begin together at a
//! wall-clock time, so that their measured windows coincide and `merge` can add their rates.
//!
//! The time is an RFC 3339 timestamp (`2026-12-06T03:00:00Z`, `2026-12-06T04:00:00.5+01:00`)
//! or Unix seconds (`1796526000`, `1796526000.25`), the two forms `date -u +%FT%TZ` and
//! `date +%s` print. Parsing is sans-IO and needs no time-zone database: RFC 3339 always
//! carries its offset. The wait follows the wall clock (`SystemTime`), not a monotonic one,
//! because the point is to agree with other machines' clocks, which NTP keeps close (a few
//! milliseconds apart on a cluster, which the warm-up absorbs).

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::options::OptionError;

/// The furthest ahead `--start-at` may be: a generator that would sleep longer is almost
/// certainly the victim of a typo (milliseconds given as seconds, a wrong year).
pub const MAX_AHEAD: Duration = Duration::from_secs(24 * 3600);

/// A start later than this past the requested time is reported: the runs it was meant to
/// line up with have already been measuring for that long.
pub const LATE_WARNING: Duration = Duration::from_secs(1);

/// Parses `--start-at`: Unix seconds (integer or decimal) or an RFC 3339 date-time.
pub fn parse(text: &str) -> Result<SystemTime, OptionError> {
    let t = text.trim();
    let err = |why: &str| {
        OptionError(format!(
            "invalid --start-at '{text}': {why} (expected Unix seconds such as 1796526000, or \
             RFC 3339 such as 2026-12-06T03:00:00Z)"
        ))
    };
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = t.parse().map_err(|_| err("not a number"))?;
        // Past 2^40 s (year 36812) is a typo, and keeps the conversion below exact enough.
        if !(0.0..(1u64 << 40) as f64).contains(&secs) {
            return Err(err("out of range"));
        }
        return Ok(UNIX_EPOCH + Duration::from_secs_f64(secs));
    }
    rfc3339(t).map_err(err)
}

/// `YYYY-MM-DD(T|t| )hh:mm:ss(.frac)?(Z|z|±hh:mm)` (RFC 3339 section 5.6), as a time.
fn rfc3339(t: &str) -> Result<SystemTime, &'static str> {
    let b = t.as_bytes();
    if b.len() < 20 {
        return Err("too short");
    }
    let num = |range: std::ops::Range<usize>| -> Result<i64, &'static str> {
        let digits = &t[range];
        if digits.bytes().all(|c| c.is_ascii_digit()) {
            digits.parse().map_err(|_| "bad number")
        } else {
            Err("digits expected")
        }
    };
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err("date and time must read YYYY-MM-DDThh:mm:ss");
    }
    if b[13] != b':' || b[16] != b':' {
        return Err("time must read hh:mm:ss");
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err("no such date");
    }
    // 60: a leap second, which Unix time folds onto the next one.
    if hour > 23 || minute > 59 || second > 60 {
        return Err("no such time");
    }
    let mut rest = &t[19..];
    let mut nanos = 0u64;
    if let Some(frac) = rest.strip_prefix('.') {
        let len = frac.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return Err("digits expected after '.'");
        }
        // Nanoseconds: the first nine digits count, the rest are below the clock's resolution.
        for (i, c) in frac.bytes().take(9).enumerate().take(len) {
            nanos += u64::from(c - b'0') * 10u64.pow(8 - i as u32);
        }
        rest = &frac[len..];
    }
    let offset = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let two = |a: u8, b: u8| -> Result<i64, &'static str> {
                if a.is_ascii_digit() && b.is_ascii_digit() {
                    Ok(i64::from(a - b'0') * 10 + i64::from(b - b'0'))
                } else {
                    Err("bad offset")
                }
            };
            let (h, m) = (two(*h1, *h2)?, two(*m1, *m2)?);
            if h > 23 || m > 59 {
                return Err("bad offset");
            }
            let minutes = h * 60 + m;
            if *sign == b'+' {
                minutes
            } else {
                -minutes
            }
        }
        _ => return Err("a time zone is required: Z or an offset such as +01:00"),
    };
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    let unix = local - offset * 60;
    let unix = u64::try_from(unix).map_err(|_| "before 1970")?;
    Ok(UNIX_EPOCH + Duration::from_secs(unix) + Duration::from_nanos(nanos))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil, the
/// inverse of the algorithm in `report::iso8601`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Sleeps until the wall clock reads `at` or `stop` is raised, whichever comes first, and
/// returns how long after `at` the wait ended: a sleep's overshoot when `at` was ahead, the
/// whole delay when it had already passed (zero after a stop).
///
/// Sleeps in slices of at most `check`: the stop flag is seen promptly, and a clock stepped
/// by NTP during a long wait is followed rather than overshot.
pub fn wait_until(at: SystemTime, stop: &AtomicBool, check: Duration) -> Duration {
    loop {
        let now = SystemTime::now();
        match at.duration_since(now) {
            Ok(left) if !left.is_zero() => {
                if stop.load(Relaxed) {
                    return Duration::ZERO;
                }
                std::thread::sleep(left.min(check));
            }
            Ok(_) => return Duration::ZERO,
            Err(late) => return late.duration(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(s: &str) -> f64 {
        parse(s)
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    }

    #[test]
    fn unix_seconds() {
        assert_eq!(unix("0"), 0.0);
        assert_eq!(unix("1796526000"), 1_796_526_000.0);
        assert_eq!(unix("1796526000.25"), 1_796_526_000.25);
        assert!(parse("-5").is_err());
        assert!(parse("1.2.3").is_err());
        assert!(
            parse("99999999999999999").is_err(),
            "far past any real date"
        );
    }

    #[test]
    fn rfc3339_forms() {
        assert_eq!(unix("1970-01-01T00:00:00Z"), 0.0);
        assert_eq!(unix("2000-02-29T00:00:00Z"), 951_782_400.0);
        assert_eq!(unix("2026-11-26T01:36:59Z"), 1_795_657_019.0);
        assert_eq!(unix("2026-11-26t01:36:59z"), 1_795_657_019.0);
        assert_eq!(unix("2026-11-26 01:36:59Z"), 1_795_657_019.0);
        assert_eq!(unix("2026-11-26T02:36:59+01:00"), 1_795_657_019.0);
        assert_eq!(unix("2026-11-25T20:06:59-05:30"), 1_795_657_019.0);
        assert_eq!(unix("2026-11-26T01:36:59.5Z"), 1_795_657_019.5);
        assert_eq!(
            unix("2026-11-26T01:36:59.123456789123Z"),
            1_795_657_019.123_456_8
        );
    }

    /// The parser agrees with the report's own timestamps, for every day of several years.
    #[test]
    fn inverse_of_the_report_timestamps() {
        for day in (0..20_000u64).step_by(7) {
            let t = UNIX_EPOCH + Duration::from_secs(day * 86_400 + 3_723);
            let text = crate::report::iso8601(t);
            assert_eq!(parse(&text).unwrap(), t, "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_time() {
        for bad in [
            "",
            "soon",
            "2026-11-26",
            "2026-11-26T01:36:59",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-26T24:00:00Z",
            "2026-11-26T01:36:59+1:00",
            "2026-11-26T01:36:59.Z",
            "1969-12-31T23:59:59Z",
            "+10s",
        ] {
            let e = parse(bad).expect_err(bad).0;
            assert!(e.contains("--start-at"), "{e}");
        }
    }

    #[test]
    fn waits_until_the_time_or_the_stop() {
        let check = Duration::from_millis(5);
        let at = SystemTime::now() + Duration::from_millis(120);
        let late = wait_until(at, &AtomicBool::new(false), check);
        assert!(SystemTime::now() >= at);
        assert!(late < LATE_WARNING, "only a sleep's overshoot: {late:?}");
        let past = SystemTime::now() - Duration::from_secs(3);
        assert!(wait_until(past, &AtomicBool::new(false), check) >= Duration::from_secs(3));
        let begun = std::time::Instant::now();
        let far = SystemTime::now() + Duration::from_secs(60);
        wait_until(far, &AtomicBool::new(true), check);
        assert!(
            begun.elapsed() < Duration::from_secs(5),
            "a stop ends the wait"
        );
    }
}
