//! The server's spawn, console capture and whole-tree kill against real processes: a
//! server that exits at once, one that ignores SIGTERM, one that leaves a `setsid` daemon
//! behind. `waitpid(-1)` reaps every child of the test process, so everything runs inside
//! this one test, in order, and a guard kills every tree even when an assertion fails.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use nix::sys::signal::Signal;
use qoscntrlr::process::{
    become_subreaper, kill_tree, reap_forever, signal_group, spawn_server, tree_pids, ConsoleTail,
    ExitInfo, Reaper, ServerSpec, SpawnedServer,
};

fn run_local<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("test runtime");
    tokio::task::LocalSet::new().block_on(&rt, f)
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Alive = has a /proc entry that is not a zombie waiting for the reaper.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat[stat.rfind(')').unwrap() + 1..]
                .trim_start()
                .chars()
                .next();
            !matches!(state, Some('Z') | Some('X'))
        }
        Err(_) => false,
    }
}

fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Kills every tree it was told about when dropped (also on a failed assertion).
struct Cleanup(Vec<i32>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for &pid in &self.0 {
            kill_tree(pid, pid, &HashSet::new());
        }
        std::thread::sleep(Duration::from_millis(50));
        while nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(-1),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        )
        .is_ok_and(|s| s != nix::sys::wait::WaitStatus::StillAlive)
        {}
    }
}

fn spec(argv: &[&str], dir: &Path, console: PathBuf) -> ServerSpec {
    ServerSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        directory: dir.to_path_buf(),
        user: None,
        group: None,
        env: vec![("EXTRA".into(), "added by spec".into())],
        console_log: console,
        cgroup: None,
    }
}

async fn wait_for_line(tail: &ConsoleTail, line: &str) {
    // Generous: a fixture shell printing its first line on a loaded 2-core machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if tail.tail(200).iter().any(|l| l == line) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{line:?} never appeared; tail: {:?}", tail.tail(200));
}

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within 10s"))
}

#[test]
fn servers_are_spawned_captured_and_killed_with_their_whole_tree() {
    become_subreaper().expect("PR_SET_CHILD_SUBREAPER");
    // The controller's own service-manager variables must not reach the server.
    std::env::set_var("NOTIFY_SOCKET", "/run/systemd/notify");
    std::env::set_var("WATCHDOG_USEC", "1000000");
    let data = tempfile::tempdir().expect("tempdir");
    let console = data.path().join("qoscntrlr-console.log");
    let mut cleanup = Cleanup(Vec::new());

    run_local(async {
        let reaper: Rc<Reaper> = Reaper::new();
        let (unclaimed_tx, mut unclaimed) = tokio::sync::mpsc::unbounded_channel();
        tokio::task::spawn_local(reap_forever(reaper.clone(), unclaimed_tx));
        let tail = ConsoleTail::default();
        let no_helpers = HashSet::new();

        // 1. A server that exits at once: status, console, scrubbed environment.
        let server = spawn_server(
            &spec(
                &[&fixture("exit_now.sh"), "a b", "c"],
                data.path(),
                console.clone(),
            ),
            &reaper,
        )
        .expect("spawn exit_now");
        cleanup.0.push(server.pid);
        assert_eq!(server.program, "exit_now.sh");
        let SpawnedServer {
            exited,
            console: cap,
            ..
        } = server;
        let pump = tokio::task::spawn_local(cap.pump(tail.clone()));
        assert_eq!(within("exit", exited).await.unwrap(), ExitInfo::Exited(3));
        let summary = within("end of console", pump).await.unwrap();
        assert!(summary.write_error.is_none(), "{summary:?}");
        let lines = tail.tail(200);
        for expected in [
            "NOTIFY_SOCKET=unset",
            "WATCHDOG_USEC=unset",
            "EXTRA=added by spec",
            "args=a b c",
            &format!("cwd={}", data.path().canonicalize().unwrap().display()),
            "on stderr",
        ] {
            assert!(
                lines.iter().any(|l| l == expected),
                "{expected:?} missing from {lines:?}"
            );
        }
        let file = std::fs::read_to_string(&console).expect("console log");
        assert!(file.contains("=== qoscntrlr: started "), "{file}");
        assert!(file.contains("EXTRA=added by spec\n"), "{file}");

        // 2. A server that ignores SIGTERM: survives the polite signal, not the tree kill.
        let server = spawn_server(
            &spec(&[&fixture("ignore_term.sh")], data.path(), console.clone()),
            &reaper,
        )
        .expect("spawn ignore_term");
        cleanup.0.push(server.pid);
        let pid = server.pid;
        let pump = tokio::task::spawn_local(server.console.pump(tail.clone()));
        wait_for_line(&tail, "ready").await;
        let tree = tree_pids(pid, pid, &no_helpers);
        assert!(tree.len() >= 2, "server and its sleep child: {tree:?}");
        signal_group(pid, Signal::SIGTERM).expect("SIGTERM the group");
        // A wait for something that must NOT happen (the server dying of SIGTERM), so
        // no polling can replace it: a process that honoured the signal would be gone
        // within milliseconds; 200 ms is a wide margin on a loaded machine.
        const IGNORES_SIGTERM: Duration = Duration::from_millis(200);
        tokio::time::sleep(IGNORES_SIGTERM).await;
        assert!(alive(pid), "SIGTERM is ignored");
        let report = kill_tree(pid, pid, &no_helpers);
        assert!(report.survivors.is_empty(), "{report:?}");
        for p in &tree {
            assert!(report.killed.contains(p), "{p} not killed: {report:?}");
        }
        assert_eq!(
            within("exit", server.exited).await.unwrap(),
            ExitInfo::Signaled {
                signal: Signal::SIGKILL as i32,
                core_dumped: false
            }
        );
        within("end of console", pump).await.unwrap();
        for p in &tree {
            assert!(!alive(*p), "{p} survived the kill");
        }

        // 3. A server that daemonizes a grandchild with setsid (double fork).
        let pidfile = data.path().join("daemon.pid");
        let server = spawn_server(
            &spec(
                &[&fixture("daemonize.sh"), pidfile.to_str().unwrap()],
                data.path(),
                console.clone(),
            ),
            &reaper,
        )
        .expect("spawn daemonize");
        cleanup.0.push(server.pid);
        let pid = server.pid;
        let pump = tokio::task::spawn_local(server.console.pump(tail.clone()));
        wait_for_line(&tail, "ready").await;
        let daemon: i32 = loop {
            if let Ok(text) = std::fs::read_to_string(&pidfile) {
                break text.trim().parse().expect("daemon pid");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(alive(daemon));
        // As child subreaper the test process adopts the orphan, outside the group, once
        // its intermediate parent has exited (which may be just after the pid file).
        let pgid = |p: i32| {
            nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(p)))
                .ok()
                .map(|g| g.as_raw())
        };
        within("the daemon's adoption", async {
            while ppid(daemon) != Some(std::process::id() as i32) || pgid(daemon) == Some(pid) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        let tree = tree_pids(pid, pid, &no_helpers);
        assert!(tree.contains(&pid) && tree.contains(&daemon), "{tree:?}");
        // A pid passed as a helper is left alone.
        assert!(!tree_pids(pid, pid, &HashSet::from([daemon])).contains(&daemon));

        let report = kill_tree(pid, pid, &no_helpers);
        assert!(report.survivors.is_empty(), "{report:?}");
        assert!(report.killed.contains(&daemon), "{report:?}");
        assert!(matches!(
            within("exit", server.exited).await.unwrap(),
            ExitInfo::Signaled { .. }
        ));
        // The daemon held the console pipe; with it dead the pump ends.
        within("end of console", pump).await.unwrap();
        for p in tree.iter().chain([&daemon]) {
            assert!(!alive(*p), "{p} survived the kill");
        }
        // The adopted daemon's exit reaches the reaper as an unclaimed exit (no zombie).
        let mut adopted = Vec::new();
        while let Ok(Some(exit)) =
            tokio::time::timeout(Duration::from_secs(2), unclaimed.recv()).await
        {
            adopted.push(exit.0);
            if adopted.contains(&daemon) {
                break;
            }
        }
        assert!(adopted.contains(&daemon), "unclaimed exits: {adopted:?}");
        assert!(
            std::fs::metadata(format!("/proc/{daemon}")).is_err(),
            "daemon reaped"
        );
        assert!(tree_pids(pid, pid, &no_helpers).iter().all(|p| !alive(*p)));

        // 4. As root, SERVER_USER switches identity and sets HOME/USER.
        if nix::unistd::Uid::effective().is_root()
            && nix::unistd::User::from_name("nobody")
                .ok()
                .flatten()
                .is_some()
        {
            let mut s = spec(&["id", "-un"], Path::new("/"), console.clone());
            s.user = Some("nobody".into());
            let server = spawn_server(&s, &reaper).expect("spawn as nobody");
            cleanup.0.push(server.pid);
            let local_tail = ConsoleTail::default();
            let pump = tokio::task::spawn_local(server.console.pump(local_tail.clone()));
            assert_eq!(
                within("exit", server.exited).await.unwrap(),
                ExitInfo::Exited(0)
            );
            within("end of console", pump).await.unwrap();
            assert_eq!(local_tail.tail(1), vec!["nobody"]);
        }
    });
    drop(cleanup);
}
