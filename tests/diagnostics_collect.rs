//! Diagnostics against real processes: the built-in collector on a real tree, an external
//! nsd program, one that overruns its limit. `waitpid(-1)` reaps every child of the test
//! process, so everything that spawns runs inside this one test, in order.

mod exe;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{Local, TimeZone};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use qoscntrlr::diagnostics::{collect, snapshot_process, DiagRequest};
use qoscntrlr::process::{reap_forever, Reaper};

fn run_local<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("test runtime");
    tokio::task::LocalSet::new().block_on(&rt, f)
}

/// Kills a spawned process group when the test ends, even by a failed assertion.
struct GroupGuard(i32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.0), Signal::SIGKILL);
    }
}

fn spawn_tree(reaper: &Reaper, script: &str) -> (GroupGuard, i32) {
    let child = Command::new("sh")
        .args(["-c", script])
        .process_group(0)
        .spawn()
        .expect("spawn sh");
    let pid = child.id() as i32;
    // The exit status is the reaper's (no wait() here); the receiver is not needed.
    drop(reaper.watch(pid));
    drop(child);
    (GroupGuard(pid), pid)
}

/// Every process whose process group is `pgid`, found through /proc.
fn group_members(pgid: i32) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string() {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

async fn wait_for_members(pgid: i32, n: usize) -> Vec<i32> {
    let start = Instant::now();
    loop {
        let members = group_members(pgid);
        if members.len() >= n || start.elapsed() > Duration::from_secs(5) {
            return members;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn request(data_dir: &Path, reason: &str, tree: Vec<i32>) -> DiagRequest {
    DiagRequest {
        reason: reason.into(),
        server_pid: tree.first().copied(),
        tree,
        console_tail: vec!["console line one".into(), "console line two".into()],
        data_dir: data_dir.to_path_buf(),
        nsd_path: None,
        limit: Duration::from_secs(20),
        server_name: "CN=test/O=dev".into(),
    }
}

fn write_script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    exe::write_executable(&path, format!("#!/bin/sh\n{body}\n").as_bytes());
    path.to_string_lossy().into_owned()
}

fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rfind(')')
            .is_some_and(|i| stat[i + 2..].starts_with('Z')),
    }
}

#[test]
fn diagnostics_of_real_processes() {
    run_local(async {
        let reaper = Reaper::new();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::task::spawn_local(reap_forever(reaper.clone(), tx));
        let tmp = tempfile::tempdir().expect("tempdir");
        let wall = Local
            .with_ymd_and_hms(2024, 5, 8, 0, 37, 47)
            .single()
            .expect("valid time");

        // --- built-in collector on a small real tree ---
        let (guard, sh) = spawn_tree(&reaper, "sleep 30 & sleep 30");
        let tree = wait_for_members(sh, 3).await;
        assert_eq!(tree.len(), 3, "sh and two sleeps: {tree:?}");
        let report = collect(
            request(tmp.path(), "probe-timeout", tree.clone()),
            &reaper,
            wall,
        )
        .await;
        let path = report.path.clone().expect("a file was written");
        assert_eq!(
            path,
            tmp.path()
                .join("diagnostics/nsd_20240508_003747_probe-timeout.log")
        );
        let mode = std::fs::metadata(tmp.path().join("diagnostics"))
            .expect("folder")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o027,
            0,
            "folder not open to group-write or others: {mode:o}"
        );
        let text = std::fs::read_to_string(&path).expect("read diagnostics");
        assert!(report.ok, "{report:?}\n{text}");
        assert!(report.error.is_none());
        for part in [
            "Server:     CN=test/O=dev",
            "Reason:     probe-timeout",
            "Time:       2024/05/08 00:37:47",
            "Kernel:     Linux",
            "Loadavg:    ",
            "=== /proc/meminfo (head) ===",
            "MemTotal:",
            "sleep 30",
            "--- wchan ---",
            "--- stack ---",
            "Max open files",
            "--- fd count: ",
            "--- threads (1) ---",
            "=== thread stacks of pid",
            "=== console tail (2 lines) ===\nconsole line one\nconsole line two\n",
            "=== collection finished after",
        ] {
            assert!(text.contains(part), "missing {part:?} in:\n{text}");
        }
        for pid in &tree {
            assert!(
                text.contains(&format!("=== process {pid} ===")),
                "pid {pid}"
            );
        }
        // The tree still runs: collecting does not disturb it.
        assert!(tree.iter().all(|p| kill(Pid::from_raw(*p), None).is_ok()));

        // A limit already spent: the collector still writes what it can and says so.
        let mut req = request(tmp.path(), "operator", tree.clone());
        req.limit = Duration::ZERO;
        let report = collect(req, &reaper, wall).await;
        assert!(!report.ok);
        assert!(
            report
                .error
                .as_deref()
                .is_some_and(|e| e.contains("time limit")),
            "{report:?}"
        );
        let text = std::fs::read_to_string(report.path.expect("file")).expect("read");
        assert!(text.contains("=== console tail (2 lines) ==="), "{text}");
        assert!(text.contains("=== collection incomplete after"), "{text}");

        // A second incident in the same second gets its own file.
        let again = collect(request(tmp.path(), "probe-timeout", vec![]), &reaper, wall).await;
        assert_eq!(
            again.path.as_deref(),
            Some(
                tmp.path()
                    .join("diagnostics/nsd_20240508_003747_probe-timeout_2.log")
                    .as_path()
            )
        );
        drop(guard);

        // --- a 50-process tree: the /proc part, measured ---
        let (guard, sh) = spawn_tree(&reaper, "for i in $(seq 49); do sleep 30 & done; wait");
        let tree = wait_for_members(sh, 50).await;
        assert_eq!(tree.len(), 50);
        let started = Instant::now();
        let sections: Vec<String> = tree.iter().map(|p| snapshot_process(*p)).collect();
        let took = started.elapsed();
        eprintln!("MEASURE /proc snapshot of a 50-process tree: {took:?}");
        for (pid, section) in tree.iter().zip(&sections) {
            assert!(section.contains(&format!("=== process {pid} ===")));
            assert!(section.contains("Max open files"), "{section}");
        }
        drop(guard);

        // --- an external nsd program ---
        let nsd = write_script(
            tmp.path(),
            "nsd.sh",
            "echo \"nsd for $QOS_SERVER_NAME pid=$QOS_SERVER_PID reason=$QOS_REASON\"\n\
             echo \"file=$QOS_DIAG_FILE\"\necho to-stderr >&2\nexit 0",
        );
        let mut req = request(tmp.path(), "crash", vec![4242]);
        req.nsd_path = Some(vec![nsd.clone()]);
        let report = collect(req, &reaper, wall).await;
        let path = report.path.clone().expect("file");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(report.ok, "{report:?}\n{text}");
        for part in [
            "nsd for CN=test/O=dev pid=4242 reason=crash".to_string(),
            format!("file={}", path.display()),
            "to-stderr".into(),
            "=== nsd ended: exit code 0 after".into(),
        ] {
            assert!(text.contains(&part), "missing {part:?} in:\n{text}");
        }

        // --- an external nsd program that fails ---
        let failing = write_script(tmp.path(), "fail.sh", "echo partial; exit 3");
        let mut req = request(tmp.path(), "crash", vec![]);
        req.nsd_path = Some(vec![failing]);
        let report = collect(req, &reaper, wall).await;
        assert!(!report.ok);
        assert!(report
            .error
            .as_deref()
            .is_some_and(|e| e.contains("exit code 3")));

        // --- an external nsd program that overruns its limit ---
        let pidfile = tmp.path().join("sleeper.pid");
        let slow = write_script(
            tmp.path(),
            "slow.sh",
            &format!(
                "echo started\nsleep 30 &\necho $! > {}\nwait",
                pidfile.display()
            ),
        );
        let mut req = request(tmp.path(), "shutdown", vec![]);
        req.nsd_path = Some(vec![slow]);
        req.limit = Duration::from_millis(500);
        let report = collect(req, &reaper, wall).await;
        let text = std::fs::read_to_string(report.path.as_ref().expect("file")).expect("read");
        assert!(!report.ok);
        assert!(
            report
                .error
                .as_deref()
                .is_some_and(|e| e.contains("timed out")),
            "{report:?}"
        );
        assert!(text.contains("started"), "{text}");
        assert!(
            text.contains("=== nsd timed out after 0.5 s (QOS_NSD_TIMEOUT) and was killed ==="),
            "{text}"
        );
        let sleeper: i32 = std::fs::read_to_string(&pidfile)
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        let start = Instant::now();
        while !gone(sleeper) && start.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone(sleeper), "the nsd program's child was killed with it");

        // --- a program that cannot be started ---
        let mut req = request(tmp.path(), "crash", vec![]);
        req.nsd_path = Some(vec![tmp.path().join("missing").to_string_lossy().into()]);
        let report = collect(req, &reaper, wall).await;
        assert!(!report.ok);
        assert!(report
            .error
            .as_deref()
            .is_some_and(|e| e.contains("could not be started")));

        // --- no place to write ---
        let blocker = tmp.path().join("not-a-dir");
        std::fs::write(&blocker, "x").expect("write");
        let report = collect(request(&blocker, "crash", vec![]), &reaper, wall).await;
        assert_eq!(report.path, None);
        assert!(!report.ok);
        assert!(report
            .error
            .as_deref()
            .is_some_and(|e| e.contains("cannot create diagnostics folder")));

        // Cleanup only, nothing is asserted after it: give killed helpers a moment to
        // exit so the final reap collects them instead of leaving zombies.
        const BEFORE_THE_LAST_REAP: Duration = Duration::from_millis(100);
        tokio::time::sleep(BEFORE_THE_LAST_REAP).await;
        reaper.reap_all();
    });
}
