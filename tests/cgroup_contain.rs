//! cgroup v2 containment on the machine's real cgroup2 mount: the server's pid in its own
//! cgroup, a fork storm killed without survivors, `populated 0` ending a wait without
//! polling, pressure and memory figures, a stale cgroup emptied at the next start,
//! `QOS_CGROUP=on` refusing to start where it cannot contain, and the server cloned
//! straight into its cgroup (and started by migration where the kernel kills the clone).
//!
//! Where no cgroup2 hierarchy is writable the tests skip visibly. Under CI (`CI=true`)
//! a skip is a failure when containment is expected: running as root on a host with a
//! cgroup2 mount (what `.ci/run` provides). The memory figure additionally needs the
//! memory controller on the cgroup2 hierarchy, expected only when its root offers it
//! (a hybrid host keeps memory on cgroup v1).

mod common;
mod skip;

#[path = "../benches/support/storm.rs"]
mod storm;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{eventually, Harness};
use qoscntrlr::cgroup::{self, CgroupSetting, Containment, Decision, EventsWatch};
use qoscntrlr::sampler::{MemoryKind, SampleSource, Sampler};

/// Containment is expected here: root and a cgroup2 mount.
fn expected() -> bool {
    let root = nix::unistd::geteuid().is_root();
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| !cgroup::cgroup2_mounts(&m).is_empty())
        .unwrap_or(false);
    root && mounted
}

/// Skip visibly; under CI a failure when `must` holds.
fn skip_unless(test: &str, reason: &str, must: bool) {
    if must {
        skip::skip(test, reason);
    } else {
        let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {reason}");
    }
}

/// A containment of its own for a module-level test (a per-test data directory key),
/// removed when dropped.
struct TestCgroup {
    c: Containment,
    _dir: tempfile::TempDir,
}

impl TestCgroup {
    fn new(test: &str) -> Option<TestCgroup> {
        let dir = tempfile::tempdir().expect("tempdir");
        match cgroup::detect(CgroupSetting::Auto, dir.path()) {
            Decision::Contain(plan) => match cgroup::setup(&plan) {
                Ok(c) => Some(TestCgroup { c, _dir: dir }),
                Err(e) => {
                    skip_unless(test, &format!("cannot set up a cgroup: {e}"), expected());
                    None
                }
            },
            Decision::Uncontained(reason) => {
                skip_unless(
                    test,
                    &format!("no writable cgroup v2: {reason}"),
                    expected(),
                );
                None
            }
        }
    }

    /// The server cgroup's path as `/proc/<pid>/cgroup` shows it.
    fn rel(&self) -> String {
        let rel = self
            .c
            .server
            .strip_prefix(&self.c.mount)
            .expect("under the mount");
        format!("/{}", rel.display())
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = self.c.kill(None);
        if let Ok(mut w) = EventsWatch::new(&self.c.server) {
            let _ = w.wait_empty_blocking(Duration::from_secs(10));
        }
        let _ = self.c.remove();
    }
}

/// `argv` started inside cgroup `dir` (the child enters it before exec).
fn spawn_in(dir: &Path, argv: &[&str]) -> std::process::Child {
    let procs = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.procs"))
        .expect("open cgroup.procs");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&procs);
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]);
    // SAFETY: one write(2) on a descriptor opened before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn into the cgroup");
    drop(procs);
    child
}

fn cgroup_of(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .and_then(|t| cgroup::unified_path(&t))
}

#[test]
fn the_server_runs_in_its_own_cgroup_and_the_mode_is_reported() {
    let test = "the_server_runs_in_its_own_cgroup_and_the_mode_is_reported";
    if TestCgroup::new(test).is_none() {
        return;
    }
    let mut h = Harness::demo(&[]);
    h.start_ready();
    let pid = h.server_pid();
    let (_, status) = h.status();
    let containment = &status["containment"];
    assert_eq!(containment["mode"], "cgroup", "{status}");
    assert_eq!(containment["setting"], "auto", "{status}");
    let dir = PathBuf::from(containment["cgroup"].as_str().expect("cgroup path"));
    let members = cgroup::members_of(&dir).expect("cgroup.procs");
    assert!(members.contains(&pid), "server {pid} not in {members:?}");
    // Its own cgroup: the controller is elsewhere.
    assert!(!members.contains(&h.controller_pid()), "{members:?}");
    let own = cgroup_of(pid).expect("server's cgroup");
    assert!(
        dir.ends_with(own.trim_start_matches('/')),
        "{own} vs {}",
        dir.display()
    );
    // The log header and status text say so.
    assert_eq!(
        h.count("QoS Controller: QOS_CGROUP=auto: server contained in cgroup v2 "),
        1,
        "{}",
        h.dump()
    );
    let text = h.cli("status", &[]);
    // The cgroup's directory is never cut: when it does not fit after the words it
    // stands whole on the next line.
    assert!(
        text.stdout.contains("contained cgroup v2 ")
            || text.stdout.contains("contained cgroup v2\n          /"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains(&own.trim_start_matches('/').to_string()),
        "{own} not whole in\n{}",
        text.stdout
    );
    // check-config tells what run would do.
    let check = h.cli("check-config", &[]);
    assert!(
        check
            .stdout
            .contains("Containment: cgroup v2, the server would run in "),
        "{check:?}"
    );
    h.stop();
    assert!(
        !dir.exists(),
        "the cgroup {} is removed at exit",
        dir.display()
    );
}

/// Kill what is in the test cgroup, wait for it to empty, and reap `pid` — that pid
/// only: `waitpid(-1)` would reap the children of the tests running beside this one.
fn kill_and_reap(tc: &TestCgroup, pid: i32) {
    use nix::sys::wait::{waitpid, WaitPidFlag};
    tc.c.kill(None).expect("cgroup.kill");
    let mut watch = EventsWatch::new(&tc.c.server).expect("watch");
    assert!(watch.wait_empty_blocking(Duration::from_secs(10)).unwrap());
    let pid = nix::unistd::Pid::from_raw(pid);
    assert!(eventually("the killed server reaped", || {
        let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    }));
}

#[test]
fn a_server_is_cloned_into_a_cgroup_made_after_the_last_kill_and_migrated_otherwise() {
    use qoscntrlr::process::{
        spawn_server_entering, CgroupEntry, CloneIntoOutcome, Reaper, ServerSpec,
    };
    let test = "a_server_is_cloned_into_a_cgroup_made_after_the_last_kill_and_migrated_otherwise";
    let Some(tc) = TestCgroup::new(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let spec = ServerSpec {
        argv: vec!["sleep".into(), "30".into()],
        console_log: dir.path().join("console.log"),
        directory: dir.path().into(),
        user: None,
        group: None,
        env: Vec::new(),
        cgroup: Some(tc.c.server.clone()),
    };
    let reaper = Reaper::new();
    let envs = std::cell::RefCell::new(Vec::new());
    let start = |expect: &str| {
        let s = spawn_server_entering(&spec, &reaper, CgroupEntry::CloneInto).expect("spawn");
        let outcome = match s.clone_into {
            CloneIntoOutcome::Cloned => "cloned",
            CloneIntoOutcome::KilledAtFork => "killed at fork",
            CloneIntoOutcome::Refused(_) => "refused",
            CloneIntoOutcome::NotTried => "not tried",
        };
        // Either way the server runs, in its cgroup, leading its own process group, in
        // its directory, with the same environment.
        assert_eq!(
            cgroup_of(s.pid).as_deref(),
            Some(tc.rel().as_str()),
            "{outcome}"
        );
        assert_eq!(outcome, expect);
        assert_eq!(
            nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(s.pid))).unwrap(),
            nix::unistd::Pid::from_raw(s.pid)
        );
        assert_eq!(
            std::fs::read_link(format!("/proc/{}/cwd", s.pid)).unwrap(),
            dir.path().canonicalize().unwrap()
        );
        let mut env: Vec<Vec<u8>> = std::fs::read(format!("/proc/{}/environ", s.pid))
            .unwrap()
            .split(|b| *b == 0)
            .filter(|v| !v.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        env.sort();
        envs.borrow_mut().push(env);
        s.pid
    };
    // A cgroup just made: born there.
    let pid = start("cloned");
    // cgroup.kill was written to it: the kernel kills a clone into it (kill_seq,
    // Linux 6.14+; older kernels let it live), the server is migrated instead.
    kill_and_reap(&tc, pid);
    let killed_seq_kills = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|r| {
            let mut parts = r.trim().split(['.', '-']);
            let major: u32 = parts.next()?.parse().ok()?;
            let minor: u32 = parts.next()?.parse().ok()?;
            Some((major, minor) >= (6, 14))
        })
        .unwrap_or(true);
    let pid = if killed_seq_kills {
        start("killed at fork")
    } else {
        let s = spawn_server_entering(&spec, &reaper, CgroupEntry::CloneInto).expect("spawn");
        s.pid
    };
    kill_and_reap(&tc, pid);
    // Made again at the same path: born there again.
    tc.c.renew_server().expect("renew");
    let pid = start("cloned");
    kill_and_reap(&tc, pid);
    let envs = envs.into_inner();
    assert!(envs.len() >= 2);
    assert!(envs.windows(2).all(|w| w[0] == w[1]), "environments differ");
}

#[test]
fn a_fork_storm_leaves_no_survivor_after_the_kill() {
    let test = "a_fork_storm_leaves_no_survivor_after_the_kill";
    let Some(cg) = TestCgroup::new(test) else {
        return;
    };
    const CAP: usize = 150;
    let s = storm::Storm::start(
        &cg.c.server.join("cgroup.procs"),
        CAP,
        Duration::from_millis(20),
    )
    .expect("start the storm");
    assert!(
        eventually("the storm reaches its size", || s.started() >= CAP),
        "started {}",
        s.started()
    );
    // Still forking (short-lived children) when the kill comes.
    let report = cg.c.kill(Some(s.root)).expect("cgroup.kill");
    assert!(report.kill_file, "this kernel has cgroup.kill");
    assert!(report.members.len() >= CAP / 2, "{}", report.members.len());
    let mut watch = EventsWatch::new(&cg.c.server).expect("watch");
    assert!(
        watch
            .wait_empty_blocking(Duration::from_secs(30))
            .expect("cgroup.events"),
        "populated 1 after the kill: {:?}",
        cg.c.members()
    );
    s.reap();
    let rel = cg.rel();
    let survivors: Vec<i32> = s
        .pids()
        .into_iter()
        .filter(|p| storm::alive_in(*p, &rel))
        .collect();
    assert!(survivors.is_empty(), "survivors: {survivors:?}");
    assert!(cg.c.members().unwrap().is_empty());
}

#[test]
fn populated_0_ends_the_wait_without_polling() {
    let test = "populated_0_ends_the_wait_without_polling";
    let Some(cg) = TestCgroup::new(test) else {
        return;
    };
    // Ends by itself after 1.5 s: a poll loop would read cgroup.events many times.
    let mut child = spawn_in(&cg.c.server, &["sleep", "1.5"]);
    assert!(cg.c.populated().unwrap());
    let mut watch = EventsWatch::new(&cg.c.server).expect("watch");
    let start = Instant::now();
    let empty = watch
        .wait_empty_blocking(Duration::from_secs(60))
        .expect("cgroup.events");
    let waited = start.elapsed();
    let _ = child.wait();
    assert!(empty);
    assert!(waited >= Duration::from_millis(1000), "{waited:?}");
    assert!(
        watch.reads <= 4,
        "cgroup.events read {} times in {waited:?}: polled, not watched",
        watch.reads
    );

    // The same through the runtime's async watch.
    let mut child = spawn_in(&cg.c.server, &["sleep", "1"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (empty, reads) = rt.block_on(async {
        let mut watch =
            cgroup::AsyncEventsWatch::new(EventsWatch::new(&cg.c.server).unwrap()).unwrap();
        let empty = watch.wait_empty(Duration::from_secs(60)).await.unwrap();
        (empty, watch.get_mut().reads)
    });
    let _ = child.wait();
    assert!(empty);
    assert!(reads <= 4, "{reads} reads");
}

#[test]
fn a_stop_ends_when_the_cgroup_is_empty() {
    let test = "a_stop_ends_when_the_cgroup_is_empty";
    if TestCgroup::new(test).is_none() {
        return;
    }
    // A child that ignores the stop signal and left the server's session: only the
    // cgroup kill reaches it, and the controller exits once populated 0 is reported.
    let mut h = Harness::server(
        "/bin/sh -c \"setsid sh -c 'trap \\\"\\\" TERM; sleep 1000' & exec sleep 1000\"",
        &[("QOS_DISABLE_PROBING", "1"), ("QOS_SHUTDOWN_TIMEOUT", "5s")],
    );
    h.start();
    h.wait_for("QoS Controller: State STARTING -> READY");
    let (_, status) = h.status();
    let dir = PathBuf::from(status["containment"]["cgroup"].as_str().expect("cgroup"));
    // Three: the server's sleep, the trapping shell and the shell's sleep. Stopping
    // before the shell has forked its sleep would leave one process to kill, not two.
    assert!(eventually("three processes in the cgroup", || {
        cgroup::members_of(&dir).map(|m| m.len()).unwrap_or(0) >= 3
    }));
    let members = cgroup::members_of(&dir).unwrap();
    h.stop();
    // The trapping shell and its sleep: out of the server's session, in its cgroup.
    h.expect_in_order(&[
        "QoS Controller: Server ended (killed by SIGTERM)",
        "QoS Kill: Killed 2 process(es) of the server's tree: ",
    ]);
    // The controller exited only once the cgroup reported populated 0.
    assert_eq!(
        h.count("QoS Kill: The server's process tree has ended: cgroup "),
        1,
        "{}",
        h.dump()
    );
    for pid in members {
        assert!(
            common::is_gone(pid) || !common::is_alive(pid),
            "{pid} survived"
        );
    }
}

#[test]
fn a_stale_cgroup_is_emptied_at_the_next_start() {
    let test = "a_stale_cgroup_is_emptied_at_the_next_start";
    if TestCgroup::new(test).is_none() {
        return;
    }
    let mut h = Harness::server(
        "/bin/sh -c \"setsid sleep 1000 & exec sleep 1001\"",
        &[("QOS_DISABLE_PROBING", "1")],
    );
    h.start();
    h.wait_for("QoS Controller: State STARTING -> READY");
    let (_, status) = h.status();
    let dir = PathBuf::from(status["containment"]["cgroup"].as_str().expect("cgroup"));
    assert!(eventually("two processes in the cgroup", || {
        cgroup::members_of(&dir).map(|m| m.len()).unwrap_or(0) >= 2
    }));
    let stale = cgroup::members_of(&dir).unwrap();
    h.kill9();
    assert!(stale.iter().all(|p| common::is_alive(*p)), "{stale:?}");
    h.start();
    h.expect_in_order(&[
        "QoS Controller: Found server sh (pid ",
        "QoS Controller: Found 1 process(es) of a previous server's tree still running",
        "QoS Kill: Killed 2 leftover process(es)",
        "QoS Controller: Starting server: ",
    ]);
    for pid in &stale {
        assert!(!common::is_alive(*pid), "stale {pid} survived");
    }
    h.stop();
}

#[test]
fn pressure_files_are_read_and_samples_do_not_walk_the_tree() {
    let test = "pressure_files_are_read_and_samples_do_not_walk_the_tree";
    let Some(cg) = TestCgroup::new(test) else {
        return;
    };
    let mut child = spawn_in(&cg.c.server, &["sleep", "30"]);
    let pid = child.id() as i32;
    let data = tempfile::tempdir().unwrap();
    let mut sampler = Sampler::new();
    let first = sampler
        .sample_cgroup(&cg.c.server, pid, data.path(), Instant::now(), false)
        .expect("sample");
    // The interval between the two samples (cpu.stat usage is a difference of the two),
    // not a wait for an event.
    const SAMPLE_INTERVAL: Duration = Duration::from_millis(200);
    std::thread::sleep(SAMPLE_INTERVAL);
    let second = sampler
        .sample_cgroup(&cg.c.server, pid, data.path(), Instant::now(), true)
        .expect("sample");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(second.source, SampleSource::Cgroup);
    assert_eq!(second.at_tree, vec![pid]);
    assert!(
        second.cpu_percent.is_some(),
        "cpu.stat usage between samples"
    );
    assert!(!first.open_files_counted && second.open_files_counted);
    assert!(second.open_files >= 3, "{}", second.open_files);
    if Path::new("/proc/pressure/cpu").exists() {
        for (name, value) in [
            ("memory", second.memory_pressure),
            ("cpu", second.cpu_pressure),
            ("io", second.io_pressure),
        ] {
            let v = value.unwrap_or_else(|| panic!("{name}.pressure not read"));
            assert!((0.0..=100.0).contains(&v), "{name} {v}");
        }
    } else {
        skip_unless(test, "PSI is off in this kernel (no /proc/pressure)", false);
    }
}

#[test]
fn memory_is_sampled_from_the_cgroup_where_the_memory_controller_is_on() {
    let test = "memory_is_sampled_from_the_cgroup_where_the_memory_controller_is_on";
    let Some(cg) = TestCgroup::new(test) else {
        return;
    };
    if !cg.c.has_controller("memory") {
        let offered = std::fs::read_to_string(cg.c.mount.join("cgroup.controllers"))
            .map(|t| t.split_whitespace().any(|c| c == "memory"))
            .unwrap_or(false);
        skip_unless(
            test,
            "the memory controller is not on this host's cgroup v2 hierarchy (cgroup v1 owns it)",
            offered,
        );
        return;
    }
    let mut child = spawn_in(&cg.c.server, &["sleep", "30"]);
    let pid = child.id() as i32;
    let data = tempfile::tempdir().unwrap();
    let sample = Sampler::new()
        .sample_cgroup(&cg.c.server, pid, data.path(), Instant::now(), false)
        .expect("sample");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(sample.memory_kind, MemoryKind::Cgroup);
    assert!(sample.rss_bytes > 0);
    assert_eq!(sample.oom_kills, Some(0));
}

#[test]
fn qos_cgroup_on_refuses_to_start_where_it_cannot_contain() {
    let test = "qos_cgroup_on_refuses_to_start_where_it_cannot_contain";
    if !nix::unistd::geteuid().is_root() || !Path::new("/usr/bin/setpriv").exists() {
        skip_unless(
            test,
            "needs root and setpriv to run as an undelegated user",
            false,
        );
        return;
    }
    // As nobody, whose cgroup is not delegated to it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let ini = dir.path().join("dcontroller.ini");
    std::fs::write(
        &ini,
        "SERVER_COMMAND=/bin/sleep 1000\nQOS_DISABLE_PROBING=1\nQOS_CGROUP=on\n",
    )
    .unwrap();
    let as_nobody = |args: &[&str]| {
        let mut cmd = Command::new("/usr/bin/setpriv");
        cmd.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            common::CONTROLLER,
        ])
        .args(args)
        .arg("-c")
        .arg(&ini);
        common::run_cli(cmd)
    };
    let check = as_nobody(&["check-config"]);
    assert_eq!(check.code, Some(78), "{check:?}");
    assert!(
        check
            .stderr
            .contains("QOS_CGROUP=on but the server cannot be contained"),
        "{check:?}"
    );
    let run = as_nobody(&["run"]);
    assert_eq!(run.code, Some(78), "{run:?}");
    assert!(
        run.stderr
            .contains("QOS_CGROUP=on but the server cannot be contained"),
        "{run:?}"
    );
}
