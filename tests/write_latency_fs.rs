//! The write-latency probe on a real filesystem that turns read-only: a small tmpfs
//! mounted for the test (root only), measured while writable, then remounted read-only.
//! The probe reports a failure (a breach for every write_latency rule), through the
//! bounded probe the sampling loop uses, which never blocks the caller.

mod skip;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use qoscntrlr::host::{write_probe, BoundedProbe};
use qoscntrlr::rules::{parse_rule, Item, Reading, RuleEngine, Verdict};

fn mount(args: &[&str]) -> bool {
    Command::new("mount")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

/// Unmounts on drop, so a failing assertion leaves no mount behind.
struct Mounted<'a>(&'a Path);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

fn poll_until_fresh(
    probe: &mut BoundedProbe,
    dir: &Path,
    want: impl Fn(&Reading) -> bool,
) -> Reading {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = dir.to_path_buf();
        let r = probe.poll(
            Instant::now(),
            Duration::from_secs(10),
            "write + fsync",
            move || write_probe(&d),
        );
        if want(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "last reading {r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_filesystem_turned_read_only_is_a_write_latency_breach() {
    if !nix::unistd::Uid::effective().is_root() {
        skip::skip(
            "a_filesystem_turned_read_only_is_a_write_latency_breach",
            "needs root to mount a tmpfs",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    if !mount(&[
        "-t",
        "tmpfs",
        "-o",
        "size=1m",
        "tmpfs",
        dir.path().to_str().unwrap(),
    ]) {
        skip::skip(
            "a_filesystem_turned_read_only_is_a_write_latency_breach",
            "mount -t tmpfs failed (no mount privilege in this container)",
        );
        return;
    }
    let _mounted = Mounted(dir.path());
    let mut probe = BoundedProbe::default();
    let writable = poll_until_fresh(&mut probe, dir.path(), |r| matches!(r, Reading::Value(_)));
    assert!(
        matches!(writable, Reading::Value(ms) if ms >= 0.0),
        "{writable:?}"
    );

    let rule = parse_rule(
        "DATADISK",
        "write_latency > 2s samples 2 action=failover",
        3,
        Duration::from_secs(1),
        dir.path(),
    )
    .unwrap();
    let mut engine = RuleEngine::new(vec![rule]);
    let pass = |r: Reading| std::collections::HashMap::from([(Item::WriteLatency, r)]);
    assert!(engine.observe(&pass(writable)).is_empty());

    assert!(mount(&["-o", "remount,ro", dir.path().to_str().unwrap()]));
    let ro = poll_until_fresh(&mut probe, dir.path(), |r| matches!(r, Reading::Failed(_)));
    assert!(
        matches!(&ro, Reading::Failed(why) if why.contains("read-only file system")),
        "{ro:?}"
    );
    assert!(engine.observe(&pass(ro.clone())).is_empty());
    let verdicts = engine.observe(&pass(ro));
    assert!(
        matches!(&verdicts[..], [Verdict::Breached { value, .. }] if value.contains("read-only")),
        "{verdicts:?}"
    );
    // Writable again: the probe measures again.
    assert!(mount(&["-o", "remount,rw", dir.path().to_str().unwrap()]));
    let back = poll_until_fresh(&mut probe, dir.path(), |r| matches!(r, Reading::Value(_)));
    assert!(matches!(back, Reading::Value(_)));
}
