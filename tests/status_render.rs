//! The status snapshot: JSON field names (the `status --json` contract), the 80-column
//! human rendering with and without colour, exit codes, and the CLI's answer mapping.

use std::time::Duration;

use qoscntrlr::cli::control_outcome;
use qoscntrlr::control::{ClientError, ControlCommand, ControlResponse};
use qoscntrlr::core::ServerState;
use qoscntrlr::exitcode::EXIT_UNREACHABLE;
use qoscntrlr::status::{exit_code, render_human, StatusSnapshot};

fn snapshot() -> StatusSnapshot {
    serde_json::from_str(include_str!("status_fixture.json")).expect("fixture is valid")
}

fn with_state(state: ServerState, paused: bool) -> StatusSnapshot {
    let mut s = snapshot();
    s.server.state = state;
    s.server.phase = None;
    s.flags.paused = paused;
    s.flags.paused_until = paused.then(|| "2024-05-08T10:45:30+02:00".to_string());
    s
}

#[test]
fn json_field_names_are_the_documented_contract() {
    let value = serde_json::to_value(snapshot()).unwrap();
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&value),
        [
            "apps",
            "controller",
            "failover",
            "flags",
            "incidents",
            "probe",
            "resources",
            "rules",
            "server",
            "taken_at"
        ]
    );
    assert_eq!(
        keys(&value["controller"]),
        [
            "config_path",
            "log_file",
            "log_problem",
            "pid",
            "since",
            "version"
        ]
    );
    assert_eq!(
        keys(&value["server"]),
        [
            "last_exit",
            "name",
            "phase",
            "pid",
            "restart_limit",
            "restart_period_secs",
            "restarts_in_window",
            "state",
            "state_since",
            "uptime_secs",
            "why"
        ]
    );
    assert_eq!(
        keys(&value["probe"]),
        [
            "enabled",
            "interval_ms",
            "interval_secs",
            "last_latency_ms",
            "last_result",
            "since_last_success_secs",
            "target",
            "timeout_left_secs"
        ]
    );
    assert_eq!(
        keys(&value["apps"][0]),
        ["age_secs", "name", "since_progress_secs"]
    );
    assert_eq!(keys(&value["failover"]), ["health", "trigger_present"]);
    assert_eq!(
        keys(&value["flags"]),
        ["failover_triggered", "nokill", "paused", "paused_until"]
    );
    assert_eq!(
        keys(&value["incidents"][0]),
        ["detected_at", "diagnostics", "id", "kind", "outcome"]
    );
    assert_eq!(value["server"]["state"], "KILLING");
    assert_eq!(value["server"]["phase"], "diagnostics");
    for state in ServerState::ALL {
        assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn human_view_fits_80_columns_and_shows_every_section() {
    for color in [false, true] {
        let text = render_human(&snapshot(), color);
        for line in strip_ansi(&text).lines() {
            assert!(line.chars().count() <= 80, "too wide: {line:?}");
        }
        let plain = strip_ansi(&text);
        for needle in [
            "qoscntrlr 0.1.0",
            "pid 4242",
            "/srv/qos/dcontroller.ini",
            "CN=rc45/O=dev",
            "KILLING (diagnostics)",
            "since 2024-05-08 10:14:30 (1m ago)",
            "probe timeout (no success for 5m)",
            "uptime 3h 14m",
            "1 of 3 in 30m",
            "last exit: killed by SIGKILL",
            "http://127.0.0.1:8080/health every 1m",
            "last ERROR: connection refused (3ms)",
            "ok 5m 12s ago",
            "1 long-running",
            "FIXUP[",
            "age 10m 40s, progress 35s ago",
            "mem 1.5 GiB/4.0 GiB",
            "cpu 35%/200%",
            "threads 88/1000",
            "disk free 50.0 GiB (min 1.0 GiB)",
            "trigger file present, health down: probe timeout",
            "failover triggered",
            "probe-timeout 20240508-101430-probe-timeout -> in progress",
            "diagnostics /srv/qos/diagnostics/nsd_20240508_101431.log",
            "crash 20240508-031200-crash -> restarted",
        ] {
            assert!(plain.contains(needle), "missing {needle:?} in\n{plain}");
        }
    }
}

/// A log that cannot be written shows in both views and makes a READY controller
/// degraded (exit 1).
#[test]
fn log_that_cannot_be_written_is_shown_and_degrades() {
    let mut s = with_state(ServerState::Ready, false);
    s.controller.log_file = Some("/srv/qos/qoscntrlr202405081000.out".into());
    assert_eq!(exit_code(&s), 0);
    let plain = strip_ansi(&render_human(&s, false));
    assert!(
        plain.contains("log       /srv/qos/qoscntrlr202405081000.out"),
        "{plain}"
    );
    s.controller.log_problem = Some(
        "cannot write /srv/qos/qoscntrlr202405081000.out since 2024/05/08 10:14:00: No space left on device (os error 28); 12 line(s) waiting in memory, 0 lost".into(),
    );
    assert_eq!(exit_code(&s), 1);
    for color in [false, true] {
        let text = render_human(&s, color);
        for line in strip_ansi(&text).lines() {
            assert!(line.chars().count() <= 80, "too wide: {line:?}");
        }
        let joined = strip_ansi(&text).replace("\n          ", " ");
        assert!(
            joined.contains("log       LOG NOT WRITTEN: cannot write /srv/qos/qoscntrlr202405081000.out since 2024/05/08 10:14:00: No space left on device (os error 28); 12 line(s) waiting in memory, 0 lost"),
            "{text}"
        );
    }
    assert!(render_human(&s, true).contains("\x1b[1;31mLOG NOT WRITTEN"));
    let json = serde_json::to_value(&s).unwrap();
    assert!(json["controller"]["log_problem"]
        .as_str()
        .unwrap()
        .contains("No space left on device"));
}

#[test]
fn colour_only_when_asked_and_by_state() {
    assert!(!render_human(&snapshot(), false).contains('\x1b'));
    let cases = [
        (ServerState::Faulted, "\x1b[1;31mFAULTED"),
        (ServerState::Crashed, "\x1b[1;31mCRASHED"),
        (ServerState::Killing, "\x1b[1;31mKILLING"),
        (ServerState::Starting, "\x1b[1;33mSTARTING"),
        (ServerState::Restarting, "\x1b[1;33mRESTARTING"),
        (ServerState::Stopping, "\x1b[1;33mSTOPPING"),
        (ServerState::Ready, "\x1b[1;32mREADY"),
        (ServerState::Stopped, "\x1b[1;34mSTOPPED"),
    ];
    for (state, painted) in cases {
        let text = render_human(&with_state(state, false), true);
        assert!(text.contains(painted), "{state}: {text}");
    }
    let paused = render_human(&with_state(ServerState::Ready, true), true);
    assert!(
        paused.contains("\x1b[1;33mPAUSED until 2024-05-08 10:45:30"),
        "{paused}"
    );
    let paused = render_human(&with_state(ServerState::Ready, true), false);
    assert!(paused.contains("flags     PAUSED until 2024-05-08 10:45:30, failover triggered"));
}

#[test]
fn exit_codes_by_state() {
    assert_eq!(exit_code(&with_state(ServerState::Ready, false)), 0);
    assert_eq!(exit_code(&with_state(ServerState::Ready, true)), 1);
    for state in [
        ServerState::Starting,
        ServerState::Stopping,
        ServerState::Killing,
        ServerState::Crashed,
        ServerState::Restarting,
    ] {
        assert_eq!(exit_code(&with_state(state, false)), 1, "{state}");
    }
    assert_eq!(exit_code(&with_state(ServerState::Stopped, false)), 3);
    assert_eq!(exit_code(&with_state(ServerState::Faulted, true)), 3);
}

#[test]
fn sparse_snapshot_renders_without_gaps() {
    let mut s = with_state(ServerState::Stopped, false);
    s.server.pid = None;
    s.server.uptime_secs = None;
    s.server.restart_limit = None;
    s.server.last_exit = None;
    s.probe.enabled = false;
    s.apps.clear();
    s.resources = None;
    s.incidents.clear();
    s.flags.failover_triggered = false;
    let text = render_human(&s, false);
    for needle in [
        "pid       -",
        "restarts  1 (no limit)",
        "probe     off",
        "apps      none running long",
        "resources no sample yet",
        "flags     none",
        "incidents none",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn cli_outcomes() {
    let unreachable = control_outcome(
        &ControlCommand::Status,
        Err(ClientError::Unreachable {
            path: "/srv/qos/qoscntrlr.ctl".into(),
        }),
        false,
        false,
    );
    assert_eq!(unreachable.code, EXIT_UNREACHABLE);
    assert_eq!(
        unreachable.stderr,
        "qoscntrlr: status: no controller is listening on /srv/qos/qoscntrlr.ctl\n"
    );

    let refused = control_outcome(
        &ControlCommand::Restart,
        Ok(ControlResponse::refused(
            "restart refused: a quit is in progress",
        )),
        false,
        false,
    );
    assert_eq!(refused.code, 1);
    assert_eq!(
        refused.stderr,
        "qoscntrlr: restart: restart refused: a quit is in progress\n"
    );

    let accepted = control_outcome(
        &ControlCommand::Pause {
            for_duration: Some(Duration::from_secs(60)),
        },
        Ok(ControlResponse::ok("paused for 1m")),
        false,
        false,
    );
    assert_eq!(
        (accepted.code, accepted.stdout.as_str()),
        (0, "paused for 1m\n")
    );

    let timeout = control_outcome(
        &ControlCommand::Kill,
        Err(ClientError::Timeout {
            path: "/x.ctl".into(),
            limit: Duration::from_secs(30),
        }),
        false,
        false,
    );
    assert_eq!(timeout.code, 1);

    let faulted = with_state(ServerState::Faulted, false);
    let json = control_outcome(
        &ControlCommand::Status,
        Ok(ControlResponse::status(faulted.clone())),
        true,
        false,
    );
    assert_eq!(json.code, 3);
    let parsed: StatusSnapshot = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(parsed, faulted);

    let human = control_outcome(
        &ControlCommand::Status,
        Ok(ControlResponse::status(with_state(
            ServerState::Ready,
            false,
        ))),
        false,
        false,
    );
    assert_eq!(human.code, 0);
    assert!(human.stdout.contains("state     READY"), "{}", human.stdout);
}

#[test]
#[ignore = "prints the rendering for a human to look at"]
fn show() {
    println!("{}", render_human(&snapshot(), false));
}

#[test]
fn sub_second_probe_interval_renders_in_milliseconds() {
    let mut s = snapshot();
    s.probe.interval_secs = 0;
    s.probe.interval_ms = Some(200);
    let text = render_human(&s, false);
    assert!(text.contains("every 200ms"), "{text}");
    s.probe.interval_secs = 60;
    s.probe.interval_ms = Some(60_000);
    assert!(!render_human(&s, false).contains("every 60000ms"));
}
