//! HAProxy with qoscntrlr's agent-check, on loopback, using packaging/examples/haproxy.cfg:
//! a hung server is marked down by the agent within one `agent-inter` of the failover
//! trigger, traffic goes to the backup, and comes back once the restarted server is healthy.
//! A crash loop that ends FAULTED marks the server down for good; after `clear-fault` it
//! comes back only after QOS_FAILBACK_HOLD. Under QOS_NOKILL a hang still marks it down,
//! and the hang ending by itself brings it back.

mod ha_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ha_support::{
    crash_times, engine_ready, example, find_program, free_port, http_get, merge_ini, refused,
    rewrite, slow_nsd, unique_tag, wait_for, watch_failback, Controller, ProcessGuard, DEMO_SERVER,
};

/// `agent-inter` in the example.
const AGENT_INTER: Duration = Duration::from_millis(500);
/// Polling and scheduling on a shared CI machine, on top of the agent interval.
const SLACK: Duration = Duration::from_millis(500);
/// QOS_FAILBACK_HOLD of the failback test: well above what the way back takes without
/// it (a 200 ms probe, one agent-inter), so a missing hold cannot pass.
const FAILBACK_HOLD: Duration = Duration::from_secs(4);
/// How long a server marked down is watched to stay down (once FAULTED).
const STAYS_DOWN: Duration = Duration::from_secs(4);
/// How long the diagnostics of the crash that reaches the restart limit take (a real
/// nsd can take minutes); marking the server down must not wait for them.
const SLOW_NSD: Duration = Duration::from_secs(15);

/// `status` and `check_status`/`agent_status` of one server from the runtime API.
fn server_stat(socket: &Path, backend: &str, server: &str) -> Option<(String, String)> {
    server_stat_with(socket, backend, server, "agent_status")
}

/// `status` and the column `other` of one server from the runtime API.
fn server_stat_with(
    socket: &Path,
    backend: &str,
    server: &str,
    other: &str,
) -> Option<(String, String)> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(b"show stat\n").ok()?;
    let mut csv = String::new();
    stream.read_to_string(&mut csv).ok()?;
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name);
    let (status, agent) = (column("status")?, column(other)?);
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

/// One HAProxy with the example's backend: app1 the supervised demo server (its
/// controller answering the agent-check), app2 a plain demo server as the backup.
/// Field order is drop order: HAProxy first, then the controller, then the backup.
struct Setup {
    _haproxy: ProcessGuard,
    controller: Controller,
    _backup: ProcessGuard,
    tag: String,
    backup_tag: String,
    admin: std::path::PathBuf,
    front: SocketAddr,
    app: SocketAddr,
    agent: SocketAddr,
    dir: tempfile::TempDir,
}

impl Setup {
    /// Everything started, app1 UP and serving through HAProxy. `extra` ini lines.
    fn start(extra: &[&str]) -> Setup {
        Setup::start_in(tempfile::tempdir().expect("temp dir"), extra)
    }

    /// [`Setup::start`] in a temp directory the caller made (for files the ini names).
    fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Setup {
        let (app, backup, agent, front) = (free_port(), free_port(), free_port(), free_port());
        let tag = unique_tag("ha-haproxy-app-");
        let backup_tag = unique_tag("ha-haproxy-backup-");
        let admin = dir.path().join("admin.sock");
        let front_addr: SocketAddr = format!("127.0.0.1:{front}").parse().expect("address");

        let backup_server = ProcessGuard::spawn(
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
        let ini = vec![
            "SERVER_NAME=haproxy-test".into(),
            Controller::demo_command(&format!("127.0.0.1:{app}"), &tag),
            format!("QOS_PROBE=http://127.0.0.1:{app}/health"),
            "QOS_PROBE_INTERVAL=200ms".into(),
            "QOS_PROBE_TIMEOUT=1s".into(),
            "QOS_NSD_TIMEOUT=5s".into(),
            "QOS_RESTART_TIMEOUT=10s".into(),
            "QOS_SHUTDOWN_TIMEOUT=3s".into(),
            format!("QOS_AGENT_LISTEN=127.0.0.1:{agent}"),
        ];
        let ini = merge_ini(ini, extra);
        let controller = Controller::start(&dir.path().join("data"), &ini, &tag, None, &[]);

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
        let haproxy = ProcessGuard::spawn("haproxy", haproxy_cmd, &dir.path().join("haproxy.log"));
        let setup = Setup {
            _haproxy: haproxy,
            controller,
            _backup: backup_server,
            tag,
            backup_tag,
            admin,
            front: front_addr,
            app: format!("127.0.0.1:{app}").parse().expect("address"),
            agent: format!("127.0.0.1:{agent}").parse().expect("address"),
            dir,
        };

        // Healthy: the agent says up, the primary takes the traffic.
        let up = wait_for(Duration::from_secs(15), Duration::from_millis(50), || {
            setup.app1_serving().then_some(())
        });
        assert!(
            up.is_some(),
            "app1 UP and serving through HAProxy; stat {:?}, haproxy log:\n{}",
            setup.stat(),
            setup.haproxy_log()
        );
        setup
    }

    fn stat(&self) -> Option<(String, String)> {
        server_stat(&self.admin, "app_servers", "app1")
    }

    fn haproxy_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }

    /// app1 is UP in HAProxy and the supervised server answers through the frontend.
    fn app1_serving(&self) -> bool {
        self.stat().is_some_and(|(status, _)| status == "UP")
            && answered_by(self.front).as_deref() == Some(self.tag.as_str())
    }

    /// app1 is DOWN in HAProxy and the backup answers through the frontend.
    fn backup_serving(&self) -> bool {
        self.stat()
            .is_some_and(|(status, _)| status.starts_with("DOWN"))
            && answered_by(self.front).as_deref() == Some(self.backup_tag.as_str())
    }

    /// A request straight to the supervised server (its fault switches, its health).
    fn app(&self, path: &str) -> std::io::Result<(u16, String)> {
        http_get(self.app, path, Duration::from_secs(2))
    }

    /// The line the controller's agent port answers now.
    fn agent_says(&self) -> Option<String> {
        let mut stream = TcpStream::connect_timeout(&self.agent, Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut line = String::new();
        stream.read_to_string(&mut line).ok()?;
        Some(line.trim_end().to_string())
    }

    /// HAProxy's record of the agent's last answer for app1 (`last_agt`).
    fn last_agent_answer(&self) -> String {
        server_stat_with(&self.admin, "app_servers", "app1", "last_agt")
            .map(|(_, answer)| answer)
            .unwrap_or_default()
    }
}

#[test]
fn a_hung_server_leaves_the_haproxy_backend_within_one_agent_inter() {
    if !engine_ready("ha_haproxy", &["haproxy"], "haproxy") {
        return;
    }
    let setup = Setup::start(&[]);
    let controller = &setup.controller;

    setup.app("/hang").expect("hang the supervised server");
    let triggered_at = wait_for(Duration::from_secs(10), Duration::from_millis(2), || {
        controller.trigger().map(|_| Instant::now())
    })
    .expect("the controller triggers failover for the hung server");
    let (down_at, agent_status) =
        wait_for(Duration::from_secs(5), Duration::from_millis(5), || {
            let (status, agent) = setup.stat()?;
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
            answered_by(setup.front).as_deref(),
            Some(setup.backup_tag.as_str()),
            "traffic goes to the backup while app1 is down"
        );
    }

    // Recovery: the restarted server is ready and probing well, the agent says up again,
    // and the primary gets the traffic back.
    let back = wait_for(Duration::from_secs(20), Duration::from_millis(100), || {
        setup.app1_serving().then_some(())
    });
    assert!(
        back.is_some(),
        "app1 back in service after recovery; stat {:?}, trigger {:?}",
        setup.stat(),
        controller.trigger()
    );
    assert!(
        controller.trigger().is_none(),
        "trigger removed on recovery"
    );
}

#[test]
fn a_crash_loop_to_faulted_marks_the_server_down_for_good_and_it_returns_only_after_the_failback_hold(
) {
    if !engine_ready("ha_haproxy", &["haproxy"], "haproxy") {
        return;
    }
    let started = Instant::now();
    let hold = format!("QOS_FAILBACK_HOLD={}s", FAILBACK_HOLD.as_secs());
    let dir = tempfile::tempdir().expect("temp dir");
    let (nsd, slow_marker) = slow_nsd(dir.path(), SLOW_NSD);
    let nsd = format!("QOS_NSD_PATH={}", nsd.display());
    let nsd_timeout = format!("QOS_NSD_TIMEOUT={}s", SLOW_NSD.as_secs() * 4);
    let setup = Setup::start_in(
        dir,
        &["QOS_RESTART_LIMIT_MAXIMUM=2", &hold, &nsd, &nsd_timeout],
    );
    let controller = &setup.controller;

    // Two restarts allowed: the third crash leaves the server down, FAULTED. The crashes
    // restarted within the limit put no failover hold (checked before each crash). The
    // third crash's diagnostics are slow, as a real nsd's are.
    let last_crash = crash_times(controller, 3, Duration::from_secs(90), |n| {
        if n == 2 {
            std::fs::write(&slow_marker, "").expect("mark the nsd slow");
        }
        let _ = setup.app("/crash");
    });
    let down_at = wait_for(SLOW_NSD / 2, Duration::from_millis(5), || {
        setup.backup_serving().then(Instant::now)
    })
    .unwrap_or_else(|| {
        panic!(
            "HAProxy marks app1 down and the backup serves at once for a server left down, \
             not after its {SLOW_NSD:?} of diagnostics; stat {:?}; log:\n{}",
            setup.stat(),
            controller.log_text()
        )
    });
    println!(
        "crash reaching the restart limit -> HAProxy app1 DOWN, backup serving: {} ms",
        down_at.saturating_duration_since(last_crash).as_millis()
    );
    // The agent's verdict, not only the HTTP check of a server that is gone.
    assert_eq!(setup.agent_says().as_deref(), Some("down #faulted"));
    assert!(
        setup.last_agent_answer().contains("faulted"),
        "HAProxy's last agent answer {:?}",
        setup.last_agent_answer()
    );
    // And it stays down: through the diagnostics, into FAULTED and while FAULTED.
    let mut faulted_since: Option<Instant> = None;
    let watch_limit = Instant::now() + SLOW_NSD + Duration::from_secs(60);
    while faulted_since.is_none_or(|at| at.elapsed() < STAYS_DOWN) {
        assert!(
            Instant::now() < watch_limit,
            "not FAULTED after the slow diagnostics; log:\n{}",
            controller.log_text()
        );
        // A request that fails under load proves nothing; one that app1 answers would.
        let stat = setup.stat();
        assert!(
            stat.as_ref()
                .is_none_or(|(status, _)| status.starts_with("DOWN")),
            "app1 stays DOWN while the server is left down; stat {stat:?}"
        );
        assert_ne!(
            answered_by(setup.front).as_deref(),
            Some(setup.tag.as_str()),
            "no traffic to app1 while the server is left down"
        );
        assert_eq!(setup.agent_says().as_deref(), Some("down #faulted"));
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

    // clear-fault: the server starts and is soon well, but the agent says up (and HAProxy
    // sends traffic back) only after QOS_FAILBACK_HOLD of READY and probing well.
    let clear_fault_at = Instant::now();
    let (code, out) = controller.cli(&["clear-fault"], Duration::from_secs(30));
    assert_eq!(code, Some(0), "clear-fault: {out}");
    let failback = watch_failback(
        Duration::from_secs(40) + FAILBACK_HOLD,
        clear_fault_at,
        || refused(&setup.app("/health")),
        || setup.agent_says().as_deref() == Some("up ready"),
        || setup.stat().is_some_and(|(status, _)| status == "UP"),
    )
    .unwrap_or_else(|| {
        panic!(
            "the agent says up after clear-fault and the failback hold; log:\n{}",
            controller.log_text()
        )
    });
    println!(
        "server listening again -> agent up: {} ms (QOS_FAILBACK_HOLD {} s)",
        failback.after_down.as_millis(),
        FAILBACK_HOLD.as_secs()
    );
    assert!(
        failback.after_down >= FAILBACK_HOLD,
        "the agent said up {:?} after the server was last found not listening; QOS_FAILBACK_HOLD is {FAILBACK_HOLD:?}",
        failback.after_down
    );
    let back_at = wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
        setup.app1_serving().then(Instant::now)
    })
    .unwrap_or_else(|| {
        panic!(
            "app1 back in service after the failback hold; stat {:?}",
            setup.stat()
        )
    });
    println!(
        "agent up -> app1 serving through HAProxy: {} ms",
        back_at
            .saturating_duration_since(failback.back_at)
            .as_millis()
    );
    assert!(
        controller.trigger().is_none(),
        "trigger removed on failback"
    );
    println!("test took {} ms", started.elapsed().as_millis());
}

#[test]
fn a_nokill_hang_marks_the_server_down_and_its_self_recovery_brings_it_back() {
    if !engine_ready("ha_haproxy", &["haproxy"], "haproxy") {
        return;
    }
    let started = Instant::now();
    let setup = Setup::start(&["QOS_NOKILL=1"]);
    let controller = &setup.controller;
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
    setup
        .app(&format!("/hang?secs={}", hang_for.as_secs()))
        .expect("hang the supervised server");
    let triggered_at = wait_for(Duration::from_secs(10), Duration::from_millis(2), || {
        controller.trigger().map(|_| Instant::now())
    })
    .expect("under QOS_NOKILL the hang still triggers failover");
    let down_at = wait_for(Duration::from_secs(5), Duration::from_millis(5), || {
        let (status, _) = setup.stat()?;
        status.starts_with("DOWN").then(Instant::now)
    })
    .expect("HAProxy marks app1 down");
    let took = down_at.saturating_duration_since(triggered_at);
    println!(
        "NOKILL trigger -> HAProxy app1 DOWN: {} ms",
        took.as_millis()
    );
    assert!(
        took <= AGENT_INTER + SLACK,
        "app1 went down {took:?} after the trigger; agent-inter is {AGENT_INTER:?}"
    );
    // HAProxy words it "via agent : down (<reason>)".
    assert!(
        setup.last_agent_answer().contains("down"),
        "HAProxy's last agent answer {:?}",
        setup.last_agent_answer()
    );
    assert_eq!(
        answered_by(setup.front).as_deref(),
        Some(setup.backup_tag.as_str()),
        "traffic goes to the backup while app1 hangs"
    );

    // The hang ends by itself: the probe succeeds again, the agent says up, app1 gets the
    // traffic back from the same server process, which was never killed.
    let failback = watch_failback(
        hang_for + Duration::from_secs(30),
        hung_at,
        // A hung server is not refusing: only the hang's end counts here.
        || false,
        || setup.agent_says().as_deref() == Some("up ready"),
        || setup.stat().is_some_and(|(status, _)| status == "UP"),
    )
    .unwrap_or_else(|| {
        panic!(
            "the agent says up once the hang is over; log:\n{}",
            controller.log_text()
        )
    });
    assert!(
        failback.back_at >= hung_at + hang_for,
        "the agent said up {:?} after the hang began, before the server answered again ({hang_for:?})",
        failback.back_at.saturating_duration_since(hung_at)
    );
    println!(
        "hang over -> agent up: {} ms",
        failback
            .back_at
            .saturating_duration_since(hung_at + hang_for)
            .as_millis()
    );
    let back_at = wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
        setup.app1_serving().then(Instant::now)
    })
    .unwrap_or_else(|| {
        panic!(
            "app1 back in service after the self-recovery; stat {:?}",
            setup.stat()
        )
    });
    println!(
        "agent up -> app1 serving through HAProxy: {} ms",
        back_at
            .saturating_duration_since(failback.back_at)
            .as_millis()
    );
    assert_eq!(
        controller.server_state(),
        Some(("READY".to_string(), Some(pid))),
        "the same server process, never killed"
    );
    assert!(
        controller.trigger().is_none(),
        "trigger removed on recovery"
    );
    println!("test took {} ms", started.elapsed().as_millis());
}
