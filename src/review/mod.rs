//! Log review for support cases (issue 6): reads `qoscntrlr*.out`/`.log` files — ours or
//! the original Domino controller's — in time order, streaming, and answers "what
//! happened, when, how long were users down, and why" as a summary (text or JSON), a
//! timeline, or a self-contained HTML report. Owns file discovery and ordering, line
//! recognition (the log format) and the incident model; no other effect than reading.
//!
//! # JSON summary (stable; see also `docs/logs-json.md`)
//!
//! ```text
//! period.{from,to}            first/last timestamp seen ("2012-05-08T00:37:41", log local time) or null
//! files                       number of files read; file_list: their paths in reading order
//! lines, unknown_lines        lines read; lines without the `YYYY/MM/DD HH:MM:SS` shape
//! counts.{starts,readys,crashes,probe_timeouts,app_timeouts,exhaustions,kills,restarts,
//!         restart_limit_hits,pauses,oom_kills}
//! probe.{successes,errors,latency_ms.{p50,p95,p99,max}}   latencies null without samples
//! incidents[] {id, kind, class, reason, detected_at, last_good_probe_at, detection_lag_secs,
//!              failover_at, diagnostics_at, diagnostics_secs, killed_at, ready_again_at,
//!              in_service_at, out_of_service_secs, downtime_secs, diagnostics_file,
//!              restart_limit_hit, outcome, file, line_count, lines (first 40)}
//! usage.<item> {unit, samples, missing, min, max, p95}   from qoscntrlr-usage*.jsonl, base units
//! usage_history.{files, passes, unknown_lines, from, to}
//! ```

mod analyze;
mod files;
pub mod html;
mod line;
mod render;
mod stamp;
mod stats;
pub mod usage;

use std::path::PathBuf;

pub use analyze::{Analyzer, EventKind, Options, Outcome, Review, TimelineEntry};
pub use files::{discover, is_log_file_name};
pub use render::{summary_json, summary_text};
pub use stamp::Stamp;

/// What can go wrong while reviewing logs.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("{}: no such file or directory", .0.display())]
    NotFound(PathBuf),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--{flag} '{value}': not a time (expected YYYY-MM-DD[ HH:MM[:SS]], YYYY/MM/DD HH:MM:SS, today, yesterday, now, or an age such as 1h, 30m, 2d)"
    )]
    BadTime { flag: &'static str, value: String },
    #[error("--event '{0}': unknown event (expected one of: {list})", list = event_names())]
    UnknownEvent(String),
}

fn event_names() -> String {
    EventKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `--since`/`--until` arguments into stamps.
pub fn parse_window(
    since: Option<&str>,
    until: Option<&str>,
) -> Result<(Option<Stamp>, Option<Stamp>), ReviewError> {
    use chrono::{Datelike as _, Timelike as _};
    let wall = chrono::Local::now();
    let now = Stamp::from_fields(
        i64::from(wall.year()),
        i64::from(wall.month()),
        i64::from(wall.day()),
        i64::from(wall.hour()),
        i64::from(wall.minute()),
        i64::from(wall.second()),
    )
    .unwrap_or(Stamp(wall.naive_local().and_utc().timestamp()));
    parse_window_at(since, until, now)
}

/// [`parse_window`] with the relative forms (`1h`, `yesterday`) counted from `now`.
pub fn parse_window_at(
    since: Option<&str>,
    until: Option<&str>,
    now: Stamp,
) -> Result<(Option<Stamp>, Option<Stamp>), ReviewError> {
    let parse = |flag: &'static str, value: Option<&str>, end_of: bool| {
        value
            .map(|v| {
                Stamp::parse_arg_at(v, end_of, now).ok_or_else(|| ReviewError::BadTime {
                    flag,
                    value: v.to_string(),
                })
            })
            .transpose()
    };
    Ok((parse("since", since, false)?, parse("until", until, true)?))
}

/// `--event` into a filter.
pub fn parse_event(name: &str) -> Result<EventKind, ReviewError> {
    EventKind::parse(name.trim()).ok_or_else(|| ReviewError::UnknownEvent(name.to_string()))
}

/// Review the logs at `paths` (files or directories): discover, order, stream every line
/// through an [`Analyzer`], and hand each timeline entry to `on_entry` as it happens
/// (only when `opts.keep_timeline`). The usage history found there (`qoscntrlr-usage*.jsonl`)
/// is read too, within the same window.
pub fn review_paths(
    paths: &[PathBuf],
    opts: Options,
    mut on_entry: impl FnMut(&TimelineEntry),
) -> Result<Review, ReviewError> {
    let files = discover(paths)?;
    let mut analyzer = Analyzer::new(opts.clone());
    for file in &files {
        if let (Some(until), Some(first)) = (opts.until, file.first_stamp) {
            // Ordered by start: a file that begins after --until holds nothing wanted.
            if first > until {
                continue;
            }
        }
        analyzer.begin_file(&file.path.display().to_string());
        files::for_each_line(&file.path, |line| {
            analyzer.feed(line);
            for entry in analyzer.drain_timeline() {
                on_entry(&entry);
            }
        })?;
    }
    let mut review = analyzer.finish();
    review.usage = usage::read(paths, opts.since, opts.until, opts.keep_series)?;
    Ok(review)
}

/// Review one in-memory text (the round-trip test of the wording table).
pub fn review_text(name: &str, text: &[u8], opts: Options) -> Review {
    let mut analyzer = Analyzer::new(opts);
    analyzer.begin_file(name);
    for line in text.split_inclusive(|&b| b == b'\n') {
        analyzer.feed(line);
    }
    analyzer.finish()
}
