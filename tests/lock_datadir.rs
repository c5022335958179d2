//! One controller per data directory, and the state file's stale-server detection.
//! The child process here is waited for with `Child::wait` (no reaper in this binary).

use std::process::{Command, Stdio};

use qoscntrlr::lock::{process_start_ticks, DataDirLock, LockError, ServerRecord, StateFile};

#[test]
fn second_acquire_fails_naming_the_holder_until_the_first_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let first = DataDirLock::acquire(dir.path()).expect("first acquire");
    let text = std::fs::read_to_string(dir.path().join("qoscntrlr.lock")).unwrap();
    assert_eq!(text, format!("{}\n", std::process::id()));

    let err = DataDirLock::acquire(dir.path()).expect_err("second acquire must fail");
    match &err {
        LockError::Held { pid, data_dir } => {
            assert_eq!(*pid, Some(std::process::id() as i32));
            assert_eq!(data_dir, dir.path());
        }
        other => panic!("expected Held, got {other:?}"),
    }
    // The failed attempt did not wipe the holder's pid.
    let text = std::fs::read_to_string(dir.path().join("qoscntrlr.lock")).unwrap();
    assert_eq!(text.trim(), std::process::id().to_string());
    assert!(
        err.to_string().starts_with("another controller (pid "),
        "{err}"
    );

    drop(first);
    let again = DataDirLock::acquire(dir.path()).expect("free again after release");
    drop(again);
}

#[test]
fn missing_data_directory_is_an_io_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent");
    let err = DataDirLock::acquire(&missing).unwrap_err();
    assert!(
        matches!(&err, LockError::Io { path, .. } if path.starts_with(&missing)),
        "{err}"
    );
    assert!(err.to_string().contains("qoscntrlr.lock"), "{err}");
}

#[test]
fn state_file_records_clears_and_detects_only_the_live_same_process() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateFile::new(dir.path());
    assert_eq!(state.stale_server(), None, "no file, nothing stale");
    state.clear().expect("clearing a missing file is fine");

    // A real sleeping child stands in for a server left by a crashed controller.
    let mut child = Command::new("sleep")
        .arg("30")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sleep");
    let pid = child.id() as i32;
    let outcome = std::panic::catch_unwind(|| {
        let record = ServerRecord::of_running(pid, pid, "sleep").expect("child is running");
        assert_eq!(Some(record.start_ticks), process_start_ticks(pid));
        state.record(&record).expect("record");
        assert!(!dir.path().join("qoscntrlr.state.tmp").exists());
        assert_eq!(state.read(), Some(record.clone()));
        assert_eq!(state.stale_server(), Some(record.clone()));

        // Same pid, other start time: the pid was reused by another process.
        let reused = ServerRecord {
            start_ticks: record.start_ticks + 1,
            ..record.clone()
        };
        state.record(&reused).unwrap();
        assert_eq!(state.stale_server(), None);
        record
    });
    let _ = child.kill();
    let _ = child.wait();
    let record = outcome.unwrap_or_else(|e| std::panic::resume_unwind(e));

    // The recorded process has exited: nothing stale.
    state.record(&record).unwrap();
    assert_eq!(state.stale_server(), None);

    // A pid that does not exist at all.
    let ghost = ServerRecord {
        pid: i32::MAX,
        pgid: i32::MAX,
        ..record
    };
    state.record(&ghost).unwrap();
    assert_eq!(state.stale_server(), None);

    // A corrupt file is not a server.
    std::fs::write(state.path(), "{not json").unwrap();
    assert_eq!(state.stale_server(), None);

    state.clear().unwrap();
    assert!(!state.path().exists());
}
