//! The imperative shell of `qoscntrlr run`: one `tokio::select!` loop on a current-thread
//! runtime (inside a `LocalSet`) that turns the world — reaped children, probe results,
//! pipe messages, operator commands, signals, timers — into [`core::Event`]s, feeds them
//! to the [`Controller`], and carries out the [`Action`]s it returns through the module
//! that owns each effect. Decisions live in the core; the shell only wires.
//!
//! This file holds the `Shell` itself, the loop and the intake of events (tasks, pipe,
//! control socket, signals, cgroup changes). The rest, one concern per file:
//! `startup` (containment, building the shell, leftovers of a killed controller,
//! sockets and listeners), `reload` (SIGHUP), `executor` (carrying out the core's
//! actions), `sampling` (resource readings), `snapshot` (status and metrics) and
//! `handoff` (`qoscntrlr reexec`).

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::os::fd::{OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Local};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};

use crate::cgroup::{self, AsyncEventsWatch, EventsWatch};
use crate::config::Config;
use crate::control::{ControlCommand, ControlEvent, ControlResponse};
use crate::core::{Component, Controller, Event, MessageSender, ServerState, STALL_MIN};
use crate::diagnostics::{self, DiagReport};
use crate::events::EventsFile;
use crate::exitcode::{EXIT_CONFIG, EXIT_LOCKED, EXIT_SOFTWARE};
use crate::failover::{HealthBoard, TriggerFile};
use crate::fdreserve;
use crate::host::{BoundedProbe, HostSampler};
use crate::journal::{self, Journal, Priority, Reporter};
use crate::lock::{DataDirLock, LockError, ServerRecord, StateFile};
use crate::metrics::MetricsSnapshot;
use crate::pipe::PipeEvent;
use crate::probe::ProbeOutcome;
use crate::process::{self, ConsoleTail, ExitInfo, Reaper};
use crate::qoslog::QosLog;
use crate::reexec;
use crate::rules::Item;
use crate::sampler::{Sample, Sampler};
use crate::sdnotify::{SdNotify, SdNotifyError};
use crate::timefmt;
use crate::usage::UsageFile;

mod executor;
mod handoff;
mod reload;
mod sampling;
mod snapshot;
mod startup;

pub use handoff::check_handoff;
use handoff::{Restore, Resumed};
use startup::containment_after_reexec;
pub use startup::{set_up_containment, ContainmentState};

/// TEST-ONLY hook: when this variable is `1`, SIGUSR2 blocks the supervision loop's
/// thread for [`TEST_WEDGE_FOR`], so a test can prove that `WATCHDOG=1` stops when the
/// loop is wedged (tests/sdnotify_run.rs). Never set it in production: it exists because
/// a real wedge (a blocking syscall, a deadlock) cannot be provoked from outside.
const TEST_WEDGE_VARIABLE: &str = "QOSCNTRLR_TEST_WEDGE_SIGNAL";
const TEST_WEDGE_FOR: Duration = Duration::from_secs(30);

/// Time limit of a failover or recovery hook.
const HOOK_LIMIT: Duration = Duration::from_secs(30);
/// How long stopping waits for the mailer to spool what it holds.
const MAILER_CLOSE_LIMIT: Duration = Duration::from_secs(2);
/// The loop sleeps at most this long, even with nothing due (see the loop): a stall is
/// then counted to within this, and a suspend is seen this soon after the resume. No
/// shorter: each wake-up costs CPU, and at a 1 s probe interval the probe already wakes
/// the loop this often.
const LONGEST_SLEEP: Duration = STALL_MIN;
/// Lines kept for the body of alert mails.
const RECENT_LINES: usize = 60;
/// Console lines handed to diagnostics and mails.
const CONSOLE_TAIL_LINES: usize = 50;
/// Queue between the pipe and the loop: past this a flooding client waits (its socket
/// is not read), the loop never does.
const PIPE_QUEUE: usize = 1024;
/// Pipe events a loop turn takes when they are already queued (it never waits for more).
/// A turn has a fixed cost of its own (a select over every source, a timer armed and
/// dropped, the queue drained, metrics published): one event per turn, a flood paid it
/// per message (callgrind: ~4,000 of ~27,000 instructions). Bounded, so timers, probe
/// results and signals wait at most this many messages (a fraction of a millisecond).
const PIPE_BATCH: usize = 64;
/// How long a re-exec waits, right before handing over, for the pipe's clients to be
/// read (see the loop).
const PIPE_SETTLE: Duration = Duration::from_millis(2);
const CONSOLE_LOG_NAME: &str = "qoscntrlr-console.log";
/// How long the end of a killed tree (`populated 0` of the server's cgroup) is awaited
/// before a restart or the controller's exit goes ahead regardless (a process stuck in
/// uninterruptible sleep ignores even SIGKILL until its I/O returns).
const CGROUP_EMPTY_LIMIT: Duration = Duration::from_secs(10);
/// Longest the last-state record waits for a replacement server's state (the loop
/// wakes for it).
const LAST_STATE_HOLD: Duration = Duration::from_millis(500);
/// Beyond a tree kill's own time limit, how long a leaving controller waits for its end.
const KILL_END_SLACK: Duration = Duration::from_secs(2);

/// Run the controller with `cfg`, read from `config_path` (re-read on SIGHUP); returns
/// the exit code.
pub fn run(cfg: Config, config_path: &Path) -> u8 {
    // First, before any thread exists: it edits the environment.
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
    /// A crash's post-mortem has read the leftovers of incident N (its file follows).
    PostMortemCaptured(u64),
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
    /// A `/proc` tree kill that had to wait for its processes to die has ended;
    /// `reported`: how many of its killed pids the core was already told about.
    TreeKilled {
        purpose: KillPurpose,
        report: process::KillReport,
        reported: usize,
    },
}

/// Why the shell kills a tree (the log line differs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillPurpose {
    /// The core's `KillTree`: the server's tree.
    Tree,
    /// Before a spawn: what is left of the previous server.
    Sweep,
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
    console: ConsoleTail,
    trigger: TriggerFile,
    health: HealthBoard,
    state_file: StateFile,
    /// `qoscntrlr-last-state.json`: what `status` shows when this controller is gone.
    last_state: crate::laststate::LastStateWriter,
    sd: Option<SdNotify>,
    /// The last notification to systemd failed (logged once until one succeeds).
    sd_failing: bool,
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
    /// The server became READY in this turn: at its end, give back what start-up or the
    /// incident before used (`footprint::trim`).
    trim_due: bool,
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
    /// The server's cgroup was made by this process and no `cgroup.kill` was written to
    /// it since: a server can be cloned straight into it (see `executor::spawn_now`).
    server_cgroup_fresh: bool,
    /// Cloning into the cgroup failed where it should have worked: migrate from now on.
    clone_into_off: bool,
    /// The server's cgroup was made again: the loop re-arms its watch.
    cgroup_renewed: bool,
    /// `/proc` tree kills still waiting for processes to die (`executor::start_tree_kill`).
    kills_running: usize,
    /// A spawn waits for those kills to end.
    spawn_after_kill: bool,
    /// Since when a due last-state record has been held back (see `drain_queue`).
    last_state_held: Option<Instant>,
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

impl Shell {
    /// Send one notification to systemd. A failure is logged once, then nothing more
    /// until a notification succeeds again (the watchdog's, every few seconds, would
    /// flood the log); a missed `WATCHDOG=1` is what gets the controller restarted.
    fn sd_notify(&mut self, what: &str, send: impl FnOnce(&SdNotify) -> Result<(), SdNotifyError>) {
        let result = match &self.sd {
            Some(sd) => send(sd),
            None => return,
        };
        match result {
            Ok(()) if self.sd_failing => {
                self.sd_failing = false;
                self.line(Component::Controller, "Notifications to systemd work again");
            }
            Ok(()) => {}
            Err(e) if !self.sd_failing => {
                self.sd_failing = true;
                self.line(
                    Component::Controller,
                    format!(
                        "Cannot notify systemd ({what}): {e}; further failures are not logged until one succeeds"
                    ),
                );
            }
            Err(_) => {}
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
        self.sd_notify("READY=1", SdNotify::ready);
        if let Some(resumed) = resumed {
            self.finish_resume(resumed);
        }

        let mut stall_clock = StallClock::new();
        while self.exit.is_none() {
            self.rearm_cgroup_watch(&mut cgroup_watch);
            // The loop sleeps until the core's next deadline, at most LONGEST_SLEEP:
            // what it has to do wakes it, and nothing else does (an idle wake-up costs
            // about as much CPU as a probe). A held last-state record is due too.
            let slept_at = Instant::now();
            let longest = slept_at.checked_add(LONGEST_SLEEP).unwrap_or(slept_at);
            let deadline = self.ctl.next_deadline();
            let held_record = self
                .last_state_held
                .and_then(|since| since.checked_add(LAST_STATE_HOLD));
            let wake_at = [deadline, held_record]
                .into_iter()
                .flatten()
                .fold(longest, Instant::min);
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
                Some(pe) = recv_opt(&mut pipe_rx) => {
                    self.on_pipe(pe);
                    if let Some(rx) = pipe_rx.as_mut() {
                        for _ in 1..PIPE_BATCH {
                            let Ok(pe) = rx.try_recv() else { break };
                            self.on_pipe(pe);
                        }
                    }
                }
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
                    self.sd_notify("WATCHDOG=1", SdNotify::watchdog);
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
            // that waited, so the core does not read the blind time as a hang. When
            // in the sleep the stall began is unknown, so a late wake-up counts the
            // whole sleep as blind: at most LONGEST_SLEEP more than the stall, never
            // less (a stall counted short could let a probe timeout fire for time the
            // controller was not looking).
            let woke = Instant::now();
            let late = woke.saturating_duration_since(wake_at);
            let blind = if late >= STALL_MIN {
                woke.saturating_duration_since(slept_at)
            } else {
                Duration::ZERO
            };
            let stalled = blind.max(stall_clock.suspended());
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
            // stderr lines a stalled reader left queued go out as soon as it reads
            // again (never waiting for it: see journal).
            self.journal.flush();
            if std::mem::take(&mut self.trim_due) {
                crate::footprint::trim();
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
        self.finish_tree_kills(&mut tasks_rx).await;
        self.rearm_cgroup_watch(&mut cgroup_watch);
        self.empty_cgroup_before_exit(&mut cgroup_watch).await;
        self.shutdown();
        self.write_last_state(Some(self.exit.unwrap_or(0)));
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

    /// The controller is leaving: a tree kill still in progress (a SIGTERM that came
    /// while it waited) is finished first, so nothing of the server's tree is left
    /// behind; a process that cannot die is reported by the kill itself after its own
    /// time limit, so this never waits longer than that.
    async fn finish_tree_kills(&mut self, tasks_rx: &mut mpsc::UnboundedReceiver<TaskResult>) {
        self.spawn_after_kill = false;
        let give_up = tokio::time::Instant::now() + executor::KILL_WAIT_LIMIT + KILL_END_SLACK;
        while self.kills_running > 0 {
            match tokio::time::timeout_at(give_up, tasks_rx.recv()).await {
                Ok(Some(TaskResult::TreeKilled {
                    purpose,
                    report,
                    reported,
                })) => self.on_tree_killed(purpose, report, reported),
                // Leaving: other results no longer decide anything.
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
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
        } else {
            // Emptied before the loop read the `cgroup.events` change that says so: the
            // kill's end is still reported.
            self.report_cgroup_emptied(&c);
        }
        for problem in c.remove() {
            self.line(Component::Controller, problem);
        }
    }

    /// The server's cgroup was made again since the last turn (`executor::spawn_now`):
    /// watch the new files, and read them once, so a change between the renewal and
    /// now is not missed.
    fn rearm_cgroup_watch(&mut self, watch: &mut Option<AsyncEventsWatch>) {
        if !std::mem::take(&mut self.cgroup_renewed) {
            return;
        }
        if let Some(w) = watch {
            if let Err(e) = w.get_mut().rearm() {
                self.line(
                    Component::Controller,
                    format!("Watching the server's cgroup failed: {e}"),
                );
                *watch = None;
            }
        }
        self.on_cgroup_change();
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
        self.report_cgroup_emptied(&c);
        if self.spawn_waiting.take().is_some() {
            self.spawn_now();
        }
    }

    /// The server's cgroup is empty: the end of a cgroup kill in progress is logged once.
    fn report_cgroup_emptied(&mut self, c: &cgroup::Containment) {
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
        self.sd_notify("STOPPING=1", SdNotify::stopping);
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
        self.sd_notify("STOPPING=1", SdNotify::stopping);
        self.last_state
            .stopping(crate::status::EndHow::Signal, format!("{name} received"));
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
        if self.last_state.due() {
            // While the server is being replaced (CRASHED, RESTARTING) the record waits
            // for the state the replacement reaches, at most LAST_STATE_HOLD: its write
            // (two fsyncs, milliseconds on a busy disk) must not delay the new server.
            let replacing = matches!(
                self.ctl.state(),
                ServerState::Crashed | ServerState::Restarting
            );
            let held_since = *self.last_state_held.get_or_insert_with(Instant::now);
            if !replacing || held_since.elapsed() >= LAST_STATE_HOLD {
                self.last_state_held = None;
                self.write_last_state(None);
            }
        }
    }

    /// Record the last known state for `status` without a controller; `exit_code` once
    /// the controller is leaving (how it ended).
    fn write_last_state(&mut self, exit_code: Option<u8>) {
        let snapshot = self.snapshot();
        if let Some(line) = self.last_state.write(snapshot, exit_code, Local::now()) {
            self.line(Component::Controller, line);
        }
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
                        let freed = fdreserve::release() + self.sampler.close_kept_files();
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
                    let _ = self.state_file.clear();
                }
                self.queue.push_back(Event::ServerExited {
                    pid,
                    exit: exit.to_string(),
                });
            }
            TaskResult::Log(component, text) => self.line(component, text),
            TaskResult::PostMortemCaptured(incident) => {
                self.queue.push_back(Event::PostMortemCaptured { incident })
            }
            TaskResult::ReexecChecked { request, outcome } => {
                self.on_reexec_checked(request, outcome)
            }
            TaskResult::ReexecReady { request, version } => {
                self.exec_due = Some((request, version));
            }
            TaskResult::TreeKilled {
                purpose,
                report,
                reported,
            } => self.on_tree_killed(purpose, report, reported),
        }
    }

    fn on_pipe(&mut self, event: PipeEvent) {
        match event {
            PipeEvent::Line {
                sender_pid,
                text: received,
                message,
                meaning,
                ..
            } => {
                let text = message.log_text(|| timefmt::timedate(&Local::now()));
                self.queue.push_back(Event::MessageReceived {
                    text,
                    append_timedate: false,
                    signal: meaning,
                    // The core ignores messages from processes of a server that has ended.
                    from: sender_pid.map(|pid| MessageSender {
                        pid,
                        line: received,
                    }),
                });
            }
            PipeEvent::Rejected { client, reason } => {
                self.queue.push_back(Event::MessageRejected {
                    reason: format!("client {client}: {reason}"),
                });
            }
            PipeEvent::Failed { reason } => {
                // Logged at once, unlike the queued events: the messages of this turn's
                // batch that came before it are handled (and logged) first.
                self.drain_queue();
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
