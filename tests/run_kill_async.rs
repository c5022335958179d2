//! The tree kill does not block the supervision loop. A server whose shell ignores
//! SIGTERM is stopped by an operator `restart` (the stop times out, the tree is killed);
//! one of its processes is frozen (cgroup v1 freezer: a frozen task cannot act on
//! SIGKILL until it is thawed, like a process in uninterruptible sleep), so the kill
//! has to wait for it. Meanwhile `status` answers promptly and no second server is
//! started beside the leftover; once thawed the leftover dies, the kill reports it and
//! the server starts again — nothing survives. A SIGTERM to the controller in the middle
//! of such a kill does not make it exit before the kill is done.
//!
//! Needs root and the cgroup v1 freezer (mounted, or mountable on a temporary
//! directory). Without root the test skips (a failure under CI, which runs as root); a
//! kernel or host without the v1 freezer is reported as a visible skip.

mod common;
mod exe;
mod skip;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{eventually, is_alive, is_gone, Harness};

/// How long one `status` may take while a kill waits. The loop answers in milliseconds;
/// the bound is generous for a loaded machine and well under the kill's own time limit
/// (10 s), so a loop blocked by the kill would fail it.
const STATUS_BOUND: Duration = Duration::from_secs(5);
/// How long the leftover stays frozen while the test watches the controller.
const FROZEN_FOR: Duration = Duration::from_secs(2);

/// A cgroup v1 freezer group of this test, removed (thawed first) when dropped.
struct Freezer {
    dir: PathBuf,
    /// A hierarchy this test mounted (unmounted when dropped).
    mounted: Option<tempfile::TempDir>,
}

impl Freezer {
    fn new(test: &str) -> Result<Freezer, String> {
        let name = format!("qoscntrlr-{test}-{}", std::process::id());
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        // An existing v1 freezer hierarchy (super options name the controller).
        let existing = mountinfo.lines().find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut right = right.split_whitespace();
            let fstype = right.next()?;
            let _source = right.next()?;
            let options = right.next()?;
            let point = left.split_whitespace().nth(4)?;
            (fstype == "cgroup" && options.split(',').any(|o| o == "freezer"))
                .then(|| PathBuf::from(point))
        });
        let (base, mounted) = match existing {
            Some(point) => (point, None),
            None => {
                let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
                let status = std::process::Command::new("mount")
                    .args(["-t", "cgroup", "-o", "freezer", "qoscntrlr-test-freezer"])
                    .arg(dir.path())
                    .status()
                    .map_err(|e| format!("mount: {e}"))?;
                if !status.success() {
                    return Err("no cgroup v1 freezer hierarchy, and none can be mounted".into());
                }
                (dir.path().to_path_buf(), Some(dir))
            }
        };
        let dir = base.join(name);
        std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Freezer { dir, mounted })
    }

    fn write(&self, file: &str, text: &str) {
        let path = self.dir.join(file);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// Move `pid` in and freeze the group; returns when the kernel says FROZEN.
    fn freeze(&self, pid: i32) {
        self.write("cgroup.procs", &pid.to_string());
        self.write("freezer.state", "FROZEN");
        let frozen = eventually("the freezer group frozen", || {
            std::fs::read_to_string(self.dir.join("freezer.state"))
                .is_ok_and(|s| s.trim() == "FROZEN")
        });
        assert!(frozen, "the freezer group did not freeze");
    }

    fn thaw(&self) {
        self.write("freezer.state", "THAWED");
    }
}

impl Drop for Freezer {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("freezer.state"), "THAWED");
        // Empty once its processes are gone; they die once thawed.
        let _ = eventually("the freezer group empty", || {
            std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists()
        });
        if let Some(dir) = self.mounted.take() {
            let _ = std::process::Command::new("umount")
                .arg(dir.path())
                .status();
        }
    }
}

/// The freezer, or why the test cannot run (skipped visibly; without root a failure
/// under CI).
fn freezer_or_skip(test: &str) -> Option<Freezer> {
    if !nix::unistd::geteuid().is_root() {
        skip::skip(test, "needs root (the cgroup v1 freezer)");
        return None;
    }
    match Freezer::new(test) {
        Ok(f) => Some(f),
        Err(reason) => {
            // A property of the kernel or host, not a missing package.
            let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {reason}");
            None
        }
    }
}

/// A server whose shell ignores SIGTERM and whose child (which ignores it too, the
/// disposition crossing its exec) writes its pid to `child_file`.
fn server_script(dir: &Path, child_file: &Path) -> PathBuf {
    let script = dir.join("stubborn-server.sh");
    let text = format!(
        "#!/bin/sh\ntrap '' TERM\nsh -c 'echo $$ > {}; exec sleep 600' &\nwhile :; do wait; done\n",
        child_file.display()
    );
    exe::write_executable(&script, text.as_bytes());
    script
}

fn harness(test_dir: &Path) -> (Harness, PathBuf) {
    let child_file = test_dir.join("child.pid");
    let script = server_script(test_dir, &child_file);
    let h = Harness::server(
        &script.display().to_string(),
        &[
            ("QOS_PROBE", "exec:/bin/true"),
            // The /proc tree kill is the one that waits on the loop; a contained server
            // is killed through its cgroup, already without blocking.
            ("QOS_CGROUP", "off"),
            ("QOS_SHUTDOWN_TIMEOUT", "1s"),
        ],
    );
    (h, child_file)
}

fn child_pid(h: &Harness, child_file: &Path) -> i32 {
    let mut pid = 0;
    let found = eventually("the server's child", || {
        pid = std::fs::read_to_string(child_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        pid > 0 && is_alive(pid)
    });
    assert!(
        found,
        "the server's child never wrote its pid\n{}",
        h.dump()
    );
    pid
}

/// `status --json` within STATUS_BOUND; the answer.
fn prompt_status(h: &Harness) -> serde_json::Value {
    let asked = Instant::now();
    let (_, json) = h.status();
    let took = asked.elapsed();
    // The running controller answered (not the last-state record of a gone one).
    assert_eq!(
        json["controller"]["pid"].as_i64(),
        Some(h.controller_pid() as i64),
        "status during the kill: {json}\n{}",
        h.dump()
    );
    assert!(
        took < STATUS_BOUND,
        "status took {took:?} while the tree kill waited (bound {STATUS_BOUND:?})\n{}",
        h.dump()
    );
    json
}

/// A ready server whose child is frozen, then `restart`: the stop times out (SIGTERM
/// ignored) and the tree kill begins; the server's shell dies, its frozen child cannot
/// until it is thawed. Returns the harness, the old server's pid and the child's.
fn kill_waiting_for_a_frozen_leftover(dir: &Path, freezer: &Freezer) -> (Harness, i32, i32) {
    let (mut h, child_file) = harness(dir);
    h.start_ready();
    let server = h.server_pid();
    let child = child_pid(&h, &child_file);
    freezer.freeze(child);
    let out = h.cli("restart", &[]);
    assert_eq!(out.code, Some(0), "restart: {out:?}\n{}", h.dump());
    assert!(
        eventually("the server shell killed", || is_gone(server)),
        "the server was not killed\n{}",
        h.dump()
    );
    (h, server, child)
}

#[test]
fn status_answers_while_the_tree_kill_waits_and_the_kill_still_completes() {
    let Some(freezer) = freezer_or_skip("tree_kill_waits") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, server, child) = kill_waiting_for_a_frozen_leftover(dir.path(), &freezer);
    let frozen_until = Instant::now() + FROZEN_FOR;
    let mut answers = 0;
    while Instant::now() < frozen_until {
        let json = prompt_status(&h);
        answers += 1;
        // Never a second server beside what is left of the first.
        let pid = json["server"]["pid"].as_i64();
        assert!(
            pid.is_none() || pid == Some(server as i64),
            "a new server was started while the old tree's process {child} was still alive: {json}\n{}",
            h.dump()
        );
        assert!(is_alive(child), "the frozen child died while frozen");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        answers >= 2,
        "status answered {answers} time(s) in {FROZEN_FOR:?}"
    );

    freezer.thaw();
    let killed = h.wait_for("QoS Kill: Killed ");
    assert!(
        killed.contains(&format!(" {child}")),
        "the kill names the leftover {child}: {killed}\n{}",
        h.dump()
    );
    h.wait_for("QoS Controller: Server is ready to process requests");
    assert!(
        eventually("the leftover reaped", || is_gone(child)),
        "the leftover {child} survived the kill"
    );
    assert_eq!(
        h.count("Still alive after SIGKILL"),
        0,
        "a leftover that died within the kill's wait is no survivor\n{}",
        h.dump()
    );
    let restarted = h.server_pid();
    assert_ne!(restarted, server, "{}", h.dump());
    h.stop();
    h.assert_nothing_left();
}

#[test]
fn sigterm_during_a_waiting_tree_kill_finishes_the_kill_before_exiting() {
    let Some(freezer) = freezer_or_skip("sigterm_mid_kill") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, _server, child) = kill_waiting_for_a_frozen_leftover(dir.path(), &freezer);
    // SIGTERM to the controller comes while the kill waits for the frozen child.
    h.signal(nix::sys::signal::Signal::SIGTERM);
    h.wait_for("QoS Controller: Received SIGTERM: shutting down");
    let until = Instant::now() + FROZEN_FOR;
    while Instant::now() < until {
        assert!(
            h.controller_running(),
            "the controller exited while its tree kill still waited for {child}\n{}",
            h.dump()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    freezer.thaw();
    let status = h.wait_exit();
    assert!(status.success(), "exit: {status:?}\n{}", h.dump());
    // Dead when the controller left; its zombie is reaped by init after that.
    assert!(
        eventually("the leftover reaped", || is_gone(child)),
        "the leftover {child} outlived the controller"
    );
    assert!(
        h.lines()
            .iter()
            .any(|l| l.contains("QoS Kill: Killed ") && l.contains(&format!(" {child}"))),
        "the kill names the leftover {child}\n{}",
        h.dump()
    );
    h.assert_nothing_left();
}
