//! Processes: the one reaper of every child the controller has (server, probes, hooks,
//! diagnostics, and orphans adopted as child subreaper), time-limited helper commands,
//! the server's spawn (identity, environment, console capture into a rotated log and an
//! in-memory tail) and the kill of its whole process tree.
//!
//! Exactly one place calls `waitpid`: [`Reaper::reap_all`]. Everything that wants an exit
//! status registers its pid with [`Reaper::watch`] right after spawning it — before the
//! next `.await`, so on the single-threaded runtime no exit can be reaped unclaimed in
//! between. `tokio::process` is not used for that reason: it reaps its own children and
//! would race this reaper for exit statuses.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitInfo {
    Exited(i32),
    Signaled { signal: i32, core_dumped: bool },
}

impl ExitInfo {
    pub fn success(&self) -> bool {
        matches!(self, ExitInfo::Exited(0))
    }
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitInfo::Exited(code) => write!(f, "exit code {code}"),
            ExitInfo::Signaled {
                signal,
                core_dumped,
            } => {
                let name = Signal::try_from(*signal)
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|_| format!("signal {signal}"));
                if *core_dumped {
                    write!(f, "killed by {name} (core dumped)")
                } else {
                    write!(f, "killed by {name}")
                }
            }
        }
    }
}

/// The single owner of `waitpid`.
#[derive(Default)]
pub struct Reaper {
    waiters: RefCell<HashMap<i32, oneshot::Sender<ExitInfo>>>,
}

impl Reaper {
    pub fn new() -> Rc<Reaper> {
        Rc::new(Reaper::default())
    }

    /// Ask for the exit status of `pid`. Call it right after the spawn, before any await.
    pub fn watch(&self, pid: i32) -> oneshot::Receiver<ExitInfo> {
        let (tx, rx) = oneshot::channel();
        self.waiters.borrow_mut().insert(pid, tx);
        rx
    }

    /// The pids whose exit somebody awaits (the server and the helper commands).
    pub fn watched(&self) -> HashSet<i32> {
        self.waiters.borrow().keys().copied().collect()
    }

    /// Reap every child that has exited. Watched pids get their status through their
    /// channel; the others (orphans adopted as subreaper) are returned.
    pub fn reap_all(&self) -> Vec<(i32, ExitInfo)> {
        let mut unclaimed = Vec::new();
        loop {
            let info = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid.as_raw(), ExitInfo::Exited(code)),
                Ok(WaitStatus::Signaled(pid, signal, core_dumped)) => (
                    pid.as_raw(),
                    ExitInfo::Signaled {
                        signal: signal as i32,
                        core_dumped,
                    },
                ),
                // StillAlive: nothing more to reap now; ECHILD: no children at all.
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                // Stop/continue reports are not exits.
                Ok(_) => continue,
            };
            match self.waiters.borrow_mut().remove(&info.0) {
                // A dropped receiver means nobody waits any more; the status is not needed.
                Some(tx) => drop(tx.send(info.1)),
                None => unclaimed.push(info),
            }
        }
        unclaimed
    }
}

/// The reaper's safety net (see [`reap_forever`]): slow, because every wake-up of an idle
/// controller costs CPU.
const REAP_SAFETY_TICK: Duration = Duration::from_secs(30);

/// Keeps reaping on every SIGCHLD until the runtime ends; unclaimed exits go to
/// `unclaimed`. Signals of several exits coalesce into one, but a SIGCHLD that comes
/// during a pass wakes the next one and a pass reaps every exit there is, so none is
/// lost; [`REAP_SAFETY_TICK`] only guards against the unforeseen.
pub async fn reap_forever(
    reaper: Rc<Reaper>,
    unclaimed: tokio::sync::mpsc::UnboundedSender<(i32, ExitInfo)>,
) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigchld = signal(SignalKind::child())?;
    let mut tick = tokio::time::interval(REAP_SAFETY_TICK);
    loop {
        tokio::select! {
            _ = sigchld.recv() => {}
            _ = tick.tick() => {}
        }
        for exit in reaper.reap_all() {
            // The receiver lives as long as the runtime; after that nothing is left to tell.
            let _ = unclaimed.send(exit);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
}

/// How a time-limited helper command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelperOutcome {
    pub pid: i32,
    /// `None`: it overran its time limit and its process group was killed.
    pub exit: Option<ExitInfo>,
}

/// Run `cmd` in its own process group with stdin from /dev/null and wait at most `limit`
/// for it; past that, SIGKILL its whole group. Needs [`reap_forever`] (or another caller
/// of [`Reaper::reap_all`]) running on the same runtime.
pub async fn run_helper(
    reaper: &Reaper,
    mut cmd: Command,
    limit: Duration,
) -> Result<HelperOutcome, HelperError> {
    cmd.process_group(0).stdin(std::process::Stdio::null());
    let program = cmd.get_program().to_string_lossy().into_owned();
    let child = cmd
        .spawn()
        .map_err(|source| HelperError::Spawn { program, source })?;
    let pid = child.id() as i32;
    let exited = reaper.watch(pid);
    // `child` is dropped without wait(): the reaper owns the exit status.
    drop(child);
    match tokio::time::timeout(limit, exited).await {
        Ok(Ok(exit)) => Ok(HelperOutcome {
            pid,
            exit: Some(exit),
        }),
        // A closed channel cannot happen while `reaper` lives; treat it like a timeout.
        Ok(Err(_)) | Err(_) => {
            // ESRCH means it is already gone; nothing else can be done about a failure here.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            Ok(HelperOutcome { pid, exit: None })
        }
    }
}

// ---------------------------------------------------------------------------------------
// The server: spawn, console capture, signals and whole-tree kill.
// ---------------------------------------------------------------------------------------

/// Make the controller the "child subreaper" of its descendants: a process of the server's
/// tree that is orphaned (double fork, `setsid` daemon) is re-parented to the controller
/// instead of init, so [`tree_pids`] still finds it and the [`Reaper`] reaps it.
pub fn become_subreaper() -> nix::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
}

/// Rotate the console log when it would grow past this; one `.1` generation is kept.
pub const CONSOLE_LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Set (to the data directory) in the environment of everything the controller starts —
/// the server and, through it, its whole tree, and the helpers (nsd, stack tools, hooks,
/// the stop command) — and so inherited by their children. After a controller crash
/// (SIGKILL) the next controller finds by it what no tree walk reaches any more: daemons
/// that left the server's group and session, and helpers re-parented to init.
pub const TREE_MARK_ENV: &str = "QOSCNTRLR_TREE";

/// Give `cmd` the tree mark of `data_dir` (see [`TREE_MARK_ENV`]).
pub fn mark_tree(cmd: &mut Command, data_dir: &Path) {
    cmd.env(TREE_MARK_ENV, data_dir.display().to_string());
}

/// Lines of console output kept in memory for diagnostics and mails.
pub const CONSOLE_TAIL_LINES: usize = 200;
/// A console line longer than this is cut (in memory only; the file keeps every byte), so
/// a server writing megabytes without a newline cannot grow the controller.
pub const CONSOLE_LINE_MAX_BYTES: usize = 4096;

/// How to start the application server (from `SERVER_*` keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// Program and arguments, never empty.
    pub argv: Vec<String>,
    /// Working directory; also the base of a relative program path such as `./server`.
    pub directory: PathBuf,
    /// Run as this user (name or numeric uid); only possible when the controller is root.
    pub user: Option<String>,
    /// Run with this primary group (name or numeric gid); default: the user's group.
    pub group: Option<String>,
    /// Added to the (scrubbed) controller environment; wins over inherited values.
    pub env: Vec<(String, String)>,
    /// Where stdout and stderr are appended, e.g. `DATA_DIRECTORY/qoscntrlr-console.log`.
    pub console_log: PathBuf,
    /// The server's cgroup v2 directory (containment): the child enters it before exec,
    /// so the server and everything it ever forks are members from the first instruction.
    pub cgroup: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("SERVER_COMMAND is empty")]
    EmptyCommand,
    #[error("server program {program:?} not found (a bare name is looked up beside qoscntrlr, then in PATH)")]
    NotFound { program: String },
    #[error("server program {path} is not an executable file")]
    NotExecutable { path: PathBuf },
    #[error("server directory {path}: {reason}")]
    Directory { path: PathBuf, reason: String },
    #[error("SERVER_USER={user} needs the controller to run as root (it runs as uid {uid})")]
    NotRoot { user: String, uid: u32 },
    #[error("SERVER_GROUP={group} needs the controller to run as root (it runs as uid {uid})")]
    GroupNotRoot { group: String, uid: u32 },
    #[error("SERVER_USER={user}: no such user")]
    UnknownUser { user: String },
    #[error("SERVER_GROUP={group}: no such group")]
    UnknownGroup { group: String },
    #[error("cannot look up the groups of SERVER_USER={user}: {source}")]
    Groups { user: String, source: nix::Error },
    #[error("argument contains a NUL byte: {arg:?}")]
    NulByte { arg: String },
    #[error("cannot create the console pipe: {0}")]
    Pipe(std::io::Error),
    #[error("cannot place the server in cgroup {}: {source}", .path.display())]
    Cgroup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {program}: {source}")]
    Exec {
        program: String,
        source: std::io::Error,
    },
}

/// A started server.
#[derive(Debug)]
pub struct SpawnedServer {
    /// Also its process group id (the server leads its own group).
    pub pid: i32,
    /// Basename of the program, for `ObjectValue2=`.
    pub program: String,
    /// The exit status, delivered by the [`Reaper`].
    pub exited: oneshot::Receiver<ExitInfo>,
    /// Whether it was cloned into its cgroup ([`CgroupEntry::CloneInto`]).
    pub clone_into: CloneIntoOutcome,
    /// Its stdout+stderr; hand it to [`ConsoleCapture::pump`] on a `spawn_local` task.
    pub console: ConsoleCapture,
    /// The console log could not be opened; the server runs anyway (stderr + memory).
    pub console_log_error: Option<ConsoleLogError>,
}

/// Why the console log is unavailable for a started server.
#[derive(Debug, thiserror::Error)]
#[error("console log {}: {source}", .path.display())]
pub struct ConsoleLogError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// The read end of the server's stdout+stderr pipe and the console log it goes to.
#[derive(Debug)]
pub struct ConsoleCapture {
    pub reader: OwnedFd,
    pub log: ConsoleLog,
}

impl ConsoleCapture {
    /// [`pump_console`] for this server. Ends when every writer of the pipe is gone.
    pub async fn pump(self, tail: ConsoleTail) -> PumpSummary {
        pump_console(self.reader, self.log, tail).await
    }
}

/// The last [`CONSOLE_TAIL_LINES`] lines the server wrote. Cheap to clone; all clones
/// share one buffer, which outlives a server so the crashed server's last words are still
/// there for post-mortem diagnostics.
#[derive(Debug, Clone)]
pub struct ConsoleTail {
    lines: Rc<RefCell<VecDeque<String>>>,
    capacity: usize,
}

impl Default for ConsoleTail {
    fn default() -> Self {
        ConsoleTail::new(CONSOLE_TAIL_LINES)
    }
}

impl ConsoleTail {
    pub fn new(capacity: usize) -> ConsoleTail {
        ConsoleTail {
            lines: Rc::new(RefCell::new(VecDeque::with_capacity(capacity))),
            capacity,
        }
    }

    /// The last `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let lines = self.lines.borrow();
        let skip = lines.len().saturating_sub(n);
        lines.iter().skip(skip).cloned().collect()
    }

    pub fn push(&self, line: String) {
        if self.capacity == 0 {
            return;
        }
        let mut lines = self.lines.borrow_mut();
        while lines.len() >= self.capacity {
            lines.pop_front();
        }
        lines.push_back(line);
    }
}

/// The console log file: append-only, rotated to `<name>.1` past a size limit.
///
/// A console log that cannot be opened (read-only or full data directory, a planted
/// link) never stops the server from starting: the log is then *unavailable*, the
/// server's output is copied to the controller's stderr (the journal under systemd) and
/// its last lines stay in the in-memory [`ConsoleTail`]; opening is retried at most every
/// [`CONSOLE_REOPEN_EVERY`].
#[derive(Debug)]
pub struct ConsoleLog {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_bytes: u64,
    /// When the file is unavailable: the last open error and when to try again.
    unavailable: Option<(std::io::Error, Instant)>,
}

/// How often an unavailable console log is tried again.
pub const CONSOLE_REOPEN_EVERY: Duration = Duration::from_secs(30);

fn open_console_file(path: &Path) -> std::io::Result<File> {
    // Never through a link planted at the name (the data directory may be writable by
    // the server's user; the controller may be root).
    crate::safefs::open_append(path, 0o640)
}

impl ConsoleLog {
    /// Open (create) `path` for appending, rotating at [`CONSOLE_LOG_MAX_BYTES`].
    pub fn open(path: &Path) -> std::io::Result<ConsoleLog> {
        ConsoleLog::with_limit(path, CONSOLE_LOG_MAX_BYTES)
    }

    pub fn with_limit(path: &Path, max_bytes: u64) -> std::io::Result<ConsoleLog> {
        let file = open_console_file(path)?;
        let size = file.metadata()?.len();
        Ok(ConsoleLog {
            path: path.to_path_buf(),
            file: Some(file),
            size,
            max_bytes,
            unavailable: None,
        })
    }

    /// [`ConsoleLog::open`], or an unavailable log (stderr + memory) and the reason.
    pub fn open_or_unavailable(path: &Path) -> (ConsoleLog, Option<std::io::Error>) {
        match ConsoleLog::open(path) {
            Ok(log) => (log, None),
            Err(err) => {
                let copy = std::io::Error::new(err.kind(), err.to_string());
                let log = ConsoleLog {
                    path: path.to_path_buf(),
                    file: None,
                    size: 0,
                    max_bytes: CONSOLE_LOG_MAX_BYTES,
                    unavailable: Some((err, Instant::now() + CONSOLE_REOPEN_EVERY)),
                };
                (log, Some(copy))
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file could not be opened: output goes to stderr and memory only.
    pub fn is_unavailable(&self) -> bool {
        self.file.is_none()
    }

    /// Append `bytes` as they came (no re-encoding), rotating first when they would push
    /// the file past the limit. One `write(2)` in the common case; the disk is local and
    /// the pipe must keep draining, so a slow write is accepted rather than buffered.
    /// While the file is unavailable the bytes go to stderr and the error is returned.
    pub fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.file.is_some() && self.size > 0 && self.size + bytes.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        if self.file.is_none() {
            self.reopen_if_due();
        }
        let Some(file) = &mut self.file else {
            // Unavailable: stderr (best effort; it must never block the pump for long,
            // and a failing stderr has nowhere left to report to).
            let _ = std::io::stderr().write_all(bytes);
            let kind = self
                .unavailable
                .as_ref()
                .map_or(std::io::ErrorKind::Other, |(e, _)| e.kind());
            return Err(std::io::Error::new(
                kind,
                format!("console log {} is unavailable", self.path.display()),
            ));
        };
        file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn reopen_if_due(&mut self) {
        let now = Instant::now();
        if self
            .unavailable
            .as_ref()
            .is_some_and(|(_, retry_at)| now < *retry_at)
        {
            return;
        }
        match open_console_file(&self.path) {
            Ok(file) => {
                self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
                self.file = Some(file);
                self.unavailable = None;
            }
            Err(err) => self.unavailable = Some((err, now + CONSOLE_REOPEN_EVERY)),
        }
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        // A failed rotation leaves the log unavailable until the next retry.
        self.unavailable = Some((
            std::io::Error::other("rotation failed"),
            Instant::now() + CONSOLE_REOPEN_EVERY,
        ));
        std::fs::rename(&self.path, PathBuf::from(old))?;
        let file = open_console_file(&self.path)?;
        self.size = 0;
        self.file = Some(file);
        self.unavailable = None;
        Ok(())
    }
}

/// What a finished [`pump_console`] saw.
#[derive(Debug, Default)]
pub struct PumpSummary {
    pub bytes: u64,
    /// The first failure to write the console log (reading went on regardless, so the
    /// server never blocks on a full pipe).
    pub write_error: Option<std::io::Error>,
    /// Reading the pipe failed (other than end of file).
    pub read_error: Option<std::io::Error>,
}

/// Copy the server's console from `reader` into `log` and the last lines into `tail`,
/// until the pipe's last writer closes it (the server and any descendant that kept its
/// stdout; [`kill_tree`] kills those). Run it as a `spawn_local` task.
pub async fn pump_console(reader: OwnedFd, mut log: ConsoleLog, tail: ConsoleTail) -> PumpSummary {
    let mut summary = PumpSummary::default();
    let mut pipe = match tokio::net::unix::pipe::Receiver::from_owned_fd(reader) {
        Ok(pipe) => pipe,
        Err(err) => {
            summary.read_error = Some(err);
            return summary;
        }
    };
    let mut lines = LineSplitter::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => {
                summary.read_error = Some(err);
                break;
            }
        };
        let chunk = &buf[..n];
        summary.bytes += n as u64;
        if let Err(err) = log.append(chunk) {
            summary.write_error.get_or_insert(err);
        }
        lines.feed(chunk, |line| tail.push(line));
    }
    lines.finish(|line| tail.push(line));
    summary
}

/// Splits a byte stream into lossy-UTF-8 lines of bounded length. Decoding happens per
/// complete line, so a multi-byte character split across two reads is not mangled.
#[derive(Default)]
struct LineSplitter {
    partial: Vec<u8>,
    /// The current line already exceeded the cap; drop its remaining bytes.
    overflowed: bool,
}

impl LineSplitter {
    fn feed(&mut self, mut chunk: &[u8], mut emit: impl FnMut(String)) {
        while !chunk.is_empty() {
            let (piece, ended) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (&chunk[..i], Some(i + 1)),
                None => (chunk, None),
            };
            if !self.overflowed {
                let room = CONSOLE_LINE_MAX_BYTES - self.partial.len();
                if piece.len() > room {
                    self.partial.extend_from_slice(&piece[..room]);
                    self.overflowed = true;
                } else {
                    self.partial.extend_from_slice(piece);
                }
            }
            match ended {
                Some(next) => {
                    emit(self.take_line());
                    chunk = &chunk[next..];
                }
                None => break,
            }
        }
    }

    fn finish(&mut self, emit: impl FnMut(String)) {
        if !self.partial.is_empty() || self.overflowed {
            let mut emit = emit;
            emit(self.take_line());
        }
    }

    fn take_line(&mut self) -> String {
        let mut bytes = std::mem::take(&mut self.partial);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let mut line = String::from_utf8_lossy(&bytes).into_owned();
        if std::mem::take(&mut self.overflowed) {
            line.push_str(" […]");
        }
        line
    }
}

/// Find the program to run. A name with a `/` is a path (relative ones are relative to
/// the server directory, where the server will run); a bare name is looked up first beside
/// the controller's own executable (so `qos-demo-server` ships next to `qoscntrlr`), then
/// in `path_var`.
pub fn resolve_program(
    program: &str,
    directory: &Path,
    exe_dir: Option<&Path>,
    path_var: Option<&OsStr>,
) -> Result<PathBuf, SpawnError> {
    if program.is_empty() {
        return Err(SpawnError::EmptyCommand);
    }
    if program.contains('/') {
        let path = directory.join(program);
        return match executable_status(&path) {
            Candidate::Executable => Ok(path),
            Candidate::NotExecutable => Err(SpawnError::NotExecutable { path }),
            Candidate::Missing => Err(SpawnError::NotFound {
                program: path.display().to_string(),
            }),
        };
    }
    let path_dirs = path_var
        .map(|p| std::env::split_paths(p).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut not_executable = None;
    for dir in exe_dir.map(Path::to_path_buf).into_iter().chain(path_dirs) {
        // An empty PATH entry means the current directory; the server's is the one meant.
        let dir = if dir.as_os_str().is_empty() {
            directory.to_path_buf()
        } else {
            dir
        };
        let candidate = dir.join(program);
        match executable_status(&candidate) {
            Candidate::Executable => return Ok(candidate),
            Candidate::NotExecutable => {
                not_executable.get_or_insert(candidate);
            }
            Candidate::Missing => {}
        }
    }
    match not_executable {
        Some(path) => Err(SpawnError::NotExecutable { path }),
        None => Err(SpawnError::NotFound {
            program: program.to_string(),
        }),
    }
}

/// Resolve the server program exactly as [`spawn_server`] does: [`resolve_program`]
/// beside the running executable and in `path_var` (the server's PATH), and, for the
/// demo server's name only, the demo server built into this executable as the last
/// resort (run under the name `qos-demo-server`, which `qoscntrlr`'s `main` recognises).
/// That last step is what makes the example configuration work where only the
/// `qoscntrlr` binary has been built (`cargo run`) or installed (`/usr/bin`).
/// `check-config` calls this too, so it reports what `run` will find.
pub fn resolve_server_program(
    program: &str,
    directory: &Path,
    path_var: Option<&OsStr>,
) -> Result<PathBuf, SpawnError> {
    let exe = std::env::current_exe().ok();
    let exe_dir = exe.as_deref().and_then(Path::parent);
    match resolve_program(program, directory, exe_dir, path_var) {
        Err(SpawnError::NotFound { .. }) if program == crate::demo_server::PROGRAM => match exe {
            Some(exe) if builtin_demo_server(&exe) => Ok(exe),
            _ => resolve_program(program, directory, exe_dir, path_var),
        },
        other => other,
    }
}

/// Whether `exe` is a `qoscntrlr` binary (which carries the demo server), and not some
/// other program that links this library (a test binary, a benchmark).
fn builtin_demo_server(exe: &Path) -> bool {
    exe.file_name() == Some(OsStr::new("qoscntrlr"))
}

enum Candidate {
    Executable,
    NotExecutable,
    Missing,
}

fn executable_status(path: &Path) -> Candidate {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => {
            Candidate::Executable
        }
        Ok(_) => Candidate::NotExecutable,
        Err(_) => Candidate::Missing,
    }
}

/// Who the server runs as, resolved before the fork (user database lookups are not safe
/// between fork and exec).
struct Identity {
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
    /// HOME/USER/LOGNAME of the target user, so the server does not see root's.
    env: Vec<(String, String)>,
}

fn resolve_identity(spec: &ServerSpec) -> Result<Option<Identity>, SpawnError> {
    use nix::unistd::{Gid, Group, Uid, User};
    if spec.user.is_none() && spec.group.is_none() {
        return Ok(None);
    }
    let uid_now = Uid::effective();
    if !uid_now.is_root() {
        return Err(match (&spec.user, &spec.group) {
            (Some(user), _) => SpawnError::NotRoot {
                user: user.clone(),
                uid: uid_now.as_raw(),
            },
            (None, Some(group)) => SpawnError::GroupNotRoot {
                group: group.clone(),
                uid: uid_now.as_raw(),
            },
            (None, None) => unreachable!("checked above"),
        });
    }
    let group = match &spec.group {
        None => None,
        Some(name) => {
            let found = match name.parse::<u32>() {
                Ok(gid) => Group::from_gid(Gid::from_raw(gid)).ok().flatten(),
                Err(_) => Group::from_name(name).ok().flatten(),
            };
            match (found, name.parse::<u32>()) {
                (Some(g), _) => Some(g.gid),
                // A numeric gid without a group entry is still a valid gid.
                (None, Ok(gid)) => Some(Gid::from_raw(gid)),
                (None, Err(_)) => {
                    return Err(SpawnError::UnknownGroup {
                        group: name.clone(),
                    })
                }
            }
        }
    };
    let Some(name) = &spec.user else {
        // Group only: keep root's uid, change the primary group, drop supplementary ones.
        let gid = group.map(Gid::as_raw).unwrap_or(0);
        return Ok(Some(Identity {
            uid: 0,
            gid,
            groups: vec![gid],
            env: Vec::new(),
        }));
    };
    let user = match name.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)).ok().flatten(),
        Err(_) => User::from_name(name).ok().flatten(),
    }
    .ok_or_else(|| SpawnError::UnknownUser { user: name.clone() })?;
    let gid = group.unwrap_or(user.gid);
    let cname = CString::new(user.name.as_bytes()).map_err(|_| SpawnError::NulByte {
        arg: user.name.clone(),
    })?;
    let groups = nix::unistd::getgrouplist(&cname, gid)
        .map_err(|source| SpawnError::Groups {
            user: name.clone(),
            source,
        })?
        .into_iter()
        .map(Gid::as_raw)
        .collect();
    Ok(Some(Identity {
        uid: user.uid.as_raw(),
        gid: gid.as_raw(),
        groups,
        env: vec![
            ("HOME".into(), user.dir.display().to_string()),
            ("USER".into(), user.name.clone()),
            ("LOGNAME".into(), user.name.clone()),
        ],
    }))
}

/// How the server enters its cgroup (when `ServerSpec::cgroup` is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupEntry {
    /// The child writes itself into `cgroup.procs` before its exec: a migration (the
    /// kernel waits for an RCU grace period there, milliseconds).
    Migrate,
    /// Born in the cgroup: `clone3` with `CLONE_INTO_CGROUP` ([`crate::clone_into`]),
    /// falling back to [`CgroupEntry::Migrate`] when the kernel refuses it or kills the
    /// clone. Only for a cgroup no `cgroup.kill` was written to since it was made.
    CloneInto,
}

/// What became of a [`CgroupEntry::CloneInto`] spawn.
#[derive(Debug)]
pub enum CloneIntoOutcome {
    /// Migration asked for, or no cgroup.
    NotTried,
    /// The server was cloned into its cgroup.
    Cloned,
    /// clone3 or `CLONE_INTO_CGROUP` refused; the server was started by migration.
    Refused(std::io::Error),
    /// The clone was killed at fork (the cgroup's `kill_seq` differs from the
    /// controller's cgroup's); the server was started by migration.
    KilledAtFork,
}

/// Start the server: no shell, stdin from /dev/null, stdout+stderr into one pipe to the
/// controller, its own process group (pgid == pid, not a new session), in
/// `spec.directory`, as `spec.user`/`spec.group` (root only), without the controller's
/// service-manager variables. The program is resolved before the fork so a typo gives a
/// clear error instead of an exit status 127. Registers the pid with `reaper` at once.
/// A contained server enters its cgroup by migration ([`spawn_server_entering`] can
/// clone it there instead).
pub fn spawn_server(spec: &ServerSpec, reaper: &Reaper) -> Result<SpawnedServer, SpawnError> {
    spawn_server_entering(spec, reaper, CgroupEntry::Migrate)
}

/// [`spawn_server`], the server entering its cgroup as `entry` says.
pub fn spawn_server_entering(
    spec: &ServerSpec,
    reaper: &Reaper,
    entry: CgroupEntry,
) -> Result<SpawnedServer, SpawnError> {
    let program_arg = spec.argv.first().ok_or(SpawnError::EmptyCommand)?;
    match std::fs::metadata(&spec.directory) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(SpawnError::Directory {
                path: spec.directory.clone(),
                reason: "not a directory".into(),
            })
        }
        Err(err) => {
            return Err(SpawnError::Directory {
                path: spec.directory.clone(),
                reason: err.to_string(),
            })
        }
    }
    let path_var: Option<OsString> = spec
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| OsString::from(v))
        .or_else(|| std::env::var_os("PATH"));
    let program_path = resolve_server_program(program_arg, &spec.directory, path_var.as_deref())?;
    for arg in &spec.argv {
        if arg.contains('\0') {
            return Err(SpawnError::NulByte { arg: arg.clone() });
        }
    }
    let identity = resolve_identity(spec)?;
    let dir_c =
        CString::new(spec.directory.as_os_str().as_bytes()).map_err(|_| SpawnError::NulByte {
            arg: spec.directory.display().to_string(),
        })?;

    // A console log that cannot be opened never stops the server from starting: its
    // output then goes to stderr and memory, and the caller logs why.
    let (mut log, console_log_error) = ConsoleLog::open_or_unavailable(&spec.console_log);
    let (read_end, write_end) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SpawnError::Pipe(e.into()))?;

    let mut clone_into = CloneIntoOutcome::NotTried;
    let mut cloned = None;
    if let (CgroupEntry::CloneInto, Some(dir)) = (entry, &spec.cgroup) {
        match clone_server(
            spec,
            dir,
            &program_path,
            identity.as_ref(),
            &dir_c,
            &write_end,
        ) {
            Ok(pid) => {
                cloned = Some(pid);
                clone_into = CloneIntoOutcome::Cloned;
            }
            Err(crate::clone_into::CloneError::KilledAtFork) => {
                clone_into = CloneIntoOutcome::KilledAtFork;
            }
            Err(
                crate::clone_into::CloneError::Refused(e) | crate::clone_into::CloneError::Setup(e),
            ) => clone_into = CloneIntoOutcome::Refused(e),
            // The child ran in the cgroup and failed like a migrated one would have.
            Err(crate::clone_into::CloneError::Exec(source)) => {
                return Err(SpawnError::Exec {
                    program: program_path.display().to_string(),
                    source,
                })
            }
        }
    }
    let pid = match cloned {
        Some(pid) => pid,
        None => migrate_server(
            spec,
            &program_path,
            program_arg,
            identity,
            dir_c,
            &write_end,
        )?,
    };
    let exited = reaper.watch(pid);
    // Our copy of the write end goes, so the pipe closes when the server's tree is gone.
    drop(write_end);

    let program = Path::new(program_arg)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| program_arg.clone());
    // A marker between runs in the file; failing to write it is not worth failing the
    // spawn (the pump reports write errors).
    if !log.is_unavailable() {
        let _ = log.append(
            format!(
                "=== qoscntrlr: started {} (pid {pid}) at {} ===\n",
                shell_words::join(&spec.argv),
                chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
            )
            .as_bytes(),
        );
    }
    Ok(SpawnedServer {
        pid,
        program,
        exited,
        clone_into,
        console_log_error: console_log_error.map(|e| ConsoleLogError {
            path: spec.console_log.clone(),
            source: e,
        }),
        console: ConsoleCapture {
            reader: read_end,
            log,
        },
    })
}

/// The server's environment changes: the target user's variables, then the spec's (a
/// later value of a key wins).
fn server_env<'a>(
    spec: &'a ServerSpec,
    identity: Option<&'a Identity>,
) -> impl Iterator<Item = &'a (String, String)> {
    identity
        .into_iter()
        .flat_map(|i| i.env.iter())
        .chain(spec.env.iter())
}

/// Start the server with `std::process::Command`; the child writes itself into the
/// cgroup's `cgroup.procs` (if any) before anything else. Returns its pid.
fn migrate_server(
    spec: &ServerSpec,
    program_path: &Path,
    program_arg: &str,
    identity: Option<Identity>,
    dir_c: CString,
    write_end: &OwnedFd,
) -> Result<i32, SpawnError> {
    let stdout = write_end.try_clone().map_err(SpawnError::Pipe)?;
    let stderr = write_end.try_clone().map_err(SpawnError::Pipe)?;
    let mut cmd = Command::new(program_path);
    cmd.arg0(program_arg)
        .args(&spec.argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(stdout))
        .stderr(std::process::Stdio::from(stderr))
        .process_group(0);
    for key in crate::sdnotify::INHERITED_VARIABLES {
        cmd.env_remove(key);
    }
    for (k, v) in server_env(spec, identity.as_ref()) {
        cmd.env(k, v);
    }
    let ids = identity.map(|i| (i.uid, i.gid, i.groups));
    // Opened here, written by the child: the kernel checks the opener's permission, and
    // a failure is reported like an exec failure (the spawn fails, naming the cgroup).
    let cgroup_procs = match &spec.cgroup {
        Some(dir) => {
            let path = dir.join("cgroup.procs");
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|source| SpawnError::Cgroup {
                    path: dir.clone(),
                    source,
                })?;
            Some(OwnedFd::from(file))
        }
        None => None,
    };
    let procs_fd = cgroup_procs.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
    // SAFETY: the closure only makes async-signal-safe system calls on data prepared
    // before the fork (no allocation, no locks).
    unsafe {
        cmd.pre_exec(move || {
            if let Some(fd) = procs_fd {
                // "0" moves the writing process: the child itself, before anything else
                // (while it still has the controller's identity).
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some((uid, gid, groups)) = &ids {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(*gid) != 0
                    || libc::setuid(*uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // After the identity change, so the directory is entered with the server's
            // own permissions.
            if libc::chdir(dir_c.as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let spawned = cmd.spawn();
    drop(cgroup_procs);
    let child = spawned.map_err(|source| SpawnError::Exec {
        program: program_path.display().to_string(),
        source,
    })?;
    // No wait() on `child`: the reaper owns the exit status. `cmd` goes with its copies
    // of the pipe's write end.
    Ok(child.id() as i32)
}

/// Start the server with [`crate::clone_into::spawn`]: born in cgroup `dir`. The same
/// argv, environment, descriptors, process group, identity and directory as
/// [`migrate_server`].
fn clone_server(
    spec: &ServerSpec,
    dir: &Path,
    program_path: &Path,
    identity: Option<&Identity>,
    dir_c: &CString,
    write_end: &OwnedFd,
) -> Result<i32, crate::clone_into::CloneError> {
    use crate::clone_into::{self, CloneError};
    let setup = |e: std::io::Error| CloneError::Setup(e);
    let nul = |_| CloneError::Setup(std::io::ErrorKind::InvalidInput.into());
    let program = CString::new(program_path.as_os_str().as_bytes()).map_err(nul)?;
    let argv: Vec<CString> = spec
        .argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(nul)?;
    let set: Vec<(String, String)> = server_env(spec, identity).cloned().collect();
    let env = clone_into::environment(&crate::sdnotify::INHERITED_VARIABLES, &set).map_err(nul)?;
    let argv_ptrs: Vec<*const libc::c_char> = argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let env_ptrs: Vec<*const libc::c_char> = env
        .iter()
        .map(|e| e.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let stdin = std::fs::File::open("/dev/null").map_err(setup)?;
    let stdin = clone_into::prepare_fd(OwnedFd::from(stdin)).map_err(setup)?;
    let output = clone_into::prepare_fd(write_end.try_clone().map_err(setup)?).map_err(setup)?;
    let exec = clone_into::Exec {
        program: &program,
        argv: &argv_ptrs,
        envp: &env_ptrs,
        stdin: std::os::fd::AsRawFd::as_raw_fd(&stdin),
        output: std::os::fd::AsRawFd::as_raw_fd(&output),
        ids: identity.map(|i| (i.uid, i.gid, i.groups.as_slice())),
        directory: dir_c,
    };
    clone_into::spawn(dir, &exec)
}

/// Send `sig` to every process of group `pgid`.
pub fn signal_group(pgid: i32, sig: Signal) -> nix::Result<()> {
    if pgid <= 1 {
        // killpg(0/1) would hit the controller's own group or be meaningless: refuse.
        return Err(nix::errno::Errno::EINVAL);
    }
    killpg(Pid::from_raw(pgid), sig)
}

/// Fields of `/proc/<pid>/stat` the tree walk needs.
struct ProcStat {
    state: char,
    pgid: i32,
    /// Start time in clock ticks after boot: with the pid, the identity of a process (a
    /// pid reused by another process has another start time).
    start: u64,
}

fn proc_stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgid = fields.next()?.parse().ok()?;
    // Fields 6-21 of stat(5) lie between the group and the start time (field 22).
    let start = fields.nth(16)?.parse().ok()?;
    Some(ProcStat { state, pgid, start })
}

fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    out
}

fn all_pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect()
}

/// The server `root` and everything that belongs to its tree: its descendants (through
/// `/proc/<pid>/task/*/children`), the controller's own children other than `root` and
/// the `exclude`d helper pids (as child subreaper the controller adopts the orphans of
/// the tree, e.g. `setsid` daemons), their descendants, and every process in group
/// `pgid`. Zombies are included (they are reaped, not killed); the controller itself
/// and init never are. Note: orphans of killed helper commands are adopted too and
/// count as the server's — they are leftovers either way.
pub fn tree_pids(root: i32, pgid: i32, exclude: &HashSet<i32>) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut seen: HashSet<i32> = HashSet::new();
    let mut order = Vec::new();
    let mut queue: VecDeque<i32> = VecDeque::new();
    let mut push = |pid: i32, queue: &mut VecDeque<i32>| {
        if pid > 1 && pid != me && !exclude.contains(&pid) && seen.insert(pid) {
            order.push(pid);
            queue.push_back(pid);
        }
    };
    if Path::new(&format!("/proc/{root}")).exists() {
        push(root, &mut queue);
    }
    for adopted in children_of(me) {
        push(adopted, &mut queue);
    }
    if pgid > 1 {
        for pid in all_pids() {
            if proc_stat(pid).is_some_and(|s| s.pgid == pgid) {
                push(pid, &mut queue);
            }
        }
    }
    while let Some(pid) = queue.pop_front() {
        for child in children_of(pid) {
            push(child, &mut queue);
        }
    }
    order
}

/// What a tree kill did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KillReport {
    /// Every pid that was sent SIGKILL, in discovery order.
    pub killed: Vec<i32>,
    /// Still alive (not a zombie) after the last round, e.g. stuck in uninterruptible
    /// sleep. Empty on success.
    pub survivors: Vec<i32>,
    pub rounds: u32,
}

/// Rounds of [`kill_tree`], the blocking kill (start-up, before the loop runs).
const KILL_ROUNDS: u32 = 20;

fn alive(pid: i32) -> bool {
    // Zombie ('Z') and dead ('X') entries are waiting for the reaper, not for a signal.
    match proc_stat(pid) {
        Some(stat) => stat.state != 'Z' && stat.state != 'X',
        // /proc could not be read (out of descriptors, hidepid): signal 0 needs no
        // descriptor and tells whether the pid exists at all (a zombie counts, which
        // only costs one more harmless SIGKILL).
        None => nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok(),
    }
}

/// What the next [`TreeKill::step`] needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillStep {
    /// Nothing of the tree is alive any more: [`TreeKill::finish`].
    Done,
    /// Processes were killed and have all ended already: walk again at once (a last
    /// look for anything forked in between).
    Again,
    /// Killed processes are still on their way out (SIGKILL is delivered
    /// asynchronously; one in uninterruptible sleep dies only when its I/O returns):
    /// walk again a little later.
    Wait,
}

/// SIGKILL of the server's whole tree (see [`tree_pids`]), one round per [`step`]: each
/// round first SIGSTOPs every process found, walking again until no new one turns up (a
/// stopped process cannot fork while we look), then SIGKILLs them all and the group.
/// The caller repeats rounds until one finds nothing alive and decides how long to wait
/// in between — [`kill_tree`] sleeps (it runs before the supervision loop exists), the
/// loop's own kill awaits a timer so it keeps serving while a process of the tree takes
/// its time to die. A step never waits. Reaping is left to the [`Reaper`].
///
/// Between rounds the reaper may reap what was killed, and a pid could in principle be
/// reused: every process is remembered with its start time, and a pid seen again with
/// another start time is not the one that was killed and is left alone.
///
/// [`step`]: TreeKill::step
#[derive(Debug)]
pub struct TreeKill {
    root: i32,
    pgid: i32,
    exclude: HashSet<i32>,
    /// The server the controller spawned and has not reaped: signalled directly too.
    child: Option<i32>,
    /// Start time of every process signalled so far (see above).
    seen: HashMap<i32, u64>,
    report: KillReport,
}

impl TreeKill {
    /// Kill the tree of `root` and every process of group `pgid` (0: none).
    pub fn new(root: i32, pgid: i32, exclude: &HashSet<i32>) -> TreeKill {
        TreeKill {
            root,
            pgid,
            exclude: exclude.clone(),
            child: None,
            seen: HashMap::new(),
            report: KillReport::default(),
        }
    }

    /// The tree of the server the controller spawned (its own process group) and has
    /// not reaped yet: that pid cannot have been reused, so it is SIGKILLed directly as
    /// well and counts as a survivor while it exists — the kill works, and is known to
    /// have worked or not, even when `/proc` cannot be read.
    pub fn of_child(child: i32, exclude: &HashSet<i32>) -> TreeKill {
        let mut kill = TreeKill::new(child, child, exclude);
        if child > 1 && !exclude.contains(&child) {
            kill.child = Some(child);
        }
        kill
    }

    /// The pids killed so far, in discovery order.
    pub fn killed(&self) -> &[i32] {
        &self.report.killed
    }

    /// Rounds done so far.
    pub fn rounds(&self) -> u32 {
        self.report.rounds
    }

    /// Alive, and the process first seen under this pid (not a reuse of it).
    fn ours_alive(&mut self, pid: i32) -> bool {
        match proc_stat(pid) {
            Some(stat) => {
                let first = *self.seen.entry(pid).or_insert(stat.start);
                first == stat.start && stat.state != 'Z' && stat.state != 'X'
            }
            None => alive(pid),
        }
    }

    /// One round (see the type). Never blocks beyond the `/proc` reads and signals.
    pub fn step(&mut self) -> KillStep {
        if self.report.rounds == 0 {
            if let Some(child) = self.child {
                // Unreaped, so not reusable: a direct SIGKILL needs no /proc at all.
                if nix::sys::signal::kill(Pid::from_raw(child), Signal::SIGKILL).is_ok()
                    && !self.report.killed.contains(&child)
                {
                    self.report.killed.push(child);
                }
            }
        }
        let mut stopped: Vec<i32> = Vec::new();
        let mut stopped_set: HashSet<i32> = HashSet::new();
        loop {
            let found = tree_pids(self.root, self.pgid, &self.exclude);
            let fresh: Vec<i32> = found
                .into_iter()
                .filter(|&p| !stopped_set.contains(&p) && self.ours_alive(p))
                .collect();
            if fresh.is_empty() {
                break;
            }
            for pid in fresh {
                // ESRCH: it died meanwhile, which is what we want anyway.
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGSTOP);
                stopped_set.insert(pid);
                stopped.push(pid);
            }
        }
        if stopped.is_empty() {
            return KillStep::Done;
        }
        self.report.rounds += 1;
        for &pid in &stopped {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            if !self.report.killed.contains(&pid) {
                self.report.killed.push(pid);
            }
        }
        if self.pgid > 1 {
            let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
        }
        if stopped.iter().any(|&p| self.ours_alive(p)) {
            KillStep::Wait
        } else {
            KillStep::Again
        }
    }

    /// The report: what was killed, and what of the tree is still alive now.
    pub fn finish(mut self) -> KillReport {
        // Whatever the walks found (nothing, when /proc cannot be read for want of
        // descriptors): the group is always signalled; kill(2) needs no descriptor.
        if self.pgid > 1 && self.pgid != std::process::id() as i32 {
            let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
        }
        let found = tree_pids(self.root, self.pgid, &self.exclude);
        let mut survivors: Vec<i32> = found.into_iter().filter(|&p| self.ours_alive(p)).collect();
        if let Some(child) = self.child {
            let _ = nix::sys::signal::kill(Pid::from_raw(child), Signal::SIGKILL);
            if alive(child) && !survivors.contains(&child) {
                survivors.push(child);
            }
        }
        self.report.survivors = survivors;
        self.report
    }
}

/// SIGKILL the server's whole tree (see [`TreeKill`]), blocking: rounds repeat until a
/// walk finds nothing alive, at most [`KILL_ROUNDS`] times, a millisecond apart when
/// killed processes are still on their way out. For start-up, before the supervision
/// loop runs; the loop's kill waits on a timer instead (`runtime::executor`).
pub fn kill_tree(root: i32, pgid: i32, exclude: &HashSet<i32>) -> KillReport {
    let mut kill = TreeKill::new(root, pgid, exclude);
    while kill.rounds() < KILL_ROUNDS {
        match kill.step() {
            KillStep::Done => break,
            KillStep::Again => {}
            KillStep::Wait => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    kill.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut out = Vec::new();
        let mut s = LineSplitter::default();
        for c in chunks {
            s.feed(c, |l| out.push(l));
        }
        s.finish(|l| out.push(l));
        out
    }

    #[test]
    fn lines_split_across_reads_and_crlf_are_joined() {
        assert_eq!(
            split(&[b"one\r\ntw", b"o\nthree"]),
            vec!["one", "two", "three"]
        );
    }

    #[test]
    fn multibyte_character_split_across_reads_survives() {
        let text = "grüße\n".as_bytes();
        assert_eq!(split(&[&text[..3], &text[3..]]), vec!["grüße"]);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        assert_eq!(split(&[b"a\xffb\n"]), vec!["a\u{fffd}b"]);
    }

    #[test]
    fn long_line_is_cut_and_marked() {
        let long = vec![b'x'; CONSOLE_LINE_MAX_BYTES * 3];
        let lines = split(&[&long[..5000], &long[5000..], b"\nnext\n"]);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with(&"x".repeat(CONSOLE_LINE_MAX_BYTES)));
        assert!(lines[0].ends_with(" […]"));
        assert_eq!(lines[1], "next");
    }

    #[test]
    fn tail_keeps_only_the_last_lines() {
        let tail = ConsoleTail::new(3);
        for i in 0..5 {
            tail.push(format!("l{i}"));
        }
        assert_eq!(tail.tail(10), vec!["l2", "l3", "l4"]);
        assert_eq!(tail.tail(2), vec!["l3", "l4"]);
        assert!(tail.clone().tail(0).is_empty());
    }

    #[test]
    fn console_log_rotates_keeping_one_generation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let mut log = ConsoleLog::with_limit(&path, 10).unwrap();
        log.append(b"12345678").unwrap();
        log.append(b"abcd").unwrap(); // would exceed 10 → rotate first
        log.append(b"ef").unwrap();
        log.append(b"XYZXYZ").unwrap(); // rotates again, replacing the old .1
        assert_eq!(std::fs::read(&path).unwrap(), b"XYZXYZ");
        assert_eq!(
            std::fs::read(dir.path().join("console.log.1")).unwrap(),
            b"abcdef"
        );
        // Reopening continues the size count from the file.
        let mut again = ConsoleLog::with_limit(&path, 10).unwrap();
        again.append(b"12345").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"12345");
    }

    #[test]
    fn pump_copies_bytes_and_tail_until_the_writer_closes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let log = ConsoleLog::open(&path).unwrap();
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let mut writer = File::from(w);
        writer.write_all(b"hello\nbad \xff byte\npartial").unwrap();
        drop(writer);
        let tail = ConsoleTail::default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let summary = rt.block_on(pump_console(r, log, tail.clone()));
        assert_eq!(summary.bytes, 24);
        assert!(summary.write_error.is_none() && summary.read_error.is_none());
        assert_eq!(tail.tail(5), vec!["hello", "bad \u{fffd} byte", "partial"]);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"hello\nbad \xff byte\npartial"
        );
    }

    fn make_file(path: &Path, mode: u32) {
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn bare_name_is_found_beside_the_controller_before_path() {
        let exe_dir = tempfile::tempdir().unwrap();
        let path_dir = tempfile::tempdir().unwrap();
        make_file(&exe_dir.path().join("srv"), 0o755);
        make_file(&path_dir.path().join("srv"), 0o755);
        make_file(&path_dir.path().join("other"), 0o755);
        let path_var = path_dir.path().as_os_str();
        let got = resolve_program("srv", Path::new("/"), Some(exe_dir.path()), Some(path_var));
        assert_eq!(got.unwrap(), exe_dir.path().join("srv"));
        let got = resolve_program(
            "other",
            Path::new("/"),
            Some(exe_dir.path()),
            Some(path_var),
        );
        assert_eq!(got.unwrap(), path_dir.path().join("other"));
    }

    #[test]
    fn lookup_errors_name_the_program() {
        let dir = tempfile::tempdir().unwrap();
        make_file(&dir.path().join("noexec"), 0o644);
        let err = resolve_program(
            "no-such-server",
            dir.path(),
            None,
            Some(dir.path().as_os_str()),
        )
        .unwrap_err();
        assert!(matches!(&err, SpawnError::NotFound { program } if program == "no-such-server"));
        assert!(err.to_string().contains("\"no-such-server\" not found"));
        let err =
            resolve_program("noexec", dir.path(), None, Some(dir.path().as_os_str())).unwrap_err();
        assert!(matches!(err, SpawnError::NotExecutable { .. }));
        // A relative path is relative to the server directory.
        let err = resolve_program("./noexec", dir.path(), None, None).unwrap_err();
        assert!(
            matches!(err, SpawnError::NotExecutable { path } if path == dir.path().join("./noexec"))
        );
        let err = resolve_program("./missing", dir.path(), None, None).unwrap_err();
        assert!(matches!(err, SpawnError::NotFound { .. }));
        // A directory is not a program.
        let err = resolve_program(".", dir.path(), None, None).unwrap_err();
        assert!(matches!(
            err,
            SpawnError::NotFound { .. } | SpawnError::NotExecutable { .. }
        ));
    }
}
