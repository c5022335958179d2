//! End to end, real processes: one controller per data directory (the command line exit 75,
//! issue 3 "One controller per data directory"), the stale server a SIGKILLed controller
//! leaves behind, and the `.out` → `.log` lifecycle of the log format across restarts.

mod common;

use common::{is_alive, Harness, DEMO, PATIENCE};

/// Demo servers of this test that run now (not the `/daemonize` helpers).
fn demo_servers(h: &Harness) -> Vec<i32> {
    h.marked_processes()
        .into_iter()
        .filter(|(_, cmd)| cmd.starts_with(DEMO) && cmd.contains("--listen"))
        .map(|(pid, _)| pid)
        .collect()
}

#[test]
fn a_second_run_on_the_same_data_directory_exits_75_naming_the_holder() {
    let mut h = Harness::demo(&[]);
    h.start_ready();
    h.wait_for("QoS Probe: SUCCESS (");
    let holder = h.controller_pid();
    let outs_before = h.log_files("out");

    let mut second = h.spawn_run();
    let deadline = std::time::Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = second.try_wait().expect("wait for the second run") {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("the second run did not exit\n{}", h.dump());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(75), "{status:?}\n{}", h.dump());
    let stderr = std::fs::read_to_string(h.data().join("harness/run2.stderr")).unwrap_or_default();
    assert!(
        stderr.contains(&holder.to_string()),
        "the refusal does not name the holder pid {holder}: {stderr:?}"
    );

    // The first controller is untouched: same log file, no .log made, still probing.
    assert_eq!(h.log_files("out"), outs_before);
    assert!(h.log_files("log").is_empty(), "{:?}", h.log_files("log"));
    h.wait_for("QoS Probe: SUCCESS (");
    assert_eq!(h.state(), "READY");
    assert_eq!(demo_servers(&h).len(), 1, "never two servers");
    h.stop();
}

#[test]
fn after_a_controller_sigkill_the_next_run_kills_the_stale_server_first() {
    let mut h = Harness::demo(&[]);
    h.start_ready();
    let stale = h.server_pid();
    h.kill9();
    assert!(
        is_alive(stale),
        "the server died with its controller: nothing stale to test"
    );

    h.start();
    h.expect_in_order(&[
        &format!(
            "QoS Controller: Found server qos-demo-server (pid {stale}) left running by a previous \
             controller; killing its process tree"
        ),
        "QoS Kill: Killed 1 leftover process(es)",
        "QoS Controller: Starting server: ",
        "QoS Controller: OpMsg=START Type=QOS ObjectType=ServerName",
        "QoS Controller: Server is ready to process requests",
        "QoS Probe: SUCCESS (",
    ]);
    assert!(!is_alive(stale), "the stale server {stale} still runs");
    let fresh = h.server_pid();
    assert_ne!(fresh, stale);
    assert_eq!(demo_servers(&h), vec![fresh], "never two servers");
    h.stop();
}

#[test]
fn a_new_run_renames_the_previous_out_to_log() {
    let mut h = Harness::demo(&[]);
    h.start_ready();
    h.stop();
    let first = h.log_files("out");
    assert_eq!(first.len(), 1, "{first:?}");
    let first_text = std::fs::read_to_string(h.data().join(&first[0])).expect("read the first log");

    h.start_ready();
    let logs = h.log_files("log");
    let outs = h.log_files("out");
    assert_eq!(outs.len(), 1, "exactly one active log: {outs:?}");
    assert_eq!(
        logs,
        vec![first[0].replace(".out", ".log")],
        "the previous .out became .log"
    );
    // The content moved along, untouched; the new .out is a new file.
    let moved = std::fs::read_to_string(h.data().join(&logs[0])).expect("read the .log");
    assert_eq!(moved, first_text);
    assert!(h.lines()[0].ends_with("QoS Controller: Starting QOSPipeWatcher"));
    let renamed = format!(
        "QoS Controller: Previous log {} renamed to {}",
        h.data().join(&first[0]).display(),
        h.data().join(&logs[0]).display()
    );
    assert_eq!(h.count(&renamed), 1, "{renamed}\n{}", h.dump());
    h.stop();

    // A third start in the same minute never overwrites the first .log.
    h.start_ready();
    h.stop();
    let all: Vec<String> = h
        .log_files("log")
        .into_iter()
        .chain(h.log_files("out"))
        .collect();
    let three_files = all.len() == 3;
    assert!(
        three_files,
        "three runs leave three files (two .log, one .out): {all:?}"
    );
    assert_eq!(
        std::fs::read_to_string(h.data().join(&logs[0])).expect("first .log"),
        first_text
    );
}

#[test]
fn the_stale_kill_also_reaches_a_daemonized_grandchild() {
    let mut h = Harness::demo(&[]);
    h.start_ready();
    let stale = h.server_pid();
    let body = h.http_ok("/daemonize");
    let grandchild: i32 = body
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {body:?}"));
    assert!(common::eventually("grandchild in its own session", || {
        common::session_of(grandchild) == Some(grandchild)
    }));
    h.kill9();
    assert!(is_alive(stale) && is_alive(grandchild));

    h.start();
    h.expect_in_order(&[
        "QoS Controller: Found server qos-demo-server",
        &format!(
            "QoS Controller: Found 1 process(es) of a previous server's tree still running \
             ({grandchild}); killing them"
        ),
        "QoS Controller: Starting server: ",
        "QoS Controller: Server is ready to process requests",
    ]);
    assert!(!is_alive(stale), "the stale server {stale} still runs");
    assert!(
        !is_alive(grandchild),
        "the stale server's setsid grandchild {grandchild} still runs\n{}",
        h.dump()
    );
    h.stop();
}
