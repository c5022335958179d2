//! Recognising one log line: the `YYYY/MM/DD HH:MM:SS [<Component>: ]<text>` shape and the
//! texts of the log format (the reference's own lines and the ones qoscntrlr adds) that
//! matter for review. Works on bytes: most lines are probe results and must stay cheap.

use super::stamp::Stamp;

/// What a detection line says went wrong; one incident per detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncidentKind {
    Crash,
    ProbeTimeout,
    AppTimeout,
    Exhausted,
    /// A kill with no detection before it (an operator's `kill`, or a log that starts
    /// in the middle of a smart kill).
    Kill,
}

impl IncidentKind {
    /// The stable name used in JSON, the timeline and `--event`.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::Crash => "crash",
            IncidentKind::ProbeTimeout => "probe-timeout",
            IncidentKind::AppTimeout => "app-timeout",
            IncidentKind::Exhausted => "exhausted",
            IncidentKind::Kill => "kill",
        }
    }
}

/// The meaning of one recognised line. Lines of the right shape whose text plays no part
/// in review (configuration header, long-running application list, …) are `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEvent<'a> {
    /// `Starting QOSPipeWatcher`: a controller run begins.
    ControllerStart,
    /// `OpMsg=START Type=QOS|SERVER`, `QoS Kill: Starting server`.
    ServerStart,
    /// `OpMsg=READY Type=SERVER`, `Server is ready to process requests`.
    Ready,
    /// `QoS Probe: SUCCESS (156ms)`; the latency when the line carries one.
    ProbeSuccess(Option<u64>),
    /// `QoS Probe: ERROR: …`.
    ProbeError,
    /// Any line that reports a problem the controller acts on.
    Detect(IncidentKind),
    /// `Server exit: …` after a crash line: the exit status.
    CrashExit,
    /// `QoS Kill: Triggering failover...`.
    Failover,
    /// `QoS Kill: Running nsd...`.
    DiagnosticsStart,
    /// `QoS Kill: Diagnostics written to <path>`.
    DiagnosticsWritten(&'a [u8]),
    /// `QoS Kill: Running nsd -kill`.
    Kill,
    /// `QoS Kill: Setting kill complete.`.
    KillComplete,
    /// `The kernel's OOM killer killed N process(es) in the server's cgroup`.
    OomKill,
    /// `QoS Kill: Restarting DominoStarter thread`.
    Restart,
    /// `Restart limit reached: …`.
    RestartLimit,
    /// `Paused by uid N`.
    Paused,
    /// `Resumed by uid N`.
    Resumed,
    /// `Command <cmd> from uid N`: the command word.
    Command(&'a [u8]),
    /// `State OLD -> NEW (why)`.
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

fn strip<'a>(text: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    text.strip_prefix(prefix)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Classify the text after the timestamp.
pub fn classify(text: &[u8]) -> LineEvent<'_> {
    // Probe results first: they are the bulk of every log.
    if let Some(rest) = strip(text, b"QoS Probe: ") {
        return classify_probe(rest);
    }
    if let Some(rest) = strip(text, b"QoS Controller: ") {
        return classify_controller(rest);
    }
    if let Some(rest) = strip(text, b"QoS Kill: ") {
        return classify_kill(rest);
    }
    if let Some(rest) = strip(text, b"QoS Applications: ") {
        if rest.starts_with(b"Application ") && contains(rest, b" has made no progress") {
            return LineEvent::Detect(IncidentKind::AppTimeout);
        }
        return LineEvent::Other;
    }
    if text.starts_with(b"The probe thread has not received a message from qosprobe") {
        return LineEvent::Detect(IncidentKind::ProbeTimeout);
    }
    LineEvent::Other
}

fn classify_probe(rest: &[u8]) -> LineEvent<'_> {
    if let Some(after) = strip(rest, b"SUCCESS") {
        return LineEvent::ProbeSuccess(latency_ms(after));
    }
    if rest.starts_with(b"ERROR") {
        return LineEvent::ProbeError;
    }
    if rest.starts_with(b"The qosprobe addin has timed out") {
        return LineEvent::Detect(IncidentKind::ProbeTimeout);
    }
    LineEvent::Other
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
    let rest = strip(rest, b"OpMsg=")?;
    let op_end = rest
        .iter()
        .position(|&b| b == b' ' || b == b',')
        .unwrap_or(rest.len());
    let op = &rest[..op_end];
    let after = &rest[op_end..];
    let after = after.strip_prefix(b",").unwrap_or(after);
    let after = after.strip_prefix(b" ").unwrap_or(after);
    let kind = match strip(after, b"Type=") {
        Some(t) => &t[..t.iter().position(|&b| b == b' ').unwrap_or(t.len())],
        None => &[][..],
    };
    Some((op, kind))
}

fn classify_controller(rest: &[u8]) -> LineEvent<'_> {
    if let Some((op, kind)) = opmsg(rest) {
        return match (op, kind) {
            (b"START", b"QOS" | b"SERVER") => LineEvent::ServerStart,
            (b"READY", b"SERVER") => LineEvent::Ready,
            (b"CRASH", _) => LineEvent::Detect(IncidentKind::Crash),
            (b"TIMEOUT", b"PROBE") => LineEvent::Detect(IncidentKind::ProbeTimeout),
            (b"EXHAUSTED", _) => LineEvent::Detect(IncidentKind::Exhausted),
            (b"END", b"SERVER") => LineEvent::StopRequested,
            (b"END", b"QOS") => LineEvent::ServerEnded,
            _ => LineEvent::Other,
        };
    }
    if rest.starts_with(b"Server is ready to process requests") {
        return LineEvent::Ready;
    }
    if rest.starts_with(b"Starting QOSPipeWatcher") {
        return LineEvent::ControllerStart;
    }
    if rest.starts_with(b"The controller has received a probe timeout") {
        return LineEvent::Detect(IncidentKind::ProbeTimeout);
    }
    if rest.starts_with(b"Server ") {
        if rest.ends_with(b" has crashed.") || rest.ends_with(b" has crashed") {
            return LineEvent::Detect(IncidentKind::Crash);
        }
        if rest.starts_with(b"Server exit: ") {
            return LineEvent::CrashExit;
        }
        if rest.starts_with(b"Server is out of ") || rest.starts_with(b"Server has exhausted ") {
            return LineEvent::Detect(IncidentKind::Exhausted);
        }
        if rest.starts_with(b"Server ended") {
            return LineEvent::ServerEnded;
        }
        return LineEvent::Other;
    }
    if rest.starts_with(b"The kernel's OOM killer killed ") {
        return LineEvent::OomKill;
    }
    if rest.starts_with(b"Restart limit reached") {
        return LineEvent::RestartLimit;
    }
    if rest.starts_with(b"Paused by uid") {
        return LineEvent::Paused;
    }
    if rest.starts_with(b"Resumed by uid") {
        return LineEvent::Resumed;
    }
    if let Some(cmd) = strip(rest, b"Command ") {
        if let Some(end) = cmd.windows(10).position(|w| w == b" from uid ") {
            return LineEvent::Command(&cmd[..end]);
        }
    }
    if rest.starts_with(b"State ") && contains(rest, b" -> ") {
        return LineEvent::State;
    }
    LineEvent::Other
}

fn classify_kill(rest: &[u8]) -> LineEvent<'_> {
    if rest.starts_with(b"Triggering failover") {
        LineEvent::Failover
    } else if rest.starts_with(b"Running nsd -kill") {
        LineEvent::Kill
    } else if rest.starts_with(b"Running nsd") {
        LineEvent::DiagnosticsStart
    } else if rest.starts_with(b"Setting kill complete") {
        LineEvent::KillComplete
    } else if rest.starts_with(b"Restarting DominoStarter thread") {
        LineEvent::Restart
    } else if rest.starts_with(b"Starting server") {
        LineEvent::ServerStart
    } else if let Some(path) = strip(rest, b"Diagnostics written to ") {
        LineEvent::DiagnosticsWritten(path)
    } else {
        LineEvent::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(line: &str) -> LineEvent<'_> {
        parse(line.as_bytes())
            .map(|p| p.event)
            .expect("line has the timestamp shape")
    }

    #[test]
    fn reference_lines() {
        use IncidentKind::{Crash, ProbeTimeout};
        use LineEvent::*;
        let cases: &[(&str, LineEvent)] = &[
            ("2012/05/08 00:15:09 QoS Controller: OpMsg=START Type=QOS ObjectType=ServerName ObjectValue=CN=rc45/O=dev ObjectType2=ProcessName ObjectValue2=nserver TimeDate=20120508T001506,95-04", ServerStart),
            ("2012/05/08 00:15:09 QoS Controller: OpMsg=START Type=SERVER TimeDate=20120508T001507,40-04", ServerStart),
            ("2012/05/08 00:15:21 QoS Controller: OpMsg=READY Type=SERVER TimeDate=20120508T001517,92-04", Ready),
            ("2012/05/08 00:15:21 QoS Controller: Server is ready to process requests", Ready),
            ("2012/05/08 00:16:25 QoS Probe: SUCCESS (156ms)", ProbeSuccess(Some(156))),
            ("2012/05/08 00:16:25 QoS Probe: SUCCESS (1.5s)", ProbeSuccess(Some(1500))),
            ("2012/05/08 00:16:25 QoS Probe: SUCCESS", ProbeSuccess(None)),
            ("2012/05/08 00:16:25 QoS Probe: ERROR: ProbeError=4803", ProbeError),
            ("2012/05/08 00:15:25 QoS Probe: OpMsg=START, Type=PROBE", Other),
            ("2012/05/08 00:37:41 The probe thread has not received a message from qosprobe within the timeout period.", Detect(ProbeTimeout)),
            ("2012/05/08 00:37:41 QoS Probe: The qosprobe addin has timed out, is not responding, or is not running.", Detect(ProbeTimeout)),
            ("2012/05/08 00:37:43 QoS Controller: OpMsg=TIMEOUT Type=PROBE TimeDate=null", Detect(ProbeTimeout)),
            ("2012/05/08 00:37:43 QoS Controller: The controller has received a probe timeout.", Detect(ProbeTimeout)),
            ("2012/05/08 00:37:43 QoS Kill: Triggering failover...", Failover),
            ("2012/05/08 00:37:47 QoS Kill: Running nsd...", DiagnosticsStart),
            ("2012/05/08 00:38:12 QoS Kill: Running nsd -kill", Kill),
            ("2012/05/08 00:38:16 QoS Kill: Setting kill complete.", KillComplete),
            ("2012/05/08 00:38:21 QoS Kill: Restarting DominoStarter thread", Restart),
            ("2012/05/08 01:00:44 QoS Controller: OpMsg=CRASH Type=QOS ObjectType=ServerName ObjectValue=CN=rc45/O=dev TimeDate=20120508T010039,48-04", Detect(Crash)),
            ("2012/05/08 01:00:44 QoS Controller: Server CN=rc45/O=dev has crashed.", Detect(Crash)),
            ("2012/05/08 00:45:22 QoS Controller: OpMsg=END Type=SERVER ObjectType=Detail ObjectValue=Quit TimeDate=20120508T004516,01-04", StopRequested),
            ("2012/05/08 00:45:26 QoS Controller: OpMsg=END Type=QOS ObjectType=ServerName ObjectValue=CN=rc45/O=dev TimeDate=20120508T004523,51-04", ServerEnded),
            ("2012/05/08 00:38:32 QoS Controller: OpMsg=START Type=FIXUP ObjectType=DB ObjectValue=C:\\Program Files\\HCL\\Domino\\Data\\ddm.nsf TimeDate=20120508T003826,18-04", Other),
            ("2012/08/06 06:33:34 QoS Controller: Starting QOSPipeWatcher", ControllerStart),
            ("2012/08/06 06:33:34 QoS Controller: QOS_PROBE_TIMEOUT=5 minutes", Other),
        ];
        for (line, expected) in cases {
            assert_eq!(event(line), *expected, "{line}");
        }
    }

    #[test]
    fn controller_lines() {
        use IncidentKind::{AppTimeout, Exhausted};
        use LineEvent::*;
        let cases: &[(&str, LineEvent)] = &[
            ("2024/01/02 03:04:05 QoS Controller: Server exit: killed by SIGABRT (core dumped)", CrashExit),
            ("2024/01/02 03:04:05 QoS Controller: Restart limit reached: 3 restarts within 30 minutes; server left down (FAULTED)", RestartLimit),
            ("2024/01/02 03:04:05 QoS Controller: Server is out of SHARED_HANDLES", Detect(Exhausted)),
            ("2024/01/02 03:04:05 QoS Controller: Server has exhausted memory (2048 MB > 1024 MB)", Detect(Exhausted)),
            ("2024/01/02 03:04:05 QoS Controller: Server has exhausted memory pressure (72.5% > 60%)", Detect(Exhausted)),
            ("2024/01/02 03:04:05 QoS Controller: The kernel's OOM killer killed 1 process(es) in the server's cgroup (memory.events oom_kill=1)", OomKill),
            ("2024/01/02 03:04:05 QoS Controller: OpMsg=EXHAUSTED Type=SESSION_TABLES", Detect(Exhausted)),
            ("2024/01/02 03:04:05 QoS Applications: Application COMPACT[mail.nsf] has made no progress for 600 seconds", Detect(AppTimeout)),
            ("2024/01/02 03:04:05 QoS Kill: Diagnostics written to /data/diagnostics/nsd_1.log", DiagnosticsWritten(b"/data/diagnostics/nsd_1.log")),
            ("2024/01/02 03:04:05 QoS Controller: Paused by uid 0", Paused),
            ("2024/01/02 03:04:05 QoS Controller: Resumed by uid 1000", Resumed),
            ("2024/01/02 03:04:05 QoS Controller: Command restart from uid 0", Command(b"restart")),
            ("2024/01/02 03:04:05 QoS Controller: State READY -> KILLING (probe timeout)", State),
            ("2024/01/02 03:04:05 QoS Kill: Starting server", ServerStart),
            ("2024/01/02 03:04:05 QoS Controller: Server ended (exit code 0)", ServerEnded),
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
