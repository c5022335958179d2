//! The controller log lifecycle in a temp dir: rename at start, collisions, retention by
//! age (back-dated mtimes), pattern-only deletion, rolling, line format, header.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Local, TimeZone};
use qoscntrlr::config;
use qoscntrlr::core::Component;
use qoscntrlr::qoslog::QosLog;

fn at(h: u32, m: u32, s: u32) -> DateTime<Local> {
    Local
        .with_ymd_and_hms(2024, 3, 5, h, m, s)
        .earliest()
        .expect("no DST gap on 2024-03-05 at these hours")
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn age(path: &Path, days: u64) {
    let when = SystemTime::now() - Duration::from_secs(days * 86_400);
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

#[test]
fn start_renames_old_out_files_and_creates_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("qoscntrlr202403041200.out");
    fs::write(&old, "old run\n").unwrap();
    let (log, report) = QosLog::open(dir.path(), at(10, 0, 0), 14, 0).unwrap();
    let closed = dir.path().join("qoscntrlr202403041200.log");
    assert_eq!(report.renamed, vec![(old.clone(), closed.clone())]);
    assert!(
        report.deleted.is_empty() && report.problems.is_empty(),
        "{report:?}"
    );
    assert_eq!(fs::read_to_string(&closed).unwrap(), "old run\n");
    assert_eq!(log.path(), dir.path().join("qoscntrlr202403051000.out"));
    assert!(log.path().is_file());
    assert_eq!(
        names(dir.path()),
        ["qoscntrlr202403041200.log", "qoscntrlr202403051000.out"]
    );
}

#[test]
fn starts_in_the_same_minute_never_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    for run in 0..3 {
        let (mut log, _) = QosLog::open(dir.path(), at(10, 0, run), 14, 0).unwrap();
        log.line(Component::Controller, &format!("run {run}"), at(10, 0, run));
    }
    assert_eq!(
        names(dir.path()),
        [
            "qoscntrlr202403051000-1.log",
            "qoscntrlr202403051000.log",
            "qoscntrlr202403051000.out"
        ]
    );
    let read = |name: &str| fs::read_to_string(dir.path().join(name)).unwrap();
    assert!(read("qoscntrlr202403051000.log").ends_with("run 0\n"));
    assert!(read("qoscntrlr202403051000-1.log").ends_with("run 1\n"));
    assert!(read("qoscntrlr202403051000.out").ends_with("run 2\n"));
}

#[test]
fn a_taken_out_name_gets_a_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    // Something that is not a regular file holds the name the new log wants.
    fs::create_dir(dir.path().join("qoscntrlr202403051000.out")).unwrap();
    let (log, report) = QosLog::open(dir.path(), at(10, 0, 0), 14, 0).unwrap();
    assert_eq!(log.path(), dir.path().join("qoscntrlr202403051000-1.out"));
    assert!(report.renamed.is_empty(), "a directory is never renamed");
    assert!(dir.path().join("qoscntrlr202403051000.out").is_dir());
}

#[test]
fn retention_deletes_only_old_logs_matching_the_pattern() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let old_logs = ["qoscntrlr202401010000.log", "qoscntrlr202401010000-3.log"];
    let kept = [
        "qoscntrlr202402200000.log", // 13 days
        "qoscntrlr.ini",
        "qoscntrlrX.log",
        "other.log",
        "qoscntrlr202401010000.log.gz",
        "qoscntrlr20240101000.log",
        "Qoscntrlr202401010000.log",
        "qoscntrlr202401010000-01.log",
    ];
    for name in old_logs.iter().chain(kept.iter()) {
        fs::write(p(name), name).unwrap();
        age(&p(name), 15);
    }
    age(&p("qoscntrlr202402200000.log"), 13);
    // An old .out from a controller that crashed long ago: renamed, and kept this time.
    fs::write(p("qoscntrlr202401020000.out"), "crashed run").unwrap();
    age(&p("qoscntrlr202401020000.out"), 30);
    // A symlink with a log's name pointing at an old file outside: never followed/deleted.
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("precious");
    fs::write(&target, "precious").unwrap();
    age(&target, 30);
    std::os::unix::fs::symlink(&target, p("qoscntrlr202001010000.log")).unwrap();
    nix::sys::stat::lutimes(
        &p("qoscntrlr202001010000.log"),
        &nix::sys::time::TimeVal::new(0, 0),
        &nix::sys::time::TimeVal::new(0, 0),
    )
    .unwrap();
    std::os::unix::fs::symlink(&target, p("qoscntrlr202001010000.out")).unwrap();
    // A directory with a log's name.
    fs::create_dir(p("qoscntrlr201901010000.log")).unwrap();

    let (log, report) = QosLog::open(dir.path(), Local::now(), 14, 0).unwrap();
    let mut deleted = report.deleted.clone();
    deleted.sort();
    let mut expected: Vec<PathBuf> = old_logs.iter().map(|n| p(n)).collect();
    expected.sort();
    assert_eq!(deleted, expected, "{report:?}");
    for name in kept {
        assert!(p(name).exists(), "{name} must be kept");
    }
    assert_eq!(
        fs::read_to_string(p("qoscntrlr202401020000.log")).unwrap(),
        "crashed run"
    );
    assert!(fs::symlink_metadata(p("qoscntrlr202001010000.log")).is_ok());
    assert!(fs::symlink_metadata(p("qoscntrlr202001010000.out")).is_ok());
    assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
    assert!(p("qoscntrlr201901010000.log").is_dir());
    assert!(log.path().is_file());
}

#[test]
fn retention_zero_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("qoscntrlr202001010000.log");
    fs::write(&old, "x").unwrap();
    age(&old, 400);
    let (_log, report) = QosLog::open(dir.path(), Local::now(), 0, 0).unwrap();
    assert!(report.deleted.is_empty());
    assert!(old.exists());
}

#[test]
fn line_format_one_line_per_call() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = QosLog::open(dir.path(), at(0, 37, 0), 14, 0).unwrap();
    log.line(
        Component::Bare,
        "The probe thread has not received a message from qosprobe within the timeout period.",
        at(0, 37, 41),
    );
    log.line(
        Component::Probe,
        "The qosprobe addin has timed out, is not responding, or is not running.",
        at(0, 37, 41),
    );
    log.line(
        Component::Controller,
        "OpMsg=TIMEOUT Type=PROBE TimeDate=null",
        at(0, 37, 43),
    );
    log.line(Component::Kill, "Triggering failover...", at(0, 37, 43));
    log.line(
        Component::Applications,
        "Clearing long running apps list",
        at(0, 37, 44),
    );
    // Written through, not buffered: visible before the log is dropped.
    let text = fs::read_to_string(log.path()).unwrap();
    assert_eq!(
        text,
        "2024/03/05 00:37:41 The probe thread has not received a message from qosprobe within the timeout period.\n\
         2024/03/05 00:37:41 QoS Probe: The qosprobe addin has timed out, is not responding, or is not running.\n\
         2024/03/05 00:37:43 QoS Controller: OpMsg=TIMEOUT Type=PROBE TimeDate=null\n\
         2024/03/05 00:37:43 QoS Kill: Triggering failover...\n\
         2024/03/05 00:37:44 QoS Applications: Clearing long running apps list\n"
    );
    assert!(log.is_healthy());
}

#[test]
fn rolls_past_the_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = QosLog::open(dir.path(), at(10, 0, 0), 14, 300).unwrap();
    let first = log.path().to_path_buf();
    for i in 0..12 {
        log.line(Component::Probe, &format!("SUCCESS ({i}ms)"), at(10, 5, i));
    }
    assert_ne!(log.path(), first);
    let mut listing = names(dir.path());
    // The names sort in the order the files were written.
    listing.sort_by_key(|n| qoscntrlr::qoslog::parse_log_file_name(n).unwrap());
    assert!(
        listing.contains(&"qoscntrlr202403051000.log".to_string()),
        "{listing:?}"
    );
    assert!(listing.iter().filter(|n| n.ends_with(".out")).count() == 1);
    let mut all = String::new();
    for name in &listing {
        let text = fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(text.len() <= 300, "{name} is {} bytes", text.len());
        all.push_str(&text);
    }
    // Every line made it, in order, across the files.
    let successes: Vec<&str> = all.lines().filter(|l| l.contains("SUCCESS")).collect();
    assert_eq!(successes.len(), 12);
    for (i, line) in successes.iter().enumerate() {
        assert!(line.ends_with(&format!("SUCCESS ({i}ms)")), "{line}");
    }
    let current = fs::read_to_string(log.path()).unwrap();
    assert!(current.starts_with("2024/03/05 10:05:"), "{current}");
    assert!(current
        .lines()
        .next()
        .unwrap()
        .contains("QoS Controller: Log continued from qoscntrlr202403051"));
}

#[test]
fn header_writes_the_effective_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = config::parse_str(
        "SERVER_COMMAND=/bin/true\nQOS_PROBE=message\nQOS_NSD_PATH=/opt/hcl/notes/latest/linux/nsd.sh\n\
         QOS_MAIL_TO=test/hcl\nQOS_MAIL_SMTP_SERVER=xx\n",
        &dir.path().join("dcontroller.ini"),
    )
    .unwrap();
    let (mut log, _) = QosLog::open(dir.path(), at(6, 33, 0), 14, 0).unwrap();
    log.line(
        Component::Controller,
        "Starting QOSPipeWatcher",
        at(6, 33, 34),
    );
    log.header(&loaded.config, at(6, 33, 34));
    let text = fs::read_to_string(log.path()).unwrap();
    let expected_start = "\
2024/03/05 06:33:34 QoS Controller: Starting QOSPipeWatcher
2024/03/05 06:33:34 QoS Controller: QOS_PROBE_TIMEOUT=5 minutes
2024/03/05 06:33:34 QoS Controller: QOS_SHUTDOWN_TIMEOUT=5 minutes
2024/03/05 06:33:34 QoS Controller: QOS_RESTART_TIMEOUT=5 minutes
2024/03/05 06:33:34 QoS Controller: QOS_APPS_TIMEOUT=10 minutes
2024/03/05 06:33:34 QoS Controller: nsd Program Path=/opt/hcl/notes/latest/linux/nsd.sh
2024/03/05 06:33:34 QoS Controller: QOS_RESTART_LIMIT_MAXIMUM=3
2024/03/05 06:33:34 QoS Controller: QOS_RESTART_LIMIT_PERIOD=30 minutes
2024/03/05 06:33:34 QoS Controller: QOS_NOKILL=false
2024/03/05 06:33:34 QoS Controller: QOS_MAIL_TO=test/hcl
2024/03/05 06:33:34 QoS Controller: QOS_MAIL_SMTP_SERVER=xx:25
";
    assert!(text.starts_with(expected_start), "{text}");
    assert_eq!(text.lines().count(), 1 + config::KNOWN_KEYS.len());
}

#[test]
fn a_missing_data_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    assert!(QosLog::open(&missing, at(1, 0, 0), 14, 0).is_err());
    let file = dir.path().join("file");
    fs::write(&file, "").unwrap();
    assert!(QosLog::open(&file, at(1, 0, 0), 14, 0).is_err());
}
