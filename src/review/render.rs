//! Rendering a [`Review`] as the `logs summary` text and its stable JSON form.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::analyze::{Outcome, Review};
use super::stamp::{human_secs, Stamp};
use super::usage::render_value;

fn opt_stamp(stamp: Option<Stamp>) -> String {
    stamp.map_or_else(|| "-".to_string(), |s| s.to_string())
}

/// The JSON summary (keys documented in the module doc and `docs/logs-json.md`).
pub fn summary_json(review: &Review) -> Value {
    let latency = &review.probe.latency;
    json!({
        "period": {
            "from": review.from,
            "to": review.to,
        },
        "files": review.files.len(),
        "file_list": review.files,
        "lines": review.lines,
        "unknown_lines": review.unknown_lines,
        "counts": review.counts,
        "probe": {
            "successes": review.probe.successes,
            "errors": review.probe.errors,
            "latency_ms": {
                "p50": latency.percentile(50.0),
                "p95": latency.percentile(95.0),
                "p99": latency.percentile(99.0),
                "max": latency.max(),
            },
        },
        "restart_limit_hits": review.restart_limit_hits,
        "incidents": review.incidents,
        "usage": review.usage.summary(),
        "usage_history": {
            "files": review.usage.files,
            "passes": review.usage.passes,
            "unknown_lines": review.usage.unknown_lines,
            "from": review.usage.from,
            "to": review.usage.to,
        },
    })
}

/// The usage block of the text summary: one line per item (min, p95, max), nothing when
/// no usage history was found.
fn usage_text(review: &Review, out: &mut String) {
    let usage = &review.usage;
    if usage.passes == 0 {
        return;
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Usage ({} sampling passes, {} .. {})",
        usage.passes,
        opt_stamp(usage.from),
        opt_stamp(usage.to)
    );
    for (name, item) in usage.summary() {
        let show = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| render_value(&name, v));
        let missing = if item.missing > 0 {
            format!("  ({} pass(es) without a figure)", item.missing)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {name:<20}min {}  p95 {}  max {}{missing}",
            show(item.min),
            show(item.p95),
            show(item.max)
        );
    }
}

fn outcome_text(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Ready => "ready again",
        Outcome::Recovered => "recovered without a kill",
        Outcome::Superseded => "superseded by the next incident before READY",
        Outcome::Faulted => "restart limit reached, server left down",
        Outcome::Open => "still down at the end of the logs",
        Outcome::Suppressed => "held back by a pause: not killed, not recovered",
        Outcome::Reported => "reported, nothing to recover",
    }
}

fn since(from: Stamp, at: Option<Stamp>) -> String {
    match at {
        Some(at) => format!("{at} (+{})", human_secs(at.0 - from.0)),
        None => "-".to_string(),
    }
}

/// The human summary: period, counts, probe statistics, one block per incident.
pub fn summary_text(review: &Review) -> String {
    let mut out = String::new();
    let c = &review.counts;
    let p = &review.probe;
    let ms = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| format!("{v} ms"));
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "Period:      {} .. {}",
        opt_stamp(review.from),
        opt_stamp(review.to)
    );
    let _ = writeln!(out, "Files:       {}", review.files.len());
    for file in &review.files {
        let _ = writeln!(out, "             {file}");
    }
    let _ = writeln!(
        out,
        "Lines:       {} ({} unknown, skipped)",
        review.lines, review.unknown_lines
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "Counts");
    for (name, n) in [
        ("starts", c.starts),
        ("READYs", c.readys),
        ("crashes", c.crashes),
        ("probe timeouts", c.probe_timeouts),
        ("app timeouts", c.app_timeouts),
        ("exhaustions", c.exhaustions),
        ("smart kills", c.kills),
        ("restarts", c.restarts),
        ("restart-limit hits", c.restart_limit_hits),
        ("pauses", c.pauses),
        ("OOM kills", c.oom_kills),
    ] {
        let _ = writeln!(out, "  {name:<20}{n}");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Probe");
    let _ = writeln!(out, "  {:<20}{}", "successes", p.successes);
    let _ = writeln!(out, "  {:<20}{}", "errors", p.errors);
    let _ = writeln!(
        out,
        "  {:<20}p50 {}  p95 {}  p99 {}  max {}",
        "latency",
        ms(p.latency.percentile(50.0)),
        ms(p.latency.percentile(95.0)),
        ms(p.latency.percentile(99.0)),
        ms(p.latency.max())
    );
    usage_text(review, &mut out);
    if !review.restart_limit_hits.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Restart limit reached");
        for at in &review.restart_limit_hits {
            let _ = writeln!(out, "  {at}");
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Incidents: {}", review.incidents.len());
    for incident in &review.incidents {
        let from = incident.detected_at;
        let _ = writeln!(
            out,
            "  #{} {}  detected {}",
            incident.id, incident.kind, from
        );
        let _ = writeln!(out, "     why:             {}", incident.reason);
        let lag = match (incident.last_good_probe_at, incident.detection_lag_secs) {
            (Some(at), Some(secs)) => format!("{} (last good probe {at})", human_secs(secs)),
            _ => "- (no good probe before it)".to_string(),
        };
        let _ = writeln!(out, "     detection lag:   {lag}");
        let _ = writeln!(
            out,
            "     failover:        {}",
            since(from, incident.failover_at)
        );
        let diag = match (incident.diagnostics_at, incident.diagnostics_secs) {
            (Some(at), Some(secs)) => format!("{at} (took {})", human_secs(secs)),
            (Some(at), None) => format!("{at} (did not finish in the logs)"),
            _ => "-".to_string(),
        };
        let _ = writeln!(out, "     diagnostics:     {diag}");
        let _ = writeln!(
            out,
            "     killed:          {}",
            since(from, incident.killed_at)
        );
        let _ = writeln!(
            out,
            "     READY again:     {}",
            since(from, incident.ready_again_at)
        );
        let back = match (incident.in_service_at, incident.out_of_service_secs) {
            (Some(at), Some(secs)) => format!("{} (until {at})", human_secs(secs)),
            _ => "-".to_string(),
        };
        let _ = writeln!(out, "     out of service:  {back}");
        let _ = writeln!(
            out,
            "     outcome:         {}",
            outcome_text(incident.outcome)
        );
        if let Some(file) = &incident.diagnostics_file {
            let _ = writeln!(out, "     diagnostics file: {file}");
        }
    }
    out
}
