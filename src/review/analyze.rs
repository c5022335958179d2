//! The review state machine: fed one line at a time (in file order), it keeps counts,
//! probe statistics and the incidents — memory bounded by the number of incidents — and
//! emits timeline entries as it goes. No I/O.

use serde::Serialize;

use super::line::{self, Detected, LineEvent};
use super::stamp::{human_secs, Stamp};
use super::stats::{LatencyHistogram, LatencySeries, SeriesPoint};
use crate::core::wording::Class;

/// Raw lines kept per incident (`incidents[].lines`).
pub const INCIDENT_LINES: usize = 40;

/// What to look at and what to keep.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub since: Option<Stamp>,
    pub until: Option<Stamp>,
    /// Keep latency over time (the HTML report's chart).
    pub keep_series: bool,
    /// Collect timeline entries (`Analyzer::drain_timeline`).
    pub keep_timeline: bool,
}

/// A kind of timeline entry; the names are the `--event` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    Crash,
    ProbeTimeout,
    AppTimeout,
    Exhausted,
    Kill,
    Diagnostics,
    Restart,
    RestartLimit,
    Pause,
    Start,
    Ready,
    Stop,
    State,
    Command,
    OomKill,
}

impl EventKind {
    pub const ALL: [EventKind; 15] = [
        EventKind::Crash,
        EventKind::ProbeTimeout,
        EventKind::AppTimeout,
        EventKind::Exhausted,
        EventKind::Kill,
        EventKind::Diagnostics,
        EventKind::Restart,
        EventKind::RestartLimit,
        EventKind::Pause,
        EventKind::Start,
        EventKind::Ready,
        EventKind::Stop,
        EventKind::State,
        EventKind::Command,
        EventKind::OomKill,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Crash => "crash",
            EventKind::ProbeTimeout => "probe-timeout",
            EventKind::AppTimeout => "app-timeout",
            EventKind::Exhausted => "exhausted",
            EventKind::Kill => "kill",
            EventKind::Diagnostics => "diagnostics",
            EventKind::Restart => "restart",
            EventKind::RestartLimit => "restart-limit",
            EventKind::Pause => "pause",
            EventKind::Start => "start",
            EventKind::Ready => "ready",
            EventKind::Stop => "stop",
            EventKind::State => "state",
            EventKind::Command => "command",
            EventKind::OomKill => "oom-kill",
        }
    }

    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    fn of_incident(class: Class) -> EventKind {
        match class {
            Class::Crash => EventKind::Crash,
            Class::ProbeTimeout => EventKind::ProbeTimeout,
            Class::AppTimeout => EventKind::AppTimeout,
            Class::Exhausted => EventKind::Exhausted,
            Class::RestartTimeout | Class::ShutdownTimeout | Class::Rule | Class::Kill => {
                EventKind::Kill
            }
            Class::OomKill => EventKind::OomKill,
        }
    }
}

/// One line of `logs timeline`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    pub at: Stamp,
    pub kind: EventKind,
    /// 1-based number of the incident this belongs to.
    pub incident: Option<usize>,
    /// The log text (component included), sometimes with a note appended.
    pub text: String,
}

impl std::fmt::Display for TimelineEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:<13} ", self.at, self.kind.as_str())?;
        if let Some(n) = self.incident {
            write!(f, "[#{n}] ")?;
        }
        f.write_str(&self.text)
    }
}

/// `counts` of the JSON summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub starts: u64,
    pub readys: u64,
    pub crashes: u64,
    pub probe_timeouts: u64,
    pub app_timeouts: u64,
    pub exhaustions: u64,
    pub kills: u64,
    pub restarts: u64,
    pub restart_limit_hits: u64,
    pub pauses: u64,
    /// OOM kills inside the server's cgroup (an incident of its own even when the server
    /// survives it).
    pub oom_kills: u64,
}

/// How an incident ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The server was READY again.
    Ready,
    /// No kill happened and the condition cleared by itself (the probe answers again,
    /// the resource is back under its limit; `QOS_NOKILL`, or a pause that held it back).
    Recovered,
    /// A pause held the kill back and the condition had not cleared when the incident
    /// ended (the next one began, the logs end): neither killed nor recovered.
    Suppressed,
    /// Nothing to recover from (an OOM kill inside the server's cgroup: the server may
    /// well have coped; if it died, its crash is the next incident).
    Reported,
    /// The next incident began before the server was READY again (e.g. a crash loop).
    Superseded,
    /// The restart limit was reached; the server was left down.
    Faulted,
    /// Still down when the logs end.
    Open,
}

/// One incident: from detection to READY again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incident {
    /// 1-based, in the order detected.
    pub id: usize,
    /// The incident's kind, the same word `status` shows: `probe-timeout`, `crash`,
    /// `app-timeout`, `exhausted-memory`, `out-of-shared-handles`, `restart-timeout`,
    /// `shutdown-timeout`, `operator-kill`, `rule-<name>`, `oom-kill`; `kill` for a kill
    /// without a detection before it.
    pub kind: String,
    /// What the summary counts it as.
    pub class: Class,
    /// The first detection line's text.
    pub reason: String,
    /// The decision: the first line that reports the problem.
    pub detected_at: Stamp,
    /// The last successful probe before the decision (none since the previous incident:
    /// `None`).
    pub last_good_probe_at: Option<Stamp>,
    /// From the last good probe to the decision: how long the problem went unnoticed
    /// (for a probe timeout, about QOS_PROBE_TIMEOUT).
    pub detection_lag_secs: Option<i64>,
    pub failover_at: Option<Stamp>,
    pub diagnostics_at: Option<Stamp>,
    pub diagnostics_secs: Option<i64>,
    pub killed_at: Option<Stamp>,
    pub ready_again_at: Option<Stamp>,
    /// READY and probing well again (or the condition cleared without a kill).
    pub in_service_at: Option<Stamp>,
    /// From the decision to READY and probing well.
    pub out_of_service_secs: Option<i64>,
    /// From the decision to READY again (or to the next incident when one superseded it,
    /// or to the recovery without a kill).
    pub downtime_secs: Option<i64>,
    pub diagnostics_file: Option<String>,
    pub restart_limit_hit: bool,
    pub outcome: Outcome,
    /// The first `INCIDENT_LINES` raw lines from detection on.
    pub lines: Vec<String>,
    /// How many lines the incident spans in all.
    pub line_count: u64,
    /// The log file the incident was detected in.
    pub file: String,
    #[serde(skip)]
    kill_started_at: Option<Stamp>,
    #[serde(skip)]
    restarted: bool,
    /// A pause holds the kill back.
    #[serde(skip)]
    suppressed: bool,
}

impl serde::Serialize for Stamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.iso())
    }
}

/// Probe statistics.
#[derive(Debug, Clone, Default)]
pub struct ProbeStats {
    pub successes: u64,
    pub errors: u64,
    pub latency: LatencyHistogram,
}

/// Why the previous server process went down, for telling restarts from plain starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LastDown {
    None,
    Requested,
    RestartRequested,
    Abnormal,
}

/// Everything gathered: feeds `render` and `html`.
#[derive(Debug, Clone)]
pub struct Review {
    pub from: Option<Stamp>,
    pub to: Option<Stamp>,
    pub files: Vec<String>,
    pub lines: u64,
    pub unknown_lines: u64,
    pub counts: Counts,
    pub probe: ProbeStats,
    pub incidents: Vec<Incident>,
    pub restart_limit_hits: Vec<Stamp>,
    pub series: Vec<SeriesPoint>,
    /// The usage history next to the logs (filled by `review_paths`).
    pub usage: super::usage::UsageStats,
}

/// The streaming analyzer. Call `begin_file` per file, `feed` per line, then `finish`.
#[derive(Debug)]
pub struct Analyzer {
    opts: Options,
    review: Review,
    open: Option<Incident>,
    series: Option<LatencySeries>,
    timeline: Vec<TimelineEntry>,
    current_file: String,
    in_window: bool,
    server_started: bool,
    server_ready: bool,
    run_had_start: bool,
    restart_announced: bool,
    restart_requested: bool,
    last_down: LastDown,
    /// The last successful probe not yet charged to an incident.
    last_success: Option<Stamp>,
    /// A probe succeeded since the current server process started.
    success_since_start: bool,
    /// The controller is paused (operator `pause`): kills are held back.
    paused: bool,
}

impl Analyzer {
    pub fn new(opts: Options) -> Self {
        let series = opts.keep_series.then(|| LatencySeries::new(300));
        Analyzer {
            in_window: opts.since.is_none(),
            opts,
            review: Review {
                from: None,
                to: None,
                files: Vec::new(),
                lines: 0,
                unknown_lines: 0,
                counts: Counts::default(),
                probe: ProbeStats::default(),
                incidents: Vec::new(),
                restart_limit_hits: Vec::new(),
                series: Vec::new(),
                usage: Default::default(),
            },
            open: None,
            series,
            timeline: Vec::new(),
            current_file: String::new(),
            server_started: false,
            server_ready: false,
            run_had_start: false,
            restart_announced: false,
            restart_requested: false,
            last_down: LastDown::None,
            last_success: None,
            success_since_start: false,
            paused: false,
        }
    }

    pub fn begin_file(&mut self, name: &str) {
        self.current_file = name.to_string();
        self.review.files.push(name.to_string());
    }

    /// Timeline entries produced so far (empty unless `keep_timeline`).
    pub fn drain_timeline(&mut self) -> std::vec::Drain<'_, TimelineEntry> {
        self.timeline.drain(..)
    }

    fn emit(&mut self, at: Stamp, kind: EventKind, incident: Option<usize>, text: String) {
        if self.opts.keep_timeline {
            self.timeline.push(TimelineEntry {
                at,
                kind,
                incident,
                text,
            });
        }
    }

    /// Feed one line (newline and carriage return already stripped or not).
    pub fn feed(&mut self, raw: &[u8]) {
        let line = raw.strip_suffix(b"\n").unwrap_or(raw);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let Some(parsed) = line::parse(line) else {
            if self.in_window {
                self.review.lines += 1;
                self.review.unknown_lines += 1;
            }
            return;
        };
        let at = parsed.stamp;
        self.in_window =
            self.opts.since.map_or(true, |s| at >= s) && self.opts.until.map_or(true, |u| at <= u);
        if !self.in_window {
            return;
        }
        self.review.lines += 1;
        self.review.from = Some(self.review.from.map_or(at, |f| f.min(at)));
        self.review.to = Some(self.review.to.map_or(at, |t| t.max(at)));

        if let LineEvent::ProbeSuccess(latency) = parsed.event {
            // The hot path: keep it free of allocation unless an incident is open.
            self.review.probe.successes += 1;
            if let Some(ms) = latency {
                self.review.probe.latency.record(ms);
            }
            if let Some(series) = &mut self.series {
                series.record(at.0, latency);
            }
            self.last_success = Some(at);
            self.success_since_start = true;
            if let Some(incident) = &mut self.open {
                record_line(incident, line);
                // A success stamped before the detection is a clock jump, not a recovery.
                if at >= incident.detected_at {
                    if incident.ready_again_at.is_some() {
                        // READY earlier, probing well now: back in service.
                        self.close(at, Outcome::Ready);
                    } else if incident.class == Class::ProbeTimeout
                        && !incident.suppressed
                        && !incident.killing()
                    {
                        // The probe answering again is what ends a probe timeout that was
                        // not acted on. Nothing else is cleared by a probe: an exhausted
                        // server or a stalled application can answer probes.
                        self.close(at, Outcome::Recovered);
                    }
                }
            }
            return;
        }

        let text = String::from_utf8_lossy(parsed.text).into_owned();
        if let Some(incident) = &mut self.open {
            record_line(incident, line);
        }
        self.handle(at, parsed.event, text, line);
    }

    fn handle(&mut self, at: Stamp, event: LineEvent<'_>, text: String, line: &[u8]) {
        let open_id = self.open.as_ref().map(|i| i.id);
        match event {
            LineEvent::ProbeSuccess(_) => {}
            LineEvent::ProbeError => {
                self.review.probe.errors += 1;
                if let Some(series) = &mut self.series {
                    series.record_error(at.0);
                }
            }
            LineEvent::ControllerStart => {
                self.paused = false;
                self.server_started = false;
                self.server_ready = false;
                self.run_had_start = false;
                self.restart_announced = false;
                self.restart_requested = false;
                self.last_down = LastDown::None;
                self.emit(
                    at,
                    EventKind::Start,
                    open_id,
                    format!("{text} (controller started)"),
                );
            }
            LineEvent::ServerStart => {
                if self.server_started {
                    return;
                }
                self.server_started = true;
                self.server_ready = false;
                self.success_since_start = false;
                self.review.counts.starts += 1;
                let is_restart = if self.restart_announced {
                    false
                } else {
                    self.run_had_start
                        && matches!(
                            self.last_down,
                            LastDown::Abnormal | LastDown::RestartRequested
                        )
                };
                if is_restart {
                    self.review.counts.restarts += 1;
                }
                self.restart_announced = false;
                self.restart_requested = false;
                self.run_had_start = true;
                self.last_down = LastDown::None;
                if let Some(incident) = &mut self.open {
                    incident.restarted = true;
                }
                let kind = if is_restart {
                    EventKind::Restart
                } else {
                    EventKind::Start
                };
                self.emit(at, kind, open_id, text);
            }
            LineEvent::Ready => {
                if self.server_ready {
                    return;
                }
                self.server_ready = true;
                self.server_started = true;
                self.review.counts.readys += 1;
                let note = match &self.open {
                    Some(incident) => format!(
                        "{text} (ready again {} after {} was detected)",
                        human_secs(at.0 - incident.detected_at.0),
                        incident.kind
                    ),
                    None => text,
                };
                self.emit(at, EventKind::Ready, open_id, note);
                let probing_well = self.success_since_start;
                if let Some(incident) = &mut self.open {
                    incident.ready_again_at = Some(at);
                    // A server that does not speak is READY through a successful probe
                    // (logged just before): it is probing well already. Otherwise the
                    // next successful probe brings it back in service.
                    if probing_well {
                        self.close(at, Outcome::Ready);
                    }
                }
            }
            LineEvent::InService => {
                if let Some(incident) = &self.open {
                    if incident.ready_again_at.is_some() {
                        self.close(at, Outcome::Ready);
                    } else if !incident.killing() && !incident.restarted {
                        self.close(at, Outcome::Recovered);
                    }
                }
            }
            LineEvent::Cleared => {
                if let Some(incident) = &mut self.open {
                    if !incident.killing() && !incident.restarted {
                        incident.suppressed = false;
                        self.close(at, Outcome::Recovered);
                    }
                }
            }
            LineEvent::Suppressed => {
                if let Some(incident) = &mut self.open {
                    incident.suppressed = true;
                }
            }
            LineEvent::Resuming => {
                if let Some(incident) = &mut self.open {
                    incident.suppressed = false;
                }
            }
            LineEvent::Detect(Class::OomKill, detected) => {
                self.review.counts.oom_kills += 1;
                self.report(at, &detected, text, line);
            }
            LineEvent::Detect(class, detected) => self.detect(at, class, &detected, text, line),
            LineEvent::CrashExit => {
                self.mark_down(LastDown::Abnormal);
                self.emit(at, EventKind::Crash, open_id, text);
            }
            LineEvent::Failover => {
                let id = self.ensure_incident(at, &text, line);
                if let Some(incident) = &mut self.open {
                    incident.failover_at.get_or_insert(at);
                }
                self.emit(at, EventKind::Kill, Some(id), text);
            }
            LineEvent::DiagnosticsStart => {
                // Once the server is READY again (the incident waits for a good probe),
                // a new diagnostics run is the operator's, not the incident's.
                let (kind, id) = match &mut self.open {
                    Some(incident) if incident.ready_again_at.is_none() => {
                        incident.diagnostics_at.get_or_insert(at);
                        (EventKind::Kill, open_id)
                    }
                    _ => (EventKind::Diagnostics, None),
                };
                self.emit(at, kind, id, text);
            }
            LineEvent::DiagnosticsWritten(path) => {
                let file = String::from_utf8_lossy(path).trim().to_string();
                let (kind, id) = match &mut self.open {
                    // The incident's own run (a post-mortem may finish after READY).
                    Some(incident)
                        if incident.ready_again_at.is_none()
                            || (incident.diagnostics_file.is_none()
                                && incident
                                    .diagnostics_at
                                    .is_some_and(|d| Some(d) <= incident.ready_again_at)) =>
                    {
                        end_diagnostics(incident, at);
                        incident.diagnostics_file = Some(file);
                        (EventKind::Kill, open_id)
                    }
                    Some(_) => (EventKind::Diagnostics, None),
                    None => match self.review.incidents.last_mut() {
                        // A crashed server is restarted without waiting for its
                        // post-mortem, so the file's line can come after the incident
                        // ended (READY again): it still belongs to that crash.
                        Some(last)
                            if last.class == Class::Crash
                                && last.diagnostics_at.is_some()
                                && last.diagnostics_file.is_none()
                                && file
                                    .rsplit('/')
                                    .next()
                                    .is_some_and(|n| n.contains("_crash")) =>
                        {
                            last.diagnostics_file = Some(file);
                            (EventKind::Kill, Some(last.id))
                        }
                        _ => (EventKind::Diagnostics, None),
                    },
                };
                self.emit(at, kind, id, text);
            }
            LineEvent::Kill => {
                let id = self.ensure_incident(at, &text, line);
                if let Some(incident) = &mut self.open {
                    end_diagnostics(incident, at);
                    if incident.kill_started_at.is_none() && incident.killed_at.is_none() {
                        self.review.counts.kills += 1;
                    }
                    incident.kill_started_at.get_or_insert(at);
                }
                self.mark_down(LastDown::Abnormal);
                self.emit(at, EventKind::Kill, Some(id), text);
            }
            LineEvent::KillComplete => {
                let id = self.ensure_incident(at, &text, line);
                if let Some(incident) = &mut self.open {
                    end_diagnostics(incident, at);
                    if incident.kill_started_at.is_none() && incident.killed_at.is_none() {
                        self.review.counts.kills += 1;
                    }
                    incident.killed_at.get_or_insert(at);
                }
                self.mark_down(LastDown::Abnormal);
                self.emit(at, EventKind::Kill, Some(id), text);
            }
            LineEvent::Restart => {
                self.review.counts.restarts += 1;
                self.restart_announced = true;
                if let Some(incident) = &mut self.open {
                    end_diagnostics(incident, at);
                    incident.restarted = true;
                }
                self.emit(at, EventKind::Restart, open_id, text);
            }
            LineEvent::RestartLimit => {
                self.review.counts.restart_limit_hits += 1;
                self.review.restart_limit_hits.push(at);
                if let Some(incident) = &mut self.open {
                    incident.restart_limit_hit = true;
                }
                self.emit(at, EventKind::RestartLimit, open_id, text);
            }
            LineEvent::Paused => {
                self.paused = true;
                self.review.counts.pauses += 1;
                self.emit(at, EventKind::Pause, open_id, text);
            }
            LineEvent::Resumed => {
                self.paused = false;
                self.emit(at, EventKind::Pause, open_id, text);
            }
            LineEvent::Command(word) => {
                match word {
                    b"restart" => self.restart_requested = true,
                    b"kill" => {
                        // The controller's own kind for an operator's kill.
                        // It supersedes an incident that is over or that a pause held
                        // back (the controller opens a new one for it too).
                        let superseded = self
                            .open
                            .as_ref()
                            .map_or(true, |i| i.restarted || (i.suppressed && !i.killing()));
                        if superseded {
                            if self.open.is_some() {
                                self.close(at, Outcome::Superseded);
                            }
                            self.open_incident(
                                at,
                                Class::Kill,
                                "operator-kill".into(),
                                &text,
                                line,
                            );
                        }
                    }
                    _ => {}
                }
                let id = self.open.as_ref().map(|i| i.id);
                self.emit(at, EventKind::Command, id, text);
            }
            LineEvent::State => self.emit(at, EventKind::State, open_id, text),
            LineEvent::StopRequested => self.emit(at, EventKind::Stop, open_id, text),
            LineEvent::ServerEnded => {
                let why = if self.restart_requested {
                    LastDown::RestartRequested
                } else {
                    LastDown::Requested
                };
                if self.last_down == LastDown::None {
                    self.mark_down(why);
                } else {
                    self.server_started = false;
                    self.server_ready = false;
                }
                self.emit(at, EventKind::Stop, open_id, text);
            }
            LineEvent::Other => {}
        }
    }

    fn mark_down(&mut self, why: LastDown) {
        self.server_started = false;
        self.server_ready = false;
        self.last_down = why;
    }

    /// A detection line: open an incident, or add to the one still being handled.
    fn detect(
        &mut self,
        at: Stamp,
        class: Class,
        detected: &Detected<'_>,
        text: String,
        line: &[u8],
    ) {
        if class == Class::Crash {
            self.mark_down(LastDown::Abnormal);
        }
        let kind = detected.kind();
        if let Some(open) = &self.open {
            if !open.restarted && open.class == class {
                // Another line about the same problem: the reference writes four for one
                // probe timeout, two for one crash; the server's `OpMsg=EXHAUSTED` comes
                // before the controller's `Server is out of …`.
                return;
            }
            // A different problem, or the same one again after a restart: a new incident.
            self.close(at, Outcome::Superseded);
        }
        let id = self.open_incident(at, class, kind, &text, line);
        if self.paused {
            if let Some(incident) = &mut self.open {
                incident.suppressed = true;
            }
        }
        self.emit(at, EventKind::of_incident(class), Some(id), text);
    }

    /// An incident with nothing to recover from (an OOM kill): recorded as it is, the
    /// incident being handled (if any) stays open.
    fn report(&mut self, at: Stamp, detected: &Detected<'_>, text: String, line: &[u8]) {
        let open = self.open.take();
        let last_success = self.last_success;
        let id = self.open_incident(at, Class::OomKill, detected.kind(), &text, line);
        self.last_success = last_success;
        if let Some(mut incident) = self.open.take() {
            incident.outcome = Outcome::Reported;
            incident.last_good_probe_at = None;
            incident.detection_lag_secs = None;
            self.review.incidents.push(incident);
        }
        self.open = open;
        self.emit(at, EventKind::OomKill, Some(id), text);
    }

    /// The open incident's id, opening a `kill` incident when a kill step comes first.
    fn ensure_incident(&mut self, at: Stamp, text: &str, line: &[u8]) -> usize {
        match &self.open {
            Some(incident) if !incident.restarted => incident.id,
            _ => {
                if self.open.is_some() {
                    self.close(at, Outcome::Superseded);
                }
                self.open_incident(at, Class::Kill, "kill".into(), text, line)
            }
        }
    }

    fn open_incident(
        &mut self,
        at: Stamp,
        class: Class,
        kind: String,
        text: &str,
        line: &[u8],
    ) -> usize {
        let counts = &mut self.review.counts;
        match class {
            Class::Crash => counts.crashes += 1,
            Class::ProbeTimeout => counts.probe_timeouts += 1,
            Class::AppTimeout => counts.app_timeouts += 1,
            Class::Exhausted => counts.exhaustions += 1,
            Class::RestartTimeout
            | Class::ShutdownTimeout
            | Class::Rule
            | Class::Kill
            | Class::OomKill => {}
        }
        let id = self.review.incidents.len() + 1;
        // The last good probe is charged to this incident only (a crash loop's later
        // incidents had none of their own).
        let last_good = self.last_success.take().filter(|s| *s <= at);
        let mut incident = Incident {
            id,
            kind,
            class,
            reason: text.to_string(),
            detected_at: at,
            last_good_probe_at: last_good,
            detection_lag_secs: last_good.and_then(|s| elapsed(s, at)),
            failover_at: None,
            diagnostics_at: None,
            diagnostics_secs: None,
            killed_at: None,
            ready_again_at: None,
            in_service_at: None,
            out_of_service_secs: None,
            downtime_secs: None,
            diagnostics_file: None,
            restart_limit_hit: false,
            outcome: Outcome::Open,
            lines: Vec::new(),
            line_count: 0,
            file: self.current_file.clone(),
            kill_started_at: None,
            restarted: false,
            suppressed: false,
        };
        record_line(&mut incident, line);
        // Reserve the id now so a superseded incident keeps its place in the order.
        self.open = Some(incident);
        id
    }

    fn close(&mut self, at: Stamp, outcome: Outcome) {
        let Some(mut incident) = self.open.take() else {
            return;
        };
        finish_incident(&mut incident);
        if outcome == Outcome::Superseded {
            // The line that superseded it opens the next incident.
            incident.line_count = incident.line_count.saturating_sub(1);
            if incident.lines.len() as u64 > incident.line_count {
                incident.lines.pop();
            }
        }
        let outcome = match outcome {
            Outcome::Superseded if incident.suppressed && !incident.killing() => {
                Outcome::Suppressed
            }
            // READY again, but the next incident came before a successful probe: the
            // server was back, how well is unknown.
            Outcome::Superseded if incident.ready_again_at.is_some() => {
                incident.outcome = Outcome::Ready;
                incident.downtime_secs = incident
                    .ready_again_at
                    .and_then(|ready| elapsed(incident.detected_at, ready));
                self.review.incidents.push(incident);
                return;
            }
            other => other,
        };
        incident.outcome = outcome;
        match outcome {
            Outcome::Ready | Outcome::Recovered => {
                let ready = *incident.ready_again_at.get_or_insert(at);
                incident.in_service_at = Some(at);
                incident.out_of_service_secs = elapsed(incident.detected_at, at);
                incident.downtime_secs = elapsed(incident.detected_at, ready);
            }
            Outcome::Superseded | Outcome::Suppressed => {
                incident.downtime_secs = elapsed(incident.detected_at, at);
            }
            Outcome::Faulted | Outcome::Open | Outcome::Reported => {}
        }
        self.review.incidents.push(incident);
    }

    /// End of input: the open incident stays open (or faulted).
    pub fn finish(mut self) -> Review {
        if let Some(mut incident) = self.open.take() {
            finish_incident(&mut incident);
            incident.outcome = if incident.restart_limit_hit {
                Outcome::Faulted
            } else if let Some(ready) = incident.ready_again_at {
                // READY again, but no successful probe in the logs after it.
                incident.downtime_secs = elapsed(incident.detected_at, ready);
                Outcome::Ready
            } else if incident.suppressed && !incident.killing() {
                Outcome::Suppressed
            } else {
                Outcome::Open
            };
            self.review.incidents.push(incident);
        }
        // Incidents are pushed when closed; ids give the detection order.
        self.review.incidents.sort_by_key(|i| i.id);
        if let Some(series) = self.series {
            self.review.series = series.points().copied().collect();
        }
        self.review
    }
}

impl Incident {
    /// A kill (or the failover that starts one) is under way or done.
    fn killing(&self) -> bool {
        self.failover_at.is_some() || self.kill_started_at.is_some() || self.killed_at.is_some()
    }
}

fn record_line(incident: &mut Incident, line: &[u8]) {
    incident.line_count += 1;
    if incident.lines.len() < INCIDENT_LINES {
        incident
            .lines
            .push(String::from_utf8_lossy(line).into_owned());
    }
}

fn end_diagnostics(incident: &mut Incident, at: Stamp) {
    if let (Some(start), None) = (incident.diagnostics_at, incident.diagnostics_secs) {
        incident.diagnostics_secs = elapsed(start, at);
    }
}

/// Seconds from `from` to `to`; `None` when the clock went backwards between them (a
/// negative duration would be a lie, not a measurement).
fn elapsed(from: Stamp, to: Stamp) -> Option<i64> {
    (to >= from).then_some(to.0 - from.0)
}

fn finish_incident(incident: &mut Incident) {
    if incident.killed_at.is_none() {
        incident.killed_at = incident.kill_started_at;
    }
}
