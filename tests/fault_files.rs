//! Fault injection on the controller's files (issue 12, defects 4, 6, 7, 8, 9): a
//! read-only data directory, planted symlinks, a deleted live `.out`, device nodes and
//! full disks as output paths, control bytes in messages, hostile ini files.
//!
//! Every case asserts the suite's three invariants where they apply: no healthy server
//! is killed, no server is left running unsupervised (the harness's `stop` checks that
//! nothing of the test survives the controller), and no log line is lost without the loss
//! being reported. Root-only cases (bind mounts, small tmpfs) skip visibly elsewhere and
//! fail under CI (`tests/skip`).

mod common;
mod skip;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{eventually, Harness};
use qoscntrlr::core::{Action, Controller, Event, Policy, StateName};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A victim file outside the data directory that a planted link points to; its content
/// must survive the run unchanged.
struct Victim {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

const VICTIM_TEXT: &str = "precious content that must not change\n";
/// How long a helper must stay alive after its controller was SIGKILLed to count as
/// having outlived it. A wait for something that must NOT happen (the helper dying with
/// the controller), so no polling can replace it: anything tied to the controller's
/// death (its process group's kill, a parent-death signal) is delivered when the
/// controller exits, which the client has already seen, and takes effect within
/// milliseconds; 300 ms is a wide margin for that on a loaded machine.
const OUTLIVES_THE_CONTROLLER: Duration = Duration::from_millis(300);

impl Victim {
    fn file() -> Victim {
        let dir = tempfile::tempdir().expect("victim dir");
        let path = dir.path().join("victim.txt");
        std::fs::write(&path, VICTIM_TEXT).expect("write victim");
        Victim { _dir: dir, path }
    }

    /// An empty victim directory (for directory links).
    fn dir() -> Victim {
        let dir = tempfile::tempdir().expect("victim dir");
        let path = dir.path().join("victim-dir");
        std::fs::create_dir(&path).expect("create victim dir");
        Victim { _dir: dir, path }
    }

    fn assert_untouched(&self, h: &Harness) {
        if self.path.is_dir() {
            let entries: Vec<_> = std::fs::read_dir(&self.path)
                .expect("read victim dir")
                .flatten()
                .map(|e| e.file_name())
                .collect();
            assert!(
                entries.is_empty(),
                "files were created through the planted link: {entries:?}\n{}",
                h.dump()
            );
        } else {
            assert_eq!(
                std::fs::read_to_string(&self.path).expect("read victim"),
                VICTIM_TEXT,
                "the victim file was changed through the planted link\n{}",
                h.dump()
            );
        }
    }
}

fn plant(h: &Harness, name: &str, victim: &Victim) -> PathBuf {
    let link = h.data().join(name);
    std::os::unix::fs::symlink(&victim.path, &link).expect("plant the symlink");
    link
}

/// The server hangs (probe timeout): the controller fails over, collects diagnostics,
/// kills and restarts it; then it must be READY again.
fn hang_and_expect_restart(h: &mut Harness) {
    let first = h.server_pid();
    h.http_ok("/hang");
    h.wait_for("QoS Controller: The controller has received a probe timeout.");
    h.wait_for("QoS Kill: Restarting DominoStarter thread");
    h.wait_for("QoS Controller: Server is ready to process requests");
    assert_ne!(h.server_pid(), first, "a new server runs");
}

// ---------------------------------------------------------------------------------------
// Defect 6: planted symlinks are never followed

#[test]
fn symlink_trigger_temp_file_is_not_followed() {
    let mut h = Harness::demo(&[]);
    let victim = Victim::file();
    let link = plant(&h, ".triggerImmediateServerFailover.tmp", &victim);
    h.start_ready();
    hang_and_expect_restart(&mut h);
    victim.assert_untouched(&h);
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "the temp name was renamed to the trigger"
    );
    assert_eq!(
        h.count("QoS Kill: ALERT: the failover trigger could not be written"),
        0
    );
    h.stop();
}

#[test]
fn symlink_lock_file_is_not_followed() {
    let mut h = Harness::demo(&[]);
    let victim = Victim::file();
    let link = plant(&h, "qoscntrlr.lock", &victim);
    h.start_ready();
    victim.assert_untouched(&h);
    let note = h.lines().join("\n");
    assert!(
        note.contains("qoscntrlr.lock was a symbolic link to")
            && note.contains("removed without being followed"),
        "{}",
        h.dump()
    );
    let meta = std::fs::symlink_metadata(&link).expect("lock file");
    assert!(
        meta.file_type().is_file(),
        "a real lock file replaced the link"
    );
    assert_eq!(
        std::fs::read_to_string(&link).unwrap().trim(),
        h.controller_pid().to_string()
    );
    h.stop();
}

#[test]
fn symlink_state_temp_file_is_not_followed() {
    let mut h = Harness::demo(&[]);
    let victim = Victim::file();
    plant(&h, "qoscntrlr.state.tmp", &victim);
    h.start_ready();
    victim.assert_untouched(&h);
    let state = h.data().join("qoscntrlr.state");
    assert!(
        eventually("the state file is written", || std::fs::symlink_metadata(
            &state
        )
        .is_ok_and(|m| m.file_type().is_file())),
        "{}",
        h.dump()
    );
    h.stop();
}

#[test]
fn symlink_events_file_is_not_followed() {
    let mut h = Harness::demo(&[]);
    let victim = Victim::file();
    plant(&h, "qoscntrlr-events.jsonl", &victim);
    h.start_ready();
    hang_and_expect_restart(&mut h);
    victim.assert_untouched(&h);
    assert!(
        h.lines()
            .iter()
            .any(|l| l.contains("qoscntrlr-events.jsonl")
                && l.contains("is a symbolic link; not followed")),
        "{}",
        h.dump()
    );
    h.stop();
}

#[test]
fn symlink_console_log_is_not_followed() {
    let mut h = Harness::demo(&[]);
    let victim = Victim::file();
    plant(&h, "qoscntrlr-console.log", &victim);
    h.start_ready();
    h.http_ok("/");
    hang_and_expect_restart(&mut h);
    victim.assert_untouched(&h);
    assert!(
        h.lines()
            .iter()
            .any(|l| l.contains("Cannot open the console log")
                && l.contains("is a symbolic link; not followed")),
        "{}",
        h.dump()
    );
    h.stop();
}

#[test]
fn symlink_hooks_log_is_not_followed() {
    let mut h = Harness::demo(&[("QOS_FAILOVER_HOOK", "/bin/echo failover")]);
    let victim = Victim::file();
    plant(&h, "qoscntrlr-hooks.log", &victim);
    h.start_ready();
    hang_and_expect_restart(&mut h);
    assert!(
        eventually("the hook's outcome is logged", || h.lines().iter().any(
            |l| l.contains("Failover hook: ")
                && l.contains("its output was not logged")
                && l.contains("symbolic link")
        )),
        "{}",
        h.dump()
    );
    victim.assert_untouched(&h);
    h.stop();
}

#[test]
fn symlink_diagnostics_directory_is_not_followed() {
    let mut h = Harness::demo(&[]);
    let victim = Victim::dir();
    // A file the pruning would delete if it followed the link.
    let bait = victim.path.join("nsd_20000101_000000_crash.log");
    plant(&h, "diagnostics", &victim);
    h.start_ready();
    std::fs::write(&bait, "old diagnostics of someone else").unwrap();
    hang_and_expect_restart(&mut h);
    assert!(
        h.lines()
            .iter()
            .any(|l| l.contains("diagnostics") && l.contains("is a symbolic link; not followed")),
        "{}",
        h.dump()
    );
    assert!(bait.exists(), "pruning followed the link\n{}", h.dump());
    std::fs::remove_file(&bait).unwrap();
    victim.assert_untouched(&h);
    h.stop();
}

#[test]
fn symlink_mail_spool_is_not_followed() {
    // SMTP to a port nobody listens on: every alert is spooled for a retry.
    let port = common::free_port();
    let mut h = Harness::demo(&[
        ("QOS_MAIL_TO", "ops@example.org"),
        ("QOS_MAIL_SMTP_SERVER", &format!("127.0.0.1:{port}")),
    ]);
    let victim = Victim::dir();
    plant(&h, "mail-spool", &victim);
    h.start_ready();
    hang_and_expect_restart(&mut h);
    h.wait_for_containing("could not be spooled");
    assert!(
        h.lines()
            .iter()
            .any(|l| l.contains("could not be spooled") && l.contains("symbolic link")),
        "{}",
        h.dump()
    );
    victim.assert_untouched(&h);
    h.stop();
}

// ---------------------------------------------------------------------------------------
// Defect 4: a read-only data directory

/// Failed spawns back off: the restart limit (3) is not used up within seconds. Virtual
/// time, the core alone.
#[test]
fn failed_spawns_back_off_instead_of_burning_the_restart_limit() {
    let t0 = std::time::Instant::now();
    let mut ctl = Controller::new(Policy::default(), t0);
    let mut now = t0;
    let spawns = |actions: &[Action]| actions.iter().filter(|a| **a == Action::Spawn).count();
    let first = ctl.handle(
        now,
        Event::ControllerStarted {
            trigger_present: false,
        },
    );
    assert_eq!(spawns(&first), 1);
    let mut attempts = vec![now];
    for _ in 0..3 {
        let out = ctl.handle(
            now,
            Event::SpawnFailed {
                error: "console log /d/x: Read-only file system".into(),
            },
        );
        assert_eq!(spawns(&out), 0, "no retry in the same instant: {out:?}");
        assert_eq!(ctl.state(), StateName::Restarting);
        let at = ctl.next_deadline().expect("a retry is scheduled");
        assert!(at > now, "the retry waits");
        now = at;
        let out = ctl.handle(now, Event::DeadlineReached);
        assert_eq!(spawns(&out), 1, "{out:?}");
        attempts.push(now);
    }
    let gaps: Vec<u64> = attempts
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs())
        .collect();
    assert_eq!(gaps, [5, 10, 20], "5 s doubling");
    // The fourth failure reaches the limit of 3 restarts: 35 s after the first, not 0.
    let out = ctl.handle(
        now,
        Event::SpawnFailed {
            error: "still read-only".into(),
        },
    );
    assert_eq!(ctl.state(), StateName::Faulted, "{out:?}");
}

/// A trigger file that cannot be written is an alert; readiness and hooks still go down;
/// recovery does not claim to remove a trigger that was never written.
#[test]
fn unwritable_trigger_is_an_alert_and_recovery_says_so() {
    let t0 = std::time::Instant::now();
    let policy = Policy {
        probe_interval: Duration::from_secs(1),
        probe_timeout: Duration::from_secs(5),
        ..Policy::default()
    };
    let mut ctl = Controller::new(policy, t0);
    let mut now = t0;
    let mut log: Vec<String> = Vec::new();
    let mut all: Vec<Action> = Vec::new();
    let feed = |ctl: &mut Controller, now, e, all: &mut Vec<Action>| {
        let out = ctl.handle(now, e);
        all.extend(out.iter().cloned());
        out
    };
    feed(
        &mut ctl,
        now,
        Event::ControllerStarted {
            trigger_present: false,
        },
        &mut all,
    );
    feed(
        &mut ctl,
        now,
        Event::ServerSpawned {
            pid: 42,
            program: "srv".into(),
        },
        &mut all,
    );
    let ready = |ctl: &mut Controller, now, all: &mut Vec<Action>| {
        let out = ctl.handle(
            now,
            Event::ProbeFinished {
                success: true,
                latency: Duration::from_millis(3),
                detail: String::new(),
            },
        );
        all.extend(out.iter().cloned());
    };
    ready(&mut ctl, now, &mut all);
    assert_eq!(ctl.state(), StateName::Ready);
    // No probe answers any more: probe timeout, smart kill.
    let mut wrote_trigger = false;
    for _ in 0..20 {
        now = ctl.next_deadline().expect("deadline");
        let out = feed(&mut ctl, now, Event::DeadlineReached, &mut all);
        if out.contains(&Action::WriteTrigger) {
            wrote_trigger = true;
            let pos_trigger = out.iter().position(|a| *a == Action::WriteTrigger).unwrap();
            let pos_health = out
                .iter()
                .position(|a| matches!(a, Action::SetHealth(qoscntrlr::core::Health::Down { .. })))
                .expect("health goes down");
            assert!(pos_health > pos_trigger);
            assert!(
                out.iter().any(|a| matches!(
                    a,
                    Action::RunHook {
                        event: qoscntrlr::core::HookEvent::Failover,
                        ..
                    }
                )),
                "the failover hook runs: {out:?}"
            );
            let alert = feed(
                &mut ctl,
                now,
                Event::TriggerWriteFailed {
                    error: "/d/triggerImmediateServerFailover: Read-only file system".into(),
                },
                &mut all,
            );
            assert!(
                alert.iter().any(|a| matches!(a, Action::Log { text, .. } if text.contains("ALERT: the failover trigger could not be written (/d/triggerImmediateServerFailover: Read-only file system)"))),
                "{alert:?}"
            );
            assert!(
                alert.iter().any(
                    |a| matches!(a, Action::Mail(m) if m.summary.contains("could not be written"))
                ),
                "mailed: {alert:?}"
            );
            break;
        }
        if out.iter().any(|a| matches!(a, Action::Probe { .. })) {
            feed(
                &mut ctl,
                now,
                Event::ProbeFinished {
                    success: false,
                    latency: Duration::from_secs(1),
                    detail: "timed out".into(),
                },
                &mut all,
            );
        }
    }
    assert!(wrote_trigger, "no smart kill happened: {all:?}");
    // Diagnostics, kill, restart, ready again.
    feed(
        &mut ctl,
        now,
        Event::DiagnosticsFinished {
            incident: Some(1),
            path: None,
            error: Some("read-only".into()),
        },
        &mut all,
    );
    feed(
        &mut ctl,
        now,
        Event::ServerExited {
            pid: 42,
            exit: "killed by SIGKILL".into(),
        },
        &mut all,
    );
    for _ in 0..5 {
        if all.contains(&Action::Spawn) {
            break;
        }
        if let Some(at) = ctl.next_deadline() {
            now = at;
            feed(&mut ctl, now, Event::DeadlineReached, &mut all);
        }
    }
    feed(
        &mut ctl,
        now,
        Event::ServerSpawned {
            pid: 43,
            program: "srv".into(),
        },
        &mut all,
    );
    all.clear();
    ready(&mut ctl, now, &mut all);
    ready(&mut ctl, now, &mut all);
    for a in &all {
        if let Action::Log { text, .. } = a {
            log.push(text.clone());
        }
    }
    assert!(
        log.iter()
            .any(|l| l == "Server has recovered; failover outputs restored (no trigger file had been written)"),
        "{log:?}"
    );
    assert!(
        !log.iter().any(|l| l.contains("failover trigger removed")),
        "{log:?}"
    );
}

/// A stacked read-only bind mount over the data directory: files the controller has
/// open keep working (its `.out`), everything it opens afterwards fails with EROFS.
struct ReadOnlyMount {
    path: PathBuf,
}

impl ReadOnlyMount {
    fn over(path: &Path) -> Option<ReadOnlyMount> {
        let ok = Command::new("mount")
            .args(["--bind", "-o", "ro"])
            .arg(path)
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| ReadOnlyMount {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        for _ in 0..50 {
            if Command::new("umount")
                .arg(&self.path)
                .status()
                .is_ok_and(|s| s.success())
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[test]
fn read_only_data_directory_server_still_restarts_and_fails_over() {
    const NAME: &str = "read_only_data_directory_server_still_restarts_and_fails_over";
    if !is_root() {
        skip::skip(
            NAME,
            "needs root to bind-mount the data directory read-only",
        );
        return;
    }
    let readiness = common::free_port();
    let mut h = Harness::demo(&[("QOS_READINESS_LISTEN", &format!("127.0.0.1:{readiness}"))]);
    h.start_ready();
    let Some(mount) = ReadOnlyMount::over(h.data()) else {
        skip::skip(NAME, "mount --bind -o ro failed here");
        return;
    };
    assert!(
        std::fs::write(h.data().join("probe-rw"), "x").is_err(),
        "the data directory is read-only now"
    );

    // A crash: the server is restarted although its console log cannot be opened.
    let first = h.server_pid();
    let _ = h.http("/crash");
    h.wait_for_containing("has crashed");
    h.wait_for_containing("Cannot open the console log");
    h.wait_for("QoS Controller: Server is ready to process requests");
    let second = h.server_pid();
    assert_ne!(second, first);
    assert_eq!(
        h.count("QoS Controller: Cannot start the server"),
        0,
        "{}",
        h.dump()
    );

    // A hang: the trigger cannot be written, which is an alert; readiness goes down.
    h.http_ok("/hang");
    h.wait_for("QoS Controller: The controller has received a probe timeout.");
    h.wait_for_containing("ALERT: the failover trigger could not be written");
    assert!(!h.trigger_file().exists());
    h.wait_for("QoS Controller: Server is ready to process requests");
    h.wait_for_containing("failover outputs restored (no trigger file had been written)");
    assert_ne!(h.server_pid(), second);
    let (code, body) = common::http_get(readiness, "/").expect("readiness answers");
    assert_eq!((code, body.trim()), (200, "ready"));
    assert_ne!(h.state(), "FAULTED");

    drop(mount);
    h.stop();
}

// ---------------------------------------------------------------------------------------
// Defect 8: output paths

fn logs_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/logs/design")
}

fn qoscntrlr(args: &[&std::ffi::OsStr]) -> common::CliOutput {
    let mut cmd = Command::new(common::CONTROLLER);
    cmd.args(args).env_remove("QOSCNTRLR_CONFIG");
    common::run_cli(cmd)
}

fn report_to(target: &Path) -> common::CliOutput {
    qoscntrlr(&[
        "report".as_ref(),
        "--html".as_ref(),
        target.as_os_str(),
        logs_fixture().as_os_str(),
    ])
}

/// `support-bundle -o target` over a small data directory of its own.
fn bundle_to(root: &Path, target: &Path) -> common::CliOutput {
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let ini = root.join("dcontroller.ini");
    std::fs::write(
        &ini,
        format!(
            "SERVER_COMMAND=/bin/true\nQOS_PROBE=tcp://127.0.0.1:9\nDATA_DIRECTORY={}\n",
            data.display()
        ),
    )
    .unwrap();
    qoscntrlr(&[
        "support-bundle".as_ref(),
        "-c".as_ref(),
        ini.as_os_str(),
        "-o".as_ref(),
        target.as_os_str(),
    ])
}

fn assert_refused(out: &common::CliOutput, target: &Path, what: &str) {
    assert_ne!(out.code, Some(0), "{target:?} accepted: {out:?}");
    assert!(
        out.stderr.contains(&target.display().to_string())
            && out.stderr.contains("not a regular file")
            && out.stderr.contains(what),
        "unclear refusal: {out:?}"
    );
    assert!(!out.stdout.contains("written"), "claims success: {out:?}");
}

fn no_temp_files_in(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn report_and_bundle_refuse_a_fifo_or_directory_target() {
    use std::os::unix::fs::FileTypeExt;
    let root = tempfile::tempdir().unwrap();
    let fifo = root.path().join("out.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    assert_refused(&report_to(&fifo), &fifo, "a FIFO");
    assert_refused(&bundle_to(root.path(), &fifo), &fifo, "a FIFO");
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
    let dir = root.path().join("out.d");
    std::fs::create_dir(&dir).unwrap();
    assert_refused(&report_to(&dir), &dir, "a directory");
    assert_refused(&bundle_to(root.path(), &dir), &dir, "a directory");
    no_temp_files_in(root.path());
    // A regular file is replaced as before.
    let file = root.path().join("report.html");
    std::fs::write(&file, "old").unwrap();
    let out = report_to(&file);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(std::fs::read_to_string(&file).unwrap().contains("<html"));
}

#[test]
fn report_and_bundle_refuse_device_nodes() {
    use std::os::unix::fs::FileTypeExt;
    const NAME: &str = "report_and_bundle_refuse_device_nodes";
    if !is_root() {
        skip::skip(NAME, "needs root to create device nodes (mknod)");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    // Private copies of /dev/null (1,3) and /dev/full (1,7): a regression must never
    // replace the host's own.
    let mut nodes = Vec::new();
    for (name, minor) in [("null", 3), ("full", 7)] {
        let path = root.path().join(name);
        nix::sys::stat::mknod(
            &path,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, minor),
        )
        .expect("mknod");
        nodes.push(path);
    }
    for node in &nodes {
        assert_refused(&report_to(node), node, "a character device");
        assert_refused(&bundle_to(root.path(), node), node, "a character device");
        let meta = std::fs::symlink_metadata(node).unwrap();
        assert!(meta.file_type().is_char_device(), "{node:?} was replaced");
    }
    // Through a link too.
    let link = root.path().join("link-to-null");
    std::os::unix::fs::symlink(&nodes[0], &link).unwrap();
    assert_refused(&report_to(&link), &link, "a character device");
    no_temp_files_in(root.path());
}

/// A small tmpfs filled up: every write and the fsync are checked, so the report fails
/// with the reason instead of claiming "Report written".
#[test]
fn report_and_bundle_on_a_full_disk_fail() {
    const NAME: &str = "report_and_bundle_on_a_full_disk_fail";
    if !is_root() {
        skip::skip(NAME, "needs root to mount a small tmpfs");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let Some(_mount) = SmallTmpfs::mount(root.path(), "256k") else {
        skip::skip(NAME, "mount -t tmpfs failed here");
        return;
    };
    fill(root.path());
    let target = root.path().join("report.html");
    let out = report_to(&target);
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("No space left on device"), "{out:?}");
    assert!(!out.stdout.contains("written"), "{out:?}");
    assert!(!target.exists());
    let bundle_root = tempfile::tempdir().unwrap();
    let target = root.path().join("b.tar.gz");
    let out = bundle_to(bundle_root.path(), &target);
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(!target.exists());
    no_temp_files_in(root.path());
}

/// Fill the filesystem of `dir` to the last byte.
fn fill(dir: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let block = vec![0u8; 4096];
    while f.write(&block).is_ok_and(|n| n > 0) {}
    while f.write(&block[..1]).is_ok_and(|n| n > 0) {}
}

/// A tmpfs of `size` mounted on `path`, unmounted on drop.
struct SmallTmpfs {
    path: PathBuf,
}

impl SmallTmpfs {
    fn mount(path: &Path, size: &str) -> Option<SmallTmpfs> {
        Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success())
            .then(|| SmallTmpfs {
                path: path.to_path_buf(),
            })
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        if !Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success())
        {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Defect 9: hostile input — ini files, probe URLs, control bytes in messages

/// `check-config -c path` with a memory cap (a regression reading /dev/zero to the end
/// must fail fast, not eat the machine) and a time limit (a FIFO must not block it).
fn check_config(path: &Path) -> common::CliOutput {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(common::CONTROLLER);
    cmd.arg("check-config")
        .arg("-c")
        .arg(path)
        .env_remove("QOSCNTRLR_CONFIG");
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let cap = 512 * 1024 * 1024;
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_AS, cap, cap)
                .map_err(std::io::Error::from)
        });
    }
    common::run_cli(cmd)
}

#[test]
fn ini_reader_takes_bounded_regular_files_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = check_config(Path::new("/dev/zero"));
    assert_eq!(out.code, Some(78), "{out:?}");
    assert!(
        out.stderr.contains("/dev/zero") && out.stderr.contains("not a regular file"),
        "{out:?}"
    );

    let fifo = dir.path().join("dcontroller.ini");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let out = check_config(&fifo);
    assert_eq!(out.code, Some(78), "{out:?}");
    assert!(out.stderr.contains("it is a FIFO"), "{out:?}");

    let big = dir.path().join("big.ini");
    let mut text = String::from("SERVER_COMMAND=/bin/true\nQOS_PROBE=tcp://127.0.0.1:9\n");
    while text.len() <= 1024 * 1024 {
        text.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&big, &text).unwrap();
    let out = check_config(&big);
    assert_eq!(out.code, Some(78), "{out:?}");
    assert!(
        out.stderr.contains("is larger than 1048576 bytes"),
        "{out:?}"
    );

    // A link to a regular ini is fine (operators link configs).
    let real = dir.path().join("real.ini");
    std::fs::write(
        &real,
        format!(
            "SERVER_COMMAND=/bin/true\nQOS_PROBE=tcp://127.0.0.1:9\nDATA_DIRECTORY={}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let link = dir.path().join("link.ini");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let out = check_config(&link);
    assert_eq!(out.code, Some(0), "{out:?}");
}

#[test]
fn probe_url_with_credentials_is_refused_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    for (probe, shown) in [
        (
            "http://admin:Sup3rS3cret@127.0.0.1:8080/health",
            "http://admin:***@127.0.0.1:8080/health",
        ),
        (
            "tcp://op:Sup3rS3cret@127.0.0.1:8080",
            "tcp://op:***@127.0.0.1:8080",
        ),
        (
            "https://x:Sup3rS3cret@example.org/",
            "https://x:***@example.org/",
        ),
        ("http://Sup3rS3cret@127.0.0.1/", "http://***@127.0.0.1/"),
    ] {
        let ini = dir.path().join("dcontroller.ini");
        std::fs::write(
            &ini,
            format!(
                "SERVER_COMMAND=/bin/true\nQOS_PROBE={probe}\nDATA_DIRECTORY={}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let out = check_config(&ini);
        assert_eq!(out.code, Some(78), "{probe}: {out:?}");
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(!all.contains("Sup3rS3cret"), "password echoed: {all}");
        assert!(all.contains(shown), "{probe}: {all}");
        assert!(all.contains("QOS_PROBE"), "{all}");
    }
}

#[test]
fn control_bytes_in_messages_never_reach_the_log_raw() {
    use std::io::Write;
    let mut h = Harness::demo(&[]);
    h.start_ready();
    let mut pipe =
        std::os::unix::net::UnixStream::connect(h.data().join("qoscntrlr.pipe")).expect("pipe");
    pipe.write_all(
        b"OpMsg=START Type=FIXUP ObjectType=DB ObjectValue=a\x00b\x1b[2Jc\x07d\x7fe\x08f\rg\x0bh\n",
    )
    .unwrap();
    pipe.write_all(
        b"OpMsg=END Type=FIXUP ObjectType=DB ObjectValue=a\x00b\x1b[2Jc\x07d\x7fe\x08f\rg\x0bh\n",
    )
    .unwrap();
    drop(pipe);
    let added = h.wait_for_containing("Adding FIXUP[");
    assert!(
        added.contains(r"a\x00b\x1B[2Jc\x07d\x7Fe\x08f\rg\x0Bh"),
        "{added:?}"
    );
    h.wait_for_containing("Removing FIXUP[");
    let name = h.log_files("out").pop().expect("an .out");
    let bytes = std::fs::read(h.data().join(name)).unwrap();
    let bad: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|&b| (b < 0x20 && b != b'\n') || b == 0x7f)
        .collect();
    assert!(
        bad.is_empty(),
        "raw control bytes in the log: {bad:?}\n{}",
        h.dump()
    );
    h.stop();
}

// ---------------------------------------------------------------------------------------
// Defect 7: the live `.out` deleted while running

fn any_line(h: &Harness, needle: &str) -> bool {
    h.lines().iter().any(|l| l.contains(needle))
}

#[test]
fn deleted_live_out_is_noticed_and_the_next_incident_is_in_a_visible_file() {
    let mut h = Harness::demo(&[]);
    h.start_ready();
    let old = h.log_files("out");
    assert_eq!(old.len(), 1, "{old:?}");
    let old_path = h.data().join(&old[0]);
    std::fs::remove_file(&old_path).unwrap();
    // An incident at once: the controller notices the deletion before it at the latest.
    h.http_ok("/hang");
    let notice = format!(
        "Log file {} was removed or replaced; continuing in ",
        old_path.display()
    );
    assert!(
        eventually("a new .out says the old one disappeared", || any_line(
            &h, &notice
        )),
        "{}",
        h.dump()
    );
    assert!(
        eventually("the incident is in the new file", || any_line(
            &h,
            "QoS Kill: Triggering failover..."
        ) && any_line(
            &h,
            "QoS Controller: Server is ready to process requests"
        )),
        "{}",
        h.dump()
    );
    let lines = h.lines();
    let notice_at = lines.iter().position(|l| l.contains(&notice)).unwrap();
    let timeout_at = lines
        .iter()
        .position(|l| l.contains("The controller has received a probe timeout."))
        .expect("the detection is in the visible file");
    assert!(notice_at < timeout_at, "{}", h.dump());
    // The review sees it.
    let summary = qoscntrlr(&[
        "logs".as_ref(),
        "summary".as_ref(),
        "--json".as_ref(),
        h.data().as_os_str(),
    ]);
    let json: serde_json::Value = serde_json::from_str(&summary.stdout).expect("json");
    assert!(
        json["file_list"].as_array().is_some_and(|f| !f.is_empty()),
        "{summary:?}"
    );
    assert!(
        json["counts"]["probe_timeouts"].as_u64() >= Some(1),
        "{json}"
    );
    // Without an incident it is noticed within the periodic check, too.
    let current = h.log_files("out");
    std::fs::remove_file(h.data().join(&current[0])).unwrap();
    assert!(
        eventually("noticed without an incident", || h
            .log_files("out")
            .first()
            .is_some_and(|name| std::fs::read_to_string(h.data().join(name))
                .is_ok_and(
                    |t| t.contains("was removed or replaced; continuing in")
                ))),
        "{}",
        h.dump()
    );
    h.stop();
}

// ---------------------------------------------------------------------------------------
// Defect 9: a full data directory (small tmpfs, root)

#[test]
fn full_data_directory_status_says_so_and_state_is_rewritten_when_space_returns() {
    const NAME: &str =
        "full_data_directory_status_says_so_and_state_is_rewritten_when_space_returns";
    if !is_root() {
        skip::skip(
            NAME,
            "needs root to mount a small tmpfs as the data directory",
        );
        return;
    }
    let mut h = Harness::demo(&[]);
    let Some(mount) = SmallTmpfs::mount(h.data(), "4m") else {
        skip::skip(NAME, "mount -t tmpfs failed here");
        return;
    };
    // The tmpfs hides what the harness wrote: write it again.
    std::fs::create_dir_all(h.data().join("harness")).unwrap();
    h.set_keys(&[]);
    h.start_ready();
    h.wait_for("QoS Probe: SUCCESS (");
    let (code, json) = h.status();
    assert_eq!(code, Some(0));
    assert!(json["controller"]["log_problem"].is_null(), "{json}");
    assert!(json["controller"]["log_file"]
        .as_str()
        .is_some_and(|f| f.ends_with(".out")));

    let state_path = h.data().join("qoscntrlr.state");
    // The dead server's record is removed at its exit; held open here, its page is not
    // given back, so the restart's record finds the disk as full as the rest (otherwise
    // whichever write comes first after the crash gets that one page).
    let pinned = std::fs::File::open(&state_path).expect("the state file of the server");
    fill(h.data());
    // Crash the server: its restart cannot record the new server in the state file, and
    // the post-mortem diagnostics cannot be written.
    let first = h.server_pid();
    let _ = h.http("/crash");
    let mut second = 0;
    assert!(
        eventually("restarted and the log unwritable", || {
            let (_, json) = h.status();
            second = json["server"]["pid"].as_i64().unwrap_or(0) as i32;
            json["server"]["state"] == "READY"
                && second != first
                && json["controller"]["log_problem"]
                    .as_str()
                    .is_some_and(|p| p.contains("No space left on device"))
        }),
        "{}",
        h.dump()
    );
    let (code, _) = h.status();
    assert_eq!(code, Some(1), "a controller that cannot log is degraded");
    let text = h.cli("status", &[]);
    assert!(text.stdout.contains("LOG NOT WRITTEN"), "{text:?}");
    assert!(text.stdout.contains("No space left on device"), "{text:?}");

    // Space returns.
    drop(pinned);
    std::fs::remove_file(h.data().join("filler")).unwrap();
    assert!(
        eventually("the state file names the new server", || {
            std::fs::read_to_string(&state_path).is_ok_and(|t| {
                serde_json::from_str::<serde_json::Value>(&t)
                    .is_ok_and(|v| v["pid"].as_i64() == Some(i64::from(second)))
            })
        }),
        "{}",
        h.dump()
    );
    assert!(
        eventually("the log recovers", || {
            let (_, json) = h.status();
            json["controller"]["log_problem"].is_null()
        }),
        "{}",
        h.dump()
    );
    let lines = h.lines();
    let all = lines.join("\n");
    assert!(
        all.contains("The log file could not be written from"),
        "{all}"
    );
    assert!(all.contains("Cannot write the state file"), "{all}");
    assert!(all.contains("(it could not be written before)"), "{all}");
    // One truthful outcome per diagnostics file (the post-mortem may have found the page
    // the removed state file freed; `diagnostics_on_a_full_disk_are_one_failure` pins
    // the failing case).
    for line in &lines {
        if let Some(p) = line.split("Diagnostics written to ").nth(1) {
            assert!(
                !all.contains(&format!(
                    "Diagnostics failed: cannot write diagnostics file {p}"
                )),
                "written and failed for {p}:\n{all}"
            );
        }
    }
    h.stop();
    drop(mount);
}

/// The built-in collector on a full filesystem: the file is not reported as written, and
/// the core logs one outcome (`Diagnostics failed: …`), never "written" and "failed" for
/// the same file.
#[test]
fn diagnostics_on_a_full_disk_are_one_failure() {
    const NAME: &str = "diagnostics_on_a_full_disk_are_one_failure";
    if !is_root() {
        skip::skip(NAME, "needs root to mount a small tmpfs");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let Some(_mount) = SmallTmpfs::mount(root.path(), "256k") else {
        skip::skip(NAME, "mount -t tmpfs failed here");
        return;
    };
    std::fs::create_dir(root.path().join("diagnostics")).unwrap();
    fill(root.path());
    let request = qoscntrlr::diagnostics::DiagRequest {
        reason: "crash".into(),
        server_pid: None,
        tree: Vec::new(),
        console_tail: vec!["a console line of the server".repeat(4); 50],
        data_dir: root.path().to_path_buf(),
        nsd_path: None,
        limit: Duration::from_secs(20),
        server_name: "srv".into(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reaper = qoscntrlr::process::Reaper::new();
    let report = tokio::task::LocalSet::new().block_on(
        &rt,
        qoscntrlr::diagnostics::collect(request, &reaper, chrono::Local::now()),
    );
    assert!(!report.written && !report.ok, "{report:?}");
    let error = report.error.clone().expect("an error");
    assert!(error.contains("No space left on device"), "{error}");
    // What the shell hands the core: no path for a file that was not written.
    let t0 = std::time::Instant::now();
    let mut ctl = Controller::new(Policy::default(), t0);
    let out = ctl.handle(
        t0,
        Event::DiagnosticsFinished {
            incident: None,
            path: report
                .path
                .filter(|_| report.written)
                .map(|p| p.display().to_string()),
            error: Some(error.clone()),
        },
    );
    let texts: Vec<String> = out
        .iter()
        .filter_map(|a| match a {
            Action::Log { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, [format!("Diagnostics failed: {error}")]);
    // A complete file and an incomplete one are "written" (the latter says why).
    let out = ctl.handle(
        t0,
        Event::DiagnosticsFinished {
            incident: None,
            path: Some("/d/diagnostics/nsd_1.log".into()),
            error: Some("time limit of 3 minutes reached".into()),
        },
    );
    let texts: Vec<String> = out
        .iter()
        .filter_map(|a| match a {
            Action::Log { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        texts,
        [
            "Diagnostics written to /d/diagnostics/nsd_1.log",
            "Diagnostics incomplete: time limit of 3 minutes reached"
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Defect 9: a QOS_NSD_PATH helper must not outlive a SIGKILLed controller

#[test]
fn nsd_helper_left_by_a_sigkilled_controller_is_killed_by_the_next_start() {
    use std::os::unix::fs::PermissionsExt;
    let scripts = tempfile::tempdir().unwrap();
    let pid_file = scripts.path().join("nsd.pid");
    let script = scripts.path().join("slow-nsd.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho $$ > {}.tmp && mv {}.tmp {}\nexec sleep 300\n",
            pid_file.display(),
            pid_file.display(),
            pid_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut h = Harness::demo(&[
        ("QOS_NSD_PATH", &script.display().to_string()),
        ("QOS_NSD_TIMEOUT", "120s"),
    ]);
    h.start_ready();
    // The diagnose answer waits for the helper (up to the client's 20 s reply limit),
    // so the client runs in the background: only the helper's start matters here.
    let mut diagnose = h.command(common::CONTROLLER);
    diagnose.arg("diagnose").arg("-c").arg(&h.ini);
    let mut client = diagnose
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        eventually("the nsd helper runs", || pid_file.exists()),
        "{}",
        h.dump()
    );
    let helper: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    h.kill9();
    // The client sees the connection close with its controller.
    let _ = client.wait();
    std::thread::sleep(OUTLIVES_THE_CONTROLLER);
    assert!(
        common::is_alive(helper),
        "the helper outlived the controller"
    );

    h.start();
    h.wait_for_containing("of a previous server's tree still running");
    assert!(
        eventually("the orphaned helper is killed", || common::is_gone(helper)),
        "helper {helper} still runs\n{}",
        h.dump()
    );
    let found = h
        .lines()
        .into_iter()
        .find(|l| l.contains("of a previous server's tree still running"))
        .unwrap();
    assert!(found.contains(&helper.to_string()), "{found}");
    h.wait_for("QoS Controller: Server is ready to process requests");
    h.stop();
}
