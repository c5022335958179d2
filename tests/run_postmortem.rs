//! The post-mortem of a crash looks at what the dead server left running. A master that
//! dies leaves its children — nginx workers holding the port, PostgreSQL backends holding
//! the shared memory — orphaned and adopted by the controller; the diagnostics written
//! before they are killed must name and snapshot them (they used to list an empty tree,
//! since the server pid itself was gone). A shell with a child stands in for the master.

mod common;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use common::{eventually, is_alive, Harness};

#[test]
fn crash_post_mortem_covers_the_orphans_of_the_dead_master() {
    // The "master" forks a "worker" and waits; the worker runs on after the master dies.
    let mut h = Harness::server(
        "/bin/sh -c 'sleep 600 & echo worker $!; wait'",
        &[
            ("QOS_PROBE", "exec:/bin/true"),
            ("QOS_DISABLE_PROBING", "0"),
        ],
    );
    h.start_ready();
    let master = h.server_pid();
    let mut worker = 0;
    let found = eventually("the worker", || {
        worker = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        worker > 0
    });
    assert!(found, "no child of the master\n{}", h.dump());

    kill(Pid::from_raw(master), Signal::SIGKILL).expect("SIGKILL the master");
    h.expect_in_order(&[
        "QoS Controller: Server CN=e2e/O=qos has crashed.",
        "QoS Kill: Running nsd...",
    ]);
    // The worker is read, then killed before the restart; the restart does not wait for
    // the file, whose line may come before or after it.
    let from = h.seen().len();
    let killed = h.wait_for("QoS Kill: Killed 1 process(es) of the server's tree: ");
    h.wait_for("QoS Kill: Restarting DominoStarter thread");
    let written_line = || {
        h.lines().iter().skip(from).find_map(|l| {
            common::line_text(l)
                .strip_prefix("QoS Kill: Diagnostics written to ")
                .map(str::to_string)
        })
    };
    assert!(
        eventually("the post-mortem file", || written_line().is_some()),
        "no diagnostics line\n{}",
        h.dump()
    );
    let path = written_line().unwrap_or_default();
    let text = std::fs::read_to_string(&path).expect("read the post-mortem");
    let tree_line = text
        .lines()
        .find(|l| l.starts_with("Tree:"))
        .unwrap_or_default()
        .to_string();
    assert!(
        tree_line
            .split_whitespace()
            .any(|p| p == worker.to_string()),
        "the post-mortem's tree names the orphaned worker {worker}: {tree_line:?}\n{text}"
    );
    assert!(
        text.contains(&format!("=== process {worker} ===")) && text.contains("sleep 600"),
        "the post-mortem snapshots the orphaned worker {worker}:\n{text}"
    );
    assert!(
        text.contains("taken in ") && text.contains("before they were killed"),
        "the snapshot was taken before the kill:\n{text}"
    );
    // `…: <pids>`, possibly followed by how (e.g. `(cgroup.kill of cgroup …)`).
    let pids: Vec<&str> = killed
        .split_once("tree: ")
        .map(|(_, rest)| rest.split(" (").next().unwrap_or_default())
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(pids, [worker.to_string()], "{killed}");
    assert!(
        eventually("the worker is gone", || !is_alive(worker)),
        "worker {worker} survived\n{}",
        h.dump()
    );
    h.wait_for("QoS Controller: Server is ready to process requests");
    h.stop();
}

#[test]
fn a_slow_nsd_program_never_delays_the_restart_of_a_dead_server() {
    // The operator's nsd takes 4 s; the crashed server is restarted at once, and the
    // post-mortem (the leftover's snapshot, then the program's output) follows.
    let mut h = Harness::server(
        "/bin/sh -c 'sleep 600 & wait'",
        &[
            ("QOS_PROBE", "exec:/bin/true"),
            ("QOS_DISABLE_PROBING", "0"),
            ("QOS_NSD_PATH", "/bin/sh -c 'sleep 4; echo nsd-was-here'"),
            ("QOS_NSD_TIMEOUT", "30s"),
        ],
    );
    h.start_ready();
    let master = h.server_pid();
    let has_child = || {
        std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
            .is_ok_and(|c| !c.trim().is_empty())
    };
    assert!(eventually("the worker", has_child), "{}", h.dump());

    kill(Pid::from_raw(master), Signal::SIGKILL).expect("SIGKILL the master");
    h.expect_in_order(&[
        "QoS Controller: Server CN=e2e/O=qos has crashed.",
        "QoS Kill: Running nsd...",
        "QoS Kill: Killed 1 process(es) of the server's tree: ",
        "QoS Kill: Restarting DominoStarter thread",
        "QoS Controller: Server is ready to process requests",
    ]);
    // Ready again while the nsd program still runs.
    assert_eq!(
        h.count("QoS Kill: Diagnostics written to "),
        0,
        "the restart waited for the nsd program\n{}",
        h.dump()
    );
    let written = h.wait_for("QoS Kill: Diagnostics written to ");
    let path = written.trim_start_matches("QoS Kill: Diagnostics written to ");
    let text = std::fs::read_to_string(path).expect("read the post-mortem");
    let snapshot = text.find("=== process ").unwrap_or(usize::MAX);
    let output = text.rfind("\nnsd-was-here").unwrap_or(0);
    assert!(
        text.contains("sleep 600") && snapshot < output,
        "the leftover's snapshot, then the program's output:\n{text}"
    );
    assert_eq!(
        h.count("QoS Kill: Diagnostics incomplete"),
        0,
        "{}",
        h.dump()
    );
    h.stop();
}
