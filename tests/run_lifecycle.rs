//! End to end, real processes: the server's life outside the smart kill (the supervision rules,
//! the log format, the states, the command line) — a crash, a server that ignores SIGTERM at shutdown, a server that exits
//! at once until the restart limit leaves it FAULTED, and SIGHUP with a broken file.

mod common;

use common::{Harness, TriggerWatch, SERVER_NAME};
use nix::sys::signal::Signal;

#[test]
fn crash_is_reported_and_restarted_without_failover() {
    let mut h = Harness::demo(&[]);
    h.start_ready();
    h.wait_for("QoS Probe: SUCCESS (");
    let first = h.server_pid();
    let watch = TriggerWatch::start(&h);

    // The demo server aborts before it can answer.
    let _ = h.http("/crash");
    h.expect_in_order(&[
        &format!(
            "QoS Controller: OpMsg=CRASH Type=QOS ObjectType=ServerName ObjectValue={SERVER_NAME} TimeDate="
        ),
        &format!("QoS Controller: Server {SERVER_NAME} has crashed."),
        "QoS Controller: Server exit: killed by SIGABRT",
        "QoS Controller: Deactivating probe...",
        "QoS Controller: QoS Probe deactivated.",
        "QoS Kill: Running nsd...",
        // A dead server's restart does not wait for its post-mortem file: the file's
        // line comes when it is written, usually after the restart began.
        "QoS Kill: Restarting DominoStarter thread",
        &format!(
            "QoS Controller: OpMsg=START Type=QOS ObjectType=ServerName ObjectValue={SERVER_NAME} \
             ObjectType2=ProcessName ObjectValue2=qos-demo-server TimeDate="
        ),
        "QoS Controller: OpMsg=START Type=SERVER TimeDate=",
        "QoS Applications: Clearing long running apps list",
        "QoS Controller: Server is ready to process requests",
        "QoS Probe: SUCCESS (",
    ]);
    let seen = watch.finish();
    assert_eq!(
        seen.sightings,
        0,
        "a crash must not trigger failover\n{}",
        h.dump()
    );
    assert_eq!(h.count("QoS Kill: Triggering failover..."), 0);
    let diag_line = || {
        h.lines().into_iter().find_map(|l| {
            common::line_text(&l)
                .strip_prefix("QoS Kill: Diagnostics written to ")
                .map(str::to_string)
        })
    };
    assert!(
        common::eventually("the post-mortem file", || diag_line().is_some()),
        "no diagnostics line\n{}",
        h.dump()
    );
    let diag = diag_line().unwrap_or_default();
    assert!(diag.ends_with("_crash.log"), "{diag}");
    let text = std::fs::read_to_string(&diag).expect("the post-mortem file");
    assert!(
        text.contains("=== the server had ended: snapshot of the ")
            && text.contains("=== console tail (")
            && text.contains("=== collection finished after "),
        "{text}"
    );
    let (code, json) = h.status();
    assert_eq!(code, Some(0));
    assert_ne!(json["server"]["pid"], first, "{json}");
    assert_eq!(json["server"]["restarts_in_window"], 1, "{json}");
    assert!(
        json["server"]["last_exit"]
            .as_str()
            .is_some_and(|e| e.contains("SIGABRT")),
        "{json}"
    );
    h.stop();
    h.assert_line_format();
}

#[test]
fn a_server_that_ignores_sigterm_is_killed_after_the_shutdown_timeout() {
    let script = common::fixture("ignore_term.sh");
    // QOS_ENABLE=0: plain supervision, ready once spawned.
    let mut h = Harness::server(&script, &[("QOS_ENABLE", "0")]);
    h.start_ready();
    let server = h.server_pid();
    assert!(common::is_alive(server));

    h.signal(Signal::SIGTERM);
    h.expect_in_order(&[
        "QoS Controller: Received SIGTERM: shutting down",
        "QoS Controller: OpMsg=END Type=SERVER ObjectType=Detail ObjectValue=Quit TimeDate=",
        "QoS Controller: Server did not shut down within QOS_SHUTDOWN_TIMEOUT (2 seconds); killing",
        "QoS Kill: Running nsd -kill",
        "QoS Kill: Setting kill complete.",
        &format!(
            "QoS Controller: OpMsg=END Type=QOS ObjectType=ServerName ObjectValue={SERVER_NAME} TimeDate="
        ),
    ]);
    let status = h.wait_exit();
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", h.dump());
    h.assert_nothing_left();
    // A stop is not an incident to fail over from, and nothing restarts.
    assert_eq!(h.count("QoS Kill: Triggering failover..."), 0);
    assert_eq!(h.count("QoS Kill: Restarting DominoStarter thread"), 0);
    assert_eq!(h.count("QoS Controller: OpMsg=START Type=QOS"), 1);
    assert!(!h.trigger_file().exists());
}

#[test]
fn a_second_stop_signal_kills_at_once() {
    let script = common::fixture("ignore_term.sh");
    let mut h = Harness::server(
        &script,
        &[("QOS_ENABLE", "0"), ("QOS_SHUTDOWN_TIMEOUT", "10min")],
    );
    h.start_ready();
    h.signal(Signal::SIGTERM);
    h.wait_for("QoS Controller: OpMsg=END Type=SERVER ObjectType=Detail ObjectValue=Quit");
    h.signal(Signal::SIGINT);
    h.expect_in_order(&[
        "QoS Controller: Received SIGINT: shutting down",
        "QoS Controller: Second stop request: killing the server now",
        "QoS Kill: Running nsd -kill",
        &format!(
            "QoS Controller: OpMsg=END Type=QOS ObjectType=ServerName ObjectValue={SERVER_NAME}"
        ),
    ]);
    let status = h.wait_exit();
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", h.dump());
    h.assert_nothing_left();
    assert_eq!(
        h.count("QoS Controller: Server did not shut down within"),
        0
    );
}

#[test]
fn a_server_that_exits_at_once_reaches_the_restart_limit_and_faults() {
    let mut h = Harness::server("/bin/false", &[]);
    let port = h.port;
    // Nothing listens on the probe port: the server never becomes READY by itself.
    h.overwrite_ini(&format!(
        "{}QOS_PROBE=tcp://127.0.0.1:{port}\n",
        std::fs::read_to_string(&h.ini).expect("read ini")
    ));
    h.start();
    for attempt in 0..4 {
        h.wait_for(&format!(
            "QoS Controller: OpMsg=START Type=QOS ObjectType=ServerName ObjectValue={SERVER_NAME} \
             ObjectType2=ProcessName ObjectValue2=false TimeDate="
        ));
        h.wait_for(&format!(
            "QoS Controller: Server {SERVER_NAME} has crashed."
        ));
        h.wait_for("QoS Controller: Server exit: exit code 1");
        if attempt < 3 {
            h.wait_for("QoS Kill: Restarting DominoStarter thread");
        }
    }
    h.wait_for(
        "QoS Controller: Restart limit reached: 3 restarts within 30 minutes; server left down (FAULTED)",
    );
    assert_eq!(
        h.count("QoS Controller: OpMsg=START Type=QOS"),
        4,
        "one start plus three restarts\n{}",
        h.dump()
    );
    let (code, json) = h.status();
    assert_eq!(json["server"]["state"], "FAULTED", "{json}");
    assert_eq!(code, Some(3), "status exit code when FAULTED");
    assert_eq!(json["server"]["restarts_in_window"], 3, "{json}");
    assert!(json["server"]["pid"].is_null(), "{json}");
    let human = h.cli("status", &[]);
    assert_eq!(human.code, Some(3));
    assert!(human.stdout.contains("FAULTED"), "{}", human.stdout);

    let out = h.cli("clear-fault", &[]);
    assert_eq!(out.code, Some(0), "clear-fault: {out:?}\n{}", h.dump());
    assert!(
        !out.stdout.trim().is_empty(),
        "clear-fault answered nothing"
    );
    h.expect_in_order(&[
        "QoS Controller: Command clear-fault from uid ",
        "QoS Controller: Fault cleared by the operator",
        "QoS Controller: OpMsg=START Type=QOS ObjectType=ServerName",
    ]);
    // A second clear-fault while not FAULTED is answered too (refused or accepted).
    let again = h.cli("clear-fault", &[]);
    assert!(
        matches!(again.code, Some(0) | Some(1)),
        "clear-fault not answered: {again:?}"
    );
    h.stop();
}

#[test]
fn sighup_with_a_broken_config_keeps_the_old_one() {
    let mut h = Harness::demo(&[]);
    h.start_ready();
    h.wait_for("QoS Probe: SUCCESS (");
    let good = std::fs::read_to_string(&h.ini).expect("read ini");
    h.overwrite_ini(&format!(
        "{good}QOS_PROBE_INTERVAL=banana\nQOS_MAX_MEMORY=lots\n"
    ));
    h.signal(Signal::SIGHUP);
    h.wait_for("QoS Controller: Received SIGHUP: reloading ");
    let first = h.wait_for("QoS Controller: Reload error: ");
    let second = h.wait_for("QoS Controller: Reload error: ");
    let both = format!("{first}\n{second}");
    assert!(
        both.contains("QOS_PROBE_INTERVAL") && both.contains("QOS_MAX_MEMORY"),
        "every error is logged, naming the key:\n{both}"
    );
    let lines = good.lines().count();
    let ini = h.ini.display().to_string();
    assert!(
        first.contains(&format!("{ini}:{}", lines + 1))
            && second.contains(&format!("{ini}:{}", lines + 2)),
        "errors name the file and line:\n{both}"
    );
    h.wait_for("QoS Controller: Reload failed; the previous configuration stays in force");
    // Still probing with the old configuration.
    h.wait_for("QoS Probe: SUCCESS (");
    h.wait_for("QoS Probe: SUCCESS (");

    // Clients read the same file but need only its socket and directory paths: the
    // broken values are warnings naming file, line and key, and status still answers.
    let broken = h.cli("status", &[]);
    assert_eq!(broken.code, Some(0), "{broken:?}");
    assert!(
        broken
            .stderr
            .contains(&format!("warning: {ini}:{}: QOS_PROBE_INTERVAL", lines + 1))
            && broken
                .stderr
                .contains(&format!("warning: {ini}:{}: QOS_MAX_MEMORY", lines + 2)),
        "{broken:?}"
    );

    h.overwrite_ini(&format!("{good}QOS_PROBE_TIMEOUT=3s\n"));
    let (code, json) = h.status();
    assert_eq!(code, Some(0));
    assert_eq!(json["server"]["state"], "READY");
    h.signal(Signal::SIGHUP);
    h.expect_in_order(&[
        "QoS Controller: Received SIGHUP: reloading ",
        "QoS Controller: QOS_PROBE_TIMEOUT=3 seconds",
        "QoS Controller: Configuration reloaded",
    ]);
    h.stop();

    let gone = h.cli("status", &[]);
    assert_eq!(gone.code, Some(69), "status without a controller: {gone:?}");
    let gone = h.cli("status", &["--json"]);
    assert_eq!(
        gone.code,
        Some(69),
        "status --json without a controller: {gone:?}"
    );
    let quit = h.cli("quit", &[]);
    assert_eq!(quit.code, Some(69), "quit without a controller: {quit:?}");
    let send = h.cli("send", &["OpMsg=START Type=SERVER"]);
    assert_eq!(send.code, Some(69), "send without a controller: {send:?}");
}

#[test]
fn sighup_applies_what_it_can_and_keeps_sockets_and_listeners() {
    let mut h = Harness::demo(&[]);
    h.start_ready();
    h.wait_for("QoS Probe: SUCCESS (");
    let pipe = h.data().join("qoscntrlr.pipe");
    let moved = h.data().join("elsewhere.pipe");
    h.set_keys(&[
        ("QOS_PIPE", moved.to_str().unwrap()),
        ("QOS_RESOURCE_INTERVAL", "5s"),
        ("QOS_PROBE_TIMEOUT", "3s"),
    ]);
    h.signal(Signal::SIGHUP);
    h.expect_in_order(&[
        "QoS Controller: Received SIGHUP: reloading ",
        "QoS Controller: Reload: QOS_PIPE, QOS_RESOURCE_INTERVAL cannot change while the controller runs; the running value stays until the controller is restarted",
        "QoS Controller: QOS_PROBE_TIMEOUT=3 seconds",
        &format!("QoS Controller: QOS_PIPE={}", pipe.display()),
        "QoS Controller: QOS_RESOURCE_INTERVAL=200 milliseconds",
        "QoS Controller: Configuration reloaded",
    ]);
    // A restarted server is given the pipe still listened on.
    let before = h.server_pid();
    let out = h.cli("restart", &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    h.expect_in_order(&[
        "QoS Controller: OpMsg=START Type=SERVER",
        "QoS Controller: Server is ready to process requests",
    ]);
    let after = h.server_pid();
    assert_ne!(before, after);
    let environ = std::fs::read(format!("/proc/{after}/environ")).expect("server environ");
    let wanted = format!("QOSCNTRLR_PIPE={}", pipe.display());
    assert!(
        environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes()),
        "the server is not given {wanted}"
    );
    assert!(pipe.exists() && !moved.exists(), "{}", h.dump());
    h.stop();
}

#[test]
fn disabled_probing_does_not_kill_a_silent_server() {
    let script = common::fixture("ignore_term.sh");
    let mut h = Harness::server(
        &script,
        &[("QOS_DISABLE_PROBING", "1"), ("QOS_RESTART_TIMEOUT", "1s")],
    );
    h.start();
    h.wait_for("QoS Controller: OpMsg=START Type=SERVER");
    let server = h.server_pid();
    let lived = common::eventually("three restart timeouts of uptime", || {
        h.status().1["server"]["uptime_secs"].as_u64() >= Some(3)
    });
    assert_eq!(
        h.count("QoS Controller: Server was not ready within QOS_RESTART_TIMEOUT"),
        0,
        "a server nobody can probe was killed for not being ready\n{}",
        h.dump()
    );
    assert!(lived, "the server never lived 3 s\n{}", h.dump());
    assert_eq!(h.server_pid(), server);
    h.stop();
}
