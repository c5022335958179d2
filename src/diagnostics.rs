//! Diagnostics ("nsd"): one file per incident in `DATA_DIRECTORY/diagnostics/`, written
//! either by the operator's program (`QOS_NSD_PATH`, time-limited, its output saved) or
//! by the built-in collector (system facts, a `/proc` snapshot of every process of the
//! server's tree, thread stacks via gdb/eu-stack, the console tail). Also owns the
//! pruning of that folder (`QOS_DIAG_RETENTION_DAYS`, `QOS_DIAG_MAX_SIZE`).
//!
//! The `/proc` part runs on tokio's blocking pool: reading `/proc/<pid>/cmdline` (or
//! `fd/`, `task/`) of a process that holds its mm lock can block for a long time, and the
//! supervision loop must keep running meanwhile. Sections come back through a channel,
//! so a snapshot cut short by the time limit still keeps what was read.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Local};

use crate::process::{run_helper, Reaper};

/// Name of the folder under the data directory.
pub const DIAG_DIR_NAME: &str = "diagnostics";

/// Longest one thread-stack tool run may take, whatever budget is left: a gdb stuck on one
/// process must leave time for the others.
const STACK_TOOL_LIMIT: Duration = Duration::from_secs(60);

/// Lines of `/proc/meminfo` in the header (the totals that matter for a case).
const MEMINFO_HEAD_LINES: usize = 16;

/// What to collect, and where.
#[derive(Debug, Clone)]
pub struct DiagRequest {
    /// Short slug naming the incident (`probe-timeout`, `crash`, `operator`, `shutdown`);
    /// becomes part of the file name (unsafe characters replaced).
    pub reason: String,
    pub server_pid: Option<i32>,
    /// Every pid of the server's process tree to snapshot.
    pub tree: Vec<i32>,
    /// Last lines of the server's console log.
    pub console_tail: Vec<String>,
    pub data_dir: PathBuf,
    /// `QOS_NSD_PATH` split into program and arguments; `None`: built-in collector.
    pub nsd_path: Option<Vec<String>>,
    /// `QOS_NSD_TIMEOUT`: bound of the whole collection.
    pub limit: Duration,
    pub server_name: String,
}

/// How a collection went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagReport {
    /// The file written, `None` when it could not even be created.
    pub path: Option<PathBuf>,
    /// The file is complete: the external program exited 0, or the built-in collector
    /// finished every part within the limit.
    pub ok: bool,
    /// What went wrong, for the log line (`None` when `ok`).
    pub error: Option<String>,
    /// Every write to the file and its final fsync succeeded: the file holds what was
    /// collected. False on a full or failing disk; then the file (if any) is a fragment
    /// and must not be reported as written.
    pub written: bool,
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DiagError {
    #[error("cannot create diagnostics folder {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot create diagnostics file in {dir}: {source}")]
    CreateFile { dir: PathBuf, source: io::Error },
    #[error("cannot write diagnostics file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Collect diagnostics for `req` into a new file; never fails, the report says how it went.
pub async fn collect(req: DiagRequest, reaper: &Reaper, wall: DateTime<Local>) -> DiagReport {
    collect_with(req, None, reaper, wall).await
}

/// What a server that has ended left behind, read before it is killed
/// ([`capture_leftovers`]): the post-mortem's only part that cannot wait for the restart.
#[derive(Debug, Clone, Default)]
pub struct Leftovers {
    /// One `/proc` snapshot section per process (see [`snapshot_process`]).
    sections: Vec<String>,
    /// Processes of the tree, for the note when the capture was cut short.
    of: usize,
    /// Why the capture is incomplete (its time limit), if it is.
    cut_short: Option<String>,
    took: Duration,
}

/// Longest a crash's capture of the leftovers may hold up their kill and the restart: the
/// `/proc` reads normally take milliseconds, but a process holding its memory map lock
/// (stuck in uninterruptible sleep) can block them.
pub const LEFTOVERS_CAPTURE_LIMIT: Duration = Duration::from_secs(1);

/// The `/proc` snapshot of every process a server that has ended left behind (orphaned
/// workers, backends, its process group), into memory, on the blocking pool, for at most
/// `limit`. Quick by design: it is what a crash's post-mortem must read before the
/// leftovers are killed and the server restarted; everything else of the post-mortem
/// (writing the file, its fsync, `QOS_NSD_PATH`) runs after the restart has begun, in
/// [`collect_post_mortem`].
pub async fn capture_leftovers(tree: &[i32], limit: Duration) -> Leftovers {
    let started = Instant::now();
    let deadline = started + limit;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let pids = tree.to_vec();
    let _snapshot = tokio::task::spawn_blocking(move || {
        for pid in pids {
            if tx.send(snapshot_process(pid)).is_err() {
                break; // the capture gave up waiting
            }
        }
    });
    let mut captured = Leftovers {
        of: tree.len(),
        ..Leftovers::default()
    };
    loop {
        match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
            Ok(Some(section)) => captured.sections.push(section),
            Ok(None) => break,
            Err(_) => {
                captured.cut_short = Some(format!(
                    "process snapshot cut short after {} ms with {} of {} processes read",
                    limit.as_millis(),
                    captured.sections.len(),
                    tree.len()
                ));
                break;
            }
        }
    }
    captured.took = started.elapsed();
    captured
}

/// The post-mortem of a server that has ended, written after its leftovers were captured
/// (`leftovers`) and killed: the file holds the identity and system facts, the snapshot
/// taken before the kill, then the output of `QOS_NSD_PATH` when one is configured (run
/// now, under its time limit) and the console tail. No thread stacks are taken: the
/// processes they would come from are gone, and a dead server's restart never waits for
/// a debugger.
pub async fn collect_post_mortem(
    req: DiagRequest,
    leftovers: Leftovers,
    reaper: &Reaper,
    wall: DateTime<Local>,
) -> DiagReport {
    collect_with(req, Some(leftovers), reaper, wall).await
}

async fn collect_with(
    req: DiagRequest,
    leftovers: Option<Leftovers>,
    reaper: &Reaper,
    wall: DateTime<Local>,
) -> DiagReport {
    let started = Instant::now();
    let dir = req.data_dir.join(DIAG_DIR_NAME);
    let (path, file) = match create_diag_file(&dir, &req.reason, wall) {
        Ok(created) => created,
        Err(e) => {
            return DiagReport {
                path: None,
                ok: false,
                error: Some(e.to_string()),
                written: false,
                duration: started.elapsed(),
            }
        }
    };
    let deadline = started + req.limit;
    let mut out = DiagFile {
        path,
        file,
        write_error: None,
    };
    let result = match (&req.nsd_path, leftovers) {
        (Some(argv), leftovers) if !argv.is_empty() => {
            run_external(&req, argv, leftovers, reaper, wall, &mut out).await
        }
        (_, Some(leftovers)) => write_post_mortem(&req, leftovers, wall, &mut out),
        (_, None) => run_builtin(&req, reaper, wall, deadline, &mut out).await,
    };
    let (ok, mut error) = match result {
        Ok(Completion::Complete) => (true, None),
        Ok(Completion::Incomplete(why)) => (false, Some(why)),
        Err(e) => (false, Some(e.to_string())),
    };
    let duration = started.elapsed();
    let _ = out.write(&format!(
        "\n=== collection {} after {} ms ===\n",
        if ok { "finished" } else { "incomplete" },
        duration.as_millis()
    ));
    // Only a file whose every write and final fsync succeeded is reported as written: a
    // full disk fails some writes (or only the fsync, with delayed allocation).
    if out.write_error.is_none() {
        if let Err(source) = out.file.sync_all() {
            out.write_error = Some(DiagError::Write {
                path: out.path.clone(),
                source,
            });
        }
    }
    let written = out.write_error.is_none();
    if let Some(e) = out.write_error.take() {
        // The write error is the outcome that matters; what was collected is moot.
        error = Some(format!("{e} (a partial file is left there)"));
    }
    DiagReport {
        path: Some(out.path),
        ok: ok && written,
        error,
        written,
        duration,
    }
}

enum Completion {
    Complete,
    Incomplete(String),
}

/// The open diagnostics file, opened in append mode so that the output of helper
/// programs (which share it as stdout/stderr) and our own sections never overwrite.
struct DiagFile {
    path: PathBuf,
    file: File,
    /// The first write that failed (kept even when the caller carries on).
    write_error: Option<DiagError>,
}

impl DiagFile {
    fn write(&mut self, text: &str) -> Result<(), DiagError> {
        self.file.write_all(text.as_bytes()).map_err(|source| {
            let kind = source.kind();
            let message = source.to_string();
            self.write_error.get_or_insert(DiagError::Write {
                path: self.path.clone(),
                source,
            });
            DiagError::Write {
                path: self.path.clone(),
                source: io::Error::new(kind, message),
            }
        })
    }

    /// A descriptor for a child's stdout and stderr.
    fn child_output(&self) -> Result<(Stdio, Stdio), DiagError> {
        let clone = || {
            self.file.try_clone().map_err(|source| DiagError::Write {
                path: self.path.clone(),
                source,
            })
        };
        Ok((Stdio::from(clone()?), Stdio::from(clone()?)))
    }
}

/// Reduce a reason to characters safe in a file name.
pub fn reason_slug(reason: &str) -> String {
    let slug: String = reason
        .chars()
        .take(40)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let slug = slug.trim_matches(|c| c == '-' || c == '.').to_string();
    if slug.is_empty() {
        "unknown".to_string()
    } else {
        slug
    }
}

/// `nsd_<YYYYMMDD_HHMMSS>_<reason>.log`, or with `_2`, `_3`… before `.log` when that name
/// is taken (two incidents in one second). Created exclusively, mode 0640.
fn create_diag_file(
    dir: &Path,
    reason: &str,
    wall: DateTime<Local>,
) -> Result<(PathBuf, File), DiagError> {
    // A real directory only: a `diagnostics` link planted in the data directory is not
    // followed, and files are created through the directory's own descriptor (openat),
    // exclusively and without following a link at the file name either.
    let folder = crate::safefs::Dir::ensure(dir, 0o750).map_err(|source| DiagError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let stem = format!(
        "nsd_{}_{}",
        wall.format("%Y%m%d_%H%M%S"),
        reason_slug(reason)
    );
    let mut n = 1u32;
    loop {
        let name = if n == 1 {
            format!("{stem}.log")
        } else {
            format!("{stem}_{n}.log")
        };
        match folder.create_new(&name, 0o640) {
            Ok(file) => return Ok((dir.join(name), file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
            Err(source) => {
                return Err(DiagError::CreateFile {
                    dir: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

fn helper_env(cmd: &mut Command) {
    // Helpers must not talk to systemd in the controller's name, nor reach the network
    // for debug symbols.
    cmd.env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .env("DEBUGINFOD_URLS", "");
}

async fn run_external(
    req: &DiagRequest,
    argv: &[String],
    leftovers: Option<Leftovers>,
    reaper: &Reaper,
    wall: DateTime<Local>,
    out: &mut DiagFile,
) -> Result<Completion, DiagError> {
    let mut header = String::new();
    write_identity(&mut header, req, wall);
    let _ = writeln!(header, "Program:    {}", shell_words::join(argv));
    out.write(&header)?;
    // A post-mortem: what the dead server left, as it was before the kill; the program
    // runs after it (the processes of QOS_TREE_PIDS are gone by then).
    let cut_short = match leftovers {
        Some(leftovers) => write_leftovers(leftovers, out)?,
        None => None,
    };
    out.write("\n=== nsd output ===\n")?;

    let mut cmd = Command::new(&argv[0]);
    // An nsd still running when the controller is SIGKILLed is killed by the next start.
    crate::process::mark_tree(&mut cmd, &req.data_dir);
    cmd.args(&argv[1..])
        .current_dir(&req.data_dir)
        .env("QOS_REASON", &req.reason)
        .env("QOS_SERVER_NAME", &req.server_name)
        .env("QOS_DIAG_FILE", &out.path)
        .env("QOS_TREE_PIDS", join_pids(&req.tree));
    match req.server_pid {
        Some(pid) => cmd.env("QOS_SERVER_PID", pid.to_string()),
        None => cmd.env_remove("QOS_SERVER_PID"),
    };
    helper_env(&mut cmd);
    let (stdout, stderr) = out.child_output()?;
    cmd.stdout(stdout).stderr(stderr);

    let started = Instant::now();
    let outcome = run_helper(reaper, cmd, req.limit).await;
    // `cmd` (and its copies of the file descriptor) is gone once run_helper returns.
    let took = started.elapsed();
    let (footer, completion) = match outcome {
        Ok(o) => match o.exit {
            Some(exit) if exit.success() => (
                format!("=== nsd ended: {exit} after {} ms ===\n", took.as_millis()),
                Completion::Complete,
            ),
            Some(exit) => (
                format!("=== nsd ended: {exit} after {} ms ===\n", took.as_millis()),
                Completion::Incomplete(format!("nsd program ended with {exit}")),
            ),
            None => (
                format!(
                    "=== nsd timed out after {} (QOS_NSD_TIMEOUT) and was killed ===\n",
                    crate::core::units::format_duration(
                        req.limit,
                        crate::core::units::DurationStyle::Seconds
                    )
                ),
                Completion::Incomplete(format!(
                    "nsd program timed out after {} and was killed",
                    crate::core::units::format_duration(
                        req.limit,
                        crate::core::units::DurationStyle::Seconds
                    )
                )),
            ),
        },
        Err(e) => (
            format!("=== nsd could not be started: {e} ===\n"),
            Completion::Incomplete(format!("nsd program could not be started: {e}")),
        ),
    };
    out.write(&format!("\n{footer}"))?;
    Ok(match (completion, cut_short) {
        (Completion::Complete, Some(why)) => Completion::Incomplete(why),
        (Completion::Incomplete(why), Some(more)) => {
            Completion::Incomplete(format!("{why}; {more}"))
        }
        (completion, None) => completion,
    })
}

/// The snapshot sections of a crash's leftovers; returns the note when it was cut short.
fn write_leftovers(leftovers: Leftovers, out: &mut DiagFile) -> Result<Option<String>, DiagError> {
    out.write(&format!(
        "\n=== the server had ended: snapshot of the {} process(es) it left, taken in {} ms before they were killed ===\n",
        leftovers.of,
        leftovers.took.as_millis()
    ))?;
    for section in &leftovers.sections {
        out.write(section)?;
    }
    if let Some(why) = &leftovers.cut_short {
        out.write(&format!("\n=== {why} ===\n"))?;
    }
    Ok(leftovers.cut_short)
}

/// The built-in post-mortem: identity, system facts, the leftovers' snapshot, a note on
/// stacks, the console tail.
fn write_post_mortem(
    req: &DiagRequest,
    leftovers: Leftovers,
    wall: DateTime<Local>,
    out: &mut DiagFile,
) -> Result<Completion, DiagError> {
    let mut header = String::new();
    write_identity(&mut header, req, wall);
    header.push_str(&system_facts());
    out.write(&header)?;
    let cut_short = write_leftovers(leftovers, out)?;
    out.write(
        "\n=== thread stacks: not taken (the server process had ended; what it left was killed at once so that its restart does not wait for a debugger) ===\n",
    )?;
    write_console_tail(req, out)?;
    Ok(match cut_short {
        Some(why) => Completion::Incomplete(why),
        None => Completion::Complete,
    })
}

fn write_console_tail(req: &DiagRequest, out: &mut DiagFile) -> Result<(), DiagError> {
    let mut tail = format!(
        "\n=== console tail ({} lines) ===\n",
        req.console_tail.len()
    );
    for line in &req.console_tail {
        tail.push_str(line);
        tail.push('\n');
    }
    out.write(&tail)
}

/// Server name, pid, reason and time: the first lines of every diagnostics file.
fn write_identity(s: &mut String, req: &DiagRequest, wall: DateTime<Local>) {
    s.push_str("qoscntrlr diagnostics (nsd)\n");
    let _ = writeln!(s, "Server:     {}", req.server_name);
    let _ = writeln!(
        s,
        "Server pid: {}",
        req.server_pid
            .map(|p| p.to_string())
            .unwrap_or_else(|| "none".into())
    );
    let _ = writeln!(s, "Reason:     {}", req.reason);
    let _ = writeln!(s, "Time:       {}", wall.format("%Y/%m/%d %H:%M:%S %z"));
    let _ = writeln!(s, "Tree:       {}", join_pids(&req.tree));
}

fn join_pids(pids: &[i32]) -> String {
    pids.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

async fn run_builtin(
    req: &DiagRequest,
    reaper: &Reaper,
    wall: DateTime<Local>,
    deadline: Instant,
    out: &mut DiagFile,
) -> Result<Completion, DiagError> {
    let mut header = String::new();
    write_identity(&mut header, req, wall);
    // System facts come from files that never block; read them here.
    header.push_str(&system_facts());
    out.write(&header)?;

    let mut pids = req.tree.clone();
    if pids.is_empty() {
        pids.extend(req.server_pid);
    }
    let mut seen = std::collections::HashSet::new();
    pids.retain(|p| seen.insert(*p));

    let mut incomplete: Vec<String> = Vec::new();

    // Stacks of the main process and the busiest few, chosen now (CPU time so far), and
    // the /proc snapshot of every process, all at once under the one deadline: a
    // 200-process tree no longer means 200 gdb runs one after the other.
    let tool = stack_tool();
    let targets = stack_targets(req.server_pid, &pids, STACK_BUSIEST);
    let stack_limit = deadline
        .saturating_duration_since(Instant::now())
        .min(STACK_TOOL_LIMIT);
    let stacks = async {
        match &tool {
            Some(tool) if !stack_limit.is_zero() => Some(
                join_all(
                    targets
                        .iter()
                        .map(|&pid| capture_stacks(tool, &req.data_dir, pid, stack_limit, reaper))
                        .collect(),
                )
                .await,
            ),
            _ => None,
        }
    };

    // /proc snapshot on the blocking pool, sections streamed back into the file.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let snapshot_pids = pids.clone();
    let _snapshot = tokio::task::spawn_blocking(move || {
        for pid in snapshot_pids {
            if tx.send(snapshot_process(pid)).is_err() {
                break; // the collector gave up waiting
            }
        }
    });
    let snapshot = async {
        let mut received = 0usize;
        loop {
            match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                Ok(Some(section)) => {
                    received += 1;
                    out.write(&section)?;
                }
                Ok(None) => return Ok::<_, DiagError>(None),
                Err(_) => {
                    let msg = format!(
                        "process snapshot cut short by the time limit after {received} of {} processes",
                        pids.len()
                    );
                    out.write(&format!("\n=== {msg} ===\n"))?;
                    return Ok(Some(msg));
                }
            }
        }
    };
    let (snapshot, stacks) = tokio::join!(snapshot, stacks);
    // Dropping `rx` tells a still-running snapshot task to stop at its next section.
    drop(rx);
    if let Some(msg) = snapshot? {
        incomplete.push(msg);
    }

    match (&tool, stacks) {
        (None, _) => {
            out.write("\n=== thread stacks: neither gdb nor eu-stack is installed ===\n")?
        }
        (Some(_), None) => {
            let msg = "thread stacks skipped: time limit reached".to_string();
            out.write(&format!("\n=== {msg} ===\n"))?;
            incomplete.push(msg);
        }
        (Some(tool), Some(captures)) => {
            for capture in captures {
                if let Some(msg) = capture.write_to(tool, out)? {
                    incomplete.push(msg);
                }
            }
            let others = pids.len().saturating_sub(targets.len());
            if others > 0 {
                out.write(&format!(
                    "\n=== thread stacks: {others} other process(es) not traced (stacks of the main process and the {STACK_BUSIEST} busiest only; every process has its /proc snapshot above) ===\n"
                ))?;
            }
        }
    }

    write_console_tail(req, out)?;

    Ok(if incomplete.is_empty() {
        Completion::Complete
    } else {
        Completion::Incomplete(incomplete.join("; "))
    })
}

/// A program that prints every thread's stack of a running process.
#[derive(Debug, Clone)]
struct StackTool {
    program: PathBuf,
    kind: StackToolKind,
}

#[derive(Debug, Clone, Copy)]
enum StackToolKind {
    Gdb,
    EuStack,
}

/// gdb is preferred (it is what support asks for, with arguments and symbols); eu-stack
/// is the lighter fallback.
fn stack_tool() -> Option<StackTool> {
    find_in_path("gdb")
        .map(|program| StackTool {
            program,
            kind: StackToolKind::Gdb,
        })
        .or_else(|| {
            find_in_path("eu-stack").map(|program| StackTool {
                program,
                kind: StackToolKind::EuStack,
            })
        })
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            fs::metadata(candidate)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Processes besides the main one whose stacks are taken: the busiest by CPU time.
const STACK_BUSIEST: usize = 4;
/// Output kept of one stack tool run (a process with thousands of threads can print
/// megabytes; the snapshot has the rest).
const STACK_OUTPUT_MAX: u64 = 4 * 1024 * 1024;

/// The main process (the server), then the `busiest` others of `pids` by CPU time used
/// so far (utime + stime); without a main process, the busiest `busiest + 1`.
fn stack_targets(main: Option<i32>, pids: &[i32], busiest: usize) -> Vec<i32> {
    let mut targets: Vec<i32> = main
        .filter(|m| pids.contains(m) || pids.is_empty())
        .into_iter()
        .collect();
    let wanted = busiest + usize::from(targets.is_empty());
    let mut others: Vec<(u64, i32)> = pids
        .iter()
        .filter(|p| Some(**p) != main)
        .filter_map(|&pid| cpu_ticks(pid).map(|t| (t, pid)))
        .collect();
    // Busiest first; the lower pid (older) breaks ties.
    others.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    targets.extend(others.into_iter().take(wanted).map(|(_, pid)| pid));
    targets
}

/// utime + stime of `pid` in clock ticks (fields 14 and 15 of `/proc/<pid>/stat`).
fn cpu_ticks(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Poll every future of `futures` together (on this task) until all are done; outputs
/// in the order given. The stack tools run as processes, so this is where they overlap.
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    use std::task::Poll;
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    // Invariant: poll_fn returned Ready only once every output was filled.
    outputs.into_iter().flatten().collect()
}

/// One stack tool run, its output kept in memory until the file is written in order.
struct StackCapture {
    pid: i32,
    output: Vec<u8>,
    took: Duration,
    /// How it ended: `Ok(Some(exit))`, `Ok(None)` timed out, `Err` not started.
    end: Result<Option<crate::process::ExitInfo>, String>,
    limit: Duration,
}

impl StackCapture {
    /// Append the section to the diagnostics file; returns a note when the run did not
    /// finish.
    fn write_to(self, tool: &StackTool, out: &mut DiagFile) -> Result<Option<String>, DiagError> {
        let pid = self.pid;
        out.write(&format!(
            "\n=== thread stacks of pid {pid} ({}) ===\n",
            tool.program.display()
        ))?;
        out.write(&String::from_utf8_lossy(&self.output))?;
        match self.end {
            Ok(Some(exit)) => {
                out.write(&format!(
                    "--- stack tool ended: {exit} after {} ms ---\n",
                    self.took.as_millis()
                ))?;
                Ok(None)
            }
            Ok(None) => {
                let msg = format!(
                    "stack tool on pid {pid} timed out after {} and was killed",
                    crate::core::units::format_duration(
                        self.limit,
                        crate::core::units::DurationStyle::Seconds
                    )
                );
                out.write(&format!("--- {msg} ---\n"))?;
                Ok(Some(msg))
            }
            Err(e) => {
                out.write(&format!("--- {e} ---\n"))?;
                Ok(Some(e))
            }
        }
    }
}

/// Run the stack tool on `pid` for at most `limit`, its output into an anonymous memory
/// file (tools run side by side, so they cannot share the diagnostics file).
async fn capture_stacks(
    tool: &StackTool,
    data_dir: &Path,
    pid: i32,
    limit: Duration,
    reaper: &Reaper,
) -> StackCapture {
    let started = Instant::now();
    let capture =
        |end: Result<Option<crate::process::ExitInfo>, String>, output: Vec<u8>| StackCapture {
            pid,
            output,
            took: started.elapsed(),
            end,
            limit,
        };
    let buffer = match memory_file() {
        Ok(file) => file,
        Err(e) => {
            return capture(
                Err(format!("no buffer for the stack tool: {e}")),
                Vec::new(),
            )
        }
    };
    let (stdout, stderr) = match (buffer.try_clone(), buffer.try_clone()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            return capture(
                Err(format!("no buffer for the stack tool: {e}")),
                Vec::new(),
            )
        }
    };
    let mut cmd = Command::new(&tool.program);
    // A tool still running when the controller is SIGKILLed is killed by the next start.
    crate::process::mark_tree(&mut cmd, data_dir);
    match tool.kind {
        StackToolKind::Gdb => cmd.args(["-nx", "-batch", "-p", &pid.to_string()]).args([
            "-ex",
            "set pagination off",
            "-ex",
            "thread apply all bt",
        ]),
        StackToolKind::EuStack => cmd.args(["-p", &pid.to_string()]),
    };
    helper_env(&mut cmd);
    cmd.stdout(stdout).stderr(stderr);
    let end = match run_helper(reaper, cmd, limit).await {
        Ok(o) => {
            if o.exit.is_none() {
                // A tracer killed mid-attach can leave its target stopped; let it run on.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGCONT,
                );
            }
            Ok(o.exit)
        }
        Err(e) => Err(e.to_string()),
    };
    let mut output = Vec::new();
    {
        use std::io::{Read, Seek};
        let mut buffer = buffer;
        if buffer.rewind().is_ok() {
            let _ = buffer.take(STACK_OUTPUT_MAX).read_to_end(&mut output);
        }
    }
    capture(end, output)
}

/// An anonymous file in memory (`memfd_create`), close-on-exec (the child gets its own
/// descriptor through stdout/stderr).
fn memory_file() -> io::Result<File> {
    use std::os::fd::FromRawFd;
    // SAFETY: memfd_create with a NUL-terminated name; the descriptor it returns is owned
    // by the File from here on and by nothing else.
    let fd = unsafe { libc::memfd_create(c"qoscntrlr-stacks".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor from memfd_create above.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Kernel, uptime, load, core pattern and the head of `/proc/meminfo`.
fn system_facts() -> String {
    let mut s = String::new();
    match nix::sys::utsname::uname() {
        Ok(u) => {
            let _ = writeln!(s, "Host:       {}", u.nodename().to_string_lossy());
            let _ = writeln!(
                s,
                "Kernel:     {} {} {} {}",
                u.sysname().to_string_lossy(),
                u.release().to_string_lossy(),
                u.version().to_string_lossy(),
                u.machine().to_string_lossy()
            );
        }
        Err(e) => {
            let _ = writeln!(s, "Kernel:     (uname failed: {e})");
        }
    }
    let first_line = |path: &str| -> String {
        match fs::read(path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes)
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
            Err(e) => format!("(not readable: {e})"),
        }
    };
    let uptime = first_line("/proc/uptime");
    let uptime_secs = uptime
        .split_whitespace()
        .next()
        .and_then(|v| v.parse::<f64>().ok());
    match uptime_secs {
        Some(secs) => {
            let secs = secs as u64;
            let _ = writeln!(
                s,
                "Uptime:     {}d {:02}:{:02}:{:02} ({uptime})",
                secs / 86400,
                secs / 3600 % 24,
                secs / 60 % 60,
                secs % 60
            );
        }
        None => {
            let _ = writeln!(s, "Uptime:     {uptime}");
        }
    }
    let _ = writeln!(s, "Loadavg:    {}", first_line("/proc/loadavg"));
    let _ = writeln!(
        s,
        "Core pattern: {}",
        first_line("/proc/sys/kernel/core_pattern")
    );
    s.push_str("\n=== /proc/meminfo (head) ===\n");
    match fs::read("/proc/meminfo") {
        Ok(bytes) => {
            for line in String::from_utf8_lossy(&bytes)
                .lines()
                .take(MEMINFO_HEAD_LINES)
            {
                s.push_str(line);
                s.push('\n');
            }
        }
        Err(e) => {
            let _ = writeln!(s, "(not readable: {e})");
        }
    }
    s
}

/// A `/proc` file as text, or a note saying why it could not be read. `/proc` files
/// report size 0, so they are read whole rather than by their length.
fn proc_text(path: &Path) -> Result<String, String> {
    match fs::read(path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err("(gone)".into()),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Err("(gone)".into()),
        Err(e) => Err(format!("(not readable: {e})")),
    }
}

/// Everything `/proc` tells about one process: cmdline, status, wchan, kernel stack,
/// limits, open descriptors, and each thread's state and wait channel (with the kernel
/// stack of threads in uninterruptible sleep, where hangs show). Blocking; call it off
/// the supervision loop.
pub fn snapshot_process(pid: i32) -> String {
    let base = PathBuf::from(format!("/proc/{pid}"));
    let mut s = format!("\n=== process {pid} ===\n");
    if !base.exists() {
        s.push_str("(gone: no such process)\n");
        return s;
    }
    let section = |s: &mut String, title: &str, file: &str| {
        let _ = writeln!(s, "--- {title} ---");
        match proc_text(&base.join(file)) {
            Ok(text) => {
                let text = if file == "cmdline" {
                    text.replace('\0', " ").trim_end().to_string()
                } else {
                    text
                };
                s.push_str(text.trim_end_matches('\n'));
                s.push('\n');
            }
            Err(note) => {
                s.push_str(&note);
                s.push('\n');
            }
        }
    };
    section(&mut s, "cmdline", "cmdline");
    section(&mut s, "status", "status");
    section(&mut s, "wchan", "wchan");
    section(&mut s, "stack", "stack");
    section(&mut s, "limits", "limits");

    match fs::read_dir(base.join("fd")) {
        Ok(entries) => {
            let _ = writeln!(s, "--- fd count: {} ---", entries.count());
        }
        Err(e) => {
            let _ = writeln!(s, "--- fd count: (not readable: {e}) ---");
        }
    }

    let mut tids: Vec<i32> = match fs::read_dir(base.join("task")) {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(e) => {
            let _ = writeln!(s, "--- threads: (not readable: {e}) ---");
            return s;
        }
    };
    tids.sort_unstable();
    let _ = writeln!(s, "--- threads ({}) ---", tids.len());
    let _ = writeln!(s, "{:>8} {:5} {:24} COMM", "TID", "STATE", "WCHAN");
    let mut blocked = Vec::new();
    for tid in tids {
        let task = base.join("task").join(tid.to_string());
        let stat = proc_text(&task.join("stat")).ok();
        let (comm, state) = stat
            .as_deref()
            .and_then(parse_stat_comm_state)
            .map(|(c, st)| (c.to_string(), st))
            .unwrap_or_else(|| ("?".into(), '?'));
        let wchan = proc_text(&task.join("wchan")).unwrap_or_else(|note| note);
        let wchan = if wchan.is_empty() { "-".into() } else { wchan };
        let _ = writeln!(s, "{tid:>8} {state:5} {:24} {comm}", wchan.trim());
        if state == 'D' {
            blocked.push((tid, task));
        }
    }
    for (tid, task) in blocked {
        let _ = writeln!(s, "--- kernel stack of thread {tid} (uninterruptible) ---");
        match proc_text(&task.join("stack")) {
            Ok(text) => s.push_str(&text),
            Err(note) => {
                s.push_str(&note);
                s.push('\n');
            }
        }
    }
    s
}

/// `comm` and state from a `/proc/<pid>/stat` line. The name is in parentheses and may
/// itself contain spaces and parentheses, so the last `)` ends it.
pub fn parse_stat_comm_state(stat: &str) -> Option<(&str, char)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    if close < open {
        return None;
    }
    let comm = &stat[open + 1..close];
    let state = stat[close + 1..].trim_start().chars().next()?;
    Some((comm, state))
}

/// What [`prune`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub deleted: Vec<PathBuf>,
    /// Total size of the `nsd_*.log` files left.
    pub kept_bytes: u64,
    /// Files that could not be examined or deleted, with the reason.
    pub errors: Vec<String>,
}

/// Whether `name` is one of ours: `nsd_*.log`.
pub fn is_diag_file_name(name: &str) -> bool {
    name.len() > "nsd_.log".len() && name.starts_with("nsd_") && name.ends_with(".log")
}

/// Delete `nsd_*.log` regular files in `dir` last modified more than `retention_days`
/// ago, then the oldest ones until the rest total at most `max_total_bytes`. Zero turns a
/// rule off. Other files and symlinks are never touched, and the newest file is never
/// deleted for size: it holds the incident being handled.
pub fn prune(dir: &Path, retention_days: u32, max_total_bytes: u64) -> PruneReport {
    prune_at(dir, retention_days, max_total_bytes, SystemTime::now())
}

/// [`prune`] with the current time given.
pub fn prune_at(
    dir: &Path,
    retention_days: u32,
    max_total_bytes: u64,
    now: SystemTime,
) -> PruneReport {
    let mut report = PruneReport::default();
    // Never through a link: a planted `diagnostics -> /var/lib/other` would otherwise
    // have its nsd_*.log files deleted.
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() => {
            report.errors.push(format!(
                "{}: is a symbolic link; not followed (planted links in the data directory are refused)",
                dir.display()
            ));
            return report;
        }
        _ => {}
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return report,
        Err(e) => {
            report.errors.push(format!("{}: {e}", dir.display()));
            return report;
        }
    };
    let mut files: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                report.errors.push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        let name = entry.file_name();
        if !name.to_str().is_some_and(is_diag_file_name) {
            continue;
        }
        let path = entry.path();
        // symlink_metadata: a symlink is seen as a symlink and skipped, never followed.
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_file() => {
                let modified = meta.modified().unwrap_or(now);
                files.push((modified, meta.len(), path));
            }
            Ok(_) => {}
            Err(e) => report.errors.push(format!("{}: {e}", path.display())),
        }
    }
    // Oldest first; the name breaks ties (it carries the timestamp).
    files.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.2.cmp(&b.2)));

    let delete = |path: &Path, report: &mut PruneReport| -> bool {
        match fs::remove_file(path) {
            Ok(()) => {
                report.deleted.push(path.to_path_buf());
                true
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => {
                report.errors.push(format!("{}: {e}", path.display()));
                false
            }
        }
    };

    let mut kept: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
    let max_age = Duration::from_secs(u64::from(retention_days) * 86_400);
    for file in files {
        let age = now.duration_since(file.0).unwrap_or(Duration::ZERO);
        if retention_days > 0 && age > max_age && delete(&file.2, &mut report) {
            continue;
        }
        kept.push(file);
    }

    let mut total: u64 = kept.iter().map(|f| f.1).sum();
    if max_total_bytes > 0 {
        let newest = kept.len().saturating_sub(1);
        let mut survivors = Vec::new();
        for (i, file) in kept.into_iter().enumerate() {
            if total > max_total_bytes && i < newest && delete(&file.2, &mut report) {
                total -= file.1;
                continue;
            }
            survivors.push(file);
        }
        kept = survivors;
    }
    report.kept_bytes = kept.iter().map(|f| f.1).sum();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_comm_may_hold_spaces_and_parentheses() {
        let line = "1234 (my (odd) name) S 1 1234 1234 0 -1";
        assert_eq!(parse_stat_comm_state(line), Some(("my (odd) name", 'S')));
        assert_eq!(parse_stat_comm_state("garbage"), None);
        assert_eq!(parse_stat_comm_state("1 )x( R"), None);
    }

    #[test]
    fn reason_slug_keeps_file_names_safe() {
        assert_eq!(reason_slug("probe-timeout"), "probe-timeout");
        assert_eq!(reason_slug("../../etc/passwd"), "etc-passwd");
        assert_eq!(reason_slug("a b/c"), "a-b-c");
        assert_eq!(reason_slug(""), "unknown");
        assert_eq!(reason_slug("x".repeat(100).as_str()).len(), 40);
    }

    #[test]
    fn only_nsd_logs_are_ours() {
        assert!(is_diag_file_name("nsd_20240101_120000_crash.log"));
        assert!(!is_diag_file_name("nsd_.log"));
        assert!(!is_diag_file_name("qoscntrlr202401011200.log"));
        assert!(!is_diag_file_name("nsd_20240101_120000_crash.log.gz"));
    }

    #[test]
    fn snapshot_of_this_process_has_every_section() {
        let text = snapshot_process(std::process::id() as i32);
        for part in [
            "--- cmdline ---",
            "--- status ---",
            "--- wchan ---",
            "--- stack ---",
            "--- limits ---",
            "--- fd count: ",
            "--- threads (",
            "Max open files",
        ] {
            assert!(text.contains(part), "missing {part} in:\n{text}");
        }
    }

    #[test]
    fn snapshot_of_a_missing_process_says_gone() {
        // pid_max is at most 2^22, so this pid cannot exist.
        let text = snapshot_process(i32::MAX);
        assert!(text.contains("(gone: no such process)"), "{text}");
    }
}
