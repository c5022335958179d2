//! End to end, real processes: server messages on the pipe (the message protocol, issue 4 "Done
//! when") — long-running applications that stall or end in time, the reference FIXUP line
//! round trip, and 1 MB of garbage on the pipe.

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{is_alive, Harness};

const FIXUP_PATH: &str = r"C:\Program Files\HCL\Domino\Data\ddm.nsf";

#[test]
fn a_compact_that_never_ends_is_killed_after_the_apps_timeout() {
    let mut h = Harness::demo(&[]);
    h.start_ready();
    h.wait_for("QoS Probe: SUCCESS (");
    let first = h.server_pid();

    h.send("OpMsg=START Type=COMPACT ObjectType=DB ObjectValue=never.nsf");
    h.expect_in_order(&[
        "QoS Controller: OpMsg=START Type=COMPACT ObjectType=DB ObjectValue=never.nsf TimeDate=",
        "QoS Applications: Adding COMPACT[never.nsf] to long running apps list",
    ]);
    let (_, json) = h.status();
    let apps = json["apps"].as_array().cloned().unwrap_or_default();
    assert!(
        apps.iter().any(|a| a["name"] == "COMPACT[never.nsf]"),
        "status does not list the application: {json}"
    );
    h.expect_in_order(&[
        "QoS Applications: Application COMPACT[never.nsf] has made no progress for 2 seconds",
        "QoS Kill: Triggering failover...",
        "QoS Kill: Running nsd...",
        "QoS Kill: Diagnostics written to ",
        "QoS Kill: Running nsd -kill",
        "QoS Kill: Setting kill complete.",
        "QoS Kill: Restarting DominoStarter thread",
        "QoS Controller: OpMsg=START Type=QOS ObjectType=ServerName",
        "QoS Applications: Clearing long running apps list",
        "QoS Controller: Server is ready to process requests",
        "QoS Probe: SUCCESS (",
        "QoS Controller: Server has recovered; failover trigger removed",
    ]);
    assert!(!is_alive(first));
    let (code, json) = h.status();
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["apps"].as_array().map(Vec::len), Some(0), "{json}");
    assert_eq!(
        h.count("QoS Applications: Application COMPACT[never.nsf] has made no progress"),
        1,
        "one kill per stalled application"
    );
    h.stop();
}

#[test]
fn tasks_that_end_or_progress_in_time_are_left_alone() {
    let mut h = Harness::demo(&[]);
    h.start_ready();
    h.wait_for("QoS Probe: SUCCESS (");
    let server = h.server_pid();

    // Ends after 1 s, within the 2 s QOS_APPS_TIMEOUT.
    h.http_ok("/task?type=COMPACT&name=quick.nsf&secs=1");
    // Runs 3 s, longer than the timeout, but shows progress every second.
    h.http_ok("/task?type=BACKUP&name=steady.nsf&secs=3&progress=1");
    h.wait_for("QoS Applications: Adding COMPACT[quick.nsf] to long running apps list");
    h.wait_for("QoS Applications: Removing COMPACT[quick.nsf] from long running apps list..");
    h.wait_for("QoS Applications: Removing BACKUP[steady.nsf] from long running apps list..");
    let seen = h.seen();
    assert!(
        seen.iter()
            .any(|l| l.starts_with("QoS Controller: OpMsg=PROGRESS Type=BACKUP")),
        "no PROGRESS message was logged\n{}",
        h.dump()
    );
    // Another apps timeout's worth of probes goes by: still nothing happens.
    for _ in 0..12 {
        h.wait_for("QoS Probe: SUCCESS (");
    }
    assert_eq!(h.count("QoS Applications: Application "), 0, "{}", h.dump());
    assert_eq!(h.count("QoS Kill: "), 0, "{}", h.dump());
    assert_eq!(h.server_pid(), server);
    h.stop();
}

#[test]
fn the_reference_fixup_line_round_trips_exactly() {
    let mut h = Harness::demo(&[("QOS_APPS_TIMEOUT", "10min")]);
    h.start_ready();
    let reference = format!(
        "OpMsg=START Type=FIXUP ObjectType=DB ObjectValue={FIXUP_PATH} TimeDate=20120508T003826,18-04"
    );
    h.send(&reference);
    let logged = h.wait_for("QoS Controller: OpMsg=START Type=FIXUP");
    assert_eq!(logged, format!("QoS Controller: {reference}"));
    let added = h.wait_for("QoS Applications: Adding FIXUP[");
    assert_eq!(
        added,
        format!("QoS Applications: Adding FIXUP[{FIXUP_PATH}] to long running apps list")
    );
    let (_, json) = h.status();
    assert_eq!(
        json["apps"][0]["name"],
        format!("FIXUP[{FIXUP_PATH}]"),
        "{json}"
    );

    // Without a TimeDate the controller appends its own.
    h.send(&format!(
        "OpMsg=END Type=FIXUP ObjectType=DB ObjectValue={FIXUP_PATH}"
    ));
    let logged = h.wait_for("QoS Controller: OpMsg=END Type=FIXUP");
    let prefix = format!(
        "QoS Controller: OpMsg=END Type=FIXUP ObjectType=DB ObjectValue={FIXUP_PATH} TimeDate="
    );
    let stamp = logged
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{logged:?} does not start with {prefix:?}"));
    assert!(
        stamp.len() >= 17 && stamp.as_bytes()[8] == b'T' && stamp.contains(','),
        "TimeDate {stamp:?} is not YYYYMMDDTHHMMSS,hh+zz"
    );
    let removed = h.wait_for("QoS Applications: Removing FIXUP[");
    assert_eq!(
        removed,
        format!("QoS Applications: Removing FIXUP[{FIXUP_PATH}] from long running apps list..")
    );
    let (_, json) = h.status();
    assert_eq!(json["apps"].as_array().map(Vec::len), Some(0), "{json}");
    h.stop();
}

/// xorshift64*: reproducible bytes without a dependency.
fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn a_megabyte_of_garbage_on_the_pipe_leaves_the_controller_probing() {
    let mut h = Harness::demo(&[]);
    h.start_ready();
    h.wait_for("QoS Probe: SUCCESS (");
    let server = h.server_pid();
    let pipe = h.data().join("qoscntrlr.pipe");

    let mut client = UnixStream::connect(&pipe).expect("connect to the pipe");
    client
        .set_write_timeout(Some(Duration::from_secs(10)))
        .expect("write timeout");
    let garbage = random_bytes(1 << 20, 0x9E37_79B9_7F4A_7C15);
    // The controller may cut a flooding client off: a broken pipe is an acceptable end.
    let written = match client.write_all(&garbage) {
        Ok(()) => garbage.len(),
        Err(e) => {
            assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ),
                "writing to the pipe failed unexpectedly: {e}"
            );
            0
        }
    };
    drop(client);

    // Probing goes on as before.
    for _ in 0..5 {
        h.wait_for("QoS Probe: SUCCESS (");
    }
    let (code, json) = h.status();
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(h.server_pid(), server);
    // Bad input is logged, but rate-limited: not a line per garbage line.
    let rejected = h.count("QoS Controller: Message rejected: ");
    eprintln!("garbage: wrote {written} bytes; {rejected} rejection line(s)");
    assert!(
        rejected < 100,
        "{rejected} rejection lines for {written} bytes of garbage"
    );

    // Messages are still accepted afterwards, from a new client.
    h.send("OpMsg=START Type=BACKUP ObjectType=DB ObjectValue=after.nsf");
    h.wait_for("QoS Applications: Adding BACKUP[after.nsf] to long running apps list");
    h.send("OpMsg=END Type=BACKUP ObjectType=DB ObjectValue=after.nsf");
    h.wait_for("QoS Applications: Removing BACKUP[after.nsf] from long running apps list..");
    assert_eq!(h.count("QoS Kill: "), 0, "{}", h.dump());
    h.stop();
    h.assert_line_format();
}

/// The pipe connection of the first server, received from it over `listener`.
fn receive_connection(listener: &std::os::unix::net::UnixListener) -> UnixStream {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsRawFd, FromRawFd};
    let (handoff, _) = listener
        .accept()
        .expect("the first server hands over its pipe");
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        handoff.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .expect("recvmsg");
    for cmsg in msg.cmsgs().expect("control messages") {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
            return unsafe { UnixStream::from_raw_fd(fds[0]) };
        }
    }
    panic!("no descriptor was passed");
}

#[test]
fn a_message_of_a_server_that_has_ended_does_not_act_on_its_successor() {
    let scratch = tempfile::tempdir().unwrap();
    let handoff = scratch.path().join("handoff.sock");
    let listener = std::os::unix::net::UnixListener::bind(&handoff).unwrap();
    let command = shell_words::join([
        "python3",
        &common::fixture("ghost_server.py"),
        handoff.to_str().unwrap(),
        scratch.path().join("first-ran").to_str().unwrap(),
    ]);
    let mut h = Harness::server(&command, &[("QOS_DISABLE_PROBING", "1")]);
    h.start();
    let ghost_connection = receive_connection(&listener);
    h.wait_for("QoS Controller: Server is ready to process requests");
    let first = h.server_pid();
    // The first server exits; its successor comes up.
    h.expect_in_order(&[
        "QoS Kill: Restarting DominoStarter thread",
        "QoS Controller: Server is ready to process requests",
    ]);
    let second = h.server_pid();
    assert_ne!(first, second);

    let mut ghost = ghost_connection;
    ghost
        .write_all(b"OpMsg=END Type=SERVER ObjectType=Detail ObjectValue=Quit\n")
        .unwrap();
    h.wait_for(&format!(
        "QoS Controller: Ignored a message from server process {first}, which has ended: OpMsg=END Type=SERVER ObjectType=Detail ObjectValue=Quit"
    ));
    // A wait for something that must NOT happen (the ignored END stopping the new
    // server), so no polling can replace it: the message was handled when its line was
    // logged, and a stop it started would leave READY within this window.
    const NO_STOP_WINDOW: Duration = Duration::from_millis(300);
    std::thread::sleep(NO_STOP_WINDOW);
    assert_eq!(h.state(), "READY", "{}", h.dump());
    assert!(is_alive(second));
    h.stop();
}

/// Polls `/metrics` until `metric` shows `value` (the endpoint reads the value the loop
/// keeps current after every turn; nothing notifies it).
fn wait_metric(h: &Harness, port: u16, metric: &str, value: &str) {
    let line = format!("\n{metric} {value}\n");
    let deadline = std::time::Instant::now() + common::PATIENCE;
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        if let Ok((200, body)) = common::http_get(port, "/metrics") {
            if body.contains(&line) {
                return;
            }
            last = body;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "/metrics never showed {metric} {value}; last answer:\n{last}\n{}",
        h.dump()
    );
}

#[test]
fn metrics_follow_the_listed_applications_and_pause() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut h = Harness::demo(&[
        ("QOS_METRICS_LISTEN", listen.as_str()),
        ("QOS_APPS_TIMEOUT", "10min"),
    ]);
    h.start_ready();
    wait_metric(&h, port, "qoscntrlr_apps_in_list", "0");
    wait_metric(&h, port, "qoscntrlr_state{state=\"READY\"}", "1");
    h.send("OpMsg=START Type=COMPACT ObjectType=DB ObjectValue=one.nsf");
    h.send("OpMsg=START Type=BACKUP ObjectType=DB ObjectValue=two.nsf");
    wait_metric(&h, port, "qoscntrlr_apps_in_list", "2");
    h.send("OpMsg=END Type=COMPACT ObjectType=DB ObjectValue=one.nsf");
    wait_metric(&h, port, "qoscntrlr_apps_in_list", "1");
    wait_metric(&h, port, "qoscntrlr_paused", "0");
    let out = h.cli("pause", &[]);
    assert_eq!(out.code, Some(0), "pause: {out:?}");
    wait_metric(&h, port, "qoscntrlr_paused", "1");
    let out = h.cli("resume", &[]);
    assert_eq!(out.code, Some(0), "resume: {out:?}");
    wait_metric(&h, port, "qoscntrlr_paused", "0");
    h.stop();
}

/// Idle connections past the metrics endpoint's limit (32): the controller goes on
/// answering `status` and probing, says on its log that the limit is reached, and the
/// endpoint answers a scrape again once the idle ones time out (5 s).
#[test]
fn idle_connections_cannot_stop_the_metrics_endpoint_or_the_controller() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut h = Harness::demo(&[("QOS_METRICS_LISTEN", listen.as_str())]);
    h.start_ready();
    wait_metric(&h, port, "qoscntrlr_state{state=\"READY\"}", "1");
    let idle: Vec<std::net::TcpStream> = (0..40)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    h.wait_for_containing(&format!(
        "Metrics endpoint http://{listen}/metrics: 32 connections are open at once (the limit); new connections wait until one is answered or times out (5 s)"
    ));
    let (code, status) = h.status();
    assert_eq!(code, Some(0), "status answers: {status}\n{}", h.dump());
    // Still idle (never sent a byte), yet a scrape gets through once they are timed out.
    wait_metric(&h, port, "qoscntrlr_state{state=\"READY\"}", "1");
    drop(idle);
    h.stop();
}
