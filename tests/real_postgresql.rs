//! PostgreSQL 15 (Debian's postgresql package) under `qoscntrlr run`, for real, with
//! packaging/examples/postgresql.ini read verbatim. Per run, the test makes a cluster
//! with `initdb` (as postgres) in its tempdir, substitutes only the cluster's paths, the
//! socket directory and the port in the example (failing if the example no longer has
//! them), then appends its overrides at the end of the ini — the data directory and short
//! timings — where the reader's "last value wins" applies. The cluster listens on a free
//! loopback port (password authentication, like Debian's pg_hba.conf: the probe must not
//! make the server log a failed login) and on a Unix socket in the tempdir (trusted, for
//! the test's psql); `fsync = off` keeps it quick (crash recovery still replays the WAL:
//! the page cache survives a killed process).
//!
//! * SIGKILL to the postmaster while a backend is busy (a plpgsql loop never looks at the
//!   postmaster): the controller kills the orphaned backends before the restart, and the
//!   new postmaster comes up through crash recovery;
//! * a hang (SIGSTOP to the postmaster and every child) is a probe timeout: smart kill
//!   with diagnostics, and the new postmaster recovers and serves;
//! * a stop is PostgreSQL's fast shutdown (`SERVER_STOP_SIGNAL=INT`), ending with
//!   "database system is shut down" in the console log and no process left.
//!
//! After every kill the whole process table is scanned for the old tree. `logs summary
//! --json` must count each incident. Needs root (for SERVER_USER=postgres) and Debian's
//! PostgreSQL 15; without them the tests skip visibly, under CI they fail.

mod common;
mod real_support;
mod skip;

use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use nix::sys::signal::{kill, Signal};
use nix::unistd::{Pid, User};

use common::{eventually, is_gone, run_cli, Harness};
use real_support::{
    assert_old_tree_gone, console_log, diagnostics_files, example, find_program, is_root, rewrite,
    server_processes, summary, tree_in, OldTree,
};

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// Timings of the test: the example's are for production (minutes).
const OVERRIDES: &[(&str, &str)] = &[
    ("QOS_PROBE_INTERVAL", "300ms"),
    ("QOS_PROBE_TIMEOUT", "2s"),
    ("QOS_RESTART_TIMEOUT", "30s"),
    ("QOS_SHUTDOWN_TIMEOUT", "20s"),
    ("QOS_NSD_TIMEOUT", "6s"),
];

/// Debian's PostgreSQL 15 programs, the postgres user, root — or a visible skip.
struct Pg {
    postgres: PathBuf,
    user: User,
}

fn pg_or_skip(test: &str) -> Option<Pg> {
    if !is_root() {
        skip::skip(
            test,
            "needs root (the controller switches to SERVER_USER=postgres)",
        );
        return None;
    }
    for program in ["postgres", "initdb", "pg_isready", "psql"] {
        if find_program(program, &[BIN]).is_none() || !Path::new(BIN).join(program).is_file() {
            skip::skip(
                test,
                &format!("{BIN}/{program} is missing (apt-get install postgresql)"),
            );
            return None;
        }
    }
    let Some(user) = User::from_name("postgres").ok().flatten() else {
        skip::skip(test, "no postgres user (apt-get install postgresql)");
        return None;
    };
    Some(Pg {
        postgres: Path::new(BIN).join("postgres"),
        user,
    })
}

/// One `initdb` (as postgres) per test binary, copied by every test: initdb is the
/// slowest step of a test on a loaded machine, and its output does not depend on the test.
/// It is removed when the test process exits (statics are never dropped).
fn template_cluster(user: &User) -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    extern "C" fn remove_template() {
        if let Some(dir) = TEMPLATE.get() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    TEMPLATE.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("qos-pg-template-")
            .tempdir()
            .expect("template tempdir")
            .keep();
        // SAFETY: registers a plain function without captures; libtest ends the process
        // with exit(), which runs it once.
        unsafe { libc::atexit(remove_template) };
        initdb(&dir.join("pgdata"), user);
        dir
    })
}

/// A copy of the template cluster in `dir/pgdata` (owner and modes kept), its socket
/// directory, and the test's settings at the end of its postgresql.conf.
fn make_cluster(dir: &Path, port: u16, user: &User) {
    let pgdata = dir.join("pgdata");
    let sock = dir.join("sock");
    let template = template_cluster(user).join("pgdata");
    let out = Command::new("cp")
        .arg("-a")
        .arg(&template)
        .arg(&pgdata)
        .output()
        .expect("run cp");
    assert!(out.status.success(), "cp -a the template cluster: {out:?}");
    std::fs::create_dir(&sock).expect("create the socket directory");
    nix::unistd::chown(&sock, Some(user.uid), Some(user.gid)).expect("chown to postgres");
    let conf = pgdata.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).expect("read postgresql.conf");
    text.push_str(&format!(
        "\n# tests/real_postgresql.rs\nport = {port}\nlisten_addresses = '127.0.0.1'\n\
         unix_socket_directories = '{}'\nshared_buffers = 16MB\nmax_connections = 20\n\
         fsync = off\n# segments of a killed postmaster go with the tempdir, not /dev/shm\n\
         dynamic_shared_memory_type = mmap\n",
        sock.display()
    ));
    std::fs::write(&conf, text).expect("write postgresql.conf");
}

/// `initdb` as postgres into `pgdata`.
fn initdb(pgdata: &Path, user: &User) {
    let dir = pgdata.parent().expect("pgdata has a parent");
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod the template dir");
    std::fs::create_dir(pgdata).expect("create the cluster directory");
    nix::unistd::chown(pgdata, Some(user.uid), Some(user.gid)).expect("chown to postgres");
    let out = Command::new(Path::new(BIN).join("initdb"))
        .arg("-D")
        .arg(pgdata)
        // Debian's pg_hba.conf asks for a password over TCP (where the probe connects);
        // the test's own psql goes through the Unix socket, trusted.
        .args([
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-U",
            "postgres",
        ])
        .args(["--no-sync", "--no-locale", "-E", "UTF8"])
        .current_dir(dir)
        .env("HOME", &user.dir)
        .uid(user.uid.as_raw())
        .gid(user.gid.as_raw())
        .stdin(Stdio::null())
        .output()
        .expect("run initdb");
    assert!(
        out.status.success(),
        "initdb: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A harness on the shipped example, with a fresh cluster in its tempdir.
fn harness(pg: &Pg) -> Harness {
    Harness::from_text(
        |dir, port| {
            make_cluster(dir, port, &pg.user);
            let pgdata = dir.join("pgdata");
            rewrite(
                "postgresql.ini",
                &example("postgresql.ini"),
                &[
                    (
                        "/etc/postgresql/15/main/postgresql.conf",
                        &pgdata.join("postgresql.conf").display().to_string(),
                    ),
                    ("/var/lib/postgresql/15/main", &pgdata.display().to_string()),
                    ("-h 127.0.0.1 -p 5432 ", &format!("-h 127.0.0.1 -p {port} ")),
                ],
            )
        },
        OVERRIDES,
    )
}

/// `psql -c SQL` as postgres over the test's socket: (exit code, stdout).
fn psql(h: &Harness, sql: &str) -> (Option<i32>, String) {
    let mut cmd = h.command(&format!("{BIN}/psql"));
    cmd.args(psql_args(h)).arg("-c").arg(sql);
    let out = run_cli(cmd);
    (out.code, out.stdout.trim().to_string() + &out.stderr)
}

fn psql_args(h: &Harness) -> Vec<String> {
    vec![
        "-X".into(),
        "-A".into(),
        "-t".into(),
        "-h".into(),
        h.data().join("sock").display().to_string(),
        "-p".into(),
        h.port.to_string(),
        "-U".into(),
        "postgres".into(),
        "-d".into(),
        "postgres".into(),
    ]
}

/// The postmaster (the controller's server pid) and its children once the background
/// processes are up; checks that all run as postgres.
fn postmaster_tree(h: &Harness, pg: &Pg) -> OldTree {
    let postmaster = h.server_pid();
    let mut procs = Vec::new();
    let found = eventually("postmaster with its background processes", || {
        procs = tree_in(&real_support::process_table(), postmaster);
        procs.len() >= 5 && procs.iter().all(|p| p.exe == pg.postgres)
    });
    assert!(found, "postmaster {postmaster}: {procs:#?}\n{}", h.dump());
    for p in &procs {
        let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid)).unwrap_or_default();
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next().map(str::to_string));
        assert_eq!(
            uid,
            Some(pg.user.uid.as_raw().to_string()),
            "{} runs as postgres",
            p.cmdline
        );
    }
    OldTree {
        procs,
        pgid: postmaster,
    }
}

/// `select 1` answered by the server.
fn assert_serving(h: &Harness) {
    let mut last = (None, String::new());
    let ok = eventually("PostgreSQL answers a query", || {
        last = psql(h, "select 40 + 2");
        last.0 == Some(0) && last.1.starts_with("42")
    });
    assert!(ok, "psql: {last:?}\n{}", h.dump());
}

/// The server pid shown by status once it differs from `old` and the server is READY.
fn new_ready_postmaster(h: &Harness, old: i32) -> i32 {
    let mut pid = old;
    let ready = eventually("a new postmaster, READY", || {
        let (_, json) = h.status();
        pid = json["server"]["pid"].as_i64().unwrap_or(0) as i32;
        pid != old && pid != 0 && json["server"]["state"] == "READY"
    });
    assert!(ready, "no new READY postmaster after {old}\n{}", h.dump());
    pid
}

/// What the server wrote to its console since the controller last started it.
fn console_of_last_start(h: &Harness) -> String {
    let console = console_log(h);
    match console.rfind("=== qoscntrlr: started ") {
        Some(at) => console[at..].to_string(),
        None => console,
    }
}

/// The pids listed by the controller's `Killed N process(es) of the server's tree: …`.
fn killed_pids(line: &str) -> HashSet<i32> {
    line.rsplit(": ")
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn assert_crash_recovery(h: &Harness) {
    let console = console_of_last_start(h);
    for needle in [
        "database system was not properly shut down; automatic recovery in progress",
        "database system is ready to accept connections",
    ] {
        assert!(
            console.contains(needle),
            "the new postmaster logs {needle:?}; console since its start:\n{console}"
        );
    }
    assert!(
        !console.contains("pre-existing shared memory block"),
        "console:\n{console}"
    );
}

#[test]
fn killed_postmaster_leaves_busy_backends_that_die_before_recovery() {
    let Some(pg) = pg_or_skip("killed_postmaster_leaves_busy_backends_that_die_before_recovery")
    else {
        return;
    };
    let mut h = harness(&pg);
    h.start_ready();
    assert_serving(&h);
    assert_eq!(
        psql(
            &h,
            "create table t(i int); insert into t select generate_series(1, 1000)"
        )
        .0,
        Some(0)
    );

    // A backend busy in a loop that never waits: it will not notice the postmaster's death.
    let mut client = h
        .command(&format!("{BIN}/psql"))
        .args(psql_args(&h))
        .args(["-c", "DO $$ BEGIN LOOP PERFORM 1; END LOOP; END $$"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the busy client");
    let old = {
        let mut busy = None;
        let found = eventually("the busy backend", || {
            let tree = tree_in(&real_support::process_table(), h.server_pid());
            busy = tree
                .iter()
                .find(|p| p.cmdline.ends_with(" DO"))
                .map(|p| p.pid);
            busy.is_some()
        });
        assert!(found, "no busy backend\n{}", h.dump());
        (postmaster_tree(&h, &pg), busy.unwrap_or_default())
    };
    let (old, busy) = old;

    kill(Pid::from_raw(old.pgid), Signal::SIGKILL).expect("SIGKILL the postmaster");
    h.expect_in_order(&[
        "QoS Controller: Server postgresql-15-main has crashed.",
        "QoS Controller: Server exit: killed by SIGKILL",
    ]);
    let killed = h.wait_for("QoS Kill: Killed ");
    assert!(
        killed.contains("process(es) of the server's tree: ")
            && killed_pids(&killed).contains(&busy),
        "the busy backend {busy} is killed by the controller: {killed}\n{}",
        h.dump()
    );
    h.expect_in_order(&[
        "QoS Kill: Restarting DominoStarter thread",
        &format!("QoS Controller: Starting server: {BIN}/postgres "),
        "QoS Controller: Server is ready to process requests",
    ]);
    let postmaster = new_ready_postmaster(&h, old.pgid);
    assert_old_tree_gone(&h, &old, &pg.postgres, Some(postmaster), "after the crash");
    // The post-mortem, written before it was killed, looked at the busy backend.
    let diags = diagnostics_files(&h);
    assert_eq!(diags.len(), 1, "one post-mortem: {diags:?}");
    assert!(
        diags[0].1.contains(&format!("=== process {busy} ===")),
        "the post-mortem snapshots the busy backend {busy}:\n{}",
        diags[0].1
    );
    assert_crash_recovery(&h);
    assert_serving(&h);
    assert_eq!(psql(&h, "select count(*) from t").1, "1000", "{}", h.dump());
    let _ = client.kill();
    let _ = client.wait();

    let new = postmaster_tree(&h, &pg);
    h.stop();
    real_support::maybe_dump(&h);
    assert_old_tree_gone(&h, &new, &pg.postgres, None, "after the stop");
    let c = summary(&h)["counts"].clone();
    assert_eq!(c["crashes"], 1, "counts: {c:#}");
    assert_eq!(c["restarts"], 1, "counts: {c:#}");
    assert_eq!(c["probe_timeouts"], 0, "counts: {c:#}");
    assert_eq!(c["kills"], 0, "a crash is not a smart kill; counts: {c:#}");
}

#[test]
fn hung_postgresql_is_smart_killed_with_diagnostics_and_recovers() {
    let Some(pg) = pg_or_skip("hung_postgresql_is_smart_killed_with_diagnostics_and_recovers")
    else {
        return;
    };
    let mut h = harness(&pg);
    h.start_ready();
    assert_serving(&h);
    let before = postmaster_tree(&h, &pg);

    // The postmaster first (it forks no more), then everything under it.
    kill(Pid::from_raw(before.pgid), Signal::SIGSTOP).expect("SIGSTOP the postmaster");
    // A /proc walk can miss a child forked just before the stop, so the tree is read
    // (and stopped) again until two reads agree.
    let mut procs = Vec::new();
    for _ in 0..20 {
        let now = tree_in(&real_support::process_table(), before.pgid);
        for p in &now {
            let _ = kill(Pid::from_raw(p.pid), Signal::SIGSTOP);
        }
        let same = now.len() == procs.len()
            && now
                .iter()
                .all(|p| procs.iter().any(|q: &real_support::Proc| q.pid == p.pid));
        procs = now;
        if same {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let old = OldTree {
        procs,
        pgid: before.pgid,
    };
    h.expect_in_order(&[
        "QoS Controller: The controller has received a probe timeout.",
        "QoS Kill: Triggering failover...",
        "QoS Kill: Running nsd...",
        "QoS Kill: Diagnostics written to ",
        "QoS Kill: Running nsd -kill",
    ]);
    let killed = h.wait_for("QoS Kill: Killed ");
    assert_eq!(
        killed_pids(&killed),
        old.pids().into_iter().collect::<HashSet<_>>(),
        "every stopped process is killed: {killed}\n{}",
        h.dump()
    );
    h.expect_in_order(&[
        "QoS Kill: Setting kill complete.",
        "QoS Kill: Restarting DominoStarter thread",
        &format!("QoS Controller: Starting server: {BIN}/postgres "),
        "QoS Controller: Server is ready to process requests",
    ]);
    let postmaster = new_ready_postmaster(&h, old.pgid);
    assert_old_tree_gone(
        &h,
        &old,
        &pg.postgres,
        Some(postmaster),
        "after the smart kill",
    );
    assert_crash_recovery(&h);
    assert_serving(&h);

    let diags = diagnostics_files(&h);
    assert_eq!(diags.len(), 1, "one diagnostics file: {diags:?}");
    let (name, text) = &diags[0];
    assert!(
        name.contains("probe-timeout"),
        "diagnostics file name {name}"
    );
    for pid in old.pids() {
        assert!(
            text.contains(&pid.to_string()),
            "diagnostics {name} lack process {pid}:\n{text}"
        );
    }
    assert!(text.contains("postgres"), "diagnostics {name}:\n{text}");

    let new = postmaster_tree(&h, &pg);
    h.stop();
    real_support::maybe_dump(&h);
    assert_old_tree_gone(&h, &new, &pg.postgres, None, "after the stop");
    let s = summary(&h);
    real_support::assert_one_hang_incident(&s, name);
}

#[test]
fn postgresql_stops_with_a_fast_shutdown_on_sigint() {
    let Some(pg) = pg_or_skip("postgresql_stops_with_a_fast_shutdown_on_sigint") else {
        return;
    };
    let mut h = harness(&pg);
    h.start_ready();
    assert_serving(&h);
    let old = postmaster_tree(&h, &pg);
    for _ in 0..3 {
        h.wait_for("QoS Probe: SUCCESS (");
    }

    let out = h.cli("quit", &[]);
    assert_eq!(out.code, Some(0), "quit: {out:?}\n{}", h.dump());
    let stopped = eventually("the server is STOPPED", || h.state() == "STOPPED");
    assert!(stopped, "state {}\n{}", h.state(), h.dump());
    for pid in old.pids() {
        assert!(
            eventually("the old postgres process is reaped", || is_gone(pid)),
            "postgres process {pid} still in /proc"
        );
    }
    assert_old_tree_gone(&h, &old, &pg.postgres, None, "after the quit");
    assert!(
        server_processes(&pg.postgres, h.data()).is_empty(),
        "no postgres process left in {}",
        h.data().display()
    );
    let console = console_of_last_start(&h);
    assert!(
        console.contains("received fast shutdown request"),
        "a fast shutdown (SIGINT); console:\n{console}"
    );
    assert!(
        console
            .trim_end()
            .lines()
            .last()
            .is_some_and(|l| l.ends_with("database system is shut down")),
        "the console log ends with the shutdown line:\n{console}"
    );
    assert_eq!(
        h.count("QoS Controller: Server did not shut down within"),
        0,
        "{}",
        h.dump()
    );
    assert_eq!(h.count("QoS Kill: "), 0, "{}", h.dump());
    assert_eq!(
        h.count("QoS Controller: Server ended (exit code 0)"),
        1,
        "{}",
        h.dump()
    );
    // Several probes ran: none of them left a failed login in the server log. (A probe
    // during start-up may see "the database system is starting up": that is the server
    // saying it is not ready yet, which the probe is there to find out.)
    assert!(h.count("QoS Probe: SUCCESS (") >= 2, "{}", h.dump());
    let console = console_log(&h);
    let failed_logins: Vec<&str> = console
        .lines()
        .filter(|l| {
            l.contains("FATAL:")
                && (l.contains("does not exist")
                    || l.contains("authentication failed")
                    || l.contains("no pg_hba.conf entry"))
        })
        .collect();
    assert!(
        failed_logins.is_empty(),
        "the probe fails no login: {failed_logins:#?}\n{console}"
    );

    h.stop();
    let c = summary(&h)["counts"].clone();
    assert_eq!(c["crashes"], 0, "counts: {c:#}");
    assert_eq!(c["kills"], 0, "counts: {c:#}");
    assert_eq!(c["restarts"], 0, "counts: {c:#}");
    assert_eq!(c["starts"], 1, "counts: {c:#}");
}

/// The shipped recipe as an operator copies it: no error, and the settings the recipe is
/// about. Runs everywhere (no PostgreSQL needed).
#[test]
fn the_shipped_postgresql_example_reads_cleanly() {
    let text = example("postgresql.ini");
    let loaded = qoscntrlr::config::parse_str(
        &text,
        Path::new("/etc/qoscntrlr/postgresql/dcontroller.ini"),
    )
    .unwrap_or_else(|e| panic!("packaging/examples/postgresql.ini: {e}: {:?}", e.errors));
    // The only remark: this machine has no /var/lib/qoscntrlr/postgresql (the unit makes
    // it).
    assert!(
        loaded
            .warnings
            .iter()
            .all(|w| w.key == "DATA_DIRECTORY" && w.message.contains("does not exist yet")),
        "warnings: {:?}",
        loaded.warnings
    );
    let c = loaded.config;
    assert_eq!(c.server_command[0], format!("{BIN}/postgres"));
    assert_eq!(c.server_user.as_deref(), Some("postgres"));
    assert_eq!(c.server_stop_signal, Signal::SIGINT as i32);
    assert!(
        matches!(&c.probe, Some(qoscntrlr::config::ProbeTarget::Exec { argv })
            if argv[0] == format!("{BIN}/pg_isready")),
        "probe {:?}",
        c.probe
    );
    assert_eq!(c.nsd_path, None, "built-in diagnostics");
    assert!(
        c.restart_timeout >= c.probe_timeout,
        "room for crash recovery"
    );
}
