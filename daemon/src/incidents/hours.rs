//! Events per hour of a local day, by source: what the wall's "events per hour" chart
//! shows. Read from the store's `event_quarters` (counted by the writer as batches commit)
//! and summed into the day's 24 local hours (the centre's time zone,
//! `stats.utc_offset_minutes`: a whole number of quarter hours, so quarters fall in hours).

use super::{days, stats::Figures, StatsError};
use crate::store::figures::{self, QUARTER_MS};

/// The sources counted, in the order the wall shows them.
pub const SOURCES: [&str; 3] = ["sensor", "camera", "incident"];

/// One local hour of the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hour {
    /// 0..24, local.
    pub hour: u8,
    /// Readings, camera events and reports that came in during it, in [`SOURCES`] order.
    pub counts: [u64; 3],
}

/// The day's 24 hours from `(quarter_ms, source, count)` rows; rows outside the day or of
/// another source are left out.
pub fn sum_hours(day_start: i64, rows: &[(i64, String, i64)]) -> Vec<Hour> {
    let mut hours: Vec<Hour> = (0..24u8)
        .map(|hour| Hour {
            hour,
            ..Hour::default()
        })
        .collect();
    for (quarter, source, n) in rows {
        let (Some(s), Ok(n)) = (SOURCES.iter().position(|x| x == source), u64::try_from(*n)) else {
            continue;
        };
        let h = (quarter - day_start).div_euclid(4 * QUARTER_MS);
        if let Some(hour) = usize::try_from(h).ok().and_then(|h| hours.get_mut(h)) {
            hour.counts[s] += n;
        }
    }
    hours
}

impl Figures {
    /// The hours of local day `day` (`YYYY-MM-DD`; empty = today at `now_ms`).
    pub async fn hours(&self, day: &str, now_ms: i64) -> Result<(String, Vec<Hour>), StatsError> {
        let off = self.cfg.utc_offset_minutes;
        let d = if day.is_empty() {
            days::day_of(now_ms, off)
        } else {
            days::parse_day(day).ok_or_else(|| StatsError::Field {
                field: "day".into(),
                message: format!("`{day}` is not a date YYYY-MM-DD"),
            })?
        };
        let (from, to) = (days::day_start(d, off), days::day_start(d + 1, off));
        let rows = self
            .store
            .read(move |c| figures::event_quarters(c, from, to))
            .await?;
        Ok((days::format_day(d), sum_hours(from, &rows)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY0: i64 = 1_790_000_000_000 - 1_790_000_000_000 % 86_400_000;

    #[test]
    fn quarters_fall_in_their_local_hour_and_sources_keep_apart() {
        let rows = vec![
            (DAY0, "sensor".to_string(), 10),
            (DAY0 + 3 * QUARTER_MS, "sensor".to_string(), 5),
            (DAY0 + 4 * QUARTER_MS, "camera".to_string(), 2),
            (DAY0 + 95 * QUARTER_MS, "incident".to_string(), 1),
            // Outside the day, or not a source: left out.
            (DAY0 + 96 * QUARTER_MS, "sensor".to_string(), 7),
            (DAY0 - QUARTER_MS, "sensor".to_string(), 7),
            (DAY0, "alien".to_string(), 7),
        ];
        let h = sum_hours(DAY0, &rows);
        assert_eq!(h.len(), 24);
        assert_eq!(h[0].counts, [15, 0, 0]);
        assert_eq!(h[1].counts, [0, 2, 0]);
        assert_eq!(h[23].counts, [0, 0, 1]);
        let total: u64 = h.iter().flat_map(|x| x.counts).sum();
        assert_eq!(total, 18);
    }

    #[test]
    fn a_day_in_utc_plus_eight_starts_at_sixteen_utc() {
        let off = 8 * 60;
        let d = days::parse_day("2026-11-24").unwrap();
        let start = days::day_start(d, off);
        // 00:30 local on the 24th is 16:30 UTC on the 23rd: the local day's first hour.
        let rows = vec![(start + 2 * QUARTER_MS, "sensor".to_string(), 3)];
        assert_eq!(sum_hours(start, &rows)[0].counts, [3, 0, 0]);
    }
}
