//! Log timestamps (`YYYY/MM/DD HH:MM:SS`, the controller's local wall-clock time) as plain
//! seconds on a naive calendar, plus the `--since`/`--until` argument forms.
//!
//! Review works on the wall-clock the log was written in: logs from another machine or
//! time zone are read as they are, and a duration is the difference of two such stamps.

use std::fmt;

/// Seconds since 1970-01-01 00:00:00 of the log's own (local, zone-less) calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp(pub i64);

fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn digits(bytes: &[u8]) -> Option<i64> {
    let mut value = 0i64;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(b - b'0');
    }
    Some(value)
}

impl Stamp {
    /// Build from calendar fields; `None` when a field is out of range.
    pub fn from_fields(
        year: i64,
        month: i64,
        day: i64,
        hour: i64,
        min: i64,
        sec: i64,
    ) -> Option<Stamp> {
        let valid = (1..=12).contains(&month)
            && (1..=31).contains(&day)
            && (0..24).contains(&hour)
            && (0..60).contains(&min)
            // 60: a leap second as some clocks print it.
            && (0..=60).contains(&sec);
        valid.then(|| {
            Stamp(days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec)
        })
    }

    /// Parse the 19-byte log prefix `YYYY/MM/DD HH:MM:SS` (nothing else).
    pub fn parse_log(bytes: &[u8]) -> Option<Stamp> {
        if bytes.len() != 19
            || bytes[4] != b'/'
            || bytes[7] != b'/'
            || bytes[10] != b' '
            || bytes[13] != b':'
            || bytes[16] != b':'
        {
            return None;
        }
        Stamp::from_fields(
            digits(&bytes[0..4])?,
            digits(&bytes[5..7])?,
            digits(&bytes[8..10])?,
            digits(&bytes[11..13])?,
            digits(&bytes[14..16])?,
            digits(&bytes[17..19])?,
        )
    }

    /// Parse the `YYYYMMDDHHmm` stamp of a log file name.
    pub fn parse_file_stamp(bytes: &[u8]) -> Option<Stamp> {
        if bytes.len() != 12 {
            return None;
        }
        Stamp::from_fields(
            digits(&bytes[0..4])?,
            digits(&bytes[4..6])?,
            digits(&bytes[6..8])?,
            digits(&bytes[8..10])?,
            digits(&bytes[10..12])?,
            0,
        )
    }

    /// Parse a `--since`/`--until` value: `YYYY-MM-DD[ HH:MM[:SS]]` (also with `T`) or the
    /// log form `YYYY/MM/DD HH:MM:SS`. With `end_of` the least significant field given is
    /// taken as a whole (`--until 2012-05-08` includes that whole day).
    pub fn parse_arg(text: &str, end_of: bool) -> Option<Stamp> {
        let text = text.trim();
        let (date, time) = match text.find([' ', 'T']) {
            Some(at) => (&text[..at], Some(text[at + 1..].trim())),
            None => (text, None),
        };
        let date_parts: Vec<&str> = date.split(['-', '/']).collect();
        let [year, month, day] = date_parts.as_slice() else {
            return None;
        };
        let field = |s: &str, len: usize| (s.len() == len).then(|| digits(s.as_bytes())).flatten();
        let (year, month, day) = (field(year, 4)?, field(month, 2)?, field(day, 2)?);
        let (hour, min, sec, slack) = match time {
            None => (0, 0, 0, 86_399),
            Some(time) => {
                let parts: Vec<&str> = time.split(':').collect();
                match parts.as_slice() {
                    [h, m] => (field(h, 2)?, field(m, 2)?, 0, 59),
                    [h, m, s] => (field(h, 2)?, field(m, 2)?, field(s, 2)?, 0),
                    _ => return None,
                }
            }
        };
        let start = Stamp::from_fields(year, month, day, hour, min, sec)?;
        Some(if end_of {
            Stamp(start.0 + slack)
        } else {
            start
        })
    }

    /// Like [`Stamp::parse_arg`], plus the forms relative to `now` (the local wall-clock
    /// time as a stamp): `now`, `today`, `yesterday`, and an age `N` + `s`/`m`/`min`/`h`/
    /// `d`/`w`, optionally followed by `ago` (`--since 1h`, `--since "2 days ago"`).
    /// `today`/`yesterday` with `end_of` mean the end of that day.
    pub fn parse_arg_at(text: &str, end_of: bool, now: Stamp) -> Option<Stamp> {
        let lower = text.trim().to_ascii_lowercase();
        let day_start = Stamp(now.0.div_euclid(86_400) * 86_400);
        match lower.as_str() {
            "now" => return Some(now),
            "today" => {
                return Some(if end_of {
                    Stamp(day_start.0 + 86_399)
                } else {
                    day_start
                })
            }
            "yesterday" => {
                let start = day_start.0 - 86_400;
                return Some(Stamp(if end_of { start + 86_399 } else { start }));
            }
            _ => {}
        }
        if let Some(stamp) = Stamp::parse_arg(text, end_of) {
            return Some(stamp);
        }
        let age = lower.strip_suffix("ago").unwrap_or(&lower).trim();
        let split = age.find(|c: char| !c.is_ascii_digit())?;
        let (number, unit) = age.split_at(split);
        let number: i64 = number.parse().ok()?;
        let unit_secs = match unit.trim() {
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            "w" | "week" | "weeks" => 7 * 86_400,
            _ => return None,
        };
        Some(Stamp(now.0 - number.checked_mul(unit_secs)?))
    }

    fn fields(self) -> (i64, i64, i64, i64, i64, i64) {
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        let (y, mo, d) = civil_from_days(days);
        (y, mo, d, secs / 3600, secs % 3600 / 60, secs % 60)
    }

    /// ISO 8601 local time without offset (`2012-05-08T00:37:41`), the JSON form.
    pub fn iso(self) -> String {
        let (y, mo, d, h, mi, s) = self.fields();
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}")
    }
}

/// The log's own form, so a timeline line can be grepped for in the log.
impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, mo, d, h, mi, s) = self.fields();
        write!(f, "{y:04}/{mo:02}/{d:02} {h:02}:{mi:02}:{s:02}")
    }
}

/// A span of seconds as the review writes it (`45s`, `5m 20s`, `2h 03m`, `3d 04h`;
/// negative after a clock set back): the aligned style of the one duration formatter.
pub fn human_secs(secs: i64) -> String {
    crate::core::units::format_signed_secs(secs, crate::core::units::DurationStyle::Aligned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_forms_count_back_from_now() {
        let now = Stamp::from_fields(2026, 12, 2, 10, 30, 0).expect("valid");
        let at = |t, end| Stamp::parse_arg_at(t, end, now).map(|s| s.to_string());
        assert_eq!(at("1h", false).as_deref(), Some("2026/12/02 09:30:00"));
        assert_eq!(
            at("90 min ago", false).as_deref(),
            Some("2026/12/02 09:00:00")
        );
        assert_eq!(at("2d", false).as_deref(), Some("2026/11/30 10:30:00"));
        assert_eq!(
            at("yesterday", false).as_deref(),
            Some("2026/12/01 00:00:00")
        );
        assert_eq!(
            at("yesterday", true).as_deref(),
            Some("2026/12/01 23:59:59")
        );
        assert_eq!(at("today", false).as_deref(), Some("2026/12/02 00:00:00"));
        assert_eq!(at("now", true).as_deref(), Some("2026/12/02 10:30:00"));
        assert_eq!(
            at("2012-05-08", false).as_deref(),
            Some("2012/05/08 00:00:00")
        );
        assert_eq!(at("last tuesday", false), None);
        assert_eq!(at("5 fortnights", false), None);
    }

    #[test]
    fn log_stamp_round_trips() {
        let stamp = Stamp::parse_log(b"2012/05/08 00:37:41").unwrap();
        assert_eq!(stamp.to_string(), "2012/05/08 00:37:41");
        assert_eq!(stamp.iso(), "2012-05-08T00:37:41");
        assert_eq!(Stamp::parse_log(b"1970/01/01 00:00:00"), Some(Stamp(0)));
        assert_eq!(
            Stamp::parse_log(b"2024/02/29 23:59:59")
                .unwrap()
                .to_string(),
            "2024/02/29 23:59:59"
        );
    }

    #[test]
    fn malformed_stamps_are_rejected() {
        for bad in [
            &b"2012/13/08 00:37:41"[..],
            b"2012/05/08 24:00:00",
            b"2012-05-08 00:37:41",
            b"2012/05/08 00:37:4x",
            b"2012/05/08 00:37",
        ] {
            assert_eq!(
                Stamp::parse_log(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn argument_forms() {
        let at = |s| Stamp::parse_arg(s, false).map(|s| s.to_string());
        assert_eq!(at("2012-05-08").as_deref(), Some("2012/05/08 00:00:00"));
        assert_eq!(
            at("2012-05-08 00:37").as_deref(),
            Some("2012/05/08 00:37:00")
        );
        assert_eq!(
            at("2012-05-08T00:37:41").as_deref(),
            Some("2012/05/08 00:37:41")
        );
        assert_eq!(
            at("2012/05/08 00:37:41").as_deref(),
            Some("2012/05/08 00:37:41")
        );
        assert_eq!(
            Stamp::parse_arg("2012-05-08", true).unwrap().to_string(),
            "2012/05/08 23:59:59"
        );
        assert_eq!(
            Stamp::parse_arg("2012-05-08 10:15", true)
                .unwrap()
                .to_string(),
            "2012/05/08 10:15:59"
        );
        assert_eq!(at("yesterday"), None);
        assert_eq!(at("2012-5-8"), None);
    }
}
