//! The imperative shell of `qoscntrlr run`: one `tokio::select!` loop on a current-thread
//! runtime (inside a `LocalSet`) that turns the world — reaped children, probe results,
//! pipe messages, operator commands, signals, timers — into [`core::Event`]s, feeds them
//! to the [`Controller`], and carries out the [`Action`]s it returns through the module
//! that owns each effect. Decisions live in the core; this file only wires.

use std::cell::Cell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::rc::Rc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Local};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};

use crate::cgroup::{self, AsyncEventsWatch, CgroupSetting, Containment, Decision, EventsWatch};
use crate::cli::{EXIT_CONFIG, EXIT_LOCKED, EXIT_SOFTWARE};
use crate::config::{self, Config, ProbeTarget};
use crate::control::{self, ControlCommand, ControlEvent, ControlResponse};
use crate::core::{
    Action, Alert, Component, Controller, Event, Health, IncidentOutcome, Policy, StateName,
    STALL_MIN,
};
use crate::diagnostics::{self, DiagReport, DiagRequest};
use crate::events::{EventRecord, EventsFile};
use crate::failover::{self, HealthBoard, HookEvent, TriggerFile};
use crate::fdreserve;
use crate::host::{BoundedProbe, HostSampler};
use crate::journal::{self, Journal, Priority, Reporter};
use crate::lock::{DataDirLock, LockError, ServerRecord, StateFile};
use crate::metrics::{self, MetricsSnapshot, ResourceGauges};
use crate::pipe::{self, PipeEvent};
use crate::probe::{self, ProbeOutcome};
use crate::process::{self, ConsoleTail, ExitInfo, Reaper, ServerSpec};
use crate::qoslog::{LogHandoff, QosLog};
use crate::reexec::{self, Carried, Handoff};
use crate::rules::{Item, Reading, Readings};
use crate::sampler::{Sample, Sampler};
use crate::sdnotify::SdNotify;
use crate::status::{self, StatusSnapshot};
use crate::timefmt;
use crate::usage::UsageFile;

/// TEST-ONLY hook: when this variable is `1`, SIGUSR2 blocks the supervision loop's
/// thread for [`TEST_WEDGE_FOR`], so a test can prove that `WATCHDOG=1` stops when the
/// loop is wedged (tests/sdnotify_run.rs). Never set it in production: it exists because
/// a real wedge (a blocking syscall, a deadlock) cannot be provoked from outside.
const TEST_WEDGE_VARIABLE: &str = "QOSCNTRLR_TEST_WEDGE_SIGNAL";
const TEST_WEDGE_FOR: Duration = Duration::from_secs(30);

/// TEST-ONLY hook: when this variable is `1`, `qoscntrlr reexec` hands the new image a
/// supervision state it cannot read (after the check passed on the real one), so a test
/// can prove the fallback — the server is adopted, not abandoned. Never set it in
/// production.
const TEST_BAD_HANDOFF_VARIABLE: &str = "QOSCNTRLR_TEST_REEXEC_BAD_STATE";

/// Time limit of a failover or recovery hook.
const HOOK_LIMIT: Duration = Duration::from_secs(30);
/// How long stopping waits for the mailer to spool what it holds.
const MAILER_CLOSE_LIMIT: Duration = Duration::from_secs(2);
/// The loop wakes at least this often, so that its own stalls are measured promptly.
const STALL_TICK: Duration = Duration::from_millis(250);
/// Lines kept for the body of alert mails.
const RECENT_LINES: usize = 60;
/// Console lines handed to diagnostics and mails.
const CONSOLE_TAIL_LINES: usize = 50;
/// Queue between the pipe and the loop: past this a flooding client waits (its socket
/// is not read), the loop never does.
const PIPE_QUEUE: usize = 1024;
/// How long a re-exec waits, right before handing over, for the pipe's clients to be
/// read (see the loop).
const PIPE_SETTLE: Duration = Duration::from_millis(2);
const CONSOLE_LOG_NAME: &str = "qoscntrlr-console.log";
/// The tree mark (see [`process::TREE_MARK_ENV`]): servers and helpers carry it.
use crate::process::TREE_MARK_ENV;
/// How long the end of a killed tree (`populated 0` of the server's cgroup) is awaited
/// before a restart or the controller's exit goes ahead regardless (a process stuck in
/// uninterruptible sleep ignores even SIGKILL until its I/O returns).
const CGROUP_EMPTY_LIMIT: Duration = Duration::from_secs(10);

/// The containment decided at start: the cgroup the server runs in, or why there is
/// none (shown in the log, `status` and `check-config`). Carried as it is across a
/// re-exec: the running server stays where it was started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainmentState {
    pub setting: CgroupSetting,
    pub active: Option<Containment>,
    /// Why the server is not contained (`active` is `None`).
    pub reason: Option<String>,
}

impl ContainmentState {
    /// The `containment` object of `status --json`.
    pub fn status(&self) -> status::ContainmentStatus {
        status::ContainmentStatus {
            setting: self.setting.to_string(),
            mode: if self.active.is_some() {
                "cgroup"
            } else {
                "proc"
            }
            .into(),
            cgroup: self.active.as_ref().map(|c| c.server.display().to_string()),
            layout: self.active.as_ref().map(|c| c.layout.as_str().to_string()),
            controllers: self
                .active
                .as_ref()
                .map(|c| c.controllers.clone())
                .unwrap_or_default(),
            reason: self.reason.clone(),
        }
    }

    /// One line: which mode the controller is in.
    pub fn describe(&self) -> String {
        match (&self.active, &self.reason) {
            (Some(c), _) => format!("QOS_CGROUP={}: server contained in {}", self.setting, c.describe()),
            (None, reason) => format!(
                "QOS_CGROUP={}: not contained; the server's process tree is found through /proc ({})",
                self.setting,
                reason.as_deref().unwrap_or("no cgroup v2")
            ),
        }
    }
}

/// Decide and set up the containment for `cfg` (creating cgroups, moving the controller
/// when delegated). `QOS_CGROUP=on` where it is impossible is an error with the reason;
/// `auto` falls back to the `/proc` tree and says why. `saved`: a containment carried
/// over from an earlier process of this controller (re-exec), adopted as it is.
pub fn set_up_containment(
    cfg: &Config,
    saved: Option<Containment>,
) -> Result<ContainmentState, cgroup::CgroupError> {
    let setting = cfg.cgroup;
    let fallback = |reason: String| -> Result<ContainmentState, cgroup::CgroupError> {
        if setting == CgroupSetting::On {
            Err(cgroup::CgroupError::Unavailable(reason))
        } else {
            Ok(ContainmentState {
                setting,
                active: None,
                reason: Some(reason),
            })
        }
    };
    if let Some(saved) = saved {
        return match Containment::adopt(saved) {
            Ok(c) => Ok(ContainmentState {
                setting,
                active: Some(c),
                reason: None,
            }),
            Err(e) => fallback(e.to_string()),
        };
    }
    match cgroup::detect(setting, &cfg.data_directory) {
        Decision::Uncontained(reason) => fallback(reason),
        Decision::Contain(plan) => match cgroup::setup(&plan) {
            Ok(c) => Ok(ContainmentState {
                setting,
                active: Some(c),
                reason: None,
            }),
            Err(e) => fallback(e.to_string()),
        },
    }
}

/// The containment of a re-executed controller: the one handed over, else (an older or
/// unreadable handoff) what detection finds — but only if the running server is in
/// that cgroup; a server started uncontained stays uncontained until the next start.
/// Never fails: the server keeps running whatever the setting says.
fn containment_after_reexec(cfg: &Config, restore: &Restore) -> ContainmentState {
    let state = restore.shell.as_ref().ok();
    let server = restore
        .carried
        .server
        .or_else(|| state.and_then(|s| s.server.as_ref().map(|s| s.pid)));
    let uncontained = |reason: String| ContainmentState {
        setting: cfg.cgroup,
        active: None,
        reason: Some(reason),
    };
    let candidate = match state.and_then(|s| s.containment.clone()) {
        Some(handed) => match handed.active {
            Some(c) => match Containment::adopt(c) {
                Ok(c) => ContainmentState {
                    active: Some(c),
                    ..handed
                },
                Err(e) => uncontained(e.to_string()),
            },
            None => return handed,
        },
        None => match set_up_containment(cfg, None) {
            Ok(found) => found,
            Err(e) => uncontained(e.to_string()),
        },
    };
    match (server, &candidate.active) {
        (Some(pid), Some(c)) if !c.members().unwrap_or_default().contains(&pid) => uncontained(format!(
            "the running server (pid {pid}) is not in cgroup {}; containment applies from the next start",
            c.server.display()
        )),
        _ => candidate,
    }
}

/// The reason the core gives diagnostics an operator asked for (`qoscntrlr diagnose`).
const OPERATOR_DIAGNOSTICS: &str = "operator";

/// Settings set up once at start (files, sockets, listeners, timers): a reload keeps
/// their running value. One list makes both the code and [`START_ONLY_KEYS`] (which the
/// dcontroller.ini(5) man page reads): add a key here and both follow.
macro_rules! start_only_settings {
    ($($key:literal => $field:ident),* $(,)?) => {
        /// Keys a reload does not apply (the running value stays until a restart).
        pub const START_ONLY_KEYS: &[&str] = &[$($key),*];

        fn keep_start_only(running: &Config, new: &mut Config, changed: &mut Vec<&'static str>) {
            $(
                if running.$field != new.$field {
                    new.$field = running.$field.clone();
                    changed.push($key);
                }
            )*
        }
    };
}

start_only_settings!(
    "DATA_DIRECTORY" => data_directory,
    "QOS_PIPE" => pipe,
    "QOS_CONTROL_SOCKET" => control_socket,
    "QOS_CONTROL_GROUP" => control_group,
    "QOS_READINESS_LISTEN" => readiness_listen,
    "QOS_AGENT_LISTEN" => agent_listen,
    "QOS_METRICS_LISTEN" => metrics_listen,
    "QOS_RESOURCE_INTERVAL" => resource_interval,
    "QOS_LOG_MAX_SIZE" => log_max_size,
    "QOS_LOG_RETENTION_DAYS" => log_retention_days,
    "QOS_CGROUP" => cgroup,
);

/// Run the controller with `cfg`, read from `config_path` (re-read on SIGHUP); returns
/// the exit code.
pub fn run(cfg: Config, config_path: &Path) -> u8 {
    // First, before any thread exists (the journal starts one): it edits the environment.
    let restore = match reexec::take_from_env() {
        None => None,
        Some(Ok(inherited)) => Some(Restore::read(inherited)),
        Some(Err(e)) => {
            eprintln!("qoscntrlr: after a re-exec: {e}; starting afresh");
            None
        }
    };
    let journal = Journal::start();
    let code = run_reporting(cfg, config_path, journal.reporter(), restore);
    if code != 0 {
        journal.say(Priority::Err, &format!("Exiting with code {code}"));
    } else {
        journal.say(Priority::Info, "Exiting with code 0");
    }
    journal.finish();
    code
}

fn run_reporting(
    cfg: Config,
    config_path: &Path,
    journal: Reporter,
    mut restore: Option<Restore>,
) -> u8 {
    let mut cfg = cfg;
    let mut kept = Vec::new();
    if let Some(Ok(shell)) = restore.as_ref().map(|r| &r.shell) {
        // What is bound and open stays as it is, whatever the file now says.
        kept = shell.bound.apply(&mut cfg);
    }
    if let Err(e) = std::fs::create_dir_all(&cfg.data_directory) {
        journal.say(
            Priority::Err,
            &format!(
                "Cannot create data directory {}: {e}",
                cfg.data_directory.display()
            ),
        );
        return EXIT_CONFIG;
    }
    if let Err(e) = process::become_subreaper() {
        // Without it, daemonized grandchildren escape to init; the group kill still works.
        journal.say(
            Priority::Warning,
            &format!("Cannot become child subreaper: {e}"),
        );
    }
    let inherited_lock = restore
        .as_mut()
        .and_then(|r| reexec::own(r.carried.lock.take()));
    let locked = match inherited_lock {
        Some(fd) => DataDirLock::adopt(fd, &cfg.data_directory),
        None => DataDirLock::acquire(&cfg.data_directory),
    };
    let lock = match locked {
        Ok(lock) => lock,
        Err(e @ LockError::Held { .. }) => {
            journal.say(Priority::Err, &e.to_string());
            return EXIT_LOCKED;
        }
        Err(e) => {
            journal.say(Priority::Err, &e.to_string());
            return EXIT_SOFTWARE;
        }
    };
    // After the lock (a second controller must not touch this one's cgroups) and before
    // the runtime's threads exist.
    let containment = match restore.as_ref() {
        Some(r) => containment_after_reexec(&cfg, r),
        None => match set_up_containment(&cfg, None) {
            Ok(state) => state,
            Err(e) => {
                journal.say(Priority::Err, &e.to_string());
                return EXIT_CONFIG;
            }
        },
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            journal.say(Priority::Err, &format!("Cannot start the runtime: {e}"));
            return EXIT_SOFTWARE;
        }
    };
    let lock_notes = lock.notes().to_vec();
    let lock_fd = lock.raw_fd();
    let code = tokio::task::LocalSet::new().block_on(&runtime, async move {
        let shell = match restore {
            Some(restore) => {
                Shell::restore(
                    cfg,
                    config_path.to_path_buf(),
                    lock_fd,
                    restore,
                    kept,
                    journal,
                    containment,
                )
                .await
            }
            None => {
                Shell::start(
                    cfg,
                    config_path.to_path_buf(),
                    lock_fd,
                    lock_notes,
                    journal,
                    containment,
                )
                .await
            }
        };
        match shell {
            Ok(shell) => shell.run().await,
            Err(code) => code,
        }
    });
    drop(lock);
    code
}

/// The running server as the shell knows it.
#[derive(Debug, Clone)]
struct ServerProc {
    pid: i32,
    started: Instant,
}

/// Results that background tasks hand back to the loop.
enum TaskResult {
    Probe(ProbeOutcome),
    /// Incident, whether an operator asked for it (`qoscntrlr diagnose`), the report.
    Diagnostics(Option<u64>, bool, DiagReport),
    ServerExit {
        pid: i32,
        exit: ExitInfo,
    },
    Log(Component, String),
    /// The new binary's check for `qoscntrlr reexec` request `request` has ended.
    ReexecChecked {
        request: u64,
        outcome: reexec::CheckOutcome,
    },
    /// The mailer has spooled what it held: the image can be replaced.
    ReexecReady {
        request: u64,
        version: String,
    },
}

/// Pids of server processes that have ended (the server itself and what was killed of
/// its tree), newest last and bounded: messages they wrote can still be waiting in the
/// pipe after a successor has started.
#[derive(Debug, Default)]
struct EndedServers(VecDeque<i32>);

impl EndedServers {
    const KEPT: usize = 256;

    fn add(&mut self, pids: impl IntoIterator<Item = i32>) {
        for pid in pids {
            if !self.0.contains(&pid) {
                if self.0.len() == Self::KEPT {
                    self.0.pop_front();
                }
                self.0.push_back(pid);
            }
        }
    }

    /// A new server may have been given a recycled pid.
    fn remove(&mut self, pid: i32) {
        self.0.retain(|p| *p != pid);
    }

    fn contains(&self, pid: i32) -> bool {
        self.0.contains(&pid)
    }
}

struct Shell {
    cfg: Config,
    config_path: PathBuf,
    /// stderr: start facts, state changes, incidents and errors (the journal under systemd).
    journal: Reporter,
    ctl: Controller,
    log: QosLog,
    events: EventsFile,
    reaper: Rc<Reaper>,
    server: Option<ServerProc>,
    /// The last server's pid/pgid, for killing leftovers after it has exited.
    last_pgid: Option<i32>,
    ended: EndedServers,
    console: ConsoleTail,
    trigger: TriggerFile,
    health: HealthBoard,
    state_file: StateFile,
    sd: Option<SdNotify>,
    sampler: Sampler,
    host: HostSampler,
    /// Write-latency and free-space probes, each on its own thread (keyed by item).
    fs_probes: HashMap<Item, BoundedProbe>,
    usage: UsageFile,
    webhook: Option<crate::webhook::WebhookHandle>,
    last_sample: Option<(Sample, DateTime<Local>)>,
    tasks: mpsc::UnboundedSender<TaskResult>,
    tasks_rx: Option<mpsc::UnboundedReceiver<TaskResult>>,
    replies: HashMap<u64, oneshot::Sender<ControlResponse>>,
    /// `diagnose` requests, answered with the file's path when the collection ends.
    diagnose_waiters: Vec<oneshot::Sender<ControlResponse>>,
    next_request: u64,
    recent: VecDeque<String>,
    started_wall: DateTime<Local>,
    incident_prefix: String,
    metrics: MetricsSnapshot,
    metrics_tx: watch::Sender<MetricsSnapshot>,
    mailer: Option<crate::mail::MailerHandle>,
    queue: VecDeque<Event>,
    exit: Option<u8>,
    sockets: Vec<PathBuf>,
    pipe_rx: Option<mpsc::Receiver<PipeEvent>>,
    control_rx: Option<mpsc::Receiver<ControlEvent>>,
    last_diagnostics: Option<String>,
    /// What `qoscntrlr reexec` carries across the `execve`: the lock, the listeners and
    /// the console pipe of the running server (cleared when its pump ends).
    lock_fd: RawFd,
    listen_fds: ListenFds,
    console_fd: Rc<Cell<Option<RawFd>>>,
    /// Duplicates of the connections of pending `reexec` requests, by request.
    reexec_connections: HashMap<u64, OwnedFd>,
    /// The `reexec` request being checked or prepared (one at a time).
    reexec_pending: Option<u64>,
    /// Checked and ready: replace the image at the end of this loop turn.
    exec_due: Option<(u64, String)>,
    /// Set in a re-executed image until its first loop turn.
    resumed: Option<Resumed>,
    /// Times this controller (this pid) has replaced its image.
    reexecs: u32,
    /// When the `.out` was last checked for having been removed or replaced.
    log_checked: Option<Instant>,
    /// The running server's record, not yet in the state file (the disk refused it).
    state_pending: Option<ServerRecord>,
    /// Since when the controller has been short of file descriptors (reserve released).
    fd_short_since: Option<Instant>,
    /// The mailer was closed (its held alerts spooled) for a re-exec; alerts raised
    /// meanwhile wait in `mail_held`.
    mail_closing: bool,
    mail_held: Vec<crate::mail::Alert>,
    /// Mailer close rounds of the pending re-exec (alerts kept arriving meanwhile).
    mail_rounds: u32,
    containment: ContainmentState,
    /// A spawn waits for the previous server's cgroup to empty (since then).
    spawn_waiting: Option<Instant>,
    /// When `cgroup.kill` was last written, for the log line at `populated 0`.
    cgroup_killed_at: Option<Instant>,
    /// `oom_kill` of the server's cgroup already reported.
    oom_kills_seen: Option<u64>,
}

/// The listening descriptors, for the handoff.
#[derive(Debug, Default, Clone, Copy)]
struct ListenFds {
    pipe: Option<RawFd>,
    control: Option<RawFd>,
    readiness: Option<RawFd>,
    agent: Option<RawFd>,
    metrics: Option<RawFd>,
}

/// What a re-executed image still has to do at its first loop turn.
struct Resumed {
    from_version: String,
    /// `CLOCK_MONOTONIC` at the old image's last loop turn (unknown in the fallback).
    handed_at_ns: Option<u64>,
    reply: Option<OwnedFd>,
    /// Actions of the fallback adoption, to run at the first turn.
    actions: Vec<Action>,
    /// Why the full state could not be restored (the fallback was used).
    fallback: Option<String>,
}

/// The shell's part of the handoff. Derived, so a field added here is carried.
#[derive(Debug, Serialize, Deserialize)]
struct ShellHandoff {
    server: Option<ServerHandoff>,
    last_pgid: Option<i32>,
    ended: Vec<i32>,
    /// RFC 3339: the controller's start, kept across images (status `since`).
    started_wall: String,
    incident_prefix: String,
    recent: Vec<String>,
    console_tail: Vec<String>,
    last_diagnostics: Option<String>,
    health: Health,
    metrics: MetricsSnapshot,
    log: LogHandoff,
    bound: Bound,
    reexecs: u32,
    /// The server's record the disk has not taken yet (retried by the new image).
    #[serde(default)]
    state_pending: Option<ServerRecord>,
    /// Absent from the handoff of an image that predates containment (its server was
    /// not contained).
    #[serde(default)]
    containment: Option<ContainmentState>,
    #[serde(default)]
    oom_kills_seen: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ServerHandoff {
    pid: i32,
    #[serde(with = "crate::core::instants::instant")]
    started: Instant,
}

/// Settings whose running value is bound or open (the carried descriptors are these).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Bound {
    data_directory: PathBuf,
    pipe: PathBuf,
    control_socket: PathBuf,
    control_group: Option<String>,
    readiness_listen: Option<SocketAddr>,
    agent_listen: Option<SocketAddr>,
    metrics_listen: Option<SocketAddr>,
    resource_interval: Duration,
    log_max_size: u64,
    log_retention_days: u32,
}

impl Bound {
    fn of(cfg: &Config) -> Bound {
        Bound {
            data_directory: cfg.data_directory.clone(),
            pipe: cfg.pipe.clone(),
            control_socket: cfg.control_socket.clone(),
            control_group: cfg.control_group.clone(),
            readiness_listen: cfg.readiness_listen,
            agent_listen: cfg.agent_listen,
            metrics_listen: cfg.metrics_listen,
            resource_interval: cfg.resource_interval,
            log_max_size: cfg.log_max_size,
            log_retention_days: cfg.log_retention_days,
        }
    }

    /// Put the running values into `cfg`; the keys whose value in the file differs.
    fn apply(&self, cfg: &mut Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        macro_rules! keep {
            ($($key:literal => $field:ident),* $(,)?) => {$(
                if cfg.$field != self.$field {
                    cfg.$field = self.$field.clone();
                    changed.push($key);
                }
            )*};
        }
        keep!(
            "DATA_DIRECTORY" => data_directory,
            "QOS_PIPE" => pipe,
            "QOS_CONTROL_SOCKET" => control_socket,
            "QOS_CONTROL_GROUP" => control_group,
            "QOS_READINESS_LISTEN" => readiness_listen,
            "QOS_AGENT_LISTEN" => agent_listen,
            "QOS_METRICS_LISTEN" => metrics_listen,
            "QOS_RESOURCE_INTERVAL" => resource_interval,
            "QOS_LOG_MAX_SIZE" => log_max_size,
            "QOS_LOG_RETENTION_DAYS" => log_retention_days,
        );
        changed
    }
}

/// The handoff as the new image reads it.
struct Restore {
    carried: Carried,
    from_version: String,
    monotonic_ns: Option<u64>,
    shell: Result<ShellHandoff, String>,
    core: Result<Controller, String>,
}

impl Restore {
    fn read(inherited: reexec::Inherited) -> Restore {
        match inherited.handoff {
            Ok(handoff) => {
                let (shell, core) = decode_handoff(&handoff);
                Restore {
                    carried: inherited.carried,
                    from_version: handoff.from_version,
                    monotonic_ns: Some(handoff.monotonic_ns),
                    shell,
                    core,
                }
            }
            Err(e) => Restore {
                carried: inherited.carried,
                from_version: "unknown".into(),
                monotonic_ns: None,
                shell: Err(e.clone()),
                core: Err(e),
            },
        }
    }
}

fn decode_handoff(handoff: &Handoff) -> (Result<ShellHandoff, String>, Result<Controller, String>) {
    let anchor = reexec::anchor_for(handoff.monotonic_ns);
    crate::core::instants::with_anchor(anchor, || {
        (
            serde_json::from_value(handoff.shell.clone())
                .map_err(|e| format!("controller state: {e}")),
            serde_json::from_value(handoff.core.clone())
                .map_err(|e| format!("supervision state: {e}")),
        )
    })
}

/// `reexec-check`: this build can read every part of `handoff`.
pub fn check_handoff(handoff: &Handoff) -> Result<(), String> {
    let (shell, core) = decode_handoff(handoff);
    shell?;
    core?;
    Ok(())
}

impl Shell {
    async fn start(
        cfg: Config,
        config_path: PathBuf,
        lock_fd: RawFd,
        notes: Vec<String>,
        journal: Reporter,
        containment: ContainmentState,
    ) -> Result<Shell, u8> {
        let started_wall = Local::now();
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        journal.say(
            Priority::Info,
            &format!("Configuration {}", absolute(&config_path).display()),
        );
        journal.say(
            Priority::Info,
            &format!("Data directory {}", absolute(&cfg.data_directory).display()),
        );
        let (mut log, lifecycle) = match QosLog::open(
            &cfg.data_directory,
            started_wall,
            cfg.log_retention_days,
            cfg.log_max_size,
        ) {
            Ok(opened) => opened,
            Err(e) => {
                journal.say(Priority::Err, &e.to_string());
                return Err(EXIT_CONFIG);
            }
        };
        journal.say(
            Priority::Info,
            &format!("Log file {}", absolute(log.path()).display()),
        );
        journal.say(Priority::Info, &containment.describe());
        log.line(
            Component::Controller,
            "Starting QOSPipeWatcher",
            started_wall,
        );
        log.header(&cfg, started_wall);
        log.line(Component::Controller, &containment.describe(), started_wall);
        for (from, to) in &lifecycle.renamed {
            log.line(
                Component::Controller,
                &format!(
                    "Previous log {} renamed to {}",
                    from.display(),
                    to.display()
                ),
                started_wall,
            );
        }
        for deleted in &lifecycle.deleted {
            log.line(
                Component::Controller,
                &format!("Deleted old log {}", deleted.display()),
                started_wall,
            );
        }
        for problem in &lifecycle.problems {
            log.line(Component::Controller, problem, started_wall);
        }
        for note in &notes {
            journal.say(Priority::Warning, note);
            log.line(Component::Controller, note, started_wall);
        }
        let mut shell = Shell::new(
            cfg,
            config_path,
            log,
            started_wall,
            lock_fd,
            journal,
            containment,
        );
        match SdNotify::try_from_env() {
            Ok(sd) => shell.sd = sd,
            Err(e) => shell.line(
                Component::Controller,
                format!("systemd notification disabled: {e}"),
            ),
        }
        shell.kill_stale_server();
        shell.open_listeners(&mut Carried::default()).await;
        shell.start_common();
        Ok(shell)
    }

    /// The shell around an open log, before any listener or server.
    fn new(
        cfg: Config,
        config_path: PathBuf,
        mut log: QosLog,
        started_wall: DateTime<Local>,
        lock_fd: RawFd,
        journal: Reporter,
        containment: ContainmentState,
    ) -> Shell {
        let (events, event_errors) = EventsFile::open(&cfg.data_directory, cfg.log_retention_days);
        for e in event_errors {
            log.line(Component::Controller, &e.to_string(), Local::now());
        }
        let (tasks, tasks_rx) = mpsc::unbounded_channel();
        let policy = Policy::from_config(&cfg);
        let (metrics_tx, _) = watch::channel(MetricsSnapshot::new(status::ServerState::Stopped));
        let (usage, usage_errors) = UsageFile::open(&cfg.data_directory, cfg.log_retention_days);
        for e in usage_errors {
            log.line(
                Component::Controller,
                &format!("Usage file: {e}"),
                Local::now(),
            );
        }
        Shell {
            ctl: Controller::new(policy, Instant::now()),
            log,
            events,
            reaper: Reaper::new(),
            server: None,
            last_pgid: None,
            ended: EndedServers::default(),
            console: ConsoleTail::default(),
            trigger: TriggerFile::new(&cfg.data_directory),
            health: HealthBoard::new(Health::Down {
                reason: "starting".into(),
            }),
            state_file: StateFile::new(&cfg.data_directory),
            sd: None,
            sampler: Sampler::new(),
            host: HostSampler::default(),
            fs_probes: HashMap::new(),
            usage,
            webhook: None,
            last_sample: None,
            tasks,
            tasks_rx: Some(tasks_rx),
            replies: HashMap::new(),
            diagnose_waiters: Vec::new(),
            next_request: 1,
            recent: VecDeque::new(),
            started_wall,
            incident_prefix: timefmt::file_stamp(&started_wall),
            metrics: MetricsSnapshot::new(status::ServerState::Stopped),
            metrics_tx,
            mailer: None,
            queue: VecDeque::new(),
            exit: None,
            sockets: Vec::new(),
            pipe_rx: None,
            control_rx: None,
            last_diagnostics: None,
            lock_fd,
            listen_fds: ListenFds::default(),
            console_fd: Rc::new(Cell::new(None)),
            reexec_connections: HashMap::new(),
            reexec_pending: None,
            exec_due: None,
            resumed: None,
            reexecs: 0,
            log_checked: None,
            state_pending: None,
            fd_short_since: None,
            mail_closing: false,
            mail_held: Vec::new(),
            mail_rounds: 0,
            oom_kills_seen: containment
                .active
                .as_ref()
                .and_then(|c| cgroup::oom_kills(&c.server)),
            containment,
            spawn_waiting: None,
            cgroup_killed_at: None,
            cfg,
            config_path,
            journal,
        }
    }

    /// Diagnostics pruning and the mailer (which retries what is spooled).
    fn start_common(&mut self) {
        let held = fdreserve::init();
        if held < fdreserve::RESERVE {
            self.line(
                Component::Controller,
                format!(
                    "Only {held} of {} spare file descriptors could be reserved; RLIMIT_NOFILE is very low",
                    fdreserve::RESERVE
                ),
            );
        }
        let prune = diagnostics::prune(
            &self.cfg.data_directory.join(diagnostics::DIAG_DIR_NAME),
            self.cfg.diag_retention_days,
            self.cfg.diag_max_size,
        );
        for e in prune.errors {
            self.line(Component::Controller, format!("Diagnostics pruning: {e}"));
        }
        self.ensure_mailer();
        self.ensure_webhook();
        for line in self.cfg.rule_lines() {
            self.line(Component::Controller, line);
        }
        let pressure_rules = self.cfg.rules().iter().any(|r| r.item.is_pressure());
        if self.containment.active.is_none() && pressure_rules {
            self.line(
                Component::Controller,
                "Pressure limits and rules (QOS_MAX_*_PRESSURE, *_pressure items) get no samples: pressure is measured on the server's cgroup, and the server is not contained; each sample counts as missing",
            );
        }
    }

    /// Start the alert webhook if the configuration has one and it is not running.
    fn ensure_webhook(&mut self) {
        if self.webhook.is_some() {
            return;
        }
        if let Some(settings) = crate::webhook::WebhookSettings::from_config(&self.cfg) {
            self.start_webhook(settings);
        }
    }

    /// Start the mailer if the configuration has mail and it is not running.
    fn ensure_mailer(&mut self) {
        if self.mailer.is_none() {
            match crate::mail::MailSettings::from_config(&self.cfg) {
                Ok(Some(settings)) => self.start_mailer(settings),
                Ok(None) => {}
                Err(e) => self.line(Component::Controller, format!("Mail disabled: {e}")),
            }
        }
        self.mail_closing = false;
        if let Some(mailer) = &self.mailer {
            for alert in self.mail_held.drain(..) {
                mailer.submit(alert);
            }
        }
    }

    /// Close the mailer (it spools what it holds, for the next image), then ask for the
    /// exec. Alerts raised meanwhile are held and make another round.
    fn close_mailer_then_exec(&mut self, request: u64, version: String) {
        self.mail_rounds += 1;
        let tasks = self.tasks.clone();
        let mailer = self.mailer.take();
        // The webhook spools what it holds too; alerts raised meanwhile go straight to
        // its spool (see `post`), which the new image sends.
        let webhook = self.webhook.take();
        self.mail_closing = mailer.is_some();
        tokio::task::spawn_local(async move {
            if let Some(webhook) = webhook {
                webhook.close(MAILER_CLOSE_LIMIT).await;
            }
            if let Some(mailer) = mailer {
                mailer.close(MAILER_CLOSE_LIMIT).await;
            }
            let _ = tasks.send(TaskResult::ReexecReady { request, version });
        });
    }

    /// The image after `qoscntrlr reexec`: same pid, same log, sockets, server and
    /// state. Nothing is renamed, bound anew or spawned; if the state cannot be read, the
    /// server named in the handoff is adopted with fresh timers rather than abandoned.
    async fn restore(
        cfg: Config,
        config_path: PathBuf,
        lock_fd: RawFd,
        restore: Restore,
        kept: Vec<&'static str>,
        journal: Reporter,
        containment: ContainmentState,
    ) -> Result<Shell, u8> {
        let Restore {
            mut carried,
            from_version,
            monotonic_ns,
            shell: shell_state,
            core,
        } = restore;
        let now_wall = Local::now();
        let log_fd = reexec::own(carried.log.take());
        let (log, started_wall, renamed) = match &shell_state {
            Ok(state) => (
                QosLog::adopt(
                    &cfg.data_directory,
                    state.log.clone(),
                    log_fd,
                    cfg.log_max_size,
                ),
                DateTime::parse_from_rfc3339(&state.started_wall)
                    .map(|t| t.with_timezone(&Local))
                    .unwrap_or(now_wall),
                Vec::new(),
            ),
            Err(_) => {
                drop(log_fd);
                match QosLog::open(
                    &cfg.data_directory,
                    now_wall,
                    cfg.log_retention_days,
                    cfg.log_max_size,
                ) {
                    Ok((log, report)) => (log, now_wall, report.renamed),
                    Err(e) => {
                        journal.say(Priority::Err, &e.to_string());
                        return Err(EXIT_CONFIG);
                    }
                }
            }
        };
        let mut shell = Shell::new(
            cfg,
            config_path,
            log,
            started_wall,
            lock_fd,
            journal,
            containment,
        );
        for (from, to) in renamed {
            shell.line(
                Component::Controller,
                format!(
                    "Previous log {} renamed to {}",
                    from.display(),
                    to.display()
                ),
            );
        }
        let reexecuted = format!(
            "Controller re-executed: {from_version} -> {}",
            env!("CARGO_PKG_VERSION")
        );
        shell.journal.say(Priority::Notice, &reexecuted);
        shell.line(Component::Controller, reexecuted);
        let described = shell.containment.describe();
        shell.line(Component::Controller, described);
        match SdNotify::try_from_env() {
            Ok(sd) => shell.sd = sd,
            Err(e) => shell.line(
                Component::Controller,
                format!("systemd notification disabled: {e}"),
            ),
        }
        if !kept.is_empty() {
            shell.line(
                Component::Controller,
                format!(
                    "Re-exec: {} cannot change while the controller runs; the running value stays until the controller is restarted",
                    kept.join(", ")
                ),
            );
        }
        let now = Instant::now();
        let mut resumed = Resumed {
            from_version,
            handed_at_ns: monotonic_ns,
            reply: reexec::own(carried.reply.take()),
            actions: Vec::new(),
            fallback: None,
        };
        let server_pid = match (core, shell_state) {
            (Ok(mut ctl), Ok(state)) => {
                ctl.set_policy(Policy::from_config(&shell.cfg));
                ctl.resume_after_reexec(now);
                shell.ctl = ctl;
                shell.last_pgid = state.last_pgid;
                shell.ended.add(state.ended);
                shell.incident_prefix = state.incident_prefix;
                shell.recent = state.recent.into();
                for line in state.console_tail {
                    shell.console.push(line);
                }
                shell.last_diagnostics = state.last_diagnostics;
                shell.health.set(state.health);
                shell.metrics = state.metrics;
                shell.reexecs = state.reexecs;
                shell.state_pending = state.state_pending;
                if state.oom_kills_seen.is_some() {
                    shell.oom_kills_seen = state.oom_kills_seen;
                }
                state.server.map(|s| (s.pid, s.started))
            }
            (core, state) => {
                let reason = [core.err(), state.err()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("; ");
                let text =
                    format!("The state handed over by the previous image cannot be used: {reason}");
                shell.journal.say(Priority::Err, &text);
                shell.line(Component::Controller, text);
                resumed.fallback = Some(reason);
                match carried.server {
                    Some(pid) => {
                        let trigger = shell.trigger.exists();
                        let (ctl, actions) =
                            Controller::adopt(Policy::from_config(&shell.cfg), now, pid, trigger);
                        shell.ctl = ctl;
                        resumed.actions = actions;
                        shell.health.set(Health::Down {
                            reason: "adopted after a re-exec".into(),
                        });
                        Some((pid, now))
                    }
                    None => {
                        // No server to keep: an ordinary start (leftovers are killed).
                        shell.kill_stale_server();
                        None
                    }
                }
            }
        };
        shell.open_listeners(&mut carried).await;
        let console = reexec::own(carried.console.take());
        if let Some((pid, started)) = server_pid {
            shell.adopt_server(pid, started, console);
        } else {
            drop(console);
        }
        shell.resumed = Some(resumed);
        shell.start_common();
        Ok(shell)
    }

    /// Supervise `pid`, a child of this process spawned by a previous image.
    fn adopt_server(&mut self, pid: i32, started: Instant, console: Option<OwnedFd>) {
        // Before the reaper's first pass: an exit during the exec is a zombie waiting.
        let exited = self.reaper.watch(pid);
        let tasks = self.tasks.clone();
        tokio::task::spawn_local(async move {
            if let Ok(exit) = exited.await {
                let _ = tasks.send(TaskResult::ServerExit { pid, exit });
            }
        });
        if let Some(reader) = console {
            let path = self.cfg.data_directory.join(CONSOLE_LOG_NAME);
            // Even without a console log file the pipe must keep being drained, or the
            // server blocks on its next write.
            let (log, error) = process::ConsoleLog::open_or_unavailable(&path);
            if let Some(e) = error {
                self.line(
                    Component::Controller,
                    format!(
                        "Cannot open the console log {}: {e}; the server's output goes to the controller's stderr",
                        path.display()
                    ),
                );
            }
            self.pump_console(process::ConsoleCapture { reader, log });
        }
        self.ended.remove(pid);
        self.server = Some(ServerProc { pid, started });
        self.last_pgid = Some(pid);
    }

    /// Copy the server's console; the descriptor is remembered for a re-exec while the
    /// pump owns it.
    fn pump_console(&mut self, capture: process::ConsoleCapture) {
        let fd = capture.reader.as_raw_fd();
        self.console_fd.set(Some(fd));
        let shared = self.console_fd.clone();
        let tail = self.console.clone();
        tokio::task::spawn_local(async move {
            capture.pump(tail).await;
            if shared.get() == Some(fd) {
                shared.set(None);
            }
        });
    }

    /// A previous controller that died (SIGKILL) may have left its server running:
    /// never two servers.
    fn kill_stale_server(&mut self) {
        let stale = self.state_file.stale_server();
        // With containment the server's cgroup holds the whole stale tree (the recorded
        // server, and daemons that left its group and session): emptied in one step.
        let cgroup_handled = self.empty_stale_cgroup(stale.as_ref());
        if let Some(stale) = stale.filter(|_| !cgroup_handled) {
            self.line(
                Component::Controller,
                format!(
                    "Found server {} (pid {}) left running by a previous controller; killing its process tree",
                    stale.program, stale.pid
                ),
            );
            let report = process::kill_tree(stale.pid, stale.pgid, &HashSet::new());
            self.line(
                Component::Kill,
                format!("Killed {} leftover process(es)", report.killed.len()),
            );
        }
        let leftovers = tree_marked_processes(&self.tree_mark());
        if !leftovers.is_empty() {
            self.line(
                Component::Controller,
                format!(
                    "Found {} process(es) of a previous server's tree still running ({}); killing them",
                    leftovers.len(),
                    join_pids(&leftovers)
                ),
            );
            for pid in leftovers {
                // No group: an escaped daemon leads its own; its descendants are walked.
                process::kill_tree(pid, 0, &HashSet::new());
            }
        }
        if let Err(e) = self.state_file.clear() {
            self.line(Component::Controller, e.to_string());
        }
    }

    /// A previous controller killed by SIGKILL leaves its server running in the server's
    /// cgroup: empty it (kernel-exact, whatever left the process tree) before anything
    /// is started, with the same lines as the `/proc` way (`stale`: the server the state
    /// file recorded, if it still runs). Returns whether the cgroup could be read and
    /// so held every stale process.
    fn empty_stale_cgroup(&mut self, stale: Option<&ServerRecord>) -> bool {
        let Some(c) = self.containment.active.clone() else {
            return false;
        };
        let members = match c.members() {
            Ok(m) => m,
            Err(e) => {
                self.line(Component::Controller, e.to_string());
                return false;
            }
        };
        if members.is_empty() {
            return true;
        }
        let recorded = stale.filter(|s| members.contains(&s.pid));
        match recorded {
            Some(server) => {
                self.line(
                    Component::Controller,
                    format!(
                        "Found server {} (pid {}) left running by a previous controller; killing its process tree",
                        server.program, server.pid
                    ),
                );
                let others: Vec<i32> = members
                    .iter()
                    .copied()
                    .filter(|p| *p != server.pid)
                    .collect();
                if !others.is_empty() {
                    self.line(
                        Component::Controller,
                        format!(
                            "Found {} process(es) of a previous server's tree still running ({}); killing them",
                            others.len(),
                            join_pids(&others)
                        ),
                    );
                }
            }
            None => self.line(
                Component::Controller,
                format!(
                    "Found {} process(es) left in the server's cgroup {} by a previous controller ({}); killing them",
                    members.len(),
                    c.server.display(),
                    join_pids(&members)
                ),
            ),
        }
        if let Err(e) = c.kill(None) {
            self.line(Component::Kill, e.to_string());
            return false;
        }
        let emptied =
            EventsWatch::new(&c.server).and_then(|mut w| w.wait_empty_blocking(CGROUP_EMPTY_LIMIT));
        match emptied {
            Ok(true) => {
                self.line(
                    Component::Kill,
                    format!("Killed {} leftover process(es)", members.len()),
                );
                true
            }
            Ok(false) => {
                let left = c.members().unwrap_or_default();
                self.line(
                    Component::Kill,
                    format!(
                        "Still in the server's cgroup {} s after SIGKILL (uninterruptible?): {}",
                        CGROUP_EMPTY_LIMIT.as_secs(),
                        join_pids(&left)
                    ),
                );
                true
            }
            Err(e) => {
                self.line(Component::Kill, e.to_string());
                false
            }
        }
    }

    /// The value of [`TREE_MARK_ENV`] for servers of this data directory.
    fn tree_mark(&self) -> String {
        self.cfg.data_directory.display().to_string()
    }

    fn log_sender(&self) -> mpsc::UnboundedSender<String> {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let tasks = self.tasks.clone();
        tokio::task::spawn_local(async move {
            while let Some(line) = rx.recv().await {
                if tasks
                    .send(TaskResult::Log(Component::Controller, line))
                    .is_err()
                {
                    break;
                }
            }
        });
        tx
    }

    /// Bind the pipe, the control socket and the TCP listeners — or, after a re-exec,
    /// take the ones in `carried` as they are (same sockets, nothing unlinked or rebound).
    async fn open_listeners(&mut self, carried: &mut Carried) {
        let cfg = self.cfg.clone();
        let pipe = match reexec::own(carried.pipe.take()) {
            Some(fd) => unix_listener(fd).map_err(|e| e.to_string()),
            None => pipe::bind(&cfg.pipe, cfg.control_group.as_deref())
                .await
                .map_err(|e| e.to_string()),
        };
        match pipe {
            Ok(listener) => {
                self.listen_fds.pipe = Some(listener.as_raw_fd());
                let (tx, rx) = mpsc::channel(PIPE_QUEUE);
                tokio::task::spawn_local(pipe::serve(listener, tx));
                self.pipe_rx = Some(rx);
                self.sockets.push(cfg.pipe.clone());
            }
            Err(e) => self.line(
                Component::Controller,
                format!("Cannot open the message pipe {}: {e}", cfg.pipe.display()),
            ),
        }
        let group_gid = match cfg.control_group.as_deref().map(control::resolve_group) {
            Some(Ok(gid)) => Some(gid),
            Some(Err(e)) => {
                self.line(Component::Controller, e.to_string());
                None
            }
            None => None,
        };
        let control = match reexec::own(carried.control.take()) {
            Some(fd) => unix_listener(fd).map_err(|e| e.to_string()),
            None => control::bind(&cfg.control_socket, cfg.control_group.as_deref())
                .await
                .map_err(|e| e.to_string()),
        };
        match control {
            Ok(listener) => {
                self.listen_fds.control = Some(listener.as_raw_fd());
                let (tx, rx) = mpsc::channel(64);
                tokio::task::spawn_local(control::serve(listener, group_gid, tx));
                self.control_rx = Some(rx);
                self.sockets.push(cfg.control_socket.clone());
            }
            Err(e) => self.line(
                Component::Controller,
                format!(
                    "Cannot open the control socket {}: {e}",
                    cfg.control_socket.display()
                ),
            ),
        }
        let inherited = reexec::own(carried.readiness.take());
        if let Some(addr) = cfg.readiness_listen {
            match tcp_listener(inherited, addr).await {
                Ok(l) => {
                    self.listen_fds.readiness = Some(l.as_raw_fd());
                    tokio::task::spawn_local(failover::serve_readiness(l, self.health.subscribe()));
                    self.line(
                        Component::Controller,
                        format!("Readiness endpoint listening on http://{addr}/"),
                    );
                }
                Err(e) => self.line(
                    Component::Controller,
                    format!("Cannot listen for readiness on {addr}: {e}"),
                ),
            }
        }
        let inherited = reexec::own(carried.agent.take());
        if let Some(addr) = cfg.agent_listen {
            match tcp_listener(inherited, addr).await {
                Ok(l) => {
                    self.listen_fds.agent = Some(l.as_raw_fd());
                    tokio::task::spawn_local(failover::serve_agent(l, self.health.subscribe()));
                    self.line(
                        Component::Controller,
                        format!("HAProxy agent-check listening on {addr}"),
                    );
                }
                Err(e) => self.line(
                    Component::Controller,
                    format!("Cannot listen for the HAProxy agent on {addr}: {e}"),
                ),
            }
        }
        let inherited = reexec::own(carried.metrics.take());
        if let Some(addr) = cfg.metrics_listen {
            match tcp_listener(inherited, addr).await {
                Ok(l) => {
                    self.listen_fds.metrics = Some(l.as_raw_fd());
                    tokio::task::spawn_local(metrics::serve(l, self.metrics_tx.subscribe()));
                    self.line(
                        Component::Controller,
                        format!("Metrics listening on http://{addr}/metrics"),
                    );
                }
                Err(e) => self.line(
                    Component::Controller,
                    format!("Cannot listen for metrics on {addr}: {e}"),
                ),
            }
        }
    }

    /// Write one line now (and keep it for alert mails).
    fn line(&mut self, component: Component, text: impl AsRef<str>) {
        if let Some(priority) = journal::error_priority(component, text.as_ref()) {
            self.journal.say(priority, text.as_ref());
        }
        let wall = Local::now();
        let mut full = crate::qoslog::format_line(component, text.as_ref(), &wall);
        self.log.write_line(full.as_bytes(), wall);
        full.truncate(full.trim_end().len());
        if self.recent.len() == RECENT_LINES {
            self.recent.pop_front();
        }
        self.recent.push_back(full);
    }

    async fn run(mut self) -> u8 {
        let Some(mut tasks_rx) = self.tasks_rx.take() else {
            return EXIT_SOFTWARE;
        };
        let mut pipe_rx = self.pipe_rx.take();
        let mut control_rx = self.control_rx.take();
        let (unclaimed_tx, mut unclaimed_rx) = mpsc::unbounded_channel();
        tokio::task::spawn_local(reap_loop(self.reaper.clone(), unclaimed_tx));
        let (mut sigterm, mut sigint, mut sighup) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(a), Ok(b), Ok(c)) => (a, b, c),
            _ => {
                self.line(Component::Controller, "Cannot install signal handlers");
                return EXIT_SOFTWARE;
            }
        };
        let watchdog_every = self
            .sd
            .as_ref()
            .and_then(|sd| sd.watchdog_interval())
            .unwrap_or(Duration::from_secs(3600));
        let mut watchdog = tokio::time::interval(watchdog_every);
        let mut resources = tokio::time::interval(self.cfg.resource_interval);
        resources.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut log_retry = tokio::time::interval(Duration::from_secs(5));
        let mut test_wedge = test_wedge_signal();
        // The server cgroup's cgroup.events (and memory.events): the end of a tree and
        // OOM kills arrive as notifications, not by polling.
        let mut cgroup_watch = match &self.containment.active {
            Some(c) => match EventsWatch::new(&c.server)
                .map_err(|e| e.to_string())
                .and_then(|w| AsyncEventsWatch::new(w).map_err(|e| e.to_string()))
            {
                Ok(w) => Some(w),
                Err(e) => {
                    self.line(
                        Component::Controller,
                        format!("Cannot watch the server's cgroup: {e}; the end of a killed tree is checked at each restart instead"),
                    );
                    None
                }
            },
            None => None,
        };

        let resumed = self.resumed.take();
        match &resumed {
            None => {
                let trigger_present = self.trigger.exists();
                self.queue
                    .push_back(Event::ControllerStarted { trigger_present });
                self.drain_queue();
            }
            Some(resumed) => {
                for action in resumed.actions.clone() {
                    self.execute(action);
                }
                self.drain_queue();
            }
        }
        if let Some(sd) = &self.sd {
            let _ = sd.ready();
        }
        if let Some(resumed) = resumed {
            self.finish_resume(resumed);
        }

        let mut stall_clock = StallClock::new();
        while self.exit.is_none() {
            // The loop wakes at least every STALL_TICK, so that its own lateness (a
            // stall: SIGSTOP, swap storm, frozen cgroup) is measured soon after it ends.
            // A far deadline is therefore never handed to the timer as it is either.
            let now = Instant::now();
            let tick = now.checked_add(STALL_TICK).unwrap_or(now);
            let deadline = self.ctl.next_deadline();
            let wake_at = deadline.map_or(tick, |at| at.min(tick));
            let deadline_due = deadline.is_some_and(|at| at <= wake_at);
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(wake_at));
            let spawn_give_up = self.spawn_waiting.map(|since| since + CGROUP_EMPTY_LIMIT);
            let spawn_wait = async move {
                match spawn_give_up {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => if deadline_due { self.queue.push_back(Event::DeadlineReached) },
                changed = cgroup_changed(&mut cgroup_watch) => {
                    if let Err(e) = changed {
                        self.line(Component::Controller, format!("Watching the server's cgroup failed: {e}"));
                        cgroup_watch = None;
                    }
                    self.on_cgroup_change();
                }
                _ = spawn_wait => {
                    let left = self.containment.active.as_ref().and_then(|c| c.members().ok()).unwrap_or_default();
                    self.line(
                        Component::Kill,
                        format!(
                            "Still in the server's cgroup {} s after SIGKILL (uninterruptible?): {}; starting the server anyway",
                            CGROUP_EMPTY_LIMIT.as_secs(),
                            join_pids(&left)
                        ),
                    );
                    self.spawn_waiting = None;
                    self.spawn_now();
                }
                Some(result) = tasks_rx.recv() => self.on_task(result),
                Some(pe) = recv_opt(&mut pipe_rx) => self.on_pipe(pe),
                Some(ce) = recv_opt(&mut control_rx) => self.on_control(ce),
                // Orphans adopted as subreaper: reaped, nothing else to do.
                Some(_) = unclaimed_rx.recv() => {}
                _ = sigterm.recv() => self.on_stop_signal("SIGTERM"),
                _ = sigint.recv() => self.on_stop_signal("SIGINT"),
                _ = sighup.recv() => {
                    let _ = self.reload("Received SIGHUP");
                }
                _ = watchdog.tick() => {
                    // Sent from the loop itself: a wedged loop stops the heartbeat.
                    if let Some(sd) = &self.sd { let _ = sd.watchdog(); }
                }
                _ = resources.tick() => self.sample_resources(),
                _ = log_retry.tick() => {
                    self.check_log_file(true);
                    self.log.retry(Local::now());
                    self.retry_state_record();
                    self.refill_fd_reserve();
                }
                Some(()) = recv_signal(&mut test_wedge) => {
                    self.line(
                        Component::Controller,
                        format!("{TEST_WEDGE_VARIABLE}: test hook wedges the supervision loop for {} s", TEST_WEDGE_FOR.as_secs()),
                    );
                    // Deliberately blocks the runtime's only thread: that is the wedge.
                    std::thread::sleep(TEST_WEDGE_FOR);
                }
            }
            // Late past the planned wake-up, or suspended (the boot clock ran on while
            // the monotonic one stood still): report the stall before anything else
            // that waited, so the core does not read the blind time as a hang.
            let woke = Instant::now();
            let late = woke.saturating_duration_since(wake_at);
            let stalled = late.max(stall_clock.suspended());
            if stalled >= STALL_MIN {
                self.queue.push_front(Event::StallObserved {
                    stalled_for: stalled,
                });
            }
            self.drain_queue();
            // The loop's own work blocked it (a hung disk, a slow syscall): also a stall.
            let busy = woke.elapsed();
            if busy >= STALL_MIN {
                self.queue
                    .push_back(Event::StallObserved { stalled_for: busy });
                self.drain_queue();
            }
            if let Some((request, version)) = self.exec_due.take() {
                // Let the pipe's client tasks read what their sockets already hold (the
                // runtime looks at sockets only while the loop waits): lines written
                // before the re-exec reach this image instead of dying with it.
                tokio::time::sleep(PIPE_SETTLE).await;
                // What has already arrived is acted on by this image, not lost with it.
                if let Some(rx) = pipe_rx.as_mut() {
                    while let Ok(pe) = rx.try_recv() {
                        self.on_pipe(pe);
                    }
                }
                while let Ok(result) = tasks_rx.try_recv() {
                    self.on_task(result);
                }
                self.drain_queue();
                self.exec_now(request, &version);
            }
        }
        self.empty_cgroup_before_exit(&mut cgroup_watch).await;
        self.shutdown();
        if let Some(mailer) = self.mailer.take() {
            // Held (folded) alerts go to the spool for the next controller; a send in
            // progress is abandoned, its mail is spooled already.
            mailer.close(MAILER_CLOSE_LIMIT).await;
        }
        if let Some(webhook) = self.webhook.take() {
            webhook.close(MAILER_CLOSE_LIMIT).await;
        }
        self.exit.unwrap_or(0)
    }

    /// The controller is leaving: the server's tree must be gone (the core has asked for
    /// its kill wherever it was not gone already). Wait for `populated 0`, then remove
    /// the cgroups this controller made.
    async fn empty_cgroup_before_exit(&mut self, watch: &mut Option<AsyncEventsWatch>) {
        let Some(c) = self.containment.active.clone() else {
            return;
        };
        if c.populated().unwrap_or(false) {
            if self.cgroup_killed_at.is_none() {
                self.kill_tree();
            }
            let emptied = match watch {
                Some(w) => w.wait_empty(CGROUP_EMPTY_LIMIT).await,
                None => EventsWatch::new(&c.server)
                    .and_then(|mut w| w.wait_empty_blocking(CGROUP_EMPTY_LIMIT)),
            };
            match emptied {
                Ok(true) => self.on_cgroup_change(),
                Ok(false) => {
                    let left = c.members().unwrap_or_default();
                    self.line(
                        Component::Kill,
                        format!(
                            "Still in the server's cgroup {} s after SIGKILL (uninterruptible?): {}",
                            CGROUP_EMPTY_LIMIT.as_secs(),
                            join_pids(&left)
                        ),
                    );
                }
                Err(e) => self.line(Component::Kill, e.to_string()),
            }
        }
        for problem in c.remove() {
            self.line(Component::Controller, problem);
        }
    }

    /// `cgroup.events` or `memory.events` of the server's cgroup changed.
    fn on_cgroup_change(&mut self) {
        let Some(c) = self.containment.active.clone() else {
            return;
        };
        self.check_oom_kills();
        if c.populated().unwrap_or(true) {
            return;
        }
        if let Some(at) = self.cgroup_killed_at.take() {
            self.line(
                Component::Kill,
                format!(
                    "The server's process tree has ended: cgroup {} is empty (populated 0, {} ms after the kill)",
                    c.server.display(),
                    at.elapsed().as_millis()
                ),
            );
        }
        if self.spawn_waiting.take().is_some() {
            self.spawn_now();
        }
    }

    /// Report OOM kills in the server's cgroup not reported yet.
    fn check_oom_kills(&mut self) {
        let Some(c) = &self.containment.active else {
            return;
        };
        let Some(total) = cgroup::oom_kills(&c.server) else {
            return;
        };
        let seen = self.oom_kills_seen.unwrap_or(0);
        self.oom_kills_seen = Some(total);
        if total > seen {
            self.queue.push_back(Event::OomKilled {
                kills: total - seen,
                total,
            });
        }
    }

    fn shutdown(&mut self) {
        if let Some(sd) = &self.sd {
            let _ = sd.stopping();
        }
        for socket in &self.sockets {
            let _ = std::fs::remove_file(socket);
        }
        let _ = self.state_file.clear();
    }

    fn on_stop_signal(&mut self, name: &str) {
        self.line(
            Component::Controller,
            format!("Received {name}: shutting down"),
        );
        if let Some(sd) = &self.sd {
            let _ = sd.stopping();
        }
        self.queue.push_back(Event::StopRequested);
    }

    fn drain_queue(&mut self) {
        while let Some(event) = self.queue.pop_front() {
            // Anything but the steady stream of messages and probe results can start an
            // incident: its lines must land in a visible file, so a deleted `.out` is
            // noticed first (the stream itself checks at most once a second).
            let frequent = matches!(
                event,
                Event::MessageReceived { .. }
                    | Event::ProbeFinished { .. }
                    | Event::MessageRejected { .. }
            );
            self.check_log_file(!frequent);
            let actions = self.ctl.handle(Instant::now(), event);
            for action in actions {
                self.execute(action);
            }
        }
        self.publish_metrics();
    }

    /// A removed or replaced `.out` is replaced by a new one (see
    /// [`QosLog::check_replaced`]); `force` checks now, otherwise at most once a second.
    fn check_log_file(&mut self, force: bool) {
        let now = Instant::now();
        if !force
            && self
                .log_checked
                .is_some_and(|at| now.saturating_duration_since(at) < Duration::from_secs(1))
        {
            return;
        }
        self.log_checked = Some(now);
        if let Some(text) = self.log.check_replaced(Local::now()) {
            // The line is in the new file already; keep it for alert mails too.
            let full = crate::qoslog::format_line(Component::Controller, &text, &Local::now());
            if self.recent.len() == RECENT_LINES {
                self.recent.pop_front();
            }
            self.recent.push_back(full.trim_end().to_string());
        }
    }

    /// A state record that could not be written (full or read-only disk) is written as
    /// soon as the disk takes it again: a controller killed later must find its server.
    fn retry_state_record(&mut self) {
        let Some(record) = self.state_pending.clone() else {
            return;
        };
        if self.server.as_ref().map(|s| s.pid) != Some(record.pid) {
            self.state_pending = None;
            return;
        }
        if self.state_file.record(&record).is_ok() {
            self.state_pending = None;
            self.line(
                Component::Controller,
                format!(
                    "State file {} written (it could not be written before)",
                    self.state_file.path().display()
                ),
            );
        }
    }

    fn on_task(&mut self, result: TaskResult) {
        match result {
            TaskResult::Probe(outcome) => {
                let (success, latency, detail) = match outcome {
                    ProbeOutcome::Success { latency } => (true, latency, String::new()),
                    ProbeOutcome::Failure { reason, latency } => (false, latency, reason),
                    ProbeOutcome::ControllerFault { reason, .. } => {
                        // Our own descriptors ran out: free the reserve so the log, the
                        // reaper and a kill keep working, and tell the core it was us.
                        let freed = fdreserve::release();
                        self.fd_shortage(&reason, freed);
                        self.queue.push_back(Event::ProbeUnavailable { reason });
                        return;
                    }
                };
                if success {
                    self.metrics.probe_success_total += 1;
                    self.metrics.probe_latency.observe(latency);
                } else {
                    self.metrics.probe_error_total += 1;
                }
                self.queue.push_back(Event::ProbeFinished {
                    success,
                    latency,
                    detail,
                });
            }
            TaskResult::Diagnostics(incident, by_operator, report) => {
                // A file that could not be written completely is not reported as written.
                let path = report
                    .path
                    .filter(|_| report.written)
                    .map(|p| p.display().to_string());
                if by_operator {
                    let answer = match (&path, &report.error) {
                        (Some(p), None) => {
                            ControlResponse::ok(format!("Diagnostics written to {p}"))
                        }
                        (Some(p), Some(e)) => ControlResponse::ok(format!(
                            "Diagnostics written to {p} (incomplete: {e})"
                        )),
                        (None, e) => ControlResponse::refused(format!(
                            "diagnostics could not be written: {}",
                            e.as_deref().unwrap_or("no file was created")
                        )),
                    };
                    for waiter in self.diagnose_waiters.drain(..) {
                        let _ = waiter.send(answer.clone());
                    }
                }
                self.last_diagnostics = path.clone();
                let prune = diagnostics::prune(
                    &self.cfg.data_directory.join(diagnostics::DIAG_DIR_NAME),
                    self.cfg.diag_retention_days,
                    self.cfg.diag_max_size,
                );
                for e in prune.errors {
                    self.line(Component::Controller, format!("Diagnostics pruning: {e}"));
                }
                self.queue.push_back(Event::DiagnosticsFinished {
                    incident,
                    path,
                    error: report.error,
                });
            }
            TaskResult::ServerExit { pid, exit } => {
                if let ExitInfo::Signaled {
                    core_dumped: true, ..
                } = exit
                {
                    // Where the core went is the kernel's choice; support needs to know it.
                    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern")
                        .map(|p| p.trim().to_string())
                        .unwrap_or_else(|_| "unknown".into());
                    self.line(
                        Component::Controller,
                        format!(
                            "The server dumped core (kernel.core_pattern={pattern}, working directory {})",
                            self.cfg.server_directory.display()
                        ),
                    );
                }
                // An OOM kill of the server itself is reported before its crash.
                self.check_oom_kills();
                if self.server.as_ref().map(|s| s.pid) == Some(pid) {
                    self.server = None;
                    self.ended.add([pid]);
                    let _ = self.state_file.clear();
                }
                self.queue.push_back(Event::ServerExited {
                    pid,
                    exit: exit.to_string(),
                });
            }
            TaskResult::Log(component, text) => self.line(component, text),
            TaskResult::ReexecChecked { request, outcome } => {
                self.on_reexec_checked(request, outcome)
            }
            TaskResult::ReexecReady { request, version } => {
                self.exec_due = Some((request, version));
            }
        }
    }

    fn on_pipe(&mut self, event: PipeEvent) {
        match event {
            PipeEvent::Line {
                sender_pid: Some(pid),
                text,
                ..
            } if self.ended.contains(pid) => {
                // Written before that server ended, read after its successor started: it
                // would act on the wrong server (an END would stop the new one).
                self.line(
                    Component::Controller,
                    format!("Ignored a message from server process {pid}, which has ended: {text}"),
                );
            }
            PipeEvent::Line {
                message, meaning, ..
            } => {
                let text = message.log_text(|| timefmt::timedate(&Local::now()));
                let signal = meaning;
                self.queue.push_back(Event::MessageReceived {
                    text,
                    append_timedate: false,
                    signal,
                });
            }
            PipeEvent::Rejected { client, reason } => {
                self.queue.push_back(Event::MessageRejected {
                    reason: format!("client {client}: {reason}"),
                });
            }
            PipeEvent::Failed { reason } => {
                self.line(Component::Controller, format!("Message pipe: {reason}"))
            }
        }
    }

    fn on_control(&mut self, event: ControlEvent) {
        match event {
            ControlEvent::Refused { uid, gid, pid } => self.line(
                Component::Controller,
                format!(
                    "Control socket: refused uid {uid} gid {gid} (pid {})",
                    pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into())
                ),
            ),
            ControlEvent::Request(request) => {
                if request.command == ControlCommand::Reload {
                    let why = format!("Reload requested by uid {}", request.uid);
                    let response = self.reload(&why);
                    let _ = request.reply.send(response);
                    return;
                }
                if request.command == ControlCommand::Diagnose {
                    // Answered when the file is written, so the operator gets its path.
                    self.diagnose_waiters.push(request.reply);
                    self.queue.push_back(Event::CommandReceived {
                        command: crate::core::Command::Diagnose,
                        uid: request.uid,
                        request: 0,
                    });
                    return;
                }
                let Some(command) = request.command.to_core() else {
                    // `status` is answered by the shell from a snapshot.
                    let _ = request.reply.send(ControlResponse::status(self.snapshot()));
                    return;
                };
                let id = self.next_request;
                self.next_request += 1;
                self.replies.insert(id, request.reply);
                if let Some(connection) = request.connection {
                    self.reexec_connections.insert(id, connection);
                }
                self.queue.push_back(Event::CommandReceived {
                    command,
                    uid: request.uid,
                    request: id,
                });
            }
        }
    }

    /// Re-read the configuration (SIGHUP or `qoscntrlr reload`). The answer says what
    /// changed, or carries every error of a rejected file.
    fn reload(&mut self, why: &str) -> ControlResponse {
        self.line(
            Component::Controller,
            format!("{why}: reloading {}", self.config_path.display()),
        );
        match config::load(&self.config_path) {
            Ok(loaded) => {
                for warning in &loaded.warnings {
                    self.line(Component::Controller, format!("Reload warning: {warning}"));
                }
                let before = self.cfg.effective_lines();
                let (cfg, waiting) = self.keep_start_only_settings(loaded.config);
                self.ctl.set_policy(Policy::from_config(&cfg));
                self.reload_mail(&cfg);
                self.reload_webhook(&cfg);
                self.cfg = cfg;
                let after = self.cfg.effective_lines();
                for line in &after {
                    self.line(Component::Controller, line);
                }
                for line in self.cfg.rule_lines() {
                    self.line(Component::Controller, line);
                }
                self.line(Component::Controller, "Configuration reloaded");
                let mut message = String::from("Configuration reloaded");
                let changed: Vec<String> = after
                    .iter()
                    .filter(|line| !before.contains(line))
                    .map(|line| {
                        let key = line.split('=').next().unwrap_or(line);
                        let old = before
                            .iter()
                            .find(|b| b.split('=').next() == Some(key))
                            .and_then(|b| b.split_once('=').map(|(_, v)| v))
                            .unwrap_or("");
                        let new = line.split_once('=').map_or("", |(_, v)| v);
                        format!("  {key}: {old} -> {new}")
                    })
                    .collect();
                if changed.is_empty() && waiting.is_empty() {
                    message.push_str(": nothing changed");
                } else {
                    if !changed.is_empty() {
                        message.push_str("; changed:\n");
                        message.push_str(&changed.join("\n"));
                    }
                    if !waiting.is_empty() {
                        message.push_str(&format!(
                            "\n  waiting for a controller restart (running value kept): {}",
                            waiting.join(", ")
                        ));
                    }
                }
                for warning in &loaded.warnings {
                    message.push_str(&format!("\n  warning: {warning}"));
                }
                ControlResponse::ok(message)
            }
            Err(failure) => {
                for error in &failure.errors {
                    self.line(Component::Controller, format!("Reload error: {error}"));
                }
                self.line(
                    Component::Controller,
                    "Reload failed; the previous configuration stays in force",
                );
                ControlResponse::config_errors(
                    format!("{failure}; the previous configuration stays in force"),
                    failure.errors.iter().map(ToString::to_string).collect(),
                )
            }
        }
    }

    /// What was opened or bound at start (files, sockets, listeners, the sampling
    /// timer) keeps its running value on reload; the log says which changes wait for a
    /// controller restart, so the server is never told a pipe path nobody listens on.
    fn keep_start_only_settings(&mut self, mut new: Config) -> (Config, Vec<&'static str>) {
        let running = &self.cfg;
        let mut changed = Vec::new();
        keep_start_only(running, &mut new, &mut changed);
        if !changed.is_empty() {
            self.line(
                Component::Controller,
                format!(
                    "Reload: {} cannot change while the controller runs; the running value stays until the controller is restarted",
                    changed.join(", ")
                ),
            );
        }
        (new, changed)
    }

    fn start_mailer(&mut self, settings: crate::mail::MailSettings) {
        self.mailer = Some(crate::mail::Mailer::start(
            settings,
            crate::mail::spool_dir(&self.cfg.data_directory),
            self.log_sender(),
        ));
    }

    fn start_webhook(&mut self, settings: crate::webhook::WebhookSettings) {
        self.line(
            Component::Controller,
            format!("Alerts are also posted to {}", settings.url),
        );
        self.webhook = Some(crate::webhook::Webhook::start(
            settings,
            crate::webhook::spool_dir(&self.cfg.data_directory),
            self.log_sender(),
        ));
    }

    /// Webhook settings take effect on reload, like mail's.
    fn reload_webhook(&mut self, cfg: &Config) {
        match (
            crate::webhook::WebhookSettings::from_config(cfg),
            &self.webhook,
        ) {
            (Some(settings), Some(webhook)) => webhook.reconfigure(settings),
            (Some(settings), None) => self.start_webhook(settings),
            (None, Some(_)) => {
                if let Some(webhook) = self.webhook.take() {
                    tokio::task::spawn_local(webhook.close(MAILER_CLOSE_LIMIT));
                    self.line(
                        Component::Controller,
                        "Alert webhook disabled; undelivered alerts stay spooled",
                    );
                }
            }
            (None, None) => {}
        }
    }

    /// Mail settings take effect on reload: the mailer keeps what it holds and spools.
    fn reload_mail(&mut self, cfg: &Config) {
        match crate::mail::MailSettings::from_config(cfg) {
            Ok(Some(settings)) => match &self.mailer {
                Some(mailer) => mailer.reconfigure(settings),
                None => {
                    self.start_mailer(settings);
                    self.line(Component::Controller, "Mail enabled");
                }
            },
            Ok(None) => {
                if let Some(mailer) = self.mailer.take() {
                    // Held repeats go to the spool, as on stop; the loop does not wait.
                    tokio::task::spawn_local(mailer.close(MAILER_CLOSE_LIMIT));
                    self.line(
                        Component::Controller,
                        "Mail disabled (QOS_MAIL_TO or QOS_MAIL_SMTP_SERVER is not set); undelivered mail stays spooled",
                    );
                }
            }
            Err(e) => self.line(
                Component::Controller,
                format!("Mail settings not changed: {e}"),
            ),
        }
    }

    /// One sampling pass: the server's tree, then every other item a rule watches;
    /// the pass goes to the usage file and, as one event, to the core's rules.
    fn sample_resources(&mut self) {
        let Some(server) = self.server.clone() else {
            return;
        };
        if !matches!(self.ctl.state(), StateName::Starting | StateName::Ready) {
            return;
        }
        let now = Instant::now();
        let extra: Vec<i32> = Vec::new();
        let tree = match &self.containment.active {
            Some(c) => self.sampler.sample_cgroup(
                &c.server,
                server.pid,
                &self.cfg.data_directory,
                now,
                self.cfg.max_open_files > 0 || self.ctl.rule_items().contains(&Item::OpenFiles),
            ),
            None => self
                .sampler
                .sample(server.pid, &extra, &self.cfg.data_directory, now),
        };
        self.check_oom_kills();
        let rule_items = self.ctl.rule_items();
        // The tree's figures are always recorded (the report charts them); other items
        // only when a rule watches them.
        let mut items = vec![Item::Memory, Item::Cpu, Item::OpenFiles, Item::Threads];
        for item in rule_items {
            if !items.contains(&item) {
                items.push(item);
            }
        }
        let mut pass: Vec<(Item, Reading)> = Vec::with_capacity(items.len());
        for item in items {
            let reading = self.read_item(&item, &tree, now);
            pass.push((item, reading));
        }
        let wall = Local::now();
        if let Some(e) = self.usage.record(wall, &pass) {
            self.line(Component::Controller, format!("Usage file: {e}"));
        }
        let readings: Readings = pass.into_iter().collect();
        self.queue.push_back(Event::ResourcesSampled { readings });
        // An error means the server has just exited; its exit event tells the story.
        if let Ok(sample) = tree {
            self.metrics.resources = Some(ResourceGauges {
                memory_bytes: sample.rss_bytes,
                cpu_percent: sample.cpu_percent.unwrap_or(0.0),
                open_files: sample.open_files,
                threads: sample.threads,
                disk_free_bytes: sample.disk_free_bytes,
            });
            self.last_sample = Some((sample, wall));
        }
    }

    /// One item's reading for this pass.
    fn read_item(
        &mut self,
        item: &Item,
        tree: &Result<Sample, crate::sampler::SampleError>,
        now: Instant,
    ) -> Reading {
        let tree_value = |f: fn(&Sample) -> Option<f64>, why: &str| match tree {
            Ok(sample) => f(sample).map_or_else(|| Reading::Missing(why.into()), Reading::Value),
            Err(e) => Reading::Missing(e.to_string()),
        };
        const ALWAYS: &str = "not measured";
        // Probes may take long on a sick filesystem: never longer than an interval,
        // nor than 10 s.
        let limit = self
            .cfg
            .resource_interval
            .clamp(Duration::from_secs(1), Duration::from_secs(10));
        match item {
            Item::Memory => tree_value(|s| Some(s.rss_bytes as f64), ALWAYS),
            Item::Cpu => tree_value(
                |s| s.cpu_percent,
                "first sample (CPU is measured between two)",
            ),
            Item::OpenFiles => tree_value(
                |s| s.open_files_counted.then_some(s.open_files as f64),
                "open files are not counted for this cgroup sample",
            ),
            Item::Threads => tree_value(|s| Some(s.threads as f64), ALWAYS),
            Item::HostMemory => self.host.memory_percent(),
            Item::HostCpu => self.host.cpu_percent(),
            Item::Load1 => self.host.load1(),
            // The data directory's free space comes with the tree sample (as the
            // QOS_MIN_DISK_FREE limit always did); other paths are probed apart.
            Item::DiskFree(path) if *path == self.cfg.data_directory && tree.is_ok() => {
                tree_value(|s| Some(s.disk_free_bytes as f64), ALWAYS)
            }
            Item::DiskFree(path) => {
                let path = path.clone();
                let what = format!("free space of {}", path.display());
                self.fs_probes
                    .entry(item.clone())
                    .or_default()
                    .poll(now, limit, &what, move || crate::host::disk_free(&path))
            }
            Item::WriteLatency => {
                let dir = self.cfg.data_directory.clone();
                let what = format!("write + fsync in {}", dir.display());
                self.fs_probes
                    .entry(item.clone())
                    .or_default()
                    .poll(now, limit, &what, move || crate::host::write_probe(&dir))
            }
            // Pressure is the server's own cgroup's (QOS_CGROUP containment); without
            // one there is nothing of the server's alone to measure.
            Item::MemoryPressure | Item::CpuPressure | Item::IoPressure => {
                if self.containment.active.is_none() {
                    return Reading::Missing(
                        "the server is not contained in a cgroup of its own (QOS_CGROUP)".into(),
                    );
                }
                let figure = |s: &Sample| match item {
                    Item::MemoryPressure => s.memory_pressure,
                    Item::CpuPressure => s.cpu_pressure,
                    _ => s.io_pressure,
                };
                match tree {
                    Ok(sample) => figure(sample).map_or_else(
                        || Reading::Missing("no pressure file in the server's cgroup".into()),
                        Reading::Value,
                    ),
                    Err(e) => Reading::Missing(e.to_string()),
                }
            }
        }
    }

    fn incident_id(&self, n: u64) -> String {
        format!("{}-{n}", self.incident_prefix)
    }

    fn helper_pids(&self, server: Option<i32>) -> HashSet<i32> {
        let mut watched = self.reaper.watched();
        if let Some(pid) = server {
            watched.remove(&pid);
        }
        watched
    }

    fn execute(&mut self, action: Action) {
        match action {
            Action::Log {
                component,
                text,
                append_timedate,
            } => {
                if append_timedate {
                    let td = timefmt::timedate(&Local::now());
                    self.line(component, format!("{text} TimeDate={td}"));
                } else {
                    self.line(component, text);
                }
            }
            Action::Spawn => self.spawn_server(),
            Action::RequestStop => self.request_stop(),
            Action::KillTree => self.kill_tree(),
            Action::Probe => self.start_probe(),
            Action::RunDiagnostics { reason, incident } => self.start_diagnostics(reason, incident),
            Action::WriteTrigger => {
                let enabled = !self.cfg.disable_failover_trigger;
                if let Err(e) = self.trigger.write(enabled) {
                    // The core alerts (log + mail); readiness, agent and hooks go down
                    // regardless of the file.
                    self.queue.push_back(Event::TriggerWriteFailed {
                        error: format!("{}: {e}", self.trigger.path().display()),
                    });
                }
            }
            Action::RemoveTrigger => {
                if let Err(e) = self.trigger.remove() {
                    self.line(
                        Component::Controller,
                        format!(
                            "Cannot remove the failover trigger {}: {e}",
                            self.trigger.path().display()
                        ),
                    );
                }
            }
            Action::SetHealth(health) => self.health.set(health),
            Action::RunHook {
                event,
                reason,
                incident,
            } => self.run_hook(event, &reason, incident),
            Action::Mail(alert) => self.mail(alert),
            Action::StateChanged { from, to, why } => {
                self.journal.say(
                    journal::state_priority(to.as_str()),
                    &format!("State {} -> {} ({why})", from.as_str(), to.as_str()),
                );
                self.line(
                    Component::Controller,
                    format!("State {} -> {} ({why})", from.as_str(), to.as_str()),
                );
                let record = EventRecord::new(Local::now(), "state", to.as_str())
                    .reason(&why)
                    .field("from", from.as_str());
                self.record_event(record);
                if let Some(sd) = &self.sd {
                    let _ = sd.status(&format!("{}: {why}", to.as_str()));
                }
                if to == StateName::Restarting {
                    // The core starts its rule windows over itself (a new tree).
                    self.sampler.reset();
                }
            }
            Action::Incident { id, kind, outcome } => {
                self.journal.say(
                    Priority::Warning,
                    &format!("Incident {}: {kind}: {outcome}", self.incident_id(id)),
                );
                let state = self.ctl.state().as_str();
                let record = EventRecord::new(Local::now(), "incident", state)
                    .incident(&self.incident_id(id))
                    .reason(&kind)
                    .field("outcome", outcome.as_str());
                self.record_event(record);
                match outcome {
                    IncidentOutcome::Detected => {
                        self.metrics.last_incident_timestamp_seconds =
                            Some(Local::now().timestamp());
                    }
                    IncidentOutcome::Killed => {
                        *self.metrics.kills_total.entry(kind).or_default() += 1
                    }
                    IncidentOutcome::Restarted => {
                        *self.metrics.restarts_total.entry(kind).or_default() += 1
                    }
                    _ => {}
                }
            }
            Action::FailoverChanged { from, to, why } => {
                self.line(
                    Component::Controller,
                    format!(
                        "Failover state {} -> {} ({why})",
                        from.as_str(),
                        to.as_str()
                    ),
                );
                let record = EventRecord::new(Local::now(), "failover", to.as_str())
                    .reason(&why)
                    .field("from", from.as_str());
                self.record_event(record);
            }
            Action::Reply {
                request,
                ok,
                message,
            } => {
                self.reexec_connections.remove(&request);
                if let Some(reply) = self.replies.remove(&request) {
                    let response = if ok {
                        ControlResponse::ok(message)
                    } else {
                        ControlResponse::refused(message)
                    };
                    let _ = reply.send(response);
                }
            }
            Action::Exit(code) => self.exit = Some(code),
            Action::Reexec { request } => self.start_reexec(request),
        }
    }

    // ----- qoscntrlr reexec ---------------------------------------------------------

    /// The core accepted a `reexec` request: check the binary now at our path on the
    /// state as it is now, in the background (the loop keeps supervising meanwhile).
    fn start_reexec(&mut self, request: u64) {
        if self.reexec_pending.is_some() {
            self.fail_reexec(
                request,
                "reexec refused: a reexec is already in progress".into(),
            );
            return;
        }
        let exe = match reexec::exe_path() {
            Ok(exe) => exe,
            Err(e) => return self.fail_reexec(request, format!("reexec failed: {e}")),
        };
        let state = match self.handoff_bytes() {
            Ok(bytes) => bytes,
            Err(e) => return self.fail_reexec(request, format!("reexec failed: {e}")),
        };
        self.reexec_pending = Some(request);
        self.line(
            Component::Controller,
            format!("Re-exec requested: checking {}", exe.display()),
        );
        let reaper = self.reaper.clone();
        let tasks = self.tasks.clone();
        let config_path = self.config_path.clone();
        tokio::task::spawn_local(async move {
            let outcome = reexec::check_new_binary(&reaper, &exe, &config_path, &state).await;
            let _ = tasks.send(TaskResult::ReexecChecked { request, outcome });
        });
    }

    fn on_reexec_checked(&mut self, request: u64, outcome: reexec::CheckOutcome) {
        let version = match outcome {
            Ok(version) => version,
            Err(reason) => return self.fail_reexec(request, format!("reexec refused: {reason}")),
        };
        if let Some(refusal) = self.ctl.reexec_refusal() {
            return self.fail_reexec(request, refusal);
        }
        // Held (folded) alerts go to the spool, which the new image's mailer sends.
        self.mail_rounds = 0;
        self.close_mailer_then_exec(request, version);
    }

    /// Refuse or fail request `request`: the controller goes on as it was.
    fn fail_reexec(&mut self, request: u64, message: String) {
        if self.reexec_pending == Some(request) {
            self.reexec_pending = None;
        }
        let text = format!("{}; the controller keeps running", capitalize(&message));
        self.journal.say(Priority::Warning, &text);
        self.line(Component::Controller, text);
        self.ensure_mailer();
        self.ensure_webhook();
        self.execute(Action::Reply {
            request,
            ok: false,
            message,
        });
    }

    /// Everything the next image needs, as the versioned JSON handoff.
    fn handoff_bytes(&self) -> Result<Vec<u8>, String> {
        let (log, _) = self.log.handoff();
        let state = ShellHandoff {
            server: self.server.as_ref().map(|s| ServerHandoff {
                pid: s.pid,
                started: s.started,
            }),
            last_pgid: self.last_pgid,
            ended: self.ended.0.iter().copied().collect(),
            started_wall: self.started_wall.to_rfc3339(),
            incident_prefix: self.incident_prefix.clone(),
            recent: self.recent.iter().cloned().collect(),
            console_tail: self.console.tail(usize::MAX),
            last_diagnostics: self.last_diagnostics.clone(),
            health: self.health.current(),
            metrics: self.metrics.clone(),
            log,
            bound: Bound::of(&self.cfg),
            containment: Some(self.containment.clone()),
            oom_kills_seen: self.oom_kills_seen,
            reexecs: self.reexecs + 1,
            state_pending: self.state_pending.clone(),
        };
        let (anchor, monotonic_ns) = reexec::anchor_now();
        let (shell, core) = crate::core::instants::with_anchor(anchor, || {
            (
                serde_json::to_value(&state),
                serde_json::to_value(&self.ctl),
            )
        });
        let handoff = Handoff {
            version: reexec::STATE_VERSION,
            from_version: env!("CARGO_PKG_VERSION").to_string(),
            monotonic_ns,
            shell: shell.map_err(|e| format!("cannot encode the controller state: {e}"))?,
            core: core.map_err(|e| format!("cannot encode the supervision state: {e}"))?,
        };
        serde_json::to_vec(&handoff).map_err(|e| format!("cannot encode the handoff: {e}"))
    }

    /// The last act of this image: hand everything over and `execve`. Returns only if
    /// the exec failed, having put everything back as it was.
    fn exec_now(&mut self, request: u64, version: &str) {
        if let Some(refusal) = self.ctl.reexec_refusal() {
            return self.fail_reexec(request, refusal);
        }
        if !self.mail_held.is_empty() {
            // Alerts came while the mailer was closing: they go to a mailer (and so to
            // the spool) before the image is given up, never with it.
            if self.mail_rounds >= 3 {
                return self.fail_reexec(
                    request,
                    "reexec refused: alerts keep being raised; try again when it is calmer".into(),
                );
            }
            self.ensure_mailer();
            return self.close_mailer_then_exec(request, version.to_string());
        }
        let exe = match reexec::exe_path() {
            Ok(exe) => exe,
            Err(e) => return self.fail_reexec(request, format!("reexec failed: {e}")),
        };
        let server = self.server.as_ref().map(|s| s.pid);
        self.line(
            Component::Controller,
            format!(
                "Re-executing {} (version {version}){}",
                exe.display(),
                server
                    .map(|pid| format!("; the server (pid {pid}) keeps running"))
                    .unwrap_or_default()
            ),
        );
        let memfd = match self
            .handoff_bytes()
            .map(|bytes| {
                if std::env::var_os(TEST_BAD_HANDOFF_VARIABLE).is_some_and(|v| v == "1") {
                    test_spoil_handoff(&bytes)
                } else {
                    bytes
                }
            })
            .and_then(|bytes| reexec::write_memfd(&bytes).map_err(|e| e.to_string()))
        {
            Ok(fd) => fd,
            Err(e) => return self.fail_reexec(request, format!("reexec failed: {e}")),
        };
        let connection = self.reexec_connections.remove(&request);
        let (_, log_fd) = self.log.handoff();
        let carried = Carried {
            state: Some(memfd.as_raw_fd()),
            lock: Some(self.lock_fd),
            log: log_fd,
            pipe: self.listen_fds.pipe,
            control: self.listen_fds.control,
            readiness: self.listen_fds.readiness,
            agent: self.listen_fds.agent,
            metrics: self.listen_fds.metrics,
            console: server.and(self.console_fd.get()),
            reply: connection.as_ref().map(AsRawFd::as_raw_fd),
            server,
        };
        let fds = carried.fds();
        let error = match reexec::set_inherited(&fds, true) {
            Err(e) => e,
            Ok(()) => {
                if let Some(sd) = &self.sd {
                    let _ = sd.reloading(reexec::monotonic_ns() / 1000);
                }
                reexec::exec(&exe, &carried)
            }
        };
        // Still here: the exec failed. Nothing was given up; undo the preparation.
        let _ = reexec::set_inherited(&fds, false);
        drop(memfd);
        drop(connection);
        if let Some(sd) = &self.sd {
            let _ = sd.ready();
        }
        self.fail_reexec(request, format!("reexec failed: {error}"));
    }

    /// The new image's first loop turn: answer the operator, say how long supervision
    /// was interrupted.
    fn finish_resume(&mut self, resumed: Resumed) {
        if let Some(at) = resumed.handed_at_ns {
            let gap = Duration::from_nanos(reexec::monotonic_ns().saturating_sub(at));
            self.line(
                Component::Controller,
                format!(
                    "Supervision resumed {:.1} ms after the previous image's last loop turn",
                    gap.as_secs_f64() * 1000.0
                ),
            );
        }
        let Some(connection) = resumed.reply else {
            return;
        };
        let version = env!("CARGO_PKG_VERSION");
        let response = match &resumed.fallback {
            None => ControlResponse::ok(format!(
                "Controller re-executed: {} -> {version} (pid {})",
                resumed.from_version,
                std::process::id()
            )),
            Some(reason) => ControlResponse::refused(format!(
                "Controller re-executed: {} -> {version} (pid {}), but its state could not be restored ({reason}); {}",
                resumed.from_version,
                std::process::id(),
                match self.server.as_ref() {
                    Some(s) => format!("the server (pid {}) was adopted with fresh timers", s.pid),
                    None => "no server was running".to_string(),
                }
            )),
        };
        reexec::answer(connection, &response);
    }

    fn record_event(&mut self, record: EventRecord) {
        if let Some(e) = self.events.record(&record) {
            self.line(Component::Controller, format!("Events file: {e}"));
        }
    }

    fn spawn_server(&mut self) {
        if let Some(c) = self.containment.active.clone() {
            // Leftovers of the previous server are exactly the cgroup's members: kill
            // them and start once the cgroup is empty (a notification, see
            // `on_cgroup_change`), so the new server never shares its cgroup.
            self.last_pgid = None;
            if c.populated().unwrap_or(false) {
                let members = c.members().unwrap_or_default();
                match c.kill(None) {
                    Ok(_) => {
                        self.ended.add(members.iter().copied());
                        self.cgroup_killed_at.get_or_insert_with(Instant::now);
                        self.line(
                            Component::Kill,
                            format!(
                                "Killed {} leftover process(es) of the previous server",
                                members.len()
                            ),
                        );
                    }
                    Err(e) => self.line(Component::Kill, e.to_string()),
                }
                if c.populated().unwrap_or(false) {
                    self.spawn_waiting = Some(Instant::now());
                    return;
                }
            }
            self.spawn_now();
            return;
        }
        // Leftovers of a previous server (daemonized grandchildren) go first.
        if let Some(pgid) = self.last_pgid.take() {
            let exclude = self.helper_pids(None);
            let report = process::kill_tree(pgid, pgid, &exclude);
            self.ended.add(report.killed.iter().copied());
            if !report.killed.is_empty() {
                self.line(
                    Component::Kill,
                    format!(
                        "Killed {} leftover process(es) of the previous server",
                        report.killed.len()
                    ),
                );
            }
        }
        self.spawn_now();
    }

    /// Start the server (its leftovers are gone).
    fn spawn_now(&mut self) {
        let spec = ServerSpec {
            argv: self.cfg.server_command.clone(),
            directory: self.cfg.server_directory.clone(),
            user: self.cfg.server_user.clone(),
            group: self.cfg.server_group.clone(),
            env: vec![
                (
                    "QOSCNTRLR_PIPE".into(),
                    self.cfg.pipe.to_string_lossy().into_owned(),
                ),
                ("QOSCNTRLR_SERVER_NAME".into(), self.cfg.server_name.clone()),
                (TREE_MARK_ENV.into(), self.tree_mark()),
            ],
            console_log: self.cfg.data_directory.join(CONSOLE_LOG_NAME),
            cgroup: self.containment.active.as_ref().map(|c| c.server.clone()),
        };
        self.line(
            Component::Controller,
            format!(
                "Starting server: {}",
                shell_words::join(&self.cfg.server_command)
            ),
        );
        match process::spawn_server(&spec, &self.reaper) {
            Ok(spawned) => {
                let pid = spawned.pid;
                let tasks = self.tasks.clone();
                let exited = spawned.exited;
                tokio::task::spawn_local(async move {
                    if let Ok(exit) = exited.await {
                        let _ = tasks.send(TaskResult::ServerExit { pid, exit });
                    }
                });
                if let Some(e) = &spawned.console_log_error {
                    let text = format!(
                        "Cannot open the {e}; the server runs anyway, its output goes to the controller's stderr and its last {} lines are kept in memory (retried every {} s)",
                        process::CONSOLE_TAIL_LINES,
                        process::CONSOLE_REOPEN_EVERY.as_secs()
                    );
                    // "Cannot ...": the line also goes to stderr as an error.
                    self.line(Component::Controller, text);
                }
                self.pump_console(spawned.console);
                self.state_pending = None;
                if let Some(record) = ServerRecord::of_running(pid, pid, &spawned.program) {
                    if let Err(e) = self.state_file.record(&record) {
                        self.line(
                            Component::Controller,
                            format!("Cannot write the state file: {e}; retrying every 5 s"),
                        );
                        self.state_pending = Some(record);
                    }
                }
                self.ended.remove(pid);
                self.server = Some(ServerProc {
                    pid,
                    started: Instant::now(),
                });
                self.last_pgid = Some(pid);
                self.queue.push_back(Event::ServerSpawned {
                    pid,
                    program: spawned.program,
                });
            }
            Err(e) => self.queue.push_back(Event::SpawnFailed {
                error: e.to_string(),
            }),
        }
    }

    fn request_stop(&mut self) {
        let Some(server) = self.server.clone() else {
            return;
        };
        if let Some(argv) = self.cfg.server_stop_command.clone() {
            if let Some((program, args)) = argv.split_first() {
                let mut cmd = StdCommand::new(program);
                // A stop command still running when the controller is SIGKILLed is
                // found and killed by the next start.
                process::mark_tree(&mut cmd, &self.cfg.data_directory);
                cmd.args(args)
                    .current_dir(&self.cfg.server_directory)
                    .env("QOSCNTRLR_SERVER_PID", server.pid.to_string());
                crate::sdnotify::scrub_env(&mut cmd);
                let reaper = self.reaper.clone();
                let tasks = self.tasks.clone();
                let limit = self.cfg.shutdown_timeout;
                tokio::task::spawn_local(async move {
                    let text = match process::run_helper(&reaper, cmd, limit).await {
                        Ok(out) => match out.exit {
                            Some(exit) => format!("Stop command ended: {exit}"),
                            None => "Stop command timed out and was killed".to_string(),
                        },
                        Err(e) => format!("Stop command failed: {e}"),
                    };
                    let _ = tasks.send(TaskResult::Log(Component::Controller, text));
                });
                return;
            }
        }
        let signal = Signal::try_from(self.cfg.server_stop_signal).unwrap_or(Signal::SIGTERM);
        if let Err(e) = process::signal_group(server.pid, signal) {
            self.line(
                Component::Controller,
                format!("Cannot send {} to the server: {e}", signal.as_str()),
            );
        }
    }

    fn kill_tree(&mut self) {
        if let Some(c) = self.containment.active.clone() {
            // cgroup.kill: every member, and whatever they fork meanwhile, in one step.
            let root = self.server.as_ref().map(|s| s.pid);
            // Opening cgroup.kill needs a descriptor: the reserve is given back for it.
            match fdreserve::with_released(|| c.kill(root)) {
                Ok(report) => {
                    self.ended.add(report.members.iter().copied());
                    if !report.members.is_empty() {
                        self.cgroup_killed_at.get_or_insert_with(Instant::now);
                        self.line(
                            Component::Kill,
                            format!(
                                "Killed {} process(es) of the server's tree: {} ({} of cgroup {})",
                                report.members.len(),
                                join_pids(&report.members),
                                if report.kill_file {
                                    "cgroup.kill"
                                } else {
                                    "SIGKILL to every member"
                                },
                                c.server.display()
                            ),
                        );
                    }
                    return;
                }
                Err(e) => self.line(
                    Component::Kill,
                    format!("{e}; killing the process tree found through /proc instead"),
                ),
            }
        }
        let Some(pgid) = self.server.as_ref().map(|s| s.pid).or(self.last_pgid) else {
            return;
        };
        let exclude = self.helper_pids(Some(pgid));
        let live_child = self.server.is_some();
        // The walk of /proc needs descriptors: the reserve is given back for it, so a
        // controller starved of descriptors still finds and kills the whole tree.
        let report = fdreserve::with_released(|| {
            if live_child {
                process::kill_child_tree(pgid, &exclude)
            } else {
                process::kill_tree(pgid, pgid, &exclude)
            }
        });
        self.ended.add(report.killed.iter().copied());
        if !report.killed.is_empty() {
            self.line(
                Component::Kill,
                format!(
                    "Killed {} process(es) of the server's tree: {}",
                    report.killed.len(),
                    report
                        .killed
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            );
        }
        if !report.survivors.is_empty() {
            self.line(
                Component::Kill,
                format!(
                    "Still alive after SIGKILL (uninterruptible?): {:?}",
                    report.survivors
                ),
            );
        }
    }

    /// The controller itself ran out of descriptors (`what` failed): say so once per
    /// episode (the reserve has been given back so that the log and the kill work).
    fn fd_shortage(&mut self, what: &str, freed: usize) {
        if self.fd_short_since.is_some() {
            return;
        }
        self.fd_short_since = Some(Instant::now());
        self.line(
            Component::Controller,
            format!(
                "Controller fault: out of file descriptors ({what}); released {freed} reserved descriptors so that logging, reaping and killing keep working"
            ),
        );
    }

    /// Take the spare descriptors again once there are free ones.
    fn refill_fd_reserve(&mut self) {
        if fdreserve::held() >= fdreserve::RESERVE {
            return;
        }
        if fdreserve::restore() >= fdreserve::RESERVE {
            if let Some(since) = self.fd_short_since.take() {
                self.line(
                    Component::Controller,
                    format!(
                        "File descriptors are available again after {} s; spare descriptors reserved",
                        since.elapsed().as_secs()
                    ),
                );
            }
        }
    }

    fn start_probe(&mut self) {
        let Some(target) = self.cfg.probe.clone() else {
            return;
        };
        if target == ProbeTarget::Message {
            return;
        }
        // QOS_PROBE_ATTEMPT_TIMEOUT, by default the shorter of interval and timeout.
        let limit = self.ctl.policy().probe_attempt_timeout;
        let reaper = self.reaper.clone();
        let tasks = self.tasks.clone();
        tokio::task::spawn_local(async move {
            let outcome = probe::probe_once(&target, limit, &reaper).await;
            let _ = tasks.send(TaskResult::Probe(outcome));
        });
    }

    fn start_diagnostics(&mut self, reason: String, incident: Option<u64>) {
        let server = self.server.as_ref().map(|s| s.pid);
        // After the server itself has ended (a crash's post-mortem), what is left of its
        // tree — workers or backends orphaned by a dead master, adopted by the
        // controller, still in its process group (or its cgroup) — is exactly what there
        // is to look at before it is killed.
        let root = server.or(self.last_pgid);
        let tree = match (&self.containment.active, root) {
            // Exact membership; the root first.
            (Some(c), _) => match c.members() {
                Ok(mut members) => {
                    if let Some(i) = root.and_then(|r| members.iter().position(|p| *p == r)) {
                        let first = members.remove(i);
                        members.insert(0, first);
                    }
                    members
                }
                Err(_) => root
                    .map(|pid| process::tree_pids(pid, pid, &self.helper_pids(Some(pid))))
                    .unwrap_or_default(),
            },
            (None, Some(pid)) => process::tree_pids(pid, pid, &self.helper_pids(Some(pid))),
            (None, None) => Vec::new(),
        };
        let request = DiagRequest {
            reason,
            server_pid: server,
            tree,
            console_tail: self.console.tail(CONSOLE_TAIL_LINES),
            data_dir: self.cfg.data_directory.clone(),
            nsd_path: self.cfg.nsd_path.clone(),
            limit: self.cfg.nsd_timeout,
            server_name: self.cfg.server_name.clone(),
        };
        let reaper = self.reaper.clone();
        let tasks = self.tasks.clone();
        let by_operator = request.reason == OPERATOR_DIAGNOSTICS;
        tokio::task::spawn_local(async move {
            let report = diagnostics::collect(request, &reaper, Local::now()).await;
            let _ = tasks.send(TaskResult::Diagnostics(incident, by_operator, report));
        });
    }

    fn run_hook(&mut self, event: HookEvent, reason: &str, incident: u64) {
        let argv = if event.is_recovery() {
            self.cfg.recovery_hook.clone()
        } else {
            self.cfg.failover_hook.clone()
        };
        let Some(argv) = argv else {
            return;
        };
        let env = failover::hook_env(
            event,
            reason,
            &self.cfg.server_name,
            &self.incident_id(incident),
            self.trigger.path(),
        );
        let reaper = self.reaper.clone();
        let tasks = self.tasks.clone();
        let data_dir = self.cfg.data_directory.clone();
        tokio::task::spawn_local(async move {
            let outcome = failover::run_hook(&reaper, &argv, &env, HOOK_LIMIT, &data_dir).await;
            let mut text = format!("{} hook: {outcome}", capitalize(event.as_str()));
            if let Some(e) = &outcome.log_error {
                // The hook ran; only its output could not be kept.
                text.push_str(&format!("; its output was not logged: {e}"));
            }
            let _ = tasks.send(TaskResult::Log(Component::Kill, text));
        });
    }

    fn mail(&mut self, alert: Alert) {
        self.post(&alert);
        if self.mailer.is_none() && !self.mail_closing {
            return;
        }
        let mail = crate::mail::Alert {
            kind: alert.kind,
            server: self.cfg.server_name.clone(),
            when: Local::now(),
            summary: alert.summary,
            log_lines: self.recent.iter().cloned().collect(),
            diagnostics: alert.diagnostics.map(PathBuf::from),
            console_tail: self.console.tail(CONSOLE_TAIL_LINES),
            attach_diagnostics: self.cfg.nokill,
        };
        match &self.mailer {
            Some(mailer) => mailer.submit(mail),
            // The mailer is spooling for a re-exec: kept, never dropped (see exec_now).
            None => self.mail_held.push(mail),
        }
    }

    /// The alert to the webhook, if one is configured. While a re-exec has taken the
    /// webhook task away, the alert is spooled for the next image instead of dropped.
    fn post(&mut self, alert: &Alert) {
        let hook_alert = crate::webhook::WebhookAlert {
            kind: alert.kind.clone(),
            server: self.cfg.server_name.clone(),
            when: Local::now(),
            summary: alert.summary.clone(),
            incident: alert.incident.map(|n| self.incident_id(n)),
        };
        match &self.webhook {
            Some(webhook) => webhook.submit(hook_alert),
            None if self.cfg.alert_webhook.is_some() => {
                let spool = crate::webhook::spool_dir(&self.cfg.data_directory);
                if let Err(e) = crate::webhook::spool_alert(&spool, &hook_alert) {
                    self.line(
                        Component::Controller,
                        format!("Webhook alert could not be spooled: {e}"),
                    );
                }
            }
            None => {}
        }
    }

    fn publish_metrics(&mut self) {
        self.metrics.state = self.ctl.state();
        let core_status = self.ctl.status(Instant::now());
        self.metrics.paused = core_status.paused;
        self.metrics.apps_in_list = core_status.apps.len() as u64;
        self.metrics_tx.send_replace(self.metrics.clone());
    }

    /// Everything `status` shows.
    fn snapshot(&self) -> StatusSnapshot {
        let now = Instant::now();
        let wall = Local::now();
        let core = self.ctl.status(now);
        let at = |t: Instant| {
            status::rfc3339(
                wall.checked_sub_signed(chrono_duration(now.saturating_duration_since(t)))
                    .unwrap_or(wall),
            )
        };
        let policy = self.ctl.policy();
        let resources = self
            .last_sample
            .as_ref()
            .map(|(s, at)| status::ResourceStatus {
                sampled_at: status::rfc3339(*at),
                memory_bytes: s.rss_bytes,
                max_memory_bytes: nonzero(self.cfg.max_memory),
                cpu_percent: s.cpu_percent.unwrap_or(0.0),
                max_cpu_percent: (self.cfg.max_cpu > 0).then_some(self.cfg.max_cpu),
                open_files: s.open_files,
                max_open_files: nonzero(self.cfg.max_open_files),
                threads: s.threads,
                max_threads: nonzero(self.cfg.max_threads),
                disk_free_bytes: s.disk_free_bytes,
                min_disk_free_bytes: nonzero(self.cfg.min_disk_free),
                measured_by: Some(s.source.as_str().to_string()),
                open_files_counted: Some(s.open_files_counted),
                memory_pressure_percent: s.memory_pressure,
                max_memory_pressure_percent: (self.cfg.max_memory_pressure > 0)
                    .then_some(self.cfg.max_memory_pressure),
                cpu_pressure_percent: s.cpu_pressure,
                max_cpu_pressure_percent: (self.cfg.max_cpu_pressure > 0)
                    .then_some(self.cfg.max_cpu_pressure),
                io_pressure_percent: s.io_pressure,
                max_io_pressure_percent: (self.cfg.max_io_pressure > 0)
                    .then_some(self.cfg.max_io_pressure),
                oom_kills: s.oom_kills,
            });
        StatusSnapshot {
            taken_at: status::rfc3339(wall),
            controller: status::ControllerStatus {
                version: env!("CARGO_PKG_VERSION").into(),
                pid: std::process::id(),
                since: status::rfc3339(self.started_wall),
                config_path: self.config_path.display().to_string(),
                log_file: Some(self.log.path().display().to_string()),
                log_problem: self.log.problem(),
            },
            server: status::ServerStatus {
                name: self.cfg.server_name.clone(),
                state: core.state,
                phase: core.phase,
                why: core.why.clone(),
                state_since: at(core.state_since),
                pid: core.server_pid.map(|p| p as u32),
                uptime_secs: self
                    .server
                    .as_ref()
                    .map(|s| now.saturating_duration_since(s.started).as_secs()),
                restarts_in_window: core.restarts_in_window as u32,
                restart_limit: policy
                    .restart_limit_enable
                    .then_some(policy.restart_limit_maximum),
                restart_period_secs: policy.restart_limit_period.as_secs(),
                last_exit: core.last_exit.clone(),
            },
            probe: status::ProbeStatus {
                target: self
                    .cfg
                    .probe
                    .as_ref()
                    .map_or_else(|| "none".to_string(), |p| p.to_string()),
                interval_secs: self.cfg.probe_interval.as_secs(),
                interval_ms: Some(self.cfg.probe_interval.as_millis() as u64),
                last_result: core.probe_last_result.as_ref().map(|(ok, _, detail)| {
                    if *ok {
                        "SUCCESS".to_string()
                    } else {
                        format!("ERROR: {detail}")
                    }
                }),
                last_latency_ms: core
                    .probe_last_result
                    .as_ref()
                    .map(|(_, l, _)| l.as_millis() as u64),
                since_last_success_secs: core
                    .probe_last_success
                    .map(|t| now.saturating_duration_since(t).as_secs()),
                timeout_left_secs: core
                    .probe_timeout_at
                    .map(|t| t.saturating_duration_since(now).as_secs()),
                enabled: policy.probing,
            },
            apps: core
                .apps
                .iter()
                .map(|(name, running, without)| status::AppStatus {
                    name: name.clone(),
                    age_secs: running.as_secs(),
                    since_progress_secs: without.as_secs(),
                })
                .collect(),
            resources,
            failover: status::FailoverStatus {
                trigger_present: self.trigger.exists(),
                health: match self.health.current() {
                    Health::Ready => "ready".into(),
                    Health::Down { reason } => format!("down: {reason}"),
                    Health::Drain => "drain".into(),
                },
            },
            flags: status::Flags {
                paused: core.paused,
                // Checked: a calendar overflow must not end the controller over a status.
                paused_until: core.paused_until.and_then(|t| {
                    wall.checked_add_signed(chrono_duration(t.saturating_duration_since(now)))
                        .map(status::rfc3339)
                }),
                nokill: core.nokill,
                failover_triggered: core.failover_triggered,
            },
            incidents: core
                .incidents
                .iter()
                .map(|i| status::IncidentStatus {
                    id: self.incident_id(i.id),
                    kind: i.kind.clone(),
                    detected_at: at(i.detected_at),
                    outcome: i.outcome.as_str().to_string(),
                    diagnostics: i.diagnostics.clone(),
                })
                .collect(),
            rules: core
                .rules
                .iter()
                .map(|r| status::RuleView {
                    name: r.key.clone(),
                    rule: r.spec.clone(),
                    action: r.action.as_str().to_string(),
                    value: r.value.clone(),
                    average: r.average.clone(),
                    streak: r.streak,
                    window_filled: r.window_filled,
                    window_len: r.window_len,
                    breached: r.breached,
                })
                .collect(),
            containment: Some(self.containment.status()),
        }
    }
}

/// A listening Unix socket carried across a re-exec.
fn unix_listener(fd: OwnedFd) -> std::io::Result<tokio::net::UnixListener> {
    let listener = std::os::unix::net::UnixListener::from(fd);
    listener.set_nonblocking(true)?;
    tokio::net::UnixListener::from_std(listener)
}

/// The carried TCP listener if there is one, else a new one bound to `addr`.
async fn tcp_listener(
    inherited: Option<OwnedFd>,
    addr: SocketAddr,
) -> std::io::Result<tokio::net::TcpListener> {
    match inherited {
        Some(fd) => {
            let listener = std::net::TcpListener::from(fd);
            listener.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(listener)
        }
        None => failover::bind(addr).await,
    }
}

/// Live processes (other than this one) whose environment carries
/// `TREE_MARK_ENV=<mark>`. One pass over /proc, done only at start.
fn tree_marked_processes(mark: &str) -> Vec<i32> {
    let wanted = format!("{TREE_MARK_ENV}={mark}");
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|&pid| pid > 1 && pid != me)
        .filter(|pid| {
            // Unreadable (another user's, or gone meanwhile): not ours to kill.
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == wanted.as_bytes()))
        })
        .collect();
    found.sort_unstable();
    found
}

async fn recv_opt<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// SIGUSR2 as the test-only wedge trigger, when [`TEST_WEDGE_VARIABLE`] is `1`.
fn test_wedge_signal() -> Option<tokio::signal::unix::Signal> {
    if std::env::var_os(TEST_WEDGE_VARIABLE).is_some_and(|v| v == "1") {
        signal(SignalKind::user_defined2()).ok()
    } else {
        None
    }
}

async fn recv_signal(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

async fn reap_loop(reaper: Rc<Reaper>, unclaimed: mpsc::UnboundedSender<(i32, ExitInfo)>) {
    if let Err(e) = process::reap_forever(reaper, unclaimed).await {
        eprintln!("qoscntrlr: the reaper stopped: {e}");
    }
}

/// [`TEST_BAD_HANDOFF_VARIABLE`]: the same handoff with a supervision state of the wrong
/// shape.
fn test_spoil_handoff(bytes: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<Handoff>(bytes) {
        Ok(mut handoff) => {
            handoff.core = serde_json::json!({ "spoiled by": TEST_BAD_HANDOFF_VARIABLE });
            serde_json::to_vec(&handoff).unwrap_or_else(|_| bytes.to_vec())
        }
        Err(_) => bytes.to_vec(),
    }
}

fn join_pids(pids: &[i32]) -> String {
    pids.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The next change of the server cgroup's watched files; never, without a watch.
async fn cgroup_changed(watch: &mut Option<AsyncEventsWatch>) -> std::io::Result<()> {
    match watch {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}

fn nonzero(v: u64) -> Option<u64> {
    (v > 0).then_some(v)
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or_else(|_| chrono::Duration::zero())
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Time the system spent suspended, from CLOCK_BOOTTIME (counts suspend) against
/// CLOCK_MONOTONIC (does not): a suspended controller is as blind as a stopped one.
struct StallClock {
    last_gap: Option<Duration>,
}

impl StallClock {
    fn new() -> StallClock {
        StallClock {
            last_gap: boot_minus_monotonic(),
        }
    }

    /// Suspended time since the previous call (zero when the clocks cannot be read).
    fn suspended(&mut self) -> Duration {
        let gap = boot_minus_monotonic();
        let grown = match (self.last_gap, gap) {
            (Some(last), Some(now)) => now.saturating_sub(last),
            _ => Duration::ZERO,
        };
        if gap.is_some() {
            self.last_gap = gap;
        }
        grown
    }
}

fn boot_minus_monotonic() -> Option<Duration> {
    fn read(clock: libc::clockid_t) -> Option<Duration> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec into the valid, owned `ts`.
        let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
        if rc != 0 {
            return None;
        }
        Some(Duration::new(
            u64::try_from(ts.tv_sec).ok()?,
            u32::try_from(ts.tv_nsec).ok()?,
        ))
    }
    let boot = read(libc::CLOCK_BOOTTIME)?;
    let mono = read(libc::CLOCK_MONOTONIC)?;
    Some(boot.saturating_sub(mono))
}

#[cfg(test)]
mod tests {
    use super::EndedServers;

    #[test]
    fn ended_servers_are_remembered_bounded_and_forgotten_on_reuse() {
        let mut ended = EndedServers::default();
        ended.add([100, 101, 100]);
        assert!(ended.contains(100) && ended.contains(101) && !ended.contains(102));
        // A recycled pid given to the new server is that server's, not a ghost.
        ended.remove(100);
        assert!(!ended.contains(100));
        ended.add(1000..1000 + EndedServers::KEPT as i32);
        assert!(!ended.contains(101), "the oldest make room");
        assert!(ended.contains(1000) && ended.contains(999 + EndedServers::KEPT as i32));
        assert_eq!(ended.0.len(), EndedServers::KEPT);
    }
}
