//! The events file: JSON lines, rotation, retention of rotated files, failures reported
//! once.

use std::time::{Duration, SystemTime};

use chrono::{Local, TimeZone};
use qoscntrlr::events::{is_rotated_name, EventRecord, EventsFile, FILE_NAME};
use serde_json::Value;

fn at(secs: u32) -> chrono::DateTime<Local> {
    Local
        .with_ymd_and_hms(2024, 5, 8, 10, 0, secs)
        .single()
        .unwrap()
}

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let (mut events, problems) = EventsFile::open(dir.path(), 14);
    assert!(problems.is_empty(), "{problems:?}");
    let record = EventRecord::new(at(1), "incident", "KILLING")
        .incident("20240508-100001-probe-timeout")
        .reason("probe timeout")
        .field("phase", "failover")
        .field("restarts_in_window", 2)
        .field("state", "ignored: the fixed field wins");
    assert!(events.record(&record).is_none());
    assert!(events
        .record(&EventRecord::new(at(2), "state", "READY"))
        .is_none());

    let got = lines(&dir.path().join(FILE_NAME));
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["event"], "incident");
    assert_eq!(got[0]["state"], "KILLING");
    assert_eq!(got[0]["incident"], "20240508-100001-probe-timeout");
    assert_eq!(got[0]["reason"], "probe timeout");
    assert_eq!(got[0]["phase"], "failover");
    assert_eq!(got[0]["restarts_in_window"], 2);
    let ts = got[0]["ts"].as_str().unwrap();
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(ts).unwrap(),
        at(1).fixed_offset()
    );
    assert!(got[1].get("incident").is_none());
    assert!(got[1].get("reason").is_none());

    // Reopening appends.
    drop(events);
    let (mut events, _) = EventsFile::open(dir.path(), 14);
    events.record(&EventRecord::new(at(3), "state", "STOPPING"));
    assert_eq!(lines(&dir.path().join(FILE_NAME)).len(), 3);
}

#[test]
fn rotates_past_the_size_limit_without_overwriting() {
    let dir = tempfile::tempdir().unwrap();
    let (mut events, _) = EventsFile::open_with_max_size(dir.path(), 14, 300);
    for i in 0..12 {
        let r = EventRecord::new(at(5), "state", "READY").field("n", i);
        assert!(events.record(&r).is_none());
    }
    let mut rotated: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != FILE_NAME)
        .collect();
    rotated.sort();
    assert!(rotated.len() >= 2, "{rotated:?}");
    assert!(rotated.contains(&"qoscntrlr-events-20240508100005.jsonl".to_string()));
    assert!(rotated.contains(&"qoscntrlr-events-20240508100005-1.jsonl".to_string()));
    let mut total = lines(&dir.path().join(FILE_NAME)).len();
    for name in &rotated {
        assert!(is_rotated_name(name), "{name}");
        let path = dir.path().join(name);
        assert!(std::fs::metadata(&path).unwrap().len() <= 300);
        total += lines(&path).len();
    }
    assert_eq!(total, 12, "no line lost across rotations");
}

#[test]
fn old_rotated_files_are_deleted_at_start_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let old = SystemTime::now() - Duration::from_secs(20 * 86_400);
    let keep_recent = "qoscntrlr-events-20240508100000.jsonl";
    let delete = [
        "qoscntrlr-events-20240101000000.jsonl",
        "qoscntrlr-events-20240101000000-3.jsonl",
    ];
    let keep_foreign = [
        "qoscntrlr-events-2024.jsonl",
        "qoscntrlr-events-20240101000000.jsonl.gz",
        "my-qoscntrlr-events-20240101000000.jsonl",
        "qoscntrlr202401010000.log",
    ];
    for name in delete.iter().chain(&keep_foreign) {
        let f = std::fs::File::create(dir.path().join(name)).unwrap();
        f.set_modified(old).unwrap();
    }
    std::fs::write(dir.path().join(keep_recent), "{}\n").unwrap();

    let (_events, problems) = EventsFile::open(dir.path(), 14);
    assert!(problems.is_empty(), "{problems:?}");
    for name in delete {
        assert!(!dir.path().join(name).exists(), "{name} should be gone");
    }
    for name in keep_foreign.iter().chain([&keep_recent]) {
        assert!(dir.path().join(name).exists(), "{name} must be kept");
    }
}

#[test]
fn failures_are_reported_once_and_recovery_is_silent() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    let (mut events, problems) = EventsFile::open_with_max_size(&dir, 14, 100);
    assert!(problems.is_empty());
    let big = || EventRecord::new(at(9), "state", "READY").field("pad", "x".repeat(80));
    assert!(events.record(&big()).is_none());

    // The directory disappears: the next rotation cannot reopen the file.
    std::fs::remove_dir_all(&dir).unwrap();
    let first = events.record(&big());
    let message = first.expect("the first failure is reported").to_string();
    assert!(message.contains("qoscntrlr-events.jsonl"), "{message}");
    assert!(events.record(&big()).is_none(), "reported only once");
    assert!(events.record(&big()).is_none());

    std::fs::create_dir(&dir).unwrap();
    assert!(events.record(&big()).is_none());
    assert_eq!(lines(&dir.join(FILE_NAME)).len(), 1);
}

#[test]
fn open_in_a_missing_directory_reports_and_does_not_panic() {
    let parent = tempfile::tempdir().unwrap();
    let (mut events, problems) = EventsFile::open(&parent.path().join("missing"), 14);
    assert_eq!(problems.len(), 1);
    assert!(events
        .record(&EventRecord::new(at(0), "state", "READY"))
        .is_none());
}
