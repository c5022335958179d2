//! `logs summary` / `logs timeline` on the reference's own example lines (the log format)
//! and on the lines the controller writes, through the real binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_qoscntrlr"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/logs")
        .join(name)
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = bin()
        .args(args)
        .env_remove("QOSCNTRLR_CONFIG")
        .output()
        .expect("run qoscntrlr");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn summary_json(paths: &[&Path], extra: &[&str]) -> Value {
    let mut args = vec!["logs", "summary", "--json"];
    args.extend_from_slice(extra);
    let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    args.extend(paths.iter().map(String::as_str));
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, 0, "stderr: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[test]
fn design_example_lines_give_the_documented_numbers() {
    let j = summary_json(&[&fixture("design")], &[]);
    assert_eq!(j["files"], 2);
    assert_eq!(j["unknown_lines"], 0);
    assert_eq!(j["period"]["from"], "2012-05-08T00:15:09");
    assert_eq!(j["period"]["to"], "2012-08-06T06:33:34");
    let c = &j["counts"];
    assert_eq!(c["starts"], 3);
    assert_eq!(c["readys"], 3);
    assert_eq!(c["crashes"], 1);
    assert_eq!(c["probe_timeouts"], 1);
    assert_eq!(c["app_timeouts"], 0);
    assert_eq!(c["exhaustions"], 0);
    assert_eq!(c["kills"], 1);
    assert_eq!(c["restarts"], 1);
    assert_eq!(c["restart_limit_hits"], 0);
    assert_eq!(c["pauses"], 0);
    let p = &j["probe"];
    assert_eq!(p["successes"], 8);
    assert_eq!(p["errors"], 1);
    assert_eq!(p["latency_ms"]["max"], 156);
    assert_eq!(p["latency_ms"]["p50"], 16);
    assert_eq!(p["latency_ms"]["p95"], 156);
    assert_eq!(p["latency_ms"]["p99"], 156);

    let incidents = j["incidents"].as_array().expect("incidents array");
    assert_eq!(incidents.len(), 2);
    let kill = &incidents[0];
    assert_eq!(kill["kind"], "probe-timeout");
    assert_eq!(kill["detected_at"], "2012-05-08T00:37:41");
    assert_eq!(kill["failover_at"], "2012-05-08T00:37:43");
    assert_eq!(kill["diagnostics_at"], "2012-05-08T00:37:47");
    assert_eq!(kill["diagnostics_secs"], 25);
    assert_eq!(kill["killed_at"], "2012-05-08T00:38:16");
    assert_eq!(kill["ready_again_at"], "2012-05-08T00:39:05");
    assert_eq!(kill["downtime_secs"], 84);
    assert_eq!(kill["outcome"], "ready");
    // The problem began after the last good probe: the 5-minute probe timeout is the
    // detection lag; out of service until READY and probing well again.
    assert_eq!(kill["class"], "probe-timeout");
    assert_eq!(kill["last_good_probe_at"], "2012-05-08T00:32:41");
    assert_eq!(kill["detection_lag_secs"], 300);
    assert_eq!(kill["in_service_at"], "2012-05-08T00:40:05");
    assert_eq!(kill["out_of_service_secs"], 144);
    assert!(kill["lines"][0]
        .as_str()
        .unwrap()
        .contains("The probe thread has not received"));
    let crash = &incidents[1];
    assert_eq!(crash["kind"], "crash");
    assert_eq!(crash["detected_at"], "2012-05-08T01:00:44");
    assert_eq!(crash["ready_again_at"], Value::Null);
    assert_eq!(crash["downtime_secs"], Value::Null);
    assert_eq!(crash["outcome"], "open");
}

#[test]
fn documents_verbatim_one_crash_one_probe_timeout() {
    // the log format blocks in document order: the crash block comes before the smart kill.
    let j = summary_json(&[&fixture("design-verbatim")], &[]);
    assert_eq!(j["counts"]["crashes"], 1);
    assert_eq!(j["counts"]["probe_timeouts"], 1);
    assert_eq!(j["counts"]["kills"], 1);
    assert_eq!(j["probe"]["successes"], 1);
    assert_eq!(j["probe"]["errors"], 1);
    assert_eq!(j["unknown_lines"], 0);
    // The reference's own sections jump back in time: counts hold, no negative durations.
    let j = summary_json(&[&fixture("reference")], &[]);
    assert_eq!(j["counts"]["crashes"], 1);
    assert_eq!(j["counts"]["probe_timeouts"], 1);
    assert_eq!(j["probe"]["successes"], 7);
    assert_eq!(j["probe"]["latency_ms"]["max"], 156);
    for incident in j["incidents"].as_array().unwrap() {
        for key in ["downtime_secs", "diagnostics_secs"] {
            assert!(
                incident[key].as_i64().map_or(true, |v| v >= 0),
                "{key} negative: {incident}"
            );
        }
    }
    // Both documents together: the eight probe successes, max 156 ms.
    let j = summary_json(&[&fixture("design-verbatim"), &fixture("reference")], &[]);
    assert_eq!(j["probe"]["successes"], 8);
    assert_eq!(j["probe"]["latency_ms"]["max"], 156);
}

#[test]
fn summary_text_and_timeline_read_as_a_story() {
    let (code, text, _) = run(&["logs", "summary", &fixture("design").display().to_string()]);
    assert_eq!(code, 0);
    assert!(text.contains("probe timeouts      1"), "{text}");
    assert!(text.contains("max 156 ms"), "{text}");
    assert!(
        text.contains("#1 probe-timeout  detected 2012/05/08 00:37:41"),
        "{text}"
    );

    let (code, timeline, _) = run(&["logs", "timeline", &fixture("design").display().to_string()]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = timeline.lines().collect();
    let position = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no '{needle}' in timeline:\n{timeline}"))
    };
    let order = [
        "2012/05/08 00:15:09 start",
        "2012/05/08 00:15:21 ready",
        "2012/05/08 00:37:41 probe-timeout [#1]",
        "2012/05/08 00:37:43 kill          [#1] QoS Kill: Triggering failover...",
        "2012/05/08 00:38:16 kill          [#1] QoS Kill: Setting kill complete.",
        "2012/05/08 00:38:21 restart",
        "2012/05/08 00:39:05 ready         [#1]",
        "2012/05/08 01:00:44 crash         [#2]",
    ];
    let positions: Vec<usize> = order.iter().map(|n| position(n)).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "out of order:\n{timeline}"
    );
    // One line per detection, not one per detection line.
    assert_eq!(
        lines
            .iter()
            .filter(|l| l[20..].starts_with("probe-timeout "))
            .count(),
        1
    );

    let (code, crashes, _) = run(&[
        "logs",
        "timeline",
        "--event",
        "crash",
        &fixture("design").display().to_string(),
    ]);
    assert_eq!(code, 0);
    assert_eq!(crashes.lines().count(), 1, "{crashes}");
    assert!(crashes.contains("=CRASH"));

    let (code, _, err) = run(&[
        "logs",
        "timeline",
        "--event",
        "explosion",
        &fixture("design").display().to_string(),
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("explosion") && err.contains("probe-timeout"),
        "{err}"
    );
}

#[test]
fn timeline_json_is_one_object_per_line() {
    let (code, out, _) = run(&[
        "logs",
        "timeline",
        "--json",
        "--event",
        "kill",
        &fixture("design").display().to_string(),
    ]);
    assert_eq!(code, 0);
    let entries: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(entries.len(), 4, "{out}");
    assert_eq!(entries[0]["at"], "2012-05-08T00:37:43");
    assert_eq!(entries[0]["event"], "kill");
    assert_eq!(entries[0]["incident"], 1);
    assert_eq!(entries[3]["text"], "QoS Kill: Setting kill complete.");
}

#[test]
fn unwritable_report_names_the_file() {
    let (code, _, err) = run(&[
        "report",
        "--html",
        "/nonexistent-dir/r.html",
        &fixture("design").display().to_string(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent-dir/r.html"), "{err}");
}

#[test]
fn missing_path_is_a_clear_error() {
    let (code, stdout, stderr) = run(&["logs", "summary", "/nonexistent/qoscntrlr-logs"]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("/nonexistent/qoscntrlr-logs") && stderr.contains("no such file"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&[
        "report",
        "--html",
        "/tmp/never-written.html",
        "/nonexistent/x",
    ]);
    assert_eq!(code, 1, "{stderr}");
}

#[test]
fn bad_time_is_a_clear_error() {
    let (code, _, stderr) = run(&[
        "logs",
        "summary",
        "--since",
        "last tuesday",
        &fixture("design").display().to_string(),
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--since 'last tuesday'"), "{stderr}");
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("write fixture");
}

/// A crash loop up to the restart limit, written the way the controller writes it, split
/// over a rotated `.log`, a collision `.log` and the current `.out`.
#[test]
fn controller_written_crash_loop_over_rotated_files() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "qoscntrlr202403010900.log",
        b"2024/03/01 09:00:00 QoS Controller: Starting QOSPipeWatcher\n\
2024/03/01 09:00:00 QoS Controller: QOS_PROBE_TIMEOUT=5 minutes\n\
2024/03/01 09:00:00 QoS Kill: Starting server\n\
2024/03/01 09:00:01 QoS Controller: State STARTING -> READY (first successful probe)\n\
2024/03/01 09:00:01 QoS Controller: Server is ready to process requests\n\
2024/03/01 09:00:01 QoS Probe: SUCCESS (12ms)\n\
2024/03/01 09:01:01 QoS Probe: SUCCESS (1200ms)\n\
2024/03/01 09:02:00 QoS Controller: Server demo has crashed.\n\
2024/03/01 09:02:00 QoS Controller: Server exit: killed by SIGABRT (core dumped)\n\
2024/03/01 09:02:00 QoS Controller: State READY -> CRASHED (server exited)\n",
    );
    // Collision name: the second rename of the same minute; read after the plain one.
    write(
        dir.path(),
        "qoscntrlr202403010900-1.log",
        b"2024/03/01 09:02:05 QoS Kill: Starting server\n\
2024/03/01 09:02:06 QoS Controller: Server demo has crashed.\n\
2024/03/01 09:02:06 QoS Controller: Server exit: exit code 3\n\
2024/03/01 09:02:10 QoS Kill: Starting server\n",
    );
    write(
        dir.path(),
        "qoscntrlr202403010903.out",
        b"2024/03/01 09:02:11 QoS Controller: Server demo has crashed.\n\
2024/03/01 09:02:11 QoS Controller: Server exit: exit code 3\n\
2024/03/01 09:02:11 QoS Controller: Restart limit reached: 3 restarts within 30 minutes; server left down (FAULTED)\n\
2024/03/01 09:02:11 QoS Controller: State CRASHED -> FAULTED (restart limit)\n",
    );
    // Not a controller log: ignored in a directory.
    write(
        dir.path(),
        "notes.txt",
        b"2024/03/01 09:00:00 QoS Controller: Server x has crashed.\n",
    );

    let j = summary_json(&[dir.path()], &[]);
    assert_eq!(j["files"], 3);
    let names: Vec<String> = j["file_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "qoscntrlr202403010900.log",
            "qoscntrlr202403010900-1.log",
            "qoscntrlr202403010903.out"
        ]
    );
    let c = &j["counts"];
    assert_eq!(c["crashes"], 3);
    assert_eq!(c["starts"], 3);
    assert_eq!(c["restarts"], 2);
    assert_eq!(c["readys"], 1);
    assert_eq!(c["restart_limit_hits"], 1);
    assert_eq!(c["kills"], 0);
    assert_eq!(j["probe"]["latency_ms"]["max"], 1200);
    let incidents = j["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 3);
    assert_eq!(incidents[0]["outcome"], "superseded");
    assert_eq!(incidents[0]["downtime_secs"], 6);
    assert_eq!(incidents[1]["outcome"], "superseded");
    assert_eq!(incidents[2]["outcome"], "faulted");
    assert_eq!(incidents[2]["restart_limit_hit"], true);

    let (_, timeline, _) = run(&[
        "logs",
        "timeline",
        "--event",
        "restart-limit",
        &dir.path().display().to_string(),
    ]);
    assert_eq!(timeline.lines().count(), 1);
    assert!(
        timeline.starts_with(
            "2024/03/01 09:02:11 restart-limit [#3] QoS Controller: Restart limit reached"
        ),
        "{timeline}"
    );
    let (_, states, _) = run(&[
        "logs",
        "timeline",
        "--event",
        "state",
        &dir.path().display().to_string(),
    ]);
    assert_eq!(states.lines().count(), 3, "{states}");
}

#[test]
fn app_timeout_exhaustion_pause_and_operator_kill() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "qoscntrlr202403020800.out",
        b"2024/03/02 08:00:00 QoS Controller: Starting QOSPipeWatcher\n\
2024/03/02 08:00:00 QoS Kill: Starting server\n\
2024/03/02 08:00:02 QoS Controller: OpMsg=READY Type=SERVER TimeDate=20240302T080002,00+01\n\
2024/03/02 08:00:02 QoS Controller: Server is ready to process requests\n\
2024/03/02 08:10:00 QoS Applications: Application COMPACT[mail.nsf] has made no progress for 600 seconds\n\
2024/03/02 08:10:01 QoS Kill: Triggering failover...\n\
2024/03/02 08:10:01 QoS Kill: Running nsd...\n\
2024/03/02 08:10:31 QoS Kill: Diagnostics written to /data/diagnostics/nsd_20240302_081001.log\n\
2024/03/02 08:10:31 QoS Kill: Running nsd -kill\n\
2024/03/02 08:10:33 QoS Kill: Setting kill complete.\n\
2024/03/02 08:10:33 QoS Kill: Restarting DominoStarter thread\n\
2024/03/02 08:10:33 QoS Kill: Starting server\n\
2024/03/02 08:11:03 QoS Controller: Server is ready to process requests\n\
2024/03/02 09:00:00 QoS Controller: Command pause from uid 0\n\
2024/03/02 09:00:00 QoS Controller: Paused by uid 0\n\
2024/03/02 09:05:00 QoS Controller: Server has exhausted memory (2100 MB > 2048 MB)\n\
2024/03/02 09:06:00 QoS Probe: SUCCESS (20ms)\n\
2024/03/02 09:30:00 QoS Controller: Resumed by uid 0\n\
2024/03/02 10:00:00 QoS Controller: Command kill from uid 1000\n\
2024/03/02 10:00:00 QoS Kill: Triggering failover...\n\
2024/03/02 10:00:00 QoS Kill: Running nsd...\n\
2024/03/02 10:00:20 QoS Kill: Running nsd -kill\n\
2024/03/02 10:00:21 QoS Kill: Setting kill complete.\n\
2024/03/02 10:00:21 QoS Kill: Restarting DominoStarter thread\n\
2024/03/02 10:00:22 QoS Kill: Starting server\n\
2024/03/02 10:00:40 QoS Controller: Server is ready to process requests\n\
2024/03/02 11:00:00 QoS Controller: Command quit from uid 0\n\
2024/03/02 11:00:05 QoS Controller: Server ended (exit code 0)\n\
2024/03/02 11:05:00 QoS Controller: Command start from uid 0\n\
2024/03/02 11:05:00 QoS Kill: Starting server\n",
    );
    let j = summary_json(&[dir.path()], &[]);
    let c = &j["counts"];
    assert_eq!(c["app_timeouts"], 1);
    assert_eq!(c["exhaustions"], 1);
    assert_eq!(c["kills"], 2);
    assert_eq!(c["pauses"], 1);
    assert_eq!(
        c["restarts"], 2,
        "a start after a requested quit is not a restart"
    );
    assert_eq!(c["starts"], 4);
    assert_eq!(c["readys"], 3);
    let incidents = j["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 3);
    assert_eq!(incidents[0]["kind"], "app-timeout");
    assert_eq!(
        incidents[0]["diagnostics_file"],
        "/data/diagnostics/nsd_20240302_081001.log"
    );
    assert_eq!(incidents[0]["diagnostics_secs"], 30);
    assert_eq!(incidents[0]["downtime_secs"], 63);
    // Exhausted while paused: the kill was held back. A probe answering says nothing
    // about the memory, so it is not "recovered without a kill"; the operator's kill
    // supersedes it. The kinds are the words `status` uses.
    assert_eq!(incidents[1]["kind"], "exhausted-memory");
    assert_eq!(incidents[1]["class"], "exhausted");
    assert_eq!(incidents[1]["outcome"], "suppressed");
    assert_eq!(incidents[1]["in_service_at"], Value::Null);
    assert_eq!(incidents[1]["out_of_service_secs"], Value::Null);
    assert_eq!(incidents[2]["kind"], "operator-kill");
    assert_eq!(incidents[2]["class"], "kill");
    assert_eq!(incidents[2]["downtime_secs"], 40);
    let (_, text, _) = run(&["logs", "summary", &dir.path().display().to_string()]);
    assert!(
        text.contains("held back by a pause: not killed, not recovered"),
        "{text}"
    );
    assert!(!text.contains("recovered without a kill"), "{text}");
}

#[test]
fn tolerant_reading_and_time_window() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"2024/03/03 10:00:00 QoS Probe: SUCCESS (10ms)\r\n");
    bytes.extend_from_slice(b"this is not a log line\n");
    bytes.extend_from_slice(b"2024/03/03 10:01:00 QoS Probe: ERROR: connect \xff\xfe refused\n");
    // A clock jump backwards inside the file: still read in file order.
    bytes.extend_from_slice(b"2024/03/03 09:30:00 QoS Probe: SUCCESS (30ms)\n");
    bytes.extend_from_slice(b"\n");
    bytes.extend_from_slice(b"2024/03/03 11:00:00 QoS Probe: SUCCESS (50ms)\n");
    bytes.extend_from_slice(b"2024/03/03 11:0");
    write(dir.path(), "qoscntrlr202403031000.out", &bytes);

    let j = summary_json(&[dir.path()], &[]);
    assert_eq!(j["unknown_lines"], 2, "the junk line and the truncated one");
    assert_eq!(j["probe"]["successes"], 3);
    assert_eq!(j["probe"]["errors"], 1);
    assert_eq!(j["period"]["from"], "2024-03-03T09:30:00");
    assert_eq!(j["period"]["to"], "2024-03-03T11:00:00");

    let j = summary_json(
        &[dir.path()],
        &["--since", "2024-03-03 10:00", "--until", "2024-03-03 10:59"],
    );
    assert_eq!(j["probe"]["successes"], 1);
    assert_eq!(j["probe"]["errors"], 1);
    assert_eq!(j["probe"]["latency_ms"]["max"], 10);

    // A file named explicitly is read whatever its name.
    let odd = dir.path().join("copied-from-customer.txt");
    std::fs::write(
        &odd,
        b"2024/03/03 12:00:00 QoS Controller: OpMsg=CRASH Type=QOS\n",
    )
    .unwrap();
    let j = summary_json(&[&odd], &[]);
    assert_eq!(j["counts"]["crashes"], 1);
}

/// A crashed server is restarted before its post-mortem file is written: the file's line
/// after READY still belongs to the crash (and an operator's later file does not).
#[test]
fn a_post_mortem_written_after_the_restart_belongs_to_the_crash() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "qoscntrlr202403010900.out",
        b"2024/03/01 09:00:00 QoS Controller: Starting QOSPipeWatcher\n\
2024/03/01 09:00:01 QoS Controller: Server is ready to process requests\n\
2024/03/01 09:02:00 QoS Controller: OpMsg=CRASH Type=QOS ObjectType=ServerName ObjectValue=demo TimeDate=20240301T090200,00+01\n\
2024/03/01 09:02:00 QoS Controller: Server demo has crashed.\n\
2024/03/01 09:02:00 QoS Controller: Server exit: killed by SIGKILL\n\
2024/03/01 09:02:00 QoS Kill: Running nsd...\n\
2024/03/01 09:02:00 QoS Kill: Killed 2 process(es) of the server's tree: 11 12\n\
2024/03/01 09:02:00 QoS Kill: Restarting DominoStarter thread\n\
2024/03/01 09:02:00 QoS Controller: OpMsg=START Type=QOS ObjectType=ServerName ObjectValue=demo ObjectType2=ProcessName ObjectValue2=demo TimeDate=20240301T090200,01+01\n\
2024/03/01 09:02:01 QoS Controller: Server is ready to process requests\n\
2024/03/01 09:02:03 QoS Kill: Diagnostics written to /data/diagnostics/nsd_20240301_090200_crash.log\n\
2024/03/01 09:05:00 QoS Controller: Command diagnose from uid 0\n\
2024/03/01 09:05:00 QoS Kill: Running nsd...\n\
2024/03/01 09:05:01 QoS Kill: Diagnostics written to /data/diagnostics/nsd_20240301_090500_operator.log\n",
    );
    let j = summary_json(&[dir.path()], &[]);
    let incidents = j["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{j:#}");
    assert_eq!(incidents[0]["kind"], "crash", "{j:#}");
    assert_eq!(
        incidents[0]["diagnostics_file"], "/data/diagnostics/nsd_20240301_090200_crash.log",
        "{j:#}"
    );
    assert_eq!(incidents[0]["outcome"], "ready", "{j:#}");
}
