//! The status snapshot and its renderings: the `status --json` contract, the 80-column
//! human view and the exit code of `qoscntrlr status`. Pure: the runtime fills a
//! [`StatusSnapshot`], the CLI prints it; nothing here reads a clock or the system.
//!
//! # `status --json` contract (field names are stable)
//!
//! Times are RFC 3339 strings with offset; durations are whole seconds (`*_secs`) or
//! milliseconds (`*_ms`); `null` means "not known" or "not applicable".
//!
//! ```text
//! taken_at                       when the snapshot was taken
//! controller { version, pid, since, config_path, log_file, log_problem }
//!     log_problem: why the log cannot be written right now, null while it can
//! server { name, state, phase, why, state_since, pid, uptime_secs,
//!          restarts_in_window, restart_limit, restart_period_secs, last_exit }
//!     state: STARTING|READY|STOPPING|KILLING|CRASHED|RESTARTING|STOPPED|FAULTED
//!     phase: failover|diagnostics|kill (KILLING only, else null)
//!     restart_limit: null when QOS_RESTART_LIMIT_ENABLE=0
//! probe { target, interval_secs, interval_ms, last_result, last_latency_ms,
//!         since_last_success_secs, timeout_left_secs, enabled }
//! apps [ { name, age_secs, since_progress_secs } ]
//!     age_secs: since the application's START; since_progress_secs: since its last
//!     START or PROGRESS
//! resources { sampled_at, memory_bytes, max_memory_bytes, cpu_percent, max_cpu_percent,
//!             open_files, max_open_files, threads, max_threads,
//!             disk_free_bytes, min_disk_free_bytes } | null   (max_*/min_*: null = off)
//! failover { state, since, why, holds, failback_at, failback_left_secs,
//!            failback_awaits_operator, trigger, readiness, agent,
//!            trigger_present, health }          the HA view
//!     state: IN_SERVICE (traffic may come here) | FAILOVER_TRIGGERED (outputs down) |
//!            FAILBACK_HOLD (server well again, outputs still down until the hold ends
//!            or `qoscntrlr failback`) | OUT_OF_SERVICE (server FAULTED or STOPPED)
//!     since, why: when the state last changed and why
//!     holds: what keeps the outputs down: "incident", "faulted", "nokill:<reason>",
//!            "rule:<key>"
//!     failback_at, failback_left_secs: FAILBACK_HOLD with QOS_FAILBACK=auto, else null
//!     failback_awaits_operator: FAILBACK_HOLD with QOS_FAILBACK=manual
//!     trigger { path, content, error }   content: the file's text now ("1", "0"),
//!            null when there is no file; error: why it could not be read, else null
//!     readiness { listen, listening, code, reason }   what the readiness endpoint
//!            answers now (200 "ready", 503 with the reason); listen: its address, null
//!            when QOS_READINESS_LISTEN is not set; listening: the port is open
//!     agent { listen, listening, reply }   the HAProxy agent-check line now
//!            ("up ready", "down #<reason>", "drain")
//!     trigger_present: the trigger file exists; health: "ready" | "down: <reason>" |
//!            "drain" (kept from earlier versions)
//! flags { paused, paused_until, nokill, failover_triggered }
//!     failover_triggered: the failover outputs are down (trigger written, readiness
//!     and agent down)
//! incidents [ { id, kind, detected_at, outcome, diagnostics } ]   (newest last, at most 10)
//!     kind: probe-timeout | app-timeout | crash | restart-timeout | shutdown-timeout |
//!           operator-kill | out-of-<resource> | exhausted-<resource> | rule-<name> |
//!           oom-kill
//!     outcome: detected | diagnostics | killing | killed | restarting | restarted |
//!              stopped | not-killed-nokill | recovered-without-kill |
//!              failover-server-kept | suppressed-paused | faulted | recovered
//! containment { setting, mode, cgroup, layout, controllers, reason } | absent
//!     setting: auto|on|off (QOS_CGROUP); mode: "cgroup" (the server runs in its own
//!     cgroup v2, `cgroup` its directory) or "proc" (process tree found through /proc,
//!     `reason` says why)
//! resources also carry, where measured (absent otherwise): measured_by ("cgroup" or
//!     "proc"), open_files_counted, memory_pressure_percent, cpu_pressure_percent,
//!     io_pressure_percent (PSI some avg10 of the server's cgroup) with their
//!     max_*_pressure_percent limits, oom_kills (memory.events oom_kill total)
//! rules [ { name, rule, action, value, average, streak, window_filled, window_len,
//!           breached } ]        every resource rule in force, shorthand limits included
//! ```
//!
//! # No controller running (`status` exits 69)
//!
//! The controller keeps its last snapshot in `DATA_DIRECTORY/qoscntrlr-last-state.json`
//! ([`LastState`]: the snapshot, when it was written and how the controller ended), so
//! `status` without a controller still shows the last known state. `status --json` then
//! prints an [`OfflineStatus`]:
//!
//! ```text
//! running                        false
//! reason                         why no controller answered
//! checked_at, data_directory
//! recorded_at                    when the last state was written, null if none is
//! ended { at, how, detail, exit_code }
//!     how: signal (SIGTERM, SIGINT: systemctl stop, Ctrl-C) | quit (ended normally,
//!          no other cause recorded) |
//!          error (the controller gave up; detail says why) | unknown (it ended without
//!          recording its end: killed by SIGKILL, crashed, or the machine went down)
//! last                           the last snapshot (the contract above) | null
//! last_incident                  its newest incident | null
//! trigger { path, content, error }   the trigger file as it is now
//! server_left_running { pid, program, started_at } | null
//!     a server the controller recorded that still runs with nobody watching it
//! ```

use std::fmt::Write as _;

use chrono::{DateTime, FixedOffset, Local, SecondsFormat};
use serde::{Deserialize, Serialize};

use std::time::Duration;

use crate::core::units::{format_bytes, format_duration, ByteStyle, DurationStyle};
use crate::core::{KillPhase, ServerState};

pub use crate::core::FailoverState;

/// How many incidents a snapshot carries.
pub const MAX_INCIDENTS: usize = 10;

/// The width the human rendering fits in.
pub const COLUMNS: usize = 80;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusSnapshot {
    pub taken_at: String,
    pub controller: ControllerStatus,
    pub server: ServerStatus,
    pub probe: ProbeStatus,
    pub apps: Vec<AppStatus>,
    pub resources: Option<ResourceStatus>,
    pub failover: FailoverStatus,
    pub flags: Flags,
    pub incidents: Vec<IncidentStatus>,
    /// How the server is contained. Absent in snapshots of controllers that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containment: Option<ContainmentStatus>,
    /// Every resource rule in force (absent in snapshots of older versions).
    #[serde(default)]
    pub rules: Vec<RuleView>,
}

/// The containment mode (`QOS_CGROUP`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainmentStatus {
    pub setting: String,
    /// `cgroup` or `proc`.
    pub mode: String,
    pub cgroup: Option<String>,
    /// `delegated` or `data-directory`.
    pub layout: Option<String>,
    pub controllers: Vec<String>,
    pub reason: Option<String>,
}

/// One resource rule as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleView {
    /// Its key: `QOS_RULE_LEAK`, or a shorthand such as `QOS_MAX_MEMORY`.
    pub name: String,
    /// The rule, normalised: `memory > 2048 MB average 30 missing=ok action=alert`.
    pub rule: String,
    pub action: String,
    /// The last sample in words (`812 MB`, `not measured (…)`); null before the first.
    pub value: Option<String>,
    /// The mean of an average window so far; null for `samples N` rules.
    pub average: Option<String>,
    /// Consecutive breaching samples.
    pub streak: u32,
    /// Samples in the window so far, and its size.
    pub window_filled: u32,
    pub window_len: u32,
    pub breached: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControllerStatus {
    pub version: String,
    pub pid: u32,
    pub since: String,
    pub config_path: String,
    /// The `.out` file being written.
    #[serde(default)]
    pub log_file: Option<String>,
    /// Why the log cannot be written right now (full or read-only disk…); `null` while
    /// every line reaches the file. A controller that cannot log is degraded.
    #[serde(default)]
    pub log_problem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerStatus {
    pub name: String,
    pub state: ServerState,
    pub phase: Option<KillPhase>,
    pub why: String,
    pub state_since: String,
    pub pid: Option<u32>,
    pub uptime_secs: Option<u64>,
    pub restarts_in_window: u32,
    pub restart_limit: Option<u32>,
    pub restart_period_secs: u64,
    pub last_exit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeStatus {
    pub target: String,
    pub interval_secs: u64,
    /// The same, exact for sub-second intervals (absent in snapshots of older versions).
    #[serde(default)]
    pub interval_ms: Option<u64>,
    /// e.g. `SUCCESS`, `ERROR: connection refused`.
    pub last_result: Option<String>,
    pub last_latency_ms: Option<u64>,
    pub since_last_success_secs: Option<u64>,
    pub timeout_left_secs: Option<u64>,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppStatus {
    /// As in the log, e.g. `FIXUP[ddm.nsf]`.
    pub name: String,
    pub age_secs: u64,
    pub since_progress_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceStatus {
    pub sampled_at: String,
    pub memory_bytes: u64,
    pub max_memory_bytes: Option<u64>,
    pub cpu_percent: f64,
    pub max_cpu_percent: Option<u32>,
    pub open_files: u64,
    pub max_open_files: Option<u64>,
    pub threads: u64,
    pub max_threads: Option<u64>,
    pub disk_free_bytes: u64,
    pub min_disk_free_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_files_counted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_pressure_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_pressure_percent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_pressure_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cpu_pressure_percent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_pressure_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_io_pressure_percent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_kills: Option<u64>,
}

/// The HA view: the failover state, what each output says now, and the last change.
/// Everything but `trigger_present` and `health` is absent from the snapshots of
/// controllers that predate the HA view (hence the defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverStatus {
    #[serde(default)]
    pub state: Option<FailoverState>,
    /// When the failover state last changed (RFC 3339), and why.
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub why: Option<String>,
    /// What holds the outputs down: `incident`, `faulted`, `nokill:<reason>`,
    /// `rule:<key>`.
    #[serde(default)]
    pub holds: Vec<String>,
    /// FAILBACK_HOLD (QOS_FAILBACK=auto): when the outputs come back by themselves.
    #[serde(default)]
    pub failback_at: Option<String>,
    #[serde(default)]
    pub failback_left_secs: Option<u64>,
    /// FAILBACK_HOLD (QOS_FAILBACK=manual): only `qoscntrlr failback` brings them back.
    #[serde(default)]
    pub failback_awaits_operator: bool,
    #[serde(default)]
    pub trigger: Option<TriggerView>,
    #[serde(default)]
    pub readiness: Option<ReadinessView>,
    #[serde(default)]
    pub agent: Option<AgentView>,
    pub trigger_present: bool,
    /// `ready`, `down: <reason>` or `drain`.
    pub health: String,
}

/// The trigger file as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerView {
    pub path: String,
    /// The file's text without the line end (`1`, `0`); `None`: no file.
    pub content: Option<String>,
    /// Why the file could not be read (then `content` is `None` too).
    #[serde(default)]
    pub error: Option<String>,
}

/// What the readiness endpoint answers now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessView {
    /// `QOS_READINESS_LISTEN`; `None`: not configured (nothing answers).
    pub listen: Option<String>,
    /// The port is open (false when binding it failed).
    pub listening: bool,
    /// 200 or 503.
    pub code: u16,
    /// The body's line: `ready`, `draining`, or why the server is down.
    pub reason: String,
}

/// What the HAProxy agent-check port answers now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentView {
    /// `QOS_AGENT_LISTEN`; `None`: not configured.
    pub listen: Option<String>,
    pub listening: bool,
    /// `up ready`, `down #<reason>` or `drain`.
    pub reply: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flags {
    pub paused: bool,
    pub paused_until: Option<String>,
    pub nokill: bool,
    pub failover_triggered: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentStatus {
    pub id: String,
    /// As in the logs and the events file: `probe-timeout`, `app-timeout`, `crash`,
    /// `restart-timeout`, `shutdown-timeout`, `operator-kill`, `out-of-<resource>`,
    /// `exhausted-<resource>`, `rule-<name>`, `oom-kill`.
    pub kind: String,
    pub detected_at: String,
    /// Where it stands (the core's incident outcome): `detected`, `diagnostics`,
    /// `killing`, `killed`, `restarting`, `restarted`, `stopped`, `not-killed-nokill`,
    /// `recovered-without-kill`, `failover-server-kept`, `suppressed-paused`, `faulted`,
    /// `recovered`.
    pub outcome: String,
    pub diagnostics: Option<String>,
}

/// What the controller keeps in `DATA_DIRECTORY/qoscntrlr-last-state.json`: its last
/// snapshot (written on every state, failover-state and incident change) and, once it
/// has ended in an orderly way, how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastState {
    /// When this record was written (RFC 3339).
    pub recorded_at: String,
    /// How the controller ended; `None` while it runs — and forever when it was killed
    /// (SIGKILL), crashed or the machine went down.
    pub ended: Option<ControllerEnd>,
    pub snapshot: StatusSnapshot,
}

/// How a controller ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndHow {
    /// Ended normally without a recorded cause (exit code 0).
    Quit,
    /// SIGTERM or SIGINT (systemctl stop, Ctrl-C).
    Signal,
    /// The controller gave up (exit code other than 0).
    Error,
    /// It ended without recording its end: killed by SIGKILL, crashed, or the machine
    /// went down.
    Unknown,
}

impl EndHow {
    pub fn as_str(self) -> &'static str {
        match self {
            EndHow::Quit => "quit",
            EndHow::Signal => "signal",
            EndHow::Error => "error",
            EndHow::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerEnd {
    /// When (RFC 3339); `None` when not known.
    pub at: Option<String>,
    pub how: EndHow,
    /// In words: `qoscntrlr quit from uid 0`, `SIGTERM received`, …
    pub detail: String,
    pub exit_code: Option<u8>,
}

/// A server the last controller recorded that still runs, unwatched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftServer {
    pub pid: i32,
    pub program: String,
    pub started_at: String,
}

/// What `status` shows (and `status --json` prints) when no controller answers: the
/// last known state from the data directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfflineStatus {
    /// Always false: tells this document from a live snapshot.
    pub running: bool,
    /// Why no controller answered.
    pub reason: String,
    pub checked_at: String,
    pub data_directory: String,
    /// When the last state was written; `None`: there is none (or it cannot be read,
    /// then `last_state_problem` says why).
    pub recorded_at: Option<String>,
    #[serde(default)]
    pub last_state_problem: Option<String>,
    pub ended: Option<ControllerEnd>,
    pub last: Option<StatusSnapshot>,
    pub last_incident: Option<IncidentStatus>,
    /// The trigger file as it is now (the next controller keeps one until the server is
    /// healthy; keepalived watches it meanwhile).
    pub trigger: TriggerView,
    pub server_left_running: Option<LeftServer>,
}

impl OfflineStatus {
    /// Put together what the data directory says. `boot` is when the machine last
    /// started: a record older than that ended with the machine.
    #[allow(clippy::too_many_arguments)]
    pub fn assemble(
        reason: String,
        checked_at: DateTime<Local>,
        data_directory: String,
        last: Result<Option<LastState>, String>,
        trigger: TriggerView,
        server_left_running: Option<LeftServer>,
        boot: Option<DateTime<Local>>,
    ) -> OfflineStatus {
        let (record, problem) = match last {
            Ok(record) => (record, None),
            Err(e) => (None, Some(e)),
        };
        let ended = record.as_ref().map(|r| match &r.ended {
            Some(end) => end.clone(),
            None => {
                let recorded = parse_time(&r.recorded_at);
                let rebooted = matches!((recorded, boot), (Some(at), Some(boot)) if at < boot);
                ControllerEnd {
                    at: None,
                    how: EndHow::Unknown,
                    detail: if rebooted {
                        format!(
                            "it ended without recording its end: the machine restarted since (booted {})",
                            boot.map(|b| short_time(&rfc3339(b))).unwrap_or_default()
                        )
                    } else {
                        "it ended without recording its end: killed (SIGKILL), crashed, or the machine went down".to_string()
                    },
                    exit_code: None,
                }
            }
        });
        OfflineStatus {
            running: false,
            reason,
            checked_at: rfc3339(checked_at),
            data_directory,
            recorded_at: record.as_ref().map(|r| r.recorded_at.clone()),
            last_state_problem: problem,
            ended,
            last_incident: record
                .as_ref()
                .and_then(|r| r.snapshot.incidents.last().cloned()),
            last: record.map(|r| r.snapshot),
            trigger,
            server_left_running,
        }
    }

    /// The exit code: 69, no controller (whatever the last state was).
    pub fn exit_code(&self) -> u8 {
        crate::exitcode::EXIT_UNREACHABLE
    }
}

/// The view without a controller: that it is not running, how it ended, and the last
/// known state of the server, the failover outputs and the last incident.
pub fn render_offline(o: &OfflineStatus, color: bool) -> String {
    let mut out = String::new();
    let checked = parse_time(&o.checked_at);
    let _ = writeln!(out, "qoscntrlr {}", paint("NOT RUNNING", RED, color));
    field(&mut out, "", &[Words(&o.reason)]);
    field(&mut out, "data dir", &[Whole(&o.data_directory)]);
    let Some(last) = &o.last else {
        match &o.last_state_problem {
            Some(problem) => field(
                &mut out,
                "last",
                &[Words(&format!("state unreadable: {problem}"))],
            ),
            None => field(
                &mut out,
                "last",
                &[Words(
                    "no state recorded (no controller has run with this data directory yet)",
                )],
            ),
        }
        render_offline_outputs(&mut out, o);
        return out;
    };
    if let Some(at) = &o.recorded_at {
        field(
            &mut out,
            "recorded",
            &[Words(&format!(
                "{} by pid {} (qoscntrlr {})",
                since_text(checked, at).replacen("since ", "", 1),
                last.controller.pid,
                last.controller.version
            ))],
        );
    }
    if let Some(end) = &o.ended {
        let text = match (&end.at, end.exit_code) {
            (Some(at), Some(code)) => {
                format!(
                    "{} {}: {} (exit {code})",
                    short_time(at),
                    end.how.as_str(),
                    end.detail
                )
            }
            (Some(at), None) => format!("{} {}: {}", short_time(at), end.how.as_str(), end.detail),
            _ => format!("{}: {}", end.how.as_str(), end.detail),
        };
        field(&mut out, "ended", &[Words(&text)]);
    }
    field(&mut out, "config", &[Whole(&last.controller.config_path)]);
    if let Some(file) = &last.controller.log_file {
        field(&mut out, "log", &[Whole(file)]);
    }
    let s = &last.server;
    field(&mut out, "server", &[Whole(&s.name)]);
    let mut state_word = s.state.as_str().to_string();
    if let Some(phase) = s.phase {
        state_word.push_str(&format!(" ({})", phase.as_str()));
    }
    let _ = writeln!(
        out,
        "state     {}  {} (last known)",
        paint(&state_word, state_color(s.state), color),
        since_text(checked, &s.state_since)
    );
    if !s.why.is_empty() {
        field(&mut out, "why", &[Words(&s.why)]);
    }
    if let Some(pid) = s.pid {
        let note = match &o.server_left_running {
            Some(left) if left.pid as u32 == pid => {
                " STILL RUNNING, unwatched (the next controller kills its tree before it starts a server)"
            }
            _ => " (gone)",
        };
        field(&mut out, "pid", &[Words(&format!("{pid}{note}"))]);
    } else if let Some(left) = &o.server_left_running {
        field(
            &mut out,
            "pid",
            &[Words(&format!(
                "{} STILL RUNNING, unwatched (the next controller kills its tree before it starts a server)",
                left.pid
            ))],
        );
    }
    if let Some(state) = last.failover.state {
        let since = last
            .failover
            .since
            .as_deref()
            .map(|t| format!("  {}", since_text(checked, t)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "failover  {}{since} (last known)",
            paint(state.as_str(), failover_color(state), color)
        );
        if let Some(why) = last.failover.why.as_deref().filter(|w| !w.is_empty()) {
            field(&mut out, "", &[Words(&format!("why: {why}"))]);
        }
    }
    render_offline_outputs(&mut out, o);
    match &o.last_incident {
        None => field(&mut out, "incident", &[Words("none recorded")]),
        Some(incident) => {
            field(&mut out, "incident", &[Words("(the last one)")]);
            render_incident(&mut out, "  ", incident);
        }
    }
    out
}

/// The trigger file as it is now: what keepalived sees while no controller runs.
fn render_offline_outputs(out: &mut String, o: &OfflineStatus) {
    render_trigger(out, &o.trigger);
    if o.trigger.content.is_some() {
        field(
            out,
            "",
            &[Words(
                "(now; the next controller keeps it until the server is ready and probing well)",
            )],
        );
    }
}

/// A time as the snapshot carries it (RFC 3339, seconds, local offset).
pub fn rfc3339(time: DateTime<Local>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// Exit code of `qoscntrlr status`: 0 READY, in service and not paused; 3 STOPPED or
/// FAULTED; 1 for everything in between (recovering, degraded, paused, or READY while the
/// failover outputs are still down: failover triggered or a failback hold).
pub fn exit_code(snapshot: &StatusSnapshot) -> u8 {
    // An older controller without the HA view: its server state alone decides.
    let in_service = matches!(
        snapshot.failover.state,
        None | Some(FailoverState::InService)
    );
    match snapshot.server.state {
        ServerState::Ready
            if in_service
                && !snapshot.flags.paused
                && snapshot.controller.log_problem.is_none() =>
        {
            0
        }
        ServerState::Stopped | ServerState::Faulted => 3,
        _ => 1,
    }
}

const RED: &str = "\x1b[1;31m";
const YELLOW: &str = "\x1b[1;33m";
const GREEN: &str = "\x1b[1;32m";
const BLUE: &str = "\x1b[1;34m";
const RESET: &str = "\x1b[0m";

fn state_color(state: ServerState) -> &'static str {
    match state {
        ServerState::Faulted | ServerState::Crashed | ServerState::Killing => RED,
        ServerState::Starting | ServerState::Restarting | ServerState::Stopping => YELLOW,
        ServerState::Ready => GREEN,
        ServerState::Stopped => BLUE,
    }
}

/// The human view: lines of at most [`COLUMNS`] characters, except that a value never
/// broken (a path, a URL, an application name) wider than a line stands alone on its own
/// line, whole, so it can be copied. The state (and PAUSED) coloured only when `color` is
/// set — the CLI passes `stdout().is_terminal()`.
pub fn render_human(snapshot: &StatusSnapshot, color: bool) -> String {
    let taken = parse_time(&snapshot.taken_at);
    let mut out = String::new();
    let c = &snapshot.controller;
    field(
        &mut out,
        "qoscntrlr",
        &[Words(&format!(
            "{}  pid {}  up since {}",
            c.version,
            c.pid,
            short_time(&c.since)
        ))],
    );
    field(&mut out, "config", &[Whole(&c.config_path)]);
    if let Some(problem) = &c.log_problem {
        // Wrapped, never cut: the reason is the point. Painted after wrapping, like the
        // state word, so escape codes never count as columns.
        let text = format!("LOG NOT WRITTEN: {problem}");
        painted_field(&mut out, "log", &[Words(&text)], RED, color);
    } else if let Some(file) = &c.log_file {
        field(&mut out, "log", &[Whole(file)]);
    }
    render_server(&mut out, snapshot, taken, color);
    render_probe_apps_resources(&mut out, snapshot);
    render_failover(&mut out, &snapshot.failover, taken, color);
    render_flags(&mut out, &snapshot.flags, color);
    render_incidents(&mut out, &snapshot.incidents);
    out
}

fn render_server(
    out: &mut String,
    snapshot: &StatusSnapshot,
    taken: Option<DateTime<FixedOffset>>,
    color: bool,
) {
    let s = &snapshot.server;
    field(out, "server", &[Whole(&s.name)]);
    let mut state_word = s.state.as_str().to_string();
    if let Some(phase) = s.phase {
        state_word.push_str(&format!(" ({})", phase.as_str()));
    }
    // The state word and the time are short: one line, painted after laying out.
    let _ = writeln!(
        out,
        "state     {}  {}",
        paint(&state_word, state_color(s.state), color),
        since_text(taken, &s.state_since)
    );
    if !s.why.is_empty() {
        field(out, "why", &[Words(&s.why)]);
    }
    let mut line = match s.pid {
        Some(pid) => format!("{pid}"),
        None => "-".to_string(),
    };
    if let Some(up) = s.uptime_secs {
        line.push_str(&format!("  uptime {}", human_secs(up)));
    }
    field(out, "pid", &[Words(&line)]);
    let limit = match s.restart_limit {
        Some(max) => format!(
            "{} of {} in {}",
            s.restarts_in_window,
            max,
            human_secs(s.restart_period_secs)
        ),
        None => format!("{} (no limit)", s.restarts_in_window),
    };
    let mut line = limit;
    if let Some(exit) = &s.last_exit {
        line.push_str(&format!("  last exit: {exit}"));
    }
    field(out, "restarts", &[Words(&line)]);
}

fn render_probe_apps_resources(out: &mut String, snapshot: &StatusSnapshot) {
    let p = &snapshot.probe;
    if p.enabled {
        let every = format!(
            "every {}",
            match p.interval_ms {
                Some(ms) if ms < 1000 => format!("{ms}ms"),
                _ => human_secs(p.interval_secs),
            }
        );
        field(out, "probe", &[Whole(&p.target), Words(&every)]);
        let mut parts = Vec::new();
        match (&p.last_result, p.last_latency_ms) {
            (Some(result), Some(ms)) => parts.push(format!("last {result} ({ms}ms)")),
            (Some(result), None) => parts.push(format!("last {result}")),
            _ => parts.push("no result yet".to_string()),
        }
        if let Some(secs) = p.since_last_success_secs {
            parts.push(format!("ok {} ago", human_secs(secs)));
        }
        if let Some(secs) = p.timeout_left_secs {
            parts.push(format!("timeout in {}", human_secs(secs)));
        }
        field(out, "", &[Words(&parts.join(", "))]);
    } else {
        field(out, "probe", &[Words("off"), Whole(&p.target)]);
    }

    if snapshot.apps.is_empty() {
        field(out, "apps", &[Words("none running long")]);
    } else {
        field(
            out,
            "apps",
            &[Words(&format!("{} long-running", snapshot.apps.len()))],
        );
        for app in &snapshot.apps {
            let tail = format!(
                "age {}, progress {} ago",
                human_secs(app.age_secs),
                human_secs(app.since_progress_secs)
            );
            item(out, "  - ", "    ", &[Whole(&app.name), Words(&tail)]);
        }
    }

    if let Some(r) = &snapshot.resources {
        let mut parts = vec![
            format!(
                "mem {}{}",
                human_bytes(r.memory_bytes),
                limit_text(r.max_memory_bytes.map(human_bytes))
            ),
            format!(
                "cpu {:.0}%{}",
                r.cpu_percent,
                limit_text(r.max_cpu_percent.map(|v| format!("{v}%")))
            ),
        ];
        if r.open_files_counted != Some(false) {
            parts.push(format!(
                "files {}{}",
                r.open_files,
                limit_text(r.max_open_files.map(|v| v.to_string()))
            ));
        }
        parts.push(format!(
            "threads {}{}",
            r.threads,
            limit_text(r.max_threads.map(|v| v.to_string()))
        ));
        field(out, "resources", &[Words(&parts.join("  "))]);
        field(
            out,
            "",
            &[Words(&format!(
                "disk free {}{}  at {}",
                human_bytes(r.disk_free_bytes),
                r.min_disk_free_bytes
                    .map(|v| format!(" (min {})", human_bytes(v)))
                    .unwrap_or_default(),
                short_time(&r.sampled_at)
            ))],
        );
        let pressure: Vec<String> = [
            (
                "mem",
                r.memory_pressure_percent,
                r.max_memory_pressure_percent,
            ),
            ("cpu", r.cpu_pressure_percent, r.max_cpu_pressure_percent),
            ("io", r.io_pressure_percent, r.max_io_pressure_percent),
        ]
        .iter()
        .filter_map(|(name, value, max)| {
            value.map(|v| format!("{name} {v:.1}%{}", limit_text(max.map(|m| format!("{m}%")))))
        })
        .collect();
        if !pressure.is_empty() || r.oom_kills.is_some() {
            let oom = r
                .oom_kills
                .map(|n| format!("  oom kills {n}"))
                .unwrap_or_default();
            field(
                out,
                "",
                &[Words(&format!("pressure {}{oom}", pressure.join("  ")))],
            );
        }
    } else {
        field(out, "resources", &[Words("no sample yet")]);
    }
    if let Some(c) = &snapshot.containment {
        match (&c.cgroup, &c.reason) {
            (Some(cgroup), _) if c.mode == "cgroup" => {
                field(out, "contained", &[Words("cgroup v2"), Whole(cgroup)])
            }
            (_, reason) => field(
                out,
                "contained",
                &[Words(&format!(
                    "none, /proc process tree ({})",
                    reason.as_deref().unwrap_or("no cgroup v2")
                ))],
            ),
        }
    }

    for rule in &snapshot.rules {
        let mut text = rule.value.as_deref().unwrap_or("no sample yet").to_string();
        if let Some(average) = &rule.average {
            text.push_str(&format!(", average {average}"));
        }
        text.push_str(&format!(
            ", streak {}/{}",
            rule.streak.min(rule.window_len),
            rule.window_len
        ));
        if rule.breached {
            text.push_str(&format!(", BREACHED ({})", rule.action));
        }
        field(out, "rule", &[Whole(&rule.name), Words(&text)]);
    }
}

fn failover_color(state: FailoverState) -> &'static str {
    match state {
        FailoverState::InService => GREEN,
        FailoverState::FailbackHold => YELLOW,
        FailoverState::FailoverTriggered | FailoverState::OutOfService => RED,
    }
}

/// The HA view: the failover state and its last change, then what each output says.
fn render_failover(
    out: &mut String,
    f: &FailoverStatus,
    taken: Option<DateTime<FixedOffset>>,
    color: bool,
) {
    let Some(state) = f.state else {
        // A controller from before the HA view: what it reported then.
        field(
            out,
            "failover",
            &[Words(&format!(
                "trigger file {}, health {}",
                if f.trigger_present {
                    "present"
                } else {
                    "absent"
                },
                f.health
            ))],
        );
        return;
    };
    let since = f
        .since
        .as_deref()
        .map(|t| format!("  {}", since_text(taken, t)))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "failover  {}{since}",
        paint(state.as_str(), failover_color(state), color)
    );
    if state == FailoverState::FailbackHold {
        if let Some(left) = f.failback_left_secs {
            let at = f
                .failback_at
                .as_deref()
                .map(|t| format!(" (at {})", short_time(t)))
                .unwrap_or_default();
            field(
                out,
                "",
                &[Words(&format!(
                    "back in {}{at} or now by qoscntrlr failback",
                    human_secs(left)
                ))],
            );
        } else if f.failback_awaits_operator {
            field(
                out,
                "",
                &[Words(
                    "back only by qoscntrlr failback (QOS_FAILBACK=manual)",
                )],
            );
        }
    }
    if let Some(why) = f.why.as_deref().filter(|w| !w.is_empty()) {
        field(out, "", &[Words(&format!("why: {why}"))]);
    }
    if !f.holds.is_empty() {
        field(
            out,
            "",
            &[Words(&format!("held down by: {}", f.holds.join(", ")))],
        );
    }
    if let Some(t) = &f.trigger {
        render_trigger(out, t);
    }
    if let Some(r) = &f.readiness {
        match &r.listen {
            None => field(
                out,
                "readiness",
                &[Words("not served (QOS_READINESS_LISTEN not set)")],
            ),
            Some(addr) => field(
                out,
                "readiness",
                &[Words(&format!(
                    "{addr} answers {} {}{}",
                    r.code,
                    r.reason,
                    not_listening(r.listening)
                ))],
            ),
        }
    }
    if let Some(a) = &f.agent {
        match &a.listen {
            None => field(
                out,
                "agent",
                &[Words("not served (QOS_AGENT_LISTEN not set)")],
            ),
            Some(addr) => field(
                out,
                "agent",
                &[Words(&format!(
                    "{addr} answers {}{}",
                    a.reply,
                    not_listening(a.listening)
                ))],
            ),
        }
    }
}

fn not_listening(listening: bool) -> &'static str {
    if listening {
        ""
    } else {
        " (NOT LISTENING: the port could not be opened)"
    }
}

/// `trigger   1 in /srv/qos/triggerImmediateServerFailover` and its variants.
fn render_trigger(out: &mut String, t: &TriggerView) {
    match (&t.content, &t.error) {
        (Some(content), _) if content == "1" => {
            field(out, "trigger", &[Words("1 in"), Whole(&t.path)])
        }
        (Some(content), _) if content == "0" => field(
            out,
            "trigger",
            &[
                Words("0 in"),
                Whole(&t.path),
                Words("(QOS_DISABLE_FAILOVER_TRIGGER: marks the incident, asks no failover)"),
            ],
        ),
        (Some(other), _) => field(
            out,
            "trigger",
            &[Words(&format!("{other:?} in")), Whole(&t.path)],
        ),
        (None, Some(error)) => field(
            out,
            "trigger",
            &[Words("unreadable:"), Whole(&t.path), Words(error)],
        ),
        (None, None) => field(out, "trigger", &[Words("absent:"), Whole(&t.path)]),
    }
}

fn render_flags(out: &mut String, fl: &Flags, color: bool) {
    let mut flags = Vec::new();
    if fl.paused {
        let text = match &fl.paused_until {
            Some(until) => format!("PAUSED until {}", short_time(until)),
            None => "PAUSED".to_string(),
        };
        flags.push(paint(&text, YELLOW, color));
    }
    if fl.nokill {
        flags.push("nokill".to_string());
    }
    if fl.failover_triggered {
        flags.push("failover triggered".to_string());
    }
    // At most three short words: one line.
    if flags.is_empty() {
        field(out, "flags", &[Words("none")]);
    } else {
        let _ = writeln!(out, "flags     {}", flags.join(", "));
    }
}

fn render_incidents(out: &mut String, incidents: &[IncidentStatus]) {
    if incidents.is_empty() {
        field(out, "incidents", &[Words("none")]);
        return;
    }
    field(out, "incidents", &[Words("(newest last)")]);
    let skip = incidents.len().saturating_sub(MAX_INCIDENTS);
    for incident in incidents.iter().skip(skip) {
        render_incident(out, "  ", incident);
    }
}

fn render_incident(out: &mut String, indent: &str, incident: &IncidentStatus) {
    item(
        out,
        indent,
        &format!("{indent}    "),
        &[Words(&format!(
            "{} {} {} -> {}",
            short_time(&incident.detected_at),
            incident.kind,
            incident.id,
            incident.outcome
        ))],
    );
    if let Some(diag) = &incident.diagnostics {
        item(
            out,
            &format!("{indent}    diagnostics "),
            &format!("{indent}    "),
            &[Whole(diag)],
        );
    }
}

fn paint(text: &str, code: &str, color: bool) -> String {
    if color {
        format!("{code}{text}{RESET}")
    } else {
        text.to_string()
    }
}

/// `since 2024-05-08 10:14:30 (1m ago)`.
fn since_text(taken: Option<DateTime<FixedOffset>>, time: &str) -> String {
    match (taken, parse_time(time)) {
        (Some(now), Some(then)) => format!(
            "since {} ({} ago)",
            short_time(time),
            human_secs((now - then).num_seconds().max(0) as u64)
        ),
        _ => format!("since {}", short_time(time)),
    }
}

/// A piece of a field's value.
#[derive(Debug, Clone, Copy)]
enum Piece<'a> {
    /// Words: the line may break at any space.
    Words(&'a str),
    /// One value that is never broken (a path, a URL, an application name, even with
    /// spaces inside): it moves to the next line when it does not fit, and stands alone
    /// on its own line, whole, when it is wider than a line — so it can be copied.
    Whole(&'a str),
}
use Piece::{Whole, Words};

/// The width of the label column.
const LABEL: usize = 10;

/// A labelled field: the label in the first [`LABEL`] columns, the value after it,
/// continuation lines indented to the value.
fn field(out: &mut String, label: &str, pieces: &[Piece]) {
    item(out, &label_text(label), &" ".repeat(LABEL), pieces);
}

/// A field whose every line of value is painted (after laying out, so escape codes never
/// count as columns).
fn painted_field(out: &mut String, label: &str, pieces: &[Piece], code: &str, color: bool) {
    let first = label_text(label);
    let width = COLUMNS - LABEL;
    for (i, line) in lay_out(pieces, width, width).iter().enumerate() {
        let prefix = if i == 0 { first.as_str() } else { "          " };
        let _ = writeln!(out, "{prefix}{}", paint(line, code, color));
    }
}

/// The label padded to [`LABEL`] columns (a longer one gets one space after it).
fn label_text(label: &str) -> String {
    if label.chars().count() >= LABEL {
        format!("{label} ")
    } else {
        format!("{label:<LABEL$}")
    }
}

/// `pieces` after `first` (then `cont` on each further line).
fn item(out: &mut String, first: &str, cont: &str, pieces: &[Piece]) {
    let first_width = COLUMNS.saturating_sub(first.chars().count());
    let rest_width = COLUMNS.saturating_sub(cont.chars().count());
    for (i, line) in lay_out(pieces, first_width, rest_width).iter().enumerate() {
        let prefix = if i == 0 { first } else { cont };
        let _ = writeln!(out, "{prefix}{line}");
    }
}

/// `pieces` in lines of at most `first_width` (then `rest_width`) characters, broken at
/// spaces between words. A [`Piece::Whole`] is never broken: when it does not fit on the
/// current line it starts the next one, and when it is wider than any line it stands
/// alone there (right after the label when it comes first) — the only thing ever wider.
/// Nothing is ever cut.
fn lay_out(pieces: &[Piece], first_width: usize, rest_width: usize) -> Vec<String> {
    let flat: Vec<&str> = pieces
        .iter()
        .map(|p| match p {
            Words(t) | Whole(t) => *t,
        })
        .filter(|t| !t.is_empty())
        .collect();
    let joined = flat.join(" ");
    if joined.chars().count() <= first_width {
        // Fits: as written (double spaces between parts kept).
        return vec![joined];
    }
    let mut tokens: Vec<&str> = Vec::new();
    for piece in pieces {
        match piece {
            Words(text) => tokens.extend(text.split(' ').filter(|w| !w.is_empty())),
            Whole(text) if !text.is_empty() => tokens.push(text),
            Whole(_) => {}
        }
    }
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for token in tokens {
        let width = if lines.is_empty() {
            first_width
        } else {
            rest_width
        };
        let needed = line.chars().count() + usize::from(!line.is_empty()) + token.chars().count();
        if !line.is_empty() && needed > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(token);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

fn limit_text(limit: Option<String>) -> String {
    limit.map(|l| format!("/{l}")).unwrap_or_default()
}

fn parse_time(text: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(text).ok()
}

/// `YYYY-MM-DD HH:MM:SS` in the snapshot's own offset; the raw text if it is not RFC 3339.
fn short_time(text: &str) -> String {
    match parse_time(text) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => text.to_string(),
    }
}

/// Seconds as the status screen writes them (`45s`, `3m 12s`, `2h 5m`, `3d 4h`).
fn human_secs(secs: u64) -> String {
    format_duration(Duration::from_secs(secs), DurationStyle::Short)
}

/// Bytes as the status screen writes them (`512 B`, `1.5 KiB`, `3.2 GiB`).
fn human_bytes(bytes: u64) -> String {
    format_bytes(bytes, ByteStyle::Binary)
}
