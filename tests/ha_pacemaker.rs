//! Pacemaker, offline: the packaged hook (packaging/examples/pacemaker-qos-hook.sh) and
//! location rule (packaging/examples/pacemaker-location.xml) against a two-node CIB file
//! (tests/ha_fixtures/pacemaker-two-node-cib.xml). qoscntrlr runs the hook for real with
//! `CIB_file` in its environment; `crm_simulate` shows the VIP moving to node2 on
//! failover and back to node1 on recovery.

mod ha_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ha_support::{
    engine_ready, find_program, free_port, http_get, unique_tag, wait_for, Controller,
};

const APT: &str = "pacemaker-cli-utils";
const MOVE_TO_NODE2: &str = "vip     ( node1 -> node2 )";
const MOVE_TO_NODE1: &str = "vip     ( node2 -> node1 )";

fn manifest(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs a Pacemaker tool with `CIB_file` set; its stdout, or a panic with everything.
fn pacemaker(program: &str, cib: &Path, args: &[&str]) -> String {
    let binary = find_program(program).unwrap_or_else(|| panic!("{program} not found"));
    let out = Command::new(binary)
        .args(args)
        .env("CIB_file", cib)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The "Transition Summary" of `crm_simulate --simulate` on `cib`, optionally saving the
/// resulting CIB (resources where the transition put them) to `save`.
fn transition(cib: &Path, save: Option<&Path>) -> String {
    let mut args = vec![
        "--xml-file",
        cib.to_str().expect("utf-8 path"),
        "--simulate",
    ];
    if let Some(save) = save {
        args.extend(["--save-output", save.to_str().expect("utf-8 path")]);
    }
    let out = pacemaker("crm_simulate", cib, &args);
    out.split("Transition Summary:")
        .nth(1)
        .and_then(|rest| rest.split("Executing Cluster Transition").next())
        .unwrap_or_else(|| panic!("no transition summary in:\n{out}"))
        .to_string()
}

/// The value of node1's transient `qos-failover` attribute in `cib`.
fn failover_attribute(cib: &Path) -> Option<String> {
    let xml = std::fs::read_to_string(cib).ok()?;
    let line = xml.lines().find(|l| l.contains("name=\"qos-failover\""))?;
    line.split("value=\"")
        .nth(1)?
        .split('"')
        .next()
        .map(str::to_string)
}

#[test]
fn the_hook_moves_the_vip_away_and_back_in_crm_simulate() {
    if !engine_ready(
        "ha_pacemaker",
        &["crm_simulate", "crm_attribute", "cibadmin"],
        APT,
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let cib = dir.path().join("cib.xml");
    // The fixture has no resource history: one simulated transition starts vip on node1.
    let fixture = manifest("tests/ha_fixtures/pacemaker-two-node-cib.xml");
    let started = transition(&fixture, Some(&cib));
    assert!(
        started.contains("Start") && started.contains("( node1 )"),
        "{started}"
    );
    pacemaker(
        "cibadmin",
        &cib,
        &[
            "--create",
            "--scope",
            "constraints",
            "--xml-file",
            manifest("packaging/examples/pacemaker-location.xml")
                .to_str()
                .expect("utf-8 path"),
        ],
    );
    assert_eq!(transition(&cib, None).trim(), "", "vip settled on node1");

    let hook = manifest("packaging/examples/pacemaker-qos-hook.sh");
    let hook = hook.to_str().expect("utf-8 path");
    let port = free_port();
    let tag = unique_tag("ha-pacemaker-app-");
    let controller = Controller::start(
        &dir.path().join("data"),
        &[
            "SERVER_NAME=pacemaker-test".into(),
            // The restart takes 2 s, so the test can look at the failed-over cluster
            // before the recovery hook runs.
            format!(
                "{} --startup-delay 2s",
                Controller::demo_command(&format!("127.0.0.1:{port}"), &tag)
            ),
            format!("QOS_PROBE=http://127.0.0.1:{port}/health"),
            "QOS_PROBE_INTERVAL=200ms".into(),
            "QOS_PROBE_TIMEOUT=1s".into(),
            "QOS_NSD_TIMEOUT=5s".into(),
            "QOS_RESTART_TIMEOUT=15s".into(),
            "QOS_SHUTDOWN_TIMEOUT=3s".into(),
            format!("QOS_FAILOVER_HOOK={hook}"),
            format!("QOS_RECOVERY_HOOK={hook}"),
        ],
        &tag,
        None,
        &[
            ("CIB_file", cib.to_str().expect("utf-8 path")),
            ("QOS_PACEMAKER_NODE", "node1"),
        ],
    );
    let ready = wait_for(Duration::from_secs(15), Duration::from_millis(50), || {
        http_get(
            format!("127.0.0.1:{port}").parse().ok()?,
            "/health",
            Duration::from_secs(1),
        )
        .ok()
        .filter(|(code, _)| *code == 200)
    });
    assert!(ready.is_some(), "the supervised server comes up");
    assert_eq!(failover_attribute(&cib), None, "no hook ran yet");

    http_get(
        format!("127.0.0.1:{port}").parse().expect("address"),
        "/hang",
        Duration::from_secs(2),
    )
    .expect("hang the supervised server");
    let value = wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
        failover_attribute(&cib).filter(|v| v == "1")
    });
    assert!(
        value.is_some(),
        "the failover hook set qos-failover=1; hooks log:\n{}",
        std::fs::read_to_string(dir.path().join("data/qoscntrlr-hooks.log")).unwrap_or_default()
    );
    let moved = dir.path().join("moved.xml");
    let away = transition(&cib, Some(&moved));
    assert!(away.contains(MOVE_TO_NODE2), "vip moves to node2:\n{away}");
    // The cluster acts: from now on the CIB has vip running on node2. Replace the file
    // atomically, the recovery hook writes to it.
    let staged = dir.path().join("cib.xml.new");
    std::fs::copy(&moved, &staged).expect("stage the moved CIB");
    std::fs::rename(&staged, &cib).expect("install the moved CIB");
    assert!(
        controller.trigger().is_some(),
        "still failed over when the move was simulated (recovery came too early)"
    );

    let value = wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
        failover_attribute(&cib).filter(|v| v == "0")
    });
    assert!(
        value.is_some(),
        "the recovery hook set qos-failover=0; hooks log:\n{}",
        std::fs::read_to_string(dir.path().join("data/qoscntrlr-hooks.log")).unwrap_or_default()
    );
    let back = transition(&cib, None);
    assert!(
        back.contains(MOVE_TO_NODE1),
        "vip moves back to node1:\n{back}"
    );
    let hooks =
        std::fs::read_to_string(dir.path().join("data/qoscntrlr-hooks.log")).expect("hooks log");
    assert!(
        hooks.contains("pacemaker-qos-hook: failover for pacemaker-test (")
            && hooks.contains("pacemaker-qos-hook: recovery for pacemaker-test ("),
        "both hooks ran with the server name:\n{hooks}"
    );
}
