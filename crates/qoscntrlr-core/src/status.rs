//! What `status` shows that the controller knows: the server and its probe,
//! applications, pause, the HA view, incidents and rules.

use super::*;

/// The HA view for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverView {
    pub state: FailoverState,
    /// The failover outputs are down (trigger written, readiness/agent down).
    pub outputs_down: bool,
    /// What readiness and the agent say now.
    pub health: Health,
    /// Reasons holding the outputs down, e.g. `incident`, `faulted`, `nokill:probe-timeout`.
    pub holds: Vec<String>,
    /// FAILBACK_HOLD: when the outputs come back by themselves (None: waits for the
    /// operator, QOS_FAILBACK=manual).
    pub failback_at: Option<Instant>,
    pub awaiting_operator: bool,
    pub changed_at: Option<Instant>,
    pub changed_why: String,
}

/// Read-only view for `status`.
#[derive(Debug, Clone)]
pub struct CoreStatus {
    pub state: StateName,
    pub phase: Option<KillPhase>,
    pub why: String,
    pub state_since: Instant,
    pub server_pid: Option<i32>,
    pub restarts_in_window: usize,
    pub last_exit: Option<String>,
    pub probe_last_result: Option<(bool, Duration, String)>,
    pub probe_last_success: Option<Instant>,
    pub probe_timeout_at: Option<Instant>,
    /// Name, time since START, time since the last progress.
    pub apps: Vec<(String, Duration, Duration)>,
    pub paused: bool,
    pub paused_until: Option<Instant>,
    pub nokill: bool,
    pub failover_triggered: bool,
    pub failover: FailoverView,
    pub incidents: Vec<IncidentRecord>,
    /// Every rule in force, its last value and streak.
    pub rules: Vec<RuleStatus>,
    /// Keys of the `action=failover` rules holding the outputs down now.
    pub rule_failovers: Vec<String>,
}

impl Controller {
    /// Everything `status` shows that the controller knows.
    pub fn status(&self, now: Instant) -> CoreStatus {
        let phase = match &self.state {
            State::Killing { phase, .. } => Some(*phase),
            _ => None,
        };
        CoreStatus {
            state: self.state.name(),
            phase,
            why: self.why.clone(),
            state_since: self.state_since,
            server_pid: self.state.server_pid(),
            restarts_in_window: self
                .restarts
                .iter()
                .filter(|t| now.duration_since(**t) < self.policy.restart_limit_period)
                .count(),
            last_exit: self.last_exit.clone(),
            probe_last_result: self.probe.last_result.clone(),
            probe_last_success: self.probe.last_success,
            probe_timeout_at: self.probe_timeout_at(),
            apps: self
                .apps
                .iter(now)
                .map(|(k, ages)| (k.to_string(), ages.running, ages.without_progress))
                .collect(),
            paused: self.paused,
            paused_until: self.paused_until,
            nokill: self.policy.nokill,
            failover_triggered: self.ha.down,
            failover: FailoverView {
                state: self.failover_state(),
                outputs_down: self.ha.down,
                health: self.published_health(),
                holds: self.ha.holds.iter().map(Hold::describe).collect(),
                failback_at: self.ha.failback_at,
                awaiting_operator: self.ha.awaiting_operator,
                changed_at: self.ha.changed_at,
                changed_why: self.ha.changed_why.clone(),
            },
            incidents: self.incidents.iter().cloned().collect(),
            rules: self.rules.status(),
            rule_failovers: self.rule_failovers.iter().map(|(k, _)| k.clone()).collect(),
        }
    }
}
