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
//! controller { version, pid, since, config_path }
//! server { name, state, phase, why, state_since, pid, uptime_secs,
//!          restarts_in_window, restart_limit, restart_period_secs, last_exit }
//!     state: STARTING|READY|STOPPING|KILLING|CRASHED|RESTARTING|STOPPED|FAULTED
//!     phase: failover|diagnostics|kill (KILLING only, else null)
//!     restart_limit: null when QOS_RESTART_LIMIT_ENABLE=0
//! probe { target, interval_secs, interval_ms, last_result, last_latency_ms,
//!         since_last_success_secs, timeout_left_secs, enabled }
//! apps [ { name, age_secs, since_progress_secs } ]
//! resources { sampled_at, memory_bytes, max_memory_bytes, cpu_percent, max_cpu_percent,
//!             open_files, max_open_files, threads, max_threads,
//!             disk_free_bytes, min_disk_free_bytes } | null   (max_*/min_*: null = off)
//! failover { trigger_present, health }      health: "ready" | "down: <reason>" | "drain"
//! flags { paused, paused_until, nokill, failover_triggered }
//! incidents [ { id, kind, detected_at, outcome, diagnostics } ]   (newest last, at most 10)
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

use std::fmt::Write as _;

use chrono::{DateTime, FixedOffset, Local, SecondsFormat};
use serde::{Deserialize, Serialize};

use crate::core::{KillPhase, ServerState};

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverStatus {
    pub trigger_present: bool,
    pub health: String,
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
    /// e.g. `probe-timeout`, `crash`, `app-timeout`, `exhausted`, `operator-kill`.
    pub kind: String,
    pub detected_at: String,
    /// e.g. `restarted`, `in progress`, `faulted`, `nokill: reported only`.
    pub outcome: String,
    pub diagnostics: Option<String>,
}

/// A time as the snapshot carries it (RFC 3339, seconds, local offset).
pub fn rfc3339(time: DateTime<Local>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// Exit code of `qoscntrlr status`: 0 READY and not paused; 3 STOPPED or FAULTED;
/// 1 for everything in between (recovering, degraded, paused).
pub fn exit_code(snapshot: &StatusSnapshot) -> u8 {
    match snapshot.server.state {
        ServerState::Ready
            if !snapshot.flags.paused && snapshot.controller.log_problem.is_none() =>
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

/// The human view: at most [`COLUMNS`] characters a line; the state (and PAUSED) coloured
/// only when `color` is set — the CLI passes `stdout().is_terminal()`.
pub fn render_human(snapshot: &StatusSnapshot, color: bool) -> String {
    let paint = |text: &str, code: &str| -> String {
        if color {
            format!("{code}{text}{RESET}")
        } else {
            text.to_string()
        }
    };
    let taken = parse_time(&snapshot.taken_at);
    let mut out = String::new();
    let c = &snapshot.controller;
    push(
        &mut out,
        &format!(
            "qoscntrlr {}  pid {}  up since {}",
            c.version,
            c.pid,
            short_time(&c.since)
        ),
    );
    push(&mut out, &format!("config    {}", c.config_path));
    if let Some(problem) = &c.log_problem {
        // Wrapped, not cut: the reason is the point. Painted after wrapping, like the
        // state word, so escape codes never count as columns.
        let text = format!("LOG NOT WRITTEN: {problem}");
        for (i, piece) in wrap_words(&text, COLUMNS.saturating_sub(10))
            .iter()
            .enumerate()
        {
            let label = if i == 0 { "log       " } else { "          " };
            let _ = writeln!(out, "{label}{}", paint(piece, RED));
        }
    } else if let Some(file) = &c.log_file {
        push(&mut out, &format!("log       {file}"));
    }

    let s = &snapshot.server;
    push(&mut out, &format!("server    {}", s.name));
    // The state word is painted after fitting, so escape codes never count as columns.
    let mut state_word = s.state.as_str().to_string();
    if let Some(phase) = s.phase {
        state_word.push_str(&format!(" ({})", phase.as_str()));
    }
    let since = match (taken, parse_time(&s.state_since)) {
        (Some(now), Some(then)) => format!(
            "since {} ({} ago)",
            short_time(&s.state_since),
            human_secs((now - then).num_seconds().max(0) as u64)
        ),
        _ => format!("since {}", short_time(&s.state_since)),
    };
    let rest = fit(
        &format!("  {since}"),
        COLUMNS.saturating_sub(10 + state_word.len()),
    );
    let _ = writeln!(
        out,
        "state     {}{}",
        paint(&state_word, state_color(s.state)),
        rest
    );
    if !s.why.is_empty() {
        push(&mut out, &format!("why       {}", s.why));
    }
    let mut line = match s.pid {
        Some(pid) => format!("pid       {pid}"),
        None => "pid       -".to_string(),
    };
    if let Some(up) = s.uptime_secs {
        line.push_str(&format!("  uptime {}", human_secs(up)));
    }
    push(&mut out, &line);
    let limit = match s.restart_limit {
        Some(max) => format!(
            "{} of {} in {}",
            s.restarts_in_window,
            max,
            human_secs(s.restart_period_secs)
        ),
        None => format!("{} (no limit)", s.restarts_in_window),
    };
    let mut line = format!("restarts  {limit}");
    if let Some(exit) = &s.last_exit {
        line.push_str(&format!("  last exit: {exit}"));
    }
    push(&mut out, &line);

    let p = &snapshot.probe;
    if p.enabled {
        push(
            &mut out,
            &format!(
                "probe     {} every {}",
                p.target,
                match p.interval_ms {
                    Some(ms) if ms < 1000 => format!("{ms}ms"),
                    _ => human_secs(p.interval_secs),
                }
            ),
        );
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
        push(&mut out, &format!("          {}", parts.join(", ")));
    } else {
        push(&mut out, &format!("probe     off ({})", p.target));
    }

    if snapshot.apps.is_empty() {
        push(&mut out, "apps      none running long");
    } else {
        push(
            &mut out,
            &format!("apps      {} long-running", snapshot.apps.len()),
        );
        for app in &snapshot.apps {
            let tail = format!(
                " age {}, progress {} ago",
                human_secs(app.age_secs),
                human_secs(app.since_progress_secs)
            );
            let name = fit(&app.name, COLUMNS.saturating_sub(10 + tail.len()));
            push(&mut out, &format!("  - {name}{tail}"));
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
        push(&mut out, &format!("resources {}", parts.join("  ")));
        push(
            &mut out,
            &format!(
                "          disk free {}{}  at {}",
                human_bytes(r.disk_free_bytes),
                r.min_disk_free_bytes
                    .map(|v| format!(" (min {})", human_bytes(v)))
                    .unwrap_or_default(),
                short_time(&r.sampled_at)
            ),
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
            push(
                &mut out,
                &format!("          pressure {}{oom}", pressure.join("  ")),
            );
        }
    } else {
        push(&mut out, "resources no sample yet");
    }
    if let Some(c) = &snapshot.containment {
        let text = match (&c.cgroup, &c.reason) {
            (Some(cgroup), _) if c.mode == "cgroup" => format!("cgroup v2 {cgroup}"),
            (_, reason) => format!(
                "none, /proc process tree ({})",
                reason.as_deref().unwrap_or("no cgroup v2")
            ),
        };
        push(&mut out, &format!("contained {text}"));
    }

    for rule in &snapshot.rules {
        let mut text = format!(
            "{} {}",
            rule.name,
            rule.value.as_deref().unwrap_or("no sample yet")
        );
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
        push(&mut out, &format!("rule      {}", fit(&text, COLUMNS - 10)));
    }

    let f = &snapshot.failover;
    push(
        &mut out,
        &format!(
            "failover  trigger file {}, health {}",
            if f.trigger_present {
                "present"
            } else {
                "absent"
            },
            f.health
        ),
    );

    let fl = &snapshot.flags;
    let mut flags = Vec::new();
    if fl.paused {
        let text = match &fl.paused_until {
            Some(until) => format!("PAUSED until {}", short_time(until)),
            None => "PAUSED".to_string(),
        };
        flags.push(text);
    }
    if fl.nokill {
        flags.push("nokill".to_string());
    }
    if fl.failover_triggered {
        flags.push("failover triggered".to_string());
    }
    if flags.is_empty() {
        push(&mut out, "flags     none");
    } else {
        let plain = fit(&flags.join(", "), COLUMNS - 10);
        // Paint "PAUSED…" (always first when present) only after fitting.
        let painted = if fl.paused && color {
            let end = plain.find(',').unwrap_or(plain.len());
            format!("{}{}", paint(&plain[..end], YELLOW), &plain[end..])
        } else {
            plain
        };
        let _ = writeln!(out, "flags     {painted}");
    }

    if snapshot.incidents.is_empty() {
        push(&mut out, "incidents none");
    } else {
        push(&mut out, "incidents (newest last)");
        let skip = snapshot.incidents.len().saturating_sub(MAX_INCIDENTS);
        for incident in snapshot.incidents.iter().skip(skip) {
            push(
                &mut out,
                &format!(
                    "  {} {} {} -> {}",
                    short_time(&incident.detected_at),
                    incident.kind,
                    incident.id,
                    incident.outcome
                ),
            );
            if let Some(diag) = &incident.diagnostics {
                push(&mut out, &format!("      diagnostics {diag}"));
            }
        }
    }
    out
}

fn push(out: &mut String, line: &str) {
    out.push_str(&fit(line, COLUMNS));
    out.push('\n');
}

/// Cut `text` to `width` characters, marking the cut with `~`.
/// `text` in lines of at most `width` characters, broken at spaces (a longer word is
/// cut).
fn wrap_words(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let needed = line.chars().count() + usize::from(!line.is_empty()) + word.chars().count();
        if !line.is_empty() && needed > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
        while line.chars().count() > width {
            let head: String = line.chars().take(width).collect();
            line = line.chars().skip(width).collect();
            lines.push(head);
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('~');
    cut
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

/// `45s`, `3m 12s`, `2h 5m`, `3d 4h`.
pub fn human_secs(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        if s > 0 {
            format!("{m}m {s}s")
        } else {
            format!("{m}m")
        }
    } else {
        format!("{s}s")
    }
}

/// Binary units, one decimal: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
