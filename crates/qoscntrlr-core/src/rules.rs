//! Resource rules (`QOS_RULE_<NAME>` and the `QOS_MAX_*`/`QOS_MIN_DISK_FREE` shorthands):
//! the rule grammar, the items a rule can watch, and the pure judgement of a stream of
//! samples against each rule — consecutive-sample windows, averages, samples that could
//! not be taken, once-per-breach actions and clearing. No I/O and no clock: the shell
//! samples, the core ([`crate`]) feeds the readings here and turns the verdicts
//! into log lines, alerts, failover outputs and smart kills.
//!
//! Grammar of one rule (the value of a `QOS_RULE_<NAME>` key):
//!
//! ```text
//! <item> <op> <value> [samples N | average D] [missing=breach|ok] action=<log|alert|failover|kill>
//! ```
//!
//! * `samples N`: breached when N consecutive samples pass the comparison (default
//!   `QOS_RESOURCE_SAMPLES`); cleared after N consecutive samples that do not.
//! * `average D`: the mean of the last D samples (`average 6`), or of the samples of the
//!   last D of time (`average 1m`, rounded up to whole sampling intervals); judged once
//!   the window is full, breached while the mean passes the comparison.
//! * `missing=breach`: a sample that could not be taken counts as a breach (in an average
//!   window: a window in which no sample could be taken is a breach); `missing=ok` (the
//!   default): it counts as not breaching and is left out of averages.
//! * A failed write-latency probe (a hung or read-only filesystem) is a breach whatever
//!   `missing=` says: it is a measurement of a broken filesystem, not a missing one.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a rule watches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Item {
    /// The server tree's memory (PSS where readable), bytes.
    Memory,
    /// The server tree's CPU, percent of one core.
    Cpu,
    OpenFiles,
    Threads,
    /// Host memory in use, percent (100 − MemAvailable/MemTotal).
    HostMemory,
    /// Host CPU busy, percent of all cores.
    HostCpu,
    /// One-minute load average.
    Load1,
    /// Free space (for unprivileged users) of the filesystem holding the path, bytes.
    DiskFree(PathBuf),
    /// A small write + fsync in the data directory, milliseconds.
    WriteLatency,
    /// PSI `some avg10` of the server's cgroup, percent.
    MemoryPressure,
    CpuPressure,
    IoPressure,
}

/// How an item's values are written and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unit {
    Bytes,
    Percent,
    Count,
    Load,
    Millis,
}

impl Item {
    /// Every item name the grammar accepts (`disk_free` takes `:<path>`).
    pub const NAMES: &'static [&'static str] = &[
        "memory",
        "cpu",
        "open_files",
        "threads",
        "host_memory",
        "host_cpu",
        "load1",
        "disk_free:<path>",
        "write_latency",
        "memory_pressure",
        "cpu_pressure",
        "io_pressure",
    ];

    /// `disk_free:/var` resolves a relative path against `base` (the data directory).
    pub fn parse(text: &str, base: &Path) -> Result<Item, String> {
        let lower = text.to_ascii_lowercase();
        if let Some(path) = text
            .get(..10)
            .filter(|p| p.eq_ignore_ascii_case("disk_free:"))
            .map(|_| &text[10..])
        {
            if path.is_empty() {
                return Err("disk_free needs a path (expected disk_free:/path)".into());
            }
            let path = PathBuf::from(path);
            let path = if path.is_absolute() {
                path
            } else {
                base.join(path)
            };
            return Ok(Item::DiskFree(path));
        }
        Ok(match lower.as_str() {
            "memory" => Item::Memory,
            "cpu" => Item::Cpu,
            "open_files" => Item::OpenFiles,
            "threads" => Item::Threads,
            "host_memory" => Item::HostMemory,
            "host_cpu" => Item::HostCpu,
            "load1" => Item::Load1,
            "write_latency" => Item::WriteLatency,
            "memory_pressure" => Item::MemoryPressure,
            "cpu_pressure" => Item::CpuPressure,
            "io_pressure" => Item::IoPressure,
            "disk_free" => {
                return Err("disk_free needs a path (expected disk_free:/path)".into());
            }
            _ => {
                return Err(format!(
                    "unknown item \"{text}\" (expected one of {})",
                    Item::NAMES.join(", ")
                ))
            }
        })
    }

    /// The name as written in a rule and in `qoscntrlr-usage.jsonl`.
    pub fn name(&self) -> String {
        match self {
            Item::Memory => "memory".into(),
            Item::Cpu => "cpu".into(),
            Item::OpenFiles => "open_files".into(),
            Item::Threads => "threads".into(),
            Item::HostMemory => "host_memory".into(),
            Item::HostCpu => "host_cpu".into(),
            Item::Load1 => "load1".into(),
            Item::DiskFree(path) => format!("disk_free:{}", path.display()),
            Item::WriteLatency => "write_latency".into(),
            Item::MemoryPressure => "memory_pressure".into(),
            Item::CpuPressure => "cpu_pressure".into(),
            Item::IoPressure => "io_pressure".into(),
        }
    }

    pub fn unit(&self) -> Unit {
        match self {
            Item::Memory | Item::DiskFree(_) => Unit::Bytes,
            Item::Cpu
            | Item::HostMemory
            | Item::HostCpu
            | Item::MemoryPressure
            | Item::CpuPressure
            | Item::IoPressure => Unit::Percent,
            Item::OpenFiles | Item::Threads => Unit::Count,
            Item::Load1 => Unit::Load,
            Item::WriteLatency => Unit::Millis,
        }
    }

    /// Read from the server's cgroup (v2 pressure files).
    pub fn is_pressure(&self) -> bool {
        matches!(
            self,
            Item::MemoryPressure | Item::CpuPressure | Item::IoPressure
        )
    }

    /// A value as operators read it: `812 MB`, `95%`, `1200`, `2.35`, `40 ms`.
    pub fn render(&self, value: f64) -> String {
        render(self.unit(), value, self.is_pressure())
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// `pressure`: PSI figures keep their tenth (`72.5%`), as the cgroup's own files do.
fn render(unit: Unit, value: f64, pressure: bool) -> String {
    if !value.is_finite() {
        return "unmeasurable".into();
    }
    match unit {
        Unit::Bytes => {
            crate::units::format_bytes(value.max(0.0) as u64, crate::units::ByteStyle::Megabytes)
        }
        Unit::Percent if pressure => {
            if value.fract() == 0.0 {
                format!("{value:.0}%")
            } else {
                format!("{value:.1}%")
            }
        }
        Unit::Percent => {
            if value.fract() == 0.0 || value >= 10.0 {
                format!("{}%", value.round() as i64)
            } else {
                format!("{value:.1}%")
            }
        }
        Unit::Count => format!("{}", value.round() as i64),
        Unit::Load => format!("{value:.2}"),
        Unit::Millis => {
            if value >= 10.0 {
                format!("{} ms", value.round() as i64)
            } else {
                format!("{value:.1} ms")
            }
        }
    }
}

/// Parse a threshold in the item's unit: sizes `2GB`/`512M` (bare: MB), percentages
/// `90%`/`90`, counts, loads `4.5`, latencies `500ms`/`2s` (bare: ms).
pub fn parse_value(unit: Unit, text: &str) -> Result<f64, String> {
    let number = |t: &str| -> Result<f64, String> {
        let t = t.trim();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(format!("\"{text}\" is not a number"));
        }
        t.parse::<f64>()
            .map_err(|_| format!("\"{text}\" is not a number"))
    };
    match unit {
        Unit::Bytes => crate::units::parse_size(text, 1024 * 1024).map(|b| b as f64),
        Unit::Percent => {
            let v = number(text.strip_suffix('%').unwrap_or(text))
                .map_err(|_| format!("\"{text}\" is not a percentage (expected e.g. 90%)"))?;
            Ok(v)
        }
        Unit::Count => {
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "\"{text}\" is not a whole number (expected digits, e.g. 1000)"
                ));
            }
            text.parse::<u64>()
                .map(|v| v as f64)
                .map_err(|_| format!("\"{text}\" is too large"))
        }
        Unit::Load => number(text).map_err(|_| {
            format!("\"{text}\" is not a load average (expected a number, e.g. 8 or 4.5)")
        }),
        Unit::Millis => crate::units::parse_duration(text, Duration::from_millis(1))
            .map(|d| d.as_secs_f64() * 1000.0),
    }
}

/// The comparison that makes a sample a breach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn parse(text: &str) -> Option<Op> {
        Some(match text {
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "<" => Op::Lt,
            "<=" => Op::Le,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        }
    }

    /// The comparison that is true of `value` against `threshold`, as written in a log
    /// line: the rule's own when it holds, its negation when not (a cleared rule reads
    /// `41 MB <= 120 MB`, never `41 MB > 120 MB`).
    pub fn relation(self, value: f64, threshold: f64) -> &'static str {
        match (self.holds(value, threshold), self) {
            (true, op) => op.as_str(),
            (false, Op::Gt) => "<=",
            (false, Op::Ge) => "<",
            (false, Op::Lt) => ">=",
            (false, Op::Le) => ">",
        }
    }

    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
        }
    }

    /// Smaller values are worse (`disk_free < 1GB`).
    pub fn is_minimum(self) -> bool {
        matches!(self, Op::Lt | Op::Le)
    }
}

/// How many samples decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Window {
    /// N consecutive samples.
    Samples(u32),
    /// The mean of the last N samples; `written` keeps the operator's spelling.
    Average {
        samples: u32,
        written: Option<Duration>,
    },
}

/// What to do about a sample that could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Missing {
    Ok,
    Breach,
}

/// What a breached rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleAction {
    /// A log line.
    Log,
    /// Log, mail and webhook.
    Alert,
    /// Failover outputs down while the rule holds; the server is kept.
    Failover,
    /// Smart kill: failover, diagnostics, kill, restart.
    Kill,
}

impl RuleAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleAction::Log => "log",
            RuleAction::Alert => "alert",
            RuleAction::Failover => "failover",
            RuleAction::Kill => "kill",
        }
    }
}

/// Where a rule came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    /// A `QOS_RULE_<NAME>` key.
    Rule,
    /// A shorthand key (`QOS_MAX_MEMORY` …): logged in the shorthand's long-standing
    /// words (`Server has exhausted memory (…)`), warned at `QOS_RESOURCE_WARN`.
    Shorthand {
        /// The resource as the log names it (`memory`, `open files`, `disk space`).
        resource: String,
        /// Percent of the limit at which to warn once; 0 = never.
        warn_percent: u32,
    },
}

/// One rule in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// `MEMLEAK` for `QOS_RULE_MEMLEAK`; the key itself for a shorthand.
    pub name: String,
    pub item: Item,
    pub op: Op,
    pub threshold: f64,
    pub window: Window,
    pub missing: Missing,
    pub action: RuleAction,
    pub origin: Origin,
}

// Thresholds come from the configuration reader, never NaN: equality is reflexive.
impl Eq for Rule {}

impl Rule {
    /// The rule as written (normalised): `memory > 2048 MB samples 3 missing=ok action=kill`.
    pub fn spec(&self) -> String {
        let window = match self.window {
            Window::Samples(n) => format!("samples {n}"),
            Window::Average {
                written: Some(d), ..
            } => format!(
                "average {}",
                crate::units::format_duration(d, crate::units::DurationStyle::Words)
            ),
            Window::Average { samples, .. } => format!("average {samples}"),
        };
        let missing = match self.missing {
            Missing::Ok => "ok",
            Missing::Breach => "breach",
        };
        format!(
            "{} {} {} {window} missing={missing} action={}",
            self.item,
            self.op.as_str(),
            self.item.render(self.threshold),
            self.action.as_str()
        )
    }

    /// The key that holds this rule.
    pub fn key(&self) -> String {
        match self.origin {
            Origin::Rule => format!("{RULE_PREFIX}{}", self.name),
            Origin::Shorthand { .. } => self.name.clone(),
        }
    }

    /// Samples in the window.
    pub fn window_len(&self) -> u32 {
        match self.window {
            Window::Samples(n) | Window::Average { samples: n, .. } => n.max(1),
        }
    }
}

/// The key prefix of a rule.
pub const RULE_PREFIX: &str = "QOS_RULE_";

/// What a reload did to the `QOS_RULE_<NAME>` rules, by key, one line each for the reload
/// answer and the log: `QOS_RULE_LEAK added: memory > 2048 MB average 30 ...`,
/// `QOS_RULE_X removed (was: ...)`, `QOS_RULE_Y changed: <old> -> <new>`. Added and
/// changed rules in the new file's order, removed ones in the old file's order. A rule is
/// changed when its normalised form is (item, comparison, value, window, missing,
/// action): rewriting `2GB` as `2048MB` is no change. The shorthand keys are left out:
/// their own key lines already show the change.
pub fn rule_changes(before: &[Rule], after: &[Rule]) -> Vec<String> {
    let custom = |rules: &[Rule]| -> Vec<(String, String)> {
        rules
            .iter()
            .filter(|r| r.origin == Origin::Rule)
            .map(|r| (r.key(), r.spec()))
            .collect()
    };
    let (before, after) = (custom(before), custom(after));
    let mut lines = Vec::new();
    for (key, spec) in &after {
        match before.iter().find(|(k, _)| k == key) {
            None => lines.push(format!("{key} added: {spec}")),
            Some((_, old)) if old != spec => {
                lines.push(format!("{key} changed: {old} -> {spec}"));
            }
            Some(_) => {}
        }
    }
    for (key, spec) in &before {
        if !after.iter().any(|(k, _)| k == key) {
            lines.push(format!("{key} removed (was: {spec})"));
        }
    }
    lines
}

/// Parse the value of `QOS_RULE_<name>`. `default_samples` is QOS_RESOURCE_SAMPLES,
/// `interval` QOS_RESOURCE_INTERVAL (for `average <duration>`), `base` the data
/// directory (for relative `disk_free:` paths). The error says what was expected.
pub fn parse_rule(
    name: &str,
    text: &str,
    default_samples: u32,
    interval: Duration,
    base: &Path,
) -> Result<Rule, String> {
    const SHAPE: &str = "expected <item> <op> <value> [samples N | average D] \
                         [missing=breach|ok] action=log|alert|failover|kill, \
                         e.g. memory > 2GB average 5m action=alert";
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "the rule name \"{name}\" must be letters, digits, _ or - (e.g. QOS_RULE_MEMLEAK)"
        ));
    }
    let text = text.trim();
    // `memory>2GB` and `memory >2GB` are accepted too: split the operator out.
    let (item_text, op, value_text, rest) = split_comparison(text)
        .ok_or_else(|| format!("\"{text}\" has no comparison >, >=, < or <= ({SHAPE})"))?;
    let item = Item::parse(&item_text, base)?;
    let threshold = parse_value(item.unit(), &value_text)
        .map_err(|e| format!("{} threshold: {e}", item.name()))?;
    let mut window = None;
    let mut missing = Missing::Ok;
    let mut action = None;
    let mut i = 0;
    while i < rest.len() {
        let word = rest[i].as_str();
        let lower = word.to_ascii_lowercase();
        if lower == "samples" || lower == "average" {
            if window.is_some() {
                return Err(format!(
                    "\"{text}\": give either samples N or average D, once ({SHAPE})"
                ));
            }
            let arg = rest.get(i + 1).ok_or_else(|| {
                format!("\"{word}\" needs a number (e.g. samples 3, average 5m or average 30)")
            })?;
            window = Some(if lower == "samples" {
                let n = arg
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("samples \"{arg}\" is not a whole number of samples from 1 (e.g. samples 3)"))?;
                Window::Samples(n)
            } else {
                parse_average(arg, interval)?
            });
            i += 2;
            continue;
        }
        if let Some(v) = lower.strip_prefix("missing=") {
            missing = match v {
                "breach" => Missing::Breach,
                "ok" => Missing::Ok,
                _ => {
                    return Err(format!(
                        "\"{word}\" is not a missing-sample rule (expected missing=breach or missing=ok)"
                    ))
                }
            };
            i += 1;
            continue;
        }
        if let Some(v) = lower.strip_prefix("action=") {
            action = Some(match v {
                "log" => RuleAction::Log,
                "alert" => RuleAction::Alert,
                "failover" => RuleAction::Failover,
                "kill" => RuleAction::Kill,
                _ => {
                    return Err(format!(
                        "\"{word}\" is not an action (expected action=log, alert, failover or kill)"
                    ))
                }
            });
            i += 1;
            continue;
        }
        return Err(format!("unexpected \"{word}\" in \"{text}\" ({SHAPE})"));
    }
    let action = action.ok_or_else(|| {
        format!(
            "\"{text}\" has no action (expected action=log, alert, failover or kill at the end)"
        )
    })?;
    Ok(Rule {
        name: name.to_string(),
        item,
        op,
        threshold,
        window: window.unwrap_or(Window::Samples(default_samples.max(1))),
        missing,
        action,
        origin: Origin::Rule,
    })
}

/// `average 6` (samples) or `average 1m` (a span, rounded up to whole intervals).
fn parse_average(arg: &str, interval: Duration) -> Result<Window, String> {
    let expected = "expected a number of samples or a time span, e.g. average 6 or average 5m";
    if !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_digit()) {
        let n = arg
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("average \"{arg}\" is not a window ({expected})"))?;
        return Ok(Window::Average {
            samples: n,
            written: None,
        });
    }
    let span = crate::units::parse_duration(arg, Duration::from_secs(1))
        .map_err(|_| format!("average \"{arg}\" is not a window ({expected})"))?;
    if span.is_zero() {
        return Err(format!("average \"{arg}\" is empty ({expected})"));
    }
    let interval = interval.max(Duration::from_millis(1)).as_secs_f64();
    let n = (span.as_secs_f64() / interval).ceil().clamp(1.0, 100_000.0) as u32;
    Ok(Window::Average {
        samples: n,
        written: Some(span),
    })
}

/// The comparison of a rule however it was spaced: `memory > 2GB`, `memory>2GB`,
/// `memory >2GB`, `memory> 2GB`. Returns item, operator, value and the words after.
fn split_comparison(text: &str) -> Option<(String, Op, String, Vec<String>)> {
    let at = text.find(['<', '>'])?;
    let item = text[..at].trim();
    if item.is_empty() || item.contains(char::is_whitespace) {
        return None;
    }
    let after = &text[at..];
    let op_len = if after[1..].starts_with('=') { 2 } else { 1 };
    let op = Op::parse(&after[..op_len])?;
    let mut tail = after[op_len..].split_whitespace();
    let value = tail.next()?.to_string();
    Some((
        item.to_string(),
        op,
        value,
        tail.map(str::to_string).collect(),
    ))
}

/// The shorthand keys as rules (`QOS_MAX_MEMORY=800` is `memory > 800MB action=kill`).
pub struct Shorthands {
    pub max_memory: u64,
    pub max_cpu: u32,
    pub max_open_files: u64,
    pub max_threads: u64,
    pub min_disk_free: u64,
    /// PSI `some avg10` percentages of the server's cgroup; 0 = off.
    pub max_memory_pressure: u32,
    pub max_cpu_pressure: u32,
    pub max_io_pressure: u32,
    pub samples: u32,
    pub warn_percent: u32,
    pub data_directory: PathBuf,
}

impl Shorthands {
    pub fn rules(&self) -> Vec<Rule> {
        let make = |key: &str, resource: &'static str, item: Item, op: Op, threshold: f64| Rule {
            name: key.to_string(),
            item,
            op,
            threshold,
            window: Window::Samples(self.samples.max(1)),
            missing: Missing::Ok,
            action: RuleAction::Kill,
            origin: Origin::Shorthand {
                resource: resource.to_string(),
                warn_percent: self.warn_percent,
            },
        };
        let mut rules = Vec::new();
        if self.max_memory > 0 {
            rules.push(make(
                "QOS_MAX_MEMORY",
                "memory",
                Item::Memory,
                Op::Gt,
                self.max_memory as f64,
            ));
        }
        if self.max_cpu > 0 {
            rules.push(make(
                "QOS_MAX_CPU",
                "cpu",
                Item::Cpu,
                Op::Gt,
                f64::from(self.max_cpu),
            ));
        }
        if self.max_open_files > 0 {
            rules.push(make(
                "QOS_MAX_OPEN_FILES",
                "open files",
                Item::OpenFiles,
                Op::Gt,
                self.max_open_files as f64,
            ));
        }
        if self.max_threads > 0 {
            rules.push(make(
                "QOS_MAX_THREADS",
                "threads",
                Item::Threads,
                Op::Gt,
                self.max_threads as f64,
            ));
        }
        for (key, resource, item, limit) in [
            (
                "QOS_MAX_MEMORY_PRESSURE",
                "memory pressure",
                Item::MemoryPressure,
                self.max_memory_pressure,
            ),
            (
                "QOS_MAX_CPU_PRESSURE",
                "cpu pressure",
                Item::CpuPressure,
                self.max_cpu_pressure,
            ),
            (
                "QOS_MAX_IO_PRESSURE",
                "io pressure",
                Item::IoPressure,
                self.max_io_pressure,
            ),
        ] {
            if limit > 0 {
                rules.push(make(key, resource, item, Op::Gt, f64::from(limit)));
            }
        }
        if self.min_disk_free > 0 {
            rules.push(make(
                "QOS_MIN_DISK_FREE",
                "disk space",
                Item::DiskFree(self.data_directory.clone()),
                Op::Lt,
                self.min_disk_free as f64,
            ));
        }
        rules
    }
}

/// One item's sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reading {
    Value(f64),
    /// The sample could not be taken (why, for status and the usage file).
    Missing(String),
    /// The measurement itself shows the item broken (a write probe that hung or hit a
    /// read-only filesystem): a breach for every rule on the item.
    Failed(String),
}

impl Reading {
    pub fn describe(&self, item: &Item) -> String {
        match self {
            Reading::Value(v) => item.render(*v),
            Reading::Missing(why) => format!("not measured ({why})"),
            Reading::Failed(why) => format!("failed ({why})"),
        }
    }
}

/// One sampling pass: every item in use.
pub type Readings = HashMap<Item, Reading>;

/// What a rule's new sample means.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The rule has just become breached (once per breach).
    Breached {
        rule: usize,
        /// `2.1 GB > 2 GB (3 samples)` — what was measured against what.
        detail: String,
        /// The value in the item's words (`2.1 GB`, `failed (read-only)`).
        value: String,
    },
    /// A breached rule holds no more.
    Cleared { rule: usize, detail: String },
    /// A shorthand's value reached its warning level (once, re-armed below it).
    Warn {
        rule: usize,
        value: String,
        limit: String,
    },
}

/// What `status` shows of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleStatus {
    pub name: String,
    pub key: String,
    pub spec: String,
    pub action: RuleAction,
    /// The last sample, in words; `None` before the first.
    pub value: Option<String>,
    /// The mean of an average window, in words, once the window has samples.
    pub average: Option<String>,
    /// Consecutive breaching samples.
    pub streak: u32,
    /// Samples in the window so far and its size.
    pub window_filled: u32,
    pub window_len: u32,
    pub breached: bool,
}

/// One sample in an average window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
enum Slot {
    Value(f64),
    /// The probe itself failed (a broken filesystem): the window is breached.
    Failed,
    Missing,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Track {
    /// Consecutive breaching samples.
    streak: u32,
    /// Consecutive non-breaching samples (to clear).
    calm: u32,
    /// The last window_len samples (average windows).
    window: VecDeque<Slot>,
    breached: bool,
    warned: bool,
    last: Option<Reading>,
}

/// Every rule's window and breach state. Pure; serde data, so a re-executed controller
/// keeps every window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RuleEngine {
    rules: Vec<Rule>,
    tracks: Vec<Track>,
}

impl RuleEngine {
    pub fn new(rules: Vec<Rule>) -> RuleEngine {
        let tracks = vec![Track::default(); rules.len()];
        RuleEngine { rules, tracks }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn rule(&self, index: usize) -> Option<&Rule> {
        self.rules.get(index)
    }

    /// The items some rule watches, each once, in rule order.
    pub fn items(&self) -> Vec<Item> {
        let mut items: Vec<Item> = Vec::new();
        for rule in &self.rules {
            if !items.contains(&rule.item) {
                items.push(rule.item.clone());
            }
        }
        items
    }

    /// New rules (a reload): the state of a rule that is unchanged (same name and
    /// definition) is kept, so a reload neither re-fires nor forgets a breach.
    pub fn replace(&mut self, rules: Vec<Rule>) {
        let mut tracks = Vec::with_capacity(rules.len());
        for rule in &rules {
            let kept = self
                .rules
                .iter()
                .position(|old| old == rule)
                .map(|i| self.tracks[i].clone())
                .unwrap_or_default();
            tracks.push(kept);
        }
        self.rules = rules;
        self.tracks = tracks;
    }

    /// A new server process: windows start over. A breached kill rule is forgotten (the
    /// tree it judged is gone); a breached log/alert/failover rule stays breached until
    /// a full window clears it, so it neither alerts twice nor lets the outputs come
    /// back while, say, the host is still short of memory.
    pub fn reset(&mut self) {
        for (rule, track) in self.rules.iter().zip(self.tracks.iter_mut()) {
            let keep = track.breached && rule.action != RuleAction::Kill;
            *track = Track {
                breached: keep,
                ..Track::default()
            };
        }
    }

    /// Judge one sampling pass. Items a rule watches that are absent from `readings`
    /// count as missing.
    pub fn observe(&mut self, readings: &Readings) -> Vec<Verdict> {
        let mut verdicts = Vec::new();
        for (index, (rule, track)) in self.rules.iter().zip(self.tracks.iter_mut()).enumerate() {
            let reading = readings
                .get(&rule.item)
                .cloned()
                .unwrap_or_else(|| Reading::Missing("not sampled".into()));
            if let (Origin::Shorthand { warn_percent, .. }, Reading::Value(v)) =
                (&rule.origin, &reading)
            {
                warn_check(index, rule, *warn_percent, *v, track, &mut verdicts);
            }
            let n = rule.window_len();
            // Whether this sample breaches, and (averages) whether the window does.
            let sample_breach = match &reading {
                Reading::Value(v) => rule.op.holds(*v, rule.threshold),
                Reading::Missing(_) => rule.missing == Missing::Breach,
                Reading::Failed(_) => true,
            };
            if sample_breach {
                track.streak = track.streak.saturating_add(1);
                track.calm = 0;
            } else {
                track.streak = 0;
                track.calm = track.calm.saturating_add(1);
            }
            let judged: Option<(bool, String)> = match rule.window {
                Window::Samples(_) => {
                    if !track.breached && track.streak >= n {
                        Some((true, sample_detail(rule, &reading, n)))
                    } else if track.breached && track.calm >= n {
                        Some((false, sample_detail(rule, &reading, n)))
                    } else {
                        None
                    }
                }
                Window::Average { .. } => {
                    track.window.push_back(match &reading {
                        Reading::Value(v) => Slot::Value(*v),
                        Reading::Failed(_) => Slot::Failed,
                        Reading::Missing(_) => Slot::Missing,
                    });
                    while track.window.len() > n as usize {
                        track.window.pop_front();
                    }
                    if track.window.len() < n as usize {
                        None
                    } else {
                        let present = values(&track.window);
                        // A failed probe in the window is the worst value there is.
                        let failed = track.window.contains(&Slot::Failed);
                        let breach = if failed {
                            true
                        } else if present.is_empty() {
                            rule.missing == Missing::Breach
                        } else {
                            rule.op.holds(mean(&present), rule.threshold)
                        };
                        let mut detail = average_detail(rule, &present, n);
                        if failed {
                            detail.push_str(", a sample in the window failed");
                        }
                        (breach != track.breached).then_some((breach, detail))
                    }
                }
            };
            if let Some((breach, detail)) = judged {
                track.breached = breach;
                if breach {
                    verdicts.push(Verdict::Breached {
                        rule: index,
                        value: reading.describe(&rule.item),
                        detail,
                    });
                } else {
                    verdicts.push(Verdict::Cleared {
                        rule: index,
                        detail,
                    });
                }
            }
            track.last = Some(reading);
        }
        verdicts
    }

    pub fn status(&self) -> Vec<RuleStatus> {
        self.rules
            .iter()
            .zip(self.tracks.iter())
            .map(|(rule, track)| {
                let present = values(&track.window);
                let average = match rule.window {
                    Window::Average { .. } if !present.is_empty() => {
                        Some(rule.item.render(mean(&present)))
                    }
                    _ => None,
                };
                let window_filled = match rule.window {
                    Window::Samples(n) => track.streak.min(n),
                    Window::Average { .. } => track.window.len() as u32,
                };
                RuleStatus {
                    name: rule.name.clone(),
                    key: rule.key(),
                    spec: rule.spec(),
                    action: rule.action,
                    value: track.last.as_ref().map(|r| r.describe(&rule.item)),
                    average,
                    streak: track.streak,
                    window_filled,
                    window_len: rule.window_len(),
                    breached: track.breached,
                }
            })
            .collect()
    }
}

fn values(window: &VecDeque<Slot>) -> Vec<f64> {
    window
        .iter()
        .filter_map(|slot| match slot {
            Slot::Value(v) => Some(*v),
            _ => None,
        })
        .collect()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

fn warn_check(
    index: usize,
    rule: &Rule,
    warn_percent: u32,
    value: f64,
    track: &mut Track,
    verdicts: &mut Vec<Verdict>,
) {
    if warn_percent == 0 {
        return;
    }
    let warn = f64::from(warn_percent) / 100.0;
    let near = if rule.op.is_minimum() {
        value * warn <= rule.threshold
    } else {
        value >= rule.threshold * warn
    };
    if near && !track.warned {
        track.warned = true;
        verdicts.push(Verdict::Warn {
            rule: index,
            value: rule.item.render(value),
            limit: rule.item.render(rule.threshold),
        });
    } else if !near {
        track.warned = false;
    }
}

fn sample_detail(rule: &Rule, reading: &Reading, n: u32) -> String {
    let samples = if n == 1 {
        "1 sample".to_string()
    } else {
        format!("{n} samples")
    };
    match reading {
        Reading::Value(v) => format!(
            "{} {} {}, {samples}",
            rule.item.render(*v),
            rule.op.relation(*v, rule.threshold),
            rule.item.render(rule.threshold)
        ),
        other => format!("{}, {samples}", other.describe(&rule.item)),
    }
}

fn average_detail(rule: &Rule, present: &[f64], n: u32) -> String {
    if present.is_empty() {
        return format!("no sample could be taken in the last {n}");
    }
    let average = mean(present);
    format!(
        "average {} {} {} over the last {n} samples",
        rule.item.render(average),
        rule.op.relation(average, rule.threshold),
        rule.item.render(rule.threshold)
    )
}

/// The shorthand's long-standing words for an exhaustion: `1200 MB > 1000 MB`.
pub fn shorthand_detail(rule: &Rule, reading_value: &str) -> String {
    format!(
        "{reading_value} {} {}",
        rule.op.as_str(),
        rule.item.render(rule.threshold)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: f64 = 1024.0 * 1024.0;

    fn rule(text: &str) -> Rule {
        parse_rule("R", text, 3, Duration::from_secs(10), Path::new("/data")).unwrap()
    }

    fn err(text: &str) -> String {
        parse_rule("R", text, 3, Duration::from_secs(10), Path::new("/data")).unwrap_err()
    }

    #[test]
    fn a_log_line_states_the_true_relation() {
        assert_eq!(Op::Gt.relation(41.0, 120.0), "<=");
        assert_eq!(Op::Gt.relation(121.0, 120.0), ">");
        assert_eq!(Op::Ge.relation(119.0, 120.0), "<");
        assert_eq!(Op::Lt.relation(5.0, 1.0), ">=");
        assert_eq!(Op::Le.relation(2.0, 1.0), ">");
        assert_eq!(Op::Le.relation(1.0, 1.0), "<=");
        let r = rule("memory > 120MB samples 1 action=log");
        assert_eq!(
            sample_detail(&r, &Reading::Value(41.0 * MB), 1),
            "41 MB <= 120 MB, 1 sample"
        );
        let r = rule("memory > 120MB average 2 action=log");
        assert_eq!(
            average_detail(&r, &[100.0 * MB, 110.0 * MB], 2),
            "average 105 MB <= 120 MB over the last 2 samples"
        );
    }

    #[test]
    fn reload_names_added_removed_and_changed_rules() {
        let named = |name: &str, text: &str| {
            parse_rule(name, text, 3, Duration::from_secs(10), Path::new("/data")).unwrap()
        };
        let shorthand = Shorthands {
            max_memory: 800 * 1024 * 1024,
            max_cpu: 0,
            max_open_files: 0,
            max_threads: 0,
            min_disk_free: 0,
            max_memory_pressure: 0,
            max_cpu_pressure: 0,
            max_io_pressure: 0,
            samples: 3,
            warn_percent: 80,
            data_directory: PathBuf::from("/data"),
        }
        .rules();
        let mut before = shorthand.clone();
        before.extend([
            named("LEAK", "memory > 2GB average 30 action=alert"),
            named("LOAD", "load1 > 8 action=log"),
            named("SAME", "threads > 500 action=log"),
        ]);
        let mut after = vec![
            named("SAME", "threads > 500 samples 3 action=log"),
            named("LEAK", "memory > 2048MB average 60 action=alert"),
            named("DISK", "disk_free:/var < 1GB action=failover"),
        ];
        after.extend(shorthand);
        assert_eq!(
            rule_changes(&before, &after),
            vec![
                "QOS_RULE_LEAK changed: memory > 2048 MB average 30 missing=ok action=alert -> memory > 2048 MB average 60 missing=ok action=alert",
                "QOS_RULE_DISK added: disk_free:/var < 1024 MB samples 3 missing=ok action=failover",
                "QOS_RULE_LOAD removed (was: load1 > 8.00 samples 3 missing=ok action=log)",
            ],
            "SAME is written differently but means the same; the shorthand is left to its key line"
        );
        assert!(rule_changes(&after, &after).is_empty());
    }

    #[test]
    fn grammar() {
        let r = rule("memory > 2GB average 5m missing=breach action=alert");
        assert_eq!(r.item, Item::Memory);
        assert_eq!(r.op, Op::Gt);
        assert_eq!(r.threshold, 2048.0 * MB);
        assert_eq!(
            r.window,
            Window::Average {
                samples: 30,
                written: Some(Duration::from_secs(300))
            }
        );
        assert_eq!(r.missing, Missing::Breach);
        assert_eq!(r.action, RuleAction::Alert);
        assert_eq!(
            r.spec(),
            "memory > 2048 MB average 5 minutes missing=breach action=alert"
        );
        let r = rule("write_latency>=500ms action=failover");
        assert_eq!(
            (r.item.clone(), r.op, r.threshold),
            (Item::WriteLatency, Op::Ge, 500.0)
        );
        assert_eq!(r.window, Window::Samples(3));
        let r = rule("disk_free:spool <1GB samples 2 action=log");
        assert_eq!(r.item, Item::DiskFree(PathBuf::from("/data/spool")));
        assert_eq!(r.window, Window::Samples(2));
        let r = rule("load1 > 7.5 average 6 action=kill");
        assert_eq!(r.threshold, 7.5);
        assert_eq!(
            r.window,
            Window::Average {
                samples: 6,
                written: None
            }
        );
        let r = rule("HOST_CPU > 90% action=log");
        assert_eq!((r.item, r.threshold), (Item::HostCpu, 90.0));
        assert_eq!(rule("write_latency > 2s action=log").threshold, 2000.0);
        assert_eq!(rule("io_pressure >= 40 action=log").item, Item::IoPressure);
    }

    #[test]
    fn grammar_errors_say_what_was_expected() {
        assert!(err("memory > 2GB").contains("no action"));
        assert!(err("memroy > 2GB action=kill").contains("unknown item \"memroy\""));
        assert!(err("memory = 2GB action=kill").contains("no comparison"));
        assert!(err("memory > lots action=kill").contains("memory threshold"));
        assert!(err("memory > 2GB action=explode").contains("not an action"));
        assert!(err("memory > 2GB samples 0 action=kill").contains("samples \"0\""));
        assert!(err("memory > 2GB average soon action=kill").contains("average \"soon\""));
        assert!(err("memory > 2GB samples 2 average 3 action=kill").contains("either"));
        assert!(err("memory > 2GB missing=maybe action=kill").contains("missing=breach"));
        assert!(err("memory > 2GB action=kill extra").contains("unexpected \"extra\""));
        assert!(err("disk_free < 1GB action=kill").contains("needs a path"));
        assert!(err("cpu > 9x% action=kill").contains("cpu threshold"));
        assert!(parse_rule(
            "BAD NAME",
            "cpu > 1 action=log",
            3,
            Duration::from_secs(1),
            Path::new("/")
        )
        .unwrap_err()
        .contains("rule name"));
    }

    fn readings(item: Item, reading: Reading) -> Readings {
        HashMap::from([(item, reading)])
    }

    fn v(x: f64) -> Readings {
        readings(Item::Memory, Reading::Value(x * MB))
    }

    #[test]
    fn consecutive_samples_breach_once_and_clear_after_as_many_calm_samples() {
        let mut e = RuleEngine::new(vec![rule("memory > 100MB samples 3 action=alert")]);
        assert!(e.observe(&v(150.0)).is_empty());
        assert!(e.observe(&v(150.0)).is_empty());
        let third = e.observe(&v(150.0));
        assert!(matches!(
            &third[..],
            [Verdict::Breached { rule: 0, detail, .. }] if detail == "150 MB > 100 MB, 3 samples"
        ));
        assert!(e.observe(&v(150.0)).is_empty(), "once per breach");
        assert!(e.observe(&v(50.0)).is_empty());
        assert!(e.observe(&v(50.0)).is_empty());
        assert!(matches!(
            &e.observe(&v(50.0))[..],
            [Verdict::Cleared { rule: 0, .. }]
        ));
        assert!(!e.status()[0].breached);
    }

    #[test]
    fn a_dip_restarts_the_count() {
        let mut e = RuleEngine::new(vec![rule("memory > 100MB samples 2 action=log")]);
        assert!(e.observe(&v(150.0)).is_empty());
        assert!(e.observe(&v(90.0)).is_empty());
        assert!(e.observe(&v(150.0)).is_empty());
        assert_eq!(e.observe(&v(150.0)).len(), 1);
    }

    #[test]
    fn average_smooths_spikes_and_catches_a_slow_climb() {
        let mut e = RuleEngine::new(vec![rule("memory > 100MB average 4 action=alert")]);
        // A spike far over the limit does not move a mean of four past it.
        for x in [50.0, 50.0, 50.0, 240.0, 50.0, 50.0, 50.0, 50.0] {
            assert!(e.observe(&v(x)).is_empty(), "{x}");
        }
        // A climb: 65, 82.5, then 102.5 MB on average.
        assert!(e.observe(&v(110.0)).is_empty());
        assert!(e.observe(&v(120.0)).is_empty());
        assert_eq!(e.observe(&v(130.0)).len(), 1);
    }

    #[test]
    fn average_breaches_on_the_mean_and_clears_when_it_drops() {
        let mut e = RuleEngine::new(vec![rule("memory > 100MB average 3 action=alert")]);
        assert!(e.observe(&v(300.0)).is_empty(), "window not full");
        assert!(e.observe(&v(0.0)).is_empty(), "window not full");
        // 300 + 0 + 0 = 100: not over.
        assert!(e.observe(&v(0.0)).is_empty());
        assert!(e.observe(&v(150.0)).is_empty()); // 0 0 150 = 50
        assert!(e.observe(&v(150.0)).is_empty()); // 0 150 150 = 100
        let v6 = e.observe(&v(150.0)); // 150
        assert!(
            matches!(&v6[..], [Verdict::Breached { detail, .. }] if detail == "average 150 MB > 100 MB over the last 3 samples"),
            "{v6:?}"
        );
        // 150 150 0 = 100: not over any more.
        assert!(matches!(
            &e.observe(&v(0.0))[..],
            [Verdict::Cleared { rule: 0, .. }]
        ));
    }

    #[test]
    fn missing_samples_ok_or_breach() {
        let miss = || readings(Item::Load1, Reading::Missing("no /proc/loadavg".into()));
        let mut ok = RuleEngine::new(vec![rule("load1 > 4 samples 2 action=log")]);
        let mut breach =
            RuleEngine::new(vec![rule("load1 > 4 samples 2 missing=breach action=log")]);
        for e in [&mut ok, &mut breach] {
            assert!(e
                .observe(&readings(Item::Load1, Reading::Value(9.0)))
                .is_empty());
        }
        assert!(
            ok.observe(&miss()).is_empty(),
            "missing=ok resets the streak"
        );
        assert_eq!(breach.observe(&miss()).len(), 1, "missing=breach counts");
        // Averages: missing samples are left out; a window with none taken is a breach
        // only with missing=breach.
        let mut avg_ok = RuleEngine::new(vec![rule("load1 > 4 average 2 action=log")]);
        let mut avg_breach =
            RuleEngine::new(vec![rule("load1 > 4 average 2 missing=breach action=log")]);
        for e in [&mut avg_ok, &mut avg_breach] {
            e.observe(&readings(Item::Load1, Reading::Value(1.0)));
            assert!(e.observe(&miss()).is_empty(), "mean of the one taken: 1");
        }
        assert!(avg_ok.observe(&miss()).is_empty());
        assert_eq!(avg_breach.observe(&miss()).len(), 1);
        // An item no pass provides is missing.
        let mut absent = RuleEngine::new(vec![rule("cpu > 1 samples 1 missing=breach action=log")]);
        assert_eq!(absent.observe(&Readings::new()).len(), 1);
    }

    #[test]
    fn a_failed_write_probe_breaches_whatever_missing_says() {
        let mut e = RuleEngine::new(vec![rule(
            "write_latency > 500ms samples 2 action=failover",
        )]);
        let failed = readings(
            Item::WriteLatency,
            Reading::Failed("read-only file system".into()),
        );
        assert!(e.observe(&failed).is_empty());
        let v = e.observe(&failed);
        assert!(
            matches!(&v[..], [Verdict::Breached { value, .. }] if value == "failed (read-only file system)"),
            "{v:?}"
        );
        let mut avg = RuleEngine::new(vec![rule("write_latency > 500ms average 2 action=log")]);
        avg.observe(&readings(Item::WriteLatency, Reading::Value(3.0)));
        assert_eq!(avg.observe(&failed).len(), 1);
    }

    #[test]
    fn shorthands_warn_once_and_use_their_words() {
        let rules = Shorthands {
            max_memory: (1000.0 * MB) as u64,
            max_cpu: 0,
            max_open_files: 0,
            max_threads: 0,
            min_disk_free: (1000.0 * MB) as u64,
            max_memory_pressure: 0,
            max_cpu_pressure: 0,
            max_io_pressure: 0,
            samples: 3,
            warn_percent: 80,
            data_directory: PathBuf::from("/data"),
        }
        .rules();
        assert_eq!(rules.len(), 2);
        assert_eq!(
            rules[0].spec(),
            "memory > 1000 MB samples 3 missing=ok action=kill"
        );
        assert_eq!(
            rules[1].spec(),
            "disk_free:/data < 1000 MB samples 3 missing=ok action=kill"
        );
        let mut e = RuleEngine::new(rules);
        let mut pass = |mem: f64, disk: f64| {
            e.observe(&HashMap::from([
                (Item::Memory, Reading::Value(mem * MB)),
                (
                    Item::DiskFree(PathBuf::from("/data")),
                    Reading::Value(disk * MB),
                ),
            ]))
        };
        let first = pass(1200.0, 100_000.0);
        assert_eq!(
            first,
            vec![Verdict::Warn {
                rule: 0,
                value: "1200 MB".into(),
                limit: "1000 MB".into()
            }]
        );
        assert!(pass(1200.0, 100_000.0).is_empty());
        let third = pass(1200.0, 1200.0);
        assert_eq!(third.len(), 2, "{third:?}");
        assert!(
            matches!(&third[0], Verdict::Breached { rule: 0, value, .. } if value == "1200 MB")
        );
        assert!(matches!(&third[1], Verdict::Warn { rule: 1, .. }));
    }

    #[test]
    fn reset_forgets_kill_breaches_but_keeps_failover_holds() {
        let mut e = RuleEngine::new(vec![
            rule("memory > 100MB samples 1 action=kill"),
            parse_rule(
                "F",
                "memory > 100MB samples 1 action=failover",
                3,
                Duration::from_secs(10),
                Path::new("/"),
            )
            .unwrap(),
        ]);
        assert_eq!(e.observe(&v(150.0)).len(), 2);
        e.reset();
        let breached: Vec<String> = e
            .status()
            .into_iter()
            .filter(|s| s.breached)
            .map(|s| s.name)
            .collect();
        assert_eq!(breached, vec!["F"]);
        // The kill rule fires again for the new tree; the failover rule clears on calm.
        let again = e.observe(&v(150.0));
        assert!(matches!(&again[..], [Verdict::Breached { rule: 0, .. }]));
        let calm = e.observe(&v(50.0));
        assert_eq!(calm.len(), 2, "{calm:?}");
    }

    #[test]
    fn reload_keeps_the_state_of_unchanged_rules() {
        let a = rule("memory > 100MB samples 1 action=alert");
        let mut e = RuleEngine::new(vec![a.clone()]);
        assert_eq!(e.observe(&v(150.0)).len(), 1);
        e.replace(vec![a, rule("cpu > 50 samples 1 action=log")]);
        assert!(e.status()[0].breached);
        assert!(!e.status()[1].breached);
        assert!(e
            .observe(&v(150.0))
            .iter()
            .all(|x| !matches!(x, Verdict::Breached { rule: 0, .. })));
    }

    #[test]
    fn windows_survive_a_serde_round_trip() {
        // `qoscntrlr reexec` hands the engine to the next image as JSON.
        let mut e = RuleEngine::new(vec![rule("write_latency > 500ms average 3 action=log")]);
        e.observe(&readings(Item::WriteLatency, Reading::Value(3.0)));
        e.observe(&readings(
            Item::WriteLatency,
            Reading::Failed("hung".into()),
        ));
        let json = serde_json::to_string(&e).unwrap();
        let mut back: RuleEngine = serde_json::from_str(&json).unwrap();
        assert_eq!(back.status(), e.status());
        // The failed slot is still in the window: the third sample breaches.
        let v = back.observe(&readings(Item::WriteLatency, Reading::Value(1.0)));
        assert_eq!(v.len(), 1, "{v:?}");
    }

    #[test]
    fn rendering() {
        assert_eq!(Item::Cpu.render(95.4), "95%");
        assert_eq!(Item::HostMemory.render(7.25), "7.2%");
        assert_eq!(Item::Load1.render(2.0), "2.00");
        assert_eq!(Item::WriteLatency.render(3.21), "3.2 ms");
        assert_eq!(Item::WriteLatency.render(f64::INFINITY), "unmeasurable");
        assert_eq!(Item::Threads.render(12.0), "12");
        assert_eq!(Item::MemoryPressure.render(72.5), "72.5%");
        assert_eq!(Item::IoPressure.render(60.0), "60%");
    }
}
