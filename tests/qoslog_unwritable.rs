//! A data directory the controller cannot write to at start: the log keeps lines in
//! memory and writes them, with a recovery line, once it can. Alone in its test binary
//! because it lowers the process's open-file limit (root ignores permission bits, but
//! not EMFILE).

use std::path::Path;

use chrono::{Local, TimeZone};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use qoscntrlr::core::Component;
use qoscntrlr::qoslog::QosLog;

/// The lowest descriptor number not in use (the kernel always hands out the lowest):
/// with the soft limit there, every new descriptor fails with EMFILE.
fn lowest_free_fd() -> u64 {
    use std::os::fd::AsRawFd;
    let probe = std::fs::File::open("/dev/null").unwrap();
    probe.as_raw_fd() as u64
}

/// Restores the limit even when the test fails.
struct Restore(u64, u64);
impl Drop for Restore {
    fn drop(&mut self) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, self.0, self.1);
    }
}

#[test]
fn cannot_create_the_log_at_start_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let at = |s| {
        Local
            .with_ymd_and_hms(2024, 3, 5, 10, 0, s)
            .earliest()
            .unwrap()
    };
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let restore = Restore(soft, hard);

    setrlimit(Resource::RLIMIT_NOFILE, lowest_free_fd(), hard).unwrap();
    let opened = QosLog::open(dir.path(), at(0), 14, 0);
    let (mut log, report) = opened.expect("an unwritable directory is not a fatal error");
    for i in 1..=3 {
        log.line(Component::Controller, &format!("line {i}"), at(i));
    }
    let nothing_written = !Path::new(log.path()).exists();
    let backlog = log.backlog_len();
    let healthy = log.is_healthy();
    drop(restore);

    assert!(!report.problems.is_empty(), "{report:?}");
    assert!(nothing_written);
    assert_eq!(backlog, 3);
    assert!(!healthy);

    log.line(Component::Probe, "SUCCESS (5ms)", at(9));
    assert!(log.is_healthy());
    let text = std::fs::read_to_string(log.path()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "2024/03/05 10:00:01 QoS Controller: line 1",
            "2024/03/05 10:00:02 QoS Controller: line 2",
            "2024/03/05 10:00:03 QoS Controller: line 3",
            "2024/03/05 10:00:09 QoS Probe: SUCCESS (5ms)",
            "2024/03/05 10:00:09 QoS Controller: The log file could not be written from \
             2024/03/05 10:00:00 to 2024/03/05 10:00:09: 0 lines were lost, 4 were written late.",
        ]
    );
}
