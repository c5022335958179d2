//! `qoscntrlr reexec` end to end: a real controller, started from a copy of the binary
//! in its data directory (the test "upgrades" that file), supervising the real demo
//! server. The server must keep its pid and stay the controller's child; the log goes
//! on in the same `.out` with `Controller re-executed: A -> B` and no new START; the
//! timers (pause, applications, probe timeout) carry over; a binary that cannot take
//! over is refused with the reason while the old controller keeps running.

mod common;
mod exe;

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{eventually, Harness, CONTROLLER};

const READY: &str = "QoS Controller: Server is ready to process requests";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A harness whose controller runs from a copy of the binary in the data directory.
fn copied(overrides: &[(&str, &str)]) -> (Harness, PathBuf) {
    let mut h = Harness::demo(overrides);
    let bin = h.data().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let program = bin.join("qoscntrlr");
    install(&program, &fs::read(CONTROLLER).unwrap());
    h.set_controller(&program);
    (h, program)
}

/// Replace `path` the way a package manager does: a new inode renamed over the old one.
fn install(path: &PathBuf, bytes: &[u8]) {
    let tmp = path.with_extension("new");
    exe::write_executable(&tmp, bytes);
    fs::rename(&tmp, path).unwrap();
}

fn ppid(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn open_fds(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn rss_kb(pid: i32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// `qoscntrlr reexec`, which must succeed, and the wait for the new image's first turn.
fn reexec_ok(h: &mut Harness) {
    let out = h.cli("reexec", &[]);
    assert_eq!(out.code, Some(0), "reexec: {out:?}\n{}", h.dump());
    assert!(
        out.stdout
            .contains(&format!("Controller re-executed: {VERSION} -> {VERSION}")),
        "{out:?}"
    );
    h.wait_for(&format!(
        "QoS Controller: Controller re-executed: {VERSION} -> {VERSION}"
    ));
    h.wait_for("QoS Controller: Supervision resumed");
}

#[test]
fn reexec_while_ready_keeps_the_server_its_log_and_its_probe() {
    let (mut h, _) = copied(&[]);
    h.start_ready();
    let controller = h.controller_pid();
    let server = h.server_pid();
    let outs = h.log_files("out");
    let starts = h.count("QoS Controller: OpMsg=START Type=SERVER");
    reexec_ok(&mut h);
    // Same pids, still our child, same .out, no new start.
    assert_eq!(h.controller_pid(), controller);
    assert_eq!(h.server_pid(), server, "{}", h.dump());
    assert_eq!(ppid(server), Some(controller));
    assert_eq!(h.log_files("out"), outs, "no .out rename");
    assert_eq!(h.count("QoS Controller: OpMsg=START Type=SERVER"), starts);
    assert_eq!(h.state(), "READY");
    // Probing goes on in the new image.
    h.wait_for("QoS Probe: SUCCESS");
    h.wait_for("QoS Probe: SUCCESS");
    // A crash is still reaped and restarted by the new image.
    let _ = h.http("/crash");
    h.wait_for("QoS Controller: State READY -> CRASHED");
    h.wait_for(READY);
    assert_ne!(h.server_pid(), server);
    h.stop();
}

#[test]
fn reexec_during_a_pause_keeps_the_pause_and_its_end_then_a_hang_is_still_killed() {
    let (mut h, _) = copied(&[]);
    h.start_ready();
    h.wait_for("QoS Probe: SUCCESS (");
    let out = h.cli("pause", &["--for", "1h"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let (_, before) = h.status();
    assert_eq!(before["flags"]["paused"], true, "{before}");
    let until = before["flags"]["paused_until"]
        .as_str()
        .unwrap()
        .to_string();
    reexec_ok(&mut h);
    let (_, after) = h.status();
    assert_eq!(after["flags"]["paused"], true, "{after}");
    // The end of the pause is the same moment (status prints whole seconds).
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
    let drift = (parse(after["flags"]["paused_until"].as_str().unwrap()) - parse(&until))
        .num_seconds()
        .abs();
    assert!(
        drift <= 1,
        "pause end moved by {drift} s: {until} -> {after}"
    );
    // A hang while paused is logged but not killed; after resume the kill happens.
    let server = h.server_pid();
    h.http_ok("/hang");
    h.wait_for("QoS Controller: The controller has received a probe timeout.");
    assert!(common::is_alive(server));
    assert_eq!(h.state(), "READY");
    let out = h.cli("resume", &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    h.expect_in_order(&[
        "QoS Kill: Triggering failover...",
        "QoS Kill: Setting kill complete.",
        READY,
    ]);
    assert!(eventually("the hung server is gone", || common::is_gone(
        server
    )));
    h.stop();
}

#[test]
fn reexec_with_an_application_in_progress_keeps_its_age_and_deadline() {
    let (mut h, _) = copied(&[("QOS_APPS_TIMEOUT", "8s")]);
    h.start_ready();
    h.wait_for("QoS Probe: SUCCESS (");
    h.send("OpMsg=START Type=COMPACT ObjectType=DB ObjectValue=big.nsf");
    h.wait_for("QoS Applications: Adding COMPACT[big.nsf] to long running apps list");
    let added = Instant::now();
    // Part of the scenario, not a wait for an event: the application ages before the
    // re-exec, enough that a timer restarted by it would show (the check below wants at
    // least this age) and well short of QOS_APPS_TIMEOUT (8 s).
    const AGE: Duration = Duration::from_secs(3);
    std::thread::sleep(AGE);
    reexec_ok(&mut h);
    let (_, json) = h.status();
    let apps = json["apps"].as_array().cloned().unwrap_or_default();
    let app = apps
        .iter()
        .find(|a| a["name"] == "COMPACT[big.nsf]")
        .unwrap_or_else(|| panic!("the application is not listed after reexec: {json}"));
    assert!(
        app["since_progress_secs"].as_u64().unwrap() >= AGE.as_secs(),
        "the application's timer restarted: {json}"
    );
    // Its deadline is kept: the stall is detected and the server killed and restarted.
    h.expect_in_order(&[
        "QoS Applications: Application COMPACT[big.nsf] has made no progress for 8 seconds",
        "QoS Kill: Setting kill complete.",
        READY,
    ]);
    assert!(added.elapsed() >= Duration::from_secs(8));
    h.stop();
}

#[test]
fn a_broken_new_binary_is_refused_and_the_old_controller_keeps_running() {
    let (mut h, program) = copied(&[]);
    h.start_ready();
    let controller = h.controller_pid();
    let server = h.server_pid();
    // Not an executable at all.
    install(&program, b"\x7fELF this is not a program");
    let out = h.cli("reexec", &[]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("cannot be started") || out.stdout.contains("cannot be started"),
        "the reason is named: {out:?}"
    );
    h.wait_for_containing("Reexec refused: the new binary");
    // A program that fails its check says why.
    install(
        &program,
        b"#!/bin/sh\necho 'error: this build cannot read the state' >&2\nexit 3\n",
    );
    let out = h.cli("reexec", &[]);
    assert_eq!(out.code, Some(1), "{out:?}");
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(said.contains("failed its check"), "{out:?}");
    assert!(said.contains("this build cannot read the state"), "{out:?}");
    // A binary that does not know reexec at all (an old version): refused too.
    install(&program, b"#!/bin/sh\nexit 0\n");
    let out = h.cli("reexec", &[]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("does not support reexec"),
        "{out:?}"
    );
    // Nothing changed: same controller, same server, still probing, no re-exec line.
    assert_eq!(h.controller_pid(), controller);
    assert_eq!(h.server_pid(), server);
    assert_eq!(h.count("QoS Controller: Controller re-executed"), 0);
    h.wait_for("QoS Probe: SUCCESS (");
    // The real binary again: now it works.
    install(&program, &fs::read(CONTROLLER).unwrap());
    reexec_ok(&mut h);
    assert_eq!(h.server_pid(), server);
    h.stop();
}

#[test]
fn an_unreadable_state_after_the_exec_adopts_the_server() {
    let (mut h, _) = copied(&[]);
    // Test-only hook: the image after the exec gets a state it cannot read.
    h.run_env("QOSCNTRLR_TEST_REEXEC_BAD_STATE", "1");
    h.start_ready();
    h.wait_for("QoS Probe: SUCCESS (");
    let controller = h.controller_pid();
    let server = h.server_pid();
    let out = h.cli("reexec", &[]);
    let said = format!("{}{}", out.stdout, out.stderr);
    assert_eq!(
        out.code,
        Some(1),
        "the operator learns the state was lost: {out:?}"
    );
    assert!(said.contains("its state could not be restored"), "{out:?}");
    assert!(
        said.contains(&format!("the server (pid {server}) was adopted")),
        "{out:?}"
    );
    h.expect_in_order(&[
        "QoS Controller: Controller re-executed:",
        "QoS Controller: The state handed over by the previous image cannot be used:",
        &format!("QoS Controller: Server (pid {server}) adopted without its previous state"),
    ]);
    assert_eq!(h.controller_pid(), controller);
    assert_eq!(h.server_pid(), server);
    assert_eq!(ppid(server), Some(controller));
    assert_eq!(h.state(), "READY");
    h.wait_for("QoS Probe: SUCCESS (");
    // Still supervised: a crash is reaped and restarted.
    let _ = h.http("/crash");
    h.wait_for("QoS Controller: State READY -> CRASHED");
    h.wait_for(READY);
    h.stop();
}

#[test]
fn the_check_subcommand_refuses_a_state_version_it_does_not_know() {
    let h = Harness::demo(&[]);
    let out = h.cli("reexec-check", &["--state-version", "999"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("state version 999 is not understood"),
        "{out:?}"
    );
    let out = h.cli("reexec-check", &["--state-version", "1"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains(&format!("ok, version {VERSION}")),
        "{out:?}"
    );
    // A configuration the new binary cannot read fails the check (exit 78).
    h.overwrite_ini("QOS_PROBE_INTERVAL=banana\n");
    let out = h.cli("reexec-check", &["--state-version", "1"]);
    assert_eq!(out.code, Some(78), "{out:?}");
}

#[test]
fn two_hundred_reexecs_leak_no_descriptor_and_no_memory() {
    let (mut h, _) = copied(&[("QOS_PROBE_INTERVAL", "1s"), ("QOS_PROBE_TIMEOUT", "30s")]);
    h.start_ready();
    let controller = h.controller_pid();
    let server = h.server_pid();
    reexec_ok(&mut h);
    let fd_list = || {
        let mut fds: Vec<String> = fs::read_dir(format!("/proc/{controller}/fd"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| {
                        let target = fs::read_link(e.path()).unwrap_or_default();
                        format!(
                            "{} -> {}",
                            e.file_name().to_string_lossy(),
                            target.display()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        fds.sort();
        fds
    };
    let fds_before = open_fds(controller);
    let listing_before = fd_list();
    let rss_before = rss_kb(controller);
    let started = Instant::now();
    for round in 0..200 {
        let out = h.cli("reexec", &[]);
        assert_eq!(out.code, Some(0), "reexec #{round}: {out:?}\n{}", h.dump());
    }
    let took = started.elapsed();
    assert_eq!(h.count("QoS Controller: Controller re-executed:"), 201);
    assert_eq!(h.controller_pid(), controller);
    assert_eq!(h.server_pid(), server);
    assert_eq!(ppid(server), Some(controller));
    assert_eq!(h.count("QoS Controller: OpMsg=START Type=SERVER"), 1);
    // Descriptors: the same set (a transient connection or two may come and go).
    let settled = eventually("the descriptor count settles", || {
        open_fds(controller) <= fds_before + 2
    });
    assert!(
        settled,
        "descriptors grew from {fds_before} to {}: before {listing_before:#?} after {:#?}",
        open_fds(controller),
        fd_list()
    );
    let rss_after = rss_kb(controller);
    assert!(
        rss_after < rss_before + 16 * 1024,
        "RSS grew from {rss_before} kB to {rss_after} kB over 200 reexecs"
    );
    eprintln!(
        "200 reexecs in {took:?}; fds {fds_before} -> {}; RSS {rss_before} -> {rss_after} kB",
        open_fds(controller)
    );
    h.wait_for("QoS Probe: SUCCESS (");
    h.stop();
}

#[test]
fn reexec_while_faulted_stays_faulted_and_spawns_nothing() {
    let mut h = Harness::server("/bin/false", &[("QOS_RESTART_LIMIT_MAXIMUM", "1")]);
    let port = h.port;
    // Nothing listens on the probe port: the server never becomes READY by itself.
    h.set_keys(&[("QOS_PROBE", &format!("tcp://127.0.0.1:{port}"))]);
    let bin = h.data().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let program = bin.join("qoscntrlr");
    install(&program, &fs::read(CONTROLLER).unwrap());
    h.set_controller(&program);
    h.start();
    h.wait_for_containing("server left down (FAULTED)");
    let (_, before) = h.status();
    assert_eq!(before["server"]["state"], "FAULTED", "{before}");
    let starts = h.count("QoS Controller: OpMsg=START Type=QOS");
    reexec_ok(&mut h);
    let (_, after) = h.status();
    assert_eq!(after["server"]["state"], "FAULTED", "{after}");
    assert_eq!(
        after["server"]["restarts_in_window"], before["server"]["restarts_in_window"],
        "the restart window carries over: {after}"
    );
    // A wait for something that must NOT happen (the new image starting the FAULTED
    // server), so no polling can replace it: a start would come from the new image's
    // first loop turns, which have run by the time it answered `status` above; 500 ms
    // more covers a restart delay's first tick on a loaded machine.
    const NO_START_WINDOW: Duration = Duration::from_millis(500);
    std::thread::sleep(NO_START_WINDOW);
    assert_eq!(h.count("QoS Controller: OpMsg=START Type=QOS"), starts);
    // clear-fault still works in the new image.
    let out = h.cli("clear-fault", &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    h.wait_for("QoS Controller: Fault cleared by the operator");
    h.stop();
}

#[test]
fn messages_sent_just_before_a_reexec_are_not_lost() {
    let (mut h, _) = copied(&[("QOS_APPS_TIMEOUT", "10min")]);
    h.start_ready();
    for i in 0..5 {
        h.send(&format!(
            "OpMsg=START Type=COMPACT ObjectType=DB ObjectValue=db{i}.nsf"
        ));
        reexec_ok(&mut h);
    }
    let (_, json) = h.status();
    let apps: Vec<String> = json["apps"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a["name"].as_str().map(str::to_string))
        .collect();
    for i in 0..5 {
        assert!(
            apps.contains(&format!("COMPACT[db{i}.nsf]")),
            "COMPACT[db{i}.nsf] was lost across a reexec: {json}\n{}",
            h.dump()
        );
    }
    h.stop();
}
