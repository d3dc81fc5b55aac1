//! Calendar arithmetic for the time services and their clients: Unix seconds to a UTC date,
//! printed as C's `ctime` does (and Python's `time.ctime`, which the tutorials' client uses).
//!
//! Hand-written because it is small and exact (Howard Hinnant's `civil_from_days`, valid for
//! every date this server will see), and because a date crate would be the library's only
//! reason to carry one. No time zones: the server has no business knowing the client's, so
//! every date here is UTC and says so where a human reads it.

use std::time::{Duration, SystemTime};

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A UTC calendar date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    /// The year, e.g. 2026.
    pub year: i64,
    /// 1 to 12.
    pub month: u32,
    /// 1 to 31.
    pub day: u32,
    /// 0 (Monday) to 6 (Sunday).
    pub weekday: u32,
    /// 0 to 23.
    pub hour: u32,
    /// 0 to 59.
    pub minute: u32,
    /// 0 to 59.
    pub second: u32,
}

impl Civil {
    /// The UTC date and time `unix_seconds` after 1970-01-01 00:00:00 (negative: before).
    pub fn from_unix(unix_seconds: i64) -> Civil {
        let days = unix_seconds.div_euclid(86_400);
        let of_day = unix_seconds.rem_euclid(86_400) as u32;
        // civil_from_days: eras of 400 years (146,097 days) starting on 0000-03-01.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            // 1970-01-01 was a Thursday (3, counting from Monday).
            weekday: (days + 3).rem_euclid(7) as u32,
            hour: of_day / 3600,
            minute: of_day / 60 % 60,
            second: of_day % 60,
        }
    }

    /// `ctime` layout without the newline: `Thu Nov 26 01:56:27 2026` (the day of the month
    /// padded with a space, as C and Python print it).
    pub fn ctime(&self) -> String {
        format!(
            "{} {} {:>2} {:02}:{:02}:{:02} {}",
            WEEKDAYS[self.weekday as usize],
            MONTHS[(self.month - 1) as usize],
            self.day,
            self.hour,
            self.minute,
            self.second,
            self.year
        )
    }
}

/// Seconds since the Unix epoch at `time` (negative before 1970), whole seconds.
pub fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// The instant `unix_seconds` after the epoch.
pub fn from_unix_seconds(unix_seconds: i64) -> SystemTime {
    let magnitude = Duration::from_secs(unix_seconds.unsigned_abs());
    if unix_seconds >= 0 {
        SystemTime::UNIX_EPOCH + magnitude
    } else {
        SystemTime::UNIX_EPOCH - magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates_print_as_ctime_does() {
        assert_eq!(Civil::from_unix(0).ctime(), "Thu Jan  1 00:00:00 1970");
        // The seed tutorial's sample output, `Mon Aug 06 17:09:17 2012`, in ctime's layout.
        assert_eq!(
            Civil::from_unix(1_344_272_957).ctime(),
            "Mon Aug  6 17:09:17 2012"
        );
        assert_eq!(
            Civil::from_unix(951_782_400).ctime(),
            "Tue Feb 29 00:00:00 2000"
        );
        // The RFC 868 wrap: 2^32 seconds after 1900.
        assert_eq!(
            Civil::from_unix(4_294_967_296 - 2_208_988_800).ctime(),
            "Thu Feb  7 06:28:16 2036"
        );
        assert_eq!(Civil::from_unix(-1).ctime(), "Wed Dec 31 23:59:59 1969");
        assert_eq!(
            Civil::from_unix(4_102_444_800).ctime(),
            "Fri Jan  1 00:00:00 2100"
        );
    }

    #[test]
    fn every_day_of_four_centuries_follows_the_one_before() {
        let mut previous = Civil::from_unix(-86_400 * 365 * 100);
        for day in (-365 * 100 + 1)..(365 * 300) {
            let now = Civil::from_unix(day * 86_400);
            assert_eq!(now.weekday, (previous.weekday + 1) % 7);
            let next_day = now.day == previous.day + 1 && now.month == previous.month;
            let next_month = now.day == 1 && now.month == previous.month % 12 + 1;
            assert!(next_day || next_month, "{previous:?} -> {now:?}");
            assert!(now.day <= 31 && (1..=12).contains(&now.month));
            previous = now;
        }
    }

    #[test]
    fn unix_seconds_round_trip() {
        for secs in [-86_401, -1, 0, 1, 1_700_000_000] {
            assert_eq!(unix_seconds(from_unix_seconds(secs)), secs);
        }
    }
}
