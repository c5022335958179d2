//! sd_notify end to end: `qoscntrlr run` under a datagram socket playing systemd
//! (`NOTIFY_SOCKET`, `WATCHDOG_USEC`) sends READY=1, STATUS= lines, a periodic WATCHDOG=1
//! and STOPPING=1 on SIGTERM; and the heartbeat stops when the supervision loop is wedged
//! (through the test-only `QOSCNTRLR_TEST_WEDGE_SIGNAL` hook in src/runtime/mod.rs).

mod ha_support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use ha_support::{free_port, unique_tag, wait_for, Controller};
use nix::sys::signal::Signal;

/// 300 ms: the controller sends WATCHDOG=1 every 150 ms.
const WATCHDOG_USEC: &str = "300000";

fn ini(port: u16, tag: &str) -> Vec<String> {
    vec![
        "SERVER_NAME=sdnotify-test".into(),
        Controller::demo_command(&format!("127.0.0.1:{port}"), tag),
        format!("QOS_PROBE=http://127.0.0.1:{port}/health"),
        "QOS_PROBE_INTERVAL=200ms".into(),
        "QOS_PROBE_TIMEOUT=30s".into(),
        "QOS_SHUTDOWN_TIMEOUT=5s".into(),
    ]
}

/// The datagrams that arrive until `done` says enough or `limit` passes.
fn collect(
    socket: &UnixDatagram,
    limit: Duration,
    mut done: impl FnMut(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !done(&seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        socket
            .set_read_timeout(Some(left.min(Duration::from_millis(100))))
            .expect("set read timeout");
        match socket.recv(&mut buf) {
            Ok(n) => seen.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("receive from the notify socket: {e}"),
        }
    }
    seen
}

fn count(seen: &[String], datagram: &str) -> usize {
    seen.iter().filter(|d| d.as_str() == datagram).count()
}

fn bind_notify(dir: &Path) -> (UnixDatagram, String) {
    let path = dir.join("notify");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    (socket, path.to_str().expect("utf-8 temp path").to_string())
}

#[test]
fn ready_status_watchdog_and_stopping_reach_the_notify_socket() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (systemd, address) = bind_notify(dir.path());
    let tag = unique_tag("sdnotify-run-");
    let mut controller = Controller::start(
        &dir.path().join("data"),
        &ini(free_port(), &tag),
        &tag,
        None,
        &[
            ("NOTIFY_SOCKET", &address),
            ("WATCHDOG_USEC", WATCHDOG_USEC),
        ],
    );

    let seen = collect(&systemd, Duration::from_secs(10), |seen| {
        count(seen, "READY=1") == 1
            && seen.iter().any(|d| d.starts_with("STATUS=READY"))
            && count(seen, "WATCHDOG=1") >= 3
    });
    assert_eq!(count(&seen, "READY=1"), 1, "one READY=1 in {seen:?}");
    assert!(
        seen.iter().any(|d| d.starts_with("STATUS=READY")),
        "a STATUS= line once the server is ready, in {seen:?}"
    );
    assert!(
        count(&seen, "WATCHDOG=1") >= 3,
        "periodic WATCHDOG=1 in {seen:?}"
    );
    assert!(
        !seen.iter().any(|d| d == "STOPPING=1"),
        "no STOPPING=1 before the stop: {seen:?}"
    );

    controller.signal(Signal::SIGTERM);
    let after = collect(&systemd, Duration::from_secs(10), |seen| {
        seen.iter().any(|d| d == "STOPPING=1")
    });
    assert!(
        after.iter().any(|d| d == "STOPPING=1"),
        "STOPPING=1 after SIGTERM, got {after:?}"
    );
    let status = wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
        controller.try_exit()
    })
    .expect("the controller exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "clean exit after SIGTERM");
}

#[test]
fn watchdog_stops_while_the_supervision_loop_is_wedged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (systemd, address) = bind_notify(dir.path());
    let tag = unique_tag("sdnotify-wedge-");
    let mut controller = Controller::start(
        &dir.path().join("data"),
        &ini(free_port(), &tag),
        &tag,
        None,
        &[
            ("NOTIFY_SOCKET", &address),
            ("WATCHDOG_USEC", WATCHDOG_USEC),
            ("QOSCNTRLR_TEST_WEDGE_SIGNAL", "1"),
        ],
    );
    let seen = collect(&systemd, Duration::from_secs(10), |seen| {
        count(seen, "READY=1") == 1 && count(seen, "WATCHDOG=1") >= 2
    });
    assert!(
        count(&seen, "WATCHDOG=1") >= 2,
        "heartbeat before the wedge: {seen:?}"
    );

    controller.signal(Signal::SIGUSR2);
    // The hook logs before it blocks, so once the line is there the loop is stuck.
    wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
        controller
            .log_text()
            .contains("QOSCNTRLR_TEST_WEDGE_SIGNAL: test hook wedges the supervision loop")
            .then_some(())
    })
    .expect("the wedge hook ran");
    // Heartbeats sent before the loop blocked may still be queued.
    systemd.set_nonblocking(true).expect("non-blocking");
    let mut buf = [0u8; 4096];
    while systemd.recv(&mut buf).is_ok() {}
    systemd.set_nonblocking(false).expect("blocking");

    // Seven watchdog intervals of silence: systemd would have killed it after two.
    let wedged = collect(&systemd, Duration::from_millis(1050), |_| false);
    assert_eq!(
        count(&wedged, "WATCHDOG=1"),
        0,
        "no WATCHDOG=1 while wedged, got {wedged:?}"
    );
    assert!(controller.try_exit().is_none(), "wedged, not dead");
    // A wedged loop cannot act on SIGTERM; stop() falls back to SIGKILL, then kills the
    // server it leaves behind.
    controller.stop(Duration::from_millis(200));
}

/// A notify socket that goes away: the failure is logged once (not once per heartbeat),
/// and the recovery once when systemd's socket is back.
#[test]
fn a_failing_notify_socket_is_logged_once_and_its_recovery_too() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (systemd, address) = bind_notify(dir.path());
    let tag = unique_tag("sdnotify-fail-");
    let mut controller = Controller::start(
        &dir.path().join("data"),
        &ini(free_port(), &tag),
        &tag,
        None,
        &[
            ("NOTIFY_SOCKET", &address),
            ("WATCHDOG_USEC", WATCHDOG_USEC),
        ],
    );
    let seen = collect(&systemd, Duration::from_secs(20), |seen| {
        count(seen, "READY=1") == 1
    });
    assert_eq!(count(&seen, "READY=1"), 1, "READY=1 in {seen:?}");

    // systemd's socket disappears: every WATCHDOG=1 (each 150 ms) now fails. The first
    // failure logged is usually a heartbeat's; on a loaded machine a state change's
    // STATUS= can fail first, and then the heartbeats' failures are rightly not logged.
    drop(systemd);
    std::fs::remove_file(&address).expect("remove the notify socket");
    let failed = "Cannot notify systemd (";
    wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
        controller.log_text().contains(failed).then_some(())
    })
    .unwrap_or_else(|| panic!("no failure logged:\n{}", controller.log_text()));
    // Several more heartbeats fail meanwhile; none of them is logged again.
    // (A wait for something that must NOT happen: no polling can replace it. One second
    // is about six more failed heartbeats at 150 ms each.)
    const MORE_HEARTBEATS: Duration = Duration::from_secs(1);
    std::thread::sleep(MORE_HEARTBEATS);
    assert_eq!(
        controller
            .log_text()
            .matches("Cannot notify systemd")
            .count(),
        1,
        "{}",
        controller.log_text()
    );

    let systemd = UnixDatagram::bind(&address).expect("bind the notify socket again");
    let back = collect(&systemd, Duration::from_secs(20), |seen| {
        count(seen, "WATCHDOG=1") >= 1
    });
    assert!(
        count(&back, "WATCHDOG=1") >= 1,
        "heartbeat resumes: {back:?}"
    );
    wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
        controller
            .log_text()
            .contains("Notifications to systemd work again")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no recovery logged:\n{}", controller.log_text()));

    controller.signal(Signal::SIGTERM);
    let status = wait_for(Duration::from_secs(20), Duration::from_millis(20), || {
        controller.try_exit()
    })
    .expect("the controller exits after SIGTERM");
    assert_eq!(status.code(), Some(0));
}
