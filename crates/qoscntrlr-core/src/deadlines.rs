//! A deadline reached: whichever named timer is due (probe, probe timeout, application
//! expiry, start/stop/kill deadlines, restart backoff, pause end, failback hold, fault
//! auto-clear, trust time, stall hold) is acted on.

use super::*;

impl Controller {
    pub(crate) fn on_deadline(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.end_stall_hold(now, out);
        let holding = self.holding(now);
        if let Some(until) = self.paused_until {
            if now >= until {
                out.push(log(Component::Controller, "Pause expired; resuming"));
                self.resume(now, out);
            }
        }
        if self.ha.failback_at.is_some_and(|at| now >= at) && self.is_well() {
            out.push(log(
                Component::Controller,
                format!(
                    "Failback hold over: the server has been ready and probing well for {}",
                    describe_duration(self.policy.failback_hold)
                ),
            ));
            self.failback(out);
        }
        if self.trust_at().is_some_and(|at| now >= at) {
            out.push(log(
                Component::Controller,
                format!(
                    "QOS_ONLINE_TRUST_TIME: the server has been ready and probing well for {}; restart-limit window emptied ({} restart(s) forgotten)",
                    describe_duration(self.policy.online_trust_time),
                    self.restarts.len()
                ),
            ));
            self.restarts.clear();
        }
        match self.state.clone() {
            State::Starting {
                pid: Some(pid),
                deadline,
            } if now >= deadline && !holding && self.probe.blind_since.is_none() => {
                out.push(log(
                    Component::Controller,
                    wording::RESTART_TIMEOUT
                        .fill(&[&describe_duration(self.policy.restart_timeout)]),
                ));
                self.smart_kill(now, Reason::RestartTimeout, out);
                if let State::Starting { .. } = self.state {
                    // Paused or NOKILL: this deadline is spent; look again one period on.
                    self.state = State::Starting {
                        pid: Some(pid),
                        deadline: later(now, self.policy.restart_timeout),
                    };
                }
                return;
            }
            State::Stopping {
                pid,
                deadline,
                next_nsd,
                then,
            } => {
                if now >= deadline && !holding {
                    // The stop phase — quit, controller stop, or the first half of an
                    // operator restart — is bounded by QOS_SHUTDOWN_TIMEOUT; the start
                    // that follows a restart gets QOS_RESTART_TIMEOUT in STARTING.
                    let applied = self.policy.shutdown_timeout;
                    out.push(log(
                        Component::Controller,
                        wording::SHUTDOWN_TIMEOUT.fill(&[&describe_duration(applied)]),
                    ));
                    let reason = Reason::ShutdownTimeout;
                    let incident = self.open_incident(now, &reason.slug(), out);
                    let after = match then {
                        AfterStop::Exit => AfterKill::Exit,
                        AfterStop::StayDown => AfterKill::StayDown,
                        AfterStop::Restart => AfterKill::OperatorRestart,
                    };
                    out.push(self.set_state(
                        now,
                        State::Killing {
                            pid: Some(pid),
                            phase: KillPhase::Kill,
                            reason: reason.clone(),
                            incident,
                            deadline: None,
                            then: after,
                        },
                        "shutdown took too long",
                    ));
                    self.kill_now(now, Some(pid), reason, incident, after, out);
                    return;
                }
                if let Some(at) = next_nsd {
                    if now >= at {
                        out.push(log(
                            Component::Kill,
                            "Running nsd... (shutdown still in progress)",
                        ));
                        out.push(Action::RunDiagnostics {
                            reason: "shutdown".into(),
                            incident: None,
                        });
                        self.state = State::Stopping {
                            pid,
                            deadline,
                            next_nsd: Some(later(now, self.policy.shutdown_nsd)),
                            then,
                        };
                    }
                }
            }
            State::Killing {
                phase,
                deadline: Some(deadline),
                pid,
                reason,
                incident,
                then,
            } if now >= deadline => match phase {
                KillPhase::Diagnostics => {
                    out.push(log(
                        Component::Kill,
                        "Diagnostics did not finish in time; killing anyway",
                    ));
                    self.kill_now(now, pid, reason, incident, then, out);
                }
                _ => {
                    // Never forget a server that may still run: a restart beside it would
                    // fail on its ports, and a stop would leave it unsupervised. Kill
                    // again (the known pid and group are signalled whatever /proc says)
                    // until the reaper reports it gone.
                    self.kill_retries = self.kill_retries.saturating_add(1);
                    let who = pid.map_or_else(|| "process".to_string(), |p| format!("process {p}"));
                    out.push(log(
                        Component::Kill,
                        format!(
                            "The server's {who} did not go away after SIGKILL; killing again (attempt {})",
                            self.kill_retries + 1
                        ),
                    ));
                    if self.kill_retries == 1 {
                        out.push(Action::Mail(Alert {
                            kind: AlertKind::Other {
                                event: "kill not completed".into(),
                            },
                            summary: format!(
                                "The server's {who} did not go away after SIGKILL; the controller keeps killing it and will not start another server beside it."
                            ),
                            diagnostics: None,
                            incident: Some(incident),
                        }));
                    }
                    out.push(Action::KillTree);
                    self.state = State::Killing {
                        pid,
                        phase,
                        reason,
                        incident,
                        deadline: Some(later(now, KILL_GRACE)),
                        then,
                    };
                }
            },
            State::Restarting { spawn_at: Some(at) } if now >= at => {
                self.spawn(now, "automatic restart", out);
                return;
            }
            State::Faulted { clear_at: Some(at) } if now >= at => {
                self.restarts.clear();
                out.push(log(
                    Component::Controller,
                    "QOS_AUTO_FAULT_CLEAR: leaving FAULTED",
                ));
                self.spawn(now, "fault cleared automatically", out);
                return;
            }
            _ => {}
        }
        let diagnosing = self.probe.operator_diagnostics_since.is_some();
        if let (State::Ready { .. }, false, false) = (&self.state, holding, diagnosing) {
            if let Some((app, idle)) = self.apps.expired(now, self.policy.apps_timeout) {
                if self.pause_suppressed.is_none() {
                    out.push(log(
                        Component::Applications,
                        wording::APP_NO_PROGRESS.fill(&[&app, &idle.as_secs()]),
                    ));
                }
                self.smart_kill(
                    now,
                    Reason::AppTimeout {
                        app: app.to_string(),
                    },
                    out,
                );
                if self.paused || self.policy.nokill {
                    // Keep it listed but do not fire every tick: treat as fresh progress.
                    self.apps.progress(&app, now);
                }
                return;
            }
        }
        self.check_probe_timeout(now, out);
        self.schedule_probe(now, out);
    }
}
