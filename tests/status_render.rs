//! The status snapshot: JSON field names (the `status --json` contract), the 80-column
//! human rendering with and without colour, exit codes, and the CLI's answer mapping.

use std::time::Duration;

use qoscntrlr::cli::control_outcome;
use qoscntrlr::control::{ClientError, ControlCommand, ControlResponse};
use qoscntrlr::core::{FailoverState, IncidentOutcome, ServerState};
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
    // The HA view as it follows from the state (READY: traffic back).
    s.failover.state = Some(match state {
        ServerState::Ready => FailoverState::InService,
        ServerState::Stopped | ServerState::Faulted => FailoverState::OutOfService,
        _ => FailoverState::FailoverTriggered,
    });
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
    assert_eq!(
        keys(&value["failover"]),
        [
            "agent",
            "failback_at",
            "failback_awaits_operator",
            "failback_left_secs",
            "health",
            "holds",
            "readiness",
            "since",
            "state",
            "trigger",
            "trigger_present",
            "why"
        ]
    );
    assert_eq!(
        keys(&value["failover"]["trigger"]),
        ["content", "error", "path"]
    );
    assert_eq!(
        keys(&value["failover"]["readiness"]),
        ["code", "listen", "listening", "reason"]
    );
    assert_eq!(
        keys(&value["failover"]["agent"]),
        ["listen", "listening", "reply"]
    );
    assert_eq!(value["failover"]["state"], "FAILOVER_TRIGGERED");
    for state in FailoverState::ALL {
        assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
    }
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
    let app = snapshot().apps[0].name.clone();
    for color in [false, true] {
        let text = render_human(&snapshot(), color);
        assert_fits_and_whole(&text, &[&app]);
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
            "failover  FAILOVER_TRIGGERED  since 2024-05-08 10:14:30 (1m ago)",
            "          why: probe timeout",
            "          held down by: incident",
            "trigger   1 in /srv/qos/triggerImmediateServerFailover",
            "readiness 127.0.0.1:8081 answers 503 probe timeout",
            "agent     127.0.0.1:8082 answers down #probe timeout",
            "failover triggered",
            "probe-timeout 20240508-101430-probe-timeout -> diagnostics",
            "diagnostics /srv/qos/diagnostics/nsd_20240508_101431.log",
            "crash 20240508-031200-crash -> restarted",
        ] {
            assert!(plain.contains(needle), "missing {needle:?} in\n{plain}");
        }
    }
}

/// Each failover state renders as a state of its own, coloured, with what brings the
/// outputs back; READY is exit 0 only when traffic may come back (IN_SERVICE).
#[test]
fn ha_view_shows_each_failover_state_and_what_ends_it() {
    let mut s = with_state(ServerState::Ready, false);
    s.failover.state = Some(FailoverState::FailbackHold);
    s.failover.since = Some("2024-05-08T10:13:30+02:00".into());
    s.failover.why = Some("server ready and probing well; outputs back in 10m".into());
    s.failover.holds.clear();
    s.failover.failback_at = Some("2024-05-08T10:23:30+02:00".into());
    s.failover.failback_left_secs = Some(480);
    let plain = render_human(&s, false);
    for needle in [
        "failover  FAILBACK_HOLD  since 2024-05-08 10:13:30 (2m ago)",
        "          back in 8m (at 2024-05-08 10:23:30) or now by qoscntrlr failback",
        "          why: server ready and probing well; outputs back in 10m",
    ] {
        assert!(plain.contains(needle), "missing {needle:?} in\n{plain}");
    }
    assert!(!plain.contains("held down by"), "{plain}");
    assert_eq!(
        exit_code(&s),
        1,
        "READY in a failback hold takes no traffic"
    );
    assert!(render_human(&s, true).contains("\x1b[1;33mFAILBACK_HOLD\x1b[0m"));

    s.failover.failback_at = None;
    s.failover.failback_left_secs = None;
    s.failover.failback_awaits_operator = true;
    let plain = render_human(&s, false);
    assert!(
        plain.contains("back only by qoscntrlr failback (QOS_FAILBACK=manual)"),
        "{plain}"
    );

    s.failover.state = Some(FailoverState::FailoverTriggered);
    s.failover.failback_awaits_operator = false;
    s.failover.holds = vec!["nokill:probe-timeout".into(), "rule:QOS_RULE_LEAK".into()];
    let plain = render_human(&s, false);
    assert!(
        plain.contains("held down by: nokill:probe-timeout, rule:QOS_RULE_LEAK"),
        "{plain}"
    );
    assert_eq!(exit_code(&s), 1, "READY with the outputs down is degraded");
    assert!(render_human(&s, true).contains("\x1b[1;31mFAILOVER_TRIGGERED"));

    s.failover.state = Some(FailoverState::InService);
    s.failover.holds.clear();
    assert_eq!(exit_code(&s), 0);
    assert!(render_human(&s, true).contains("\x1b[1;32mIN_SERVICE"));

    let mut faulted = with_state(ServerState::Faulted, false);
    faulted.failover.why = Some("server FAULTED (restart limit reached)".into());
    let plain = render_human(&faulted, false);
    assert!(plain.contains("failover  OUT_OF_SERVICE  since"), "{plain}");
    assert!(
        plain.contains("why: server FAULTED (restart limit reached)"),
        "{plain}"
    );
    assert_eq!(exit_code(&faulted), 3);
}

/// What each output says: the trigger's content (1, 0, none, unreadable), readiness and
/// agent not configured or not listening.
#[test]
fn ha_view_shows_what_each_output_says() {
    let mut s = snapshot();
    let t = s.failover.trigger.as_mut().unwrap();
    t.content = Some("0".into());
    let plain = render_human(&s, false);
    assert!(
        plain.contains("trigger   0 in /srv/qos/triggerImmediateServerFailover"),
        "{plain}"
    );
    assert!(plain.contains("QOS_DISABLE_FAILOVER_TRIGGER"), "{plain}");

    let t = s.failover.trigger.as_mut().unwrap();
    t.content = None;
    let plain = render_human(&s, false);
    assert!(
        plain.contains("trigger   absent: /srv/qos/triggerImmediateServerFailover"),
        "{plain}"
    );
    let t = s.failover.trigger.as_mut().unwrap();
    t.error = Some("Permission denied (os error 13)".into());
    let plain = render_human(&s, false).replace("\n          ", " ");
    assert!(
        plain.contains("trigger   unreadable: /srv/qos/triggerImmediateServerFailover Permission denied (os error 13)"),
        "{plain}"
    );

    let r = s.failover.readiness.as_mut().unwrap();
    r.listening = false;
    let a = s.failover.agent.as_mut().unwrap();
    a.listen = None;
    let plain = render_human(&s, false);
    assert!(
        plain.contains("readiness 127.0.0.1:8081 answers 503 probe timeout (NOT LISTENING"),
        "{plain}"
    );
    assert!(
        plain.contains("agent     not served (QOS_AGENT_LISTEN not set)"),
        "{plain}"
    );
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["failover"]["readiness"]["code"], 503);
    assert_eq!(json["failover"]["agent"]["listen"], serde_json::Value::Null);
}

/// A snapshot from a controller that predates the HA view still parses and renders.
#[test]
fn snapshot_without_ha_view_still_renders() {
    let mut value = serde_json::to_value(snapshot()).unwrap();
    let failover = value["failover"].as_object_mut().unwrap();
    failover.retain(|k, _| k == "trigger_present" || k == "health");
    let old: StatusSnapshot = serde_json::from_value(value).unwrap();
    assert_eq!(old.failover.state, None);
    let plain = render_human(&old, false);
    assert!(
        plain.contains("failover  trigger file present, health down: probe timeout"),
        "{plain}"
    );
}

/// Lines fit in 80 columns; a path, URL or name wider than that stands alone on its own
/// line and is never cut (it can be copied whole).
fn assert_fits_and_whole(text: &str, wholes: &[&str]) {
    let plain = strip_ansi(text);
    for line in plain.lines() {
        if line.chars().count() > 80 {
            // Only a label or an indent before it: `config    /very/long/path`.
            let alone = wholes.iter().any(|w| {
                line.strip_suffix(w).is_some_and(|before| {
                    before.chars().count() <= 20 && before.split_whitespace().count() <= 1
                })
            });
            assert!(alone, "too wide and not one whole value: {line:?}\n{plain}");
        }
    }
    for whole in wholes {
        assert!(
            plain.lines().any(|l| l.contains(whole)),
            "{whole:?} not whole on one line in\n{plain}"
        );
    }
}

#[test]
fn long_paths_are_never_cut() {
    let long_dir =
        "/srv/qos/instances/production-cluster-east/node-0042/data-directory-with-a-long-name";
    let mut s = snapshot();
    s.controller.config_path = format!("{long_dir}/dcontroller.ini");
    s.controller.log_file = Some(format!("{long_dir}/qoscntrlr202405081000.out"));
    s.server.why = format!("cannot read {long_dir}/notes.txt: Permission denied");
    s.probe.target =
        "http://a-very-long-host-name.internal.example.com:8080/health/check?with=query&and=more"
            .into();
    s.incidents[0].diagnostics = Some(format!("{long_dir}/diagnostics/nsd_20240508_101431.log"));
    s.failover.trigger.as_mut().unwrap().path =
        format!("{long_dir}/triggerImmediateServerFailover");
    s.containment = Some(qoscntrlr::status::ContainmentStatus {
        setting: "auto".into(),
        mode: "cgroup".into(),
        cgroup: Some("/sys/fs/cgroup/system.slice/qoscntrlr-production-east.service/server".into()),
        layout: Some("delegated".into()),
        controllers: vec![],
        reason: None,
    });
    let app = s.apps[0].name.clone();
    let wholes = [
        s.controller.config_path.clone(),
        s.controller.log_file.clone().unwrap(),
        format!("{long_dir}/notes.txt:"),
        s.probe.target.clone(),
        s.incidents[0].diagnostics.clone().unwrap(),
        s.failover.trigger.as_ref().unwrap().path.clone(),
        s.containment.as_ref().unwrap().cgroup.clone().unwrap(),
        app.clone(),
    ];
    let wholes: Vec<&str> = wholes.iter().map(String::as_str).collect();
    for color in [false, true] {
        let text = render_human(&s, color);
        assert!(!strip_ansi(&text).contains('~'), "{text}");
        assert_fits_and_whole(&text, &wholes);
    }
    // A value wider than what is left of its line moves to a line of its own.
    let plain = render_human(&s, false);
    let trigger = s.failover.trigger.as_ref().unwrap().path.clone();
    assert!(
        plain.contains(&format!("trigger   1 in\n          {trigger}\n")),
        "{plain}"
    );
    assert!(
        plain.contains(&format!("  - {app}\n    age 10m 40s")),
        "{plain}"
    );
    // One that fits where it is stays there.
    s.apps[0].name = "FIXUP[C:\\Program Files\\HCL\\Domino\\Data\\mail\\a.nsf]".into();
    let plain = render_human(&s, false);
    assert!(
        plain.contains("  - FIXUP[C:\\Program Files\\HCL\\Domino\\Data\\mail\\a.nsf] age 10m 40s"),
        "{plain}"
    );
}

/// The contract in the module doc of `status.rs` names every outcome the core has and
/// every failover state (a doc that lists strings the code never sends, or misses one it
/// does, is a broken contract).
#[test]
fn json_contract_doc_names_every_outcome_and_state() {
    let source = include_str!("../src/status.rs");
    let contract: String = source
        .lines()
        .take_while(|l| l.starts_with("//!") || l.is_empty())
        .map(|l| l.trim_start_matches("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    let outcome_doc = contract
        .split("outcome: ")
        .nth(1)
        .and_then(|rest| rest.split("containment").next())
        .expect("the contract documents incident outcomes");
    let documented: Vec<&str> = outcome_doc
        .split(|c: char| c == '|' || c.is_whitespace() || c == '/')
        .filter(|w| !w.is_empty())
        .collect();
    let mut expected: Vec<&str> = IncidentOutcome::ALL.iter().map(|o| o.as_str()).collect();
    let mut got = documented.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "outcomes in the contract: {outcome_doc}");
    for state in FailoverState::ALL {
        assert!(contract.contains(state.as_str()), "{state} not documented");
    }
    for state in ServerState::ALL {
        assert!(contract.contains(state.as_str()), "{state} not documented");
    }
    // The field doc says the same.
    let field_doc = source
        .split("/// Where it stands (the core's incident outcome):")
        .nth(1)
        .and_then(|rest| rest.split("pub outcome").next())
        .expect("IncidentStatus::outcome is documented");
    for outcome in IncidentOutcome::ALL {
        assert!(
            field_doc.contains(&format!("`{}`", outcome.as_str())),
            "{} missing from the outcome field doc",
            outcome.as_str()
        );
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
    let app = s.apps[0].name.clone();
    for color in [false, true] {
        let text = render_human(&s, color);
        assert_fits_and_whole(&text, &[&app]);
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
