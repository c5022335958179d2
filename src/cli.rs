//! The command line (DESIGN.md §7): clap definitions, config lookup, dispatch to the
//! modules that do the work, and the exit codes operators and scripts rely on.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: configuration error (sysexits EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;
/// Exit code: another controller holds the data directory (sysexits EX_TEMPFAIL).
pub const EXIT_LOCKED: u8 = 75;
/// Exit code: the controller is not reachable (sysexits EX_UNAVAILABLE).
pub const EXIT_UNREACHABLE: u8 = 69;
/// Exit code: a refused command or a generic failure.
pub const EXIT_FAILURE: u8 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "qoscntrlr",
    version,
    about = "QoS watchdog controller: supervises an application server, detects hangs, \
             stalls, resource exhaustion and crashes, fails over, collects diagnostics, \
             kills the whole process tree and restarts it."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Where the configuration comes from: `-c`, else `$QOSCNTRLR_CONFIG`, else
/// `./dcontroller.ini`.
#[derive(Debug, Clone, Args)]
pub struct ConfigArg {
    /// Configuration file [default: $QOSCNTRLR_CONFIG, else ./dcontroller.ini]
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    /// The configuration path by the documented lookup order.
    pub fn path(&self) -> PathBuf {
        if let Some(path) = &self.config {
            return path.clone();
        }
        match std::env::var_os("QOSCNTRLR_CONFIG") {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => PathBuf::from("dcontroller.ini"),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the supervisor in the foreground (what the service runs)
    Run(ConfigArg),
    /// Validate the configuration and print the effective values
    CheckConfig(ConfigArg),
    /// Show the state of the controller, server, probe, applications and restarts
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Start the server (when STOPPED)
    Start(ConfigArg),
    /// Stop the server gracefully (it stays down)
    Quit(ConfigArg),
    /// Stop the server gracefully and start it again
    Restart(ConfigArg),
    /// Smart kill: trigger failover, collect diagnostics, kill the tree, restart
    Kill(ConfigArg),
    /// Pause kills and restarts (probing continues and is logged)
    Pause {
        #[command(flatten)]
        config: ConfigArg,
        /// Resume by itself after this long (e.g. 30m, 2h)
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
    },
    /// Resume after a pause
    Resume(ConfigArg),
    /// Leave FAULTED and start the server
    ClearFault(ConfigArg),
    /// Collect diagnostics now, without killing
    Diagnose(ConfigArg),
    /// Send one server message (OpMsg line) to the controller's pipe
    Send {
        #[command(flatten)]
        config: ConfigArg,
        /// The message, e.g. 'OpMsg=START Type=COMPACT ObjectType=DB ObjectValue=mail.nsf'
        line: String,
    },
    /// Review controller logs: summary or timeline
    Logs {
        #[command(subcommand)]
        view: LogsView,
    },
    /// Write an incident report
    Report {
        #[command(flatten)]
        config: ConfigArg,
        /// Self-contained HTML output file
        #[arg(long, value_name = "FILE")]
        html: PathBuf,
        /// Log files or directories [default: the data directory]
        paths: Vec<PathBuf>,
    },
    /// Pack logs, redacted config, diagnostics and system facts into a .tar.gz
    SupportBundle {
        #[command(flatten)]
        config: ConfigArg,
        /// Output file [default: qoscntrlr-support-<host>-<time>.tar.gz]
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Replace the running controller with the binary now at its path (after an
    /// upgrade), keeping the server running and every timer
    Reexec(ConfigArg),
    /// Run by `reexec` on the new binary: read the configuration and accept the state
    #[command(hide = true)]
    ReexecCheck {
        #[command(flatten)]
        config: ConfigArg,
        /// The state format version the running controller writes
        #[arg(long, value_name = "N")]
        state_version: u32,
        /// The running controller's state, to be read in full
        #[arg(long, value_name = "FILE")]
        state_file: Option<PathBuf>,
    },
    /// Print a man page or shell completions (for packaging)
    #[command(hide = true)]
    Generate {
        /// man, bash, zsh or fish
        what: String,
    },
}

/// Options shared by the log review views.
#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Log files or directories [default: the data directory]
    pub paths: Vec<PathBuf>,
    /// Only from this time on (YYYY-MM-DD[ HH:MM[:SS]] or YYYY/MM/DD HH:MM:SS)
    #[arg(long)]
    pub since: Option<String>,
    /// Only up to this time
    #[arg(long)]
    pub until: Option<String>,
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum LogsView {
    /// Counts, probe statistics and one entry per incident
    Summary(LogsArgs),
    /// Incidents and state changes, one line each
    Timeline {
        #[command(flatten)]
        args: LogsArgs,
        /// Only this kind of event (crash, probe-timeout, app-timeout, exhausted, kill, restart, ...)
        #[arg(long)]
        event: Option<String>,
    },
}

/// Parse the command line and run it; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    ExitCode::from(dispatch(cli.command))
}

fn dispatch(command: Command) -> u8 {
    match command {
        Command::Run(arg) => match load_config_or_exit(&arg) {
            Ok(loaded) => crate::runtime::run(loaded.config, &arg.path()),
            Err(code) => code,
        },
        Command::CheckConfig(arg) => check_config(&arg),
        Command::Send { config, line } => send(&config, &line),
        Command::Status { config, json } => {
            control_command(&config, crate::control::ControlCommand::Status, json)
        }
        Command::Start(config) => {
            control_command(&config, crate::control::ControlCommand::Start, false)
        }
        Command::Quit(config) => {
            control_command(&config, crate::control::ControlCommand::Quit, false)
        }
        Command::Restart(config) => {
            control_command(&config, crate::control::ControlCommand::Restart, false)
        }
        Command::Kill(config) => {
            control_command(&config, crate::control::ControlCommand::Kill, false)
        }
        Command::Pause { config, duration } => match pause_duration(duration.as_deref()) {
            Ok(for_duration) => control_command(
                &config,
                crate::control::ControlCommand::Pause { for_duration },
                false,
            ),
            Err(message) => {
                eprintln!("qoscntrlr: pause: {message}");
                EXIT_FAILURE
            }
        },
        Command::Resume(config) => {
            control_command(&config, crate::control::ControlCommand::Resume, false)
        }
        Command::ClearFault(config) => {
            control_command(&config, crate::control::ControlCommand::ClearFault, false)
        }
        Command::Diagnose(config) => {
            control_command(&config, crate::control::ControlCommand::Diagnose, false)
        }
        Command::Reexec(config) => {
            control_command(&config, crate::control::ControlCommand::Reexec, false)
        }
        Command::ReexecCheck {
            config,
            state_version,
            state_file,
        } => crate::reexec::check_main(state_version, state_file.as_deref(), &config.path()),
        Command::Logs { view } => logs_command(view),
        Command::Report {
            config,
            html,
            paths,
        } => report_command(&config, &html, paths),
        Command::SupportBundle { config, output } => support_bundle_command(&config, output),
        Command::Generate { what } => generate(&what),
    }
}

fn generate(what: &str) -> u8 {
    let mut command = Cli::command();
    let mut out = std::io::stdout();
    match what {
        "man" => match clap_mangen::Man::new(command).render(&mut out) {
            Ok(()) => EXIT_OK,
            Err(e) => {
                eprintln!("qoscntrlr: cannot write the man page: {e}");
                EXIT_FAILURE
            }
        },
        "bash" | "zsh" | "fish" => {
            let shell = match what {
                "bash" => clap_complete::Shell::Bash,
                "zsh" => clap_complete::Shell::Zsh,
                _ => clap_complete::Shell::Fish,
            };
            clap_complete::generate(shell, &mut command, "qoscntrlr", &mut out);
            EXIT_OK
        }
        other => {
            eprintln!(
                "qoscntrlr: generate: unknown target '{other}' (expected man, bash, zsh or fish)"
            );
            EXIT_FAILURE
        }
    }
}

/// `check-config`: warnings to stderr, then the effective configuration on stdout (exit 0),
/// or every error on stderr (exit 78).
fn check_config(arg: &ConfigArg) -> u8 {
    match load_config_or_exit(arg) {
        Ok(loaded) => {
            for line in loaded.config.effective_lines() {
                println!("{line}");
            }
            // What `run` would do about containment; nothing is created here.
            let cfg = &loaded.config;
            match crate::cgroup::detect(cfg.cgroup, &cfg.data_directory) {
                crate::cgroup::Decision::Contain(plan) => println!(
                    "Containment: cgroup v2, the server would run in {} ({} layout)",
                    plan.server().display(),
                    plan.layout.as_str()
                ),
                crate::cgroup::Decision::Uncontained(reason) => {
                    if cfg.cgroup == crate::cgroup::CgroupSetting::On {
                        eprintln!(
                            "error: {}: QOS_CGROUP: {}",
                            cfg.source.display(),
                            crate::cgroup::CgroupError::Unavailable(reason)
                        );
                        return EXIT_CONFIG;
                    }
                    println!(
                        "Containment: none, the server's process tree is found through /proc ({reason})"
                    );
                }
            }
            EXIT_OK
        }
        Err(code) => code,
    }
}

/// Load the configuration by the documented lookup order, printing warnings (`warning: `)
/// and, on failure, every error (`error: `) to stderr. `Err` carries the exit code
/// (`EXIT_CONFIG`) for the caller to return.
pub fn load_config_or_exit(arg: &ConfigArg) -> Result<crate::config::Loaded, u8> {
    match crate::config::load(&arg.path()) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            Ok(loaded)
        }
        Err(failure) => {
            for warning in &failure.warnings {
                eprintln!("warning: {warning}");
            }
            for error in &failure.errors {
                eprintln!("error: {error}");
            }
            eprintln!("qoscntrlr: {failure}");
            Err(EXIT_CONFIG)
        }
    }
}

/// How long a client command waits for the controller's answer. Commands are answered
/// when accepted (a restart is acknowledged, not awaited), so this only guards against a
/// wedged controller.
const CONTROL_CLIENT_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Run one operator command against the controller named by the configuration, print
/// the answer and return the exit code.
fn control_command(arg: &ConfigArg, command: crate::control::ControlCommand, json: bool) -> u8 {
    let loaded = match load_config_or_exit(arg) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let socket = &loaded.config.control_socket;
    let result = crate::control::request(socket, &command, CONTROL_CLIENT_LIMIT);
    let color = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let outcome = control_outcome(&command, result, json, color);
    if !outcome.stdout.is_empty() {
        print!("{}", outcome.stdout);
    }
    if !outcome.stderr.is_empty() {
        eprint!("{}", outcome.stderr);
    }
    outcome.code
}

/// What a client command prints and how it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlOutcome {
    pub code: u8,
    pub stdout: String,
    pub stderr: String,
}

/// Turn the controller's answer (or the failure to get one) into output and exit code:
/// 0 accepted, 1 refused or failed, 69 no controller; `status` exits with
/// [`crate::status::exit_code`].
pub fn control_outcome(
    command: &crate::control::ControlCommand,
    result: Result<crate::control::ControlResponse, crate::control::ClientError>,
    json: bool,
    color: bool,
) -> ControlOutcome {
    use crate::control::{ClientError, ControlCommand};
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            let code = match error {
                ClientError::Unreachable { .. } => EXIT_UNREACHABLE,
                _ => EXIT_FAILURE,
            };
            return ControlOutcome {
                code,
                stdout: String::new(),
                stderr: format!("qoscntrlr: {}: {error}\n", command.word()),
            };
        }
    };
    if !response.ok {
        return ControlOutcome {
            code: EXIT_FAILURE,
            stdout: String::new(),
            stderr: format!("qoscntrlr: {}: {}\n", command.word(), response.message),
        };
    }
    match (command, &response.status) {
        (ControlCommand::Status, Some(snapshot)) => {
            let stdout = if json {
                match serde_json::to_string_pretty(snapshot) {
                    Ok(text) => format!("{text}\n"),
                    Err(e) => {
                        return ControlOutcome {
                            code: EXIT_FAILURE,
                            stdout: String::new(),
                            stderr: format!("qoscntrlr: status: cannot encode JSON: {e}\n"),
                        }
                    }
                }
            } else {
                crate::status::render_human(snapshot, color)
            };
            ControlOutcome {
                code: crate::status::exit_code(snapshot),
                stdout,
                stderr: String::new(),
            }
        }
        (ControlCommand::Status, None) => ControlOutcome {
            code: EXIT_FAILURE,
            stdout: String::new(),
            stderr: "qoscntrlr: status: the controller answered without a status\n".to_string(),
        },
        _ => ControlOutcome {
            code: EXIT_OK,
            stdout: format!("{}\n", response.message),
            stderr: String::new(),
        },
    }
}

/// `pause --for DURATION`: a bare number is minutes, suffixes ms/s/m/min/h as in the ini.
fn pause_duration(text: Option<&str>) -> Result<Option<std::time::Duration>, String> {
    match text {
        None => Ok(None),
        Some(text) => match crate::config::parse_duration(text, std::time::Duration::from_secs(60))
        {
            Ok(d) if d >= std::time::Duration::from_secs(1) => Ok(Some(d)),
            Ok(_) => Err(format!("--for {text}: must be at least 1 second")),
            Err(e) => Err(format!("--for {text}: {e}")),
        },
    }
}

/// How long `send` waits for the controller to take the message.
const SEND_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// `qoscntrlr send '<line>'`: the line is validated before anything is sent, so a typo
/// is reported here instead of being dropped by the controller.
fn send(config: &ConfigArg, line: &str) -> u8 {
    if let Err(e) = crate::message::parse(line).and_then(|m| m.meaning()) {
        eprintln!("qoscntrlr: send: invalid message: {e}");
        return EXIT_FAILURE;
    }
    let loaded = match load_config_or_exit(config) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let pipe = &loaded.config.pipe;
    match crate::pipe::send_line(pipe, line, SEND_LIMIT) {
        Ok(()) => EXIT_OK,
        Err(e @ (crate::pipe::SendError::MultiLine | crate::pipe::SendError::TooLong(_))) => {
            eprintln!("qoscntrlr: send: {e}");
            EXIT_FAILURE
        }
        Err(e) => {
            eprintln!("qoscntrlr: {e}");
            EXIT_UNREACHABLE
        }
    }
}

/// The paths to review: the ones given, else the data directory of the configuration.
fn review_paths_or_data_dir(config: &ConfigArg, paths: Vec<PathBuf>) -> Result<Vec<PathBuf>, u8> {
    if !paths.is_empty() {
        return Ok(paths);
    }
    let loaded = load_config_or_exit(config)?;
    Ok(vec![loaded.config.data_directory])
}

fn review_failed(what: &str, err: &crate::review::ReviewError) -> u8 {
    eprintln!("qoscntrlr: {what}: {err}");
    EXIT_FAILURE
}

fn warn_if_no_logs(review: &crate::review::Review, paths: &[PathBuf]) {
    if review.files.is_empty() {
        let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        eprintln!(
            "qoscntrlr: warning: no controller logs (qoscntrlrYYYYMMDDHHmm.out/.log) in {}",
            list.join(", ")
        );
    }
}

fn logs_command(view: LogsView) -> u8 {
    use std::io::Write as _;
    let (args, event) = match view {
        LogsView::Summary(args) => (args, None),
        LogsView::Timeline { args, event } => (args, Some(event)),
    };
    let what = if event.is_some() {
        "logs timeline"
    } else {
        "logs summary"
    };
    let (since, until) =
        match crate::review::parse_window(args.since.as_deref(), args.until.as_deref()) {
            Ok(window) => window,
            Err(e) => return review_failed(what, &e),
        };
    let paths = match review_paths_or_data_dir(&args.config, args.paths) {
        Ok(paths) => paths,
        Err(code) => return code,
    };
    let mut opts = crate::review::Options {
        since,
        until,
        ..Default::default()
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match event {
        None => {
            let review = match crate::review::review_paths(&paths, opts, |_| {}) {
                Ok(review) => review,
                Err(e) => return review_failed(what, &e),
            };
            warn_if_no_logs(&review, &paths);
            // A closed stdout (`| head`) is the reader's choice, not an error of ours.
            let _ = if args.json {
                let json = crate::review::summary_json(&review);
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&json).unwrap_or_default()
                )
            } else {
                write!(out, "{}", crate::review::summary_text(&review))
            };
        }
        Some(filter) => {
            let filter = match filter
                .as_deref()
                .map(crate::review::parse_event)
                .transpose()
            {
                Ok(filter) => filter,
                Err(e) => return review_failed(what, &e),
            };
            opts.keep_timeline = true;
            let json = args.json;
            let result = crate::review::review_paths(&paths, opts, |entry| {
                if filter.is_some_and(|kind| kind != entry.kind) {
                    return;
                }
                let _ = if json {
                    let value = serde_json::json!({
                        "at": entry.at,
                        "event": entry.kind,
                        "incident": entry.incident,
                        "text": entry.text,
                    });
                    writeln!(out, "{value}")
                } else {
                    writeln!(out, "{entry}")
                };
            });
            match result {
                Ok(review) => warn_if_no_logs(&review, &paths),
                Err(e) => return review_failed(what, &e),
            }
        }
    }
    let _ = out.flush();
    EXIT_OK
}

fn report_command(config: &ConfigArg, html: &std::path::Path, paths: Vec<PathBuf>) -> u8 {
    let paths = match review_paths_or_data_dir(config, paths) {
        Ok(paths) => paths,
        Err(code) => return code,
    };
    let opts = crate::review::Options {
        keep_series: true,
        ..Default::default()
    };
    let review = match crate::review::review_paths(&paths, opts, |_| {}) {
        Ok(review) => review,
        Err(e) => return review_failed("report", &e),
    };
    warn_if_no_logs(&review, &paths);
    let title: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let generated = chrono::Local::now().format("%Y/%m/%d %H:%M:%S").to_string();
    let page = crate::review::html::render(&review, &title.join(", "), &generated);
    match crate::bundle::write_atomically(html, page.as_bytes(), 0o644) {
        Ok(()) => {
            println!("Report written to {}", html.display());
            EXIT_OK
        }
        Err(e) => {
            eprintln!("qoscntrlr: report: cannot write {}: {e}", html.display());
            EXIT_FAILURE
        }
    }
}

fn support_bundle_command(config: &ConfigArg, output: Option<PathBuf>) -> u8 {
    let loaded = match load_config_or_exit(config) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let request = crate::bundle::BundleRequest::from_config(&loaded.config, output);
    let status = match crate::control::request(
        &loaded.config.control_socket,
        &crate::control::ControlCommand::Status,
        CONTROL_CLIENT_LIMIT,
    ) {
        Ok(response) => match response.status.map(|s| serde_json::to_string_pretty(&s)) {
            Some(Ok(json)) => crate::bundle::ControllerStatus::Json(json),
            Some(Err(e)) => crate::bundle::ControllerStatus::NotReachable(format!(
                "controller status could not be encoded: {e}"
            )),
            None => crate::bundle::ControllerStatus::NotReachable(format!(
                "controller answered without a status: {}",
                response.message
            )),
        },
        Err(e) => {
            crate::bundle::ControllerStatus::NotReachable(format!("controller not reachable: {e}"))
        }
    };
    match crate::bundle::create(&request, &status) {
        Ok(report) => {
            for note in &report.notes {
                eprintln!("qoscntrlr: support-bundle: {note}");
            }
            println!(
                "Support bundle written to {} ({} files)",
                report.path.display(),
                report.members
            );
            EXIT_OK
        }
        Err(e) => {
            eprintln!("qoscntrlr: support-bundle: {e}");
            EXIT_FAILURE
        }
    }
}
