//! keepalived (Debian's 2.2.x) with packaging/examples/keepalived.conf, for real: three
//! network namespaces made by the test (qosA-…, qosB-…: the two VRRP nodes; qosC-…: the
//! client, holding the bridge that joins them), 10.231.N.0/24 inside them only.
//! qoscntrlr supervises a demo server in qosA; when it hangs, the failover trigger puts
//! keepalived on qosA into FAULT and the client reaches qosB through the VIP within 2 s;
//! recovery brings the VIP back. With QOS_DISABLE_FAILOVER_TRIGGER=1 the VIP stays.
//! Everything (processes, namespaces) is removed on exit by the guards.

mod ha_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ha_support::{
    crash_times, engine_ready, example, find_program, http_get_in, ip, merge_ini,
    netns_has_address, refused, rewrite, slow_nsd, unique_tag, wait_for, watch_failback,
    Controller, Namespaces, ProcessGuard, DEMO_SERVER,
};

const APT: &str = "keepalived iproute2";
const APP_PORT: u16 = 8080;
/// The bound from the trigger to the client reaching the peer.
const MOVE_LIMIT: Duration = Duration::from_secs(2);
/// QOS_FAILBACK_HOLD of the failback test: well above what the way back takes without
/// it (a 200 ms probe, keepalived leaving FAULT), so a missing hold cannot pass.
const FAILBACK_HOLD: Duration = Duration::from_secs(4);
/// How long a moved VIP is watched to stay moved (once FAULTED).
const STAYS_MOVED: Duration = Duration::from_secs(4);
/// How long the diagnostics of the crash that reaches the restart limit take (a real
/// nsd can take minutes); the move must not wait for them.
const SLOW_NSD: Duration = Duration::from_secs(15);

/// Two VRRP nodes and a client in namespaces of their own, keepalived on both nodes.
/// Field order is drop order: keepalived stops before the namespaces go.
struct Cluster {
    _keepalived_a: ProcessGuard,
    _keepalived_b: ProcessGuard,
    node_a: String,
    node_b: String,
    client: String,
    /// The example's VI_QOS_1 address: normally on node A.
    vip: String,
    dir: PathBuf,
    _namespaces: Namespaces,
}

impl Cluster {
    /// `subnet` picks 10.231.`subnet`.0/24, `trigger_a` is the trigger file keepalived on
    /// node A tracks (the controller's data directory).
    fn start(dir: &Path, subnet: u8, trigger_a: &Path) -> Cluster {
        let tag = unique_tag("");
        let (node_a, node_b, client) = (
            format!("qosA-{tag}"),
            format!("qosB-{tag}"),
            format!("qosC-{tag}"),
        );
        let namespaces = Namespaces::create(&[node_a.clone(), node_b.clone(), client.clone()]);
        let net = format!("10.231.{subnet}");
        ip(&["-n", &client, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &client, "link", "set", "br0", "up"]);
        ip(&[
            "-n",
            &client,
            "addr",
            "add",
            &format!("{net}.3/24"),
            "dev",
            "br0",
        ]);
        for (node, port, host) in [(&node_a, "vA", 1), (&node_b, "vB", 2)] {
            ip(&[
                "-n", node, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns",
                &client,
            ]);
            ip(&["-n", &client, "link", "set", port, "master", "br0"]);
            ip(&["-n", &client, "link", "set", port, "up"]);
            ip(&[
                "-n",
                node,
                "addr",
                "add",
                &format!("{net}.{host}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", node, "link", "set", "eth0", "up"]);
        }

        let base = example("keepalived.conf");
        let config_for = |trigger: &Path| {
            rewrite(
                "keepalived.conf",
                &base,
                &[
                    ("$VIP_1=198.51.100.100/24", &format!("$VIP_1={net}.100/24")),
                    ("$VIP_2=198.51.100.101/24", &format!("$VIP_2={net}.101/24")),
                    (
                        "$QOS_TRIGGER=/var/lib/qoscntrlr/triggerImmediateServerFailover",
                        &format!("$QOS_TRIGGER={}", trigger.display()),
                    ),
                    ("198.51.100.11", &format!("{net}.1")),
                    ("198.51.100.12", &format!("{net}.2")),
                ],
            )
        };
        let keepalived = |node: &str, id: &str, trigger: &Path| {
            let conf = dir.join(format!("keepalived-{id}.conf"));
            std::fs::write(&conf, config_for(trigger)).expect("write keepalived.conf");
            let mut cmd = Command::new(find_program("ip").expect("iproute2"));
            cmd.args(["netns", "exec", node])
                .arg(find_program("keepalived").expect("checked by engine_ready"))
                .args([
                    "--dont-fork",
                    "--log-console",
                    "--log-detail",
                    "--vrrp",
                    "--no-syslog",
                ])
                .arg("--use-file")
                .arg(&conf)
                .args(["--config-id", id])
                .arg(format!("--pid={}", dir.join(format!("{id}.pid")).display()))
                .arg(format!(
                    "--vrrp_pid={}",
                    dir.join(format!("{id}-vrrp.pid")).display()
                ))
                .arg(format!(
                    "--checkers_pid={}",
                    dir.join(format!("{id}-checkers.pid")).display()
                ));
            ProcessGuard::spawn(
                &format!("keepalived {id}"),
                cmd,
                &dir.join(format!("keepalived-{id}.log")),
            )
        };
        let keepalived_a = keepalived(&node_a, "nodeA", trigger_a);
        // Node B tracks its own (never written) trigger.
        let keepalived_b = keepalived(&node_b, "nodeB", &dir.join("nodeB-trigger"));
        Cluster {
            _keepalived_a: keepalived_a,
            _keepalived_b: keepalived_b,
            node_a,
            node_b,
            client,
            vip: format!("{net}.100"),
            dir: dir.to_path_buf(),
            _namespaces: namespaces,
        }
    }

    fn vip_addr(&self) -> SocketAddr {
        format!("{}:{APP_PORT}", self.vip)
            .parse()
            .expect("VIP address")
    }

    /// The `--name` of the demo server the client reaches through the VIP.
    fn client_reaches(&self, limit: Duration) -> Option<String> {
        let (code, body) = http_get_in(&self.client, self.vip_addr(), "/", limit).ok()?;
        (code == 200).then(|| body.split('\'').nth(1).unwrap_or_default().to_string())
    }

    fn keepalived_log(&self, id: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("keepalived-{id}.log"))).unwrap_or_default()
    }

    /// A plain demo server on node B (the peer's application).
    fn peer_server(&self, name: &str) -> ProcessGuard {
        let mut cmd = Command::new(find_program("ip").expect("iproute2"));
        cmd.args(["netns", "exec", &self.node_b, DEMO_SERVER])
            .args([
                "--listen",
                &format!("0.0.0.0:{APP_PORT}"),
                "--name",
                name,
                "--no-messages",
            ]);
        ProcessGuard::spawn("peer demo server", cmd, &self.dir.join("peer-server.log"))
    }
}

fn controller_ini(tag: &str, extra: &[&str]) -> Vec<String> {
    let lines = vec![
        "SERVER_NAME=keepalived-test".to_string(),
        Controller::demo_command(&format!("0.0.0.0:{APP_PORT}"), tag),
        format!("QOS_PROBE=http://127.0.0.1:{APP_PORT}/health"),
        "QOS_PROBE_INTERVAL=200ms".into(),
        "QOS_PROBE_TIMEOUT=1s".into(),
        "QOS_NSD_TIMEOUT=5s".into(),
        "QOS_RESTART_TIMEOUT=10s".into(),
        "QOS_SHUTDOWN_TIMEOUT=3s".into(),
    ];
    merge_ini(lines, extra)
}

/// Both keepalived nodes settled: the VIP on A, the client served by A's server.
fn wait_settled(cluster: &Cluster, server_a: &str) {
    let settled = wait_for(Duration::from_secs(15), Duration::from_millis(100), || {
        (netns_has_address(&cluster.node_a, &cluster.vip)
            && !netns_has_address(&cluster.node_b, &cluster.vip)
            && cluster
                .client_reaches(Duration::from_millis(500))
                .as_deref()
                == Some(server_a))
        .then_some(())
    });
    assert!(
        settled.is_some(),
        "VIP {} on node A serving {server_a}; keepalived A log:\n{}",
        cluster.vip,
        cluster.keepalived_log("nodeA")
    );
}

/// A request to node A's supervised server (its fault switches, its health check).
fn server_a(cluster: &Cluster, path: &str) -> std::io::Result<(u16, String)> {
    http_get_in(
        &cluster.node_a,
        format!("127.0.0.1:{APP_PORT}").parse().expect("address"),
        path,
        Duration::from_secs(2),
    )
}

fn hang_server_a(cluster: &Cluster) {
    server_a(cluster, "/hang").expect("hang the supervised server");
}

/// The VIP is on node B only and the client is served by the peer.
fn moved_to_peer(cluster: &Cluster, peer: &str) -> bool {
    netns_has_address(&cluster.node_b, &cluster.vip)
        && !netns_has_address(&cluster.node_a, &cluster.vip)
        && cluster
            .client_reaches(Duration::from_millis(500))
            .as_deref()
            == Some(peer)
}

/// The VIP is on node A only and the client is served by `server`.
fn back_on_a(cluster: &Cluster, server: &str) -> bool {
    netns_has_address(&cluster.node_a, &cluster.vip)
        && !netns_has_address(&cluster.node_b, &cluster.vip)
        && cluster
            .client_reaches(Duration::from_millis(500))
            .as_deref()
            == Some(server)
}

#[test]
fn a_hung_server_moves_the_vip_to_the_peer_and_recovery_brings_it_back() {
    if !engine_ready("ha_keepalived", &["keepalived", "ip"], APT) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data-a");
    let cluster = Cluster::start(dir.path(), 41, &data.join("triggerImmediateServerFailover"));
    let peer_name = unique_tag("ha-keepalived-peer-");
    let _peer = cluster.peer_server(&peer_name);
    let tag = unique_tag("ha-keepalived-app-");
    let controller = Controller::start(
        &data,
        &controller_ini(&tag, &[]),
        &tag,
        Some(&cluster.node_a),
        &[],
    );
    wait_settled(&cluster, &tag);

    hang_server_a(&cluster);
    let triggered_at = wait_for(Duration::from_secs(10), Duration::from_millis(2), || {
        controller
            .trigger()
            .map(|content| (Instant::now(), content))
    });
    let (triggered_at, content) = triggered_at.expect("the controller triggers failover");
    assert_eq!(content, "1\n", "failover requested");
    let moved_at = wait_for(MOVE_LIMIT * 3, Duration::from_millis(10), || {
        (cluster
            .client_reaches(Duration::from_millis(100))
            .as_deref()
            == Some(peer_name.as_str()))
        .then(Instant::now)
    })
    .expect("the client reaches the peer through the VIP");
    let took = moved_at.saturating_duration_since(triggered_at);
    println!(
        "trigger -> client served by the peer through the VIP: {} ms",
        took.as_millis()
    );
    assert!(
        took <= MOVE_LIMIT,
        "the VIP moved {took:?} after the trigger"
    );
    assert!(
        netns_has_address(&cluster.node_b, &cluster.vip),
        "VIP on node B"
    );
    assert!(
        cluster
            .keepalived_log("nodeA")
            .contains("(VI_QOS_1) Entering FAULT STATE"),
        "keepalived on node A logs FAULT:\n{}",
        cluster.keepalived_log("nodeA")
    );

    // Recovery: the restarted server is READY and probing well, the trigger goes, node A
    // leaves FAULT and (preempting) takes its address back.
    let recovered = wait_for(Duration::from_secs(20), Duration::from_millis(100), || {
        (controller.trigger().is_none()
            && netns_has_address(&cluster.node_a, &cluster.vip)
            && cluster
                .client_reaches(Duration::from_millis(500))
                .as_deref()
                == Some(tag.as_str()))
        .then_some(())
    });
    assert!(
        recovered.is_some(),
        "VIP back on node A after recovery; trigger {:?}; keepalived A log:\n{}",
        controller.trigger(),
        cluster.keepalived_log("nodeA")
    );
    assert!(
        !netns_has_address(&cluster.node_b, &cluster.vip),
        "VIP left node B"
    );
    assert!(
        controller
            .log_text()
            .contains("QoS Kill: Triggering failover..."),
        "controller log names the failover"
    );
}

#[test]
fn with_the_trigger_disabled_the_vip_stays() {
    if !engine_ready("ha_keepalived", &["keepalived", "ip"], APT) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data-a");
    let cluster = Cluster::start(dir.path(), 42, &data.join("triggerImmediateServerFailover"));
    let peer_name = unique_tag("ha-keepalived-peer-");
    let _peer = cluster.peer_server(&peer_name);
    let tag = unique_tag("ha-keepalived-app-");
    let controller = Controller::start(
        &data,
        &controller_ini(&tag, &["QOS_DISABLE_FAILOVER_TRIGGER=1"]),
        &tag,
        Some(&cluster.node_a),
        &[],
    );
    wait_settled(&cluster, &tag);

    hang_server_a(&cluster);
    let content = wait_for(Duration::from_secs(10), Duration::from_millis(2), || {
        controller.trigger()
    })
    .expect("the trigger file is still written");
    assert_eq!(content, "0\n", "failover not requested");
    // Longer than the move takes when the trigger asks for failover.
    let watch_until = Instant::now() + MOVE_LIMIT;
    while Instant::now() < watch_until {
        assert!(
            netns_has_address(&cluster.node_a, &cluster.vip)
                && !netns_has_address(&cluster.node_b, &cluster.vip),
            "the VIP stays on node A"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !cluster.keepalived_log("nodeA").contains("FAULT"),
        "keepalived on node A never faults:\n{}",
        cluster.keepalived_log("nodeA")
    );
    assert!(
        controller.log_text().contains("QoS Kill: Running nsd"),
        "the smart kill itself went ahead"
    );
}

#[test]
fn a_crash_loop_to_faulted_moves_the_vip_for_good_and_it_returns_only_after_the_failback_hold() {
    if !engine_ready("ha_keepalived", &["keepalived", "ip"], APT) {
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data-a");
    let cluster = Cluster::start(dir.path(), 43, &data.join("triggerImmediateServerFailover"));
    let peer_name = unique_tag("ha-keepalived-peer-");
    let _peer = cluster.peer_server(&peer_name);
    let tag = unique_tag("ha-keepalived-app-");
    let hold = format!("QOS_FAILBACK_HOLD={}s", FAILBACK_HOLD.as_secs());
    let (nsd, slow_marker) = slow_nsd(dir.path(), SLOW_NSD);
    let nsd = format!("QOS_NSD_PATH={}", nsd.display());
    let nsd_timeout = format!("QOS_NSD_TIMEOUT={}s", SLOW_NSD.as_secs() * 4);
    let controller = Controller::start(
        &data,
        &controller_ini(
            &tag,
            &["QOS_RESTART_LIMIT_MAXIMUM=2", &hold, &nsd, &nsd_timeout],
        ),
        &tag,
        Some(&cluster.node_a),
        &[],
    );
    wait_settled(&cluster, &tag);

    // Two restarts allowed: the third crash leaves the server down, FAULTED. The crashes
    // restarted within the limit move nothing (checked before each crash). The third
    // crash's diagnostics are slow, as a real nsd's are.
    let last_crash = crash_times(&controller, 3, Duration::from_secs(90), |n| {
        if n == 2 {
            std::fs::write(&slow_marker, "").expect("mark the nsd slow");
        }
        let _ = server_a(&cluster, "/crash");
    });
    let (triggered_at, content) = wait_for(SLOW_NSD / 2, Duration::from_millis(10), || {
        controller
            .trigger()
            .map(|content| (Instant::now(), content))
    })
    .unwrap_or_else(|| {
        panic!(
            "the crash that reaches the restart limit writes the trigger at once, not after \
             its {SLOW_NSD:?} of diagnostics; log:\n{}",
            controller.log_text()
        )
    });
    assert_eq!(content, "1\n", "failover requested for a server left down");
    println!(
        "crash reaching the restart limit -> trigger: {} ms",
        triggered_at
            .saturating_duration_since(last_crash)
            .as_millis()
    );
    let moved_at = wait_for(MOVE_LIMIT * 3, Duration::from_millis(10), || {
        moved_to_peer(&cluster, &peer_name).then(Instant::now)
    })
    .unwrap_or_else(|| {
        panic!(
            "the VIP moves to node B for a server left down; keepalived A log:\n{}",
            cluster.keepalived_log("nodeA")
        )
    });
    println!(
        "trigger -> client served by the peer through the VIP: {} ms",
        moved_at.saturating_duration_since(triggered_at).as_millis()
    );
    // And it stays moved: through the diagnostics, into FAULTED and while FAULTED.
    let mut faulted_since: Option<Instant> = None;
    let watch_limit = Instant::now() + SLOW_NSD + Duration::from_secs(60);
    while faulted_since.is_none_or(|at| at.elapsed() < STAYS_MOVED) {
        assert!(
            Instant::now() < watch_limit,
            "not FAULTED after the slow diagnostics; log:\n{}",
            controller.log_text()
        );
        assert_eq!(
            controller.trigger().as_deref(),
            Some("1\n"),
            "the trigger stays while the server is left down"
        );
        assert!(
            netns_has_address(&cluster.node_b, &cluster.vip)
                && !netns_has_address(&cluster.node_a, &cluster.vip),
            "the VIP stays on node B while the server is left down"
        );
        if faulted_since.is_none()
            && controller.server_state().map(|(state, _)| state).as_deref() == Some("FAULTED")
        {
            faulted_since = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_file(&slow_marker);
    assert_eq!(
        controller.server_state().map(|(state, _)| state).as_deref(),
        Some("FAULTED")
    );
    assert!(
        server_a(&cluster, "/health").is_err(),
        "nothing serves on node A"
    );
    assert!(
        cluster
            .keepalived_log("nodeA")
            .contains("(VI_QOS_1) Entering FAULT STATE"),
        "keepalived on node A logs FAULT:\n{}",
        cluster.keepalived_log("nodeA")
    );

    // clear-fault: the server starts and is soon well, but the VIP comes back only after
    // QOS_FAILBACK_HOLD of READY and probing well.
    let clear_fault_at = Instant::now();
    let (code, out) = controller.cli(&["clear-fault"], Duration::from_secs(30));
    assert_eq!(code, Some(0), "clear-fault: {out}");
    let failback = watch_failback(
        Duration::from_secs(40) + FAILBACK_HOLD,
        clear_fault_at,
        || refused(&server_a(&cluster, "/health")),
        || controller.trigger().is_none(),
        || netns_has_address(&cluster.node_a, &cluster.vip),
    )
    .unwrap_or_else(|| {
        panic!(
            "the trigger goes after clear-fault and the failback hold; log:\n{}",
            controller.log_text()
        )
    });
    println!(
        "server listening again -> trigger removed: {} ms (QOS_FAILBACK_HOLD {} s)",
        failback.after_down.as_millis(),
        FAILBACK_HOLD.as_secs()
    );
    assert!(
        failback.after_down >= FAILBACK_HOLD,
        "the trigger went {:?} after the server was last found not listening; QOS_FAILBACK_HOLD is {FAILBACK_HOLD:?}",
        failback.after_down
    );
    let back_at = wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
        back_on_a(&cluster, &tag).then(Instant::now)
    })
    .unwrap_or_else(|| {
        panic!(
            "VIP back on node A after the failback hold; keepalived A log:\n{}",
            cluster.keepalived_log("nodeA")
        )
    });
    println!(
        "trigger removed -> client served by node A again: {} ms",
        back_at
            .saturating_duration_since(failback.back_at)
            .as_millis()
    );
    let log = controller.log_text();
    for line in [
        "QoS Controller: The restart limit is reached: the server will be left down (FAULTED); failover outputs down now, before its diagnostics",
        "QoS Controller: Server is FAULTED: failover outputs down until it is ready again",
        "QoS Controller: Fault cleared by the operator",
        "QoS Controller: Server is ready and probing well; failback hold: the failover outputs stay down for 4 seconds (QOS_FAILBACK_HOLD)",
        "QoS Controller: Failback hold over: the server has been ready and probing well for 4 seconds",
        "QoS Controller: Server has recovered; failover trigger removed",
    ] {
        assert!(log.contains(line), "controller log lacks {line:?}:\n{log}");
    }
    println!("test took {} ms", started.elapsed().as_millis());
}

#[test]
fn a_nokill_hang_moves_the_vip_and_its_self_recovery_brings_it_back() {
    if !engine_ready("ha_keepalived", &["keepalived", "ip"], APT) {
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data-a");
    let cluster = Cluster::start(dir.path(), 44, &data.join("triggerImmediateServerFailover"));
    let peer_name = unique_tag("ha-keepalived-peer-");
    let _peer = cluster.peer_server(&peer_name);
    let tag = unique_tag("ha-keepalived-app-");
    let controller = Controller::start(
        &data,
        &controller_ini(&tag, &["QOS_NOKILL=1"]),
        &tag,
        Some(&cluster.node_a),
        &[],
    );
    wait_settled(&cluster, &tag);
    let pid = wait_for(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || match controller.server_state()? {
            (state, Some(pid)) if state == "READY" => Some(pid),
            _ => None,
        },
    )
    .expect("the server is READY");

    // A hang that ends by itself: long enough for the probe timeout (1 s) and the move.
    let hang_for = Duration::from_secs(8);
    let hung_at = Instant::now();
    server_a(&cluster, &format!("/hang?secs={}", hang_for.as_secs()))
        .expect("hang the supervised server");
    let (triggered_at, content) =
        wait_for(Duration::from_secs(10), Duration::from_millis(2), || {
            controller
                .trigger()
                .map(|content| (Instant::now(), content))
        })
        .expect("under QOS_NOKILL the hang still triggers failover");
    assert_eq!(content, "1\n", "failover requested");
    let moved_at = wait_for(MOVE_LIMIT * 3, Duration::from_millis(10), || {
        moved_to_peer(&cluster, &peer_name).then(Instant::now)
    })
    .unwrap_or_else(|| {
        panic!(
            "the VIP moves to node B for a hung server under QOS_NOKILL; keepalived A log:\n{}",
            cluster.keepalived_log("nodeA")
        )
    });
    let took = moved_at.saturating_duration_since(triggered_at);
    println!(
        "NOKILL trigger -> client served by the peer through the VIP: {} ms",
        took.as_millis()
    );
    assert!(
        took <= MOVE_LIMIT,
        "the VIP moved {took:?} after the trigger"
    );

    // The hang ends by itself: the probe succeeds again, the trigger goes, the VIP comes
    // back to the same server process, which was never killed.
    let failback = watch_failback(
        hang_for + Duration::from_secs(30),
        hung_at,
        // A hung server is not refusing: only the hang's end counts here.
        || false,
        || controller.trigger().is_none(),
        || netns_has_address(&cluster.node_a, &cluster.vip),
    )
    .unwrap_or_else(|| {
        panic!(
            "the trigger goes once the hang is over; log:\n{}",
            controller.log_text()
        )
    });
    assert!(
        failback.back_at >= hung_at + hang_for,
        "the trigger went {:?} after the hang began, before the server answered again ({hang_for:?})",
        failback.back_at.saturating_duration_since(hung_at)
    );
    println!(
        "hang over -> trigger removed: {} ms",
        failback
            .back_at
            .saturating_duration_since(hung_at + hang_for)
            .as_millis()
    );
    wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
        back_on_a(&cluster, &tag).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "VIP back on node A after the self-recovery; keepalived A log:\n{}",
            cluster.keepalived_log("nodeA")
        )
    });
    assert_eq!(
        controller.server_state(),
        Some(("READY".to_string(), Some(pid))),
        "the same server process, never killed"
    );
    let log = controller.log_text();
    for line in [
        "QoS Controller: QOS_NOKILL is set: not killing the server",
        "QoS Controller: QOS_NOKILL: failover outputs down while the condition lasts",
        "QoS Controller: Server has recovered: the probe succeeds again",
        "QoS Controller: Server has recovered; failover trigger removed",
    ] {
        assert!(log.contains(line), "controller log lacks {line:?}:\n{log}");
    }
    assert!(
        !log.contains("QoS Kill: Running nsd -kill"),
        "nothing killed under QOS_NOKILL:\n{log}"
    );
    println!("test took {} ms", started.elapsed().as_millis());
}
