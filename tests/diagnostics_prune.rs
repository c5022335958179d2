//! Pruning of the diagnostics folder: by age, by total size, and never anything but our
//! own regular `nsd_*.log` files.

use std::fs::{self, File};
use std::path::Path;
use std::time::{Duration, SystemTime};

use qoscntrlr::diagnostics::prune;

const DAY: Duration = Duration::from_secs(86_400);

fn file_aged(dir: &Path, name: &str, bytes: usize, age: Duration) {
    let path = dir.join(name);
    fs::write(&path, vec![b'x'; bytes]).expect("write");
    let when = SystemTime::now() - age;
    File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(when))
        .expect("back-date");
}

#[test]
fn prune_by_age_deletes_only_old_nsd_logs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    file_aged(dir, "nsd_20240101_000000_crash.log", 10, 20 * DAY);
    file_aged(dir, "nsd_20240120_000000_crash.log", 10, DAY);
    file_aged(dir, "notes.txt", 10, 30 * DAY);
    file_aged(dir, "nsd_old.log.gz", 10, 30 * DAY);
    // A symlink with our name pointing at an old file elsewhere: neither is touched.
    let outside = tempfile::tempdir().expect("tempdir");
    file_aged(outside.path(), "precious.log", 10, 30 * DAY);
    std::os::unix::fs::symlink(
        outside.path().join("precious.log"),
        dir.join("nsd_20230101_000000_link.log"),
    )
    .expect("symlink");

    let report = prune(dir, 14, 0);
    assert_eq!(
        report.deleted,
        vec![dir.join("nsd_20240101_000000_crash.log")]
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.kept_bytes, 10);
    assert!(dir.join("nsd_20240120_000000_crash.log").exists());
    assert!(dir.join("notes.txt").exists());
    assert!(dir.join("nsd_old.log.gz").exists());
    assert!(fs::symlink_metadata(dir.join("nsd_20230101_000000_link.log")).is_ok());
    assert!(outside.path().join("precious.log").exists());
}

#[test]
fn prune_by_size_deletes_oldest_first() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    file_aged(dir, "nsd_c.log", 100, 3 * DAY);
    file_aged(dir, "nsd_a.log", 100, 2 * DAY);
    file_aged(dir, "nsd_b.log", 100, DAY);
    file_aged(dir, "other.bin", 10_000, 4 * DAY);

    let report = prune(dir, 14, 250);
    assert_eq!(report.deleted, vec![dir.join("nsd_c.log")]);
    assert_eq!(report.kept_bytes, 200);

    let report = prune(dir, 14, 100);
    assert_eq!(report.deleted, vec![dir.join("nsd_a.log")]);
    assert_eq!(report.kept_bytes, 100);
    assert!(dir.join("other.bin").exists(), "not ours");
}

#[test]
fn prune_keeps_the_newest_file_even_over_the_cap() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    file_aged(dir, "nsd_old.log", 500, DAY);
    file_aged(dir, "nsd_new.log", 500, Duration::ZERO);
    let report = prune(dir, 14, 100);
    assert_eq!(report.deleted, vec![dir.join("nsd_old.log")]);
    assert!(
        dir.join("nsd_new.log").exists(),
        "the incident being handled"
    );
}

#[test]
fn prune_with_zero_limits_or_no_folder_deletes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    file_aged(tmp.path(), "nsd_x.log", 100, 400 * DAY);
    let report = prune(tmp.path(), 0, 0);
    assert!(report.deleted.is_empty());
    assert_eq!(report.kept_bytes, 100);

    let report = prune(&tmp.path().join("absent"), 14, 1);
    assert_eq!(report, Default::default());
}
