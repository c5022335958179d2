//! The man pages, generated from the code so they cannot drift from it:
//!
//! * qoscntrlr(1): every command, alias and option from the clap definition, the exit
//!   code table [`crate::exitcode::EXIT_CODES`], signals, files, environment and examples.
//! * dcontroller.ini(5): every row of the key table [`crate::config::KEYS`] — its
//!   description, aliases, the unit of a bare number, its default as the reader computes
//!   it ([`crate::config::documented_defaults`]), whether a reload applies it and whether
//!   its value is a secret.
//!
//! A key, command or exit code added in the code therefore appears in the man pages
//! without touching this file. `packaging/build-assets.sh` writes both pages with
//! `qoscntrlr generate man` / `generate ini-man`.

use std::fmt::Write as _;

/// Escape text for roff: backslashes, and a leading `.` or `'` that would be a request.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// Inline `code` spans of the doc strings in bold.
fn roff_inline(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("\\fB{}\\fR", roff(part)));
        } else {
            out.push_str(&roff(part));
        }
    }
    out
}

fn header(out: &mut String, name: &str, section: u8, title: &str) {
    let version = env!("CARGO_PKG_VERSION");
    let _ = writeln!(
        out,
        ".TH {name} {section} \"\" \"qoscntrlr {version}\" \"{title}\""
    );
}

fn section(out: &mut String, name: &str) {
    let _ = writeln!(out, ".SH {name}");
}

fn paragraph(out: &mut String, text: &str) {
    let _ = writeln!(out, ".PP\n{}", roff_inline(text));
}

/// A term and its description (`.TP`).
fn item(out: &mut String, term: &str, text: &str) {
    let _ = writeln!(out, ".TP\n{term}\n{}", roff_inline(text));
}

/// One argument's synopsis: `-c FILE`, `--json`, `--wait[=DURATION]`, `<LINE>`.
fn arg_synopsis(arg: &clap::Arg) -> String {
    let value = arg
        .get_value_names()
        .and_then(|names| names.first().map(|n| n.to_string()))
        .unwrap_or_else(|| arg.get_id().to_string().to_ascii_uppercase());
    let takes_value = arg.get_action().takes_values();
    if arg.is_positional() {
        let many = matches!(arg.get_num_args(), Some(r) if r.max_values() > 1);
        let text = format!("\\fI{}\\fR{}", roff(&value), if many { "..." } else { "" });
        return if arg.is_required_set() {
            text
        } else {
            format!("[{text}]")
        };
    }
    let flag = match (arg.get_short(), arg.get_long()) {
        (_, Some(long)) => format!("\\fB\\-\\-{}\\fR", roff(long)),
        (Some(short), None) => format!("\\fB\\-{short}\\fR"),
        (None, None) => return String::new(),
    };
    let optional_value = matches!(arg.get_num_args(), Some(r) if r.min_values() == 0);
    let text = if !takes_value {
        flag
    } else if optional_value {
        format!("{flag}[=\\fI{}\\fR]", roff(&value))
    } else {
        format!("{flag} \\fI{}\\fR", roff(&value))
    };
    if arg.is_required_set() {
        text
    } else {
        format!("[{text}]")
    }
}

fn arg_term(arg: &clap::Arg) -> String {
    let synopsis = arg_synopsis(arg);
    let bare = synopsis
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(&synopsis)
        .to_string();
    match (arg.get_short(), arg.get_long()) {
        (Some(short), Some(_)) => format!("\\fB\\-{short}\\fR, {bare}"),
        _ => bare,
    }
}

fn visible_args(cmd: &clap::Command) -> Vec<&clap::Arg> {
    cmd.get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_global_set())
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        .collect()
}

/// A subcommand (and its own subcommands) as `.TP` items with their options.
fn command_items(out: &mut String, path: &str, cmd: &clap::Command) {
    let name = format!("{path} {}", cmd.get_name());
    let subs: Vec<&clap::Command> = cmd.get_subcommands().filter(|c| !c.is_hide_set()).collect();
    if !subs.is_empty() {
        for sub in subs {
            command_items(out, &name, sub);
        }
        return;
    }
    let args = visible_args(cmd);
    let synopsis: Vec<String> = args.iter().map(|a| arg_synopsis(a)).collect();
    let aliases: Vec<&str> = cmd.get_visible_aliases().collect();
    let mut term = format!("\\fB{}\\fR {}", roff(name.trim()), synopsis.join(" "));
    if !aliases.is_empty() {
        term.push_str(&format!(
            "\n.br\nalias: \\fB{}\\fR",
            aliases
                .iter()
                .map(|a| roff(&format!("{} {a}", path.trim())))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let about = cmd
        .get_long_about()
        .or(cmd.get_about())
        .map(|a| a.to_string())
        .unwrap_or_default();
    item(out, &term, &about);
    if !args.is_empty() {
        let _ = writeln!(out, ".RS");
        for arg in args {
            let help = arg
                .get_long_help()
                .or(arg.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            item(out, &arg_term(arg), &help);
        }
        let _ = writeln!(out, ".RE");
    }
}

/// qoscntrlr(1).
pub fn qoscntrlr_1() -> String {
    let cli = crate::cli::command_definition();
    let mut out = String::new();
    header(&mut out, "qoscntrlr", 1, "User Commands");
    section(&mut out, "NAME");
    let _ = writeln!(
        out,
        "qoscntrlr \\- QoS watchdog controller for an application server"
    );
    section(&mut out, "SYNOPSIS");
    let _ = writeln!(
        out,
        "\\fBqoscntrlr\\fR [\\fB\\-c\\fR \\fIFILE\\fR] [\\fB\\-\\-color\\fR \\fIWHEN\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR]"
    );
    section(&mut out, "DESCRIPTION");
    paragraph(
        &mut out,
        "qoscntrlr starts an application server, probes it on a timed loop and listens to \
         its status messages. When the server hangs, stalls in a long-running task, \
         exhausts a resource or crashes, it triggers an immediate failover (a trigger file \
         for keepalived, readiness and HAProxy agent endpoints, hooks), collects \
         diagnostics, kills the server's whole process tree and restarts it, at most \
         QOS_RESTART_LIMIT_MAXIMUM times per QOS_RESTART_LIMIT_PERIOD. Every event goes to \
         timestamped, rotated `qoscntrlr*.out` logs in the data directory.",
    );
    paragraph(
        &mut out,
        "`qoscntrlr run` is the controller itself (what the systemd unit runs). The other \
         commands talk to a running controller through its control socket or message pipe, \
         or read its logs. The configuration file is described in dcontroller.ini(5).",
    );
    paragraph(
        &mut out,
        "The configuration is the file given with `-c FILE` (before or after the command), \
         else `$QOSCNTRLR_CONFIG`, else `./dcontroller.ini`, else \
         `/etc/qoscntrlr/dcontroller.ini`. Client commands (all but `run` and \
         `check-config`) need only its socket and directory paths: an error in any other \
         key is printed as a warning and the command goes on.",
    );
    section(&mut out, "COMMANDS");
    for sub in cli.get_subcommands().filter(|c| !c.is_hide_set()) {
        command_items(&mut out, "qoscntrlr", sub);
    }
    section(&mut out, "OPTIONS");
    for arg in cli.get_arguments().filter(|a| !a.is_hide_set()) {
        if matches!(arg.get_id().as_str(), "help" | "version") {
            continue;
        }
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        item(&mut out, &arg_term(arg), &help);
    }
    item(
        &mut out,
        "\\fB\\-h\\fR, \\fB\\-\\-help\\fR",
        "Print help (also after any command).",
    );
    item(
        &mut out,
        "\\fB\\-V\\fR, \\fB\\-\\-version\\fR",
        "Print the version.",
    );
    section(&mut out, "EXIT STATUS");
    for row in crate::exitcode::EXIT_CODES {
        item(&mut out, &format!("\\fB{}\\fR", row.code), row.meaning);
    }
    section(&mut out, "SIGNALS");
    item(
        &mut out,
        "\\fBSIGTERM\\fR, \\fBSIGINT\\fR",
        "`run`: stop the server gracefully (SERVER_STOP_COMMAND, else SERVER_STOP_SIGNAL to \
         its process group; killed after QOS_SHUTDOWN_TIMEOUT), log `OpMsg=END Type=QOS` \
         and exit 0.",
    );
    item(
        &mut out,
        "\\fBSIGHUP\\fR",
        "`run`: re-read the configuration file, as `qoscntrlr reload` does. A file with \
         errors is rejected whole and the running configuration stays; settings marked \
         \"restart\" in dcontroller.ini(5) keep their running value.",
    );
    section(&mut out, "FILES");
    let files: &[(&str, &str)] = &[
        ("/etc/qoscntrlr/dcontroller.ini", "The configuration of qoscntrlr.service, and the last default of the lookup."),
        ("/etc/qoscntrlr/NAME/dcontroller.ini", "The configuration of the instance qoscntrlr@NAME.service."),
        ("/var/lib/qoscntrlr", "The data directory of the packaged service (DATA_DIRECTORY); the files below are in the data directory."),
        ("qoscntrlrYYYYMMDDHHmm.out", "The controller log being written; renamed to .log when the controller restarts or the file passes QOS_LOG_MAX_SIZE. Old .log files are deleted after QOS_LOG_RETENTION_DAYS."),
        ("qoscntrlr-console.log", "The server's stdout and stderr, rotated."),
        ("qoscntrlr-events.jsonl", "One JSON object per state change and incident step."),
        ("triggerImmediateServerFailover", "The failover trigger: present from the decision to kill until the restarted server is ready and probing well (content 1, or 0 with QOS_DISABLE_FAILOVER_TRIGGER)."),
        ("diagnostics/nsd_TIME_REASON.log", "Diagnostics collected before a kill, after a crash, or on `qoscntrlr diagnose`."),
        ("qoscntrlr.ctl, qoscntrlr.pipe", "The control socket and the server message socket (QOS_CONTROL_SOCKET, QOS_PIPE)."),
        ("qoscntrlr.lock, qoscntrlr.state", "One controller per data directory; the record of the running server."),
        ("mail\\-spool/", "Alert mails not yet delivered."),
    ];
    for (file, text) in files {
        item(
            &mut out,
            &format!("\\fI{}\\fR", roff(file).replace("\\\\-", "\\-")),
            text,
        );
    }
    section(&mut out, "ENVIRONMENT");
    let env: &[(&str, &str)] = &[
        ("QOSCNTRLR_CONFIG", "The configuration file when `-c` is not given."),
        ("NO_COLOR", "Any non-empty value: no colours in `status` (unless `--color always`)."),
        ("JOURNAL_STREAM", "Set by systemd: when it names stderr, `run` prefixes each stderr line with its syslog priority (`<3>` error, `<4>` warning, `<5>` notice, `<6>` info)."),
        ("NOTIFY_SOCKET, WATCHDOG_USEC", "Set by systemd for Type=notify units: `run` reports READY=1, STATUS=, STOPPING=1 and sends WATCHDOG=1 from its supervision loop. Neither reaches the server."),
        ("QOSCNTRLR_PIPE", "Given to the server: the path of the message socket."),
        ("QOSCNTRLR_SERVER_NAME", "Given to the server: SERVER_NAME."),
        ("QOSCNTRLR_TREE", "Given to the server: marks its whole process tree, so a controller restarted after a crash finds and kills daemonized leftovers."),
    ];
    for (name, text) in env {
        item(&mut out, &format!("\\fB{}\\fR", roff(name)), text);
    }
    section(&mut out, "EXAMPLES");
    let examples: &[(&str, &str)] = &[
        (
            "qoscntrlr check\\-config \\-c /etc/qoscntrlr/dcontroller.ini \\-\\-strict",
            "Check a configuration before starting the service.",
        ),
        (
            "qoscntrlr status",
            "What the controller and server are doing; exit 0 only when READY.",
        ),
        (
            "qoscntrlr restart \\-\\-wait=10m",
            "Restart the server and return when the new one is READY.",
        ),
        (
            "qoscntrlr pause \\-\\-for 30m",
            "A maintenance window: probing goes on, nothing is killed or restarted.",
        ),
        (
            "qoscntrlr reload",
            "Apply an edited configuration file; prints what changed.",
        ),
        ("qoscntrlr logs follow", "Watch the live log."),
        (
            "qoscntrlr logs summary \\-\\-since yesterday",
            "Incidents since yesterday, counted.",
        ),
        (
            "qoscntrlr clear\\-fault \\-\\-wait",
            "Bring a server left down after too many restarts back up.",
        ),
        (
            "qoscntrlr support\\-bundle \\-o case.tar.gz",
            "Logs, redacted configuration and diagnostics for a support case.",
        ),
    ];
    for (command, text) in examples {
        let _ = writeln!(
            out,
            ".PP\n{}\n.RS\n.nf\n{command}\n.fi\n.RE",
            roff_inline(text)
        );
    }
    section(&mut out, "SEE ALSO");
    let _ = writeln!(out, "dcontroller.ini(5), systemctl(1), journalctl(1)");
    out
}

/// dcontroller.ini(5).
pub fn dcontroller_ini_5() -> String {
    let defaults = crate::config::documented_defaults();
    let mut out = String::new();
    header(&mut out, "dcontroller.ini", 5, "File Formats");
    section(&mut out, "NAME");
    let _ = writeln!(out, "dcontroller.ini \\- configuration of qoscntrlr");
    section(&mut out, "DESCRIPTION");
    paragraph(
        &mut out,
        "Flat `KEY=VALUE` lines. Keys are case-insensitive. `#` or `;` start a comment: a \
         whole line, or after a value when preceded by whitespace. Blank and indented lines \
         are allowed; a UTF-8 byte order mark is ignored.",
    );
    paragraph(
        &mut out,
        "Durations: a bare number is in the key's unit (below); a suffix `ms`, `s`, `m`, \
         `min` or `h` overrides it (`QOS_PROBE_TIMEOUT=30s`). Sizes: a bare number is in MB. \
         Booleans: `1`/`0`, `true`/`false`, `yes`/`no`. Relative paths are relative to \
         DATA_DIRECTORY. Commands are split like shell words; no shell runs them.",
    );
    paragraph(
        &mut out,
        "Every error names the file, line and key, and all errors are reported at once; an \
         unknown key is a warning that suggests the nearest known key. `qoscntrlr \
         check-config` checks a file, and also what `run` would trip over on this machine.",
    );
    paragraph(
        &mut out,
        "Reload: `qoscntrlr reload` or SIGHUP re-read the file. A file with errors is \
         rejected whole. \"applies\" below means the new value takes effect at once; \
         \"restart\" means the running value stays until the controller is restarted \
         (the log and the reload answer name such keys).",
    );
    section(&mut out, "KEYS");
    for key in crate::config::KEYS {
        let default = match key.default_doc {
            Some(text) => text.to_string(),
            None => match key.shown(&defaults) {
                value if value.is_empty() => "none".to_string(),
                value if value == crate::config::DOC_INI_DIR && key.name != "DATA_DIRECTORY" => {
                    "DATA_DIRECTORY".to_string()
                }
                value => value
                    .replace(
                        &format!("{}/", crate::config::DOC_INI_DIR),
                        "DATA_DIRECTORY/",
                    )
                    .replace(
                        crate::config::DOC_INI_DIR,
                        "the directory of the configuration file",
                    ),
            },
        };
        let unit = key
            .syntax
            .unit()
            .map(|u| format!("; unit of a bare number: {u}"))
            .unwrap_or_default();
        let reload = if key.is_start_only() {
            "restart"
        } else {
            "applies"
        };
        let mut notes = String::new();
        if !key.aliases.is_empty() {
            notes.push_str(&format!(" Alias: {}.", key.aliases.join(", ")));
        }
        match key.secret {
            crate::config::Secret::Value => notes.push_str(
                " Secret: never logged or printed by check-config, redacted in support bundles.",
            ),
            crate::config::Secret::File => notes.push_str(
                " Secret file: never put in a support bundle; its contents are scrubbed from every member.",
            ),
            crate::config::Secret::No => {}
        }
        let term = format!("\\fB{}\\fR", roff(key.name));
        let _ = writeln!(
            out,
            ".TP\n{term}\n{}\n.br\nDefault: {}{}. Reload: {reload}.{}",
            roff_inline(key.doc),
            roff(&default),
            roff(&unit),
            roff(&notes)
        );
    }
    section(&mut out, "RESOURCE RULES");
    paragraph(
        &mut out,
        "Any number of `QOS_RULE_<NAME>` keys, one rule each (NAME: letters, digits, `_`, \
         `-`): `<item> <op> <value> [samples N | average D] [missing=breach|ok] \
         action=<log|alert|failover|kill>`. Reload: applies (unchanged rules keep their \
         windows).",
    );
    for (term, text) in [
        (
            "items",
            "`memory` (MB), `cpu` (% of one core), `open_files`, `threads` of the server's \
             tree; `host_memory` (% used), `host_cpu` (%), `load1`; `disk_free:<path>` (MB); \
             `write_latency` (ms, a write + fsync in DATA_DIRECTORY; a failed or hung write \
             is a breach); `memory_pressure`, `cpu_pressure`, `io_pressure` (% PSI some \
             avg10 of the server's cgroup v2).",
        ),
        (
            "op, value",
            "`>`, `>=`, `<`, `<=`; the value takes a unit (`2GB`, `500ms`, `90%`).",
        ),
        (
            "window",
            "`samples N`: N consecutive samples (default QOS_RESOURCE_SAMPLES); `average D`: \
             the mean of the last D samples or of the last D of time (`average 5m`).",
        ),
        (
            "missing",
            "`breach`: a sample that cannot be taken counts as a breach; `ok` (default): it \
             does not.",
        ),
        (
            "action",
            "`log` (a log line), `alert` (log, mail and QOS_ALERT_WEBHOOK), `failover` \
             (failover outputs down, the server is kept; back when the rule clears), `kill` \
             (smart kill). QOS_MAX_MEMORY, QOS_MAX_CPU, QOS_MAX_OPEN_FILES, QOS_MAX_THREADS, \
             QOS_MIN_DISK_FREE and QOS_MAX_*_PRESSURE are shorthands for `kill` rules.",
        ),
    ] {
        item(&mut out, term, text);
    }
    let _ = writeln!(
        out,
        ".nf\nQOS_RULE_LEAK=memory > 2GB average 10m action=kill\nQOS_RULE_DISK=write_latency > 500ms samples 3 missing=breach action=failover\n.fi"
    );
    section(&mut out, "EXAMPLE");
    let _ = writeln!(
        out,
        ".nf\nSERVER_COMMAND=/opt/app/bin/server \\-\\-port 8080\nQOS_PROBE=http://127.0.0.1:8080/health\nQOS_PROBE_TIMEOUT=5min\nDATA_DIRECTORY=/var/lib/qoscntrlr\n.fi"
    );
    section(&mut out, "FILES");
    let _ = writeln!(
        out,
        ".TP\n\\fI/etc/qoscntrlr/dcontroller.ini\\fR\nThe configuration of qoscntrlr.service.\n.TP\n\\fI/usr/share/doc/qoscntrlr/examples/dcontroller.ini\\fR\nThe example configuration for the demo server, every key explained."
    );
    section(&mut out, "SEE ALSO");
    let _ = writeln!(out, "qoscntrlr(1)");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_a_description_default_and_reload_column() {
        let page = dcontroller_ini_5();
        for key in crate::config::KNOWN_KEYS {
            let term = format!(".TP\n\\fB{}\\fR\n", roff(key));
            let at = page
                .find(&term)
                .unwrap_or_else(|| panic!("{key} missing:\n{page}"));
            let entry = &page[at..];
            let end = entry[3..].find(".TP").map_or(entry.len(), |e| e + 3);
            let entry = &entry[..end];
            assert!(entry.contains("Default: "), "{entry}");
            assert!(
                entry.contains("Reload: applies.") || entry.contains("Reload: restart."),
                "{entry}"
            );
        }
        assert!(page.contains("QOS_PROBE_TIMEOUT"), "{page}");
        assert!(
            page.contains("Default: 5 minutes; unit of a bare number: minutes"),
            "{page}"
        );
        assert!(page.contains("Reload: restart."), "{page}");
    }

    #[test]
    fn man_page_lists_every_command_exit_code_and_section() {
        let page = qoscntrlr_1();
        for section in [
            "COMMANDS",
            "EXIT STATUS",
            "SIGNALS",
            "FILES",
            "ENVIRONMENT",
            "EXAMPLES",
        ] {
            assert!(page.contains(&format!(".SH {section}\n")), "{section}");
        }
        let cli = crate::cli::command_definition();
        for sub in cli.get_subcommands().filter(|c| !c.is_hide_set()) {
            assert!(
                page.contains(&format!("\\fBqoscntrlr {}", roff(sub.get_name()))),
                "command {} missing",
                sub.get_name()
            );
        }
        for row in crate::exitcode::EXIT_CODES {
            assert!(
                page.contains(&format!(".TP\n\\fB{}\\fR\n", row.code)),
                "{}",
                row.code
            );
        }
        assert!(page.contains("alias: \\fBqoscntrlr stop\\fR"), "{page}");
        assert!(page.contains("\\-\\-wait\\fR[=\\fIDURATION\\fR]"), "{page}");
        assert!(
            !page.contains("qoscntrlr\\-status(1)"),
            "no pages that are not shipped"
        );
    }
}
