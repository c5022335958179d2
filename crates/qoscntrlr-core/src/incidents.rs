//! Incidents: each one opened (and announced `detected`), its outcome updated until it
//! ends, a bounded list of the latest kept for `status`.

use super::*;

/// Where an incident stands. Every incident starts `Detected` (the metric
/// `qoscntrlr_last_incident_timestamp_seconds` and the events file see each one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IncidentOutcome {
    Detected,
    /// Diagnostics are being collected before a kill or restart.
    Diagnostics,
    Killing,
    Killed,
    /// Crash post-mortem done; the server is being restarted.
    Restarting,
    Restarted,
    /// The server was stopped on purpose after the kill (shutdown timeout).
    Stopped,
    /// QOS_NOKILL: reported, not acted on.
    NotKilled,
    /// The condition cleared by itself.
    RecoveredWithoutKill,
    /// A rule with a `failover` action: traffic moved, the server is kept.
    FailedOver,
    /// Paused: not acted on until resume.
    Suppressed,
    /// The restart limit was reached; the server is left down.
    Faulted,
    /// The server is READY and probing well again and traffic came back.
    Recovered,
}

impl IncidentOutcome {
    /// Every outcome (the `status --json` contract documents each of them).
    pub const ALL: [IncidentOutcome; 13] = [
        IncidentOutcome::Detected,
        IncidentOutcome::Diagnostics,
        IncidentOutcome::Killing,
        IncidentOutcome::Killed,
        IncidentOutcome::Restarting,
        IncidentOutcome::Restarted,
        IncidentOutcome::Stopped,
        IncidentOutcome::NotKilled,
        IncidentOutcome::RecoveredWithoutKill,
        IncidentOutcome::FailedOver,
        IncidentOutcome::Suppressed,
        IncidentOutcome::Faulted,
        IncidentOutcome::Recovered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentOutcome::Detected => "detected",
            IncidentOutcome::Diagnostics => "diagnostics",
            IncidentOutcome::Killing => "killing",
            IncidentOutcome::Killed => "killed",
            IncidentOutcome::Restarting => "restarting",
            IncidentOutcome::Restarted => "restarted",
            IncidentOutcome::Stopped => "stopped",
            IncidentOutcome::NotKilled => "not-killed-nokill",
            IncidentOutcome::RecoveredWithoutKill => "recovered-without-kill",
            IncidentOutcome::FailedOver => "failover-server-kept",
            IncidentOutcome::Suppressed => "suppressed-paused",
            IncidentOutcome::Faulted => "faulted",
            IncidentOutcome::Recovered => "recovered",
        }
    }
}

impl std::fmt::Display for IncidentOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A notable thing that happened, kept for status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentRecord {
    pub id: u64,
    pub kind: String,
    #[serde(with = "instants::instant")]
    pub detected_at: Instant,
    pub outcome: IncidentOutcome,
    pub diagnostics: Option<String>,
}

impl Controller {
    /// Open an incident: every one is announced as `Detected` first.
    pub(crate) fn open_incident(&mut self, now: Instant, kind: &str, out: &mut Vec<Action>) -> u64 {
        let id = self.next_incident;
        self.next_incident += 1;
        self.incidents.push_back(IncidentRecord {
            id,
            kind: kind.to_string(),
            detected_at: now,
            outcome: IncidentOutcome::Detected,
            diagnostics: None,
        });
        while self.incidents.len() > KEPT_INCIDENTS {
            self.incidents.pop_front();
        }
        out.push(Action::Incident {
            id,
            kind: kind.to_string(),
            outcome: IncidentOutcome::Detected,
        });
        id
    }

    pub(crate) fn update_incident(
        &mut self,
        id: u64,
        outcome: IncidentOutcome,
        diagnostics: Option<&str>,
    ) -> Option<Action> {
        let record = self.incidents.iter_mut().find(|r| r.id == id)?;
        record.outcome = outcome;
        if let Some(d) = diagnostics {
            record.diagnostics = Some(d.to_string());
        }
        Some(Action::Incident {
            id,
            kind: record.kind.clone(),
            outcome,
        })
    }

    /// The incident a pause held back is over without a kill.
    pub(crate) fn end_suppressed(&mut self, outcome: IncidentOutcome, out: &mut Vec<Action>) {
        if let Some(id) = self.pause_incident.take() {
            if let Some(a) = self.update_incident(id, outcome, None) {
                out.push(a);
            }
        }
    }
}
