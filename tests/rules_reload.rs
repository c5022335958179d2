//! A reload that changes the rules names each added, removed and changed rule in its
//! answer and in the log; a reload with the same rules written differently says nothing
//! changed.

mod common;

use common::Harness;

#[test]
fn reload_names_added_removed_and_changed_rules() {
    let mut h = Harness::demo(&[
        ("QOS_RULE_LEAK", "memory > 2GB average 30 action=alert"),
        ("QOS_RULE_LOAD", "load1 > 8 action=log"),
        ("QOS_RULE_THREADS", "threads > 500 action=log"),
    ]);
    h.start_ready();

    h.set_keys(&[
        ("QOS_RULE_LEAK", "memory > 2GB average 60 action=alert"),
        ("QOS_RULE_LOAD", ""),
        ("QOS_RULE_DISK", "disk_free:/ < 1MB action=log"),
        // The same rule written another way is no change.
        (
            "QOS_RULE_THREADS",
            "threads>500 samples 3 missing=ok action=log",
        ),
    ]);
    let out = h.cli("reload", &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    for expected in [
        "  rule QOS_RULE_LEAK changed: memory > 2048 MB average 30 missing=ok action=alert -> memory > 2048 MB average 60 missing=ok action=alert",
        "  rule QOS_RULE_DISK added: disk_free:/ < 1 MB samples 3 missing=ok action=log",
        "  rule QOS_RULE_LOAD removed (was: load1 > 8.00 samples 3 missing=ok action=log)",
    ] {
        assert!(out.stdout.contains(expected), "{expected}\n{out:?}");
    }
    assert!(!out.stdout.contains("QOS_RULE_THREADS"), "{out:?}");
    h.wait_for_containing("Reload: rule QOS_RULE_LEAK changed: ");
    h.wait_for_containing("Reload: rule QOS_RULE_DISK added: ");
    h.wait_for_containing("Reload: rule QOS_RULE_LOAD removed (was: ");
    h.wait_for("QoS Controller: Configuration reloaded");

    // Nothing else changed: a second reload says so.
    let out = h.cli("reload", &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("nothing changed"), "{out:?}");
    h.stop();
}
