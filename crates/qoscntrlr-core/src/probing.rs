//! The probe: scheduling each attempt (and its limit), its results, and the probe
//! timeout that starts a smart kill.

use super::*;

impl Controller {
    pub(crate) fn on_probe(
        &mut self,
        now: Instant,
        success: bool,
        latency: Duration,
        detail: &str,
        out: &mut Vec<Action>,
    ) {
        self.probe.in_flight = false;
        if let Some(since) = self.probe.blind_since.take() {
            let blind = now.saturating_duration_since(since);
            out.push(log(
                Component::Controller,
                format!(
                    "The controller can probe again after {} s; that time does not count against the server",
                    blind.as_secs()
                ),
            ));
            if let Some(baseline) = self.probe.baseline {
                self.probe.baseline = Some(later(baseline, blind).min(now));
            }
            if let State::Starting { deadline, .. } = &mut self.state {
                *deadline = later(*deadline, blind);
            }
        }
        if let Some(hold) = self.stall_hold {
            let stale = self
                .probe
                .attempt_started
                .is_some_and(|started| started < hold.since);
            if success || !stale {
                // The first answer after the stall decides; timeouts apply again.
                self.stall_hold = None;
            } else if !self.policy.probe_by_message {
                // That attempt straddled the stall (its own time limit ran out while the
                // controller was stopped): ask again at once.
                self.probe.next_attempt = Some(now);
            }
        }
        if !matches!(self.state, State::Starting { .. } | State::Ready { .. }) {
            return;
        }
        if success {
            out.push(log(
                Component::Probe,
                wording::PROBE_SUCCESS.fill(&[&latency.as_millis()]),
            ));
        } else {
            out.push(log(Component::Probe, wording::PROBE_ERROR.fill(&[&detail])));
        }
        self.probe.last_result = Some((success, latency, detail.to_string()));
        if !success {
            if matches!(self.state, State::Ready { .. }) && self.well_since.is_some() {
                // "Probing well" means without failures: the failback hold and the
                // online trust time start again at the next success.
                self.well_since = None;
                if self.ha.failback_at.take().is_some() {
                    out.push(log(
                        Component::Controller,
                        "Failback hold restarted: the probe failed",
                    ));
                }
            }
            return;
        }
        self.probe.last_success = Some(now);
        match self.state {
            State::Starting { pid: Some(pid), .. } if !self.server_speaks => {
                self.become_ready(now, pid, true, out);
                // This success is the first one after READY too.
                self.first_success_after_ready(now, out);
            }
            State::Ready { .. } => {
                self.probe.baseline = Some(now);
                if self.probe.timed_out {
                    self.probe.timed_out = false;
                    if matches!(self.pause_suppressed, Some(Reason::ProbeTimeout)) {
                        // Only a probe timeout is cleared by a probe answering again; an
                        // exhaustion or a stalled application held back by the pause
                        // is still there.
                        self.pause_suppressed = None;
                        out.push(say(&wording::PROBE_OK_NO_KILL, &[]));
                        self.end_suppressed(IncidentOutcome::RecoveredWithoutKill, out);
                    } else if matches!(self.nokill_reason, Some(Reason::ProbeTimeout)) {
                        out.push(say(&wording::NOKILL_PROBE_RECOVERED, &[]));
                        self.end_nokill(now, Some(IncidentOutcome::RecoveredWithoutKill), out);
                    } else {
                        out.push(say(&wording::PROBE_OK_NO_KILL, &[]));
                    }
                }
                if self.probe.awaiting_first_success {
                    self.first_success_after_ready(now, out);
                } else if self.well_since.is_none() {
                    self.well_since = Some(now);
                    self.try_failback(now, out);
                }
            }
            _ => {}
        }
    }

    pub(crate) fn first_success_after_ready(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.probe.awaiting_first_success {
            self.probe.awaiting_first_success = false;
            self.recovered(now, out);
        }
    }

    pub(crate) fn schedule_probe(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !self.probing_wanted() || self.probe.in_flight {
            return;
        }
        if let Some(at) = self.probe.next_attempt {
            if now >= at {
                self.probe.in_flight = true;
                // Keep the cadence anchored to the schedule, not to when we got here.
                let mut next = later(at, self.policy.probe_interval);
                if next <= now {
                    next = later(now, self.policy.probe_interval);
                }
                self.probe.next_attempt = Some(next);
                self.probe.attempt_started = Some(now);
                out.push(Action::Probe {
                    limit: self.policy.probe_attempt_timeout,
                });
            }
        }
    }

    pub(crate) fn check_probe_timeout(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !self.probe.active
            || self.probe.timed_out
            || self.holding(now)
            || self.probe.blind_since.is_some()
            || self.probe.operator_diagnostics_since.is_some()
        {
            return;
        }
        if !matches!(self.state, State::Ready { .. }) {
            return;
        }
        let Some(baseline) = self.probe.baseline else {
            return;
        };
        if now < later(baseline, self.policy.probe_timeout) {
            return;
        }
        if !self.apps.is_empty() {
            if !self.probe.deferral_logged {
                self.probe.deferral_logged = true;
                out.push(say(&wording::LONG_RUNNING_WAIT, &[]));
            }
            return;
        }
        self.probe.timed_out = true;
        out.push(say(&wording::PROBE_THREAD_TIMEOUT, &[]));
        out.push(say(&wording::PROBE_ADDIN_TIMEOUT, &[]));
        // The reference deactivates the probe here, before the TIMEOUT message, when the
        // server is going to be killed. Under QOS_NOKILL, pause or QOS_ENABLE=0 probing
        // goes on: its next success is how the condition is seen to clear.
        if self.policy.qos_enable && !self.policy.nokill && !self.paused {
            self.deactivate_probe(out);
        }
        out.push(log_td(Component::Controller, "OpMsg=TIMEOUT Type=PROBE"));
        out.push(say(&wording::PROBE_TIMEOUT_RECEIVED, &[]));
        self.smart_kill(now, Reason::ProbeTimeout, out);
    }
}
