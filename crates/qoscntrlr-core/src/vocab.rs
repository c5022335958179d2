//! The core's vocabulary: the plain data types the state machine decides in and the
//! effect modules speak — server states and kill phases (`status` renders them), what a
//! server message means (`message` parses lines into it), the health view load balancers
//! are shown (`failover` serves it), why a hook runs, what an alert is about (`mail` and
//! `webhook` send it), and who speaks on a log line (`qoslog` writes it).
//!
//! They are defined here, not in those modules, so the core depends on none of the I/O
//! modules: the dependency points from the shell's effect modules to the core, never the
//! other way (`tests/core_purity.rs` fails when it is reversed).

use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------
// Server states

/// Server states, spelled as in the logs and the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServerState {
    Starting,
    Ready,
    Stopping,
    Killing,
    Crashed,
    Restarting,
    Stopped,
    Faulted,
}

impl ServerState {
    pub const ALL: [ServerState; 8] = [
        ServerState::Starting,
        ServerState::Ready,
        ServerState::Stopping,
        ServerState::Killing,
        ServerState::Crashed,
        ServerState::Restarting,
        ServerState::Stopped,
        ServerState::Faulted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Starting => "STARTING",
            ServerState::Ready => "READY",
            ServerState::Stopping => "STOPPING",
            ServerState::Killing => "KILLING",
            ServerState::Crashed => "CRASHED",
            ServerState::Restarting => "RESTARTING",
            ServerState::Stopped => "STOPPED",
            ServerState::Faulted => "FAULTED",
        }
    }
}

impl std::fmt::Display for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a smart kill is (the states: failover → diagnostics → kill).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KillPhase {
    Failover,
    Diagnostics,
    Kill,
}

impl KillPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            KillPhase::Failover => "failover",
            KillPhase::Diagnostics => "diagnostics",
            KillPhase::Kill => "kill",
        }
    }
}

// ---------------------------------------------------------------------------------------
// What the server said

/// A long-running application: `TYPE[ObjectValue]`, or just `TYPE` without a value.
/// The type is kept in upper case so `compact` and `COMPACT` are one application.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AppKey {
    pub kind: String,
    pub object: Option<String>,
}

impl AppKey {
    pub fn new(kind: &str, object: Option<&str>) -> AppKey {
        AppKey {
            kind: kind.to_ascii_uppercase(),
            object: object.map(str::to_string),
        }
    }
}

impl std::fmt::Display for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.object {
            Some(object) => write!(f, "{}[{}]", self.kind, object),
            None => f.write_str(&self.kind),
        }
    }
}

/// What a message asks of the controller (the message protocol table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meaning {
    QosStart,
    ServerStart,
    ServerReady,
    /// `restart`: the detail says the server is restarting itself
    /// (`ObjectType=Detail ObjectValue=Restart`), so it is started again once down.
    ServerEnd {
        restart: bool,
    },
    QosEnd,
    Crash,
    ProbeTimeout,
    ProbeResult {
        success: bool,
        latency_ms: Option<u64>,
        detail: Option<String>,
    },
    Exhausted {
        resource: String,
    },
    AppStart {
        app: AppKey,
    },
    AppProgress {
        app: AppKey,
    },
    AppEnd {
        app: AppKey,
    },
}

// ---------------------------------------------------------------------------------------
// Failover outputs

/// What the readiness endpoint and the agent port tell load balancers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Health {
    Ready,
    Down {
        reason: String,
    },
    /// An orderly quit: finish current work, take no new.
    Drain,
}

/// Why a hook runs; its `QOS_EVENT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookEvent {
    /// Traffic moves away (smart kill, QOS_NOKILL condition): the failover hook.
    Failover,
    /// The restart limit was reached and the server is left down: the failover hook.
    Faulted,
    /// Traffic comes back: the recovery hook.
    Recovery,
}

impl HookEvent {
    pub fn as_str(&self) -> &'static str {
        match self {
            HookEvent::Failover => "failover",
            HookEvent::Faulted => "faulted",
            HookEvent::Recovery => "recovery",
        }
    }

    /// Runs QOS_RECOVERY_HOOK (otherwise QOS_FAILOVER_HOOK).
    pub fn is_recovery(&self) -> bool {
        matches!(self, HookEvent::Recovery)
    }
}

// ---------------------------------------------------------------------------------------
// Alerts and log lines

/// What the alert is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertKind {
    /// `reason` in words, e.g. `probe timeout`.
    SmartKill {
        reason: String,
    },
    Crash,
    RestartLimit,
    /// `resource` e.g. `memory`, `cpu`, `open files`.
    ResourceWarning {
        resource: String,
    },
    Recovery,
    /// A resource rule with `action=alert` (or `failover`) was breached or cleared;
    /// `rule` is its key (`QOS_RULE_MEMLEAK`), `detail` what was measured.
    Rule {
        rule: String,
        detail: String,
    },
    /// Anything else (e.g. an operator kill, a nokill detection), in words.
    Other {
        event: String,
    },
}

impl AlertKind {
    /// The `<event>` of the subject.
    pub fn event_words(&self) -> String {
        match self {
            AlertKind::SmartKill { reason } => format!("smart kill ({reason})"),
            AlertKind::Crash => "crashed".to_string(),
            AlertKind::RestartLimit => "restart limit reached".to_string(),
            AlertKind::ResourceWarning { resource } => format!("resource warning ({resource})"),
            AlertKind::Recovery => "recovered".to_string(),
            AlertKind::Rule { rule, detail } => format!("rule {rule} ({detail})"),
            AlertKind::Other { event } => event.clone(),
        }
    }

    /// The rule an alert is about, if any.
    pub fn rule(&self) -> Option<&str> {
        match self {
            AlertKind::Rule { rule, .. } => Some(rule),
            _ => None,
        }
    }

    /// Alerts with the same fold key are folded together.
    pub fn fold_key(&self) -> String {
        match self {
            AlertKind::SmartKill { .. } => "smart-kill".to_string(),
            AlertKind::Crash => "crash".to_string(),
            AlertKind::RestartLimit => "restart-limit".to_string(),
            AlertKind::ResourceWarning { .. } => "resource-warning".to_string(),
            AlertKind::Recovery => "recovery".to_string(),
            AlertKind::Rule { rule, .. } => format!("rule:{rule}"),
            AlertKind::Other { event } => format!("other:{event}"),
        }
    }
}

/// Who speaks on a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    Controller,
    Probe,
    Applications,
    Kill,
    /// No component: the reference writes `The probe thread has not received a message
    /// from qosprobe within the timeout period.` without one.
    Bare,
}

impl Component {
    /// `QoS Controller`, `QoS Probe`, `QoS Applications`, `QoS Kill`; `None` for `Bare`.
    pub fn label(self) -> Option<&'static str> {
        match self {
            Component::Controller => Some("QoS Controller"),
            Component::Probe => Some("QoS Probe"),
            Component::Applications => Some("QoS Applications"),
            Component::Kill => Some("QoS Kill"),
            Component::Bare => None,
        }
    }

    /// Split the part of a log line after the stamp into its component and text
    /// (`QoS Probe: SUCCESS` → `(Probe, "SUCCESS")`; anything else is `Bare`).
    pub fn split(rest: &str) -> (Component, &str) {
        for component in [
            Component::Controller,
            Component::Probe,
            Component::Applications,
            Component::Kill,
        ] {
            if let Some(label) = component.label() {
                if let Some(text) = rest
                    .strip_prefix(label)
                    .and_then(|after| after.strip_prefix(": "))
                {
                    return (component, text);
                }
            }
        }
        (Component::Bare, rest)
    }
}
