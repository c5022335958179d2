//! nginx (Debian's nginx or nginx-light) under `qoscntrlr run`, for real, with
//! packaging/examples/nginx.ini read verbatim. Per run, the test substitutes only the
//! nginx.conf path and the probe's port in it (failing if the example no longer has
//! them), then appends its overrides at the end of the ini — the data directory and
//! short timings — where the reader's "last value wins" applies. The nginx.conf is the
//! test's own: master plus 2 workers on a free loopback port, pid and temp files in the
//! tempdir, error log on stderr (the controller's console capture).
//!
//! * a hang (SIGSTOP to the master and both workers) is a probe timeout: smart kill with
//!   diagnostics, and the restarted nginx serves again;
//! * SIGKILL to the master leaves both workers running as orphans, still holding the
//!   listening socket: the controller kills them before it starts the new master, which
//!   then binds and serves;
//! * a stop is nginx's graceful quit (`SERVER_STOP_SIGNAL=QUIT`), done well within
//!   QOS_SHUTDOWN_TIMEOUT without any kill.
//!
//! After every kill the whole process table is scanned for the old tree. `logs summary
//! --json` must count each incident. Needs root (nginx binds and switches its workers to
//! nobody); without nginx or root the tests skip visibly, under CI they fail.

mod common;
mod real_support;
mod skip;

use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use common::{eventually, http_get, is_gone, Harness};
use real_support::{
    assert_old_tree_gone, console_log, diagnostics_files, example, find_program, is_root, rewrite,
    server_processes, summary, tree_in, OldTree,
};

/// Timings of the test: the example's are for production (a minute of probe timeout).
const OVERRIDES: &[(&str, &str)] = &[
    ("QOS_PROBE_INTERVAL", "200ms"),
    ("QOS_PROBE_TIMEOUT", "1500ms"),
    ("QOS_RESTART_TIMEOUT", "15s"),
    ("QOS_SHUTDOWN_TIMEOUT", "15s"),
    ("QOS_NSD_TIMEOUT", "10s"),
];

/// `/usr/sbin/nginx`, or a visible skip (a failure under CI).
fn nginx_or_skip(test: &str) -> Option<PathBuf> {
    if !is_root() {
        skip::skip(
            test,
            "needs root (nginx binds and switches its workers to nobody)",
        );
        return None;
    }
    let Some(nginx) = find_program("nginx", &[]) else {
        skip::skip(test, "nginx is not installed (apt-get install nginx-light)");
        return None;
    };
    // The example names Debian's path; a different one would not be the recipe tested.
    if nginx != Path::new("/usr/sbin/nginx") {
        skip::skip(
            test,
            &format!("nginx is {}, not Debian's /usr/sbin/nginx", nginx.display()),
        );
        return None;
    }
    Some(nginx)
}

/// The test's nginx.conf: 2 workers on 127.0.0.1:`port`, everything in `dir`.
fn nginx_conf(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "# written by tests/real_nginx.rs\n\
         worker_processes 2;\n\
         pid {d}/nginx.pid;\n\
         error_log stderr notice;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   client_body_temp_path {d}/nginx-temp/body;\n\
         \x20   proxy_temp_path {d}/nginx-temp/proxy;\n\
         \x20   fastcgi_temp_path {d}/nginx-temp/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/nginx-temp/uwsgi;\n\
         \x20   scgi_temp_path {d}/nginx-temp/scgi;\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{port};\n\
         \x20       location = /qos-health {{ access_log off; return 200 \"ok\\n\"; }}\n\
         \x20       location / {{ return 200 \"served by worker $pid\\n\"; }}\n\
         \x20   }}\n\
         }}\n"
    )
}

/// A harness on the shipped example, with the test's nginx.conf beside it.
fn harness() -> Harness {
    Harness::from_text(
        |dir, port| {
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, nginx_conf(dir, port)).expect("write nginx.conf");
            std::fs::create_dir_all(dir.join("nginx-temp")).expect("nginx temp dir");
            rewrite(
                "nginx.ini",
                &example("nginx.ini"),
                &[
                    ("/etc/nginx/nginx.conf", &conf.display().to_string()),
                    (
                        "QOS_PROBE=http://127.0.0.1:80/qos-health",
                        &format!("QOS_PROBE=http://127.0.0.1:{port}/qos-health"),
                    ),
                ],
            )
        },
        OVERRIDES,
    )
}

/// The running master (the controller's server pid) and its workers, once there are 2.
fn master_and_workers(h: &Harness, nginx: &Path) -> OldTree {
    let master = h.server_pid();
    let mut procs = Vec::new();
    let found = eventually("nginx master with 2 workers", || {
        let table = real_support::process_table();
        procs = tree_in(&table, master);
        procs.len() == 3
            && procs
                .iter()
                .all(|p| p.exe == nginx && p.pgid == master && p.cwd.starts_with(h.data()))
    });
    assert!(
        found,
        "master {master} and 2 workers of {}: {procs:#?}\n{}",
        nginx.display(),
        h.dump()
    );
    // Nothing else of this test runs nginx.
    assert_eq!(
        server_processes(nginx, h.data()).len(),
        3,
        "only the master and its 2 workers run nginx in {}",
        h.data().display()
    );
    OldTree {
        procs,
        pgid: master,
    }
}

/// GET / answered 200 by a worker of `master`'s tree.
fn assert_serving(h: &Harness, nginx: &Path, master: i32) {
    let mut last = None;
    let served = eventually("nginx serves GET /", || {
        last = Some(http_get(h.port, "/"));
        matches!(&last, Some(Ok((200, body))) if body.starts_with("served by worker "))
    });
    assert!(served, "GET / on nginx: {last:?}\n{}", h.dump());
    let Some(Ok((_, body))) = last else {
        unreachable!("checked above")
    };
    let worker: i32 = body
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("worker pid in {body:?}"));
    let tree = tree_in(&real_support::process_table(), master);
    assert!(
        tree.iter().any(|p| p.pid == worker && p.exe == nginx),
        "GET / served by worker {worker}, which is not in the tree of master {master}: \
         {tree:#?}"
    );
}

fn signal_all(tree: &OldTree, signal: Signal) {
    for pid in tree.pids() {
        kill(Pid::from_raw(pid), signal).expect("signal an nginx process");
    }
}

/// The server pid shown by status once it differs from `old` and the server is READY.
fn new_ready_master(h: &Harness, old: i32) -> i32 {
    let mut pid = old;
    let ready = eventually("a new nginx master, READY", || {
        let (_, json) = h.status();
        pid = json["server"]["pid"].as_i64().unwrap_or(0) as i32;
        pid != old && pid != 0 && json["server"]["state"] == "READY"
    });
    assert!(ready, "no new READY master after {old}\n{}", h.dump());
    pid
}

fn counts(h: &Harness) -> serde_json::Value {
    summary(h)["counts"].clone()
}

#[test]
fn hung_nginx_is_smart_killed_with_diagnostics_and_serves_again() {
    let Some(nginx) = nginx_or_skip("hung_nginx_is_smart_killed_with_diagnostics_and_serves_again")
    else {
        return;
    };
    let mut h = harness();
    h.start_ready();
    let old = master_and_workers(&h, &nginx);
    assert_serving(&h, &nginx, old.pgid);

    // A hang: master and workers stopped. The kernel still accepts connections on the
    // listening socket, nobody answers them.
    signal_all(&old, Signal::SIGSTOP);
    h.expect_in_order(&[
        "QoS Controller: The controller has received a probe timeout.",
        "QoS Kill: Triggering failover...",
        "QoS Kill: Running nsd...",
        "QoS Kill: Diagnostics written to ",
        "QoS Kill: Running nsd -kill",
        "QoS Kill: Killed 3 process(es) of the server's tree: ",
        "QoS Kill: Setting kill complete.",
        "QoS Kill: Restarting DominoStarter thread",
        "QoS Controller: Starting server: /usr/sbin/nginx ",
        "QoS Controller: Server is ready to process requests",
    ]);
    let master = new_ready_master(&h, old.pgid);
    assert_old_tree_gone(&h, &old, &nginx, Some(master), "after the smart kill");
    let new = master_and_workers(&h, &nginx);
    assert_serving(&h, &nginx, new.pgid);
    // The new master could bind: no bind error in nginx's own words.
    assert!(
        !console_log(&h).contains("bind() to"),
        "console:\n{}",
        console_log(&h)
    );

    // Diagnostics of the hang name the stopped processes.
    let diags = diagnostics_files(&h);
    assert_eq!(diags.len(), 1, "one diagnostics file: {diags:?}");
    let (name, text) = &diags[0];
    assert!(
        name.contains("probe-timeout"),
        "diagnostics file name {name}"
    );
    for pid in old.pids() {
        assert!(
            text.contains(&format!("{pid}")),
            "diagnostics {name} lack process {pid}:\n{text}"
        );
    }
    assert!(
        text.contains("nginx: worker process") || text.contains("nginx"),
        "diagnostics {name} show the nginx processes:\n{text}"
    );

    h.stop();
    assert_old_tree_gone(&h, &new, &nginx, None, "after the stop");
    real_support::maybe_dump(&h);
    let s = summary(&h);
    real_support::assert_one_hang_incident(&s, name);
}

#[test]
fn killed_nginx_master_leaves_orphan_workers_that_die_before_the_restart() {
    let Some(nginx) =
        nginx_or_skip("killed_nginx_master_leaves_orphan_workers_that_die_before_the_restart")
    else {
        return;
    };
    let mut h = harness();
    h.start_ready();
    let old = master_and_workers(&h, &nginx);
    assert_serving(&h, &nginx, old.pgid);
    let workers: Vec<i32> = old.pids().into_iter().filter(|&p| p != old.pgid).collect();

    kill(Pid::from_raw(old.pgid), Signal::SIGKILL).expect("SIGKILL the nginx master");
    h.expect_in_order(&[
        "QoS Controller: Server nginx has crashed.",
        "QoS Controller: Server exit: killed by SIGKILL",
    ]);
    // The orphaned workers do not end by themselves: the controller kills them, by pid.
    let killed = h.wait_for("QoS Kill: Killed 2 process(es) of the server's tree: ");
    for worker in &workers {
        assert!(
            killed.split(' ').any(|w| w == worker.to_string()),
            "worker {worker} among the killed: {killed}\n{}",
            h.dump()
        );
    }
    h.expect_in_order(&[
        "QoS Kill: Restarting DominoStarter thread",
        "QoS Controller: Starting server: /usr/sbin/nginx ",
        "QoS Controller: Server is ready to process requests",
    ]);
    let master = new_ready_master(&h, old.pgid);
    assert_old_tree_gone(&h, &old, &nginx, Some(master), "after the crash");
    // The post-mortem, written before they were killed, looked at the orphaned workers.
    let diags = diagnostics_files(&h);
    assert_eq!(diags.len(), 1, "one post-mortem: {diags:?}");
    for worker in &workers {
        assert!(
            diags[0].1.contains(&format!("=== process {worker} ===")),
            "the post-mortem snapshots worker {worker}:\n{}",
            diags[0].1
        );
    }
    let new = master_and_workers(&h, &nginx);
    assert_serving(&h, &nginx, new.pgid);
    assert!(
        !console_log(&h).contains("bind() to"),
        "the new master bound its port at once; console:\n{}",
        console_log(&h)
    );

    h.stop();
    assert_old_tree_gone(&h, &new, &nginx, None, "after the stop");
    let c = counts(&h);
    assert_eq!(c["crashes"], 1, "counts: {c:#}");
    assert_eq!(c["restarts"], 1, "counts: {c:#}");
    assert_eq!(c["probe_timeouts"], 0, "counts: {c:#}");
    assert_eq!(c["kills"], 0, "a crash is not a smart kill; counts: {c:#}");
}

#[test]
fn nginx_stops_with_a_graceful_sigquit_within_the_shutdown_timeout() {
    let Some(nginx) =
        nginx_or_skip("nginx_stops_with_a_graceful_sigquit_within_the_shutdown_timeout")
    else {
        return;
    };
    let mut h = harness();
    h.start_ready();
    let old = master_and_workers(&h, &nginx);
    assert_serving(&h, &nginx, old.pgid);

    let out = h.cli("quit", &[]);
    assert_eq!(out.code, Some(0), "quit: {out:?}\n{}", h.dump());
    h.expect_in_order(&[
        "QoS Controller: OpMsg=END Type=SERVER ObjectType=Detail ObjectValue=Quit TimeDate=",
    ]);
    let stopped = eventually("the server is STOPPED", || h.state() == "STOPPED");
    assert!(stopped, "state {}\n{}", h.state(), h.dump());
    for pid in old.pids() {
        assert!(
            eventually("the old nginx process is reaped", || is_gone(pid)),
            "nginx process {pid} still in /proc"
        );
    }
    assert_old_tree_gone(&h, &old, &nginx, None, "after the quit");
    // nginx's own words for a graceful quit (SIGQUIT), not a fast one (SIGTERM).
    let console = console_log(&h);
    assert!(
        console.contains("signal 3 (SIGQUIT) received")
            && console.contains("gracefully shutting down"),
        "console:\n{console}"
    );
    assert!(!console.contains("SIGTERM"), "console:\n{console}");
    // Within the timeout: nothing was killed.
    assert_eq!(
        h.count("QoS Controller: Server did not shut down within"),
        0,
        "{}",
        h.dump()
    );
    assert_eq!(h.count("QoS Kill: "), 0, "{}", h.dump());
    assert!(
        h.count("QoS Controller: Server ended (exit code 0)") == 1,
        "nginx exited 0\n{}",
        h.dump()
    );

    h.stop();
    let c = counts(&h);
    assert_eq!(c["crashes"], 0, "counts: {c:#}");
    assert_eq!(c["kills"], 0, "counts: {c:#}");
    assert_eq!(c["restarts"], 0, "counts: {c:#}");
    assert_eq!(c["starts"], 1, "counts: {c:#}");
}

/// The shipped recipe as an operator copies it: no warning, no error, and the settings
/// the recipe is about. Runs everywhere (no nginx needed).
#[test]
fn the_shipped_nginx_example_reads_cleanly() {
    let text = example("nginx.ini");
    let loaded =
        qoscntrlr::config::parse_str(&text, Path::new("/etc/qoscntrlr/nginx/dcontroller.ini"))
            .unwrap_or_else(|e| panic!("packaging/examples/nginx.ini: {e}: {:?}", e.errors));
    // The only remark: this machine has no /var/lib/qoscntrlr/nginx (the unit makes it).
    assert!(
        loaded
            .warnings
            .iter()
            .all(|w| w.key == "DATA_DIRECTORY" && w.message.contains("does not exist yet")),
        "warnings: {:?}",
        loaded.warnings
    );
    let c = loaded.config;
    assert_eq!(
        c.server_command,
        [
            "/usr/sbin/nginx",
            "-c",
            "/etc/nginx/nginx.conf",
            "-g",
            "daemon off;"
        ]
    );
    assert_eq!(c.server_stop_signal, Signal::SIGQUIT as i32);
    assert_eq!(c.server_user, None, "the nginx master starts as root");
    assert!(
        matches!(&c.probe, Some(qoscntrlr::config::ProbeTarget::Http { port: 80, path, .. }) if path == "/qos-health"),
        "probe {:?}",
        c.probe
    );
    assert_eq!(c.nsd_path, None, "built-in diagnostics");
    assert!(c.shutdown_timeout > c.probe_interval);
}

/// The controller itself dies (SIGKILL) and nginx keeps running without it: the next
/// controller finds that master from its state record and kills its whole tree before it
/// starts its own nginx, which then binds the port. nginx overwrites its environment
/// block with its process title, so the record is what finds it.
#[test]
fn a_new_controller_kills_the_nginx_left_by_a_killed_one() {
    let Some(nginx) = nginx_or_skip("a_new_controller_kills_the_nginx_left_by_a_killed_one") else {
        return;
    };
    let mut h = harness();
    h.start_ready();
    let old = master_and_workers(&h, &nginx);
    h.kill9();
    assert_serving(&h, &nginx, old.pgid);

    h.start();
    let found = h.wait_for("QoS Controller: Found server nginx (pid ");
    assert!(
        found.contains(&format!("(pid {})", old.pgid)),
        "the old master {} is found: {found}",
        old.pgid
    );
    h.expect_in_order(&[
        "QoS Kill: Killed 3 leftover process(es)",
        "QoS Controller: Starting server: /usr/sbin/nginx ",
        "QoS Controller: Server is ready to process requests",
    ]);
    let master = new_ready_master(&h, old.pgid);
    assert_old_tree_gone(
        &h,
        &old,
        &nginx,
        Some(master),
        "after the new controller started",
    );
    let new = master_and_workers(&h, &nginx);
    assert_serving(&h, &nginx, new.pgid);
    h.stop();
    assert_old_tree_gone(&h, &new, &nginx, None, "after the stop");
}
