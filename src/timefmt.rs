//! The time formats of the qoscntrlr logs (the log format), as pure functions: the log-line
//! stamp `2012/08/06 06:33:34`, the `TimeDate=20120508T001506,95-04` of OpMsg lines, the
//! `YYYYMMDDHHmm` of log file names. (The log review reads stamps with its own
//! `review::Stamp`.)

use std::fmt::Write;

use chrono::{DateTime, Datelike, Local, NaiveDateTime, Offset, TimeZone, Timelike};

/// Length of a log-line stamp, `YYYY/MM/DD HH:MM:SS`.
pub const LOG_STAMP_LEN: usize = 19;

/// `2012/08/06 06:33:34`: the stamp that starts every log line (local time).
pub fn log_stamp(t: &DateTime<Local>) -> String {
    let mut out = String::with_capacity(LOG_STAMP_LEN);
    push_log_stamp(&mut out, t);
    out
}

/// [`log_stamp`] appended to `out`. Every logged line and every message pays for a stamp,
/// so this writes the digits itself: `write!` with width specifiers cost ~1,800
/// instructions per stamp (callgrind), this ~550, chrono's date arithmetic included.
pub fn push_log_stamp(out: &mut String, t: &DateTime<Local>) {
    push_naive_stamp(out, &t.naive_local());
}

fn push_naive_stamp(out: &mut String, t: &NaiveDateTime) {
    let (y, mo, d, h, mi, s) = fields(t);
    push_year(out, y);
    for (separator, value) in [('/', mo), ('/', d), (' ', h), (':', mi), (':', s)] {
        out.push(separator);
        push_2(out, value);
    }
}

/// `{value:02}` for the 0..=99 of a date or time field (hundredths included).
fn push_2(out: &mut String, value: u32) {
    debug_assert!(value < 100);
    out.push(char::from(b'0' + (value / 10 % 10) as u8));
    out.push(char::from(b'0' + (value % 10) as u8));
}

/// `{year:04}`: four digits for the years a clock shows; anything else (chrono allows
/// negative and five-digit years) the way `write!` has always rendered it.
fn push_year(out: &mut String, year: i32) {
    match u32::try_from(year) {
        Ok(y) if y < 10_000 => {
            push_2(out, y / 100);
            push_2(out, y % 100);
        }
        // Writing to a String cannot fail.
        _ => {
            let _ = write!(out, "{year:04}");
        }
    }
}

/// Year, month, day, hour, minute, second.
fn fields(t: &NaiveDateTime) -> (i32, u32, u32, u32, u32, u32) {
    (
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
    )
}

/// `20120508T001506,95-04`: local date `T` time `,` hundredths, then the UTC offset in
/// whole hours with sign (`-04`, `+01`), or hours and minutes for zones that are not
/// whole hours (`+0530`).
pub fn timedate<Tz: TimeZone>(t: &DateTime<Tz>) -> String {
    let offset_seconds = t.offset().fix().local_minus_utc();
    // A leap second shows as nanoseconds >= 1e9; it still belongs to the same second.
    let hundredths = (t.timestamp_subsec_nanos() / 10_000_000).min(99);
    let (y, mo, d, h, mi, s) = fields(&t.naive_local());
    let sign = if offset_seconds < 0 { '-' } else { '+' };
    let magnitude = offset_seconds.unsigned_abs();
    let (hours, minutes) = (magnitude / 3600, (magnitude % 3600) / 60);
    let mut out = String::with_capacity(24);
    // Digits written directly, as in `push_log_stamp`: every message without a TimeDate
    // of its own gets one.
    push_year(&mut out, y);
    push_2(&mut out, mo);
    push_2(&mut out, d);
    out.push('T');
    for value in [h, mi, s] {
        push_2(&mut out, value);
    }
    out.push(',');
    push_2(&mut out, hundredths);
    out.push(sign);
    if hours < 100 {
        push_2(&mut out, hours);
    } else {
        // Writing to a String cannot fail. (No real offset reaches 100 hours.)
        let _ = write!(out, "{hours:02}");
    }
    if minutes != 0 {
        push_2(&mut out, minutes);
    }
    out
}

/// `201105171528`: the local minute in a log file name (`qoscntrlr201105171528.out`).
pub fn file_stamp<Tz: TimeZone>(t: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    t.format("%Y%m%d%H%M").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::FixedOffset;

    /// `offset_seconds` east of UTC, `local` as `YYYY-MM-DD HH:MM:SS.mmm`.
    fn at(offset_seconds: i32, local: &str) -> DateTime<FixedOffset> {
        let naive = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S%.3f").unwrap();
        FixedOffset::east_opt(offset_seconds)
            .unwrap()
            .from_local_datetime(&naive)
            .unwrap()
    }

    #[test]
    fn timedate_matches_the_reference() {
        let t = at(-4 * 3600, "2012-05-08 00:15:06.950");
        assert_eq!(timedate(&t), "20120508T001506,95-04");
        let t = at(3600, "2012-05-08 00:15:07.409");
        assert_eq!(timedate(&t), "20120508T001507,40+01");
        let t = at(0, "2012-05-08 00:15:07.000");
        assert_eq!(timedate(&t), "20120508T001507,00+00");
        let t = at(5 * 3600 + 1800, "2012-05-08 00:15:07.005");
        assert_eq!(timedate(&t), "20120508T001507,00+0530");
        let t = at(-(3 * 3600 + 1800), "2012-05-08 00:15:07.005");
        assert_eq!(timedate(&t), "20120508T001507,00-0330");
    }

    /// The hand-written digits give exactly what the `write!` patterns they replaced gave.
    #[test]
    fn digits_match_the_format_patterns() {
        for (offset, local) in [
            (-4 * 3600, "2012-05-08 00:15:06.950"),
            (0, "1999-12-31 23:59:59.999"),
            (5 * 3600 + 1800, "0987-01-02 03:04:05.060"),
            (-(13 * 3600 + 45 * 60), "2038-01-19 03:14:07.000"),
        ] {
            let t = at(offset, local);
            let n = t.naive_local();
            let (y, mo, d, h, mi, s) = fields(&n);
            let mut stamp = String::new();
            push_naive_stamp(&mut stamp, &n);
            assert_eq!(
                stamp,
                format!("{y:04}/{mo:02}/{d:02} {h:02}:{mi:02}:{s:02}")
            );
            let hundredths = t.timestamp_subsec_nanos() / 10_000_000;
            let magnitude = offset.unsigned_abs();
            let (hours, minutes) = (magnitude / 3600, (magnitude % 3600) / 60);
            let sign = if offset < 0 { '-' } else { '+' };
            let mut expected =
                format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02},{hundredths:02}{sign}{hours:02}");
            if minutes != 0 {
                expected.push_str(&format!("{minutes:02}"));
            }
            assert_eq!(timedate(&t), expected);
        }
        for year in [-1, 0, 7, 99, 100, 2026, 9999, 10_000, 12_345] {
            let mut out = String::new();
            push_year(&mut out, year);
            assert_eq!(out, format!("{year:04}"));
        }
    }

    #[test]
    fn stamps_and_file_names() {
        let local = Local.with_ymd_and_hms(2011, 5, 17, 15, 28, 9).single();
        // Local zones with a gap at this instant do not exist; guard anyway.
        if let Some(local) = local {
            assert_eq!(file_stamp(&local), "201105171528");
            assert_eq!(log_stamp(&local), "2011/05/17 15:28:09");
        }
    }
}
