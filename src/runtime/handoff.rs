//! `qoscntrlr reexec` from the shell's side: what it carries across the `execve`
//! (`ShellHandoff`, the bound settings), the old image's check and exec, and the new
//! image's restore — the full state, or the fallback that adopts the running server.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Local};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::control::ControlResponse;
use crate::core::{Action, Component, Controller, Event, Health};
use crate::exitcode::EXIT_CONFIG;
use crate::journal::{Priority, Reporter};
use crate::lock::ServerRecord;
use crate::metrics::MetricsSnapshot;
use crate::process;
use crate::qoslog::{LogHandoff, QosLog};
use crate::reexec::{self, Carried, Handoff};
use crate::sdnotify::SdNotify;

use super::startup::ContainmentState;
use super::{capitalize, ServerProc, Shell, TaskResult, CONSOLE_LOG_NAME, MAILER_CLOSE_LIMIT};

/// TEST-ONLY hook: when this variable is `1`, `qoscntrlr reexec` hands the new image a
/// supervision state it cannot read (after the check passed on the real one), so a test
/// can prove the fallback — the server is adopted, not abandoned. Never set it in
/// production.
pub(super) const TEST_BAD_HANDOFF_VARIABLE: &str = "QOSCNTRLR_TEST_REEXEC_BAD_STATE";

/// What a re-executed image still has to do at its first loop turn.
pub(super) struct Resumed {
    pub(super) from_version: String,
    /// `CLOCK_MONOTONIC` at the old image's last loop turn (unknown in the fallback).
    pub(super) handed_at_ns: Option<u64>,
    pub(super) reply: Option<OwnedFd>,
    /// Actions of the fallback adoption, to run at the first turn.
    pub(super) actions: Vec<Action>,
    /// Why the full state could not be restored (the fallback was used).
    pub(super) fallback: Option<String>,
}

/// The shell's part of the handoff. Derived, so a field added here is carried.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ShellHandoff {
    pub(super) server: Option<ServerHandoff>,
    pub(super) last_pgid: Option<i32>,
    pub(super) ended: Vec<i32>,
    /// RFC 3339: the controller's start, kept across images (status `since`).
    pub(super) started_wall: String,
    pub(super) incident_prefix: String,
    pub(super) recent: Vec<String>,
    pub(super) console_tail: Vec<String>,
    pub(super) last_diagnostics: Option<String>,
    pub(super) health: Health,
    pub(super) metrics: MetricsSnapshot,
    pub(super) log: LogHandoff,
    pub(super) bound: Bound,
    pub(super) reexecs: u32,
    /// The server's record the disk has not taken yet (retried by the new image).
    #[serde(default)]
    pub(super) state_pending: Option<ServerRecord>,
    /// Absent from the handoff of an image that predates containment (its server was
    /// not contained).
    #[serde(default)]
    pub(super) containment: Option<ContainmentState>,
    #[serde(default)]
    pub(super) oom_kills_seen: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ServerHandoff {
    pub(super) pid: i32,
    #[serde(with = "crate::core::instants::instant")]
    pub(super) started: Instant,
}

/// Settings whose running value is bound or open (the carried descriptors are these).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Bound {
    pub(super) data_directory: PathBuf,
    pub(super) pipe: PathBuf,
    pub(super) control_socket: PathBuf,
    pub(super) control_group: Option<String>,
    pub(super) readiness_listen: Option<SocketAddr>,
    pub(super) agent_listen: Option<SocketAddr>,
    pub(super) metrics_listen: Option<SocketAddr>,
    pub(super) resource_interval: Duration,
    pub(super) log_max_size: u64,
    pub(super) log_retention_days: u32,
}

impl Bound {
    pub(super) fn of(cfg: &Config) -> Bound {
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
    /// Which keys keep their running value is the key table's (its `Reload::Restart`
    /// rows, as for a reload); QOS_CGROUP's running value comes with the containment.
    pub(super) fn apply(&self, cfg: &mut Config) -> Vec<&'static str> {
        let mut running = cfg.clone();
        running.data_directory = self.data_directory.clone();
        running.pipe = self.pipe.clone();
        running.control_socket = self.control_socket.clone();
        running.control_group = self.control_group.clone();
        running.readiness_listen = self.readiness_listen;
        running.agent_listen = self.agent_listen;
        running.metrics_listen = self.metrics_listen;
        running.resource_interval = self.resource_interval;
        running.log_max_size = self.log_max_size;
        running.log_retention_days = self.log_retention_days;
        crate::config::keep_start_only(&running, cfg)
    }
}

/// The handoff as the new image reads it.
pub(super) struct Restore {
    pub(super) carried: Carried,
    pub(super) from_version: String,
    pub(super) monotonic_ns: Option<u64>,
    pub(super) shell: Result<ShellHandoff, String>,
    pub(super) core: Result<Controller, String>,
}

impl Restore {
    pub(super) fn read(inherited: reexec::Inherited) -> Restore {
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

pub(super) fn decode_handoff(
    handoff: &Handoff,
) -> (Result<ShellHandoff, String>, Result<Controller, String>) {
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

/// [`TEST_BAD_HANDOFF_VARIABLE`]: the same handoff with a supervision state of the wrong
/// shape.
pub(super) fn test_spoil_handoff(bytes: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<Handoff>(bytes) {
        Ok(mut handoff) => {
            handoff.core = serde_json::json!({ "spoiled by": TEST_BAD_HANDOFF_VARIABLE });
            serde_json::to_vec(&handoff).unwrap_or_else(|_| bytes.to_vec())
        }
        Err(_) => bytes.to_vec(),
    }
}

impl Shell {
    /// Close the mailer (it spools what it holds, for the next image), then ask for the
    /// exec. Alerts raised meanwhile are held and make another round.
    pub(super) fn close_mailer_then_exec(&mut self, request: u64, version: String) {
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
    pub(super) async fn restore(
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
                ctl.set_policy(shell.cfg.policy());
                ctl.resume_after_reexec(now);
                shell.ctl = ctl;
                shell.last_pgid = state.last_pgid;
                // An older image kept these in the shell; the core ignores their messages.
                // (Bookkeeping only: the core answers this event with no action.)
                let _ = shell
                    .ctl
                    .handle(now, Event::ServerProcessesEnded { pids: state.ended });
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
                            Controller::adopt(shell.cfg.policy(), now, pid, trigger);
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
    pub(super) fn adopt_server(&mut self, pid: i32, started: Instant, console: Option<OwnedFd>) {
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
        self.server = Some(ServerProc { pid, started });
        self.last_pgid = Some(pid);
    }

    /// The core accepted a `reexec` request: check the binary now at our path on the
    /// state as it is now, in the background (the loop keeps supervising meanwhile).
    pub(super) fn start_reexec(&mut self, request: u64) {
        if self.reexec_pending.is_some() {
            self.fail_reexec(
                request,
                "reexec refused: a reexec is already in progress".into(),
            );
            return;
        }
        if let Some(refusal) = self.kill_in_progress() {
            return self.fail_reexec(request, refusal);
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

    pub(super) fn on_reexec_checked(&mut self, request: u64, outcome: reexec::CheckOutcome) {
        let version = match outcome {
            Ok(version) => version,
            Err(reason) => return self.fail_reexec(request, format!("reexec refused: {reason}")),
        };
        if let Some(refusal) = self.ctl.reexec_refusal() {
            return self.fail_reexec(request, refusal);
        }
        if let Some(refusal) = self.kill_in_progress() {
            return self.fail_reexec(request, refusal);
        }
        // Held (folded) alerts go to the spool, which the new image's mailer sends.
        self.mail_rounds = 0;
        self.close_mailer_then_exec(request, version);
    }

    /// A tree kill still waiting for its processes (or a start waiting for it) would
    /// end with this image: the new one would neither finish it nor start the server.
    fn kill_in_progress(&self) -> Option<String> {
        (self.kills_running > 0 || self.spawn_after_kill || self.spawn_waiting.is_some())
            .then(|| "reexec refused: the server's process tree is still being killed".to_string())
    }

    /// Refuse or fail request `request`: the controller goes on as it was.
    pub(super) fn fail_reexec(&mut self, request: u64, message: String) {
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
    pub(super) fn handoff_bytes(&self) -> Result<Vec<u8>, String> {
        let (log, _) = self.log.handoff();
        let state = ShellHandoff {
            server: self.server.as_ref().map(|s| ServerHandoff {
                pid: s.pid,
                started: s.started,
            }),
            last_pgid: self.last_pgid,
            ended: self.ctl.ended_servers(),
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
    pub(super) fn exec_now(&mut self, request: u64, version: &str) {
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
                // What stderr takes now goes out; lines a stalled reader left queued are
                // not carried across (the log has them).
                self.journal.flush();
                let now_usec = reexec::monotonic_ns() / 1000;
                self.sd_notify("RELOADING=1", |sd| sd.reloading(now_usec));
                reexec::exec(&exe, &carried)
            }
        };
        // Still here: the exec failed. Nothing was given up; undo the preparation.
        let _ = reexec::set_inherited(&fds, false);
        drop(memfd);
        drop(connection);
        self.sd_notify("READY=1", SdNotify::ready);
        self.fail_reexec(request, format!("reexec failed: {error}"));
    }

    /// The new image's first loop turn: answer the operator, say how long supervision
    /// was interrupted.
    pub(super) fn finish_resume(&mut self, resumed: Resumed) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        crate::config::parse_str(text, std::path::Path::new("/srv/qos/dcontroller.ini"))
            .expect("a valid file")
            .config
    }

    /// A re-executed controller keeps every start-only key's running value, as a reload
    /// does: a start-only key added to the key table without a place in `Bound` fails
    /// here (QOS_CGROUP's running value travels with the containment instead).
    #[test]
    fn the_handoff_carries_every_start_only_key() {
        let running = parse("SERVER_COMMAND=x\nQOS_PROBE=message\n");
        let mut file = parse(
            "SERVER_COMMAND=x\nQOS_PROBE=message\nDATA_DIRECTORY=/srv/other\nQOS_PIPE=p2\n\
             QOS_CONTROL_SOCKET=c2\nQOS_CONTROL_GROUP=adm\nQOS_READINESS_LISTEN=1\n\
             QOS_AGENT_LISTEN=2\nQOS_METRICS_LISTEN=3\nQOS_RESOURCE_INTERVAL=7\n\
             QOS_LOG_MAX_SIZE=7\nQOS_LOG_RETENTION_DAYS=7\nQOS_PROBE_TIMEOUT=9\n",
        );
        let kept = Bound::of(&running).apply(&mut file);
        let expected: Vec<&str> = crate::config::start_only_keys()
            .filter(|key| *key != "QOS_CGROUP")
            .collect();
        assert_eq!(kept, expected);
        for key in &expected {
            let row = crate::config::KEYS
                .iter()
                .find(|row| row.name == *key)
                .expect("a row");
            assert_eq!(row.shown(&file), row.shown(&running), "{key}");
        }
        // What a reload applies comes from the file.
        assert_eq!(file.probe_timeout, Duration::from_secs(9 * 60));
    }
}
