//! The table of `dcontroller.ini` keys: one row per key with its name, other spellings,
//! value syntax (and so the unit of a bare number), default, parser, whether a reload
//! applies it, whether its value is a secret, and a one-line description.
//!
//! Everything that knows about keys reads this table: the reader (parsing, defaults,
//! unknown-key suggestions, which values are shell words), the effective-configuration
//! lines of `check-config` and the log header, the reload (which keys keep their running
//! value), redaction (the one list of secret words, shared with the support bundle) and
//! the dcontroller.ini(5) man page. Adding a key is a field in [`Config`] and a row here
//! (and, when the state machine decides with it, a field in its `Policy`).

use std::path::PathBuf;
use std::time::Duration;

use crate::core::units::{format_bytes, format_duration, ByteStyle, DurationStyle};
use crate::host::host_name;

use super::{
    absolute, parse_duration, parse_failback, parse_host_port, parse_list, parse_listen,
    parse_mail_tls, parse_probe, parse_signal, signal_name, unit_name, unquote, Config, MailTls,
    PortRule, Reader, MINUTE, SECOND,
};

/// What a key's value is written as. Durations carry the unit of a bare number; sizes
/// are in MB and percentages in percent when written without a suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Duration(Duration),
    Size,
    Percent,
    Count,
    Bool,
    Text,
    Path,
    /// Program and arguments split like shell words: a `#` or `;` inside quotes is part
    /// of the value, not a comment.
    Command,
    /// A value with a grammar of its own (a probe, a signal, an address, a URL, a mode).
    Other,
}

impl Syntax {
    /// The unit of a bare number, for the man page.
    pub fn unit(self) -> Option<String> {
        match self {
            Syntax::Duration(unit) => Some(unit_name(unit)),
            Syntax::Size => Some("MB".to_string()),
            Syntax::Percent => Some("percent".to_string()),
            _ => None,
        }
    }
}

/// Whether a reload (SIGHUP, `qoscntrlr reload`) applies a new value.
#[derive(Clone, Copy)]
pub enum Reload {
    /// The new value takes effect at once.
    Applies,
    /// Set up once at start (a file, socket, listener or timer): the running value stays
    /// until the controller is restarted. The function puts the running value back into
    /// the new configuration and says whether the file asked for a different one.
    Restart(fn(running: &Config, new: &mut Config) -> bool),
}

/// Whether a key's value must be kept out of logs, `check-config` and support bundles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secret {
    No,
    /// The value itself is a credential: never printed, redacted in bundles.
    Value,
    /// The value names a file whose contents are a credential: the path may be shown,
    /// the file is never bundled and its contents are scrubbed from every member.
    File,
}

/// One key of `dcontroller.ini`.
pub struct Key {
    /// Canonical name, upper case.
    pub name: &'static str,
    /// Other accepted spellings, as documented (matched in any case).
    pub aliases: &'static [&'static str],
    pub syntax: Syntax,
    pub reload: Reload,
    pub secret: Secret,
    /// A client command (`status`, `quit`, `send`, `logs`, …) needs it to find the
    /// controller: an error in it is an error there too, while errors in other keys are
    /// only warnings, so an operator is never locked out of a running controller.
    pub client: bool,
    /// One-line description for the man page.
    pub doc: &'static str,
    /// The man page's wording of the default when it is not a plain value (`the host
    /// name`); otherwise the default is shown as `check-config` prints it.
    pub default_doc: Option<&'static str>,
    /// Parse the key's entry (or take its default) into the configuration. Runs after
    /// DATA_DIRECTORY has been read, so relative paths can be resolved.
    read: fn(&mut Reader, &Key, &mut Config),
    /// The effective value as `check-config` and the log header show it (a secret row
    /// shows no more than what is safe to log).
    show: fn(&Config) -> String,
}

impl Key {
    /// The effective value of this key in `config`, as `check-config` prints it.
    pub fn shown(&self, config: &Config) -> String {
        (self.show)(config)
    }

    pub(super) fn read_into(&self, reader: &mut Reader, config: &mut Config) {
        (self.read)(reader, self, config)
    }

    pub fn is_start_only(&self) -> bool {
        matches!(self.reload, Reload::Restart(_))
    }
}

/// Keep the running value of a start-only setting; `true` when the new one differed.
fn keep<T: PartialEq + Clone>(running: &T, new: &mut T) -> bool {
    if running == new {
        return false;
    }
    *new = running.clone();
    true
}

fn show_command(argv: &Option<Vec<String>>) -> String {
    argv.as_ref().map(shell_words::join).unwrap_or_default()
}

fn show_text(value: &Option<String>) -> String {
    value.clone().unwrap_or_default()
}

fn show_path(value: &Option<PathBuf>) -> String {
    value
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn show_listen(value: &Option<std::net::SocketAddr>) -> String {
    value.map(|a| a.to_string()).unwrap_or_default()
}

/// A path relative to the data directory (absolute paths stay as they are).
fn in_data_dir(config: &Config, path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        path
    } else {
        config.data_directory.join(path)
    }
}

/// The keys of the reference controller's configuration header, in its order and with
/// its labels: `check-config` and the log header print these first.
pub const REFERENCE_HEADER: &[(&str, &str)] = &[
    ("QOS_PROBE_TIMEOUT", "QOS_PROBE_TIMEOUT"),
    ("QOS_SHUTDOWN_TIMEOUT", "QOS_SHUTDOWN_TIMEOUT"),
    ("QOS_RESTART_TIMEOUT", "QOS_RESTART_TIMEOUT"),
    ("QOS_APPS_TIMEOUT", "QOS_APPS_TIMEOUT"),
    ("QOS_NSD_PATH", "nsd Program Path"),
    ("QOS_RESTART_LIMIT_MAXIMUM", "QOS_RESTART_LIMIT_MAXIMUM"),
    ("QOS_RESTART_LIMIT_PERIOD", "QOS_RESTART_LIMIT_PERIOD"),
    ("QOS_NOKILL", "QOS_NOKILL"),
    ("QOS_MAIL_TO", "QOS_MAIL_TO"),
    ("QOS_MAIL_SMTP_SERVER", "QOS_MAIL_SMTP_SERVER"),
    ("SERVER_NAME", "SERVER_NAME"),
];

/// Words that make a key name a secret, in any configuration-like text: the ini, the
/// environment, JSON. The reader never prints such a key's value, and the support
/// bundle redacts it. A name that also ends in `_FILE` names a file holding a secret.
pub const SECRET_WORDS: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "TOKEN",
    "APIKEY",
    "API_KEY",
    "PRIVATE_KEY",
    "CREDENTIAL",
];

/// What a row leaves out: no aliases, a reload applies it, not a secret, not needed by
/// client commands, the default shown as `check-config` prints it. Every row sets its
/// name, syntax, doc, `read` and `show` (the table's tests fail otherwise).
const KEY: Key = Key {
    name: "",
    aliases: &[],
    syntax: Syntax::Other,
    reload: Reload::Applies,
    secret: Secret::No,
    client: false,
    doc: "",
    default_doc: None,
    read: |_, _, _| {},
    show: |_| String::new(),
};

/// Every key, in the documented order (dcontroller.ini(5), the effective lines after the
/// reference header).
pub const KEYS: &[Key] = &[
    // The application server.
    Key {
        name: "SERVER_NAME",
        syntax: Syntax::Text,
        doc: "Name of the server in the logs (ObjectValue= of `OpMsg=START Type=QOS`), the \
              status and the alerts.",
        default_doc: Some("the host name"),
        read: |r, k, c| c.server_name = r.text(k).unwrap_or_else(host_name),
        show: |c| c.server_name.clone(),
        ..KEY
    },
    Key {
        name: "SERVER_COMMAND",
        syntax: Syntax::Command,
        doc: "Program and arguments of the server, split like shell words (no shell runs \
              them); a reload applies it at the next start.",
        default_doc: Some("none (required)"),
        read: |r, k, c| {
            let command = r.command(k);
            if command.is_none() && r.errors.iter().all(|e| e.key != k.name) {
                let line = r.line_of(k.name);
                r.error(
                    line,
                    k.name,
                    "missing (expected the server's program and arguments, e.g. \
                     SERVER_COMMAND=/opt/app/bin/server --port 8080)"
                        .into(),
                );
            }
            c.server_command = command.unwrap_or_default();
        },
        show: |c| shell_words::join(&c.server_command),
        ..KEY
    },
    Key {
        name: "SERVER_DIRECTORY",
        syntax: Syntax::Path,
        doc: "Working directory of the server.",
        read: |r, k, c| {
            c.server_directory = match r.path(k) {
                Some(dir) => in_data_dir(c, dir),
                None => c.data_directory.clone(),
            }
        },
        show: |c| c.server_directory.display().to_string(),
        ..KEY
    },
    Key {
        name: "SERVER_USER",
        syntax: Syntax::Text,
        doc: "User the server runs as when the controller runs as root.",
        default_doc: Some("the controller's user"),
        read: |r, k, c| c.server_user = r.text(k),
        show: |c| show_text(&c.server_user),
        ..KEY
    },
    Key {
        name: "SERVER_GROUP",
        syntax: Syntax::Text,
        doc: "Group the server runs as when the controller runs as root.",
        default_doc: Some("the primary group of SERVER_USER, else the controller's group"),
        read: |r, k, c| c.server_group = r.text(k),
        show: |c| show_text(&c.server_group),
        ..KEY
    },
    Key {
        name: "SERVER_STOP_COMMAND",
        syntax: Syntax::Command,
        doc: "Command that asks the server to quit (shell words); without it the controller \
              sends SERVER_STOP_SIGNAL to the server's process group.",
        read: |r, k, c| c.server_stop_command = r.command(k),
        show: |c| show_command(&c.server_stop_command),
        ..KEY
    },
    Key {
        name: "SERVER_STOP_SIGNAL",
        syntax: Syntax::Other,
        doc: "Signal sent to the server's process group to quit when there is no \
              SERVER_STOP_COMMAND: a name (`TERM`, `INT`, `QUIT`, `HUP`, `USR1`, …) or a \
              number.",
        read: |r, k, c| c.server_stop_signal = r.get(k.name, libc::SIGTERM, parse_signal),
        show: |c| signal_name(c.server_stop_signal),
        ..KEY
    },
    Key {
        name: "DATA_DIRECTORY",
        client: true,
        syntax: Syntax::Path,
        reload: Reload::Restart(|old, new| keep(&old.data_directory, &mut new.data_directory)),
        doc: "Directory of the logs (`qoscntrlr*.out`), trigger file, diagnostics, sockets \
              and state; relative paths of other keys are relative to it.",
        read: |r, k, c| {
            let ini_dir = c
                .source
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("/"), std::path::Path::to_path_buf);
            c.data_directory = match r.path(k) {
                // An existing directory is shown without `..` (canonical); one that does
                // not exist yet keeps the spelling it was given, made absolute.
                Some(dir) => {
                    let joined = absolute(&ini_dir.join(dir));
                    std::fs::canonicalize(&joined).unwrap_or(joined)
                }
                None => ini_dir,
            }
        },
        show: |c| c.data_directory.display().to_string(),
        ..KEY
    },
    // Quality of service.
    Key {
        name: "QOS_ENABLE",
        syntax: Syntax::Bool,
        doc: "0: plain supervision (restart after a crash only; no probe, no smart kill).",
        read: |r, k, c| c.qos_enable = r.boolean(k, true),
        show: |c| c.qos_enable.to_string(),
        ..KEY
    },
    Key {
        name: "QOS_PROBE",
        syntax: Syntax::Command,
        doc: "What is probed once per QOS_PROBE_INTERVAL: `http://host:port/path` (2xx or 3xx \
              is a success), `tcp://host:port` (a connect), `exec:COMMAND` (exit status 0) \
              or `message` (the server reports probe results on the pipe).",
        default_doc: Some("none (required unless probing is disabled)"),
        read: |r, k, c| c.probe = r.get_opt(k.name, parse_probe),
        show: |c| c.probe.as_ref().map(|p| p.to_string()).unwrap_or_default(),
        ..KEY
    },
    Key {
        name: "QOS_PROBE_INTERVAL",
        syntax: Syntax::Duration(MINUTE),
        doc: "Time between probes.",
        read: |r, k, c| c.probe_interval = r.duration(k, MINUTE),
        show: |c| format_duration(c.probe_interval, DurationStyle::Words),
        ..KEY
    },
    Key {
        name: "QOS_PROBE_TIMEOUT",
        syntax: Syntax::Duration(MINUTE),
        doc: "No successful probe for this long is a probe timeout: smart kill. Must be \
              longer than QOS_PROBE_INTERVAL.",
        read: |r, k, c| c.probe_timeout = r.duration(k, 5 * MINUTE),
        show: |c| format_duration(c.probe_timeout, DurationStyle::Words),
        ..KEY
    },
    Key {
        name: "QOS_DISABLE_PROBING",
        syntax: Syntax::Bool,
        doc: "No probing at all (messages, crashes and resources are still watched).",
        read: |r, k, c| c.disable_probing = r.boolean(k, false),
        show: |c| c.disable_probing.to_string(),
        ..KEY
    },
    Key {
        name: "QOS_APPS_TIMEOUT",
        syntax: Syntax::Duration(MINUTE),
        doc: "A long-running application (`OpMsg=START Type=COMPACT …`) that shows no \
              progress for this long: smart kill.",
        read: |r, k, c| c.apps_timeout = r.duration(k, 10 * MINUTE),
        show: |c| format_duration(c.apps_timeout, DurationStyle::Words),
        ..KEY
    },
    Key {
        name: "QOS_SHUTDOWN_TIMEOUT",
        syntax: Syntax::Duration(MINUTE),
        doc: "A quit not finished in this time: kill, no restart. Keep it below the unit's \
              TimeoutStopSec (8min) minus diagnostics and kill time.",
        read: |r, k, c| c.shutdown_timeout = r.duration(k, 5 * MINUTE),
        show: |c| format_duration(c.shutdown_timeout, DurationStyle::Words),
        ..KEY
    },
    Key {
        name: "QOS_RESTART_TIMEOUT",
        syntax: Syntax::Duration(MINUTE),
        doc: "From fully down (or spawn) to READY; longer: kill and restart.",
        read: |r, k, c| c.restart_timeout = r.duration(k, 5 * MINUTE),
        show: |c| format_duration(c.restart_timeout, DurationStyle::Words),
        ..KEY
    },
    Key {
        name: "QOS_RESTART_LIMIT_ENABLE",
        syntax: Syntax::Bool,
        doc: "Cap automatic restarts at QOS_RESTART_LIMIT_MAXIMUM within \
              QOS_RESTART_LIMIT_PERIOD; past that the server is left down (FAULTED) until \
              `qoscntrlr clear-fault`.",
        read: |r, k, c| c.restart_limit_enable = r.boolean(k, true),
        show: |c| c.restart_limit_enable.to_string(),
        ..KEY
    },
    Key {
        name: "QOS_RESTART_LIMIT_MAXIMUM",
        syntax: Syntax::Count,
        doc: "Automatic restarts allowed within QOS_RESTART_LIMIT_PERIOD.",
        read: |r, k, c| c.restart_limit_maximum = r.count(k, 3u32),
        show: |c| c.restart_limit_maximum.to_string(),
        ..KEY
    },
    Key {
        name: "QOS_RESTART_LIMIT_PERIOD",
        syntax: Syntax::Duration(MINUTE),
        doc: "The sliding window of the restart limit.",
        read: |r, k, c| c.restart_limit_period = r.duration(k, 30 * MINUTE),
        show: |c| format_duration(c.restart_limit_period, DurationStyle::Words),
        ..KEY
    },
    Key {
        name: "QOS_AUTO_FAULT_CLEAR",
        syntax: Syntax::Duration(MINUTE),
        doc: "Leave FAULTED by itself after this long; 0: never.",
        read: |r, k, c| c.auto_fault_clear = r.duration(k, Duration::ZERO),
        show: |c| format_duration(c.auto_fault_clear, DurationStyle::Words),
        ..KEY
    },
    Key {
        name: "QOS_NOKILL",
        syntax: Syntax::Bool,
        doc: "Detect, log, collect diagnostics and notify, but never kill.",
        read: |r, k, c| c.nokill = r.boolean(k, false),
        show: |c| c.nokill.to_string(),
        ..KEY
    },
    // Diagnostics ("nsd").
    Key {
        name: "QOS_NSD_PATH",
        syntax: Syntax::Command,
        doc: "Diagnostics program run before a kill (shell words; a relative program path is \
              relative to DATA_DIRECTORY); empty: the built-in collector (process tree, \
              stacks, /proc facts).",
        default_doc: Some("the built-in collector"),
        read: |r, k, c| {
            c.nsd_path = r.command(k).map(|mut argv| {
                if argv[0].contains('/') {
                    argv[0] = in_data_dir(c, PathBuf::from(&argv[0]))
                        .display()
                        .to_string();
                }
                argv
            })
        },
        show: |c| match &c.nsd_path {
            Some(argv) => shell_words::join(argv),
            None => "built-in".to_string(),
        },
        ..KEY
    },
    Key {
        name: "QOS_NSD_TIMEOUT",
        syntax: Syntax::Duration(MINUTE),
        doc: "Time limit of one diagnostics run.",
        read: |r, k, c| c.nsd_timeout = r.duration(k, 3 * MINUTE),
        show: |c| format_duration(c.nsd_timeout, DurationStyle::Words),
        ..KEY
    },
    Key {
        name: "QOS_SHUTDOWN_NSD",
        aliases: &["QoSShutdownNSD"],
        syntax: Syntax::Duration(SECOND),
        doc: "While a shutdown has not finished, collect diagnostics this often; 0: off.",
        read: |r, k, c| c.shutdown_nsd = r.duration(k, Duration::ZERO),
        show: |c| format_duration(c.shutdown_nsd, DurationStyle::Words),
        ..KEY
    },
    Key {
        name: "QOS_DIAG_RETENTION_DAYS",
        syntax: Syntax::Count,
        doc: "Diagnostics files older than this many days are deleted.",
        read: |r, k, c| c.diag_retention_days = r.count(k, 14u32),
        show: |c| c.diag_retention_days.to_string(),
        ..KEY
    },
    Key {
        name: "QOS_DIAG_MAX_SIZE",
        syntax: Syntax::Size,
        doc: "Total size cap of the diagnostics files (the oldest go first).",
        read: |r, k, c| c.diag_max_size = r.size(k, 1024),
        show: |c| format_bytes(c.diag_max_size, ByteStyle::Exact),
        ..KEY
    },
    // Failover.
    Key {
        name: "QOS_DISABLE_FAILOVER_TRIGGER",
        syntax: Syntax::Bool,
        doc: "1: the trigger file triggerImmediateServerFailover is still written and \
              deleted, but with content 0 (no failover), and the failover hook is not run.",
        read: |r, k, c| c.disable_failover_trigger = r.boolean(k, false),
        show: |c| c.disable_failover_trigger.to_string(),
        ..KEY
    },
    Key {
        name: "QOS_FAILOVER_HOOK",
        syntax: Syntax::Command,
        doc: "Command run asynchronously (time-limited) when the failover outputs go down.",
        read: |r, k, c| c.failover_hook = r.command(k),
        show: |c| show_command(&c.failover_hook),
        ..KEY
    },
    Key {
        name: "QOS_RECOVERY_HOOK",
        syntax: Syntax::Command,
        doc: "Command run asynchronously (time-limited) when the failover outputs come back.",
        read: |r, k, c| c.recovery_hook = r.command(k),
        show: |c| show_command(&c.recovery_hook),
        ..KEY
    },
    // Controller logs and sockets.
    Key {
        name: "QOS_LOG_RETENTION_DAYS",
        syntax: Syntax::Count,
        reload: Reload::Restart(|old, new| {
            keep(&old.log_retention_days, &mut new.log_retention_days)
        }),
        doc: "Controller logs (`.log`) older than this many days are deleted at start.",
        read: |r, k, c| c.log_retention_days = r.count(k, 14u32),
        show: |c| c.log_retention_days.to_string(),
        ..KEY
    },
    Key {
        name: "QOS_LOG_MAX_SIZE",
        syntax: Syntax::Size,
        reload: Reload::Restart(|old, new| keep(&old.log_max_size, &mut new.log_max_size)),
        doc: "Roll the `.out` file when it grows past this size.",
        read: |r, k, c| c.log_max_size = r.size(k, 50),
        show: |c| format_bytes(c.log_max_size, ByteStyle::Exact),
        ..KEY
    },
    Key {
        name: "QOS_PIPE",
        client: true,
        syntax: Syntax::Path,
        reload: Reload::Restart(|old, new| keep(&old.pipe, &mut new.pipe)),
        doc: "Unix socket where the server sends its OpMsg lines (the server the controller \
              starts finds it in $QOSCNTRLR_PIPE).",
        read: |r, k, c| {
            let pipe = r.path(k).unwrap_or_else(|| PathBuf::from("qoscntrlr.pipe"));
            c.pipe = in_data_dir(c, pipe);
        },
        show: |c| c.pipe.display().to_string(),
        ..KEY
    },
    Key {
        name: "QOS_CONTROL_SOCKET",
        client: true,
        syntax: Syntax::Path,
        reload: Reload::Restart(|old, new| keep(&old.control_socket, &mut new.control_socket)),
        doc: "Unix socket of the operator commands (status, quit, restart, pause, …).",
        read: |r, k, c| {
            let socket = r.path(k).unwrap_or_else(|| PathBuf::from("qoscntrlr.ctl"));
            c.control_socket = in_data_dir(c, socket);
        },
        show: |c| c.control_socket.display().to_string(),
        ..KEY
    },
    Key {
        name: "QOS_CONTROL_GROUP",
        syntax: Syntax::Text,
        reload: Reload::Restart(|old, new| keep(&old.control_group, &mut new.control_group)),
        doc: "Group allowed to use both sockets besides the owner and root: a group name or a numeric gid.",
        read: |r, k, c| c.control_group = r.text(k),
        show: |c| show_text(&c.control_group),
        ..KEY
    },
    // Resources.
    Key {
        name: "QOS_RESOURCE_INTERVAL",
        syntax: Syntax::Duration(SECOND),
        reload: Reload::Restart(|old, new| {
            keep(&old.resource_interval, &mut new.resource_interval)
        }),
        doc: "Time between resource samples of the server's tree.",
        read: |r, k, c| c.resource_interval = r.duration(k, 10 * SECOND),
        show: |c| format_duration(c.resource_interval, DurationStyle::Words),
        ..KEY
    },
    Key {
        name: "QOS_RESOURCE_SAMPLES",
        syntax: Syntax::Count,
        doc: "Consecutive samples over a limit before acting.",
        read: |r, k, c| c.resource_samples = r.count(k, 3u32),
        show: |c| c.resource_samples.to_string(),
        ..KEY
    },
    Key {
        name: "QOS_MAX_MEMORY",
        syntax: Syntax::Size,
        doc: "Memory limit of the server's tree; over it is an exhaustion (smart kill); 0: \
              off.",
        read: |r, k, c| c.max_memory = r.size(k, 0),
        show: |c| format_bytes(c.max_memory, ByteStyle::Exact),
        ..KEY
    },
    Key {
        name: "QOS_MAX_CPU",
        syntax: Syntax::Percent,
        doc: "CPU limit of the server's tree in percent of one core; 0: off.",
        read: |r, k, c| c.max_cpu = r.percent(k, 0),
        show: |c| format!("{}%", c.max_cpu),
        ..KEY
    },
    Key {
        name: "QOS_MAX_OPEN_FILES",
        syntax: Syntax::Count,
        doc: "Limit of open descriptors of the server's tree; 0: off.",
        read: |r, k, c| c.max_open_files = r.count(k, 0u64),
        show: |c| c.max_open_files.to_string(),
        ..KEY
    },
    Key {
        name: "QOS_MAX_THREADS",
        syntax: Syntax::Count,
        doc: "Limit of threads of the server's tree; 0: off.",
        read: |r, k, c| c.max_threads = r.count(k, 0u64),
        show: |c| c.max_threads.to_string(),
        ..KEY
    },
    Key {
        name: "QOS_MIN_DISK_FREE",
        syntax: Syntax::Size,
        doc: "Least free space on the data directory's filesystem; 0: off.",
        read: |r, k, c| c.min_disk_free = r.size(k, 0),
        show: |c| format_bytes(c.min_disk_free, ByteStyle::Exact),
        ..KEY
    },
    Key {
        name: "QOS_RESOURCE_WARN",
        syntax: Syntax::Percent,
        doc: "Percent of a limit at which to log and notify once, without killing.",
        read: |r, k, c| c.resource_warn_percent = r.percent(k, 80),
        show: |c| format!("{}%", c.resource_warn_percent),
        ..KEY
    },
    Key {
        name: "QOS_CGROUP",
        syntax: Syntax::Other,
        reload: Reload::Restart(|old, new| keep(&old.cgroup, &mut new.cgroup)),
        doc: "Contain the server in a cgroup v2 of its own (exact membership, `cgroup.kill`, \
              cheap samples, pressure, OOM kills as incidents): `auto` where a writable \
              hierarchy exists (else the tree is found through /proc), `on` (refuse to start \
              without it) or `off`.",
        read: |r, k, c| {
            c.cgroup = r.get(k.name, crate::cgroup::CgroupSetting::Auto, |v| {
                crate::cgroup::CgroupSetting::parse(unquote(v.trim()))
            })
        },
        show: |c| c.cgroup.to_string(),
        ..KEY
    },
    Key {
        name: "QOS_MAX_MEMORY_PRESSURE",
        syntax: Syntax::Percent,
        doc: "Limit of the memory pressure of the server's cgroup (PSI `some avg10`, percent \
              of time stalled); over it for QOS_RESOURCE_SAMPLES samples is an exhaustion; \
              0: off.",
        read: |r, k, c| c.max_memory_pressure = r.percent(k, 0),
        show: |c| format!("{}%", c.max_memory_pressure),
        ..KEY
    },
    Key {
        name: "QOS_MAX_CPU_PRESSURE",
        syntax: Syntax::Percent,
        doc: "Limit of the CPU pressure of the server's cgroup (PSI `some avg10`); 0: off.",
        read: |r, k, c| c.max_cpu_pressure = r.percent(k, 0),
        show: |c| format!("{}%", c.max_cpu_pressure),
        ..KEY
    },
    Key {
        name: "QOS_MAX_IO_PRESSURE",
        syntax: Syntax::Percent,
        doc: "Limit of the I/O pressure of the server's cgroup (PSI `some avg10`); 0: off.",
        read: |r, k, c| c.max_io_pressure = r.percent(k, 0),
        show: |c| format!("{}%", c.max_io_pressure),
        ..KEY
    },
    // Mail.
    Key {
        name: "QOS_MAIL_TO",
        syntax: Syntax::Text,
        doc: "Comma-separated recipients of the alert mails; empty: no mail.",
        read: |r, k, c| c.mail_to = r.get(k.name, Vec::new(), |v| Ok(parse_list(v))),
        show: |c| c.mail_to.join(","),
        ..KEY
    },
    Key {
        name: "QOS_MAIL_SMTP_SERVER",
        syntax: Syntax::Other,
        doc: "SMTP server, `host[:port]`; the port defaults to 25, 587 with starttls, 465 \
              with tls.",
        read: |r, k, c| {
            let server = r.get_opt(k.name, |v| parse_host_port(unquote(v), PortRule::Optional));
            // The default port follows QOS_MAIL_TLS (whose own row reports its errors).
            let tls = r
                .peek("QOS_MAIL_TLS", parse_mail_tls)
                .unwrap_or(MailTls::None);
            let default_port = match tls {
                MailTls::None => 25,
                MailTls::StartTls => 587,
                MailTls::Tls => 465,
            };
            c.mail_smtp_server = server.map(|(host, port)| (host, port.unwrap_or(default_port)));
        },
        show: |c| match &c.mail_smtp_server {
            Some((host, port)) if host.contains(':') => format!("[{host}]:{port}"),
            Some((host, port)) => format!("{host}:{port}"),
            None => String::new(),
        },
        ..KEY
    },
    Key {
        name: "QOS_MAIL_FROM",
        syntax: Syntax::Text,
        doc: "Sender address of the alert mails.",
        default_doc: Some("qoscntrlr@ the host name"),
        read: |r, k, c| c.mail_from = r.text(k),
        show: |c| show_text(&c.mail_from),
        ..KEY
    },
    Key {
        name: "QOS_MAIL_TLS",
        syntax: Syntax::Other,
        doc: "`none`, `starttls` or `tls` (SMTPS).",
        read: |r, k, c| c.mail_tls = r.get(k.name, MailTls::None, parse_mail_tls),
        show: |c| c.mail_tls.to_string(),
        ..KEY
    },
    Key {
        name: "QOS_MAIL_USER",
        syntax: Syntax::Text,
        doc: "SMTP login user (with QOS_MAIL_PASSWORD_FILE).",
        default_doc: Some("none (no login)"),
        read: |r, k, c| c.mail_user = r.text(k),
        show: |c| show_text(&c.mail_user),
        ..KEY
    },
    Key {
        name: "QOS_MAIL_PASSWORD_FILE",
        syntax: Syntax::Path,
        secret: Secret::File,
        doc: "File holding the SMTP password, read at each send (never logged, never put in \
              a support bundle).",
        read: |r, k, c| c.mail_password_file = r.path(k).map(|p| in_data_dir(c, p)),
        show: |c| show_path(&c.mail_password_file),
        ..KEY
    },
    // Listeners.
    Key {
        name: "QOS_READINESS_LISTEN",
        syntax: Syntax::Other,
        reload: Reload::Restart(|old, new| keep(&old.readiness_listen, &mut new.readiness_listen)),
        doc: "Readiness HTTP endpoint (200 ready, 503 and the reason otherwise): `port` \
              (on 127.0.0.1), `IP:port`, `*:port` (every interface) or `[IPv6]:port`.",
        default_doc: Some("off"),
        read: |r, k, c| c.readiness_listen = r.get_opt(k.name, parse_listen),
        show: |c| show_listen(&c.readiness_listen),
        ..KEY
    },
    Key {
        name: "QOS_AGENT_LISTEN",
        syntax: Syntax::Other,
        reload: Reload::Restart(|old, new| keep(&old.agent_listen, &mut new.agent_listen)),
        doc: "HAProxy agent-check port (`up`, `down` or `drain` per connection), same forms as \
              QOS_READINESS_LISTEN.",
        default_doc: Some("off"),
        read: |r, k, c| c.agent_listen = r.get_opt(k.name, parse_listen),
        show: |c| show_listen(&c.agent_listen),
        ..KEY
    },
    Key {
        name: "QOS_METRICS_LISTEN",
        syntax: Syntax::Other,
        reload: Reload::Restart(|old, new| keep(&old.metrics_listen, &mut new.metrics_listen)),
        doc: "Prometheus metrics endpoint, same forms as QOS_READINESS_LISTEN.",
        default_doc: Some("off"),
        read: |r, k, c| c.metrics_listen = r.get_opt(k.name, parse_listen),
        show: |c| show_listen(&c.metrics_listen),
        ..KEY
    },
    // Alerts.
    Key {
        name: "QOS_ALERT_WEBHOOK",
        syntax: Syntax::Other,
        doc: "Every alert is also POSTed as JSON (event, reason, summary, server, incident, \
              time, rule) to this http:// or https:// URL, with the mail's folding, spool and \
              retries.",
        default_doc: Some("off"),
        read: |r, k, c| {
            c.alert_webhook = r.get_opt(k.name, |v| crate::webhook::WebhookUrl::parse(unquote(v)))
        },
        show: |c| {
            c.alert_webhook
                .as_ref()
                .map(|u| u.to_string())
                .unwrap_or_default()
        },
        ..KEY
    },
    Key {
        name: "QOS_ALERT_WEBHOOK_HEADER",
        syntax: Syntax::Other,
        secret: Secret::Value,
        doc: "One extra header for the webhook, `Name: value` (e.g. `Authorization: Bearer \
              <token>`).",
        // Never echo the value in an error: it is a credential.
        read: |r, k, c| {
            c.alert_webhook_header = r.get_opt(k.name, |v| crate::webhook::parse_header(unquote(v)))
        },
        // The header's name only: its value is a credential.
        show: |c| {
            c.alert_webhook_header
                .as_ref()
                .map(|(name, _)| format!("{name}: <redacted>"))
                .unwrap_or_default()
        },
        ..KEY
    },
    Key {
        name: "QOS_ALERT_WEBHOOK_CA",
        syntax: Syntax::Path,
        doc: "PEM file with the certificate authority (or the self-signed certificate) an \
              https webhook is checked against, trusted in addition to the system's trust \
              store (relative: to the data directory); read again for every POST.",
        default_doc: Some("the system's trust store only"),
        read: |r, k, c| c.alert_webhook_ca = r.path(k).map(|p| in_data_dir(c, p)),
        show: |c| show_path(&c.alert_webhook_ca),
        ..KEY
    },
    // Probing, restarts and failback (continued).
    Key {
        name: "QOS_PROBE_ATTEMPT_TIMEOUT",
        syntax: Syntax::Duration(SECOND),
        doc: "Time limit of one probe attempt (more than 0).",
        default_doc: Some("the shorter of QOS_PROBE_INTERVAL and QOS_PROBE_TIMEOUT"),
        read: |r, k, c| {
            c.probe_attempt_timeout = r.get_opt(k.name, |v| {
                parse_duration(v, SECOND).and_then(|d| {
                    if d.is_zero() {
                        Err("must be more than 0 (expected e.g. 10s or 500ms)".to_string())
                    } else {
                        Ok(d)
                    }
                })
            })
        },
        show: |c| format_duration(c.effective_probe_attempt_timeout(), DurationStyle::Words),
        ..KEY
    },
    Key {
        name: "QOS_RESTART_DELAY",
        syntax: Syntax::Duration(SECOND),
        doc: "Wait this long before an automatic restart after a crash or kill (an operator \
              start or restart never waits).",
        read: |r, k, c| c.restart_delay = r.duration(k, Duration::ZERO),
        show: |c| format_duration(c.restart_delay, DurationStyle::Words),
        ..KEY
    },
    Key {
        name: "QOS_ONLINE_TRUST_TIME",
        syntax: Syntax::Duration(MINUTE),
        doc: "READY and probing well for this long empties the restart-limit window, so a \
              server that crashes once a day never ends FAULTED for an old window; 0: off.",
        read: |r, k, c| c.online_trust_time = r.duration(k, Duration::ZERO),
        show: |c| format_duration(c.online_trust_time, DurationStyle::Words),
        ..KEY
    },
    Key {
        name: "QOS_FAILBACK_HOLD",
        syntax: Syntax::Duration(MINUTE),
        doc: "After the failover outputs went down (smart kill, FAULTED, a QOS_NOKILL \
              condition, a rule), they come back only once the server has been READY and \
              probing well for this long; a server sick again inside the hold never gets \
              traffic back in between.",
        read: |r, k, c| c.failback_hold = r.duration(k, Duration::ZERO),
        show: |c| format_duration(c.failback_hold, DurationStyle::Words),
        ..KEY
    },
    Key {
        name: "QOS_FAILBACK",
        syntax: Syntax::Other,
        doc: "`auto`: the outputs come back after QOS_FAILBACK_HOLD; `manual`: they stay down \
              until `qoscntrlr failback` (which also ends a hold early).",
        read: |r, k, c| c.failback = r.get(k.name, super::FailbackMode::Auto, parse_failback),
        show: |c| c.failback.as_str().to_string(),
        ..KEY
    },
];

/// The number of keys.
pub const KEY_COUNT: usize = KEYS.len();

const fn key_names() -> [&'static str; KEY_COUNT] {
    let mut names = [""; KEY_COUNT];
    let mut i = 0;
    while i < KEY_COUNT {
        names[i] = KEYS[i].name;
        i += 1;
    }
    names
}

/// Every key name, in the documented order.
pub const KNOWN_KEYS: &[&str] = &key_names();

/// The row of a key as written in the file (any case, aliases).
pub fn find(written: &str) -> Option<&'static Key> {
    let written = written.trim();
    KEYS.iter().find(|key| {
        key.name.eq_ignore_ascii_case(written)
            || key.aliases.iter().any(|a| a.eq_ignore_ascii_case(written))
    })
}

/// The row of a canonical key name.
pub fn key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|key| key.name == name)
}

/// Whether a name — of an ini key, an environment variable, a JSON field — holds a
/// secret: a known key marked so, or a name containing one of [`SECRET_WORDS`] (or a
/// secret key's name without its `QOS_` prefix, as JSON or other tools would spell it).
/// `_FILE` names a file holding a secret.
pub fn secrecy(name: &str) -> Secret {
    if let Some(key) = find(name) {
        if key.secret != Secret::No {
            return key.secret;
        }
    }
    let upper = name.trim().to_ascii_uppercase();
    let secret_key_named = KEYS
        .iter()
        .filter(|key| key.secret == Secret::Value)
        .any(|key| upper.contains(key.name.trim_start_matches("QOS_")));
    if secret_key_named || SECRET_WORDS.iter().any(|word| upper.contains(word)) {
        if upper.ends_with("_FILE") {
            Secret::File
        } else {
            Secret::Value
        }
    } else {
        Secret::No
    }
}

/// The keys a reload does not apply (the running value stays until a restart).
pub fn start_only_keys() -> impl Iterator<Item = &'static str> {
    KEYS.iter()
        .filter(|key| key.is_start_only())
        .map(|key| key.name)
}

/// For a reload: put the running value of every start-only key back into `new`, and
/// name the keys whose new value therefore waits for a controller restart.
pub fn keep_start_only(running: &Config, new: &mut Config) -> Vec<&'static str> {
    KEYS.iter()
        .filter_map(|key| match key.reload {
            Reload::Restart(keep) => keep(running, new).then_some(key.name),
            Reload::Applies => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_aliases_and_header_are_consistent() {
        let mut seen = std::collections::HashSet::new();
        for key in KEYS {
            assert_eq!(key.name, key.name.to_ascii_uppercase(), "{}", key.name);
            assert!(seen.insert(key.name.to_string()), "duplicate {}", key.name);
            for alias in key.aliases {
                assert!(seen.insert(alias.to_ascii_uppercase()), "duplicate {alias}");
            }
            assert!(
                !key.doc.is_empty() && !key.doc.contains('\n'),
                "{}",
                key.name
            );
            assert!(key.doc.ends_with('.'), "{}: {}", key.name, key.doc);
        }
        for (name, _) in REFERENCE_HEADER {
            assert!(key(name).is_some(), "{name}");
        }
        assert_eq!(KNOWN_KEYS.len(), KEYS.len());
        assert_eq!(
            find("qosshutdownnsd").map(|k| k.name),
            Some("QOS_SHUTDOWN_NSD")
        );
    }

    #[test]
    fn one_word_list_for_secrets() {
        assert_eq!(secrecy("qos_mail_password"), Secret::Value);
        assert_eq!(secrecy("QOS_MAIL_PASSWORD_FILE"), Secret::File);
        assert_eq!(secrecy("QOS_ALERT_WEBHOOK_HEADER"), Secret::Value);
        assert_eq!(secrecy("alert_webhook_header"), Secret::Value);
        assert_eq!(secrecy("API_KEY"), Secret::Value);
        assert_eq!(secrecy("DB_TOKEN"), Secret::Value);
        assert_eq!(secrecy("QOS_ALERT_WEBHOOK"), Secret::No);
        assert_eq!(secrecy("QOS_MAIL_USER"), Secret::No);
    }

    /// The configuration as far as `text` could be read (errors leave defaults).
    fn read(text: &str) -> Config {
        super::super::parse_parts(text.as_bytes(), std::path::Path::new("/srv/qos/x.ini")).0
    }

    #[test]
    fn a_bare_number_is_in_the_unit_the_table_documents() {
        for key in KEYS {
            let Syntax::Duration(unit) = key.syntax else {
                continue;
            };
            let config = read(&format!(
                "SERVER_COMMAND=x\nQOS_PROBE=message\n{}=1\n",
                key.name
            ));
            assert_eq!(
                key.shown(&config),
                format_duration(unit, DurationStyle::Words),
                "{}",
                key.name
            );
        }
        let config = read("QOS_LOG_MAX_SIZE=3\nQOS_RESOURCE_WARN=7\n");
        assert_eq!(config.log_max_size, 3 << 20);
        assert_eq!(config.resource_warn_percent, 7);
    }

    #[test]
    fn a_secret_value_is_never_shown() {
        let value = "Authorization: Bearer s3cr3t-v4lue";
        for key in KEYS.iter().filter(|key| key.secret == Secret::Value) {
            let config = read(&format!(
                "SERVER_COMMAND=x\nQOS_PROBE=message\n{}={value}\n",
                key.name
            ));
            for line in config.effective_lines() {
                assert!(!line.contains("s3cr3t-v4lue"), "{}: {line}", key.name);
            }
        }
    }

    #[test]
    fn a_reload_keeps_every_start_only_value() {
        let text = "SERVER_COMMAND=x\nQOS_PROBE=message\n";
        let running = super::super::parse_str(text, std::path::Path::new("/a/dcontroller.ini"))
            .expect("minimal file")
            .config;
        let changed_text = "SERVER_COMMAND=x\nQOS_PROBE=message\nQOS_PIPE=/run/p\n\
                            QOS_CONTROL_SOCKET=/run/c\nQOS_CONTROL_GROUP=adm\n\
                            QOS_READINESS_LISTEN=1\nQOS_AGENT_LISTEN=2\nQOS_METRICS_LISTEN=3\n\
                            QOS_RESOURCE_INTERVAL=7\nQOS_LOG_MAX_SIZE=7\n\
                            QOS_LOG_RETENTION_DAYS=7\nQOS_CGROUP=off\nDATA_DIRECTORY=/b\n\
                            QOS_PROBE_TIMEOUT=9\n";
        let mut new = super::super::parse_str(changed_text, std::path::Path::new("/a/x.ini"))
            .expect("valid file")
            .config;
        let kept = keep_start_only(&running, &mut new);
        assert_eq!(kept, start_only_keys().collect::<Vec<_>>());
        for name in start_only_keys() {
            let key = key(name).expect("a row");
            assert_eq!(key.shown(&new), key.shown(&running), "{name}");
        }
        assert_eq!(new.probe_timeout, Duration::from_secs(9 * 60));
    }
}
