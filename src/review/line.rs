//! Recognising one log line: the `YYYY/MM/DD HH:MM:SS [<Component>: ]<text>` shape and the
//! texts of the log format (the reference's own lines and the ones qoscntrlr adds) that
//! matter for review. Works on bytes: most lines are probe results and must stay cheap.

use super::stamp::Stamp;
use crate::core::wording::{self, Class, Mark, Wording, MAX_ARGS};
use crate::core::Component;

/// What a detection line says went wrong: its class (what the summary counts) and the
/// kind, the same word `status` shows for the incident (`exhausted-memory`, `rule-leak`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected<'a> {
    /// A line of the wording table (its variable parts name the resource or rule).
    Line(&'static Wording, [&'a [u8]; MAX_ARGS]),
    /// A kind with no variable part (the server's own `OpMsg=CRASH`, `TIMEOUT`).
    Fixed(&'static str),
    /// `OpMsg=EXHAUSTED Type=<resource>`: the controller's `out-of-<resource>`.
    OutOf(&'a [u8]),
}

impl Detected<'_> {
    /// The incident kind, as `status` names it.
    pub fn kind(&self) -> String {
        match self {
            Detected::Line(w, args) => w.kind_of(args).unwrap_or_default(),
            Detected::Fixed(kind) => (*kind).to_string(),
            Detected::OutOf(resource) => {
                format!(
                    "out-of-{}",
                    wording::slugify(&String::from_utf8_lossy(resource))
                )
            }
        }
    }
}

/// The meaning of one recognised line. Lines of the right shape whose text plays no part
/// in review (configuration header, long-running application list, …) are `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEvent<'a> {
    ControllerStart,
    /// `OpMsg=START Type=QOS|SERVER`.
    ServerStart,
    /// `OpMsg=READY Type=SERVER`, `Server is ready to process requests`.
    Ready,
    /// `QoS Probe: SUCCESS (156ms)`; the latency when the line carries one.
    ProbeSuccess(Option<u64>),
    ProbeError,
    /// A line that reports a problem the controller acts on.
    Detect(Class, Detected<'a>),
    /// `Server exit: …` after a crash line.
    CrashExit,
    Failover,
    DiagnosticsStart,
    /// `Diagnostics written to <path>`.
    DiagnosticsWritten(&'a [u8]),
    Kill,
    KillComplete,
    Restart,
    RestartLimit,
    Paused,
    Resumed,
    /// A pause holds the kill back.
    Suppressed,
    /// The kill a pause held back is carried out now.
    Resuming,
    /// The condition cleared by itself; no kill needed.
    Cleared,
    /// READY and probing well again (`Server has recovered; …`).
    InService,
    /// `Command <cmd> from uid N`: the command word.
    Command(&'a [u8]),
    State,
    /// `OpMsg=END Type=SERVER`: the server is shutting down.
    StopRequested,
    /// `OpMsg=END Type=QOS`, `Server ended (exit code N)`.
    ServerEnded,
    Other,
}

/// A line of the right shape: its stamp, the text after the stamp (component included)
/// and what it means.
#[derive(Debug, Clone, Copy)]
pub struct Parsed<'a> {
    pub stamp: Stamp,
    pub text: &'a [u8],
    pub event: LineEvent<'a>,
}

/// Parse one line (without its newline). `None` when it lacks the timestamp shape.
pub fn parse(line: &[u8]) -> Option<Parsed<'_>> {
    let stamp = Stamp::parse_log(line.get(..19)?)?;
    let text = match line.get(19) {
        None => &[][..],
        Some(b' ') => &line[20..],
        Some(_) => return None,
    };
    Some(Parsed {
        stamp,
        text,
        event: classify(text),
    })
}

/// The component of the text after the stamp, and the rest.
fn component(text: &[u8]) -> (Component, &[u8]) {
    for c in [
        Component::Probe,
        Component::Controller,
        Component::Kill,
        Component::Applications,
    ] {
        if let Some(label) = c.label() {
            if let Some(rest) = text
                .strip_prefix(label.as_bytes())
                .and_then(|r| r.strip_prefix(b": "))
            {
                return (c, rest);
            }
        }
    }
    (Component::Bare, text)
}

/// Classify the text after the timestamp.
pub fn classify(text: &[u8]) -> LineEvent<'_> {
    let (component, rest) = component(text);
    // Probe results first: they are the bulk of every log.
    if component == Component::Probe {
        if let Some(after) = rest.strip_prefix(b"SUCCESS") {
            return LineEvent::ProbeSuccess(latency_ms(after));
        }
    }
    if component == Component::Controller {
        if let Some((op, kind)) = opmsg(rest) {
            return classify_opmsg(op, kind);
        }
    }
    match wording::recognise(component, rest) {
        Some((entry, args)) => event_of(entry, args),
        None => LineEvent::Other,
    }
}

fn event_of<'a>(entry: &'static Wording, args: [&'a [u8]; MAX_ARGS]) -> LineEvent<'a> {
    match entry.mark {
        Mark::ControllerStart => LineEvent::ControllerStart,
        Mark::ServerStart => LineEvent::ServerStart,
        Mark::Ready => LineEvent::Ready,
        Mark::ProbeSuccess => LineEvent::ProbeSuccess(None),
        Mark::ProbeError => LineEvent::ProbeError,
        Mark::Detect(class) => LineEvent::Detect(class, Detected::Line(entry, args)),
        Mark::CrashExit => LineEvent::CrashExit,
        Mark::Failover => LineEvent::Failover,
        Mark::DiagnosticsStart => LineEvent::DiagnosticsStart,
        Mark::DiagnosticsWritten => LineEvent::DiagnosticsWritten(args[0]),
        Mark::Kill => LineEvent::Kill,
        Mark::KillComplete => LineEvent::KillComplete,
        Mark::Restart => LineEvent::Restart,
        Mark::RestartLimit => LineEvent::RestartLimit,
        Mark::Paused => LineEvent::Paused,
        Mark::Resumed => LineEvent::Resumed,
        Mark::Suppressed => LineEvent::Suppressed,
        Mark::Resuming => LineEvent::Resuming,
        Mark::Cleared => LineEvent::Cleared,
        Mark::InService => LineEvent::InService,
        Mark::Command => LineEvent::Command(args[0]),
        Mark::State => LineEvent::State,
        Mark::ServerEnded => LineEvent::ServerEnded,
        Mark::Plain => LineEvent::Other,
    }
}

/// `(156ms)`, `(1.5s)` or `(2s)` after SUCCESS, in whole milliseconds.
fn latency_ms(after: &[u8]) -> Option<u64> {
    let open = after.iter().position(|&b| b == b'(')?;
    let inner = &after[open + 1..];
    let close = inner.iter().position(|&b| b == b')')?;
    let inner = &inner[..close];
    let (number, scale) = if let Some(n) = inner.strip_suffix(b"ms") {
        (n, 1.0)
    } else if let Some(n) = inner.strip_suffix(b"s") {
        (n, 1000.0)
    } else {
        return None;
    };
    if number.iter().all(u8::is_ascii_digit) && !number.is_empty() && number.len() < 16 {
        let mut value = 0u64;
        for &b in number {
            value = value * 10 + u64::from(b - b'0');
        }
        return Some(if scale == 1.0 { value } else { value * 1000 });
    }
    let value: f64 = std::str::from_utf8(number).ok()?.trim().parse().ok()?;
    (value.is_finite() && value >= 0.0).then(|| (value * scale).round() as u64)
}

/// The `OpMsg=<OP> Type=<TYPE>` head of a server message line.
fn opmsg(rest: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = rest.strip_prefix(b"OpMsg=")?;
    let op_end = rest
        .iter()
        .position(|&b| b == b' ' || b == b',')
        .unwrap_or(rest.len());
    let op = &rest[..op_end];
    let after = &rest[op_end..];
    let after = after.strip_prefix(b",").unwrap_or(after);
    let after = after.strip_prefix(b" ").unwrap_or(after);
    let kind = match after.strip_prefix(b"Type=") {
        Some(t) => &t[..t.iter().position(|&b| b == b' ').unwrap_or(t.len())],
        None => &[][..],
    };
    Some((op, kind))
}

/// Server messages (the message protocol's words, logged as received or written by the
/// controller in the server's name).
fn classify_opmsg<'a>(op: &[u8], kind: &'a [u8]) -> LineEvent<'a> {
    match (op, kind) {
        (b"START", b"QOS" | b"SERVER") => LineEvent::ServerStart,
        (b"READY", b"SERVER") => LineEvent::Ready,
        (b"CRASH", _) => LineEvent::Detect(Class::Crash, Detected::Fixed("crash")),
        (b"TIMEOUT", b"PROBE") => {
            LineEvent::Detect(Class::ProbeTimeout, Detected::Fixed("probe-timeout"))
        }
        (b"EXHAUSTED", _) => LineEvent::Detect(Class::Exhausted, Detected::OutOf(kind)),
        (b"END", b"SERVER") => LineEvent::StopRequested,
        (b"END", b"QOS") => LineEvent::ServerEnded,
        _ => LineEvent::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The event in words: `Detect <class> <kind>` for detections, the variant's name
    /// (with its text) otherwise.
    fn event(line: &str) -> String {
        let event = parse(line.as_bytes())
            .map(|p| p.event)
            .expect("line has the timestamp shape");
        match event {
            LineEvent::Detect(class, d) => format!("Detect {} {}", class.as_str(), d.kind()),
            LineEvent::DiagnosticsWritten(t) => {
                format!("DiagnosticsWritten {}", String::from_utf8_lossy(t))
            }
            LineEvent::Command(t) => format!("Command {}", String::from_utf8_lossy(t)),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn reference_lines() {
        let cases: &[(&str, &str)] = &[
            ("2012/05/08 00:15:09 QoS Controller: OpMsg=START Type=QOS ObjectType=ServerName ObjectValue=CN=rc45/O=dev ObjectType2=ProcessName ObjectValue2=nserver TimeDate=20120508T001506,95-04", "ServerStart"),
            ("2012/05/08 00:15:09 QoS Controller: OpMsg=START Type=SERVER TimeDate=20120508T001507,40-04", "ServerStart"),
            ("2012/05/08 00:15:21 QoS Controller: OpMsg=READY Type=SERVER TimeDate=20120508T001517,92-04", "Ready"),
            ("2012/05/08 00:15:21 QoS Controller: Server is ready to process requests", "Ready"),
            ("2012/05/08 00:16:25 QoS Probe: SUCCESS (156ms)", "ProbeSuccess(Some(156))"),
            ("2012/05/08 00:16:25 QoS Probe: SUCCESS (1.5s)", "ProbeSuccess(Some(1500))"),
            ("2012/05/08 00:16:25 QoS Probe: SUCCESS", "ProbeSuccess(None)"),
            ("2012/05/08 00:16:25 QoS Probe: ERROR: ProbeError=4803", "ProbeError"),
            ("2012/05/08 00:15:25 QoS Probe: OpMsg=START, Type=PROBE", "Other"),
            ("2012/05/08 00:37:41 The probe thread has not received a message from qosprobe within the timeout period.", "Detect probe-timeout probe-timeout"),
            ("2012/05/08 00:37:41 QoS Probe: The qosprobe addin has timed out, is not responding, or is not running.", "Detect probe-timeout probe-timeout"),
            ("2012/05/08 00:37:43 QoS Controller: OpMsg=TIMEOUT Type=PROBE TimeDate=null", "Detect probe-timeout probe-timeout"),
            ("2012/05/08 00:37:43 QoS Controller: The controller has received a probe timeout.", "Detect probe-timeout probe-timeout"),
            ("2012/05/08 00:37:43 QoS Kill: Triggering failover...", "Failover"),
            ("2012/05/08 00:37:47 QoS Kill: Running nsd...", "DiagnosticsStart"),
            ("2012/05/08 00:38:12 QoS Kill: Running nsd -kill", "Kill"),
            ("2012/05/08 00:38:16 QoS Kill: Setting kill complete.", "KillComplete"),
            ("2012/05/08 00:38:21 QoS Kill: Restarting DominoStarter thread", "Restart"),
            ("2012/05/08 01:00:44 QoS Controller: OpMsg=CRASH Type=QOS ObjectType=ServerName ObjectValue=CN=rc45/O=dev TimeDate=20120508T010039,48-04", "Detect crash crash"),
            ("2012/05/08 01:00:44 QoS Controller: Server CN=rc45/O=dev has crashed.", "Detect crash crash"),
            ("2012/05/08 00:45:22 QoS Controller: OpMsg=END Type=SERVER ObjectType=Detail ObjectValue=Quit TimeDate=20120508T004516,01-04", "StopRequested"),
            ("2012/05/08 00:45:26 QoS Controller: OpMsg=END Type=QOS ObjectType=ServerName ObjectValue=CN=rc45/O=dev TimeDate=20120508T004523,51-04", "ServerEnded"),
            ("2012/05/08 00:38:32 QoS Controller: OpMsg=START Type=FIXUP ObjectType=DB ObjectValue=C:\\Program Files\\HCL\\Domino\\Data\\ddm.nsf TimeDate=20120508T003826,18-04", "Other"),
            ("2012/08/06 06:33:34 QoS Controller: Starting QOSPipeWatcher", "ControllerStart"),
            ("2012/08/06 06:33:34 QoS Controller: QOS_PROBE_TIMEOUT=5 minutes", "Other"),
        ];
        for (line, expected) in cases {
            assert_eq!(event(line), *expected, "{line}");
        }
    }

    #[test]
    fn controller_lines() {
        let cases: &[(&str, &str)] = &[
            ("2024/01/02 03:04:05 QoS Controller: Server exit: killed by SIGABRT (core dumped)", "CrashExit"),
            ("2024/01/02 03:04:05 QoS Controller: Restart limit reached: 3 restarts within 30 minutes; server left down (FAULTED)", "RestartLimit"),
            ("2024/01/02 03:04:05 QoS Controller: Server is out of SHARED_HANDLES", "Detect exhausted out-of-shared-handles"),
            ("2024/01/02 03:04:05 QoS Controller: Server has exhausted memory (2048 MB > 1024 MB)", "Detect exhausted exhausted-memory"),
            ("2024/01/02 03:04:05 QoS Controller: Server has exhausted memory pressure (72.5% > 60%)", "Detect exhausted exhausted-memory-pressure"),
            ("2024/01/02 03:04:05 QoS Controller: The kernel's OOM killer killed 1 process(es) in the server's cgroup (memory.events oom_kill=1)", "Detect oom-kill oom-kill"),
            ("2024/01/02 03:04:05 QoS Controller: OpMsg=EXHAUSTED Type=SESSION_TABLES", "Detect exhausted out-of-session-tables"),
            ("2024/01/02 03:04:05 QoS Applications: Application COMPACT[mail.nsf] has made no progress for 600 seconds", "Detect app-timeout app-timeout"),
            ("2024/01/02 03:04:05 QoS Kill: Diagnostics written to /data/diagnostics/nsd_1.log", "DiagnosticsWritten /data/diagnostics/nsd_1.log"),
            ("2024/01/02 03:04:05 QoS Controller: Paused by uid 0", "Paused"),
            ("2024/01/02 03:04:05 QoS Controller: Resumed by uid 1000", "Resumed"),
            ("2024/01/02 03:04:05 QoS Controller: Command restart from uid 0", "Command restart"),
            ("2024/01/02 03:04:05 QoS Controller: State READY -> KILLING (probe timeout)", "State"),
            ("2024/01/02 03:04:05 QoS Kill: Starting server", "ServerStart"),
            ("2024/01/02 03:04:05 QoS Controller: Server ended (exit code 0)", "ServerEnded"),
        ];
        for (line, expected) in cases {
            assert_eq!(event(line), *expected, "{line}");
        }
    }

    #[test]
    fn shapes() {
        assert!(parse(b"garbage").is_none());
        assert!(parse(b"2012/05/08 00:3").is_none());
        assert!(parse(b"2012/05/08 00:37:41X").is_none());
        assert_eq!(
            parse(b"2012/05/08 00:37:41").map(|p| p.event),
            Some(LineEvent::Other)
        );
    }
}
