//! HAProxy with qoscntrlr's agent-check, on loopback, using packaging/examples/haproxy.cfg:
//! a hung server is marked down by the agent within one `agent-inter` of the failover
//! trigger, traffic goes to the backup, and comes back once the restarted server is healthy.

mod ha_support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ha_support::{
    engine_ready, example, find_program, free_port, http_get, rewrite, unique_tag, wait_for,
    Controller, ProcessGuard, DEMO_SERVER,
};

/// `agent-inter` in the example.
const AGENT_INTER: Duration = Duration::from_millis(500);
/// Polling and scheduling on a shared CI machine, on top of the agent interval.
const SLACK: Duration = Duration::from_millis(500);

/// `status` and `check_status`/`agent_status` of one server from the runtime API.
fn server_stat(socket: &Path, backend: &str, server: &str) -> Option<(String, String)> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(b"show stat\n").ok()?;
    let mut csv = String::new();
    stream.read_to_string(&mut csv).ok()?;
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name);
    let (status, agent) = (column("status")?, column("agent_status")?);
    lines
        .map(|line| line.split(',').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&backend) && fields.get(1) == Some(&server))
        .map(|fields| {
            (
                fields.get(status).unwrap_or(&"").to_string(),
                fields.get(agent).unwrap_or(&"").to_string(),
            )
        })
}

/// The `--name` of the demo server that answered through HAProxy.
fn answered_by(front: SocketAddr) -> Option<String> {
    let (code, body) = http_get(front, "/", Duration::from_secs(2)).ok()?;
    (code == 200).then(|| {
        body.split('\'')
            .nth(1)
            .map(str::to_string)
            .unwrap_or_default()
    })
}

#[test]
fn a_hung_server_leaves_the_haproxy_backend_within_one_agent_inter() {
    if !engine_ready("ha_haproxy", &["haproxy"], "haproxy") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (app, backup, agent, front) = (free_port(), free_port(), free_port(), free_port());
    let tag = unique_tag("ha-haproxy-app-");
    let backup_tag = unique_tag("ha-haproxy-backup-");
    let admin = dir.path().join("admin.sock");
    let front_addr: SocketAddr = format!("127.0.0.1:{front}").parse().expect("address");

    let _backup = ProcessGuard::spawn(
        "backup demo server",
        {
            let mut cmd = Command::new(DEMO_SERVER);
            cmd.args([
                "--listen",
                &format!("127.0.0.1:{backup}"),
                "--name",
                &backup_tag,
                "--no-messages",
            ]);
            cmd
        },
        &dir.path().join("backup.log"),
    );
    let controller = Controller::start(
        &dir.path().join("data"),
        &[
            "SERVER_NAME=haproxy-test".into(),
            Controller::demo_command(&format!("127.0.0.1:{app}"), &tag),
            format!("QOS_PROBE=http://127.0.0.1:{app}/health"),
            "QOS_PROBE_INTERVAL=200ms".into(),
            "QOS_PROBE_TIMEOUT=1s".into(),
            "QOS_NSD_TIMEOUT=5s".into(),
            "QOS_RESTART_TIMEOUT=10s".into(),
            "QOS_SHUTDOWN_TIMEOUT=3s".into(),
            format!("QOS_AGENT_LISTEN=127.0.0.1:{agent}"),
        ],
        &tag,
        None,
        &[],
    );

    let config = rewrite(
        "haproxy.cfg",
        &example("haproxy.cfg"),
        &[
            (
                "/run/haproxy/admin.sock",
                admin.to_str().expect("utf-8 path"),
            ),
            ("bind 127.0.0.1:8080", &format!("bind 127.0.0.1:{front}")),
            (
                "server app1 127.0.0.1:8089",
                &format!("server app1 127.0.0.1:{app}"),
            ),
            ("agent-port 8091", &format!("agent-port {agent}")),
            (
                "server app2 127.0.0.1:8189",
                &format!("server app2 127.0.0.1:{backup}"),
            ),
        ],
    );
    let config_path = dir.path().join("haproxy.cfg");
    std::fs::write(&config_path, config).expect("write haproxy.cfg");
    let haproxy_bin = find_program("haproxy").expect("checked by engine_ready");
    let mut haproxy_cmd = Command::new(haproxy_bin);
    haproxy_cmd.arg("-db").arg("-f").arg(&config_path);
    let _haproxy = ProcessGuard::spawn("haproxy", haproxy_cmd, &dir.path().join("haproxy.log"));

    // Healthy: the agent says up, the primary takes the traffic.
    let up = wait_for(Duration::from_secs(15), Duration::from_millis(50), || {
        let (status, _) = server_stat(&admin, "app_servers", "app1")?;
        (status == "UP" && answered_by(front_addr).as_deref() == Some(tag.as_str())).then_some(())
    });
    assert!(
        up.is_some(),
        "app1 UP and serving through HAProxy; stat {:?}, haproxy log:\n{}",
        server_stat(&admin, "app_servers", "app1"),
        std::fs::read_to_string(dir.path().join("haproxy.log")).unwrap_or_default()
    );

    http_get(
        format!("127.0.0.1:{app}").parse().expect("address"),
        "/hang",
        Duration::from_secs(2),
    )
    .expect("hang the supervised server");
    let triggered_at = wait_for(Duration::from_secs(10), Duration::from_millis(2), || {
        controller.trigger().map(|_| Instant::now())
    })
    .expect("the controller triggers failover for the hung server");
    let (down_at, agent_status) =
        wait_for(Duration::from_secs(5), Duration::from_millis(5), || {
            let (status, agent) = server_stat(&admin, "app_servers", "app1")?;
            status.starts_with("DOWN").then(|| (Instant::now(), agent))
        })
        .expect("HAProxy marks app1 down");
    let took = down_at.saturating_duration_since(triggered_at);
    println!(
        "trigger -> HAProxy app1 DOWN: {} ms (agent {agent_status})",
        took.as_millis()
    );
    assert!(
        took <= AGENT_INTER + SLACK,
        "app1 went down {took:?} after the trigger; agent-inter is {AGENT_INTER:?}"
    );
    // The HTTP check alone (inter 2s, fall 3) could not have done it this fast; the
    // agent did it: its last answer was the down verdict.
    assert!(
        agent_status.starts_with("L7"),
        "agent check status {agent_status:?}"
    );
    for _ in 0..3 {
        assert_eq!(
            answered_by(front_addr).as_deref(),
            Some(backup_tag.as_str()),
            "traffic goes to the backup while app1 is down"
        );
    }

    // Recovery: the restarted server is ready and probing well, the agent says up again,
    // and the primary gets the traffic back.
    let back = wait_for(Duration::from_secs(20), Duration::from_millis(100), || {
        let (status, _) = server_stat(&admin, "app_servers", "app1")?;
        (status == "UP" && answered_by(front_addr).as_deref() == Some(tag.as_str())).then_some(())
    });
    assert!(
        back.is_some(),
        "app1 back in service after recovery; stat {:?}, trigger {:?}",
        server_stat(&admin, "app_servers", "app1"),
        controller.trigger()
    );
    assert!(
        controller.trigger().is_none(),
        "trigger removed on recovery"
    );
}
