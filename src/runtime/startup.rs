//! Starting the shell: the containment decision (cgroup or `/proc` tree), the `Shell`
//! built from the configuration, the facts logged at start, what a controller killed
//! with SIGKILL left behind (its server's tree, orphaned helpers, a populated cgroup),
//! and the sockets and listeners opened (or taken over after a re-exec).

use std::cell::Cell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use chrono::{DateTime, Local};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::cgroup::{self, CgroupSetting, Containment, Decision, EventsWatch};
use crate::config::Config;
use crate::control;
use crate::core::{Component, Controller, Health};
use crate::diagnostics;
use crate::events::EventsFile;
use crate::exitcode::EXIT_CONFIG;
use crate::failover::{self, HealthBoard, TriggerFile};
use crate::fdreserve;
use crate::host::HostSampler;
use crate::journal::{Priority, Reporter};
use crate::lock::{ServerRecord, StateFile};
use crate::metrics::{self, MetricsSnapshot};
use crate::pipe;
use crate::process::{self, ConsoleTail, Reaper, TREE_MARK_ENV};
use crate::qoslog::QosLog;
use crate::reexec::{self, Carried};
use crate::sampler::Sampler;
use crate::sdnotify::SdNotify;
use crate::status;
use crate::timefmt;
use crate::usage::UsageFile;

use super::handoff::Restore;
use super::{join_pids, ListenFds, Shell, TaskResult, CGROUP_EMPTY_LIMIT, PIPE_QUEUE};

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
pub(super) fn containment_after_reexec(cfg: &Config, restore: &Restore) -> ContainmentState {
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

/// A listening Unix socket carried across a re-exec.
pub(super) fn unix_listener(fd: OwnedFd) -> std::io::Result<tokio::net::UnixListener> {
    let listener = std::os::unix::net::UnixListener::from(fd);
    listener.set_nonblocking(true)?;
    tokio::net::UnixListener::from_std(listener)
}

/// The carried TCP listener if there is one, else a new one bound to `addr`.
pub(super) async fn tcp_listener(
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
pub(super) fn tree_marked_processes(mark: &str) -> Vec<i32> {
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

impl Shell {
    pub(super) async fn start(
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
            crate::core::wording::STARTING_PIPE_WATCHER.component,
            crate::core::wording::STARTING_PIPE_WATCHER.fixed(),
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
    pub(super) fn new(
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
        let policy = cfg.policy();
        let (metrics_tx, _) =
            watch::channel(MetricsSnapshot::new(crate::core::ServerState::Stopped));
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
            console: ConsoleTail::default(),
            trigger: TriggerFile::new(&cfg.data_directory),
            health: HealthBoard::new(Health::Down {
                reason: "starting".into(),
            }),
            state_file: StateFile::new(&cfg.data_directory),
            last_state: crate::laststate::LastStateWriter::new(&cfg.data_directory),
            sd: None,
            sd_failing: false,
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
            metrics: MetricsSnapshot::new(crate::core::ServerState::Stopped),
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
            trim_due: false,
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
            // Possibly made, and killed, by an earlier controller: made anew before the
            // first spawn.
            server_cgroup_fresh: false,
            clone_into_off: false,
            cgroup_renewed: false,
            kills_running: 0,
            spawn_after_kill: false,
            last_state_held: None,
            cfg,
            config_path,
            journal,
        }
    }

    /// Diagnostics pruning and the mailer (which retries what is spooled).
    pub(super) fn start_common(&mut self) {
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
    pub(super) fn ensure_webhook(&mut self) {
        if self.webhook.is_some() {
            return;
        }
        if let Some(settings) = crate::webhook::WebhookSettings::from_config(&self.cfg) {
            self.start_webhook(settings);
        }
    }

    /// Start the mailer if the configuration has mail and it is not running.
    pub(super) fn ensure_mailer(&mut self) {
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

    /// A previous controller that died (SIGKILL) may have left its server running:
    /// never two servers.
    pub(super) fn kill_stale_server(&mut self) {
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
    pub(super) fn empty_stale_cgroup(&mut self, stale: Option<&ServerRecord>) -> bool {
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
        self.server_cgroup_fresh = false;
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
    pub(super) fn tree_mark(&self) -> String {
        self.cfg.data_directory.display().to_string()
    }

    pub(super) fn log_sender(&self) -> mpsc::UnboundedSender<String> {
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
    pub(super) async fn open_listeners(&mut self, carried: &mut Carried) {
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
                    tokio::task::spawn_local(failover::serve_readiness_logged(
                        l,
                        self.health.subscribe(),
                        self.log_sender(),
                    ));
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
                    tokio::task::spawn_local(failover::serve_agent_logged(
                        l,
                        self.health.subscribe(),
                        self.log_sender(),
                    ));
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
                    tokio::task::spawn_local(metrics::serve_with(
                        l,
                        self.metrics_tx.subscribe(),
                        metrics::LIMITS,
                        Some(self.log_sender()),
                    ));
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
}
