//! A server that ended on its own: the crash (leftovers read before they are killed,
//! the post-mortem written after the restart) and every other exit.

use super::*;

impl Controller {
    pub(crate) fn crashed(
        &mut self,
        now: Instant,
        pid: Option<i32>,
        exit: Option<&str>,
        out: &mut Vec<Action>,
    ) {
        let name = self.policy.server_name.clone();
        out.push(log_td(
            Component::Controller,
            format!("OpMsg=CRASH Type=QOS ObjectType=ServerName ObjectValue={name}"),
        ));
        out.push(log(
            Component::Controller,
            wording::SERVER_CRASHED.fill(&[&name]),
        ));
        if let Some(exit) = exit {
            out.push(log(
                Component::Controller,
                wording::SERVER_EXIT.fill(&[&exit]),
            ));
        }
        let incident = self.open_incident(now, "crash", out);
        out.push(self.set_state(
            now,
            State::Crashed {
                pid,
                incident,
                diagnostics_done: false,
                then: AfterKill::AutoRestart,
            },
            "server crashed; post-mortem diagnostics",
        ));
        self.deactivate_probe(out);
        self.set_health(
            Health::Down {
                reason: "server crashed".into(),
            },
            out,
        );
        self.fault_ahead(now, AfterKill::AutoRestart, incident, out);
        out.push(say(&wording::RUNNING_NSD, &[]));
        match pid {
            // The process is gone: nothing of it is left to wait for. Only what it left
            // behind is read before the kill; the restart does not wait for the file.
            None => out.push(Action::RunPostMortem { incident }),
            // A CRASH message: the server still runs (and may be writing its own crash
            // report): its stacks are worth the wait, until it exits.
            Some(_) => out.push(Action::RunDiagnostics {
                reason: "crash".into(),
                incident: Some(incident),
            }),
        }
    }

    pub(crate) fn crash_alert(&self, incident: u64, diagnostics: Option<String>) -> Action {
        Action::Mail(Alert {
            kind: AlertKind::Crash,
            summary: format!(
                "Server {} has crashed ({}).",
                self.policy.server_name,
                self.last_exit
                    .clone()
                    .unwrap_or_else(|| "reported by the server".into())
            ),
            diagnostics,
            incident: Some(incident),
        })
    }

    /// The leftovers of a dead server are read: kill them and restart now; the
    /// post-mortem's file, its mail and the incident's diagnostics path follow when it
    /// is written ([`Self::on_diagnostics`]).
    pub(crate) fn on_post_mortem_captured(
        &mut self,
        now: Instant,
        incident: u64,
        out: &mut Vec<Action>,
    ) {
        if let State::Crashed {
            pid: None,
            incident: current,
            diagnostics_done: false,
            then,
        } = self.state
        {
            if current == incident {
                self.restart_before_post_mortem(now, incident, then, out);
            }
        }
    }

    /// A crashed server whose process is gone: leftovers killed, restart (or whatever
    /// `then` says) at once, the post-mortem finishing on its own.
    pub(crate) fn restart_before_post_mortem(
        &mut self,
        now: Instant,
        incident: u64,
        then: AfterKill,
        out: &mut Vec<Action>,
    ) {
        if !self.post_mortems.contains(&incident) {
            self.post_mortems.push(incident);
        }
        if let Some(a) = self.update_incident(incident, IncidentOutcome::Restarting, None) {
            out.push(a);
        }
        out.push(Action::KillTree);
        self.after_down(now, then, Some(incident), out);
    }

    pub(crate) fn on_exited(&mut self, now: Instant, pid: i32, exit: &str, out: &mut Vec<Action>) {
        if self.state.server_pid() != Some(pid) {
            return;
        }
        self.last_exit = Some(exit.to_string());
        match self.state.clone() {
            State::Starting { .. } | State::Ready { .. } => {
                self.crashed(now, None, Some(exit), out);
            }
            State::Stopping { then, .. } => {
                out.push(log(
                    Component::Controller,
                    wording::SERVER_ENDED.fill(&[&exit]),
                ));
                out.push(Action::KillTree);
                let then = match then {
                    AfterStop::Exit => AfterKill::Exit,
                    AfterStop::StayDown => AfterKill::StayDown,
                    AfterStop::Restart => AfterKill::OperatorRestart,
                };
                self.after_down(now, then, None, out);
            }
            State::Killing {
                phase,
                reason,
                incident,
                then,
                deadline,
                ..
            } => {
                if phase == KillPhase::Kill {
                    self.kill_complete(now, incident, then, out);
                } else {
                    // It died while diagnostics ran: the kill has nothing left to do.
                    out.push(log(
                        Component::Controller,
                        wording::SERVER_ENDED.fill(&[&exit]),
                    ));
                    self.state = State::Killing {
                        pid: None,
                        phase,
                        reason,
                        incident,
                        deadline,
                        then,
                    };
                }
            }
            State::Crashed {
                incident,
                diagnostics_done,
                then,
                ..
            } => {
                if diagnostics_done {
                    self.after_down(now, then, Some(incident), out);
                } else {
                    // It reported its crash, then ended while its diagnostics ran: a
                    // dead server's restart does not wait for them (they finish on
                    // their own, with whatever they could still read).
                    self.restart_before_post_mortem(now, incident, then, out);
                }
            }
            State::Restarting { .. } | State::Stopped | State::Faulted { .. } => {}
        }
    }
}
