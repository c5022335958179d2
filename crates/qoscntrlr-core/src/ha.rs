//! The failover state machine: whether the failover outputs (trigger file, readiness,
//! agent, hooks) tell the HA stack to keep traffic on this server, and why.
//!
//! Outputs go down while at least one [`Hold`] is in force — a smart kill and its
//! recovery, FAULTED, a NOKILL condition, or (for other parts of the core) a rule — and
//! come back only once every hold is released *and* the server has been READY and
//! probing well for `QOS_FAILBACK_HOLD` (`QOS_FAILBACK=manual`: only on the operator's
//! `failback`). A hold that comes back while the failback hold runs cancels it, so a
//! flapping server never sends traffic back in between.
//!
//! Plain data only (no I/O, no clock): the controller (`lib.rs`) drives it and
//! turns its transitions into actions.

use std::collections::BTreeSet;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::instants;

/// The HA view of the controller (what `status` shows as the failover state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailoverState {
    /// Outputs up (or never down): traffic may come here whenever the server is READY.
    InService,
    /// Outputs down: the server is being handled, or a condition holds them down.
    FailoverTriggered,
    /// Every hold is released and the server is well; outputs stay down until the
    /// failback hold ends (or the operator runs `failback`).
    FailbackHold,
    /// The server is down on purpose or for good (FAULTED, STOPPED).
    OutOfService,
}

impl FailoverState {
    pub const ALL: [FailoverState; 4] = [
        FailoverState::InService,
        FailoverState::FailoverTriggered,
        FailoverState::FailbackHold,
        FailoverState::OutOfService,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailoverState::InService => "IN_SERVICE",
            FailoverState::FailoverTriggered => "FAILOVER_TRIGGERED",
            FailoverState::FailbackHold => "FAILBACK_HOLD",
            FailoverState::OutOfService => "OUT_OF_SERVICE",
        }
    }
}

impl std::fmt::Display for FailoverState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `QOS_FAILBACK`: who brings the outputs back once the server is well.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailbackMode {
    /// After `QOS_FAILBACK_HOLD` of READY and probing well.
    #[default]
    Auto,
    /// Only `qoscntrlr failback`.
    Manual,
}

impl FailbackMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailbackMode::Auto => "auto",
            FailbackMode::Manual => "manual",
        }
    }
}

/// One reason the failover outputs are held down. Several can be in force at once; the
/// outputs come back only when none is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Hold {
    /// A smart kill (or operator kill of a READY server) and the restart after it: held
    /// until the restarted server is READY and its first probe succeeds.
    Incident,
    /// The restart limit was reached: held until the server is READY again.
    Faulted,
    /// A condition detected under QOS_NOKILL (the server is kept for inspection, not
    /// for traffic): held while it lasts. The text is the reason's slug.
    NoKill(String),
    /// A rule with a `failover` action, by name: held while the rule is breached.
    Rule(String),
}

impl Hold {
    /// Words for logs and status.
    pub fn describe(&self) -> String {
        match self {
            Hold::Incident => "incident".into(),
            Hold::Faulted => "faulted".into(),
            Hold::NoKill(what) => format!("nokill:{what}"),
            Hold::Rule(name) => format!("rule:{name}"),
        }
    }
}

/// The failover bookkeeping the controller keeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FailoverBook {
    /// Reasons the outputs are held down now.
    pub holds: BTreeSet<Hold>,
    /// The outputs are down (trigger file written, readiness/agent down).
    pub down: bool,
    /// What readiness and the agent say while the outputs are down.
    pub down_reason: String,
    /// The failback hold runs and ends at this time (auto mode).
    #[serde(with = "instants::option")]
    pub failback_at: Option<Instant>,
    /// The failback hold waits for the operator (manual mode).
    pub awaiting_operator: bool,
    /// The last HA state computed, when it changed, and why.
    pub state: Option<FailoverState>,
    #[serde(with = "instants::option")]
    pub changed_at: Option<Instant>,
    pub changed_why: String,
    /// The incident the outputs went down for (recovery mail, hook and outcome).
    pub incident: Option<u64>,
}

impl FailoverBook {
    /// The failback hold is running (timer or operator).
    pub fn in_failback_hold(&self) -> bool {
        self.down && (self.failback_at.is_some() || self.awaiting_operator)
    }
}
