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
        u => format!("units of {}", human_duration(u)),
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

/// `5 minutes`, `1 minute`, `30 seconds`, `1500 milliseconds`: the reference's wording
/// (whole minutes as minutes, anything finer in the largest exact unit).
pub fn human_duration(d: Duration) -> String {
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

/// Memory and disk figures as operators read them: `812 MB`.
pub fn human_bytes(bytes: u64) -> String {
    let mb = bytes as f64 / (1024.0 * 1024.0);
    if mb < 10.0 && bytes % (1024 * 1024) != 0 {
        format!("{mb:.1} MB")
    } else {
        format!("{} MB", mb.round() as u64)
    }
}
