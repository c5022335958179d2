//! Real processes: `status` with no controller running exits 69 and still shows the last
//! known state from the data directory — how the controller ended (SIGKILL, quit,
//! SIGTERM), the server's last state, the failover state and the last incident — in the
//! human view and as JSON.

mod common;

use common::{eventually, is_alive, Harness};

/// `status` and `status --json` after the controller is gone: (human, JSON).
fn offline(h: &Harness) -> (common::CliOutput, serde_json::Value) {
    let human = h.cli("status", &[]);
    assert_eq!(human.code, Some(69), "{human:?}\n{}", h.dump());
    assert!(
        human.stderr.contains("no controller is listening on"),
        "{human:?}"
    );
    let out = h.cli("status", &["--json"]);
    assert_eq!(out.code, Some(69), "{out:?}");
    let json: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {out:?}"));
    assert_eq!(json["running"], false, "{json}");
    (human, json)
}

#[test]
fn controller_killed_status_exits_69_with_the_last_state() {
    let mut h = Harness::demo(&[]);
    h.start_ready();
    h.wait_for("QoS Probe: SUCCESS (");
    let first = h.server_pid();
    // One incident to remember: a crash, restarted.
    let _ = h.http("/crash");
    h.wait_for_containing("has crashed.");
    h.wait_for("QoS Controller: Server is ready to process requests");
    assert!(
        eventually("the restarted server in status", || {
            let (_, json) = h.status();
            json["server"]["state"] == "READY"
                && json["server"]["pid"]
                    .as_i64()
                    .is_some_and(|p| p != first as i64)
        }),
        "{}",
        h.dump()
    );
    let server = h.server_pid();

    h.kill9();
    let (human, json) = offline(&h);

    assert_eq!(json["ended"]["how"], "unknown", "{json}");
    assert_eq!(json["ended"]["at"], serde_json::Value::Null, "{json}");
    assert_eq!(json["last"]["server"]["state"], "READY", "{json}");
    assert_eq!(json["last"]["server"]["pid"], server, "{json}");
    assert_eq!(json["last"]["failover"]["state"], "IN_SERVICE", "{json}");
    assert_eq!(json["last_incident"]["kind"], "crash", "{json}");
    assert_eq!(json["last_incident"]["outcome"], "restarted", "{json}");
    assert!(json["recorded_at"].is_string(), "{json}");
    assert_eq!(
        json["trigger"]["content"],
        serde_json::Value::Null,
        "{json}"
    );
    // SIGKILL of the controller leaves its server running, unwatched: status says so.
    if is_alive(server) {
        assert_eq!(json["server_left_running"]["pid"], server, "{json}");
        assert!(
            human
                .stdout
                .contains(&format!("pid       {server} STILL RUNNING")),
            "{human:?}"
        );
    }

    for needle in [
        "qoscntrlr NOT RUNNING",
        "no controller is listening on",
        "ended     unknown: it ended without recording its end",
        "state     READY  since ",
        "(last known)",
        "failover  IN_SERVICE",
        "crash",
        "-> restarted",
    ] {
        assert!(
            human.stdout.contains(needle),
            "missing {needle:?} in\n{}",
            human.stdout
        );
    }
    for line in human.stdout.lines() {
        assert!(
            line.chars().count() <= 80 || !line.trim().contains(' '),
            "{line:?}"
        );
    }
}

#[test]
fn stopped_server_and_sigterm_are_recorded_as_how_the_controller_ended() {
    let mut h = Harness::demo(&[]);
    h.start_ready();
    // `quit` stops the server; SIGTERM then ends the controller.
    let out = h.cli("quit", &["--wait"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    h.stop();
    let (human, json) = offline(&h);
    assert_eq!(json["ended"]["how"], "signal", "{json}");
    assert_eq!(json["ended"]["detail"], "SIGTERM received", "{json}");
    assert_eq!(json["ended"]["exit_code"], 0, "{json}");
    assert!(json["ended"]["at"].is_string(), "{json}");
    assert_eq!(json["last"]["server"]["state"], "STOPPED", "{json}");
    assert_eq!(
        json["last"]["failover"]["state"], "OUT_OF_SERVICE",
        "{json}"
    );
    assert_eq!(
        json["server_left_running"],
        serde_json::Value::Null,
        "{json}"
    );
    assert!(
        human.stdout.contains(" signal: SIGTERM received (exit 0)"),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("state     STOPPED"),
        "{}",
        human.stdout
    );
}

#[test]
fn no_controller_ever_ran_still_exits_69_and_says_so() {
    let h = Harness::demo(&[]);
    let (human, json) = offline(&h);
    assert_eq!(json["last"], serde_json::Value::Null, "{json}");
    assert_eq!(json["ended"], serde_json::Value::Null, "{json}");
    assert!(
        human.stdout.contains("no state recorded"),
        "{}",
        human.stdout
    );
    // A trigger file left in the data directory is what keepalived sees now.
    std::fs::create_dir_all(h.data()).unwrap();
    std::fs::write(h.trigger_file(), "1\n").unwrap();
    let (human, json) = offline(&h);
    assert_eq!(json["trigger"]["content"], "1", "{json}");
    assert!(human.stdout.contains("trigger   1 in "), "{}", human.stdout);
}
