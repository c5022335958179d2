//! The log texts that carry meaning, in one table: the lines of the reference controller
//! that support staff grep for, and the lines qoscntrlr adds that tell what happened to the
//! server. The core (and the shell, for the few lines it writes itself) builds these lines
//! from the entries here, and the log review (`review::line`) recognises lines by the same
//! entries, so a wording change is one edit and cannot leave the review blind.
//!
//! A text is a template: `{}` marks a variable part (filled in order by [`Wording::fill`],
//! taken back out by [`Wording::parse`]). Pure data and string work, no I/O.

use super::Component;

/// What a line tells the log review about the server's story.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// A controller run begins.
    ControllerStart,
    /// A server process is up.
    ServerStart,
    /// The server is ready to process requests.
    Ready,
    /// A successful probe (its latency, when the line carries one, is in the text).
    ProbeSuccess,
    ProbeError,
    /// A problem the controller acts on (or would, if not paused or under QOS_NOKILL).
    Detect(Class),
    /// The exit status after a crash line.
    CrashExit,
    /// Failover outputs down for a smart kill.
    Failover,
    DiagnosticsStart,
    /// The diagnostics file (the variable part).
    DiagnosticsWritten,
    /// The kill itself begins.
    Kill,
    KillComplete,
    /// The controller restarts the server after a kill or a crash.
    Restart,
    RestartLimit,
    Paused,
    Resumed,
    /// A pause holds back the kill an incident asks for.
    Suppressed,
    /// The kill a pause held back is carried out now.
    Resuming,
    /// The condition cleared by itself: no kill was, or is, needed.
    Cleared,
    /// The server is READY and probing well again after an incident.
    InService,
    /// An operator command (the first variable part is its word).
    Command,
    /// A state change of the server.
    State,
    /// The server has ended.
    ServerEnded,
    /// Written, but of no consequence to the review.
    Plain,
}

/// The class of an incident: what `logs summary` counts and `--event` filters on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Crash,
    ProbeTimeout,
    AppTimeout,
    /// A resource reported by the server (`out-of-…`) or measured (`exhausted-…`).
    Exhausted,
    RestartTimeout,
    ShutdownTimeout,
    /// A `QOS_RULE_<NAME>` rule acting (kill or failover).
    Rule,
    /// A kill with no detection before it: the operator's `kill`, or a log that starts
    /// in the middle of a smart kill.
    Kill,
    OomKill,
}

/// Serialised by its stable name (`logs summary --json` `incidents[].class`).
impl serde::Serialize for Class {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Class {
    /// The stable name of the class (`logs summary --json` `incidents[].class`).
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Crash => "crash",
            Class::ProbeTimeout => "probe-timeout",
            Class::AppTimeout => "app-timeout",
            Class::Exhausted => "exhausted",
            Class::RestartTimeout => "restart-timeout",
            Class::ShutdownTimeout => "shutdown-timeout",
            Class::Rule => "rule",
            Class::Kill => "kill",
            Class::OomKill => "oom-kill",
        }
    }
}

/// How an incident's kind — the word `status` shows and the log review reports — follows
/// from a detection line: a fixed word, or a prefix and a variable part made a slug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindFrom {
    Fixed(&'static str),
    /// `prefix` + [`slugify`] of variable part `arg`.
    Slug {
        prefix: &'static str,
        arg: usize,
    },
    /// `rule-` + the rule's name (its key without `QOS_RULE_`), made a slug.
    RuleKey {
        arg: usize,
    },
}

/// Whether the reference controller writes the line too (support staff grep for those),
/// or qoscntrlr adds it (the replay of the reference's sequences allows these in between).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Reference,
    Added,
    /// Only recognised: a variant the reference wrote that qoscntrlr never writes.
    Recognised,
}

/// One log text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wording {
    pub component: Component,
    pub text: &'static str,
    pub mark: Mark,
    pub origin: Origin,
    /// For `Mark::Detect` lines: the incident kind.
    pub kind: Option<KindFrom>,
}

const fn w(component: Component, text: &'static str, mark: Mark, origin: Origin) -> Wording {
    Wording {
        component,
        text,
        mark,
        origin,
        kind: None,
    }
}

const fn detect(
    component: Component,
    text: &'static str,
    class: Class,
    kind: KindFrom,
    origin: Origin,
) -> Wording {
    Wording {
        component,
        text,
        mark: Mark::Detect(class),
        origin,
        kind: Some(kind),
    }
}

use Component::{Applications as Apps, Bare, Controller as Ctl, Kill as KillC, Probe};
use Origin::{Added, Recognised, Reference};

// ----- start, probe, READY ----------------------------------------------------------------
pub const STARTING_PIPE_WATCHER: Wording = w(
    Ctl,
    "Starting QOSPipeWatcher",
    Mark::ControllerStart,
    Reference,
);
pub const STARTING_SERVER: Wording = w(Ctl, "Starting server: {}", Mark::Plain, Added);
/// An older wording of the server start.
pub const KILL_STARTING_SERVER: Wording =
    w(KillC, "Starting server", Mark::ServerStart, Recognised);
pub const CLEARING_APPS: Wording = w(
    Apps,
    "Clearing long running apps list",
    Mark::Plain,
    Reference,
);
pub const SERVER_READY: Wording = w(
    Ctl,
    "Server is ready to process requests",
    Mark::Ready,
    Reference,
);
pub const ACTIVATING_PROBE: Wording = w(Ctl, "Activating probe...", Mark::Plain, Reference);
pub const PROBE_ACTIVATED: Wording = w(Ctl, "QoS Probe activated.", Mark::Plain, Reference);
pub const STARTING_QOSPROBE: Wording = w(Probe, "Starting qosprobe...", Mark::Plain, Reference);
pub const PROBE_START: Wording = w(Probe, "OpMsg=START, Type=PROBE", Mark::Plain, Reference);
pub const PROBE_PROBING: Wording = w(Probe, "The QoS Probe is probing.", Mark::Plain, Reference);
pub const PROBE_SUCCESS: Wording = w(Probe, "SUCCESS ({}ms)", Mark::ProbeSuccess, Reference);
/// The reference's bare `SUCCESS` and other latency forms (`(1.5s)`).
pub const PROBE_SUCCESS_ANY: Wording = w(Probe, "SUCCESS{}", Mark::ProbeSuccess, Recognised);
pub const PROBE_ERROR: Wording = w(Probe, "ERROR: {}", Mark::ProbeError, Reference);
pub const PROBE_ERROR_ANY: Wording = w(Probe, "ERROR{}", Mark::ProbeError, Recognised);
pub const DEACTIVATING_PROBE: Wording = w(Ctl, "Deactivating probe...", Mark::Plain, Reference);
pub const PROBE_DEACTIVATED: Wording = w(Ctl, "QoS Probe deactivated.", Mark::Plain, Reference);
pub const SERVER_RECOVERED: Wording = w(
    Ctl,
    "Server has recovered; failover trigger removed",
    Mark::InService,
    Added,
);
pub const SERVER_RECOVERED_NO_TRIGGER: Wording = w(
    Ctl,
    "Server has recovered; failover outputs restored (no trigger file had been written)",
    Mark::InService,
    Added,
);

// ----- detections ---------------------------------------------------------------------------
pub const PROBE_THREAD_TIMEOUT: Wording = detect(
    Bare,
    "The probe thread has not received a message from qosprobe within the timeout period.",
    Class::ProbeTimeout,
    KindFrom::Fixed("probe-timeout"),
    Reference,
);
pub const PROBE_ADDIN_TIMEOUT: Wording = detect(
    Probe,
    "The qosprobe addin has timed out, is not responding, or is not running.",
    Class::ProbeTimeout,
    KindFrom::Fixed("probe-timeout"),
    Reference,
);
pub const PROBE_TIMEOUT_RECEIVED: Wording = detect(
    Ctl,
    "The controller has received a probe timeout.",
    Class::ProbeTimeout,
    KindFrom::Fixed("probe-timeout"),
    Reference,
);
pub const SERVER_CRASHED: Wording = detect(
    Ctl,
    "Server {} has crashed.",
    Class::Crash,
    KindFrom::Fixed("crash"),
    Reference,
);
pub const SERVER_CRASHED_NO_DOT: Wording = detect(
    Ctl,
    "Server {} has crashed",
    Class::Crash,
    KindFrom::Fixed("crash"),
    Recognised,
);
pub const SERVER_EXIT: Wording = w(Ctl, "Server exit: {}", Mark::CrashExit, Added);
pub const SERVER_OUT_OF: Wording = detect(
    Ctl,
    "Server is out of {}",
    Class::Exhausted,
    KindFrom::Slug {
        prefix: "out-of-",
        arg: 0,
    },
    Added,
);
pub const SERVER_EXHAUSTED: Wording = detect(
    Ctl,
    "Server has exhausted {} ({})",
    Class::Exhausted,
    KindFrom::Slug {
        prefix: "exhausted-",
        arg: 0,
    },
    Added,
);
pub const APP_NO_PROGRESS: Wording = detect(
    Apps,
    "Application {} has made no progress for {} seconds",
    Class::AppTimeout,
    KindFrom::Fixed("app-timeout"),
    Added,
);
pub const RESTART_TIMEOUT: Wording = detect(
    Ctl,
    "Server was not ready within QOS_RESTART_TIMEOUT ({}); killing and restarting",
    Class::RestartTimeout,
    KindFrom::Fixed("restart-timeout"),
    Added,
);
pub const SHUTDOWN_TIMEOUT: Wording = detect(
    Ctl,
    "Server did not shut down within QOS_SHUTDOWN_TIMEOUT ({}); killing",
    Class::ShutdownTimeout,
    KindFrom::Fixed("shutdown-timeout"),
    Added,
);
pub const RULE_KILL: Wording = detect(
    Ctl,
    "Rule {} breached: {} (action=kill)",
    Class::Rule,
    KindFrom::RuleKey { arg: 0 },
    Added,
);
pub const RULE_FAILOVER: Wording = detect(
    Ctl,
    "Rule {} breached: {} (action=failover)",
    Class::Rule,
    KindFrom::RuleKey { arg: 0 },
    Added,
);
pub const RULE_BREACHED: Wording = w(Ctl, "Rule {} breached: {} (action={})", Mark::Plain, Added);
pub const RULE_FAILBACK: Wording = w(
    Ctl,
    "Rule {} cleared; failover outputs back up",
    Mark::Cleared,
    Added,
);
pub const OOM_KILLED: Wording = detect(
    Ctl,
    "The kernel's OOM killer killed {} process(es) in the server's cgroup (memory.events oom_kill={})",
    Class::OomKill,
    KindFrom::Fixed("oom-kill"),
    Added,
);

// ----- NOKILL, pause: held back, cleared ------------------------------------------------
pub const PAUSED_NOT_KILLING: Wording = w(
    Ctl,
    "Paused: not killing the server ({}); resume to act",
    Mark::Suppressed,
    Added,
);
pub const RESUMING_ACTING: Wording = w(
    Ctl,
    "Resuming: acting on the {} detected while paused",
    Mark::Resuming,
    Added,
);
pub const PROBE_OK_NO_KILL: Wording = w(
    Ctl,
    "The probe succeeds again; no kill needed",
    Mark::Cleared,
    Added,
);
pub const RESOURCE_BACK_NO_KILL: Wording = w(
    Ctl,
    "Server is back under its {} limit; no kill needed",
    Mark::Cleared,
    Added,
);
pub const APP_MOVED_NO_KILL: Wording = w(
    Ctl,
    "Application {} {}; no kill needed",
    Mark::Cleared,
    Added,
);
pub const NOKILL_PROBE_RECOVERED: Wording = w(
    Ctl,
    "Server has recovered: the probe succeeds again",
    Mark::Cleared,
    Added,
);
pub const NOKILL_RESOURCE_BACK: Wording = w(
    Ctl,
    "Server is back under its {} limit; the QOS_NOKILL condition has cleared",
    Mark::Cleared,
    Added,
);
pub const NOKILL_APP_MOVED: Wording = w(
    Ctl,
    "Application {} {}; the QOS_NOKILL condition has cleared",
    Mark::Cleared,
    Added,
);

// ----- the smart kill -------------------------------------------------------------------
pub const TRIGGERING_FAILOVER: Wording =
    w(KillC, "Triggering failover...", Mark::Failover, Reference);
pub const RUNNING_NSD: Wording = w(KillC, "Running nsd...", Mark::DiagnosticsStart, Reference);
pub const DIAGNOSTICS_WRITTEN: Wording = w(
    KillC,
    "Diagnostics written to {}",
    Mark::DiagnosticsWritten,
    Added,
);
pub const RUNNING_NSD_KILL: Wording = w(KillC, "Running nsd -kill", Mark::Kill, Reference);
pub const KILL_COMPLETE: Wording = w(
    KillC,
    "Setting kill complete.",
    Mark::KillComplete,
    Reference,
);
pub const RESTARTING: Wording = w(
    KillC,
    "Restarting DominoStarter thread",
    Mark::Restart,
    Reference,
);
pub const RESTART_LIMIT: Wording = w(
    Ctl,
    "Restart limit reached: {} restarts within {}; server left down (FAULTED)",
    Mark::RestartLimit,
    Added,
);

// ----- operator, states, shutdown ----------------------------------------------------------
pub const COMMAND_FROM: Wording = w(Ctl, "Command {} from uid {}", Mark::Command, Added);
pub const PAUSED_BY: Wording = w(Ctl, "Paused by uid {}", Mark::Paused, Added);
pub const RESUMED_BY: Wording = w(Ctl, "Resumed by uid {}", Mark::Resumed, Added);
pub const STATE_CHANGED: Wording = w(Ctl, "State {} -> {} ({})", Mark::State, Added);
pub const SERVER_ENDED: Wording = w(Ctl, "Server ended ({})", Mark::ServerEnded, Added);
pub const LONG_RUNNING_WAIT: Wording = w(
    Ctl,
    "There are long running applications - probing will pause until they have completed.",
    Mark::Plain,
    Reference,
);
pub const ADDING_APP: Wording = w(
    Apps,
    "Adding {} to long running apps list",
    Mark::Plain,
    Reference,
);
pub const REMOVING_APP: Wording = w(
    Apps,
    "Removing {} from long running apps list..",
    Mark::Plain,
    Reference,
);

/// Every entry, in the order the review tries them within a component: longer, more
/// specific templates before the ones they would also match.
pub const TABLE: &[Wording] = &[
    STARTING_PIPE_WATCHER,
    STARTING_SERVER,
    CLEARING_APPS,
    SERVER_READY,
    ACTIVATING_PROBE,
    PROBE_ACTIVATED,
    STARTING_QOSPROBE,
    PROBE_START,
    PROBE_PROBING,
    PROBE_SUCCESS,
    PROBE_SUCCESS_ANY,
    PROBE_ERROR,
    PROBE_ERROR_ANY,
    DEACTIVATING_PROBE,
    PROBE_DEACTIVATED,
    SERVER_RECOVERED,
    SERVER_RECOVERED_NO_TRIGGER,
    PROBE_THREAD_TIMEOUT,
    PROBE_ADDIN_TIMEOUT,
    PROBE_TIMEOUT_RECEIVED,
    SERVER_EXIT,
    SERVER_OUT_OF,
    SERVER_EXHAUSTED,
    SERVER_ENDED,
    SERVER_CRASHED,
    SERVER_CRASHED_NO_DOT,
    APP_NO_PROGRESS,
    RESTART_TIMEOUT,
    SHUTDOWN_TIMEOUT,
    RULE_KILL,
    RULE_FAILOVER,
    RULE_BREACHED,
    RULE_FAILBACK,
    OOM_KILLED,
    PAUSED_NOT_KILLING,
    RESUMING_ACTING,
    PROBE_OK_NO_KILL,
    RESOURCE_BACK_NO_KILL,
    NOKILL_RESOURCE_BACK,
    APP_MOVED_NO_KILL,
    NOKILL_APP_MOVED,
    NOKILL_PROBE_RECOVERED,
    TRIGGERING_FAILOVER,
    RUNNING_NSD_KILL,
    RUNNING_NSD,
    DIAGNOSTICS_WRITTEN,
    KILL_COMPLETE,
    RESTARTING,
    KILL_STARTING_SERVER,
    RESTART_LIMIT,
    COMMAND_FROM,
    PAUSED_BY,
    RESUMED_BY,
    STATE_CHANGED,
    LONG_RUNNING_WAIT,
    ADDING_APP,
    REMOVING_APP,
];

/// At most this many variable parts in one template.
pub const MAX_ARGS: usize = 3;

impl Wording {
    /// The text with its variable parts filled in order (a template without `{}` is
    /// returned as it is; missing arguments leave the rest empty).
    pub fn fill(&self, args: &[&dyn std::fmt::Display]) -> String {
        use std::fmt::Write as _;
        let mut out = String::with_capacity(self.text.len() + 16);
        let mut pieces = self.text.split("{}");
        if let Some(first) = pieces.next() {
            out.push_str(first);
        }
        for (i, piece) in pieces.enumerate() {
            if let Some(arg) = args.get(i) {
                let _ = write!(out, "{arg}");
            }
            out.push_str(piece);
        }
        out
    }

    /// The fixed text of a template without variable parts.
    pub fn fixed(&self) -> &'static str {
        debug_assert!(
            !self.text.contains("{}"),
            "{} has variable parts",
            self.text
        );
        self.text
    }

    /// When `text` (a line after its component) is this template, its variable parts.
    /// Each variable part is at least one byte long, except a trailing one.
    pub fn parse<'a>(&self, text: &'a [u8]) -> Option<[&'a [u8]; MAX_ARGS]> {
        let template = self.text.as_bytes();
        let mut args: [&[u8]; MAX_ARGS] = [&[]; MAX_ARGS];
        let mut pieces = split_template(template);
        let first = pieces.next()?;
        let mut rest = text.strip_prefix(first)?;
        let mut index = 0;
        let mut pending = pieces.next();
        while let Some(piece) = pending {
            let next = pieces.next();
            let at = if next.is_none() {
                // The last piece ends the text.
                if rest.len() < piece.len() || !rest.ends_with(piece) {
                    return None;
                }
                let at = rest.len() - piece.len();
                if at == 0 && !piece.is_empty() {
                    return None;
                }
                at
            } else {
                find(rest.get(1..)?, piece)? + 1
            };
            if let Some(slot) = args.get_mut(index) {
                *slot = &rest[..at];
            }
            index += 1;
            rest = &rest[at + piece.len()..];
            pending = next;
        }
        (index > 0 || rest.is_empty()).then_some(args)
    }

    /// The incident kind a detection line names (`None` for other lines).
    pub fn kind_of(&self, args: &[&[u8]; MAX_ARGS]) -> Option<String> {
        let arg = |i: usize| String::from_utf8_lossy(args.get(i).copied().unwrap_or_default());
        Some(match self.kind? {
            KindFrom::Fixed(word) => word.to_string(),
            KindFrom::Slug { prefix, arg: i } => format!("{prefix}{}", slugify(arg(i).trim())),
            KindFrom::RuleKey { arg: i } => rule_kind(arg(i).trim()),
        })
    }
}

fn split_template(template: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(template);
    std::iter::from_fn(move || {
        let text = rest?;
        match find(text, b"{}") {
            Some(at) => {
                rest = Some(&text[at + 2..]);
                Some(&text[..at])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The entry a line (component and the text after it) is, trying the table in order.
pub fn recognise(
    component: Component,
    text: &[u8],
) -> Option<(&'static Wording, [&[u8]; MAX_ARGS])> {
    TABLE
        .iter()
        .filter(|w| w.component == component)
        .find_map(|w| w.parse(text).map(|args| (w, args)))
}

/// Lower-case ASCII letters and digits, everything else `-`: `SHARED_HANDLES` →
/// `shared-handles`. Incident kinds, diagnostics file names and hook reasons use it.
pub fn slugify(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// `QOS_RULE_MEMLEAK` → `rule-memleak`.
pub fn rule_kind(key: &str) -> String {
    format!("rule-{}", slugify(rule_name(key)))
}

/// `QOS_RULE_MEMLEAK` → `MEMLEAK` (kinds stay short).
pub fn rule_name(key: &str) -> &str {
    key.strip_prefix(crate::rules::RULE_PREFIX).unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_and_parse_are_inverse() {
        let line = SERVER_EXHAUSTED.fill(&[&"memory", &"80 MB > 64 MB"]);
        assert_eq!(line, "Server has exhausted memory (80 MB > 64 MB)");
        let args = SERVER_EXHAUSTED.parse(line.as_bytes()).unwrap();
        assert_eq!(args[0], b"memory");
        assert_eq!(args[1], b"80 MB > 64 MB");
        assert_eq!(SERVER_EXHAUSTED.kind_of(&args).unwrap(), "exhausted-memory");
        assert!(SERVER_EXHAUSTED
            .parse(b"Server has exhausted memory")
            .is_none());
        assert_eq!(
            PROBE_START.parse(b"OpMsg=START, Type=PROBE"),
            Some([&b""[..]; 3])
        );
        assert!(PROBE_START.parse(b"OpMsg=START, Type=PROBEX").is_none());
        let args = RULE_KILL
            .parse(b"Rule QOS_RULE_MEMLEAK breached: memory 3 GB > 2 GB (action=kill)")
            .unwrap();
        assert_eq!(RULE_KILL.kind_of(&args).unwrap(), "rule-memleak");
        assert!(SERVER_CRASHED
            .parse(b"Server CN=a/O=b has crashed.")
            .is_some());
        assert!(SERVER_CRASHED.parse(b"Server has crashed.").is_none());
    }

    #[test]
    fn every_template_parses_its_own_filled_text_first() {
        // A filled template must be recognised as itself, not as an earlier entry.
        for entry in TABLE.iter().filter(|w| w.origin != Origin::Recognised) {
            let line = entry.fill(&[&"x1", &"x2", &"x3"]);
            let (found, _) = recognise(entry.component, line.as_bytes())
                .unwrap_or_else(|| panic!("{:?} not recognised", entry.text));
            assert_eq!(found.text, entry.text, "{line:?}");
        }
    }
}
