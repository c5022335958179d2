//! Operator commands from the control socket: start, quit, restart, kill, pause and
//! resume, clear-fault, diagnose, failback, and the re-exec handoff (refusal, adoption,
//! resuming in the new image).

use super::*;

impl Controller {
    pub(crate) fn on_command(
        &mut self,
        now: Instant,
        command: Command,
        uid: u32,
        request: u64,
        out: &mut Vec<Action>,
    ) {
        out.push(log(
            Component::Controller,
            wording::COMMAND_FROM.fill(&[&command.name(), &uid]),
        ));
        let state = self.state.name();
        let reply = |ok: bool, message: String| Action::Reply {
            request,
            ok,
            message,
        };
        let busy = |verb: &str| -> Option<String> {
            match state {
                StateName::Stopping if self.quit_requested => {
                    Some(format!("{verb} refused: a quit is in progress"))
                }
                StateName::Stopping => Some(format!("{verb} refused: the server is stopping")),
                StateName::Killing => Some(format!("{verb} refused: a kill is in progress")),
                StateName::Crashed => {
                    Some(format!("{verb} refused: crash handling is in progress"))
                }
                _ if self.quit_requested => {
                    Some(format!("{verb} refused: the controller is shutting down"))
                }
                _ => None,
            }
        };
        match command {
            Command::Start => match state {
                StateName::Stopped => {
                    self.spawn(now, "start requested by the operator", out);
                    out.push(reply(true, "server starting".into()));
                }
                StateName::Starting | StateName::Ready | StateName::Restarting => {
                    out.push(reply(
                        true,
                        format!("server already running ({})", state.as_str()),
                    ));
                }
                StateName::Faulted => out.push(reply(
                    false,
                    "start refused: the server is FAULTED; use clear-fault".into(),
                )),
                _ => out.push(reply(false, busy("start").unwrap_or_default())),
            },
            Command::Quit => match state {
                StateName::Starting | StateName::Ready => {
                    self.request_stop(
                        now,
                        AfterStop::StayDown,
                        "quit requested by the operator",
                        out,
                    );
                    out.push(reply(true, "server stopping".into()));
                }
                StateName::Stopped | StateName::Faulted => {
                    out.push(reply(
                        true,
                        format!("server already down ({})", state.as_str()),
                    ));
                }
                _ => out.push(reply(false, busy("quit").unwrap_or_default())),
            },
            Command::Restart => match (state, busy("restart")) {
                (StateName::Starting | StateName::Ready, None) => {
                    self.request_stop(
                        now,
                        AfterStop::Restart,
                        "restart requested by the operator",
                        out,
                    );
                    out.push(reply(true, "server restarting".into()));
                }
                (StateName::Stopped, None) => {
                    self.spawn(now, "restart requested by the operator", out);
                    out.push(reply(true, "server starting".into()));
                }
                (StateName::Faulted, _) => out.push(reply(
                    false,
                    "restart refused: the server is FAULTED; use clear-fault".into(),
                )),
                (_, Some(refusal)) => out.push(reply(false, refusal)),
                (_, None) => out.push(reply(
                    false,
                    format!("restart refused: the server is {}", state.as_str()),
                )),
            },
            Command::Kill => match (self.state.server_pid(), busy("kill")) {
                (Some(pid), None) => {
                    let failover = state == StateName::Ready;
                    self.start_kill(
                        now,
                        pid,
                        Reason::Operator,
                        failover,
                        AfterKill::OperatorRestart,
                        out,
                    );
                    out.push(reply(true, "smart kill started".into()));
                }
                (_, Some(refusal)) => out.push(reply(false, refusal)),
                (None, None) => out.push(reply(
                    false,
                    format!("kill refused: no server is running ({})", state.as_str()),
                )),
            },
            Command::Pause { duration: Some(d) } if d > MAX_PAUSE => out.push(reply(
                false,
                format!(
                    "pause refused: {} seconds is longer than the longest pause, {} days",
                    d.as_secs(),
                    MAX_PAUSE.as_secs() / 86_400
                ),
            )),
            Command::Pause { duration } => {
                let until = duration.map(|d| later(now, d));
                let already = self.paused;
                self.paused = true;
                self.paused_until = until;
                let how = match duration {
                    Some(d) => format!(" for {}", describe_duration(d)),
                    None => String::new(),
                };
                out.push(log(
                    Component::Controller,
                    wording::PAUSED_BY.fill(&[&format!("{uid}{how}")]),
                ));
                let msg = if already {
                    "pause renewed"
                } else {
                    "paused: probing continues, no kill or restart"
                };
                out.push(reply(true, format!("{msg}{how}")));
            }
            Command::Resume => {
                if self.paused {
                    out.push(log(
                        Component::Controller,
                        wording::RESUMED_BY.fill(&[&uid]),
                    ));
                    self.resume(now, out);
                    out.push(reply(true, "resumed".into()));
                } else {
                    out.push(reply(true, "not paused".into()));
                }
            }
            Command::ClearFault { no_start } => match state {
                StateName::Faulted if no_start => {
                    self.restarts.clear();
                    self.failed_starts = 0;
                    // The mark goes; the outputs stay down (the server is not serving)
                    // until a server is READY and probing well again.
                    self.ha.holds.remove(&Hold::Faulted);
                    out.push(log(
                        Component::Controller,
                        "Fault cleared by the operator; the server stays down (--no-start)",
                    ));
                    out.push(self.set_state(
                        now,
                        State::Stopped,
                        "fault cleared by the operator; not started",
                    ));
                    out.push(reply(
                        true,
                        "fault cleared; the server stays down (STOPPED); use start".into(),
                    ));
                }
                StateName::Faulted => {
                    self.restarts.clear();
                    self.failed_starts = 0;
                    out.push(log(Component::Controller, "Fault cleared by the operator"));
                    self.spawn(now, "fault cleared by the operator", out);
                    out.push(reply(true, "fault cleared; server starting".into()));
                }
                _ => out.push(reply(true, format!("not FAULTED ({})", state.as_str()))),
            },
            Command::Failback => self.on_failback_command(uid, request, out),
            Command::Diagnose => {
                if matches!(self.state, State::Starting { .. } | State::Ready { .. })
                    && self.probe.operator_diagnostics_since.is_none()
                {
                    self.probe.operator_diagnostics_since = Some(now);
                }
                out.push(say(&wording::RUNNING_NSD, &[]));
                out.push(Action::RunDiagnostics {
                    reason: "operator".into(),
                    incident: None,
                });
                out.push(reply(
                    true,
                    "collecting diagnostics; the file is named in the log".into(),
                ));
            }
            Command::Reexec => match self.reexec_refusal() {
                Some(refusal) => out.push(reply(false, refusal)),
                None => out.push(Action::Reexec { request }),
            },
        }
    }

    /// Why the image cannot be replaced now, or `None` when it can. A kill, crash
    /// handling or a stop is a sequence of steps whose results (diagnostics, the reaped
    /// tree, the stop command) would arrive at the old image only; in a steady state every
    /// pending thing is a timer, and timers carry over.
    pub fn reexec_refusal(&self) -> Option<String> {
        let state = self.state.name();
        match &self.state {
            _ if self.quit_requested => {
                Some("reexec refused: the controller is shutting down".into())
            }
            State::Stopping { .. } | State::Killing { .. } | State::Crashed { .. } => {
                Some(format!(
                    "reexec refused: the server is {}; try again when it is done",
                    state.as_str()
                ))
            }
            State::Restarting { spawn_at: None } | State::Starting { pid: None, .. } => {
                Some("reexec refused: the server is being spawned; try again".into())
            }
            _ if !self.post_mortems.is_empty() => Some(
                "reexec refused: a crash's post-mortem is still being written; try again when it is done".into(),
            ),
            _ => None,
        }
    }

    /// The first thing a re-executed image does with the state it was handed: a probe
    /// attempt that was in flight in the old image will never report, so the next one
    /// is due now (probing resumes at once rather than after a lost interval), and
    /// everything else — timeout baseline, applications, restart window, pause, fault —
    /// goes on from the handed-over instants.
    pub fn resume_after_reexec(&mut self, now: Instant) {
        self.probe.in_flight = false;
        if self.probing_wanted() {
            let due = self.probe.next_attempt.map_or(now, |at| at.min(now));
            self.probe.next_attempt = Some(due);
        }
    }

    /// Fallback after a re-exec whose state could not be read: take over the running
    /// server `pid` as READY with fresh timers (probe timeout counted from now, no
    /// applications, an empty restart window), rather than losing it. `trigger_present`:
    /// a failover is outstanding and is taken back on the first successful probe.
    pub fn adopt(
        policy: Policy,
        now: Instant,
        pid: i32,
        trigger_present: bool,
    ) -> (Controller, Vec<Action>) {
        let mut ctl = Controller::new(policy, now);
        let mut out = vec![log(
            Component::Controller,
            format!("Server (pid {pid}) adopted without its previous state; its timers start now"),
        )];
        if trigger_present {
            ctl.ha.down = true;
            ctl.ha.down_reason = "failover left by a previous run".into();
            ctl.trigger_written = true;
        }
        ctl.server_speaks = true;
        ctl.became_ready = true;
        out.push(ctl.set_state(now, State::Ready { pid }, "adopted after a re-exec"));
        if ctl.policy.probing {
            ctl.probe.active = true;
            ctl.probe.baseline = Some(now);
            ctl.probe.awaiting_first_success = true;
            if !ctl.policy.probe_by_message {
                ctl.probe.next_attempt = Some(now);
            }
            // Readiness is up unless a failover is outstanding (then it stays down
            // until the first successful probe and any failback hold).
            ctl.set_health(Health::Ready, &mut out);
        } else {
            ctl.recovered(now, &mut out);
        }
        ctl.note_failover_state(now, &mut out);
        (ctl, out)
    }

    /// `qoscntrlr failback`: end the failback hold (or the manual wait) now. Refused
    /// while something still holds the outputs down or the server is not well; a
    /// QOS_NOKILL condition that has no signal of its own to clear (an exhaustion the
    /// server reported) is the operator's to end, so failback releases it.
    pub(crate) fn on_failback_command(&mut self, uid: u32, request: u64, out: &mut Vec<Action>) {
        let reply = |ok: bool, message: String| Action::Reply {
            request,
            ok,
            message,
        };
        if !self.ha.down {
            out.push(reply(
                true,
                "nothing to fail back: the failover outputs are up (IN_SERVICE)".into(),
            ));
            return;
        }
        let blocking: Vec<String> = self
            .ha
            .holds
            .iter()
            .filter(|h| !matches!(h, Hold::NoKill(_)))
            .map(Hold::describe)
            .collect();
        if !blocking.is_empty() {
            out.push(reply(
                false,
                format!(
                    "failback refused: the failover outputs are held down ({})",
                    blocking.join(", ")
                ),
            ));
            return;
        }
        let nokill_well = self.nokill_reason.is_some()
            && matches!(self.state, State::Ready { .. })
            && !self.probe.timed_out;
        if !self.is_well() && !nokill_well {
            out.push(reply(
                false,
                format!(
                    "failback refused: the server is not ready and probing well ({})",
                    self.state.name().as_str()
                ),
            ));
            return;
        }
        out.push(log(
            Component::Controller,
            format!("Failback requested by uid {uid}"),
        ));
        self.nokill_reason = None;
        if let Some(id) = self.nokill_incident.take() {
            if let Some(a) = self.update_incident(id, IncidentOutcome::RecoveredWithoutKill, None) {
                out.push(a);
            }
        }
        self.failback(out);
        out.push(reply(
            true,
            "failback done: the failover outputs are up (IN_SERVICE)".into(),
        ));
    }

    pub(crate) fn resume(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.paused = false;
        self.paused_until = None;
        if std::mem::take(&mut self.restart_on_resume) && self.state.name() == StateName::Stopped {
            self.after_down(now, AfterKill::AutoRestart, None, out);
        }
        if let Some(reason) = self.pause_suppressed.take() {
            if matches!(self.state, State::Starting { .. } | State::Ready { .. }) {
                out.push(log(
                    Component::Controller,
                    wording::RESUMING_ACTING.fill(&[&reason.describe()]),
                ));
                self.smart_kill(now, reason, out);
            }
        }
        // Consumed by the kill it became; otherwise the server went away meanwhile and
        // the incident stays as the pause left it.
        self.pause_incident = None;
    }
}
