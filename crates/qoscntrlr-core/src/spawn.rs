//! Starting the server and its readiness: spawn (and a spawn that could not start any
//! process), the READY message or first good probe, recovery after an incident, a probe
//! the controller could not make.

use super::*;

impl Controller {
    pub(crate) fn spawn(&mut self, now: Instant, why: &str, out: &mut Vec<Action>) {
        self.apps.clear();
        // A new tree: windows start over (see RuleEngine::reset for what is kept), and
        // so do the sampler's CPU counters.
        self.rules.reset();
        out.push(Action::ResetSampler);
        self.server_speaks = false;
        self.became_ready = false;
        self.probe = ProbeTracker::default();
        out.push(self.set_state(now, State::Restarting { spawn_at: None }, why));
        out.push(Action::Spawn);
    }

    pub(crate) fn on_spawned(
        &mut self,
        now: Instant,
        pid: i32,
        program: &str,
        out: &mut Vec<Action>,
    ) {
        self.spawn_failures = 0;
        let name = self.policy.server_name.clone();
        out.push(log_td(
            Component::Controller,
            format!(
                "OpMsg=START Type=QOS ObjectType=ServerName ObjectValue={name} ObjectType2=ProcessName ObjectValue2={program}"
            ),
        ));
        out.push(log_td(Component::Controller, "OpMsg=START Type=SERVER"));
        out.push(say(&wording::CLEARING_APPS, &[]));
        self.own_end_logged = false;
        let deadline = later(now, self.policy.restart_timeout);
        out.push(self.set_state(
            now,
            State::Starting {
                pid: Some(pid),
                deadline,
            },
            "waiting for the server to be ready",
        ));
        if !self.policy.probing {
            // Without a probe nothing but the process itself can prove readiness.
            self.become_ready(now, pid, false, out);
            return;
        }
        if !self.policy.probe_by_message {
            // First attempt straight away: a server that sends no READY becomes READY on it.
            self.probe.next_attempt = Some(now);
        }
    }

    /// The trigger file could not be written (read-only or full data directory): the
    /// HA stack that watches the file does not move traffic, so this is an alert of its
    /// own. Readiness, the agent port and the hooks have been told already and stay
    /// down; they do not depend on the file.
    pub(crate) fn on_trigger_write_failed(&mut self, error: &str, out: &mut Vec<Action>) {
        self.trigger_written = false;
        out.push(log(
            Component::Kill,
            format!(
                "ALERT: the failover trigger could not be written ({error}); readiness, agent and hooks still report the server down"
            ),
        ));
        out.push(Action::Mail(Alert {
            kind: AlertKind::Other {
                event: "failover trigger not written".into(),
            },
            summary: format!(
                "The failover trigger file could not be written: {error}. Anything that watches the file (keepalived track_file) has NOT moved traffic away; the readiness endpoint, the agent port and the failover hook report the server down."
            ),
            diagnostics: None,
            incident: self.incidents.back().map(|r| r.id),
        }));
    }

    pub(crate) fn on_spawn_failed(&mut self, now: Instant, error: &str, out: &mut Vec<Action>) {
        self.spawn_failures = self.spawn_failures.saturating_add(1);
        out.push(log(
            Component::Controller,
            format!("Cannot start the server: {error}"),
        ));
        self.last_exit = Some(format!("not started: {error}"));
        self.after_down(now, AfterKill::AutoRestart, None, out);
    }

    pub(crate) fn become_ready(
        &mut self,
        now: Instant,
        pid: i32,
        log_ready: bool,
        out: &mut Vec<Action>,
    ) {
        if log_ready {
            out.push(log_td(Component::Controller, "OpMsg=READY Type=SERVER"));
        }
        out.push(say(&wording::SERVER_READY, &[]));
        self.became_ready = true;
        self.failed_starts = 0;
        out.push(self.set_state(now, State::Ready { pid }, "server is ready"));
        if self.policy.probing {
            out.push(say(&wording::ACTIVATING_PROBE, &[]));
            out.push(say(&wording::PROBE_ACTIVATED, &[]));
            out.push(say(&wording::STARTING_QOSPROBE, &[]));
            out.push(say(&wording::PROBE_START, &[]));
            out.push(say(&wording::PROBE_PROBING, &[]));
            self.probe.active = true;
            self.probe.baseline = Some(now);
            self.probe.timed_out = false;
            self.probe.deferral_logged = false;
            self.probe.awaiting_first_success = true;
            if !self.policy.probe_by_message && !self.probe.in_flight {
                self.probe.next_attempt = Some(now);
            }
        } else {
            self.recovered(now, out);
        }
    }

    /// The server is READY and probing well: the holds of the incident and of FAULTED
    /// end; the outputs come back (after the failback hold) if nothing else holds them.
    pub(crate) fn recovered(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.well_since = Some(now);
        self.set_health(Health::Ready, out);
        // A restart timeout under QOS_NOKILL ends when the server is ready after all.
        if matches!(self.nokill_reason, Some(Reason::RestartTimeout)) {
            self.end_nokill(now, Some(IncidentOutcome::RecoveredWithoutKill), out);
        }
        self.ha.holds.remove(&Hold::Incident);
        self.ha.holds.remove(&Hold::Faulted);
        self.try_failback(now, out);
    }

    pub(crate) fn deactivate_probe(&mut self, out: &mut Vec<Action>) {
        if self.probe.active {
            out.push(say(&wording::DEACTIVATING_PROBE, &[]));
            out.push(say(&wording::PROBE_DEACTIVATED, &[]));
        }
        self.probe.active = false;
        self.probe.next_attempt = None;
        self.probe.baseline = None;
    }

    /// The controller could not make a probe attempt (its own fault): logged and
    /// alerted once per episode; the probe timeout waits for a real answer.
    pub(crate) fn on_probe_unavailable(
        &mut self,
        now: Instant,
        reason: &str,
        out: &mut Vec<Action>,
    ) {
        self.probe.in_flight = false;
        if self.probe.blind_since.is_some() {
            return;
        }
        self.probe.blind_since = Some(now);
        out.push(log(
            Component::Controller,
            format!(
                "Controller fault: cannot probe the server ({reason}); not counted against the server"
            ),
        ));
        out.push(Action::Mail(Alert {
            kind: AlertKind::Other {
                event: "controller fault".into(),
            },
            summary: format!(
                "The controller cannot probe the server: {reason}. This is a fault of the controller (out of file descriptors), not of the server; the server is kept and probing is retried."
            ),
            diagnostics: None,
            incident: None,
        }));
    }
}
