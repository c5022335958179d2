//! Stalls of the controller itself (a suspended VM, a loaded host): a lateness of the
//! loop holds the timeouts back until a fresh probe answers, so the controller never
//! kills a server for time it was not looking.

use super::*;

impl Controller {
    /// A stall hold is in force at `now`.
    pub(crate) fn holding(&self, now: Instant) -> bool {
        self.stall_hold.is_some_and(|hold| now < hold.until)
    }

    /// The loop ran `stalled_for` late. Longer than the probe interval, that blind time
    /// could otherwise look like a hang: the probe baseline, the applications' progress
    /// and the state's own deadline move on by the stall (it does not count), a probe is
    /// sent at once, and no timeout is declared until it answers or a bounded wait ends.
    pub(crate) fn on_stall(&mut self, now: Instant, stalled_for: Duration, out: &mut Vec<Action>) {
        let probing = self.policy.probing
            && matches!(self.state, State::Starting { .. } | State::Ready { .. });
        let threshold = if probing {
            self.policy.probe_interval.max(STALL_MIN)
        } else {
            STALL_MIN
        };
        if stalled_for <= threshold {
            return;
        }
        // Whole seconds, rounded: "stalled for 10 s" after a 10 s SIGSTOP.
        let secs = stalled_for.as_millis().saturating_add(500) / 1000;
        let how = if probing {
            "probing again before acting"
        } else {
            "timers continue from where they were"
        };
        out.push(log(
            Component::Controller,
            format!("Controller was stalled for {secs} s; {how}"),
        ));
        let moved = |t: Instant| later(t, stalled_for).min(now);
        if let Some(baseline) = self.probe.baseline {
            self.probe.baseline = Some(moved(baseline));
        }
        self.apps.shift_progress(stalled_for, now);
        let shift = |t: Instant| later(t, stalled_for);
        match &mut self.state {
            State::Starting { deadline, .. } => *deadline = shift(*deadline),
            State::Stopping {
                deadline, next_nsd, ..
            } => {
                *deadline = shift(*deadline);
                *next_nsd = next_nsd.map(shift);
            }
            State::Killing { deadline, .. } => *deadline = deadline.map(shift),
            _ => {}
        }
        if probing {
            let attempt_limit = self.policy.probe_interval.min(self.policy.probe_timeout);
            self.stall_hold = Some(StallHold {
                since: now,
                until: later(now, attempt_limit.saturating_add(STALL_PROBE_SLACK)),
            });
            if !self.policy.probe_by_message {
                self.probe.next_attempt = Some(now);
                self.schedule_probe(now, out);
            }
        }
    }

    /// Operator diagnostics are done: the time they held the server's threads does not
    /// count against the probe or the applications, and a fresh probe goes out at once.
    pub(crate) fn end_operator_diagnostics(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(since) = self.probe.operator_diagnostics_since.take() else {
            return;
        };
        let held = now.saturating_duration_since(since);
        if let Some(baseline) = self.probe.baseline {
            self.probe.baseline = Some(later(baseline, held).min(now));
        }
        self.apps.shift_progress(held, now);
        if self.probing_wanted() && !self.probe.in_flight {
            self.probe.next_attempt = Some(now);
            self.schedule_probe(now, out);
        }
    }

    /// A stall hold ran out without an answer: timeouts apply again.
    pub(crate) fn end_stall_hold(&mut self, now: Instant, out: &mut Vec<Action>) {
        if let Some(hold) = self.stall_hold {
            if now >= hold.until {
                self.stall_hold = None;
                out.push(log(
                    Component::Controller,
                    "No probe answer since the stall; timeouts apply again",
                ));
            }
        }
    }
}
