//! Business days: each store trades in its own time zone, and its day ends
//! at a configured cutoff. A sale at or after the cutoff belongs to the next
//! business day; the clearing files of a day hold exactly its sales.

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;

/// A store's trading calendar.
#[derive(Debug, Clone, Copy)]
pub struct BusinessCalendar {
    pub time_zone: Tz,
    /// Local time at which a business day ends. A business day is named by
    /// the calendar date that holds most of its hours: with an evening cutoff
    /// (noon or later, e.g. 23:00) sales from the cutoff on belong to the next
    /// date; with a morning cutoff (before noon, e.g. 04:00) sales before the
    /// cutoff still belong to the previous date. Midnight means the business
    /// day is simply the local calendar date.
    pub cutoff: NaiveTime,
}

impl BusinessCalendar {
    /// The business date an instant belongs to.
    pub fn business_date(&self, at: DateTime<Utc>) -> NaiveDate {
        let local = at.with_timezone(&self.time_zone);
        let date = local.date_naive();
        let noon = NaiveTime::from_hms_opt(12, 0, 0).expect("noon is a valid time");
        if self.cutoff >= noon && local.time() >= self.cutoff {
            date.checked_add_days(Days::new(1))
                .expect("date far from the end of the calendar")
        } else if self.cutoff < noon && local.time() < self.cutoff {
            date.checked_sub_days(Days::new(1))
                .expect("date far from the start of the calendar")
        } else {
            date
        }
    }

    /// The local calendar date of an instant (what a customer calls "today").
    pub fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.time_zone).date_naive()
    }
}

/// Formats a date as the API's "YYYY-MM-DD".
pub fn format_date(date: NaiveDate) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calendar(zone: Tz, cutoff: &str) -> BusinessCalendar {
        BusinessCalendar {
            time_zone: zone,
            cutoff: NaiveTime::parse_from_str(cutoff, "%H:%M").unwrap(),
        }
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn date(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    /// Taipei (UTC+8) with a 23:00 cutoff: a minute before is today, the cutoff itself is tomorrow.
    #[test]
    fn taipei_cutoff_moves_late_sales_to_next_day() {
        let taipei = calendar(chrono_tz::Asia::Taipei, "23:00");
        assert_eq!(
            taipei.business_date(utc("2026-11-23T14:59:59Z")),
            date("2026-11-23")
        );
        assert_eq!(
            taipei.business_date(utc("2026-11-23T15:00:00Z")),
            date("2026-11-24")
        );
        // Just after local midnight: still the business day that began at yesterday's cutoff.
        assert_eq!(
            taipei.business_date(utc("2026-11-23T16:00:01Z")),
            date("2026-11-24")
        );
        assert_eq!(
            taipei.local_date(utc("2026-11-23T15:30:00Z")),
            date("2026-11-23")
        );
    }

    /// Tokyo (UTC+9) with a midnight cutoff: the business date is the local date, across UTC midnight.
    #[test]
    fn tokyo_midnight_cutoff_is_local_date() {
        let tokyo = calendar(chrono_tz::Asia::Tokyo, "00:00");
        assert_eq!(
            tokyo.business_date(utc("2026-11-23T14:59:59Z")),
            date("2026-11-23")
        );
        assert_eq!(
            tokyo.business_date(utc("2026-11-23T15:00:00Z")),
            date("2026-11-24")
        );
        // 23:30 UTC on the 23rd is already 08:30 on the 24th in Tokyo.
        assert_eq!(
            tokyo.business_date(utc("2026-11-23T23:30:00Z")),
            date("2026-11-24")
        );
    }

    /// A morning cutoff (04:00 Tokyo): sales after midnight but before 04:00 still belong to yesterday.
    #[test]
    fn morning_cutoff_in_tokyo_keeps_night_sales_on_previous_day() {
        let tokyo = calendar(chrono_tz::Asia::Tokyo, "04:00");
        // 03:59 local on the 24th.
        assert_eq!(
            tokyo.business_date(utc("2026-11-23T18:59:00Z")),
            date("2026-11-23")
        );
        // 04:00 local on the 24th starts business day 24th.
        assert_eq!(
            tokyo.business_date(utc("2026-11-23T19:00:00Z")),
            date("2026-11-24")
        );
        // 00:30 local on the 1st of a month and year: still New Year's Eve's business day.
        assert_eq!(
            tokyo.business_date(utc("2026-12-31T15:30:00Z")),
            date("2026-12-31")
        );
    }

    /// Dates print as the API's YYYY-MM-DD.
    #[test]
    fn formats_dates() {
        assert_eq!(format_date(date("2026-01-05")), "2026-01-05");
    }
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub id: String,
    pub name: String,
    pub time_zone: Tz,
    /// Local time at which the business day ends; sales from then on belong to the next day.
    pub cutoff: NaiveTime,
}
