//! Build timestamps: one instant for every date written into an image, taken from
//! `SOURCE_DATE_EPOCH` (reproducible-builds.org) and never from the clock.

/// A UTC calendar instant, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

impl Timestamp {
    /// The instant `secs` seconds after 1970-01-01T00:00:00Z; negative values clamp to the epoch.
    pub fn from_unix(secs: i64) -> Self {
        let secs = secs.max(0);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        Timestamp {
            year: u16::try_from(year).unwrap_or(u16::MAX),
            month,
            day,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
        }
    }

    /// Reads `SOURCE_DATE_EPOCH`; unset means 0 (1970-01-01) so that a build without it is
    /// still reproducible.
    pub fn from_env() -> Result<Self, String> {
        source_date_epoch().map(Self::from_unix)
    }
}

/// `SOURCE_DATE_EPOCH` in seconds, 0 when unset: what every date on the media comes from, the
/// dates the syslinux installer writes included.
pub fn source_date_epoch() -> Result<i64, String> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v
            .trim()
            .parse::<i64>()
            .map_err(|e| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds: {e}")),
        Err(_) => Ok(0),
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_epoch_and_known_instants_convert_to_calendar_dates() {
        assert_eq!(
            Timestamp::from_unix(0),
            Timestamp {
                year: 1970,
                month: 1,
                day: 1,
                hour: 0,
                minute: 0,
                second: 0
            }
        );
        // 2024-02-29T12:34:56Z
        assert_eq!(
            Timestamp::from_unix(1_709_210_096),
            Timestamp {
                year: 2024,
                month: 2,
                day: 29,
                hour: 12,
                minute: 34,
                second: 56
            }
        );
        assert_eq!(Timestamp::from_unix(-5), Timestamp::from_unix(0));
    }
}
