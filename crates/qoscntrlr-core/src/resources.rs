//! Resources: each sampling pass judged by the rule engine (shorthand limits warn and
//! smart-kill; `QOS_RULE_<NAME>` rules log, alert, fail over or kill), a resource back
//! under its limit, OOM kills in the server's cgroup.

use super::*;

impl Controller {
    /// A measured resource is back under its limit (a shorthand rule such as
    /// QOS_MAX_MEMORY cleared): a QOS_NOKILL condition about it ends, and so does a kill
    /// a pause held back — the server got out of it by itself.
    pub(crate) fn resource_back(&mut self, now: Instant, resource: &str, out: &mut Vec<Action>) {
        let about = |reason: &Option<Reason>| matches!(reason, Some(Reason::Exhausted { resource: r, .. }) if r == resource);
        if about(&self.nokill_reason) {
            out.push(log(
                Component::Controller,
                wording::NOKILL_RESOURCE_BACK.fill(&[&resource]),
            ));
            self.end_nokill(now, Some(IncidentOutcome::RecoveredWithoutKill), out);
        }
        if about(&self.pause_suppressed) {
            out.push(log(
                Component::Controller,
                wording::RESOURCE_BACK_NO_KILL.fill(&[&resource]),
            ));
            self.pause_suppressed = None;
            self.end_suppressed(IncidentOutcome::RecoveredWithoutKill, out);
        }
    }

    /// An OOM kill in the server's cgroup: logged, mailed and recorded as an incident.
    /// Nothing is killed or restarted for it: if the server itself died, its exit is
    /// the crash that follows; if a worker died, the server may well cope.
    pub(crate) fn on_oom_killed(
        &mut self,
        now: Instant,
        kills: u64,
        total: u64,
        out: &mut Vec<Action>,
    ) {
        if kills == 0 {
            return;
        }
        let id = self.open_incident(now, "oom-kill", out);
        out.push(log(
            Component::Controller,
            wording::OOM_KILLED.fill(&[&kills, &total]),
        ));
        out.push(Action::Mail(Alert {
            kind: AlertKind::Other {
                event: "OOM kill".into(),
            },
            summary: format!(
                "The kernel's out-of-memory killer killed {kills} process(es) of server {} \
                 (oom_kill count of its cgroup: {total}).",
                self.policy.server_name
            ),
            diagnostics: None,
            incident: Some(id),
        }));
    }

    /// One sampling pass against every rule: shorthand limits warn and smart-kill in
    /// their long-standing words; `QOS_RULE_<NAME>` rules log, alert, fail over or kill.
    pub(crate) fn on_samples(&mut self, now: Instant, readings: &Readings, out: &mut Vec<Action>) {
        // Failover holds of rules a reload removed let go first.
        let gone: Vec<String> = self
            .rule_failovers
            .iter()
            .filter(|(key, _)| {
                !self
                    .rules
                    .rules()
                    .iter()
                    .any(|r| r.key() == *key && r.action == RuleAction::Failover)
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in gone {
            self.rule_failback(now, &key, "the rule was removed by a reload", out);
        }
        if !matches!(self.state, State::Ready { .. } | State::Starting { .. }) {
            return;
        }
        for verdict in self.rules.observe(readings) {
            match verdict {
                Verdict::Warn { rule, value, limit } => {
                    let Some(Origin::Shorthand { resource, .. }) =
                        self.rules.rule(rule).map(|r| r.origin.clone())
                    else {
                        continue;
                    };
                    let detail = format!("{value} of {limit}");
                    let detail = match self.rules.rule(rule) {
                        Some(r) if matches!(r.op, crate::rules::Op::Lt | crate::rules::Op::Le) => {
                            format!("{value} free, minimum {limit}")
                        }
                        _ => detail,
                    };
                    out.push(log(
                        Component::Controller,
                        format!("Warning: server is close to its {resource} limit ({detail})"),
                    ));
                    out.push(Action::Mail(Alert {
                        kind: AlertKind::ResourceWarning {
                            resource: resource.to_string(),
                        },
                        summary: format!("The server is close to its {resource} limit: {detail}."),
                        diagnostics: None,
                        incident: None,
                    }));
                }
                Verdict::Breached {
                    rule,
                    detail,
                    value,
                } => {
                    let Some(r) = self.rules.rule(rule).cloned() else {
                        continue;
                    };
                    self.rule_breached(now, &r, &detail, &value, out);
                }
                Verdict::Cleared { rule, detail } => {
                    let Some(r) = self.rules.rule(rule).cloned() else {
                        continue;
                    };
                    self.rule_cleared(now, &r, &detail, out);
                }
            }
        }
    }

    pub(crate) fn rule_breached(
        &mut self,
        now: Instant,
        rule: &crate::rules::Rule,
        detail: &str,
        value: &str,
        out: &mut Vec<Action>,
    ) {
        let key = rule.key();
        if let Origin::Shorthand { resource, .. } = &rule.origin {
            // The shorthand keys keep their words: `Server has exhausted memory (…)`.
            if !matches!(self.state, State::Ready { .. } | State::Starting { .. }) {
                return;
            }
            let detail = crate::rules::shorthand_detail(rule, value);
            let line = wording::SERVER_EXHAUSTED.fill(&[&resource, &detail]);
            let reason = Reason::Exhausted {
                resource: resource.to_string(),
                detail,
            };
            self.rule_kill(now, line, reason, out);
            return;
        }
        out.push(log(
            Component::Controller,
            wording::RULE_BREACHED.fill(&[&key, &detail, &rule.action.as_str()]),
        ));
        match rule.action {
            RuleAction::Log => {}
            RuleAction::Alert => out.push(Action::Mail(Alert {
                kind: AlertKind::Rule {
                    rule: key.clone(),
                    detail: detail.to_string(),
                },
                summary: format!("Rule {key} ({}) is breached: {detail}.", rule.spec()),
                diagnostics: None,
                incident: None,
            })),
            RuleAction::Failover => self.rule_failover(now, rule, detail, out),
            RuleAction::Kill => {
                let reason = Reason::Rule {
                    rule: key.clone(),
                    detail: detail.to_string(),
                };
                self.rule_kill(now, String::new(), reason, out);
            }
        }
    }

    /// Smart kill for a rule, logging `line` first (when not empty). During a stall
    /// hold the kill waits for the probe after the stall, as a measured exhaustion does;
    /// a kill already under way (another rule of the same pass, a probe timeout) is not
    /// started twice.
    pub(crate) fn rule_kill(
        &mut self,
        now: Instant,
        line: String,
        reason: Reason,
        out: &mut Vec<Action>,
    ) {
        if !matches!(self.state, State::Ready { .. } | State::Starting { .. }) {
            return;
        }
        if self.holding(now) {
            out.push(log(
                Component::Controller,
                format!(
                    "{}; acting once the probe after the stall has answered",
                    if line.is_empty() {
                        reason.describe()
                    } else {
                        line.clone()
                    }
                ),
            ));
            if self.deferred_exhaustion.is_none() {
                self.deferred_exhaustion = Some((line, reason));
            }
            return;
        }
        if !line.is_empty() {
            out.push(log(Component::Controller, line));
        }
        self.smart_kill(now, reason, out);
    }

    pub(crate) fn rule_cleared(
        &mut self,
        now: Instant,
        rule: &crate::rules::Rule,
        detail: &str,
        out: &mut Vec<Action>,
    ) {
        if let Origin::Shorthand { resource, .. } = &rule.origin {
            // The shorthand keys (QOS_MAX_MEMORY …) speak of the resource, not the rule.
            self.resource_back(now, resource, out);
            return;
        }
        let key = rule.key();
        match rule.action {
            RuleAction::Failover => self.rule_failback(now, &key, detail, out),
            RuleAction::Alert => {
                out.push(log(
                    Component::Controller,
                    format!("Rule {key} cleared: {detail}"),
                ));
                out.push(Action::Mail(Alert {
                    kind: AlertKind::Rule {
                        rule: key.clone(),
                        detail: format!("cleared: {detail}"),
                    },
                    summary: format!("Rule {key} ({}) holds no more: {detail}.", rule.spec()),
                    diagnostics: None,
                    incident: None,
                }));
            }
            RuleAction::Log | RuleAction::Kill => out.push(log(
                Component::Controller,
                format!("Rule {key} cleared: {detail}"),
            )),
        }
    }

    /// `action=failover`: the outputs go down as for a smart kill (trigger file,
    /// readiness/agent, failover hook), the server is kept and probed as usual.
    pub(crate) fn rule_failover(
        &mut self,
        now: Instant,
        rule: &crate::rules::Rule,
        detail: &str,
        out: &mut Vec<Action>,
    ) {
        let key = rule.key();
        if self.rule_failovers.iter().any(|(k, _)| *k == key) {
            return;
        }
        let reason = Reason::Rule {
            rule: key.clone(),
            detail: detail.to_string(),
        };
        let id = self.open_incident(now, &reason.slug(), out);
        self.rule_failovers.push((key.clone(), id));
        self.hold_down(
            Hold::Rule(key.clone()),
            &reason.describe(),
            HookEvent::Failover,
            &reason.slug(),
            id,
            out,
        );
        // After the actions that take the outputs down: a reader of the log who sees
        // the line finds the trigger file already written.
        out.push(log(
            Component::Controller,
            format!("Rule {key}: failover outputs down; the server is kept running"),
        ));
        out.push(Action::Mail(Alert {
            kind: AlertKind::Rule {
                rule: key.clone(),
                detail: detail.to_string(),
            },
            summary: format!(
                "Rule {key} ({}) is breached: {detail}. Traffic was failed over; the server is kept running.",
                rule.spec()
            ),
            diagnostics: None,
            incident: Some(id),
        }));
        if let Some(a) = self.update_incident(id, IncidentOutcome::FailedOver, None) {
            out.push(a);
        }
    }

    /// A failover rule holds no more: the outputs come back once nothing else keeps
    /// them down (another failover rule, a server that is not ready and probing well).
    pub(crate) fn rule_failback(
        &mut self,
        now: Instant,
        key: &str,
        detail: &str,
        out: &mut Vec<Action>,
    ) {
        let Some(pos) = self.rule_failovers.iter().position(|(k, _)| k == key) else {
            return;
        };
        let (_, id) = self.rule_failovers.remove(pos);
        out.push(log(
            Component::Controller,
            format!("Rule {key} cleared: {detail}"),
        ));
        if let Some(a) = self.update_incident(id, IncidentOutcome::RecoveredWithoutKill, None) {
            out.push(a);
        }
        if let Some((other, _)) = self.rule_failovers.first() {
            out.push(log(
                Component::Controller,
                format!("Failover outputs stay down while rule {other} holds"),
            ));
        }
        // The outputs come back (after any failback hold) once nothing else holds them
        // and the server is ready and probing well.
        let was_down = self.ha.down;
        self.release(now, &Hold::Rule(key.to_string()), out);
        if was_down && !self.ha.down {
            out.push(log(
                Component::Controller,
                wording::RULE_FAILBACK.fill(&[&key]),
            ));
        }
    }
}
