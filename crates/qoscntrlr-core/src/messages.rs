//! What the server said (OpMsg lines, in the core's terms as `Meaning`): READY, long-
//! running applications starting and ending, exhaustion, CRASH, END, NOKILL conditions.

use super::*;

impl Controller {
    /// A server that announces its own START and END repeats lines the controller
    /// wrote itself at the spawn and at its stop request; logging them twice would
    /// double every start and quit a support engineer counts.
    pub(crate) fn repeats_own_line(&self, signal: &ServerSignal) -> bool {
        match signal {
            ServerSignal::QosStart | ServerSignal::ServerStart => {
                matches!(self.state, State::Starting { .. })
            }
            ServerSignal::ServerEnd { .. } => self.own_end_logged,
            _ => false,
        }
    }

    pub(crate) fn on_signal(&mut self, now: Instant, signal: ServerSignal, out: &mut Vec<Action>) {
        if self.state.server_pid().is_some() {
            self.server_speaks = true;
        }
        match signal {
            ServerSignal::QosStart | ServerSignal::ServerStart => {}
            ServerSignal::ServerReady => {
                if let State::Starting { pid: Some(pid), .. } = self.state {
                    self.become_ready(now, pid, false, out);
                }
            }
            ServerSignal::ServerEnd { restart } => {
                if let State::Starting { pid: Some(pid), .. } | State::Ready { pid } = self.state {
                    self.deactivate_probe(out);
                    self.apps.clear();
                    self.end_nokill(now, None, out);
                    self.set_health(Health::Drain, out);
                    let then = if restart {
                        AfterStop::Restart
                    } else {
                        AfterStop::StayDown
                    };
                    self.enter_stopping(now, pid, then, "the server is shutting down", out);
                }
            }
            ServerSignal::QosEnd => {}
            ServerSignal::Crash => {
                if matches!(self.state, State::Starting { .. } | State::Ready { .. }) {
                    let pid = self.state.server_pid();
                    self.crashed(now, pid, None, out);
                }
            }
            ServerSignal::ProbeTimeout => {
                if matches!(self.state, State::Ready { .. }) {
                    out.push(say(&wording::PROBE_TIMEOUT_RECEIVED, &[]));
                    self.probe.timed_out = true;
                    self.smart_kill(now, Reason::ProbeTimeout, out);
                }
            }
            ServerSignal::ProbeResult {
                success,
                latency_ms,
                detail,
            } => {
                if self.policy.probe_by_message {
                    let latency = Duration::from_millis(latency_ms.unwrap_or(0));
                    let detail = detail.unwrap_or_else(|| "probe error reported".into());
                    self.on_probe(now, success, latency, &detail, out);
                }
            }
            ServerSignal::Exhausted { resource } => {
                if matches!(self.state, State::Ready { .. } | State::Starting { .. }) {
                    out.push(log(
                        Component::Controller,
                        wording::SERVER_OUT_OF.fill(&[&resource]),
                    ));
                    self.smart_kill(now, Reason::OutOf { resource }, out);
                }
            }
            ServerSignal::AppStart { app } => {
                if self.apps.start(app.clone(), now) == StartOutcome::Added {
                    out.push(log(
                        Component::Applications,
                        wording::ADDING_APP.fill(&[&app]),
                    ));
                } else {
                    out.push(log(
                        Component::Applications,
                        format!("Refreshing {app} in long running apps list"),
                    ));
                }
            }
            ServerSignal::AppProgress { app } => {
                if !self.apps.progress(&app, now) {
                    out.push(log(
                        Component::Applications,
                        format!("Progress of {app}, which is not in the long running apps list; ignored"),
                    ));
                } else {
                    self.app_condition_cleared(now, &app, "made progress", out);
                }
            }
            ServerSignal::AppEnd { app } => {
                if self.apps.end(&app) {
                    out.push(log(
                        Component::Applications,
                        wording::REMOVING_APP.fill(&[&app]),
                    ));
                    self.app_condition_cleared(now, &app, "ended", out);
                    if self.apps.is_empty() && self.probe.deferral_logged {
                        // Probing resumes with a full timeout window.
                        self.probe.deferral_logged = false;
                        self.probe.baseline = Some(now);
                    }
                } else {
                    out.push(log(
                        Component::Applications,
                        format!(
                            "End of {app}, which is not in the long running apps list; ignored"
                        ),
                    ));
                }
            }
        }
    }

    /// A stalled application under QOS_NOKILL moved again: that condition has cleared.
    pub(crate) fn app_condition_cleared(
        &mut self,
        now: Instant,
        app: &AppKey,
        how: &str,
        out: &mut Vec<Action>,
    ) {
        // Every PROGRESS comes here; the application's name is only spelled out when a
        // stalled application is being watched at all.
        let watched = |reason: &Option<Reason>| matches!(reason, Some(Reason::AppTimeout { .. }));
        if !watched(&self.nokill_reason) && !watched(&self.pause_suppressed) {
            return;
        }
        let app = app.to_string();
        let app = app.as_str();
        if matches!(&self.nokill_reason, Some(Reason::AppTimeout { app: a }) if a == app) {
            out.push(log(
                Component::Controller,
                wording::NOKILL_APP_MOVED.fill(&[&app, &how]),
            ));
            self.end_nokill(now, Some(IncidentOutcome::RecoveredWithoutKill), out);
        }
        if matches!(&self.pause_suppressed, Some(Reason::AppTimeout { app: a }) if a == app) {
            out.push(log(
                Component::Controller,
                wording::APP_MOVED_NO_KILL.fill(&[&app, &how]),
            ));
            self.pause_suppressed = None;
            self.end_suppressed(IncidentOutcome::RecoveredWithoutKill, out);
        }
    }
}
