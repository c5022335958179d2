//! Text conversions of plain values shared by the configuration reader, the rule grammar
//! and every place that shows a duration or a size to an operator: reading `30s`, `1.5 h`,
//! `512M`, and writing `5 minutes`, `812 MB`. Functions of values only (no I/O), so the
//! core can use them and the shell borrows them from here.

use std::time::Duration;

/// Bytes in a MiB (the `MB` of the size keys: binary units).
pub const MIB: u64 = 1024 * 1024;

/// Longest accepted duration: anything longer is a typo, and adding it to an `Instant`
/// must never overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 24 * 3600);

/// `"value"` or `'value'` → `value` (plain values only; commands keep their quoting).
pub fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if value.len() >= 2 && value.starts_with(quote) && value.ends_with(quote) {
            return &value[1..value.len() - 1];
        }
    }
    value
}

/// How a bare number of `unit` reads in an error: `seconds`, `minutes`, `units of 5 seconds`.
pub fn unit_name(unit: Duration) -> String {
    match unit {
        u if u == Duration::from_millis(1) => "milliseconds".into(),
        u if u == Duration::from_secs(1) => "seconds".into(),
        u if u == Duration::from_secs(60) => "minutes".into(),
        u if u == Duration::from_secs(3600) => "hours".into(),
        u => format!("units of {}", format_duration(u, DurationStyle::Words)),
    }
}

/// Parse a non-negative decimal (`30`, `1.5`) scaled by `unit`, exactly, in `unit`'s
/// integer domain. `None` when it is not such a number or overflows `u128`.
fn scaled_decimal(number: &str, unit: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if whole.len() > 30 || fraction.len() > 18 {
        return None;
    }
    let whole_value: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut total = whole_value.checked_mul(unit)?;
    if !fraction.is_empty() {
        let denominator = 10u128.pow(fraction.len() as u32);
        let fraction_value: u128 = fraction.parse().ok()?;
        total = total.checked_add(fraction_value.checked_mul(unit)? / denominator)?;
    }
    Some(total)
}

/// Split `30s`, `1.5 h`, `5` into the number and the lower-cased suffix.
fn split_number(text: &str) -> (&str, String) {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    (&text[..end], text[end..].trim().to_ascii_lowercase())
}

/// A duration: a bare number is in `default_unit`; a suffix `ms`, `s`, `m`, `min`, `h`
/// (or the words `seconds`, `minutes`, …) overrides it. Used for the ini and for
/// `pause --for`. The error says what was expected.
pub fn parse_duration(text: &str, default_unit: Duration) -> Result<Duration, String> {
    let text = unquote(text.trim()).trim();
    let expected = format!(
        "expected a number of {}, or a number with ms, s, m, min or h, e.g. 30s",
        unit_name(default_unit)
    );
    if text.is_empty() {
        return Err(format!("empty value ({expected})"));
    }
    let (number, suffix) = split_number(text);
    let unit_nanos: u128 = match suffix.as_str() {
        "" => default_unit.as_nanos(),
        "ms" | "msec" | "millisecond" | "milliseconds" => 1_000_000,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000_000_000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000_000_000,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600_000_000_000,
        _ => return Err(format!("\"{text}\" is not a duration ({expected})")),
    };
    let nanos = scaled_decimal(number, unit_nanos)
        .ok_or_else(|| format!("\"{text}\" is not a duration ({expected})"))?;
    if nanos > MAX_DURATION.as_nanos() {
        return Err(format!(
            "\"{text}\" is too long (expected at most {} days)",
            MAX_DURATION.as_secs() / 86_400
        ));
    }
    // In range: MAX_DURATION fits u64 nanoseconds.
    Ok(Duration::from_nanos(nanos as u64))
}

/// A size in bytes: a bare number is in `default_unit` bytes; suffixes `K`/`KB`, `M`/`MB`,
/// `G`/`GB`, `T`/`TB` (binary, 1024) and `B` override it.
pub fn parse_size(text: &str, default_unit: u64) -> Result<u64, String> {
    let text = unquote(text.trim()).trim();
    let unit_name = match default_unit {
        1 => "bytes",
        1024 => "KB",
        MIB => "MB",
        _ => "units",
    };
    let expected = format!(
        "expected a number of {unit_name}, or a number with K, KB, M, MB, G or GB, e.g. 512M"
    );
    if text.is_empty() {
        return Err(format!("empty value ({expected})"));
    }
    let (number, suffix) = split_number(text);
    let unit: u128 = match suffix.as_str() {
        "" => u128::from(default_unit),
        "b" | "byte" | "bytes" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(format!("\"{text}\" is not a size ({expected})")),
    };
    let bytes = scaled_decimal(number, unit)
        .ok_or_else(|| format!("\"{text}\" is not a size ({expected})"))?;
    u64::try_from(bytes).map_err(|_| format!("\"{text}\" is too large ({expected})"))
}

/// How a duration is written. One formatter ([`format_duration`]) serves the whole
/// project; the styles exist because the places that show durations have different,
/// tested texts (the reference's log wording, the compact `status` screen, the aligned
/// columns of the log review, probe errors, helper time limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationStyle {
    /// The reference's wording, for log lines, the configuration header and
    /// `check-config`: whole minutes as minutes, anything finer in the largest exact unit
    /// (`5 minutes`, `1 minute`, `30 seconds`, `1500 milliseconds`, `250 microseconds`).
    Words,
    /// `status`, mail and webhook notes: the two largest units, unpadded, a zero second
    /// left out (`45s`, `3m`, `3m 12s`, `2h 5m`, `3d 4h`); whole seconds.
    Short,
    /// The log review (`logs summary`, `timeline`, `report --html`): the two largest
    /// units with the second one zero-padded so columns line up (`45s`, `5m 00s`,
    /// `2h 03m`, `1d 01h`); whole seconds.
    Aligned,
    /// Probe errors (`timed out after 5s`): whole seconds when exact, else milliseconds
    /// (`1500ms`), in the unit of the probe's `SUCCESS (156ms)` line.
    Compact,
    /// Time limits of helper programs (hooks, nsd, stack tools, mail and webhook sends):
    /// seconds as a decimal number and ` s` (`30 s`, `0.5 s`).
    Seconds,
}

/// `d` written in `style` (see [`DurationStyle`] for each form).
pub fn format_duration(d: Duration, style: DurationStyle) -> String {
    match style {
        DurationStyle::Words => words(d),
        DurationStyle::Short => short(d.as_secs()),
        DurationStyle::Aligned => aligned(d.as_secs()),
        DurationStyle::Compact => {
            if d.subsec_nanos() == 0 && d.as_secs() > 0 {
                format!("{}s", d.as_secs())
            } else {
                format!("{}ms", d.as_millis())
            }
        }
        DurationStyle::Seconds => format!("{} s", d.as_secs_f64()),
    }
}

/// A signed span of whole seconds (the log review subtracts stamps of lines, and a
/// clock set back makes a negative one): [`format_duration`] of its size, `-` before it
/// when negative.
pub fn format_signed_secs(secs: i64, style: DurationStyle) -> String {
    let text = format_duration(Duration::from_secs(secs.unsigned_abs()), style);
    if secs < 0 {
        format!("-{text}")
    } else {
        text
    }
}

fn words(d: Duration) -> String {
    let plural = |n: u128, one: &str, many: &str| {
        if n == 1 {
            format!("{n} {one}")
        } else {
            format!("{n} {many}")
        }
    };
    let millis = d.as_millis();
    if d.subsec_nanos() % 1_000_000 != 0 {
        return format!("{} microseconds", d.as_micros());
    }
    if millis % 1000 != 0 {
        return plural(millis, "millisecond", "milliseconds");
    }
    let seconds = millis / 1000;
    if seconds >= 60 && seconds % 60 == 0 {
        plural(seconds / 60, "minute", "minutes")
    } else {
        plural(seconds, "second", "seconds")
    }
}

fn short(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 && s > 0 {
        format!("{m}m {s}s")
    } else if m > 0 {
        format!("{m}m")
    } else {
        format!("{s}s")
    }
}

fn aligned(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// How a number of bytes is written. One formatter ([`format_bytes`]) for the project;
/// the styles are the tested texts of different places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteStyle {
    /// Measured memory and disk figures in log lines, alerts and rule details: MB
    /// (binary), one decimal below 10 MB when not whole (`812 MB`, `9.5 MB`, `0 MB`).
    Megabytes,
    /// The `status` screen: the largest binary unit, one decimal (`512 B`, `1.5 KiB`,
    /// `3.2 GiB`).
    Binary,
    /// A configured size as the configuration reads it back (`check-config`, the log
    /// header): the largest exact unit, MB at most (`50 MB`, `512 KB`, `100 bytes`).
    Exact,
}

/// `bytes` written in `style` (see [`ByteStyle`] for each form).
pub fn format_bytes(bytes: u64, style: ByteStyle) -> String {
    match style {
        ByteStyle::Megabytes => {
            let mb = bytes as f64 / MIB as f64;
            if mb < 10.0 && bytes % MIB != 0 {
                format!("{mb:.1} MB")
            } else {
                format!("{} MB", mb.round() as u64)
            }
        }
        ByteStyle::Binary => {
            const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
            let mut value = bytes as f64;
            let mut unit = 0;
            while value >= 1024.0 && unit < UNITS.len() - 1 {
                value /= 1024.0;
                unit += 1;
            }
            if unit == 0 {
                format!("{bytes} B")
            } else {
                format!("{value:.1} {}", UNITS[unit])
            }
        }
        ByteStyle::Exact => {
            if bytes % MIB == 0 {
                format!("{} MB", bytes / MIB)
            } else if bytes % 1024 == 0 {
                format!("{} KB", bytes / 1024)
            } else {
                format!("{bytes} bytes")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    const HOUR: u64 = 3600;
    const DAY: u64 = 86_400;

    #[test]
    fn words_are_the_references() {
        let w = |d| format_duration(d, DurationStyle::Words);
        assert_eq!(w(secs(0)), "0 seconds");
        assert_eq!(w(secs(1)), "1 second");
        assert_eq!(w(secs(59)), "59 seconds");
        assert_eq!(w(secs(60)), "1 minute");
        assert_eq!(w(secs(90)), "90 seconds");
        assert_eq!(w(secs(300)), "5 minutes");
        assert_eq!(w(secs(2 * HOUR)), "120 minutes");
        assert_eq!(w(secs(DAY)), "1440 minutes");
        assert_eq!(w(Duration::from_millis(1)), "1 millisecond");
        assert_eq!(w(Duration::from_millis(1500)), "1500 milliseconds");
        assert_eq!(w(Duration::from_micros(250)), "250 microseconds");
    }

    #[test]
    fn short_is_the_status_screens() {
        let s = |n| format_duration(secs(n), DurationStyle::Short);
        assert_eq!(s(0), "0s");
        assert_eq!(s(59), "59s");
        assert_eq!(s(60), "1m");
        assert_eq!(s(192), "3m 12s");
        assert_eq!(s(HOUR - 1), "59m 59s");
        assert_eq!(s(HOUR), "1h 0m");
        assert_eq!(s(3 * HOUR + 14 * 60 + 59), "3h 14m");
        assert_eq!(s(DAY - 1), "23h 59m");
        assert_eq!(s(DAY), "1d 0h");
        assert_eq!(s(3 * DAY + 4 * HOUR), "3d 4h");
        // Sub-second parts are left out, never rounded up.
        assert_eq!(
            format_duration(Duration::from_millis(59_999), DurationStyle::Short),
            "59s"
        );
    }

    #[test]
    fn aligned_is_the_log_reviews() {
        let a = |n| format_duration(secs(n), DurationStyle::Aligned);
        assert_eq!(a(0), "0s");
        assert_eq!(a(59), "59s");
        assert_eq!(a(60), "1m 00s");
        assert_eq!(a(320), "5m 20s");
        assert_eq!(a(HOUR - 1), "59m 59s");
        assert_eq!(a(HOUR), "1h 00m");
        assert_eq!(a(7380), "2h 03m");
        assert_eq!(a(DAY - 1), "23h 59m");
        assert_eq!(a(DAY), "1d 00h");
        assert_eq!(a(90_000), "1d 01h");
        assert_eq!(format_signed_secs(-320, DurationStyle::Aligned), "-5m 20s");
        assert_eq!(format_signed_secs(40, DurationStyle::Aligned), "40s");
        assert_eq!(format_signed_secs(0, DurationStyle::Aligned), "0s");
    }

    #[test]
    fn compact_and_seconds_are_the_probes_and_the_helpers() {
        let c = |d| format_duration(d, DurationStyle::Compact);
        assert_eq!(c(secs(5)), "5s");
        assert_eq!(c(secs(60)), "60s");
        assert_eq!(c(Duration::from_millis(1500)), "1500ms");
        assert_eq!(c(Duration::from_millis(200)), "200ms");
        assert_eq!(c(Duration::ZERO), "0ms");
        let s = |d| format_duration(d, DurationStyle::Seconds);
        assert_eq!(s(secs(30)), "30 s");
        assert_eq!(s(Duration::from_millis(500)), "0.5 s");
        assert_eq!(s(Duration::from_millis(300)), "0.3 s");
        assert_eq!(s(Duration::ZERO), "0 s");
    }

    #[test]
    fn bytes_in_each_style() {
        const KIB: u64 = 1024;
        const GIB: u64 = 1024 * MIB;
        let m = |b| format_bytes(b, ByteStyle::Megabytes);
        assert_eq!(m(0), "0 MB");
        assert_eq!(m(1023), "0.0 MB");
        assert_eq!(m(MIB / 2), "0.5 MB");
        assert_eq!(m(MIB), "1 MB");
        assert_eq!(m(9 * MIB + MIB / 2), "9.5 MB");
        assert_eq!(m(10 * MIB + MIB / 2), "11 MB");
        assert_eq!(m(812 * MIB + MIB / 3), "812 MB");
        assert_eq!(m(2 * GIB), "2048 MB");
        let b = |n| format_bytes(n, ByteStyle::Binary);
        assert_eq!(b(0), "0 B");
        assert_eq!(b(1023), "1023 B");
        assert_eq!(b(KIB), "1.0 KiB");
        assert_eq!(b(KIB + KIB / 2), "1.5 KiB");
        assert_eq!(b(MIB - 1), "1024.0 KiB");
        assert_eq!(b(MIB), "1.0 MiB");
        assert_eq!(b(3 * GIB + GIB / 5), "3.2 GiB");
        assert_eq!(b(1024 * GIB), "1.0 TiB");
        let e = |n| format_bytes(n, ByteStyle::Exact);
        assert_eq!(e(0), "0 MB");
        assert_eq!(e(100), "100 bytes");
        assert_eq!(e(1023), "1023 bytes");
        assert_eq!(e(KIB), "1 KB");
        assert_eq!(e(512 * KIB), "512 KB");
        assert_eq!(e(50 * MIB), "50 MB");
        assert_eq!(e(GIB), "1024 MB");
    }
}
