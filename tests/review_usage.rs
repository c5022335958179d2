//! The usage history in the log review, through the real binary: `logs summary --json`
//! gives per-item min, max and p95 from `qoscntrlr-usage*.jsonl` next to the logs (rotated
//! files included, junk skipped, `--since`/`--until` applied), the text summary names
//! them, and `report --html` charts memory and CPU over time with the incidents marked on
//! the same time axis.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const MB: u64 = 1024 * 1024;

fn run(args: &[&str], paths: &[&Path]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_qoscntrlr"))
        .args(args)
        .args(paths)
        .env_remove("QOSCNTRLR_CONFIG")
        .output()
        .expect("run qoscntrlr");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn design_log() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/logs/design/qoscntrlr201205080015.out")
}

/// A data directory with the design log (a probe timeout detected at 00:37:43, READY
/// again at 00:38:35 or so) and a usage history from 00:15:00 to 00:39:40, one pass per
/// 20 s: memory climbs 1 MB per pass from 100 MB, CPU is 5 % except 90 % at 00:30:00,
/// `load1` missing in every tenth pass; the first half in a rotated file.
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(design_log(), dir.path().join("qoscntrlr201205080015.out")).unwrap();
    let mut rotated = String::new();
    let mut live = String::from("not json at all\n");
    for i in 0..75u64 {
        let secs = 15 * 60 + i * 20;
        let ts = format!("2012-05-08T00:{:02}:{:02}.000-04:00", secs / 60, secs % 60);
        let cpu = if secs == 30 * 60 { 90.0 } else { 5.0 };
        let memory = (100 + i) * MB;
        let line = if i % 10 == 9 {
            format!("{{\"ts\":\"{ts}\",\"memory\":{memory},\"cpu\":{cpu},\"threads\":12,\"missing\":{{\"load1\":\"no /proc/loadavg\"}}}}\n")
        } else {
            format!("{{\"ts\":\"{ts}\",\"memory\":{memory},\"cpu\":{cpu},\"threads\":12,\"load1\":0.5}}\n")
        };
        if i < 40 {
            rotated.push_str(&line);
        } else {
            live.push_str(&line);
        }
    }
    // A truncated last line (the controller was killed mid-write).
    live.push_str("{\"ts\":\"2012-05-08T00:40");
    std::fs::write(
        dir.path().join("qoscntrlr-usage-20120508002800.jsonl"),
        rotated,
    )
    .unwrap();
    std::fs::write(dir.path().join("qoscntrlr-usage.jsonl"), live).unwrap();
    dir
}

#[test]
fn summary_json_gives_min_max_p95_per_item() {
    let dir = data_dir();
    let j: Value =
        serde_json::from_str(&run(&["logs", "summary", "--json"], &[dir.path()])).unwrap();
    let memory = &j["usage"]["memory"];
    assert_eq!(memory["unit"], "bytes");
    assert_eq!(memory["samples"], 75);
    assert_eq!(memory["min"].as_f64(), Some((100 * MB) as f64));
    assert_eq!(memory["max"].as_f64(), Some((174 * MB) as f64));
    // Nearest rank: the 72nd of 75 ascending values is 171 MB (within 0.05 %).
    let p95 = memory["p95"].as_f64().unwrap();
    assert!(
        (p95 / (171 * MB) as f64 - 1.0).abs() < 0.0005,
        "memory p95 {p95}"
    );
    let cpu = &j["usage"]["cpu"];
    assert_eq!(
        (cpu["min"].as_f64(), cpu["max"].as_f64()),
        (Some(5.0), Some(90.0))
    );
    assert_eq!(cpu["p95"].as_f64(), Some(5.0), "one spike is not the p95");
    assert_eq!(j["usage"]["threads"]["p95"].as_f64(), Some(12.0));
    let load = &j["usage"]["load1"];
    assert_eq!(
        (load["samples"].as_u64(), load["missing"].as_u64()),
        (Some(68), Some(7))
    );
    let history = &j["usage_history"];
    assert_eq!(history["passes"], 75);
    assert_eq!(history["unknown_lines"], 2, "junk and the truncated line");
    assert_eq!(history["files"].as_array().unwrap().len(), 2);
    assert_eq!(history["from"], "2012-05-08T00:15:00");
    // The usage files are not read as logs.
    assert_eq!(j["files"], 1);
    assert_eq!(j["unknown_lines"], 0);

    // The window applies to the samples too.
    let j: Value = serde_json::from_str(&run(
        &[
            "logs",
            "summary",
            "--json",
            "--since",
            "2012-05-08 00:30",
            "--until",
            "2012-05-08 00:31",
        ],
        &[dir.path()],
    ))
    .unwrap();
    // `--until 00:31` takes the whole minute: 00:30:00 to 00:31:40.
    assert_eq!(j["usage"]["memory"]["samples"], 6);
    assert_eq!(j["usage"]["cpu"]["max"].as_f64(), Some(90.0));
    assert_eq!(
        j["usage"]["memory"]["min"].as_f64(),
        Some((145 * MB) as f64)
    );

    // A usage file named on the command line is read as one.
    let live = dir.path().join("qoscntrlr-usage.jsonl");
    let j: Value = serde_json::from_str(&run(
        &["logs", "summary", "--json"],
        &[&design_log(), &live],
    ))
    .unwrap();
    assert_eq!(j["usage"]["memory"]["samples"], 35);
    assert_eq!(j["unknown_lines"], 0);
}

#[test]
fn summary_text_mentions_the_figures() {
    let dir = data_dir();
    let text = run(&["logs", "summary"], &[dir.path()]);
    assert!(
        text.contains("Usage (75 sampling passes, 2012/05/08 00:15:00 .. 2012/05/08 00:39:40)"),
        "{text}"
    );
    let memory = text
        .lines()
        .find(|l| l.trim_start().starts_with("memory"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        memory.contains("min 100 MB")
            && memory.contains("p95 171 MB")
            && memory.contains("max 174 MB"),
        "{memory}"
    );
    let load = text
        .lines()
        .find(|l| l.trim_start().starts_with("load1"))
        .unwrap();
    assert!(load.contains("(7 pass(es) without a figure)"), "{load}");
    // Without a usage history the summary says nothing about usage.
    let bare = tempfile::tempdir().unwrap();
    std::fs::copy(design_log(), bare.path().join("qoscntrlr201205080015.out")).unwrap();
    assert!(!run(&["logs", "summary"], &[bare.path()]).contains("Usage"));
    let j: Value =
        serde_json::from_str(&run(&["logs", "summary", "--json"], &[bare.path()])).unwrap();
    assert_eq!(j["usage"], serde_json::json!({}));
    assert_eq!(j["usage_history"]["passes"], 0);
}

/// The `<svg id=...>...</svg>` element of a page.
fn svg<'a>(page: &'a str, id: &str) -> &'a str {
    let start = page
        .find(&format!("<svg id=\"{id}\""))
        .unwrap_or_else(|| panic!("no {id}"));
    let end = start + page[start..].find("</svg>").unwrap();
    &page[start..end]
}

/// The x (`x` of a rect, `cx` of a circle) of the element whose title starts with `title`.
fn x_of(svg: &str, title: &str) -> f64 {
    let at = svg
        .find(title)
        .unwrap_or_else(|| panic!("no {title} in {svg}"));
    let tag = &svg[svg[..at].rfind('<').unwrap()..at];
    let value = tag
        .split_once(" x=\"")
        .or_else(|| tag.split_once(" cx=\""))
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no x in {tag}"));
    value[..value.find('"').unwrap()].parse().unwrap()
}

#[test]
fn report_charts_memory_and_cpu_beside_the_incidents() {
    let dir = data_dir();
    let out = dir.path().join("report.html");
    run(&["report", "--html", out.to_str().unwrap()], &[dir.path()]);
    let page = std::fs::read_to_string(&out).unwrap();
    for forbidden in ["<script", "src=", "href=", "<link", "@import", "url("] {
        assert!(!page.contains(forbidden), "external content '{forbidden}'");
    }
    assert!(page.contains("<h2>Memory and CPU over time</h2>"));
    let memory = svg(&page, "memory-chart");
    let cpu = svg(&page, "cpu-chart");
    for chart in [memory, cpu] {
        assert!(chart.contains("class=\"usage-max\""));
        assert!(
            chart.contains("class=\"incident\""),
            "incident band on the usage chart"
        );
    }
    assert!(memory.contains("MB</text>") && cpu.contains("%</text>"));
    // One point per pass (75 passes fit), the highest at 174 MB.
    assert_eq!(memory.matches("<circle").count(), 75);
    assert!(memory.contains("max 174.0 MB"), "{memory}");
    assert!(cpu.contains("max 90.0 %"));
    // The band starts where the probe timeout was detected (00:37:43): between the
    // samples of 00:37:40 and 00:38:00 on the same time axis.
    let band = x_of(memory, "<title>#1 probe-timeout");
    let before = x_of(memory, "<title>2012/05/08 00:37:40 max");
    let after = x_of(memory, "<title>2012/05/08 00:38:00 max");
    assert!(before < band && band < after, "{before} < {band} < {after}");
    // The per-item table.
    assert!(page.contains("<table id=\"usage\">"));
    assert!(page.contains("<td>memory</td><td class=\"n\">75</td><td class=\"n\">0</td><td class=\"n\">100 MB</td><td class=\"n\">171 MB</td><td class=\"n\">174 MB</td>"), "usage table");

    // Without a usage history the section says so.
    let bare = tempfile::tempdir().unwrap();
    std::fs::copy(design_log(), bare.path().join("qoscntrlr201205080015.out")).unwrap();
    let out = bare.path().join("report.html");
    run(&["report", "--html", out.to_str().unwrap()], &[bare.path()]);
    let page = std::fs::read_to_string(&out).unwrap();
    assert!(page.contains("No usage history (qoscntrlr-usage.jsonl) with the logs"));
    assert!(!page.contains("id=\"memory-chart\""));
}
