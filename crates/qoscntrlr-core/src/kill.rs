//! The smart kill and the restart after it: failover first, then diagnostics, then the
//! kill of the whole tree; what follows a server that is down (restart, restart backoff,
//! the restart limit and FAULTED).

use super::*;

impl Controller {
    /// Failover → diagnostics → kill → restart, or the NOKILL/paused variants.
    pub(crate) fn smart_kill(&mut self, now: Instant, reason: Reason, out: &mut Vec<Action>) {
        let Some(pid) = self.state.server_pid() else {
            return;
        };
        if !self.policy.qos_enable {
            out.push(log(
                Component::Controller,
                format!(
                    "QOS_ENABLE=0: not acting on the {} (plain supervision)",
                    reason.describe()
                ),
            ));
            return;
        }
        let was_ready = matches!(self.state, State::Ready { .. });
        if self.policy.nokill {
            if self.nokill_incident.is_none() {
                let id = self.open_incident(now, &reason.slug(), out);
                self.nokill_incident = Some(id);
                self.nokill_reason = Some(reason.clone());
                out.push(log(
                    Component::Controller,
                    format!(
                        "QOS_NOKILL is set: not killing the server ({})",
                        reason.describe()
                    ),
                ));
                // Kept for inspection, not for traffic: the outputs go down while the
                // condition lasts.
                out.push(log(
                    Component::Controller,
                    "QOS_NOKILL: failover outputs down while the condition lasts",
                ));
                self.hold_down(
                    Hold::NoKill(reason.slug()),
                    &reason.describe(),
                    HookEvent::Failover,
                    &reason.slug(),
                    id,
                    out,
                );
                out.push(say(&wording::RUNNING_NSD, &[]));
                out.push(Action::RunDiagnostics {
                    reason: reason.slug(),
                    incident: Some(id),
                });
                if let Some(a) = self.update_incident(id, IncidentOutcome::NotKilled, None) {
                    out.push(a);
                }
            }
            return;
        }
        if self.paused {
            if self.pause_suppressed.is_none() {
                out.push(log(
                    Component::Controller,
                    wording::PAUSED_NOT_KILLING.fill(&[&reason.describe()]),
                ));
                let id = self.open_incident(now, &reason.slug(), out);
                if let Some(a) = self.update_incident(id, IncidentOutcome::Suppressed, None) {
                    out.push(a);
                }
                self.pause_incident = Some(id);
                self.pause_suppressed = Some(reason);
            }
            return;
        }
        self.start_kill(now, pid, reason, was_ready, AfterKill::AutoRestart, out);
    }

    pub(crate) fn start_kill(
        &mut self,
        now: Instant,
        pid: i32,
        reason: Reason,
        failover: bool,
        then: AfterKill,
        out: &mut Vec<Action>,
    ) {
        // A kill a pause held back continues the incident opened then (one incident in
        // status as in the log review).
        let incident = match self.pause_incident.take() {
            Some(id)
                if self
                    .incidents
                    .iter()
                    .any(|r| r.id == id && r.kind == reason.slug()) =>
            {
                if let Some(a) = self.update_incident(id, IncidentOutcome::Detected, None) {
                    out.push(a);
                }
                id
            }
            _ => self.open_incident(now, &reason.slug(), out),
        };
        let why = reason.describe();
        let phase = if failover {
            KillPhase::Failover
        } else {
            KillPhase::Diagnostics
        };
        out.push(self.set_state(
            now,
            State::Killing {
                pid: Some(pid),
                phase,
                reason: reason.clone(),
                incident,
                deadline: Some(later(
                    now,
                    self.policy.nsd_timeout.saturating_add(DIAGNOSTICS_GRACE),
                )),
                then,
            },
            why,
        ));
        // the failover outputs order: trigger file, then readiness/agent down, then hooks.
        if failover {
            out.push(say(&wording::TRIGGERING_FAILOVER, &[]));
            self.hold_down(
                Hold::Incident,
                &reason.describe(),
                HookEvent::Failover,
                &reason.slug(),
                incident,
                out,
            );
        } else {
            self.set_health(
                Health::Down {
                    reason: reason.describe(),
                },
                out,
            );
            // Not serving, and (at the restart limit) not coming back: no traffic while
            // diagnostics run.
            self.fault_ahead(now, then, incident, out);
        }
        self.end_nokill(now, None, out);
        self.deactivate_probe(out);
        out.push(say(&wording::RUNNING_NSD, &[]));
        if let State::Killing { phase, .. } = &mut self.state {
            *phase = KillPhase::Diagnostics;
        }
        out.push(Action::RunDiagnostics {
            reason: reason.slug(),
            incident: Some(incident),
        });
        if let Some(a) = self.update_incident(incident, IncidentOutcome::Diagnostics, None) {
            out.push(a);
        }
    }

    pub(crate) fn on_diagnostics(
        &mut self,
        now: Instant,
        for_incident: Option<u64>,
        path: Option<String>,
        error: Option<String>,
        out: &mut Vec<Action>,
    ) {
        // One truthful outcome: written (perhaps incomplete: the program failed or the
        // time limit cut it short, but the file holds what was collected), or failed
        // (no usable file: it could not be created or written).
        match (&path, &error) {
            (Some(p), None) => {
                out.push(log(
                    Component::Kill,
                    wording::DIAGNOSTICS_WRITTEN.fill(&[&p]),
                ));
            }
            (Some(p), Some(e)) => {
                out.push(log(
                    Component::Kill,
                    wording::DIAGNOSTICS_WRITTEN.fill(&[&p]),
                ));
                out.push(log(Component::Kill, format!("Diagnostics incomplete: {e}")));
            }
            (None, Some(e)) => {
                out.push(log(Component::Kill, format!("Diagnostics failed: {e}")));
            }
            (None, None) => {
                out.push(log(
                    Component::Kill,
                    "Diagnostics failed: no file was written",
                ));
            }
        }
        // Operator and slow-shutdown snapshots carry no incident and decide nothing.
        let Some(for_incident) = for_incident else {
            self.end_operator_diagnostics(now, out);
            return;
        };
        if let Some(i) = self.post_mortems.iter().position(|id| *id == for_incident) {
            // A dead server's post-mortem, finished after its restart began: the record
            // gets its file (its outcome has moved on) and the crash mail carries it.
            self.post_mortems.remove(i);
            if let Some(record) = self.incidents.iter_mut().find(|r| r.id == for_incident) {
                if let Some(p) = &path {
                    record.diagnostics = Some(p.clone());
                }
            }
            out.push(self.crash_alert(for_incident, path));
            return;
        }
        match self.state.clone() {
            State::Killing {
                phase: KillPhase::Diagnostics,
                pid,
                reason,
                incident,
                then,
                ..
            } if incident == for_incident => {
                if let Some(a) =
                    self.update_incident(incident, IncidentOutcome::Killing, path.as_deref())
                {
                    out.push(a);
                }
                out.push(Action::Mail(Alert {
                    kind: AlertKind::SmartKill {
                        reason: reason.describe(),
                    },
                    summary: format!(
                        "The controller detected a {} and is killing and restarting the server.",
                        reason.describe()
                    ),
                    diagnostics: path.clone(),
                    incident: Some(incident),
                }));
                self.kill_now(now, pid, reason, incident, then, out);
            }
            State::Crashed {
                pid,
                incident,
                diagnostics_done: false,
                then,
            } if incident == for_incident => {
                if let Some(a) =
                    self.update_incident(incident, IncidentOutcome::Restarting, path.as_deref())
                {
                    out.push(a);
                }
                out.push(self.crash_alert(incident, path.clone()));
                out.push(Action::KillTree);
                match pid {
                    // A CRASH message: the process may still be alive; wait for its exit.
                    Some(pid) => {
                        self.state = State::Crashed {
                            pid: Some(pid),
                            incident,
                            diagnostics_done: true,
                            then,
                        };
                    }
                    None => self.after_down(now, then, Some(incident), out),
                }
            }
            _ => {
                // A NOKILL incident: the mail carries the file.
                if let Some(id) = self.nokill_incident.filter(|id| *id == for_incident) {
                    out.push(Action::Mail(Alert {
                        kind: AlertKind::Other { event: "problem detected (QOS_NOKILL)".into() },
                        summary: "The controller detected a problem; QOS_NOKILL is set, so the server was not killed.".into(),
                        diagnostics: path.clone(),
                        incident: Some(id),
                    }));
                    if let Some(a) =
                        self.update_incident(id, IncidentOutcome::NotKilled, path.as_deref())
                    {
                        out.push(a);
                    }
                }
            }
        }
    }

    pub(crate) fn kill_now(
        &mut self,
        now: Instant,
        pid: Option<i32>,
        reason: Reason,
        incident: u64,
        then: AfterKill,
        out: &mut Vec<Action>,
    ) {
        out.push(say(&wording::RUNNING_NSD_KILL, &[]));
        out.push(Action::KillTree);
        self.kill_retries = 0;
        match pid {
            Some(pid) => {
                self.state = State::Killing {
                    pid: Some(pid),
                    phase: KillPhase::Kill,
                    reason,
                    incident,
                    deadline: Some(later(now, KILL_GRACE)),
                    then,
                };
                self.why = "killing the server's process tree".into();
            }
            None => self.kill_complete(now, incident, then, out),
        }
    }

    pub(crate) fn kill_complete(
        &mut self,
        now: Instant,
        incident: u64,
        then: AfterKill,
        out: &mut Vec<Action>,
    ) {
        out.push(say(&wording::KILL_COMPLETE, &[]));
        if let Some(a) = self.update_incident(incident, IncidentOutcome::Killed, None) {
            out.push(a);
        }
        self.after_down(now, then, Some(incident), out);
    }

    /// The server is fully down: restart it, stay down, or exit — within the limit.
    pub(crate) fn after_down(
        &mut self,
        now: Instant,
        then: AfterKill,
        incident: Option<u64>,
        out: &mut Vec<Action>,
    ) {
        self.apps.clear();
        // A QOS_NOKILL condition ends with the process it was about; the outputs stay
        // down (if they were) until the next server is ready and probing well.
        self.end_nokill(now, None, out);
        let then = if self.quit_requested {
            AfterKill::Exit
        } else {
            then
        };
        match then {
            AfterKill::Exit => self.finish_quit(out),
            AfterKill::StayDown => {
                if let Some(a) =
                    incident.and_then(|id| self.update_incident(id, IncidentOutcome::Stopped, None))
                {
                    out.push(a);
                }
                self.log_server_ended(out);
                out.push(self.set_state(now, State::Stopped, "stopped on request"));
            }
            AfterKill::OperatorRestart => {
                out.push(say(&wording::RESTARTING, &[]));
                if let Some(a) = incident
                    .and_then(|id| self.update_incident(id, IncidentOutcome::Restarted, None))
                {
                    out.push(a);
                }
                self.spawn(now, "restart requested by the operator", out);
            }
            AfterKill::AutoRestart => {
                if self.paused {
                    out.push(log(
                        Component::Controller,
                        "Paused: the server is left down until resume",
                    ));
                    self.restart_on_resume = true;
                    out.push(self.set_state(
                        now,
                        State::Stopped,
                        "down while paused; restarts on resume",
                    ));
                    return;
                }
                if self.restart_limit_reached(now) {
                    let minutes = describe_duration(self.policy.restart_limit_period);
                    out.push(log(
                        Component::Controller,
                        wording::RESTART_LIMIT.fill(&[&self.restarts.len(), &minutes]),
                    ));
                    let clear_at = (!self.policy.auto_fault_clear.is_zero())
                        .then(|| later(now, self.policy.auto_fault_clear));
                    out.push(self.set_state(
                        now,
                        State::Faulted { clear_at },
                        "restart limit reached",
                    ));
                    // Not coming back by itself: traffic goes elsewhere until the server
                    // is READY again (clear-fault, QOS_AUTO_FAULT_CLEAR).
                    out.push(log(
                        Component::Controller,
                        "Server is FAULTED: failover outputs down until it is ready again",
                    ));
                    let hook_incident = incident
                        .or_else(|| self.incidents.back().map(|r| r.id))
                        .unwrap_or(self.next_incident);
                    self.hold_down(
                        Hold::Faulted,
                        "faulted",
                        HookEvent::Faulted,
                        "faulted",
                        hook_incident,
                        out,
                    );
                    out.push(Action::Mail(Alert {
                        kind: AlertKind::RestartLimit,
                        summary: format!(
                            "The server was restarted {} times within {}; it is left down until an operator runs clear-fault.",
                            self.restarts.len(),
                            minutes
                        ),
                        diagnostics: None,
                        incident,
                    }));
                    if let Some(id) = incident {
                        if let Some(a) = self.update_incident(id, IncidentOutcome::Faulted, None) {
                            out.push(a);
                        }
                    }
                    return;
                }
                self.restarts.push_back(now);
                out.push(say(&wording::RESTARTING, &[]));
                if let Some(id) = incident {
                    if let Some(a) = self.update_incident(id, IncidentOutcome::Restarted, None) {
                        out.push(a);
                    }
                }
                if self.became_ready {
                    self.failed_starts = 0;
                } else {
                    self.failed_starts += 1;
                }
                let (backoff, backoff_why) = if self.spawn_failures > 0 {
                    (
                        spawn_retry_backoff(self.spawn_failures),
                        format!(
                            "the server could not be started {} time(s) in a row",
                            self.spawn_failures
                        ),
                    )
                } else {
                    (
                        restart_backoff(self.failed_starts).unwrap_or(Duration::ZERO),
                        format!(
                            "the server failed {} time(s) in a row before becoming ready",
                            self.failed_starts
                        ),
                    )
                };
                let delay = backoff.max(self.policy.restart_delay);
                match delay.is_zero() {
                    true => self.spawn(now, "automatic restart", out),
                    false => {
                        let why = if backoff >= self.policy.restart_delay {
                            backoff_why
                        } else {
                            "QOS_RESTART_DELAY".to_string()
                        };
                        out.push(log(
                            Component::Controller,
                            format!("Restarting in {} ({why})", describe_duration(delay)),
                        ));
                        out.push(self.set_state(
                            now,
                            State::Restarting {
                                spawn_at: Some(later(now, delay)),
                            },
                            "waiting before the next restart",
                        ));
                    }
                }
            }
        }
    }

    /// The server is going down for good: it crashed (or is being killed for a start
    /// timeout) and the restart limit is already reached, so it will be left down
    /// (FAULTED) as soon as its diagnostics and kill are done. Those can take minutes
    /// (QOS_NSD_TIMEOUT), and a server that is not coming back must not keep traffic that
    /// long: the failover outputs go down now, the hook announces `faulted` now, and
    /// FAULTED itself follows when the server is down.
    pub(crate) fn fault_ahead(
        &mut self,
        now: Instant,
        then: AfterKill,
        incident: u64,
        out: &mut Vec<Action>,
    ) {
        if then != AfterKill::AutoRestart || self.paused || !self.restart_limit_reached(now) {
            return;
        }
        out.push(log(
            Component::Controller,
            "The restart limit is reached: the server will be left down (FAULTED); failover outputs down now, before its diagnostics",
        ));
        self.hold_down(
            Hold::Faulted,
            "faulted",
            HookEvent::Faulted,
            "faulted",
            incident,
            out,
        );
    }

    pub(crate) fn restart_limit_reached(&mut self, now: Instant) -> bool {
        if !self.policy.restart_limit_enable {
            return false;
        }
        while let Some(first) = self.restarts.front() {
            if now.duration_since(*first) >= self.policy.restart_limit_period {
                self.restarts.pop_front();
            } else {
                break;
            }
        }
        self.restarts.len() >= self.policy.restart_limit_maximum as usize
    }
}
