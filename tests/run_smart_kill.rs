//! End to end, real processes: the smart kill of `qoscntrlr run` (the supervision rules, the log format, the failover outputs)
//! on the demo server — probe timeout after a hang, a daemonized grandchild that must die
//! with the tree, memory exhaustion measured by the controller, and pause/resume with
//! `status` asked in every state on the way.

mod common;

use common::{is_alive, is_gone, session_of, Harness, TriggerWatch, SERVER_NAME};

/// The log lines of a smart kill and the restart that follows, in order.
fn smart_kill_and_restart_lines() -> Vec<String> {
    [
        "QoS Kill: Triggering failover...",
        "QoS Controller: Deactivating probe...",
        "QoS Controller: QoS Probe deactivated.",
        "QoS Kill: Running nsd...",
        "QoS Kill: Diagnostics written to ",
        "QoS Kill: Running nsd -kill",
        "QoS Kill: Setting kill complete.",
        "QoS Kill: Restarting DominoStarter thread",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(restarted_lines())
    .collect()
}

/// The log lines of a (re)start up to the recovery of the failover trigger.
fn restarted_lines() -> Vec<String> {
    vec![
        format!(
            "QoS Controller: OpMsg=START Type=QOS ObjectType=ServerName ObjectValue={SERVER_NAME} \
             ObjectType2=ProcessName ObjectValue2=qos-demo-server TimeDate="
        ),
        "QoS Controller: OpMsg=START Type=SERVER TimeDate=".into(),
        "QoS Applications: Clearing long running apps list".into(),
        "QoS Controller: OpMsg=READY Type=SERVER".into(),
        "QoS Controller: Server is ready to process requests".into(),
        "QoS Controller: Activating probe...".into(),
        "QoS Controller: QoS Probe activated.".into(),
        "QoS Probe: Starting qosprobe...".into(),
        "QoS Probe: OpMsg=START, Type=PROBE".into(),
        "QoS Probe: The QoS Probe is probing.".into(),
        "QoS Probe: SUCCESS (".into(),
        "QoS Controller: Server has recovered; failover trigger removed".into(),
    ]
}

fn expect_lines(h: &mut Harness, lines: &[String]) {
    for line in lines {
        h.wait_for(line);
    }
}

/// The diagnostics file named by the last `Diagnostics written to` line seen.
fn diagnostics_file(h: &Harness) -> std::path::PathBuf {
    let line = h
        .seen()
        .into_iter()
        .rev()
        .find(|l| l.starts_with("QoS Kill: Diagnostics written to "))
        .unwrap_or_else(|| panic!("no diagnostics line\n{}", h.dump()));
    let path = line.trim_start_matches("QoS Kill: Diagnostics written to ");
    std::path::PathBuf::from(path)
}

#[test]
fn probe_timeout_smart_kills_restarts_and_clears_the_trigger() {
    let mut h = Harness::demo(&[]);
    h.start_ready();
    h.wait_for("QoS Probe: SUCCESS (");
    let first = h.server_pid();
    let watch = TriggerWatch::start(&h);

    assert!(h.http_ok("/hang").contains("hanging"));
    h.expect_in_order(&[
        "QoS Probe: ERROR: ",
        "The probe thread has not received a message from qosprobe within the timeout period.",
        "QoS Probe: The qosprobe addin has timed out, is not responding, or is not running.",
        // As the reference: the probe is deactivated before the TIMEOUT message.
        "QoS Controller: Deactivating probe...",
        "QoS Controller: QoS Probe deactivated.",
        "QoS Controller: OpMsg=TIMEOUT Type=PROBE TimeDate=",
        "QoS Controller: The controller has received a probe timeout.",
    ]);
    let rest: Vec<String> = smart_kill_and_restart_lines()
        .into_iter()
        .filter(|l| !l.contains("Deactivating probe") && !l.contains("Probe deactivated"))
        .collect();
    expect_lines(&mut h, &rest);

    let seen = watch.finish();
    assert!(
        seen.sightings > 0,
        "the trigger file was never seen during the incident\n{}",
        h.dump()
    );
    assert_eq!(seen.contents, vec!["1\n".to_string()], "trigger content");
    assert!(
        seen.out_of_window.is_empty(),
        "trigger file present outside 'Triggering failover...'..recovery: {:?}\n{}",
        seen.out_of_window,
        h.dump()
    );
    assert!(
        !h.trigger_file().exists(),
        "trigger file left after recovery"
    );

    let diag = diagnostics_file(&h);
    assert_eq!(diag.parent(), Some(h.data().join("diagnostics").as_path()));
    let name = diag.file_name().unwrap_or_default().to_string_lossy();
    assert!(
        name.starts_with("nsd_") && name.ends_with("_probe-timeout.log"),
        "diagnostics file name: {name}"
    );
    let text = std::fs::read_to_string(&diag).expect("read the diagnostics file");
    assert!(
        text.contains(&first.to_string()),
        "diagnostics do not mention the hung server pid {first}"
    );

    assert!(
        is_gone(first) || !is_alive(first),
        "hung server {first} survived"
    );
    let (code, json) = h.status();
    assert_eq!(json["server"]["state"], "READY", "{json}");
    assert_eq!(code, Some(0));
    assert_ne!(h.server_pid(), first, "the server was not restarted");
    assert_eq!(json["server"]["restarts_in_window"], 1, "{json}");
    // The failover is asked only for a server that was serving: exactly once here.
    assert_eq!(h.count("QoS Kill: Triggering failover..."), 1);
    h.stop();
    h.assert_line_format();
}

#[test]
fn a_daemonized_grandchild_dies_with_the_tree() {
    let mut h = Harness::demo(&[]);
    h.start_ready();
    let server = h.server_pid();
    let body = h.http_ok("/daemonize");
    let grandchild: i32 = body
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {body:?}"));
    assert!(
        is_alive(grandchild),
        "the grandchild {grandchild} is not running"
    );
    // The sleeper calls setsid() just after its pid is announced.
    assert!(
        common::eventually("grandchild in its own session", || {
            session_of(grandchild) == Some(grandchild)
        }),
        "the grandchild did not leave the server's session ({:?} vs {:?})",
        session_of(grandchild),
        session_of(server)
    );

    h.http_ok("/hang");
    h.expect_in_order(&[
        "QoS Controller: The controller has received a probe timeout.",
        "QoS Kill: Triggering failover...",
        "QoS Kill: Running nsd -kill",
        "QoS Kill: Setting kill complete.",
    ]);
    assert!(
        !is_alive(server),
        "the hung server {server} survived the kill"
    );
    assert!(
        !is_alive(grandchild),
        "the setsid grandchild {grandchild} ({}) survived the kill\n{}",
        common::cmdline(grandchild),
        h.dump()
    );
    // As child subreaper the controller also reaps it: no zombie stays behind.
    assert!(
        common::eventually("grandchild reaped", || is_gone(grandchild)),
        "grandchild {grandchild} left as a zombie"
    );
    h.wait_for("QoS Controller: Server is ready to process requests");
    h.wait_for("QoS Controller: Server has recovered; failover trigger removed");
    h.stop();
}

#[test]
fn memory_exhaustion_over_n_samples_smart_kills() {
    let mut h = Harness::demo(&[("QOS_MAX_MEMORY", "64"), ("QOS_RESOURCE_SAMPLES", "2")]);
    h.start_ready();
    h.wait_for("QoS Probe: SUCCESS (");
    let first = h.server_pid();
    h.http_ok("/leak?mb=100");
    let line = h.wait_for("QoS Controller: Server has exhausted memory (");
    assert!(line.contains("> 64"), "limit not named: {line}");
    // Two samples over the limit were needed: the sampler ran at least twice since the leak.
    expect_lines(&mut h, &smart_kill_and_restart_lines());
    assert_ne!(h.server_pid(), first);
    assert!(!is_alive(first));
    let diag = diagnostics_file(&h);
    assert!(
        diag.to_string_lossy().contains("memory"),
        "diagnostics file does not name the reason: {}",
        diag.display()
    );
    // The new server starts with a clean slate: no second kill for the old samples.
    h.wait_for("QoS Probe: SUCCESS (");
    h.wait_for("QoS Probe: SUCCESS (");
    assert_eq!(h.count("QoS Controller: Server has exhausted memory"), 1);
    h.stop();
}

#[test]
fn pause_defers_the_kill_until_resume_and_status_answers_in_every_state() {
    let nsd = common::fixture("slow_nsd.sh");
    let mut h = Harness::demo(&[("QOS_NSD_PATH", nsd.as_str())]);
    h.start_ready();
    h.wait_for("QoS Probe: SUCCESS (");
    let (code, json) = h.status();
    assert_eq!(
        (code, json["server"]["state"].as_str()),
        (Some(0), Some("READY"))
    );
    let server = h.server_pid();

    let out = h.cli("pause", &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    h.wait_for("QoS Controller: Command pause from uid ");
    h.wait_for("QoS Controller: Paused by uid ");
    let (code, json) = h.status();
    assert_eq!(json["flags"]["paused"], true, "{json}");
    assert_eq!(json["server"]["state"], "READY", "{json}");
    assert_eq!(code, Some(1), "paused is not healthy");

    h.http_ok("/hang");
    h.expect_in_order(&[
        "QoS Probe: ERROR: ",
        "The probe thread has not received a message from qosprobe within the timeout period.",
        "QoS Probe: The qosprobe addin has timed out, is not responding, or is not running.",
        "QoS Controller: OpMsg=TIMEOUT Type=PROBE TimeDate=",
        "QoS Controller: The controller has received a probe timeout.",
        "QoS Controller: Paused: not killing the server",
    ]);
    // Probing goes on and is logged while paused; several more failed attempts pass.
    for _ in 0..5 {
        h.wait_for("QoS Probe: ERROR: ");
    }
    assert_eq!(
        h.count("QoS Kill: Triggering failover..."),
        0,
        "{}",
        h.dump()
    );
    assert_eq!(h.count("QoS Kill: Running nsd -kill"), 0);
    assert!(is_alive(server), "the server was killed while paused");
    assert!(!h.trigger_file().exists());
    let (_, json) = h.status();
    assert_eq!(json["flags"]["paused"], true);
    assert_eq!(json["server"]["pid"], server);

    let out = h.cli("resume", &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    h.expect_in_order(&[
        "QoS Controller: Command resume from uid ",
        "QoS Controller: Resumed by uid ",
        "QoS Kill: Triggering failover...",
        "QoS Kill: Running nsd...",
    ]);
    // The slow nsd keeps the controller in KILLING for 2 s.
    let (code, json) = h.status();
    assert_eq!(json["server"]["state"], "KILLING", "{json}");
    assert_eq!(json["server"]["phase"], "diagnostics", "{json}");
    assert_eq!(json["failover"]["trigger_present"], true, "{json}");
    // The HA view: a state of its own, and what each output says right now.
    assert_eq!(json["failover"]["state"], "FAILOVER_TRIGGERED", "{json}");
    assert_eq!(json["failover"]["holds"][0], "incident", "{json}");
    assert_eq!(json["failover"]["trigger"]["content"], "1", "{json}");
    assert_eq!(json["failover"]["readiness"]["code"], 503, "{json}");
    assert_eq!(
        json["failover"]["readiness"]["reason"], "probe timeout",
        "{json}"
    );
    assert_eq!(
        json["failover"]["agent"]["reply"], "down #probe timeout",
        "{json}"
    );
    assert!(json["failover"]["since"].is_string(), "{json}");
    assert_eq!(json["flags"]["paused"], false, "{json}");
    assert_eq!(code, Some(1));
    let human = h.cli("status", &[]);
    assert!(
        human
            .stdout
            .contains("failover  FAILOVER_TRIGGERED  since "),
        "{human:?}"
    );
    assert!(human.stdout.contains("trigger   1 in "), "{human:?}");

    h.expect_in_order(&[
        "QoS Kill: Diagnostics written to ",
        "QoS Kill: Running nsd -kill",
        "QoS Kill: Setting kill complete.",
        "QoS Kill: Restarting DominoStarter thread",
        "QoS Controller: Server is ready to process requests",
        "QoS Controller: Server has recovered; failover trigger removed",
    ]);
    let diag = std::fs::read_to_string(diagnostics_file(&h)).expect("read diagnostics");
    assert!(
        diag.contains("slow nsd: reason=") && diag.contains("slow nsd: done"),
        "the nsd program's output was not saved:\n{diag}"
    );
    assert!(!is_alive(server));
    let (code, json) = h.status();
    assert_eq!(json["failover"]["state"], "IN_SERVICE", "{json}");
    assert_eq!(
        json["failover"]["why"], "server ready and probing well",
        "{json}"
    );
    assert_eq!(
        json["failover"]["trigger"]["content"],
        serde_json::Value::Null
    );
    assert_eq!(json["failover"]["readiness"]["code"], 200, "{json}");
    assert_eq!(json["failover"]["agent"]["reply"], "up ready", "{json}");
    assert_eq!(code, Some(0), "{json}");
    h.stop();
}
