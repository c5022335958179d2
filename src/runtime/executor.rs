//! The action executor: each [`Action`] the core returns is carried out here through
//! the module that owns the effect — spawning and stopping the server, the tree kill,
//! probes, diagnostics, hooks, mails and webhooks, the events file.

use std::collections::HashSet;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use chrono::Local;
use nix::sys::signal::Signal;

use crate::config::ProbeTarget;
use crate::control::ControlResponse;
use crate::core::HookEvent;
use crate::core::{Action, Alert, Component, Event, IncidentOutcome};
use crate::diagnostics::{self, DiagRequest};
use crate::events::EventRecord;
use crate::failover;
use crate::fdreserve;
use crate::journal::{self, Priority};
use crate::lock::ServerRecord;
use crate::probe;
use crate::process::{
    self, CgroupEntry, CloneIntoOutcome, KillReport, KillStep, ServerSpec, TreeKill, TREE_MARK_ENV,
};
use crate::timefmt;

use super::{
    capitalize, join_pids, KillPurpose, ServerProc, Shell, TaskResult, CONSOLE_LOG_NAME,
    CONSOLE_TAIL_LINES, HOOK_LIMIT,
};

/// Rounds of a tree kill done at once, in the loop turn that asked for it, while each
/// finds everything it killed already gone (a tree forking as it is killed).
const KILL_ROUNDS_AT_ONCE: u32 = 20;
/// First pause between the rounds of a tree kill whose processes are still on their way
/// out; it doubles up to [`KILL_PAUSE_MAX`].
const KILL_PAUSE_MIN: Duration = Duration::from_millis(1);
const KILL_PAUSE_MAX: Duration = Duration::from_millis(100);
/// How long a tree kill waits for its processes to die before it reports the ones still
/// alive (uninterruptible sleep ignores even SIGKILL until its I/O returns) and a waiting
/// restart goes ahead — the same bound as for a contained server's cgroup to empty.
pub(super) const KILL_WAIT_LIMIT: Duration = super::CGROUP_EMPTY_LIMIT;

/// The rounds of a tree kill after the first ones, a timer apart (the loop serves in
/// between), until nothing of the tree is alive or [`KILL_WAIT_LIMIT`] has passed.
async fn finish_tree_kill(mut kill: TreeKill) -> KillReport {
    let give_up = tokio::time::Instant::now() + KILL_WAIT_LIMIT;
    let mut pause = KILL_PAUSE_MIN;
    loop {
        tokio::time::sleep(pause).await;
        let step = fdreserve::with_released(|| kill.step());
        if step == KillStep::Done || tokio::time::Instant::now() >= give_up {
            break;
        }
        pause = match step {
            // What it killed is gone: look again at once for anything forked meanwhile.
            KillStep::Again => Duration::ZERO,
            _ if pause.is_zero() => KILL_PAUSE_MIN,
            _ => (pause * 2).min(KILL_PAUSE_MAX),
        };
    }
    fdreserve::with_released(|| kill.finish())
}

/// The reason the core gives diagnostics an operator asked for (`qoscntrlr diagnose`).
pub(super) const OPERATOR_DIAGNOSTICS: &str = "operator";

impl Shell {
    /// Copy the server's console; the descriptor is remembered for a re-exec while the
    /// pump owns it.
    pub(super) fn pump_console(&mut self, capture: process::ConsoleCapture) {
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

    pub(super) fn incident_id(&self, n: u64) -> String {
        format!("{}-{n}", self.incident_prefix)
    }

    pub(super) fn helper_pids(&self, server: Option<i32>) -> HashSet<i32> {
        let mut watched = self.reaper.watched();
        if let Some(pid) = server {
            watched.remove(&pid);
        }
        watched
    }

    pub(super) fn execute(&mut self, action: Action) {
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
            Action::Probe { limit } => self.start_probe(limit),
            Action::ResetSampler => self.sampler.reset(),
            Action::RunDiagnostics { reason, incident } => self.start_diagnostics(reason, incident),
            Action::RunPostMortem { incident } => self.start_post_mortem(incident),
            Action::WriteTrigger => {
                let enabled = !self.cfg.disable_failover_trigger;
                if let Err(e) = self.trigger.write(enabled) {
                    // The core alerts (log + mail); readiness, agent and hooks go down
                    // regardless of the file.
                    self.queue.push_back(Event::TriggerWriteFailed {
                        error: e.to_string(),
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
                self.last_state.mark();
                if to == crate::core::ServerState::Ready {
                    self.trim_due = true;
                }
                self.journal.say(
                    journal::state_priority(to.as_str()),
                    &format!("State {} -> {} ({why})", from.as_str(), to.as_str()),
                );
                self.line(
                    Component::Controller,
                    crate::core::wording::STATE_CHANGED.fill(&[&from.as_str(), &to.as_str(), &why]),
                );
                let record = EventRecord::new(Local::now(), "state", to.as_str())
                    .reason(&why)
                    .field("from", from.as_str());
                self.record_event(record);
                let status = format!("{}: {why}", to.as_str());
                self.sd_notify("STATUS=", |sd| sd.status(&status));
            }
            Action::Incident { id, kind, outcome } => {
                self.last_state.mark();
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
                self.last_state.mark();
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

    pub(super) fn record_event(&mut self, record: EventRecord) {
        if let Some(e) = self.events.record(&record) {
            self.line(Component::Controller, format!("Events file: {e}"));
        }
    }

    pub(super) fn spawn_server(&mut self) {
        if let Some(c) = self.containment.active.clone() {
            // Leftovers of the previous server are exactly the cgroup's members: kill
            // them and start once the cgroup is empty (a notification, see
            // `on_cgroup_change`), so the new server never shares its cgroup.
            self.last_pgid = None;
            if c.populated().unwrap_or(false) {
                let members = c.members().unwrap_or_default();
                self.server_cgroup_fresh = false;
                match c.kill(None) {
                    Ok(_) => {
                        self.queue.push_back(Event::ServerProcessesEnded {
                            pids: members.clone(),
                        });
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
        // A kill still waiting for processes of the tree to die: the server starts
        // when it has ended (`on_tree_killed`), never beside what is left of the old one.
        if self.kills_running > 0 {
            self.spawn_after_kill = true;
            return;
        }
        // Leftovers of a previous server (daemonized grandchildren) go first.
        if let Some(pgid) = self.last_pgid.take() {
            let exclude = self.helper_pids(None);
            if !self.start_tree_kill(TreeKill::new(pgid, pgid, &exclude), KillPurpose::Sweep) {
                self.spawn_after_kill = true;
                return;
            }
        }
        self.spawn_now();
    }

    /// How the next server enters its (empty) cgroup. Cloned straight into it when the
    /// kernel allows: into a cgroup no `cgroup.kill` was written to since it was made
    /// (see `crate::clone_into` for why), so one that was killed is made again first —
    /// after what its files still have to tell (OOM kills, the end of the kill) is read.
    fn cgroup_entry(&mut self) -> (CgroupEntry, bool) {
        let Some(c) = self.containment.active.clone() else {
            return (CgroupEntry::Migrate, false);
        };
        if self.clone_into_off {
            return (CgroupEntry::Migrate, false);
        }
        if self.server_cgroup_fresh {
            return (CgroupEntry::CloneInto, false);
        }
        // Not empty (a spawn after "starting the server anyway"): it cannot be removed.
        if c.populated().unwrap_or(true) {
            return (CgroupEntry::Migrate, false);
        }
        self.check_oom_kills();
        self.report_cgroup_emptied(&c);
        match c.renew_server() {
            Ok(()) => {
                self.server_cgroup_fresh = true;
                self.cgroup_renewed = true;
                // The new cgroup's memory.events counts from zero.
                if self.oom_kills_seen.is_some() {
                    self.oom_kills_seen = Some(0);
                }
                (CgroupEntry::CloneInto, true)
            }
            Err(e) => {
                if !c.server.is_dir() {
                    // Removed but not made again: the spawn reports the missing cgroup.
                    self.line(Component::Controller, e.to_string());
                }
                (CgroupEntry::Migrate, false)
            }
        }
    }

    /// Start the server (its leftovers are gone).
    pub(super) fn spawn_now(&mut self) {
        let (entry, renewed) = self.cgroup_entry();
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
        match process::spawn_server_entering(&spec, &self.reaper, entry) {
            Ok(spawned) => {
                let clone_off = match &spawned.clone_into {
                    CloneIntoOutcome::NotTried | CloneIntoOutcome::Cloned => None,
                    // The kernel has no clone3 or CLONE_INTO_CGROUP, or refuses it here.
                    CloneIntoOutcome::Refused(e) => Some(e.to_string()),
                    // The cgroup had been killed after all (by someone else), or, in a
                    // cgroup just made, the controller's own cgroup was: no clone will
                    // live there.
                    CloneIntoOutcome::KilledAtFork => {
                        self.server_cgroup_fresh = false;
                        renewed.then(|| "the kernel killed the clone at fork".to_string())
                    }
                };
                if let Some(why) = clone_off {
                    // Once: from now on every start moves the server into its cgroup,
                    // milliseconds slower, which the support engineer should know why.
                    self.clone_into_off = true;
                    self.line(
                        Component::Controller,
                        format!(
                            "Starting the server directly in its cgroup is not possible here ({why}); it is moved there after each start instead"
                        ),
                    );
                }
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

    pub(super) fn request_stop(&mut self) {
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

    pub(super) fn kill_tree(&mut self) {
        if let Some(c) = self.containment.active.clone() {
            // cgroup.kill: every member, and whatever they fork meanwhile, in one step.
            let root = self.server.as_ref().map(|s| s.pid);
            // An empty cgroup (a crash that left nothing) has nothing to kill, and no
            // process in it that could fork one: the write is skipped, so the cgroup
            // stays fit for the next server to be cloned into (see `cgroup_entry`).
            if !c.populated().unwrap_or(true) {
                self.queue
                    .push_back(Event::ServerProcessesEnded { pids: Vec::new() });
                return;
            }
            self.server_cgroup_fresh = false;
            // Opening cgroup.kill needs a descriptor: the reserve is given back for it.
            match fdreserve::with_released(|| c.kill(root)) {
                Ok(report) => {
                    self.queue.push_back(Event::ServerProcessesEnded {
                        pids: report.members.clone(),
                    });
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
        let kill = if self.server.is_some() {
            TreeKill::of_child(pgid, &exclude)
        } else {
            TreeKill::new(pgid, pgid, &exclude)
        };
        self.start_tree_kill(kill, KillPurpose::Tree);
    }

    /// Run `kill` (the `/proc` tree kill): its first rounds at once, in this loop turn —
    /// a tree that is gone when they end (the usual case) is reported right away and
    /// `true` returned — and, while killed processes are still on their way out, the
    /// rest as a task that waits on a timer between rounds, so the loop keeps answering
    /// `status`, reading the server's messages and serving the endpoints meanwhile; its
    /// end comes back as [`TaskResult::TreeKilled`] ([`Shell::on_tree_killed`]). A
    /// process that does not die (uninterruptible sleep) is waited for at most
    /// [`KILL_WAIT_LIMIT`], then reported.
    pub(super) fn start_tree_kill(&mut self, mut kill: TreeKill, purpose: KillPurpose) -> bool {
        // The walk of /proc needs descriptors: the reserve is given back for it, so a
        // controller starved of descriptors still finds and kills the whole tree.
        let mut step = fdreserve::with_released(|| kill.step());
        while step == KillStep::Again && kill.rounds() < KILL_ROUNDS_AT_ONCE {
            step = fdreserve::with_released(|| kill.step());
        }
        if step != KillStep::Wait {
            let report = fdreserve::with_released(|| kill.finish());
            self.kills_running += 1;
            self.on_tree_killed(purpose, report, 0);
            return true;
        }
        // What the first rounds killed has ended for the core now (a message they wrote
        // and that is read while the kill waits is not the current server's); the rest
        // is reported when the kill ends.
        let reported = kill.killed().len();
        self.queue.push_back(Event::ServerProcessesEnded {
            pids: kill.killed().to_vec(),
        });
        self.kills_running += 1;
        let tasks = self.tasks.clone();
        tokio::task::spawn_local(async move {
            let report = finish_tree_kill(kill).await;
            let _ = tasks.send(TaskResult::TreeKilled {
                purpose,
                report,
                reported,
            });
        });
        false
    }

    /// A tree kill has ended (`reported`: how many of its pids the core already has as
    /// ended). Logs what it did, and starts the server that waited for it.
    pub(super) fn on_tree_killed(
        &mut self,
        purpose: KillPurpose,
        report: KillReport,
        reported: usize,
    ) {
        self.kills_running = self.kills_running.saturating_sub(1);
        let fresh = report.killed.get(reported..).unwrap_or_default();
        if reported == 0 || !fresh.is_empty() {
            self.queue.push_back(Event::ServerProcessesEnded {
                pids: fresh.to_vec(),
            });
        }
        if !report.killed.is_empty() {
            let text = match purpose {
                KillPurpose::Tree => format!(
                    "Killed {} process(es) of the server's tree: {}",
                    report.killed.len(),
                    join_pids(&report.killed)
                ),
                KillPurpose::Sweep => format!(
                    "Killed {} leftover process(es) of the previous server",
                    report.killed.len()
                ),
            };
            self.line(Component::Kill, text);
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
        if self.kills_running == 0 && self.spawn_after_kill {
            self.spawn_after_kill = false;
            // A controller on its way out starts nothing.
            if self.exit.is_none() {
                self.spawn_server();
            }
        }
    }

    /// The controller itself ran out of descriptors (`what` failed): say so once per
    /// episode (the reserve has been given back so that the log and the kill work).
    pub(super) fn fd_shortage(&mut self, what: &str, freed: usize) {
        if self.fd_short_since.is_some() {
            return;
        }
        self.fd_short_since = Some(Instant::now());
        self.line(
            Component::Controller,
            format!(
                "Controller fault: out of file descriptors ({what}); released {freed} descriptors (the reserve and the files the sampler keeps open) so that logging, reaping and killing keep working"
            ),
        );
    }

    /// Take the spare descriptors again once there are free ones.
    pub(super) fn refill_fd_reserve(&mut self) {
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

    /// One probe attempt within `limit` (the core's QOS_PROBE_ATTEMPT_TIMEOUT).
    pub(super) fn start_probe(&mut self, limit: Duration) {
        let Some(target) = self.cfg.probe.clone() else {
            return;
        };
        if target == ProbeTarget::Message {
            return;
        }
        let reaper = self.reaper.clone();
        let tasks = self.tasks.clone();
        tokio::task::spawn_local(async move {
            let outcome = probe::probe_once(&target, limit, &reaper).await;
            let _ = tasks.send(TaskResult::Probe(outcome));
        });
    }

    pub(super) fn start_diagnostics(&mut self, reason: String, incident: Option<u64>) {
        let request = self.diag_request(reason);
        let reaper = self.reaper.clone();
        let tasks = self.tasks.clone();
        let by_operator = request.reason == OPERATOR_DIAGNOSTICS;
        tokio::task::spawn_local(async move {
            let report = diagnostics::collect(request, &reaper, Local::now()).await;
            let _ = tasks.send(TaskResult::Diagnostics(incident, by_operator, report));
        });
    }

    /// A crash's post-mortem: the leftovers are read first (bounded, off the loop) and
    /// reported, so the core kills them and restarts the server; the file is written and
    /// fsynced (and `QOS_NSD_PATH` run) meanwhile, and reported when done. A server that
    /// left nothing behind (the usual crash; always so when its cgroup is empty) has
    /// nothing to read: that is reported in this very loop turn, so the restart does not
    /// wait for a hop through the blocking pool and back.
    pub(super) fn start_post_mortem(&mut self, incident: u64) {
        let request = self.diag_request("crash".into());
        let reaper = self.reaper.clone();
        let tasks = self.tasks.clone();
        let wall = Local::now();
        if request.tree.is_empty() {
            self.queue.push_back(Event::PostMortemCaptured { incident });
            tokio::task::spawn_local(async move {
                let leftovers = diagnostics::Leftovers::default();
                let report =
                    diagnostics::collect_post_mortem(request, leftovers, &reaper, wall).await;
                let _ = tasks.send(TaskResult::Diagnostics(Some(incident), false, report));
            });
            return;
        }
        tokio::task::spawn_local(async move {
            let leftovers =
                diagnostics::capture_leftovers(&request.tree, diagnostics::LEFTOVERS_CAPTURE_LIMIT)
                    .await;
            let _ = tasks.send(TaskResult::PostMortemCaptured(incident));
            // Let the loop act on the capture (kill, restart) before the file is written:
            // writing it does not yield until its fsync.
            tokio::task::yield_now().await;
            let report = diagnostics::collect_post_mortem(request, leftovers, &reaper, wall).await;
            let _ = tasks.send(TaskResult::Diagnostics(Some(incident), false, report));
        });
    }

    /// What to collect: the server's tree (after it has ended, what is left of it).
    fn diag_request(&self, reason: String) -> DiagRequest {
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
        DiagRequest {
            reason,
            server_pid: server,
            tree,
            console_tail: self.console.tail(CONSOLE_TAIL_LINES),
            data_dir: self.cfg.data_directory.clone(),
            nsd_path: self.cfg.nsd_path.clone(),
            limit: self.cfg.nsd_timeout,
            server_name: self.cfg.server_name.clone(),
        }
    }

    pub(super) fn run_hook(&mut self, event: HookEvent, reason: &str, incident: u64) {
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

    pub(super) fn mail(&mut self, alert: Alert) {
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
    pub(super) fn post(&mut self, alert: &Alert) {
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
}
