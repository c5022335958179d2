//! Processes: the one reaper of every child the controller has (server, probes, hooks,
//! diagnostics, and orphans adopted as child subreaper), time-limited helper commands,
//! and (to come) the server's spawn and whole-tree kill.
//!
//! Exactly one place calls `waitpid`: [`Reaper::reap_all`]. Everything that wants an exit
//! status registers its pid with [`Reaper::watch`] right after spawning it — before the
//! next `.await`, so on the single-threaded runtime no exit can be reaped unclaimed in
//! between. `tokio::process` is not used for that reason: it reaps its own children and
//! would race this reaper for exit statuses.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
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

/// Keeps reaping on every SIGCHLD (and once a second, in case a signal was coalesced
/// away) until the runtime ends. Unclaimed exits go to `unclaimed`.
pub async fn reap_forever(
    reaper: Rc<Reaper>,
    unclaimed: tokio::sync::mpsc::UnboundedSender<(i32, ExitInfo)>,
) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigchld = signal(SignalKind::child())?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
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
