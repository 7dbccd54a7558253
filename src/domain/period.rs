//! Calendar-month periods in UTC: `[1st 00:00, next 1st 00:00)`.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};

/// A billing period, identified by its year and month.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    pub year: i32,
    pub month: u32,
}

impl Period {
    /// The earliest period usage may be reported for: an earlier one is a mistake.
    pub const FIRST: Period = Period {
        year: 2000,
        month: 1,
    };

    /// The period that contains `at`.
    pub fn containing(at: DateTime<Utc>) -> Self {
        Self {
            year: at.year(),
            month: at.month(),
        }
    }

    pub fn start(self) -> DateTime<Utc> {
        first_of(self.year, self.month)
    }

    pub fn end(self) -> DateTime<Utc> {
        self.next().start()
    }

    #[must_use]
    pub fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    #[must_use]
    pub fn previous(self) -> Self {
        if self.month == 1 {
            Self {
                year: self.year - 1,
                month: 12,
            }
        } else {
            Self {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    /// `"YYYY-MM"`.
    pub fn label(self) -> String {
        format!("{:04}-{:02}", self.year, self.month)
    }

    /// Parses `"YYYY-MM"`.
    pub fn parse(s: &str) -> Option<Self> {
        let (year, month) = s.split_once('-')?;
        if year.len() != 4 || month.len() != 2 {
            return None;
        }
        let year = year.parse().ok()?;
        let month = month.parse().ok()?;
        (1..=12).contains(&month).then_some(Self { year, month })
    }
}

/// The first instant of the period after the one containing `at`: the next 1st strictly
/// after `at`.
pub fn next_first_after(at: DateTime<Utc>) -> DateTime<Utc> {
    Period::containing(at).end()
}

fn first_of(year: i32, month: u32) -> DateTime<Utc> {
    let date = NaiveDate::from_ymd_opt(year, month, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        // Proven invariant: month is 1..=12 by construction and day 1 exists in every month.
        .expect("the 1st of a valid month exists");
    Utc.from_utc_datetime(&date)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn period_bounds_wrap_the_year() {
        let p = Period::containing(t("2026-12-15T10:00:00Z"));
        assert_eq!(p.label(), "2026-12");
        for (year, month, label) in [
            (987, 1, "0987-01"),
            (10_000, 10, "10000-10"),
            (-5, 3, "-005-03"),
        ] {
            assert_eq!(Period { year, month }.label(), label);
            assert_eq!(Period::parse(label).is_some(), (0..=9999).contains(&year));
        }
        assert_eq!(p.start(), t("2026-12-01T00:00:00Z"));
        assert_eq!(p.end(), t("2027-01-01T00:00:00Z"));
        assert_eq!(p.previous().label(), "2026-11");
        assert_eq!(Period::parse("2027-01"), Some(p.next()));
        assert_eq!(Period::parse("2027-13"), None);
        assert_eq!(Period::parse("27-01"), None);
    }

    #[test]
    fn next_first_is_strictly_after() {
        assert_eq!(
            next_first_after(t("2026-03-01T00:00:00Z")),
            t("2026-04-01T00:00:00Z")
        );
        assert_eq!(
            next_first_after(t("2026-02-28T23:59:59Z")),
            t("2026-03-01T00:00:00Z")
        );
    }
}
