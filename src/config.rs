//! The `dcontroller.ini` reader: every key of dcontroller.ini(5), parsed once into validated
//! types. Owns the line reader, the value parsers, error reporting (`FILE:LINE: KEY: …`),
//! the checks across keys and the `QOS_RULE_<NAME>` lines; what each key is — name,
//! default, unit, reload, secret, doc, how it is read and shown — is its row in the key
//! table (`config/keys.rs`), which drives the effective-configuration lines shared by
//! `check-config` and the log header.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::core::units::{format_duration, DurationStyle};
/// The value texts (`30s`, `512M`, `5 minutes`) are the core's (`core::units`), shared with the
/// rule grammar; the reader and its callers name them here.
pub use crate::core::units::{parse_duration, parse_size};
use crate::core::units::{unit_name, unquote, MIB};
pub use crate::core::FailbackMode;

mod keys;
pub use keys::{
    keep_start_only, secrecy, start_only_keys, Key, Reload, Secret, Syntax, KEYS, KNOWN_KEYS,
    REFERENCE_HEADER, SECRET_WORDS,
};

/// What `QOS_PROBE` asks the controller to do once per interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeTarget {
    /// `http://host:port/path`: GET, 2xx/3xx is a success.
    Http {
        host: String,
        port: u16,
        path: String,
    },
    /// `tcp://host:port`: a connect is a success.
    Tcp { host: String, port: u16 },
    /// `exec:COMMAND`: exit status 0 within the attempt is a success (shell words, no shell).
    Exec { argv: Vec<String> },
    /// `message`: the server reports probe results on the pipe.
    Message,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MailTls {
    #[default]
    None,
    StartTls,
    Tls,
}

/// The validated configuration in force. Each field is read, defaulted and shown by its
/// row of the key table ([`KEYS`]); `Config::default()` is only the blank a reading
/// starts from, not the keys' defaults (read an empty file for those).
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The file this was read from (absolute when it could be made so).
    pub source: PathBuf,
    pub server_name: String,
    /// Program and arguments, never empty.
    pub server_command: Vec<String>,
    pub server_directory: PathBuf,
    pub server_user: Option<String>,
    pub server_group: Option<String>,
    pub server_stop_command: Option<Vec<String>>,
    /// Signal number sent to the server's process group to quit.
    pub server_stop_signal: i32,
    pub data_directory: PathBuf,
    pub qos_enable: bool,
    pub probe: Option<ProbeTarget>,
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    pub disable_probing: bool,
    pub apps_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub restart_timeout: Duration,
    pub restart_limit_enable: bool,
    pub restart_limit_maximum: u32,
    pub restart_limit_period: Duration,
    /// Zero means never.
    pub auto_fault_clear: Duration,
    pub nokill: bool,
    /// `None`: the built-in collector.
    pub nsd_path: Option<Vec<String>>,
    pub nsd_timeout: Duration,
    /// Zero means off.
    pub shutdown_nsd: Duration,
    pub diag_retention_days: u32,
    pub diag_max_size: u64,
    pub disable_failover_trigger: bool,
    pub failover_hook: Option<Vec<String>>,
    pub recovery_hook: Option<Vec<String>>,
    pub log_retention_days: u32,
    pub log_max_size: u64,
    pub pipe: PathBuf,
    pub control_socket: PathBuf,
    pub control_group: Option<String>,
    pub resource_interval: Duration,
    pub resource_samples: u32,
    /// Bytes; zero means off.
    pub max_memory: u64,
    /// Percent of one core; zero means off.
    pub max_cpu: u32,
    pub max_open_files: u64,
    pub max_threads: u64,
    /// Bytes; zero means off.
    pub min_disk_free: u64,
    pub resource_warn_percent: u32,
    /// `QOS_CGROUP`: contain the server in its own cgroup v2.
    pub cgroup: crate::cgroup::CgroupSetting,
    /// PSI `some avg10` limits of the server's cgroup, percent; zero means off.
    pub max_memory_pressure: u32,
    pub max_cpu_pressure: u32,
    pub max_io_pressure: u32,
    pub mail_to: Vec<String>,
    pub mail_smtp_server: Option<(String, u16)>,
    pub mail_from: Option<String>,
    pub mail_tls: MailTls,
    pub mail_user: Option<String>,
    pub mail_password_file: Option<PathBuf>,
    pub readiness_listen: Option<SocketAddr>,
    pub agent_listen: Option<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
    /// `QOS_RULE_<NAME>` rules, in file order (the shorthands are in [`Config::rules`]).
    pub custom_rules: Vec<crate::rules::Rule>,
    /// `QOS_ALERT_WEBHOOK`: every alert is also POSTed here as JSON.
    pub alert_webhook: Option<crate::webhook::WebhookUrl>,
    /// `QOS_ALERT_WEBHOOK_HEADER`: one `Name: value` header (a secret: never printed).
    pub alert_webhook_header: Option<(String, String)>,
    /// `QOS_ALERT_WEBHOOK_CA`: PEM certificates trusted for an https webhook, besides the
    /// system's store.
    pub alert_webhook_ca: Option<PathBuf>,
    /// `None`: the default, min(QOS_PROBE_INTERVAL, QOS_PROBE_TIMEOUT).
    pub probe_attempt_timeout: Option<Duration>,
    pub restart_delay: Duration,
    /// Zero means off.
    pub online_trust_time: Duration,
    pub failback_hold: Duration,
    pub failback: FailbackMode,
}

impl Config {
    /// The time limit of one probe attempt: QOS_PROBE_ATTEMPT_TIMEOUT, by default the
    /// shorter of the interval and the timeout (an attempt never outlives either).
    pub fn effective_probe_attempt_timeout(&self) -> Duration {
        self.probe_attempt_timeout
            .unwrap_or_else(|| self.probe_interval.min(self.probe_timeout))
    }

    /// Every rule in force: the shorthand keys' kill rules first, then the
    /// `QOS_RULE_<NAME>` rules in file order.
    pub fn rules(&self) -> Vec<crate::rules::Rule> {
        let mut rules = crate::rules::Shorthands {
            max_memory: self.max_memory,
            max_cpu: self.max_cpu,
            max_open_files: self.max_open_files,
            max_threads: self.max_threads,
            min_disk_free: self.min_disk_free,
            max_memory_pressure: self.max_memory_pressure,
            max_cpu_pressure: self.max_cpu_pressure,
            max_io_pressure: self.max_io_pressure,
            samples: self.resource_samples,
            warn_percent: self.resource_warn_percent,
            data_directory: self.data_directory.clone(),
        }
        .rules();
        rules.extend(self.custom_rules.iter().cloned());
        rules
    }

    /// One line per rule in force, for `check-config` and the log header:
    /// `Rule QOS_RULE_MEMLEAK: memory > 2048 MB average 30 missing=ok action=alert`.
    pub fn rule_lines(&self) -> Vec<String> {
        self.rules()
            .iter()
            .map(|rule| format!("Rule {}: {}", rule.key(), rule.spec()))
            .collect()
    }

    /// Probing is on: QoS enabled, probing not disabled, and a probe configured.
    pub fn probing_enabled(&self) -> bool {
        self.qos_enable && !self.disable_probing && self.probe.is_some()
    }

    /// The slice of the configuration the core decides with. Built here, so the core
    /// never depends on the reader.
    pub fn policy(&self) -> crate::core::Policy {
        crate::core::Policy {
            server_name: self.server_name.clone(),
            qos_enable: self.qos_enable,
            probing: self.probing_enabled(),
            probe_by_message: matches!(self.probe, Some(ProbeTarget::Message)),
            probe_interval: self.probe_interval,
            probe_timeout: self.probe_timeout,
            apps_timeout: self.apps_timeout,
            shutdown_timeout: self.shutdown_timeout,
            restart_timeout: self.restart_timeout,
            restart_limit_enable: self.restart_limit_enable,
            restart_limit_maximum: self.restart_limit_maximum,
            restart_limit_period: self.restart_limit_period,
            auto_fault_clear: self.auto_fault_clear,
            nokill: self.nokill,
            nsd_timeout: self.nsd_timeout,
            shutdown_nsd: self.shutdown_nsd,
            failover_trigger_disabled: self.disable_failover_trigger,
            rules: self.rules(),
            probe_attempt_timeout: self.effective_probe_attempt_timeout(),
            restart_delay: self.restart_delay,
            online_trust_time: self.online_trust_time,
            failback_hold: self.failback_hold,
            failback: self.failback,
        }
    }
}

/// One finding of the reader: `FILE:LINE: KEY: what is wrong (expected …)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: PathBuf,
    /// 1-based; 0 when the finding is about the file as a whole (e.g. a missing key).
    pub line: usize,
    /// Empty when the finding is about the file or a line, not a key.
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        // Line 0 means "the file as a whole": `FILE:0:` would send operators looking for
        // a line that does not exist.
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A configuration that was read and validated, with the warnings met on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Finding>,
    /// The line each key was set on (canonical key names), for findings about values
    /// checked after reading (`check-config`'s checks of programs, users, directories).
    pub key_lines: std::collections::BTreeMap<&'static str, usize>,
}

/// Every error of a file that could not be accepted, all at once.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} configuration error(s) in {}", .errors.len(), .file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    pub errors: Vec<Finding>,
    pub warnings: Vec<Finding>,
}

/// The known key nearest to a misspelt one, when it is near enough to be a likely typo.
pub fn suggest_key(written: &str) -> Option<&'static str> {
    let upper = written.trim().to_ascii_uppercase();
    let (best, distance) = KNOWN_KEYS
        .iter()
        .map(|k| (*k, strsim::levenshtein(&upper, k)))
        .min_by_key(|(_, d)| *d)?;
    // Up to a third of the key may be wrong (at least 2 edits): catches dropped letters,
    // swapped words' separators and a missing `QOS_` prefix, but not unrelated keys.
    let limit = (best.len() / 3).max(2);
    (distance <= limit).then_some(best)
}

/// Largest `dcontroller.ini` read (a real one is a few KiB).
pub const CONFIG_MAX_BYTES: u64 = 1024 * 1024;

/// Read and validate `path`.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let (bytes, source) = read_source(path)?;
    parse_bytes(&bytes, &source)
}

/// Read `path` for a client command: errors in the keys it needs ([`Key::client`]: where
/// the sockets and the logs are), and a file that cannot be read, are errors; every other
/// error becomes a warning, and the paths are taken from the file as far as it could be
/// read.
pub fn load_for_client(path: &Path) -> Result<Loaded, ConfigError> {
    let (bytes, source) = read_source(path)?;
    let (config, errors, mut warnings, key_lines) = parse_parts(&bytes, &source);
    let (errors, demoted): (Vec<Finding>, Vec<Finding>) = errors
        .into_iter()
        .partition(|f| keys::key(&f.key).is_some_and(|key| key.client));
    warnings.extend(demoted);
    warnings.sort_by_key(|f| (f.line == 0, f.line));
    if errors.is_empty() {
        Ok(Loaded {
            config,
            warnings,
            key_lines,
        })
    } else {
        Err(ConfigError {
            file: source,
            errors,
            warnings,
        })
    }
}

fn read_source(path: &Path) -> Result<(Vec<u8>, PathBuf), ConfigError> {
    let source = absolute(path);
    // A regular file of bounded size only: `-c /dev/zero` must not grow the controller
    // without end, nor `-c some.fifo` block it.
    match crate::safefs::read_regular_following(path, CONFIG_MAX_BYTES) {
        Ok(bytes) => Ok((bytes, source)),
        Err(e) => Err(ConfigError {
            file: source.clone(),
            errors: vec![Finding {
                file: source,
                line: 0,
                key: String::new(),
                message: format!(
                    "cannot read the configuration file: {} (expected a readable dcontroller.ini; \
                     set it with -c FILE or $QOSCNTRLR_CONFIG)",
                    io_reason(&e)
                ),
            }],
            warnings: Vec::new(),
        }),
    }
}

/// Parse `text` as if it were the contents of `file` (relative paths resolve against the
/// file's directory; the file itself is not read).
pub fn parse_str(text: &str, file: &Path) -> Result<Loaded, ConfigError> {
    parse_bytes(text.as_bytes(), &absolute(file))
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// One `KEY=VALUE` line as read, before typing.
#[derive(Debug, Clone)]
struct Entry {
    line: usize,
    value: String,
}

struct Reader {
    file: PathBuf,
    entries: HashMap<&'static str, Entry>,
    /// `QOS_RULE_<NAME>` lines: (line, NAME upper-cased, value), in file order.
    rules: Vec<(usize, String, String)>,
    errors: Vec<Finding>,
    warnings: Vec<Finding>,
}

impl Reader {
    fn finding(&self, line: usize, key: &str, message: String) -> Finding {
        Finding {
            file: self.file.clone(),
            line,
            key: key.to_string(),
            message,
        }
    }

    fn error(&mut self, line: usize, key: &str, message: String) {
        let finding = self.finding(line, key, message);
        self.errors.push(finding);
    }

    fn warning(&mut self, line: usize, key: &str, message: String) {
        let finding = self.finding(line, key, message);
        self.warnings.push(finding);
    }

    fn line_of(&self, key: &str) -> usize {
        self.entries.get(key).map_or(0, |e| e.line)
    }

    fn is_set(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// The typed value of `key`, or `default` when it is absent or wrong (a wrong value
    /// is recorded as an error, so the default never reaches a running controller).
    fn get<T>(&mut self, key: &str, default: T, parse: impl Fn(&str) -> Result<T, String>) -> T {
        let Some(entry) = self.entries.get(key).cloned() else {
            return default;
        };
        match parse(&entry.value) {
            Ok(value) => value,
            Err(message) => {
                self.error(entry.line, key, message);
                default
            }
        }
    }

    /// Like [`Reader::get`] for keys without a default: an empty value means unset.
    fn get_opt<T>(&mut self, key: &str, parse: impl Fn(&str) -> Result<T, String>) -> Option<T> {
        let entry = self.entries.get(key).cloned()?;
        if entry.value.is_empty() {
            return None;
        }
        match parse(&entry.value) {
            Ok(value) => Some(value),
            Err(message) => {
                self.error(entry.line, key, message);
                None
            }
        }
    }

    /// The value another key's row would read, without reporting its errors (that row
    /// does): for a default that depends on another key.
    fn peek<T>(&self, key: &str, parse: impl Fn(&str) -> Result<T, String>) -> Option<T> {
        self.entries
            .get(key)
            .and_then(|entry| parse(&entry.value).ok())
    }

    /// A duration; a bare number is in the unit of the key's [`Syntax::Duration`].
    fn duration(&mut self, key: &Key, default: Duration) -> Duration {
        let unit = match key.syntax {
            Syntax::Duration(unit) => unit,
            // Invariant of the table (tested): only duration rows read durations.
            _ => SECOND,
        };
        self.get(key.name, default, |v| parse_duration(v, unit))
    }

    fn boolean(&mut self, key: &Key, default: bool) -> bool {
        self.get(key.name, default, parse_bool)
    }

    fn size(&mut self, key: &Key, default_mb: u64) -> u64 {
        self.get(key.name, default_mb * MIB, |v| parse_size(v, MIB))
    }

    fn count<T: std::str::FromStr>(&mut self, key: &Key, default: T) -> T {
        self.get(key.name, default, parse_count)
    }

    fn percent(&mut self, key: &Key, default: u32) -> u32 {
        self.get(key.name, default, parse_percent)
    }

    fn text(&mut self, key: &Key) -> Option<String> {
        self.get_opt(key.name, |v| Ok(unquote(v).to_string()))
    }

    fn path(&mut self, key: &Key) -> Option<PathBuf> {
        self.get_opt(key.name, |v| Ok(PathBuf::from(unquote(v))))
    }

    fn command(&mut self, key: &Key) -> Option<Vec<String>> {
        self.get_opt(key.name, parse_command)
    }
}

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

fn parse_bytes(bytes: &[u8], source: &Path) -> Result<Loaded, ConfigError> {
    let (config, errors, warnings, key_lines) = parse_parts(bytes, source);
    if errors.is_empty() {
        Ok(Loaded {
            config,
            warnings,
            key_lines,
        })
    } else {
        Err(ConfigError {
            file: source.to_path_buf(),
            errors,
            warnings,
        })
    }
}

/// The configuration as far as it could be read (a wrong value leaves that key's
/// default), with every error and warning, each in line order.
fn parse_parts(bytes: &[u8], source: &Path) -> Parts {
    let mut reader = Reader {
        file: source.to_path_buf(),
        entries: HashMap::new(),
        rules: Vec::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    for (index, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        read_line(&mut reader, index + 1, raw);
    }
    let config = build(&mut reader, source);
    let mut errors = std::mem::take(&mut reader.errors);
    let mut warnings = std::mem::take(&mut reader.warnings);
    // Line order, whole-file findings last: the order an operator fixes them in.
    errors.sort_by_key(|f| (f.line == 0, f.line));
    warnings.sort_by_key(|f| (f.line == 0, f.line));
    let key_lines = reader.entries.iter().map(|(k, e)| (*k, e.line)).collect();
    (config, errors, warnings, key_lines)
}

/// Where the documentation's example file pretends to live: its directory stands for
/// "the directory of the configuration file" in [`documented_defaults`].
pub const DOC_INI_DIR: &str = "/@INI_DIR@";

/// The configuration every key's default makes, for the man page: read from a file in
/// [`DOC_INI_DIR`] that sets only what is required (`SERVER_COMMAND=server`,
/// `QOS_PROBE=message`). Show a key's default with [`Key::shown`].
pub fn documented_defaults() -> Config {
    let source = PathBuf::from(format!("{DOC_INI_DIR}/dcontroller.ini"));
    let mut reader = Reader {
        file: source.clone(),
        entries: HashMap::new(),
        rules: Vec::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    for (index, line) in ["SERVER_COMMAND=server", "QOS_PROBE=message"]
        .iter()
        .enumerate()
    {
        read_line(&mut reader, index + 1, line.as_bytes());
    }
    build(&mut reader, &source)
}

/// What [`parse_parts`] read: the configuration, errors, warnings, lines of the keys.
type Parts = (
    Config,
    Vec<Finding>,
    Vec<Finding>,
    std::collections::BTreeMap<&'static str, usize>,
);

fn read_line(reader: &mut Reader, line: usize, raw: &[u8]) {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let Ok(text) = std::str::from_utf8(raw) else {
        reader.error(
            line,
            "",
            "line is not valid UTF-8 (expected a UTF-8 text file)".into(),
        );
        return;
    };
    let text = text.trim();
    if text.is_empty() || text.starts_with('#') || text.starts_with(';') {
        return;
    }
    let Some((written_key, raw_value)) = text.split_once('=') else {
        let shown: String = text.chars().take(40).collect();
        reader.error(
            line,
            &shown,
            "line has no '=' (expected KEY=VALUE, or a comment starting with # or ;)".into(),
        );
        return;
    };
    let written_key = written_key.trim();
    if written_key.is_empty() {
        reader.error(
            line,
            "",
            "line has no key before '=' (expected KEY=VALUE)".into(),
        );
        return;
    }
    if let Some(name) = rule_name(written_key) {
        let value = strip_inline_comment(raw_value, false).trim().to_string();
        let key = format!("{}{name}", crate::rules::RULE_PREFIX);
        if let Some((previous, _, _)) = reader.rules.iter().find(|(_, n, _)| *n == name) {
            let message =
                format!("duplicate rule (also set on line {previous}); the last value wins");
            reader.warning(line, &key, message);
            reader.rules.retain(|(_, n, _)| *n != name);
        }
        reader.rules.push((line, name, value));
        return;
    }
    let Some(key) = keys::find(written_key) else {
        // Never echo the value: an unknown key may well be a misplaced credential.
        let message = match suggest_key(written_key) {
            Some(near) => format!("unknown key; did you mean {near}? (the line is ignored)"),
            None => "unknown key (the line is ignored)".to_string(),
        };
        reader.warning(line, written_key, message);
        return;
    };
    let value = strip_inline_comment(raw_value, key.syntax == Syntax::Command)
        .trim()
        .to_string();
    let key = key.name;
    if let Some(previous) = reader.entries.get(key) {
        let message = format!(
            "duplicate key (also set on line {}); the last value wins",
            previous.line
        );
        reader.warning(line, key, message);
    }
    reader.entries.insert(key, Entry { line, value });
}

/// `QOS_RULE_<NAME>` (any case) → `NAME` upper-cased.
fn rule_name(written: &str) -> Option<String> {
    let upper = written.trim().to_ascii_uppercase();
    upper
        .strip_prefix(crate::rules::RULE_PREFIX)
        .map(str::to_string)
}

/// Cut a `#` or `;` comment that starts the value or follows whitespace. In shell-word
/// values (`quote_aware`) a `#`/`;` inside quotes is part of the command, as it would be
/// in a shell. The one comment rule of `dcontroller.ini`: the support bundle reads the
/// file's values with it too, so it redacts exactly what the reader would use.
pub fn strip_inline_comment(value: &str, quote_aware: bool) -> &str {
    let mut in_single = false;
    let mut in_double = false;
    let mut escaped = false;
    let mut previous_is_space = true;
    for (index, c) in value.char_indices() {
        if quote_aware {
            if escaped {
                escaped = false;
                previous_is_space = false;
                continue;
            }
            match c {
                '\\' if !in_single => escaped = true,
                '\'' if !in_double => in_single = !in_single,
                '"' if !in_single => in_double = !in_double,
                _ => {}
            }
        }
        if (c == '#' || c == ';') && previous_is_space && !in_single && !in_double {
            return &value[..index];
        }
        previous_is_space = c.is_whitespace();
    }
    value
}

/// Every key through its row of the table, then the `QOS_RULE_<NAME>` rules, then the
/// checks across keys.
fn build(r: &mut Reader, source: &Path) -> Config {
    let mut config = Config {
        source: source.to_path_buf(),
        ..Config::default()
    };
    // DATA_DIRECTORY first: other keys' relative paths and defaults follow it.
    let (first, rest): (Vec<&Key>, Vec<&Key>) =
        KEYS.iter().partition(|key| key.name == "DATA_DIRECTORY");
    for key in first.into_iter().chain(rest) {
        key.read_into(r, &mut config);
    }
    let data_directory = config.data_directory.clone();
    let resource_samples = config.resource_samples;
    let resource_interval = config.resource_interval;
    let cgroup = config.cgroup;
    let mut custom_rules = Vec::new();
    for (line, name, value) in std::mem::take(&mut r.rules) {
        let key = format!("{}{name}", crate::rules::RULE_PREFIX);
        match crate::rules::parse_rule(
            &name,
            &value,
            resource_samples.max(1),
            resource_interval,
            &data_directory,
        ) {
            Ok(rule) => {
                if rule.item.is_pressure() && cgroup == crate::cgroup::CgroupSetting::Off {
                    r.error(
                        line,
                        &key,
                        format!(
                            "{} is measured on the server's cgroup, but QOS_CGROUP=off \
                             (expected QOS_CGROUP=auto or on, or another item)",
                            rule.item
                        ),
                    );
                } else if let (true, Err(why)) =
                    (rule.item.is_pressure(), crate::host::pressure_available())
                {
                    r.warning(
                        line,
                        &key,
                        format!(
                            "{} is measured on the server's cgroup v2, but {why}; every \
                             sample will be missing (counted as {})",
                            rule.item,
                            match rule.missing {
                                crate::rules::Missing::Ok => "not breaching: missing=ok",
                                crate::rules::Missing::Breach => "a breach: missing=breach",
                            }
                        ),
                    );
                }
                custom_rules.push(rule);
            }
            Err(message) => r.error(line, &key, message),
        }
    }
    config.custom_rules = custom_rules;
    cross_check(r, &config);
    config
}

/// Checks that involve more than one key, or a key's value against the world.
fn cross_check(r: &mut Reader, c: &Config) {
    let failed = |r: &Reader, key: &str| r.errors.iter().any(|e| e.key == key);
    let probing = c.qos_enable && !c.disable_probing;
    if probing {
        if r.entries
            .get("QOS_PROBE")
            .map_or(true, |entry| entry.value.is_empty())
        {
            let line = r.line_of("QOS_PROBE");
            r.error(
                line,
                "QOS_PROBE",
                "missing while probing is enabled (expected http://host:port/path, \
                 tcp://host:port, exec:COMMAND or message; or set QOS_DISABLE_PROBING=1)"
                    .into(),
            );
        }
        if c.probe_interval.is_zero() && !failed(r, "QOS_PROBE_INTERVAL") {
            let line = r.line_of("QOS_PROBE_INTERVAL");
            r.error(
                line,
                "QOS_PROBE_INTERVAL",
                "is 0 (expected a time between probes greater than 0, e.g. 1m)".into(),
            );
        } else if c.probe_timeout <= c.probe_interval
            && !failed(r, "QOS_PROBE_TIMEOUT")
            && !failed(r, "QOS_PROBE_INTERVAL")
        {
            // Blame the line the operator wrote: the timeout if set, else the interval.
            let (key, line) = if r.is_set("QOS_PROBE_TIMEOUT") {
                ("QOS_PROBE_TIMEOUT", r.line_of("QOS_PROBE_TIMEOUT"))
            } else {
                ("QOS_PROBE_INTERVAL", r.line_of("QOS_PROBE_INTERVAL"))
            };
            r.error(
                line,
                key,
                format!(
                    "probe timeout {} is not greater than the probe interval {}; the server \
                     would be killed before a probe could succeed (expected \
                     QOS_PROBE_TIMEOUT > QOS_PROBE_INTERVAL)",
                    format_duration(c.probe_timeout, DurationStyle::Words),
                    format_duration(c.probe_interval, DurationStyle::Words)
                ),
            );
        }
    }
    if c.resource_interval.is_zero() && !failed(r, "QOS_RESOURCE_INTERVAL") {
        let line = r.line_of("QOS_RESOURCE_INTERVAL");
        r.error(
            line,
            "QOS_RESOURCE_INTERVAL",
            "is 0 (expected a sampling period greater than 0, e.g. 10s)".into(),
        );
    }
    if c.resource_samples == 0 && !failed(r, "QOS_RESOURCE_SAMPLES") {
        let line = r.line_of("QOS_RESOURCE_SAMPLES");
        r.error(
            line,
            "QOS_RESOURCE_SAMPLES",
            "is 0 (expected at least 1 sample over a limit before acting)".into(),
        );
    }
    if !(1..=100).contains(&c.resource_warn_percent) && !failed(r, "QOS_RESOURCE_WARN") {
        let line = r.line_of("QOS_RESOURCE_WARN");
        r.error(
            line,
            "QOS_RESOURCE_WARN",
            format!(
                "{}% is out of range (expected a percentage of a limit from 1 to 100)",
                c.resource_warn_percent
            ),
        );
    }
    for (key, value) in [
        ("QOS_MAX_MEMORY_PRESSURE", c.max_memory_pressure),
        ("QOS_MAX_CPU_PRESSURE", c.max_cpu_pressure),
        ("QOS_MAX_IO_PRESSURE", c.max_io_pressure),
    ] {
        if failed(r, key) || value == 0 {
            continue;
        }
        let line = r.line_of(key);
        if value > 100 {
            r.error(
                line,
                key,
                format!(
                    "{value}% is out of range (expected the share of time stalled, 1 to 100; \
                     systemd-oomd's default is 60)"
                ),
            );
        } else if c.cgroup == crate::cgroup::CgroupSetting::Off && !failed(r, "QOS_CGROUP") {
            r.error(
                line,
                key,
                "pressure is measured on the server's cgroup, but QOS_CGROUP=off \
                 (expected QOS_CGROUP=auto or on, or this key at 0)"
                    .into(),
            );
        }
    }
    if c.restart_limit_enable
        && c.restart_limit_period.is_zero()
        && !failed(r, "QOS_RESTART_LIMIT_PERIOD")
    {
        let line = r.line_of("QOS_RESTART_LIMIT_PERIOD");
        r.error(
            line,
            "QOS_RESTART_LIMIT_PERIOD",
            "is 0 while QOS_RESTART_LIMIT_ENABLE=1 (expected a window greater than 0, \
             e.g. 30m, or QOS_RESTART_LIMIT_ENABLE=0)"
                .into(),
        );
    }
    if !c.mail_to.is_empty() && c.mail_smtp_server.is_none() && !failed(r, "QOS_MAIL_SMTP_SERVER") {
        let line = r.line_of("QOS_MAIL_TO");
        r.error(
            line,
            "QOS_MAIL_TO",
            "recipients are set but QOS_MAIL_SMTP_SERVER is missing (expected \
             QOS_MAIL_SMTP_SERVER=host[:port])"
                .into(),
        );
    }
    if c.mail_to.is_empty() && c.mail_smtp_server.is_some() {
        let line = r.line_of("QOS_MAIL_SMTP_SERVER");
        r.warning(
            line,
            "QOS_MAIL_SMTP_SERVER",
            "set but QOS_MAIL_TO is empty; no mail will be sent".into(),
        );
    }
    for recipient in &c.mail_to {
        if !recipient.contains('@') {
            let line = r.line_of("QOS_MAIL_TO");
            r.warning(
                line,
                "QOS_MAIL_TO",
                format!("\"{recipient}\" is not an e-mail address; mail to it will fail"),
            );
        }
    }
    if c.mail_user.is_some() != c.mail_password_file.is_some() {
        let (key, other) = if c.mail_user.is_some() {
            ("QOS_MAIL_USER", "QOS_MAIL_PASSWORD_FILE")
        } else {
            ("QOS_MAIL_PASSWORD_FILE", "QOS_MAIL_USER")
        };
        let line = r.line_of(key);
        r.warning(
            line,
            key,
            format!("set without {other}; SMTP login needs both, mail is sent without login"),
        );
    }
    if c.data_directory.exists() && !c.data_directory.is_dir() {
        let line = r.line_of("DATA_DIRECTORY");
        r.error(
            line,
            "DATA_DIRECTORY",
            format!(
                "{} is not a directory (expected a directory for logs, sockets and diagnostics)",
                c.data_directory.display()
            ),
        );
    } else if !c.data_directory.exists() {
        let line = r.line_of("DATA_DIRECTORY");
        r.warning(
            line,
            "DATA_DIRECTORY",
            format!(
                "{} does not exist yet (run creates it)",
                c.data_directory.display()
            ),
        );
    }
    if r.is_set("SERVER_DIRECTORY") && !c.server_directory.is_dir() {
        let line = r.line_of("SERVER_DIRECTORY");
        r.warning(
            line,
            "SERVER_DIRECTORY",
            format!(
                "{} is not an existing directory; the server cannot start there",
                c.server_directory.display()
            ),
        );
    }
}

/// `1/0`, `true/false`, `yes/no` (also `on/off`), any case.
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match unquote(text.trim()).trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "\"{text}\" is not a boolean (expected 1/0, true/false or yes/no)"
        )),
    }
}

fn parse_count<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    let value = unquote(text.trim()).trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "\"{text}\" is not a whole number (expected digits only, e.g. 3)"
        ));
    }
    value
        .parse()
        .map_err(|_| format!("\"{text}\" is too large (expected a smaller whole number)"))
}

fn parse_percent(text: &str) -> Result<u32, String> {
    let value = unquote(text.trim()).trim();
    let digits = value.strip_suffix('%').unwrap_or(value).trim_end();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "\"{text}\" is not a percentage (expected a whole number with an optional %, e.g. 80%)"
        ));
    }
    digits
        .parse()
        .map_err(|_| format!("\"{text}\" is too large (expected a percentage, e.g. 80%)"))
}

fn parse_command(text: &str) -> Result<Vec<String>, String> {
    let argv = shell_words::split(text).map_err(|_| {
        "unbalanced quotes (expected a program and arguments split like shell words, \
         e.g. /usr/bin/app --name \"my server\")"
            .to_string()
    })?;
    if argv.first().map_or(true, |program| program.is_empty()) {
        return Err("no program (expected a program and arguments split like shell words)".into());
    }
    Ok(argv)
}

/// `TERM`, `SIGTERM`, `INT`, `QUIT`, `HUP`, `USR1`, `USR2`, `KILL` (any signal name) or a
/// signal number.
pub fn parse_signal(text: &str) -> Result<i32, String> {
    let value = unquote(text.trim()).trim().to_ascii_uppercase();
    let expected = "expected TERM, INT, QUIT, HUP, USR1, USR2, KILL or a signal number";
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return match value.parse::<i32>() {
            Ok(n) if (1..=64).contains(&n) => Ok(n),
            _ => Err(format!("\"{text}\" is not a signal number ({expected})")),
        };
    }
    let name = if value.starts_with("SIG") {
        value.clone()
    } else {
        format!("SIG{value}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|signal| signal as i32)
        .map_err(|_| format!("\"{text}\" is not a signal ({expected})"))
}

/// The name of a signal without `SIG` (`TERM`), or its number when it has none.
pub fn signal_name(signal: i32) -> String {
    match nix::sys::signal::Signal::try_from(signal) {
        Ok(s) => s.as_str().trim_start_matches("SIG").to_string(),
        Err(_) => signal.to_string(),
    }
}

fn parse_list(text: &str) -> Vec<String> {
    unquote(text)
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_failback(text: &str) -> Result<FailbackMode, String> {
    match unquote(text.trim()).trim().to_ascii_lowercase().as_str() {
        "auto" | "automatic" => Ok(FailbackMode::Auto),
        "manual" => Ok(FailbackMode::Manual),
        _ => Err(format!(
            "\"{text}\" is not a failback mode (expected auto or manual)"
        )),
    }
}

fn parse_mail_tls(text: &str) -> Result<MailTls, String> {
    match unquote(text.trim()).trim().to_ascii_lowercase().as_str() {
        "" | "none" | "no" | "off" => Ok(MailTls::None),
        "starttls" => Ok(MailTls::StartTls),
        "tls" | "smtps" => Ok(MailTls::Tls),
        _ => Err(format!(
            "\"{text}\" is not a TLS mode (expected none, starttls or tls)"
        )),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PortRule {
    Required,
    Optional,
}

/// `host:port`, `[v6]:port` or (when allowed) `host` / `[v6]`. IPv6 hosts are returned
/// without brackets.
fn parse_host_port(text: &str, rule: PortRule) -> Result<(String, Option<u16>), String> {
    let expected = match rule {
        PortRule::Required => "expected host:port or [IPv6]:port",
        PortRule::Optional => "expected host, host:port or [IPv6]:port",
    };
    let (host, port_text) = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("\"{text}\" has no closing ']' ({expected})"))?;
        if inside.parse::<Ipv6Addr>().is_err() {
            return Err(format!("\"{inside}\" is not an IPv6 address ({expected})"));
        }
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("\"{text}\" has text after ']' ({expected})"))?,
            ),
        };
        (inside.to_string(), port)
    } else {
        match text.split_once(':') {
            Some((_, rest)) if rest.contains(':') => {
                return Err(format!(
                    "\"{text}\": an IPv6 address needs brackets ({expected})"
                ))
            }
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (text.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("\"{text}\" has no host ({expected})"));
    }
    if !host.contains(':')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err(format!("\"{host}\" is not a host name ({expected})"));
    }
    let port = match port_text {
        Some(p) => match p.parse::<u16>() {
            Ok(port) if port > 0 => Some(port),
            _ => return Err(format!("\"{p}\" is not a port ({expected}; port 1-65535)")),
        },
        None if rule == PortRule::Required => {
            return Err(format!("\"{text}\" has no port ({expected})"))
        }
        None => None,
    };
    Ok((host, port))
}

/// `QOS_PROBE`: `http://host[:port][/path]`, `tcp://host:port`, `exec:COMMAND`, `message`.
pub fn parse_probe(text: &str) -> Result<ProbeTarget, String> {
    let raw = text.trim();
    let expected = "expected http://host:port/path, tcp://host:port, exec:COMMAND or message";
    let lower = raw.to_ascii_lowercase();
    if lower == "message" {
        return Ok(ProbeTarget::Message);
    }
    if lower.starts_with("exec:") {
        let argv = parse_command(&raw[5..]).map_err(|e| format!("exec probe: {e}"))?;
        return Ok(ProbeTarget::Exec { argv });
    }
    // Every message below quotes the URL: never with a password in it.
    let (text, had_credentials) = redact_url_credentials(raw);
    let text = text.as_str();
    if had_credentials {
        return Err(format!(
            "\"{text}\": credentials in the probe URL are not supported (they would be sent in \
             clear text and shown in logs and status; probe a health path that needs no \
             login, or use exec:COMMAND)"
        ));
    }
    if lower.starts_with("http://") {
        let rest = &text[7..];
        let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if path.starts_with('#') {
            return Err(format!(
                "\"{text}\": a fragment is not sent to a server ({expected})"
            ));
        }
        if path.contains(char::is_whitespace) {
            return Err(format!("\"{text}\": the path contains blanks ({expected})"));
        }
        let (host, port) = parse_host_port(authority, PortRule::Optional)
            .map_err(|e| format!("http probe: {e}"))?;
        let path = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        return Ok(ProbeTarget::Http {
            host,
            port: port.unwrap_or(80),
            path,
        });
    }
    if lower.starts_with("tcp://") {
        let authority = text[6..].strip_suffix('/').unwrap_or(&text[6..]);
        let (host, port) = parse_host_port(authority, PortRule::Required)
            .map_err(|e| format!("tcp probe: {e}"))?;
        // Invariant: PortRule::Required never returns without a port.
        let port = port.ok_or_else(|| format!("tcp probe: \"{text}\" has no port"))?;
        return Ok(ProbeTarget::Tcp { host, port });
    }
    if lower.starts_with("https://") {
        return Err(format!(
            "\"{text}\": https probes are not supported ({expected}; probe the plain port \
             or use exec:curl -fsS https://…)"
        ));
    }
    Err(format!("\"{text}\" is not a probe ({expected})"))
}

/// `scheme://user:password@host…` → `scheme://user:***@host…` (and `***@` for a bare
/// user), so no error message or log line ever shows a password. Returns whether the URL
/// carried credentials at all.
pub fn redact_url_credentials(url: &str) -> (String, bool) {
    let Some(scheme_end) = url.find("://") else {
        return (url.to_string(), false);
    };
    let after = &url[scheme_end + 3..];
    let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let authority = &after[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return (url.to_string(), false);
    };
    let userinfo = &authority[..at];
    let shown = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None => "***".to_string(),
    };
    (
        format!("{}{shown}{}", &url[..scheme_end + 3], &after[at..]),
        true,
    )
}

/// A listener: `port`, `host:port` or `[v6]:port`; a bare port listens on 127.0.0.1.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let text = unquote(text.trim()).trim();
    let expected = "expected port, IP:port, *:port or [IPv6]:port, e.g. 127.0.0.1:8081";
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u16>() {
            Ok(port) if port > 0 => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)),
            _ => Err(format!("\"{text}\" is not a port ({expected})")),
        };
    }
    // `*:PORT` (every interface) is not a host name, so it is taken apart here.
    let (host, port) = match text.strip_prefix("*:") {
        Some(p) => match p.parse::<u16>() {
            Ok(port) if port > 0 => ("*".to_string(), Some(port)),
            _ => return Err(format!("\"{p}\" is not a port ({expected}; port 1-65535)")),
        },
        None => parse_host_port(text, PortRule::Required)?,
    };
    let port = port.ok_or_else(|| format!("\"{text}\" has no port ({expected})"))?;
    let ip = match host.as_str() {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        other => other
            .parse::<IpAddr>()
            .map_err(|_| format!("\"{other}\" is not an IP address ({expected})"))?,
    };
    Ok(SocketAddr::new(ip, port))
}

impl std::fmt::Display for ProbeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bracket = |host: &str| {
            if host.contains(':') {
                format!("[{host}]")
            } else {
                host.to_string()
            }
        };
        match self {
            ProbeTarget::Http { host, port, path } => {
                write!(f, "http://{}:{port}{path}", bracket(host))
            }
            ProbeTarget::Tcp { host, port } => write!(f, "tcp://{}:{port}", bracket(host)),
            ProbeTarget::Exec { argv } => write!(f, "exec:{}", shell_words::join(argv)),
            ProbeTarget::Message => write!(f, "message"),
        }
    }
}

impl std::fmt::Display for MailTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MailTls::None => "none",
            MailTls::StartTls => "starttls",
            MailTls::Tls => "tls",
        })
    }
}

impl Config {
    /// The effective configuration, one `KEY=value` per line in the reference wording
    /// (`QOS_PROBE_TIMEOUT=5 minutes`, `QOS_NOKILL=false`): first the reference header's
    /// keys in its order, then every other key. No credential is ever printed (only the
    /// password *file* path). `check-config` prints these; the log header writes them with
    /// component `QoS Controller`.
    pub fn effective_lines(&self) -> Vec<String> {
        let header = REFERENCE_HEADER
            .iter()
            .filter_map(|(name, label)| keys::key(name).map(|key| (*label, key)));
        let rest = KEYS
            .iter()
            .filter(|key| !REFERENCE_HEADER.iter().any(|(name, _)| *name == key.name))
            .map(|key| (key.name, key));
        header
            .chain(rest)
            .map(|(label, key)| format!("{label}={}", key.shown(self)))
            .collect()
    }
}
