//! The self-contained HTML incident report (`qoscntrlr report --html FILE`): summary
//! table, probe latency over time with incidents marked, the server's memory and CPU over
//! time (from the usage history) with the same incidents marked, downtime per incident,
//! restart-limit hits and each incident's raw lines in a foldable block. Hand-written
//! inline SVG and CSS: no scripts, no network, no external assets.

use std::fmt::Write as _;

use super::analyze::{Outcome, Review};
use super::stamp::{human_secs, Stamp};
use super::usage::{render_value, UsagePoint, UsageSeries};

/// Escape text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1040px;color:#1d2430;padding:0 1em}\
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #d8dee8;padding-bottom:.2em}\
.meta{color:#5a6473;margin-top:0}table{border-collapse:collapse;margin:.5em 0}\
td,th{border:1px solid #d8dee8;padding:.3em .7em;text-align:left;font-variant-numeric:tabular-nums}\
th{background:#f1f4f8}td.n{text-align:right}.bad{color:#b3261e;font-weight:600}\
.grid{display:flex;gap:2em;flex-wrap:wrap}svg{background:#fbfcfd;border:1px solid #d8dee8}\
svg text{font-size:11px;fill:#5a6473;font-family:system-ui,sans-serif}\
details{margin:.4em 0;border:1px solid #d8dee8;border-radius:4px;padding:.3em .6em}\
summary{cursor:pointer;font-weight:600}pre{font-size:12px;overflow-x:auto;background:#f6f8fa;padding:.6em}";

const CHART_W: f64 = 960.0;
const CHART_H: f64 = 300.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 40.0;

/// Round up to 1, 2 or 5 times a power of ten.
fn nice_ceiling(value: f64) -> f64 {
    if value <= 1.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if value <= step * magnitude {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

/// Incidents on a time chart: a band from detection to READY again (or to `end`, the end
/// of the chart), labelled with the incident's number.
fn incident_bands(review: &Review, x: &dyn Fn(i64) -> f64, chart_end: i64, out: &mut String) {
    let plot_h = CHART_H - TOP - BOTTOM;
    let mut last_label_x = f64::NEG_INFINITY;
    for incident in &review.incidents {
        let start = x(incident.detected_at.0);
        // From the decision to READY and probing well (or READY, or the end).
        let end = incident
            .in_service_at
            .or(incident.ready_again_at)
            .map_or(x(chart_end), |r| x(r.0))
            .max(start + 2.0);
        let _ = writeln!(
            out,
            "<rect class=\"incident\" x=\"{start:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{plot_h}\" fill=\"#d93025\" fill-opacity=\"0.18\"><title>#{} {} at {}</title></rect>",
            end - start,
            incident.id,
            escape(&incident.kind),
            incident.detected_at,
        );
        // Labels of incidents close together would overprint: label the first only.
        if start - last_label_x >= 24.0 {
            last_label_x = start;
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" style=\"fill:#b3261e\">#{}</text>",
                start + 2.0,
                TOP + 12.0,
                incident.id
            );
        }
    }
}

/// The time axis of a chart (five labelled ticks) and its two axis lines.
fn time_axis(from: Stamp, span: f64, x: &dyn Fn(i64) -> f64, out: &mut String) {
    let plot_w = CHART_W - LEFT - RIGHT;
    let plot_h = CHART_H - TOP - BOTTOM;
    for i in 0..=4 {
        let at = from.0 + ((span * f64::from(i)) / 4.0) as i64;
        let px = x(at);
        let label = Stamp(at).to_string();
        let anchor = match i {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = writeln!(
            out,
            "<line x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#9aa5b4\"/><text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
            TOP + plot_h,
            TOP + plot_h + 5.0,
            TOP + plot_h + 18.0,
            escape(&label)
        );
    }
    let _ = writeln!(
        out,
        "<line x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{:.1}\" stroke=\"#9aa5b4\"/><line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#9aa5b4\"/>",
        TOP + plot_h,
        LEFT + plot_w,
        TOP + plot_h,
        TOP + plot_h
    );
}

fn latency_chart(review: &Review, out: &mut String) {
    let (Some(from), Some(to)) = (review.from, review.to) else {
        out.push_str("<p>No timestamped lines: nothing to chart.</p>\n");
        return;
    };
    let span = (to.0 - from.0).max(1) as f64;
    let plot_w = CHART_W - LEFT - RIGHT;
    let plot_h = CHART_H - TOP - BOTTOM;
    let x = |at: i64| LEFT + ((at - from.0) as f64 / span).clamp(0.0, 1.0) * plot_w;
    let max_ms = review.series.iter().map(|p| p.max_ms).max().unwrap_or(0);
    let top_ms = nice_ceiling(max_ms as f64);
    // A few multi-second outliers would flatten everything else: switch to a log scale
    // when the slowest probe is far above the typical one.
    let typical = review.probe.latency.percentile(95.0).unwrap_or(0) as f64;
    let log_scale = top_ms >= 1000.0 && top_ms > 10.0 * typical.max(1.0);
    let y = |ms: f64| {
        let fraction = if log_scale {
            (ms + 1.0).log10() / (top_ms + 1.0).log10()
        } else {
            ms / top_ms
        };
        TOP + plot_h - fraction.clamp(0.0, 1.0) * plot_h
    };

    let _ = writeln!(
        out,
        "<svg id=\"latency-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{CHART_W}\" height=\"{CHART_H}\" viewBox=\"0 0 {CHART_W} {CHART_H}\" role=\"img\" aria-label=\"Probe latency over time\">"
    );
    incident_bands(review, &x, to.0, out);
    for at in &review.restart_limit_hits {
        let px = x(at.0);
        let _ = writeln!(
            out,
            "<line class=\"restart-limit\" x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{TOP}\" y2=\"{:.1}\" stroke=\"#7b1fa2\" stroke-width=\"2\" stroke-dasharray=\"4 3\"><title>restart limit reached at {at}</title></line>",
            TOP + plot_h
        );
    }
    // Axes and grid.
    let ticks: Vec<f64> = if log_scale {
        std::iter::once(0.0)
            .chain(
                std::iter::successors(Some(1.0), |t| Some(t * 10.0)).take_while(|t| *t <= top_ms),
            )
            .collect()
    } else {
        (0..=4).map(|i| top_ms * f64::from(i) / 4.0).collect()
    };
    for ms in ticks {
        let py = y(ms);
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{py:.1}\" y2=\"{py:.1}\" stroke=\"#e3e8ef\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{ms} ms</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            py + 4.0
        );
    }
    time_axis(from, span, &x, out);
    // Latency: the maximum per time slice as a line with dots, the mean as a lighter line.
    let with_samples: Vec<_> = review.series.iter().filter(|p| p.count > 0).collect();
    let centre = |p: &super::stats::SeriesPoint| x(p.at + p.width_secs / 2);
    if !with_samples.is_empty() {
        let max_points: Vec<String> = with_samples
            .iter()
            .map(|p| format!("{:.1},{:.1}", centre(p), y(p.max_ms as f64)))
            .collect();
        let mean_points: Vec<String> = with_samples
            .iter()
            .map(|p| {
                format!(
                    "{:.1},{:.1}",
                    centre(p),
                    y(p.sum_ms as f64 / p.count as f64)
                )
            })
            .collect();
        let _ = writeln!(out, "<polyline class=\"latency-mean\" fill=\"none\" stroke=\"#8ab4f8\" stroke-width=\"1.5\" points=\"{}\"/>", mean_points.join(" "));
        let _ = writeln!(out, "<polyline class=\"latency-max\" fill=\"none\" stroke=\"#1a73e8\" stroke-width=\"1.5\" points=\"{}\"/>", max_points.join(" "));
        if with_samples.len() <= 120 {
            for p in &with_samples {
                let _ = writeln!(
                    out,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"#1a73e8\"><title>{} max {} ms</title></circle>",
                    centre(p),
                    y(p.max_ms as f64),
                    Stamp(p.at),
                    p.max_ms
                );
            }
        }
    }
    for p in review.series.iter().filter(|p| p.errors > 0) {
        let px = centre(p);
        let _ = writeln!(
            out,
            "<line class=\"probe-error\" x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#d93025\" stroke-width=\"2\"><title>{} probe error(s) at {}</title></line>",
            TOP + plot_h - 10.0,
            TOP + plot_h,
            p.errors,
            Stamp(p.at)
        );
    }
    out.push_str("</svg>\n<p class=\"meta\">Dark blue: slowest probe per time slice; light blue: mean; red bands: incidents from detection to READY again; red ticks: probe errors; purple dashes: restart limit reached.</p>\n");
    if log_scale {
        out.push_str(
            "<p class=\"meta\">Latency axis is logarithmic (a few very slow probes).</p>\n",
        );
    }
}

/// Memory and CPU of the server's tree over time (from the usage history), each on its own
/// chart with the incidents as bands on the same time axis as the logs.
fn usage_charts(review: &Review, out: &mut String) {
    let usage = &review.usage;
    let non_empty = |s: &Option<UsageSeries>| s.as_ref().filter(|s| !s.is_empty()).cloned();
    let (memory, cpu) = (non_empty(&usage.memory), non_empty(&usage.cpu));
    if memory.is_none() && cpu.is_none() {
        out.push_str(
            "<p>No usage history (qoscntrlr-usage.jsonl) with the logs: nothing to chart.</p>\n",
        );
        return;
    }
    // One time axis for logs and samples, so a band lines up with the memory it cost.
    let ends = [review.from, review.to, usage.from, usage.to];
    let (Some(from), Some(to)) = (
        ends.iter().flatten().min().copied(),
        ends.iter().flatten().max().copied(),
    ) else {
        return;
    };
    const MB: f64 = 1024.0 * 1024.0;
    if let Some(series) = memory {
        value_chart(
            review,
            &series,
            (from, to),
            ("memory-chart", "Server memory over time", "MB", MB),
            out,
        );
    }
    if let Some(series) = cpu {
        value_chart(
            review,
            &series,
            (from, to),
            ("cpu-chart", "Server CPU over time", "%", 1.0),
            out,
        );
    }
    out.push_str("<p class=\"meta\">Dark line: highest sample per time slice; light line: mean; red bands: incidents from detection to READY again. Memory is the server's whole process tree (PSS where readable); CPU is percent of one core.</p>\n");
    usage_table(review, out);
}

/// Per item of the usage history: samples, min, p95, max.
fn usage_table(review: &Review, out: &mut String) {
    out.push_str("<table id=\"usage\"><tr><th>Item</th><th>Samples</th><th>Without a figure</th><th>Min</th><th>p95</th><th>Max</th></tr>\n");
    for (name, item) in review.usage.summary() {
        let show = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| render_value(&name, v));
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&name),
            item.samples,
            item.missing,
            escape(&show(item.min)),
            escape(&show(item.p95)),
            escape(&show(item.max))
        );
    }
    out.push_str("</table>\n");
}

/// One usage chart: `(id, label, unit, divisor)` turn base units into the axis' unit.
fn value_chart(
    review: &Review,
    series: &UsageSeries,
    (from, to): (Stamp, Stamp),
    (id, label, unit, divisor): (&str, &str, &str, f64),
    out: &mut String,
) {
    let span = (to.0 - from.0).max(1) as f64;
    let plot_w = CHART_W - LEFT - RIGHT;
    let plot_h = CHART_H - TOP - BOTTOM;
    let x = |at: i64| LEFT + ((at - from.0) as f64 / span).clamp(0.0, 1.0) * plot_w;
    let highest = series.points().map(|p| p.max / divisor).fold(0.0, f64::max);
    let top = nice_ceiling(highest);
    let y = |v: f64| TOP + plot_h - (v / divisor / top).clamp(0.0, 1.0) * plot_h;
    let _ = writeln!(
        out,
        "<svg id=\"{id}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{CHART_W}\" height=\"{CHART_H}\" viewBox=\"0 0 {CHART_W} {CHART_H}\" role=\"img\" aria-label=\"{}\">",
        escape(label)
    );
    incident_bands(review, &x, to.0, out);
    for i in 0..=4 {
        let v = top * f64::from(i) / 4.0;
        let py = TOP + plot_h - f64::from(i) / 4.0 * plot_h;
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{py:.1}\" y2=\"{py:.1}\" stroke=\"#e3e8ef\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v} {unit}</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            py + 4.0
        );
    }
    time_axis(from, span, &x, out);
    let centre = |p: &UsagePoint| x(p.at + p.width_secs / 2);
    let line = |value: &dyn Fn(&UsagePoint) -> f64| -> String {
        series
            .points()
            .map(|p| format!("{:.1},{:.1}", centre(p), y(value(p))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let _ = writeln!(
        out,
        "<polyline class=\"usage-mean\" fill=\"none\" stroke=\"#81c995\" stroke-width=\"1.5\" points=\"{}\"/>",
        line(&|p| p.mean())
    );
    let _ = writeln!(
        out,
        "<polyline class=\"usage-max\" fill=\"none\" stroke=\"#188038\" stroke-width=\"1.5\" points=\"{}\"/>",
        line(&|p| p.max)
    );
    let count = series.points().count();
    if count <= 120 {
        for p in series.points() {
            let _ = writeln!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\" fill=\"#188038\"><title>{} max {:.1} {unit}</title></circle>",
                centre(p),
                y(p.max),
                Stamp(p.at),
                p.max / divisor
            );
        }
    }
    out.push_str("</svg>\n");
}

fn downtime_chart(review: &Review, out: &mut String) {
    let rows: Vec<_> = review.incidents.iter().take(200).collect();
    if rows.is_empty() {
        return;
    }
    let longest = rows
        .iter()
        .filter_map(|i| i.downtime_secs)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let row_h = 22.0;
    let label_w = 170.0;
    let bar_w = CHART_W - label_w - 120.0;
    let height = row_h * rows.len() as f64 + 10.0;
    let _ = writeln!(
        out,
        "<svg id=\"downtime-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{CHART_W}\" height=\"{height}\" viewBox=\"0 0 {CHART_W} {height}\" role=\"img\" aria-label=\"Downtime per incident\">"
    );
    for (row, incident) in rows.iter().enumerate() {
        let top = 5.0 + row as f64 * row_h;
        let (width, label, colour) = match incident.downtime_secs {
            Some(secs) => (
                secs.max(0) as f64 / longest * bar_w,
                match (incident.detection_lag_secs, incident.out_of_service_secs) {
                    (Some(lag), Some(oos)) => {
                        format!(
                            "{} (lag {} + out {})",
                            human_secs(secs),
                            human_secs(lag),
                            human_secs(oos)
                        )
                    }
                    (Some(lag), None) => format!("{} (lag {})", human_secs(secs), human_secs(lag)),
                    _ => human_secs(secs),
                },
                "#d93025",
            ),
            None => (bar_w, "still down".to_string(), "#7b1fa2"),
        };
        // The detection lag (last good probe to the decision) is the lighter left part.
        let lag_w = match (incident.detection_lag_secs, incident.downtime_secs) {
            (Some(lag), Some(_)) => (lag.max(0) as f64 / longest * bar_w).min(width),
            _ => 0.0,
        };
        let _ = writeln!(
            out,
            "<text x=\"4\" y=\"{:.1}\">#{} {}</text><rect class=\"lag\" x=\"{label_w}\" y=\"{:.1}\" width=\"{lag_w:.1}\" height=\"{:.1}\" fill=\"#f9ab00\" fill-opacity=\"0.75\"><title>detection lag</title></rect><rect class=\"out-of-service\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\" fill-opacity=\"0.75\"><title>out of service</title></rect><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            top + 14.0,
            incident.id,
            escape(&incident.kind),
            top + 3.0,
            row_h - 6.0,
            label_w + lag_w,
            top + 3.0,
            (width - lag_w).max(1.0),
            row_h - 6.0,
            label_w + width.max(1.0) + 6.0,
            top + 14.0,
            escape(&label)
        );
    }
    out.push_str("</svg>\n");
}

fn cell(stamp: Option<Stamp>) -> String {
    stamp.map_or_else(|| "-".to_string(), |s| s.to_string())
}

/// Render the whole report. `title` names the logs (e.g. the data directory).
pub fn render(review: &Review, title: &str, generated_at: &str) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let c = &review.counts;
    let p = &review.probe;
    let ms = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| format!("{v} ms"));
    let total_down: i64 = review
        .incidents
        .iter()
        .filter_map(|i| i.downtime_secs)
        .sum();
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>qoscntrlr incident report - {}</title><style>{STYLE}</style></head><body>",
        escape(title)
    );
    let _ = writeln!(out, "<h1>qoscntrlr incident report</h1>");
    let _ = writeln!(
        out,
        "<p class=\"meta\">{} &middot; {} .. {} &middot; {} file(s), {} lines ({} unknown) &middot; generated {}</p>",
        escape(title),
        cell(review.from),
        cell(review.to),
        review.files.len(),
        review.lines,
        review.unknown_lines,
        escape(generated_at)
    );
    let _ = writeln!(out, "<h2>Summary</h2><div class=\"grid\"><table id=\"summary\"><tr><th>Event</th><th>Count</th></tr>");
    for (name, n) in [
        ("Server starts", c.starts),
        ("READY", c.readys),
        ("Crashes", c.crashes),
        ("Probe timeouts", c.probe_timeouts),
        ("Application timeouts", c.app_timeouts),
        ("Resource exhaustions", c.exhaustions),
        ("Smart kills", c.kills),
        ("Restarts", c.restarts),
        ("Restart-limit hits", c.restart_limit_hits),
        ("Pauses", c.pauses),
        ("OOM kills", c.oom_kills),
    ] {
        let class = if n > 0 && matches!(name, "Crashes" | "Probe timeouts" | "Restart-limit hits")
        {
            "n bad"
        } else {
            "n"
        };
        let _ = writeln!(
            out,
            "<tr><td>{name}</td><td class=\"{class}\">{n}</td></tr>"
        );
    }
    let _ = writeln!(
        out,
        "</table><table id=\"probe\"><tr><th>Probe</th><th></th></tr>"
    );
    for (name, value) in [
        ("Successes", p.successes.to_string()),
        ("Errors", p.errors.to_string()),
        ("Latency p50", ms(p.latency.percentile(50.0))),
        ("Latency p95", ms(p.latency.percentile(95.0))),
        ("Latency p99", ms(p.latency.percentile(99.0))),
        ("Latency max", ms(p.latency.max())),
        ("Incidents", review.incidents.len().to_string()),
        ("Total downtime", human_secs(total_down)),
    ] {
        let _ = writeln!(
            out,
            "<tr><td>{name}</td><td class=\"n\">{}</td></tr>",
            escape(&value)
        );
    }
    out.push_str("</table></div>\n<h2>Probe latency over time</h2>\n");
    latency_chart(review, &mut out);

    out.push_str("<h2>Memory and CPU over time</h2>\n");
    usage_charts(review, &mut out);

    out.push_str("<h2>Downtime per incident</h2>\n");
    if review.incidents.is_empty() {
        out.push_str("<p>No incidents.</p>\n");
    } else {
        downtime_chart(review, &mut out);
        out.push_str("<table id=\"incidents\"><tr><th>#</th><th>Kind</th><th>Detected</th><th>Failover</th><th>Diagnostics</th><th>Killed</th><th>READY again</th><th>Detection lag</th><th>Out of service</th><th>Downtime</th><th>Outcome</th></tr>\n");
        for i in &review.incidents {
            let diag = match (i.diagnostics_at, i.diagnostics_secs) {
                (Some(at), Some(secs)) => format!("{at} ({})", human_secs(secs)),
                (Some(at), None) => at.to_string(),
                _ => "-".to_string(),
            };
            let outcome = match i.outcome {
                Outcome::Ready => "ready",
                Outcome::Recovered => "recovered",
                Outcome::Superseded => "superseded",
                Outcome::Faulted => "faulted",
                Outcome::Open => "still down",
                Outcome::Suppressed => "held back (paused)",
                Outcome::Reported => "reported",
            };
            let secs = |v: Option<i64>| v.map_or_else(|| "-".to_string(), human_secs);
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                i.id,
                escape(&i.kind),
                i.detected_at,
                cell(i.failover_at),
                escape(&diag),
                cell(i.killed_at),
                cell(i.ready_again_at),
                secs(i.detection_lag_secs),
                secs(i.out_of_service_secs),
                secs(i.downtime_secs),
                outcome
            );
        }
        out.push_str("</table>\n");
    }

    out.push_str("<h2>Restart limit reached</h2>\n");
    if review.restart_limit_hits.is_empty() {
        out.push_str("<p>Never.</p>\n");
    } else {
        out.push_str("<ul id=\"restart-limit-hits\">");
        for at in &review.restart_limit_hits {
            let _ = write!(out, "<li>{at}</li>");
        }
        out.push_str("</ul>\n");
    }

    out.push_str("<h2>Incident details</h2>\n");
    for i in &review.incidents {
        let _ = writeln!(
            out,
            "<details id=\"incident-{}\"><summary>#{} {} at {} &mdash; {}</summary>",
            i.id,
            i.id,
            escape(&i.kind),
            i.detected_at,
            escape(&i.reason)
        );
        if let Some(file) = &i.diagnostics_file {
            let _ = writeln!(out, "<p>Diagnostics: <code>{}</code></p>", escape(file));
        }
        let _ = writeln!(out, "<p class=\"meta\">From {}</p><pre>", escape(&i.file));
        for line in &i.lines {
            let _ = writeln!(out, "{}", escape(line));
        }
        if i.line_count > i.lines.len() as u64 {
            let _ = writeln!(
                out,
                "... {} more line(s)",
                i.line_count - i.lines.len() as u64
            );
        }
        out.push_str("</pre></details>\n");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn nice_axis() {
        assert_eq!(nice_ceiling(156.0), 200.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(4300.0), 5000.0);
    }
}
