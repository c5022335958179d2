//! The failover outputs the controller drives: trigger file, readiness/agent health and
//! hooks, held down by the holds of the HA state machine (`ha::FailoverBook`: a smart
//! kill's incident, FAULTED, a NOKILL condition, a rule) and given back on failback.

use super::*;

impl Controller {
    /// The HA state as it follows from the outputs and the server's state.
    pub fn failover_state(&self) -> FailoverState {
        match self.state {
            State::Faulted { .. } | State::Stopped => FailoverState::OutOfService,
            _ if self.ha.in_failback_hold() => FailoverState::FailbackHold,
            _ if self.ha.down => FailoverState::FailoverTriggered,
            _ => FailoverState::InService,
        }
    }

    /// What readiness and the agent say now.
    pub(crate) fn published_health(&self) -> Health {
        if self.ha.down {
            Health::Down {
                reason: self.ha.down_reason.clone(),
            }
        } else {
            self.server_health.clone()
        }
    }

    /// The server's own health changed; published unless the outputs are held down.
    pub(crate) fn set_health(&mut self, health: Health, out: &mut Vec<Action>) {
        self.server_health = health;
        out.push(Action::SetHealth(self.published_health()));
    }

    /// READY, and (when probing) the probe is active and has succeeded since READY and
    /// has not failed since.
    pub(crate) fn is_well(&self) -> bool {
        matches!(self.state, State::Ready { .. })
            && (!self.policy.probing || self.well_since.is_some())
    }

    /// Put the failover outputs down for `hold` (or keep them down for one more reason):
    /// trigger file, then readiness/agent down, then the hook — the order a smart kill
    /// needs before diagnostics start. A failback hold in progress is cancelled: a server
    /// that is sick again inside the hold never gets traffic back in between.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn hold_down(
        &mut self,
        hold: Hold,
        reason: &str,
        hook: HookEvent,
        hook_reason: &str,
        incident: u64,
        out: &mut Vec<Action>,
    ) {
        let was_down = self.ha.down;
        let already_held = self.ha.holds.contains(&hold);
        if self.ha.in_failback_hold() {
            out.push(log(
                Component::Controller,
                format!("Failback hold cancelled: {reason}; the failover outputs stay down"),
            ));
        }
        self.ha.failback_at = None;
        self.ha.awaiting_operator = false;
        self.ha.holds.insert(hold);
        self.ha.down = true;
        self.ha.down_reason = reason.to_string();
        self.ha.incident = Some(incident);
        // Written again even when already down: cheap, and it repairs a deleted file.
        self.trigger_written = true;
        out.push(Action::WriteTrigger);
        out.push(Action::SetHealth(self.published_health()));
        // The failover hook announces the move; FAULTED is announced even when traffic
        // had already moved (the server is now not coming back by itself), but only once
        // (a FAULTED decided ahead, see `fault_ahead`, is not announced again).
        let announce = !was_down || (hook == HookEvent::Faulted && !already_held);
        if announce && !self.policy.failover_trigger_disabled {
            out.push(Action::RunHook {
                event: hook,
                reason: hook_reason.to_string(),
                incident,
            });
        }
    }

    /// One reason for the outputs to be down is gone; they come back when none is left
    /// and the server is well (after the failback hold).
    pub(crate) fn release(&mut self, now: Instant, hold: &Hold, out: &mut Vec<Action>) {
        if self.ha.holds.remove(hold) {
            self.try_failback(now, out);
        }
    }

    /// Release every NOKILL hold (the condition ended, or the server went away).
    pub(crate) fn end_nokill(
        &mut self,
        now: Instant,
        outcome: Option<IncidentOutcome>,
        out: &mut Vec<Action>,
    ) {
        self.nokill_reason = None;
        if let Some(id) = self.nokill_incident.take() {
            if let Some(outcome) = outcome {
                if let Some(a) = self.update_incident(id, outcome, None) {
                    out.push(a);
                }
            }
        }
        let nokill: Vec<Hold> = self
            .ha
            .holds
            .iter()
            .filter(|h| matches!(h, Hold::NoKill(_)))
            .cloned()
            .collect();
        for hold in nokill {
            self.release(now, &hold, out);
        }
    }

    /// Every hold is released and the server is well: start the failback hold, wait for
    /// the operator, or bring the outputs back now.
    pub(crate) fn try_failback(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !self.ha.down || !self.ha.holds.is_empty() || !self.is_well() {
            return;
        }
        if self.ha.in_failback_hold() {
            return;
        }
        if self.policy.failback == FailbackMode::Manual {
            self.ha.awaiting_operator = true;
            out.push(log(Component::Controller, "Server is ready and probing well; QOS_FAILBACK=manual: the failover outputs stay down until qoscntrlr failback"));
            return;
        }
        if !self.policy.failback_hold.is_zero() {
            let hold = self.policy.failback_hold;
            self.ha.failback_at = Some(later(now, hold));
            out.push(log(
                Component::Controller,
                format!(
                    "Server is ready and probing well; failback hold: the failover outputs stay down for {} (QOS_FAILBACK_HOLD)",
                    describe_duration(hold)
                ),
            ));
            return;
        }
        self.failback(out);
    }

    /// Bring the failover outputs back: trigger removed, readiness/agent up, recovery
    /// hook and mail.
    pub(crate) fn failback(&mut self, out: &mut Vec<Action>) {
        self.ha.down = false;
        self.ha.failback_at = None;
        self.ha.awaiting_operator = false;
        self.ha.holds.clear();
        let incident = self
            .ha
            .incident
            .take()
            .or_else(|| self.incidents.back().map(|r| r.id))
            .unwrap_or(self.next_incident);
        out.push(Action::RemoveTrigger);
        out.push(Action::SetHealth(self.published_health()));
        if std::mem::take(&mut self.trigger_written) {
            out.push(say(&wording::SERVER_RECOVERED, &[]));
        } else {
            out.push(say(&wording::SERVER_RECOVERED_NO_TRIGGER, &[]));
        }
        out.push(Action::RunHook {
            event: HookEvent::Recovery,
            reason: "recovered".into(),
            incident,
        });
        out.push(Action::Mail(Alert {
            kind: AlertKind::Recovery,
            summary: "The server is ready and probing well again.".into(),
            diagnostics: None,
            incident: Some(incident),
        }));
        let open = self
            .incidents
            .iter()
            .find(|r| r.id == incident)
            .is_some_and(|r| r.outcome != IncidentOutcome::RecoveredWithoutKill);
        if open {
            if let Some(a) = self.update_incident(incident, IncidentOutcome::Recovered, None) {
                out.push(a);
            }
        }
    }

    /// After every event: note a change of the HA state (log, events, state record).
    pub(crate) fn note_failover_state(&mut self, now: Instant, out: &mut Vec<Action>) {
        let to = self.failover_state();
        let from = self.ha.state.unwrap_or(FailoverState::InService);
        if self.ha.state == Some(to) {
            return;
        }
        if self.ha.state.is_none() && to == FailoverState::InService {
            self.ha.state = Some(to);
            self.ha.changed_at = Some(now);
            self.ha.changed_why = "controller started".into();
            return;
        }
        let why = match to {
            FailoverState::InService if from == FailoverState::OutOfService => {
                format!("server {}", self.state.name().as_str())
            }
            FailoverState::InService => "server ready and probing well".to_string(),
            FailoverState::FailoverTriggered => {
                if self.ha.holds.is_empty() {
                    format!(
                        "{} (waiting for the server to be ready and probing well)",
                        self.ha.down_reason
                    )
                } else {
                    self.ha.down_reason.clone()
                }
            }
            FailoverState::FailbackHold => match self.ha.failback_at {
                Some(at) => format!(
                    "server ready and probing well; outputs back in {}",
                    describe_duration(at.saturating_duration_since(now))
                ),
                None => "server ready and probing well; waiting for qoscntrlr failback".to_string(),
            },
            FailoverState::OutOfService => {
                format!("server {} ({})", self.state.name().as_str(), self.why)
            }
        };
        self.ha.state = Some(to);
        self.ha.changed_at = Some(now);
        self.ha.changed_why = why.clone();
        out.push(Action::FailoverChanged { from, to, why });
    }
}
