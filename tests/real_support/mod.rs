//! Shared part of the real-server tests (tests/real_nginx.rs, tests/real_postgresql.rs):
//! finding the server's programs (a visible skip when they are missing, a failure under
//! CI), reading a shipped example from packaging/examples verbatim with its per-run
//! placeholders substituted, and scanning the WHOLE process table — not only the pids
//! the controller knew — to prove that no process of a killed tree survives.
//!
//! A process "belongs to this test's server" when its executable is the server's program
//! and its working directory is inside the test's tempdir (nginx runs in the controller's
//! data directory, PostgreSQL in its data directory there). Neither can be found by an
//! environment marker: both write their process title over their environment block.

// Each test binary uses a different subset.
#![allow(dead_code)]

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::common::Harness;

/// One live process of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    /// Start time in clock ticks since boot: (pid, start) names a process even if the
    /// pid is reused later.
    pub start: u64,
    pub exe: PathBuf,
    pub cwd: PathBuf,
    pub cmdline: String,
}

impl Proc {
    pub fn id(&self) -> (i32, u64) {
        (self.pid, self.start)
    }
}

/// Every live (not zombie) process on the machine that we may inspect.
pub fn process_table() -> Vec<Proc> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After ')': state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime stime cutime cstime priority nice threads itrealvalue starttime ...
        if fields.len() < 20 || fields[0] == "Z" || fields[0] == "X" {
            continue;
        }
        let (Ok(ppid), Ok(pgid), Ok(start)) = (
            fields[1].parse::<i32>(),
            fields[2].parse::<i32>(),
            fields[19].parse::<u64>(),
        ) else {
            continue;
        };
        out.push(Proc {
            pid,
            ppid,
            pgid,
            start,
            exe: fs::read_link(entry.path().join("exe")).unwrap_or_default(),
            cwd: fs::read_link(entry.path().join("cwd")).unwrap_or_default(),
            cmdline: crate::common::cmdline(pid),
        });
    }
    out
}

/// The processes running `exe` with their working directory in `dir` (or below it).
pub fn server_processes(exe: &Path, dir: &Path) -> Vec<Proc> {
    process_table()
        .into_iter()
        .filter(|p| p.exe == exe && p.cwd.starts_with(dir))
        .collect()
}

/// `root` and its descendants in `table`.
pub fn tree_in(table: &[Proc], root: i32) -> Vec<Proc> {
    let mut out: Vec<Proc> = table.iter().filter(|p| p.pid == root).cloned().collect();
    let mut i = 0;
    while i < out.len() {
        let parent = out[i].pid;
        out.extend(table.iter().filter(|p| p.ppid == parent).cloned());
        i += 1;
    }
    out
}

/// What a server's tree looked like before a kill: checked against the whole table
/// afterwards.
#[derive(Debug, Clone)]
pub struct OldTree {
    pub procs: Vec<Proc>,
    /// The master's process group (the controller puts the server in a group of its own).
    pub pgid: i32,
}

impl OldTree {
    pub fn pids(&self) -> Vec<i32> {
        self.procs.iter().map(|p| p.pid).collect()
    }

    /// Live processes of the whole table that are this old tree: one of its (pid, start
    /// time) pairs, or anything at all still in its process group, or anything running
    /// `exe` in `dir` that is not a descendant of `current_master` (when one runs).
    pub fn survivors(&self, exe: &Path, dir: &Path, current_master: Option<i32>) -> Vec<Proc> {
        let table = process_table();
        let old: HashSet<(i32, u64)> = self.procs.iter().map(Proc::id).collect();
        let current: HashSet<i32> = current_master
            .map(|m| tree_in(&table, m).iter().map(|p| p.pid).collect())
            .unwrap_or_default();
        table
            .into_iter()
            .filter(|p| {
                old.contains(&p.id())
                    || p.pgid == self.pgid
                    || (p.exe == exe && p.cwd.starts_with(dir) && !current.contains(&p.pid))
            })
            .collect()
    }
}

/// Panics with the survivors and the controller's log when any process of `old` is alive.
pub fn assert_old_tree_gone(
    h: &Harness,
    old: &OldTree,
    exe: &Path,
    current_master: Option<i32>,
    when: &str,
) {
    let survivors = old.survivors(exe, h.data(), current_master);
    assert!(
        survivors.is_empty(),
        "{when}: processes of the old tree {:?} (group {}) are still running: {survivors:#?}\n{}",
        old.pids(),
        old.pgid,
        h.dump()
    );
}

/// Absolute path of `program` when it is installed (PATH, then the sbin directories a
/// non-login PATH may lack, then `extra` directories).
pub fn find_program(program: &str, extra: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Whether this process runs as root (the servers' own user switches need it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// An example from packaging/examples, read verbatim.
pub fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging/examples")
        .join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Replaces each `from` by `to` in an example, failing loudly when the example no longer
/// contains `from` (the example and the test must not drift apart silently).
pub fn rewrite(example: &str, text: &str, replacements: &[(&str, &str)]) -> String {
    let mut out = text.to_string();
    for (from, to) in replacements {
        assert!(
            out.contains(from),
            "{example} no longer contains {from:?}; update the test with the example"
        );
        out = out.replace(from, to);
    }
    out
}

/// `logs summary --json` of the harness's data directory, parsed.
pub fn summary(h: &Harness) -> serde_json::Value {
    let mut cmd = h.command(crate::common::CONTROLLER);
    cmd.args(["logs", "summary"]).arg(h.data()).arg("--json");
    let out = crate::common::run_cli(cmd);
    assert_eq!(out.code, Some(0), "logs summary: {out:?}\n{}", h.dump());
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("logs summary --json is not JSON ({e}): {}", out.stdout))
}

/// The `logs summary --json` of a run with exactly one hang: one probe timeout, smart
/// killed and restarted, no crash, and its diagnostics file (`name`) named.
pub fn assert_one_hang_incident(s: &serde_json::Value, name: &str) {
    let c = &s["counts"];
    assert_eq!(c["probe_timeouts"], 1, "summary: {s:#}");
    assert_eq!(c["kills"], 1, "summary: {s:#}");
    assert_eq!(c["restarts"], 1, "summary: {s:#}");
    assert_eq!(c["crashes"], 0, "summary: {s:#}");
    let incidents = s["incidents"].as_array().expect("incidents");
    assert_eq!(incidents.len(), 1, "summary: {s:#}");
    assert_eq!(incidents[0]["kind"], "probe-timeout", "summary: {s:#}");
    assert_eq!(incidents[0]["outcome"], "ready", "summary: {s:#}");
    assert!(
        incidents[0]["diagnostics_file"]
            .as_str()
            .is_some_and(|f| f.ends_with(name)),
        "summary names {name}: {s:#}"
    );
}

/// The files in `DATA_DIRECTORY/diagnostics`, with their text.
pub fn diagnostics_files(h: &Harness) -> Vec<(String, String)> {
    let dir = h.data().join("diagnostics");
    let mut files: Vec<(String, String)> = fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        fs::read_to_string(e.path()).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The controller's console capture of the server (`qoscntrlr-console.log`).
pub fn console_log(h: &Harness) -> String {
    fs::read_to_string(h.data().join("qoscntrlr-console.log")).unwrap_or_default()
}

/// With `QOS_TEST_DUMP` set, prints the controller's log (for a human to read what a
/// passing test saw: `QOS_TEST_DUMP=1 cargo test --test real_nginx -- --nocapture`).
pub fn maybe_dump(h: &Harness) {
    if std::env::var_os("QOS_TEST_DUMP").is_some() {
        eprintln!("{}\n----- console -----\n{}", h.dump(), console_log(h));
    }
}
