//! Calendar days and months in the centre's time zone (a fixed offset from UTC).
//!
//! A day is a count of days since 1970-01-01 in local time; it starts at local midnight,
//! `offset` minutes before UTC midnight of the same date. Pure integer arithmetic (the
//! proleptic Gregorian calendar, Howard Hinnant's civil-date algorithms), no clock.

const DAY_MS: i64 = 86_400_000;

/// The local day of the instant `ms` (ms since the Unix epoch).
pub fn day_of(ms: i64, offset_min: i32) -> i64 {
    (ms + i64::from(offset_min) * 60_000).div_euclid(DAY_MS)
}

/// The instant (ms since the Unix epoch) local day `day` starts at.
pub fn day_start(day: i64, offset_min: i32) -> i64 {
    day * DAY_MS - i64::from(offset_min) * 60_000
}

/// `HH:MM` of the instant `ms` in local time.
pub fn hh_mm(ms: i64, offset_min: i32) -> String {
    let local = (ms + i64::from(offset_min) * 60_000).rem_euclid(DAY_MS) / 60_000;
    format!("{:02}:{:02}", local / 60, local % 60)
}

/// Parses `YYYY-MM-DD` (exactly that shape, a real date).
pub fn parse_day(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// `YYYY-MM-DD` of a day.
pub fn format_day(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM` of the month `day` is in.
pub fn format_month(day: i64) -> String {
    let (y, m, _) = civil_from_days(day);
    format!("{y:04}-{m:02}")
}

/// The first day of the month `day` is in.
pub fn month_start(day: i64) -> i64 {
    let (y, m, _) = civil_from_days(day);
    days_from_civil(y, m, 1)
}

/// The first day of the month after the one `day` is in.
pub fn next_month_start(day: i64) -> i64 {
    let (y, m, _) = civil_from_days(day);
    if m == 12 {
        days_from_civil(y + 1, 1, 1)
    } else {
        days_from_civil(y, m + 1, 1)
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a count of days since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_bad_ones_are_refused() {
        assert_eq!(parse_day("1970-01-01"), Some(0));
        assert_eq!(parse_day("2000-03-01"), Some(11_017));
        for s in ["2024-02-29", "2026-12-31", "1999-01-01", "2100-02-28"] {
            assert_eq!(format_day(parse_day(s).unwrap()), s);
        }
        for bad in [
            "",
            "2026-1-01",
            "2026-02-30",
            "2025-02-29",
            "2100-02-29",
            "2026-13-01",
            "26-01-01x",
            "2026/01/01",
            "+026-01-01",
            "2026-00-10",
        ] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
        let d = parse_day("2026-12-15").unwrap();
        assert_eq!(format_day(month_start(d)), "2026-12-01");
        assert_eq!(format_day(next_month_start(d)), "2027-01-01");
        assert_eq!(format_month(d), "2026-12");
    }

    #[test]
    fn local_days_start_at_local_midnight() {
        let d = parse_day("2026-11-23").unwrap();
        // At UTC+08:00 the day starts at 16:00 UTC the day before.
        let start = day_start(d, 480);
        assert_eq!(start, d * DAY_MS - 8 * 3_600_000);
        assert_eq!(day_of(start, 480), d);
        assert_eq!(day_of(start - 1, 480), d - 1);
        assert_eq!(hh_mm(start, 480), "00:00");
        assert_eq!(hh_mm(start - 60_000, 480), "23:59");
        // West of UTC, and before 1970.
        assert_eq!(day_of(day_start(d, -300), -300), d);
        assert_eq!(day_of(-1, 0), -1);
        assert_eq!(hh_mm(-60_000, 0), "23:59");
    }
}
