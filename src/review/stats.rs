//! Bounded-memory probe statistics: a fixed log-bucket latency histogram (exact to the
//! millisecond below one second, ~1.6 % above) and a self-coarsening latency-over-time
//! series for the report's chart. Both stay the same size for a thousand or a billion probes.

use std::collections::BTreeMap;

/// Values below this many milliseconds get one bucket per millisecond.
const LINEAR_MS: u64 = 1000;
/// Sub-buckets per doubling above `LINEAR_MS`.
const SUB_BUCKETS: u64 = 64;
/// Doublings above `LINEAR_MS` covered (1 s · 2^40 is far beyond any probe timeout).
const DOUBLINGS: u64 = 40;

/// Latency histogram with an exact maximum.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    buckets: Vec<u64>,
    count: u64,
    max: Option<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: vec![0; (LINEAR_MS + DOUBLINGS * SUB_BUCKETS) as usize],
            count: 0,
            max: None,
        }
    }
}

fn bucket_of(ms: u64) -> usize {
    if ms < LINEAR_MS {
        return ms as usize;
    }
    let ratio = ms / LINEAR_MS;
    let doubling = u64::from(63 - ratio.leading_zeros()).min(DOUBLINGS - 1);
    let base = LINEAR_MS << doubling;
    let sub = ((ms.saturating_sub(base)) * SUB_BUCKETS / base).min(SUB_BUCKETS - 1);
    (LINEAR_MS + doubling * SUB_BUCKETS + sub) as usize
}

/// The value a bucket stands for: exact in the linear range, the middle of the bucket above.
fn value_of(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < LINEAR_MS {
        return bucket;
    }
    let doubling = (bucket - LINEAR_MS) / SUB_BUCKETS;
    let sub = (bucket - LINEAR_MS) % SUB_BUCKETS;
    let base = LINEAR_MS << doubling;
    base + (2 * sub + 1) * base / (2 * SUB_BUCKETS)
}

impl LatencyHistogram {
    pub fn record(&mut self, ms: u64) {
        self.buckets[bucket_of(ms)] += 1;
        self.count += 1;
        self.max = Some(self.max.map_or(ms, |m| m.max(ms)));
    }

    pub fn max(&self) -> Option<u64> {
        self.max
    }

    /// Nearest-rank percentile (`p` in 0–100]; never above the exact maximum.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(value_of(bucket).min(self.max.unwrap_or(u64::MAX)));
            }
        }
        self.max
    }
}

/// One time slice of the chart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesPoint {
    /// Start of the slice (log seconds).
    pub at: i64,
    pub width_secs: i64,
    pub count: u64,
    pub sum_ms: u64,
    pub max_ms: u64,
    pub errors: u64,
}

/// Probe latency over time in at most `2 * target` slices: when there are more, the
/// slices double in width and merge. Out-of-order samples (clock jumps) land in their slice.
#[derive(Debug, Clone)]
pub struct LatencySeries {
    target: usize,
    width: i64,
    slices: BTreeMap<i64, SeriesPoint>,
}

impl LatencySeries {
    pub fn new(target: usize) -> Self {
        LatencySeries {
            target: target.max(1),
            width: 1,
            slices: BTreeMap::new(),
        }
    }

    fn slot(&mut self, at: i64) -> &mut SeriesPoint {
        let start = at.div_euclid(self.width) * self.width;
        let width = self.width;
        self.slices.entry(start).or_insert(SeriesPoint {
            at: start,
            width_secs: width,
            count: 0,
            sum_ms: 0,
            max_ms: 0,
            errors: 0,
        })
    }

    pub fn record(&mut self, at: i64, latency_ms: Option<u64>) {
        let slot = self.slot(at);
        if let Some(ms) = latency_ms {
            slot.count += 1;
            slot.sum_ms += ms;
            slot.max_ms = slot.max_ms.max(ms);
        }
        self.coarsen_if_needed();
    }

    pub fn record_error(&mut self, at: i64) {
        self.slot(at).errors += 1;
        self.coarsen_if_needed();
    }

    fn coarsen_if_needed(&mut self) {
        while self.slices.len() > 2 * self.target {
            self.width *= 2;
            let old = std::mem::take(&mut self.slices);
            for (_, point) in old {
                let start = point.at.div_euclid(self.width) * self.width;
                let width = self.width;
                let merged = self.slices.entry(start).or_insert(SeriesPoint {
                    at: start,
                    width_secs: width,
                    count: 0,
                    sum_ms: 0,
                    max_ms: 0,
                    errors: 0,
                });
                merged.count += point.count;
                merged.sum_ms += point.sum_ms;
                merged.max_ms = merged.max_ms.max(point.max_ms);
                merged.errors += point.errors;
            }
        }
    }

    pub fn points(&self) -> impl Iterator<Item = &SeriesPoint> {
        self.slices.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exact_below_one_second() {
        let mut h = LatencyHistogram::default();
        for ms in [156, 16, 31, 16, 15, 78, 16, 156] {
            h.record(ms);
        }
        assert_eq!(h.percentile(50.0), Some(16));
        assert_eq!(h.percentile(95.0), Some(156));
        assert_eq!(h.percentile(99.0), Some(156));
        assert_eq!(h.max(), Some(156));
        assert_eq!(LatencyHistogram::default().percentile(50.0), None);
    }

    proptest! {
        #[test]
        fn percentiles_are_close_to_exact(mut values in proptest::collection::vec(0u64..10_000_000, 1..400), p in 1.0f64..100.0) {
            let mut h = LatencyHistogram::default();
            for &v in &values { h.record(v); }
            values.sort_unstable();
            let rank = ((p / 100.0) * values.len() as f64).ceil().max(1.0) as usize;
            let exact = values[rank - 1];
            let got = h.percentile(p).unwrap();
            let tolerance = if exact < LINEAR_MS { 0 } else { exact / 60 + 1 };
            prop_assert!(got.abs_diff(exact) <= tolerance, "p{} exact {} got {}", p, exact, got);
            prop_assert_eq!(h.max(), values.last().copied());
        }

        #[test]
        fn series_stays_bounded(samples in proptest::collection::vec((0i64..10_000_000, 0u64..5000), 1..2000)) {
            let mut s = LatencySeries::new(50);
            for &(at, ms) in &samples { s.record(at, Some(ms)); }
            prop_assert!(s.points().count() <= 100);
            let total: u64 = s.points().map(|p| p.count).sum();
            prop_assert_eq!(total, samples.len() as u64);
            let max = s.points().map(|p| p.max_ms).max();
            prop_assert_eq!(max, samples.iter().map(|&(_, ms)| ms).max());
        }
    }
}
