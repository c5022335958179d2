//! The usage history in the log review: `qoscntrlr-usage*.jsonl` found next to the logs
//! (or named on the command line) gives per-item statistics (samples, passes without a
//! figure, min, max, p95) for `logs summary`, and memory and CPU over time for the HTML
//! report's charts. Streaming and bounded: per item one relative-error histogram and, for
//! the charts, at most a few hundred self-coarsening time slices, however long the history.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike as _, Timelike as _};
use serde::Serialize;

use super::files::for_each_line;
use super::stamp::Stamp;
use super::ReviewError;
use crate::rules::{Item, Unit};
use crate::usage::{is_usage_name, parse_line};

/// Growth factor between histogram buckets: any percentile is within 0.05 % of the value
/// it stands for (min and max are exact), so `812 MB` never shows as `811 MB`. Only
/// buckets that were hit are stored: a few hundred for a day of a server's memory.
const GAMMA: f64 = 1.001;
/// Values at or below this are counted as zero (an idle CPU, an empty queue).
const ZERO: f64 = 1e-9;
/// Slices kept per chart series before they double in width.
const SERIES_TARGET: usize = 300;

/// A relative-error histogram of non-negative values (the DDSketch idea): bucket `i`
/// holds values in `(GAMMA^(i-1), GAMMA^i]`, so its size depends on the range of the
/// values (at most ~35,000 buckets from 0.01 to petabytes, far fewer in practice), never on their number.
#[derive(Debug, Clone, Default)]
pub struct ValueHistogram {
    zeros: u64,
    buckets: BTreeMap<i32, u64>,
    count: u64,
    min: Option<f64>,
    max: Option<f64>,
    /// Every value so far was a whole number (counts, bytes): percentiles are rounded.
    whole: bool,
}

impl ValueHistogram {
    pub fn record(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        if self.count == 0 {
            self.whole = true;
        }
        self.whole &= value.fract() == 0.0;
        self.count += 1;
        self.min = Some(self.min.map_or(value, |m| m.min(value)));
        self.max = Some(self.max.map_or(value, |m| m.max(value)));
        if value <= ZERO {
            self.zeros += 1;
        } else {
            let index = (value.ln() / GAMMA.ln()).ceil() as i32;
            *self.buckets.entry(index).or_insert(0) += 1;
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn min(&self) -> Option<f64> {
        self.min
    }

    pub fn max(&self) -> Option<f64> {
        self.max
    }

    /// Nearest-rank percentile (`p` in (0, 100]), kept within the exact min and max.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        let (min, max) = (self.min?, self.max?);
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = self.zeros;
        let mut value = if seen >= rank { Some(0.0) } else { None };
        if value.is_none() {
            for (&index, &n) in &self.buckets {
                seen += n;
                if seen >= rank {
                    // The middle of the bucket, in relative terms.
                    value = Some(2.0 * GAMMA.powi(index) / (GAMMA + 1.0));
                    break;
                }
            }
        }
        let value = value.unwrap_or(max).clamp(min, max);
        Some(if self.whole { value.round() } else { value })
    }
}

/// One item's figures over the history.
#[derive(Debug, Clone, Default)]
pub struct ItemStats {
    pub values: ValueHistogram,
    /// Passes in which the item could not be sampled (listed under `missing`).
    pub missing: u64,
}

/// One time slice of a usage chart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UsagePoint {
    /// Start of the slice (log seconds, the controller's local time).
    pub at: i64,
    pub width_secs: i64,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl UsagePoint {
    pub fn mean(&self) -> f64 {
        self.sum / self.count.max(1) as f64
    }

    fn merge(&mut self, other: &UsagePoint) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }
}

/// A value over time in at most `2 * target` slices: when there are more, the slices
/// double in width and merge (min, max and mean stay exact per slice).
#[derive(Debug, Clone)]
pub struct UsageSeries {
    target: usize,
    width: i64,
    slices: BTreeMap<i64, UsagePoint>,
}

impl UsageSeries {
    pub fn new(target: usize) -> Self {
        UsageSeries {
            target: target.max(1),
            width: 1,
            slices: BTreeMap::new(),
        }
    }

    pub fn record(&mut self, at: i64, value: f64) {
        let point = UsagePoint {
            at: at.div_euclid(self.width) * self.width,
            width_secs: self.width,
            count: 1,
            sum: value,
            min: value,
            max: value,
        };
        self.slices
            .entry(point.at)
            .and_modify(|p| p.merge(&point))
            .or_insert(point);
        while self.slices.len() > 2 * self.target {
            self.width *= 2;
            let width = self.width;
            let old = std::mem::take(&mut self.slices);
            for (_, mut point) in old {
                point.at = point.at.div_euclid(width) * width;
                point.width_secs = width;
                self.slices
                    .entry(point.at)
                    .and_modify(|p| p.merge(&point))
                    .or_insert(point);
            }
        }
    }

    pub fn points(&self) -> impl Iterator<Item = &UsagePoint> {
        self.slices.values()
    }

    pub fn is_empty(&self) -> bool {
        self.slices.is_empty()
    }
}

/// The usage history as the review sees it.
#[derive(Debug, Clone, Default)]
pub struct UsageStats {
    /// Usage files read, in the order read.
    pub files: Vec<String>,
    /// Sampling passes read (lines within `--since`/`--until`).
    pub passes: u64,
    /// Lines that are not a usage pass (junk, a truncated last line).
    pub unknown_lines: u64,
    pub from: Option<Stamp>,
    pub to: Option<Stamp>,
    /// Per item, by name (`memory`, `cpu`, `disk_free:/var`, ...).
    pub items: BTreeMap<String, ItemStats>,
    /// The server tree's memory (bytes) and CPU (% of one core) over time; only when the
    /// review keeps series (the report).
    pub memory: Option<UsageSeries>,
    pub cpu: Option<UsageSeries>,
}

/// A usage time stamp (RFC 3339 with the controller's offset) as a log stamp: the same
/// local wall-clock the log lines carry, so samples line up with incidents.
pub fn stamp_of(ts: &str) -> Option<Stamp> {
    let t = DateTime::parse_from_rfc3339(ts).ok()?.naive_local();
    Stamp::from_fields(
        i64::from(t.year()),
        i64::from(t.month()),
        i64::from(t.day()),
        i64::from(t.hour()),
        i64::from(t.minute()),
        i64::from(t.second()),
    )
}

/// The unit of an item named in the usage file (`None` for a name this version does not
/// know: its figures are still counted, just not labelled).
pub fn unit_of(name: &str) -> Option<Unit> {
    Item::parse(name, Path::new("/")).ok().map(|i| i.unit())
}

/// A value of an item as operators read it (`812 MB`, `4.5%`); plain for unknown items.
pub fn render_value(name: &str, value: f64) -> String {
    match Item::parse(name, Path::new("/")) {
        Ok(item) => item.render(value),
        Err(_) => format!("{value}"),
    }
}

fn unit_name(unit: Unit) -> &'static str {
    match unit {
        Unit::Bytes => "bytes",
        Unit::Percent => "percent",
        Unit::Count => "count",
        Unit::Load => "load",
        Unit::Millis => "ms",
    }
}

/// One item in the JSON summary.
#[derive(Debug, Clone, Serialize)]
pub struct ItemSummary {
    pub unit: Option<&'static str>,
    pub samples: u64,
    pub missing: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub p95: Option<f64>,
}

impl UsageStats {
    fn new(keep_series: bool) -> Self {
        UsageStats {
            memory: keep_series.then(|| UsageSeries::new(SERIES_TARGET)),
            cpu: keep_series.then(|| UsageSeries::new(SERIES_TARGET)),
            ..Default::default()
        }
    }

    /// Take one line of a usage file.
    pub fn feed(&mut self, raw: &[u8], since: Option<Stamp>, until: Option<Stamp>) {
        let text = String::from_utf8_lossy(raw);
        if text.trim().is_empty() {
            return;
        }
        let Some(sample) = parse_line(&text) else {
            self.unknown_lines += 1;
            return;
        };
        let Some(at) = stamp_of(&sample.ts) else {
            self.unknown_lines += 1;
            return;
        };
        if since.is_some_and(|s| at < s) || until.is_some_and(|u| at > u) {
            return;
        }
        self.passes += 1;
        self.from = Some(self.from.map_or(at, |f| f.min(at)));
        self.to = Some(self.to.map_or(at, |t| t.max(at)));
        for (name, value) in &sample.values {
            self.items
                .entry(name.clone())
                .or_default()
                .values
                .record(*value);
            let series = match name.as_str() {
                "memory" => self.memory.as_mut(),
                "cpu" => self.cpu.as_mut(),
                _ => None,
            };
            if let Some(series) = series {
                series.record(at.0, *value);
            }
        }
        for name in &sample.missing {
            self.items.entry(name.clone()).or_default().missing += 1;
        }
    }

    /// Per item: unit, samples, missing, min, max, p95 (base units).
    pub fn summary(&self) -> BTreeMap<String, ItemSummary> {
        self.items
            .iter()
            .map(|(name, stats)| {
                let v = &stats.values;
                (
                    name.clone(),
                    ItemSummary {
                        unit: unit_of(name).map(unit_name),
                        samples: v.count(),
                        missing: stats.missing,
                        min: v.min(),
                        max: v.max(),
                        p95: v.percentile(95.0),
                    },
                )
            })
            .collect()
    }
}

/// The usage files among `paths`: `qoscntrlr-usage*.jsonl` in a directory given, or a
/// file given by name. Oldest first (rotated files carry their stamp; the live file last).
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ReviewError> {
    let mut found = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|source| ReviewError::Read {
                path: path.clone(),
                source,
            })?;
            for entry in entries.flatten() {
                let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
                if is_file && entry.file_name().to_str().is_some_and(is_usage_name) {
                    found.push(entry.path());
                }
            }
        } else if is_usage_path(path) {
            found.push(path.clone());
        }
    }
    // `qoscntrlr-usage-<stamp>.jsonl` sorts before `qoscntrlr-usage.jsonl` ('-' < '.').
    found.sort();
    found.dedup();
    Ok(found)
}

/// A file named like a usage history (read as one, never as a log).
pub fn is_usage_path(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(is_usage_name)
}

/// Read the usage files among `paths` within the window.
pub fn read(
    paths: &[PathBuf],
    since: Option<Stamp>,
    until: Option<Stamp>,
    keep_series: bool,
) -> Result<UsageStats, ReviewError> {
    let mut stats = UsageStats::new(keep_series);
    for file in discover(paths)? {
        stats.files.push(file.display().to_string());
        for_each_line(&file, |line| stats.feed(line, since, until))?;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lines_into_statistics() {
        let mut stats = UsageStats::new(true);
        for (i, memory) in [100u64, 200, 300, 400].iter().enumerate() {
            let line = format!(
                "{{\"ts\":\"2026-12-02T01:30:0{i}.000+01:00\",\"memory\":{},\"cpu\":{}.5,\"missing\":{{\"load1\":\"no /proc/loadavg\"}}}}\n",
                memory * 1024 * 1024,
                i
            );
            stats.feed(line.as_bytes(), None, None);
        }
        stats.feed(b"garbage\n", None, None);
        stats.feed(b"\n", None, None);
        assert_eq!((stats.passes, stats.unknown_lines), (4, 1));
        let summary = stats.summary();
        let memory = &summary["memory"];
        assert_eq!(memory.unit, Some("bytes"));
        assert_eq!(memory.min, Some(100.0 * 1024.0 * 1024.0));
        assert_eq!(memory.max, Some(400.0 * 1024.0 * 1024.0));
        let p95 = memory.p95.unwrap();
        assert!(
            (p95 / (400.0 * 1024.0 * 1024.0) - 1.0).abs() < 0.005,
            "{p95}"
        );
        assert_eq!(summary["cpu"].min, Some(0.5));
        assert_eq!(summary["cpu"].unit, Some("percent"));
        assert_eq!((summary["load1"].samples, summary["load1"].missing), (0, 4));
        assert_eq!(summary["load1"].p95, None);
        // The local wall-clock of the line, as the log has it.
        assert_eq!(
            stats.from,
            Stamp::from_fields(2026, 12, 2, 1, 30, 0),
            "stamp of the first pass"
        );
        let points: Vec<_> = stats.memory.as_ref().unwrap().points().collect();
        assert_eq!(points.len(), 4);
    }

    #[test]
    fn window_limits_the_passes() {
        let mut stats = UsageStats::new(false);
        let since = Stamp::from_fields(2026, 12, 2, 1, 30, 1);
        let until = Stamp::from_fields(2026, 12, 2, 1, 30, 2);
        for i in 0..4 {
            let line = format!("{{\"ts\":\"2026-12-02T01:30:0{i}+01:00\",\"threads\":{i}}}");
            stats.feed(line.as_bytes(), since, until);
        }
        let summary = stats.summary();
        assert_eq!(stats.passes, 2);
        assert_eq!(
            (summary["threads"].min, summary["threads"].max),
            (Some(1.0), Some(2.0))
        );
        assert!(stats.memory.is_none());
    }

    #[test]
    fn zeros_and_whole_numbers() {
        let mut h = ValueHistogram::default();
        assert_eq!(h.percentile(95.0), None);
        for v in [0.0, 0.0, 0.0, 37.0] {
            h.record(v);
        }
        assert_eq!(h.percentile(50.0), Some(0.0));
        assert_eq!(h.percentile(95.0), Some(37.0));
        h.record(f64::NAN);
        assert_eq!(h.count(), 4);
    }

    proptest! {
        #[test]
        fn percentiles_within_a_twentieth_of_a_percent(mut values in proptest::collection::vec(0.0f64..1e13, 1..400), p in 1.0f64..100.0) {
            let mut h = ValueHistogram::default();
            for &v in &values { h.record(v); }
            values.sort_by(f64::total_cmp);
            let rank = ((p / 100.0) * values.len() as f64).ceil().max(1.0) as usize;
            let exact = values[rank - 1];
            let got = h.percentile(p).unwrap();
            prop_assert!((got - exact).abs() <= exact * 0.0005 + 1e-9, "p{} exact {} got {}", p, exact, got);
            prop_assert_eq!(h.max(), values.last().copied());
            prop_assert_eq!(h.min(), values.first().copied());
        }

        #[test]
        fn series_stays_bounded(samples in proptest::collection::vec((0i64..10_000_000, 0.0f64..1e10), 1..2000)) {
            let mut s = UsageSeries::new(50);
            for &(at, v) in &samples { s.record(at, v); }
            prop_assert!(s.points().count() <= 100);
            let total: u64 = s.points().map(|p| p.count).sum();
            prop_assert_eq!(total, samples.len() as u64);
            let max = s.points().map(|p| p.max).fold(f64::MIN, f64::max);
            prop_assert_eq!(max, samples.iter().map(|&(_, v)| v).fold(f64::MIN, f64::max));
        }
    }
}
