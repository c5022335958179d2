//! Visible skips for tests that need a program or a privilege this machine lacks.
//!
//! `cargo test` captures what a passing test prints with `println!`/`eprintln!`, so a
//! skipped test would show a bare `ok`. `skip` writes straight to the process's stderr
//! (not through the capturing macros), so the reason shows in the default output. Under
//! CI (`CI=true`) every dependency is installed by `.ci/run`, so a skip there is a
//! failure: the test panics with the reason instead.

use std::io::Write;

/// Reports that `test` cannot run here because of `reason`. Returns normally on a
/// developer machine (the caller then returns); panics when `CI=true`.
pub fn skip(test: &str, reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} cannot run under CI: {reason}");
    }
    // Not eprintln!: libtest captures that for passing tests.
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {reason}");
}
