//! End to end, real processes: the remaining rows of the supervision rules and the operator
//! commands of the command line against the demo server — restart timeout, slow operator restart,
//! quit/start/diagnose/kill, EXHAUSTED and TIMEOUT messages, QOS_NOKILL, a disabled
//! failover trigger, and a server that exits by itself.

mod common;

use common::{is_alive, Harness, TriggerWatch, DEMO};

#[test]
fn a_server_not_ready_within_the_restart_timeout_is_killed_without_failover() {
    let port = common::free_port();
    let command = format!("{DEMO} --listen 127.0.0.1:{port} --startup-delay 60s --no-messages");
    let probe = format!("tcp://127.0.0.1:{port}");
    let mut h = Harness::server(
        &command,
        &[("QOS_PROBE", probe.as_str()), ("QOS_RESTART_TIMEOUT", "1s")],
    );
    let watch = TriggerWatch::start(&h);
    h.start();
    h.wait_for("QoS Controller: OpMsg=START Type=QOS ObjectType=ServerName");
    let first = h.server_pid();
    h.expect_in_order(&[
        "QoS Controller: Server was not ready within QOS_RESTART_TIMEOUT (1 second); killing and restarting",
        "QoS Kill: Running nsd...",
        "QoS Kill: Diagnostics written to ",
        "QoS Kill: Running nsd -kill",
        "QoS Kill: Setting kill complete.",
        "QoS Kill: Restarting DominoStarter thread",
        "QoS Controller: OpMsg=START Type=QOS ObjectType=ServerName",
    ]);
    assert!(!is_alive(first));
    let seen = watch.finish();
    assert_eq!(
        seen.sightings, 0,
        "no failover for a server that never served"
    );
    assert_eq!(h.count("QoS Kill: Triggering failover..."), 0);
    h.stop();
}

#[test]
fn operator_quit_start_diagnose_and_kill() {
    let mut h = Harness::demo(&[]);
    h.start_ready();
    h.wait_for("QoS Probe: SUCCESS (");
    let first = h.server_pid();

    let out = h.cli("diagnose", &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    h.expect_in_order(&[
        "QoS Controller: Command diagnose from uid ",
        "QoS Kill: Running nsd...",
        "QoS Kill: Diagnostics written to ",
        "QoS Probe: SUCCESS (",
    ]);
    assert_eq!(h.count("QoS Kill: Running nsd -kill"), 0);
    assert_eq!(h.server_pid(), first, "diagnose must not kill");

    let out = h.cli("quit", &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    h.expect_in_order(&[
        "QoS Controller: Command quit from uid ",
        "QoS Controller: OpMsg=END Type=SERVER ObjectType=Detail ObjectValue=Quit TimeDate=",
        "QoS Controller: Deactivating probe...",
        "QoS Controller: QoS Probe deactivated.",
        "QoS Controller: Server ended (exit code 0)",
    ]);
    assert!(common::eventually("STOPPED", || h.state() == "STOPPED"));
    let (code, _) = h.status();
    assert_eq!(code, Some(3), "status exit code when STOPPED");
    assert!(!is_alive(first));
    let again = h.cli("quit", &[]);
    assert!(
        matches!(again.code, Some(0) | Some(1)) && !again.stdout.is_empty()
            || !again.stderr.is_empty(),
        "a second quit is answered: {again:?}"
    );
    let refused = h.cli("kill", &[]);
    assert_eq!(refused.code, Some(1), "kill with no server: {refused:?}");
    assert!(refused.stderr.contains("kill refused"), "{refused:?}");

    let out = h.cli("start", &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    h.expect_in_order(&[
        "QoS Controller: Command start from uid ",
        "QoS Controller: OpMsg=START Type=QOS ObjectType=ServerName",
        "QoS Controller: Server is ready to process requests",
        "QoS Probe: SUCCESS (",
    ]);
    let second = h.server_pid();

    let out = h.cli("kill", &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    h.expect_in_order(&[
        "QoS Controller: Command kill from uid ",
        "QoS Kill: Triggering failover...",
        "QoS Kill: Running nsd...",
        "QoS Kill: Running nsd -kill",
        "QoS Kill: Setting kill complete.",
        "QoS Kill: Restarting DominoStarter thread",
        "QoS Controller: Server is ready to process requests",
        "QoS Controller: Server has recovered; failover trigger removed",
    ]);
    assert!(!is_alive(second));
    let (code, json) = h.status();
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(
        json["server"]["restarts_in_window"], 0,
        "operator-requested restarts do not count: {json}"
    );
    h.stop();
}

#[test]
fn a_restart_that_takes_too_long_is_killed_and_restarted() {
    let mut h = Harness::demo(&[
        ("QOS_SHUTDOWN_TIMEOUT", "2s"),
        ("QOS_RESTART_TIMEOUT", "30s"),
    ]);
    h.start_ready();
    let first = h.server_pid();
    h.http_ok("/slow-shutdown?secs=60");
    let out = h.cli("restart", &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    h.expect_in_order(&[
        "QoS Controller: Command restart from uid ",
        "QoS Controller: OpMsg=END Type=SERVER ObjectType=Detail ObjectValue=Quit TimeDate=",
        "QoS Controller: Server did not shut down within QOS_SHUTDOWN_TIMEOUT (2 seconds); killing",
        "QoS Kill: Running nsd -kill",
        "QoS Kill: Setting kill complete.",
        "QoS Kill: Restarting DominoStarter thread",
        "QoS Controller: OpMsg=START Type=QOS ObjectType=ServerName",
        "QoS Controller: Server is ready to process requests",
    ]);
    assert!(!is_alive(first));
    assert_eq!(h.count("QoS Kill: Triggering failover..."), 0);
    let (_, json) = h.status();
    assert_eq!(
        json["server"]["restarts_in_window"], 0,
        "operator restarts do not count: {json}"
    );
    h.stop();
}

#[test]
fn exhausted_and_timeout_messages_smart_kill() {
    let mut h = Harness::demo(&[]);
    h.start_ready();
    h.wait_for("QoS Probe: SUCCESS (");
    let first = h.server_pid();
    h.http_ok("/exhaust?resource=SESSION_TABLE");
    h.expect_in_order(&[
        "QoS Controller: OpMsg=EXHAUSTED Type=SESSION_TABLE",
        "QoS Controller: Server is out of SESSION_TABLE",
        "QoS Kill: Triggering failover...",
        "QoS Kill: Running nsd...",
        "QoS Kill: Running nsd -kill",
        "QoS Kill: Setting kill complete.",
        "QoS Kill: Restarting DominoStarter thread",
        "QoS Controller: Server is ready to process requests",
        "QoS Controller: Server has recovered; failover trigger removed",
    ]);
    assert!(!is_alive(first));
    let second = h.server_pid();

    h.send("OpMsg=TIMEOUT Type=PROBE");
    h.expect_in_order(&[
        "QoS Controller: OpMsg=TIMEOUT Type=PROBE TimeDate=",
        "QoS Controller: The controller has received a probe timeout.",
        "QoS Kill: Triggering failover...",
        "QoS Kill: Running nsd -kill",
        "QoS Kill: Restarting DominoStarter thread",
        "QoS Controller: Server is ready to process requests",
    ]);
    assert!(!is_alive(second));
    h.stop();
}

#[test]
fn nokill_detects_and_collects_but_never_kills() {
    let mut h = Harness::demo(&[("QOS_NOKILL", "1")]);
    h.start_ready();
    h.wait_for("QoS Probe: SUCCESS (");
    let server = h.server_pid();
    let watch = TriggerWatch::start(&h);
    h.http_ok("/hang?secs=4");
    h.expect_in_order(&[
        "QoS Controller: The controller has received a probe timeout.",
        "QoS Controller: QOS_NOKILL is set: not killing the server (probe timeout)",
        "QoS Controller: QOS_NOKILL: failover outputs down while the condition lasts",
        "QoS Kill: Running nsd...",
        "QoS Probe: SUCCESS (",
        "QoS Controller: Server has recovered: the probe succeeds again",
        "QoS Controller: Server has recovered; failover trigger removed",
    ]);
    // Diagnostics may finish before or after the hang clears by itself.
    assert!(
        common::eventually("diagnostics written", || h
            .count("QoS Kill: Diagnostics written to ")
            == 1),
        "{}",
        h.dump()
    );
    let seen = watch.finish();
    assert!(
        seen.sightings > 0,
        "NOKILL still moves traffic away while the hang lasts"
    );
    assert_eq!(
        h.count("QoS Kill: Triggering failover..."),
        0,
        "{}",
        h.dump()
    );
    assert_eq!(h.count("QoS Kill: Running nsd -kill"), 0);
    // Once per incident: the hang lasted several probe timeouts' worth of errors.
    assert_eq!(h.count("QoS Kill: Running nsd..."), 1, "{}", h.dump());
    assert_eq!(h.server_pid(), server);
    assert!(!h.trigger_file().exists());
    h.stop();
}

#[test]
fn a_disabled_failover_trigger_is_written_with_0() {
    let mut h = Harness::demo(&[("QOS_DISABLE_FAILOVER_TRIGGER", "1")]);
    h.start_ready();
    h.wait_for("QoS Probe: SUCCESS (");
    let watch = TriggerWatch::start(&h);
    h.http_ok("/hang");
    h.expect_in_order(&[
        "QoS Kill: Triggering failover...",
        "QoS Kill: Setting kill complete.",
        "QoS Controller: Server has recovered; failover trigger removed",
    ]);
    let seen = watch.finish();
    assert!(seen.sightings > 0, "{}", h.dump());
    assert_eq!(seen.contents, vec!["0\n".to_string()]);
    assert!(seen.out_of_window.is_empty(), "{:?}", seen.out_of_window);
    assert!(!h.trigger_file().exists());
    h.stop();
}

#[test]
fn a_server_that_exits_by_itself_is_restarted() {
    let mut h = Harness::demo(&[]);
    h.start_ready();
    h.wait_for("QoS Probe: SUCCESS (");
    let first = h.server_pid();
    let _ = h.http("/exit?code=0");
    h.expect_in_order(&[
        "QoS Controller: Server exit: exit code 0",
        "QoS Kill: Restarting DominoStarter thread",
        "QoS Controller: OpMsg=START Type=QOS ObjectType=ServerName",
        "QoS Controller: Server is ready to process requests",
    ]);
    assert!(!is_alive(first));
    assert_eq!(h.count("QoS Kill: Triggering failover..."), 0);
    h.stop();
}
